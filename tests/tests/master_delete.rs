//! Deletion with propagation (Background, Foreground, Orphan) and of whole
//! namespaces, JSON patch (RFC 6902), `dryRun=All` and immutable fields,
//! end to end against the real `corral-master` binary, partly through the
//! stock kubectl (skipped with a reason when it is missing).

use std::process::{Command, Stdio};

use corral_tests::master::{send, Master};
use reqwest::Method;
use serde_json::{json, Value};

const DEPLOYS: &str = "/apis/apps/v1/namespaces/default/deployments";
const RSS: &str = "/apis/apps/v1/namespaces/default/replicasets";
const PODS: &str = "/api/v1/namespaces/default/pods";
const CMS: &str = "/api/v1/namespaces/default/configmaps";

fn master() -> Master {
    // The API's own deletion: no garbage collector or controllers beside it.
    Master::start(&["--no-controllers"]).unwrap_or_else(|e| panic!("starting corral-master: {e}"))
}

fn template(app: &str) -> Value {
    json!({"metadata": {"labels": {"app": app}},
           "spec": {"containers": [{"name": "web", "image": "busybox:1.36"}]}})
}

fn deployment(name: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
           "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                    "template": template(name)}})
}

fn owner_ref(owner: &Value) -> Value {
    json!({"apiVersion": owner["apiVersion"], "kind": owner["kind"],
           "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
           "controller": true, "blockOwnerDeletion": true})
}

fn create(m: &Master, path: &str, body: &Value) -> Value {
    let (code, v) = m.call(Method::POST, path, Some(body));
    assert_eq!(code, 201, "creating at {path}: {v}");
    v
}

fn exists(m: &Master, path: &str) -> bool {
    let (code, v) = m.call(Method::GET, path, None);
    assert!(code == 200 || code == 404, "GET {path}: {code} {v}");
    code == 200
}

fn rv(m: &Master, path: &str) -> String {
    let (code, v) = m.call(Method::GET, path, None);
    assert_eq!(code, 200, "GET {path}: {v}");
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_else(|| panic!("no resourceVersion: {v}"))
        .to_string()
}

/// Deployment `name` -> ReplicaSet `name-rs` -> Pods `name-a`, `name-b`,
/// made by hand with ownerReferences as the controllers would.
fn chain(m: &Master, name: &str) -> (Value, Value) {
    let d = create(m, DEPLOYS, &deployment(name));
    let rs = create(
        m,
        RSS,
        &json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": format!("{name}-rs"), "ownerReferences": [owner_ref(&d)]},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                         "template": template(name)}}),
    );
    for p in ["a", "b"] {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("{name}-{p}"), "labels": {"app": name},
                         "ownerReferences": [owner_ref(&rs)]}});
        pod["spec"] = template(name)["spec"].clone();
        create(m, PODS, &pod);
    }
    (d, rs)
}

fn chain_paths(name: &str) -> [String; 4] {
    [
        format!("{DEPLOYS}/{name}"),
        format!("{RSS}/{name}-rs"),
        format!("{PODS}/{name}-a"),
        format!("{PODS}/{name}-b"),
    ]
}

#[test]
fn background_deletion_removes_dependents_recursively() {
    let m = master();
    chain(&m, "bg");
    create(
        &m,
        PODS,
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "loner"},
                "spec": template("x")["spec"]}),
    );
    let (code, v) = m.call(Method::DELETE, &format!("{DEPLOYS}/bg"), None);
    assert_eq!(code, 200, "{v}");
    for p in chain_paths("bg") {
        assert!(!exists(&m, &p), "{p} should be gone");
    }
    assert!(exists(&m, &format!("{PODS}/loner")), "unowned pods stay");
}

