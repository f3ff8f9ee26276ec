//! One config.json `mounts` entry onto the rootfs, before pivot_root.
//!
//! Every destination is resolved inside the rootfs first, then mounted on through an
//! `O_PATH` descriptor that is checked to still name the resolved path.

use std::fs;
use std::io;
use std::os::unix::fs::{symlink, DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;
use oci_spec::runtime::Mount;

use super::mountinfo;
use super::options::{parse_options, MountOptions, PER_MOUNT};
use super::resolve::{ensure_file_in_root, mkdir_all_in_root, resolve_in_root, PathFd};
use super::sys::{self, do_mount, flag_names, remount_keep};
use super::validate::{check_proc_destination, effective_type};
use super::RootfsContext;
use crate::error::{Context, Error};

/// What the mount code needs besides the entry itself.
pub struct Env<'a> {
    /// Canonical host path of the rootfs.
    pub rootfs: &'a Path,
    pub ctx: &'a RootfsContext,
}

/// One entry, parsed.
struct Entry<'a> {
    index: usize,
    mount: &'a Mount,
    opts: MountOptions,
    typ: &'a str,
}

impl Entry<'_> {
    fn label(&self) -> String {
        format!("mounts[{}]", self.index)
    }

    fn source_or(&self, default: &str) -> PathBuf {
        match self.mount.source() {
            Some(s) if !s.as_os_str().is_empty() => s.clone(),
            _ => PathBuf::from(default),
        }
    }
}

pub fn mount_entry(env: &Env, index: usize, mount: &Mount) -> crate::Result<()> {
    let opts = parse_options(mount.options().as_deref().unwrap_or_default());
    if let Some(o) = &opts.idmap {
        return Err(Error::Config {
            file: PathBuf::from("config.json"),
            msg: format!("mounts[{index}].options: {o:?}: id-mapped mounts are not supported"),
        });
    }
    let typ = effective_type(mount, opts.is_bind());
    let e = Entry {
        index,
        mount,
        opts,
        typ,
    };
    match e.typ {
        "bind" => mount_bind(env, &e),
        "tmpfs" => mount_tmpfs(env, &e),
        "cgroup" => mount_cgroup(env, &e),
        _ => mount_fs(env, &e),
    }
}

/// The container's view of a resolved host path inside the rootfs.
fn in_container(rootfs: &Path, host: &Path) -> PathBuf {
    Path::new("/").join(host.strip_prefix(rootfs).unwrap_or(host))
}

fn open_target(dest: &Path, label: &str) -> crate::Result<PathFd> {
    PathFd::open(dest).step(|| format!("open mount target {} ({label})", dest.display()))
}

fn resolve(env: &Env, e: &Entry) -> crate::Result<PathBuf> {
    resolve_in_root(env.rootfs, e.mount.destination()).step(|| {
        format!(
            "resolve {} in {} ({})",
            e.mount.destination().display(),
            env.rootfs.display(),
            e.label()
        )
    })
}

fn mkdir(env: &Env, e: &Entry) -> crate::Result<PathBuf> {
    mkdir_all_in_root(env.rootfs, e.mount.destination()).step(|| {
        format!(
            "create mount point {} ({})",
            e.mount.destination().display(),
            e.label()
        )
    })
}

fn proc_check(env: &Env, e: &Entry, dest: &Path) -> crate::Result<()> {
    check_proc_destination(&in_container(env.rootfs, dest), e.typ).map_err(|msg| Error::Config {
        file: PathBuf::from("config.json"),
        msg: format!("{}.destination: {msg}", e.label()),
    })
}

fn bind(source: &Path, dest: &Path, recursive: bool, label: &str) -> crate::Result<()> {
    let target = open_target(dest, label)?;
    let rec = if recursive {
        MsFlags::MS_REC
    } else {
        MsFlags::empty()
    };
    do_mount(
        Some(source),
        &target.proc_path(),
        None,
        MsFlags::MS_BIND | rec,
        None,
    )
    .step(|| {
        format!(
            "bind-mount {} on {} ({label})",
            source.display(),
            dest.display()
        )
    })
}

