//! Foreground `run` and `exec`: forward the signals we receive to the
//! container process and wait for it, turning its end into an exit code.

use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::error::{Context, Result};

/// Signals a foreground runtime passes on, as runc does (all that can be
/// caught, except SIGCHLD which is ours).
const FORWARDED: [Signal; 14] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGPIPE,
    Signal::SIGALRM,
    Signal::SIGTERM,
    Signal::SIGCONT,
    Signal::SIGTSTP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGWINCH,
    Signal::SIGURG,
];

/// Block the forwarded signals so they queue for `wait_forwarding`.
/// Call before the container process can run, so no signal is lost.
pub fn block() -> Result<SigSet> {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    set.add(Signal::SIGCHLD);
    set.thread_block().step(|| "block signals for forwarding")?;
    Ok(set)
}

/// Wait for `child` (our child process), forwarding signals in `set` to it.
/// Returns its exit code, or 128 + signal number when a signal killed it.
pub fn wait_forwarding(child: Pid, set: &SigSet) -> Result<i32> {
    loop {
        if let Some(code) = reap(child)? {
            return Ok(code);
        }
        let sig = set.wait().step(|| "wait for signals")?;
        if sig != Signal::SIGCHLD {
            // The process may be gone already; the next reap notices.
            let _ = kill(child, sig);
        }
    }
}

/// Non-blocking reap of `child`: its exit code once it ended.
fn reap(child: Pid) -> Result<Option<i32>> {
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(Some(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(Some(128 + sig as i32)),
            Ok(WaitStatus::StillAlive) => return Ok(None),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(crate::Error::sys(format!("waitpid({child})"), e)),
        }
    }
}

pub fn unblock(set: &SigSet) {
    let _ = set.thread_unblock();
}
