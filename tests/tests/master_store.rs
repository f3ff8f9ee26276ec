//! The master's store backends against the shared conformance suite (embedded in a
//! temporary directory, a real etcd on 127.0.0.1), etcd endpoint failover, crash
//! safety of the embedded store under SIGKILL, and bounded file growth with
//! compaction.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_master::store::{conformance, EmbeddedStore, EtcdStore, Store};
use corral_tests::etcd::{self, Etcd};
use corral_tests::skip;

/// Set in the child process of the crash test: the store file it writes to.
const CRASH_CHILD_ENV: &str = "CORRAL_TEST_STORE_CRASH_FILE";
/// Set in the child process of the crash test: which run this is (keys differ).
const CRASH_ROUND_ENV: &str = "CORRAL_TEST_STORE_CRASH_ROUND";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_conformance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut n = 0;
    conformance::run_all(|| {
        n += 1;
        let path = dir.path().join(format!("store{n}.redb"));
        Arc::new(EmbeddedStore::open(&path).expect("open embedded store"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_conformance() {
    if let Some(why) = etcd::missing() {
        skip!("{why}");
    }
    let server = Etcd::start();
    let mut n = 0;
    // One etcd, a fresh key prefix per case: the cases run one after another, so
    // revisions and compaction (global in etcd) are only theirs.
    conformance::run_all(|| {
        n += 1;
        let store = EtcdStore::new(vec![server.endpoint.clone()], &format!("/case{n}"));
        Arc::new(store.expect("etcd store"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_fails_over_and_keeps_prefixes_apart() {
    if let Some(why) = etcd::missing() {
        skip!("{why}");
    }
    let server = Etcd::start();
    let dead = format!("http://127.0.0.1:{}", corral_tests::registry::free_port());
    let store = EtcdStore::new(vec![dead.clone(), server.endpoint.clone()], "").expect("store");
    let start = store
        .current_revision()
        .await
        .expect("revision via the live endpoint");
    let mut w = store.watch("/registry/", start).await.expect("watch");
    let rev = store
        .create("/registry/pods/ns/a", b"{}".to_vec())
        .await
        .expect("create");
    let event = tokio::time::timeout(Duration::from_secs(20), w.next())
        .await
        .expect("event within 20s")
        .expect("stream open")
        .expect("event");
    assert_eq!(event.revision(), rev);

    // Stores with prefixes /c and /cx on one etcd do not see each other's keys.
    let c = EtcdStore::new(vec![server.endpoint.clone()], "/c").expect("store");
    let cx = EtcdStore::new(vec![server.endpoint.clone()], "/cx").expect("store");
    c.create("/k", b"c".to_vec()).await.expect("create");
    cx.create("/k", b"cx".to_vec()).await.expect("create");
    let listed = c.list("", Default::default()).await.expect("list");
    let keys: Vec<_> = listed
        .items
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_slice()))
        .collect();
    assert_eq!(keys, [("/k", b"c".as_slice())]);

    let only_dead = EtcdStore::new(vec![dead.clone()], "").expect("store");
    let err = only_dead.get("/x").await.expect_err("no etcd there");
    assert!(
        err.to_string().contains(&dead),
        "error names the endpoint: {err}"
    );
}

/// Not a test on its own: the child process of `embedded_store_survives_sigkill`
/// (does nothing unless that test set the environment variable).
#[test]
fn crash_child_process_entry() {
    let Some(path) = std::env::var_os(CRASH_CHILD_ENV) else {
        return;
    };
    let round = std::env::var(CRASH_ROUND_ENV).unwrap_or_default();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(async move {
        let store = Arc::new(EmbeddedStore::open(Path::new(&path)).expect("open store"));
        // Several writers, so group commits with more than one write happen too.
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let store = store.clone();
                let round = round.clone();
                tokio::spawn(async move {
                    for i in 0.. {
                        let key = format!("/registry/configmaps/crash/r{round}w{w}-{i}");
                        let value = serde_json::json!({"w": w, "i": i, "pad": "x".repeat(2000)});
                        let bytes = serde_json::to_vec(&value).expect("json");
                        store.create(&key, bytes).await.expect("create");
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ACK {key}").expect("stdout");
                        out.flush().expect("flush stdout");
                    }
                })
            })
            .collect();
        for w in writers {
            let _ = w.await;
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_survives_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.redb");
    let exe = std::env::current_exe().expect("test binary");
    let mut acked = Vec::new();
    for round in 0..3 {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child_process_entry", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(CRASH_CHILD_ENV, &path)
            .env(CRASH_ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn crash child");
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(key) = line.strip_prefix("ACK ") {
                    if tx.send(key.to_string()).is_err() {
                        break;
                    }
                }
            }
        });
        // Kill mid-load: after some acknowledged writes, at a moment unrelated to them.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut this_round = 0;
        while this_round < 150 + 37 * round && Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("round {round}: the crash child exited by itself: {status}");
            }
            if let Ok(key) = rx.recv_timeout(Duration::from_millis(200)) {
                acked.push(key);
                this_round += 1;
            }
        }
        child.kill().expect("SIGKILL the child");
        child.wait().expect("reap the child");
        // Acknowledgements printed before the kill also count.
        while let Ok(key) = rx.recv_timeout(Duration::from_millis(200)) {
            acked.push(key);
        }
        assert!(
            this_round > 0,
            "round {round}: the child acknowledged no write in 60s"
        );
    }

    let store = EmbeddedStore::open(&path).expect("reopen after SIGKILL");
    for key in &acked {
        let kv = store
            .get(key)
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("acknowledged write {key} is missing after SIGKILL"));
        let value: serde_json::Value = serde_json::from_slice(&kv.value)
            .unwrap_or_else(|e| panic!("{key}: half-written: {e}"));
        assert_eq!(value["pad"].as_str().map(str::len), Some(2000), "{key}");
    }
    let all = store
        .list("/registry/configmaps/crash/", Default::default())
        .await
        .expect("list");
    for kv in &all.items {
        serde_json::from_slice::<serde_json::Value>(&kv.value)
            .unwrap_or_else(|e| panic!("{}: half-written: {e}", kv.key));
    }
    assert!(all.items.len() >= acked.len());
    // The child's writers may have committed a little past the last printed line.
    eprintln!("{} acknowledged, {} stored", acked.len(), all.items.len());
    // Still writable, revisions continue.
    let rev = store
        .create("/after", b"{}".to_vec())
        .await
        .expect("write after recovery");
    assert!(rev > all.revision);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_file_stays_bounded_with_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.redb");
    let store = Arc::new(EmbeddedStore::open(&path).expect("open"));
    let keys = 20;
    let mut revs = vec![0; keys];
    for (k, rev) in revs.iter_mut().enumerate() {
        let key = format!("/registry/pods/ns/p{k}");
        *rev = store.create(&key, vec![b'a'; 4096]).await.expect("create");
    }
    let mut sizes = Vec::new();
    for round in 0..8u8 {
        for _ in 0..25 {
            for (k, rev) in revs.iter_mut().enumerate() {
                let key = format!("/registry/pods/ns/p{k}");
                *rev = store
                    .update(&key, vec![round; 4096], *rev)
                    .await
                    .expect("update");
            }
        }
        let current = store.current_revision().await.expect("revision");
        store.compact(current).await.expect("compact");
        sizes.push(std::fs::metadata(&path).expect("file size").len());
    }
    // Each round writes 500 values of 4 KiB (2 MB, twice that in the change log);
    // after compaction the freed pages are reused, so later rounds do not grow the
    // file the way the first ones did.
    eprintln!("file size after each compacted round: {sizes:?}");
    let (early, late) = (sizes[2], sizes[7]);
    assert!(
        late <= early + early / 2,
        "file grew from {early} to {late} bytes over 5 compacted rounds: {sizes:?}"
    );
}

/// Store figures for `scripts/bench-api` (ignored: run with `--ignored`; release
/// build for real numbers). `CORRAL_BENCH_OBJECTS` (default 10000) pod-sized
/// objects, `CORRAL_BENCH_CLIENTS` (default 16) concurrent clients, on the
/// embedded store and, when installed, on etcd.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore]
async fn store_bench() {
    let objects = env_usize("CORRAL_BENCH_OBJECTS", 10_000);
    let clients = env_usize("CORRAL_BENCH_CLIENTS", 16);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.redb");
    let embedded: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&path).expect("open"));
    bench_one("embedded", embedded, objects, clients, || {
        std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
    })
    .await;
    if let Some(why) = etcd::missing() {
        println!("etcd: skipped: {why}");
        return;
    }
    let server = Etcd::start();
    let store: Arc<dyn Store> =
        Arc::new(EtcdStore::new(vec![server.endpoint.clone()], "").expect("etcd store"));
    let data = server.data_dir().join("data");
    bench_one("etcd", store, objects, clients, || dir_size(&data)).await;
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// A pod-shaped JSON value of about 1.5 KB.
fn pod_json(i: usize, generation: usize) -> Vec<u8> {
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("pod-{i}"), "namespace": "bench",
                     "labels": {"app": "bench", "shard": (i % 10).to_string()},
                     "annotations": {"generation": generation.to_string()}},
        "spec": {"containers": [{"name": "c", "image": "docker.io/library/busybox:latest",
                 "command": ["httpd", "-f", "-p", "8080"],
                 "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}],
                 "nodeName": format!("node-{}", i % 100)},
        "status": {"phase": "Running", "podIP": format!("10.244.{}.{}", i / 250 % 250, i % 250),
                   "conditions": [{"type": "Ready", "status": "True"}],
                   "padding": "x".repeat(800)},
    });
    serde_json::to_vec(&pod).expect("json")
}

fn pod_key(i: usize) -> String {
    format!("/registry/pods/bench/pod-{i}")
}

/// Run `op(i)` for i in 0..n over `clients` tasks; (elapsed, sorted latencies).
async fn timed<F, Fut>(n: usize, clients: usize, op: F) -> (Duration, Vec<Duration>)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                for i in (c..n).step_by(clients) {
                    let t = Instant::now();
                    op(i).await;
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await.expect("bench task"));
    }
    all.sort_unstable();
    (start.elapsed(), all)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted
        .get(idx)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

