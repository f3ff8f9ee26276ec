//! Removing images and collecting what nothing references.
//!
//! The roots are the image records (their manifest, config and layer blobs,
//! and the chain IDs of their layers) and every snapshot's `snapshot.json` (the
//! layers a container's rootfs is made of). `prune` holds the store's GC lock
//! exclusively, so pulls, imports, unpacks and snapshot creation (which hold it
//! shared while their work is not yet rooted) never lose what they just made.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::digest::Digest;
use crate::error::Error;
use crate::layers::{image_chain_ids, layers_dir, remove_stale_unpacks, TMP_GC_PREFIX};
use crate::reference::Reference;
use crate::snapshot::Snapshot;
use crate::store::{ImageRecord, Store};

/// What [`prune`] deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub blobs: Vec<Digest>,
    /// Chain IDs of the deleted layer directories.
    pub layers: Vec<Digest>,
    /// Bytes of the deleted blobs and layer files (hard links counted once).
    pub bytes: u64,
}

/// Removes the name `name_or_id`, or every name when it is an image id (prefix).
/// The record goes when no name is left, unless `in_use` says a container uses
/// it: then nothing changes and the error says so. Blobs and layers stay until
/// [`prune`]. Returns `Untagged: <name>` and `Deleted: <image id>` lines.
pub fn remove_image(
    store: &Store,
    name_or_id: &str,
    in_use: &dyn Fn(&ImageRecord) -> bool,
) -> Result<Vec<String>, Error> {
    let found = store
        .find_str(name_or_id)?
        .ok_or_else(|| Error::ImageNotFound {
            name: name_or_id.to_string(),
        })?;
    let name = matched_name(&found, name_or_id);
    store.update_index(|images| {
        let pos = images
            .iter()
            .position(|i| i.manifest == found.manifest)
            .ok_or_else(|| Error::ImageNotFound {
                name: name_or_id.to_string(),
            })?;
        let img = &images[pos];
        let (removed, kept): (Vec<String>, Vec<String>) = img
            .names
            .iter()
            .cloned()
            .partition(|n| name.as_ref().is_none_or(|want| n == want));
        let mut out: Vec<String> = removed.iter().map(|n| format!("Untagged: {n}")).collect();
        if kept.is_empty() {
            if in_use(img) {
                return Err(Error::invalid(
                    format!("image {name_or_id}"),
                    format!(
                        "in use by a container (image id {}); remove the container first",
                        img.config.short()
                    ),
                ));
            }
            out.push(format!("Deleted: {}", img.config));
            images.remove(pos);
        } else {
            images[pos].names = kept;
        }
        Ok(out)
    })
}

/// The record's name that `s` denotes (as given, or normalized), None for an id.
fn matched_name(img: &ImageRecord, s: &str) -> Option<String> {
    if img.names.iter().any(|n| n == s) {
        return Some(s.to_string());
    }
    let full = s.parse::<Reference>().ok()?.to_string();
    img.names.iter().find(|n| **n == full).cloned()
}

/// Deletes blobs no image references and layer directories no image or
/// snapshot uses.
pub fn prune(store: &Store) -> Result<PruneReport, Error> {
    let _gc = store.gc_lock(true)?;
    let images = store.images()?;
    let blobs: HashSet<Digest> = images
        .iter()
        .flat_map(|i| i.blobs().into_iter().cloned())
        .collect();
    let mut chains: HashSet<Digest> = HashSet::new();
    for img in &images {
        // An image whose layers cannot be named would lose them: stop instead.
        chains.extend(image_chain_ids(store, img)?);
    }
    for snap in Snapshot::list(store)? {
        chains.extend(snap.chain_ids);
    }
    let mut report = PruneReport::default();
    remove_stale_unpacks(store)?;
    prune_blobs(store, &blobs, &mut report)?;
    prune_layers(store, &chains, &mut report)?;
    Ok(report)
}

