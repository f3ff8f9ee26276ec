//! /dev inside the container: the default nodes, `linux.devices`, /dev/ptmx and the
//! /proc/self/fd links (runc's createDevices, setupPtmx, setupDevSymlinks).

use std::fs;
use std::io;
use std::os::unix::fs::{symlink, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use oci_spec::runtime::{LinuxDeviceType, Spec};

use super::resolve::{mkdir_all_in_root, PathFd};
use super::sys::{do_mount, UmaskGuard};
use super::validate::{clean, effective_type};
use crate::error::{Context, Error};

/// The nodes every container gets (runtime-spec "Default Devices").
const DEFAULTS: &[(&str, u64, u64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub path: PathBuf,
    pub kind: SFlag,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Whether runc would set up /dev: always, unless the config bind-mounts one over it.
pub fn needs_setup(spec: &Spec) -> bool {
    !spec.mounts().iter().flatten().any(|m| {
        let opts = super::options::parse_options(m.options().as_deref().unwrap_or_default());
        clean(m.destination()) == Path::new("/dev") && effective_type(m, opts.is_bind()) == "bind"
    })
}

/// The defaults not overridden by `linux.devices`, then `linux.devices`. /dev/ptmx is
/// left out: it is always a link to the devpts instance.
pub fn nodes(spec: &Spec) -> Vec<Node> {
    let configured = spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().clone())
        .unwrap_or_default();
    let defaults = DEFAULTS
        .iter()
        .filter(|(p, _, _)| !configured.iter().any(|d| clean(d.path()) == Path::new(p)))
        .map(|&(p, major, minor)| Node {
            path: PathBuf::from(p),
            kind: SFlag::S_IFCHR,
            major,
            minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        });
    let configured = configured.iter().map(|d| Node {
        path: clean(d.path()),
        kind: match d.typ() {
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            _ => SFlag::S_IFCHR,
        },
        major: u64::try_from(d.major()).unwrap_or_default(),
        minor: u64::try_from(d.minor()).unwrap_or_default(),
        mode: d.file_mode().map_or(0o666, |m| m & 0o7777),
        uid: d.uid().unwrap_or(0),
        gid: d.gid().unwrap_or(0),
    });
    defaults
        .chain(configured)
        .filter(|n| n.path != Path::new("/dev/ptmx"))
        .collect()
}

/// Create the device nodes and links under `rootfs`. In a user namespace mknod is not
/// allowed: the host's node at the same path is bind-mounted instead.
pub fn setup(rootfs: &Path, spec: &Spec, in_user_ns: bool) -> crate::Result<()> {
    let _umask = UmaskGuard::zero();
    for node in nodes(spec) {
        create(rootfs, &node, in_user_ns)?;
    }
    let dev = mkdir_all_in_root(rootfs, Path::new("/dev"))
        .step(|| format!("create {}/dev", rootfs.display()))?;
    setup_ptmx(&dev)?;
    setup_links(&dev)
}

fn create(rootfs: &Path, node: &Node, bind: bool) -> crate::Result<()> {
    let parent = node.path.parent().unwrap_or(Path::new("/dev"));
    let name = node.path.file_name().ok_or_else(|| {
        Error::Usage(format!(
            "device path {} has no file name",
            node.path.display()
        ))
    })?;
    let dir = mkdir_all_in_root(rootfs, parent)
        .step(|| format!("create directory for device {}", node.path.display()))?;
    let dest = dir.join(name);
    if bind {
        return bind_host_node(&node.path, &dest);
    }
    let mode = Mode::from_bits_truncate(node.mode);
    match mknod(&dest, node.kind, mode, makedev(node.major, node.minor)) {
        Ok(()) => std::os::unix::fs::lchown(&dest, Some(node.uid), Some(node.gid)).step(|| {
            format!(
                "chown device {} to {}:{}",
                dest.display(),
                node.uid,
                node.gid
            )
        }),
        Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(nix::errno::Errno::EPERM) => bind_host_node(&node.path, &dest),
        Err(e) => Err(Error::sys(
            format!("mknod {} ({}:{})", dest.display(), node.major, node.minor),
            e,
        )),
    }
}

/// Bind the host's node at `host` onto `dest`, creating an empty file to mount on.
fn bind_host_node(host: &Path, dest: &Path) -> crate::Result<()> {
    let created = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dest);
    match created {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(format!("create {}", dest.display()), e)),
    }
    let target = PathFd::open(dest).step(|| format!("open {}", dest.display()))?;
    do_mount(
        Some(host),
        &target.proc_path(),
        None,
        MsFlags::MS_BIND,
        None,
    )
    .step(|| format!("bind-mount device {} on {}", host.display(), dest.display()))
}