/// After the mount itself: the per-mount flags a bind mount ignores (a second
/// MS_REMOUNT|MS_BIND pass), propagation, then the recursive attributes.
fn finish(dest: &Path, opts: &MountOptions, remount: bool, label: &str) -> crate::Result<()> {
    if remount && opts.flags.intersects(PER_MOUNT) {
        let target = open_target(dest, label)?;
        remount_keep(&target.proc_path(), opts.flags, opts.cleared).step(|| {
            format!(
                "remount {} {} ({label})",
                dest.display(),
                flag_names(opts.flags & PER_MOUNT)
            )
        })?;
    }
    for p in &opts.propagation {
        let target = open_target(dest, label)?;
        do_mount(None, &target.proc_path(), None, *p, None)
            .step(|| format!("set propagation {p:?} on {} ({label})", dest.display()))?;
    }
    if opts.rec_set != 0 || opts.rec_clr != 0 {
        let target = open_target(dest, label)?;
        sys::mount_setattr_recursive(target.raw(), opts.rec_set, opts.rec_clr)
            .step(|| format!("mount_setattr {} recursively ({label})", dest.display()))?;
    }
    Ok(())
}

fn mount_bind(env: &Env, e: &Entry) -> crate::Result<()> {
    let source = e.source_or("");
    let source = if source.is_relative() {
        env.ctx.bundle.join(source)
    } else {
        source
    };
    let md = fs::metadata(&source)
        .step(|| format!("stat bind source {} ({})", source.display(), e.label()))?;
    let dest = if md.is_dir() {
        mkdir(env, e)?
    } else {
        ensure_file_in_root(env.rootfs, e.mount.destination()).step(|| {
            format!(
                "create mount point {} ({})",
                e.mount.destination().display(),
                e.label()
            )
        })?
    };
    proc_check(env, e, &dest)?;
    if in_container(env.rootfs, &dest) == Path::new("/proc") && !sys::is_procfs(&source) {
        return Err(Error::Config {
            file: PathBuf::from("config.json"),
            msg: format!(
                "{}.source: only a procfs may be bind-mounted on /proc",
                e.label()
            ),
        });
    }
    bind(&source, &dest, e.opts.is_recursive_bind(), &e.label())?;
    finish(&dest, &e.opts, true, &e.label())
}

/// Mount `typ` from `source` on the mount point `target` stands for.
fn mount_on(
    source: &Path,
    target: &PathFd,
    typ: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> nix::Result<()> {
    do_mount(Some(source), &target.proc_path(), Some(typ), flags, data)
}

fn mount_step(e: &Entry, dest: &Path) -> String {
    let typ = if e.typ.is_empty() { "(no type)" } else { e.typ };
    format!("mount {typ} on {} ({})", dest.display(), e.label())
}

/// proc, sysfs, devpts, mqueue and any other filesystem type.
fn mount_fs(env: &Env, e: &Entry) -> crate::Result<()> {
    let dest = fs_mount_point(env, e)?;
    let mut flags = e.opts.flags;
    // /dev is filled with nodes first; finalize makes it read-only.
    if in_container(env.rootfs, &dest) == Path::new("/dev") {
        flags -= MsFlags::MS_RDONLY;
    }
    let target = open_target(&dest, &e.label())?;
    let bound = mount_with_fallbacks(env, e, &target, &dest, flags)?;
    finish(&dest, &e.opts, bound, &e.label())
}

/// Resolve and create the mount point; procfs and sysfs only go on directories
/// (mounting them over a planted file or link has been an attack vector).
fn fs_mount_point(env: &Env, e: &Entry) -> crate::Result<PathBuf> {
    let dest = resolve(env, e)?;
    let is_dir = fs::symlink_metadata(&dest).map_or(true, |md| md.is_dir());
    if matches!(e.typ, "proc" | "sysfs") && !is_dir {
        return Err(Error::io(
            mount_step(e, &dest),
            io::Error::other(format!("{} must be mounted on a directory", e.typ)),
        ));
    }
    let dest = mkdir(env, e)?;
    proc_check(env, e, &dest)?;
    Ok(dest)
}

/// Mount, or in a user namespace fall back like runc/crun do. Returns whether the result
/// is a bind mount (whose flags still need a remount).
fn mount_with_fallbacks(
    env: &Env,
    e: &Entry,
    target: &PathFd,
    dest: &Path,
    flags: MsFlags,
) -> crate::Result<bool> {
    let source = e.source_or(e.typ);
    let data = e.opts.data_string();
    match mount_on(&source, target, e.typ, flags, data.as_deref()) {
        Ok(()) => Ok(false),
        Err(Errno::EPERM) if env.ctx.in_user_ns => match host_fallback(e.typ) {
            Some(host) => bind(Path::new(host), dest, true, &e.label()).map(|()| true),
            None => Err(Error::sys(mount_step(e, dest), Errno::EPERM)),
        },
        Err(Errno::EINVAL)
            if e.typ == "devpts" && env.ctx.in_user_ns && e.opts.has_data_key("gid") =>
        {
            // gid=5 is not mapped in every user namespace: take the default group.
            let data: Vec<&str> = e
                .opts
                .data
                .iter()
                .map(String::as_str)
                .filter(|d| !d.starts_with("gid="))
                .collect();
            mount_on(&source, target, e.typ, flags, Some(&data.join(",")))
                .step(|| mount_step(e, dest))?;
            Ok(false)
        }
        Err(errno) => Err(Error::sys(mount_step(e, dest), errno)),
    }
}

/// A user namespace that does not own the network (IPC) namespace cannot mount sysfs
/// (mqueue): bind the host's instead, as runc and crun do.
fn host_fallback(typ: &str) -> Option<&'static str> {
    match typ {
        "sysfs" => Some("/sys"),
        "mqueue" => Some("/dev/mqueue"),
        _ => None,
    }
}

