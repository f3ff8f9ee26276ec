//! `corral bench pods`: N static pods through a temporary corral-agent (its
//! own data dir, manifests dir, image store, runtime root, bridge and pod
//! CIDR in a temporary directory), from manifest written to the pod's Ready
//! condition, with latency percentiles. The image is imported first, so no
//! pull is timed. Status files are polled every 5 ms: latencies are
//! accurate to about 5 ms. Everything is removed afterwards (pods through
//! the agent first, then the agent, leftover containers, shims, the bridge,
//! its nftables table and mounts).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::args::PodsArgs;
use super::host::Host;
use super::images::unmount_under;
use super::stats::percentile;
use crate::cli::Global;

const IMAGE: &str = "localhost/corral-bench:latest";
const POLL: Duration = Duration::from_millis(5);

struct Agent {
    child: Option<Child>,
    tmp: tempfile::TempDir,
    bridge: String,
}

impl Agent {
    fn data(&self) -> PathBuf {
        self.tmp.path().join("data")
    }
    fn manifests(&self) -> PathBuf {
        self.tmp.path().join("manifests")
    }
    fn runtime_root(&self) -> PathBuf {
        self.tmp.path().join("rt")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
        let rt = sibling("corral-runtime");
        if let Ok(ids) = std::fs::read_dir(self.runtime_root()) {
            for id in ids.flatten().filter(|e| e.path().is_dir()) {
                let _ = Command::new(&rt)
                    .arg("--root")
                    .arg(self.runtime_root())
                    .args(["delete", "--force"])
                    .arg(id.file_name())
                    .output();
            }
        }
        for pid in shims(&self.runtime_root()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
        let table = format!("corral-{}", self.bridge);
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &table])
            .output();
        unmount_under(self.tmp.path());
    }
}

fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(name)))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Shims of this agent: their command line names its runtime root.
fn shims(runtime_root: &Path) -> Vec<i32> {
    let needle = runtime_root.to_string_lossy().into_owned();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.split('\0')
                    .next()
                    .is_some_and(|a| a.ends_with("corral-shim"))
                    && c.contains(&needle)
            })
        })
        .collect()
}

fn rss_kib(pid: i32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn manifest(name: &str) -> String {
    json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [
            {"name": "main", "image": IMAGE, "imagePullPolicy": "Never",
             "command": ["sleep", "3600"]}]}
    })
    .to_string()
}

