//! The real `corral-agent` joined to a real `corral-master` on this host:
//! the Node registers (capacity, addresses, kubelet port, pod CIDR), the
//! Lease is renewed, a Pod created in the API with spec.nodeName runs and
//! its status (Running, podIP, Ready) reaches the API, the API accepts the
//! join token, deleting the Pod stops it; with the master killed the pod
//! keeps running, a container restart meanwhile reaches the API after the
//! master comes back, and an agent restarted while the master is down keeps
//! the pod with the same IP.
//!
//! The agent harness (`AgentTest`) starts the agent with fixed flags, so the
//! joining flags go through their `CORRAL_AGENT_*` environment twins; the
//! tests of this file hold one lock so that they never see each other's.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use corral_tests::agent::{pod_manifest, sh_container, AgentTest, TOKEN};
use corral_tests::master::Master;
use corral_tests::net::NftTableGuard;
use corral_tests::skip;
use reqwest::Method;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(60);
const NODE: &str = "agent-test";

static ENV: Mutex<()> = Mutex::new(());

struct Cluster {
    master: Master,
    agent: AgentTest,
    /// Dropped after the agent: its Service rules outlive it by design.
    services: NftTableGuard,
}

/// A master, and an agent numbered `n` joined to it (started).
fn setup(n: u8) -> Result<Cluster, String> {
    let agent = AgentTest::new(n)?;
    // The master's node IPAM (when it runs) hands out exactly the test's
    // CIDR, which the agent harness cleans up after.
    std::env::set_var("CORRAL_MASTER_CLUSTER_CIDR", agent.cidr());
    std::env::set_var("CORRAL_MASTER_NODE_CIDR_MASK_SIZE", "24");
    let master = Master::start(&[])?;
    let d = master.data_dir();
    std::env::set_var("CORRAL_AGENT_SERVER", master.url(""));
    std::env::set_var("CORRAL_AGENT_JOIN_TOKEN_FILE", d.join("join-token"));
    std::env::set_var("CORRAL_AGENT_CA_FILE", d.join("pki/ca.crt"));
    std::env::set_var("CORRAL_AGENT_NODE_LABELS", "corral.test/agent=yes");
    std::env::set_var("CORRAL_AGENT_LEASE_RENEW", "1");
    std::env::set_var("CORRAL_AGENT_LEASE_DURATION", "5");
    std::env::set_var("CORRAL_AGENT_NODE_STATUS_PERIOD", "60");
    let table = format!("crlagsvc{n}");
    std::env::set_var("CORRAL_AGENT_SERVICES_TABLE", &table);
    let mut c = Cluster {
        master,
        agent,
        services: NftTableGuard(table),
    };
    c.start_agent();
    Ok(c)
}

impl Cluster {
    /// Start the agent; the first time, act as the master's node IPAM when
    /// that controller is not running (the agent waits for a pod CIDR
    /// before it serves its API).
    fn start_agent(&mut self) {
        let cidr = self.agent.cidr();
        let master = &self.master;
        std::thread::scope(|s| {
            s.spawn(|| {
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    let (code, node) = master.call(Method::GET, "/api/v1/nodes/agent-test", None);
                    if code == 200 && node["spec"]["podCIDR"].is_string() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                eprintln!("note: the master assigned no pod CIDR in 10 s (node IPAM not running); the test assigns {cidr}");
                let (code, body) = master.patch(
                    "/api/v1/nodes/agent-test",
                    "application/merge-patch+json",
                    &json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}}).to_string(),
                );
                assert_eq!(code, 200, "assign the pod CIDR: {body}");
            });
            self.agent.start();
        });
    }

    fn api_pod(&self, name: &str) -> (u16, Value) {
        self.master.call(
            Method::GET,
            &format!("/api/v1/namespaces/default/pods/{name}"),
            None,
        )
    }

    /// Poll the API's copy of the pod until `ok` holds.
    fn wait_api_pod(&self, name: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + T;
        loop {
            let (code, p) = self.api_pod(name);
            if code == 200 && ok(&p) {
                return p;
            }
            if Instant::now() >= deadline {
                panic!(
                    "pod {name} in the API: {what} not seen within {T:?}; last ({code}):\n{}\nagent log:\n{}",
                    serde_json::to_string_pretty(&p).unwrap_or_default(),
                    self.agent.agent_log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn create_pod(&self, name: &str, script: &str) {
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "nodeName": NODE,
                "terminationGracePeriodSeconds": 1,
                "containers": [sh_container("c", script)],
            },
        });
        let (code, body) =
            self.master
                .call(Method::POST, "/api/v1/namespaces/default/pods", Some(&pod));
        assert_eq!(code, 201, "create pod {name}: {body}");
    }

    /// SIGKILL the master by pid (found by its data dir on its command
    /// line); `Master::restart` brings it back later.
    fn kill_master(&self) {
        let pid =
            pid_with_arg("corral-master", self.master.data_dir()).expect("the master's process");
        // SAFETY: kill has no memory-safety preconditions; the pid is the
        // corral-master started on this test's own data dir.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let gone = corral_tests::host::wait_until(Duration::from_secs(10), || {
            self.master
                .anonymous(Method::GET, "/healthz")
                .timeout(Duration::from_secs(1))
                .send()
                .is_err()
        });
        assert!(gone, "the master still answers after SIGKILL");
    }
}

