//! Terminals: the console socket on which the container's init hands us its
//! pty master, raw mode on the user's terminal while we proxy it, and
//! window-size copying. `corral exec -t` uses the same pieces.

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
use nix::sys::termios::{self, SetArg, Termios};

use crate::error::{Context, Error, Result};

/// A listening console socket in a private temporary directory (socket
/// paths are limited to 108 bytes, so it does not live in the state dir).
pub struct ConsoleSocket {
    _dir: tempfile::TempDir,
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    pub fn bind() -> Result<ConsoleSocket> {
        let dir = tempfile::Builder::new()
            .prefix("corral-console-")
            .tempdir()
            .step(|| "create a directory for the console socket")?;
        let path = dir.path().join("sock");
        let listener =
            UnixListener::bind(&path).step(|| format!("bind console socket {}", path.display()))?;
        Ok(ConsoleSocket {
            _dir: dir,
            path,
            listener,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accept the runtime's connection and take the pty master it sends.
    /// The runtime connects and sends before `create` returns, so this
    /// does not block once create succeeded.
    pub fn receive_master(&self) -> Result<OwnedFd> {
        let (stream, _) = self
            .listener
            .accept()
            .step(|| format!("accept on console socket {}", self.path.display()))?;
        let mut buf = [0u8; 256];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<UnixAddr>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .step(|| "receive the pty master on the console socket")?;
        let mut master = None;
        for c in msg
            .cmsgs()
            .step(|| "read control messages from the console socket")?
        {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for raw in fds {
                    // SAFETY: the kernel just installed this descriptor in
                    // our table for this message; nothing else owns it.
                    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
                    master.get_or_insert(fd);
                }
            }
        }
        master.ok_or_else(|| Error::Format {
            what: "console socket".into(),
            msg: "message carried no file descriptor".into(),
        })
    }
}

/// Raw mode on a terminal for as long as the value lives.
pub struct RawMode {
    fd: OwnedFd,
    saved: Termios,
}

impl RawMode {
    /// Put `fd` in raw mode if it is a terminal (None when it is not).
    pub fn enter(fd: BorrowedFd<'_>) -> Result<Option<RawMode>> {
        if !nix::unistd::isatty(fd.as_raw_fd()).unwrap_or(false) {
            return Ok(None);
        }
        let saved = termios::tcgetattr(fd).step(|| "tcgetattr on the terminal")?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, SetArg::TCSANOW, &raw).step(|| "set the terminal to raw mode")?;
        let fd = fd
            .try_clone_to_owned()
            .step(|| "duplicate the terminal descriptor")?;
        Ok(Some(RawMode { fd, saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.fd.as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// Copy the window size of terminal `from` to `to` (no-op when `from` is
/// not a terminal).
pub fn copy_winsize(from: BorrowedFd<'_>, to: BorrowedFd<'_>) {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize struct that lives across the call.
    if unsafe { libc::ioctl(from.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } != 0 {
        return;
    }
    // SAFETY: TIOCSWINSZ reads one winsize struct that lives across the call.
    unsafe { libc::ioctl(to.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
}

/// Rows and columns of terminal `fd`, None when it is not a terminal.
pub fn winsize(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize struct that lives across the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } != 0 {
        return None;
    }
    Some((ws.ws_row, ws.ws_col))
}

/// Attach our terminal to process `pid` (our child) whose terminal is the
/// pty `master`, as `corral exec -it` does: the master's output to our
/// stdout, with `stdin` our keystrokes (raw mode) to the master, window
/// size changes passed on, and INT/TERM/HUP/QUIT forwarded. Returns the
/// process's exit code (128 + signal when killed).
pub fn proxy(master: OwnedFd, pid: nix::unistd::Pid, stdin: bool) -> Result<i32> {
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGWINCH,
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        set.add(s);
    }
    set.thread_block().step(|| "block signals")?;
    let sfd = nix::sys::signalfd::SignalFd::with_flags(
        &set,
        nix::sys::signalfd::SfdFlags::SFD_CLOEXEC | nix::sys::signalfd::SfdFlags::SFD_NONBLOCK,
    )
    .step(|| "signalfd")?;
    let our_in = std::io::stdin();
    let our_in = our_in.as_fd();
    copy_winsize(our_in, master.as_fd());
    let _raw = if stdin { RawMode::enter(our_in)? } else { None };
    let reap = || match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, c)) => Some(c),
        Ok(WaitStatus::Signaled(_, s, _)) => Some(128 + s as i32),
        _ => None,
    };
    // It may have ended before SIGCHLD was blocked: look once now.
    let mut status = reap();
    let mut input_open = stdin;
    let mut output_open = true;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        if let Some(code) = status {
            if !output_open {
                return Ok(code);
            }
        }
        let mut fds = [
            pollfd(sfd.as_raw_fd(), libc::POLLIN),
            pollfd(
                if output_open { master.as_raw_fd() } else { -1 },
                libc::POLLIN,
            ),
            pollfd(
                if input_open { our_in.as_raw_fd() } else { -1 },
                libc::POLLIN,
            ),
        ];
        // After the process ended, read what the pty still holds, briefly.
        let timeout = if status.is_some() { 100 } else { -1 };
        if poll(&mut fds, timeout)? == 0 && status.is_some() {
            output_open = false;
            continue;
        }
        if fds[0].revents != 0 {
            while let Ok(Some(info)) = sfd.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGCHLD) => {}
                    Ok(Signal::SIGWINCH) => copy_winsize(our_in, master.as_fd()),
                    Ok(sig) if status.is_none() => {
                        let _ = nix::sys::signal::kill(pid, sig);
                    }
                    _ => {}
                }
            }
            if status.is_none() {
                status = reap();
            }
        }
        if fds[1].revents != 0 {
            match nix::unistd::read(master.as_raw_fd(), &mut buf) {
                Ok(0) | Err(nix::errno::Errno::EIO) => output_open = false,
                Ok(n) => write_all(std::io::stdout().as_fd(), &buf[..n])?,
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e).step(|| "read the terminal of the process"),
            }
        }
        if fds[2].revents != 0 {
            match nix::unistd::read(our_in.as_raw_fd(), &mut buf) {
                Ok(0) | Err(_) => input_open = false,
                // The container reads its terminal; a full pty input buffer
                // blocks us only as long as it does not.
                Ok(n) => {
                    if write_all(master.as_fd(), &buf[..n]).is_err() {
                        input_open = false;
                    }
                }
            }
        }
    }
}

fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> Result<usize> {
    loop {
        // SAFETY: `fds` is a valid, exclusively borrowed pollfd array for the
        // duration of the call, passed with its length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        match nix::errno::Errno::result(n) {
            Ok(n) => return Ok(n as usize),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).step(|| "poll"),
        }
    }
}

fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
            Err(e) => return Err(e).step(|| "write terminal output"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_socket_passes_a_descriptor() {
        let sock = ConsoleSocket::bind().unwrap();
        assert!(sock.path().as_os_str().len() < 100);
        let client = corral_runtime::console::connect(sock.path()).unwrap();
        let (rd, wr) = nix::unistd::pipe().unwrap();
        corral_runtime::console::send_fd(client.as_raw_fd(), wr.as_raw_fd(), b"/dev/pts/9")
            .unwrap();
        drop(wr);
        let got = sock.receive_master().unwrap();
        nix::unistd::write(&got, b"x").unwrap();
        let mut b = [0u8; 1];
        assert_eq!(nix::unistd::read(rd.as_raw_fd(), &mut b).unwrap(), 1);
        let dir = sock.path().parent().unwrap().to_path_buf();
        drop(sock);
        assert!(!dir.exists());
    }

    #[test]
    fn raw_mode_only_on_terminals() {
        let (rd, _wr) = nix::unistd::pipe().unwrap();
        assert!(RawMode::enter(rd.as_fd()).unwrap().is_none());
    }

    #[test]
    fn raw_mode_restores_on_drop() {
        let pty = nix::pty::openpty(None, None).unwrap();
        let before = termios::tcgetattr(&pty.slave).unwrap();
        assert!(before.local_flags.contains(termios::LocalFlags::ICANON));
        let raw = RawMode::enter(pty.slave.as_fd()).unwrap().unwrap();
        let during = termios::tcgetattr(&pty.slave).unwrap();
        assert!(!during.local_flags.contains(termios::LocalFlags::ICANON));
        drop(raw);
        let after = termios::tcgetattr(&pty.slave).unwrap();
        assert_eq!(after.local_flags, before.local_flags);
    }
}
