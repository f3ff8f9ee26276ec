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
async fn etcd_fails_over_to_a_live_endpoint() {
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
