//! The content store: blobs addressed by sha256 and the tag index.
//!
//! A blob reaches `blobs/sha256/<hex>` only through [`BlobWriter::commit`], which
//! checks size and digest of what was written, fsyncs it and renames it into
//! place. So a crash or a failed pull leaves at most a file under `tmp/`, never a
//! wrong blob under its digest, and a present blob of the right size is trusted.
//! Readers still re-verify lazily: [`Store::read_blob`] and [`Store::open_blob`]
//! hash what they read.
//!
//! `index.json` holds the [`ImageRecord`]s; it is only rewritten whole (tmp,
//! fsync, rename, fsync dir) while holding an flock on `lock`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Hasher};
use crate::error::Error;
use crate::reference::Reference;

/// Manifests, indexes and configs are small; anything larger is refused
/// rather than read into memory.
pub const MAX_JSON_BLOB: u64 = 16 << 20;
const TMP_BLOB_PREFIX: &str = "blob-";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Normalized references (`docker.io/library/busybox:latest`, or
    /// `repo@sha256:...` when pulled by digest). Empty for an untagged image.
    pub names: Vec<String>,
    /// The image manifest (never an index: the platform was chosen at pull).
    pub manifest: Digest,
    /// The config blob; its digest is the image id.
    pub config: Digest,
    /// Lowest layer first.
    pub layers: Vec<LayerRef>,
    /// Bytes of manifest, config and (compressed) layers in the store.
    pub size: u64,
    /// The config's `created` timestamp (RFC 3339), when it has one.
    pub created: Option<String>,
}

impl ImageRecord {
    /// The image id (config digest), as `docker images` shows it.
    pub fn id(&self) -> &Digest {
        &self.config
    }