#[test]
fn a_dependent_with_another_live_owner_only_loses_the_reference() {
    let m = master();
    let (_, rs) = chain(&m, "shared");
    let cm = create(
        &m,
        CMS,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "keeper"}}),
    );
    let path = format!("{PODS}/shared-a");
    let (_, pod) = m.call(Method::GET, &path, None);
    let mut pod = pod;
    let mut second = owner_ref(&cm);
    second["controller"] = false.into();
    pod["metadata"]["ownerReferences"] = json!([owner_ref(&rs), second]);
    let (code, v) = m.call(Method::PUT, &path, Some(&pod));
    assert_eq!(code, 200, "{v}");
    let (code, v) = m.call(
        Method::DELETE,
        &format!("{RSS}/shared-rs?propagationPolicy=Background"),
        None,
    );
    assert_eq!(code, 200, "{v}");
    assert!(!exists(&m, &format!("{PODS}/shared-b")));
    let (code, kept) = m.call(Method::GET, &path, None);
    assert_eq!(code, 200, "the pod with a live second owner stays: {kept}");
    let refs = kept["metadata"]["ownerReferences"].as_array().unwrap();
    assert_eq!(refs.len(), 1, "{kept}");
    assert_eq!(refs[0]["uid"], cm["metadata"]["uid"]);
}

#[test]
fn foreground_deletion_marks_the_owner_then_removes_everything() {
    let m = master();
    chain(&m, "fg");
    let (code, v) = send(
        m.request(Method::DELETE, &format!("{DEPLOYS}/fg"))
            .json(&json!({"kind": "DeleteOptions", "apiVersion": "v1",
                          "propagationPolicy": "Foreground"})),
    );
    assert_eq!(code, 200, "{v}");
    assert!(v["metadata"]["deletionTimestamp"].is_string(), "{v}");
    assert_eq!(v["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    for p in chain_paths("fg") {
        assert!(!exists(&m, &p), "{p} should be gone");
    }
}

#[test]
fn foreground_deletion_keeps_an_owner_with_other_finalizers() {
    let m = master();
    let mut d = deployment("held");
    d["metadata"]["finalizers"] = json!(["example.com/hold"]);
    let d = create(&m, DEPLOYS, &d);
    let rs = create(
        &m,
        RSS,
        &json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": "held-rs", "ownerReferences": [owner_ref(&d)]},
                "spec": {"selector": {"matchLabels": {"app": "held"}},
                         "template": template("held")}}),
    );
    assert!(rs["metadata"]["uid"].is_string());
    let path = format!("{DEPLOYS}/held");
    let (code, v) = m.call(
        Method::DELETE,
        &format!("{path}?propagationPolicy=Foreground"),
        None,
    );
    assert_eq!(code, 200, "{v}");
    assert!(!exists(&m, &format!("{RSS}/held-rs")));
    let (_, left) = m.call(Method::GET, &path, None);
    assert_eq!(left["metadata"]["finalizers"], json!(["example.com/hold"]));
    assert!(left["metadata"]["deletionTimestamp"].is_string());
    let (code, v) = m.patch(
        &path,
        "application/merge-patch+json",
        r#"{"metadata":{"finalizers":null}}"#,
    );
    assert_eq!(code, 200, "{v}");
    assert!(!exists(&m, &path), "gone once its last finalizer is");
}

#[test]
fn orphan_deletion_keeps_dependents_without_the_reference() {
    let m = master();
    let (_, rs) = chain(&m, "orph");
    let (code, v) = send(
        m.request(Method::DELETE, &format!("{DEPLOYS}/orph"))
            .json(&json!({"propagationPolicy": "Orphan"})),
    );
    assert_eq!(code, 200, "{v}");
    assert!(!exists(&m, &format!("{DEPLOYS}/orph")));
    let (code, kept) = m.call(Method::GET, &format!("{RSS}/orph-rs"), None);
    assert_eq!(code, 200, "{kept}");
    assert!(kept["metadata"].get("ownerReferences").is_none(), "{kept}");
    for p in ["a", "b"] {
        let (code, pod) = m.call(Method::GET, &format!("{PODS}/orph-{p}"), None);
        assert_eq!(code, 200);
        assert_eq!(
            pod["metadata"]["ownerReferences"][0]["uid"], rs["metadata"]["uid"],
            "grandchildren keep their own owner"
        );
    }
    // The legacy flag means the same.
    let (code, v) = m.call(
        Method::DELETE,
        &format!("{RSS}/orph-rs?orphanDependents=true"),
        None,
    );
    assert_eq!(code, 200, "{v}");
    let (_, pod) = m.call(Method::GET, &format!("{PODS}/orph-a"), None);
    assert!(pod["metadata"].get("ownerReferences").is_none(), "{pod}");
}

