//! OCI lifecycle hooks: run each hook of one kind in order, with exactly its
//! `args` and `env`, the container state JSON on stdin and its `timeout`.
//!
//! No threads: the state is written into the stdin pipe before the hook
//! starts (the pipe is sized to hold it, so the write cannot block and a hook
//! that never reads stdin cannot stall us), and the wait is a poll(2) loop on
//! a pidfd and the hook's output pipe. The output pipe is drained while
//! waiting, so a chatty hook cannot block on a full pipe; its last lines go
//! into the error. A hook runs in its own process group, which is killed
//! when the timeout expires.

use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::{pipe2, Pid};
use oci_spec::runtime::{Hook, State};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl fmt::Display for HookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HookKind::Prestart => "prestart",
            HookKind::CreateRuntime => "createRuntime",
            HookKind::CreateContainer => "createContainer",
            HookKind::StartContainer => "startContainer",
            HookKind::Poststart => "poststart",
            HookKind::Poststop => "poststop",
        })
    }
}

/// Which hook: `hooks.<kind>[<index>]` in config.json, and its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookId {
    pub kind: HookKind,
    pub index: usize,
    pub path: String,
}

impl fmt::Display for HookId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hooks.{}[{}] ({})", self.kind, self.index, self.path)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The hook ran and failed: `status` says how, `output` holds its last
    /// lines of stdout and stderr.
    #[error("{hook}: {status}{}", output_suffix(.output))]
    Failed {
        hook: HookId,
        status: String,
        output: String,
    },

    #[error("{hook}: did not finish within its timeout of {secs}s and was killed{}", output_suffix(.output))]
    Timeout {
        hook: HookId,
        secs: i64,
        output: String,
    },

    /// The hook entry itself is unusable.
    #[error("{hook}: {msg}")]
    Invalid { hook: HookId, msg: String },

    /// Starting or watching the hook failed.
    #[error("{hook}: {step}: {source}")]
    Io {
        hook: HookId,
        step: &'static str,
        source: std::io::Error,
    },

    #[error("{kind} hooks: serializing the container state: {source}")]
    State {
        kind: HookKind,
        source: serde_json::Error,
    },
}

fn output_suffix(output: &str) -> String {
    if output.is_empty() {
        String::new()
    } else {
        format!("; its last output:\n{output}")
    }
}

/// Run `hooks` in order; the first failure stops the rest.
pub fn run(kind: HookKind, hooks: &[Hook], state: &State) -> Result<(), HookError> {
    if hooks.is_empty() {
        return Ok(());
    }
    let json = serde_json::to_vec(state).map_err(|source| HookError::State { kind, source })?;
    for (index, hook) in hooks.iter().enumerate() {
        let id = HookId {
            kind,
            index,
            path: hook.path().display().to_string(),
        };
        run_one(&id, hook, &json)?;
    }
    Ok(())
}

fn run_one(id: &HookId, hook: &Hook, state: &[u8]) -> Result<(), HookError> {
    let invalid = |msg: String| HookError::Invalid {
        hook: id.clone(),
        msg,
    };
    let timeout = match hook.timeout() {
        Some(t) if t <= 0 => return Err(invalid(format!("timeout {t} must be above zero"))),
        t => t,
    };
    let mut cmd = command(hook).map_err(invalid)?;
    let io = |step: &'static str| {
        move |source: std::io::Error| HookError::Io {
            hook: id.clone(),
            step,
            source,
        }
    };
    let stdin = state_pipe(state).map_err(io("writing the container state to a pipe"))?;
    let (out_r, out_w) = output_pipe().map_err(io("creating the output pipe"))?;
    let out_w2 = out_w.try_clone().map_err(io("creating the output pipe"))?;
    cmd.stdin(stdin).stdout(out_w).stderr(out_w2);
    let child = cmd.spawn().map_err(io("starting it"))?;
    // Closes our copies of the child's pipe ends, held by the Command.
    drop(cmd);
    let mut w = Watch {
        child,
        out: Some(File::from(out_r)),
        tail: Tail::default(),
    };
    let deadline = timeout.map(|t| (t, Instant::now() + Duration::from_secs(t as u64)));
    let waited = w.wait(deadline.map(|(_, d)| d)).map_err(|e| {
        // Never leave a hook running unwatched.
        let _ = w.kill();
        io("waiting for it")(e)
    })?;
    match waited {
        Some(status) if status.success() => Ok(()),
        Some(status) => Err(HookError::Failed {
            hook: id.clone(),
            status: describe(status),
            output: w.tail.last_lines(),
        }),
        None => Err(HookError::Timeout {
            hook: id.clone(),
            secs: deadline.map_or(0, |(t, _)| t),
            output: w.tail.last_lines(),
        }),
    }
}

