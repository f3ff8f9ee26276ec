//! The supervisor's loop, as shim/src/supervise.rs `pump` does it for a
//! detached container without a terminal: relay both output pipes into
//! the log, forward signals to init, reap; drain what is left; then hand
//! the wait status to `corral-shim --finish`.

use super::args::{self, Work, FINISH_AT};
use super::cri::Stream;
use super::log::{Failure, LogWriter};
use super::record;
use super::sys::{self, CStr, Errno, PollFd, SigSet, Startup};
use super::time;

/// SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2: shim/src/supervise.rs FORWARDED.
const FORWARDED: [i32; 6] = [1, 2, 3, 15, 10, 12];
const SIGPIPE: i32 = 13;
const SIGCHLD: i32 = 17;
const SIGWINCH: i32 = 28;

/// shim/src/supervise.rs DRAIN_IDLE and DRAIN_MAX.
const DRAIN_IDLE_MS: i32 = 100;
const DRAIN_MAX_NS: i64 = 2_000_000_000;

const FINISH: CStr<'static> = match CStr::new(b"--finish\0") {
    Some(c) => c,
    None => panic!("not a C string"),
};

pub fn run(st: &Startup) -> ! {
    if st.argc() > sys::MAX_ARGS {
        say(&[b"corral-shim: tiny supervisor: too many arguments"]);
        sys::exit(125);
    }
    let mut argv = [CStr::EMPTY; sys::MAX_ARGS];
    for (i, a) in argv.iter_mut().enumerate().take(st.argc()) {
        *a = st.arg(i).unwrap_or(CStr::EMPTY);
    }
    let argv = &argv[..st.argc()];
    let work = match args::parse(argv) {
        Ok(w) => w,
        Err(e) => {
            say(&[b"corral-shim: tiny supervisor: ", e.as_bytes()]);
            sys::exit(125)
        }
    };
    prepare(&work);
    let status = supervise(&work);
    finish(st, argv, &work, status)
}

/// Our fds are not for corral-shim --finish nor its exit command; a
/// caller gone away must cost a write EPIPE, not our life; orphans of the
/// container (same pid namespace) are still ours to reap.
fn prepare(w: &Work) {
    for fd in [w.stdout_fd, w.stderr_fd, w.shim_fd]
        .into_iter()
        .chain(w.hold_fd)
    {
        if let Err(e) = sys::set_cloexec(fd) {
            say_errno(&[b"corral-shim: set close-on-exec on an inherited fd"], e);
        }
    }
    if let Err(e) = sys::ignore(SIGPIPE) {
        say_errno(&[b"corral-shim: ignore SIGPIPE"], e);
    }
    // exec from an fd named us after its number.
    if let Some(name) = CStr::new(b"corral-shim\0") {
        let _ = sys::set_name(name);
    }
    if let Err(e) = sys::set_child_subreaper() {
        say_errno(&[b"corral-shim: prctl(PR_SET_CHILD_SUBREAPER)"], e);
    }
}

/// Init's raw wait status.
fn supervise(w: &Work) -> i32 {
    let set = SigSet::of(&[1, 2, 3, 15, 10, 12, SIGCHLD, SIGWINCH]);
    let sfd = sys::block(set)
        .map_err(|e| ("block signals", e))
        .and_then(|_| {
            sys::signalfd(set, sys::SFD_CLOEXEC | sys::SFD_NONBLOCK).map_err(|e| ("signalfd", e))
        });
    let result = sfd.and_then(|sfd| pump(w, sfd as i32));
    match result {
        Ok(status) => status,
        Err((step, e)) => {
            // Without the loop, still wait for init so its exit is recorded.
            let tail: &[u8] = b"; waiting for the container without relaying its output";
            say_errno_then(&[b"corral-shim: ", step.as_bytes()], e, tail);
            wait_blocking(w.init)
        }
    }
}

struct Output {
    fd: i32,
    stream: Stream,
    open: bool,
}

/// What the output relay keeps between chunks.
struct Relay<'p> {
    path: CStr<'p>,
    max_size: u64,
    max_files: u32,
    /// None while the log cannot be opened (retried at the next chunk).
    log: Option<LogWriter<'p>>,
    broken: bool,
}

