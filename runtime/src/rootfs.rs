//! The container's filesystem view, per the OCI runtime spec: `root`, `mounts`,
//! `linux.rootfsPropagation`, `linux.maskedPaths`, `linux.readonlyPaths`,
//! `linux.devices` and `linux.sysctl` (`linux.mountLabel` is ignored).
//!
//! The container init, already in its new mount namespace, calls [`prepare`]
//! (propagation, rootfs bind, every `mounts` entry, /dev), then [`pivot`] (or
//! [`move_root`] for --no-pivot), then [`finalize`] (sysctl, masks, read-only
//! parts). The console, if any, is bound on /dev/console between `pivot` and
//! `finalize`, while /dev is still writable. [`validate`] runs when config.json
//! is loaded, before anything is created.
//!
//! Safety against hostile images: every destination inside the rootfs is resolved
//! with [`resolve_in_root`] (absolute symlinks are relative to the rootfs, `..`
//! stops at it) and then mounted on through an `O_PATH` descriptor checked to
//! still name the resolved path, so a planted symlink cannot aim a mount or a
//! device node at the host.
//!
//! Where the spec is silent this follows runc: "/" rslave by default, a shared
//! parent of the rootfs made private, tmpfs and /dev mounted read-write and made
//! read-only in `finalize`, bind flags applied by a second remount that keeps the
//! flags already on the mount, /dev populated unless the config binds one.

mod devices;
mod mountinfo;
mod mounts;
mod options;
mod resolve;
#[cfg(test)]
mod root_tests;
mod sys;
mod validate;

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::mount::{umount2, MntFlags, MsFlags};
use oci_spec::runtime::Spec;

use crate::error::{Context, Error};
use sys::{do_mount, remount_keep};

pub use options::{parse_options, MountOptions, MOUNT_OPTIONS};
pub use resolve::resolve_in_root;
pub use validate::validate;

/// What init knows about the container that config.json does not say.
#[derive(Debug, Clone, Default)]
pub struct RootfsContext {
    /// Absolute, already resolved from the bundle.
    pub rootfs: PathBuf,
    /// Relative bind-mount sources are relative to the bundle.
    pub bundle: PathBuf,
    /// Device nodes cannot be mknod'ed: bind-mount the host's instead.
    pub in_user_ns: bool,
    /// Whether a new cgroup namespace was created.
    pub cgroup_ns: bool,
    /// (controller, or "" for v2; absolute host directory of the container's cgroup),
    /// for `cgroup` mounts.
    pub cgroup_paths: Vec<(String, PathBuf)>,
}

/// `linux.rootfsPropagation` as mount flags, `None` when unset.
fn root_propagation(spec: &Spec) -> crate::Result<Option<MsFlags>> {
    let Some(value) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().clone())
    else {
        return Ok(None);
    };
    options::propagation_option(&value)
        .map(Some)
        .ok_or_else(|| Error::Config {
            file: PathBuf::from("config.json"),
            msg: format!("linux.rootfsPropagation: unknown value {value:?}"),
        })
}

/// In the new mount namespace, before pivot_root: make "/" rslave (or what
/// linux.rootfsPropagation says) so nothing propagates back to the host, bind-mount the
/// rootfs onto itself, do every entry of `mounts` in order, create the devices and links.
pub fn prepare(spec: &Spec, ctx: &RootfsContext) -> crate::Result<()> {
    let rootfs = fs::canonicalize(&ctx.rootfs)
        .step(|| format!("resolve rootfs {}", ctx.rootfs.display()))?;
    let propagation = root_propagation(spec)?.unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    do_mount(None, Path::new("/"), None, propagation, None)
        .step(|| format!("set propagation {propagation:?} on /"))?;
    // After a recursive slave/private/unbindable change nothing is shared
    // any more: skip reading the host's (long) mount table to check.
    if !propagation.contains(MsFlags::MS_REC) || propagation.contains(MsFlags::MS_SHARED) {
        make_parent_private(&rootfs)?;
    }
    do_mount(
        Some(&rootfs),
        &rootfs,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .step(|| format!("bind-mount rootfs {} onto itself", rootfs.display()))?;
    let env = mounts::Env {
        rootfs: &rootfs,
        ctx,
    };
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        mounts::mount_entry(&env, i, m)?;
    }
    if devices::needs_setup(spec) {
        devices::setup(&rootfs, spec, ctx.in_user_ns)?;
    }
    Ok(())
}

