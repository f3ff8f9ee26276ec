//! The supervisor proper: create and start the container with our pipes as
//! its stdio, then one poll loop over its output, our signals and (in the
//! foreground with a terminal) the user's keystrokes, until it is reaped;
//! then the exit record, the runtime's cleanup and the exit command.
//!
//! Single-threaded on purpose: the runtime library forks the container
//! init without exec, which is only sound with no other thread around.
//!
//! A detached container without a terminal is not pumped here: once it
//! runs and the caller has its report, this process execs the tiny
//! supervisor (crate::handoff, shim/tiny/), which runs the same loop in a
//! static no_std binary and execs `corral-shim --finish` at the end
//! ([`finish_reaped`]: exit record, cleanup, exit command). The in-process
//! loop remains for the foreground, for terminals, and as the fallback
//! when the hand-off fails.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use corral_runtime::container::{CreateOpts, Runtime};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, OFlag};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::args::{Finish, ShimArgs};
use crate::cri::{LogWriter, Stream};
use crate::error::{Context, Error, Result};
use crate::exit::ExitRecord;
use crate::handoff::Handoff;
use crate::sync::Report;
use crate::term::{ConsoleSocket, RawMode};

/// Signals passed on to the container's init (as runc's foreground `run`
/// does); SIGCHLD and SIGWINCH are ours.
const FORWARDED: [Signal; 6] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// After init is reaped, keep draining output while it still comes, but
/// not longer than this (processes outside its pid namespace may hold the
/// pipes open; the runtime's delete kills them).
const DRAIN_IDLE: Duration = Duration::from_millis(100);
const DRAIN_MAX: Duration = Duration::from_secs(2);

/// Supervise the container to its end. Returns its exit code (0-255 style:
/// 128 + signal when killed). Errors before the container runs are also
/// reported on the sync fd.
pub fn run(args: &ShimArgs) -> Result<i32> {
    let args = absolute(args)?;
    let sync = args.sync_fd.map(take_fd).transpose()?;
    if args.foreground {
        // Our own session: the terminal's ^C reaches `corral` only, which
        // forwards it once (through us).
        let _ = nix::unistd::setsid();
    } else {
        detach()?;
    }
    let begun = setup().and_then(|_| {
        let rt = Runtime::new(&args.runtime_root, false)?;
        let started = start(&args, &rt)?;
        Ok((rt, started))
    });
    let (rt, started) = match begun {
        Ok(x) => x,
        Err(e) => {
            let Some(fd) = sync else { return Err(e) };
            let report = Report::Failed {
                error: e.to_string(),
            };
            return Err(match crate::sync::send(fd, &report) {
                Ok(()) => Error::Reported(Box::new(e)),
                Err(_) => e,
            });
        }
    };
    if let Some(fd) = sync {
        let report = Report::Started {
            pid: started.pid.as_raw(),
            shim_pid: std::process::id() as i32,
        };
        // The caller may be gone (killed); the container runs on regardless.
        if let Err(e) = crate::sync::send(fd, &report) {
            eprintln!("corral-shim: {e}");
        }
    }
    if !args.foreground && !args.tty {
        // Returns only if the tiny supervisor could not take over.
        let e = crate::handoff::exec(&args, &started.handoff());
        eprintln!("corral-shim: tiny supervisor not started ({e}); supervising in-process");
    }
    finish(&args, &rt, started)
}

/// `corral-shim --finish`: the tiny supervisor reaped the container and
/// exec'd us back with its wait status; what the in-process path does
/// after its poll loop.
pub fn finish_reaped(args: &ShimArgs, fin: &Finish) -> Result<i32> {
    // Exec'd from an fd, the kernel named us after its number.
    let _ = nix::sys::prctl::set_name(c"corral-shim");
    let status = WaitStatus::from_raw(Pid::from_raw(0), fin.status)
        .unwrap_or(WaitStatus::Exited(Pid::from_raw(0), 255));
    conclude(args, &fin.cgroup_path, &fin.started_at, status, || {
        if !args.keep {
            match Runtime::new(&args.runtime_root, false) {
                Ok(rt) => delete(&rt, args),
                Err(e) => eprintln!("corral-shim: delete container {:?}: {e}", args.id),
            }
        }
    })
}

