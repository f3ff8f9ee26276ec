//! The `corral` cluster verbs against a real `corral-master` on 127.0.0.1,
//! with the admin.kubeconfig it wrote: apply (created, unchanged,
//! configured), get (tables, -o json|yaml|name, -l, -A, -w), describe with
//! events, scale, delete (-f, names), rollout, cordon/uncordon/drain,
//! config view, and the errors: an unknown field, an invalid value and a
//! wrong token, each one line with exit status 1 and nothing stored.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use corral_tests::corral::workspace_binary;
use corral_tests::master::Master;
use reqwest::Method;
use serde_json::{json, Value};

const MANIFEST: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: busybox:1.36
        command: [\"httpd\", \"-f\", \"-p\", \"8080\"]
        ports:
        - containerPort: 8080
        resources:
          limits:
            cpu: 500m
            memory: 64Mi
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 8080
";

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// One `corral` run with `kubeconfig`, bounded by coreutils `timeout`.
fn corral_with(kubeconfig: &Path, args: &[&str]) -> Out {
    let bin = workspace_binary("corral").expect("corral binary");
    let out = Command::new("timeout")
        .arg("60")
        .arg(bin)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("running corral");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn corral(m: &Master, args: &[&str]) -> Out {
    corral_with(&m.kubeconfig(), args)
}

fn ok(m: &Master, args: &[&str]) -> String {
    let o = corral(m, args);
    assert_eq!(
        o.code, 0,
        "corral {args:?} failed:\n{}\n{}",
        o.stdout, o.stderr
    );
    o.stdout
}

/// A failing run: exit 1 and exactly one `error: ` line.
fn fails(m: &Master, args: &[&str]) -> String {
    let o = corral(m, args);
    assert_eq!(
        o.code, 1,
        "corral {args:?}: expected exit 1:\n{}\n{}",
        o.stdout, o.stderr
    );
    assert_eq!(
        o.stderr.lines().count(),
        1,
        "one line expected: {:?}",
        o.stderr
    );
    assert!(o.stderr.starts_with("error: "), "{:?}", o.stderr);
    o.stderr
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("writing a manifest");
    p
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn start() -> Master {
    Master::start(&[]).expect("starting corral-master")
}

#[test]
fn apply_get_describe_scale_delete() {
    let m = start();
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "web.yaml", MANIFEST);

    let out = ok(&m, &["apply", "-f", s(&f)]);
    assert_eq!(out, "deployment.apps/web created\nservice/web created\n");
    let out = ok(&m, &["apply", "-f", s(&f)]);
    assert_eq!(
        out,
        "deployment.apps/web unchanged\nservice/web unchanged\n"
    );
    let (_, before) = m.call(
        Method::GET,
        "/apis/apps/v1/namespaces/default/deployments/web",
        None,
    );
    write(
        dir.path(),
        "web.yaml",
        &MANIFEST.replace("replicas: 2", "replicas: 3"),
    );
    let out = ok(&m, &["apply", "-f", s(&f)]);
    assert_eq!(
        out,
        "deployment.apps/web configured\nservice/web unchanged\n"
    );
    let (_, after) = m.call(
        Method::GET,
        "/apis/apps/v1/namespaces/default/deployments/web",
        None,
    );
    assert_eq!(after["spec"]["replicas"], 3);
    assert_eq!(after["metadata"]["uid"], before["metadata"]["uid"]);
    // Server defaults survive an apply that does not mention them.
    assert_eq!(after["spec"]["strategy"]["type"], "RollingUpdate");

    // A second namespace, for -A.
    let shop = write(
        dir.path(),
        "shop.yaml",
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n---\n{}",
            MANIFEST.split("---").next().unwrap().replace(
                "  name: web\n  labels",
                "  name: cart\n  namespace: shop\n  labels"
            )
        ),
    );
    let out = ok(&m, &["apply", "-f", s(&shop)]);
    assert_eq!(
        out,
        "namespace/shop created\ndeployment.apps/cart created\n"
    );

    let table = ok(&m, &["get", "deploy"]);
    let mut lines = table.lines();
    let head: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(head, ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..2], ["web", "0/3"]);
    assert!(lines.next().is_none(), "{table}");

    let wide = ok(&m, &["get", "deployments.apps", "-o", "wide"]);
    assert!(wide.lines().next().unwrap().contains("IMAGES"), "{wide}");
    assert!(wide.contains("busybox:1.36"), "{wide}");

    let all = ok(&m, &["get", "deploy", "-A"]);
    let head = all.lines().next().unwrap();
    assert!(head.starts_with("NAMESPACE "), "{all}");
    assert!(
        all.lines()
            .any(|l| l.starts_with("shop ") && l.contains("cart")),
        "{all}"
    );
    assert!(
        all.lines()
            .any(|l| l.starts_with("default ") && l.contains("web")),
        "{all}"
    );

    let shop_only = ok(&m, &["get", "deploy", "-n", "shop", "-o", "name"]);
    assert_eq!(shop_only, "deployment.apps/cart\n");

    let j: Value = serde_json::from_str(&ok(&m, &["get", "deploy", "web", "-o", "json"])).unwrap();
    assert_eq!(j["kind"], "Deployment");
    assert_eq!(j["spec"]["replicas"], 3);
    let list: Value = serde_json::from_str(&ok(&m, &["get", "svc", "-o", "json"])).unwrap();
    assert_eq!(list["kind"], "List");
    // `kubernetes` (the master's own Service) sorts first, as in Kubernetes.
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            assert_eq!(i["kind"], "Service");
            i["metadata"]["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(names, ["kubernetes", "web"]);
    let y = ok(&m, &["get", "deploy/web", "-o", "yaml"]);
    assert!(
        y.contains("kind: Deployment") && y.contains("replicas: 3"),
        "{y}"
    );

    let sel = ok(&m, &["get", "deploy", "-l", "app=web"]);
    assert!(sel.contains("web"), "{sel}");
    let o = corral(&m, &["get", "deploy", "-l", "app=nothing"]);
    assert_eq!(o.code, 0);
    assert_eq!(o.stdout, "");
    assert!(
        o.stderr.contains("No resources found in default namespace"),
        "{}",
        o.stderr
    );

    // describe shows an event about this deployment, not one about another.
    let web_uid = after["metadata"]["uid"].as_str().unwrap().to_string();
    for (name, target, reason) in [
        ("web.1", "web", "ScalingReplicaSet"),
        ("other.1", "other", "Unrelated"),
    ] {
        let ev = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": "default"},
            "involvedObject": {"kind": "Deployment", "name": target, "namespace": "default",
                               "apiVersion": "apps/v1", "uid": if target == "web" { web_uid.as_str() } else { "" }},
            "reason": reason, "message": "Scaled up replica set web-1 to 3", "type": "Normal",
            "source": {"component": "deployment-controller"}
        });
        let (code, body) = m.call(Method::POST, "/api/v1/namespaces/default/events", Some(&ev));
        assert_eq!(code, 201, "{body}");
    }
    let d = ok(&m, &["describe", "deploy", "web"]);
    assert!(d.contains("Name:               web"), "{d}");
    assert!(d.contains("Replicas:           3 desired"), "{d}");
    assert!(d.contains("ScalingReplicaSet"), "{d}");
    assert!(!d.contains("Unrelated"), "{d}");

    assert_eq!(
        ok(&m, &["scale", "deploy/web", "--replicas", "5"]),
        "deployment.apps/web scaled\n"
    );
    let (_, v) = m.call(
        Method::GET,
        "/apis/apps/v1/namespaces/default/deployments/web",
        None,
    );
    assert_eq!(v["spec"]["replicas"], 5);
    let e = fails(&m, &["scale", "deployment", "web", "--replicas", "-1"]);
    assert!(
        e.contains("spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
        "{e}"
    );
    let (_, v) = m.call(
        Method::GET,
        "/apis/apps/v1/namespaces/default/deployments/web",
        None,
    );
    assert_eq!(v["spec"]["replicas"], 5);

    let out = ok(&m, &["delete", "-f", s(&f)]);
    assert_eq!(
        out,
        "deployment.apps \"web\" deleted\nservice \"web\" deleted\n"
    );
    let (code, _) = m.call(
        Method::GET,
        "/apis/apps/v1/namespaces/default/deployments/web",
        None,
    );
    assert_eq!(code, 404);
    let (code, _) = m.call(Method::GET, "/api/v1/namespaces/default/services/web", None);
    assert_eq!(code, 404);
    let e = fails(&m, &["delete", "deploy", "web"]);
    assert_eq!(e, "error: deployments.apps \"web\" not found\n");
    assert_eq!(
        ok(&m, &["delete", "deploy", "web", "--ignore-not-found"]),
        ""
    );
    let out = ok(&m, &["delete", "deploy", "cart", "-n", "shop"]);
    assert_eq!(out, "deployment.apps \"cart\" deleted\n");
    let (_, l) = m.call(Method::GET, "/apis/apps/v1/deployments", None);
    assert_eq!(l["items"].as_array().map(Vec::len), Some(0), "{l}");
}

