//! The agent's HTTP API served in-process on 127.0.0.1 with a backend of real
//! parts (busybox containers run by the runtime under test, CRI logs written
//! by the shim's LogWriter): token checks, pods, node, logs (tail, previous,
//! timestamps, follow across rotation), exec over WebSocket in Kubernetes'
//! channel protocol, and cgroup stats.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use corral_agent::http::{serve_on, Options};
use corral_shim::cri::{LogWriter, Stream};
use corral_tests::agent_backend::{RuntimeBackend, TestContainer, TestPod};
use corral_tests::{runtime_for, Bundle, Runtime};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "test-token-0123456789";
const T: Duration = Duration::from_secs(30);

/// The server on its own tokio runtime; dropping it stops both.
struct Server {
    tokio: Option<tokio::runtime::Runtime>,
    addr: SocketAddr,
    http: reqwest::blocking::Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(rt) = self.tokio.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

impl Server {
    fn start(rt: &Runtime, pods: Vec<TestPod>) -> Server {
        let backend = RuntimeBackend::new(rt.bin().to_path_buf(), rt.root(), pods);
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let listener = tokio
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let options = Options {
            runtime_binary: Some(rt.bin().to_path_buf()),
            ..Options::default()
        };
        tokio.spawn(serve_on(listener, backend, TOKEN.into(), options));
        Server {
            tokio: Some(tokio),
            addr,
            http: reqwest::blocking::Client::builder()
                .timeout(T)
                .build()
                .expect("http client"),
        }
    }

