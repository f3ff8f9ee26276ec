//! The master's HTTP API, end to end against the real `corral-master` binary:
//! authentication, every verb on Pods and Deployments, validation errors with
//! field paths, optimistic concurrency, watch resume and 410, body limits,
//! discovery, and a restart that keeps everything.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use corral_tests::master::{send, Master};
use reqwest::Method;
use serde_json::{json, Value};

const PODS: &str = "/api/v1/namespaces/default/pods";
const DEPLOYS: &str = "/apis/apps/v1/namespaces/default/deployments";

/// The API alone: controllers would act on the hand-made objects.
fn master(extra: &[&str]) -> Master {
    let mut flags = vec!["--no-controllers"];
    flags.extend_from_slice(extra);
    Master::start(&flags).unwrap_or_else(|e| panic!("starting corral-master: {e}"))
}

fn pod(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "labels": labels},
           "spec": {"containers": [{"name": "c", "image": "busybox:1.36",
                                    "ports": [{"containerPort": 80}]}]}})
}

fn deployment(name: &str, replicas: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": name},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}},
                                 "spec": {"containers": [{"name": "web", "image": "busybox:1.36"}]}}}})
}

fn rv(v: &Value) -> i64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no resourceVersion in {v}"))
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn requests_without_a_valid_token_are_refused_and_change_nothing() {
    let m = master(&[]);
    let body = pod("intruder", json!({}));
    for token in [None, Some("wrong"), Some("")] {
        let mut r = m.anonymous(Method::POST, PODS).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let (code, status) = send(r);
        assert_eq!(code, 401, "token {token:?}: {status}");
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["reason"], "Unauthorized");
    }
    let join = std::fs::read_to_string(m.data_dir().join("join-token")).unwrap();
    let (code, _) = send(m.anonymous(Method::GET, PODS).bearer_auth(join.trim()));
    assert_eq!(code, 200, "the join token is accepted");
    let (code, list) = m.call(Method::GET, PODS, None);
    assert_eq!(code, 200);
    assert!(names(&list).is_empty(), "{list}");
    let (code, _) = send(m.anonymous(Method::GET, "/healthz"));
    assert_eq!(code, 200);
    let (code, _) = send(m.anonymous(Method::GET, "/version"));
    assert_eq!(code, 401);
}

