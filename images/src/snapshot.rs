//! Container root filesystems: an overlay of the image's shared layer
//! directories plus the container's own upper and work directories.
//!
//! ```text
//! root/snapshots/<id>/snapshot.json   image id and layer chain IDs (GC roots)
//!                     upper/ work/    the container's own changes
//!                     merged/         the overlay mount (the rootfs)
//!                     l/<n>           short links to the layers, only when the
//!                                     mount options would not fit in a page
//! ```
//!
//! Removing a snapshot unmounts it and deletes only this directory; the layers
//! stay for other containers until `prune`.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::Error;
use crate::layers::{layer_dir, layers_dir, read_meta};
use crate::store::{write_atomic, ImageRecord, Store};

const SNAPSHOT_JSON: &str = "snapshot.json";
/// The kernel copies mount options into one page.
const MAX_MOUNT_DATA: usize = 4095;

/// `snapshot.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    id: String,
    /// The image id (config digest) the snapshot was made from.
    image: Digest,
    /// The layers it uses, lowest first: these must survive `prune`.
    chain_ids: Vec<Digest>,
    readonly: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub id: String,
    /// `root/snapshots/<id>`.
    pub dir: PathBuf,
    /// The overlay mount point: the container's rootfs.
    pub merged: PathBuf,
    pub image: Digest,
    /// Chain IDs of its layers, lowest first.
    pub chain_ids: Vec<Digest>,
    pub readonly: bool,
}

pub fn snapshots_dir(store: &Store) -> PathBuf {
    store.root().join("snapshots")
}

fn snapshot_dir(store: &Store, id: &str) -> Result<PathBuf, Error> {
    let valid = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !valid {
        return Err(Error::invalid(
            format!("snapshot id {id:?}"),
            "use 1 to 128 of A-Z a-z 0-9 _ - . (not starting with '.')",
        ));
    }
    Ok(snapshots_dir(store).join(id))
}