#[test]
fn apply_of_a_malformed_manifest_names_the_field_and_creates_nothing() {
    let m = start();
    let dir = tempfile::tempdir().unwrap();
    // The first document is fine, the second has a typo: nothing is sent.
    let bad = MANIFEST.replace("  ports:\n  - port: 80", "  portz:\n  - port: 80");
    let f = write(dir.path(), "bad.yaml", &bad);
    let e = fails(&m, &["apply", "-f", s(&f)]);
    assert!(
        e.contains("bad.yaml") && e.contains("spec.portz") && e.contains("unknown field"),
        "{e}"
    );
    let (_, l) = m.call(Method::GET, "/apis/apps/v1/deployments", None);
    assert_eq!(l["items"].as_array().map(Vec::len), Some(0), "{l}");

    // A value only the server checks: its Status message, with the path.
    let neg = write(
        dir.path(),
        "neg.yaml",
        &MANIFEST.replace("replicas: 2", "replicas: -1"),
    );
    let e = fails(&m, &["apply", "-f", s(&neg)]);
    assert!(
        e.contains("Deployment.apps \"web\" is invalid: spec.replicas: Invalid value: -1"),
        "{e}"
    );
    let (_, l) = m.call(Method::GET, "/apis/apps/v1/deployments", None);
    assert_eq!(l["items"].as_array().map(Vec::len), Some(0), "{l}");

    let e = fails(&m, &["get", "widgets"]);
    assert!(
        e.contains("doesn't have a resource type \"widgets\""),
        "{e}"
    );
}

