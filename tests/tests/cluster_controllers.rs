//! The ReplicaSet and Deployment controllers inside a real `corral-master`
//! (no agents: pods never run, so the tests mark pods Running and Ready
//! through `/status` as an agent would): create, scale, adopt and release,
//! replace deleted and failed pods, rolling update within maxUnavailable,
//! rollback with the stock `kubectl rollout undo`, pause, `kubectl rollout
//! status`, and a SIGKILLed master that converges without duplicates.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use corral_tests::master::Master;
use reqwest::Method;
use serde_json::{json, Value};

const DEPLOYS: &str = "/apis/apps/v1/namespaces/default/deployments";
const RSS: &str = "/apis/apps/v1/namespaces/default/replicasets";
const PODS: &str = "/api/v1/namespaces/default/pods";
const HASH: &str = "pod-template-hash";
const REVISION: &str = "deployment.kubernetes.io/revision";
const WAIT: Duration = Duration::from_secs(60);

fn start() -> Master {
    Master::start(&[]).unwrap_or_else(|e| panic!("starting corral-master: {e}"))
}

/// Polls `f` until it gives Some, failing after WAIT with `what` and the
/// pods and ReplicaSets the master holds.
fn wait_for<T>(m: &Master, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out waiting for {what}\n{}", dump(m));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn dump(m: &Master) -> String {
    let mut out = String::new();
    for (path, what) in [(RSS, "replicaset"), (PODS, "pod")] {
        for o in m.call(Method::GET, path, None).1["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            out.push_str(&format!(
                "{what} {} rv={} owner={:?} spec.replicas={} status={}\n",
                name(&o),
                o["metadata"]["resourceVersion"],
                controller_uid(&o),
                o["spec"]["replicas"],
                o["status"]
            ));
        }
    }
    out
}

fn ok(m: &Master, method: Method, path: &str, body: Option<&Value>) -> Value {
    let (code, v) = m.call(method.clone(), path, body);
    assert!((200..300).contains(&code), "{method} {path}: {code} {v}");
    v
}

fn items(m: &Master, path: &str) -> Vec<Value> {
    ok(m, Method::GET, path, None)["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn name(v: &Value) -> String {
    v["metadata"]["name"].as_str().unwrap_or("").to_string()
}

fn uid(v: &Value) -> String {
    v["metadata"]["uid"].as_str().unwrap_or("").to_string()
}

fn controller_uid(v: &Value) -> Option<String> {
    v["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
        .and_then(|r| r["uid"].as_str().map(str::to_string))
}

fn image(pod_or_template: &Value) -> String {
    let spec = if pod_or_template["spec"]["template"].is_object() {
        &pod_or_template["spec"]["template"]["spec"]
    } else {
        &pod_or_template["spec"]
    };
    spec["containers"][0]["image"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn deployment(name: &str, replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]}
            }
        }
    })
}

fn patch(m: &Master, path: &str, body: Value) -> Value {
    let (code, v) = m.patch(path, "application/merge-patch+json", &body.to_string());
    assert_eq!(code, 200, "PATCH {path}: {v}");
    v
}

fn get_deploy(m: &Master, d: &str) -> Value {
    ok(m, Method::GET, &format!("{DEPLOYS}/{d}"), None)
}

/// The ReplicaSets and active pods a deployment controls.
fn owned(m: &Master, d: &str) -> (Vec<Value>, Vec<Value>) {
    let du = uid(&get_deploy(m, d));
    let rss: Vec<Value> = items(m, RSS)
        .into_iter()
        .filter(|r| controller_uid(r).as_deref() == Some(&du))
        .collect();
    let rs_uids: Vec<String> = rss.iter().map(uid).collect();
    let pods = items(m, PODS)
        .into_iter()
        .filter(|p| controller_uid(p).is_some_and(|u| rs_uids.contains(&u)))
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect();
    (rss, pods)
}

/// Whether the scheduler has looked at the pod. With no nodes it writes
/// PodScheduled=False with a merge patch of the whole conditions list, made
/// from its copy of the pod: a Ready condition written before that would be
/// lost, so pods are only marked ready after it.
fn seen_by_scheduler(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == "PodScheduled"))
}

