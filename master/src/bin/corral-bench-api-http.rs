//! HTTP benchmark of corral-master: a real `corral-master --no-controllers`
//! (embedded store in a temporary data dir, then on a real etcd started on
//! 127.0.0.1 if `etcd` is installed) driven through its HTTPS API by
//! concurrent clients, each with its own connection (corral_client::Client).
//!
//!   cargo build --release -p corral-master --bins
//!   target/release/corral-bench-api-http [--objects 1000,10000] [--clients 16]
//!
//! Per store and object count: create, get+update, LIST of every pod (median
//! of several), a watch receiving one MODIFIED event per pod while clients
//! update, then the master's VmRSS/VmHWM and the store's size on disk.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Parser;
use corral_api::core::{Namespace, Pod};
use corral_client::{Client, ListParams, WatchEvent};

const NAMESPACE: &str = "bench";
/// Annotation carrying the update's send time (µs since the bench started),
/// so the watcher can tell each event's delivery latency.
const SENT_ANNOTATION: &str = "bench.corral.dev/sent-us";
const START_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Parser)]
#[command(about = "corral-master through its HTTPS API: create, get+update, list, watch")]
struct Args {
    /// Pod counts, comma-separated; each runs on a fresh master and store.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    objects: Vec<usize>,
    /// Concurrent clients, each with its own HTTPS connection.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// LIST repetitions; the median and best are reported.
    #[arg(long, default_value_t = 5)]
    lists: usize,
    /// Stores to run: embedded, etcd (skipped when `etcd` is not installed).
    #[arg(long, value_delimiter = ',', default_value = "embedded,etcd")]
    stores: Vec<String>,
    /// The corral-master binary (default: next to this one).
    #[arg(long)]
    master: Option<PathBuf>,
    /// Pods updated in each get+update phase (the first N; default all up to
    /// 10000): at 100k pods a phase over every pod would take most of an hour
    /// and measure nothing the first 10k do not.
    #[arg(long, default_value_t = 10_000)]
    updates: usize,
    /// Record the master with `perf record -g` during the create and the
    /// concurrent get+update phases, into DIR/<store>-<pods>-<phase>.perf.
    #[arg(long)]
    perf: Option<PathBuf>,
}

