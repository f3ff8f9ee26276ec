//! corral-bench-cluster-e2e: end-to-end pod startup latency on the 3-host
//! test cluster of tests/src/cluster.rs (hosts are network namespaces on a
//! bridge, a real corral-master, one real corral-agent per host), the image
//! already in every host's store (imagePullPolicy Never).
//!
//! Every time is taken on this process's clock: the start is the moment
//! before the create call, and each pod's milestones are the moments its
//! watch events arrive here (added, bound to a node, Running, Ready=True),
//! as Kubernetes' startup SLO measures "observed via watch". The API's
//! lastTransitionTime has one-second resolution and is not used.
//!
//!   corral-bench-cluster-e2e [--pods N] [--singles K] [--workload sleep|httpd]
//!                            [--tag T] [--timeout SECS] [--json FILE]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use corral_api::apps::Deployment;
use corral_api::core::{ConditionStatus, Node, Pod, PodPhase};
use corral_client::{Client, ListParams, WatchEvent};
use corral_tests::cluster::ClusterHarness;
use serde_json::{json, Value};

const NS: &str = "default";
const IMAGE: &str = "localhost/busybox:latest";
const HOSTS: usize = 3;
/// Kubernetes' startup SLO is 5 s; the issue asks for 1 s at p99.
const GOAL_P99_MS: f64 = 1000.0;

#[derive(Clone, Copy, PartialEq)]
enum Workload {
    /// `sleep 3600`, no probe: Ready as soon as the container runs.
    Sleep,
    /// busybox httpd with an HTTP readiness probe (period 1 s).
    Httpd,
}

struct Args {
    pods: usize,
    singles: usize,
    workload: Workload,
    tag: u8,
    timeout: Duration,
    json: Option<PathBuf>,
}

fn usage() -> String {
    "usage: corral-bench-cluster-e2e [--pods N] [--singles K] [--workload sleep|httpd] \
     [--tag T] [--timeout SECS] [--json FILE]"
        .to_string()
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        pods: 30,
        singles: 3,
        workload: Workload::Sleep,
        tag: 90,
        timeout: Duration::from_secs(180),
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or(format!("{flag} needs a value\n{}", usage()))
        };
        let num = |v: String| {
            v.parse::<u64>()
                .map_err(|e| format!("{flag} {v:?}: {e}\n{}", usage()))
        };
        match flag.as_str() {
            "--pods" => a.pods = num(value()?)?.max(1) as usize,
            "--singles" => a.singles = num(value()?)? as usize,
            "--tag" => {
                a.tag = u8::try_from(num(value()?)?)
                    .ok()
                    .filter(|t| (1..=250).contains(t))
                    .ok_or("--tag must be 1-250")?
            }
            "--timeout" => a.timeout = Duration::from_secs(num(value()?)?),
            "--json" => a.json = Some(PathBuf::from(value()?)),
            "--workload" => {
                a.workload = match value()?.as_str() {
                    "sleep" => Workload::Sleep,
                    "httpd" => Workload::Httpd,
                    w => return Err(format!("--workload {w:?}: sleep or httpd")),
                }
            }
            "-h" | "--help" => return Err(usage()),
            other => return Err(format!("unknown argument {other:?}\n{}", usage())),
        }
    }
    Ok(a)
}

fn container(w: Workload) -> Value {
    match w {
        Workload::Sleep => json!({
            "name": "c", "image": IMAGE, "imagePullPolicy": "Never",
            "command": ["sleep", "3600"]
        }),
        Workload::Httpd => json!({
            "name": "c", "image": IMAGE, "imagePullPolicy": "Never",
            "command": ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www"],
            "ports": [{"containerPort": 80}],
            "readinessProbe": {"httpGet": {"path": "/", "port": 80}, "periodSeconds": 1}
        }),
    }
}

fn pod_spec(w: Workload) -> Value {
    json!({"terminationGracePeriodSeconds": 1, "containers": [container(w)]})
}

