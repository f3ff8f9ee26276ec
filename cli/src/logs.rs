//! `corral logs`: the CRI log back into the container's stdout and stderr;
//! for a cluster pod (see [`target`]) the pod's log from the master.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};
use corral_shim::cri::{self, Stream};

use crate::cli::{Global, LogsArgs};
use crate::cluster::args::ClusterGlobal;
use crate::containers::{is_id, Containers, LOG};

const FOLLOW_POLL: Duration = Duration::from_millis(50);

/// Where `logs` and `exec` go.
#[derive(Debug, PartialEq, Eq)]
pub enum Dest<'a> {
    Local,
    /// `pod/NAME`, or a name with a cluster-only flag.
    Pod(&'a str),
    /// A bare name no local container answers to.
    Fallback(&'a str),
}

impl<'a> Dest<'a> {
    /// Runs `cluster` for a pod; a fallback's failure says that no local
    /// container had the name either.
    pub fn in_cluster(
        &self,
        cluster: impl FnOnce(&'a str) -> std::result::Result<i32, crate::cluster::Error>,
    ) -> i32 {
        let r = match *self {
            Dest::Local => return 0,
            Dest::Pod(p) => cluster(p),
            Dest::Fallback(p) => cluster(p).map_err(|e| {
                crate::cluster::Error::msg(format!(
                    "no local container named {p:?}, and in the cluster: {e}"
                ))
            }),
        };
        crate::cluster::report(r)
    }
}

/// `pod/NAME` is always a pod; with a cluster-only flag a bare NAME is
/// too; else NAME is local when a container has that name or id, a pod
/// otherwise.
pub fn target<'a>(
    cs: &Containers,
    key: &'a str,
    cluster_flags: bool,
) -> std::result::Result<Dest<'a>, crate::cluster::Error> {
    if let Some(pod) = crate::cluster::pod_ref(key)? {
        return Ok(Dest::Pod(pod));
    }
    if cluster_flags {
        return Ok(Dest::Pod(key));
    }
    match local_exists(cs, key) {
        Ok(true) => Ok(Dest::Local),
        Ok(false) => Ok(Dest::Fallback(key)),
        Err(e) => Err(crate::cluster::Error::msg(format!("{e:#}"))),
    }
}

/// A container answers to `key`; an ambiguous id prefix is an error (it
/// names local containers, just not one).
fn local_exists(cs: &Containers, key: &str) -> Result<bool> {
    if cs.resolve(key).is_ok() {
        return Ok(true);
    }
    let lower = key.to_ascii_lowercase();
    if key.is_empty() || !lower.bytes().all(|b| b.is_ascii_hexdigit()) || is_id(key) {
        return Ok(false);
    }
    let n = cs
        .list()?
        .iter()
        .filter(|c| c.id.starts_with(&lower))
        .count();
    if n > 1 {
        anyhow::bail!("{n} containers have ids starting with {key:?}: give more of the id");
    }
    Ok(false)
}

/// `corral logs`: a local container's log, or a cluster pod's; the exit status.
pub fn logs(g: &Global, cg: &ClusterGlobal, a: &LogsArgs) -> Result<i32> {
    let cs = Containers::new(g);
    let cluster_flags = a.pod_container.is_some() || a.previous || cg.namespace.is_some();
    let dest = match target(&cs, &a.container, cluster_flags) {
        Ok(d) => d,
        Err(e) => return Ok(crate::cluster::report(Err(e))),
    };
    if dest == Dest::Local {
        return local_logs(&cs, a).map(|_| 0);
    }
    Ok(dest.in_cluster(|pod| {
        let req = crate::cluster::logs::LogRequest {
            pod,
            container: a.pod_container.as_deref(),
            follow: a.follow,
            previous: a.previous,
            tail: a.tail,
            timestamps: a.timestamps,
        };
        crate::cluster::logs::run(cg, &req)
    }))
}

fn local_logs(cs: &Containers, a: &LogsArgs) -> Result<()> {
    let c = cs.resolve(&a.container)?;
    let path = cs.dir(&c.id).join(LOG);
    let mut out = Printer::new(a.timestamps);
    // Everything there is now: rotated files, then the live one.
    let mut data = Vec::new();
    let mut live = None;
    for f in cri::log_files(&path) {
        let mut file = File::open(&f).with_context(|| format!("open {}", f.display()))?;
        let start = data.len();
        file.read_to_end(&mut data)
            .with_context(|| format!("read {}", f.display()))?;
        if f == path {
            live = Some((file, (data.len() - start) as u64));
        }
    }
    let complete = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let lines: Vec<&[u8]> = data[..complete].split(|&b| b == b'\n').collect();
    let first = a.tail.map_or(0, |n| tail_start(&lines, n));
    for l in &lines[first..] {
        out.line(l)?;
    }
    out.flush()?;
    if !a.follow {
        return Ok(());
    }
    // The live file from where the complete lines ended.
    let tail_bytes = (data.len() - complete) as u64;
    let (file, offset) = match live {
        Some((f, len)) => (Some(f), len - tail_bytes),
        None => (None, 0),
    };
    follow(cs, &c.id, &path, file, offset, &mut out)
}

