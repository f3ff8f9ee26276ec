//! Harness for whole-binary tests of `corral-agent`: every test runs the real
//! `target/<profile>/corral-agent` with its own data dir, manifests dir,
//! images root (the busybox test image imported as `localhost/busybox:latest`),
//! runtime root, token file, API port on 127.0.0.1, bridge `crlag<N>` and pod
//! CIDR `10.215.<N>.0/24`, and short back-off flags. On drop the agent is
//! SIGKILLed (by pid), every container left in the runtime root is deleted
//! with `corral-runtime delete --force`, the shims of the test's pods are
//! killed (by pid, after checking their command line names this test's
//! runtime root), mounts under the test directory are lazily unmounted
//! (deepest first) and the bridge, its nftables table and IPAM state are
//! destroyed, also when the test panics.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use corral_net::{Network, NetworkConfig};
use serde_json::{json, Value};

use crate::corral::workspace_binary;

/// The API token every test agent is started with.
pub const TOKEN: &str = "agent-test-token-5f2c9e";
/// The test image's name in each test's images root.
pub const IMAGE: &str = "localhost/busybox:latest";

fn images_dir() -> PathBuf {
    std::env::temp_dir().join(format!("corral-agent-images-{}", std::process::id()))
}

extern "C" fn remove_images_dir() {
    let _ = fs::remove_dir_all(images_dir());
}

/// The OCI layout of the busybox test image, built once per test binary.
pub fn busybox_layout() -> Result<PathBuf, String> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = images_dir();
        // SAFETY: registers a plain function without captured state; it only
        // removes a directory when the process exits.
        unsafe { libc::atexit(remove_images_dir) };
        crate::layer_fixtures::build_test_images(&dir)?;
        Ok(dir.join("busybox"))
    })
    .clone()
}

/// A busybox container running `script` with `sh -c`.
pub fn sh_container(name: &str, script: &str) -> Value {
    json!({
        "name": name,
        "image": IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", script],
    })
}

/// A Pod manifest in namespace `default` with the given spec fields.
pub fn pod_manifest(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": spec,
    })
}

pub struct AgentTest {
    pub n: u8,
    dir: tempfile::TempDir,
    agent: PathBuf,
    runtime: PathBuf,
    child: Option<Child>,
    starts: usize,
    pub port: u16,
    http: reqwest::blocking::Client,
}