/// pivot_root(2) refuses a shared parent, and a bind under a shared parent would show
/// up on the host: make the mount holding the rootfs private if it is shared.
fn make_parent_private(rootfs: &Path) -> crate::Result<()> {
    let infos = mountinfo::read()?;
    match mountinfo::mount_of(&infos, rootfs) {
        Some(m) if m.is_shared() => do_mount(None, &m.mount_point, None, MsFlags::MS_PRIVATE, None)
            .step(|| {
                format!(
                    "make {} (parent of the rootfs) private",
                    m.mount_point.display()
                )
            }),
        _ => Ok(()),
    }
}

fn open_dir(path: &Path) -> crate::Result<fs::File> {
    fs::File::open(path).step(|| format!("open {}", path.display()))
}

/// pivot_root into `rootfs` without a put_old directory: pivot_root(".", ".") stacks the
/// old root on the new one, then it is detached. Ends in "/".
pub fn pivot(rootfs: &Path) -> crate::Result<()> {
    let old_root = open_dir(Path::new("/"))?;
    let new_root = open_dir(rootfs)?;
    nix::unistd::fchdir(new_root.as_raw_fd())
        .step(|| format!("chdir to rootfs {}", rootfs.display()))?;
    nix::unistd::pivot_root(".", ".").step(|| format!("pivot_root to {}", rootfs.display()))?;
    // The kernel does not promise where "." is after pivot_root: go to the old root.
    nix::unistd::fchdir(old_root.as_raw_fd()).step(|| "chdir to the old root after pivot_root")?;
    // rslave, not rprivate, so host unmounts still reach mounts we hold while detaching.
    do_mount(
        None,
        Path::new("."),
        None,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None,
    )
    .step(|| "make the old root rslave")?;
    umount2(".", MntFlags::MNT_DETACH).step(|| "detach the old root")?;
    nix::unistd::chdir("/").step(|| "chdir / in the new root")
}

/// --no-pivot: move the rootfs mount onto "/" and chroot into it (for roots on a ramdisk,
/// where pivot_root fails). The host's procfs and sysfs mounts are hidden first: the
/// kernel allows mounting a new procfs/sysfs only if no fully visible one is reachable.
pub fn move_root(rootfs: &Path) -> crate::Result<()> {
    let rootfs =
        fs::canonicalize(rootfs).step(|| format!("resolve rootfs {}", rootfs.display()))?;
    hide_host_proc_and_sys(&rootfs)?;
    nix::unistd::chdir(&rootfs).step(|| format!("chdir to rootfs {}", rootfs.display()))?;
    do_mount(Some(&rootfs), Path::new("/"), None, MsFlags::MS_MOVE, None)
        .step(|| format!("move the rootfs mount {} onto /", rootfs.display()))?;
    nix::unistd::chroot(".").step(|| format!("chroot into {}", rootfs.display()))?;
    nix::unistd::chdir("/").step(|| "chdir / in the new root")
}

fn hide_host_proc_and_sys(rootfs: &Path) -> crate::Result<()> {
    let mut targets: Vec<PathBuf> = mountinfo::read()?
        .into_iter()
        .filter(|m| m.root == Path::new("/") && (m.fstype == "proc" || m.fstype == "sysfs"))
        .map(|m| m.mount_point)
        .filter(|p| !p.starts_with(rootfs))
        .collect();
    targets.sort_by_key(|p| p.components().count());
    let mut hidden: Vec<PathBuf> = Vec::new();
    for p in targets {
        if hidden.iter().any(|h| p.starts_with(h)) {
            continue; // went with its parent
        }
        match do_mount(None, &p, None, MsFlags::MS_SLAVE | MsFlags::MS_REC, None) {
            Err(nix::errno::Errno::ENOENT) => continue,
            r => r.step(|| format!("make {} rslave before hiding it", p.display()))?,
        }
        match umount2(&p, MntFlags::MNT_DETACH) {
            Ok(()) => {}
            // Cannot unmount (locked in a user namespace): cover it instead.
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::EPERM) => do_mount(
                Some(Path::new("tmpfs")),
                &p,
                Some("tmpfs"),
                MsFlags::empty(),
                None,
            )
            .step(|| format!("cover host {} with a tmpfs", p.display()))?,
            Err(e) => return Err(Error::sys(format!("unmount host {}", p.display()), e)),
        }
        hidden.push(p);
    }
    Ok(())
}

