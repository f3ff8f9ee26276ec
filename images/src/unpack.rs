//! Unpacking one layer tar into an empty directory, safely.
//!
//! The `tar` crate only parses; every filesystem write is done here relative to
//! directory file descriptors opened with `O_NOFOLLOW`, so an entry can never be
//! written through a symlink or outside the target: entries with `..` components or
//! absolute paths, entries whose parent path crosses a symlink, and hard links
//! whose target is outside the layer are rejected with an error naming the entry.
//!
//! The result is an overlayfs lower directory: `.wh.NAME` entries become whiteouts
//! (0:0 character devices) and `.wh..wh..opq` becomes the
//! `trusted.overlay.opaque=y` xattr on its directory. Ownership, modes, xattrs and
//! mtimes are kept; directories get their mode and mtime after their content.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstatat, futimens, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag,
    UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use tar::EntryType;

use crate::digest::{Digest, Hasher};
use crate::error::Error;

/// Bounds on what one layer may unpack to; a layer over either is rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of the uncompressed tar stream (file data plus headers).
    pub max_bytes: u64,
    /// Archive entries, directories and whiteouts included.
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bytes: 32 << 30,
            max_entries: 1_000_000,
        }
    }
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

impl Compression {
    /// The media type must name a tar layer (OCI or Docker, any compression, or be
    /// empty when unknown); the decoder is chosen by the magic bytes, because tools
    /// mislabel compression and the diff ID check catches a wrong decode anyway.
    pub fn detect(media_type: &str, magic: &[u8]) -> Result<Compression, Error> {
        let is_tar_layer = media_type.is_empty()
            || ((media_type.starts_with("application/vnd.oci.image.layer.")
                || media_type.starts_with("application/vnd.docker.image.rootfs."))
                && media_type.contains("tar")
                && !media_type.contains("encrypted"));
        if !is_tar_layer {
            return Err(Error::UnsupportedMediaType {
                what: "layer".to_string(),
                media_type: media_type.to_string(),
            });
        }
        Ok(if magic.starts_with(GZIP_MAGIC) {
            Compression::Gzip
        } else if magic.starts_with(ZSTD_MAGIC) {
            Compression::Zstd
        } else {
            Compression::None
        })
    }
}

/// What [`unpack_layer`] found: the digest of the uncompressed tar (the layer's
/// diff ID), its entry count and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    pub diff_id: Digest,
    pub entries: u64,
    pub bytes: u64,
}

/// Unpacks the layer `blob` (compressed or not, see [`Compression::detect`]) into
/// `dest`, which must be an existing empty directory the caller owns. On error
/// `dest` holds a partial tree: the caller unpacks into a temporary directory and
/// deletes it.
pub fn unpack_layer(
    blob: impl Read,
    media_type: &str,
    dest: &Path,
    limits: &Limits,
) -> Result<Unpacked, Error> {
    let what = || format!("unpacking a layer into {}", dest.display());
    let mut buffered = BufReader::with_capacity(256 * 1024, blob);
    let magic = buffered.fill_buf().map_err(|e| Error::io(what(), e))?;
    let decoder: Box<dyn Read> = match Compression::detect(media_type, magic)? {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(buffered).map_err(|e| Error::io(what(), e))?,
        ),
    };
    let mut stream = Tracked {
        inner: decoder,
        hasher: Hasher::new(),
        limit: limits.max_bytes,
    };
    let root = open_dir(dest).map_err(|e| Error::io(format!("open {}", dest.display()), e))?;
    let mut unpacker = Unpacker {
        root,
        limits: limits.clone(),
        entries: 0,
        file_bytes: 0,
        dirs: BTreeMap::new(),
        cache: None,
    };
    {
        let mut archive = tar::Archive::new(&mut stream);
        let entries = archive.entries().map_err(|e| Error::io(what(), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| unpacker.stream_error(e))?;
            unpacker.entry(entry)?;
        }
    }
    unpacker.finish()?;
    // The diff ID covers the whole stream, including the end-of-archive blocks.
    io::copy(&mut stream, &mut io::sink()).map_err(|e| unpacker.stream_error(e))?;
    Ok(Unpacked {
        entries: unpacker.entries,
        bytes: stream.hasher.len(),
        diff_id: stream.hasher.finish(),
    })
}

/// Hashes the uncompressed stream and refuses to read past the size limit, so a
/// decompression bomb stops at the limit even outside any entry.
struct Tracked<R> {
    inner: R,
    hasher: Hasher,
    limit: u64,
}

const OVER_LIMIT: &str = "layer is larger than the size limit";

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        if self.hasher.len() > self.limit {
            return Err(io::Error::other(format!(
                "{OVER_LIMIT} of {} bytes (Limits.max_bytes)",
                self.limit
            )));
        }
        Ok(n)
    }
}