impl Snapshot {
    /// Creates `root/snapshots/<id>` over `layers` (the diff directories from
    /// [`crate::unpack_layers`], lowest first) and mounts it at `merged`.
    ///
    /// `readonly` mounts the layers alone, without an upper directory: nothing
    /// can be written and nothing can be created, not even mount points. For a
    /// container with a read-only rootfs use a writable snapshot and
    /// `RunConfig::readonly` instead: the runtime creates its mount points first
    /// and then remounts the root read-only, as runc does for podman.
    pub fn create(
        store: &Store,
        id: &str,
        img: &ImageRecord,
        layers: &[PathBuf],
        readonly: bool,
    ) -> Result<Snapshot, Error> {
        let dir = snapshot_dir(store, id)?;
        if layers.is_empty() {
            return Err(Error::invalid(
                format!("snapshot {id}"),
                "the image has no layers",
            ));
        }
        let parent = snapshots_dir(store);
        fs::create_dir_all(&parent)
            .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::invalid(format!("snapshot {id}"), "already exists"));
            }
            Err(e) => return Err(Error::io(format!("creating {}", dir.display()), e)),
        }
        let snap = Snapshot {
            id: id.to_string(),
            merged: dir.join("merged"),
            dir,
            image: img.config.clone(),
            chain_ids: Vec::new(),
            readonly,
        };
        let made = snap.populate(store, layers).and_then(|snap| {
            snap.mount(store)?;
            Ok(snap)
        });
        if made.is_err() {
            // Best effort: the error being returned is the one that matters.
            let _ = Snapshot::remove(store, id);
        }
        made
    }

    fn populate(mut self, store: &Store, layers: &[PathBuf]) -> Result<Snapshot, Error> {
        self.chain_ids = layers
            .iter()
            .map(|l| chain_of(store, l))
            .collect::<Result<_, _>>()?;
        let mut dirs = vec!["merged"];
        if !self.readonly {
            dirs.extend(["upper", "work"]);
        } else if layers.len() == 1 {
            dirs.push("empty");
        }
        for d in dirs {
            let path = self.dir.join(d);
            fs::create_dir(&path)
                .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        }
        let record = Record {
            id: self.id.clone(),
            image: self.image.clone(),
            chain_ids: self.chain_ids.clone(),
            readonly: self.readonly,
        };
        let bytes = serde_json::to_vec_pretty(&record)
            .map_err(|e| Error::json(format!("encoding snapshot {}", self.id), e))?;
        // Under the GC lock: once snapshot.json is written, prune keeps the
        // layers; check they were not pruned just before.
        let _gc = store.gc_lock(false)?;
        for chain in &self.chain_ids {
            if read_meta(store, chain)?.is_none() {
                return Err(Error::invalid(
                    format!("snapshot {}", self.id),
                    format!("layer {chain} is not unpacked (pruned meanwhile?)"),
                ));
            }
        }
        write_atomic(&self.dir.join(SNAPSHOT_JSON), &bytes)?;
        Ok(self)
    }

    /// Reads an existing snapshot.
    pub fn open(store: &Store, id: &str) -> Result<Snapshot, Error> {
        let dir = snapshot_dir(store, id)?;
        let path = dir.join(SNAPSHOT_JSON);
        let bytes =
            fs::read(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let record: Record = serde_json::from_slice(&bytes)
            .map_err(|e| Error::json(format!("snapshot {}", path.display()), e))?;
        Ok(Snapshot {
            id: record.id,
            merged: dir.join("merged"),
            dir,
            image: record.image,
            chain_ids: record.chain_ids,
            readonly: record.readonly,
        })
    }

    /// Every snapshot with a `snapshot.json`.
    pub fn list(store: &Store) -> Result<Vec<Snapshot>, Error> {
        let dir = snapshots_dir(store);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
            let Some(id) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if entry.path().join(SNAPSHOT_JSON).exists() {
                out.push(Snapshot::open(store, &id)?);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    pub fn is_mounted(&self) -> bool {
        is_mount_point(&self.merged)
    }

    /// Mounts the overlay at `merged` unless it is mounted already (after a
    /// reboot, for instance).
    pub fn mount(&self, store: &Store) -> Result<(), Error> {
        if self.is_mounted() {
            return Ok(());
        }
        let lowers: Vec<PathBuf> = self
            .chain_ids
            .iter()
            .rev()
            .map(|c| layer_dir(store, c).join("diff"))
            .collect();
        let mut flags = MsFlags::MS_NODEV;
        if self.readonly {
            flags |= MsFlags::MS_RDONLY;
        }
        let opts = self.options(&lowers, &self.dir);
        if opts.len() <= MAX_MOUNT_DATA {
            return overlay(&self.merged, flags, &opts)
                .map_err(|e| self.mount_error(e, lowers.len()));
        }
        let short = self.short_links(&lowers)?;
        let opts = self.options(&short, Path::new(""));
        if opts.len() > MAX_MOUNT_DATA {
            return Err(Error::invalid(
                format!("snapshot {}", self.id),
                format!("{} layers are too many for one overlay mount", lowers.len()),
            ));
        }
        overlay_in(&self.dir, &self.merged, flags, &opts)
            .map_err(|e| self.mount_error(e, lowers.len()))
    }

    fn mount_error(&self, e: io::Error, layers: usize) -> Error {
        Error::io(
            format!(
                "mounting the overlay of snapshot {} ({layers} layers) at {}",
                self.id,
                self.merged.display()
            ),
            e,
        )
    }

    /// Overlay options, with `upper`/`work` relative to `base`. Overlay needs two
    /// lower directories when it has no upper one, so a single-layer read-only
    /// snapshot gets an empty directory below its layer.
    fn options(&self, lowers: &[PathBuf], base: &Path) -> String {
        let mut lower: Vec<String> = lowers.iter().map(|l| escape(l)).collect();
        if self.readonly && lowers.len() == 1 {
            lower.push(escape(&base.join("empty")));
        }
        let mut opts = format!("lowerdir={}", lower.join(":"));
        if !self.readonly {
            opts.push_str(&format!(
                ",upperdir={},workdir={}",
                escape(&base.join("upper")),
                escape(&base.join("work"))
            ));
        }
        if overlay_index_default_on() {
            // Shared lower layers under several overlays must not be tied to
            // one upper directory by the inode index.
            opts.push_str(",index=off");
        }
        opts
    }

    /// `l/<n>` -> the layer's diff directory, for mounts from inside `dir`.
    fn short_links(&self, lowers: &[PathBuf]) -> Result<Vec<PathBuf>, Error> {
        let l = self.dir.join("l");
        let _ = fs::remove_dir_all(&l);
        fs::create_dir(&l).map_err(|e| Error::io(format!("creating {}", l.display()), e))?;
        lowers
            .iter()
            .enumerate()
            .map(|(i, target)| {
                let name = format!("{i:x}");
                symlink(target, l.join(&name))
                    .map_err(|e| Error::io(format!("linking {}/{name}", l.display()), e))?;
                Ok(Path::new("l").join(name))
            })
            .collect()
    }

    /// Unmounts (lazily, so open files do not block it) and deletes the
    /// snapshot's own directory. Missing snapshots are not an error.
    pub fn remove(store: &Store, id: &str) -> Result<(), Error> {
        let dir = snapshot_dir(store, id)?;
        if !dir.exists() {
            return Ok(());
        }
        let merged = dir.join("merged");
        // Stacked mounts are undone one by one; a bounded loop, not forever.
        for _ in 0..16 {
            if !is_mount_point(&merged) {
                break;
            }
            umount2(&merged, MntFlags::MNT_DETACH).map_err(|e| {
                Error::io(
                    format!("unmounting {}", merged.display()),
                    io::Error::from(e),
                )
            })?;
        }
        if is_mount_point(&merged) {
            return Err(Error::invalid(
                format!("snapshot {id}"),
                format!(
                    "{} is still mounted; not deleting through it",
                    merged.display()
                ),
            ));
        }
        fs::remove_dir_all(&dir).map_err(|e| Error::io(format!("removing {}", dir.display()), e))
    }
}

/// The chain ID of a layer diff directory `root/layers/<hex>/diff`, which must
/// be an unpacked layer of this store.
fn chain_of(store: &Store, diff: &Path) -> Result<Digest, Error> {
    let bad = |reason: &str| Error::invalid(format!("layer directory {}", diff.display()), reason);
    let layer = diff
        .parent()
        .filter(|_| diff.file_name() == Some(OsStr::new("diff")))
        .ok_or_else(|| bad("expected <store>/layers/<chain id>/diff"))?;
    if layer.parent() != Some(layers_dir(store).as_path()) {
        return Err(bad(&format!("not under {}", layers_dir(store).display())));
    }
    let hex = layer
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| bad("layer directory name is not UTF-8"))?;
    let chain: Digest = format!("sha256:{hex}")
        .parse()
        .map_err(|_| bad("layer directory is not named by a chain ID"))?;
    if read_meta(store, &chain)?.is_none() {
        return Err(bad("not an unpacked layer (no meta.json)"));
    }
    Ok(chain)
}

/// Overlay splits its options at ',' and lower directories at ':'.
fn escape(p: &Path) -> String {
    let s = p.to_string_lossy();
    s.replace('\\', "\\\\")
        .replace(':', "\\:")
        .replace(',', "\\,")
}

fn overlay_index_default_on() -> bool {
    fs::read_to_string("/sys/module/overlay/parameters/index").is_ok_and(|v| v.trim() == "Y")
}

fn overlay(merged: &Path, flags: MsFlags, opts: &str) -> io::Result<()> {
    mount(Some("overlay"), merged, Some("overlay"), flags, Some(opts)).map_err(io::Error::from)
}

/// Mounts with paths relative to `dir`, from a thread that has its own working
/// directory (unshare CLONE_FS), so the process's cwd never changes.
fn overlay_in(dir: &Path, merged: &Path, flags: MsFlags, opts: &str) -> io::Result<()> {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)?;
            std::env::set_current_dir(dir)?;
            overlay(merged, flags, opts)
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("mount thread panicked")))
    })
}

