//! The channel between the runtime CLI and the container init it forked: a
//! SOCK_SEQPACKET socketpair (message boundaries kept, close-on-exec), so an
//! error raised anywhere in init reaches the caller as a message naming the
//! step, and an `execve` that succeeds shows up as end-of-file.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

use crate::error::{Error, Result};

/// One message on the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// Parent to init: continue (ids mapped, cgroup joined, hooks done).
    Go,
    /// Init to parent: run the prestart/createRuntime hooks now.
    RunHooks,
    /// Init to parent: set up and waiting for `start`.
    Ready,
    /// Intermediate child to parent: the pid of the init it forked.
    Pid(i32),
    /// Init to parent: setup failed; the text names the step.
    Fail(String),
}

impl Msg {
    fn encode(&self) -> Vec<u8> {
        match self {
            Msg::Go => b"go".to_vec(),
            Msg::RunHooks => b"hooks".to_vec(),
            Msg::Ready => b"ready".to_vec(),
            Msg::Pid(p) => format!("pid:{p}").into_bytes(),
            Msg::Fail(m) => format!("fail:{m}").into_bytes(),
        }
    }

    fn decode(b: &[u8]) -> Option<Msg> {
        let s = std::str::from_utf8(b).ok()?;
        Some(match s {
            "go" => Msg::Go,
            "hooks" => Msg::RunHooks,
            "ready" => Msg::Ready,
            _ => {
                if let Some(p) = s.strip_prefix("pid:") {
                    Msg::Pid(p.parse().ok()?)
                } else if let Some(m) = s.strip_prefix("fail:") {
                    Msg::Fail(m.to_string())
                } else {
                    return None;
                }
            }
        })
    }
}

/// One end of the channel.
pub struct Channel {
    fd: OwnedFd,
}

/// A connected pair: (parent end, child end).
pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| Error::sys("socketpair for the init sync channel", e))?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    pub fn send(&self, msg: &Msg) -> Result<()> {
        let bytes = msg.encode();
        loop {
            match nix::unistd::write(&self.fd, &bytes) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys("send on init sync channel", e)),
            }
        }
    }

    /// Next message, or `None` at end-of-file (the peer exited or exec'd).
    pub fn recv(&self) -> Result<Option<Msg>> {
        let mut buf = vec![0u8; 8192];
        let n = loop {
            match nix::unistd::read(self.fd.as_raw_fd(), &mut buf) {
                Ok(n) => break n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys("receive on init sync channel", e)),
            }
        };
        if n == 0 {
            return Ok(None);
        }
        Msg::decode(&buf[..n])
            .map(Some)
            .ok_or_else(|| Error::Init("garbled message on the sync channel".into()))
    }

    /// Receive and require a specific message; a failure report becomes the error.
    pub fn expect(&self, want: &Msg, waiting_for: &str) -> Result<()> {
        match self.recv()? {
            Some(m) if &m == want => Ok(()),
            Some(Msg::Fail(m)) => Err(Error::Init(m)),
            Some(other) => Err(Error::Init(format!(
                "unexpected {other:?} while waiting for {waiting_for}"
            ))),
            None => Err(Error::Init(format!(
                "exited without a word while {waiting_for}"
            ))),
        }
    }

    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_keeps_boundaries() {
        let (a, b) = pair().unwrap();
        a.send(&Msg::Pid(42)).unwrap();
        a.send(&Msg::Fail("mount /proc: EPERM".into())).unwrap();
        a.send(&Msg::Ready).unwrap();
        assert_eq!(b.recv().unwrap(), Some(Msg::Pid(42)));
        assert_eq!(
            b.recv().unwrap(),
            Some(Msg::Fail("mount /proc: EPERM".into()))
        );
        b.expect(&Msg::Ready, "setup").unwrap();
        drop(a);
        assert_eq!(b.recv().unwrap(), None);
    }

    #[test]
    fn failure_becomes_error() {
        let (a, b) = pair().unwrap();
        a.send(&Msg::Fail("pivot_root: EINVAL".into())).unwrap();
        let e = b.expect(&Msg::Ready, "setup").unwrap_err().to_string();
        assert_eq!(e, "container init: pivot_root: EINVAL");
    }
}
