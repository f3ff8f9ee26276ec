//! The behaviour every [`Store`] backend must have, as one test suite.
//!
//! Compiled into the library (not only under `cfg(test)`) so that the whole-binary
//! tests in `tests/` run the same suite against a real etcd. Each case gets a fresh
//! store from `make`; a case panics (like `assert!`) on the first difference.

use std::sync::Arc;
use std::time::Duration;

use super::{Event, KeyValue, ListOptions, Store, StoreError, WatchStream};

/// How long any single awaited step may take before the case fails.
const STEP: Duration = Duration::from_secs(20);

/// Run every case in order, each on a fresh store.
pub async fn run_all(mut make: impl FnMut() -> Arc<dyn Store>) {
    basics(make().as_ref()).await;
    paged_list_is_one_snapshot(make().as_ref()).await;
    watch_in_order_and_resumable(make().as_ref()).await;
    watch_slow_reader_misses_nothing(make()).await;
    compaction(make().as_ref()).await;
    concurrent_compare_and_swap(make(), 8, 25).await;
}

async fn step<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no answer within {STEP:?}"),
    }
}

async fn next_event(w: &mut WatchStream, what: &str) -> Event {
    match step(what, w.next()).await {
        Some(Ok(e)) => e,
        Some(Err(e)) => panic!("{what}: watch failed: {e}"),
        None => panic!("{what}: watch ended"),
    }
}

fn json(n: usize) -> Vec<u8> {
    format!("{{\"n\":{n}}}").into_bytes()
}

/// create/get/update/delete and their preconditions.
pub async fn basics(s: &dyn Store) {
    let key = "/registry/pods/default/a";
    let r0 = s.current_revision().await.expect("current revision");
    assert!(r0 >= 1, "revisions start at 1, got {r0}");
    assert_eq!(s.get(key).await.expect("get missing"), None);

    let r1 = s.create(key, json(1)).await.expect("create");
    assert!(r1 > r0, "create revision {r1} after {r0}");
    let got = s.get(key).await.expect("get").expect("created key present");
    assert_eq!((got.create_revision, got.mod_revision), (r1, r1));
    assert_eq!(got.value, json(1));
    match s.create(key, json(9)).await {
        Err(StoreError::AlreadyExists { key: k }) => assert_eq!(k, key),
        other => panic!("second create: expected AlreadyExists, got {other:?}"),
    }

    let r2 = s.update(key, json(2), r1).await.expect("update");
    assert!(r2 > r1);
    let got = s.get(key).await.expect("get").expect("present");
    assert_eq!((got.create_revision, got.mod_revision), (r1, r2));
    match s.update(key, json(3), r1).await {
        Err(StoreError::Conflict {
            expected, actual, ..
        }) => assert_eq!((expected, actual), (r1, r2)),
        other => panic!("stale update: expected Conflict, got {other:?}"),
    }
    assert_eq!(
        s.get(key).await.expect("get").expect("present").value,
        json(2)
    );
    match s.update("/registry/pods/default/none", json(1), r1).await {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("update of a missing key: expected NotFound, got {other:?}"),
    }

    match s.delete(key, Some(r1)).await {
        Err(StoreError::Conflict { actual, .. }) => assert_eq!(actual, r2),
        other => panic!("stale delete: expected Conflict, got {other:?}"),
    }
    let (prev, r3) = s.delete(key, Some(r2)).await.expect("delete");
    assert!(r3 > r2);
    assert_eq!((prev.value, prev.mod_revision), (json(2), r2));
    assert_eq!(s.get(key).await.expect("get deleted"), None);
    match s.delete(key, None).await {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("delete of a missing key: expected NotFound, got {other:?}"),
    }
    let r4 = s.create(key, json(4)).await.expect("create again");
    let got = s.get(key).await.expect("get").expect("present");
    assert_eq!((got.create_revision, got.mod_revision), (r4, r4));
    assert_eq!(s.current_revision().await.expect("current revision"), r4);
}