/// Above this many pods the LIST is checked by counting its items, not by
/// decoding typed pods (100k typed pods take GBs of client memory).
const TYPED_LIST_MAX: usize = 10_000;

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("corral-bench-api-http: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("corral-bench-api-http: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> anyhow::Result<()> {
    let master_bin = match &args.master {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .context("locating this binary")?
            .with_file_name("corral-master"),
    };
    if !master_bin.is_file() {
        bail!(
            "{} not found (build it, or pass --master)",
            master_bin.display()
        );
    }
    for &n in &args.objects {
        for store in &args.stores {
            let etcd = match store.as_str() {
                "embedded" => None,
                "etcd" if !etcd_installed() => {
                    println!(
                        "etcd      skipped: etcd is not installed (apt-get install etcd-server)"
                    );
                    continue;
                }
                "etcd" => Some(Etcd::start()?),
                other => bail!("unknown store {other:?} (embedded or etcd)"),
            };
            let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
            println!(
                "== {store}: {n} pods, {} clients (loadavg {})",
                args.clients,
                load.split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            let master = Master::start(&master_bin, etcd.as_ref())?;
            bench(store, &master, etcd.as_ref(), n, args).await?;
        }
    }
    Ok(())
}

async fn bench(
    store: &str,
    master: &Master,
    etcd: Option<&Etcd>,
    n: usize,
    args: &Args,
) -> anyhow::Result<()> {
    let kubeconfig = master.dir.path.join("admin.kubeconfig");
    let clients: Vec<Client> = (0..args.clients)
        .map(|_| Client::from_kubeconfig(&kubeconfig))
        .collect::<Result<_, _>>()
        .with_context(|| format!("clients from {}", kubeconfig.display()))?;
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}))?;
    clients[0]
        .create(&ns)
        .await
        .context("creating the bench namespace")?;
    let epoch = Instant::now();
    let pod_bytes = serde_json::to_vec(&pod(0))?.len();
    println!("{store:9} pod object {pod_bytes} bytes as sent");

    let cpu = Cpu::now(master.child.id());
    let perf = Perf::start(args, master, &format!("{store}-{n}-create"))?;
    let (t, lat) = timed(&clients, n, |c, i| async move {
        let t = Instant::now();
        c.create(&pod(i))
            .await
            .with_context(|| format!("create pod-{i}"))?;
        Ok(vec![("create", t.elapsed())])
    })
    .await?;
    drop(perf);
    report(store, n, t, &lat);
    cpu.report(store, "create", n);
    let after_create = master.memory()?;
    println!("{store:9} master after create: {after_create}");
    if let Some(etcd) = etcd {
        println!("{store:9} etcd after create: {}", memory(etcd.child.id())?);
    }

    let updates = n.min(args.updates);
    let cpu = Cpu::now(master.child.id());
    let perf = Perf::start(args, master, &format!("{store}-{n}-update"))?;
    let (t, lat) = timed(&clients, updates, move |c, i| get_update(c, i, epoch)).await?;
    drop(perf);
    report(store, updates, t, &lat);
    cpu.report(store, "get+update", updates);

    // One client alone: the latency without queueing behind 15 others.
    let one = n.min(1000);
    let (t, lat) = timed(&clients[..1], one, move |c, i| get_update(c, i, epoch)).await?;
    report(&format!("{store} 1cl"), one, t, &lat);

    let cpu = Cpu::now(master.child.id());
    let perf = Perf::start(args, master, &format!("{store}-{n}-list"))?;
    list_all(store, &clients[0], n, args.lists).await?;
    drop(perf);
    cpu.report(store, "LIST", args.lists.max(1) + 1);
    println!("{store:9} master after list: {}", master.memory()?);

    let cpu = Cpu::now(master.child.id());
    watch_updates(store, &clients, updates, epoch).await?;
    cpu.report(store, "get+update+watch", updates);
    println!("{store:9} master at end: {}", master.memory()?);
    if let Some(etcd) = etcd {
        println!("{store:9} etcd at end: {}", memory(etcd.child.id())?);
    }
    let (what, bytes) = match etcd {
        None => ("store.redb", file_size(&master.dir.path.join("store.redb"))),
        Some(e) => ("etcd data dir", dir_size(&e.dir.path.join("data"))),
    };
    println!("{store:9} {what}: {:.1} MiB", bytes as f64 / 1048576.0);
    Ok(())
}

/// GET then PUT of pod-i with a new annotation; the PUT carries its send time.
async fn get_update(
    c: Client,
    i: usize,
    epoch: Instant,
) -> anyhow::Result<Vec<(&'static str, Duration)>> {
    let name = format!("pod-{i}");
    let t0 = Instant::now();
    let mut p: Pod = c
        .get(NAMESPACE, &name)
        .await
        .with_context(|| format!("get {name}"))?;
    let got = t0.elapsed();
    let sent = epoch.elapsed().as_micros().to_string();
    p.metadata.annotations.insert(SENT_ANNOTATION.into(), sent);
    let t1 = Instant::now();
    c.update(&p)
        .await
        .with_context(|| format!("update {name}"))?;
    let put = t1.elapsed();
    Ok(vec![
        ("get", got),
        ("update", put),
        ("get+update", t0.elapsed()),
    ])
}

