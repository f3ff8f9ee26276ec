//! Thin syscall helpers for the rootfs setup (nix has no mount_setattr).

use std::os::fd::RawFd;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::statvfs::statvfs;

use super::options::{ATIME, MS_NOSYMFOLLOW, PER_MOUNT};

/// statvfs(3) f_flag bits (linux/statfs.h) and the mount(2) flags they stand for.
const ST_TO_MS: &[(u64, MsFlags)] = &[
    (0x0001, MsFlags::MS_RDONLY),
    (0x0002, MsFlags::MS_NOSUID),
    (0x0004, MsFlags::MS_NODEV),
    (0x0008, MsFlags::MS_NOEXEC),
    (0x0400, MsFlags::MS_NOATIME),
    (0x0800, MsFlags::MS_NODIRATIME),
    (0x1000, MsFlags::MS_RELATIME),
    (0x2000, MS_NOSYMFOLLOW),
];

pub fn do_mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> nix::Result<()> {
    mount(source, target, fstype, flags, data)
}

/// The per-mount flags of the mount `path` is on, as mount(2) flags.
pub fn mount_flags(path: &Path) -> nix::Result<MsFlags> {
    let raw = statvfs(path)?.flags().bits() as u64;
    let mut flags = ST_TO_MS
        .iter()
        .filter(|(st, _)| raw & st != 0)
        .fold(MsFlags::empty(), |acc, (_, ms)| acc | *ms);
    // Neither noatime nor relatime: the mount is strictatime.
    if !flags.intersects(ATIME) {
        flags |= MsFlags::MS_STRICTATIME;
    }
    Ok(flags)
}

/// The flags for a `MS_REMOUNT|MS_BIND` of a mount that now has `existing`: the requested
/// per-mount flags plus every existing one the config did not explicitly turn off.
/// In a user namespace the kernel refuses (EPERM) to drop the flags of mounts inherited
/// from the parent namespace (ro, nosuid, nodev, noexec, the atime mode), so keeping what
/// is there is what lets the remount succeed.
pub fn remount_flags(existing: MsFlags, set: MsFlags, cleared: MsFlags) -> MsFlags {
    let set = set & PER_MOUNT;
    let mut keep = existing & PER_MOUNT & !cleared;
    if set.intersects(ATIME) || cleared.intersects(ATIME) {
        keep &= !ATIME;
    }
    MsFlags::MS_REMOUNT | MsFlags::MS_BIND | set | keep
}

/// Change the per-mount flags of the mount at `target`, keeping the existing ones
/// unless `cleared` says otherwise.
pub fn remount_keep(target: &Path, set: MsFlags, cleared: MsFlags) -> nix::Result<()> {
    let flags = remount_flags(mount_flags(target)?, set, cleared);
    do_mount(None, target, None, flags, None)
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// mount_setattr(fd, "", AT_EMPTY_PATH|AT_RECURSIVE): the recursive "rro"-style options.
pub fn mount_setattr_recursive(fd: RawFd, set: u64, clr: u64) -> nix::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: the path is a NUL-terminated static string, `attr` lives across the call and
    // its size is passed alongside; the kernel only reads both.
    let res = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(res).map(drop)
}

/// Whether the host's /sys/fs/cgroup is a cgroup v2 (unified) hierarchy.
pub fn cgroup2_unified() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

pub fn is_procfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC)
}

/// Restores the umask when dropped: device nodes are created with umask 0.
pub struct UmaskGuard(nix::sys::stat::Mode);

impl UmaskGuard {
    pub fn zero() -> Self {
        UmaskGuard(nix::sys::stat::umask(nix::sys::stat::Mode::empty()))
    }
}

impl Drop for UmaskGuard {
    fn drop(&mut self) {
        nix::sys::stat::umask(self.0);
    }
}

/// Render flags for error messages ("ro,nosuid").
pub fn flag_names(flags: MsFlags) -> String {
    const NAMES: &[(MsFlags, &str)] = &[
        (MsFlags::MS_RDONLY, "ro"),
        (MsFlags::MS_NOSUID, "nosuid"),
        (MsFlags::MS_NODEV, "nodev"),
        (MsFlags::MS_NOEXEC, "noexec"),
        (MsFlags::MS_NOATIME, "noatime"),
        (MsFlags::MS_NODIRATIME, "nodiratime"),
        (MsFlags::MS_RELATIME, "relatime"),
        (MsFlags::MS_STRICTATIME, "strictatime"),
        (MS_NOSYMFOLLOW, "nosymfollow"),
    ];
    let names: Vec<&str> = NAMES
        .iter()
        .filter(|(f, _)| flags.contains(*f))
        .map(|(_, n)| *n)
        .collect();
    if names.is_empty() {
        "defaults".to_string()
    } else {
        names.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MsFlags as F;

    #[test]
    fn remount_keeps_existing_unless_cleared() {
        let existing = F::MS_RDONLY | F::MS_NODEV | F::MS_RELATIME;
        let base = F::MS_REMOUNT | F::MS_BIND;
        assert_eq!(
            remount_flags(existing, F::MS_NOSUID, F::empty()),
            base | existing | F::MS_NOSUID
        );
        assert_eq!(
            remount_flags(existing, F::MS_NOSUID, F::MS_RDONLY),
            base | F::MS_NODEV | F::MS_RELATIME | F::MS_NOSUID
        );
    }

    #[test]
    fn remount_atime_requested_replaces_existing() {
        let existing = F::MS_NOATIME;
        let flags = remount_flags(existing, F::MS_STRICTATIME | F::MS_RDONLY, F::empty());
        assert!(flags.contains(F::MS_STRICTATIME | F::MS_RDONLY));
        assert!(!flags.contains(F::MS_NOATIME));
        // Non per-mount flags are dropped: a bind remount cannot change them.
        let flags = remount_flags(F::empty(), F::MS_SYNCHRONOUS | F::MS_BIND, F::empty());
        assert_eq!(flags, F::MS_REMOUNT | F::MS_BIND);
    }

    #[test]
    fn statvfs_flags_match_mountinfo() {
        let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let line = info
            .lines()
            .rfind(|l| l.split(' ').nth(4) == Some("/proc"))
            .expect("/proc is mounted");
        let opts: Vec<&str> = line
            .split(' ')
            .nth(5)
            .expect("options")
            .split(',')
            .collect();
        let flags = mount_flags(Path::new("/proc")).expect("statvfs /proc");
        for (name, flag) in [
            ("ro", F::MS_RDONLY),
            ("nosuid", F::MS_NOSUID),
            ("nodev", F::MS_NODEV),
            ("noexec", F::MS_NOEXEC),
            ("relatime", F::MS_RELATIME),
            ("noatime", F::MS_NOATIME),
        ] {
            assert_eq!(
                opts.contains(&name),
                flags.contains(flag),
                "{name}: {flags:?} vs {line}"
            );
        }
    }

    #[test]
    fn names() {
        assert_eq!(flag_names(F::MS_RDONLY | F::MS_NOEXEC), "ro,noexec");
        assert_eq!(flag_names(F::empty()), "defaults");
    }
}