/// limit + start_after at the first page's revision sees the state of that
/// revision, whatever is written between the pages.
pub async fn paged_list_is_one_snapshot(s: &dyn Store) {
    let prefix = "/registry/pods/";
    let key = |i: usize| format!("{prefix}ns/p{i:03}");
    for i in 0..25 {
        s.create(&key(i), json(i)).await.expect("create");
    }
    // Neighbours that share the prefix's characters but not the prefix.
    s.create("/registry/podsx/ns/p", json(0))
        .await
        .expect("create");
    s.create("/registry/pod", json(0)).await.expect("create");

    let first = s
        .list(
            prefix,
            ListOptions {
                limit: Some(10),
                ..Default::default()
            },
        )
        .await
        .expect("first page");
    assert_eq!(first.items.len(), 10);
    assert!(first.more, "25 keys, limit 10: more pages");
    let rev = first.revision;

    let p15 = s.get(&key(15)).await.expect("get").expect("present");
    s.update(&key(15), json(1500), p15.mod_revision)
        .await
        .expect("update");
    s.delete(&key(20), None).await.expect("delete");
    s.delete(&key(3), None).await.expect("delete");
    s.create(&format!("{prefix}ns/p999"), json(999))
        .await
        .expect("create");

    let mut all = first.items.clone();
    let mut last = first.items.last().expect("page").key.clone();
    loop {
        let opts = ListOptions {
            start_after: Some(last.clone()),
            limit: Some(10),
            revision: Some(rev),
        };
        let page = s.list(prefix, opts).await.expect("next page");
        assert_eq!(
            page.revision, rev,
            "pages are read at the first page's revision"
        );
        all.extend(page.items.iter().cloned());
        if !page.more {
            break;
        }
        last = page.items.last().expect("non-empty page").key.clone();
    }
    let keys: Vec<String> = all.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(keys, (0..25).map(key).collect::<Vec<_>>());
    for (i, kv) in all.iter().enumerate() {
        assert_eq!(kv.value, json(i), "{} as of revision {rev}", kv.key);
        assert!(kv.mod_revision <= rev);
    }

    let now = s
        .list(prefix, ListOptions::default())
        .await
        .expect("list now");
    assert!(!now.more);
    assert!(now.revision > rev);
    let keys: Vec<&str> = now.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys.len(), 24);
    assert!(!keys.contains(&key(20).as_str()) && !keys.contains(&key(3).as_str()));
    assert_eq!(
        keys.last().copied(),
        Some(format!("{prefix}ns/p999").as_str())
    );
    let p15 = now.items.iter().find(|kv| kv.key == key(15)).expect("p015");
    assert_eq!(p15.value, json(1500));

    let future = ListOptions {
        revision: Some(now.revision + 1000),
        ..Default::default()
    };
    match s.list(prefix, future).await {
        Err(StoreError::FutureRevision { .. }) => {}
        other => panic!("list at a future revision: expected FutureRevision, got {other:?}"),
    }
}

/// Events after the start revision, in order, with their previous values; a watch
/// started later from an older revision replays exactly the missed ones.
pub async fn watch_in_order_and_resumable(s: &dyn Store) {
    let prefix = "/registry/configmaps/";
    let key = "/registry/configmaps/ns/c";
    let start = s.current_revision().await.expect("current revision");
    let mut w = s.watch(prefix, start).await.expect("watch");

    let r1 = s.create(key, json(1)).await.expect("create");
    s.create("/registry/secrets/ns/c", json(0))
        .await
        .expect("create outside");
    let r2 = s.update(key, json(2), r1).await.expect("update");
    let (_, r3) = s.delete(key, Some(r2)).await.expect("delete");

    let expect_put = |e: Event, rev: i64, n: usize, prev: Option<i64>| match e {
        Event::Put { kv, prev: p } => {
            assert_eq!(
                (kv.key.as_str(), kv.mod_revision, kv.value),
                (key, rev, json(n))
            );
            assert_eq!(p.map(|p| p.mod_revision), prev);
        }
        other => panic!("expected a put at {rev}, got {other:?}"),
    };
    expect_put(next_event(&mut w, "create event").await, r1, 1, None);
    expect_put(next_event(&mut w, "update event").await, r2, 2, Some(r1));
    match next_event(&mut w, "delete event").await {
        Event::Delete { prev, revision } => {
            assert_eq!((revision, prev.mod_revision, prev.value), (r3, r2, json(2)));
        }
        other => panic!("expected a delete, got {other:?}"),
    }

    let mut resumed = s.watch(prefix, r1).await.expect("watch from r1");
    expect_put(
        next_event(&mut resumed, "replayed update").await,
        r2,
        2,
        Some(r1),
    );
    let replayed = next_event(&mut resumed, "replayed delete").await;
    assert_eq!(replayed.revision(), r3);

    // Nothing more is pending: the next event is the next write.
    let r4 = s.create(key, json(4)).await.expect("create again");
    expect_put(next_event(&mut w, "live after replay").await, r4, 4, None);
    expect_put(next_event(&mut resumed, "resumed live").await, r4, 4, None);
}

