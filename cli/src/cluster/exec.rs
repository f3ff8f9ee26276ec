//! `corral exec` in a cluster pod: a WebSocket to `pods/{name}/exec` (the
//! master splices it to the pod's agent) speaking Kubernetes' channel
//! protocol, `v5.channel.k8s.io` preferred, `v4` accepted: every binary
//! message starts with a stream byte (0 stdin, 1 stdout, 2 stderr, 3 the
//! final Status, 4 resize); v5 closes stdin with `[255, 0]`.
//!
//! TLS is rustls trusting only the kubeconfig's CA; the bearer token goes
//! in the upgrade request. With `-t` our terminal is raw for the session
//! (restored by a guard, also on errors) and its size is sent at the start
//! and on every SIGWINCH. The exit status is the remote command's, from the
//! Status on channel 3 (NonZeroExitCode with an ExitCode cause).

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::Arc;

use corral_api::Status;
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use super::args::ClusterGlobal;
use super::logs::Endpoint;
use super::{with_query, Error};

pub const V5: &str = "v5.channel.k8s.io";
pub const V4: &str = "v4.channel.k8s.io";

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// What the command line asks.
#[derive(Debug, Clone)]
pub struct ExecRequest<'a> {
    pub pod: &'a str,
    pub container: Option<&'a str>,
    pub command: &'a [String],
    pub stdin: bool,
    pub tty: bool,
}

/// Runs the command in the pod; its exit status.
pub fn run(g: &ClusterGlobal, r: &ExecRequest) -> Result<i32, Error> {
    let ep = Endpoint::from_flags(g)?;
    let mut r = r.clone();
    if r.tty && !is_terminal(std::io::stdin().as_fd()) {
        // As kubectl: go on without a terminal rather than fail.
        eprintln!("Unable to use a TTY - input is not a terminal or the right kind of file");
        r.tty = false;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::msg(format!("starting the I/O runtime: {e}")))?;
    let _raw = if r.tty {
        Some(RawMode::enter(std::io::stdin().as_fd())?)
    } else {
        None
    };
    rt.block_on(session(&ep, &r))
}