/// Ownership, permissions, time and xattrs of one entry.
#[derive(Debug, Clone)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    xattrs: Vec<(CString, Vec<u8>)>,
}

struct Unpacker {
    root: OwnedFd,
    limits: Limits,
    entries: u64,
    /// Sum of the entries' file sizes so far.
    file_bytes: u64,
    /// Directory metadata applied at the end, children before parents, so
    /// creating content does not change a directory's mtime afterwards.
    dirs: BTreeMap<Vec<OsString>, Meta>,
    /// The directory the previous entry was written into: consecutive entries
    /// usually share it, which saves walking the path again.
    cache: Option<(Vec<OsString>, OwnedFd)>,
}

fn reject(entry: &str, reason: impl Into<String>) -> Error {
    Error::Layer {
        entry: entry.to_string(),
        reason: reason.into(),
    }
}

fn failed(entry: &str, op: &str, e: impl std::fmt::Display) -> Error {
    reject(entry, format!("{op}: {e}"))
}

impl Unpacker {
    fn stream_error(&self, e: io::Error) -> Error {
        let after = format!("(after {} entries)", self.entries);
        if e.to_string().starts_with(OVER_LIMIT) {
            return reject(&after, e.to_string());
        }
        reject(&after, format!("reading the layer archive: {e}"))
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), Error> {
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(reject(
                &name,
                format!(
                    "layer has more than {} entries (Limits.max_entries)",
                    self.limits.max_entries
                ),
            ));
        }
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader) {
            return Ok(());
        }
        // File sizes add up separately from the stream: a sparse entry expands
        // to far more than the archive bytes it occupies.
        self.file_bytes = self.file_bytes.saturating_add(entry.size());
        if self.file_bytes > self.limits.max_bytes {
            return Err(reject(
                &name,
                format!(
                    "{} bytes: files add up to more than the size limit of {} bytes (Limits.max_bytes)",
                    entry.size(),
                    self.limits.max_bytes
                ),
            ));
        }
        let comps = components(&raw).map_err(|r| reject(&name, r))?;
        let meta = meta(&mut entry).map_err(|r| reject(&name, r))?;
        let Some((last, dir)) = comps.split_last() else {
            return self.root_entry(&name, kind, meta);
        };
        let last_str = last.to_string_lossy();
        if last_str == OPAQUE_MARKER {
            return self.opaque(&name, dir);
        }
        if last_str.starts_with(".wh..wh.") {
            // aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): not part of the tree.
            return Ok(());
        }
        if let Some(target) = last_str.strip_prefix(WHITEOUT_PREFIX) {
            return self.whiteout(&name, dir, target);
        }
        match kind {
            EntryType::Directory => self.directory(&name, &comps, meta),
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.file(&name, dir, last, meta, &mut entry)
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| reject(&name, "symlink without a target"))?
                    .into_owned();
                self.symlink(&name, dir, last, &target, &meta)
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| reject(&name, "hard link without a target"))?
                    .into_owned();
                self.hardlink(&name, &comps, &target)
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let dev = device(&entry).map_err(|r| reject(&name, r))?;
                self.node(&name, dir, last, kind, dev, &meta)
            }
            other => Err(reject(&name, format!("unsupported entry type {other:?}"))),
        }
    }

    /// `./` in the archive: the layer root's own metadata.
    fn root_entry(&mut self, name: &str, kind: EntryType, meta: Meta) -> Result<(), Error> {
        if kind != EntryType::Directory {
            return Err(reject(name, "the layer root can only be a directory"));
        }
        set_xattrs(self.root.as_raw_fd(), &meta.xattrs).map_err(|e| failed(name, "setxattr", e))?;
        self.dirs.insert(Vec::new(), meta);
        Ok(())
    }

    /// An fd for the directory `dir` (relative to the root), creating missing
    /// directories; fails if any component is a symlink or not a directory.
    fn parent(&mut self, name: &str, dir: &[OsString]) -> Result<RawFd, Error> {
        let hit = matches!(&self.cache, Some((path, _)) if path.as_slice() == dir);
        if !hit {
            let fd = walk(&self.root, dir, true).map_err(|r| reject(name, r))?;
            self.cache = Some((dir.to_vec(), fd));
        }
        match &self.cache {
            Some((_, fd)) => Ok(fd.as_raw_fd()),
            None => Err(reject(name, "internal: directory cache empty")),
        }
    }

    /// Removes whatever `last` is in `dfd` (the directory `dir`), a whole tree for
    /// a directory, as a later archive entry replaces an earlier one. The cached
    /// directory is `dfd` itself, so it stays valid.
    fn clear(
        &mut self,
        name: &str,
        dfd: RawFd,
        dir: &[OsString],
        last: &OsStr,
    ) -> Result<(), Error> {
        let st = match fstatat(Some(dfd), last, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(failed(name, "lstat the existing entry", e)),
        };
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
            return unlinkat(Some(dfd), last, UnlinkatFlags::NoRemoveDir)
                .map_err(|e| failed(name, "unlink the replaced entry", e));
        }
        let mut gone = dir.to_vec();
        gone.push(last.to_os_string());
        self.dirs.retain(|k, _| !k.starts_with(&gone));
        // Through /proc/self/fd the parent is our fd; std's remove_dir_all then
        // opens every level below with O_NOFOLLOW relative to its parent.
        let path = Path::new("/proc/self/fd").join(dfd.to_string()).join(last);
        std::fs::remove_dir_all(&path).map_err(|e| failed(name, "remove the replaced directory", e))
    }

    fn directory(&mut self, name: &str, comps: &[OsString], meta: Meta) -> Result<(), Error> {
        let (last, dir) = comps
            .split_last()
            .ok_or_else(|| reject(name, "empty path"))?;
        let dfd = self.parent(name, dir)?;
        match mkdirat(Some(dfd), last.as_os_str(), Mode::from_bits_truncate(0o700)) {
            Ok(()) => {}
            Err(Errno::EEXIST) if is_dir(dfd, last) => {}
            Err(Errno::EEXIST) => {
                self.clear(name, dfd, dir, last)?;
                mkdirat(Some(dfd), last.as_os_str(), Mode::from_bits_truncate(0o700))
                    .map_err(|e| failed(name, "mkdir", e))?;
            }
            Err(e) => return Err(failed(name, "mkdir", e)),
        }
        let dfd = self.parent(name, dir)?;
        let fd = open_at_dir(dfd, last).map_err(|e| failed(name, "open the new directory", e))?;
        fchown(
            fd.as_raw_fd(),
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
        )
        .map_err(|e| failed(name, "chown", e))?;
        set_xattrs(fd.as_raw_fd(), &meta.xattrs).map_err(|e| failed(name, "setxattr", e))?;
        self.dirs.insert(comps.to_vec(), meta);
        Ok(())
    }

    fn file<R: Read>(
        &mut self,
        name: &str,
        dir: &[OsString],
        last: &OsStr,
        meta: Meta,
        data: &mut tar::Entry<'_, R>,
    ) -> Result<(), Error> {
        let dfd = self.parent(name, dir)?;
        self.clear(name, dfd, dir, last)?;
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let raw = openat(Some(dfd), last, flags, Mode::from_bits_truncate(0o600))
            .map_err(|e| failed(name, "create", e))?;
        let mut file = File::from(owned(raw));
        io::copy(data, &mut file).map_err(|e| {
            if e.to_string().starts_with(OVER_LIMIT) {
                reject(name, e.to_string())
            } else {
                failed(name, "write", e)
            }
        })?;
        let fd = file.as_raw_fd();
        fchown(
            fd,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
        )
        .map_err(|e| failed(name, "chown", e))?;
        // After chown, which clears set-user-ID and set-group-ID bits.
        fchmod(fd, Mode::from_bits_truncate(meta.mode)).map_err(|e| failed(name, "chmod", e))?;
        set_xattrs(fd, &meta.xattrs).map_err(|e| failed(name, "setxattr", e))?;
        let t = timespec(meta.mtime);
        futimens(fd, &t, &t).map_err(|e| failed(name, "set mtime", e))
    }

    fn symlink(
        &mut self,
        name: &str,
        dir: &[OsString],
        last: &OsStr,
        target: &[u8],
        meta: &Meta,
    ) -> Result<(), Error> {
        let dfd = self.parent(name, dir)?;
        self.clear(name, dfd, dir, last)?;
        symlinkat(OsStr::from_bytes(target), Some(dfd), last)
            .map_err(|e| failed(name, "symlink", e))?;
        // xattrs are not kept on symlinks: user.* cannot be set on them.
        self.owner_and_time(name, dfd, last, meta, false)
    }

    fn hardlink(&mut self, name: &str, comps: &[OsString], target: &[u8]) -> Result<(), Error> {
        let target_name = String::from_utf8_lossy(target);
        let tcomps = components(target)
            .map_err(|r| reject(name, format!("hard link target {target_name:?}: {r}")))?;
        let (tlast, tdir) = tcomps
            .split_last()
            .ok_or_else(|| reject(name, "hard link to the layer root"))?;
        if tcomps == comps {
            return Err(reject(name, "hard link to itself"));
        }
        let tfd = walk(&self.root, tdir, false)
            .map_err(|r| reject(name, format!("hard link target {target_name:?}: {r}")))?;
        if is_dir(tfd.as_raw_fd(), tlast) {
            return Err(reject(
                name,
                format!("hard link to the directory {target_name:?}"),
            ));
        }
        let (last, dir) = comps
            .split_last()
            .ok_or_else(|| reject(name, "empty path"))?;
        let dfd = self.parent(name, dir)?;
        self.clear(name, dfd, dir, last)?;
        linkat(
            Some(tfd.as_raw_fd()),
            tlast.as_os_str(),
            Some(dfd),
            last.as_os_str(),
            AtFlags::empty(),
        )
        .map_err(|e| failed(name, &format!("hard link to {target_name:?}"), e))
    }

    fn node(
        &mut self,
        name: &str,
        dir: &[OsString],
        last: &OsStr,
        kind: EntryType,
        dev: libc::dev_t,
        meta: &Meta,
    ) -> Result<(), Error> {
        let sflag = match kind {
            EntryType::Char => SFlag::S_IFCHR,
            EntryType::Block => SFlag::S_IFBLK,
            _ => SFlag::S_IFIFO,
        };
        let dfd = self.parent(name, dir)?;
        self.clear(name, dfd, dir, last)?;
        mknodat(Some(dfd), last, sflag, Mode::empty(), dev)
            .map_err(|e| failed(name, "mknod", e))?;
        self.owner_and_time(name, dfd, last, meta, true)
    }

    /// Owner, then mode (chown clears set-ID bits), then mtime of a node that
    /// cannot be opened safely (symlink, device, fifo).
    fn owner_and_time(
        &self,
        name: &str,
        dfd: RawFd,
        last: &OsStr,
        meta: &Meta,
        chmod: bool,
    ) -> Result<(), Error> {
        let nofollow = AtFlags::AT_SYMLINK_NOFOLLOW;
        fchownat(
            Some(dfd),
            last,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            nofollow,
        )
        .map_err(|e| failed(name, "chown", e))?;
        if chmod {
            // The node was just created by us and is not a symlink, so following is moot.
            fchmodat(
                Some(dfd),
                last,
                Mode::from_bits_truncate(meta.mode),
                FchmodatFlags::FollowSymlink,
            )
            .map_err(|e| failed(name, "chmod", e))?;
        }
        let t = timespec(meta.mtime);
        utimensat(Some(dfd), last, &t, &t, UtimensatFlags::NoFollowSymlink)
            .map_err(|e| failed(name, "set mtime", e))
    }

    fn whiteout(&mut self, name: &str, dir: &[OsString], target: &str) -> Result<(), Error> {
        if target.is_empty() || target == "." || target == ".." {
            return Err(reject(name, "whiteout of an invalid name"));
        }
        let target = OsStr::new(target);
        let dfd = self.parent(name, dir)?;
        self.clear(name, dfd, dir, target)?;
        mknodat(
            Some(dfd),
            target,
            SFlag::S_IFCHR,
            Mode::empty(),
            libc::makedev(0, 0),
        )
        .map_err(|e| failed(name, "mknod the overlay whiteout", e))?;
        fchownat(
            Some(dfd),
            target,
            Some(Uid::from_raw(0)),
            Some(Gid::from_raw(0)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| failed(name, "chown the overlay whiteout", e))
    }

    fn opaque(&mut self, name: &str, dir: &[OsString]) -> Result<(), Error> {
        let dfd = self.parent(name, dir)?;
        let key = CString::new(OPAQUE_XATTR).map_err(|e| failed(name, "xattr name", e))?;
        set_xattrs(dfd, &[(key, b"y".to_vec())])
            .map_err(|e| failed(name, &format!("set {OPAQUE_XATTR}"), e))
    }

    fn finish(&mut self) -> Result<(), Error> {
        self.cache = None;
        for (comps, meta) in self.dirs.iter().rev() {
            let name = comps
                .iter()
                .map(|c| c.to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let fd = walk(&self.root, comps, false).map_err(|r| reject(&name, r))?;
            fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(meta.mode))
                .map_err(|e| failed(&name, "chmod", e))?;
            let t = timespec(meta.mtime);
            futimens(fd.as_raw_fd(), &t, &t).map_err(|e| failed(&name, "set mtime", e))?;
        }
        Ok(())
    }
}