type Step = (&'static str, Errno);

/// The poll loop. Returns init's raw wait status.
fn pump(w: &Work, sfd: i32) -> Result<i32, Step> {
    let mut relay = Relay {
        path: w.log,
        max_size: w.max_size,
        max_files: w.max_files,
        log: None,
        broken: false,
    };
    relay.reopen();
    let mut outputs = [
        Output {
            fd: w.stdout_fd,
            stream: Stream::Stdout,
            open: true,
        },
        Output {
            fd: w.stderr_fd,
            stream: Stream::Stderr,
            open: true,
        },
    ];
    let mut status = reap(w.init, None);
    let mut exited_at = status.map(|_| monotonic_ns());
    let mut buf = [0u8; 64 * 1024];
    let mut out = [0u8; 16 * 1024];
    loop {
        if let (Some(st), Some(at)) = (status, exited_at) {
            if outputs.iter().all(|o| !o.open) || monotonic_ns() - at >= DRAIN_MAX_NS {
                return Ok(st);
            }
        }
        let entry = |fd: i32| PollFd {
            fd,
            events: sys::POLLIN,
            revents: 0,
        };
        // A negative fd is ignored by poll.
        let fd_of = |o: &Output| if o.open { o.fd } else { -1 };
        let mut fds = [
            entry(sfd),
            entry(fd_of(&outputs[0])),
            entry(fd_of(&outputs[1])),
        ];
        let timeout = if status.is_some() { DRAIN_IDLE_MS } else { -1 };
        match sys::poll(&mut fds, timeout) {
            Ok(0) => match status {
                Some(st) => return Ok(st),
                None => continue,
            },
            Ok(_) => {}
            Err(sys::EINTR) => continue,
            Err(e) => return Err(("poll", e)),
        }
        if fds[0].revents != 0 {
            status = signals(sfd, w.init, status)?;
            if status.is_some() && exited_at.is_none() {
                exited_at = Some(monotonic_ns());
            }
        }
        for (o, p) in outputs.iter_mut().zip(&fds[1..]) {
            if o.open && p.revents != 0 {
                drain(o, &mut relay, &mut buf, &mut out);
            }
        }
    }
}

/// Read the signalfd dry: reap on SIGCHLD, forward the others while init lives.
fn signals(sfd: i32, init: i32, mut status: Option<i32>) -> Result<Option<i32>, Step> {
    // struct signalfd_siginfo is 128 bytes, ssi_signo its first u32.
    let mut infos = [0u8; 128 * 8];
    loop {
        let n = match sys::read(sfd, &mut infos) {
            Ok(n) => n,
            Err(sys::EAGAIN) => return Ok(status),
            Err(sys::EINTR) => continue,
            Err(e) => return Err(("read the signalfd", e)),
        };
        if n == 0 {
            return Ok(status);
        }
        for info in infos[..n].chunks_exact(128) {
            let sig = u32::from_le_bytes([info[0], info[1], info[2], info[3]]) as i32;
            match sig {
                SIGCHLD => status = reap(init, status),
                SIGWINCH => {}
                other if status.is_none() && FORWARDED.contains(&other) => {
                    let _ = sys::kill(init, other);
                }
                _ => {}
            }
        }
    }
}

impl Relay<'_> {
    fn reopen(&mut self) {
        match LogWriter::open(self.path, self.max_size, self.max_files) {
            Ok(l) => self.log = Some(l),
            Err(f) => self.failed(f),
        }
    }

    /// Failures only cost output, never the supervision: the exit must
    /// still be recorded. Said once until writing works again.
    fn failed(&mut self, f: Failure) {
        if !self.broken {
            say_errno_then(
                &[b"corral-shim: ", f.step.as_bytes(), b" ", self.path.bytes()],
                f.errno,
                b" (output is lost until writing works again)",
            );
            self.broken = true;
        }
    }

    fn write(&mut self, stream: Stream, data: &[u8], out: &mut [u8]) {
        if self.log.is_none() {
            self.reopen();
        }
        let Some(log) = self.log.as_mut() else { return };
        let (secs, nanos) = sys::clock(sys::CLOCK_REALTIME);
        match log.write(stream, data, &time::rfc3339(secs, nanos), out) {
            Ok(()) => self.broken = false,
            Err(f) => self.failed(f),
        }
    }
}

/// Read what is there and log it. EOF or EIO ends the output.
fn drain(o: &mut Output, relay: &mut Relay, buf: &mut [u8], out: &mut [u8]) {
    match sys::read(o.fd, buf) {
        Ok(0) | Err(sys::EIO) => o.open = false,
        Ok(n) => relay.write(o.stream, &buf[..n], out),
        Err(sys::EAGAIN | sys::EINTR) => {}
        Err(e) => {
            let name: &[u8] = match o.stream {
                Stream::Stdout => b"stdout",
                Stream::Stderr => b"stderr",
            };
            say_errno(&[b"corral-shim: read the container's ", name], e);
            o.open = false;
        }
    }
    if !o.open {
        sys::close(o.fd);
    }
}

