//! Service load balancing of `corral_net::services` on the real kernel.
//!
//! The test builds its own little world of network namespaces: a "node" holding
//! a pod bridge (`corral_net::Network`, opened inside the node) with three
//! backend pods running `busybox httpd` (each serves its own name) and a client
//! pod, plus an "ext" namespace joined to the node by a veth, playing another
//! host on the node's network. The services ruleset is applied inside the node.
//! Nothing touches the host's own network namespace.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_agent::cluster::proxy::{self, ProxyConfig};
use corral_api::core::{Endpoints, Service};
use corral_net::services::{self, Frontend, L4Proto, Ruleset, ServicesConfig};
use corral_net::{create_netns, delete_netns, in_netns, Network, NetworkConfig};
use corral_tests::host::{is_root, wait_until, which};
use nix::mount::{umount2, MntFlags};

const BUSYBOX: &str = "/bin/busybox";
const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 215, 1);
const NODE_PORT: u16 = 30080;
const BACKENDS: [&str; 3] = ["a", "b", "c"];

/// The namespaces, servers and state of one test; all removed on drop, also
/// when the test panics.
struct Lab {
    dir: tempfile::TempDir,
    namespaces: Vec<PathBuf>,
    servers: Vec<Child>,
    node: PathBuf,
    ext: PathBuf,
    client: PathBuf,
    pods: Vec<(String, PathBuf, Ipv4Addr)>,
    cfg: ServicesConfig,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.servers {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The last reference to each namespace goes with its binding: links,
        // the bridge and nftables tables inside go with it.
        for ns in &self.namespaces {
            if let Err(e) = delete_netns(ns) {
                eprintln!("net_services: {e}");
            }
        }
        let _ = umount2(&self.dir.path().join("netns"), MntFlags::MNT_DETACH);
    }
}

fn sh(netns: &Path, args: &[&str]) -> (bool, String) {
    sh_within(10, netns, args)
}

/// `args` run inside `netns`, killed after `secs` seconds.
fn sh_within(secs: u32, netns: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("timeout")
        .arg(secs.to_string())
        .arg("nsenter")
        .arg(format!("--net={}", netns.display()))
        .arg("--")
        .args(args)
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) => (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => (false, format!("nsenter {args:?}: {e}")),
    }
}

fn must(netns: &Path, args: &[&str]) {
    let (ok, out) = sh(netns, args);
    assert!(ok, "{args:?} in {}: {out}", netns.display());
}

impl Lab {
    fn new() -> Lab {
        let dir = tempfile::Builder::new()
            .prefix("corral-svc-test")
            .tempdir()
            .expect("temporary directory");
        let root = dir.path().join("netns");
        let ns = |name: &str| root.join(name);
        let mut lab = Lab {
            node: ns("node"),
            ext: ns("ext"),
            client: ns("client"),
            dir,
            namespaces: Vec::new(),
            servers: Vec::new(),
            pods: Vec::new(),
            cfg: ServicesConfig {
                cluster_cidr: Some("10.215.0.0/24".parse().expect("CIDR")),
                ..ServicesConfig::default()
            },
        };
        for path in [lab.node.clone(), lab.ext.clone(), lab.client.clone()] {
            lab.add_netns(&path);
        }
        lab.wire_ext();
        let net = lab.open_network();
        let client = lab.client.clone();
        lab.attach(&net, "client", &client);
        for name in BACKENDS {
            let path = ns(name);
            lab.add_netns(&path);
            let ip = lab.attach(&net, name, &path);
            lab.serve(name, &path);
            lab.pods.push((name.to_string(), path, ip));
        }
        for (name, _, ip) in &lab.pods {
            let url = format!("http://{ip}/");
            let mut last = Err(String::new());
            let up = wait_until(Duration::from_secs(5), || {
                last = fetch(&lab.node, &url);
                last.as_deref() == Ok(name.as_str())
            });
            assert!(up, "httpd of {name} at {url} did not answer: {last:?}");
        }
        lab
    }

    fn add_netns(&mut self, path: &Path) {
        create_netns(path).unwrap_or_else(|e| panic!("{e}"));
        self.namespaces.push(path.to_path_buf());
        must(path, &["ip", "link", "set", "lo", "up"]);
    }