fn mount_tmpfs(env: &Env, e: &Entry) -> crate::Result<()> {
    let resolved = resolve(env, e)?;
    let before = fs::metadata(&resolved).ok();
    let dest = mkdir(env, e)?;
    proc_check(env, e, &dest)?;
    // Opened before the mount, this keeps reaching what the tmpfs is about to cover.
    let lower = match e.opts.copyup {
        true => Some(
            open_dir(&dest)
                .step(|| format!("open {} for tmpcopyup ({})", dest.display(), e.label()))?,
        ),
        false => None,
    };
    // Delay read-only until finalize: the tmpfs may be filled (copyup, /dev nodes) first.
    let flags = e.opts.flags - MsFlags::MS_RDONLY;
    let data = e.opts.data_string();
    let target = open_target(&dest, &e.label())?;
    mount_on(
        &e.source_or("tmpfs"),
        &target,
        "tmpfs",
        flags,
        data.as_deref(),
    )
    .step(|| mount_step(e, &dest))?;
    if let Some(lower) = lower {
        let from = PathBuf::from(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&lower)
        ));
        copy_tree(&from, &dest).step(|| {
            format!(
                "copy the contents of {} into the new tmpfs (tmpcopyup, {})",
                dest.display(),
                e.label()
            )
        })?;
    }
    if let Some(md) = before {
        keep_owner_and_mode(&dest, &md, &e.opts)
            .step(|| format!("set mode of tmpfs {} ({})", dest.display(), e.label()))?;
    }
    finish(&dest, &e.opts, false, &e.label())
}

/// A tmpfs over an existing directory keeps its mode (runc) and, with tmpcopyup, its
/// owner, unless the options say otherwise.
fn keep_owner_and_mode(dest: &Path, before: &fs::Metadata, opts: &MountOptions) -> io::Result<()> {
    if opts.copyup && !opts.has_data_key("uid") && !opts.has_data_key("gid") {
        std::os::unix::fs::chown(dest, Some(before.uid()), Some(before.gid()))?;
    }
    if !opts.has_data_key("mode") {
        fs::set_permissions(dest, fs::Permissions::from_mode(before.mode() & 0o7777))?;
    }
    Ok(())
}

fn open_dir(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Copy a directory tree as is: files, directories, symlinks (not followed), device
/// nodes and fifos, with owners and modes.
pub fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    for entry in fs::read_dir(from)? {
        let name = entry?.file_name();
        let (src, dst) = (from.join(&name), to.join(&name));
        let md = fs::symlink_metadata(&src)?;
        let ft = md.file_type();
        if ft.is_dir() {
            fs::DirBuilder::new().mode(0o700).create(&dst)?;
            copy_tree(&src, &dst)?;
        } else if ft.is_file() {
            copy_file(&src, &dst)?;
        } else if ft.is_symlink() {
            symlink(fs::read_link(&src)?, &dst)?;
        } else if let Some(kind) = node_kind(&ft) {
            let mode = nix::sys::stat::Mode::from_bits_truncate(md.mode() & 0o7777);
            nix::sys::stat::mknod(&dst, kind, mode, md.rdev()).map_err(io::Error::from)?;
        } else {
            continue; // sockets belong to a process, not to the image
        }
        std::os::unix::fs::lchown(&dst, Some(md.uid()), Some(md.gid()))?;
        // After chown, which clears set-id bits.
        if !ft.is_symlink() {
            fs::set_permissions(&dst, fs::Permissions::from_mode(md.mode() & 0o7777))?;
        }
    }
    Ok(())
}