fn ended(status: i32) -> bool {
    let low = status & 0x7f;
    // WIFEXITED (low 0) or WIFSIGNALED (low neither 0 nor 0x7f, stopped).
    low != 0x7f
}

/// Reap every child that ended (as subreaper we inherit the container's
/// orphans). Returns init's status once it has ended.
fn reap(init: i32, mut status: Option<i32>) -> Option<i32> {
    loop {
        match sys::wait4(-1, sys::WNOHANG) {
            Ok((0, _)) | Err(sys::ECHILD) => return status,
            Ok((pid, st)) => {
                if pid == init && ended(st) {
                    status = Some(st);
                }
            }
            Err(sys::EINTR) => continue,
            Err(_) => return status,
        }
    }
}

fn wait_blocking(init: i32) -> i32 {
    loop {
        match sys::wait4(init, 0) {
            Ok((_, st)) if ended(st) => return st,
            Ok(_) | Err(sys::EINTR) => continue,
            // Not our child any more: exit code 255, as the shim records it.
            Err(_) => return 255 << 8,
        }
    }
}

/// Exec `ARGV0 --finish STATUS FINISH...` from corral-shim's own file.
fn finish(st: &Startup, argv: &[CStr], w: &Work, status: i32) -> ! {
    let mut num = [0u8; 24];
    let len = args::decimal(status as i64, &mut num);
    let status_arg = CStr::new(&num[..=len]).unwrap_or(CStr::EMPTY);
    let mut next = [CStr::EMPTY; sys::MAX_ARGS];
    next[0] = argv[0];
    next[1] = FINISH;
    next[2] = status_arg;
    let rest = &argv[FINISH_AT..];
    next[3..3 + rest.len()].copy_from_slice(rest);
    let e = st.exec_fd(w.shim_fd, &next[..3 + rest.len()]);
    say_errno_then(
        &[b"corral-shim: exec corral-shim --finish"],
        e,
        b"; recording the exit without the OOM check and leaving the runtime's state",
    );
    record_exit(rest, status);
    sys::exit(record::exit_of(status).0)
}

/// The exit record `--finish` would have written, minus what needs the
/// std shim (OOM check, runtime delete, exit command). `rest` is the
/// finish argv: `--started-at T --cgroup-path P` then the shim's flags.
fn record_exit(rest: &[CStr], status: i32) {
    let value_of = |flag: &[u8]| rest.windows(2).find(|p| p[0].bytes() == flag).map(|p| p[1]);
    let (Some(path), Some(started)) = (value_of(b"--exit-file"), value_of(b"--started-at")) else {
        say(&[b"corral-shim: no --exit-file in the finish arguments"]);
        return;
    };
    let (secs, nanos) = sys::clock(sys::CLOCK_REALTIME);
    let mut json = [0u8; 512];
    let Some(n) = record::encode(
        status,
        started.bytes(),
        &time::rfc3339(secs, nanos),
        &mut json,
    ) else {
        say(&[b"corral-shim: --started-at is not a timestamp"]);
        return;
    };
    if let Err(f) = record::write_atomic(path, &json[..n]) {
        say_errno(
            &[b"corral-shim: ", f.step.as_bytes(), b" ", path.bytes()],
            f.errno,
        );
    }
}

fn monotonic_ns() -> i64 {
    let (s, n) = sys::clock(sys::CLOCK_MONOTONIC);
    s * 1_000_000_000 + n as i64
}

/// One line on stderr (the shim's log), written at once.
fn say(parts: &[&[u8]]) {
    let mut line = [0u8; 1024];
    let mut len = 0;
    for p in parts.iter().chain([&&b"\n"[..]]) {
        let n = p.len().min(line.len() - 1 - len);
        line[len..len + n].copy_from_slice(&p[..n]);
        len += n;
    }
    if line[len - 1] != b'\n' {
        line[len] = b'\n';
        len += 1;
    }
    let _ = sys::write(2, &line[..len]);
}

fn say_errno(parts: &[&[u8]], e: Errno) {
    say_errno_then(parts, e, b"");
}

/// `parts: ENAME (errno N)tail`
fn say_errno_then(parts: &[&[u8]], e: Errno, tail: &[u8]) {
    let mut num = [0u8; 24];
    let len = args::decimal(e.0 as i64, &mut num);
    let name = e.name().unwrap_or("error").as_bytes();
    let mut all: [&[u8]; 12] = [b""; 12];
    let n = parts.len().min(6);
    all[..n].copy_from_slice(&parts[..n]);
    all[n..n + 5].copy_from_slice(&[b": ", name, b" (errno ", &num[..len], b")"]);
    all[n + 5] = tail;
    say(&all[..n + 6]);
}
