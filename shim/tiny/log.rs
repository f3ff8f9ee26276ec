//! The CRI log writer of shim/src/cri.rs (`LogWriter`) over raw system
//! calls and caller-provided buffers: same entries, same size rule for
//! rotation, same file names, so `cri::parse_line`, `cri::log_files` and
//! the agent's log reader read what this writes.

use super::cri::{self, Stream, HEADER_LEN};
use super::sys::{self, CStr, Errno};
use super::time::STAMP_LEN;

/// Longest log path (with the `.N` suffix and the NUL) we rotate.
const PATH_MAX: usize = 4096 + 16;

/// What failed: a step ("write log", "rotate log", ...) and its errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    pub step: &'static str,
    pub errno: Errno,
}

fn fail(step: &'static str) -> impl Fn(Errno) -> Failure {
    move |errno| Failure { step, errno }
}

pub struct LogWriter<'p> {
    path: CStr<'p>,
    fd: i32,
    size: u64,
    max_size: u64,
    max_files: u32,
}

impl<'p> LogWriter<'p> {
    /// Open (append to) the log. `max_size` 0 never rotates.
    pub fn open(path: CStr<'p>, max_size: u64, max_files: u32) -> Result<LogWriter<'p>, Failure> {
        let fd = open_append(path)?;
        let size = match sys::seek_end(fd) {
            Ok(n) => n as u64,
            Err(e) => {
                sys::close(fd);
                return Err(fail("stat log")(e));
            }
        };
        Ok(LogWriter {
            path,
            fd,
            size,
            max_size,
            max_files: max_files.max(1),
        })
    }

    /// Log one chunk read from `stream` at time `stamp`: each complete
    /// line an F entry, a trailing piece a P entry. Entries are gathered
    /// in `buf` (any size; an entry larger than it is written in pieces).
    pub fn write(
        &mut self,
        stream: Stream,
        data: &[u8],
        stamp: &[u8; STAMP_LEN],
        buf: &mut [u8],
    ) -> Result<(), Failure> {
        let mut used = 0;
        for (line, complete) in cri::Lines::new(data) {
            let head = cri::header(stamp, stream, complete);
            let entry_len = HEADER_LEN + line.len() + 1;
            if cri::must_rotate(self.max_size, self.size + used as u64, entry_len as u64) {
                self.append(&buf[..used])?;
                used = 0;
                self.rotate()?;
            }
            if used + entry_len > buf.len() {
                self.append(&buf[..used])?;
                used = 0;
            }
            if entry_len > buf.len() {
                self.append(&head)?;
                self.append(line)?;
                self.append(b"\n")?;
                continue;
            }
            for piece in [&head[..], line, b"\n"] {
                buf[used..used + piece.len()].copy_from_slice(piece);
                used += piece.len();
            }
        }
        self.append(&buf[..used])
    }

    fn append(&mut self, mut bytes: &[u8]) -> Result<(), Failure> {
        while !bytes.is_empty() {
            match sys::write(self.fd, bytes) {
                Ok(0) => return Err(fail("write log")(Errno(28))),
                Ok(n) => {
                    self.size += n as u64;
                    bytes = &bytes[n..];
                }
                Err(sys::EINTR) => {}
                Err(e) => return Err(fail("write log")(e)),
            }
        }
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), Failure> {
        let mut from = [0u8; PATH_MAX];
        let mut to = [0u8; PATH_MAX];
        let too_long = fail("rotate log")(Errno(36));
        for i in (1..self.max_files).rev() {
            let f = cri::numbered(self.path.bytes(), i - 1, &mut from).ok_or(too_long)?;
            let t = cri::numbered(self.path.bytes(), i, &mut to).ok_or(too_long)?;
            let (f, t) = (CStr::new(f).ok_or(too_long)?, CStr::new(t).ok_or(too_long)?);
            match sys::rename(f, t) {
                Ok(_) | Err(sys::ENOENT) => {}
                Err(e) => return Err(fail("rotate log")(e)),
            }
        }
        if self.max_files == 1 {
            // Nothing is kept: start the live file over.
            sys::ftruncate(self.fd, 0).map_err(fail("truncate log"))?;
        } else {
            let fd = open_append(self.path)?;
            sys::close(self.fd);
            self.fd = fd;
        }
        self.size = 0;
        Ok(())
    }
}

impl Drop for LogWriter<'_> {
    fn drop(&mut self) {
        sys::close(self.fd);
    }
}