    /// node `up0` 192.168.215.1/24 <-> ext `eth0` 192.168.215.2/24; the node's
    /// default route points at ext, like a host's at its router. ext forwards
    /// and knows the pod network is behind the node, but has no route to
    /// service addresses: a packet to a cluster IP the node did not DNAT comes
    /// back as "no route to host", telling it apart from our own reject.
    fn wire_ext(&self) {
        let (node, ext) = (&self.node, &self.ext);
        let ext_path = ext.display().to_string();
        must(
            node,
            &[
                "ip", "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns",
                &ext_path,
            ],
        );
        must(
            node,
            &["ip", "addr", "add", "192.168.215.1/24", "dev", "up0"],
        );
        must(node, &["ip", "link", "set", "up0", "up"]);
        must(
            ext,
            &["ip", "addr", "add", "192.168.215.2/24", "dev", "eth0"],
        );
        must(ext, &["ip", "link", "set", "eth0", "up"]);
        must(
            node,
            &["ip", "route", "add", "default", "via", "192.168.215.2"],
        );
        must(
            ext,
            &[
                "ip",
                "route",
                "add",
                "10.215.0.0/24",
                "via",
                "192.168.215.1",
            ],
        );
        must(ext, &["ip", "route", "add", "unreachable", "10.96.0.0/12"]);
        must(ext, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    }

    fn open_network(&self) -> Network {
        let cfg = NetworkConfig {
            bridge: "crlsvc0".into(),
            cidr: "10.215.0.0/24".parse().expect("CIDR"),
            state_dir: self.dir.path().join("net-state"),
            cluster_cidr: None,
        };
        in_netns(&self.node, || Network::open(cfg))
            .and_then(|r| r)
            .unwrap_or_else(|e| panic!("open the pod network in the node: {e}"))
    }

    /// Attaches `pod` to the bridge, and checks that its port is in hairpin
    /// mode: with br_netfilter loaded (bridge-nf-call-iptables=1, as on this
    /// host and on most Kubernetes nodes), a packet DNATed to a pod on the
    /// same bridge is bridged, not routed; when that pod is the client itself
    /// the frame must leave by the port it came in on, which a bridge only
    /// does in hairpin mode (`Network::attach` turns it on).
    fn attach(&self, net: &Network, owner: &str, pod: &Path) -> Ipv4Addr {
        let att = in_netns(&self.node, || net.attach(owner, pod, &[]))
            .and_then(|r| r)
            .unwrap_or_else(|e| panic!("attach {owner}: {e}"));
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.node.display()))
            .args(["--", "bridge", "-d", "link", "show", "dev", &att.veth_host])
            .output()
            .expect("run bridge link show");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("hairpin on"),
            "{} not in hairpin mode: {text}",
            att.veth_host
        );
        att.ip
    }

    fn serve(&mut self, name: &str, pod: &Path) {
        let www = self.dir.path().join("www").join(name);
        std::fs::create_dir_all(&www).expect("www dir");
        std::fs::write(www.join("index.html"), name).expect("index.html");
        let child = Command::new("nsenter")
            .arg(format!("--net={}", pod.display()))
            .args(["--", BUSYBOX, "httpd", "-f", "-p", "80", "-h"])
            .arg(&www)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn busybox httpd");
        self.servers.push(child);
    }

    fn backends(&self, names: &[&str]) -> Vec<SocketAddrV4> {
        self.pods
            .iter()
            .filter(|(n, _, _)| names.contains(&n.as_str()))
            .map(|(_, _, ip)| SocketAddrV4::new(*ip, 80))
            .collect()
    }

    fn pod(&self, name: &str) -> &Path {
        self.pods
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, p, _)| p.as_path())
            .unwrap_or_else(|| panic!("no pod {name}"))
    }

    /// Renders and applies the ruleset inside the node; returns it.
    fn apply(&self, frontends: &[Frontend]) -> Ruleset {
        let ruleset = services::render(&self.cfg, frontends);
        assert!(ruleset.skipped.is_empty(), "{:?}", ruleset.skipped);
        in_netns(&self.node, || services::apply(&self.cfg, &ruleset))
            .and_then(|r| r)
            .unwrap_or_else(|e| panic!("apply in the node: {e}\n{}", ruleset.script));
        ruleset
    }

    fn table(&self) -> (bool, String) {
        sh(&self.node, &["nft", "list", "table", "ip", &self.cfg.table])
    }
}

