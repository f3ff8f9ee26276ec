//! A whole cluster on one machine: "hosts" are network namespaces joined by
//! a bridge in a switch namespace, each running a real `corral-agent`; the
//! `corral-master` runs in the test's own namespace on a veth into that
//! switch. Every address is inside 172.30.<tag>.0/24 on links the harness
//! made, and everything is torn down on drop, also when a test fails.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::agent::IMAGE;
use crate::corral::workspace_binary;
use crate::host::wait_until;

/// The join token, the CA and the admin kubeconfig live in the master's data dir.
pub struct ClusterHarness {
    tag: u8,
    dir: tempfile::TempDir,
    master_bin: PathBuf,
    agent_bin: PathBuf,
    master: Option<Child>,
    master_starts: usize,
    pub master_port: u16,
    pub hosts: Vec<Host>,
    master_flags: Vec<String>,
}

pub struct Host {
    pub name: String,
    pub netns: String,
    pub ip: Ipv4Addr,
    dir: PathBuf,
    agent: Option<Child>,
    starts: usize,
}

/// Agent API port inside each host namespace.
const AGENT_PORT: u16 = 10250;

impl Host {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.netns))
    }

    pub fn runtime_root(&self) -> PathBuf {
        self.path("runtime")
    }

    pub fn agent_running(&self) -> bool {
        self.agent.is_some()
    }

    /// Everything the agent printed, over all its starts.
    pub fn agent_log(&self) -> String {
        (0..self.starts)
            .map(|k| fs::read_to_string(self.path(&format!("agent-{k}.log"))).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n--- restart ---\n")
    }
}

fn run(cmd: &str, args: &[&str]) -> Result<Output, String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("run {cmd}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out)
}

fn ip(args: &[&str]) -> Result<(), String> {
    run("ip", args).map(|_| ())
}

