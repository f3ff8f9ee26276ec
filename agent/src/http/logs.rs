//! `GET /containerLogs/{ns}/{pod}/{container}`: the text of a container's
//! CRI log (rotated files included), as `kubectl logs` prints it.
//!
//! Files are read on a blocking thread that feeds the response body through
//! a channel; with `follow` it polls the live file, reopens it when the shim
//! rotates it, and ends when the container stops or the client goes away.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use corral_api::Status;
use corral_shim::cri;
use tokio::sync::mpsc;

use super::params::Params;
use super::{lookup, status_response, AppState, Backend};

/// How often a follower looks for new output.
const POLL: Duration = Duration::from_millis(100);
/// How often a follower asks whether the container still runs.
const ALIVE_CHECK: Duration = Duration::from_millis(500);
/// Output is sent in chunks of about this size.
const CHUNK: usize = 32 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct LogOptions {
    follow: bool,
    previous: bool,
    timestamps: bool,
    tail: Option<usize>,
}

fn options(query: Option<&str>) -> Result<LogOptions, Box<Status>> {
    let p = Params::parse(query.unwrap_or(""))?;
    let tail = match p.get("tailLines") {
        None => None,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => Some(n as usize),
            _ => {
                return Err(Box::new(Status::bad_request(format!(
                    "tailLines: Invalid value: {v:?}: must be greater than or equal to 0"
                ))))
            }
        },
    };
    Ok(LogOptions {
        follow: p.flag("follow")?,
        previous: p.flag("previous")?,
        timestamps: p.flag("timestamps")?,
        tail,
    })
}