/// `pods/{name}/exec?command=..&container=..&stdin&stdout&stderr&tty`.
pub fn exec_path(ns: &str, r: &ExecRequest) -> String {
    let mut params: Vec<(&str, &str)> = r.command.iter().map(|c| ("command", c.as_str())).collect();
    params.push(("container", r.container.unwrap_or("")));
    params.push(("stdin", if r.stdin { "true" } else { "" }));
    params.push(("stdout", "true"));
    // A terminal merges stderr into stdout, as kubectl asks for it.
    params.push(("stderr", if r.tty { "" } else { "true" }));
    params.push(("tty", if r.tty { "true" } else { "" }));
    with_query(
        &format!("/api/v1/namespaces/{ns}/pods/{}/exec", r.pod),
        &params,
    )
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn session(ep: &Endpoint, r: &ExecRequest<'_>) -> Result<i32, Error> {
    let path = exec_path(&ep.namespace, r);
    let url = reqwest::Url::parse(&format!("{}{path}", ep.target.server))
        .map_err(|e| Error::msg(format!("server {:?}: {e}", ep.target.server)))?;
    // Before the upgrade: the remote process starts as soon as the agent has
    // it, and a ^C from then on must end the session, not kill us outright.
    let stop = Stop::new()?;
    let (ws, v5) = connect(ep, &url).await?;
    pump(ws, v5, r, stop).await
}

/// The upgraded connection and whether v5 was agreed.
async fn connect(
    ep: &Endpoint,
    url: &reqwest::Url,
) -> Result<(WebSocketStream<Box<dyn Io>>, bool), Error> {
    let host = url
        .host_str()
        .ok_or_else(|| Error::msg(format!("server {url}: no host")))?
        .trim_matches(['[', ']'])
        .to_string();
    let port = url.port_or_known_default().unwrap_or(443);
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| Error::msg(format!("connecting to {host}:{port}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let (stream, ws_url): (Box<dyn Io>, String) = match url.scheme() {
        "https" => {
            let tls = tls_connector(ep)?;
            let name = ServerName::try_from(host.clone())
                .map_err(|e| Error::msg(format!("server name {host:?}: {e}")))?;
            let s = tls
                .connect(name, tcp)
                .await
                .map_err(|e| Error::msg(format!("TLS with {host}:{port}: {e}")))?;
            (Box::new(s), url.as_str().replacen("https", "wss", 1))
        }
        "http" => (Box::new(tcp), url.as_str().replacen("http", "ws", 1)),
        other => {
            return Err(Error::msg(format!(
                "server {url}: unknown scheme {other:?}"
            )))
        }
    };
    let mut req = ws_url
        .into_client_request()
        .map_err(|e| Error::msg(format!("exec request {url}: {e}")))?;
    let h = req.headers_mut();
    h.insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("v5.channel.k8s.io, v4.channel.k8s.io"),
    );
    if let Some(t) = &ep.target.token {
        let v = HeaderValue::from_str(&format!("Bearer {t}"))
            .map_err(|_| Error::msg("the kubeconfig's token is not a valid header value"))?;
        h.insert("Authorization", v);
    }
    let (ws, resp) = match tokio_tungstenite::client_async(req, stream).await {
        Ok(ok) => ok,
        Err(tungstenite::Error::Http(resp)) => {
            let code = resp.status().as_u16();
            return Err(ep.api_error(code, resp.body().as_deref().unwrap_or_default()));
        }
        Err(e) => return Err(Error::msg(format!("exec {}: {e}", url.path()))),
    };
    let proto = resp
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match proto {
        V5 => Ok((ws, true)),
        V4 => Ok((ws, false)),
        other => Err(Error::msg(format!(
            "exec: the server agreed to no channel protocol ({V5} or {V4}), but to {other:?}"
        ))),
    }
}

/// rustls trusting the kubeconfig's CA alone.
fn tls_connector(ep: &Endpoint) -> Result<tokio_rustls::TlsConnector, Error> {
    if ep.target.insecure {
        return Err(Error::msg(
            "exec does not skip certificate checks: give the kubeconfig's cluster a certificate-authority",
        ));
    }
    let pem = ep.target.ca_pem.as_deref().ok_or_else(|| {
        Error::msg(format!(
            "kubeconfig {}: context {:?} has no certificate authority to check the server with",
            ep.kubeconfig.display(),
            ep.target.context
        ))
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| ca_error(ep, e))?;
        roots.add(cert).map_err(|e| ca_error(ep, e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::msg(format!("TLS configuration: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

fn ca_error(ep: &Endpoint, e: impl std::fmt::Display) -> Error {
    Error::msg(format!(
        "kubeconfig {}: certificate authority of context {:?}: {e}",
        ep.kubeconfig.display(),
        ep.target.context
    ))
}

fn frame(stream: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(stream);
    v.extend_from_slice(data);
    Message::binary(v)
}

/// Our stdin, read by a thread (a blocking read cannot be cancelled; the
/// thread ends with the process). None at EOF.
fn stdin_reader() -> mpsc::Receiver<Option<Vec<u8>>> {
    let (tx, rx) = mpsc::channel(4);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let msg = match stdin.read(&mut buf) {
                Ok(0) => None,
                Ok(n) => Some(buf[..n].to_vec()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => None,
            };
            let end = msg.is_none();
            if tx.blocking_send(msg).is_err() || end {
                return;
            }
        }
    });
    rx
}

/// Copies streams both ways until the server closes; the exit status.
async fn pump(
    ws: WebSocketStream<Box<dyn Io>>,
    v5: bool,
    r: &ExecRequest<'_>,
    mut stop: Stop,
) -> Result<i32, Error> {
    let (mut sink, mut stream) = ws.split();
    let send_err = |e: tungstenite::Error| Error::msg(format!("exec: sending: {e}"));
    let mut input = r.stdin.then(stdin_reader);
    let mut winch = if r.tty {
        let s = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
            .map_err(|e| Error::msg(format!("watching SIGWINCH: {e}")))?;
        if let Some(size) = terminal_size() {
            sink.send(frame(RESIZE, &size)).await.map_err(send_err)?;
        }
        Some(s)
    } else {
        None
    };
    let mut status: Option<Status> = None;
    loop {
        tokio::select! {
            signo = stop.next() => {
                // Closing the session makes the agent stop the process.
                let _ = sink.close().await;
                return Ok(128 + signo);
            },
            msg = stream.next() => match msg {
                Some(Ok(Message::Binary(data))) => output(&data, &mut status)?,
                Some(Ok(Message::Text(text))) => output(text.as_bytes(), &mut status)?,
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => {}
                // A reset after the Status arrived changes nothing.
                Some(Err(_)) if status.is_some() => break,
                Some(Err(e)) => return Err(Error::msg(format!("exec: receiving: {e}"))),
            },
            chunk = recv_input(&mut input) => match chunk {
                Some(data) => sink.send(frame(STDIN, &data)).await.map_err(send_err)?,
                None => {
                    input = None;
                    // v4 cannot close stdin: the command sees no EOF.
                    if v5 {
                        sink.send(frame(CLOSE, &[STDIN])).await.map_err(send_err)?;
                    }
                }
            },
            _ = recv_winch(&mut winch) => {
                if let Some(size) = terminal_size() {
                    sink.send(frame(RESIZE, &size)).await.map_err(send_err)?;
                }
            }
        }
    }
    let _ = sink.close().await;
    exit_code(status)
}

/// SIGINT, SIGTERM and SIGHUP end the session (and with it, the remote
/// process) rather than this process alone, so the terminal is restored.
struct Stop(Vec<(i32, tokio::signal::unix::Signal)>);

impl Stop {
    fn new() -> Result<Stop, Error> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut v = Vec::new();
        for (signo, kind) in [
            (libc::SIGINT, SignalKind::interrupt()),
            (libc::SIGTERM, SignalKind::terminate()),
            (libc::SIGHUP, SignalKind::hangup()),
        ] {
            let s =
                signal(kind).map_err(|e| Error::msg(format!("handling signal {signo}: {e}")))?;
            v.push((signo, s));
        }
        Ok(Stop(v))
    }

    /// The number of the first of the signals to come.
    async fn next(&mut self) -> i32 {
        let waits = self.0.iter_mut().map(|(signo, s)| {
            let signo = *signo;
            Box::pin(async move {
                s.recv().await;
                signo
            })
        });
        futures_util::future::select_all(waits).await.0
    }
}

async fn recv_input(input: &mut Option<mpsc::Receiver<Option<Vec<u8>>>>) -> Option<Vec<u8>> {
    match input {
        Some(rx) => rx.recv().await.flatten(),
        None => std::future::pending().await,
    }
}

async fn recv_winch(s: &mut Option<tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// One server message: output to ours, or the final Status kept.
fn output(data: &[u8], status: &mut Option<Status>) -> Result<(), Error> {
    let Some((&stream, rest)) = data.split_first() else {
        return Ok(());
    };
    let written = match stream {
        STDOUT => write_all(&mut std::io::stdout().lock(), rest),
        STDERR => write_all(&mut std::io::stderr().lock(), rest),
        STATUS => {
            let s = serde_json::from_slice::<Status>(rest)
                .map_err(|e| Error::msg(format!("exec: the final status is not a Status: {e}")))?;
            *status = Some(s);
            Ok(())
        }
        _ => Ok(()),
    };
    written.map_err(|e| Error::msg(format!("exec: writing the output: {e}")))
}

fn write_all(w: &mut impl Write, data: &[u8]) -> std::io::Result<()> {
    w.write_all(data)?;
    w.flush()
}

/// The remote command's exit status from the final Status.
pub fn exit_code(status: Option<Status>) -> Result<i32, Error> {
    let Some(s) = status else {
        return Err(Error::msg(
            "exec: the connection closed before the command's exit status came",
        ));
    };
    if s.status == "Success" {
        return Ok(0);
    }
    if s.reason == "NonZeroExitCode" {
        let code = s
            .details
            .as_ref()
            .and_then(|d| d.causes.iter().find(|c| c.reason == "ExitCode"))
            .and_then(|c| c.message.trim().parse::<i32>().ok());
        if let Some(code) = code {
            return Ok(code);
        }
    }
    let code = u16::try_from(s.code).unwrap_or(500);
    Err(Error::Api {
        code,
        status: Box::new(s),
        user: String::new(),
    })
}

fn is_terminal(fd: BorrowedFd) -> bool {
    nix::unistd::isatty(fd.as_raw_fd()).unwrap_or(false)
}

/// `{"Width":cols,"Height":rows}` of our terminal (stdout's, else stdin's).
fn terminal_size() -> Option<Vec<u8>> {
    let (rows, cols) = corral_shim::term::winsize(std::io::stdout().as_fd())
        .or_else(|| corral_shim::term::winsize(std::io::stdin().as_fd()))?;
    serde_json::to_vec(&serde_json::json!({"Width": cols, "Height": rows})).ok()
}

/// The terminal in raw mode until dropped.
struct RawMode {
    saved: nix::sys::termios::Termios,
}

impl RawMode {
    fn enter(fd: BorrowedFd) -> Result<RawMode, Error> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let saved = tcgetattr(fd).map_err(|e| Error::msg(format!("tcgetattr on stdin: {e}")))?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(fd, SetArg::TCSANOW, &raw)
            .map_err(|e| Error::msg(format!("tcsetattr (raw) on stdin: {e}")))?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        use nix::sys::termios::{tcsetattr, SetArg};
        let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_api::meta::{StatusCause, StatusDetails};

    #[test]
    fn path_lists_the_command_and_streams() {
        let cmd = vec!["sh".to_string(), "-c".into(), "exit 3".into()];
        let r = ExecRequest {
            pod: "web",
            container: None,
            command: &cmd,
            stdin: false,
            tty: false,
        };
        assert_eq!(
            exec_path("default", &r),
            "/api/v1/namespaces/default/pods/web/exec?command=sh&command=-c&command=exit%203&stdout=true&stderr=true"
        );
        let r = ExecRequest {
            container: Some("c"),
            stdin: true,
            tty: true,
            ..r
        };
        assert_eq!(
            exec_path("n", &r),
            "/api/v1/namespaces/n/pods/web/exec?command=sh&command=-c&command=exit%203&container=c&stdin=true&stdout=true&tty=true"
        );
    }

    fn exit_status(code: &str) -> Status {
        let mut s = Status::failure(0, "NonZeroExitCode", "command terminated");
        s.details = Some(StatusDetails {
            causes: vec![StatusCause {
                reason: "ExitCode".into(),
                message: code.into(),
                ..StatusCause::default()
            }],
            ..StatusDetails::default()
        });
        s
    }

    #[test]
    fn exit_codes_from_the_status() {
        assert_eq!(exit_code(Some(Status::success())).unwrap(), 0);
        assert_eq!(exit_code(Some(exit_status("3"))).unwrap(), 3);
        let e = exit_code(Some(exit_status("x"))).unwrap_err();
        assert_eq!(e.to_string(), "command terminated");
        let e = exit_code(Some(Status::internal_error("no such file"))).unwrap_err();
        assert!(e.to_string().contains("no such file"), "{e}");
        assert!(exit_code(None).is_err());
    }

    #[test]
    fn frames() {
        let Message::Binary(b) = frame(CLOSE, &[STDIN]) else {
            panic!("not binary")
        };
        assert_eq!(&b[..], &[255, 0]);
    }
}
