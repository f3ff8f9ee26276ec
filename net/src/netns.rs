//! Persistent network namespaces bound to files, as `ip netns add` makes them, and
//! running code inside one on a dedicated thread (a thread's namespace is its own;
//! the caller's threads are never moved).

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::fd::AsFd;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::error::{Error, Result};

/// Creates a new network namespace and binds it at `path` (which must not exist).
///
/// The parent directory is made a shared mount first (bound onto itself when it is
/// not a mount point), as `ip netns` does with /run/netns, so the binding reaches
/// mount namespaces created later and its removal reaches them too.
pub fn create_netns(path: &Path) -> Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|e| Error::io("create netns directory", parent, e))?;
    make_shared(parent)?;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::io("create netns file", path, e))?;
    let bound = std::thread::scope(|s| {
        s.spawn(|| -> Result<()> {
            unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::sys("unshare(CLONE_NEWNET)", e))?;
            let own = format!("/proc/self/task/{}/ns/net", nix::unistd::gettid());
            mount(
                Some(own.as_str()),
                path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| Error::sys(format!("bind {own} onto {}", path.display()), e))
        })
        .join()
        .unwrap_or_else(|_| Err(Error::sys("netns helper thread panicked", Errno::EIO)))
    });
    if bound.is_err() {
        let _ = fs::remove_file(path);
    }
    bound
}

fn make_shared(dir: &Path) -> Result<()> {
    let shared = || {
        mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL) => {
            mount(
                Some(dir),
                dir,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| Error::sys(format!("bind {} onto itself", dir.display()), e))?;
            shared().map_err(|e| Error::sys(format!("make {} a shared mount", dir.display()), e))
        }
        Err(e) => Err(Error::sys(
            format!("make {} a shared mount", dir.display()),
            e,
        )),
    }
}

/// Unbinds and removes the namespace file at `path`; nothing there is fine.
pub fn delete_netns(path: &Path) -> Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(Error::sys(format!("umount {}", path.display()), e)),
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove netns file", path, e)),
    }
}

/// Runs `f` on a new thread that has joined the network namespace at `path`, and
/// returns its result. Sockets opened by `f` stay in that namespace after it returns.
pub fn in_netns<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> Result<T> {
    let ns = File::open(path).map_err(|e| Error::io("open netns", path, e))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::sys(format!("setns to {}", path.display()), e))?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| {
            Err(Error::sys(
                format!("thread in netns {} panicked", path.display()),
                Errno::EIO,
            ))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::Socket;

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn create_enter_delete() {
        if !is_root() {
            eprintln!("SKIPPED: netns tests need root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ns").join("a");
        create_netns(&path).unwrap();
        let err = create_netns(&path).unwrap_err().to_string();
        assert!(err.contains("create netns file"), "{err}");
        let host_ns = fs::read_link("/proc/thread-self/ns/net").unwrap();
        let inner = in_netns(&path, || {
            let ns = fs::read_link("/proc/thread-self/ns/net").unwrap();
            let links = Socket::open().and_then(|mut s| s.link("lo"));
            (ns, links)
        })
        .unwrap();
        assert_ne!(inner.0, host_ns);
        let lo = inner.1.unwrap().expect("lo in new netns");
        assert!(!lo.up, "loopback starts down in a new netns");
        assert_eq!(fs::read_link("/proc/thread-self/ns/net").unwrap(), host_ns);
        delete_netns(&path).unwrap();
        assert!(!path.exists());
        delete_netns(&path).unwrap();
        umount2(&dir.path().join("ns"), MntFlags::MNT_DETACH).unwrap();
    }
}