/// Removes a test route from the host even when the test fails.
struct RouteGuard(corral_net::Ipv4Cidr);

impl Drop for RouteGuard {
    fn drop(&mut self) {
        let _ = corral_net::routes::delete(self.0);
    }
}

/// The pid of a `name` process whose command line holds `arg`.
fn pid_with_arg(name: &str, arg: &Path) -> Option<i32> {
    let needle = arg.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let is_name = cmdline
            .split(|b| *b == 0)
            .next()
            .is_some_and(|exe| exe.ends_with(name.as_bytes()));
        let has_arg = cmdline.windows(needle.len()).any(|w| w == needle);
        (is_name && has_arg).then_some(pid)
    })
}

fn condition(p: &Value, type_: &str) -> Option<String> {
    p["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .and_then(|c| c["status"].as_str().map(String::from))
}

fn running_and_ready(p: &Value) -> bool {
    p["status"]["phase"] == "Running"
        && condition(p, "Ready").as_deref() == Some("True")
        && p["status"]["podIP"]
            .as_str()
            .is_some_and(|ip| !ip.is_empty())
}

fn restarts(p: &Value) -> i64 {
    p["status"]["containerStatuses"][0]["restartCount"]
        .as_i64()
        .unwrap_or(-1)
}

fn renew_micros(lease: &Value) -> String {
    lease["spec"]["renewTime"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn node_lease_pod_status_and_delete() {
    let _env = ENV.lock().unwrap_or_else(|p| p.into_inner());
    let c = match setup(50) {
        Ok(c) => c,
        Err(e) => skip!("{e}"),
    };
    let t = &c.agent;

    // The Node: registered with what the master and scheduler need.
    let (code, node) = c.master.call(Method::GET, "/api/v1/nodes/agent-test", None);
    assert_eq!(code, 200, "{node}");
    assert_eq!(node["metadata"]["labels"]["kubernetes.io/hostname"], NODE);
    assert_eq!(node["metadata"]["labels"]["kubernetes.io/os"], "linux");
    assert_eq!(node["metadata"]["labels"]["corral.test/agent"], "yes");
    assert!(node["status"]["capacity"]["cpu"].is_string(), "{node}");
    assert!(
        node["status"]["allocatable"]["memory"].is_string(),
        "{node}"
    );
    assert_eq!(
        node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
        t.port
    );
    let ip = node["status"]["addresses"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
        .map(|a| a["address"].clone());
    assert_eq!(
        ip,
        Some(json!("127.0.0.1")),
        "the address routing to the master"
    );
    let cidr = node["spec"]["podCIDR"].as_str().unwrap_or("").to_string();
    assert!(!cidr.is_empty(), "{node}");
    assert_eq!(condition(&node, "Ready").as_deref(), Some("True"));

    // The Lease: held by the node and renewed every second.
    let lease_path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/agent-test";
    let mut lease = Value::Null;
    let held = corral_tests::host::wait_until(Duration::from_secs(5), || {
        let (code, l) = c.master.call(Method::GET, lease_path, None);
        lease = l;
        code == 200
    });
    assert!(held, "no lease in 5 s: {lease}\n{}", t.agent_log());
    assert_eq!(lease["spec"]["holderIdentity"], NODE);
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 5);
    let first = renew_micros(&lease);
    let renewed = corral_tests::host::wait_until(Duration::from_secs(5), || {
        let (_, l) = c.master.call(Method::GET, lease_path, None);
        renew_micros(&l) != first
    });
    assert!(renewed, "the lease was not renewed in 5 s (first {first})");

    // The Service proxy runs: its nftables table is there.
    let table = c.services.0.clone();
    let programmed = corral_tests::host::wait_until(Duration::from_secs(10), || {
        std::process::Command::new("nft")
            .args(["list", "table", "ip", &table])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    assert!(programmed, "no nftables table {table}\n{}", t.agent_log());

    // Marked Unknown by someone else (the node lifecycle controller while
    // the agent could not reach the master): Ready again well before the
    // 60 s status period.
    let (_, mut node) = c.master.call(Method::GET, "/api/v1/nodes/agent-test", None);
    for cond in node["status"]["conditions"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        if cond["type"] == "Ready" {
            cond["status"] = json!("Unknown");
        }
    }
    let (code, body) = c
        .master
        .call(Method::PUT, "/api/v1/nodes/agent-test/status", Some(&node));
    assert_eq!(code, 200, "mark the node Unknown: {body}");
    let ready_again = corral_tests::host::wait_until(Duration::from_secs(10), || {
        let (_, n) = c.master.call(Method::GET, "/api/v1/nodes/agent-test", None);
        condition(&n, "Ready").as_deref() == Some("True")
    });
    assert!(ready_again, "the node stayed Unknown\n{}", t.agent_log());

    // Another node's pod CIDR is routed via its InternalIP (here loopback,
    // so nothing leaves the host), and the route goes with the node.
    let ghost_cidr: corral_net::Ipv4Cidr = "10.215.52.0/24".parse().unwrap();
    let _route_guard = RouteGuard(ghost_cidr);
    let ghost = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "ghost-52"},
        "spec": {"podCIDR": "10.215.52.0/24"},
        "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]},
    });
    let (code, body) = c.master.call(Method::POST, "/api/v1/nodes", Some(&ghost));
    assert_eq!(code, 201, "create node ghost-52: {body}");
    let want = corral_net::routes::Route {
        dst: ghost_cidr,
        gateway: "127.0.0.1".parse().unwrap(),
    };
    let routed = corral_tests::host::wait_until(Duration::from_secs(10), || {
        corral_net::routes::list().is_ok_and(|r| r.contains(&want))
    });
    assert!(routed, "no route {want}:\n{}", t.agent_log());
    let (code, body) = c
        .master
        .call(Method::DELETE, "/api/v1/nodes/ghost-52", None);
    assert_eq!(code, 200, "delete node ghost-52: {body}");
    let unrouted = corral_tests::host::wait_until(Duration::from_secs(10), || {
        corral_net::routes::list().is_ok_and(|r| !r.iter().any(|r| r.dst == ghost_cidr))
    });
    assert!(unrouted, "route {want} left after the node was deleted");

    // A pod bound to the node runs; its status reaches the API.
    c.create_pod("web", "echo hello; exec sleep 1000");
    let p = c.wait_api_pod("web", "Running, Ready, podIP", running_and_ready);
    let pod_ip = p["status"]["podIP"].as_str().unwrap_or("").to_string();
    let net: corral_net::Ipv4Cidr = cidr.parse().expect("pod CIDR");
    assert!(
        net.contains(pod_ip.parse().expect("pod IP")),
        "pod IP {pod_ip} outside the node's pod CIDR {cidr}"
    );
    assert_eq!(p["status"]["hostIP"], "127.0.0.1");
    assert_eq!(p["status"]["containerStatuses"][0]["ready"], true);
    let local = t.wait_phase("web", "Running", T);
    assert_eq!(local["metadata"]["uid"], p["metadata"]["uid"]);

    // The master proxies logs and exec with the join token: the agent takes it.
    let join = std::fs::read_to_string(c.master.data_dir().join("join-token")).unwrap();
    let (code, _) = t.get("/pods", Some(join.trim())).unwrap();
    assert_eq!(code, 200, "join token refused");
    let (code, _) = t.get("/pods", Some(TOKEN)).unwrap();
    assert_eq!(code, 200, "own token refused");
    let (code, _) = t.get("/pods", Some("wrong")).unwrap();
    assert_eq!(code, 401);

    // Deleted in the API: stopped and removed on the node.
    let (code, body) = c
        .master
        .call(Method::DELETE, "/api/v1/namespaces/default/pods/web", None);
    assert!(code == 200 || code == 202, "delete: {code} {body}");
    t.wait_gone("web", T);
    let clean = corral_tests::host::wait_until(T, || {
        t.runtime_containers().is_empty() && t.pod_dirs().is_empty()
    });
    assert!(
        clean,
        "left after delete: containers {:?}, pod dirs {:?}\n{}",
        t.runtime_containers(),
        t.pod_dirs(),
        t.agent_log()
    );
    let gone = corral_tests::host::wait_until(T, || c.api_pod("web").0 == 404);
    assert!(gone, "the pod is still in the API");

    // A static pod gets a mirror pod in the API with its status; removing
    // the manifest removes the mirror.
    t.write_pods(
        "static.json",
        &[pod_manifest(
            "static-web",
            json!({"containers": [sh_container("c", "exec sleep 1000")],
                   "terminationGracePeriodSeconds": 1}),
        )],
    );
    let local = t.wait_phase("static-web", "Running", T);
    let m = c.wait_api_pod("static-web", "mirror pod Running", running_and_ready);
    assert_eq!(
        m["metadata"]["annotations"]["kubernetes.io/config.mirror"],
        local["metadata"]["uid"]
    );
    assert_eq!(m["status"]["podIP"], local["status"]["podIP"]);
    t.remove_manifest("static.json");
    let gone = corral_tests::host::wait_until(T, || c.api_pod("static-web").0 == 404);
    assert!(
        gone,
        "the mirror pod is still in the API\n{}",
        t.agent_log()
    );
    t.wait_gone("static-web", T);
}

#[test]
fn master_down_and_agent_restart() {
    let _env = ENV.lock().unwrap_or_else(|p| p.into_inner());
    let mut c = match setup(51) {
        Ok(c) => c,
        Err(e) => skip!("{e}"),
    };
    c.create_pod("keep", "echo up; exec sleep 1000");
    let p = c.wait_api_pod("keep", "Running and Ready", running_and_ready);
    let pod_ip = p["status"]["podIP"].clone();
    assert_eq!(restarts(&p), 0);

    // Master down: the pod keeps running, and a container restart meanwhile
    // is reported once the master is back.
    c.kill_master();
    let id = c.agent.wait_phase("keep", "Running", T)["status"]["containerStatuses"][0]
        ["containerID"]
        .as_str()
        .unwrap_or("")
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_string();
    let out = c.agent.runtime_cmd(&["kill", &id, "KILL"]);
    assert!(
        out.status.success(),
        "kill container {id}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let local = c.agent.wait_pod("keep", T, |p| {
        restarts(p) == 1 && p["status"]["phase"] == "Running"
    });
    assert_eq!(local["status"]["podIP"], pod_ip);
    std::thread::sleep(Duration::from_secs(2));
    c.master.restart().expect("restart the master");
    let p = c.wait_api_pod("keep", "restartCount 1 after the reconnect", |p| {
        restarts(p) == 1 && running_and_ready(p)
    });
    assert_eq!(p["status"]["podIP"], pod_ip);

    // Agent killed and started again while the master is down: it keeps the
    // pod (same IP, same container) from what it saved.
    c.kill_master();
    c.agent.kill9();
    c.agent.start();
    let again = c.agent.wait_pod("keep", T, |p| {
        p["status"]["phase"] == "Running" && restarts(p) == 1
    });
    assert_eq!(again["status"]["podIP"], pod_ip);
    std::thread::sleep(Duration::from_secs(3));
    let still = c.agent.pod("keep").expect("the pod's status file");
    assert_eq!(still["status"]["phase"], "Running", "{still}");
    assert_eq!(restarts(&still), 1, "no container started twice: {still}");
    c.master.restart().expect("restart the master");
    let p = c.wait_api_pod("keep", "Running after both restarts", running_and_ready);
    assert_eq!(p["status"]["podIP"], pod_ip);
    let lease_path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/agent-test";
    let first = renew_micros(&c.master.call(Method::GET, lease_path, None).1);
    let renewed = corral_tests::host::wait_until(Duration::from_secs(10), || {
        renew_micros(&c.master.call(Method::GET, lease_path, None).1) != first
    });
    assert!(
        renewed,
        "the lease is not renewed after the master came back"
    );
}