/// The command for a hook: argv[0] is args[0], or the path when args is
/// empty; the environment is exactly `env`.
fn command(hook: &Hook) -> Result<Command, String> {
    let path = hook.path();
    if !path.is_absolute() {
        return Err("path must be absolute".into());
    }
    let args = hook.args().as_deref().unwrap_or_default();
    let mut cmd = Command::new(path);
    match args.split_first() {
        Some((argv0, rest)) => cmd.arg0(argv0).args(rest),
        None => cmd.arg0(path),
    };
    cmd.env_clear();
    for (i, kv) in hook.env().iter().flatten().enumerate() {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("env[{i}] {kv:?} is not NAME=VALUE"))?;
        cmd.env(k, v);
    }
    cmd.process_group(0);
    Ok(cmd)
}

/// A pipe already holding `data` with its write end closed: the hook reads
/// the state and then EOF, and we never wait on the hook to read.
fn state_pipe(data: &[u8]) -> std::io::Result<OwnedFd> {
    let (r, w) = pipe2(OFlag::O_CLOEXEC)?;
    let cap = fcntl(w.as_raw_fd(), FcntlArg::F_GETPIPE_SZ)?;
    if data.len() > cap as usize {
        let want = i32::try_from(data.len()).map_err(|_| Errno::EFBIG)?;
        fcntl(w.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(want))?;
    }
    fcntl(w.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    // Non-blocking: a short write (EAGAIN) is an error, never a hang.
    File::from(w).write_all(data)?;
    Ok(r)
}

/// (our non-blocking read end, the hook's blocking write end)
fn output_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = pipe2(OFlag::O_CLOEXEC)?;
    fcntl(r.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    Ok((r, w))
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => match Signal::try_from(sig) {
            Ok(s) => format!("was killed by {s}"),
            Err(_) => format!("was killed by signal {sig}"),
        },
        _ => format!("ended with {status}"),
    }
}

/// The last bytes a hook wrote, enough for its last few lines.
#[derive(Default)]
struct Tail(Vec<u8>);

impl Tail {
    const KEEP: usize = 4096;
    const LINES: usize = 10;

    fn push(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
        if self.0.len() > 2 * Self::KEEP {
            self.0.drain(..self.0.len() - Self::KEEP);
        }
    }