/// Block the forwarded signals and SIGCHLD (the mask survives exec; they
/// wait as pending for the next supervisor's signalfd) and forward what
/// the recording handlers caught so far (once: they are cleared).
pub(crate) fn block_and_forward_early(init: i32) -> Result<()> {
    signal_set().thread_block().step(|| "block signals")?;
    let early = EARLY.swap(0, Ordering::SeqCst);
    for sig in FORWARDED {
        if early & (1 << sig as i32) != 0 {
            let _ = nix::sys::signal::kill(Pid::from_raw(init), sig);
        }
    }
    Ok(())
}

fn setup() -> Result<()> {
    install_recorders()?;
    corral_runtime::sys::set_child_subreaper().step(|| "prctl(PR_SET_CHILD_SUBREAPER)")
}

/// Paths made absolute, so a detached shim can leave the caller's directory.
fn absolute(args: &ShimArgs) -> Result<ShimArgs> {
    let abs = |p: &Path| std::path::absolute(p).step(|| format!("resolve {}", p.display()));
    let mut a = args.clone();
    a.bundle = abs(&args.bundle)?;
    a.runtime_root = abs(&args.runtime_root)?;
    a.log = abs(&args.log)?;
    a.exit_file = abs(&args.exit_file)?;
    Ok(a)
}

