//! corral-client against a real corral-master: every verb, watch, and the
//! reflector's cache following changes and surviving a master restart.

use std::time::{Duration, Instant};

use corral_api::core::{ConfigMap, Pod};
use corral_api::Resource;
use corral_client::{Client, DeleteParams, ListParams, Patch, Reflector, WatchEvent};
use corral_tests::master::Master;

fn client(m: &Master) -> Client {
    Client::from_kubeconfig(&m.kubeconfig()).expect("client from admin.kubeconfig")
}

fn config_map(name: &str, value: &str) -> ConfigMap {
    let mut cm = ConfigMap::named("default", name);
    cm.data.insert("k".into(), value.into());
    cm
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The master (whose helpers hold blocking HTTP clients) lives outside the
/// async part of a test.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

#[test]
fn verbs_and_errors() {
    let m = Master::start(&["--no-controllers"]).expect("master");
    runtime().block_on(verbs_and_errors_on(&m));
}

async fn verbs_and_errors_on(m: &Master) {
    let c = client(m);
    let created = c.create(&config_map("a", "1")).await.unwrap();
    assert!(!created.metadata.uid.is_empty());
    assert!(c
        .create(&config_map("a", "1"))
        .await
        .unwrap_err()
        .is_already_exists());

    let got: ConfigMap = c.get("default", "a").await.unwrap();
    assert_eq!(got.data["k"], "1");
    assert!(c
        .get_opt::<ConfigMap>("default", "nope")
        .await
        .unwrap()
        .is_none());

    let mut updated = got.clone();
    updated.data.insert("k".into(), "2".into());
    let updated = c.update(&updated).await.unwrap();
    // The first copy is stale now.
    assert!(c.update(&got).await.unwrap_err().is_conflict());

    let patched: ConfigMap = c
        .patch(
            "default",
            "a",
            &Patch::Merge(serde_json::json!({"data": {"k": "3"}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.data["k"], "3");
    assert_ne!(
        patched.metadata.resource_version,
        updated.metadata.resource_version
    );

    let list = c
        .list::<ConfigMap>("default", &ListParams::default())
        .await
        .unwrap();
    assert!(list
        .items
        .iter()
        .any(|i| i.metadata.name == "a" && i.kind == "ConfigMap"));

    c.delete::<ConfigMap>("default", "a", &DeleteParams::default())
        .await
        .unwrap();
    assert!(c
        .get::<ConfigMap>("default", "a")
        .await
        .unwrap_err()
        .is_not_found());

    let wrong = Client::new(m.url("").trim_end_matches('/'), "wrong", Some(&ca(m))).unwrap();
    assert_eq!(
        wrong
            .list::<Pod>("", &ListParams::default())
            .await
            .unwrap_err()
            .code(),
        Some(401)
    );
}

fn ca(m: &Master) -> Vec<u8> {
    std::fs::read(m.data_dir().join("pki/ca.crt")).expect("the master's CA")
}

#[test]
fn watch_and_bind() {
    let m = Master::start(&["--no-controllers"]).expect("master");
    runtime().block_on(watch_and_bind_on(&m));
}

async fn watch_and_bind_on(m: &Master) {
    let c = client(m);
    let list = c
        .list::<Pod>("default", &ListParams::default())
        .await
        .unwrap();
    let mut w = c
        .watch::<Pod>(
            "default",
            &ListParams::default(),
            &list.metadata.resource_version,
        )
        .await
        .unwrap();
    let mut pod = Pod::named("default", "p");
    pod.spec.containers.push(corral_api::core::Container {
        name: "c".into(),
        image: "busybox".into(),
        ..Default::default()
    });
    c.create(&pod).await.unwrap();
    c.bind("default", "p", "node-1").await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
            Ok(Some(Ok(WatchEvent::Bookmark { .. }))) => {}
            Ok(Some(Ok(ev))) => seen.push(ev),
            other => panic!("watch ended early: {other:?}"),
        }
    }
    assert!(matches!(&seen[0], WatchEvent::Added(p) if p.spec.node_name.is_empty()));
    assert!(matches!(&seen[1], WatchEvent::Modified(p) if p.spec.node_name == "node-1"));
    let on_node = c
        .list::<Pod>("", &ListParams::fields("spec.nodeName=node-1"))
        .await
        .unwrap();
    assert_eq!(on_node.items.len(), 1);
}

#[test]
fn reflector_follows_changes_and_master_restarts() {
    let mut m = Master::start(&["--no-controllers"]).expect("master");
    runtime().block_on(reflector_on(&mut m));
}

async fn reflector_on(m: &mut Master) {
    let c = client(m);
    c.create(&config_map("before", "1")).await.unwrap();
    let r = Reflector::<ConfigMap>::spawn(c.clone(), "default", ListParams::default());
    let cache = r.cache();
    tokio::time::timeout(Duration::from_secs(10), cache.ready())
        .await
        .expect("first list");
    assert!(cache.get("default", "before").is_some());

    c.create(&config_map("after", "1")).await.unwrap();
    eventually("the new object in the cache", || {
        cache.get("default", "after").is_some()
    })
    .await;
    c.delete::<ConfigMap>("default", "before", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the deletion in the cache", || {
        cache.get("default", "before").is_none()
    })
    .await;

    // The watch breaks with the master; the reflector resumes on its own.
    tokio::task::block_in_place(|| m.restart()).expect("master restart");
    let c = client(m);
    c.create(&config_map("restarted", "1")).await.unwrap();
    eventually("a change made after the restart", || {
        cache.get("default", "restarted").is_some()
    })
    .await;
    assert_eq!(cache.list_ns("default").len(), 2);
}