impl AgentTest {
    /// A fresh setup numbered `n` (1-60, unique among the agent tests) with the
    /// test image imported; the agent is not started yet. Err(reason) when the
    /// test cannot run here.
    pub fn new(n: u8) -> Result<AgentTest, String> {
        if !crate::host::is_root() {
            return Err("agent tests need root".into());
        }
        let agent = workspace_binary("corral-agent")?;
        let runtime = workspace_binary("corral-runtime")?;
        workspace_binary("corral-shim")?;
        let corral = workspace_binary("corral")?;
        let layout = busybox_layout()?;
        let dir = tempfile::Builder::new()
            .prefix("corral-agent-test")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        let t = AgentTest {
            n,
            dir,
            agent,
            runtime,
            child: None,
            starts: 0,
            port: crate::registry::free_port(),
            http,
        };
        // A crashed earlier run may have left this bridge and table behind.
        if let Ok(net) = Network::open(t.net_config(&t.path("stale"))) {
            let _ = net.destroy();
        }
        for d in ["manifests", "data", "images", "runtime"] {
            fs::create_dir_all(t.path(d)).map_err(|e| format!("mkdir {d}: {e}"))?;
        }
        fs::write(t.path("token"), format!("{TOKEN}\n")).map_err(|e| format!("token: {e}"))?;
        let out = Command::new(corral)
            .args(["image", "import", "--tag", IMAGE])
            .arg(&layout)
            .env("CORRAL_IMAGES_ROOT", t.path("images"))
            .output()
            .map_err(|e| format!("run corral image import: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "import the busybox test image: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(t)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn bridge(&self) -> String {
        format!("crlag{}", self.n)
    }

    pub fn cidr(&self) -> String {
        format!("10.215.{}.0/24", self.n)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.path("data")
    }

    pub fn runtime_root(&self) -> PathBuf {
        self.path("runtime")
    }

    fn net_config(&self, state: &Path) -> NetworkConfig {
        NetworkConfig {
            bridge: self.bridge(),
            cidr: self
                .cidr()
                .parse()
                .unwrap_or_else(|e| panic!("test CIDR: {e}")),
            state_dir: state.join(self.bridge()),
            cluster_cidr: None,
        }
    }

    /// Start the agent (again), its stderr going to `agent-<k>.log`.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "the agent is already running");
        let log = self.path(&format!("agent-{}.log", self.starts));
        self.starts += 1;
        let err = fs::File::create(&log).unwrap_or_else(|e| panic!("create {log:?}: {e}"));
        let child = Command::new(&self.agent)
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--manifests")
            .arg(self.path("manifests"))
            .arg("--images-root")
            .arg(self.path("images"))
            .arg("--runtime-root")
            .arg(self.runtime_root())
            .arg("--token-file")
            .arg(self.path("token"))
            .args(["--bridge", &self.bridge(), "--pod-cidr", &self.cidr()])
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--node-name", "agent-test"])
            .args(["--backoff-base", "0.5", "--backoff-max", "2"])
            .args(["--sync-period", "0.2"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.agent.display()));
        self.child = Some(child);
        let up = crate::host::wait_until(Duration::from_secs(20), || {
            self.get("/healthz", None)
                .is_ok_and(|(code, body)| code == 200 && body == "ok")
        });
        assert!(up, "the agent's API did not come up:\n{}", self.agent_log());
    }

    /// SIGKILL the agent and reap it; its shims and containers keep running.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Everything the agent printed on stderr, over all its starts.
    pub fn agent_log(&self) -> String {
        (0..self.starts)
            .map(|k| fs::read_to_string(self.path(&format!("agent-{k}.log"))).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("---- agent restarted ----\n")
    }

    /// Write (or replace) manifest file `file` in the manifests dir, atomically.
    pub fn write_manifest(&self, file: &str, text: &str) {
        let tmp = self.path("manifests").join(format!(".{file}.tmp"));
        fs::write(&tmp, text).unwrap_or_else(|e| panic!("write {tmp:?}: {e}"));
        fs::rename(&tmp, self.path("manifests").join(file))
            .unwrap_or_else(|e| panic!("rename manifest {file}: {e}"));
    }

    /// Write the pods as `<file>` (JSON).
    pub fn write_pods(&self, file: &str, pods: &[Value]) {
        let text = pods
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n---\n");
        self.write_manifest(file, &text);
    }

    pub fn remove_manifest(&self, file: &str) {
        fs::remove_file(self.path("manifests").join(file))
            .unwrap_or_else(|e| panic!("remove manifest {file}: {e}"));
    }

    pub fn status_file(&self, name: &str) -> PathBuf {
        self.data_dir()
            .join("status")
            .join(format!("default_{name}.json"))
    }

    /// The pod's status file, if there is one.
    pub fn pod(&self, name: &str) -> Option<Value> {
        let text = fs::read_to_string(self.status_file(name)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Poll the status file until `ok` holds; panics with the last status and
    /// the agent's log when `timeout` passes first.
    pub fn wait_pod(&self, name: &str, timeout: Duration, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let p = self.pod(name);
            if let Some(p) = p.as_ref().filter(|p| ok(p)) {
                return p.clone();
            }
            if Instant::now() >= deadline {
                panic!(
                    "pod {name}: condition not met within {timeout:?}; last status:\n{}\nagent log:\n{}",
                    p.map(|p| serde_json::to_string_pretty(&p["status"]).unwrap_or_default())
                        .unwrap_or_else(|| "(no status file)".into()),
                    self.agent_log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait for phase `phase` (e.g. "Running", "Succeeded").
    pub fn wait_phase(&self, name: &str, phase: &str, timeout: Duration) -> Value {
        self.wait_pod(name, timeout, |p| p["status"]["phase"] == phase)
    }

    /// Wait until the pod's status file is gone.
    pub fn wait_gone(&self, name: &str, timeout: Duration) {
        let gone = crate::host::wait_until(timeout, || !self.status_file(name).exists());
        assert!(
            gone,
            "pod {name} still has a status file after {timeout:?}; agent log:\n{}",
            self.agent_log()
        );
    }

    /// GET `path` from the agent's API with an optional bearer token:
    /// (status code, body).
    pub fn get(&self, path: &str, token: Option<&str>) -> Result<(u16, String), String> {
        let mut req = self
            .http
            .get(format!("http://127.0.0.1:{}{path}", self.port));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().map_err(|e| format!("GET {path}: {e}"))?;
        let code = resp.status().as_u16();
        let body = resp.text().map_err(|e| format!("GET {path}: body: {e}"))?;
        Ok((code, body))
    }

    /// Container ids in the runtime root.
    pub fn runtime_containers(&self) -> Vec<String> {
        list(&self.runtime_root())
    }

    /// Files in the agent's namespace dir (`<uid>.net/.uts/.ipc`).
    pub fn ns_files(&self) -> Vec<String> {
        list(&self.data_dir().join("ns"))
    }

    /// Pod directories of the agent's data dir.
    pub fn pod_dirs(&self) -> Vec<String> {
        list(&self.data_dir().join("pods"))
    }

    /// Snapshots in the images root.
    pub fn snapshots(&self) -> Vec<String> {
        list(&self.path("images").join("snapshots"))
    }

    /// IPAM leases on the test bridge: (owner, host-side veth).
    pub fn leases(&self) -> Vec<(String, String)> {
        let Ok(net) = Network::open(self.net_config(&self.data_dir().join("net"))) else {
            return Vec::new();
        };
        net.attachments()
            .unwrap_or_default()
            .into_iter()
            .map(|(owner, a)| (owner, a.veth_host))
            .collect()
    }

    /// `corral-runtime --root R ARGS`.
    pub fn runtime_cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.runtime)
            .arg("--root")
            .arg(self.runtime_root())
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run corral-runtime: {e}"))
    }

    /// Shim pids recorded in the container records of the data dir.
    fn recorded_shims(&self) -> Vec<i32> {
        let mut out = Vec::new();
        for pod in self.pod_dirs() {
            let pdir = self.data_dir().join("pods").join(pod);
            for c in list(&pdir) {
                let Ok(text) = fs::read_to_string(pdir.join(c).join("state.json")) else {
                    continue;
                };
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if let Some(pid) = v["attempt"]["shimPid"].as_i64() {
                    out.push(pid as i32);
                }
            }
        }
        out
    }

    /// A pid that is a shim of this test (its command line names our runtime root).
    fn is_our_shim(&self, pid: i32) -> bool {
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
            return false;
        };
        let root = self.runtime_root();
        let needle = root.as_os_str().as_encoded_bytes();
        cmdline.windows(needle.len()).any(|w| w == needle)
    }
}

/// Directory entries of `dir` (none when it does not exist).
pub fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

impl Drop for AgentTest {
    fn drop(&mut self) {
        self.kill9();
        for id in self.runtime_containers() {
            let out = self.runtime_cmd(&["delete", "--force", &id]);
            if !out.status.success() {
                eprintln!(
                    "cleanup: delete {id}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        for pid in self.recorded_shims() {
            if self.is_our_shim(pid) {
                // SAFETY: kill has no memory-safety preconditions; the pid was
                // just checked to be one of this test's shims.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if let Ok(net) = Network::open(self.net_config(&self.data_dir().join("net"))) {
            if let Err(e) = net.destroy() {
                eprintln!("cleanup: destroy bridge {}: {e}", self.bridge());
            }
        }
        // Snapshots, the namespace files and the shared mount of their directory.
        crate::host::unmount_under(self.dir.path());
    }
}
