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