/// LIST of every pod as raw bytes (the server's work plus transfer), then
/// once decoded into typed pods to check the count.
async fn list_all(store: &str, c: &Client, n: usize, reps: usize) -> anyhow::Result<()> {
    let path = format!("/api/v1/namespaces/{NAMESPACE}/pods");
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let body = c.get_text(&path, &[]).await.context("LIST pods")?;
        times.push(t.elapsed());
        bytes = body.len();
    }
    times.sort_unstable();
    let t = Instant::now();
    let count = if n <= TYPED_LIST_MAX {
        c.list::<Pod>(NAMESPACE, &ListParams::default())
            .await?
            .items
            .len()
    } else {
        let body = c.get_text(&path, &[]).await.context("LIST pods")?;
        serde_json::from_str::<ItemCount>(&body)
            .context("the LIST body is not a list")?
            .items
            .len()
    };
    let typed = t.elapsed();
    if count != n {
        bail!("LIST returned {count} pods, {n} expected");
    }
    println!(
        "{store:9} {:28} {n:7} pods  median {:7.1} ms  best {:7.1} ms  ({} runs, {:.1} MiB body; {} incl. {:.1} ms)",
        "LIST (raw body)",
        ms(times[times.len() / 2]),
        ms(times[0]),
        times.len(),
        bytes as f64 / 1048576.0,
        if n <= TYPED_LIST_MAX { "typed client decode" } else { "item count" },
        ms(typed)
    );
    Ok(())
}

/// A watch from the current resourceVersion while the clients get+update
/// every pod once: events/s and each event's delay after its PUT was sent.
async fn watch_updates(
    store: &str,
    clients: &[Client],
    n: usize,
    epoch: Instant,
) -> anyhow::Result<()> {
    let w = &clients[0];
    let rv = w
        .list::<Pod>(
            NAMESPACE,
            &ListParams {
                limit: Some(1),
                ..Default::default()
            },
        )
        .await?
        .metadata
        .resource_version;
    let mut stream = w
        .watch::<Pod>(NAMESPACE, &ListParams::default(), &rv)
        .await?;
    let watcher = tokio::spawn(async move {
        let mut delays = Vec::with_capacity(n);
        while delays.len() < n {
            let ev = match tokio::time::timeout(Duration::from_secs(60), stream.next()).await {
                Ok(Some(ev)) => ev.context("watch event")?,
                Ok(None) => bail!("the watch ended after {} of {n} events", delays.len()),
                Err(_) => bail!("no watch event for 60 s after {} of {n}", delays.len()),
            };
            if let WatchEvent::Modified(p) = ev {
                let sent: u128 = p
                    .metadata
                    .annotations
                    .get(SENT_ANNOTATION)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| anyhow!("event without {SENT_ANNOTATION}"))?;
                let now = epoch.elapsed().as_micros();
                delays.push(Duration::from_micros(now.saturating_sub(sent) as u64));
            }
        }
        delays.sort_unstable();
        Ok::<_, anyhow::Error>((epoch.elapsed(), delays))
    });
    let start = epoch.elapsed();
    let (t, lat) = timed(clients, n, move |c, i| get_update(c, i, epoch)).await?;
    report(&format!("{store} +watch"), n, t, &lat);
    let (end, delays) = watcher.await.context("watch task")??;
    let elapsed = end - start;
    println!(
        "{store:9} {:28} {n:7} evts {:9.0} evt/s  p50 {:7.2} ms  p99 {:7.2} ms  (PUT sent -> event received)",
        "watch delivery",
        n as f64 / elapsed.as_secs_f64(),
        pct(&delays, 0.5),
        pct(&delays, 0.99)
    );
    Ok(())
}

/// A list's items, counted without decoding them.
#[derive(serde::Deserialize)]
struct ItemCount {
    items: Vec<serde::de::IgnoredAny>,
}

/// `perf record -g` attached to the master; stopped (SIGINT, so it writes
/// its file) on drop.
struct Perf {
    child: Option<Child>,
}

impl Perf {
    fn start(args: &Args, master: &Master, name: &str) -> anyhow::Result<Perf> {
        let Some(dir) = &args.perf else {
            return Ok(Perf { child: None });
        };
        std::fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
        let out = dir.join(format!("{name}.perf"));
        let child = Command::new("perf")
            .args(["record", "-F", "999", "-g", "-p"])
            .arg(master.child.id().to_string())
            .arg("-o")
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning perf record")?;
        // perf needs a moment to attach before the phase starts.
        std::thread::sleep(Duration::from_millis(300));
        Ok(Perf { child: Some(child) })
    }
}

