//! The stock `kubectl` against `corral-master`, with the admin.kubeconfig the
//! master wrote: get (tables, -o json|yaml|wide, -l, -A, -w), apply -f of a
//! Deployment written as for Kubernetes (create, then update), describe,
//! scale and delete. Skipped with a reason when kubectl is not installed.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use corral_tests::master::Master;
use corral_tests::skip;
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
";

fn have_kubectl() -> bool {
    Command::new("kubectl")
        .args(["version", "--client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// One kubectl run, bounded by coreutils `timeout`.
fn kubectl(m: &Master, args: &[&str]) -> Out {
    let out = Command::new("timeout")
        .arg("60")
        .arg("kubectl")
        .arg("--kubeconfig")
        .arg(m.kubeconfig())
        .args(args)
        .output()
        .expect("running kubectl");
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(m: &Master, args: &[&str]) -> String {
    let o = kubectl(m, args);
    assert!(o.ok, "kubectl {args:?} failed:\n{}\n{}", o.stdout, o.stderr);
    o.stdout
}

#[test]
fn kubectl_drives_a_deployment() {
    if !have_kubectl() {
        skip!("kubectl is not installed");
    }
    let m = Master::start(&[]).unwrap_or_else(|e| panic!("starting corral-master: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web.yaml");
    std::fs::write(&file, MANIFEST).unwrap();
    let file = file.to_str().unwrap();

    let out = ok(&m, &["apply", "-f", file]);
    assert!(out.contains("deployment.apps/web created"), "{out}");
    let table = ok(&m, &["get", "deployments"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("UP-TO-DATE"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("web") && lines[1].contains("0/2"),
        "{table}"
    );
    let wide = ok(&m, &["get", "deploy", "web", "-o", "wide"]);
    assert!(
        wide.contains("busybox:1.36") && wide.contains("app=web"),
        "{wide}"
    );
    let j: Value = serde_json::from_str(&ok(&m, &["get", "deploy", "web", "-o", "json"])).unwrap();
    assert_eq!(j["spec"]["replicas"], 2);
    assert_eq!(j["metadata"]["generation"], 1);
    let yaml = ok(&m, &["get", "deploy", "web", "-o", "yaml"]);
    assert!(
        yaml.contains("replicas: 2") && yaml.contains("memory: 64Mi"),
        "{yaml}"
    );

    // Changed and applied again: an update of the same object.
    std::fs::write(
        file,
        MANIFEST
            .replace("replicas: 2", "replicas: 4")
            .replace("busybox:1.36", "busybox:1.37"),
    )
    .unwrap();
    let out = ok(&m, &["apply", "-f", file]);
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    let (_, d) = m.call(
        Method::GET,
        "/apis/apps/v1/namespaces/default/deployments/web",
        None,
    );
    assert_eq!(d["spec"]["replicas"], 4);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox:1.37"
    );
    assert_eq!(d["metadata"]["generation"], 2);
    assert_eq!(d["metadata"]["uid"], j["metadata"]["uid"]);

    let out = ok(&m, &["scale", "deploy/web", "--replicas=3"]);
    assert!(out.contains("scaled"), "{out}");
    let (_, d) = m.call(
        Method::GET,
        "/apis/apps/v1/namespaces/default/deployments/web",
        None,
    );
    assert_eq!(d["spec"]["replicas"], 3);
    let desc = ok(&m, &["describe", "deployment", "web"]);
    assert!(
        desc.contains("Name:") && desc.contains("3 desired"),
        "{desc}"
    );
    assert!(desc.contains("busybox:1.37"), "{desc}");

    // Pods: -l, -A, and -w seeing a new pod.
    let pod = |name: &str, ns: &str, app: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
               "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    };
    m.call(
        Method::POST,
        "/api/v1/namespaces/default/pods",
        Some(&pod("p1", "default", "a")),
    );
    m.call(
        Method::POST,
        "/api/v1/namespaces/kube-system/pods",
        Some(&pod("p2", "kube-system", "b")),
    );
    let out = ok(&m, &["get", "pods", "-l", "app=a"]);
    assert!(out.contains("p1") && !out.contains("p2"), "{out}");
    assert!(
        out.lines().next().unwrap_or("").contains("RESTARTS"),
        "{out}"
    );
    let out = ok(&m, &["get", "pods", "-A"]);
    assert!(
        out.contains("kube-system") && out.contains("p2") && out.contains("p1"),
        "{out}"
    );
    watch_sees_new_pod(&m, || {
        m.call(
            Method::POST,
            "/api/v1/namespaces/default/pods",
            Some(&pod("p3", "default", "a")),
        );
    });

    let out = ok(&m, &["delete", "-f", file]);
    assert!(out.contains("deployment.apps \"web\" deleted"), "{out}");
    let gone = kubectl(&m, &["get", "deploy", "web"]);
    assert!(
        !gone.ok && gone.stderr.contains("NotFound"),
        "{}",
        gone.stderr
    );
    let out = ok(&m, &["delete", "pod", "p1"]);
    assert!(out.contains("pod \"p1\" deleted"), "{out}");
}

/// `kubectl get pods -w` prints the pod created by `create` (bounded in time).
fn watch_sees_new_pod(m: &Master, create: impl FnOnce()) {
    // kubectl itself (not under `timeout`) so that kill() reaches it; the
    // loop below bounds the time.
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(m.kubeconfig())
        .args(["get", "pods", "-w", "--output-watch-events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("running kubectl get -w");
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
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(25);
    let mut created = false;
    let mut create = Some(create);
    while Instant::now() < deadline && !seen.contains("p3") {
        if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push_str(&chunk);
        }
        // Create once the initial listing is printed, so the pod arrives by the watch.
        if !created && seen.contains("p1") {
            if let Some(c) = create.take() {
                c();
            }
            created = true;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let line = seen
        .lines()
        .find(|l| l.contains("p3"))
        .unwrap_or_else(|| panic!("no event for p3 in:\n{seen}"));
    assert!(line.starts_with("ADDED"), "{seen}");
}