fn take_fd(raw: i32) -> Result<OwnedFd> {
    nix::fcntl::fcntl(raw, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
        .step(|| format!("--sync-fd {raw}: not an open descriptor"))?;
    // SAFETY: the caller handed us this descriptor for our exclusive use and
    // F_SETFD just proved it open; nothing else in this process owns it.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) })
}

/// Outlive the caller: fork, let the caller's child exit at once (so it
/// never holds a zombie), and lead a new session in the grandchild.
fn detach() -> Result<()> {
    // SAFETY: no thread has been started yet; the parent only calls _exit.
    match unsafe { nix::unistd::fork() }.step(|| "fork the shim into the background")? {
        nix::unistd::ForkResult::Parent { .. } => {
            // SAFETY: leave without running destructors that belong to the child now.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Child => {}
    }
    nix::unistd::setsid().step(|| "setsid")?;
    nix::unistd::chdir("/").step(|| "chdir /")?;
    Ok(())
}

/// Signals that arrive before the signalfd is set up (while the container
/// is being created) are recorded here and forwarded afterwards.
static EARLY: AtomicU64 = AtomicU64::new(0);

extern "C" fn record_signal(sig: libc::c_int) {
    EARLY.fetch_or(1 << sig, Ordering::SeqCst);
}

/// Catch the forwarded signals with a recording handler rather than
/// blocking them: the container's init is forked from us and inherits the
/// signal mask through exec (handlers, by contrast, reset to default).
fn install_recorders() -> Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(record_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in FORWARDED {
        // SAFETY: the handler only does an atomic OR, which is async-signal-safe.
        unsafe { nix::sys::signal::sigaction(sig, &action) }
            .step(|| format!("install a handler for {sig}"))?;
    }
    Ok(())
}

/// A created and started container and what we hold of it.
struct Started {
    pid: Pid,
    cgroup_path: String,
    started_at: String,
    log: LogWriter,
    outputs: Vec<Output>,
    /// The user's terminal/stdin copied to the pty (foreground --tty --stdin).
    input: Option<Input>,
    /// Keeps a detached `--stdin` container's stdin open (never written).
    _stdin_hold: Option<OwnedFd>,
    raw: Option<RawMode>,
    /// Our original stdio, saved while the container's was installed.
    saved: Saved,
}

struct Output {
    fd: OwnedFd,
    stream: Stream,
    /// Foreground: also copy to this (our stdout or stderr); None after a
    /// write error (the caller went away).
    echo: Option<RawFd>,
    open: bool,
}

struct Input {
    master: RawFd,
    pending: Vec<u8>,
    eof: bool,
}

impl Started {
    fn handoff(&self) -> Handoff<'_> {
        let fd_of = |stream| {
            self.outputs
                .iter()
                .find(|o| o.stream == stream)
                .map_or(-1, |o| o.fd.as_raw_fd())
        };
        Handoff {
            init: self.pid.as_raw(),
            stdout_fd: fd_of(Stream::Stdout),
            stderr_fd: fd_of(Stream::Stderr),
            hold_fd: self._stdin_hold.as_ref().map(|f| f.as_raw_fd()),
            started_at: &self.started_at,
            cgroup_path: &self.cgroup_path,
        }
    }
}

/// Create + start; on failure nothing of the container is left behind.
fn start(args: &ShimArgs, rt: &Runtime) -> Result<Started> {
    let log = LogWriter::open(&args.log, args.log_max_size, args.log_max_files)?;
    let saved = Saved::take()?;
    let null = nix::fcntl::open(
        "/dev/null",
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .step(|| "open /dev/null")
    .map(owned)?;
    let plan = Plan::new(args, &saved, &null)?;
    let console = if args.tty {
        Some(ConsoleSocket::bind()?)
    } else {
        None
    };
    let opts = CreateOpts {
        bundle: args.bundle.clone(),
        console_socket: console.as_ref().map(|c| c.path().to_path_buf()),
        ..CreateOpts::default()
    };
    let pid = saved.with_child_stdio(plan.child, || rt.create(&args.id, &opts))??;
    let guard = DeleteOnDrop {
        rt,
        id: &args.id,
        armed: true,
    };
    let Plan {
        child_ends,
        mut outputs,
        stdin_hold,
        ..
    } = plan;
    // Only the container may hold the write ends: EOF must mean it is done.
    drop(child_ends);
    let mut input = None;
    let mut raw = None;
    if let Some(sock) = console {
        let master = sock.receive_master()?;
        set_nonblocking(master.as_raw_fd())?;
        if args.foreground && args.stdin {
            crate::term::copy_winsize(saved.fd(0), master.as_fd());
            raw = RawMode::enter(saved.fd(0))?;
            input = Some(Input {
                master: master.as_raw_fd(),
                pending: Vec::new(),
                eof: false,
            });
        }
        outputs.push(Output {
            fd: master,
            stream: Stream::Stdout,
            echo: args.foreground.then_some(saved.raw(1)),
            open: true,
        });
    }
    let cgroup_path = rt.store.open(&args.id)?.load()?.cgroup_path;
    rt.start(&args.id)?;
    let started_at = corral_runtime::state::now_rfc3339();
    guard.disarm();
    Ok(Started {
        pid: Pid::from_raw(pid),
        cgroup_path,
        started_at,
        log,
        outputs,
        input,
        _stdin_hold: stdin_hold,
        raw,
        saved,
    })
}

/// What the container gets as fds 0-2 and what we keep of each.
struct Plan {
    child: [RawFd; 3],
    /// Child ends: closed in the shim once create forked init.
    child_ends: Vec<OwnedFd>,
    outputs: Vec<Output>,
    stdin_hold: Option<OwnedFd>,
}

impl Plan {
    fn new(args: &ShimArgs, saved: &Saved, null: &OwnedFd) -> Result<Plan> {
        let null_fd = null.as_raw_fd();
        let mut plan = Plan {
            child: [null_fd; 3],
            child_ends: Vec::new(),
            outputs: Vec::new(),
            stdin_hold: None,
        };
        if args.tty {
            // Init replaces all three with the pty slave.
            return Ok(plan);
        }
        for (i, stream) in [(1, Stream::Stdout), (2, Stream::Stderr)] {
            let (rd, wr) = pipe()?;
            plan.child[i] = wr.as_raw_fd();
            plan.child_ends.push(wr);
            plan.outputs.push(Output {
                fd: rd,
                stream,
                echo: args.foreground.then_some(saved.raw(i)),
                open: true,
            });
        }
        if args.stdin && args.foreground {
            plan.child[0] = saved.raw(0);
        } else if args.stdin {
            let (rd, wr) = pipe()?;
            plan.child[0] = rd.as_raw_fd();
            plan.child_ends.push(rd);
            plan.stdin_hold = Some(wr);
        }
        Ok(plan)
    }
}

/// Our own fds 0-2, duplicated away (close-on-exec) while the container's
/// stdio sits in their place during create.
struct Saved {
    fds: [OwnedFd; 3],
}

impl Saved {
    fn take() -> Result<Saved> {
        let dup = |fd: RawFd| -> Result<OwnedFd> {
            match nix::fcntl::fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(10)) {
                Ok(n) => Ok(owned(n)),
                // A closed stdio slot reads as /dev/null.
                Err(Errno::EBADF) => nix::fcntl::open(
                    "/dev/null",
                    OFlag::O_RDWR | OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .map(owned)
                .step(|| "open /dev/null"),
                Err(e) => Err(e).step(|| format!("duplicate fd {fd}")),
            }
        };
        Ok(Saved {
            fds: [dup(0)?, dup(1)?, dup(2)?],
        })
    }

    fn fd(&self, i: usize) -> BorrowedFd<'_> {
        self.fds[i].as_fd()
    }

    fn raw(&self, i: usize) -> RawFd {
        self.fds[i].as_raw_fd()
    }

    /// Run `f` (the runtime's create, which forks init) with `child` as
    /// fds 0-2, then put ours back.
    fn with_child_stdio<T>(&self, child: [RawFd; 3], f: impl FnOnce() -> T) -> Result<T> {
        for (target, fd) in child.iter().enumerate() {
            nix::unistd::dup2(*fd, target as RawFd)
                .step(|| format!("install the container's fd {target}"))?;
        }
        let out = f();
        for (target, fd) in self.fds.iter().enumerate() {
            nix::unistd::dup2(fd.as_raw_fd(), target as RawFd)
                .step(|| format!("restore our fd {target}"))?;
        }
        Ok(out)
    }
}

/// Force-deletes the runtime's container unless disarmed.
struct DeleteOnDrop<'a> {
    rt: &'a Runtime,
    id: &'a str,
    armed: bool,
}