/// When each milestone of one pod was first seen on the watch.
#[derive(Clone, Default)]
struct Marks {
    app: String,
    node: String,
    added: Option<Instant>,
    scheduled: Option<Instant>,
    running: Option<Instant>,
    ready: Option<Instant>,
}

type Book = Arc<Mutex<HashMap<String, Marks>>>;

fn condition_true(p: &Pod, type_: &str) -> bool {
    p.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == ConditionStatus::True)
    })
}

fn record(book: &Book, p: &Pod, now: Instant) {
    let Ok(mut b) = book.lock() else { return };
    let m = b.entry(p.metadata.name.clone()).or_default();
    m.app = p.metadata.labels.get("app").cloned().unwrap_or_default();
    m.added.get_or_insert(now);
    if !p.spec.node_name.is_empty() || condition_true(p, "PodScheduled") {
        m.scheduled.get_or_insert(now);
        m.node = p.spec.node_name.clone();
    }
    if p.status.as_ref().and_then(|s| s.phase) == Some(PodPhase::Running) {
        m.running.get_or_insert(now);
    }
    if condition_true(p, "Ready") {
        m.ready.get_or_insert(now);
    }
}

/// Follows the pods of the namespace until aborted, relisting after a 410
/// and resuming after the server ends a watch; `live` is told once the first
/// watch is open, so nothing created afterwards can be missed.
async fn watch_pods(client: Client, book: Book, live: tokio::sync::oneshot::Sender<()>) {
    let mut live = Some(live);
    let mut rv = String::new();
    loop {
        if rv.is_empty() {
            match client.list::<Pod>(NS, &ListParams::default()).await {
                Ok(l) => {
                    let now = Instant::now();
                    l.items.iter().for_each(|p| record(&book, p, now));
                    rv = l.metadata.resource_version;
                }
                Err(e) => {
                    eprintln!("bench: list pods: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
        }
        let mut stream = match client.watch::<Pod>(NS, &ListParams::default(), &rv).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("bench: watch pods: {e}");
                rv.clear();
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if let Some(tx) = live.take() {
            let _ = tx.send(());
        }
        while let Some(ev) = stream.next().await {
            let now = Instant::now();
            match ev {
                Ok(WatchEvent::Added(p)) | Ok(WatchEvent::Modified(p)) => {
                    rv = p.metadata.resource_version.clone();
                    record(&book, &p, now);
                }
                Ok(WatchEvent::Deleted(p)) => rv = p.metadata.resource_version.clone(),
                Ok(WatchEvent::Bookmark { resource_version }) => rv = resource_version,
                Err(e) => {
                    if !e.is_gone() {
                        eprintln!("bench: pod watch: {e}");
                    }
                    rv.clear();
                }
            }
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentiles of one phase, in milliseconds.
fn summary(mut v: Vec<f64>) -> Value {
    if v.is_empty() {
        return Value::Null;
    }
    v.sort_by(f64::total_cmp);
    let rank = |p: f64| v[((p / 100.0 * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    let round = |x: f64| (x * 10.0).round() / 10.0;
    json!({
        "n": v.len(),
        "min_ms": round(v[0]),
        "p50_ms": round(rank(50.0)),
        "p90_ms": round(rank(90.0)),
        "p99_ms": round(rank(99.0)),
        "max_ms": round(v[v.len() - 1]),
    })
}

/// Per-phase summaries of the pods of one run started at `t0`.
fn phases(t0: Instant, marks: &[Marks]) -> Value {
    let phase = |f: &dyn Fn(&Marks) -> Option<Duration>| {
        summary(marks.iter().filter_map(f).map(ms).collect())
    };
    let since = |a: Option<Instant>, b: Option<Instant>| {
        Some(b?.checked_duration_since(a?).unwrap_or_default())
    };
    json!({
        "start_to_ready": phase(&|m| since(Some(t0), m.ready)),
        "created_to_ready": phase(&|m| since(m.added, m.ready)),
        "start_to_created": phase(&|m| since(Some(t0), m.added)),
        "created_to_scheduled": phase(&|m| since(m.added, m.scheduled)),
        "scheduled_to_running": phase(&|m| since(m.scheduled, m.running)),
        "running_to_ready": phase(&|m| since(m.running, m.ready)),
    })
}

fn marks_of(book: &Book, app: &str) -> Vec<Marks> {
    book.lock()
        .map(|b| b.values().filter(|m| m.app == app).cloned().collect())
        .unwrap_or_default()
}

/// Waits until `n` pods of `app` are Ready (polling the book every 2 ms,
/// which bounds the error of nothing: the times come from the watch).
async fn wait_ready(
    book: &Book,
    app: &str,
    n: usize,
    timeout: Duration,
) -> Result<Vec<Marks>, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let marks = marks_of(book, app);
        let ready = marks.iter().filter(|m| m.ready.is_some()).count();
        if ready >= n {
            return Ok(marks);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{ready} of {n} pods of {app} Ready after {timeout:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn decode<T: corral_api::Resource>(v: Value, what: &str) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| format!("build the {what} manifest: {e}"))
}

/// One pod pinned to each node, created together right after the nodes
/// turn Ready and not part of the figures below: an agent serves pods only
/// once it has seen its pod CIDR (it polls for it every second), and each
/// host sets up its pod network on its first pod.
async fn warmup(client: &Client, book: &Book, a: &Args) -> Result<Value, String> {
    let app = "warmup";
    let t0 = Instant::now();
    for i in 1..=HOSTS {
        let mut spec = pod_spec(a.workload);
        spec["nodeSelector"] = json!({"kubernetes.io/hostname": format!("host{i}")});
        let pod: Pod = decode(
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": format!("{app}-host{i}"), "namespace": NS,
                                "labels": {"app": app}},
                   "spec": spec}),
            "pod",
        )?;
        client
            .create(&pod)
            .await
            .map_err(|e| format!("create pod {app}-host{i}: {e}"))?;
    }
    let marks = wait_ready(book, app, HOSTS, a.timeout).await?;
    Ok(phases(t0, &marks))
}

/// One bare pod at a time, each alone in the cluster's work queue.
async fn singles(client: &Client, book: &Book, a: &Args) -> Result<Value, String> {
    let mut runs = Vec::new();
    for k in 0..a.singles {
        let app = format!("single-{k}");
        let pod: Pod = decode(
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": app, "namespace": NS, "labels": {"app": app}},
                   "spec": pod_spec(a.workload)}),
            "pod",
        )?;
        let t0 = Instant::now();
        client
            .create(&pod)
            .await
            .map_err(|e| format!("create pod {app}: {e}"))?;
        let marks = wait_ready(book, &app, 1, a.timeout).await?;
        runs.push(json!({"node": marks[0].node, "phases": phases(t0, &marks)}));
    }
    let all: Vec<f64> = runs
        .iter()
        .filter_map(|r| r["phases"]["start_to_ready"]["max_ms"].as_f64())
        .collect();
    Ok(json!({"runs": runs, "start_to_ready": summary(all)}))
}

/// A Deployment of `a.pods` replicas created at once.
async fn burst(client: &Client, book: &Book, a: &Args) -> Result<Value, String> {
    let app = "burst";
    let d: Deployment = decode(
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": app, "namespace": NS},
               "spec": {"replicas": a.pods,
                        "selector": {"matchLabels": {"app": app}},
                        "template": {"metadata": {"labels": {"app": app}},
                                     "spec": pod_spec(a.workload)}}}),
        "deployment",
    )?;
    let t0 = Instant::now();
    client
        .create(&d)
        .await
        .map_err(|e| format!("create deployment {app}: {e}"))?;
    let marks = wait_ready(book, app, a.pods, a.timeout).await?;
    let all_ready = marks
        .iter()
        .filter_map(|m| m.ready)
        .max()
        .map(|r| ms(r - t0));
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for m in &marks {
        *per_node.entry(m.node.clone()).or_default() += 1;
    }
    Ok(json!({
        "pods": a.pods,
        "all_ready_ms": all_ready.map(|x| (x * 10.0).round() / 10.0),
        "per_node": per_node,
        "phases": phases(t0, &marks),
    }))
}

async fn nodes_ready(client: &Client, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let nodes = client
            .list::<Node>("", &ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let ready = nodes.iter().filter(|n| {
            !n.spec.pod_cidr.is_empty()
                && n.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == ConditionStatus::True)
                })
        });
        if ready.count() == HOSTS {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "not all {HOSTS} nodes Ready with a pod CIDR after {timeout:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn bench(h: &ClusterHarness, a: &Args) -> Result<Value, String> {
    let client =
        Client::from_kubeconfig(&h.kubeconfig()).map_err(|e| format!("admin client: {e}"))?;
    nodes_ready(&client, Duration::from_secs(60)).await?;
    let book: Book = Arc::default();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let watcher = tokio::spawn(watch_pods(client.clone(), book.clone(), tx));
    let result = async {
        tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .map_err(|_| "the pod watch did not open within 30 s".to_string())?
            .map_err(|_| "the pod watcher ended".to_string())?;
        let warmup = warmup(&client, &book, a).await?;
        let single = singles(&client, &book, a).await?;
        let burst = burst(&client, &book, a).await?;
        Ok(json!({
            "hosts": HOSTS,
            "workload": match a.workload { Workload::Sleep => "sleep", Workload::Httpd => "httpd" },
            "warmup": warmup,
            "single": single,
            "burst": burst,
            "goal_p99_ms": GOAL_P99_MS,
        }))
    }
    .await;
    watcher.abort();
    result
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn diagnostics(h: &ClusterHarness) -> String {
    let pods = h.kubectl(&["get", "pods", "-o", "wide"]);
    let mut out = format!(
        "--- pods ---\n{}\n--- master ---\n{}",
        String::from_utf8_lossy(&pods.stdout),
        tail(&h.master_log(), 20)
    );
    for host in &h.hosts {
        out += &format!(
            "\n--- agent {} ---\n{}",
            host.name,
            tail(&host.agent_log(), 20)
        );
    }
    out
}

/// With panic=abort in release nothing unwinds, so the harness's Drop would
/// not run: on a panic (the harness asserts that the master comes up) kill
/// the processes this bench started, named by the harness's unique temp
/// dir on their command line, and delete the namespaces of its tag.
static CLEANUP: OnceLock<(u8, PathBuf)> = OnceLock::new();

fn cleanup_after_panic() {
    let Some((tag, dir)) = CLEANUP.get() else {
        return;
    };
    let needle = dir.to_string_lossy().to_string();
    let me = std::process::id().to_string();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = e.file_name().to_string_lossy().to_string();
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if pid != me && String::from_utf8_lossy(&cmd).contains(&needle) {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid])
                .status();
        }
    }
    for ns in (1..=HOSTS)
        .map(|i| format!("ce{tag}h{i}"))
        .chain([format!("ce{tag}sw")])
    {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &ns])
            .status();
    }
    let _ = std::process::Command::new("ip")
        .args(["link", "del", &format!("ce{tag}r")])
        .status();
    corral_tests::host::unmount_under(dir);
    let _ = std::fs::remove_dir_all(dir);
}