#[test]
fn pod_verbs() {
    let m = master(&[]);
    let (code, created) = m.call(Method::POST, PODS, Some(&pod("web", json!({"app": "web"}))));
    assert_eq!(code, 201, "{created}");
    let meta = &created["metadata"];
    assert_eq!(meta["uid"].as_str().unwrap().len(), 36);
    assert!(meta["creationTimestamp"].is_string());
    assert_eq!(meta["generation"], 1);
    assert_eq!(meta["namespace"], "default");
    assert_eq!(
        created["spec"]["restartPolicy"], "Always",
        "defaults applied"
    );
    assert_eq!(created["status"]["phase"], "Pending");
    let first_rv = rv(&created);

    let (code, dup) = m.call(Method::POST, PODS, Some(&pod("web", json!({}))));
    assert_eq!((code, dup["reason"].as_str()), (409, Some("AlreadyExists")));

    let mut generated = pod("", json!({"app": "gen"}));
    generated["metadata"]["generateName"] = "gen-".into();
    let (code, g) = m.call(Method::POST, PODS, Some(&generated));
    assert_eq!(code, 201, "{g}");
    let gname = g["metadata"]["name"].as_str().unwrap().to_string();
    assert!(gname.starts_with("gen-") && gname.len() == 9, "{gname}");

    let (code, got) = m.call(Method::GET, &format!("{PODS}/web"), None);
    assert_eq!((code, rv(&got)), (200, first_rv));

    // Lists: selectors, all namespaces, paging.
    let (_, l) = m.call(
        Method::GET,
        &format!("{PODS}?labelSelector=app%3Dweb"),
        None,
    );
    assert_eq!(names(&l), ["web"]);
    assert_eq!(l["kind"], "PodList");
    assert!(rv(&l) >= first_rv);
    let (_, l) = m.call(
        Method::GET,
        &format!("{PODS}?fieldSelector=metadata.name%3D{gname}"),
        None,
    );
    assert_eq!(names(&l), std::slice::from_ref(&gname));
    let (_, l) = m.call(Method::GET, "/api/v1/pods", None);
    assert_eq!(names(&l).len(), 2);
    for i in 0..3 {
        m.call(
            Method::POST,
            PODS,
            Some(&pod(&format!("page-{i}"), json!({"page": "y"}))),
        );
    }
    let (_, p1) = m.call(
        Method::GET,
        &format!("{PODS}?limit=2&labelSelector=page"),
        None,
    );
    assert_eq!(names(&p1), ["page-0", "page-1"]);
    let cont = p1["metadata"]["continue"]
        .as_str()
        .expect("a continue token");
    let (_, p2) = m.call(
        Method::GET,
        &format!("{PODS}?limit=2&labelSelector=page&continue={cont}"),
        None,
    );
    assert_eq!(names(&p2), ["page-2"]);
    assert!(p2["metadata"].get("continue").is_none(), "{p2}");

    // Update: stale resourceVersion is a conflict, identity fields are kept.
    let mut stale = got.clone();
    stale["metadata"]["labels"]["v"] = "2".into();
    let (code, _) = m.call(Method::PUT, &format!("{PODS}/web"), Some(&stale));
    assert_eq!(code, 200);
    let (code, conflict) = m.call(Method::PUT, &format!("{PODS}/web"), Some(&stale));
    assert_eq!(
        (code, conflict["reason"].as_str()),
        (409, Some("Conflict")),
        "{conflict}"
    );
    let (_, cur) = m.call(Method::GET, &format!("{PODS}/web"), None);
    let mut forged = cur.clone();
    forged["metadata"]["uid"] = "forged".into();
    forged["status"] = json!({"phase": "Running"});
    let (code, upd) = m.call(Method::PUT, &format!("{PODS}/web"), Some(&forged));
    assert_eq!(code, 200, "{upd}");
    assert_eq!(upd["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(
        upd["status"]["phase"], "Pending",
        "status only through /status"
    );
    assert!(rv(&upd) > rv(&cur));

    // Patches.
    let (code, p) = m.patch(
        &format!("{PODS}/web"),
        "application/merge-patch+json",
        r#"{"metadata": {"labels": {"patched": "yes", "v": null}}}"#,
    );
    assert_eq!(code, 200, "{p}");
    assert_eq!(
        p["metadata"]["labels"],
        json!({"app": "web", "patched": "yes"})
    );
    let (code, p) = m.patch(
        &format!("{PODS}/web"),
        "application/strategic-merge-patch+json",
        r#"{"spec": {"containers": [{"name": "c", "image": "busybox:1.37"}]}}"#,
    );
    assert_eq!(code, 200, "{p}");
    assert_eq!(p["spec"]["containers"][0]["image"], "busybox:1.37");
    assert_eq!(
        p["spec"]["containers"][0]["ports"][0]["containerPort"], 80,
        "merged by name"
    );
    // JSON patches (RFC 6902) are tested in master_delete.rs.
    let (code, _) = m.patch(&format!("{PODS}/web"), "text/plain", "x");
    assert_eq!(code, 415);

    // Status subresource and binding.
    let mut st = p.clone();
    st["status"] = json!({"phase": "Running", "podIP": "10.1.0.5"});
    st["spec"]["containers"][0]["image"] = "ignored".into();
    let (code, s) = m.call(Method::PUT, &format!("{PODS}/web/status"), Some(&st));
    assert_eq!(code, 200, "{s}");
    assert_eq!(s["status"]["podIP"], "10.1.0.5");
    assert_eq!(s["spec"]["containers"][0]["image"], "busybox:1.37");
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "web"},
                         "target": {"kind": "Node", "name": "node-1"}});
    let (code, b) = m.call(Method::POST, &format!("{PODS}/web/binding"), Some(&binding));
    assert_eq!(code, 201, "{b}");
    let (_, bound) = m.call(Method::GET, &format!("{PODS}/web"), None);
    assert_eq!(bound["spec"]["nodeName"], "node-1");
    let (code, _) = m.call(Method::POST, &format!("{PODS}/web/binding"), Some(&binding));
    assert_eq!(code, 409, "bound once only");

    // Delete, and finalizers holding a delete back.
    let (code, _) = m.call(Method::DELETE, &format!("{PODS}/web"), None);
    assert_eq!(code, 200);
    let (code, gone) = m.call(Method::GET, &format!("{PODS}/web"), None);
    assert_eq!((code, gone["reason"].as_str()), (404, Some("NotFound")));
    let mut held = pod("held", json!({}));
    held["metadata"]["finalizers"] = json!(["example.com/keep"]);
    m.call(Method::POST, PODS, Some(&held));
    let (code, d) = m.call(
        Method::DELETE,
        &format!("{PODS}/held"),
        Some(&json!({"propagationPolicy": "Background"})),
    );
    assert_eq!(code, 200);
    assert!(d["metadata"]["deletionTimestamp"].is_string(), "{d}");
    let (code, _) = m.call(Method::GET, &format!("{PODS}/held"), None);
    assert_eq!(code, 200, "still there while finalized");
    let (code, _) = m.patch(
        &format!("{PODS}/held"),
        "application/merge-patch+json",
        r#"{"metadata": {"finalizers": null}}"#,
    );
    assert_eq!(code, 200);
    let (code, _) = m.call(Method::GET, &format!("{PODS}/held"), None);
    assert_eq!(code, 404, "deleted once the last finalizer is gone");

    let (code, _) = m.call(Method::DELETE, &format!("{PODS}?labelSelector=page"), None);
    assert_eq!(code, 200);
    let (_, l) = m.call(Method::GET, PODS, None);
    assert_eq!(names(&l), [gname]);
}