/// What an agent reports for a started pod: Running and Ready. Up to `max`
/// pods that are not ready yet; conflicts are left for the next call.
fn mark_ready(m: &Master, max: usize) -> usize {
    let mut done = 0;
    for mut pod in items(m, PODS) {
        if done >= max
            || is_ready(&pod)
            || !seen_by_scheduler(&pod)
            || !pod["metadata"]["deletionTimestamp"].is_null()
        {
            continue;
        }
        let mut conditions = pod["status"]["conditions"].clone();
        if let Some(c) = conditions.as_array_mut() {
            c.push(json!({"type": "Ready", "status": "True",
                          "lastTransitionTime": "2026-01-01T00:00:00Z"}));
        }
        pod["status"] = json!({"phase": "Running", "conditions": conditions});
        let (code, _) = m.call(
            Method::PUT,
            &format!("{PODS}/{}/status", name(&pod)),
            Some(&pod),
        );
        if code == 200 {
            done += 1;
        }
    }
    done
}

/// `kubectl rollout status`'s test: the controller saw the latest spec and
/// every replica is updated and available.
fn rolled_out(d: &Value) -> bool {
    let s = &d["status"];
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    let want = d["spec"]["replicas"].as_i64().unwrap_or(1);
    n(&s["observedGeneration"]) >= n(&d["metadata"]["generation"])
        && n(&s["updatedReplicas"]) == want
        && n(&s["replicas"]) == want
        && n(&s["availableReplicas"]) == want
}

/// Marks pods ready one at a time until the rollout is done, checking that
/// at least `min_ready` pods stay ready and the ReplicaSets never ask for
/// more than `max_total` pods between them.
fn roll_until_done(m: &Master, d: &str, min_ready: usize, max_total: i64) {
    wait_for(m, &format!("deployment {d} to roll out"), || {
        let (rss, pods) = owned(m, d);
        let ready = pods.iter().filter(|p| is_ready(p)).count();
        assert!(
            ready >= min_ready,
            "only {ready} ready pods, want >= {min_ready}"
        );
        let total: i64 = rss
            .iter()
            .map(|r| r["spec"]["replicas"].as_i64().unwrap_or(0))
            .sum();
        assert!(
            total <= max_total,
            "replicasets ask for {total} pods, max {max_total}"
        );
        mark_ready(m, 1);
        let dep = get_deploy(m, d);
        let want = dep["spec"]["replicas"].as_i64().unwrap_or(0) as usize;
        let tpl = image(&dep);
        (rolled_out(&dep) && pods.len() == want && pods.iter().all(|p| image(p) == tpl))
            .then_some(())
    });
}

fn wait_pods(m: &Master, d: &str, n: usize) -> (Vec<Value>, Vec<Value>) {
    wait_for(m, &format!("{n} pods of {d}"), || {
        let (rss, pods) = owned(m, d);
        (pods.len() == n).then_some((rss, pods))
    })
}