fn run(a: &Args) -> Result<Value, String> {
    let mut h = ClusterHarness::new(a.tag, HOSTS)?;
    let _ = CLEANUP.set((a.tag, h.path("")));
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        cleanup_after_panic();
    }));
    h.start_master();
    for i in 0..HOSTS {
        h.start_agent(i);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let result = rt.block_on(bench(&h, a));
    if let Err(e) = &result {
        eprintln!("bench failed: {e}\n{}", diagnostics(&h));
    }
    drop(rt);
    result
}

fn row(name: &str, s: &Value) -> String {
    let f = |k: &str| s[k].as_f64().map_or("-".into(), |x| format!("{x:.1}"));
    format!(
        "  {name:<22} {:>8} {:>8} {:>8} {:>8}\n",
        f("p50_ms"),
        f("p90_ms"),
        f("p99_ms"),
        f("max_ms")
    )
}

fn table(r: &Value) -> String {
    let mut t = format!(
        "cluster e2e pod startup, {} hosts, workload {}, image cached\n",
        r["hosts"], r["workload"]
    );
    t += &format!(
        "  {:<22} {:>8} {:>8} {:>8} {:>8}\n",
        "phase (ms)", "p50", "p90", "p99", "max"
    );
    t += "warm-up: first pod of each node, right after the nodes turned Ready (not counted):\n";
    t += &row("create->Ready", &r["warmup"]["start_to_ready"]);
    t += &format!(
        "single pod alone, one after the other ({} runs):\n",
        r["single"]["runs"].as_array().map_or(0, Vec::len)
    );
    t += &row("create->Ready", &r["single"]["start_to_ready"]);
    let b = &r["burst"];
    t += &format!(
        "burst: Deployment of {} replicas, all Ready after {} ms, per node {}:\n",
        b["pods"], b["all_ready_ms"], b["per_node"]
    );
    for (k, name) in [
        ("start_to_ready", "apply->Ready"),
        ("created_to_ready", "created->Ready (SLO)"),
        ("start_to_created", "apply->created"),
        ("created_to_scheduled", "created->scheduled"),
        ("scheduled_to_running", "scheduled->Running"),
        ("running_to_ready", "Running->Ready"),
    ] {
        t += &row(name, &b["phases"][k]);
    }
    let p99 = b["phases"]["start_to_ready"]["p99_ms"]
        .as_f64()
        .unwrap_or(f64::INFINITY);
    let verdict = if p99 < GOAL_P99_MS { "met" } else { "NOT met" };
    t += &format!("goal p99 apply->Ready < {GOAL_P99_MS} ms: {verdict} ({p99:.1} ms)\n");
    t
}