impl DeleteOnDrop<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for DeleteOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = self.rt.delete(self.id, true) {
                eprintln!("corral-shim: cleaning up container {:?}: {e}", self.id);
            }
        }
    }
}

/// Pump until the container is reaped, then record its exit and clean up.
fn finish(args: &ShimArgs, rt: &Runtime, mut s: Started) -> Result<i32> {
    // Writing to a caller that went away must fail with EPIPE, not kill us.
    // Set only now: init has exec'd and does not inherit it.
    // SAFETY: SIG_IGN installs no code.
    unsafe { nix::sys::signal::signal(Signal::SIGPIPE, SigHandler::SigIgn) }
        .step(|| "ignore SIGPIPE")?;
    let status = match pump(&mut s) {
        Ok(st) => st,
        Err(e) => {
            // Without the loop, still wait for init so its exit is recorded.
            eprintln!("corral-shim: {e}; waiting for the container without relaying its output");
            wait_blocking(s.pid)
        }
    };
    drop(s.raw.take());
    let cgroup_path = std::mem::take(&mut s.cgroup_path);
    let started_at = std::mem::take(&mut s.started_at);
    conclude(args, &cgroup_path, &started_at, status, || {
        if !args.keep {
            delete(rt, args);
        }
        drop(s);
    })
}

/// After init is reaped: the exit record, then `cleanup` (the runtime's
/// delete), then the exit command. Returns the exit code.
fn conclude(
    args: &ShimArgs,
    cgroup_path: &str,
    started_at: &str,
    status: WaitStatus,
    cleanup: impl FnOnce(),
) -> Result<i32> {
    let finished_at = corral_runtime::state::now_rfc3339();
    let (exit_code, signal) = match status {
        WaitStatus::Signaled(_, sig, _) => (128 + sig as i32, Some(sig as i32)),
        WaitStatus::Exited(_, code) => (code, None),
        _ => (255, None),
    };
    let record = ExitRecord {
        exit_code,
        signal,
        oom_killed: crate::exit::oom_killed(cgroup_path),
        started_at: started_at.to_string(),
        finished_at,
    };
    let recorded = record.write(&args.exit_file);
    cleanup();
    run_exit_command(args);
    recorded?;
    Ok(exit_code)
}

fn delete(rt: &Runtime, args: &ShimArgs) {
    if let Err(e) = rt.delete(&args.id, true) {
        eprintln!("corral-shim: delete container {:?}: {e}", args.id);
    }
}