    fn get(&self, path: &str, token: Option<&str>) -> reqwest::blocking::Response {
        let mut req = self.http.get(format!("http://{}{path}", self.addr));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// Status code and body of an authenticated GET.
    fn text(&self, path: &str) -> (u16, String) {
        let resp = self.get(path, Some(TOKEN));
        let code = resp.status().as_u16();
        (code, resp.text().expect("body"))
    }

    fn json(&self, path: &str) -> (u16, Value) {
        let (code, body) = self.text(path);
        let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        (code, v)
    }

    fn exec(&self, path_query: &str, proto: &str, input: Vec<Vec<u8>>) -> ExecResult {
        let rt = self.tokio.as_ref().expect("tokio runtime");
        let url = format!("ws://{}{path_query}", self.addr);
        rt.block_on(async {
            tokio::time::timeout(T, ws_exec(url, Some(TOKEN), proto, input)).await
        })
        .unwrap_or_else(|_| panic!("exec {path_query} timed out"))
    }
}

#[derive(Debug, Default)]
struct ExecResult {
    /// The HTTP status when the upgrade was refused.
    refused: Option<u16>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: Option<Value>,
}

impl ExecResult {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn exit_code(&self) -> Option<i64> {
        let s = self.status.as_ref()?;
        if s["status"] == "Success" {
            return Some(0);
        }
        assert_eq!(s["reason"], "NonZeroExitCode", "{s}");
        assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode", "{s}");
        s["details"]["causes"][0]["message"].as_str()?.parse().ok()
    }
}

async fn ws_exec(url: String, token: Option<&str>, proto: &str, input: Vec<Vec<u8>>) -> ExecResult {
    let mut req = url.into_client_request().expect("request");
    if let Some(t) = token {
        req.headers_mut().insert(
            "Authorization",
            format!("Bearer {t}").parse().expect("header"),
        );
    }
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", proto.parse().expect("header"));
    let (ws, _) = match tokio_tungstenite::connect_async(req).await {
        Ok(ok) => ok,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            return ExecResult {
                refused: Some(resp.status().as_u16()),
                ..ExecResult::default()
            }
        }
        Err(e) => panic!("websocket connect: {e}"),
    };
    let (mut tx, mut rx) = ws.split();
    for msg in input {
        tx.send(Message::Binary(msg.into())).await.expect("send");
    }
    let mut out = ExecResult::default();
    while let Some(msg) = rx.next().await {
        let data = match msg {
            Ok(Message::Binary(d)) => d,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        let Some((&stream, rest)) = data.split_first() else {
            continue;
        };
        match stream {
            1 => out.stdout.extend_from_slice(rest),
            2 => out.stderr.extend_from_slice(rest),
            3 => out.status = Some(serde_json::from_slice(rest).expect("status JSON")),
            _ => {}
        }
    }
    out
}

fn exec_path(container: &str, cmd: &[&str], flags: &str) -> String {
    let mut q: Vec<String> = cmd
        .iter()
        .map(|c| format!("command={}", encode(c)))
        .collect();
    q.push(flags.to_string());
    format!("/exec/default/web/{container}?{}", q.join("&"))
}

/// Percent-encoding of everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn log_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.log"))
}

/// A pod "default/web" with a running busybox sleeper as container "app",
/// and a stopped container "done".
struct WebPod {
    pod: TestPod,
    app: String,
    /// The containers' rootfs live as long as the test.
    _bundles: [Bundle; 2],
}

fn web_pod(rt: &Runtime, logs: &Path) -> WebPod {
    let mut b = Bundle::new();
    let app = rt.start_sleeper(&mut b);
    let mut b2 = Bundle::new();
    let done = rt.start_sleeper(&mut b2);
    rt.kill(&done, "KILL").assert_ok();
    assert!(
        rt.wait_status(&done, "stopped", T),
        "container {done} never stopped"
    );
    let pod = TestPod {
        namespace: "default".into(),
        name: "web".into(),
        uid: "uid-web".into(),
        containers: vec![
            TestContainer {
                name: "app".into(),
                runtime_id: Some(app.clone()),
                log_path: log_file(logs, "app"),
                previous_log_path: Some(log_file(logs, "app-previous")),
            },
            TestContainer {
                name: "done".into(),
                runtime_id: Some(done),
                log_path: log_file(logs, "done"),
                previous_log_path: None,
            },
        ],
    };
    WebPod {
        pod,
        app,
        _bundles: [b, b2],
    }
}

#[test]
fn token_is_required_and_nothing_happens_without_it() {
    let Some(rt) = runtime_for("agent-http-auth") else {
        return;
    };
    let logs = tempfile::tempdir().expect("tempdir");
    let web = web_pod(&rt, logs.path());
    let srv = Server::start(&rt, vec![web.pod.clone()]);

    let health = srv.get("/healthz", None);
    assert_eq!(health.status().as_u16(), 200);
    assert_eq!(health.text().unwrap(), "ok");
    for token in [None, Some("wrong"), Some("test-token-012345678X"), Some("")] {
        for path in [
            "/pods",
            "/node",
            "/stats/summary",
            "/containerLogs/default/web/app",
        ] {
            let resp = srv.get(path, token);
            assert_eq!(resp.status().as_u16(), 401, "{path} with {token:?}");
            let v: Value = resp.json().expect("Status JSON");
            assert_eq!(v["kind"], "Status");
            assert_eq!(v["reason"], "Unauthorized");
            assert_eq!(v["code"], 401);
        }
    }
    // An exec with a wrong token is refused before anything runs...
    let tokio = srv.tokio.as_ref().unwrap();
    let marker = exec_path("app", &["touch", "/tmp/pwned"], "stdout=1");
    let url = format!("ws://{}{marker}", srv.addr);
    for token in [None, Some("wrong")] {
        let r = tokio.block_on(ws_exec(url.clone(), token, "v4.channel.k8s.io", vec![]));
        assert_eq!(r.refused, Some(401), "{r:?}");
    }
    // ...so the file it would have made is not there.
    let r = srv.exec(
        &exec_path("app", &["test", "-e", "/tmp/pwned"], "stdout=1"),
        "v4.channel.k8s.io",
        vec![],
    );
    assert_eq!(r.exit_code(), Some(1), "{r:?}");
    // The same exec with the token does make it.
    let r = srv.exec(&marker, "v4.channel.k8s.io", vec![]);
    assert_eq!(r.exit_code(), Some(0), "{r:?}");
    let r = srv.exec(
        &exec_path("app", &["test", "-e", "/tmp/pwned"], "stdout=1"),
        "v4.channel.k8s.io",
        vec![],
    );
    assert_eq!(r.exit_code(), Some(0), "{r:?}");
}

#[test]
fn pods_node_and_lookup_errors() {
    let Some(rt) = runtime_for("agent-http-pods") else {
        return;
    };
    let logs = tempfile::tempdir().expect("tempdir");
    let web = web_pod(&rt, logs.path());
    let srv = Server::start(&rt, vec![web.pod.clone()]);

    let (code, list) = srv.json("/pods");
    assert_eq!(code, 200);
    assert_eq!(list["kind"], "PodList");
    assert_eq!(list["apiVersion"], "v1");
    let pod = &list["items"][0];
    assert_eq!(pod["metadata"]["name"], "web");
    assert_eq!(pod["metadata"]["namespace"], "default");
    let statuses = pod["status"]["containerStatuses"].as_array().unwrap();
    assert!(statuses[0]["state"]["running"].is_object(), "{pod}");
    assert!(statuses[1]["state"]["terminated"].is_object(), "{pod}");

    let (code, node) = srv.json("/node");
    assert_eq!(code, 200, "{node}");
    assert_eq!(node["kind"], "Node");
    let st = &node["status"];
    assert!(
        st["capacity"]["cpu"].is_string() && st["allocatable"]["memory"].is_string(),
        "{st}"
    );
    assert_eq!(st["capacity"]["pods"], "110");
    assert_eq!(st["nodeInfo"]["operatingSystem"], "linux");
    assert!(
        st["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["type"] == "Hostname"),
        "{st}"
    );

    for (path, want) in [
        ("/containerLogs/default/nope/app", 404),
        ("/containerLogs/default/web/nope", 404),
        ("/containerLogs/other/web/app", 404),
        ("/containerLogs/default/web/app?tailLines=-2", 400),
        ("/containerLogs/default/web/done?previous=true", 400),
        ("/no/such/route", 404),
    ] {
        let (code, v) = srv.json(path);
        assert_eq!(code, want, "{path}: {v}");
        assert_eq!(v["kind"], "Status", "{path}: {v}");
        assert_eq!(v["code"], want, "{path}: {v}");
    }
    let (_, v) = srv.json("/containerLogs/default/web/nope");
    assert_eq!(v["message"], "container nope is not valid for pod web");

    let r = srv.exec(
        &exec_path("nope", &["true"], "stdout=1"),
        "v4.channel.k8s.io",
        vec![],
    );
    assert_eq!(r.refused, Some(404), "{r:?}");
    let r = srv.exec(
        &exec_path("done", &["true"], "stdout=1"),
        "v4.channel.k8s.io",
        vec![],
    );
    assert_eq!(r.refused, Some(400), "exec into a stopped container: {r:?}");
    let r = srv.exec(
        &exec_path("app", &["true"], "stdout=1"),
        "base64.channel.k8s.io",
        vec![],
    );
    assert_eq!(r.refused, Some(400), "an unsupported subprotocol: {r:?}");
}

#[test]
fn logs_tail_previous_timestamps_and_rotation() {
    let Some(rt) = runtime_for("agent-http-logs") else {
        return;
    };
    let logs = tempfile::tempdir().expect("tempdir");
    let web = web_pod(&rt, logs.path());
    // Small files so that 20 lines rotate through several of them.
    let mut w = LogWriter::open(&log_file(logs.path(), "app"), 200, 3).expect("log");
    for i in 0..20 {
        let stream = if i % 2 == 0 {
            Stream::Stdout
        } else {
            Stream::Stderr
        };
        w.write(stream, format!("line {i}\n").as_bytes())
            .expect("write");
    }
    w.write(Stream::Stdout, b"no newline yet").expect("write");
    let mut prev = LogWriter::open(&log_file(logs.path(), "app-previous"), 0, 1).expect("log");
    prev.write(Stream::Stdout, b"before the restart\n")
        .expect("write");
    assert!(corral_shim::cri::log_files(&log_file(logs.path(), "app")).len() >= 3);
    let srv = Server::start(&rt, vec![web.pod.clone()]);

    let (code, all) = srv.text("/containerLogs/default/web/app");
    assert_eq!(code, 200, "{all}");
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.last(), Some(&"no newline yet"), "{all}");
    // The kept files hold a suffix of what was written, in order, with no gaps.
    let first: usize = lines[0].strip_prefix("line ").unwrap().parse().unwrap();
    let want: Vec<String> = (first..20).map(|i| format!("line {i}")).collect();
    assert_eq!(&lines[..lines.len() - 1], want.as_slice(), "{all}");
    assert!(first > 0, "rotation dropped the oldest lines");

    let (_, tail) = srv.text("/containerLogs/default/web/app?tailLines=3");
    assert_eq!(tail, "line 18\nline 19\nno newline yet");
    let (_, ts) = srv.text("/containerLogs/default/web/app?tailLines=1&timestamps=true");
    let (time, text) = ts.split_once(' ').unwrap();
    assert!(time.ends_with('Z') && time.contains('T'), "{ts}");
    assert_eq!(text, "no newline yet");
    let (code, previous) = srv.text("/containerLogs/default/web/app?previous=true");
    assert_eq!((code, previous.as_str()), (200, "before the restart\n"));
}

#[test]
fn logs_follow_until_the_container_stops() {
    let Some(rt) = runtime_for("agent-http-follow") else {
        return;
    };
    let logs = tempfile::tempdir().expect("tempdir");
    let web = web_pod(&rt, logs.path());
    let path = log_file(logs.path(), "app");
    let mut w = LogWriter::open(&path, 250, 3).expect("log");
    w.write(Stream::Stdout, b"old 1\nold 2\n").expect("write");
    let srv = Server::start(&rt, vec![web.pod.clone()]);

    let resp = srv.get(
        "/containerLogs/default/web/app?follow=true&tailLines=1",
        Some(TOKEN),
    );
    assert_eq!(resp.status().as_u16(), 200);
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut resp = resp;
        let mut buf = [0u8; 4096];
        let mut all = Vec::new();
        loop {
            match resp.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    all.extend_from_slice(&buf[..n]);
                    let _ = tx.send(String::from_utf8_lossy(&all).into_owned());
                }
            }
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    let wait_for = |needle: &str| {
        let deadline = Instant::now() + T;
        let mut seen = String::new();
        while Instant::now() < deadline {
            if let Ok(s) = rx.recv_timeout(Duration::from_millis(200)) {
                seen = s;
            }
            if seen.contains(needle) {
                return seen;
            }
        }
        panic!("follow never showed {needle:?}; got {seen:?}");
    };
    assert_eq!(wait_for("old 2"), "old 2\n", "tailLines=1 then follow");
    // Enough lines to rotate the live file at least twice while followed.
    for i in 0..12 {
        w.write(Stream::Stdout, format!("new {i}\n").as_bytes())
            .expect("write");
        std::thread::sleep(Duration::from_millis(30));
    }
    assert!(
        corral_shim::cri::log_files(&path).len() >= 2,
        "the log rotated"
    );
    wait_for("new 11\n");
    rt.kill(&web.app, "KILL").assert_ok();
    let deadline = Instant::now() + T;
    while !reader.is_finished() {
        assert!(
            Instant::now() < deadline,
            "follow did not end when the container stopped"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = reader.join().unwrap();
    let want: String = std::iter::once("old 2\n".to_string())
        .chain((0..12).map(|i| format!("new {i}\n")))
        .collect();
    assert_eq!(text, want, "every line once, in order, across rotations");
}

#[test]
fn exec_over_websocket() {
    let Some(rt) = runtime_for("agent-http-exec") else {
        return;
    };
    let logs = tempfile::tempdir().expect("tempdir");
    let web = web_pod(&rt, logs.path());
    let srv = Server::start(&rt, vec![web.pod.clone()]);
    let v4 = "v4.channel.k8s.io";

    let r = srv.exec(
        &exec_path("app", &["echo", "hi"], "stdout=1&stderr=1"),
        v4,
        vec![],
    );
    assert_eq!(
        (r.stdout(), r.exit_code()),
        ("hi\n".to_string(), Some(0)),
        "{r:?}"
    );

    let r = srv.exec(
        &exec_path(
            "app",
            &["sh", "-c", "echo oops >&2; exit 3"],
            "stdout=1&stderr=1",
        ),
        v4,
        vec![],
    );
    assert_eq!(r.exit_code(), Some(3), "{r:?}");
    assert_eq!(String::from_utf8_lossy(&r.stderr), "oops\n");
    let msg = r.status.as_ref().unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("exit code 3"), "{msg}");

    // v4 has no way to close stdin: a command that stops reading by itself.
    let r = srv.exec(
        &exec_path("app", &["head", "-n", "1"], "stdin=1&stdout=1"),
        v4,
        vec![b"\0first line\nsecond\n".to_vec()],
    );
    assert_eq!(
        (r.stdout(), r.exit_code()),
        ("first line\n".to_string(), Some(0)),
        "{r:?}"
    );

    // v5 closes stdin with [255, 0]: cat sees EOF and ends.
    let r = srv.exec(
        &exec_path("app", &["cat"], "stdin=1&stdout=1"),
        "v5.channel.k8s.io",
        vec![
            b"\0piped ".to_vec(),
            b"\0through cat\n".to_vec(),
            vec![255, 0],
        ],
    );
    assert_eq!(
        (r.stdout(), r.exit_code()),
        ("piped through cat\n".to_string(), Some(0)),
        "{r:?}"
    );

    // A terminal: the process sees one and its size follows resize messages.
    let r = srv.exec(
        &exec_path(
            "app",
            &["sh", "-c", "read x; test -t 0 && stty size"],
            "stdin=1&stdout=1&tty=1",
        ),
        v4,
        vec![
            [&[4u8][..], br#"{"Width":91,"Height":27}"#].concat(),
            b"\0go\n".to_vec(),
        ],
    );
    assert_eq!(r.exit_code(), Some(0), "{r:?}");
    assert!(r.stdout().contains("27 91"), "{r:?}");

    let r = srv.exec(
        &exec_path("app", &["/no/such/binary"], "stdout=1&stderr=1"),
        v4,
        vec![],
    );
    assert!(r.exit_code().is_some_and(|c| c != 0), "{r:?}");
}

#[test]
fn stats_of_a_running_container() {
    let Some(rt) = runtime_for("agent-http-stats") else {
        return;
    };
    let logs = tempfile::tempdir().expect("tempdir");
    let web = web_pod(&rt, logs.path());
    let app = web.app.clone();
    let srv = Server::start(&rt, vec![web.pod.clone()]);
    // Some CPU and memory in the container's cgroup.
    let r = srv.exec(
        &exec_path(
            "app",
            &[
                "sh",
                "-c",
                "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo $i",
            ],
            "stdout=1",
        ),
        "v4.channel.k8s.io",
        vec![],
    );
    assert_eq!(r.stdout(), "20000\n", "{r:?}");

    let (code, first) = srv.json("/stats/summary");
    assert_eq!(code, 200, "{first}");
    std::thread::sleep(Duration::from_millis(200));
    let (_, s) = srv.json("/stats/summary");
    let node = &s["node"];
    assert!(
        node["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap() > 0,
        "{node}"
    );
    assert!(
        node["cpu"]["usageNanoCores"].is_u64(),
        "a rate after a second sample: {node}"
    );
    assert!(
        node["memory"]["workingSetBytes"].as_u64().unwrap() > 0,
        "{node}"
    );
    let pod = &s["pods"][0];
    assert_eq!(pod["podRef"]["name"], "web");
    assert_eq!(pod["podRef"]["uid"], "uid-web");
    let ctrs = pod["containers"].as_array().unwrap();
    let app_stats = ctrs.iter().find(|c| c["name"] == "app").unwrap();
    let cpu = app_stats["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap();
    assert!(
        cpu > 1_000_000,
        "the loop took more than 1 ms of CPU: {app_stats}"
    );
    assert!(app_stats["cpu"]["usageNanoCores"].is_u64(), "{app_stats}");
    let ws = app_stats["memory"]["workingSetBytes"].as_u64().unwrap();
    let usage = app_stats["memory"]["usageBytes"].as_u64().unwrap();
    assert!(ws > 0 && ws <= usage, "{app_stats}");
    assert!(
        pod["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap() >= cpu,
        "{pod}"
    );
    let done = ctrs.iter().find(|c| c["name"] == "done").unwrap();
    assert!(
        done.get("cpu").is_none(),
        "a stopped container has no stats: {done}"
    );
    // The numbers are the cgroup's own.
    let cgroup = format!("/sys/fs/cgroup/cpu,cpuacct/corral-test/{app}/cpuacct.usage");
    if let Ok(text) = std::fs::read_to_string(&cgroup) {
        let now: u64 = text.trim().parse().unwrap();
        assert!(now >= cpu, "{cgroup}: {now} < {cpu}");
    }
}