fn main() {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let report = match run(&a) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("corral-bench-cluster-e2e: {e}");
            std::process::exit(1);
        }
    };
    print!("{}", table(&report));
    if let Some(path) = &a.json {
        let text = format!("{report:#}\n");
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("corral-bench-cluster-e2e: write {}: {e}", path.display());
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let s = summary((1..=100).map(f64::from).collect());
        assert_eq!(s["p50_ms"], 50.0);
        assert_eq!(s["p90_ms"], 90.0);
        assert_eq!(s["p99_ms"], 99.0);
        assert_eq!(s["max_ms"], 100.0);
        let one = summary(vec![7.0]);
        assert_eq!(
            (one["p50_ms"].clone(), one["p99_ms"].clone()),
            (json!(7.0), json!(7.0))
        );
        assert_eq!(summary(Vec::new()), Value::Null);
    }

    fn pod(node: &str, phase: Option<&str>, ready: bool) -> Pod {
        let mut v = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": NS, "labels": {"app": "a"}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": IMAGE}]},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
        if let Some(ph) = phase {
            v["status"]["phase"] = json!(ph);
        }
        serde_json::from_value(v).expect("test pod")
    }

    #[test]
    fn milestones_keep_the_first_time_seen() {
        let book: Book = Arc::default();
        let t = Instant::now();
        let later = |ms| t + Duration::from_millis(ms);
        record(&book, &pod("", None, false), t);
        record(&book, &pod("host1", Some("Pending"), false), later(10));
        record(&book, &pod("host1", Some("Running"), false), later(20));
        record(&book, &pod("host1", Some("Running"), true), later(30));
        record(&book, &pod("host1", Some("Running"), true), later(40));
        let m = marks_of(&book, "a").pop().expect("marks");
        assert_eq!(m.node, "host1");
        assert_eq!(
            (m.added, m.scheduled, m.running, m.ready),
            (Some(t), Some(later(10)), Some(later(20)), Some(later(30)))
        );
        let p = phases(t, &[m]);
        assert_eq!(p["scheduled_to_running"]["p50_ms"], 10.0);
        assert_eq!(p["start_to_ready"]["max_ms"], 30.0);
    }
}