fn web(backends: Vec<SocketAddrV4>, node_port: Option<u16>) -> Frontend {
    Frontend {
        name: "default/web:http".into(),
        cluster_ip: CLUSTER_IP,
        port: 80,
        proto: L4Proto::Tcp,
        node_port,
        backends,
    }
}

/// The page at `url` from inside `netns`, or wget's error. (No `wget -T`: it
/// crashes Debian's static busybox 1.35; `timeout` bounds the request.)
fn fetch(netns: &Path, url: &str) -> Result<String, String> {
    match sh_within(3, netns, &[BUSYBOX, "wget", "-qO-", url]) {
        (true, out) => Ok(out.trim().to_string()),
        (false, out) => Err(out.trim().to_string()),
    }
}

/// Who answered `n` requests to `url` from `netns`; panics on a failed one.
fn answers(netns: &Path, url: &str, n: usize) -> BTreeSet<String> {
    (0..n)
        .map(|i| {
            fetch(netns, url).unwrap_or_else(|e| {
                let ip = url.trim_start_matches("http://").split([':', '/']).next();
                let route = sh(netns, &["ip", "route", "get", ip.unwrap_or_default()]).1;
                panic!("request {i} to {url}: {e:?}\nroute: {route}")
            })
        })
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn usable() -> bool {
    for (ok, what) in [
        (is_root(), "root"),
        (which("nft").is_some(), "nft"),
        (which("nsenter").is_some(), "nsenter"),
        (which("timeout").is_some(), "timeout"),
        (which("ip").is_some(), "ip (iproute2)"),
        (which("bridge").is_some(), "bridge (iproute2)"),
        (Path::new(BUSYBOX).exists(), BUSYBOX),
    ] {
        if !ok {
            eprintln!("SKIPPED [net_services]: needs {what}");
            return false;
        }
    }
    true
}

#[test]
fn cluster_ip_and_node_port_follow_their_endpoints() {
    if !usable() {
        return;
    }
    let started = Instant::now();
    let lab = Lab::new();
    eprintln!("lab ready in {:?}", started.elapsed());
    let url = format!("http://{CLUSTER_IP}/");

    let t = Instant::now();
    let all = lab.backends(&BACKENDS);
    lab.apply(&[web(all.clone(), Some(NODE_PORT))]);
    eprintln!("apply with 3 backends took {:?}", t.elapsed());
    assert_eq!(
        answers(&lab.client, &url, 30),
        set(&BACKENDS),
        "from the client pod"
    );

    // A backend reaching its own service gets answers from itself too (hairpin).
    assert_eq!(
        answers(lab.pod("a"), &url, 30),
        set(&BACKENDS),
        "from pod a"
    );
    // The node itself (output hook) reaches the cluster IP.
    assert_eq!(
        answers(&lab.node, &url, 30),
        set(&BACKENDS),
        "from the node"
    );

    // NodePort from another host, on the node's address.
    let node_url = format!("http://{NODE_IP}:{NODE_PORT}/");
    let got = answers(&lab.ext, &node_url, 30);
    assert_eq!(got, set(&BACKENDS), "NodePort from ext");

    lab.apply(&[web(lab.backends(&["b", "c"]), Some(NODE_PORT))]);
    assert_eq!(
        answers(&lab.client, &url, 30),
        set(&["b", "c"]),
        "after dropping a"
    );
    assert_eq!(
        answers(&lab.ext, &node_url, 20),
        set(&["b", "c"]),
        "NodePort after dropping a"
    );

    // No ready endpoint: rejected on the node at once.
    lab.apply(&[web(Vec::new(), Some(NODE_PORT))]);
    for (from, url) in [(&lab.client, &url), (&lab.ext, &node_url)] {
        let t = Instant::now();
        let err = fetch(from, url).expect_err("no endpoints, no answer");
        assert!(err.contains("refused"), "{url} without endpoints: {err}");
        eprintln!("{url} without endpoints: refused in {:?}", t.elapsed());
        assert!(t.elapsed() < Duration::from_millis(500), "{url}: no reject");
    }

    // Service removed: the table goes, the node no longer answers for the
    // cluster IP (the packet goes on to ext, which has no route for it).
    lab.apply(&[]);
    let (ok, out) = lab.table();
    assert!(
        !ok && out.contains("No such file or directory"),
        "table left: {out}"
    );
    let err = fetch(&lab.client, &url).expect_err("removed service answered");
    assert!(
        err.contains("No route to host") || err.contains("unreachable"),
        "{err}"
    );
    let err = fetch(&lab.ext, &node_url).expect_err("removed node port answered");
    assert!(
        err.contains("refused"),
        "nothing listens on the node port: {err}"
    );
    // Removing again is fine.
    lab.apply(&[]);
}

/// Replacing the ruleset never leaves a packet without a rule: requests keep
/// succeeding while the backend set flips back and forth.
#[test]
fn replacing_the_ruleset_drops_no_connection() {
    if !usable() {
        return;
    }
    let lab = Lab::new();
    let url = format!("http://{CLUSTER_IP}/");
    let three = web(lab.backends(&BACKENDS), None);
    let two = web(lab.backends(&["b", "c"]), None);
    lab.apply(std::slice::from_ref(&three));

    let stop = Arc::new(AtomicBool::new(false));
    let client = lab.client.clone();
    let flag = stop.clone();
    let load = std::thread::spawn(move || {
        let mut results = Vec::new();
        while !flag.load(Ordering::Relaxed) {
            results.push(fetch(&client, &url));
        }
        results
    });
    let t = Instant::now();
    let mut applies = 0;
    while t.elapsed() < Duration::from_secs(3) {
        lab.apply(std::slice::from_ref(&two));
        lab.apply(std::slice::from_ref(&three));
        applies += 2;
    }
    stop.store(true, Ordering::Relaxed);
    let results = load.join().expect("load thread");
    eprintln!(
        "{applies} applies in {:?} ({:?} each), {} requests meanwhile",
        t.elapsed(),
        t.elapsed() / applies,
        results.len()
    );
    assert!(results.len() >= 10, "too few requests: {}", results.len());
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        results.len()
    );
    let seen: BTreeSet<&str> = results.iter().filter_map(|r| r.as_deref().ok()).collect();
    assert!(seen.len() >= 2, "{seen:?}");
}

