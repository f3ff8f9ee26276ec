//! A `--console-socket` receiver, like runc's `recvtty`: accepts one connection,
//! takes the pty master sent with SCM_RIGHTS and reads the container's output.

use std::fs::File;
use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};

/// What came over the console socket.
#[derive(Debug, Default)]
pub struct ConsoleCapture {
    /// The message payload sent with the fd (runc sends the pty name).
    pub name: String,
    /// Everything read from the pty master until EOF/EIO or the deadline.
    pub output: String,
}

pub struct ConsoleReceiver {
    path: PathBuf,
    handle: Option<JoinHandle<Result<ConsoleCapture, String>>>,
}

impl ConsoleReceiver {
    /// Listen on `dir/console.sock`. After receiving the master, write `input`
    /// to it, then read until the container side closes or `timeout` passes.
    pub fn listen(dir: &Path, input: &[u8], timeout: Duration) -> ConsoleReceiver {
        let path = dir.join("console.sock");
        let _ = std::fs::remove_file(&path);
        let listener =
            UnixListener::bind(&path).unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
        let input = input.to_vec();
        let handle = std::thread::spawn(move || receive(listener, &input, timeout));
        ConsoleReceiver {
            path,
            handle: Some(handle),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.path
    }

    /// Wait for the receiving thread (bounded by the listen timeout).
    pub fn wait(mut self) -> Result<ConsoleCapture, String> {
        match self.handle.take() {
            Some(h) => h
                .join()
                .map_err(|_| "console receiver thread panicked".to_string())?,
            None => Err("already waited".into()),
        }
    }
}

fn receive(
    listener: UnixListener,
    input: &[u8],
    timeout: Duration,
) -> Result<ConsoleCapture, String> {
    let deadline = Instant::now() + timeout;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("set_nonblocking: {e}"))?;
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err("no connection on the console socket before the deadline".into());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(format!("accept on console socket: {e}")),
        }
    };
    stream
        .set_nonblocking(false)
        .map_err(|e| format!("set_nonblocking: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| format!("set_read_timeout: {e}"))?;
    let (master, name) = recv_fd(&stream)?;
    let mut master = File::from(master);
    if !input.is_empty() {
        master
            .write_all(input)
            .map_err(|e| format!("write to pty master: {e}"))?;
    }
    let output = read_until_closed(&mut master, deadline)?;
    Ok(ConsoleCapture { name, output })
}

fn recv_fd(stream: &std::os::unix::net::UnixStream) -> Result<(OwnedFd, String), String> {
    let mut buf = [0u8; 4096];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<UnixAddr>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| format!("recvmsg on console socket: {e}"))?;
    let n = msg.bytes;
    let mut fd = None;
    for c in msg.cmsgs().map_err(|e| format!("control messages: {e}"))? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for raw in fds {
                // SAFETY: the kernel just installed this fd in our table for us;
                // nothing else owns it.
                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                fd.get_or_insert(owned);
            }
        }
    }
    let name = String::from_utf8_lossy(&buf[..n])
        .trim_end_matches('\0')
        .to_string();
    fd.map(|f| (f, name))
        .ok_or_else(|| "console socket message carried no file descriptor".into())
}

fn read_until_closed(master: &mut File, deadline: Instant) -> Result<String, String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut pfd = libc::pollfd {
            fd: master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().min(200) as i32;
        // SAFETY: pfd is a valid pollfd array of length 1 for the duration of the call.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r == 0 {
            continue;
        }
        match master.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            // EIO: every slave fd is closed (the container exited).
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read pty master: {e}")),
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}
