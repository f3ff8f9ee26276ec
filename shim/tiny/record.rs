//! The last resort when `corral-shim --finish` cannot be exec'd: the exit
//! record written by the tiny supervisor itself, in the JSON of
//! shim/src/exit.rs `ExitRecord` (without the OOM check, which needs the
//! cgroup: `oomKilled` is false), atomically as the runtime's
//! `write_atomic` does (a temporary file renamed over the record).

use super::args;
use super::log::Failure;
use super::sys::{self, CStr, Errno};

/// (exit code, signal) of a raw wait status, as the shim records them:
/// 128 + signal when a signal ended the process, 255 for anything else.
pub fn exit_of(status: i32) -> (i32, Option<i32>) {
    let low = status & 0x7f;
    match low {
        0 => ((status >> 8) & 0xff, None),
        0x7f => (255, None),
        sig => (128 + sig, Some(sig)),
    }
}

/// Appends bytes to a fixed buffer; None once it is full.
struct Out<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl Out<'_> {
    fn push(&mut self, bytes: &[u8]) -> Option<()> {
        self.buf
            .get_mut(self.len..self.len + bytes.len())?
            .copy_from_slice(bytes);
        self.len += bytes.len();
        Some(())
    }

    fn number(&mut self, n: i32) -> Option<()> {
        let mut num = [0u8; 24];
        let len = args::decimal(n as i64, &mut num);
        self.push(&num[..len])
    }
}

/// A timestamp is put into JSON as is: only RFC 3339 characters pass.
fn timestamp_ok(t: &[u8]) -> bool {
    t.iter()
        .all(|b| b.is_ascii_digit() || b"-:.TZ+".contains(b))
}

/// The record's JSON in `buf`; its length, None if it does not fit.
pub fn encode(status: i32, started_at: &[u8], finished_at: &[u8], buf: &mut [u8]) -> Option<usize> {
    if !timestamp_ok(started_at) || !timestamp_ok(finished_at) {
        return None;
    }
    let (code, signal) = exit_of(status);
    let mut out = Out { buf, len: 0 };
    out.push(b"{\"exitCode\":")?;
    out.number(code)?;
    out.push(b",\"signal\":")?;
    match signal {
        Some(s) => out.number(s)?,
        None => out.push(b"null")?,
    }
    out.push(b",\"oomKilled\":false,\"startedAt\":\"")?;
    out.push(started_at)?;
    out.push(b"\",\"finishedAt\":\"")?;
    out.push(finished_at)?;
    out.push(b"\"}\n")?;
    Some(out.len)
}

/// Write `bytes` to `path` through `path.tmp` and a rename.
pub fn write_atomic(path: CStr, bytes: &[u8]) -> Result<(), Failure> {
    let mut tmp_buf = [0u8; 4096 + 8];
    let too_long = Failure {
        step: "write exit record",
        errno: Errno(36),
    };
    let p = path.bytes();
    let tmp = tmp_buf.get_mut(..p.len() + 5).ok_or(too_long)?;
    tmp[..p.len()].copy_from_slice(p);
    tmp[p.len()..].copy_from_slice(b".tmp\0");
    let tmp = CStr::new(tmp).ok_or(too_long)?;
    let fail = |step| move |errno| Failure { step, errno };
    const O_TRUNC: usize = 0o1000;
    let flags = sys::O_WRONLY | sys::O_CREAT | O_TRUNC | sys::O_CLOEXEC;
    let fd = sys::open(tmp, flags, 0o644).map_err(fail("create exit record"))? as i32;
    let mut rest = bytes;
    while !rest.is_empty() {
        match sys::write(fd, rest) {
            Ok(n) if n > 0 => rest = &rest[n..],
            Ok(_) => break,
            Err(sys::EINTR) => {}
            Err(e) => {
                sys::close(fd);
                return Err(fail("write exit record")(e));
            }
        }
    }
    sys::close(fd);
    sys::rename(tmp, path)
        .map(drop)
        .map_err(fail("rename exit record"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_decode_like_the_shim() {
        use nix::sys::wait::WaitStatus;
        use nix::unistd::Pid;
        for (raw, want) in [
            (0, (0, None)),
            (7 << 8, (7, None)),
            (9, (137, Some(9))),
            (15 | 0x80, (143, Some(15))),
        ] {
            assert_eq!(exit_of(raw), want, "{raw:#x}");
            let ws = WaitStatus::from_raw(Pid::from_raw(1), raw).unwrap();
            let shim = match ws {
                WaitStatus::Exited(_, c) => (c, None),
                WaitStatus::Signaled(_, s, _) => (128 + s as i32, Some(s as i32)),
                _ => (255, None),
            };
            assert_eq!(exit_of(raw), shim, "{raw:#x}");
        }
    }

    #[test]
    fn the_shim_reads_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exit.json");
        let mut c = path.as_os_str().as_encoded_bytes().to_vec();
        c.push(0);
        let mut buf = [0u8; 256];
        let t0 = b"2026-11-26T07:00:00.000000000Z";
        let t1 = b"2026-11-26T07:00:01.500000000Z";
        let n = encode(9, t0, t1, &mut buf).unwrap();
        write_atomic(CStr::new(&c).unwrap(), &buf[..n]).unwrap();
        let rec = crate::ExitRecord::read(&path).unwrap().unwrap();
        assert_eq!(
            (rec.exit_code, rec.signal, rec.oom_killed),
            (137, Some(9), false)
        );
        assert_eq!(
            (rec.started_at.as_bytes(), rec.finished_at.as_bytes()),
            (&t0[..], &t1[..])
        );
        assert!(!dir.path().join("exit.json.tmp").exists());
        // Nothing that could break the JSON gets in; a small buffer is refused.
        assert_eq!(encode(0, b"\"}", t1, &mut buf), None);
        assert_eq!(encode(0, t0, t1, &mut [0u8; 40]), None);
    }
}