#[test]
fn an_unknown_policy_is_refused_and_deletes_nothing() {
    let m = master();
    chain(&m, "bad");
    let (code, v) = m.call(
        Method::DELETE,
        &format!("{DEPLOYS}/bad?propagationPolicy=Eventually"),
        None,
    );
    assert_eq!(code, 422, "{v}");
    assert_eq!(v["details"]["causes"][0]["field"], "propagationPolicy");
    for p in chain_paths("bad") {
        assert!(exists(&m, &p), "{p} must still exist");
    }
}

#[test]
fn deleting_a_namespace_removes_everything_in_it() {
    let m = master();
    create(
        &m,
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}),
    );
    let ns = "/api/v1/namespaces/team";
    let mut d = deployment("web");
    d["metadata"]["namespace"] = "team".into();
    create(&m, "/apis/apps/v1/namespaces/team/deployments", &d);
    create(
        &m,
        &format!("{ns}/configmaps"),
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}}),
    );
    let mut held = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "held", "finalizers": ["example.com/hold"]}});
    held["spec"] = template("x")["spec"].clone();
    create(&m, &format!("{ns}/pods"), &held);
    create(
        &m,
        CMS,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "outside"}}),
    );

    let (code, v) = m.call(Method::DELETE, ns, None);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"]["phase"], "Terminating", "{v}");
    assert!(!exists(&m, ns));
    for list in [
        "/apis/apps/v1/namespaces/team/deployments",
        "/api/v1/namespaces/team/configmaps",
        "/api/v1/namespaces/team/pods",
    ] {
        let (code, l) = m.call(Method::GET, list, None);
        assert_eq!(code, 200);
        assert_eq!(l["items"], json!([]), "{list}: {l}");
    }
    assert!(
        exists(&m, &format!("{CMS}/outside")),
        "other namespaces untouched"
    );
    let (code, v) = m.call(Method::DELETE, "/api/v1/namespaces/default", None);
    assert_eq!(code, 403, "{v}");
}

#[test]
fn json_patch_over_http() {
    let m = master();
    create(&m, DEPLOYS, &deployment("jp"));
    let path = format!("{DEPLOYS}/jp");
    let (code, v) = m.patch(
        &path,
        "application/json-patch+json",
        r#"[{"op":"test","path":"/spec/replicas","value":2},
            {"op":"replace","path":"/spec/replicas","value":4},
            {"op":"add","path":"/metadata/labels","value":{"tier":"front"}},
            {"op":"copy","from":"/metadata/labels/tier","path":"/metadata/annotations"},
            {"op":"remove","path":"/metadata/annotations"},
            {"op":"add","path":"/spec/template/spec/containers/-","value":{"name":"side","image":"busybox:1.36"}},
            {"op":"move","from":"/spec/template/spec/containers/1","path":"/spec/template/spec/containers/0"}]"#,
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["spec"]["replicas"], 4);
    assert_eq!(v["metadata"]["labels"]["tier"], "front");
    assert_eq!(
        v["spec"]["template"]["spec"]["containers"][0]["name"],
        "side"
    );
    assert_eq!(v["metadata"]["generation"], 2);
    let before = rv(&m, &path);

    for (body, what) in [
        (
            r#"[{"op":"replace","path":"/spec/replicas","value":9},
                {"op":"test","path":"/spec/replicas","value":2}]"#,
            "a failed test",
        ),
        (r#"[{"op":"remove","path":"/spec/nope"}]"#, "a missing path"),
        (r#"[{"op":"shuffle","path":"/spec"}]"#, "an unknown op"),
    ] {
        let (code, v) = m.patch(&path, "application/json-patch+json", body);
        assert_eq!(code, 422, "{what}: {v}");
        assert_eq!(v["kind"], "Status");
        assert_eq!(rv(&m, &path), before, "{what} stored nothing");
    }
    let (code, v) = m.patch(&path, "application/json-patch+json", "{not json");
    assert_eq!(code, 400, "{v}");
    // A patch that applies but makes an invalid object is a validation error.
    let (code, v) = m.patch(
        &path,
        "application/json-patch+json",
        r#"[{"op":"replace","path":"/spec/replicas","value":-1}]"#,
    );
    assert_eq!(code, 422, "{v}");
    assert_eq!(v["details"]["causes"][0]["field"], "spec.replicas");
    assert_eq!(rv(&m, &path), before);
}