#[test]
fn deployment_creates_scales_and_replaces_pods() {
    let m = start();
    ok(&m, Method::POST, DEPLOYS, Some(&deployment("web", 3, "v1")));
    let (rss, pods) = wait_pods(&m, "web", 3);
    assert_eq!(rss.len(), 1);
    let rs = &rss[0];
    let hash = rs["metadata"]["labels"][HASH].as_str().unwrap().to_string();
    assert_eq!(hash.len(), 10);
    assert_eq!(name(rs), format!("web-{hash}"));
    assert_eq!(rs["spec"]["selector"]["matchLabels"][HASH], hash.as_str());
    assert_eq!(rs["metadata"]["annotations"][REVISION], "1");
    let owner = &rs["metadata"]["ownerReferences"][0];
    assert_eq!(
        (
            owner["kind"].as_str(),
            owner["blockOwnerDeletion"].as_bool()
        ),
        (Some("Deployment"), Some(true))
    );
    for p in &pods {
        assert!(name(p).starts_with(&format!("web-{hash}-")), "{}", name(p));
        assert_eq!(p["metadata"]["labels"][HASH], hash.as_str());
        assert_eq!(p["metadata"]["ownerReferences"][0]["controller"], true);
    }
    let d = wait_for(&m, "deployment status", || {
        let d = get_deploy(&m, "web");
        (d["status"]["replicas"] == 3 && d["status"]["observedGeneration"] == 1).then_some(d)
    });
    assert_eq!(d["metadata"]["annotations"][REVISION], "1");
    // Events as `kubectl describe` shows them.
    let rs_name = name(rs);
    wait_for(&m, "the controllers' events", || {
        let evs = items(&m, "/api/v1/namespaces/default/events");
        let has = |kind: &str, obj: &str, reason: &str, msg: &str| {
            evs.iter().any(|e| {
                e["involvedObject"]["kind"] == kind
                    && e["involvedObject"]["name"] == obj
                    && e["reason"] == reason
                    && e["message"].as_str().is_some_and(|m| m.starts_with(msg))
            })
        };
        let scaled = format!("Scaled up replica set {rs_name} from 0 to 3");
        (has("Deployment", "web", "ScalingReplicaSet", &scaled)
            && has("ReplicaSet", &rs_name, "SuccessfulCreate", "Created pod: "))
        .then_some(())
    });

    for n in [5, 1] {
        patch(
            &m,
            &format!("{DEPLOYS}/web"),
            json!({"spec": {"replicas": n}}),
        );
        let (rss, _) = wait_pods(&m, "web", n);
        assert_eq!(rss.len(), 1, "scaling makes no new replicaset");
    }
    // Through /scale, as `kubectl scale` does (a merge patch).
    let scale = patch(
        &m,
        &format!("{DEPLOYS}/web/scale"),
        json!({"spec": {"replicas": 2}}),
    );
    assert_eq!(scale["kind"], "Scale");
    let (_, pods) = wait_pods(&m, "web", 2);

    let victim = name(&pods[0]);
    // The scheduler patches unscheduled pods meanwhile and the server
    // answers a DELETE that races a write with 409: try again.
    wait_for(&m, "the pod deleted", || {
        let (code, v) = m.call(Method::DELETE, &format!("{PODS}/{victim}"), None);
        assert!(code == 200 || code == 409, "DELETE {victim}: {code} {v}");
        (code == 200).then_some(())
    });
    let (_, pods) = wait_for(&m, "a replacement for the deleted pod", || {
        let (rss, pods) = owned(&m, "web");
        (pods.len() == 2 && pods.iter().all(|p| name(p) != victim)).then_some((rss, pods))
    });
    assert_eq!(pods.len(), 2);
    // Still exactly two once the controllers have seen everything.
    wait_for(&m, "status to settle", || {
        let d = get_deploy(&m, "web");
        (d["status"]["replicas"] == 2
            && d["status"]["observedGeneration"] == d["metadata"]["generation"])
            .then_some(())
    });
    assert_eq!(owned(&m, "web").1.len(), 2);
}

#[test]
fn replicaset_adopts_releases_and_replaces_failed_pods() {
    const ORPHAN: &str = "zz-orphan";
    let m = start();
    let pod = |n: &str| {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": n, "namespace": "default", "labels": {"app": "solo"}},
               "spec": {"containers": [{"name": "c", "image": "v1"}]}})
    };
    // The orphan exists before its ReplicaSet. The controller may still
    // create two pods first if its pod cache has not seen the orphan yet;
    // then it adopts it and deletes the newest surplus pod. Created within
    // the same second, ties go by name: "zz-" keeps the orphan last in line.
    ok(&m, Method::POST, PODS, Some(&pod(ORPHAN)));
    let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "solo", "namespace": "default"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "solo"}},
                 "template": {"metadata": {"labels": {"app": "solo"}},
                              "spec": {"containers": [{"name": "c", "image": "v1"}]}}}});
    let rs_uid = uid(&ok(&m, Method::POST, RSS, Some(&rs)));
    let mine = |m: &Master| -> Vec<Value> {
        items(m, PODS)
            .into_iter()
            .filter(|p| controller_uid(p).as_deref() == Some(rs_uid.as_str()))
            .collect()
    };
    wait_for(&m, "the orphan adopted, two pods in all", || {
        let p = mine(&m);
        let adopted = p.iter().any(|p| name(p) == ORPHAN);
        (p.len() == 2 && adopted && items(&m, PODS).len() == 2).then_some(())
    });
    let st = wait_for(&m, "replicaset status", || {
        let r = ok(&m, Method::GET, &format!("{RSS}/solo"), None);
        (r["status"]["replicas"] == 2).then_some(r)
    });
    assert_eq!(st["status"]["fullyLabeledReplicas"], 2);
    assert_eq!(st["status"]["observedGeneration"], 1);

    // Relabelled out of the selector: released (not deleted) and replaced.
    patch(
        &m,
        &format!("{PODS}/{ORPHAN}"),
        json!({"metadata": {"labels": {"app": "gone"}}}),
    );
    wait_for(&m, "the relabelled pod released and replaced", || {
        let released = ok(&m, Method::GET, &format!("{PODS}/{ORPHAN}"), None);
        let free = released["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(|r| r.is_empty());
        let p = mine(&m);
        (free && p.len() == 2 && p.iter().all(|p| name(p) != ORPHAN)).then_some(())
    });

    // A pod that ended is deleted and replaced.
    let failed_name = name(&mine(&m)[0]);
    wait_for(&m, "the pod marked Failed", || {
        // Read again on each try: the scheduler may write it meanwhile.
        let mut failed = ok(&m, Method::GET, &format!("{PODS}/{failed_name}"), None);
        failed["status"]["phase"] = json!("Failed");
        let path = format!("{PODS}/{failed_name}/status");
        (m.call(Method::PUT, &path, Some(&failed)).0 == 200).then_some(())
    });
    wait_for(&m, "the failed pod replaced", || {
        let gone = m
            .call(Method::GET, &format!("{PODS}/{failed_name}"), None)
            .0
            == 404;
        (gone && mine(&m).len() == 2).then_some(())
    });

    // Ready pods show in the status.
    while mark_ready(&m, 10) > 0 {}
    wait_for(&m, "readyReplicas", || {
        let r = ok(&m, Method::GET, &format!("{RSS}/solo"), None);
        (r["status"]["readyReplicas"] == 2 && r["status"]["availableReplicas"] == 2).then_some(())
    });
}

