//! Paths inside the rootfs: resolve them as the container would see them, so a
//! symlink planted in the image cannot send a mount or a mknod onto the host.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// Linux gives up after 40 links in one lookup; be as strict.
const MAX_SYMLINKS: usize = 40;

fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// Resolve `path` as if `root` were "/": absolute symlinks restart at `root`, `..` stops at
/// `root`, components that do not exist yet are taken literally. The result is `root` joined
/// with a path free of symlinks (as long as nobody changes the tree meanwhile).
pub fn resolve_in_root(root: &Path, path: &Path) -> io::Result<PathBuf> {
    let mut resolved = PathBuf::new();
    let mut pending = components(path);
    let mut links = 0;
    while let Some(c) = pending.pop_front() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&c);
        let full = root.join(&candidate);
        match fs::symlink_metadata(&full) {
            Ok(md) if md.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = fs::read_link(&full)?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                let mut next = components(&target);
                next.extend(pending);
                pending = next;
            }
            Ok(_) => resolved = candidate,
            Err(e) if is_missing(&e) => resolved = candidate,
            Err(e) => return Err(e),
        }
    }
    Ok(if resolved.as_os_str().is_empty() {
        root.to_path_buf()
    } else {
        root.join(resolved)
    })
}

fn is_missing(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

/// Resolve `path` in `root` and create it (and its parents) as directories.
pub fn mkdir_all_in_root(root: &Path, path: &Path) -> io::Result<PathBuf> {
    let dir = resolve_in_root(root, path)?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&dir)?;
    Ok(dir)
}

/// Resolve `path` in `root` and make sure something exists there, creating an empty
/// file (and parent directories) when nothing does.
pub fn ensure_file_in_root(root: &Path, path: &Path) -> io::Result<PathBuf> {
    let file = resolve_in_root(root, path)?;
    if let Some(parent) = file.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)?;
    }
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&file)
    {
        Ok(_) => Ok(file),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(file),
        Err(e) => Err(e),
    }
}

/// An `O_PATH` descriptor on a resolved path, checked to still name that path, so a
/// mount through `/proc/self/fd/N` lands where the resolution said (runc's WithProcfd).
pub struct PathFd {
    fd: OwnedFd,
}

impl PathFd {
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)?;
        if file.metadata()?.file_type().is_symlink() {
            return Err(io::Error::other(format!(
                "{} is a symlink: it changed after being resolved",
                path.display()
            )));
        }
        let this = PathFd { fd: file.into() };
        let actual = fs::read_link(this.proc_path())?;
        if actual != path {
            return Err(io::Error::other(format!(
                "{} changed while being resolved (now {}): possible symlink race",
                path.display(),
                actual.display()
            )));
        }
        Ok(this)
    }

    /// The magic link that stands for this descriptor in path-based syscalls.
    pub fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    pub fn raw(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().expect("tempdir");
        let r = t.path();
        fs::create_dir_all(r.join("usr/lib")).unwrap();
        fs::create_dir_all(r.join("etc")).unwrap();
        fs::write(r.join("etc/file"), "x").unwrap();
        symlink("/usr/lib", r.join("lib")).unwrap();
        symlink("../../../../../../etc", r.join("usr/escape")).unwrap();
        symlink("/../../../../tmp", r.join("abs-escape")).unwrap();
        symlink("loop2", r.join("loop1")).unwrap();
        symlink("loop1", r.join("loop2")).unwrap();
        symlink("usr/lib/missing/deeper", r.join("dangling")).unwrap();
        symlink("lib", r.join("usr/rel")).unwrap();
        t
    }

    #[test]
    fn plain_and_missing_components() {
        let t = tree();
        let r = t.path();
        assert_eq!(
            resolve_in_root(r, Path::new("/etc/file")).unwrap(),
            r.join("etc/file")
        );
        assert_eq!(
            resolve_in_root(r, Path::new("/no/such/dir")).unwrap(),
            r.join("no/such/dir")
        );
        assert_eq!(resolve_in_root(r, Path::new("/")).unwrap(), r);
        assert_eq!(resolve_in_root(r, Path::new("")).unwrap(), r);
        assert_eq!(
            resolve_in_root(r, Path::new("etc/./file")).unwrap(),
            r.join("etc/file")
        );
    }

    #[test]
    fn absolute_symlinks_are_relative_to_root() {
        let t = tree();
        let r = t.path();
        assert_eq!(
            resolve_in_root(r, Path::new("/lib/x")).unwrap(),
            r.join("usr/lib/x")
        );
        assert_eq!(
            resolve_in_root(r, Path::new("/abs-escape/x")).unwrap(),
            r.join("tmp/x")
        );
    }

    #[test]
    fn dotdot_is_clamped_at_root() {
        let t = tree();
        let r = t.path();
        assert_eq!(
            resolve_in_root(r, Path::new("/../../etc")).unwrap(),
            r.join("etc")
        );
        assert_eq!(
            resolve_in_root(r, Path::new("/usr/escape/file")).unwrap(),
            r.join("etc/file")
        );
        assert_eq!(
            resolve_in_root(r, Path::new("/usr/rel/../x")).unwrap(),
            r.join("usr/x")
        );
    }

    #[test]
    fn dangling_symlink_is_followed_inside_root() {
        let t = tree();
        let r = t.path();
        assert_eq!(
            resolve_in_root(r, Path::new("/dangling")).unwrap(),
            r.join("usr/lib/missing/deeper")
        );
    }

    #[test]
    fn symlink_loops_fail() {
        let t = tree();
        let err = resolve_in_root(t.path(), Path::new("/loop1/x")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
    }

    #[test]
    fn file_in_the_way_is_taken_literally() {
        let t = tree();
        let r = t.path();
        assert_eq!(
            resolve_in_root(r, Path::new("/etc/file/sub")).unwrap(),
            r.join("etc/file/sub")
        );
    }

    #[test]
    fn creation_stays_inside() {
        let t = tree();
        let r = t.path();
        let d = mkdir_all_in_root(r, Path::new("/abs-escape/made/here")).unwrap();
        assert_eq!(d, r.join("tmp/made/here"));
        assert!(d.is_dir());
        let f = ensure_file_in_root(r, Path::new("/lib/sub/f")).unwrap();
        assert_eq!(f, r.join("usr/lib/sub/f"));
        assert!(f.is_file());
        // An existing file is left alone.
        fs::write(&f, "keep").unwrap();
        ensure_file_in_root(r, Path::new("/lib/sub/f")).unwrap();
        assert_eq!(fs::read_to_string(&f).unwrap(), "keep");
    }

    #[test]
    fn path_fd_checks_the_path() {
        let t = tree();
        let r = t.path().canonicalize().unwrap();
        let fd = PathFd::open(&r.join("etc")).unwrap();
        assert_eq!(fs::read_link(fd.proc_path()).unwrap(), r.join("etc"));
        // Callers resolve first, so a symlink here means the tree changed meanwhile.
        assert!(PathFd::open(&r.join("lib")).is_err());
        assert!(PathFd::open(&r.join("nonexistent")).is_err());
    }
}