fn node_kind(ft: &fs::FileType) -> Option<nix::sys::stat::SFlag> {
    use nix::sys::stat::SFlag;
    use std::os::unix::fs::FileTypeExt;
    if ft.is_char_device() {
        Some(SFlag::S_IFCHR)
    } else if ft.is_block_device() {
        Some(SFlag::S_IFBLK)
    } else if ft.is_fifo() {
        Some(SFlag::S_IFIFO)
    } else {
        None
    }
}

fn copy_file(src: &Path, dst: &Path) -> io::Result<()> {
    let mut input = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(src)?;
    let mut output = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dst)?;
    io::copy(&mut input, &mut output).map(drop)
}

fn mount_cgroup(env: &Env, e: &Entry) -> crate::Result<()> {
    if sys::cgroup2_unified() {
        cgroup_v2(env, e)
    } else {
        cgroup_v1(env, e)
    }
}

/// cgroup v2: a cgroup namespace shows the container's own subtree as the root of a
/// fresh cgroup2 mount; without one, the host's hierarchy is bound as runc shows it.
fn cgroup_v2(env: &Env, e: &Entry) -> crate::Result<()> {
    let dest = mkdir(env, e)?;
    let mut source = PathBuf::from("/sys/fs/cgroup");
    if env.ctx.cgroup_ns {
        let data = e.opts.data_string();
        let src = Path::new("cgroup2");
        let target = open_target(&dest, &e.label())?;
        match mount_on(src, &target, "cgroup2", e.opts.flags, data.as_deref()) {
            Ok(()) => return finish(&dest, &e.opts, false, &e.label()),
            // In a user namespace that does not own the cgroup namespace: emulate it.
            Err(Errno::EPERM | Errno::EBUSY) => {
                if let Some((_, own)) = env.ctx.cgroup_paths.iter().find(|(c, _)| c.is_empty()) {
                    source = own.clone();
                }
            }
            Err(errno) => return Err(Error::sys(mount_step(e, &dest), errno)),
        }
    }
    bind(&source, &dest, true, &e.label())?;
    finish(&dest, &e.opts, true, &e.label())
}

/// cgroup v1: a tmpfs holding one bind of the container's cgroup per hierarchy, named
/// like the host's hierarchy directories, plus links for co-mounted controllers.
fn cgroup_v1(env: &Env, e: &Entry) -> crate::Result<()> {
    let dest = mkdir(env, e)?;
    let base = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let target = open_target(&dest, &e.label())?;
    mount_on(Path::new("tmpfs"), &target, "tmpfs", base, Some("mode=755")).step(|| {
        format!(
            "mount tmpfs for cgroups on {} ({})",
            dest.display(),
            e.label()
        )
    })?;
    let tmpfs_opts = MountOptions {
        propagation: e.opts.propagation.clone(),
        ..MountOptions::default()
    };
    finish(&dest, &tmpfs_opts, false, &e.label())?;
    for (name, source) in hierarchies(&env.ctx.cgroup_paths)? {
        let sub = dest.join(&name);
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&sub)
            .step(|| format!("create {} ({})", sub.display(), e.label()))?;
        bind(&source, &sub, true, &e.label())?;
        finish(&sub, &e.opts, true, &e.label())?;
        link_comounted(&dest, &name)
            .step(|| format!("link controllers of {} ({})", sub.display(), e.label()))?;
    }
    if e.opts.flags.contains(MsFlags::MS_RDONLY) {
        let target = open_target(&dest, &e.label())?;
        remount_keep(
            &target.proc_path(),
            base | MsFlags::MS_RDONLY,
            MsFlags::empty(),
        )
        .step(|| format!("remount {} read-only ({})", dest.display(), e.label()))?;
    }
    Ok(())
}

