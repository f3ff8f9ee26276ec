//! The shim's one report to its caller: whether the container was created
//! and started (then its pid) or why not, as one JSON object on the sync fd.
//! The caller reads to EOF: no report at all means the shim died first.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum Report {
    /// The container runs; `pid` is its init on the host, `shim_pid` the
    /// shim that supervises it.
    #[serde(rename_all = "camelCase")]
    Started { pid: i32, shim_pid: i32 },
    /// Create or start failed; nothing of the container is left.
    Failed { error: String },
}

/// Keep the write end of the sync pipe open across the exec of the shim
/// (callers make it O_CLOEXEC so no other child inherits it); pass its number
/// with `--sync-fd`.
pub fn pass_fd(cmd: &mut Command, fd: &OwnedFd) {
    let raw = fd.as_raw_fd();
    // SAFETY: the closure runs between fork and exec and only calls fcntl,
    // which is async-signal-safe; `raw` stays open in the parent until then.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(raw, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Send the report and close the fd.
pub fn send(fd: OwnedFd, report: &Report) -> Result<()> {
    let mut f = std::fs::File::from(fd);
    let mut bytes = serde_json::to_vec(report).map_err(|e| Error::Format {
        what: "encode sync report".into(),
        msg: e.to_string(),
    })?;
    bytes.push(b'\n');
    f.write_all(&bytes).step(|| "write the sync report")
}

/// Read the report from the read end of the sync pipe (blocks until the
/// shim writes it or dies). None when the shim closed it without a word.
pub fn receive(fd: OwnedFd) -> Result<Option<Report>> {
    let mut f = std::fs::File::from(fd);
    let mut text = String::new();
    f.read_to_string(&mut text)
        .step(|| "read the shim's sync report")?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(text.trim())
        .map(Some)
        .map_err(|e| Error::Format {
            what: format!("shim sync report {:?}", text.trim()),
            msg: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe() -> (OwnedFd, OwnedFd) {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap()
    }

    #[test]
    fn reports_round_trip() {
        for r in [
            Report::Started {
                pid: 42,
                shim_pid: 41,
            },
            Report::Failed {
                error: "container init: exec \"nope\": ENOENT".into(),
            },
        ] {
            let (rd, wr) = pipe();
            send(wr, &r).unwrap();
            assert_eq!(receive(rd).unwrap(), Some(r));
        }
    }

    #[test]
    fn silence_and_garbage() {
        let (rd, wr) = pipe();
        drop(wr);
        assert_eq!(receive(rd).unwrap(), None);
        let (rd, wr) = pipe();
        std::fs::File::from(wr)
            .write_all(b"{\"status\":\"x\"}")
            .unwrap();
        assert!(receive(rd).unwrap_err().to_string().contains("sync report"));
        let wire = serde_json::to_string(&Report::Started {
            pid: 1,
            shim_pid: 2,
        })
        .unwrap();
        assert_eq!(wire, r#"{"status":"started","pid":1,"shimPid":2}"#);
    }
}