#[test]
fn dry_run_over_http_stores_nothing() {
    let m = master();
    let (code, v) = m.call(
        Method::POST,
        &format!("{DEPLOYS}?dryRun=All"),
        Some(&deployment("dry")),
    );
    assert_eq!(code, 201, "{v}");
    assert_eq!(
        v["spec"]["strategy"]["type"], "RollingUpdate",
        "defaults applied"
    );
    assert!(v["metadata"]["uid"].is_string());
    assert!(!exists(&m, &format!("{DEPLOYS}/dry")));
    let mut bad = deployment("dry");
    bad["spec"]["replicas"] = (-3).into();
    let (code, v) = m.call(Method::POST, &format!("{DEPLOYS}?dryRun=All"), Some(&bad));
    assert_eq!(code, 422, "validated: {v}");

    let created = create(&m, DEPLOYS, &deployment("dry"));
    let path = format!("{DEPLOYS}/dry");
    let before = rv(&m, &path);
    let (code, v) = m.call(
        Method::POST,
        &format!("{DEPLOYS}?dryRun=All"),
        Some(&deployment("dry")),
    );
    assert_eq!(code, 409, "{v}");
    let mut changed = created.clone();
    changed["spec"]["replicas"] = 7.into();
    let (code, v) = m.call(Method::PUT, &format!("{path}?dryRun=All"), Some(&changed));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["spec"]["replicas"], 7);
    assert_eq!(v["metadata"]["generation"], 2);
    let (code, v) = m.patch(
        &format!("{path}?dryRun=All"),
        "application/merge-patch+json",
        r#"{"spec":{"replicas":5}}"#,
    );
    assert_eq!((code, &v["spec"]["replicas"]), (200, &json!(5)), "{v}");
    let (code, v) = m.call(Method::DELETE, &format!("{path}?dryRun=All"), None);
    assert_eq!(code, 200, "{v}");
    let (code, v) = send(
        m.request(Method::DELETE, &path)
            .json(&json!({"kind": "DeleteOptions", "apiVersion": "v1", "dryRun": ["All"]})),
    );
    assert_eq!(
        code, 200,
        "dryRun in DeleteOptions, as kubectl sends it: {v}"
    );
    let (code, v) = m.call(Method::DELETE, &format!("{path}?dryRun=Some"), None);
    assert_eq!(code, 400, "{v}");
    let (_, now) = m.call(Method::GET, &path, None);
    assert_eq!(
        now["metadata"]["resourceVersion"].as_str(),
        Some(before.as_str())
    );
    assert_eq!(now["spec"]["replicas"], 2);
}

#[test]
fn immutable_fields_are_refused_with_their_path() {
    let m = master();
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "im"}});
    pod["spec"] = template("im")["spec"].clone();
    pod["spec"]["tolerations"] = json!([{"key": "a", "operator": "Exists"}]);
    create(&m, PODS, &pod);
    let path = format!("{PODS}/im");
    let before = rv(&m, &path);
    for (patch, what) in [
        (
            r#"{"spec":{"containers":[{"name":"web","command":["sh"]}]}}"#,
            "a command",
        ),
        (
            r#"{"spec":{"restartPolicy":"Never"}}"#,
            "the restart policy",
        ),
        (r#"{"spec":{"tolerations":[]}}"#, "removing a toleration"),
    ] {
        let (code, v) = m.patch(&path, "application/strategic-merge-patch+json", patch);
        assert_eq!(code, 422, "{what}: {v}");
        assert_eq!(v["reason"], "Invalid");
        assert_eq!(v["details"]["causes"][0]["field"], "spec", "{v}");
        assert_eq!(v["details"]["causes"][0]["reason"], "FieldValueForbidden");
        assert_eq!(rv(&m, &path), before, "{what} stored nothing");
    }
    let (code, v) = m.patch(
        &path,
        "application/strategic-merge-patch+json",
        r#"{"spec":{"activeDeadlineSeconds":60,
                    "containers":[{"name":"web","image":"busybox:1.37"}],
                    "tolerations":[{"key":"a","operator":"Exists"},{"key":"b","operator":"Exists"}]}}"#,
    );
    assert_eq!(code, 200, "allowed changes: {v}");
    assert_eq!(v["spec"]["containers"][0]["image"], "busybox:1.37");
    let (code, v) = m.patch(
        &format!("{path}/status"),
        "application/merge-patch+json",
        r#"{"status":{"phase":"Running"}}"#,
    );
    assert_eq!(code, 200, "status is not spec: {v}");

    for (base, kind) in [(DEPLOYS, "Deployment"), (RSS, "ReplicaSet")] {
        let mut obj = deployment("sel");
        obj["kind"] = kind.into();
        create(&m, base, &obj);
        let p = format!("{base}/sel");
        let before = rv(&m, &p);
        let (code, v) = m.patch(
            &p,
            "application/merge-patch+json",
            r#"{"spec":{"selector":{"matchLabels":{"app":"sel","v":"2"}},
                        "template":{"metadata":{"labels":{"app":"sel","v":"2"}}}}}"#,
        );
        assert_eq!(code, 422, "{kind}: {v}");
        assert_eq!(v["details"]["causes"][0]["field"], "spec.selector", "{v}");
        assert_eq!(rv(&m, &p), before);
        let (code, v) = m.patch(
            &p,
            "application/merge-patch+json",
            r#"{"spec":{"replicas":3}}"#,
        );
        assert_eq!(code, 200, "{kind}: other spec fields still change: {v}");
    }
}