/// "cpu,cpuacct" -> links "cpu" and "cpuacct" pointing at it.
fn link_comounted(dir: &Path, name: &str) -> io::Result<()> {
    if !name.contains(',') {
        return Ok(());
    }
    for part in name.split(',') {
        match symlink(name, dir.join(part)) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// (directory name under the cgroup mount, host path of the container's cgroup) for each
/// distinct v1 hierarchy among `paths`, the name taken from the host's mount point.
fn hierarchies(paths: &[(String, PathBuf)]) -> crate::Result<Vec<(String, PathBuf)>> {
    // "" is the cgroup2 hierarchy of a hybrid host, left out (see below).
    let paths: Vec<(String, PathBuf)> = paths
        .iter()
        .filter(|(c, _)| !c.is_empty())
        .cloned()
        .collect();
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    // The hierarchies the runtime found before forking init, rather than
    // another read of the host's whole mount table.
    let mounts: Vec<mountinfo::MountInfo> = crate::cgroups::v1_hierarchies()?
        .into_iter()
        .map(|(_, mount_point)| mountinfo::MountInfo {
            root: PathBuf::from("/"),
            mount_point,
            optional: Vec::new(),
            fstype: "cgroup".into(),
        })
        .collect();
    hierarchies_in(&mounts, &paths)
}

/// The cgroup2 hierarchy of a hybrid host is left out, as runc does: the container
/// sees its v1 controllers only.
fn hierarchies_in(
    mounts: &[mountinfo::MountInfo],
    paths: &[(String, PathBuf)],
) -> crate::Result<Vec<(String, PathBuf)>> {
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    for (controller, path) in paths {
        let m = mountinfo::mount_of(mounts, path)
            .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
            .ok_or_else(|| {
                Error::io(
                    format!(
                        "find the cgroup hierarchy of {controller:?} at {}",
                        path.display()
                    ),
                    io::Error::other("not on a mounted cgroup filesystem"),
                )
            })?;
        if m.fstype == "cgroup2" {
            continue;
        }
        let name = m
            .mount_point
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| controller.clone());
        if !out.iter().any(|(n, _)| *n == name) {
            out.push((name, path.clone()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hierarchy_names_come_from_host_mount_points() {
        let mounts = mountinfo::parse(
            "35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
36 30 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
37 30 0:33 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
38 1 0:34 / /tmp rw - tmpfs tmpfs rw
",
        );
        let p = |s: &str| PathBuf::from(s);
        let paths = vec![
            ("cpu".to_string(), p("/sys/fs/cgroup/cpu,cpuacct/corral/c1")),
            (
                "cpuacct".to_string(),
                p("/sys/fs/cgroup/cpu,cpuacct/corral/c1"),
            ),
            ("memory".to_string(), p("/sys/fs/cgroup/memory/corral/c1")),
            (String::new(), p("/sys/fs/cgroup/unified/corral/c1")),
        ];
        let got = hierarchies_in(&mounts, &paths).unwrap();
        assert_eq!(
            got,
            vec![
                (
                    "cpu,cpuacct".to_string(),
                    p("/sys/fs/cgroup/cpu,cpuacct/corral/c1")
                ),
                ("memory".to_string(), p("/sys/fs/cgroup/memory/corral/c1")),
            ]
        );
        let bad = vec![("pids".to_string(), p("/tmp/not-a-cgroup"))];
        let err = hierarchies_in(&mounts, &bad).unwrap_err().to_string();
        assert!(err.contains("\"pids\" at /tmp/not-a-cgroup"), "{err}");
    }

    #[test]
    fn comounted_links() {
        let t = tempfile::tempdir().expect("tempdir");
        link_comounted(t.path(), "cpu,cpuacct").unwrap();
        link_comounted(t.path(), "cpu,cpuacct").unwrap();
        link_comounted(t.path(), "memory").unwrap();
        assert_eq!(
            fs::read_link(t.path().join("cpu")).unwrap(),
            Path::new("cpu,cpuacct")
        );
        assert_eq!(
            fs::read_link(t.path().join("cpuacct")).unwrap(),
            Path::new("cpu,cpuacct")
        );
        assert!(!t.path().join("memory").exists());
    }

    #[test]
    fn copy_tree_keeps_links_and_modes() {
        let t = tempfile::tempdir().expect("tempdir");
        let (from, to) = (t.path().join("from"), t.path().join("to"));
        fs::create_dir_all(from.join("sub")).unwrap();
        fs::create_dir(&to).unwrap();
        fs::write(from.join("sub/f"), "data").unwrap();
        fs::set_permissions(from.join("sub/f"), fs::Permissions::from_mode(0o640)).unwrap();
        fs::set_permissions(from.join("sub"), fs::Permissions::from_mode(0o750)).unwrap();
        symlink("/etc/passwd", from.join("link")).unwrap();
        copy_tree(&from, &to).unwrap();
        assert_eq!(fs::read_to_string(to.join("sub/f")).unwrap(), "data");
        assert_eq!(
            fs::metadata(to.join("sub/f")).unwrap().mode() & 0o7777,
            0o640
        );
        assert_eq!(fs::metadata(to.join("sub")).unwrap().mode() & 0o7777, 0o750);
        assert_eq!(
            fs::read_link(to.join("link")).unwrap(),
            Path::new("/etc/passwd")
        );
    }

    #[test]
    fn container_view_of_host_paths() {
        let root = Path::new("/run/c/rootfs");
        assert_eq!(
            in_container(root, Path::new("/run/c/rootfs/proc")),
            Path::new("/proc")
        );
        assert_eq!(in_container(root, root), Path::new("/"));
    }
}