    /// Every blob this image needs: manifest, config, layers (GC roots).
    pub fn blobs(&self) -> Vec<&Digest> {
        let mut all = vec![&self.manifest, &self.config];
        all.extend(self.layers.iter().map(|l| &l.digest));
        all
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    pub digest: Digest,
    /// As in the manifest: `application/vnd.oci.image.layer.v1.tar+gzip`,
    /// `...tar+zstd`, `...tar`, `application/vnd.docker.image.rootfs.diff.tar.gzip`.
    pub media_type: String,
    pub size: u64,
}

#[derive(Default, Serialize, Deserialize)]
struct IndexFile {
    images: Vec<ImageRecord>,
}

#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

/// An flock held until dropped.
pub struct StoreLock {
    _lock: Flock<File>,
}

impl Store {
    /// Opens (creating if needed) the store at `root`, and removes partial blobs
    /// left under `tmp/` by processes that no longer exist.
    pub fn open(root: &Path) -> Result<Store, Error> {
        let store = Store {
            root: root.to_path_buf(),
        };
        for dir in [store.blobs_dir(), store.tmp_dir()] {
            fs::create_dir_all(&dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        store.remove_stale_tmp()?;
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.blobs_dir().join(d.hex())
    }

    /// Where partial downloads and unpacks live (same filesystem as the store).
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    /// True when the blob is present with `size` bytes. Blobs only get there
    /// through a verified commit, so presence with the right size is trusted.
    pub fn has_blob(&self, d: &Digest, size: u64) -> bool {
        fs::metadata(self.blob_path(d)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// A writer whose commit fails unless the bytes hash to `digest` (when given)
    /// and number `size` (when given). `what` names the blob in errors.
    pub fn blob_writer(
        &self,
        what: &str,
        digest: Option<&Digest>,
        size: Option<u64>,
    ) -> Result<BlobWriter, Error> {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{TMP_BLOB_PREFIX}{}-", std::process::id()))
            .tempfile_in(self.tmp_dir())
            .map_err(|e| {
                Error::io(
                    format!("{what}: creating a file in {}", self.tmp_dir().display()),
                    e,
                )
            })?;
        Ok(BlobWriter {
            blobs_dir: self.blobs_dir(),
            file: BufWriter::with_capacity(1 << 18, tmp),
            hasher: Hasher::new(),
            digest: digest.cloned(),
            size,
            what: what.to_string(),
        })
    }

    /// Stores `bytes`, checking them against `expected` when given.
    pub fn put_blob(
        &self,
        what: &str,
        bytes: &[u8],
        expected: Option<&Digest>,
    ) -> Result<Digest, Error> {
        let digest = Digest::of_bytes(bytes);
        if let Some(want) = expected {
            crate::digest::verify(what, bytes, want)?;
        }
        if self.has_blob(&digest, bytes.len() as u64) {
            return Ok(digest);
        }
        let mut w = self.blob_writer(what, Some(&digest), Some(bytes.len() as u64))?;
        w.write_all(bytes).map_err(|e| {
            Error::io(
                format!("{what}: writing to {}", self.tmp_dir().display()),
                e,
            )
        })?;
        w.commit()?;
        Ok(digest)
    }

    /// Reads a small blob (at most `MAX_JSON_BLOB`) and checks its digest.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, Error> {
        let mut bytes = Vec::new();
        let reader = self.open_blob(d)?;
        reader
            .take(MAX_JSON_BLOB + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(format!("reading blob {}", self.blob_path(d).display()), e))?;
        if bytes.len() as u64 > MAX_JSON_BLOB {
            return Err(Error::invalid(
                format!("blob {d}"),
                format!("larger than {MAX_JSON_BLOB} bytes, refusing to read it into memory"),
            ));
        }
        crate::digest::verify(&format!("blob {}", self.blob_path(d).display()), &bytes, d)?;
        Ok(bytes)
    }

    /// Opens a blob for streaming; reading it to the end fails with
    /// `InvalidData` if its content no longer matches its digest.
    pub fn open_blob(&self, d: &Digest) -> Result<VerifyingReader, Error> {
        let path = self.blob_path(d);
        let file = File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::BlobMissing {
                digest: d.clone(),
                path: path.clone(),
            },
            _ => Error::io(format!("opening blob {}", path.display()), e),
        })?;
        Ok(VerifyingReader {
            inner: file,
            hasher: Some(Hasher::new()),
            expected: d.clone(),
            path,
        })
    }

    /// Hashes a whole blob; returns its size if it is intact.
    pub fn verify_blob(&self, d: &Digest) -> Result<u64, Error> {
        let mut reader = self.open_blob(d)?;
        io::copy(&mut reader, &mut io::sink())
            .map_err(|e| Error::io(format!("verifying blob {}", self.blob_path(d).display()), e))
    }

    /// Held (shared) by pulls and imports from their first blob until their
    /// image is in the index, and (exclusive) by garbage collection, so GC never
    /// deletes blobs of an image that is being added.
    pub fn gc_lock(&self, exclusive: bool) -> Result<StoreLock, Error> {
        let arg = if exclusive {
            FlockArg::LockExclusive
        } else {
            FlockArg::LockShared
        };
        self.flock("gc.lock", arg)
    }

    fn flock(&self, name: &str, arg: FlockArg) -> Result<StoreLock, Error> {
        let path = self.root.join(name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("opening lock {}", path.display()), e))?;
        let lock = Flock::lock(file, arg).map_err(|(_, errno)| {
            Error::io(format!("flock {}", path.display()), io::Error::from(errno))
        })?;
        Ok(StoreLock { _lock: lock })
    }

    /// All images in the index (empty when there is no index yet).
    pub fn images(&self) -> Result<Vec<ImageRecord>, Error> {
        Ok(self.read_index()?.images)
    }

    /// The image a reference names: by manifest digest when it has one, else by tag.
    pub fn find(&self, r: &Reference) -> Result<Option<ImageRecord>, Error> {
        Ok(find_in(&self.images()?, r))
    }

    /// By full or short name (`busybox`, `busybox:latest`,
    /// `docker.io/library/busybox:latest`) or by image id prefix (`3f57d9401f8d`,
    /// `sha256:3f57...`).
    pub fn find_str(&self, s: &str) -> Result<Option<ImageRecord>, Error> {
        let images = self.images()?;
        if let Some(img) = images.iter().find(|i| i.names.iter().any(|n| n == s)) {
            return Ok(Some(img.clone()));
        }
        if let Ok(r) = s.parse::<Reference>() {
            if let Some(img) = find_in(&images, &r) {
                return Ok(Some(img));
            }
        }
        find_by_id_prefix(&images, s)
    }