/// The pod's Ready condition is True in the status file the agent writes.
fn ready(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    let Ok(v) = serde_json::from_str::<Value>(&text) else {
        return false;
    };
    v["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn start_agent(a: &PodsArgs) -> Result<Agent> {
    let tmp = tempfile::Builder::new()
        .prefix("cbp-")
        .tempdir()
        .context("create a temporary directory")?;
    let mut agent = Agent {
        child: None,
        tmp,
        bridge: a.bridge.clone(),
    };
    std::fs::create_dir_all(agent.manifests()).context("mkdir manifests")?;
    let images = agent.tmp.path().join("images");
    let out = Command::new(std::env::current_exe().context("current_exe")?)
        .arg("--images-root")
        .arg(&images)
        .args(["image", "import"])
        .arg(&a.image_layout)
        .args(["--tag", IMAGE])
        .output()
        .context("run corral image import")?;
    if !out.status.success() {
        bail!(
            "import {}: {}",
            a.image_layout.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let token = agent.tmp.path().join("token");
    std::fs::write(&token, "bench-token\n").context("write the agent's token file")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("pick a port for the agent")?
        .port();
    let log = std::fs::File::create(agent.tmp.path().join("agent.log")).context("agent log")?;
    let bin = a.agent.clone().unwrap_or_else(|| sibling("corral-agent"));
    let child = Command::new(&bin)
        .arg("--data-dir")
        .arg(agent.data())
        .arg("--manifests")
        .arg(agent.manifests())
        .arg("--images-root")
        .arg(&images)
        .arg("--runtime-root")
        .arg(agent.runtime_root())
        .arg("--token-file")
        .arg(&token)
        .args(["--bridge", &a.bridge, "--pod-cidr", &a.pod_cidr])
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--node-name",
            "bench",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("agent log")?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("start {}", bin.display()))?;
    agent.child = Some(child);
    // Let it make its bridge and open the pod network before the clock starts.
    std::thread::sleep(Duration::from_secs(1));
    if let Some(c) = &mut agent.child {
        if let Ok(Some(st)) = c.try_wait() {
            let log =
                std::fs::read_to_string(agent.tmp.path().join("agent.log")).unwrap_or_default();
            let tail: String = log
                .chars()
                .rev()
                .take(1500)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            bail!("the agent exited ({st}): {tail}");
        }
    }
    Ok(agent)
}

pub fn pods(_g: &Global, a: &PodsArgs, count: usize) -> Result<i32> {
    if !nix::unistd::geteuid().is_root() {
        bail!("corral bench pods needs root (the agent creates a bridge and containers)");
    }
    if count == 0 {
        bail!("-n must be at least 1");
    }
    let host = Host::probe();
    let agent = start_agent(a)?;
    let idle_rss = agent.child.as_ref().and_then(|c| rss_kib(c.id() as i32));
    let names: Vec<String> = (0..count).map(|i| format!("bench-{i:03}")).collect();
    let mut written = Vec::with_capacity(names.len());
    let t0 = Instant::now();
    for n in &names {
        let tmp = agent.manifests().join(format!(".{n}.json.tmp"));
        std::fs::write(&tmp, manifest(n)).with_context(|| format!("write {}", tmp.display()))?;
        let dst = agent.manifests().join(format!("{n}.json"));
        std::fs::rename(&tmp, &dst).with_context(|| format!("rename to {}", dst.display()))?;
        written.push(Instant::now());
    }
    let status = agent.data().join("status");
    let mut ready_at: Vec<Option<Instant>> = vec![None; names.len()];
    let deadline = t0 + Duration::from_secs(a.timeout);
    while ready_at.iter().any(Option::is_none) && Instant::now() < deadline {
        for (i, n) in names.iter().enumerate() {
            if ready_at[i].is_none() && ready(&status.join(format!("default_{n}.json"))) {
                ready_at[i] = Some(Instant::now());
            }
        }
        std::thread::sleep(POLL);
    }
    let total = t0.elapsed();
    let lat: Vec<f64> = ready_at
        .iter()
        .zip(&written)
        .filter_map(|(r, w)| r.map(|r| (r - *w).as_secs_f64() * 1000.0))
        .collect();
    let failed = names.len() - lat.len();
    std::thread::sleep(Duration::from_secs(1));
    let agent_rss = agent.child.as_ref().and_then(|c| rss_kib(c.id() as i32));
    let shim_rss: Vec<u64> = shims(&agent.runtime_root())
        .into_iter()
        .filter_map(rss_kib)
        .collect();
    let result = summary(&host, &lat, failed, total, idle_rss, agent_rss, &shim_rss);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print_summary(&result);
    }
    // Tear down through the agent first (its normal path), bounded.
    for n in &names {
        let _ = std::fs::remove_file(agent.manifests().join(format!("{n}.json")));
    }
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until
        && names
            .iter()
            .any(|n| status.join(format!("default_{n}.json")).exists())
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(agent);
    Ok(if failed == 0 { 0 } else { 1 })
}

#[allow(clippy::too_many_arguments)]
fn summary(
    host: &Host,
    lat: &[f64],
    failed: usize,
    total: Duration,
    idle_rss: Option<u64>,
    agent_rss: Option<u64>,
    shim_rss: &[u64],
) -> Value {
    let mut sorted = lat.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut shims = shim_rss.to_vec();
    shims.sort_unstable();
    json!({
        "host": host,
        "pods": lat.len() + failed,
        "ready": lat.len(),
        "failed": failed,
        "latencies_ms": lat,
        "min_ms": sorted.first(),
        "p50_ms": percentile(&sorted, 50.0),
        "p90_ms": percentile(&sorted, 90.0),
        "p99_ms": percentile(&sorted, 99.0),
        "max_ms": sorted.last(),
        "all_ready_s": if failed == 0 { Some(total.as_secs_f64()) } else { None },
        "agent_rss_kib": {"no_pods": idle_rss, "with_pods": agent_rss},
        "shim_rss_kib_median": shims.get(shims.len() / 2),
    })
}

fn print_summary(v: &Value) {
    let f = |k: &str| v[k].as_f64().map_or("-".to_string(), |x| format!("{x:.1}"));
    if let Ok(h) = serde_json::from_value::<Value>(v["host"].clone()) {
        println!(
            "host: kernel {}, {} CPUs, cgroup {}",
            h["kernel"].as_str().unwrap_or("?"),
            h["cpus"],
            h["cgroup"].as_str().unwrap_or("?")
        );
    }
    println!(
        "{} static pods (busybox sleep, image imported first), manifests written back to back; \
         latency = manifest written -> Ready condition True (status polled every 5 ms)",
        v["pods"]
    );
    println!(
        "pods Ready: {} (failed or not Ready in time: {})",
        v["ready"], v["failed"]
    );
    println!(
        "latency ms: min {}  p50 {}  p90 {}  p99 {}  max {}",
        f("min_ms"),
        f("p50_ms"),
        f("p90_ms"),
        f("p99_ms"),
        f("max_ms")
    );
    println!("all Ready after: {} s", f("all_ready_s"));
    let mib = |x: &Value| {
        x.as_f64()
            .map_or("-".to_string(), |k| format!("{:.1} MiB", k / 1024.0))
    };
    println!(
        "agent RSS: {} with no pods, {} with them; shim RSS median {}",
        mib(&v["agent_rss_kib"]["no_pods"]),
        mib(&v["agent_rss_kib"]["with_pods"]),
        mib(&v["shim_rss_kib_median"])
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_reads_the_condition() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.json");
        assert!(!ready(&p));
        std::fs::write(
            &p,
            r#"{"status":{"conditions":[{"type":"Ready","status":"False"}]}}"#,
        )
        .unwrap();
        assert!(!ready(&p));
        std::fs::write(
            &p,
            r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#,
        )
        .unwrap();
        assert!(ready(&p));
    }

    #[test]
    fn manifest_is_a_pod() {
        let v: Value = serde_json::from_str(&manifest("x")).unwrap();
        assert_eq!(v["kind"], "Pod");
        assert_eq!(v["spec"]["containers"][0]["image"], IMAGE);
    }
}