fn report(backend: &str, what: &str, n: usize, elapsed: Duration, lat: &[Duration]) {
    println!(
        "{backend:9} {what:28} {n:7} ops {:9.0} ops/s  p50 {:7.2} ms  p99 {:7.2} ms",
        n as f64 / elapsed.as_secs_f64(),
        pct(lat, 0.5),
        pct(lat, 0.99)
    );
}

async fn bench_one(
    backend: &str,
    store: Arc<dyn Store>,
    n: usize,
    clients: usize,
    size: impl Fn() -> u64,
) {
    let s = store.clone();
    let (t, lat) = timed(n, clients, move |i| {
        let s = s.clone();
        async move {
            s.create(&pod_key(i), pod_json(i, 0)).await.expect("create");
        }
    })
    .await;
    report(backend, &format!("create ({clients} clients)"), n, t, &lat);

    let start = store.current_revision().await.expect("revision");
    let mut watch = store.watch("/registry/pods/", start).await.expect("watch");
    let watched = tokio::spawn(async move {
        let t = Instant::now();
        for _ in 0..n {
            watch.next().await.expect("open").expect("event");
        }
        t.elapsed()
    });
    let s = store.clone();
    let (t, lat) = timed(n, clients, move |i| {
        let s = s.clone();
        async move {
            let kv = s.get(&pod_key(i)).await.expect("get").expect("pod");
            s.update(&pod_key(i), pod_json(i, 1), kv.mod_revision)
                .await
                .expect("update");
        }
    })
    .await;
    report(
        backend,
        &format!("get+update ({clients} clients)"),
        n,
        t,
        &lat,
    );
    let w = watched.await.expect("watcher");
    println!(
        "{backend:9} watch delivered {n} updates in {:.0} ms",
        w.as_secs_f64() * 1000.0
    );

    let seq = n.min(1000);
    let s = store.clone();
    let (t, lat) = timed(seq, 1, move |i| {
        let s = s.clone();
        async move {
            let kv = s.get(&pod_key(i)).await.expect("get").expect("pod");
            s.update(&pod_key(i), pod_json(i, 2), kv.mod_revision)
                .await
                .expect("update");
        }
    })
    .await;
    report(backend, "get+update (1 client)", seq, t, &lat);

    let s = store.clone();
    let (t, lat) = timed(n, clients, move |i| {
        let s = s.clone();
        async move {
            s.get(&pod_key(i)).await.expect("get").expect("pod");
        }
    })
    .await;
    report(backend, &format!("get ({clients} clients)"), n, t, &lat);

    let mut lists = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let all = store
            .list("/registry/pods/", Default::default())
            .await
            .expect("list");
        lists.push(t.elapsed());
        assert_eq!(all.items.len(), n);
    }
    lists.sort_unstable();
    println!(
        "{backend:9} list of {n} objects: median {:.1} ms, max {:.1} ms; store size {:.1} MB",
        pct(&lists, 0.5),
        pct(&lists, 1.0),
        size() as f64 / 1e6
    );
}