/// The agent's proxy against a real master: Service and Endpoints objects
/// become rules in the node within a second of each change.
#[test]
fn agent_proxy_follows_services_and_endpoints() {
    if !usable() {
        return;
    }
    let master = corral_tests::master::Master::start(&["--no-controllers"])
        .unwrap_or_else(|e| panic!("start corral-master: {e}"));
    let lab = Lab::new();
    let client = corral_client::Client::from_kubeconfig(&master.kubeconfig())
        .unwrap_or_else(|e| panic!("client: {e}"));
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let cfg = ProxyConfig {
        node_ips: vec![NODE_IP],
        cluster_cidr: "10.215.0.0/24".into(),
        netns: Some(lab.node.clone()),
        ..ProxyConfig::default()
    };
    // Aborted when `rt` drops at the end, also on a panic.
    rt.spawn(proxy::run(client.clone(), cfg));
    let url = format!("http://{CLUSTER_IP}/");
    let ips = |names: &[&str]| -> Vec<String> {
        lab.backends(names)
            .iter()
            .map(|a| a.ip().to_string())
            .collect()
    };

    let svc: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"type": "NodePort", "clusterIP": CLUSTER_IP.to_string(),
                 "ports": [{"name": "http", "port": 80, "targetPort": 80, "nodePort": NODE_PORT}]}
    }))
    .expect("service");
    rt.block_on(client.create(&svc))
        .unwrap_or_else(|e| panic!("create service: {e}"));
    let t = Instant::now();
    rt.block_on(client.create(&endpoints(&ips(&BACKENDS))))
        .unwrap_or_else(|e| panic!("create endpoints: {e}"));
    wait_for_table(&lab, t, "3 endpoints", |s| {
        ips(&BACKENDS)
            .iter()
            .all(|ip| s.contains(&format!("dnat to {ip}:80")))
    });
    assert_eq!(answers(&lab.client, &url, 30), set(&BACKENDS));
    let node_url = format!("http://{NODE_IP}:{NODE_PORT}/");
    assert_eq!(answers(&lab.ext, &node_url, 30), set(&BACKENDS));

    let mut two = rt
        .block_on(client.get::<Endpoints>("default", "web"))
        .unwrap_or_else(|e| panic!("get endpoints: {e}"));
    two.subsets = endpoints(&ips(&["b", "c"])).subsets;
    let t = Instant::now();
    rt.block_on(client.update(&two))
        .unwrap_or_else(|e| panic!("update endpoints: {e}"));
    let gone = format!("dnat to {}:80", ips(&["a"])[0]);
    wait_for_table(&lab, t, "a removed", |s| {
        !s.contains(&gone) && s.contains("numgen random mod 2")
    });
    assert_eq!(answers(&lab.client, &url, 30), set(&["b", "c"]));

    // The master's own `kubernetes` Service stays, so the table does too:
    // only web's rules go.
    let t = Instant::now();
    rt.block_on(client.delete::<Service>("default", "web", &Default::default()))
        .unwrap_or_else(|e| panic!("delete service: {e}"));
    let vip = format!("{CLUSTER_IP} . tcp . 80");
    wait_for_table(&lab, t, "service removed", |s| {
        !s.contains(&vip) && s.contains("10.96.0.1 . tcp . 443")
    });
    let err = fetch(&lab.client, &url).expect_err("deleted service answered");
    assert!(err.contains("No route to host"), "{err}");
}