impl Drop for Perf {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

type Latencies = BTreeMap<&'static str, Vec<Duration>>;

/// Runs `op(client, i)` for i in 0..n, client c taking i = c, c+clients, ...;
/// the elapsed time and each verb's sorted latencies.
async fn timed<F, Fut>(clients: &[Client], n: usize, op: F) -> anyhow::Result<(Duration, Latencies)>
where
    F: Fn(Client, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<Vec<(&'static str, Duration)>>> + Send,
{
    let op = Arc::new(op);
    let k = clients.len();
    let start = Instant::now();
    let tasks: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(c, client)| {
            let (op, client) = (op.clone(), client.clone());
            tokio::spawn(async move {
                let mut lat: Vec<(&'static str, Duration)> = Vec::new();
                for i in (c..n).step_by(k) {
                    lat.extend(op(client.clone(), i).await?);
                }
                Ok::<_, anyhow::Error>(lat)
            })
        })
        .collect();
    let mut all: Latencies = BTreeMap::new();
    for t in tasks {
        for (verb, d) in t.await.context("bench task")?? {
            all.entry(verb).or_default().push(d);
        }
    }
    for v in all.values_mut() {
        v.sort_unstable();
    }
    Ok((start.elapsed(), all))
}

fn report(store: &str, n: usize, elapsed: Duration, lat: &Latencies) {
    for (verb, l) in lat {
        println!(
            "{store:9} {verb:28} {n:7} ops {:9.0} ops/s  p50 {:7.2} ms  p99 {:7.2} ms  max {:7.2} ms",
            n as f64 / elapsed.as_secs_f64(),
            pct(l, 0.5),
            pct(l, 0.99),
            l.last().map_or(0.0, |d| ms(*d)),
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(idx).map_or(0.0, |d| ms(*d))
}

/// A pod as a ReplicaSet would create it and the scheduler bind it: two
/// containers with env, ports, probes, resources and mounts (~1.7 KB of JSON).
fn pod(i: usize) -> Pod {
    let v = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("pod-{i}"), "namespace": NAMESPACE,
            "labels": {"app": "web", "tier": "frontend", "pod-template-hash": "7d9f8c6b5",
                       "shard": (i % 10).to_string()},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-26T04:00:00Z"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "web-7d9f8c6b5", "uid": "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f",
                "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {
            "nodeName": format!("node-{}", i % 100),
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "volumes": [{"name": "config", "configMap": {"name": "web-config"}},
                        {"name": "cache", "emptyDir": {}}],
            "containers": [{
                "name": "web", "image": "registry.example.com/team/web:1.24.3",
                "command": ["/usr/local/bin/web"], "args": ["--port=8080", "--log-level=info"],
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "env": [{"name": "POD_INDEX", "value": i.to_string()},
                        {"name": "MODE", "value": "production"},
                        {"name": "CACHE_DIR", "value": "/var/cache/web"}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                              "limits": {"cpu": "500m", "memory": "256Mi"}},
                "volumeMounts": [{"name": "config", "mountPath": "/etc/web", "readOnly": true},
                                 {"name": "cache", "mountPath": "/var/cache/web"}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080},
                                   "periodSeconds": 5},
                "livenessProbe": {"tcpSocket": {"port": 8080}, "initialDelaySeconds": 10},
                "imagePullPolicy": "IfNotPresent"
            }, {
                "name": "log-shipper", "image": "registry.example.com/infra/shipper:0.9.1",
                "args": ["--source=/var/log/web", "--sink=tcp://logs.example.com:5140"],
                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
                "volumeMounts": [{"name": "cache", "mountPath": "/var/log/web"}]
            }]
        }
    });
    serde_json::from_value(v).expect("the bench pod matches the Pod type")
}

/// A temporary directory removed on drop.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new(what: &str) -> anyhow::Result<TempDir> {
        let mut rnd = [0u8; 6];
        getrandom::getrandom(&mut rnd).map_err(|e| anyhow!("getrandom: {e}"))?;
        let tag: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
        let path = std::env::temp_dir().join(format!("corral-bench-{what}-{tag}"));
        std::fs::create_dir_all(&path).with_context(|| format!("mkdir {}", path.display()))?;
        Ok(TempDir { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A running corral-master, killed on drop.
struct Master {
    child: Child,
    dir: TempDir,
    /// Kept open: a closed pipe would make the master's next println fail.
    _stdout: BufReader<ChildStdout>,
}

impl Master {
    fn start(bin: &Path, etcd: Option<&Etcd>) -> anyhow::Result<Master> {
        let dir = TempDir::new("master")?;
        let mut cmd = Command::new(bin);
        cmd.arg("--data-dir")
            .arg(&dir.path)
            .args(["--listen", "127.0.0.1:0", "--no-controllers"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(e) = etcd {
            cmd.arg("--store")
                .arg(format!("etcd://127.0.0.1:{}", e.port));
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let stdout = child.stdout.take().context("master stdout")?;
        let mut master = Master {
            child,
            dir,
            _stdout: BufReader::new(stdout),
        };
        // The kubeconfig is written before the address is printed.
        let mut line = String::new();
        master
            ._stdout
            .read_line(&mut line)
            .context("reading the master's stdout")?;
        if !line.starts_with("listening on ") {
            let status = master.child.try_wait().ok().flatten();
            bail!("corral-master did not start (printed {line:?}, exit {status:?})");
        }
        Ok(master)
    }

    fn memory(&self) -> anyhow::Result<String> {
        memory(self.child.id())
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time (user+system) of the master and of this bench (the clients).
struct Cpu {
    pid: u32,
    master: f64,
    bench: f64,
}

impl Cpu {
    fn now(pid: u32) -> Cpu {
        Cpu {
            pid,
            master: cpu_seconds(&pid.to_string()),
            bench: cpu_seconds("self"),
        }
    }

    fn report(&self, store: &str, what: &str, ops: usize) {
        let master = cpu_seconds(&self.pid.to_string()) - self.master;
        let bench = cpu_seconds("self") - self.bench;
        println!(
            "{store:9} {:28} cpu per op: master {:.3} ms, clients {:.3} ms",
            format!("{what} cpu"),
            master * 1000.0 / ops as f64,
            bench * 1000.0 / ops as f64,
        );
    }
}

/// utime + stime of /proc/PID/stat in seconds (0 when unreadable).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th of the whole line.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    // The kernel's USER_HZ is 100 on Linux.
    f.iter().sum::<f64>() / 100.0
}

/// VmRSS and VmHWM of a process, from /proc/PID/status.
fn memory(pid: u32) -> anyhow::Result<String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let field = |name: &str| -> String {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().strip_suffix(" kB"))
            .and_then(|kb| kb.trim().parse::<f64>().ok())
            .map_or("?".into(), |kb| format!("{:.1} MiB", kb / 1024.0))
    };
    Ok(format!(
        "VmRSS {}  VmHWM {}",
        field("VmRSS:"),
        field("VmHWM:")
    ))
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

fn etcd_installed() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("etcd").is_file()))
}

/// Debian's etcd on free 127.0.0.1 ports with its data in a temporary
/// directory, as tests/src/etcd.rs starts it; killed on drop.
struct Etcd {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl Etcd {
    fn start() -> anyhow::Result<Etcd> {
        let dir = TempDir::new("etcd")?;
        let (port, peer_port) = (free_port()?, free_port()?);
        let client = format!("http://127.0.0.1:{port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log_path = dir.path.join("etcd.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let child = Command::new("etcd")
            .arg("--name=corral-bench")
            .arg(format!("--data-dir={}", dir.path.join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=corral-bench={peer}"))
            .arg("--log-outputs=stderr")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawning etcd")?;
        let mut etcd = Etcd { child, port, dir };
        let deadline = Instant::now() + START_TIMEOUT;
        while !health(port) {
            if let Ok(Some(status)) = etcd.child.try_wait() {
                bail!(
                    "etcd exited during start ({status}), log {}",
                    log_path.display()
                );
            }
            if Instant::now() > deadline {
                bail!("etcd did not answer on {client} within {START_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(etcd)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(l.local_addr()?.port())
}

/// GET /health with a raw HTTP/1.0 request.
fn health(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if std::io::Write::write_all(&mut s, b"GET /health HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.contains("\"health\":\"true\"")
}
