//! `exec`: run another process inside a created or running container. A
//! short-lived joiner enters the container's namespaces and forks the
//! process as our child (CLONE_PARENT), which we put in the container's
//! cgroup before it goes on; a successful execve closes the sync channel.

use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, Process};

use crate::cgroups::ContainerCgroup;
use crate::container::Runtime;
use crate::error::{Context, Error, Result};
use crate::namespaces::{self, EXEC_ORDER};
use crate::state::Record;
use crate::sync::{self, Channel, Msg};

#[derive(Debug, Clone, Default)]
pub struct ExecOpts {
    pub console_socket: Option<PathBuf>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: u32,
}

/// Run `process` in container `id`. Returns the exit code (0 when detached).
pub fn exec(rt: &Runtime, id: &str, process: &Process, opts: &ExecOpts) -> Result<i32> {
    crate::spec::check_process_fields(process, "process").map_err(Error::Usage)?;
    let (entry, rec) = rt.running_record(id)?;
    let ns_fds = namespace_fds(&rec)?;
    let console = opts
        .console_socket
        .as_deref()
        .map(crate::console::connect)
        .transpose()?;
    let (parent, child) = sync::pair()?;
    let pid = spawn(
        &ns_fds,
        &rec,
        process,
        &child,
        &parent,
        console.as_ref(),
        opts.preserve_fds,
    )?;
    drop(child);
    drop(console);
    let guard = KillOnDrop(Some(pid));
    ContainerCgroup::load(&rec.cgroup_path)?.add_pid(pid.as_raw())?;
    // Forwarded signals must queue from before the process can run.
    let sigs = if opts.detach {
        None
    } else {
        Some(crate::signals::block()?)
    };
    parent.send(&Msg::Pid(pid.as_raw()))?;
    match parent.recv()? {
        None => {}
        Some(Msg::Fail(m)) => return Err(Error::Init(m)),
        Some(m) => return Err(Error::Init(format!("unexpected {m:?} from exec'd process"))),
    }
    // Other verbs may act on the container while we wait.
    drop(entry);
    guard.disarm();
    if let Some(pf) = &opts.pid_file {
        crate::state::write_atomic(pf, pid.to_string().as_bytes())?;
    }
    match sigs {
        None => Ok(0),
        Some(set) => {
            let code = crate::signals::wait_forwarding(pid, &set);
            crate::signals::unblock(&set);
            code
        }
    }
}

struct KillOnDrop(Option<Pid>);

impl KillOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
    }
}

/// Open the init's namespaces that differ from ours, in join order.
fn namespace_fds(rec: &Record) -> Result<Vec<(LinuxNamespaceType, OwnedFd)>> {
    let mut out = Vec::new();
    for typ in EXEC_ORDER {
        let name = namespaces::proc_name(typ);
        let theirs = format!("/proc/{}/ns/{name}", rec.pid);
        let ours = format!("/proc/self/ns/{name}");
        let (Ok(a), Ok(b)) = (std::fs::metadata(&theirs), std::fs::metadata(&ours)) else {
            continue;
        };
        if a.ino() == b.ino() && a.dev() == b.dev() {
            continue;
        }
        let fd = crate::init::open_owned(theirs.as_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC)
            .step(|| format!("open {theirs}"))?;
        out.push((typ, fd));
    }
    Ok(out)
}

fn spawn(
    ns_fds: &[(LinuxNamespaceType, OwnedFd)],
    rec: &Record,
    process: &Process,
    child_end: &Channel,
    parent_end: &Channel,
    console: Option<&OwnedFd>,
    preserve_fds: u32,
) -> Result<Pid> {
    // SAFETY: the CLI is single-threaded; the joiner ends in _exit.
    match unsafe { crate::sys::clone_fork(CloneFlags::empty()) } {
        Ok(Some(mid)) => {
            let _ = nix::sys::wait::waitpid(mid, None);
            match parent_end.recv()? {
                Some(Msg::Pid(p)) => Ok(Pid::from_raw(p)),
                Some(Msg::Fail(m)) => Err(Error::Init(m)),
                other => Err(Error::Init(format!("exec joiner ended with {other:?}"))),
            }
        }
        Ok(None) => {
            // SAFETY: closing our copy of the parent's end after fork.
            unsafe { libc::close(parent_end.raw_fd()) };
            joiner(ns_fds, rec, process, child_end, console, preserve_fds)
        }
        Err(e) => Err(Error::sys("fork the exec joiner", e)),
    }
}

fn joiner(
    ns_fds: &[(LinuxNamespaceType, OwnedFd)],
    rec: &Record,
    process: &Process,
    chan: &Channel,
    console: Option<&OwnedFd>,
    preserve_fds: u32,
) -> ! {
    let joined = ns_fds.iter().try_for_each(|(typ, fd)| {
        nix::sched::setns(fd, namespaces::flag(*typ)).step(|| {
            format!(
                "join the container's {} namespace",
                namespaces::proc_name(*typ)
            )
        })
    });
    // SAFETY: single-threaded fork of the CLI.
    let forked = joined.and_then(|_| {
        unsafe { crate::sys::clone_fork(CloneFlags::CLONE_PARENT) }
            .map_err(|e| Error::sys("fork the exec'd process", e))
    });
    match forked {
        Ok(None) => {
            let err = match exec_child(rec, process, chan, console, preserve_fds) {
                Ok(never) => match never {},
                Err(e) => e,
            };
            let _ = chan.send(&Msg::Fail(err.to_string()));
            // SAFETY: leave this forked copy without the CLI's exit path.
            unsafe { libc::_exit(127) }
        }
        Ok(Some(pid)) => {
            let _ = chan.send(&Msg::Pid(pid.as_raw()));
        }
        Err(e) => {
            let _ = chan.send(&Msg::Fail(e.to_string()));
        }
    }
    // SAFETY: as above.
    unsafe { libc::_exit(0) }
}

fn exec_child(
    rec: &Record,
    process: &Process,
    chan: &Channel,
    console: Option<&OwnedFd>,
    preserve_fds: u32,
) -> Result<std::convert::Infallible> {
    // The go-ahead carries our host pid once we are in the cgroup.
    match chan.recv()? {
        Some(Msg::Pid(_)) => {}
        Some(Msg::Fail(m)) => return Err(Error::Init(m)),
        other => return Err(Error::Init(format!("expected go-ahead, got {other:?}"))),
    }
    let in_userns = rec
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|n| n.iter().any(|n| n.typ() == LinuxNamespaceType::User));
    if in_userns {
        nix::unistd::setresgid(0.into(), 0.into(), 0.into()).step(|| "setresgid(0)")?;
        nix::unistd::setresuid(0.into(), 0.into(), 0.into()).step(|| "setresuid(0)")?;
    }
    if process.terminal() == Some(true) {
        let sock = console.ok_or_else(|| {
            Error::Usage("--tty needs --console-socket (no terminal to attach to)".into())
        })?;
        nix::unistd::setsid().step(|| "setsid")?;
        let size = process
            .console_size()
            .map(|b| (b.height() as u16, b.width() as u16));
        crate::console::setup(sock, size)?;
    }
    let exe = crate::init::prepare_process(process, &rec.spec, preserve_fds)?;
    if let Some(f) = crate::init::compile_late_seccomp(process, &rec.spec)? {
        f.load()?;
    }
    crate::init::exec(&exe, process)
}
