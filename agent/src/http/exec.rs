//! `GET /exec/{ns}/{pod}/{container}?command=..&stdin=1&stdout=1&stderr=1&tty=1`
//! over a WebSocket in Kubernetes' channel protocol: every binary message
//! starts with a stream byte (0 stdin, 1 stdout, 2 stderr, 3 the final
//! Status as JSON, 4 terminal resize `{"Width":w,"Height":h}`);
//! `v5.channel.k8s.io` adds `[255, stream]` to close a stream (stdin EOF).
//!
//! The process is started by the `corral-runtime` binary (`exec`, in the
//! foreground so its exit code is the process's), never by the runtime
//! library in this multi-threaded process: it forks without exec.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::response::Response;
use corral_api::meta::{StatusCause, StatusDetails};
use corral_api::Status;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::params::Params;
use super::{lookup, status_response, AppState, ContainerInfo};

pub const V5: &str = "v5.channel.k8s.io";
pub const V4: &str = "v4.channel.k8s.io";

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// How long output may keep coming after the process ended (a background
/// child holding the pipes open must not hold the session forever).
const DRAIN: Duration = Duration::from_secs(2);
/// How long the runtime may take to hand over the terminal.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
struct ExecRequest {
    command: Vec<String>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

fn request(query: Option<&str>) -> Result<ExecRequest, Box<Status>> {
    let p = Params::parse(query.unwrap_or(""))?;
    let r = ExecRequest {
        command: p.all("command"),
        stdin: p.flag("stdin")?,
        stdout: p.flag("stdout")?,
        stderr: p.flag("stderr")?,
        tty: p.flag("tty")?,
    };
    if r.command.is_empty() {
        return Err(Box::new(Status::bad_request(
            "you must specify at least 1 command",
        )));
    }
    if !(r.stdin || r.stdout || r.stderr) {
        return Err(Box::new(Status::bad_request(
            "you must specify at least 1 of stdin, stdout, stderr",
        )));
    }
    Ok(r)
}

pub(super) async fn exec(
    State(state): State<AppState>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    RawQuery(query): RawQuery,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let req = match request(query.as_deref()) {
        Ok(r) => r,
        Err(s) => return status_response(*s),
    };
    let info = match lookup(&state, &namespace, &pod, &container).await {
        Ok(i) => i,
        Err(resp) => return resp,
    };
    if !info.running {
        return status_response(Status::bad_request(format!(
            "container {container:?} in pod {pod:?} is not running"
        )));
    }
    let ws = match ws {
        Ok(ws) => ws.protocols([V5, V4]),
        Err(e) => {
            return status_response(Status::bad_request(format!(
                "exec needs a WebSocket upgrade ({V5} or {V4}): {e}"
            )))
        }
    };
    let v5 = match ws.selected_protocol().and_then(|p| p.to_str().ok()) {
        Some(V5) => true,
        Some(_) => false,
        None => {
            return status_response(Status::bad_request(format!(
                "exec needs the WebSocket subprotocol {V5} or {V4}"
            )))
        }
    };
    let runtime = state.runtime.clone();
    ws.on_upgrade(move |socket| async move {
        let session = Session {
            runtime,
            info,
            req,
            v5,
        };
        session.run(socket).await;
    })
}

struct Session {
    runtime: PathBuf,
    info: ContainerInfo,
    req: ExecRequest,
    v5: bool,
}

/// What the process's streams deliver to the socket writer.
type Out = mpsc::Sender<Message>;

fn frame(stream: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(stream);
    v.extend_from_slice(data);
    Message::Binary(Bytes::from(v))
}

impl Session {
    fn command(&self, console: Option<&Path>) -> Command {
        let mut c = Command::new(&self.runtime);
        c.arg("--root").arg(&self.info.runtime_root).arg("exec");
        if let Some(sock) = console {
            c.arg("--tty").arg("--console-socket").arg(sock);
        }
        c.arg(&self.info.runtime_id).args(&self.req.command);
        c.stdin(if self.req.stdin && console.is_none() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        c.stdout(if console.is_none() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        // Always read: the runtime's own errors arrive there.
        c.stderr(Stdio::piped());
        c
    }

    async fn run(self, socket: WebSocket) {
        let (mut sink, stream) = socket.split();
        let (tx, mut rx) = mpsc::channel::<Message>(16);
        let writer = tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                if sink.send(msg).await.is_err() {
                    break;
                }
            }
            // A Close without a status code reads as an error (1005) to
            // kubectl, which then drops the exit Status: close as kubelet does.
            let normal = axum::extract::ws::CloseFrame {
                code: axum::extract::ws::close_code::NORMAL,
                reason: "".into(),
            };
            let _ = sink.send(Message::Close(Some(normal))).await;
            let _ = sink.close().await;
        });
        let status = match self.start_and_wait(stream, &tx).await {
            Ok(s) => s,
            Err(s) => Some(s),
        };
        if let Some(status) = status {
            let json = serde_json::to_vec(&status).unwrap_or_default();
            let _ = tx.send(frame(ERROR, &json)).await;
        }
        drop(tx);
        let _ = writer.await;
    }