fn run_exit_command(args: &ShimArgs) {
    let Some(cmd) = &args.exit_command else {
        return;
    };
    let status = std::process::Command::new(cmd)
        .args(&args.exit_command_args)
        .stdin(std::process::Stdio::null())
        .status();
    match status {
        Ok(st) if st.success() => {}
        Ok(st) => eprintln!("corral-shim: exit command {}: {st}", cmd.display()),
        Err(e) => eprintln!("corral-shim: run exit command {}: {e}", cmd.display()),
    }
}

/// The poll loop. Returns init's wait status.
fn pump(s: &mut Started) -> Result<WaitStatus> {
    let sfd = signal_fd()?;
    for sig in FORWARDED {
        if EARLY.load(Ordering::SeqCst) & (1 << sig as i32) != 0 {
            let _ = nix::sys::signal::kill(s.pid, sig);
        }
    }
    let mut status = reap(s.pid, None);
    let mut exited_at = status.map(|_| Instant::now());
    let mut buf = vec![0u8; 64 * 1024];
    let mut log_broken = false;
    loop {
        if let (Some(st), Some(at)) = (status, exited_at) {
            if s.outputs.iter().all(|o| !o.open) || at.elapsed() >= DRAIN_MAX {
                return Ok(st);
            }
        }
        let mut fds = poll_set(s, &sfd);
        let timeout = if status.is_some() {
            DRAIN_IDLE.as_millis() as i32
        } else {
            -1
        };
        if poll(&mut fds, timeout)? == 0 {
            if let Some(st) = status {
                return Ok(st);
            }
            continue;
        }
        if fds[0].revents != 0 {
            for sig in read_signals(&sfd)? {
                match sig {
                    Signal::SIGCHLD => status = reap(s.pid, status),
                    Signal::SIGWINCH => resize(s),
                    other if status.is_none() => {
                        let _ = nix::sys::signal::kill(s.pid, other);
                    }
                    _ => {}
                }
            }
            if status.is_some() && exited_at.is_none() {
                exited_at = Some(Instant::now());
            }
        }
        let mut idx = 1;
        for out in s.outputs.iter_mut().filter(|o| o.open) {
            if fds[idx].revents != 0 {
                drain_output(out, &mut s.log, &mut log_broken, &mut buf);
            }
            idx += 1;
        }
        if let Some(input) = s.input.as_mut() {
            if !input.eof || !input.pending.is_empty() {
                move_input(
                    input,
                    s.saved.raw(0),
                    fds[idx].revents,
                    fds[idx + 1].revents,
                    &mut buf,
                );
            }
        }
    }
}

/// Poll entries: the signalfd, each open output, then (with terminal
/// input) the user's stdin and the pty master for writing.
fn poll_set(s: &Started, sfd: &SignalFd) -> Vec<libc::pollfd> {
    let entry = |fd: RawFd, events: libc::c_short| libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let mut fds = vec![entry(sfd.as_raw_fd(), libc::POLLIN)];
    for out in s.outputs.iter().filter(|o| o.open) {
        fds.push(entry(out.fd.as_raw_fd(), libc::POLLIN));
    }
    if let Some(input) = &s.input {
        // A negative fd is ignored by poll: read stdin only while there is
        // room, wait for the master only while input is pending.
        let reading = !input.eof && input.pending.len() < 64 * 1024;
        fds.push(entry(
            if reading { s.saved.raw(0) } else { -1 },
            libc::POLLIN,
        ));
        fds.push(entry(
            if input.pending.is_empty() {
                -1
            } else {
                input.master
            },
            libc::POLLOUT,
        ));
    }
    fds
}

fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> Result<usize> {
    loop {
        // SAFETY: `fds` is a valid, exclusively borrowed array of pollfd for
        // the duration of the call, and its length is passed with it.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        match Errno::result(n) {
            Ok(n) => return Ok(n as usize),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e).step(|| "poll"),
        }
    }
}

