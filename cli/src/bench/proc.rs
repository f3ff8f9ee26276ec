//! Running one timed command: spawn, wait with a deadline on a pidfd (no
//! polling loop that would round timings up), reap with wait4 for the peak
//! RSS, and read what it printed from files (a created container inherits
//! the runtime's stdio, so a pipe would not see EOF until the container
//! exits).

use std::fs::File;
use std::io::{Read, Seek};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// How a finished command ended.
#[derive(Debug)]
pub struct Finished {
    /// Exit code, 128+signal when killed by a signal, None on timeout.
    pub code: Option<i32>,
    pub elapsed: Duration,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// One line saying how it ended, for a failed run's reason.
    pub fn describe(&self, what: &str) -> String {
        let how = match self.code {
            None => "timed out".to_string(),
            Some(c) => format!("exit {c}"),
        };
        let err = self.stderr.trim();
        let err: String = err.chars().take(300).collect();
        if err.is_empty() {
            format!("{what}: {how}")
        } else {
            format!("{what}: {how}: {err}")
        }
    }
}

/// A child being waited for through its pidfd.
pub struct Running {
    pub child: Child,
    pidfd: OwnedFd,
    pub started: Instant,
    out: File,
    err: File,
}

pub fn pidfd_open(pid: i32) -> Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("pidfd_open({pid})"));
    }
    // SAFETY: the syscall returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Wait until the process behind `pidfd` exits or `timeout` passes; true
/// when it exited.
pub fn wait_readable(fd: &impl AsFd, timeout: Duration) -> Result<bool> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32)
            .unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("poll"),
        }
    }
}

pub fn spawn(cmd: &mut Command) -> Result<Running> {
    let out = tempfile::tempfile().context("temporary file for stdout")?;
    let err = tempfile::tempfile().context("temporary file for stderr")?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone().context("dup stdout file")?)
        .stderr(err.try_clone().context("dup stderr file")?);
    let started = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("spawn {:?}", cmd.get_program()))?;
    let pidfd = pidfd_open(child.id() as i32)?;
    watch(child.id() as i32);
    Ok(Running {
        child,
        pidfd,
        started,
        out,
        err,
    })
}

impl Running {
    /// Has it exited? (Without reaping it: `finish` still needs the status.)
    pub fn exited(&self) -> bool {
        wait_readable(&self.pidfd, Duration::ZERO).unwrap_or(true)
    }

    /// Wait for the exit (killing it after `timeout`) and reap it.
    pub fn finish(mut self, timeout: Duration) -> Result<Finished> {
        let exited = wait_readable(&self.pidfd, timeout)?;
        if !exited {
            let _ = self.child.kill();
        }
        let (status, _) = wait4(self.child.id() as i32)?;
        let elapsed = self.started.elapsed();
        let code = exited.then(|| exit_code(status));
        Ok(Finished {
            code,
            elapsed,
            stdout: read_all(&mut self.out),
            stderr: read_all(&mut self.err),
        })
    }
}

fn read_all(f: &mut File) -> String {
    let mut s = String::new();
    if f.rewind().is_ok() {
        let mut buf = Vec::new();
        let _ = f.read_to_end(&mut buf);
        s = String::from_utf8_lossy(&buf).into_owned();
    }
    s
}

/// Run to completion with a deadline.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<Finished> {
    spawn(cmd)?.finish(timeout)
}

pub fn exit_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        -1
    }
}

/// Reap `pid` (ours, or reparented to us as subreaper) with its rusage.
pub fn wait4(pid: i32) -> Result<(i32, libc::rusage)> {
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: status and ru are valid for writes for the call's duration.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            return Ok((status, ru));
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e).with_context(|| format!("wait4({pid})"));
        }
    }
}

/// Become the reaper of orphaned descendants (container inits after
/// `create`, conmon, detached shims), so their exits can be waited for and
/// none is left a zombie.
pub fn become_subreaper() -> Result<()> {
    // SAFETY: prctl with integer arguments only changes this process's flag.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("prctl(PR_SET_CHILD_SUBREAPER)");
    }
    Ok(())
}

