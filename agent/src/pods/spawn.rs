//! Starting the shim with posix_spawn: glibc runs it as vfork + exec, so the
//! child shares the agent's memory until it execs. `Command` with a
//! `pre_exec` hook (needed to keep the sync pipe open in the child) forks
//! instead, copying the page tables of the whole multi-threaded agent only
//! to throw them away at exec: ~5 ms of CPU per container start once the
//! agent holds 100 pods.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::ptr;

/// Owns a C argv/envp: the strings and the NULL-terminated pointer array.
struct CVec {
    _strings: Vec<CString>,
    ptrs: Vec<*mut libc::c_char>,
}

impl CVec {
    fn new(items: impl IntoIterator<Item = Vec<u8>>, what: &str) -> io::Result<CVec> {
        let strings = items
            .into_iter()
            .map(CString::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: contains NUL"))
            })?;
        let ptrs = strings
            .iter()
            .map(|s| s.as_ptr() as *mut libc::c_char)
            .chain([ptr::null_mut()])
            .collect();
        Ok(CVec {
            _strings: strings,
            ptrs,
        })
    }
}

fn check(what: &str, rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        let e = io::Error::from_raw_os_error(rc);
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    }
}

/// File actions and attributes, destroyed on drop.
struct Setup {
    actions: libc::posix_spawn_file_actions_t,
    attr: libc::posix_spawnattr_t,
}

impl Drop for Setup {
    fn drop(&mut self) {
        // SAFETY: both were initialised by `Setup::new` and are destroyed once.
        unsafe {
            libc::posix_spawn_file_actions_destroy(&mut self.actions);
            libc::posix_spawnattr_destroy(&mut self.attr);
        }
    }
}

impl Setup {
    /// stdin and stdout on /dev/null, stderr to `stderr`, `keep` inherited
    /// (dup2 onto itself clears its close-on-exec in the child only, since
    /// glibc 2.29), an empty signal mask and SIGPIPE at its default, as
    /// `Command` gives a child.
    fn new(stderr: RawFd, keep: RawFd) -> io::Result<Box<Setup>> {
        let null = c"/dev/null";
        // SAFETY: zeroed storage is what the init functions expect to fill;
        // the Box keeps the addresses stable for glibc.
        let mut s = Box::new(unsafe { std::mem::zeroed::<Setup>() });
        // SAFETY: each call gets a valid pointer to storage owned by `s`; on
        // an init failure nothing was allocated, so `s` is forgotten.
        unsafe {
            let rc = libc::posix_spawn_file_actions_init(&mut s.actions);
            if rc != 0 {
                std::mem::forget(s);
                return Err(io::Error::from_raw_os_error(rc));
            }
            let rc = libc::posix_spawnattr_init(&mut s.attr);
            if rc != 0 {
                libc::posix_spawn_file_actions_destroy(&mut s.actions);
                std::mem::forget(s);
                return Err(io::Error::from_raw_os_error(rc));
            }
            let a = &mut s.actions;
            check(
                "posix_spawn_file_actions_addopen(0, /dev/null)",
                libc::posix_spawn_file_actions_addopen(a, 0, null.as_ptr(), libc::O_RDONLY, 0),
            )?;
            check(
                "posix_spawn_file_actions_addopen(1, /dev/null)",
                libc::posix_spawn_file_actions_addopen(a, 1, null.as_ptr(), libc::O_WRONLY, 0),
            )?;
            check(
                "posix_spawn_file_actions_adddup2(stderr)",
                libc::posix_spawn_file_actions_adddup2(a, stderr, 2),
            )?;
            check(
                "posix_spawn_file_actions_adddup2(sync fd)",
                libc::posix_spawn_file_actions_adddup2(a, keep, keep),
            )?;
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            check(
                "posix_spawnattr_setsigmask",
                libc::posix_spawnattr_setsigmask(&mut s.attr, &empty),
            )?;
            let mut pipe: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut pipe);
            libc::sigaddset(&mut pipe, libc::SIGPIPE);
            check(
                "posix_spawnattr_setsigdefault",
                libc::posix_spawnattr_setsigdefault(&mut s.attr, &pipe),
            )?;
            let flags = libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF;
            check(
                "posix_spawnattr_setflags",
                libc::posix_spawnattr_setflags(&mut s.attr, flags as libc::c_short),
            )?;
        }
        Ok(s)
    }
}

/// Start `program args...` with stdio as [`Setup::new`] says and the
/// agent's environment; returns the child's pid (the caller waits for it).
pub(crate) fn spawn(
    program: &Path,
    args: &[OsString],
    stderr: &File,
    keep: RawFd,
) -> io::Result<i32> {
    let prog = program.as_os_str().as_bytes().to_vec();
    let argv = CVec::new(
        std::iter::once(prog.clone()).chain(args.iter().map(|a| a.as_bytes().to_vec())),
        "argument",
    )?;
    let envp = CVec::new(
        std::env::vars_os().map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            kv
        }),
        "environment variable",
    )?;
    let path = CString::new(prog)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "program path contains NUL"))?;
    let setup = Setup::new(stderr.as_raw_fd(), keep)?;
    let mut pid: libc::pid_t = 0;
    // SAFETY: every pointer is valid for the call (argv/envp NULL-terminated,
    // owned by `argv`/`envp`; actions and attr initialised by `Setup::new`).
    let rc = unsafe {
        libc::posix_spawn(
            &mut pid,
            path.as_ptr(),
            &setup.actions,
            &setup.attr,
            argv.ptrs.as_ptr(),
            envp.ptrs.as_ptr(),
        )
    };
    check(&format!("posix_spawn {}", program.display()), rc)?;
    Ok(pid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::OwnedFd;

    fn wait(pid: i32) -> i32 {
        let st = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
        match st {
            nix::sys::wait::WaitStatus::Exited(_, code) => code,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_kept_fd_is_inherited_and_stdio_is_set() {
        let (rd, wr): (OwnedFd, OwnedFd) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let err = File::create(dir.path().join("err")).unwrap();
        let script = format!(
            "echo out; echo err >&2; echo sync >&{fd}; read x || echo stdin-empty >&2",
            fd = wr.as_raw_fd()
        );
        let args: Vec<OsString> = ["-c", &script].iter().map(OsString::from).collect();
        let pid = spawn(Path::new("/bin/sh"), &args, &err, wr.as_raw_fd()).unwrap();
        drop(wr);
        let mut got = String::new();
        File::from(rd).read_to_string(&mut got).unwrap();
        assert_eq!(got, "sync\n");
        assert_eq!(wait(pid), 0);
        let err = std::fs::read_to_string(dir.path().join("err")).unwrap();
        assert_eq!(err, "err\nstdin-empty\n");
    }

    #[test]
    fn a_missing_program_is_an_error_naming_it() {
        let err = File::create("/dev/null").unwrap();
        let e = spawn(Path::new("/nonexistent/shim"), &[], &err, 2).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/shim"), "{e}");
    }
}