/// Entries of `dir` named by 64 lowercase hex (anything else is not ours).
fn digest_entries(dir: &Path) -> Result<Vec<(Digest, std::path::PathBuf)>, Error> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let name = entry.file_name();
        let Some(digest) = name
            .to_str()
            .and_then(|hex| format!("sha256:{hex}").parse::<Digest>().ok())
        else {
            continue;
        };
        out.push((digest, entry.path()));
    }
    out.sort();
    Ok(out)
}

fn prune_blobs(
    store: &Store,
    keep: &HashSet<Digest>,
    report: &mut PruneReport,
) -> Result<(), Error> {
    let dir = store.root().join("blobs").join("sha256");
    for (digest, path) in digest_entries(&dir)? {
        if keep.contains(&digest) {
            continue;
        }
        let size = fs::symlink_metadata(&path).map(|m| m.len()).unwrap_or(0);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("removing blob {}", path.display()), e)),
        }
        report.bytes += size;
        report.blobs.push(digest);
    }
    Ok(())
}

fn prune_layers(
    store: &Store,
    keep: &HashSet<Digest>,
    report: &mut PruneReport,
) -> Result<(), Error> {
    for (chain, path) in digest_entries(&layers_dir(store))? {
        if keep.contains(&chain) {
            continue;
        }
        let size = tree_size(&path);
        // Out of layers/ first, so a half-deleted layer is never taken for a
        // complete one.
        let doomed = store.tmp_dir().join(format!(
            "{TMP_GC_PREFIX}{}-{}",
            std::process::id(),
            chain.hex()
        ));
        fs::rename(&path, &doomed).map_err(|e| {
            Error::io(
                format!("moving {} to {}", path.display(), doomed.display()),
                e,
            )
        })?;
        fs::remove_dir_all(&doomed)
            .map_err(|e| Error::io(format!("removing {}", doomed.display()), e))?;
        report.bytes += size;
        report.layers.push(chain);
    }
    Ok(())
}

/// Apparent size of the files under `path`, each inode once, never following
/// symlinks. Unreadable parts count as zero: this is only a report.
fn tree_size(path: &Path) -> u64 {
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(entries) = fs::read_dir(&p) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        } else if meta.is_file() && seen.insert((meta.dev(), meta.ino())) {
            total += meta.len();
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::record;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn untag_then_delete_by_name() {
        let (_d, store) = store();
        let a = record(
            &[
                "docker.io/library/busybox:latest",
                "docker.io/library/busybox:1",
            ],
            "a",
        );
        store.add_image(a.clone()).unwrap();
        let out = remove_image(&store, "busybox", &|_| false).unwrap();
        assert_eq!(out, vec!["Untagged: docker.io/library/busybox:latest"]);
        assert_eq!(
            store.images().unwrap()[0].names,
            vec!["docker.io/library/busybox:1"]
        );
        let out = remove_image(&store, "docker.io/library/busybox:1", &|_| false).unwrap();
        assert_eq!(
            out,
            vec![
                "Untagged: docker.io/library/busybox:1".to_string(),
                format!("Deleted: {}", a.config)
            ]
        );
        assert!(store.images().unwrap().is_empty());
        let err = remove_image(&store, "busybox", &|_| false).unwrap_err();
        assert!(matches!(err, Error::ImageNotFound { .. }), "{err}");
    }

    #[test]
    fn by_id_removes_every_name_but_never_an_image_in_use() {
        let (_d, store) = store();
        let a = record(&["localhost/a:1", "localhost/a:2"], "a");
        store.add_image(a.clone()).unwrap();
        let err = remove_image(&store, &a.config.hex()[..12], &|i| i.config == a.config)
            .unwrap_err()
            .to_string();
        assert!(err.contains("in use by a container"), "{err}");
        assert_eq!(store.images().unwrap(), vec![a.clone()], "nothing changed");
        let out = remove_image(&store, &a.config.hex()[..12], &|_| false).unwrap();
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(store.images().unwrap().is_empty());
    }
}
