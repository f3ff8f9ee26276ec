//! Container logs in the CRI format kubelet and `crictl logs` read:
//! `<RFC3339Nano> <stdout|stderr> <F|P> <text>\n`, one entry per line of
//! output; `P` marks a piece of a line whose end has not come yet (the
//! reader joins pieces until an `F`). Rotation by size keeps `log`,
//! `log.1` (newest rotated) ... `log.N-1`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Context, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Appends entries to the log, rotating by size.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_files: u32,
}

impl LogWriter {
    /// Open (append to) the log. `max_size` 0 never rotates.
    pub fn open(path: &Path, max_size: u64, max_files: u32) -> Result<LogWriter> {
        let file = open_append(path)?;
        let size = file
            .metadata()
            .step(|| format!("stat log {}", path.display()))?
            .len();
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
            size,
            max_size,
            max_files: max_files.max(1),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Log one chunk of output read from `stream`: each complete line an F
    /// entry, a trailing piece without newline a P entry (so the log is
    /// current even while a line is being written, as conmon does).
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let now = corral_runtime::state::now_rfc3339();
        let mut buf = Vec::with_capacity(data.len() + 64);
        for (line, complete) in lines(data) {
            let start = buf.len();
            format_entry(&mut buf, &now, stream, complete, line);
            let entry_len = (buf.len() - start) as u64;
            let pending = self.size + start as u64;
            if self.max_size > 0 && pending > 0 && pending + entry_len > self.max_size {
                let entry = buf.split_off(start);
                self.append(&buf)?;
                buf = entry;
                self.rotate()?;
            }
        }
        self.append(&buf)
    }

    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.file
            .write_all(bytes)
            .step(|| format!("write log {}", self.path.display()))?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        for i in (1..self.max_files).rev() {
            let from = numbered(&self.path, i - 1);
            let to = numbered(&self.path, i);
            match std::fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(e)
                        .step(|| format!("rotate log {} to {}", from.display(), to.display()))
                }
            }
        }
        if self.max_files == 1 {
            // Nothing is kept: start the live file over.
            self.file
                .set_len(0)
                .step(|| format!("truncate log {}", self.path.display()))?;
        } else {
            self.file = open_append(&self.path)?;
        }
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .step(|| format!("open log {}", path.display()))
}

/// `log` for 0, `log.N` otherwise.
fn numbered(path: &Path, n: u32) -> PathBuf {
    if n == 0 {
        return path.to_path_buf();
    }
    let mut s = path.as_os_str().to_os_string();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// The log's files that exist, oldest first (rotated ones, then the live one).
pub fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut n = 1;
    while numbered(path, n).exists() {
        out.push(numbered(path, n));
        n += 1;
    }
    out.reverse();
    if path.exists() {
        out.push(path.to_path_buf());
    }
    out
}

/// Split a chunk into (line without '\n', ended by '\n').
fn lines(data: &[u8]) -> impl Iterator<Item = (&[u8], bool)> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let line = &rest[..i];
                rest = &rest[i + 1..];
                Some((line, true))
            }
            None => {
                let line = rest;
                rest = &[];
                Some((line, false))
            }
        }
    })
}

fn format_entry(buf: &mut Vec<u8>, time: &str, stream: Stream, complete: bool, line: &[u8]) {
    buf.extend_from_slice(time.as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(stream.as_str().as_bytes());
    buf.extend_from_slice(if complete { b" F " } else { b" P " });
    buf.extend_from_slice(line);
    buf.push(b'\n');
}

/// One parsed log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    pub time: &'a str,
    pub stream: Stream,
    /// P: the line continues in the next entry.
    pub partial: bool,
    pub content: &'a [u8],
}