/// A watcher that does not read while many writes happen still gets every event
/// once, in order, when it reads.
pub async fn watch_slow_reader_misses_nothing(s: Arc<dyn Store>) {
    let prefix = "/registry/events/";
    let start = s.current_revision().await.expect("current revision");
    let mut w = s.watch(prefix, start).await.expect("watch");
    let writers: Vec<_> = (0..16)
        .map(|t| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut revs = Vec::new();
                for i in 0..300 {
                    let key = format!("/registry/events/ns/e{t}-{i}");
                    revs.push(s.create(&key, json(i)).await.expect("create"));
                }
                revs
            })
        })
        .collect();
    let mut written = Vec::new();
    for writer in writers {
        written.extend(step("writers", writer).await.expect("writer task"));
    }
    written.sort_unstable();
    let mut seen = Vec::with_capacity(written.len());
    while seen.len() < written.len() {
        let e = next_event(&mut w, "slow reader").await;
        assert!(
            matches!(e, Event::Put { prev: None, .. }),
            "creates only: {e:?}"
        );
        seen.push(e.revision());
    }
    assert_eq!(seen, written, "every write once, in revision order");
}

/// History before the compaction point is gone; current values are not.
pub async fn compaction(s: &dyn Store) {
    let key = "/registry/leases/ns/l";
    let mut rev = s.create(key, json(0)).await.expect("create");
    let first = rev;
    for i in 1..10 {
        rev = s.update(key, json(i), rev).await.expect("update");
    }
    let point = rev - 3;
    s.compact(point).await.expect("compact");
    assert_eq!(
        s.compacted_revision().await.expect("compacted revision"),
        point
    );
    match s.watch("/registry/leases/", first).await {
        Err(StoreError::Compacted {
            compact_revision, ..
        }) => assert_eq!(compact_revision, point),
        other => panic!("watch from a compacted revision: expected Compacted, got {other:?}"),
    }
    let old = ListOptions {
        revision: Some(first),
        ..Default::default()
    };
    match s.list("/registry/leases/", old).await {
        Err(StoreError::Compacted { .. }) => {}
        other => panic!("list at a compacted revision: expected Compacted, got {other:?}"),
    }
    // Compacting to an older point again changes nothing.
    s.compact(first).await.expect("compact below the point");
    assert_eq!(
        s.compacted_revision().await.expect("compacted revision"),
        point
    );

    let got = s.get(key).await.expect("get").expect("present");
    assert_eq!((got.value, got.create_revision), (json(9), first));
    let mut w = s
        .watch("/registry/leases/", point)
        .await
        .expect("watch at the point");
    for expected in point + 1..=rev {
        let e = next_event(&mut w, "events after the point").await;
        assert_eq!(e.revision(), expected);
    }
    let at_point = ListOptions {
        revision: Some(point),
        ..Default::default()
    };
    let listed = s
        .list("/registry/leases/", at_point)
        .await
        .expect("list at point");
    assert_eq!(
        listed.items[0].value,
        json(6),
        "value as of the compaction point"
    );
    match s.compact(rev + 100).await {
        Err(StoreError::FutureRevision { .. }) => {}
        other => panic!("compact to a future revision: expected FutureRevision, got {other:?}"),
    }
}

/// `tasks` writers each increment one counter `per_task` times by get + update
/// with the read mod_revision, retrying on Conflict: no increment is lost.
pub async fn concurrent_compare_and_swap(s: Arc<dyn Store>, tasks: usize, per_task: usize) {
    let key = "/registry/configmaps/ns/counter";
    s.create(key, json(0)).await.expect("create counter");
    let workers: Vec<_> = (0..tasks)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut conflicts = 0usize;
                for _ in 0..per_task {
                    loop {
                        let kv = s.get(key).await.expect("get").expect("counter");
                        let n = counter(&kv);
                        match s.update(key, json(n + 1), kv.mod_revision).await {
                            Ok(_) => break,
                            Err(StoreError::Conflict { .. }) => conflicts += 1,
                            Err(e) => panic!("update counter: {e}"),
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    let mut conflicts = 0;
    for w in workers {
        conflicts += step("counter writers", w).await.expect("writer task");
    }
    let kv = s.get(key).await.expect("get").expect("counter");
    assert_eq!(
        counter(&kv),
        tasks * per_task,
        "after {conflicts} conflicts"
    );
}

fn counter(kv: &KeyValue) -> usize {
    let text = std::str::from_utf8(&kv.value).expect("counter is UTF-8");
    text.trim_start_matches("{\"n\":")
        .trim_end_matches('}')
        .parse()
        .unwrap_or_else(|_| panic!("counter value {text}"))
}