fn endpoints(ips: &[String]) -> Endpoints {
    let addresses: Vec<serde_json::Value> =
        ips.iter().map(|ip| serde_json::json!({"ip": ip})).collect();
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default"},
        "subsets": [{"addresses": addresses, "ports": [{"name": "http", "port": 80}]}]
    }))
    .expect("endpoints")
}

/// Polls the node's services table until `ok` holds (at most 5 s: a
/// correctness bound, not a timing; how fast the rules follow is printed
/// here and measured by the benchmark).
fn wait_for_table(lab: &Lab, since: Instant, what: &str, ok: impl Fn(&str) -> bool) {
    loop {
        let (listed, table) = lab.table();
        if listed && ok(&table) {
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "{what}: not in the table after 5 s:\n{table}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = since.elapsed();
    eprintln!("{what}: in the node's rules after {took:?}");
}

/// How long one apply takes at 1,000 services of 5 backends each (and a
/// NodePort on every tenth), in a namespace of its own.
#[test]
fn a_thousand_services_apply_in_one_transaction() {
    if !usable() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let ns = dir.path().join("netns").join("scale");
    create_netns(&ns).unwrap_or_else(|e| panic!("{e}"));
    struct Gone<'a>(&'a Path, &'a Path);
    impl Drop for Gone<'_> {
        fn drop(&mut self) {
            let _ = delete_netns(self.0);
            let _ = umount2(self.1, MntFlags::MNT_DETACH);
        }
    }
    let _gone = Gone(&ns, &dir.path().join("netns"));
    let fronts: Vec<Frontend> = (0..1000u32)
        .map(|i| Frontend {
            name: format!("ns{}/svc{i}:http", i % 7),
            cluster_ip: Ipv4Addr::from(0x0a60_0000 + 10 + i),
            port: 80,
            proto: L4Proto::Tcp,
            node_port: (i % 10 == 0).then(|| 30000 + i as u16),
            backends: (0..5)
                .map(|j| SocketAddrV4::new(Ipv4Addr::from(0x0af4_0000 + i * 8 + j), 8080))
                .collect(),
        })
        .collect();
    let cfg = ServicesConfig::default();
    let t = Instant::now();
    let ruleset = services::render(&cfg, &fronts);
    let render = t.elapsed();
    let t = Instant::now();
    in_netns(&ns, || services::apply(&cfg, &ruleset))
        .and_then(|r| r)
        .unwrap_or_else(|e| panic!("apply: {e}"));
    let first = t.elapsed();
    let t = Instant::now();
    in_netns(&ns, || services::apply(&cfg, &ruleset))
        .and_then(|r| r)
        .unwrap_or_else(|e| panic!("apply again: {e}"));
    let again = t.elapsed();
    eprintln!(
        "1000 services x 5 backends: script {} KiB, {} lines; render {render:?}, apply {first:?}, replace {again:?}",
        ruleset.script.len() / 1024,
        ruleset.script.lines().count()
    );
    let (ok, out) = sh(
        &ns,
        &["nft", "list", "map", "ip", "corral-services", "service-ips"],
    );
    assert!(ok, "{out}");
    assert_eq!(out.matches(" : goto svc-").count(), 1000, "{out}");
    assert!(first < Duration::from_secs(10) && again < Duration::from_secs(10));
}