/// Parse one log line (without its '\n'); None for lines not in CRI format.
pub fn parse_line(line: &[u8]) -> Option<Entry<'_>> {
    let mut parts = line.splitn(4, |&b| b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        b"F" => false,
        b"P" => true,
        _ => return None,
    };
    Some(Entry {
        time,
        stream,
        partial,
        content: parts.next().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    /// The entries of a log without their timestamps.
    fn bodies(text: &str) -> Vec<String> {
        text.lines()
            .map(|l| {
                let e = parse_line(l.as_bytes()).unwrap();
                assert!(e.time.ends_with('Z') && e.time.len() == 30, "{}", e.time);
                format!(
                    "{} {} {}",
                    e.stream.as_str(),
                    if e.partial { "P" } else { "F" },
                    String::from_utf8_lossy(e.content)
                )
            })
            .collect()
    }

    #[test]
    fn lines_and_partials() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let mut w = LogWriter::open(&path, 0, 1).unwrap();
        w.write(Stream::Stdout, b"hi\nthere\npart").unwrap();
        w.write(Stream::Stderr, b"oops\n").unwrap();
        w.write(Stream::Stdout, b"ial\n\n").unwrap();
        assert_eq!(
            bodies(&read(&path)),
            [
                "stdout F hi",
                "stdout F there",
                "stdout P part",
                "stderr F oops",
                "stdout F ial",
                "stdout F ",
            ]
        );
    }

    #[test]
    fn reopening_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        LogWriter::open(&path, 0, 1)
            .unwrap()
            .write(Stream::Stdout, b"a\n")
            .unwrap();
        LogWriter::open(&path, 0, 1)
            .unwrap()
            .write(Stream::Stdout, b"b\n")
            .unwrap();
        assert_eq!(bodies(&read(&path)), ["stdout F a", "stdout F b"]);
    }

    #[test]
    fn rotation_keeps_n_files_below_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        // One entry is 30 (time) + 9 + len + 1 bytes: 41 + 1 for "x".
        let mut w = LogWriter::open(&path, 100, 3).unwrap();
        for i in 0..10 {
            w.write(Stream::Stdout, format!("{i}\n").as_bytes())
                .unwrap();
        }
        let files = log_files(&path);
        assert_eq!(
            files,
            [numbered(&path, 2), numbered(&path, 1), path.clone()]
        );
        let all: Vec<String> = files.iter().flat_map(|f| bodies(&read(f))).collect();
        assert_eq!(
            all,
            [
                "stdout F 4",
                "stdout F 5",
                "stdout F 6",
                "stdout F 7",
                "stdout F 8",
                "stdout F 9"
            ]
        );
        for f in &files {
            assert!(std::fs::metadata(f).unwrap().len() <= 100);
        }
    }

    #[test]
    fn rotation_with_one_file_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let mut w = LogWriter::open(&path, 100, 1).unwrap();
        w.write(Stream::Stdout, b"1\n2\n3\n").unwrap();
        assert_eq!(bodies(&read(&path)), ["stdout F 3"]);
        assert_eq!(log_files(&path), std::slice::from_ref(&path));
    }

    #[test]
    fn oversized_entry_still_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let mut w = LogWriter::open(&path, 50, 2).unwrap();
        let long = "y".repeat(200);
        w.write(Stream::Stderr, format!("{long}\n").as_bytes())
            .unwrap();
        assert_eq!(bodies(&read(&path)), [format!("stderr F {long}")]);
    }

    #[test]
    fn parse_rejects_other_formats() {
        assert!(parse_line(b"").is_none());
        assert!(parse_line(b"2020-01-01T00:00:00Z stdin F x").is_none());
        assert!(parse_line(b"2020-01-01T00:00:00Z stdout X x").is_none());
        let e = parse_line(b"t stdout F").unwrap();
        assert_eq!(e.content, b"");
        let e = parse_line(b"t stderr P a b  c").unwrap();
        assert_eq!(
            (e.stream, e.partial, e.content),
            (Stream::Stderr, true, &b"a b  c"[..])
        );
    }
}