#[test]
fn rolling_update_keeps_availability_and_rolls_back() {
    let m = start();
    ok(&m, Method::POST, DEPLOYS, Some(&deployment("web", 4, "v1")));
    roll_until_done(&m, "web", 0, 5);
    let v1 = owned(&m, "web").0[0].clone();

    patch(
        &m,
        &format!("{DEPLOYS}/web"),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "v2"}]}}}}),
    );
    // maxUnavailable 1 of 4: three stay ready; maxSurge 1: at most five.
    roll_until_done(&m, "web", 3, 5);
    let (rss, pods) = owned(&m, "web");
    assert_eq!(rss.len(), 2);
    assert!(pods.iter().all(|p| image(p) == "v2"));
    let old = rss
        .iter()
        .find(|r| name(r) == name(&v1))
        .expect("old replicaset kept");
    assert_eq!(old["spec"]["replicas"], 0);
    let new = rss.iter().find(|r| name(r) != name(&v1)).unwrap();
    assert_eq!(new["metadata"]["annotations"][REVISION], "2");
    let d = get_deploy(&m, "web");
    assert_eq!(d["metadata"]["annotations"][REVISION], "2");
    let progressing = d["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Progressing")
        .cloned()
        .unwrap();
    assert_eq!(progressing["reason"], "NewReplicaSetAvailable");

    // Rollback with the stock kubectl (when installed), later with corral's own.
    let kubeconfig = m.kubeconfig().to_str().unwrap().to_string();
    let corral = corral_tests::corral::workspace_binary("corral").unwrap();
    let corral = corral.to_str().unwrap();
    let undo = [
        "--kubeconfig",
        &kubeconfig,
        "rollout",
        "undo",
        "deployment/web",
    ];
    let out = if have_kubectl() {
        run(&m, "kubectl", &undo)
    } else {
        run(&m, corral, &undo)
    };
    assert!(out.contains("rolled back"), "{out}");
    assert_eq!(image(&get_deploy(&m, "web")), "v1");
    roll_until_done(&m, "web", 3, 5);
    let (rss, pods) = owned(&m, "web");
    assert_eq!(rss.len(), 2, "the old replicaset is reused, not copied");
    assert!(pods.iter().all(|p| image(p) == "v1"));
    let back = rss.iter().find(|r| name(r) == name(&v1)).unwrap();
    assert_eq!(back["metadata"]["annotations"][REVISION], "3");
    assert_eq!(back["spec"]["replicas"], 4);
    assert_eq!(
        get_deploy(&m, "web")["metadata"]["annotations"][REVISION],
        "3"
    );

    // `corral rollout undo` goes back to the previous revision (2, v2): its
    // ReplicaSet comes back as revision 4.
    let out = run(&m, corral, &undo);
    assert!(out.contains("rolled back"), "{out}");
    roll_until_done(&m, "web", 3, 5);
    let (rss, pods) = owned(&m, "web");
    assert_eq!(rss.len(), 2);
    assert!(pods.iter().all(|p| image(p) == "v2"));
    let v2 = rss.iter().find(|r| name(r) != name(&v1)).unwrap();
    assert_eq!(v2["metadata"]["annotations"][REVISION], "4");
}