pub(super) async fn container_logs(
    State(state): State<AppState>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let opts = match options(query.as_deref()) {
        Ok(o) => o,
        Err(s) => return status_response(*s),
    };
    let info = match lookup(&state, &namespace, &pod, &container).await {
        Ok(i) => i,
        Err(resp) => return resp,
    };
    let (path, follow) = if opts.previous {
        match info.previous_log_path {
            Some(p) => (p, false),
            None => {
                return status_response(Status::bad_request(format!(
                    "previous terminated container {container:?} in pod {pod:?} not found"
                )))
            }
        }
    } else {
        (info.log_path, opts.follow && info.running)
    };
    let (tx, mut rx) = mpsc::channel::<io::Result<Bytes>>(8);
    let watch = follow.then(|| Watch {
        backend: state.backend.clone(),
        namespace,
        pod,
        container,
        runtime_id: info.runtime_id,
    });
    tokio::task::spawn_blocking(move || {
        let sink = Sink { tx };
        if let Err(e) = stream_log(&path, &opts, watch.as_ref(), &sink) {
            let _ = sink.tx.blocking_send(Err(e));
        }
    });
    let body = Body::from_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// Where the reader thread sends output; false from `send` means the
/// client has gone.
struct Sink {
    tx: mpsc::Sender<io::Result<Bytes>>,
}

impl Sink {
    fn send(&self, buf: &mut Vec<u8>) -> bool {
        if buf.is_empty() {
            return !self.tx.is_closed();
        }
        let chunk = Bytes::from(std::mem::take(buf));
        self.tx.blocking_send(Ok(chunk)).is_ok()
    }
}

/// The container a follower watches, to stop when it ends.
struct Watch {
    backend: Arc<dyn Backend>,
    namespace: String,
    pod: String,
    container: String,
    runtime_id: String,
}

impl Watch {
    fn still_running(&self) -> bool {
        self.backend
            .container(&self.namespace, &self.pod, Some(&self.container))
            .is_ok_and(|c| c.running && c.runtime_id == self.runtime_id)
    }
}

/// Turns CRI entries into `kubectl logs` text: pieces of a line (P) joined,
/// the timestamp printed once per line.
struct Formatter {
    timestamps: bool,
    mid_line: bool,
}

impl Formatter {
    /// Append one raw log line's text; true when it ends a line of output.
    /// Lines not in CRI format (never written by the shim) are skipped.
    fn push(&mut self, raw: &[u8], out: &mut Vec<u8>) -> bool {
        let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
        let Some(e) = cri::parse_line(raw) else {
            return false;
        };
        if self.timestamps && !self.mid_line {
            out.extend_from_slice(e.time.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(e.content);
        self.mid_line = e.partial;
        if !e.partial {
            out.push(b'\n');
        }
        !e.partial
    }
}

/// Collects output, keeping only the last N lines when tailing.
enum Collector {
    All(Vec<u8>),
    Tail {
        n: usize,
        lines: VecDeque<Vec<u8>>,
        current: Vec<u8>,
    },
}

impl Collector {
    fn new(tail: Option<usize>) -> Collector {
        match tail {
            None => Collector::All(Vec::new()),
            Some(n) => Collector::Tail {
                n,
                lines: VecDeque::new(),
                current: Vec::new(),
            },
        }
    }

    fn push(&mut self, fmt: &mut Formatter, raw: &[u8], sink: &Sink) -> bool {
        match self {
            Collector::All(buf) => {
                fmt.push(raw, buf);
                buf.len() < CHUNK || sink.send(buf)
            }
            Collector::Tail { n, lines, current } => {
                if fmt.push(raw, current) {
                    let line = std::mem::take(current);
                    if *n > 0 {
                        lines.push_back(line);
                        if lines.len() > *n {
                            lines.pop_front();
                        }
                    }
                }
                true
            }
        }
    }

    fn finish(self, sink: &Sink) -> bool {
        let mut buf = match self {
            Collector::All(buf) => buf,
            Collector::Tail {
                n,
                mut lines,
                current,
            } => {
                // A line still being written counts as the last line.
                if !current.is_empty() && n > 0 {
                    lines.push_back(current);
                    if lines.len() > n {
                        lines.pop_front();
                    }
                }
                lines.into_iter().flatten().collect()
            }
        };
        sink.send(&mut buf)
    }
}

/// The live file being read, and where.
struct Live {
    reader: BufReader<File>,
    inode: u64,
    offset: u64,
    /// The start of an entry whose end was not written yet.
    pending: Vec<u8>,
}

impl Live {
    fn open(path: &Path) -> io::Result<Option<Live>> {
        match File::open(path) {
            Ok(f) => {
                let inode = f.metadata()?.ino();
                Ok(Some(Live {
                    reader: BufReader::new(f),
                    inode,
                    offset: 0,
                    pending: Vec::new(),
                }))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("open log {}: {e}", path.display()),
            )),
        }
    }

    /// Every complete entry from the current offset on.
    fn read_entries(&mut self, mut each: impl FnMut(&[u8]) -> bool) -> io::Result<bool> {
        loop {
            let n = self.reader.read_until(b'\n', &mut self.pending)?;
            if n == 0 {
                return Ok(true);
            }
            self.offset += n as u64;
            if self.pending.last() != Some(&b'\n') {
                return Ok(true);
            }
            let keep_going = each(&self.pending);
            self.pending.clear();
            if !keep_going {
                return Ok(false);
            }
        }
    }
}

fn stream_log(
    path: &Path,
    opts: &LogOptions,
    watch: Option<&Watch>,
    sink: &Sink,
) -> io::Result<()> {
    let mut fmt = Formatter {
        timestamps: opts.timestamps,
        mid_line: false,
    };
    let mut collector = Collector::new(opts.tail);
    // Open the live file first, so a rotation while the old ones are read
    // moves entries into files we still read.
    let mut live = Live::open(path)?;
    let rotated: Vec<PathBuf> = cri::log_files(path)
        .into_iter()
        .filter(|p| p != path)
        .collect();
    for file in &rotated {
        let Some(mut old) = Live::open(file)? else {
            continue;
        };
        if !old.read_entries(|raw| collector.push(&mut fmt, raw, sink))? {
            return Ok(());
        }
    }
    if let Some(l) = live.as_mut() {
        if !l.read_entries(|raw| collector.push(&mut fmt, raw, sink))? {
            return Ok(());
        }
    }
    if !collector.finish(sink) {
        return Ok(());
    }
    match watch {
        Some(w) => follow(path, live, &mut fmt, w, sink),
        None => Ok(()),
    }
}

fn follow(
    path: &Path,
    mut live: Option<Live>,
    fmt: &mut Formatter,
    watch: &Watch,
    sink: &Sink,
) -> io::Result<()> {
    let mut checked = Instant::now();
    let mut running = true;
    loop {
        let mut out = Vec::new();
        if let Some(l) = live.as_mut() {
            l.read_entries(|raw| {
                fmt.push(raw, &mut out);
                true
            })?;
        }
        if !sink.send(&mut out) || !running {
            return Ok(());
        }
        if reopen_needed(path, live.as_ref())? {
            // The shim renamed the file away (or truncated it): what was in
            // it has been read above, continue with the new one.
            live = Live::open(path)?;
            continue;
        }
        if checked.elapsed() >= ALIVE_CHECK {
            checked = Instant::now();
            // One more read after the container ended picks up its last words.
            running = watch.still_running();
            continue;
        }
        std::thread::sleep(POLL);
    }
}

fn reopen_needed(path: &Path, live: Option<&Live>) -> io::Result<bool> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("stat log {}: {e}", path.display()),
            ))
        }
    };
    Ok(match live {
        None => true,
        Some(l) => meta.ino() != l.inode || meta.len() < l.offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_shim::cri::{LogWriter, Stream};

    fn collect(path: &Path, opts: &LogOptions) -> String {
        let (tx, mut rx) = mpsc::channel(64);
        let sink = Sink { tx };
        stream_log(path, opts, None, &sink).unwrap();
        drop(sink);
        let mut out = Vec::new();
        while let Ok(chunk) = rx.try_recv() {
            out.extend_from_slice(&chunk.unwrap());
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn whole_log_tail_and_timestamps_across_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut w = LogWriter::open(&path, 200, 3).unwrap();
        for i in 0..6 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
        w.write(Stream::Stderr, b"par").unwrap();
        w.write(Stream::Stderr, b"tial\n").unwrap();
        assert!(cri::log_files(&path).len() > 1, "the log rotated");
        let all = collect(&path, &LogOptions::default());
        let kept: Vec<&str> = all.lines().collect();
        assert_eq!(kept.last(), Some(&"partial"));
        assert!(kept.len() >= 3, "{all}");
        let tail = collect(
            &path,
            &LogOptions {
                tail: Some(2),
                ..LogOptions::default()
            },
        );
        assert_eq!(tail, "line 5\npartial\n");
        let zero = LogOptions {
            tail: Some(0),
            ..LogOptions::default()
        };
        assert_eq!(collect(&path, &zero), "");
        let ts = collect(
            &path,
            &LogOptions {
                tail: Some(1),
                timestamps: true,
                ..LogOptions::default()
            },
        );
        let (time, text) = ts.split_once(' ').unwrap();
        assert!(time.ends_with('Z') && time.len() == 30, "{ts}");
        assert_eq!(text, "partial\n");
    }

    #[test]
    fn query_options() {
        assert_eq!(options(None).unwrap(), LogOptions::default());
        let o = options(Some("follow=true&tailLines=5&previous=1&timestamps=True")).unwrap();
        assert_eq!(
            o,
            LogOptions {
                follow: true,
                previous: true,
                timestamps: true,
                tail: Some(5)
            }
        );
        assert_eq!(options(Some("tailLines=-1")).unwrap_err().code, 400);
        assert_eq!(options(Some("follow=maybe")).unwrap_err().code, 400);
    }
}