fn have_kubectl() -> bool {
    Command::new("kubectl")
        .args(["version", "--client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One kubectl run bounded by coreutils `timeout`: (success, stdout, stderr).
fn kubectl(m: &Master, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new("timeout")
        .arg("60")
        .arg("kubectl")
        .arg("--kubeconfig")
        .arg(m.kubeconfig())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running kubectl");
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        pipe.write_all(text.as_bytes())
            .expect("writing kubectl's stdin");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("waiting for kubectl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn kubectl_ok(m: &Master, args: &[&str], stdin: Option<&str>) -> String {
    let (ok, out, err) = kubectl(m, args, stdin);
    assert!(ok, "kubectl {args:?} failed:\n{out}\n{err}");
    out
}

const MANIFEST: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: kc
spec:
  replicas: 2
  selector:
    matchLabels:
      app: kc
  template:
    metadata:
      labels:
        app: kc
    spec:
      containers:
      - name: web
        image: busybox:1.36
";

#[test]
fn kubectl_json_patch_and_server_dry_run() {
    if !have_kubectl() {
        corral_tests::skip!("kubectl is not installed");
    }
    let m = master();
    let path = format!("{DEPLOYS}/kc");

    // apply --dry-run=server of a new object creates nothing.
    let out = kubectl_ok(
        &m,
        &["apply", "--dry-run=server", "-f", "-"],
        Some(MANIFEST),
    );
    assert!(out.contains("server dry run"), "{out}");
    assert!(!exists(&m, &path));

    kubectl_ok(&m, &["apply", "-f", "-"], Some(MANIFEST));
    let before = rv(&m, &path);
    let scaled = MANIFEST.replace("replicas: 2", "replicas: 6");
    let out = kubectl_ok(&m, &["apply", "--dry-run=server", "-f", "-"], Some(&scaled));
    assert!(
        out.contains("configured") && out.contains("server dry run"),
        "{out}"
    );
    let out = kubectl_ok(&m, &["delete", "deploy", "kc", "--dry-run=server"], None);
    assert!(out.contains("server dry run"), "{out}");
    let (_, now) = m.call(Method::GET, &path, None);
    assert_eq!(
        now["metadata"]["resourceVersion"].as_str(),
        Some(before.as_str())
    );
    assert_eq!(now["spec"]["replicas"], 2);

    kubectl_ok(
        &m,
        &[
            "patch",
            "deploy",
            "kc",
            "--type=json",
            "-p",
            r#"[{"op":"test","path":"/spec/replicas","value":2},{"op":"replace","path":"/spec/replicas","value":3}]"#,
        ],
        None,
    );
    let (_, now) = m.call(Method::GET, &path, None);
    assert_eq!(now["spec"]["replicas"], 3);
    let after = rv(&m, &path);
    let (ok, out, err) = kubectl(
        &m,
        &[
            "patch",
            "deploy",
            "kc",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/replicas","value":8},{"op":"test","path":"/spec/replicas","value":2}]"#,
        ],
        None,
    );
    assert!(!ok, "a failed test op must fail kubectl: {out}");
    assert!(err.contains("test failed"), "{err}");
    assert_eq!(rv(&m, &path), after, "nothing stored");
}