fn setup_ptmx(dev: &Path) -> crate::Result<()> {
    let ptmx = dev.join("ptmx");
    match fs::remove_file(&ptmx) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("remove {}", ptmx.display()), e)),
    }
    symlink("pts/ptmx", &ptmx).step(|| format!("symlink {} -> pts/ptmx", ptmx.display()))
}

fn setup_links(dev: &Path) -> crate::Result<()> {
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    // Kernels without CONFIG_PROC_KCORE have no /proc/kcore to point at.
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        let link = dev.join(name);
        match symlink(target, &link) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(Error::io(
                    format!("symlink {} -> {target}", link.display()),
                    e,
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Spec {
        serde_json::from_value(json).expect("test spec")
    }

    #[test]
    fn defaults_and_overrides() {
        let s = spec(
            serde_json::json!({"ociVersion": "1.0.2", "linux": {"devices": [
                {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o100_640, "uid": 5, "gid": 6},
                {"path": "/dev/sda", "type": "b", "major": 8, "minor": 0},
                {"path": "/dev/ptmx", "type": "c", "major": 5, "minor": 2},
                {"path": "/dev/f", "type": "p"}
            ]}}),
        );
        let n = nodes(&s);
        let paths: Vec<_> = n.iter().map(|n| n.path.to_str().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "/dev/zero",
                "/dev/full",
                "/dev/random",
                "/dev/urandom",
                "/dev/tty",
                "/dev/null",
                "/dev/sda",
                "/dev/f"
            ]
        );
        let null = &n[5];
        assert_eq!((null.mode, null.uid, null.gid), (0o640, 5, 6));
        assert_eq!(n[6].kind, SFlag::S_IFBLK);
        assert_eq!(n[6].mode, 0o666);
        assert_eq!(n[7].kind, SFlag::S_IFIFO);
    }

    #[test]
    fn dev_setup_unless_dev_is_bound() {
        let s = spec(serde_json::json!({"ociVersion": "1.0.2", "mounts": [
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"}]}));
        assert!(needs_setup(&s));
        let s = spec(serde_json::json!({"ociVersion": "1.0.2", "mounts": [
            {"destination": "/dev/", "type": "none", "source": "/dev", "options": ["rbind"]}]}));
        assert!(!needs_setup(&s));
        assert!(needs_setup(&spec(
            serde_json::json!({"ociVersion": "1.0.2"})
        )));
    }

    #[test]
    fn links_and_ptmx_in_a_plain_dir() {
        let t = tempfile::tempdir().expect("tempdir");
        fs::write(t.path().join("ptmx"), "old").unwrap();
        setup_ptmx(t.path()).unwrap();
        setup_links(t.path()).unwrap();
        setup_links(t.path()).unwrap();
        assert_eq!(
            fs::read_link(t.path().join("ptmx")).unwrap(),
            Path::new("pts/ptmx")
        );
        assert_eq!(
            fs::read_link(t.path().join("stderr")).unwrap(),
            Path::new("/proc/self/fd/2")
        );
        assert_eq!(
            fs::read_link(t.path().join("fd")).unwrap(),
            Path::new("/proc/self/fd")
        );
    }
}