    pub fn config(&self, img: &ImageRecord) -> Result<oci_spec::image::ImageConfiguration, Error> {
        let bytes = self.read_blob(&img.config)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::json(format!("image config {}", img.config), e))
    }

    /// Records `rec`, moving its names away from any other image (a tag names one
    /// image) and merging it with an existing record of the same manifest.
    pub fn add_image(&self, rec: ImageRecord) -> Result<ImageRecord, Error> {
        self.update_index(|images| {
            for other in images.iter_mut() {
                other.names.retain(|n| !rec.names.contains(n));
            }
            match images.iter_mut().find(|i| i.manifest == rec.manifest) {
                Some(existing) => {
                    let mut names = std::mem::take(&mut existing.names);
                    names.extend(rec.names.iter().cloned());
                    names.dedup();
                    *existing = ImageRecord { names, ..rec };
                    Ok(existing.clone())
                }
                None => {
                    images.push(rec.clone());
                    Ok(rec)
                }
            }
        })
    }

    /// Runs `f` on the image list under the index lock and writes the result
    /// back atomically if `f` succeeds.
    pub fn update_index<T>(
        &self,
        f: impl FnOnce(&mut Vec<ImageRecord>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let _lock = self.flock("lock", FlockArg::LockExclusive)?;
        let mut index = self.read_index()?;
        let out = f(&mut index.images)?;
        let bytes = serde_json::to_vec_pretty(&index)
            .map_err(|e| Error::json(format!("encoding {}", self.index_path().display()), e))?;
        write_atomic(&self.index_path(), &bytes)?;
        Ok(out)
    }

    fn read_index(&self) -> Result<IndexFile, Error> {
        let path = self.index_path();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::json(format!("image index {}", path.display()), e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(IndexFile::default()),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    fn remove_stale_tmp(&self) -> Result<(), Error> {
        let dir = self.tmp_dir();
        let entries =
            fs::read_dir(&dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(tmp_blob_pid) else {
                continue;
            };
            if !process_exists(pid) {
                let path = entry.path();
                fs::remove_file(&path)
                    .or_else(|e| {
                        if e.kind() == io::ErrorKind::NotFound {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(|e| Error::io(format!("removing stale {}", path.display()), e))?;
            }
        }
        Ok(())
    }
}

fn find_in(images: &[ImageRecord], r: &Reference) -> Option<ImageRecord> {
    let full = r.to_string();
    images
        .iter()
        .find(|i| match &r.digest {
            Some(d) => i.manifest == *d || i.names.contains(&full),
            None => i.names.contains(&full),
        })
        .cloned()
}

fn find_by_id_prefix(images: &[ImageRecord], s: &str) -> Result<Option<ImageRecord>, Error> {
    let prefix = s.strip_prefix("sha256:").unwrap_or(s);
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let prefix = prefix.to_ascii_lowercase();
    let mut hits: Vec<&ImageRecord> = images
        .iter()
        .filter(|i| i.config.hex().starts_with(&prefix))
        .collect();
    hits.dedup_by(|a, b| a.config == b.config);
    match hits.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some((*one).clone())),
        many => Err(Error::Ambiguous {
            name: s.to_string(),
            candidates: many.iter().map(|i| i.config.short().to_string()).collect(),
        }),
    }
}

/// `blob-<pid>-<random>` -> pid
fn tmp_blob_pid(name: &str) -> Option<i32> {
    name.strip_prefix(TMP_BLOB_PREFIX)?
        .split('-')
        .next()?
        .parse()
        .ok()
}

fn process_exists(pid: i32) -> bool {
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(errno) => errno != nix::errno::Errno::ESRCH,
    }
}

/// Writes `path` so that readers see the old or the new content, never a mix,
/// even across a crash: tmp file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| Error::io(format!("creating a temporary file in {}", dir.display()), e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| Error::io(format!("writing {}", tmp.path().display()), e))?;
    tmp.persist(path)
        .map_err(|e| Error::io(format!("renaming into {}", path.display()), e.error))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("fsync of directory {}", dir.display()), e))
}

