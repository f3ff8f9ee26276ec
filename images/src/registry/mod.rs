//! Registry pull over the distribution API v2.

pub mod auth;
mod client;
pub mod manifest;

use std::collections::{HashSet, VecDeque};
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use client::Client;
pub use manifest::Platform;
use manifest::{Descriptor, Manifest};

use crate::digest::Digest;
use crate::error::Error;
use crate::progress::{Bar, Progress};
use crate::reference::Reference;
use crate::store::{ImageRecord, LayerRef, Store};

/// Blobs downloaded at once. Registries and links are usually saturated by a
/// few streams; more mostly adds seeks on the registry's disk.
const PARALLEL_DOWNLOADS: usize = 3;

#[derive(Clone, Debug)]
pub struct PullOptions {
    /// Which manifest of an index / manifest list to pull.
    pub platform: Platform,
    /// Allow plain HTTP (and HTTPS without certificate checks) for this registry.
    pub insecure: bool,
    /// Credentials file (Docker `config.json` format). None: `$REGISTRY_AUTH_FILE`,
    /// else `~/.config/corral/auth.json`, each only if it exists.
    pub auth_file: Option<PathBuf>,
    /// Extra PEM CA certificates trusted for HTTPS.
    pub ca_file: Option<PathBuf>,
    /// A progress bar per layer on stderr.
    pub progress: bool,
}

impl Default for PullOptions {
    fn default() -> PullOptions {
        PullOptions {
            platform: Platform::default(),
            insecure: false,
            auth_file: None,
            ca_file: None,
            progress: std::io::stderr().is_terminal(),
        }
    }
}

/// Pulls `r` into the store (blobs already present are not downloaded again)
/// and records it under its tag and/or digest.
pub fn pull(store: &Store, r: &Reference, opts: &PullOptions) -> Result<ImageRecord, Error> {
    let client = Client::connect(r, opts)?;
    let (manifest, config, layers) = resolve(&client, r, &opts.platform)?;
    // From the first blob until the index names them, GC must not run.
    let _gc = store.gc_lock(false)?;
    store.put_blob(
        &format!("manifest of {r}"),
        &manifest.bytes,
        Some(&manifest.digest),
    )?;
    let progress = Progress::new(opts.progress);
    fetch_blobs(store, &client, &config, &layers, &progress)?;
    let record = record_for(store, r, &manifest, &config, &layers)?;
    store.add_image(record)
}

/// The image manifest for the platform, following an index if there is one.
fn resolve(
    client: &Client,
    r: &Reference,
    platform: &Platform,
) -> Result<(client::Fetched, Descriptor, Vec<Descriptor>), Error> {
    let top = client.manifest(&r.manifest_ref())?;
    let what = format!("manifest {} of {r}", top.digest);
    match manifest::parse(&what, &top.bytes, top.content_type.as_deref())? {
        Manifest::Image { config, layers } => Ok((top, config, layers)),
        Manifest::Index(list) => {
            let entry = manifest::select_platform(&r.to_string(), &list, platform)?;
            let child = client.manifest(&entry.digest.to_string())?;
            let what = format!("manifest {} ({platform}) of {r}", child.digest);
            match manifest::parse(&what, &child.bytes, child.content_type.as_deref())? {
                Manifest::Image { config, layers } => Ok((child, config, layers)),
                Manifest::Index(_) => Err(Error::invalid(what, "an index inside an index")),
            }
        }
    }
}

struct Job {
    kind: &'static str,
    digest: Digest,
    size: u64,
    bar: Bar,
}

