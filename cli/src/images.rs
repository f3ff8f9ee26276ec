//! `corral image pull | import | ls | inspect | rm | prune`: thin over corral_images.

use std::io::{IsTerminal, Write};

use anyhow::{bail, Context as _, Result};
use corral_images::{ImageRecord, PullOptions, Reference, Store};
use serde_json::{json, Value};

use crate::cli::{Format, Global, ImageVerb, RegistryArgs};
use crate::containers::Containers;
use crate::time::ago;

pub fn dispatch(g: &Global, v: &ImageVerb) -> Result<()> {
    let store = Store::open(&g.images_root)
        .with_context(|| format!("open image store {}", g.images_root.display()))?;
    match v {
        ImageVerb::Pull(p) => {
            let r: Reference = p.reference.parse()?;
            let opts = pull_options(&p.registry, p.quiet)?;
            let img =
                corral_images::pull(&store, &r, &opts).with_context(|| format!("pull {r}"))?;
            unpack(&store, &img)?;
            println!("{}", img.id().hex());
        }
        ImageVerb::Import { path, tag } => {
            let tag = tag.as_deref().map(str::parse::<Reference>).transpose()?;
            let imgs = corral_images::import(&store, path, tag.as_ref())
                .with_context(|| format!("import {}", path.display()))?;
            for img in imgs {
                unpack(&store, &img)?;
                if img.names.is_empty() {
                    println!("Loaded image: {}", img.id().hex());
                }
                for n in &img.names {
                    println!("Loaded image: {n}");
                }
            }
        }
        ImageVerb::Ls { format, quiet } => ls(&store, *format, *quiet)?,
        ImageVerb::Inspect { images } => inspect(&store, images)?,
        ImageVerb::Rm { images } => rm(g, &store, images)?,
        ImageVerb::Prune => {
            let r = corral_images::prune(&store).context("prune the image store")?;
            for d in &r.blobs {
                println!("deleted blob {d}");
            }
            for d in &r.layers {
                println!("deleted layer {d}");
            }
            println!("Total reclaimed space: {}", human_size(r.bytes));
        }
    }
    Ok(())
}

/// Unpack right after pull/import (as podman does), so the first `run` of the
/// image only mounts it.
fn unpack(store: &Store, img: &ImageRecord) -> Result<()> {
    corral_images::unpack_layers(store, img, &corral_images::Limits::default())
        .with_context(|| format!("unpack the layers of image {}", img.id().short()))?;
    Ok(())
}

pub fn pull_options(r: &RegistryArgs, quiet: bool) -> Result<PullOptions> {
    Ok(PullOptions {
        platform: r
            .platform
            .parse()
            .with_context(|| format!("--platform {:?}", r.platform))?,
        insecure: r.insecure,
        auth_file: r.auth_file.clone(),
        ca_file: r.ca_file.clone(),
        progress: !quiet && std::io::stderr().is_terminal(),
    })
}

/// (repository, tag) rows of an image: one per name, `<none>` when unnamed.
fn repo_tags(img: &ImageRecord) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = img
        .names
        .iter()
        .map(|n| match n.parse::<Reference>() {
            Ok(r) => (
                r.name(),
                r.tag.clone().unwrap_or_else(|| "<none>".to_string()),
            ),
            Err(_) => (n.clone(), "<none>".to_string()),
        })
        .collect();
    if out.is_empty() {
        out.push(("<none>".into(), "<none>".into()));
    }
    out
}

fn ls(store: &Store, format: Format, quiet: bool) -> Result<()> {
    let mut images = store.images()?;
    images.sort_by(|a, b| b.created.cmp(&a.created));
    let mut out = std::io::stdout().lock();
    if quiet {
        for img in &images {
            writeln!(out, "{}", img.id().short())?;
        }
        return Ok(());
    }
    if format == Format::Json {
        let v: Vec<Value> = images
            .iter()
            .map(|i| {
                json!({
                    "Id": i.id().hex(),
                    "Names": i.names,
                    "Digest": i.manifest.to_string(),
                    "Created": i.created,
                    "Size": i.size,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    let mut rows = Vec::new();
    for img in &images {
        let created = img.created.as_deref().map_or("N/A".to_string(), ago);
        for (repo, tag) in repo_tags(img) {
            rows.push(vec![
                repo,
                tag,
                img.id().short().to_string(),
                created.clone(),
                human_size(img.size),
            ]);
        }
    }
    crate::table::print(
        &mut out,
        &["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
        &rows,
    )?;
    Ok(())
}

fn inspect(store: &Store, names: &[String]) -> Result<()> {
    let mut out = Vec::new();
    for n in names {
        let img = store
            .find_str(n)?
            .with_context(|| format!("no image {n:?} in the store"))?;
        let config = store.config(&img)?;
        let mut v = serde_json::to_value(&img)?;
        v["id"] = json!(img.id().hex());
        v["config"] = serde_json::to_value(&config)?;
        out.push(v);
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn rm(g: &Global, store: &Store, names: &[String]) -> Result<()> {
    let containers = Containers::new(g).list()?;
    let in_use = |img: &ImageRecord| {
        let id = img.id().to_string();
        containers.iter().any(|c| c.image_id == id)
    };
    let mut failed = Vec::new();
    for n in names {
        match corral_images::remove_image(store, n, &in_use) {
            Ok(lines) => lines.iter().for_each(|l| println!("{l}")),
            Err(e) => {
                eprintln!("Error: {e}");
                failed.push(n.clone());
            }
        }
    }
    if !failed.is_empty() {
        bail!("could not remove {}", failed.join(", "));
    }
    Ok(())
}

/// Docker's sizes: decimal units, three significant digits ("4.26MB" as "4.26 MB").
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    let decimals = if v < 10.0 {
        2
    } else if v < 100.0 {
        1
    } else {
        0
    };
    let mut s = format!("{v:.decimals$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s} {}", UNITS[u])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1_240), "1.24 kB");
        assert_eq!(human_size(4_260_000), "4.26 MB");
        assert_eq!(human_size(4_200_000), "4.2 MB");
        assert_eq!(human_size(42_600_000), "42.6 MB");
        assert_eq!(human_size(426_000_000), "426 MB");
        assert_eq!(human_size(2_000_000_000), "2 GB");
    }
}