fn is_mount_point(path: &Path) -> bool {
    let (Ok(m), Some(Ok(p))) = (
        fs::symlink_metadata(path),
        path.parent().map(fs::symlink_metadata),
    ) else {
        return false;
    };
    m.dev() != p.dev()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(readonly: bool) -> Snapshot {
        Snapshot {
            id: "c1".into(),
            dir: "/s/c1".into(),
            merged: "/s/c1/merged".into(),
            image: Digest::of_bytes(b"config"),
            chain_ids: vec![],
            readonly,
        }
    }

    #[test]
    fn ids_are_checked() {
        let store = Store::open(tempfile::tempdir().unwrap().path()).unwrap();
        for ok in ["abc", "a.b-c_1", &"x".repeat(128)] {
            assert!(snapshot_dir(&store, ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "../x",
            "a b",
            &"x".repeat(129),
        ] {
            let err = snapshot_dir(&store, bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn overlay_options() {
        let lowers = [PathBuf::from("/l/top"), PathBuf::from("/l/a:b,c")];
        let opts = snap(false).options(&lowers, Path::new("/s/c1"));
        assert!(
            opts.starts_with(
                "lowerdir=/l/top:/l/a\\:b\\,c,upperdir=/s/c1/upper,workdir=/s/c1/work"
            ),
            "{opts}"
        );
        let ro = snap(true).options(&lowers[..1], Path::new(""));
        assert!(ro.starts_with("lowerdir=/l/top:empty"), "{ro}");
        assert!(!ro.contains("upperdir"), "{ro}");
    }

    #[test]
    fn layer_paths_must_be_unpacked_layers_of_this_store() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let chain = Digest::of_bytes(b"layer");
        let diff = layer_dir(&store, &chain).join("diff");
        let err = chain_of(&store, &diff).unwrap_err().to_string();
        assert!(err.contains("no meta.json"), "{err}");
        for bad in [
            PathBuf::from("/etc"),
            tmp.path().join("x/diff"),
            diff.join("sub"),
        ] {
            assert!(chain_of(&store, &bad).is_err(), "{}", bad.display());
        }
    }
}