    /// Run the process, pumping the socket; the Status to report, or None
    /// when the client went away.
    async fn start_and_wait(
        &self,
        stream: futures_util::stream::SplitStream<WebSocket>,
        tx: &Out,
    ) -> Result<Option<Status>, Status> {
        if self.req.tty {
            return self.run_tty(stream, tx).await;
        }
        let mut child = self
            .command(None)
            .spawn()
            .map_err(|e| spawn_error(&self.runtime, e))?;
        let stdin = child.stdin.take();
        let outputs = [
            child
                .stdout
                .take()
                .map(|o| pump(o, STDOUT, self.req.stdout.then(|| tx.clone()))),
            child
                .stderr
                .take()
                .map(|e| pump(e, STDERR, self.req.stderr.then(|| tx.clone()))),
        ];
        let input = Input {
            stdin: stdin.map(|s| Box::new(s) as Box<dyn AsyncWrite + Send + Unpin>),
            master: None,
            v5: self.v5,
        };
        let Some(code) = supervise(&mut child, stream, input).await else {
            return Ok(None);
        };
        for task in outputs.into_iter().flatten() {
            let _ = tokio::time::timeout(DRAIN, task).await;
        }
        Ok(Some(exit_status(&self.req.command, code)))
    }

    async fn run_tty(
        &self,
        stream: futures_util::stream::SplitStream<WebSocket>,
        tx: &Out,
    ) -> Result<Option<Status>, Status> {
        let console = corral_shim::term::ConsoleSocket::bind()
            .map_err(|e| Status::internal_error(format!("exec terminal: {e}")))?;
        let mut child = self
            .command(Some(console.path()))
            .spawn()
            .map_err(|e| spawn_error(&self.runtime, e))?;
        // The runtime's own errors; the process's stderr is the terminal.
        let stderr = child
            .stderr
            .take()
            .map(|e| pump(e, STDERR, self.req.stderr.then(|| tx.clone())));
        let master = match receive_master(console, &mut child).await {
            Ok(m) => m,
            Err(code) => return Ok(Some(exit_status(&self.req.command, code))),
        };
        let reader = std::fs::File::from(
            master
                .try_clone()
                .map_err(|e| Status::internal_error(format!("dup terminal: {e}")))?,
        );
        let output = pump(
            tokio::fs::File::from_std(reader),
            STDOUT,
            self.req.stdout.then(|| tx.clone()),
        );
        let writer = tokio::fs::File::from_std(std::fs::File::from(
            master
                .try_clone()
                .map_err(|e| Status::internal_error(format!("dup terminal: {e}")))?,
        ));
        let input = Input {
            stdin: self
                .req
                .stdin
                .then(|| Box::new(writer) as Box<dyn AsyncWrite + Send + Unpin>),
            master: Some(master),
            v5: self.v5,
        };
        let Some(code) = supervise(&mut child, stream, input).await else {
            return Ok(None);
        };
        let _ = tokio::time::timeout(DRAIN, output).await;
        if let Some(t) = stderr {
            let _ = tokio::time::timeout(DRAIN, t).await;
        }
        Ok(Some(exit_status(&self.req.command, code)))
    }
}

fn spawn_error(runtime: &Path, e: std::io::Error) -> Status {
    Status::internal_error(format!("start {}: {e}", runtime.display()))
}

/// Accept the runtime's console connection; Err(exit code) when the
/// runtime ended without sending one.
async fn receive_master(
    console: corral_shim::term::ConsoleSocket,
    child: &mut Child,
) -> Result<OwnedFd, i32> {
    let path = console.path().to_path_buf();
    let mut accept = tokio::task::spawn_blocking(move || console.receive_master());
    tokio::select! {
        got = &mut accept => match got {
            Ok(Ok(fd)) => Ok(fd),
            _ => Err(wait_code(child).await),
        },
        status = child.wait() => {
            // Unblock the accept so its thread ends.
            let _ = std::os::unix::net::UnixStream::connect(&path);
            let _ = accept.await;
            Err(status.ok().and_then(|s| s.code()).unwrap_or(-1))
        }
        _ = tokio::time::sleep(CONSOLE_TIMEOUT) => {
            let _ = child.start_kill();
            let _ = std::os::unix::net::UnixStream::connect(&path);
            let _ = accept.await;
            Err(wait_code(child).await)
        }
    }
}