/// See [`Store::blob_writer`]. Dropping it without `commit` removes the partial file.
pub struct BlobWriter {
    blobs_dir: PathBuf,
    file: BufWriter<tempfile::NamedTempFile>,
    hasher: Hasher,
    digest: Option<Digest>,
    size: Option<u64>,
    what: String,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.hasher.len()
    }

    /// Verifies size and digest, then makes the blob durable and visible under
    /// its digest. On any error the partial file is removed.
    pub fn commit(self) -> Result<(Digest, u64), Error> {
        let BlobWriter {
            blobs_dir,
            file,
            hasher,
            digest,
            size,
            what,
        } = self;
        let tmp = file.into_inner().map_err(|e| {
            Error::io(
                format!("{what}: writing to a temporary file"),
                e.into_error(),
            )
        })?;
        let len = hasher.len();
        let actual = hasher.finish();
        if let Some(expected) = size.filter(|s| *s != len) {
            return Err(Error::SizeMismatch {
                what,
                expected,
                actual: len,
            });
        }
        if let Some(expected) = digest.filter(|d| *d != actual) {
            return Err(Error::DigestMismatch {
                what,
                expected,
                actual,
            });
        }
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o444))
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| Error::io(format!("{what}: fsync of {}", tmp.path().display()), e))?;
        let dest = blobs_dir.join(actual.hex());
        tmp.persist(&dest)
            .map_err(|e| Error::io(format!("{what}: renaming into {}", dest.display()), e.error))?;
        sync_dir(&blobs_dir)?;
        Ok((actual, len))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(limit) = self.size {
            if self.hasher.len() + buf.len() as u64 > limit {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: more data than the expected {limit} bytes", self.what),
                ));
            }
        }
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Reads a blob and fails at its end if the content does not hash to its digest.
pub struct VerifyingReader {
    inner: File,
    hasher: Option<Hasher>,
    expected: Digest,
    path: PathBuf,
}