impl ClusterHarness {
    /// Builds the network and the host directories (each with the test image
    /// imported as `localhost/busybox:latest` and `:v2`); nothing runs yet.
    /// `tag` (1-250) must be unique among concurrently running cluster tests.
    /// Err(reason) when the test cannot run here.
    pub fn new(tag: u8, hosts: usize) -> Result<ClusterHarness, String> {
        if !crate::host::is_root() {
            return Err("cluster tests need root".into());
        }
        let master_bin = workspace_binary("corral-master")?;
        let agent_bin = workspace_binary("corral-agent")?;
        workspace_binary("corral-runtime")?;
        workspace_binary("corral-shim")?;
        let corral = workspace_binary("corral")?;
        let layout = crate::agent::busybox_layout()?;
        let dir = tempfile::Builder::new()
            .prefix("corral-cluster-test")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        let mut h = ClusterHarness {
            tag,
            master_bin,
            agent_bin,
            master: None,
            master_starts: 0,
            master_port: crate::registry::free_port(),
            hosts: Vec::new(),
            master_flags: Vec::new(),
            dir,
        };
        h.teardown_network();
        h.build_switch()?;
        for i in 1..=hosts {
            let host = h.build_host(i)?;
            for tag in [IMAGE, "localhost/busybox:v2"] {
                let out = Command::new(&corral)
                    .args(["image", "import", "--tag", tag])
                    .arg(&layout)
                    .env("CORRAL_IMAGES_ROOT", host.path("images"))
                    .output()
                    .map_err(|e| format!("run corral image import: {e}"))?;
                if !out.status.success() {
                    return Err(format!(
                        "import the test image for {}: {}",
                        host.name,
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
            }
            h.hosts.push(host);
        }
        Ok(h)
    }

    fn sw(&self) -> String {
        format!("ce{}sw", self.tag)
    }

    fn root_link(&self) -> String {
        format!("ce{}r", self.tag)
    }

    pub fn master_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(172, 30, self.tag, 1)
    }

    pub fn master_url(&self) -> String {
        format!("https://{}:{}", self.master_ip(), self.master_port)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn master_dir(&self) -> PathBuf {
        self.path("master")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.master_dir().join("admin.kubeconfig")
    }

    /// The switch: a bridge in its own namespace, with a veth to this
    /// (the test's) namespace where the master listens.
    fn build_switch(&self) -> Result<(), String> {
        let (sw, root) = (self.sw(), self.root_link());
        ip(&["netns", "add", &sw])?;
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        ip(&["-n", &sw, "link", "set", "lo", "up"])?;
        let peer = format!("ce{}rp", self.tag);
        ip(&["link", "add", &root, "type", "veth", "peer", "name", &peer])?;
        ip(&["link", "set", &peer, "netns", &sw])?;
        ip(&["-n", &sw, "link", "set", &peer, "master", "br0", "up"])?;
        let addr = format!("{}/24", self.master_ip());
        ip(&["addr", "add", &addr, "dev", &root])?;
        ip(&["link", "set", &root, "up"])
    }

    fn build_host(&self, i: usize) -> Result<Host, String> {
        let netns = format!("ce{}h{i}", self.tag);
        let hostip = Ipv4Addr::new(172, 30, self.tag, 10 + i as u8);
        let (sw, port) = (self.sw(), format!("ce{}h{i}p", self.tag));
        ip(&["netns", "add", &netns])?;
        ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        ip(&[
            "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &netns,
        ])?;
        ip(&["link", "set", &port, "netns", &sw])?;
        ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"])?;
        ip(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{hostip}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &netns, "link", "set", "eth0", "up"])?;
        // Pod traffic leaves a host by its default route (pod CIDRs of the
        // other hosts get their own routes from the agent).
        ip(&[
            "-n",
            &netns,
            "route",
            "add",
            "default",
            "via",
            &self.master_ip().to_string(),
        ])?;
        let dir = self.path(&format!("host{i}"));
        for d in ["manifests", "data", "images", "runtime"] {
            fs::create_dir_all(dir.join(d)).map_err(|e| format!("mkdir {d}: {e}"))?;
        }
        fs::write(dir.join("token"), "cluster-test-agent-token\n")
            .map_err(|e| format!("token: {e}"))?;
        Ok(Host {
            name: format!("host{i}"),
            netns,
            ip: hostip,
            dir,
            agent: None,
            starts: 0,
        })
    }

    /// Extra flags for every later master start.
    pub fn master_flags(&mut self, flags: &[&str]) {
        self.master_flags = flags.iter().map(|s| s.to_string()).collect();
    }

    pub fn start_master(&mut self) {
        assert!(self.master.is_none(), "the master is already running");
        let log = self.path(&format!("master-{}.log", self.master_starts));
        self.master_starts += 1;
        let err = fs::File::create(&log).unwrap_or_else(|e| panic!("create {log:?}: {e}"));
        let listen = format!("{}:{}", self.master_ip(), self.master_port);
        let child = Command::new(&self.master_bin)
            .arg("--data-dir")
            .arg(self.master_dir())
            .args(["--listen", &listen])
            .args(&self.master_flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.master_bin.display()));
        self.master = Some(child);
        let kubeconfig = self.kubeconfig();
        let up = wait_until(Duration::from_secs(20), || {
            kubeconfig.exists()
                && std::net::TcpStream::connect((self.master_ip(), self.master_port)).is_ok()
        });
        assert!(up, "the master did not come up:\n{}", self.master_log());
    }

    /// SIGKILL: nothing gets to flush.
    pub fn kill_master(&mut self) {
        if let Some(mut c) = self.master.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn master_log(&self) -> String {
        (0..self.master_starts)
            .map(|k| fs::read_to_string(self.path(&format!("master-{k}.log"))).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n--- restart ---\n")
    }

    /// Starts host `i`'s agent (0-based) in its namespace, joined to the master.
    pub fn start_agent(&mut self, i: usize) {
        let ca = self.master_dir().join("pki/ca.crt");
        let join = self.master_dir().join("join-token");
        let url = self.master_url();
        let bin = self.agent_bin.clone();
        let h = &mut self.hosts[i];
        assert!(h.agent.is_none(), "agent of {} already running", h.name);
        let log = h.path(&format!("agent-{}.log", h.starts));
        h.starts += 1;
        let err = fs::File::create(&log).unwrap_or_else(|e| panic!("create {log:?}: {e}"));
        // nsenter switches the network namespace only: `ip netns exec` would
        // also remount /sys and hide the cgroup hierarchies.
        let child = Command::new("nsenter")
            .arg(format!("--net={}", h.netns_path().display()))
            .arg("--")
            .arg(&bin)
            .arg("--server")
            .arg(&url)
            .arg("--join-token-file")
            .arg(&join)
            .arg("--ca-file")
            .arg(&ca)
            .args(["--node-name", &h.name, "--node-ip", &h.ip.to_string()])
            .args(["--listen", &format!("{}:{AGENT_PORT}", h.ip)])
            .arg("--data-dir")
            .arg(h.path("data"))
            .arg("--manifests")
            .arg(h.path("manifests"))
            .arg("--images-root")
            .arg(h.path("images"))
            .arg("--runtime-root")
            .arg(h.runtime_root())
            .arg("--token-file")
            .arg(h.path("token"))
            .args(["--lease-renew", "0.5", "--lease-duration", "3"])
            .args(["--node-status-period", "2", "--sync-period", "0.2"])
            .args(["--backoff-base", "0.5", "--backoff-max", "2"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        h.agent = Some(child);
    }

    /// SIGKILL of the agent; its pods keep running.
    pub fn kill_agent(&mut self, i: usize) {
        if let Some(mut c) = self.hosts[i].agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Unplugs host `i` from the switch (its pods keep running, unreachable).
    pub fn cut_host(&self, i: usize) -> Result<(), String> {
        let port = format!("ce{}h{}p", self.tag, i + 1);
        ip(&["-n", &self.sw(), "link", "set", &port, "down"])
    }

    pub fn plug_host(&self, i: usize) -> Result<(), String> {
        let port = format!("ce{}h{}p", self.tag, i + 1);
        ip(&["-n", &self.sw(), "link", "set", &port, "up"])
    }

    /// Runs `args` inside a network namespace (no other namespace changes).
    pub fn in_netns(netns: &Path, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .arg("--")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("nsenter {}: {e}", args.join(" ")))
    }

    /// `kubectl --kubeconfig admin.kubeconfig ARGS`, bounded in time.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .arg("60")
            .arg("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run kubectl: {e}"))
    }

    /// Every process, mount and link the harness started or made, also what
    /// a crashed earlier run with the same tag left behind.
    fn teardown_network(&self) {
        for i in 1..=9 {
            let _ = run("ip", &["netns", "del", &format!("ce{}h{i}", self.tag)]);
        }
        let _ = run("ip", &["netns", "del", &self.sw()]);
        let _ = run("ip", &["link", "del", &self.root_link()]);
    }

    /// Kills every shim and agent of the hosts (their command lines name
    /// the host directories) and force-deletes every container, so nothing
    /// of a failed test outlives it, cgroups included.
    fn kill_host_processes(&self) {
        let runtime = workspace_binary("corral-runtime").ok();
        for h in &self.hosts {
            let pat = h.dir.to_string_lossy().to_string();
            let _ = Command::new("pkill").args(["-9", "-f", &pat]).status();
            let (Some(runtime), Ok(entries)) = (&runtime, fs::read_dir(h.runtime_root())) else {
                continue;
            };
            for e in entries.flatten() {
                let _ = Command::new(runtime)
                    .arg("--root")
                    .arg(h.runtime_root())
                    .args(["delete", "--force"])
                    .arg(e.file_name())
                    .output();
            }
        }
    }
}

impl Drop for ClusterHarness {
    fn drop(&mut self) {
        for i in 0..self.hosts.len() {
            self.kill_agent(i);
        }
        self.kill_master();
        self.kill_host_processes();
        // Pod namespaces and snapshots are mounts under the host dirs.
        for h in &self.hosts {
            crate::host::unmount_under(&h.dir);
        }
        self.teardown_network();
    }
}