    fn last_lines(&self) -> String {
        let text = String::from_utf8_lossy(&self.0);
        let lines: Vec<&str> = text.trim_end().lines().collect();
        let start = lines.len().saturating_sub(Self::LINES);
        lines[start..]
            .iter()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

struct Watch {
    child: Child,
    /// None once the output pipe reached EOF.
    out: Option<File>,
    tail: Tail,
}

/// How long to sleep in poll when no pidfd can wake us on exit.
const TICK: Duration = Duration::from_millis(10);

impl Watch {
    /// The exit status, or None if `deadline` passed (the hook's process
    /// group is then killed and reaped).
    fn wait(&mut self, deadline: Option<Instant>) -> std::io::Result<Option<ExitStatus>> {
        let pidfd = pidfd_open(self.child.id());
        loop {
            if let Some(status) = self.child.try_wait()? {
                self.drain()?;
                return Ok(Some(status));
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                self.kill()?;
                return Ok(None);
            }
            let nap = match (&pidfd, left) {
                (Some(_), l) => l,
                (None, l) => Some(l.map_or(TICK, |l| l.min(TICK))),
            };
            self.poll(pidfd.as_ref(), nap)?;
        }
    }

    fn poll(&mut self, pidfd: Option<&OwnedFd>, nap: Option<Duration>) -> std::io::Result<()> {
        // Round up so a sub-millisecond remainder does not spin.
        let ms = nap.map(|d| d.as_millis().saturating_add(1).min(i32::MAX as u128) as i32);
        let timeout = ms.map_or(PollTimeout::NONE, |m| {
            PollTimeout::try_from(m).unwrap_or(PollTimeout::MAX)
        });
        let mut fds: Vec<PollFd> = Vec::with_capacity(2);
        if let Some(out) = &self.out {
            fds.push(PollFd::new(out.as_fd(), PollFlags::POLLIN));
        }
        if let Some(p) = pidfd {
            fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        drop(fds);
        self.drain()
    }

    /// Read whatever output is available without blocking.
    fn drain(&mut self) -> std::io::Result<()> {
        let Some(out) = self.out.as_mut() else {
            return Ok(());
        };
        let mut buf = [0u8; 4096];
        loop {
            match out.read(&mut buf) {
                Ok(0) => {
                    self.out = None;
                    return Ok(());
                }
                Ok(n) => self.tail.push(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn kill(&mut self) -> std::io::Result<()> {
        let pgid = Pid::from_raw(self.child.id() as i32);
        match killpg(pgid, Signal::SIGKILL) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => return Err(e.into()),
        }
        self.child.wait()?;
        self.drain()
    }
}

/// A pidfd for `pid` (readable once it exits), or None on kernels before 5.3.
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and touches no memory.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just returned this new descriptor; we own it.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(json: &str) -> Hook {
        serde_json::from_str(json).expect("test hook parses")
    }

    fn state() -> State {
        serde_json::from_str(
            r#"{"ociVersion":"1.2.0","id":"hooked","status":"created","pid":4242,
            "bundle":"/tmp/bundle","annotations":{"a":"b"}}"#,
        )
        .expect("test state parses")
    }

    fn sh(script: &str, env: &[String], timeout: Option<i64>) -> Hook {
        let mut h = serde_json::json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", script],
            "env": env,
        });
        if let Some(t) = timeout {
            h["timeout"] = t.into();
        }
        serde_json::from_value(h).expect("hook builds")
    }

    #[test]
    fn kind_names_are_the_specs() {
        let names: Vec<String> = [
            HookKind::Prestart,
            HookKind::CreateRuntime,
            HookKind::CreateContainer,
            HookKind::StartContainer,
            HookKind::Poststart,
            HookKind::Poststop,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            names,
            [
                "prestart",
                "createRuntime",
                "createContainer",
                "startContainer",
                "poststart",
                "poststop"
            ]
        );
    }

    #[test]
    fn hook_gets_the_state_on_stdin() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("state.json");
        let h = sh(
            r#"cat > "$OUT""#,
            &[format!("OUT={}", out.display())],
            Some(5),
        );
        run(HookKind::CreateRuntime, &[h], &state()).expect("hook runs");
        let got: State =
            serde_json::from_slice(&std::fs::read(&out).expect("hook wrote")).expect("json");
        assert_eq!(got, state());
    }

    #[test]
    fn only_the_hooks_env_and_its_argv0() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("env");
        let h: Hook = serde_json::from_value(serde_json::json!({
            "path": "/bin/sh",
            "args": ["my-argv0", "-c",
                r#"{ echo "$FOO"; echo "${HOME-unset}"; tr '\0' ' ' < /proc/$$/cmdline; } > "$OUT""#],
            "env": [format!("OUT={}", out.display()), "FOO=bar baz"],
        }))
        .expect("hook builds");
        run(HookKind::Prestart, &[h], &state()).expect("hook runs");
        let got = std::fs::read_to_string(&out).expect("hook wrote");
        let lines: Vec<&str> = got.lines().collect();
        assert_eq!(lines[..2], ["bar baz", "unset"], "{got}");
        assert!(lines[2].starts_with("my-argv0 -c "), "{got}");
    }

    #[test]
    fn argv0_defaults_to_the_path() {
        let h = hook(r#"{"path":"/bin/true"}"#);
        let cmd = command(&h).expect("command");
        assert_eq!(cmd.get_program(), "/bin/true");
        assert_eq!(cmd.get_args().count(), 0);
        let rel = hook(r#"{"path":"bin/true"}"#);
        assert!(command(&rel).is_err());
        let bad_env = hook(r#"{"path":"/bin/true","env":["NOEQUALS"]}"#);
        assert!(command(&bad_env).expect_err("env").contains("env[0]"));
    }

    #[test]
    fn failure_names_the_hook_status_and_stderr_and_stops_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("second-ran");
        let fail = sh("echo starting; echo boom >&2; exit 3", &[], None);
        let second = sh(&format!("touch {}", marker.display()), &[], None);
        let ok = hook(r#"{"path":"/bin/true"}"#);
        let e = run(HookKind::CreateContainer, &[ok, fail, second], &state())
            .expect_err("second hook fails");
        let msg = e.to_string();
        assert!(matches!(e, HookError::Failed { ref hook, .. } if hook.index == 1));
        for want in [
            "hooks.createContainer[1]",
            "/bin/sh",
            "status 3",
            "boom",
            "starting",
        ] {
            assert!(msg.contains(want), "{want:?} missing from {msg}");
        }
        assert!(!marker.exists(), "hooks after a failure must not run");
    }

    #[test]
    fn timeout_kills_the_hook_and_its_children() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile = dir.path().join("pid");
        let h = sh(
            &format!("sleep 30 & echo $! > {}; wait", pidfile.display()),
            &[],
            Some(1),
        );
        let t = Instant::now();
        let e = run(HookKind::Poststop, &[h], &state()).expect_err("times out");
        let took = t.elapsed();
        assert!(matches!(e, HookError::Timeout { secs: 1, .. }), "{e}");
        assert!(e.to_string().contains("hooks.poststop[0]"), "{e}");
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(5),
            "{took:?}"
        );
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .expect("pid written")
            .trim()
            .parse()
            .expect("pid");
        // The orphaned sleep is killed; allow its new parent a moment to reap.
        let gone = (0..100).any(|_| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let dead = stat.is_empty() || stat.contains(") Z ");
            if !dead {
                std::thread::sleep(Duration::from_millis(20));
            }
            dead
        });
        assert!(gone, "sleep {pid} survived the timeout");
    }

    #[test]
    fn big_state_and_hooks_that_ignore_stdin_do_not_block() {
        let mut s = state();
        let big: std::collections::HashMap<String, String> = (0..2000)
            .map(|i| (format!("key{i}"), "v".repeat(100)))
            .collect();
        s.set_annotations(Some(big));
        let ignore = hook(r#"{"path":"/bin/true","timeout":5}"#);
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("state.json");
        let read = sh(
            r#"cat > "$OUT""#,
            &[format!("OUT={}", out.display())],
            Some(5),
        );
        run(HookKind::Poststart, &[ignore, read], &s).expect("hooks run");
        let got: State =
            serde_json::from_slice(&std::fs::read(&out).expect("hook wrote")).expect("json");
        assert_eq!(got, s);
    }

    #[test]
    fn missing_binary_and_zero_timeout_are_errors() {
        let h = hook(r#"{"path":"/nonexistent/hook"}"#);
        let e = run(HookKind::StartContainer, &[h], &state()).expect_err("no binary");
        assert!(
            e.to_string()
                .contains("hooks.startContainer[0] (/nonexistent/hook): starting it"),
            "{e}"
        );
        let h = hook(r#"{"path":"/bin/true","timeout":0}"#);
        assert!(run(HookKind::Prestart, &[h], &state()).is_err());
    }
}