/// Wait (bounded) until every orphan handed to us has exited and is reaped,
/// so that one run's leftovers never overlap the next run.
pub fn drain_orphans(timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let mut status = 0;
        // SAFETY: waitpid only writes the status integer.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if r > 0 {
            continue;
        }
        // r == 0: children remain but none has exited; r < 0 (ECHILD): none left.
        if r < 0 || Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Peak RSS of the processes the bench starts. wait4's ru_maxrss cannot
/// tell: the kernel keeps the high-water mark of the address space a
/// process had before exec, which after a fork or vfork is the bench's own.
/// So while `set_watching(true)` holds, every process started through
/// `spawn` (or passed to `watch`) gets a thread that re-reads its VmHWM
/// (the high-water mark of its current address space) until it exits.
static WATCHING: AtomicBool = AtomicBool::new(false);
/// A watcher's result: process name and peak VmHWM (KiB).
type Watched = Option<(String, u64)>;
static WATCHERS: Mutex<Vec<JoinHandle<Watched>>> = Mutex::new(Vec::new());

pub fn set_watching(on: bool) {
    WATCHING.store(on, Ordering::SeqCst);
}

pub fn watch(pid: i32) {
    if !WATCHING.load(Ordering::SeqCst) {
        return;
    }
    let h = std::thread::spawn(move || {
        let path = format!("/proc/{pid}/status");
        let mut peak: Watched = None;
        // Reads back to back: a runtime invocation lives a few milliseconds.
        while let Ok(status) = std::fs::read_to_string(&path) {
            let field = |k: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(k))
                    .map(|v| v.trim().to_string())
            };
            if field("State:").is_some_and(|s| s.starts_with('Z')) {
                break;
            }
            let Some(name) = field("Name:") else { break };
            // Once reaped, the pid may be reused (even as a thread id of
            // ours): a new name means it is not our process any more.
            if peak.as_ref().is_some_and(|(n, _)| *n != name) {
                break;
            }
            let kib: Option<u64> = field("VmHWM:")
                .and_then(|h| h.split_whitespace().next().and_then(|n| n.parse().ok()));
            // 0 kB: an address space being torn down or set up, not a peak.
            if let Some(kib) = kib.filter(|k| *k > 0) {
                if peak.as_ref().is_none_or(|(_, p)| kib > *p) {
                    peak = Some((name, kib));
                }
            }
        }
        peak
    });
    if let Ok(mut w) = WATCHERS.lock() {
        w.push(h);
    }
}

/// Join the watchers started so far: (process name, peak VmHWM in KiB).
pub fn take_watched() -> Vec<(String, u64)> {
    let handles = match WATCHERS.lock() {
        Ok(mut w) => std::mem::take(&mut *w),
        Err(_) => Vec::new(),
    };
    handles
        .into_iter()
        .filter_map(|h| h.join().ok().flatten())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_reports_exit_output_and_timeout() {
        let f = run(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(
            (f.code, f.stdout.as_str(), f.stderr.as_str()),
            (Some(3), "out\n", "err\n")
        );
        assert!(f.describe("x").contains("exit 3: err"));
        let f = run(Command::new("sleep").arg("5"), Duration::from_millis(100)).unwrap();
        assert_eq!(f.code, None);
        assert!(f.elapsed < Duration::from_secs(4));
        assert!(f.describe("x").contains("timed out"));
    }

    #[test]
    fn watched_processes_report_their_peak() {
        set_watching(true);
        let f = run(Command::new("sleep").arg("0.2"), Duration::from_secs(10)).unwrap();
        set_watching(false);
        assert!(f.ok());
        let seen = take_watched();
        assert!(seen.iter().any(|(n, k)| n == "sleep" && *k > 0), "{seen:?}");
    }
}
