//! Unpacked layers, shared by every image and container that has them.
//!
//! A layer is unpacked once into `root/layers/<chain-id-hex>/diff` (an overlay
//! lower directory) next to `meta.json`. The chain ID names the whole stack up to
//! and including the layer, as the OCI image spec defines it, so two images share
//! a directory exactly when their layers up to it are identical. A layer is
//! unpacked under `root/tmp` and renamed into place with its `meta.json`, so a
//! directory under `root/layers` is always complete, and a failed unpack leaves
//! nothing behind.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::Error;
use crate::store::{ImageRecord, LayerRef, Store};
use crate::unpack::{unpack_layer, Limits};

const TMP_UNPACK_PREFIX: &str = "unpack-";
/// Layer directories `prune` moved out of `layers/` to delete them.
pub(crate) const TMP_GC_PREFIX: &str = "gc-";

/// `root/layers/<chain>/meta.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerMeta {
    /// Digest of the uncompressed layer tar.
    pub diff_id: Digest,
    pub chain_id: Digest,
    /// Chain ID of the layer below, None for a base layer.
    pub parent: Option<Digest>,
    /// Bytes of the uncompressed layer tar.
    pub size: u64,
}

/// `ChainID(L0) = DiffID(L0)`, `ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let next = match out.last() {
            None => diff.clone(),
            Some(parent) => Digest::of_bytes(format!("{parent} {diff}").as_bytes()),
        };
        out.push(next);
    }
    out
}

pub fn layers_dir(store: &Store) -> PathBuf {
    store.root().join("layers")
}

/// `root/layers/<chain-id-hex>`; its `diff` is the overlay lower directory.
pub fn layer_dir(store: &Store, chain: &Digest) -> PathBuf {
    layers_dir(store).join(chain.hex())
}

/// The image's diff IDs from its config, one per manifest layer.
pub fn diff_ids(store: &Store, img: &ImageRecord) -> Result<Vec<Digest>, Error> {
    let config = store.config(img)?;
    let raw = config.rootfs().diff_ids();
    if raw.len() != img.layers.len() {
        return Err(Error::invalid(
            format!("image {}", img.config),
            format!(
                "config lists {} diff IDs (rootfs.diff_ids) but the manifest has {} layers",
                raw.len(),
                img.layers.len()
            ),
        ));
    }
    raw.iter()
        .enumerate()
        .map(|(i, d)| {
            d.parse().map_err(|e| {
                Error::invalid(
                    format!("image {} rootfs.diff_ids[{i}]", img.config),
                    format!("{e}"),
                )
            })
        })
        .collect()
}

/// The chain IDs of the image's layers, lowest first.
pub fn image_chain_ids(store: &Store, img: &ImageRecord) -> Result<Vec<Digest>, Error> {
    Ok(chain_ids(&diff_ids(store, img)?))
}