async fn wait_code(child: &mut Child) -> i32 {
    child.wait().await.ok().and_then(|s| s.code()).unwrap_or(-1)
}

/// Copy a stream to the socket (when `to` is set; else read and drop it,
/// so the writer never blocks on a full pipe).
fn pump(
    mut from: impl AsyncRead + Send + Unpin + 'static,
    stream: u8,
    to: Option<Out>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        // A terminal gives EIO once its last writer closed: that is EOF.
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0 {
                break;
            }
            if let Some(tx) = &to {
                if tx.send(frame(stream, &buf[..n])).await.is_err() {
                    break;
                }
            }
        }
    })
}

/// Where client messages go.
struct Input {
    stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    master: Option<OwnedFd>,
    v5: bool,
}

impl Input {
    async fn handle(&mut self, data: &[u8]) {
        let Some((&stream, rest)) = data.split_first() else {
            return;
        };
        match stream {
            STDIN => {
                if let Some(w) = self.stdin.as_mut() {
                    if w.write_all(rest).await.is_err() || w.flush().await.is_err() {
                        self.stdin = None;
                    }
                }
            }
            RESIZE => {
                if let Some(m) = &self.master {
                    resize(m, rest);
                }
            }
            CLOSE if self.v5 && rest.first() == Some(&STDIN) => {
                if let Some(mut w) = self.stdin.take() {
                    let _ = w.shutdown().await;
                }
            }
            _ => {}
        }
    }
}

/// Feed client messages to the process until it exits; its exit code, or
/// None when the client went away (the process is then sent SIGTERM by way
/// of the runtime, which forwards it, and SIGKILL if it lingers).
async fn supervise(
    child: &mut Child,
    mut stream: futures_util::stream::SplitStream<WebSocket>,
    mut input: Input,
) -> Option<i32> {
    loop {
        tokio::select! {
            status = child.wait() => {
                return Some(status.ok().and_then(|s| s.code()).unwrap_or(-1));
            }
            msg = stream.next() => match msg {
                Some(Ok(Message::Binary(data))) => input.handle(&data).await,
                Some(Ok(Message::Text(text))) => input.handle(text.as_bytes()).await,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    stop(child).await;
                    return None;
                }
            }
        }
    }
}

async fn stop(child: &mut Child) {
    if let Some(pid) = child.id() {
        // SAFETY: kill has no memory-safety preconditions; pid is our child,
        // not yet reaped (tokio reaps it only in wait below).
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    if tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TermSize {
    width: u16,
    height: u16,
}

fn resize(master: &OwnedFd, json: &[u8]) {
    let Ok(size) = serde_json::from_slice::<TermSize>(json) else {
        return;
    };
    let ws = libc::winsize {
        ws_row: size.height,
        ws_col: size.width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which lives
    // across the call; the fd is an open pty master.
    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
}

/// The Status kubelet sends on the error stream when the process ended:
/// Success, or NonZeroExitCode with the code as the cause's message.
fn exit_status(command: &[String], code: i32) -> Status {
    if code == 0 {
        return Status::success();
    }
    let mut s = Status::failure(
        0,
        "NonZeroExitCode",
        format!(
            "command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"
        ),
    );
    s.details = Some(StatusDetails {
        causes: vec![StatusCause {
            reason: "ExitCode".into(),
            message: code.to_string(),
            ..StatusCause::default()
        }],
        ..StatusDetails::default()
    });
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_needs_a_command_and_a_stream() {
        let r = request(Some(
            "command=sh&command=-c&command=exit+3&stdout=1&stderr=true",
        ))
        .unwrap();
        assert_eq!(r.command, ["sh", "-c", "exit 3"]);
        assert!(r.stdout && r.stderr && !r.stdin && !r.tty);
        assert_eq!(request(Some("stdout=1")).unwrap_err().code, 400);
        let e = request(Some("command=ls")).unwrap_err();
        assert!(e.message.contains("at least 1 of stdin"), "{}", e.message);
    }

    #[test]
    fn exit_status_shape() {
        let ok = serde_json::to_value(exit_status(&[], 0)).unwrap();
        assert_eq!(ok["status"], "Success");
        let cmd = vec!["sh".to_string()];
        let v = serde_json::to_value(exit_status(&cmd, 3)).unwrap();
        assert_eq!(v["status"], "Failure");
        assert_eq!(v["reason"], "NonZeroExitCode");
        assert_eq!(v["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(v["details"]["causes"][0]["message"], "3");
    }
}