#[test]
fn deployment_verbs_scale_and_apply() {
    let m = master(&[]);
    let (code, d) = m.call(Method::POST, DEPLOYS, Some(&deployment("web", 2)));
    assert_eq!(code, 201, "{d}");
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");
    let (code, scale) = m.call(Method::GET, &format!("{DEPLOYS}/web/scale"), None);
    assert_eq!(code, 200);
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 2);
    assert_eq!(scale["status"]["selector"], "app=web");
    let (code, s) = m.patch(
        &format!("{DEPLOYS}/web/scale"),
        "application/merge-patch+json",
        r#"{"spec": {"replicas": 5}}"#,
    );
    assert_eq!((code, &s["spec"]["replicas"]), (200, &json!(5)), "{s}");
    let (_, got) = m.call(Method::GET, &format!("{DEPLOYS}/web"), None);
    assert_eq!(got["spec"]["replicas"], 5);
    assert_eq!(
        got["metadata"]["generation"], 2,
        "spec change bumps generation"
    );
    let mut put = scale.clone();
    put["spec"]["replicas"] = 1.into();
    let (code, _) = m.call(Method::PUT, &format!("{DEPLOYS}/web/scale"), Some(&put));
    assert_eq!(code, 409, "the scale's resourceVersion is stale");
    let (code, bad) = m.patch(
        &format!("{DEPLOYS}/web/scale"),
        "application/merge-patch+json",
        r#"{"spec": {"replicas": -1}}"#,
    );
    assert_eq!(code, 422, "{bad}");

    // Server-side apply: creates, then merges.
    let applied = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: api}\n  template:\n    metadata:\n      labels: {app: api}\n    spec:\n      containers:\n      - {name: api, image: busybox:1.36}\n";
    let path = format!("{DEPLOYS}/api?fieldManager=test");
    let (code, a) = m.patch(&path, "application/apply-patch+yaml", applied);
    assert_eq!(code, 201, "{a}");
    let (code, a) = m.patch(
        &path,
        "application/apply-patch+yaml",
        &applied.replace("replicas: 1", "replicas: 3"),
    );
    assert_eq!(code, 200, "{a}");
    assert_eq!(a["spec"]["replicas"], 3);

    let (code, _) = m.call(Method::DELETE, &format!("{DEPLOYS}/web"), None);
    assert_eq!(code, 200);
    let (_, l) = m.call(Method::GET, DEPLOYS, None);
    assert_eq!(names(&l), ["api"]);
}

