//! The hand-off to the tiny supervisor (shim/tiny/, built by build.rs and
//! embedded here): once a detached container without a terminal runs and
//! its caller has been told, this process execs the tiny binary from a
//! memfd, so the same pid (the one callers track, the container's parent
//! and subreaper) spends the container's life at a few dozen KiB of RSS
//! instead of a full std + corral-runtime image. The container's output
//! pipes, the held stdin pipe and our own executable (to come back as
//! `corral-shim --finish`) survive the exec as fds without close-on-exec;
//! the forwarded signals and SIGCHLD stay blocked across it, so none is
//! lost before the tiny supervisor's signalfd reads them.

#![cfg_attr(not(corral_tiny), allow(dead_code))]

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStringExt;

use crate::args::{Finish, ShimArgs};
use crate::error::{Error, Result};

/// Arguments the tiny supervisor takes at most (shim/tiny/sys.rs MAX_ARGS;
/// it has no allocator). More (many --exit-command-arg) keep the
/// supervision in-process.
const TINY_MAX_ARGS: usize = 256;

/// What the tiny supervisor needs of a started container.
pub(crate) struct Handoff<'a> {
    pub init: i32,
    pub stdout_fd: RawFd,
    pub stderr_fd: RawFd,
    /// A detached `--stdin` container's stdin pipe, kept open, never written.
    pub hold_fd: Option<RawFd>,
    pub started_at: &'a str,
    pub cgroup_path: &'a str,
}

/// The tiny supervisor's argv (shim/tiny/args.rs): `ARGV0 INIT_PID
/// STDOUT_FD STDERR_FD HOLD_FD SHIM_FD LOG MAX_SIZE MAX_FILES --` and the
/// finish argv after `--finish STATUS`. ARGV0 is ours, so `ps` and
/// whoever looks for shims by command line still see corral-shim.
pub(crate) fn tiny_argv(
    argv0: OsString,
    args: &ShimArgs,
    h: &Handoff,
    shim_fd: RawFd,
) -> Vec<OsString> {
    let finish_args = ShimArgs {
        sync_fd: None,
        ..args.clone()
    };
    let hold = h.hold_fd.unwrap_or(-1);
    let mut v: Vec<OsString> = vec![argv0];
    for n in [h.init, h.stdout_fd, h.stderr_fd, hold, shim_fd] {
        v.push(n.to_string().into());
    }
    v.push(args.log.clone().into_os_string());
    v.push(args.log_max_size.to_string().into());
    v.push(args.log_max_files.to_string().into());
    v.push("--".into());
    v.extend(Finish::tail(h.started_at, h.cgroup_path, &finish_args));
    v
}

/// Exec the tiny supervisor in this process. Returns only when that could
/// not be done, with the fds as they were (the caller supervises
/// in-process then).
#[cfg(corral_tiny)]
pub(crate) fn exec(args: &ShimArgs, h: &Handoff) -> Error {
    static TINY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/corral-shim-tiny"));
    let inherited: Vec<RawFd> = [h.stdout_fd, h.stderr_fd]
        .into_iter()
        .chain(h.hold_fd)
        .collect();
    let err = match try_exec(TINY, args, h, &inherited) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    for fd in inherited {
        let _ = set_cloexec(fd, true);
    }
    err
}

#[cfg(not(corral_tiny))]
pub(crate) fn exec(_args: &ShimArgs, _h: &Handoff) -> Error {
    Error::Unsupported("no tiny supervisor is built for this target")
}

#[cfg(corral_tiny)]
fn try_exec(
    tiny: &[u8],
    args: &ShimArgs,
    h: &Handoff,
    inherited: &[RawFd],
) -> Result<std::convert::Infallible> {
    use crate::error::Context;
    use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
    use std::io::Write;
    // MFD_EXEC (Linux 6.3) keeps the memfd executable where the
    // vm.memfd_noexec sysctl would make it noexec; older kernels refuse
    // the flag (EINVAL) and have no such sysctl.
    const MFD_EXEC: MemFdCreateFlag = MemFdCreateFlag::from_bits_retain(0x10);
    let name = c"corral-shim-tiny";
    let memfd = match memfd_create(name, MemFdCreateFlag::MFD_CLOEXEC | MFD_EXEC) {
        Err(nix::errno::Errno::EINVAL) => memfd_create(name, MemFdCreateFlag::MFD_CLOEXEC),
        other => other,
    }
    .step(|| "memfd_create for the tiny supervisor")?;
    let mut file = std::fs::File::from(memfd);
    file.write_all(tiny)
        .step(|| "write the tiny supervisor into its memfd")?;
    // Our own file, to come back as `--finish` even if the path was
    // replaced meanwhile (the same build wrote the argv it will parse).
    let shim = std::fs::File::open("/proc/self/exe").step(|| "open /proc/self/exe")?;
    for &fd in inherited.iter().chain([&shim.as_raw_fd()]) {
        set_cloexec(fd, false)?;
    }
    let argv0 = std::env::args_os()
        .next()
        .unwrap_or_else(|| "corral-shim".into());
    let argv = cstrings(tiny_argv(argv0, args, h, shim.as_raw_fd()))?;
    if argv.len() > TINY_MAX_ARGS {
        return Err(Error::Format {
            what: "tiny supervisor argv".into(),
            msg: format!("{} arguments, it takes {TINY_MAX_ARGS} at most", argv.len()),
        });
    }
    let env = cstrings(
        std::env::vars_os()
            .map(|(k, v)| {
                let mut kv = k;
                kv.push("=");
                kv.push(v);
                kv
            })
            .collect(),
    )?;
    crate::supervise::block_and_forward_early(h.init)?;
    let errno = match nix::unistd::fexecve(file.as_raw_fd(), &argv, &env) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    Err(errno).step(|| "execveat the tiny supervisor (memfd)")
}