/// The normalized relative components of an archive path. `.` and empty
/// components are dropped; `..` and absolute paths are refused.
pub(crate) fn components(raw: &[u8]) -> Result<Vec<OsString>, String> {
    if raw.first() == Some(&b'/') {
        return Err("absolute path".to_string());
    }
    let mut out = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("path has a '..' component".to_string()),
            _ => out.push(OsStr::from_bytes(part).to_os_string()),
        }
    }
    Ok(out)
}

fn meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Meta, String> {
    let header = entry.header();
    let mut m = Meta {
        mode: header.mode().map_err(|e| format!("mode: {e}"))? & 0o7777,
        uid: id(header.uid().map_err(|e| format!("uid: {e}"))?, "uid")?,
        gid: id(header.gid().map_err(|e| format!("gid: {e}"))?, "gid")?,
        mtime: (
            i64::try_from(header.mtime().map_err(|e| format!("mtime: {e}"))?)
                .map_err(|_| "mtime out of range".to_string())?,
            0,
        ),
        xattrs: Vec::new(),
    };
    let Some(pax) = entry
        .pax_extensions()
        .map_err(|e| format!("pax header: {e}"))?
    else {
        return Ok(m);
    };
    for ext in pax {
        let ext = ext.map_err(|e| format!("pax header: {e}"))?;
        let Ok(key) = ext.key() else { continue };
        let value = ext.value_bytes();
        match key {
            "uid" => m.uid = parse_id(value, "uid")?,
            "gid" => m.gid = parse_id(value, "gid")?,
            "mtime" => m.mtime = parse_time(value)?,
            _ => {
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    // Overlay's own attributes are made only from whiteout entries:
                    // a layer must not forge redirects, origins or opaque flags.
                    if !name.starts_with("trusted.overlay.") {
                        let name = CString::new(name).map_err(|_| "xattr name has NUL")?;
                        m.xattrs.push((name, value.to_vec()));
                    }
                }
            }
        }
    }
    Ok(m)
}