#[test]
fn paused_deployment_scales_but_does_not_roll() {
    let m = start();
    ok(&m, Method::POST, DEPLOYS, Some(&deployment("web", 2, "v1")));
    roll_until_done(&m, "web", 0, 3);
    patch(
        &m,
        &format!("{DEPLOYS}/web"),
        json!({"spec": {"paused": true}}),
    );
    patch(
        &m,
        &format!("{DEPLOYS}/web"),
        json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "c", "image": "v2"}]}}}}),
    );
    let (rss, pods) = wait_for(&m, "the paused deployment observed and scaled", || {
        let d = get_deploy(&m, "web");
        let seen = d["status"]["observedGeneration"] == d["metadata"]["generation"];
        let paused = d["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Progressing" && c["reason"] == "DeploymentPaused")
        });
        let (rss, pods) = owned(&m, "web");
        (seen && paused && pods.len() == 3).then_some((rss, pods))
    });
    assert_eq!(rss.len(), 1, "no new replicaset while paused");
    assert!(pods.iter().all(|p| image(p) == "v1"));

    patch(
        &m,
        &format!("{DEPLOYS}/web"),
        json!({"spec": {"paused": false}}),
    );
    roll_until_done(&m, "web", 2, 4);
    assert!(owned(&m, "web").1.iter().all(|p| image(p) == "v2"));
}

fn have_kubectl() -> bool {
    Command::new("kubectl")
        .args(["version", "--client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a command to completion (bounded by coreutils `timeout`), its stdout.
fn run(_m: &Master, bin: &str, args: &[&str]) -> String {
    let out = Command::new("timeout")
        .arg("60")
        .arg(bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {bin}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{bin} {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Kills the child on drop (a failed assertion must not leave it behind).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn kubectl_rollout_status_follows_the_rollout() {
    if !have_kubectl() {
        corral_tests::skip!("kubectl is not installed");
    }
    let m = start();
    ok(&m, Method::POST, DEPLOYS, Some(&deployment("web", 3, "v1")));
    let mut child = Reaped(
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(m.kubeconfig())
            .args(["rollout", "status", "deployment/web", "--timeout=90s"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning kubectl"),
    );
    // Nothing is ready yet, so kubectl must still be waiting once the
    // controller has made the pods.
    wait_pods(&m, "web", 3);
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "kubectl returned before any pod was ready"
    );
    let status = wait_for(&m, "kubectl rollout status to return", || {
        mark_ready(&m, 1);
        child.0.try_wait().unwrap()
    });
    let mut out = String::new();
    let mut err = String::new();
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        status.success(),
        "kubectl rollout status failed: {out}\n{err}"
    );
    assert!(out.contains("successfully rolled out"), "{out}");
    assert!(rolled_out(&get_deploy(&m, "web")));
}

#[test]
fn master_killed_mid_rollout_converges_without_duplicates() {
    let mut m = start();
    ok(&m, Method::POST, DEPLOYS, Some(&deployment("web", 6, "v1")));
    // SIGKILL while the first pods are being created.
    wait_for(&m, "the first pod", || {
        (!owned(&m, "web").1.is_empty()).then_some(())
    });
    m.restart().expect("restarting corral-master");
    roll_until_done(&m, "web", 0, 7);
    let (rss, pods) = owned(&m, "web");
    assert_eq!((rss.len(), pods.len()), (1, 6));
    assert_eq!(items(&m, PODS).len(), 6, "no pod twice");

    patch(
        &m,
        &format!("{DEPLOYS}/web"),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "v2"}]}}}}),
    );
    wait_for(&m, "the first new pod", || {
        owned(&m, "web")
            .1
            .iter()
            .any(|p| image(p) == "v2")
            .then_some(())
    });
    m.restart().expect("restarting corral-master");
    roll_until_done(&m, "web", 5, 7);
    let (rss, pods) = owned(&m, "web");
    assert_eq!(rss.len(), 2, "one replicaset per template");
    assert_eq!(items(&m, RSS).len(), 2);
    assert_eq!(pods.len(), 6);
    assert!(pods.iter().all(|p| image(p) == "v2"));
    assert_eq!(items(&m, PODS).len(), 6, "no pod twice");
}