/// Index of the first log line of the last `n` output lines: after the
/// (n+1)-th full (F) entry from the end.
fn tail_start(lines: &[&[u8]], n: usize) -> usize {
    let mut seen = 0;
    for (i, l) in lines.iter().enumerate().rev() {
        if cri::parse_line(l).is_some_and(|e| !e.partial) {
            if seen == n {
                return i + 1;
            }
            seen += 1;
        }
    }
    0
}

/// Print what is appended to the live log until the container has exited
/// and everything is read; follows rotation (the path gets a new inode).
fn follow(
    cs: &Containers,
    id: &str,
    path: &Path,
    mut file: Option<File>,
    mut offset: u64,
    out: &mut Printer,
) -> Result<()> {
    let mut pending: Vec<u8> = Vec::new();
    loop {
        // Decide before reading, so output written just before the exit is
        // still read in this round.
        let exited = !cs.dir(id).exists() || cs.exit_record(id)?.is_some();
        if file.is_none() {
            file = File::open(path).ok();
            offset = 0;
        }
        if let Some(f) = file.as_mut() {
            read_new(f, &mut offset, &mut pending, out)?;
            if rotated(f, path) {
                // Finish the old file, then start on the new one.
                read_new(f, &mut offset, &mut pending, out)?;
                pending.clear();
                file = None;
                continue;
            }
        }
        out.flush()?;
        if exited {
            return Ok(());
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

fn read_new(
    f: &mut File,
    offset: &mut u64,
    pending: &mut Vec<u8>,
    out: &mut Printer,
) -> Result<()> {
    f.seek(SeekFrom::Start(*offset))
        .context("seek in the log")?;
    let mut buf = Vec::new();
    let n = f.read_to_end(&mut buf).context("read the log")?;
    *offset += n as u64;
    pending.extend_from_slice(&buf);
    if let Some(end) = pending.iter().rposition(|&b| b == b'\n') {
        for l in pending[..end].split(|&b| b == b'\n') {
            out.line(l)?;
        }
        pending.drain(..=end);
    }
    Ok(())
}

fn rotated(f: &File, path: &Path) -> bool {
    match (f.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() != b.ino() || a.dev() != b.dev(),
        _ => false,
    }
}

/// Writes entries' content to our stdout/stderr; P entries continue a line.
struct Printer {
    stdout: std::io::Stdout,
    stderr: std::io::Stderr,
    timestamps: bool,
    /// Per stream (stdout, stderr): in the middle of a line.
    mid: [bool; 2],
}

impl Printer {
    fn new(timestamps: bool) -> Printer {
        Printer {
            stdout: std::io::stdout(),
            stderr: std::io::stderr(),
            timestamps,
            mid: [false; 2],
        }
    }

    fn line(&mut self, raw: &[u8]) -> Result<()> {
        let Some(e) = cri::parse_line(raw) else {
            return Ok(());
        };
        let i = match e.stream {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        };
        let mut buf = Vec::with_capacity(e.content.len() + 40);
        if self.timestamps && !self.mid[i] {
            buf.extend_from_slice(e.time.as_bytes());
            buf.push(b' ');
        }
        buf.extend_from_slice(e.content);
        if !e.partial {
            buf.push(b'\n');
        }
        self.mid[i] = e.partial;
        let w: &mut dyn Write = if i == 0 {
            &mut self.stdout
        } else {
            &mut self.stderr
        };
        w.write_all(&buf).context("write output")
    }

    fn flush(&mut self) -> Result<()> {
        self.stdout.flush().context("flush stdout")?;
        self.stderr.flush().context("flush stderr")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_and_fallbacks_without_local_containers() {
        use clap::Parser;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().to_str().unwrap();
        let cli = crate::cli::Cli::try_parse_from(["corral", "--state-dir", state, "ps"]).unwrap();
        let cs = Containers::new(&cli.global);
        assert_eq!(target(&cs, "web", false).unwrap(), Dest::Fallback("web"));
        assert_eq!(target(&cs, "web", true).unwrap(), Dest::Pod("web"));
        assert_eq!(target(&cs, "pod/web", false).unwrap(), Dest::Pod("web"));
        assert_eq!(target(&cs, "abc", false).unwrap(), Dest::Fallback("abc"));
        assert!(target(&cs, "deploy/web", false).is_err());
        let missing = Dest::Fallback("web").in_cluster(|_| Err(crate::cluster::Error::msg("x")));
        assert_eq!(missing, 1);
        assert_eq!(Dest::Pod("web").in_cluster(|_| Ok(3)), 3);
    }

    #[test]
    fn tail_counts_full_lines() {
        let raw = [
            "t stdout F a",
            "t stdout P b1",
            "t stderr F e",
            "t stdout F b2",
            "t stdout F c",
        ];
        let lines: Vec<&[u8]> = raw.iter().map(|s| s.as_bytes()).collect();
        assert_eq!(tail_start(&lines, 0), 5);
        assert_eq!(tail_start(&lines, 1), 4);
        assert_eq!(tail_start(&lines, 2), 3);
        // The third line from the end (e) starts after "a": b1 comes along.
        assert_eq!(tail_start(&lines, 3), 1);
        assert_eq!(tail_start(&lines, 10), 0);
    }
}