fn id(v: u64, what: &str) -> Result<u32, String> {
    u32::try_from(v).map_err(|_| format!("{what} {v} out of range"))
}

fn parse_id(value: &[u8], what: &str) -> Result<u32, String> {
    let s = std::str::from_utf8(value).map_err(|_| format!("pax {what} is not UTF-8"))?;
    s.trim()
        .parse()
        .map_err(|_| format!("pax {what} {s:?} is not a number"))
}

/// A pax time, `SECONDS[.FRACTION]`.
fn parse_time(value: &[u8]) -> Result<(i64, i64), String> {
    let s = std::str::from_utf8(value).map_err(|_| "pax mtime is not UTF-8".to_string())?;
    let bad = || format!("pax mtime {s:?} is not a time");
    let (secs, frac) = s.trim().split_once('.').unwrap_or((s.trim(), ""));
    let secs: i64 = secs.parse().map_err(|_| bad())?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let digits: String = frac.chars().chain("000000000".chars()).take(9).collect();
    let nanos: i64 = digits.parse().map_err(|_| bad())?;
    Ok((secs, if secs < 0 { -nanos } else { nanos }))
}

fn device<R: Read>(entry: &tar::Entry<'_, R>) -> Result<libc::dev_t, String> {
    if entry.header().entry_type() == EntryType::Fifo {
        return Ok(0);
    }
    let major = entry
        .header()
        .device_major()
        .map_err(|e| format!("device major: {e}"))?;
    let minor = entry
        .header()
        .device_minor()
        .map_err(|e| format!("device minor: {e}"))?;
    Ok(libc::makedev(major.unwrap_or(0), minor.unwrap_or(0)))
}

