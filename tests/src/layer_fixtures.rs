//! Fixtures for the image tests: the OCI layouts built by
//! `scripts/build-test-images`, hand-made layer tars (hostile ones included:
//! names `tar::Builder` refuses are written into the header bytes directly),
//! images assembled from such layers straight into a store, and snapshots that
//! are unmounted and removed on drop, also when a test panics.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use corral_images::{Digest, ImageRecord, LayerRef, Snapshot, Store};

/// Builds the test images into `out` (`out/busybox`, `out/layered`).
pub fn build_test_images(out: &Path) -> Result<(), String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-test-images");
    let res = Command::new(&script)
        .arg(out)
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !res.status.success() {
        return Err(format!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&res.stderr)
        ));
    }
    Ok(())
}

/// A layer tar written entry by entry, with any name.
pub struct LayerTar {
    builder: tar::Builder<Vec<u8>>,
}

impl Default for LayerTar {
    fn default() -> Self {
        LayerTar::new()
    }
}

impl LayerTar {
    pub fn new() -> LayerTar {
        LayerTar {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    /// Link targets up to 100 bytes (names of any length), mtime 1600000000, owner 0:0.
    pub fn entry(
        self,
        name: &str,
        kind: tar::EntryType,
        mode: u32,
        data: &[u8],
        link: &str,
    ) -> LayerTar {
        self.raw(name, kind, mode, data, link, (0, 0))
    }

    fn raw(
        mut self,
        name: &str,
        kind: tar::EntryType,
        mode: u32,
        data: &[u8],
        link: &str,
        (major, minor): (u32, u32),
    ) -> LayerTar {
        assert!(link.len() <= 100, "link target too long for the fixture");
        if name.len() > 100 {
            // A GNU long-name record carries the full name for the next header.
            let data = [name.as_bytes(), b"\0"].concat();
            self = self.raw(
                "././@LongLink",
                tar::EntryType::GNULongName,
                0o644,
                &data,
                "",
                (0, 0),
            );
        }
        let mut h = tar::Header::new_gnu();
        let old = h.as_old_mut();
        let short = &name.as_bytes()[..name.len().min(100)];
        old.name[..short.len()].copy_from_slice(short);
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
            h.set_device_major(major).expect("device major");
            h.set_device_minor(minor).expect("device minor");
        }
        h.set_cksum();
        self.builder
            .append(&h, data)
            .expect("append to an in-memory tar");
        self
    }

    pub fn dir(self, name: &str) -> LayerTar {
        self.entry(name, tar::EntryType::Directory, 0o755, b"", "")
    }

    pub fn file(self, name: &str, data: &[u8]) -> LayerTar {
        self.entry(name, tar::EntryType::Regular, 0o644, data, "")
    }

    pub fn symlink(self, name: &str, target: &str) -> LayerTar {
        self.entry(name, tar::EntryType::Symlink, 0o777, b"", target)
    }

    pub fn hardlink(self, name: &str, target: &str) -> LayerTar {
        self.entry(name, tar::EntryType::Link, 0o644, b"", target)
    }

    /// A character device `major:minor`.
    pub fn char_device(self, name: &str, major: u32, minor: u32) -> LayerTar {
        self.raw(name, tar::EntryType::Char, 0o666, b"", "", (major, minor))
    }

    pub fn finish(self) -> Vec<u8> {
        self.builder.into_inner().expect("finish an in-memory tar")
    }
}

/// One layer blob for [`add_image`].
pub struct Layer {
    pub blob: Vec<u8>,
    pub media_type: &'static str,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
}

impl Layer {
    pub fn plain(tar: Vec<u8>) -> Layer {
        Layer {
            diff_id: Digest::of_bytes(&tar),
            blob: tar,
            media_type: "application/vnd.oci.image.layer.v1.tar",
        }
    }

    pub fn gzip(tar: &[u8]) -> Layer {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(tar).expect("gzip in memory");
        Layer {
            diff_id: Digest::of_bytes(tar),
            blob: gz.finish().expect("gzip in memory"),
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip",
        }
    }
}

/// Stores the layers, a config (Cmd sh, with their diff IDs) and a manifest,
/// and records the image as `name`, as a pull would.
pub fn add_image(store: &Store, name: &str, layers: &[Layer]) -> ImageRecord {
    let mut refs = Vec::new();
    for l in layers {
        let digest = store
            .put_blob("test layer", &l.blob, None)
            .expect("store layer");
        refs.push(LayerRef {
            digest,
            media_type: l.media_type.to_string(),
            size: l.blob.len() as u64,
        });
    }
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.to_string()).collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config_bytes = serde_json::to_vec(&config).expect("config json");
    let config_digest = store
        .put_blob("test config", &config_bytes, None)
        .expect("store config");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest.to_string(), "size": config_bytes.len()},
        "layers": refs.iter().map(|r| serde_json::json!({
            "mediaType": r.media_type, "digest": r.digest.to_string(), "size": r.size,
        })).collect::<Vec<_>>(),
    });
    let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest json");
    let manifest_digest = store
        .put_blob("test manifest", &manifest_bytes, None)
        .expect("store manifest");
    let size = refs.iter().map(|r| r.size).sum::<u64>()
        + (config_bytes.len() + manifest_bytes.len()) as u64;
    store
        .add_image(ImageRecord {
            names: vec![name.to_string()],
            manifest: manifest_digest,
            config: config_digest,
            layers: refs,
            size,
            created: None,
        })
        .expect("record the image")
}

/// A snapshot removed (unmounted, its directory deleted) on drop.
pub struct SnapshotGuard {
    pub store: Store,
    pub snap: Snapshot,
}

impl SnapshotGuard {
    pub fn merged(&self) -> &Path {
        &self.snap.merged
    }
}

impl Drop for SnapshotGuard {
    fn drop(&mut self) {
        if let Err(e) = Snapshot::remove(&self.store, &self.snap.id) {
            eprintln!("removing snapshot {}: {e}", self.snap.id);
        }
    }
}

/// Creates a snapshot that is removed when the guard drops.
pub fn snapshot(
    store: &Store,
    id: &str,
    img: &ImageRecord,
    layers: &[PathBuf],
    readonly: bool,
) -> Result<SnapshotGuard, corral_images::Error> {
    let snap = Snapshot::create(store, id, img, layers, readonly)?;
    Ok(SnapshotGuard {
        store: store.clone(),
        snap,
    })
}
