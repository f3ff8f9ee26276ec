//! `process.terminal`: a pseudo-terminal made inside the container (from its
//! own devpts) whose master end is handed to the caller over
//! `--console-socket` with SCM_RIGHTS, as runc does; the slave becomes the
//! process's stdio and controlling terminal.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

use crate::error::{Context, Error, Result};

/// Connect to the caller's console socket (done by the CLI before forking,
/// so init inherits a connected descriptor and needs no path lookup).
pub fn connect(path: &Path) -> Result<OwnedFd> {
    let s = UnixStream::connect(path)
        .step(|| format!("connect to console socket {}", path.display()))?;
    Ok(OwnedFd::from(s))
}

/// Make the pty, send its master, and install the slave as stdio.
/// Runs in init (or an exec'd process) after pivot_root and `setsid`.
pub fn setup(socket: &OwnedFd, size: Option<(u16, u16)>) -> Result<()> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .step(|| "open /dev/ptmx for the console")?;
    grantpt(&master).step(|| "grantpt on the console")?;
    unlockpt(&master).step(|| "unlockpt on the console")?;
    let name = ptsname_r(&master).step(|| "ptsname of the console")?;
    if let Some((rows, cols)) = size {
        set_size(master.as_raw_fd(), rows, cols)?;
    }
    let slave = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY,
        nix::sys::stat::Mode::empty(),
    )
    .step(|| format!("open console slave {name}"))?;
    send_fd(socket.as_raw_fd(), master.as_raw_fd(), name.as_bytes())?;
    drop(master);
    crate::sys::set_controlling_tty(slave)
        .step(|| format!("make {name} the controlling terminal"))?;
    for target in 0..3 {
        nix::unistd::dup2(slave, target).step(|| format!("dup console {name} onto fd {target}"))?;
    }
    if slave > 2 {
        let _ = nix::unistd::close(slave);
    }
    Ok(())
}

fn set_size(fd: RawFd, rows: u16, cols: u16) -> Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize struct that lives across the call.
    let r = unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
    nix::errno::Errno::result(r)
        .map(drop)
        .step(|| "set the console size")
}

/// Send `fd` over a unix socket with `payload` as the message body (runc
/// sends the terminal's name; receivers ignore or log it).
pub fn send_fd(socket: RawFd, fd: RawFd, payload: &[u8]) -> Result<()> {
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(payload)];
    sendmsg::<()>(socket, &iov, &cmsg, MsgFlags::empty(), None)
        .map(drop)
        .map_err(|e| Error::sys("send the console fd over the console socket", e))
}