fn timespec((secs, nanos): (i64, i64)) -> TimeSpec {
    TimeSpec::new(secs, nanos)
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    Ok(owned(openat(None, path, flags, Mode::empty())?))
}

fn open_at_dir(dfd: RawFd, name: &OsStr) -> Result<OwnedFd, Errno> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    openat(Some(dfd), name, flags, Mode::empty()).map(owned)
}

fn is_dir(dfd: RawFd, name: &OsStr) -> bool {
    fstatat(Some(dfd), name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
        .unwrap_or(false)
}

/// Opens `dir` below `root` one component at a time without following symlinks;
/// with `create`, missing directories are made (mode 0755, root-owned), as tar
/// archives may omit parents.
fn walk(root: &OwnedFd, dir: &[OsString], create: bool) -> Result<OwnedFd, String> {
    let mut cur = open_at_dir(root.as_raw_fd(), OsStr::new("."))
        .map_err(|e| format!("open the layer root: {e}"))?;
    for (i, c) in dir.iter().enumerate() {
        let shown = || {
            dir[..=i]
                .iter()
                .map(|c| c.to_string_lossy())
                .collect::<Vec<_>>()
                .join("/")
        };
        let next = match open_at_dir(cur.as_raw_fd(), c) {
            Err(Errno::ENOENT) if create => {
                mkdirat(
                    Some(cur.as_raw_fd()),
                    c.as_os_str(),
                    Mode::from_bits_truncate(0o755),
                )
                .map_err(|e| format!("mkdir parent {}: {e}", shown()))?;
                let fd = open_at_dir(cur.as_raw_fd(), c)
                    .map_err(|e| format!("open parent {}: {e}", shown()))?;
                fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(0o755))
                    .map_err(|e| format!("chmod parent {}: {e}", shown()))?;
                fd
            }
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                let st = fstatat(
                    Some(cur.as_raw_fd()),
                    c.as_os_str(),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                );
                let is_link = st.is_ok_and(|st| {
                    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK
                });
                return Err(if is_link {
                    format!(
                        "parent {} is a symlink: writing through it could leave the layer",
                        shown()
                    )
                } else {
                    format!("parent {} is not a directory", shown())
                });
            }
            Err(e) => return Err(format!("open parent {}: {e}", shown())),
            Ok(fd) => fd,
        };
        cur = next;
    }
    Ok(cur)
}