/// Reads `meta.json` of an unpacked layer; None when the layer is not there.
pub fn read_meta(store: &Store, chain: &Digest) -> Result<Option<LayerMeta>, Error> {
    let path = layer_dir(store, chain).join("meta.json");
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::json(format!("layer metadata {}", path.display()), e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// Makes sure every layer of `img` is unpacked and returns their `diff`
/// directories, lowest first. Missing layers are unpacked concurrently; each is
/// checked against its diff ID from the image config.
pub fn unpack_layers(
    store: &Store,
    img: &ImageRecord,
    limits: &Limits,
) -> Result<Vec<PathBuf>, Error> {
    let diffs = diff_ids(store, img)?;
    let chains = chain_ids(&diffs);
    // Shared: a prune waits until these layers are in place.
    let _gc = store.gc_lock(false)?;
    let dir = layers_dir(store);
    fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    remove_stale_unpacks(store)?;
    let mut todo = Vec::new();
    for (i, chain) in chains.iter().enumerate() {
        if read_meta(store, chain)?.is_none() {
            let job = Job {
                layer: &img.layers[i],
                diff_id: &diffs[i],
                chain,
                parent: i.checked_sub(1).map(|p| &chains[p]),
            };
            todo.push(job);
        }
    }
    run_jobs(store, todo, limits)?;
    Ok(chains
        .iter()
        .map(|c| layer_dir(store, c).join("diff"))
        .collect())
}

struct Job<'a> {
    layer: &'a LayerRef,
    diff_id: &'a Digest,
    chain: &'a Digest,
    parent: Option<&'a Digest>,
}

/// Unpacks on as many threads as there are CPUs; the first failing layer (in
/// image order) is reported.
fn run_jobs(store: &Store, jobs: Vec<Job<'_>>, limits: &Limits) -> Result<(), Error> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(jobs.len());
    let queue = Mutex::new(jobs.into_iter().enumerate());
    let errors = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let next = queue.lock().map(|mut q| q.next()).unwrap_or(None);
                let Some((i, job)) = next else { break };
                if let Err(e) = unpack_one(store, &job, limits) {
                    if let Ok(mut errs) = errors.lock() {
                        errs.push((i, e));
                    }
                }
            });
        }
    });
    let mut errors = errors.into_inner().unwrap_or_default();
    errors.sort_by_key(|(i, _)| *i);
    match errors.into_iter().next() {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

fn unpack_one(store: &Store, job: &Job<'_>, limits: &Limits) -> Result<(), Error> {
    let digest = &job.layer.digest;
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{TMP_UNPACK_PREFIX}{}-", std::process::id()))
        .tempdir_in(store.tmp_dir())
        .map_err(|e| {
            Error::io(
                format!(
                    "layer {digest}: creating a directory in {}",
                    store.tmp_dir().display()
                ),
                e,
            )
        })?;
    let diff = tmp.path().join("diff");
    fs::create_dir(&diff)
        .and_then(|()| fs::set_permissions(&diff, fs::Permissions::from_mode(0o755)))
        .map_err(|e| Error::io(format!("layer {digest}: creating {}", diff.display()), e))?;
    let blob = store.open_blob(digest)?;
    let got = unpack_layer(blob, &job.layer.media_type, &diff, limits)
        .map_err(|e| in_layer(e, digest))?;
    if &got.diff_id != job.diff_id {
        return Err(Error::DigestMismatch {
            what: format!("layer {digest} uncompressed (diff ID in the image config)"),
            expected: job.diff_id.clone(),
            actual: got.diff_id,
        });
    }
    let meta = LayerMeta {
        diff_id: job.diff_id.clone(),
        chain_id: job.chain.clone(),
        parent: job.parent.cloned(),
        size: got.bytes,
    };
    let meta_path = tmp.path().join("meta.json");
    let bytes = serde_json::to_vec_pretty(&meta)
        .map_err(|e| Error::json(format!("encoding {}", meta_path.display()), e))?;
    fs::write(&meta_path, bytes)
        .map_err(|e| Error::io(format!("writing {}", meta_path.display()), e))?;
    // Once renamed, a layer is trusted without re-checking: its files must be
    // on disk first. One syncfs costs far less than an fsync per file.
    let dir = fs::File::open(tmp.path())
        .map_err(|e| Error::io(format!("opening {}", tmp.path().display()), e))?;
    nix::unistd::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir)).map_err(|e| {
        Error::io(
            format!("layer {digest}: syncfs on {}", tmp.path().display()),
            e.into(),
        )
    })?;
    let dest = layer_dir(store, job.chain);
    match fs::rename(tmp.path(), &dest) {
        Ok(()) => {
            let _ = tmp.keep();
            fs::File::open(layers_dir(store))
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io(format!("layer {digest}: fsync of the layers directory"), e))
        }
        // Another process unpacked the same layer first: use its copy, drop ours.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => Ok(()),
        Err(e) => Err(Error::io(
            format!(
                "layer {digest}: renaming {} to {}",
                tmp.path().display(),
                dest.display()
            ),
            e,
        )),
    }
}

/// Adds the layer digest to an error from inside the layer.
fn in_layer(e: Error, digest: &Digest) -> Error {
    match e {
        Error::Layer { entry, reason } => Error::Layer {
            entry,
            reason: format!("{reason} (layer {digest})"),
        },
        Error::Io { what, source } => Error::Io {
            what: format!("layer {digest}: {what}"),
            source,
        },
        other => other,
    }
}

/// Removes `tmp/unpack-<pid>-*` and `tmp/gc-<pid>-*` directories of processes
/// that no longer exist (killed mid-unpack or mid-prune); those of live
/// processes are in use.
pub(crate) fn remove_stale_unpacks(store: &Store) -> Result<(), Error> {
    let dir = store.tmp_dir();
    let entries =
        fs::read_dir(&dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| {
                n.strip_prefix(TMP_UNPACK_PREFIX)
                    .or_else(|| n.strip_prefix(TMP_GC_PREFIX))
            })
            .and_then(|n| n.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let alive = !matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        );
        if !alive {
            let path = entry.path();
            match fs::remove_dir_all(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("removing stale {}", path.display()), e)),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Digest {
        Digest::of_bytes(s.as_bytes())
    }

    #[test]
    fn stale_work_dirs_of_dead_processes_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        // Above any pid_max, so no such process.
        let dead = i32::MAX;
        let live = std::process::id();
        let names = [
            format!("unpack-{dead}-a"),
            format!("gc-{dead}-b"),
            format!("unpack-{live}-c"),
            format!("blob-{dead}-d"),
            "other".to_string(),
        ];
        for n in &names {
            fs::create_dir_all(store.tmp_dir().join(n).join("diff/x")).unwrap();
        }
        remove_stale_unpacks(&store).unwrap();
        let mut left: Vec<String> = fs::read_dir(store.tmp_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [names[3].clone(), names[4].clone(), names[2].clone()]);
    }

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let (a, b, c) = (d("a"), d("b"), d("c"));
        let chains = chain_ids(&[a.clone(), b.clone(), c.clone()]);
        assert_eq!(chains[0], a, "a base layer's chain ID is its diff ID");
        assert_eq!(chains[1], Digest::of_bytes(format!("{a} {b}").as_bytes()));
        assert_eq!(
            chains[2],
            Digest::of_bytes(format!("{} {c}", chains[1]).as_bytes())
        );
        assert!(chain_ids(&[]).is_empty());
        // The same layer on a different base is a different chain.
        assert_ne!(chain_ids(&[c.clone(), b.clone()])[1], chains[1]);
    }
}