#[test]
fn bad_input_is_refused_with_the_field_path() {
    let m = master(&[]);
    let mut typo = pod("typo", json!({}));
    typo["spec"]["containers"][0]["imagePullPolicyy"] = "Always".into();
    let (code, s) = m.call(Method::POST, PODS, Some(&typo));
    assert_eq!(code, 400, "{s}");
    let msg = s["message"].as_str().unwrap();
    assert!(
        msg.contains("unknown field \"spec.containers[0].imagePullPolicyy\""),
        "{msg}"
    );

    let (code, s) = m.call(Method::POST, DEPLOYS, Some(&deployment("neg", -1)));
    assert_eq!((code, s["reason"].as_str()), (422, Some("Invalid")), "{s}");
    assert_eq!(s["details"]["causes"][0]["field"], "spec.replicas");
    let (code, s) = m.call(Method::POST, PODS, Some(&pod("Bad_Name", json!({}))));
    assert_eq!(code, 422);
    assert_eq!(s["details"]["causes"][0]["field"], "metadata.name");

    let (code, _) = send(
        m.request(Method::POST, PODS)
            .header("Content-Type", "application/json")
            .body("{\"kind\": "),
    );
    assert_eq!(code, 400, "malformed JSON");
    let (code, _) = send(
        m.request(Method::POST, PODS)
            .header("Content-Type", "application/yaml")
            .body("kind: [\n"),
    );
    assert_eq!(code, 400, "malformed YAML");
    let (code, s) = m.call(Method::POST, PODS, Some(&deployment("wrongkind", 1)));
    assert_eq!(code, 400, "{s}");
    let (code, s) = m.call(Method::GET, "/api/v1/namespaces/default/widgets", None);
    assert_eq!((code, s["kind"].as_str()), (404, Some("Status")));
    let (code, _) = m.call(Method::GET, "/apis/apps/v2/deployments", None);
    assert_eq!(code, 404);
    let (code, s) = m.call(
        Method::POST,
        "/api/v1/namespaces/nope/pods",
        Some(&pod("x", json!({}))),
    );
    assert_eq!(code, 404, "{s}");

    let mut big = pod("big", json!({}));
    big["metadata"]["annotations"] = json!({"blob": "x".repeat(4 * 1024 * 1024)});
    let (code, s) = m.call(Method::POST, PODS, Some(&big));
    assert_eq!(
        (code, s["reason"].as_str()),
        (413, Some("RequestEntityTooLarge"))
    );

    let (_, l) = m.call(Method::GET, PODS, None);
    assert!(names(&l).is_empty(), "nothing stored: {l}");
    let (code, _) = m.call(Method::DELETE, "/api/v1/namespaces/default", None);
    assert_eq!(code, 403, "system namespaces stay");
}

/// Reads watch lines until `n` events arrived or the deadline passed.
fn watch_events(m: &Master, path: &str, n: usize, during: impl FnOnce()) -> Vec<Value> {
    let resp = m
        .request(Method::GET, path)
        .timeout(Duration::from_secs(30))
        .send()
        .expect("watch request");
    assert_eq!(resp.status().as_u16(), 200);
    during();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out = Vec::new();
    let mut lines = BufReader::new(resp).lines();
    while out.len() < n && Instant::now() < deadline {
        match lines.next() {
            Some(Ok(l)) if !l.trim().is_empty() => {
                out.push(serde_json::from_str(&l).expect("a JSON event"))
            }
            Some(Ok(_)) => {}
            _ => break,
        }
    }
    out
}