/// Sets xattrs on an open file or directory. A filesystem without support for
/// one (ENOTSUP) only loses that attribute, as with `tar --xattrs`.
fn set_xattrs(fd: RawFd, xattrs: &[(CString, Vec<u8>)]) -> io::Result<()> {
    for (name, value) in xattrs {
        // SAFETY: name is NUL-terminated, value points to value.len() readable bytes,
        // and fd is an open descriptor borrowed for the duration of the call.
        let rc =
            unsafe { libc::fsetxattr(fd, name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOTSUP) {
                continue;
            }
            return Err(io::Error::new(
                e.kind(),
                format!("{}: {e}", name.to_string_lossy()),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::fs;
    use std::io::Write;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    /// Builds layer tars byte by byte, so hostile names (`..`, absolute paths)
    /// that `tar::Builder` refuses can be written too.
    #[derive(Default)]
    pub(crate) struct TarBuf {
        builder: Option<tar::Builder<Vec<u8>>>,
    }

    impl TarBuf {
        pub(crate) fn new() -> TarBuf {
            TarBuf {
                builder: Some(tar::Builder::new(Vec::new())),
            }
        }

        fn b(&mut self) -> &mut tar::Builder<Vec<u8>> {
            self.builder.as_mut().expect("builder")
        }

        pub(crate) fn entry(
            &mut self,
            name: &str,
            kind: EntryType,
            mode: u32,
            data: &[u8],
            link: &str,
        ) -> &mut Self {
            let mut h = tar::Header::new_gnu();
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_size(data.len() as u64);
            h.set_mtime(1_600_000_000);
            h.set_uid(0);
            h.set_gid(0);
            if matches!(kind, EntryType::Char | EntryType::Block) {
                h.set_device_major(1).expect("major");
                h.set_device_minor(3).expect("minor");
            }
            h.set_cksum();
            self.b().append(&h, data).expect("append");
            self
        }

        pub(crate) fn dir(&mut self, name: &str) -> &mut Self {
            self.entry(name, EntryType::Directory, 0o755, b"", "")
        }

        pub(crate) fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
            self.entry(name, EntryType::Regular, 0o644, data, "")
        }

        pub(crate) fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
            self.entry(name, EntryType::Symlink, 0o777, b"", target)
        }

        pub(crate) fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
            self.entry(name, EntryType::Link, 0o644, b"", target)
        }

        /// A pax extended header applying to the next entry.
        pub(crate) fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
            let mut data = Vec::new();
            for (k, v) in records {
                let body = [k.as_bytes(), b"=", v, b"\n"].concat();
                let mut len = body.len() + 2;
                while format!("{len} ").len() + body.len() != len {
                    len += 1;
                }
                write!(data, "{len} ").expect("write");
                data.extend_from_slice(&body);
            }
            self.entry("PaxHeader", EntryType::XHeader, 0o644, &data, "")
        }

        pub(crate) fn finish(&mut self) -> Vec<u8> {
            self.builder
                .take()
                .expect("builder")
                .into_inner()
                .expect("finish tar")
        }
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    fn unpack(tar: &[u8], limits: &Limits) -> (tempfile::TempDir, Result<Unpacked, Error>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let res = unpack_layer(tar, "", dir.path(), limits);
        (dir, res)
    }

    fn rejected(tar: &[u8], entry: &str, why: &str) -> tempfile::TempDir {
        let (dir, res) = unpack(tar, &Limits::default());
        let err = res.expect_err("layer must be rejected");
        let msg = err.to_string();
        assert!(
            matches!(&err, Error::Layer { entry: e, .. } if e == entry),
            "wrong entry: {msg}"
        );
        assert!(msg.contains(why), "{msg}");
        dir
    }

    fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
        let p = CString::new(path.as_os_str().as_bytes()).expect("path");
        let n = CString::new(name).expect("name");
        let mut buf = vec![0u8; 256];
        // SAFETY: both strings are NUL-terminated and buf has buf.len() writable bytes.
        let rc =
            unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        (rc >= 0).then(|| buf[..rc as usize].to_vec())
    }

    #[test]
    fn components_normalize_and_refuse_escapes() {
        let ok = |s: &str| components(s.as_bytes()).expect(s);
        assert_eq!(ok("a/b"), vec![OsString::from("a"), "b".into()]);
        assert_eq!(ok("./a//b/./"), vec![OsString::from("a"), "b".into()]);
        assert!(ok("./").is_empty());
        assert!(ok("").is_empty());
        assert_eq!(ok("a..b/..c"), vec![OsString::from("a..b"), "..c".into()]);
        for bad in ["/etc/passwd", "../x", "a/../../x", "a/..", ".."] {
            assert!(components(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn compression_by_magic_and_media_type() {
        let oci = "application/vnd.oci.image.layer.v1.tar";
        assert_eq!(
            Compression::detect(oci, b"\x1f\x8b\x08").unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            Compression::detect(&format!("{oci}+zstd"), b"\x28\xb5\x2f\xfd").unwrap(),
            Compression::Zstd
        );
        assert_eq!(
            Compression::detect(oci, b"etc/\0\0").unwrap(),
            Compression::None
        );
        let docker = "application/vnd.docker.image.rootfs.diff.tar.gzip";
        assert_eq!(
            Compression::detect(docker, b"\x1f\x8b").unwrap(),
            Compression::Gzip
        );
        for bad in [
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
            "text/plain",
        ] {
            let err = Compression::detect(bad, b"\x1f\x8b")
                .unwrap_err()
                .to_string();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn pax_times_parse() {
        assert_eq!(parse_time(b"1600000000").unwrap(), (1_600_000_000, 0));
        assert_eq!(
            parse_time(b"1600000000.5").unwrap(),
            (1_600_000_000, 500_000_000)
        );
        assert_eq!(parse_time(b"12.000000001").unwrap(), (12, 1));
        assert!(parse_time(b"12.x").is_err());
        assert!(parse_time(b"soon").is_err());
    }

    #[test]
    fn diff_id_is_the_same_for_every_compression() {
        let raw = TarBuf::new().dir("a").file("a/f", b"hello").finish();
        let want = Digest::of_bytes(&raw);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&raw[..], 3).unwrap();
        for (media, blob) in [
            ("application/vnd.oci.image.layer.v1.tar", &raw),
            ("application/vnd.oci.image.layer.v1.tar+gzip", &gz),
            ("application/vnd.oci.image.layer.v1.tar+zstd", &zst),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let got = unpack_layer(&blob[..], media, dir.path(), &Limits::default()).unwrap();
            assert_eq!(got.diff_id, want, "{media}");
            assert_eq!(got.bytes, raw.len() as u64);
            assert_eq!(got.entries, 2);
            assert_eq!(fs::read(dir.path().join("a/f")).unwrap(), b"hello");
        }
    }

    #[test]
    fn keeps_modes_owners_times_links_and_nodes() {
        if !is_root() {
            eprintln!("SKIPPED: needs root for chown and mknod");
            return;
        }
        let mut t = TarBuf::new();
        t.dir("d")
            .pax(&[
                ("uid", b"1000"),
                ("gid", b"2000"),
                ("SCHILY.xattr.user.k", b"v"),
            ])
            .entry("d/f", EntryType::Regular, 0o4750, b"data", "")
            .hardlink("d/h", "d/f")
            .symlink("d/s", "/etc/passwd")
            .entry("d/fifo", EntryType::Fifo, 0o600, b"", "")
            .entry("d/null", EntryType::Char, 0o666, b"", "");
        let (dir, res) = unpack(&t.finish(), &Limits::default());
        res.unwrap();
        let d = dir.path().join("d");
        let f = fs::metadata(d.join("f")).unwrap();
        assert_eq!((f.uid(), f.gid()), (1000, 2000));
        assert_eq!(
            f.permissions().mode() & 0o7777,
            0o4750,
            "set-uid kept after chown"
        );
        assert_eq!(f.mtime(), 1_600_000_000);
        assert_eq!(f.nlink(), 2);
        assert_eq!(fs::metadata(d.join("h")).unwrap().ino(), f.ino());
        assert_eq!(xattr(&d.join("f"), "user.k").as_deref(), Some(&b"v"[..]));
        assert_eq!(
            fs::read_link(d.join("s")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert!(fs::symlink_metadata(d.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo());
        let null = fs::symlink_metadata(d.join("null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), libc::makedev(1, 3));
        let dm = fs::metadata(&d).unwrap();
        assert_eq!(dm.mtime(), 1_600_000_000, "dir mtime set after its content");
        assert_eq!(dm.permissions().mode() & 0o7777, 0o755);
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        if !is_root() {
            eprintln!("SKIPPED: needs root for mknod and trusted xattrs");
            return;
        }
        let mut t = TarBuf::new();
        t.dir("etc")
            .file("etc/.wh.motd", b"")
            .file("opt/app/.wh..wh..opq", b"")
            .file("opt/app/new", b"n")
            .file("opt/.wh..wh.plnk", b"")
            .pax(&[("SCHILY.xattr.trusted.overlay.redirect", b"/etc")])
            .dir("forged");
        let (dir, res) = unpack(&t.finish(), &Limits::default());
        res.unwrap();
        let wh = fs::symlink_metadata(dir.path().join("etc/motd")).unwrap();
        assert!(wh.file_type().is_char_device());
        assert_eq!((wh.rdev(), wh.uid(), wh.gid()), (0, 0, 0));
        assert!(!dir.path().join("etc/.wh.motd").exists());
        let app = dir.path().join("opt/app");
        assert_eq!(xattr(&app, OPAQUE_XATTR).as_deref(), Some(&b"y"[..]));
        assert!(!app.join(OPAQUE_MARKER).exists());
        assert!(app.join("new").exists());
        assert!(
            !dir.path().join("opt/.wh..wh.plnk").exists(),
            "aufs entries skipped"
        );
        assert_eq!(
            xattr(&dir.path().join("forged"), "trusted.overlay.redirect"),
            None
        );
    }

    #[test]
    fn later_entries_replace_earlier_ones() {
        let mut t = TarBuf::new();
        t.file("x", b"file")
            .dir("x")
            .file("x/inner", b"1")
            .file("x", b"file again")
            .symlink("s", "x")
            .file("s", b"not a link");
        let (dir, res) = unpack(&t.finish(), &Limits::default());
        res.unwrap();
        assert_eq!(fs::read(dir.path().join("x")).unwrap(), b"file again");
        assert_eq!(fs::read(dir.path().join("s")).unwrap(), b"not a link");
    }

    #[test]
    fn escapes_are_rejected_naming_the_entry() {
        rejected(
            &TarBuf::new().file("../escape", b"x").finish(),
            "../escape",
            "'..'",
        );
        rejected(
            &TarBuf::new().file("/abs/path", b"x").finish(),
            "/abs/path",
            "absolute",
        );
        let through_link = TarBuf::new()
            .symlink("evil", "/tmp")
            .file("evil/owned", b"x")
            .finish();
        rejected(&through_link, "evil/owned", "parent evil is a symlink");
        let up = TarBuf::new()
            .dir("a")
            .symlink("a/up", "..")
            .file("a/up/x", b"x")
            .finish();
        rejected(&up, "a/up/x", "parent a/up is a symlink");
        let abs_link = TarBuf::new().hardlink("pw", "/etc/passwd").finish();
        rejected(&abs_link, "pw", "absolute");
        let rel_link = TarBuf::new().hardlink("x", "../../x").finish();
        rejected(&rel_link, "x", "'..'");
        let via_symlink = TarBuf::new()
            .symlink("etc", "/etc")
            .hardlink("pw", "etc/passwd")
            .finish();
        rejected(&via_symlink, "pw", "parent etc is a symlink");
        let dir_link = TarBuf::new().dir("d").hardlink("l", "d").finish();
        rejected(&dir_link, "l", "directory");
        rejected(
            &TarBuf::new().file(".wh..", b"").finish(),
            ".wh..",
            "whiteout",
        );
    }

    #[test]
    fn sparse_files_count_their_expanded_size() {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..6].copy_from_slice(b"sparse");
        h.set_entry_type(EntryType::GNUSparse);
        h.set_mode(0o644);
        h.set_size(512);
        let gnu = h.as_gnu_mut().expect("gnu header");
        gnu.set_real_size(1 << 30);
        gnu.sparse[0].set_offset((1 << 30) - 512);
        gnu.sparse[0].set_length(512);
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&h, &[1u8; 512][..]).unwrap();
        let tar = b.into_inner().unwrap();
        assert!(tar.len() < 4096, "a small archive");
        let limits = Limits {
            max_bytes: 1 << 20,
            max_entries: 10,
        };
        let (dir, res) = unpack(&tar, &limits);
        let err = res.unwrap_err().to_string();
        assert!(
            err.contains("\"sparse\"") && err.contains("Limits.max_bytes"),
            "{err}"
        );
        assert!(
            !dir.path().join("sparse").exists(),
            "rejected before writing"
        );
    }

    #[test]
    fn limits_are_enforced() {
        let limits = Limits {
            max_bytes: 4096,
            max_entries: 3,
        };
        let big = TarBuf::new().file("big", &[0u8; 8192]).finish();
        let (_d, res) = unpack(&big, &limits);
        let err = res.unwrap_err().to_string();
        assert!(
            err.contains("\"big\"") && err.contains("Limits.max_bytes"),
            "{err}"
        );
        let many = TarBuf::new()
            .file("1", b"")
            .file("2", b"")
            .file("3", b"")
            .file("4", b"")
            .finish();
        let (_d, res) = unpack(&many, &limits);
        let err = res.unwrap_err().to_string();
        assert!(
            err.contains("\"4\"") && err.contains("Limits.max_entries"),
            "{err}"
        );
    }
}