/// Read what is there (the fd is non-blocking or just polled readable),
/// log it and echo it. EOF, or EIO from a pty whose slave side is all
/// closed, ends the output. Failures only cost output, never the
/// supervision: the exit must still be recorded.
fn drain_output(out: &mut Output, log: &mut LogWriter, log_broken: &mut bool, buf: &mut [u8]) {
    match nix::unistd::read(out.fd.as_raw_fd(), buf) {
        Ok(0) | Err(Errno::EIO) => out.open = false,
        Ok(n) => {
            if let Err(e) = log.write(out.stream, &buf[..n]) {
                if !*log_broken {
                    eprintln!("corral-shim: {e} (output is lost until writing works again)");
                    *log_broken = true;
                }
            } else {
                *log_broken = false;
            }
            if let Some(fd) = out.echo {
                if write_all(fd, &buf[..n]).is_err() {
                    out.echo = None;
                }
            }
        }
        Err(Errno::EAGAIN | Errno::EINTR) => {}
        Err(e) => {
            eprintln!(
                "corral-shim: read the container's {}: {e}",
                out.stream.as_str()
            );
            out.open = false;
        }
    }
}

/// Terminal input: stdin -> pending -> pty master, without ever blocking on
/// a container that does not read.
fn move_input(input: &mut Input, stdin: RawFd, in_ev: i16, out_ev: i16, buf: &mut [u8]) {
    if in_ev != 0 {
        match nix::unistd::read(stdin, buf) {
            Ok(0) => input.eof = true,
            Ok(n) => input.pending.extend_from_slice(&buf[..n]),
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(_) => input.eof = true,
        }
    }
    if out_ev != 0 && !input.pending.is_empty() {
        // SAFETY: the master stays open in `outputs` for as long as `input` lives.
        let master = unsafe { BorrowedFd::borrow_raw(input.master) };
        match nix::unistd::write(master, &input.pending) {
            Ok(n) => {
                input.pending.drain(..n);
            }
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            // The container's side is gone: drop the input.
            Err(_) => {
                input.pending.clear();
                input.eof = true;
            }
        }
    }
}

fn write_all(fd: RawFd, mut data: &[u8]) -> nix::Result<()> {
    // SAFETY: `fd` is one of our saved stdio descriptors, open for our life.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR | Errno::EAGAIN) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn resize(s: &Started) {
    if let Some(input) = &s.input {
        // SAFETY: as in move_input.
        let master = unsafe { BorrowedFd::borrow_raw(input.master) };
        crate::term::copy_winsize(s.saved.fd(0), master);
    }
}

/// The signals the poll loop reads from its signalfd.
fn signal_set() -> SigSet {
    let mut set = SigSet::empty();
    for sig in FORWARDED {
        set.add(sig);
    }
    set.add(Signal::SIGCHLD);
    set.add(Signal::SIGWINCH);
    set
}

/// Block our signals and read them from a signalfd in the poll loop.
fn signal_fd() -> Result<SignalFd> {
    let set = signal_set();
    set.thread_block().step(|| "block signals")?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).step(|| "signalfd")
}

fn read_signals(sfd: &SignalFd) -> Result<Vec<Signal>> {
    let mut out = Vec::new();
    loop {
        match sfd.read_signal() {
            Ok(Some(info)) => {
                if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
                    out.push(sig);
                }
            }
            Ok(None) | Err(Errno::EAGAIN) => return Ok(out),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e).step(|| "read the signalfd"),
        }
    }
}

/// Reap every child that ended (as subreaper we inherit the container's
/// orphans when it shares our pid namespace). Returns init's status once
/// it has ended.
fn reap(init: Pid, mut status: Option<WaitStatus>) -> Option<WaitStatus> {
    loop {
        match nix::sys::wait::waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return status,
            Ok(ws @ (WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _))) => {
                if pid == init {
                    status = Some(ws);
                }
            }
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => return status,
        }
    }
}

fn wait_blocking(init: Pid) -> WaitStatus {
    loop {
        match nix::sys::wait::waitpid(init, None) {
            Ok(ws @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => return ws,
            Ok(_) | Err(Errno::EINTR) => continue,
            // Not our child any more (reaped elsewhere): nothing to learn.
            Err(_) => return WaitStatus::Exited(init, 255),
        }
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).step(|| "pipe2")
}

fn set_nonblocking(fd: RawFd) -> Result<()> {
    let flags = nix::fcntl::fcntl(fd, FcntlArg::F_GETFL).step(|| "F_GETFL")?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(fd, FcntlArg::F_SETFL(flags))
        .step(|| "set O_NONBLOCK")
        .map(drop)
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: only called with descriptors just returned by open/fcntl,
    // which nothing else owns.
    unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) }
}