fn open_append(path: CStr) -> Result<i32, Failure> {
    let flags = sys::O_WRONLY | sys::O_APPEND | sys::O_CREAT | sys::O_CLOEXEC;
    sys::open(path, flags, 0o640)
        .map(|fd| fd as i32)
        .map_err(fail("open log"))
}

#[cfg(test)]
mod tests {
    //! The same cases as shim/src/cri.rs's tests, read back with its reader.
    use super::*;
    use std::path::{Path, PathBuf};

    fn cpath(p: &Path) -> Vec<u8> {
        let mut v = p.as_os_str().as_encoded_bytes().to_vec();
        v.push(0);
        v
    }

    fn bodies(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let e = crate::cri::parse_line(l.as_bytes()).unwrap();
                assert!(e.time.ends_with('Z') && e.time.len() == 30, "{}", e.time);
                let tag = if e.partial { "P" } else { "F" };
                let text = String::from_utf8_lossy(e.content);
                format!("{} {tag} {text}", e.stream.as_str())
            })
            .collect()
    }

    fn now() -> [u8; STAMP_LEN] {
        let (s, n) = sys::clock(sys::CLOCK_REALTIME);
        super::super::time::rfc3339(s, n)
    }

    #[test]
    fn lines_partials_and_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let c = cpath(&path);
        let mut buf = [0u8; 64];
        {
            let mut w = LogWriter::open(CStr::new(&c).unwrap(), 0, 1).unwrap();
            w.write(Stream::Stdout, b"hi\nthere\npart", &now(), &mut buf)
                .unwrap();
            w.write(Stream::Stderr, b"oops\n", &now(), &mut buf)
                .unwrap();
        }
        // Reopened: appends. A line longer than the buffer is still whole.
        let mut w = LogWriter::open(CStr::new(&c).unwrap(), 0, 1).unwrap();
        let long = "z".repeat(100);
        let chunk = format!("ial\n\n{long}\n");
        w.write(Stream::Stdout, chunk.as_bytes(), &now(), &mut buf)
            .unwrap();
        assert_eq!(
            bodies(&path),
            [
                "stdout F hi",
                "stdout F there",
                "stdout P part",
                "stderr F oops",
                "stdout F ial",
                "stdout F ",
                &format!("stdout F {long}"),
            ]
        );
    }

    #[test]
    fn rotation_keeps_n_files_below_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let c = cpath(&path);
        let mut w = LogWriter::open(CStr::new(&c).unwrap(), 100, 3).unwrap();
        let mut buf = [0u8; 4096];
        for i in 0..10 {
            w.write(
                Stream::Stdout,
                format!("{i}\n").as_bytes(),
                &now(),
                &mut buf,
            )
            .unwrap();
        }
        let files = crate::cri::log_files(&path);
        let n = |k: u32| PathBuf::from(format!("{}.{k}", path.display()));
        assert_eq!(files, [n(2), n(1), path.clone()]);
        let all: Vec<String> = files.iter().flat_map(|f| bodies(f)).collect();
        let want: Vec<String> = (4..10).map(|i| format!("stdout F {i}")).collect();
        assert_eq!(all, want);
        for f in &files {
            assert!(std::fs::metadata(f).unwrap().len() <= 100);
        }
        // One chunk of many lines rotates mid-chunk the same way.
        w.write(Stream::Stderr, b"a\nb\nc\n", &now(), &mut buf)
            .unwrap();
        assert_eq!(bodies(&path), ["stderr F c"]);
    }

    #[test]
    fn rotation_with_one_file_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let c = cpath(&path);
        let mut w = LogWriter::open(CStr::new(&c).unwrap(), 100, 1).unwrap();
        w.write(Stream::Stdout, b"1\n2\n3\n", &now(), &mut [0u8; 256])
            .unwrap();
        assert_eq!(bodies(&path), ["stdout F 3"]);
        assert_eq!(crate::cri::log_files(&path), std::slice::from_ref(&path));
    }

    #[test]
    fn errors_name_the_step() {
        let dir = tempfile::tempdir().unwrap();
        let c = cpath(&dir.path().join("no/such/dir/ctr.log"));
        let e = LogWriter::open(CStr::new(&c).unwrap(), 0, 1).err().unwrap();
        assert_eq!(
            e,
            Failure {
                step: "open log",
                errno: sys::ENOENT
            }
        );
    }
}