/// After pivot (in the container's "/"): remount read-only what `prepare` left writable,
/// write sysctls, mask and protect paths, make "/" read-only if asked, and apply the
/// final linux.rootfsPropagation.
pub fn finalize(spec: &Spec) -> crate::Result<()> {
    remount_delayed_readonly(spec)?;
    write_sysctls(spec)?;
    let linux = spec.linux().as_ref();
    for (i, p) in linux
        .and_then(|l| l.masked_paths().as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        mask_path(Path::new(p), i)?;
    }
    for (i, p) in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        readonly_path(Path::new(p), i)?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        remount_keep(Path::new("/"), MsFlags::MS_RDONLY, MsFlags::empty())
            .step(|| "remount / read-only (root.readonly)")?;
    }
    if let Some(p) = root_propagation(spec)? {
        do_mount(None, Path::new("/"), None, p, None)
            .step(|| format!("set linux.rootfsPropagation {p:?} on /"))?;
    }
    Ok(())
}

/// tmpfs and /dev mounts were mounted writable so they could be filled.
fn remount_delayed_readonly(spec: &Spec) -> crate::Result<()> {
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let opts = parse_options(m.options().as_deref().unwrap_or_default());
        // Not cleaned: the kernel now resolves it in the container as prepare did.
        let dest = m.destination();
        let delayed = validate::effective_type(m, opts.is_bind()) == "tmpfs"
            || validate::clean(dest) == Path::new("/dev");
        if delayed && opts.flags.contains(MsFlags::MS_RDONLY) {
            remount_keep(dest, MsFlags::MS_RDONLY, MsFlags::empty())
                .step(|| format!("remount {} read-only (mounts[{i}])", dest.display()))?;
        }
    }
    Ok(())
}

fn write_sysctls(spec: &Spec) -> crate::Result<()> {
    let Some(sysctls) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    let mut sorted: Vec<_> = sysctls.iter().collect();
    sorted.sort();
    for (key, value) in sorted {
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        fs::write(&path, value)
            .step(|| format!("write sysctl {key}={value:?} to {}", path.display()))?;
    }
    Ok(())
}

/// Cover a file with /dev/null, a directory with an empty read-only tmpfs. Paths that do
/// not exist are left alone.
fn mask_path(path: &Path, i: usize) -> crate::Result<()> {
    let md = match fs::metadata(path) {
        Ok(md) => md,
        Err(e)
            if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            return Ok(())
        }
        Err(e) => {
            return Err(Error::io(
                format!("stat {} (linux.maskedPaths[{i}])", path.display()),
                e,
            ))
        }
    };
    if md.is_dir() {
        do_mount(
            Some(Path::new("tmpfs")),
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None,
        )
        .step(|| {
            format!(
                "mask {} with a read-only tmpfs (linux.maskedPaths[{i}])",
                path.display()
            )
        })
    } else {
        do_mount(
            Some(Path::new("/dev/null")),
            path,
            None,
            MsFlags::MS_BIND,
            None,
        )
        .step(|| {
            format!(
                "mask {} with /dev/null (linux.maskedPaths[{i}])",
                path.display()
            )
        })
    }
}

/// Bind a path onto itself and make that bind read-only, keeping its other flags.
fn readonly_path(path: &Path, i: usize) -> crate::Result<()> {
    match do_mount(
        Some(path),
        path,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    ) {
        Ok(()) => {}
        Err(nix::errno::Errno::ENOENT) => return Ok(()),
        Err(e) => {
            return Err(Error::sys(
                format!(
                    "bind-mount {} onto itself (linux.readonlyPaths[{i}])",
                    path.display()
                ),
                e,
            ))
        }
    }
    remount_keep(path, MsFlags::MS_RDONLY, MsFlags::empty()).step(|| {
        format!(
            "remount {} read-only (linux.readonlyPaths[{i}])",
            path.display()
        )
    })
}