fn fetch_blobs(
    store: &Store,
    client: &Client,
    config: &Descriptor,
    layers: &[Descriptor],
    progress: &Progress,
) -> Result<(), Error> {
    let mut seen = HashSet::new();
    let mut jobs = VecDeque::new();
    let all = std::iter::once(("config", config)).chain(layers.iter().map(|l| ("layer", l)));
    for (kind, d) in all {
        if !seen.insert(d.digest.clone()) {
            continue;
        }
        let label = format!("{kind} {}", d.digest.short());
        if store.has_blob(&d.digest, d.size) {
            progress.done_line(&label, "already exists");
            continue;
        }
        jobs.push_back(Job {
            kind,
            digest: d.digest.clone(),
            size: d.size,
            bar: progress.bar(&label, d.size),
        });
    }
    let workers = jobs.len().min(PARALLEL_DOWNLOADS);
    let queue = Mutex::new(jobs);
    let failed = AtomicBool::new(false);
    let errors = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                    let Some(job) = next else { break };
                    if let Err(e) = download(store, client, &job, &failed) {
                        job.bar.abandon("failed");
                        failed.store(true, Ordering::Relaxed);
                        errors.lock().unwrap_or_else(|p| p.into_inner()).push(e);
                    }
                }
            });
        }
    });
    match errors
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .next()
    {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Streams one blob into the store; the store rejects it unless size and
/// digest match. Stops early (keeping nothing) when another download failed.
fn download(store: &Store, client: &Client, job: &Job, failed: &AtomicBool) -> Result<(), Error> {
    let what = format!("{} {} of {}", job.kind, job.digest, client.reference());
    job.bar.start();
    let mut resp = client.blob(&job.digest, &format!("{} {}", job.kind, job.digest))?;
    if let Some(len) = resp.content_length().filter(|l| *l != job.size) {
        return Err(Error::SizeMismatch {
            what,
            expected: job.size,
            actual: len,
        });
    }
    let mut writer = store.blob_writer(&what, Some(&job.digest), Some(job.size))?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        if failed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let n = resp.read(&mut buf).map_err(|e| {
            client.registry_err(
                &what,
                format!("reading the download: {}", client::chain(&e)),
            )
        })?;
        if n == 0 {
            break;
        }
        writer.write_all(&buf[..n]).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => Error::invalid(&what, e.to_string()),
            _ => Error::io(
                format!("{what}: writing to {}", store.tmp_dir().display()),
                e,
            ),
        })?;
        job.bar.inc(n as u64);
    }
    writer.commit()?;
    job.bar.finish("done");
    Ok(())
}

#[derive(serde::Deserialize)]
struct ConfigSummary {
    #[serde(default)]
    created: Option<String>,
    rootfs: RootFs,
}

#[derive(serde::Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<Digest>,
}

fn record_for(
    store: &Store,
    r: &Reference,
    manifest: &client::Fetched,
    config: &Descriptor,
    layers: &[Descriptor],
) -> Result<ImageRecord, Error> {
    let mut names = Vec::new();
    if r.tag.is_some() {
        names.push(
            Reference {
                digest: None,
                ..r.clone()
            }
            .to_string(),
        );
    }
    if let Some(d) = &r.digest {
        names.push(r.with_digest(d.clone()).to_string());
    }
    image_record(
        store,
        names,
        &manifest.digest,
        manifest.bytes.len() as u64,
        config,
        layers,
    )
}

/// Builds the record after checking the config against the manifest (one
/// diff_id per layer). Shared with `import`.
pub(crate) fn image_record(
    store: &Store,
    names: Vec<String>,
    manifest: &Digest,
    manifest_len: u64,
    config: &Descriptor,
    layers: &[Descriptor],
) -> Result<ImageRecord, Error> {
    let bytes = store.read_blob(&config.digest)?;
    let what = format!("image config {}", config.digest);
    let summary: ConfigSummary =
        serde_json::from_slice(&bytes).map_err(|e| Error::json(&what, e))?;
    if summary.rootfs.diff_ids.len() != layers.len() {
        return Err(Error::invalid(
            what,
            format!(
                "{} rootfs.diff_ids for the {} layers of manifest {manifest}",
                summary.rootfs.diff_ids.len(),
                layers.len()
            ),
        ));
    }
    let layers: Vec<LayerRef> = layers
        .iter()
        .map(|l| LayerRef {
            digest: l.digest.clone(),
            media_type: l.media_type.clone().unwrap_or_default(),
            size: l.size,
        })
        .collect();
    Ok(ImageRecord {
        names,
        manifest: manifest.clone(),
        config: config.digest.clone(),
        size: manifest_len + config.size + layers.iter().map(|l| l.size).sum::<u64>(),
        layers,
        created: summary.created,
    })
}
