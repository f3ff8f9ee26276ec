//! Harness for whole-binary tests of `corral-master`: the real binary on
//! 127.0.0.1 with a free port and a temporary data dir, a reqwest client that
//! trusts only the CA the master generated, and the admin token it wrote.
//! The process is killed (and the data dir removed) on drop, also when the
//! test panics.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder};
use reqwest::Method;
use serde_json::Value;

use crate::corral::workspace_binary;

/// How long the master may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Master {
    child: Option<Child>,
    dir: tempfile::TempDir,
    extra: Vec<String>,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    client: Client,
    token: String,
}

impl Master {
    /// Starts a master with extra flags (e.g. `--compact-interval 1`).
    pub fn start(extra: &[&str]) -> Result<Master, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (child, addr) = spawn(dir.path(), "127.0.0.1:0", &extra)?;
        let (client, token) = client_for(dir.path())?;
        Ok(Master {
            child: Some(child),
            dir,
            extra,
            addr,
            client,
            token,
        })
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("admin.kubeconfig")
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    /// Kills the master (SIGKILL: nothing gets a chance to flush) and starts
    /// it again on the same data dir and port.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        let (child, addr) = spawn(self.dir.path(), &self.addr, &self.extra)?;
        self.child = Some(child);
        if addr != self.addr {
            return Err(format!("restarted on {addr}, expected {}", self.addr));
        }
        let (client, token) = client_for(self.dir.path())?;
        self.client = client;
        self.token = token;
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A request without credentials.
    pub fn anonymous(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// A request with the admin token.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.anonymous(method, path).bearer_auth(&self.token)
    }

    /// Sends `body` (JSON, or none) with the admin token: (status, JSON reply).
    pub fn call(&self, method: Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut r = self.request(method, path);
        if let Some(b) = body {
            r = r.json(b);
        }
        send(r)
    }

    /// PATCH with the given content type.
    pub fn patch(&self, path: &str, content_type: &str, body: &str) -> (u16, Value) {
        send(
            self.request(Method::PATCH, path)
                .header("Content-Type", content_type)
                .body(body.to_string()),
        )
    }
}

/// Sends a request and reads its JSON reply (Value::Null when not JSON).
pub fn send(r: RequestBuilder) -> (u16, Value) {
    let resp = r
        .timeout(Duration::from_secs(30))
        .send()
        .unwrap_or_else(|e| panic!("request failed: {e}"));
    let code = resp.status().as_u16();
    let text = resp.text().unwrap_or_default();
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

impl Drop for Master {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(dir: &Path, listen: &str, extra: &[String]) -> Result<(Child, String), String> {
    let bin = workspace_binary("corral-master")?;
    let mut child = Command::new(&bin)
        .arg("--data-dir")
        .arg(dir)
        .arg("--listen")
        .arg(listen)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("spawning {}: {e}", bin.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        // Keep draining so the master never blocks on a full pipe.
        for _ in lines {}
    });
    match rx.recv_timeout(START_TIMEOUT) {
        Ok(line) => match line.strip_prefix("listening on ") {
            Some(addr) => Ok((child, addr.trim().to_string())),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "unexpected first line from corral-master: {line:?}"
                ))
            }
        },
        Err(_) => {
            let _ = child.kill();
            let status = child.wait().ok();
            Err(format!(
                "corral-master did not start listening within {START_TIMEOUT:?} (exit: {status:?})"
            ))
        }
    }
}

fn client_for(dir: &Path) -> Result<(Client, String), String> {
    let read =
        |p: PathBuf| std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()));
    let ca = read(dir.join("pki/ca.crt"))?;
    let token = read(dir.join("admin-token"))?.trim().to_string();
    let cert = reqwest::Certificate::from_pem(ca.as_bytes()).map_err(|e| format!("CA: {e}"))?;
    let client = Client::builder()
        .add_root_certificate(cert)
        .tls_built_in_root_certs(false)
        .build()
        .map_err(|e| format!("building the client: {e}"))?;
    Ok((client, token))
}