impl Read for VerifyingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            if let Some(h) = self.hasher.as_mut() {
                h.update(&buf[..n]);
            }
            return Ok(n);
        }
        if let Some(h) = self.hasher.take() {
            let actual = h.finish();
            if actual != self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "blob {} is corrupt: content hashes to {actual}, expected {}",
                        self.path.display(),
                        self.expected
                    ),
                ));
            }
        }
        Ok(0)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("images")).unwrap();
        (dir, store)
    }

    fn tmp_entries(store: &Store) -> Vec<String> {
        fs::read_dir(store.tmp_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// An image record with made-up digests, for tests that only need the index.
    pub(crate) fn record(names: &[&str], content: &str) -> ImageRecord {
        ImageRecord {
            names: names.iter().map(|s| s.to_string()).collect(),
            manifest: Digest::of_bytes(format!("manifest {content}").as_bytes()),
            config: Digest::of_bytes(format!("config {content}").as_bytes()),
            layers: vec![LayerRef {
                digest: Digest::of_bytes(content.as_bytes()),
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                size: 3,
            }],
            size: 10,
            created: Some("2024-01-01T00:00:00Z".into()),
        }
    }

    #[test]
    fn verified_write_lands_under_its_digest_read_only() {
        let (_d, store) = store();
        let data = b"layer bytes".repeat(1000);
        let digest = Digest::of_bytes(&data);
        let mut w = store
            .blob_writer("layer", Some(&digest), Some(data.len() as u64))
            .unwrap();
        w.write_all(&data).unwrap();
        assert_eq!(w.written(), data.len() as u64);
        assert_eq!(w.commit().unwrap(), (digest.clone(), data.len() as u64));
        let path = store.blob_path(&digest);
        assert_eq!(fs::read(&path).unwrap(), data);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o444
        );
        assert!(store.has_blob(&digest, data.len() as u64));
        assert!(!store.has_blob(&digest, 1));
        assert_eq!(store.verify_blob(&digest).unwrap(), data.len() as u64);
        assert!(tmp_entries(&store).is_empty());
    }

    #[test]
    fn digest_mismatch_leaves_nothing() {
        let (_d, store) = store();
        let want = Digest::of_bytes(b"good");
        let mut w = store.blob_writer("layer x", Some(&want), Some(4)).unwrap();
        w.write_all(b"evil").unwrap();
        let err = w.commit().unwrap_err().to_string();
        assert!(
            err.contains("layer x: digest mismatch") && err.contains(&want.to_string()),
            "{err}"
        );
        assert!(!store.blob_path(&want).exists());
        assert!(!store.blob_path(&Digest::of_bytes(b"evil")).exists());
        assert!(tmp_entries(&store).is_empty());
    }

    #[test]
    fn size_mismatch_and_overflow_leave_nothing() {
        let (_d, store) = store();
        let want = Digest::of_bytes(b"good");
        let mut w = store.blob_writer("short", Some(&want), Some(4)).unwrap();
        w.write_all(b"goo").unwrap();
        let err = w.commit().unwrap_err().to_string();
        assert!(
            err.contains("short: size mismatch: expected 4 bytes, got 3"),
            "{err}"
        );

        let mut w = store.blob_writer("long", Some(&want), Some(4)).unwrap();
        let err = w.write_all(b"goodbye").unwrap_err().to_string();
        assert!(
            err.contains("long: more data than the expected 4 bytes"),
            "{err}"
        );
        drop(w);
        assert!(!store.blob_path(&want).exists());
        assert!(tmp_entries(&store).is_empty());
    }

    #[test]
    fn dropped_writer_removes_partial_file() {
        let (_d, store) = store();
        let mut w = store.blob_writer("partial", None, None).unwrap();
        w.write_all(&[7u8; 100_000]).unwrap();
        w.flush().unwrap();
        assert_eq!(tmp_entries(&store).len(), 1);
        drop(w);
        assert!(tmp_entries(&store).is_empty());
    }

    /// Run by `crash_leaves_no_trusted_blob` in a child process: writes half a
    /// blob and dies without unwinding, as a killed pull would.
    #[test]
    #[ignore = "helper: only does something when run by crash_leaves_no_trusted_blob"]
    fn crash_child() {
        let Some(root) = std::env::var_os("CORRAL_STORE_CRASH_ROOT") else {
            return;
        };
        let store = Store::open(Path::new(&root)).unwrap();
        let data = vec![1u8; 1 << 20];
        let digest = Digest::of_bytes(&data);
        let mut w = store
            .blob_writer("crash", Some(&digest), Some(data.len() as u64))
            .unwrap();
        w.write_all(&data[..data.len() / 2]).unwrap();
        w.flush().unwrap();
        std::process::abort();
    }

    #[test]
    fn crash_leaves_no_trusted_blob() {
        let (_d, store) = store();
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "store::tests::crash_child",
                "--ignored",
                "--nocapture",
            ])
            .env("CORRAL_STORE_CRASH_ROOT", store.root())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "child must have crashed");
        let data = vec![1u8; 1 << 20];
        let digest = Digest::of_bytes(&data);
        assert!(
            !store.blob_path(&digest).exists(),
            "no blob under its digest"
        );
        assert_eq!(
            tmp_entries(&store).len(),
            1,
            "the crash left its partial file"
        );
        let reopened = Store::open(store.root()).unwrap();
        assert!(
            tmp_entries(&reopened).is_empty(),
            "open removes the dead writer's file"
        );
        assert!(!reopened.has_blob(&digest, data.len() as u64));
    }

    #[test]
    fn corrupted_blob_fails_lazy_verification() {
        let (_d, store) = store();
        let digest = store.put_blob("config", b"{\"a\":1}", None).unwrap();
        assert_eq!(store.read_blob(&digest).unwrap(), b"{\"a\":1}");
        let path = store.blob_path(&digest);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&path, b"{\"a\":2}").unwrap();
        let err = store.read_blob(&digest).unwrap_err().to_string();
        assert!(
            err.contains("corrupt") && err.contains(&digest.to_string()),
            "{err}"
        );
        let err = store.verify_blob(&digest).unwrap_err().to_string();
        assert!(
            err.contains("corrupt") && err.contains(&digest.to_string()),
            "{err}"
        );
        let missing = Digest::of_bytes(b"nope");
        let err = store.read_blob(&missing).unwrap_err().to_string();
        assert!(err.contains("not in the image store"), "{err}");
    }

    #[test]
    fn put_blob_checks_expected_digest() {
        let (_d, store) = store();
        let wrong = Digest::of_bytes(b"other");
        assert!(store.put_blob("m", b"data", Some(&wrong)).is_err());
        assert!(tmp_entries(&store).is_empty());
        let d = store
            .put_blob("m", b"data", Some(&Digest::of_bytes(b"data")))
            .unwrap();
        assert_eq!(store.put_blob("m", b"data", None).unwrap(), d, "idempotent");
    }

    #[test]
    fn index_round_trip_and_tag_moves() {
        let (_d, store) = store();
        assert!(store.images().unwrap().is_empty());
        let a = record(
            &[
                "docker.io/library/busybox:latest",
                "docker.io/library/busybox:1",
            ],
            "a",
        );
        store.add_image(a.clone()).unwrap();
        assert_eq!(store.images().unwrap(), vec![a.clone()]);

        let b = record(&["docker.io/library/busybox:latest"], "b");
        store.add_image(b.clone()).unwrap();
        let images = store.images().unwrap();
        assert_eq!(images.len(), 2);
        assert_eq!(
            images[0].names,
            vec!["docker.io/library/busybox:1"],
            "latest moved to b"
        );
        assert_eq!(images[1], b);

        let a2 = record(&["localhost/a:v2"], "a");
        let merged = store.add_image(a2).unwrap();
        assert_eq!(
            merged.names,
            vec!["docker.io/library/busybox:1", "localhost/a:v2"]
        );
        assert_eq!(store.images().unwrap().len(), 2);

        let raw: serde_json::Value =
            serde_json::from_slice(&fs::read(store.root().join("index.json")).unwrap()).unwrap();
        assert_eq!(
            raw["images"][1]["layers"][0]["digest"],
            b.layers[0].digest.to_string()
        );
        let leftovers: Vec<_> = fs::read_dir(store.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn failed_update_keeps_the_old_index() {
        let (_d, store) = store();
        store.add_image(record(&["localhost/x:1"], "x")).unwrap();
        let before = fs::read(store.root().join("index.json")).unwrap();
        let err = store
            .update_index(|images| {
                images.clear();
                Err::<(), _>(Error::invalid("test", "refused"))
            })
            .unwrap_err();
        assert!(err.to_string().contains("refused"));
        assert_eq!(fs::read(store.root().join("index.json")).unwrap(), before);
    }

    #[test]
    fn find_by_name_short_name_digest_and_id() {
        let (_d, store) = store();
        let a = record(&["docker.io/library/busybox:latest"], "a");
        let b = record(&["127.0.0.1:5000/app:v1"], "b");
        store.add_image(a.clone()).unwrap();
        store.add_image(b.clone()).unwrap();

        let by = |s: &str| store.find_str(s).unwrap().map(|i| i.manifest);
        assert_eq!(by("busybox"), Some(a.manifest.clone()));
        assert_eq!(by("busybox:latest"), Some(a.manifest.clone()));
        assert_eq!(
            by("docker.io/library/busybox:latest"),
            Some(a.manifest.clone())
        );
        assert_eq!(by("127.0.0.1:5000/app:v1"), Some(b.manifest.clone()));
        assert_eq!(by(&b.config.hex()[..8]), Some(b.manifest.clone()));
        assert_eq!(by(&b.config.to_string()), Some(b.manifest.clone()));
        assert_eq!(by("busybox:2"), None);
        assert_eq!(by("127.0.0.1:5000/app"), None, "app:latest is not app:v1");

        let pinned: Reference = format!("127.0.0.1:5000/app@{}", b.manifest)
            .parse()
            .unwrap();
        assert_eq!(store.find(&pinned).unwrap().unwrap().manifest, b.manifest);
        let tagged: Reference = "busybox".parse().unwrap();
        assert_eq!(store.find(&tagged).unwrap().unwrap().manifest, a.manifest);

        // Two ids share the empty prefix "" only; find two that share a first char.
        let mut same_start = None;
        for i in 0..200 {
            let c = record(&[], &format!("c{i}"));
            if c.config.hex()[..1] == a.config.hex()[..1] {
                same_start = Some(c);
                break;
            }
        }
        store.add_image(same_start.unwrap()).unwrap();
        let err = store
            .find_str(&a.config.hex()[..1])
            .unwrap_err()
            .to_string();
        assert!(err.contains("matches several images"), "{err}");
    }

    #[test]
    fn record_ids_and_blobs() {
        let a = record(&[], "a");
        assert_eq!(a.id(), &a.config);
        assert_eq!(a.blobs(), vec![&a.manifest, &a.config, &a.layers[0].digest]);
    }
}