#[test]
fn a_wrong_token_is_one_clear_401_line_and_changes_nothing() {
    let m = start();
    let dir = tempfile::tempdir().unwrap();
    let kc = std::fs::read_to_string(m.kubeconfig()).unwrap();
    let token_line = kc
        .lines()
        .find(|l| l.trim_start().starts_with("token:"))
        .unwrap();
    let wrong = write(
        dir.path(),
        "wrong.kubeconfig",
        &kc.replace(token_line, "    token: not-the-token"),
    );
    let f = write(dir.path(), "web.yaml", MANIFEST);
    for args in [&["get", "pods"][..], &["apply", "-f", s(&f)]] {
        let o = corral_with(&wrong, args);
        assert_eq!(o.code, 1, "{args:?}: {}", o.stderr);
        assert_eq!(o.stderr.lines().count(), 1, "{}", o.stderr);
        assert!(
            o.stderr.contains("401 Unauthorized") && o.stderr.contains("\"admin\""),
            "{}",
            o.stderr
        );
    }
    let (_, l) = m.call(Method::GET, "/apis/apps/v1/deployments", None);
    assert_eq!(l["items"].as_array().map(Vec::len), Some(0), "{l}");
}

#[test]
fn config_view_redacts_and_use_context_switches() {
    let m = start();
    let dir = tempfile::tempdir().unwrap();
    let kc = std::fs::read_to_string(m.kubeconfig()).unwrap();
    let token = kc
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("token:"))
        .unwrap()
        .trim()
        .to_string();
    let view = ok(&m, &["config", "view"]);
    assert!(!view.contains(&token), "{view}");
    assert!(
        view.contains("token: REDACTED") && view.contains("DATA+OMITTED"),
        "{view}"
    );
    assert!(view.contains(&m.addr), "{view}");
    let raw = ok(&m, &["config", "view", "--raw"]);
    assert!(raw.contains(&token));

    // use-context on a copy with a second context, pointing nowhere.
    let copy = write(
        dir.path(),
        "config",
        &kc.replace("contexts:\n", "contexts:\n- name: elsewhere\n  context:\n    cluster: corral\n    user: admin\n    namespace: shop\n"),
    );
    let o = corral_with(&copy, &["config", "use-context", "elsewhere"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(
        corral_with(&copy, &["config", "current-context"]).stdout,
        "elsewhere\n"
    );
    // The new context's namespace is the default one now.
    let o = corral_with(&copy, &["get", "pods"]);
    assert!(
        o.stderr.contains("No resources found in shop namespace"),
        "{}",
        o.stderr
    );
    let o = corral_with(&copy, &["config", "use-context", "nope"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr
            .contains("no context exists with the name: \"nope\""),
        "{}",
        o.stderr
    );
    assert_eq!(
        corral_with(&copy, &["config", "current-context"]).stdout,
        "elsewhere\n"
    );
}

fn node_unschedulable(m: &Master, name: &str) -> bool {
    let (code, n) = m.call(Method::GET, &format!("/api/v1/nodes/{name}"), None);
    assert_eq!(code, 200, "{n}");
    n["spec"]["unschedulable"].as_bool().unwrap_or(false)
}

#[test]
fn cordon_uncordon_and_drain_a_node() {
    let m = start();
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}});
    let (code, body) = m.call(Method::POST, "/api/v1/nodes", Some(&node));
    assert_eq!(code, 201, "{body}");
    assert_eq!(ok(&m, &["cordon", "n1"]), "node/n1 cordoned\n");
    assert!(node_unschedulable(&m, "n1"));
    assert_eq!(ok(&m, &["cordon", "n1"]), "node/n1 already cordoned\n");
    assert_eq!(ok(&m, &["uncordon", "n1"]), "node/n1 uncordoned\n");
    assert!(!node_unschedulable(&m, "n1"));
    let e = fails(&m, &["cordon", "n2"]);
    assert!(e.contains("nodes \"n2\" not found"), "{e}");

    for (ns, name, on) in [
        ("default", "a", "n1"),
        ("kube-system", "b", "n1"),
        ("default", "c", "other"),
    ] {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"nodeName": on, "containers": [{"name": "c", "image": "busybox"}]}});
        let (code, body) = m.call(
            Method::POST,
            &format!("/api/v1/namespaces/{ns}/pods"),
            Some(&pod),
        );
        assert_eq!(code, 201, "{body}");
    }
    let out = ok(&m, &["drain", "n1", "--timeout", "20"]);
    assert!(out.starts_with("node/n1 cordoned\n"), "{out}");
    assert!(
        out.contains("evicting pod default/a") && out.contains("evicting pod kube-system/b"),
        "{out}"
    );
    assert!(out.ends_with("node/n1 drained\n"), "{out}");
    assert!(node_unschedulable(&m, "n1"));
    let (_, l) = m.call(Method::GET, "/api/v1/pods", None);
    let left: Vec<&str> = l["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str())
        .collect();
    assert_eq!(left, ["c"]);
}