#[test]
fn watch_resumes_in_order() {
    let m = master(&[]);
    let (_, a) = m.call(Method::POST, PODS, Some(&pod("a", json!({"w": "1"}))));
    let from = rv(&a);
    // Resume after `a`: only later changes, in order.
    let events = watch_events(
        &m,
        &format!("{PODS}?watch=1&resourceVersion={from}&timeoutSeconds=20"),
        3,
        || {
            m.call(Method::POST, PODS, Some(&pod("b", json!({"w": "1"}))));
            m.patch(
                &format!("{PODS}/b"),
                "application/merge-patch+json",
                r#"{"metadata": {"labels": {"x": "y"}}}"#,
            );
            m.call(Method::DELETE, &format!("{PODS}/b"), None);
        },
    );
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["ADDED", "MODIFIED", "DELETED"], "{events:?}");
    let rvs: Vec<i64> = events.iter().map(|e| rv(&e["object"])).collect();
    assert!(
        rvs.windows(2).all(|w| w[0] < w[1]) && rvs[0] > from,
        "{rvs:?}"
    );
    assert!(events
        .iter()
        .all(|e| e["object"]["metadata"]["name"] == "b"));

    // Without a resourceVersion: the current objects first. A label change
    // out of the selector is a DELETED for that watcher.
    let events = watch_events(
        &m,
        "/api/v1/watch/namespaces/default/pods?labelSelector=w%3D1&timeoutSeconds=20",
        2,
        || {
            m.patch(
                &format!("{PODS}/a"),
                "application/merge-patch+json",
                r#"{"metadata": {"labels": {"w": "2"}}}"#,
            );
        },
    );
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["ADDED", "DELETED"], "{events:?}");
}

#[test]
fn compacted_history_is_gone() {
    let m = master(&["--compact-interval", "1", "--compact-keep", "1"]);
    let (_, a) = m.call(Method::POST, PODS, Some(&pod("a", json!({}))));
    let old = rv(&a);
    for i in 0..3 {
        m.patch(
            &format!("{PODS}/a"),
            "application/merge-patch+json",
            &format!(r#"{{"metadata": {{"labels": {{"i": "{i}"}}}}}}"#),
        );
    }
    std::thread::sleep(Duration::from_millis(2500));
    let events = watch_events(
        &m,
        &format!("{PODS}?watch=1&resourceVersion={old}&timeoutSeconds=10"),
        1,
        || {},
    );
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "ERROR");
    assert_eq!(events[0]["object"]["code"], 410);
    assert_eq!(events[0]["object"]["reason"], "Expired");
}

#[test]
fn discovery_and_tables() {
    let m = master(&[]);
    let (code, v) = m.call(Method::GET, "/version", None);
    assert_eq!((code, v["major"].as_str()), (200, Some("1")));
    let (_, apis) = m.call(Method::GET, "/apis", None);
    assert_eq!(apis["kind"], "APIGroupList");
    let (_, core) = m.call(Method::GET, "/api/v1", None);
    let pods = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pods")
        .unwrap();
    assert_eq!(pods["shortNames"], json!(["po"]));
    assert_eq!(pods["namespaced"], true);
    m.call(Method::POST, PODS, Some(&pod("t", json!({}))));
    let (code, t) = send(m.request(Method::GET, PODS).header(
        "Accept",
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
    ));
    assert_eq!((code, t["kind"].as_str()), (200, Some("Table")), "{t}");
    let cols: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(&cols[..5], ["Name", "Ready", "Status", "Restarts", "Age"]);
    assert_eq!(t["rows"][0]["cells"][0], "t");
    assert_eq!(t["rows"][0]["cells"][1], "0/1");
}

#[test]
fn restart_keeps_everything() {
    let mut m = master(&[]);
    let (_, p) = m.call(Method::POST, PODS, Some(&pod("keep", json!({}))));
    m.call(Method::POST, DEPLOYS, Some(&deployment("keep", 3)));
    let ca = std::fs::read(m.data_dir().join("pki/ca.crt")).unwrap();
    let kubeconfig = std::fs::read_to_string(m.kubeconfig()).unwrap();
    m.restart().expect("restart");
    assert_eq!(std::fs::read(m.data_dir().join("pki/ca.crt")).unwrap(), ca);
    assert_eq!(std::fs::read_to_string(m.kubeconfig()).unwrap(), kubeconfig);
    let (code, got) = m.call(Method::GET, &format!("{PODS}/keep"), None);
    assert_eq!(code, 200);
    assert_eq!(got["metadata"]["uid"], p["metadata"]["uid"]);
    assert_eq!(rv(&got), rv(&p));
    let (_, d) = m.call(Method::GET, &format!("{DEPLOYS}/keep"), None);
    assert_eq!(d["spec"]["replicas"], 3);
    let (_, p2) = m.call(Method::POST, PODS, Some(&pod("after", json!({}))));
    assert!(rv(&p2) > rv(&p), "revisions go on");
}
