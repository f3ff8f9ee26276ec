//! Thin wrappers over the system calls nix does not cover (or covers in a
//! shape that does not fit a fork-without-exec runtime). Each is a single
//! syscall; the logic that decides when to call them lives elsewhere so it
//! can be unit-tested without root.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::unistd::Pid;

/// `clone(2)` with fork semantics (no new stack: the child continues on a
/// copy of the parent's stack, like `fork`), plus namespace flags.
///
/// Returns `None` in the child and `Some(pid)` in the parent.
///
/// # Safety
/// Same contract as `fork`: the caller must be single-threaded, or the child
/// may only call async-signal-safe functions. The runtime CLI never starts a
/// thread, so its children may allocate.
pub unsafe fn clone_fork(flags: CloneFlags) -> nix::Result<Option<Pid>> {
    let flags = flags.bits() as libc::c_ulong | libc::SIGCHLD as libc::c_ulong;
    // SAFETY: raw clone with a NULL stack duplicates the calling thread like
    // fork(2); the parent/child TID pointers are unused (NULL).
    let ret = libc::syscall(
        libc::SYS_clone,
        flags,
        std::ptr::null_mut::<libc::c_void>(),
        std::ptr::null_mut::<libc::c_int>(),
        std::ptr::null_mut::<libc::c_int>(),
        0usize,
    );
    match Errno::result(ret)? {
        0 => Ok(None),
        pid => Ok(Some(Pid::from_raw(pid as i32))),
    }
}

/// `pidfd_open(2)`: a file descriptor that becomes readable when `pid` exits,
/// so waiting for a process that is not our child needs no polling of /proc.
pub fn pidfd_open(pid: Pid) -> nix::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments; on success the returned
    // descriptor is new and owned by nobody else.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    let fd = Errno::result(fd)? as RawFd;
    // SAFETY: `fd` was just returned by the kernel and is not shared.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Wait until the pidfd is readable (the process exited) or `timeout_ms`
/// passed. Returns true when the process has exited.
pub fn pidfd_wait(pidfd: &OwnedFd, timeout_ms: i32) -> nix::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        match Errno::result(n) {
            Ok(n) => return Ok(n > 0),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `prctl(PR_SET_KEEPCAPS)`: keep permitted capabilities across setuid.
pub fn set_keep_caps(on: bool) -> nix::Result<()> {
    // SAFETY: prctl with integer arguments only.
    Errno::result(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, on as libc::c_ulong, 0, 0, 0) })
        .map(drop)
}

/// `prctl(PR_SET_NO_NEW_PRIVS, 1)`.
pub fn set_no_new_privs() -> nix::Result<()> {
    // SAFETY: prctl with integer arguments only.
    Errno::result(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }).map(drop)
}

/// `prctl(PR_SET_PDEATHSIG)`.
pub fn set_parent_death_signal(sig: libc::c_int) -> nix::Result<()> {
    // SAFETY: prctl with integer arguments only.
    Errno::result(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) })
        .map(drop)
}

/// `prctl(PR_SET_CHILD_SUBREAPER)`: orphans below us are reparented to us, so
/// a foreground `run` can reap the container init however it was forked.
pub fn set_child_subreaper() -> nix::Result<()> {
    // SAFETY: prctl with integer arguments only.
    Errno::result(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }).map(drop)
}

/// `setdomainname(2)` (nix only wraps sethostname).
pub fn set_domainname(name: &str) -> nix::Result<()> {
    // SAFETY: pointer and length describe a live byte slice.
    Errno::result(unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) }).map(drop)
}

/// Join a new anonymous session keyring, as runc does unless
/// `--no-new-keyring`: containers must not share the host's keys.
pub fn join_session_keyring(name: &str) -> nix::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    let cname = std::ffi::CString::new(name).map_err(|_| Errno::EINVAL)?;
    // SAFETY: keyctl with a NUL-terminated string that lives across the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            cname.as_ptr(),
        )
    };
    Errno::result(ret).map(drop)
}

/// Mark every descriptor from `first` up as close-on-exec, so only stdio and
/// the preserved fds reach the container process.
pub fn cloexec_from(first: u32) -> nix::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes descriptor flags.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    Errno::result(ret).map(drop)
}

/// `TIOCSCTTY`: make the terminal on `fd` our controlling terminal.
pub fn set_controlling_tty(fd: RawFd) -> nix::Result<()> {
    // SAFETY: ioctl on a descriptor we own, integer argument.
    Errno::result(unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) }).map(drop)
}

/// Start time of a process in clock ticks since boot (field 22 of
/// /proc/PID/stat): together with the pid it names a process uniquely, so a
/// recycled pid is never mistaken for the container.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: skip past
    // the last ')' before splitting.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Process state letter from /proc/PID/stat (`Z` for a zombie).
pub fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.chars().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_skips_odd_command_names() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(stat), Some(987654));
    }

    #[test]
    fn own_start_time_is_readable() {
        let me = std::process::id() as i32;
        assert!(process_start_time(me).is_some());
        assert!(process_state(me).is_some_and(|s| s != 'Z'));
    }
}