#[test]
fn rollout_restart_undo_and_status() {
    // The revision history is made by hand here; a Deployment controller
    // would make its own (cluster_controllers.rs tests undo with it).
    let m = Master::start(&["--no-controllers"]).expect("starting corral-master");
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "web.yaml", MANIFEST);
    ok(&m, &["apply", "-f", s(&f)]);
    let path = "/apis/apps/v1/namespaces/default/deployments/web";

    assert_eq!(
        ok(&m, &["rollout", "restart", "deploy/web"]),
        "deployment.apps/web restarted\n"
    );
    let (_, d) = m.call(Method::GET, path, None);
    let at = &d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"];
    assert!(at.as_str().is_some_and(|t| t.ends_with('Z')), "{d}");

    let e = fails(&m, &["rollout", "undo", "deploy/web"]);
    assert!(
        e.contains("no rollout history found for deployment \"web\""),
        "{e}"
    );

    // Two ReplicaSets owned by the deployment, as its controller would make.
    let uid = d["metadata"]["uid"].as_str().unwrap().to_string();
    for (rev, image) in [("1", "busybox:1.35"), ("2", "busybox:1.36")] {
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": format!("web-{rev}"), "namespace": "default",
                "labels": {"app": "web", "pod-template-hash": rev},
                "annotations": {"deployment.kubernetes.io/revision": rev},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": uid, "controller": true}]},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web", "pod-template-hash": rev}},
                "template": {"metadata": {"labels": {"app": "web", "pod-template-hash": rev}},
                    "spec": {"containers": [{"name": "web", "image": image}]}}}});
        let (code, body) = m.call(
            Method::POST,
            "/apis/apps/v1/namespaces/default/replicasets",
            Some(&rs),
        );
        assert_eq!(code, 201, "{body}");
    }
    assert_eq!(
        ok(&m, &["rollout", "undo", "deploy/web"]),
        "deployment.apps/web rolled back\n"
    );
    let (_, d) = m.call(Method::GET, path, None);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox:1.35"
    );
    assert!(
        d["spec"]["template"]["metadata"]["labels"]
            .get("pod-template-hash")
            .is_none(),
        "{d}"
    );
    let e = fails(&m, &["rollout", "undo", "deploy/web", "--to-revision", "7"]);
    assert!(e.contains("revision 7"), "{e}");

    // No controller runs here: status times out, clearly; once the status
    // says every replica is updated and available it succeeds.
    let o = corral(&m, &["rollout", "status", "deploy/web", "--timeout", "1"]);
    assert_eq!(o.code, 1, "{}", o.stdout);
    assert!(o.stdout.contains("Waiting for deployment"), "{}", o.stdout);
    assert!(o.stderr.contains("timed out after 1s"), "{}", o.stderr);
    let (_, mut d) = m.call(Method::GET, path, None);
    d["status"] = json!({"observedGeneration": d["metadata"]["generation"], "replicas": 2,
        "updatedReplicas": 2, "availableReplicas": 2, "readyReplicas": 2});
    let (code, body) = m.call(Method::PUT, &format!("{path}/status"), Some(&d));
    assert_eq!(code, 200, "{body}");
    let out = ok(&m, &["rollout", "status", "deploy/web", "--timeout", "10"]);
    assert_eq!(out, "deployment \"web\" successfully rolled out\n");
}

#[test]
fn get_watch_prints_new_objects() {
    let m = start();
    let bin = workspace_binary("corral").unwrap();
    let mut child = Command::new(bin)
        .arg("--kubeconfig")
        .arg(m.kubeconfig())
        .args(["get", "cm", "-w"])
        .env_remove("KUBECONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning corral get -w");
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0
                || tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .is_err()
            {
                break;
            }
        }
    });
    // Give the watch time to connect, then create objects until seen.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = String::new();
    let mut n = 0;
    while !seen.contains("watched-") && Instant::now() < deadline {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("watched-{n}")}});
        n += 1;
        let (code, body) = m.call(
            Method::POST,
            "/api/v1/namespaces/default/configmaps",
            Some(&cm),
        );
        assert_eq!(code, 201, "{body}");
        if let Ok(chunk) = rx.recv_timeout(Duration::from_secs(2)) {
            seen.push_str(&chunk);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.contains("watched-"), "watch printed: {seen:?}");
}