fn cstrings(v: Vec<OsString>) -> Result<Vec<CString>> {
    v.into_iter()
        .map(|s| {
            CString::new(s.into_vec()).map_err(|e| Error::Format {
                what: "tiny supervisor argument".into(),
                msg: format!("contains a NUL byte at {}", e.nul_position()),
            })
        })
        .collect()
}

fn set_cloexec(fd: RawFd, on: bool) -> Result<()> {
    use crate::error::Context;
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let flags = if on {
        FdFlag::FD_CLOEXEC
    } else {
        FdFlag::empty()
    };
    fcntl(fd, FcntlArg::F_SETFD(flags))
        .map(drop)
        .step(|| format!("set close-on-exec {on} on fd {fd}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiny::args::{parse, FINISH_AT};
    use crate::tiny::sys::CStr;

    #[test]
    fn argv_limit_is_the_tiny_supervisors() {
        assert_eq!(TINY_MAX_ARGS, crate::tiny::sys::MAX_ARGS);
    }

    #[test]
    fn the_tiny_supervisor_parses_our_argv() {
        let args = ShimArgs {
            id: "c1".into(),
            bundle: "/b".into(),
            runtime_root: "/r".into(),
            log: "/l/ctr.log".into(),
            log_max_size: 10 << 20,
            log_max_files: 3,
            exit_file: "/l/exit.json".into(),
            sync_fd: Some(4),
            exit_command: Some("/bin/true".into()),
            exit_command_args: vec!["a b".into()],
            ..ShimArgs::default()
        };
        let h = Handoff {
            init: 4242,
            stdout_fd: 7,
            stderr_fd: 9,
            hold_fd: Some(11),
            started_at: "2026-11-26T07:00:00.000000000Z",
            cgroup_path: "/corral/c1",
        };
        let argv = cstrings(tiny_argv("/usr/bin/corral-shim".into(), &args, &h, 12)).unwrap();
        let bytes: Vec<&[u8]> = argv.iter().map(|c| c.as_bytes_with_nul()).collect();
        let cs: Vec<CStr> = bytes.iter().map(|b| CStr::new(b).unwrap()).collect();
        let w = parse(&cs).unwrap();
        assert_eq!(
            (w.init, w.stdout_fd, w.stderr_fd, w.hold_fd, w.shim_fd),
            (4242, 7, 9, Some(11), 12)
        );
        assert_eq!(w.log.bytes(), b"/l/ctr.log");
        assert_eq!((w.max_size, w.max_files), (10 << 20, 3));
        // What the tiny supervisor execs: argv0 --finish STATUS + the rest.
        let mut fin: Vec<OsString> = vec!["--finish".into(), "9".into()];
        fin.extend(
            argv[FINISH_AT..]
                .iter()
                .map(|c| OsString::from_vec(c.as_bytes().to_vec())),
        );
        let want = Finish {
            status: 9,
            started_at: h.started_at.into(),
            cgroup_path: h.cgroup_path.into(),
        };
        let finish_args = ShimArgs {
            sync_fd: None,
            ..args
        };
        assert_eq!(
            ShimArgs::parse(fin).unwrap(),
            crate::Parsed::Finish(Box::new(finish_args), want)
        );
        let held = Handoff { hold_fd: None, ..h };
        let argv = cstrings(tiny_argv(
            "x".into(),
            &ShimArgs {
                log: "/l".into(),
                ..ShimArgs::default()
            },
            &held,
            3,
        ))
        .unwrap();
        assert_eq!(argv[4].as_bytes(), b"-1");
    }
}
