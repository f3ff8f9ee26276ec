//! The real `corral-agent` binary running static pods of busybox containers:
//! lifecycle of a manifest file, init containers, restart policies with
//! back-off, probes, OOM kill, graceful and forced termination, pod to pod
//! traffic over the bridge, kill -9 of the agent and its restart, malformed
//! manifests, and the token and logs of the HTTP API. Each test has its own
//! agent, directories, bridge `crlag<N>` and CIDR `10.215.<N>.0/24`.

use std::time::{Duration, Instant};

use corral_tests::agent::{pod_manifest, sh_container, AgentTest, TOKEN};
use corral_tests::skip;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(30);

fn setup(n: u8) -> Option<AgentTest> {
    match AgentTest::new(n) {
        Ok(mut t) => {
            t.start();
            Some(t)
        }
        Err(e) => {
            eprintln!("SKIPPED [agent_pods {n}]: {e}");
            None
        }
    }
}

fn app(p: &Value, i: usize) -> &Value {
    &p["status"]["containerStatuses"][i]
}

fn restarts(p: &Value) -> i64 {
    app(p, 0)["restartCount"].as_i64().unwrap_or(-1)
}

fn ready(p: &Value) -> Option<bool> {
    p["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .map(|c| c["status"] == "True")
}

fn container_id(p: &Value) -> String {
    app(p, 0)["containerID"].as_str().unwrap_or("").to_string()
}

#[test]
fn static_pod_lifecycle() {
    let Some(t) = setup(1) else { skip!("no setup") };
    t.write_pods(
        "web.json",
        &[pod_manifest(
            "web",
            json!({"containers": [sh_container("c", "echo v1; exec sleep 1000")],
                   "terminationGracePeriodSeconds": 1}),
        )],
    );
    let p = t.wait_pod("web", T, |p| {
        p["status"]["phase"] == "Running" && app(p, 0)["state"]["running"].is_object()
    });
    let ip = p["status"]["podIP"].as_str().unwrap_or("").to_string();
    assert!(ip.starts_with("10.215.1."), "podIP {ip:?}");
    assert_eq!(p["status"]["hostIP"], "10.215.1.1", "{p}");
    assert!(p["status"]["startTime"].is_string(), "{p}");
    assert_eq!(ready(&p), Some(true), "{p}");
    assert!(
        app(&p, 0)["imageID"]
            .as_str()
            .is_some_and(|s| s.contains("sha256:")),
        "{p}"
    );
    let uid1 = p["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let id1 = container_id(&p);
    assert!(!id1.is_empty(), "{p}");
    assert_eq!(t.runtime_containers().len(), 1);

    t.write_pods(
        "web.json",
        &[pod_manifest(
            "web",
            json!({"containers": [sh_container("c", "echo v2; exec sleep 1000")],
                   "terminationGracePeriodSeconds": 1}),
        )],
    );
    let p = t.wait_pod("web", T, |p| {
        p["metadata"]["uid"] != uid1.as_str() && app(p, 0)["state"]["running"].is_object()
    });
    assert_ne!(
        container_id(&p),
        id1,
        "the changed pod runs a new container"
    );
    // The old pod's container goes once its replacement's is there.
    let one = corral_tests::host::wait_until(T, || t.runtime_containers().len() == 1);
    assert!(one, "runtime containers: {:?}", t.runtime_containers());

    t.remove_manifest("web.json");
    t.wait_gone("web", T);
    let clean = corral_tests::host::wait_until(T, || {
        t.runtime_containers().is_empty()
            && t.ns_files().is_empty()
            && t.pod_dirs().is_empty()
            && t.snapshots().is_empty()
            && t.leases().is_empty()
    });
    assert!(
        clean,
        "left behind: runtime {:?} ns {:?} pods {:?} snapshots {:?} leases {:?}\n{}",
        t.runtime_containers(),
        t.ns_files(),
        t.pod_dirs(),
        t.snapshots(),
        t.leases(),
        t.agent_log()
    );
}

/// The CRI log of a container's attempt, read from the agent's data dir.
fn log_of(t: &AgentTest, pod: &str, container: &str, attempt: i32) -> String {
    let dir = t
        .pod_dirs()
        .into_iter()
        .find(|d| d.starts_with(&format!("default_{pod}_")))
        .unwrap_or_else(|| panic!("no pod directory of {pod}: {:?}", t.pod_dirs()));
    let path = t
        .data_dir()
        .join("pods")
        .join(dir)
        .join(container)
        .join(format!("{attempt}.log"));
    std::fs::read_to_string(&path).unwrap_or_default()
}

#[test]
fn init_containers_run_in_order_before_the_app() {
    let Some(t) = setup(2) else { skip!("no setup") };
    let mut main = sh_container("app", "echo app >> /shared/order; cat /shared/order");
    main["volumeMounts"] = json!([{"name": "shared", "mountPath": "/shared"}]);
    let mut init = Vec::new();
    for (name, script) in [
        ("first", "sleep 1; echo first >> /shared/order"),
        ("second", "echo second >> /shared/order"),
    ] {
        let mut c = sh_container(name, script);
        c["volumeMounts"] = json!([{"name": "shared", "mountPath": "/shared"}]);
        init.push(c);
    }
    t.write_pods(
        "init.json",
        &[pod_manifest(
            "init",
            json!({"initContainers": init, "containers": [main], "restartPolicy": "Never",
                   "volumes": [{"name": "shared", "emptyDir": {}}]}),
        )],
    );
    let p = t.wait_phase("init", "Succeeded", T);
    let inits = p["status"]["initContainerStatuses"]
        .as_array()
        .unwrap_or_else(|| panic!("no initContainerStatuses: {p}"));
    assert_eq!(inits.len(), 2, "{p}");
    for s in inits {
        assert_eq!(s["state"]["terminated"]["exitCode"], 0, "{s}");
        assert_eq!(s["state"]["terminated"]["reason"], "Completed", "{s}");
    }
    let log = log_of(&t, "init", "app", 0);
    let lines: Vec<&str> = log
        .lines()
        .filter_map(|l| l.splitn(4, ' ').nth(3))
        .collect();
    assert_eq!(lines, ["first", "second", "app"], "app log:\n{log}");
    // Kubernetes' timestamps have second precision: the order is only
    // checked loosely here, the shared file above proves it.
    let second_done = inits[1]["state"]["terminated"]["finishedAt"].as_str();
    let app_started = app(&p, 0)["state"]["terminated"]["startedAt"].as_str();
    assert!(
        second_done.is_some() && app_started.is_some() && app_started >= second_done,
        "second finished {second_done:?}, app started {app_started:?}"
    );
}

#[test]
fn restart_always_backs_off_and_keeps_the_last_exit() {
    let Some(t) = setup(3) else { skip!("no setup") };
    t.write_pods(
        "crash.json",
        &[pod_manifest(
            "crash",
            json!({"containers": [sh_container("c", "echo crashing; exit 3")]}),
        )],
    );
    let p = t.wait_pod("crash", T, |p| {
        app(p, 0)["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    });
    let msg = app(&p, 0)["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or("");
    assert!(msg.contains("back-off"), "waiting message {msg:?}");
    let p = t.wait_pod("crash", T, |p| restarts(p) >= 2);
    assert_eq!(app(&p, 0)["lastState"]["terminated"]["exitCode"], 3, "{p}");
    assert_eq!(
        app(&p, 0)["lastState"]["terminated"]["reason"],
        "Error",
        "{p}"
    );
    assert_ne!(p["status"]["phase"], "Failed");
    assert_ne!(p["status"]["phase"], "Succeeded");
}

#[test]
fn restart_on_failure_restarts_only_failures() {
    let Some(t) = setup(4) else { skip!("no setup") };
    t.write_pods(
        "pods.json",
        &[
            pod_manifest(
                "ok",
                json!({"containers": [sh_container("c", "exit 0")], "restartPolicy": "OnFailure"}),
            ),
            pod_manifest(
                "bad",
                json!({"containers": [sh_container("c", "exit 1")], "restartPolicy": "OnFailure"}),
            ),
        ],
    );
    let p = t.wait_phase("ok", "Succeeded", T);
    assert_eq!(restarts(&p), 0, "{p}");
    assert_eq!(app(&p, 0)["state"]["terminated"]["exitCode"], 0, "{p}");
    let p = t.wait_pod("bad", T, |p| restarts(p) >= 1);
    assert_eq!(app(&p, 0)["lastState"]["terminated"]["exitCode"], 1, "{p}");
    // The succeeded pod is left alone meanwhile.
    let p = t.pod("ok").unwrap_or_default();
    assert_eq!(p["status"]["phase"], "Succeeded", "{p}");
    assert_eq!(restarts(&p), 0, "{p}");
}

#[test]
fn restart_never_fails_the_pod() {
    let Some(t) = setup(5) else { skip!("no setup") };
    t.write_pods(
        "never.json",
        &[pod_manifest(
            "never",
            json!({"containers": [sh_container("c", "exit 1")], "restartPolicy": "Never"}),
        )],
    );
    let p = t.wait_phase("never", "Failed", T);
    assert_eq!(app(&p, 0)["state"]["terminated"]["exitCode"], 1, "{p}");
    // Longer than the back-off: still not restarted.
    std::thread::sleep(Duration::from_secs(2));
    let p = t.pod("never").unwrap_or_default();
    assert_eq!(restarts(&p), 0, "{p}");
    assert_eq!(p["status"]["phase"], "Failed", "{p}");
}

fn httpd(name: &str, port: u16, body: &str) -> Value {
    sh_container(
        name,
        &format!("mkdir -p /www; echo {body} > /www/index.html; exec httpd -f -p {port} -h /www"),
    )
}

fn probe(kind: Value) -> Value {
    let mut p = kind;
    p["periodSeconds"] = json!(1);
    p["failureThreshold"] = json!(1);
    p
}

#[test]
fn passing_probes_of_each_kind_make_the_pod_ready() {
    let Some(t) = setup(6) else { skip!("no setup") };
    let mut web = httpd("web", 8080, "hello");
    web["readinessProbe"] = probe(json!({"httpGet": {"path": "/index.html", "port": 8080}}));
    web["livenessProbe"] = probe(json!({"exec": {"command": ["test", "-d", "/www"]}}));
    let mut tcp = httpd("tcp", 9090, "other");
    tcp["readinessProbe"] = probe(json!({"tcpSocket": {"port": 9090}}));
    tcp["livenessProbe"] = probe(json!({"tcpSocket": {"port": 9090}}));
    t.write_pods(
        "probes.json",
        &[pod_manifest(
            "probes",
            json!({"containers": [web, tcp], "terminationGracePeriodSeconds": 1}),
        )],
    );
    let p = t.wait_pod("probes", T, |p| ready(p) == Some(true));
    assert_eq!(app(&p, 0)["ready"], true, "{p}");
    assert_eq!(app(&p, 1)["ready"], true, "{p}");
    // Several probe periods later: still ready, nothing restarted.
    std::thread::sleep(Duration::from_secs(3));
    let p = t.pod("probes").unwrap_or_default();
    assert_eq!(ready(&p), Some(true), "{p}");
    assert_eq!(app(&p, 0)["restartCount"], 0, "{p}");
    assert_eq!(app(&p, 1)["restartCount"], 0, "{p}");
}

#[test]
fn failing_probes_keep_unready_or_restart() {
    let Some(t) = setup(7) else { skip!("no setup") };
    let mut unready = sh_container("unready", "exec sleep 1000");
    unready["readinessProbe"] = probe(json!({"httpGet": {"path": "/", "port": 8080}}));
    let mut dead_tcp = sh_container("deadtcp", "exec sleep 1000");
    dead_tcp["livenessProbe"] = probe(json!({"tcpSocket": {"port": 9091}}));
    let mut dead_exec = sh_container("deadexec", "exec sleep 1000");
    dead_exec["livenessProbe"] = probe(json!({"exec": {"command": ["false"]}}));
    t.write_pods(
        "bad.json",
        &[pod_manifest(
            "badprobes",
            json!({"containers": [unready, dead_tcp, dead_exec],
                   "terminationGracePeriodSeconds": 1}),
        )],
    );
    let p = t.wait_pod("badprobes", T, |p| {
        app(p, 1)["restartCount"].as_i64() >= Some(1)
            && app(p, 2)["restartCount"].as_i64() >= Some(1)
    });
    for i in [1, 2] {
        // sleep as pid 1 ignores SIGTERM: killed after the 1 s grace period.
        assert_eq!(
            app(&p, i)["lastState"]["terminated"]["exitCode"],
            137,
            "{p}"
        );
    }
    assert_eq!(app(&p, 0)["ready"], false, "{p}");
    assert_eq!(
        app(&p, 0)["restartCount"],
        0,
        "readiness never restarts: {p}"
    );
    assert_eq!(ready(&p), Some(false), "{p}");
    assert!(
        app(&p, 0)["state"]["running"].is_object(),
        "the unready container keeps running: {p}"
    );
}

#[test]
fn memory_limit_gives_oom_killed() {
    let Some(t) = setup(8) else { skip!("no setup") };
    let mut c = sh_container("hog", "exec dd if=/dev/zero of=/dev/null bs=128M count=4");
    c["resources"] = json!({"limits": {"memory": "32Mi"}});
    t.write_pods(
        "oom.json",
        &[pod_manifest(
            "oom",
            json!({"containers": [c], "restartPolicy": "Never"}),
        )],
    );
    let p = t.wait_phase("oom", "Failed", T);
    let term = &app(&p, 0)["state"]["terminated"];
    assert_eq!(term["reason"], "OOMKilled", "{p}");
    assert_eq!(term["exitCode"], 137, "{p}");
}

/// Remove the manifest and time until the pod's container is gone.
fn time_removal(t: &AgentTest, file: &str, name: &str) -> Duration {
    let started = Instant::now();
    t.remove_manifest(file);
    t.wait_gone(name, T);
    let gone = corral_tests::host::wait_until(T, || t.runtime_containers().is_empty());
    assert!(gone, "containers left: {:?}", t.runtime_containers());
    started.elapsed()
}

#[test]
fn termination_is_graceful_then_forced() {
    let Some(t) = setup(9) else { skip!("no setup") };
    t.write_pods(
        "stubborn.json",
        &[pod_manifest(
            "stubborn",
            json!({"containers": [sh_container("c", "trap '' TERM; while true; do sleep 0.2; done")],
                   "terminationGracePeriodSeconds": 2}),
        )],
    );
    // The polite container's preStop hook leaves a mark in a hostPath dir.
    let marks = t.path("marks");
    std::fs::create_dir_all(&marks).unwrap_or_else(|e| panic!("mkdir marks: {e}"));
    let mut polite = sh_container("c", "trap 'exit 0' TERM; while true; do sleep 0.2; done");
    polite["volumeMounts"] = json!([{"name": "marks", "mountPath": "/marks"}]);
    polite["lifecycle"] =
        json!({"preStop": {"exec": {"command": ["sh", "-c", "echo prestop > /marks/stopped"]}}});
    t.write_pods(
        "polite.json",
        &[pod_manifest(
            "polite",
            json!({"containers": [polite], "terminationGracePeriodSeconds": 30,
                   "volumes": [{"name": "marks", "hostPath": {"path": marks}}]}),
        )],
    );
    t.wait_phase("stubborn", "Running", T);
    t.wait_phase("polite", "Running", T);
    t.remove_manifest("polite.json");
    let started = Instant::now();
    t.wait_gone("polite", T);
    let polite = started.elapsed();
    assert!(
        polite < Duration::from_secs(5),
        "polite pod took {polite:?}"
    );
    let mark = std::fs::read_to_string(marks.join("stopped")).unwrap_or_default();
    assert_eq!(mark, "prestop\n", "the preStop hook ran");
    let stubborn = time_removal(&t, "stubborn.json", "stubborn");
    assert!(
        stubborn >= Duration::from_secs(2) && stubborn < Duration::from_secs(10),
        "a container ignoring SIGTERM with a 2 s grace period took {stubborn:?}"
    );
}

#[test]
fn two_pods_talk_over_the_bridge() {
    let Some(t) = setup(10) else {
        skip!("no setup")
    };
    let mut srv = httpd("srv", 8080, "hello-from-srv");
    srv["readinessProbe"] = probe(json!({"tcpSocket": {"port": 8080}}));
    t.write_pods(
        "srv.json",
        &[pod_manifest(
            "srv",
            json!({"containers": [srv], "terminationGracePeriodSeconds": 1}),
        )],
    );
    let p = t.wait_pod("srv", T, |p| ready(p) == Some(true));
    let ip = p["status"]["podIP"].as_str().unwrap_or("").to_string();
    assert!(ip.starts_with("10.215.10."), "{p}");
    t.write_pods(
        "client.json",
        &[pod_manifest(
            "client",
            json!({"containers": [sh_container("c",
                &format!("wget -q -O - http://{ip}:8080/index.html | grep hello-from-srv"))],
                   "restartPolicy": "Never"}),
        )],
    );
    let p = t.wait_pod("client", T, |p| {
        p["status"]["phase"] == "Succeeded" || p["status"]["phase"] == "Failed"
    });
    assert_eq!(
        p["status"]["phase"],
        "Succeeded",
        "client log: {}\n{p}",
        log_of(&t, "client", "c", 0)
    );
    assert_ne!(p["status"]["podIP"], ip.as_str());
}

/// The runtime's pid of the container with `containerID` corral://ID.
fn runtime_pid(t: &AgentTest, p: &Value) -> i64 {
    let id = container_id(p);
    let id = id.trim_start_matches("corral://");
    let out = t.runtime_cmd(&["state", id]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v["pid"].as_i64().unwrap_or_else(|| {
        panic!(
            "state {id}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn kill_9_and_restart_adopts_running_pods() {
    let Some(mut t) = setup(11) else {
        skip!("no setup")
    };
    const N: usize = 20;
    let mut pods: Vec<Value> = (0..N)
        .map(|i| {
            pod_manifest(
                &format!("p{i}"),
                json!({"containers": [sh_container("c", "exec sleep 1000")],
                       "terminationGracePeriodSeconds": 1}),
            )
        })
        .collect();
    pods.push(pod_manifest(
        "victim",
        json!({"containers": [sh_container("c", "echo started; exec sleep 1000")],
               "terminationGracePeriodSeconds": 1}),
    ));
    t.write_pods("many.json", &pods);
    let names: Vec<String> = (0..N)
        .map(|i| format!("p{i}"))
        .chain(["victim".to_string()])
        .collect();
    let mut before = Vec::new();
    for n in &names {
        let p = t.wait_pod(n, Duration::from_secs(60), |p| {
            app(p, 0)["state"]["running"].is_object()
        });
        before.push((
            p["status"]["podIP"].clone(),
            container_id(&p),
            runtime_pid(&t, &p),
        ));
    }
    t.kill9();
    let victim_pid = before[N].2 as i32;
    // SAFETY: kill has no memory-safety preconditions; the pid is the test
    // pod's container, read from the runtime state just above.
    unsafe { libc::kill(victim_pid, libc::SIGKILL) };
    let dead = corral_tests::host::wait_until(T, || !corral_tests::host::pid_alive(victim_pid));
    assert!(dead, "the victim container survived SIGKILL");
    t.start();
    let p = t.wait_pod("victim", T, |p| {
        restarts(p) >= 1 && app(p, 0)["state"]["running"].is_object()
    });
    assert_eq!(
        app(&p, 0)["lastState"]["terminated"]["exitCode"],
        137,
        "{p}"
    );
    assert_eq!(p["status"]["podIP"], before[N].0, "{p}");
    for (i, n) in names.iter().take(N).enumerate() {
        let p = t.pod(n).unwrap_or_default();
        assert_eq!(p["status"]["podIP"], before[i].0, "{n}: {p}");
        assert_eq!(container_id(&p), before[i].1, "{n}: {p}");
        assert_eq!(runtime_pid(&t, &p), before[i].2, "{n}: same container");
        assert_eq!(restarts(&p), 0, "{n}: {p}");
        assert!(app(&p, 0)["state"]["running"].is_object(), "{n}: {p}");
    }
    // One container per pod: nothing was started twice.
    assert_eq!(
        t.runtime_containers().len(),
        N + 1,
        "{:?}",
        t.runtime_containers()
    );
    // After a little while the adopted pods are still untouched.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        t.runtime_containers().len(),
        N + 1,
        "{:?}",
        t.runtime_containers()
    );
    let ips: std::collections::BTreeSet<String> = names
        .iter()
        .map(|n| t.pod(n).unwrap_or_default()["status"]["podIP"].to_string())
        .collect();
    assert_eq!(ips.len(), N + 1, "pod IPs are distinct: {ips:?}");
}

#[test]
fn malformed_manifest_names_the_field_and_spares_other_pods() {
    let Some(t) = setup(12) else {
        skip!("no setup")
    };
    t.write_pods(
        "good.json",
        &[pod_manifest(
            "good",
            json!({"containers": [sh_container("c", "exec sleep 1000")],
                   "terminationGracePeriodSeconds": 1}),
        )],
    );
    let p = t.wait_pod("good", T, |p| app(p, 0)["state"]["running"].is_object());
    let id = container_id(&p);
    let mut c = sh_container("c", "exec sleep 1000");
    c["bogusField"] = json!(1);
    t.write_pods(
        "bad.json",
        &[pod_manifest("bad", json!({"containers": [c]}))],
    );
    let errors = t.data_dir().join("status/manifest-errors.json");
    let seen = corral_tests::host::wait_until(T, || {
        std::fs::read_to_string(&errors).is_ok_and(|s| s.contains("bogusField"))
    });
    let text = std::fs::read_to_string(&errors).unwrap_or_default();
    assert!(seen, "manifest-errors.json: {text}");
    let v: Value = serde_json::from_str(&text).unwrap_or_default();
    let (file, msg) = v
        .as_object()
        .and_then(|m| m.iter().next())
        .unwrap_or_else(|| panic!("no error entry: {text}"));
    assert!(file.ends_with("bad.json"), "{text}");
    assert!(msg.as_str().unwrap_or("").contains("bogusField"), "{text}");
    std::thread::sleep(Duration::from_secs(2));
    assert!(t.pod("bad").is_none(), "the malformed pod must not run");
    let p = t.pod("good").unwrap_or_default();
    assert_eq!(container_id(&p), id, "{p}");
    assert_eq!(restarts(&p), 0, "{p}");
    assert!(app(&p, 0)["state"]["running"].is_object(), "{p}");
}

#[test]
fn api_needs_the_token_and_serves_logs() {
    let Some(t) = setup(13) else {
        skip!("no setup")
    };
    t.write_pods(
        "talker.json",
        &[pod_manifest(
            "talker",
            json!({"containers": [sh_container("c",
                "echo hello-from-log-1; echo err-line-2 >&2; exec sleep 1000")],
                   "terminationGracePeriodSeconds": 1}),
        )],
    );
    let p = t.wait_pod("talker", T, |p| app(p, 0)["state"]["running"].is_object());
    let id = container_id(&p);
    let logs = "/containerLogs/default/talker/c";
    for (path, token) in [
        ("/pods", None),
        ("/pods", Some("wrong-token")),
        (logs, None),
        (logs, Some("wrong-token")),
    ] {
        let (code, body) = t.get(path, token).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(code, 401, "{path} with {token:?}: {body}");
        assert!(
            !body.contains("talker") && !body.contains("hello"),
            "{body}"
        );
    }
    let (code, body) = t
        .get("/pods", Some(TOKEN))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, 200, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(list["kind"], "PodList", "{body}");
    let item = list["items"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["metadata"]["name"] == "talker"))
        .unwrap_or_else(|| panic!("talker not listed: {body}"));
    assert_eq!(container_id(item), id);
    let mut last = String::new();
    let got = corral_tests::host::wait_until(T, || {
        last = match t.get(logs, Some(TOKEN)) {
            Ok((200, b)) => b,
            Ok((code, b)) => format!("{code}: {b}"),
            Err(e) => e,
        };
        last.contains("hello-from-log-1") && last.contains("err-line-2")
    });
    assert!(got, "logs: {last}");
    // The refused requests changed nothing.
    let p = t.pod("talker").unwrap_or_default();
    assert_eq!(container_id(&p), id, "{p}");
    assert_eq!(restarts(&p), 0, "{p}");
}

#[test]
fn changes_while_the_agent_is_down_are_caught_up() {
    let Some(mut t) = setup(14) else {
        skip!("no setup")
    };
    let sleeper = |name: &str, policy: &str| {
        pod_manifest(
            name,
            json!({"containers": [sh_container("c", "trap 'exit 0' TERM; while true; do sleep 0.1; done")],
                   "restartPolicy": policy, "terminationGracePeriodSeconds": 1}),
        )
    };
    t.write_pods("gone.json", &[sleeper("gone", "Always")]);
    t.write_pods("changed.json", &[sleeper("changed", "Always")]);
    t.write_pods("never.json", &[sleeper("never", "Never")]);
    t.write_pods("onfail.json", &[sleeper("onfail", "OnFailure")]);
    t.write_pods(
        "writer.json",
        &[pod_manifest(
            "writer",
            json!({"containers": [sh_container("c",
                "i=0; while [ $i -lt 100 ]; do echo line-$i; i=$((i+1)); sleep 0.05; done; exec sleep 1000")],
                   "terminationGracePeriodSeconds": 1}),
        )],
    );
    let mut running = std::collections::BTreeMap::new();
    for n in ["gone", "changed", "never", "onfail", "writer"] {
        let p = t.wait_pod(n, T, |p| app(p, 0)["state"]["running"].is_object());
        running.insert(n, p);
    }
    t.kill9();
    t.remove_manifest("gone.json");
    t.write_pods("changed.json", &[sleeper("changed", "OnFailure")]);
    // SIGKILL: exit 137 for the Never pod; SIGTERM: the trap exits 0.
    for (name, sig) in [("never", libc::SIGKILL), ("onfail", libc::SIGTERM)] {
        let pid = runtime_pid(&t, &running[name]) as i32;
        // SAFETY: kill has no memory-safety preconditions; the pid is this
        // test pod's container, read from the runtime state just above.
        unsafe { libc::kill(pid, sig) };
        let dead = corral_tests::host::wait_until(T, || !corral_tests::host::pid_alive(pid));
        assert!(dead, "{name}: container {pid} survived signal {sig}");
    }
    t.start();
    t.wait_gone("gone", T);
    let old_uid = running["changed"]["metadata"]["uid"].clone();
    let p = t.wait_pod("changed", T, |p| {
        p["metadata"]["uid"] != old_uid && app(p, 0)["state"]["running"].is_object()
    });
    assert_eq!(p["spec"]["restartPolicy"], "OnFailure", "{p}");
    let p = t.wait_phase("never", "Failed", T);
    assert_eq!(app(&p, 0)["state"]["terminated"]["exitCode"], 137, "{p}");
    assert_eq!(restarts(&p), 0, "{p}");
    let p = t.wait_phase("onfail", "Succeeded", T);
    assert_eq!(app(&p, 0)["state"]["terminated"]["exitCode"], 0, "{p}");
    assert_eq!(restarts(&p), 0, "{p}");
    // Every line the writer printed while the agent was away is in its log.
    let mut last = String::new();
    let complete = corral_tests::host::wait_until(T, || {
        last = t
            .get("/containerLogs/default/writer/c", Some(TOKEN))
            .map(|(_, b)| b)
            .unwrap_or_default();
        last.contains("line-99")
    });
    assert!(complete, "writer log: {last}");
    let lines: Vec<&str> = last.lines().collect();
    let want: Vec<String> = (0..100).map(|i| format!("line-{i}")).collect();
    assert_eq!(lines, want, "the log is complete and in order");
    // A pod added now gets an address no other pod holds.
    t.write_pods("fresh.json", &[sleeper("fresh", "Always")]);
    let p = t.wait_phase("fresh", "Running", T);
    let mut ips: Vec<String> = ["changed", "never", "onfail", "writer", "fresh"]
        .iter()
        .filter_map(|n| t.pod(n))
        .filter_map(|p| p["status"]["podIP"].as_str().map(String::from))
        .collect();
    let n = ips.len();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), n, "distinct pod IPs: {ips:?} ({p})");
    let clean = corral_tests::host::wait_until(T, || {
        !t.pod_dirs().iter().any(|d| d.starts_with("default_gone_"))
    });
    assert!(
        clean,
        "the removed pod's directory stays: {:?}",
        t.pod_dirs()
    );
}

#[test]
fn kill_9_while_a_pod_terminates_finishes_the_removal() {
    let Some(mut t) = setup(15) else {
        skip!("no setup")
    };
    t.write_pods(
        "slow.json",
        &[pod_manifest(
            "slow",
            json!({"containers": [sh_container("c", "trap '' TERM; while true; do sleep 0.2; done")],
                   "terminationGracePeriodSeconds": 4}),
        )],
    );
    t.wait_phase("slow", "Running", T);
    t.remove_manifest("slow.json");
    // The agent notices the removal within its 1 s poll and starts the
    // 4 s grace period; it dies in the middle of it.
    let log_has_stopping =
        corral_tests::host::wait_until(T, || t.agent_log().contains("pod default/slow: stopping"));
    assert!(log_has_stopping, "{}", t.agent_log());
    t.kill9();
    assert_eq!(
        t.runtime_containers().len(),
        1,
        "still running while the agent is down"
    );
    t.start();
    let clean = corral_tests::host::wait_until(T, || {
        t.runtime_containers().is_empty()
            && t.ns_files().is_empty()
            && t.pod_dirs().is_empty()
            && t.snapshots().is_empty()
            && t.leases().is_empty()
            && !t.status_file("slow").exists()
    });
    assert!(
        clean,
        "left behind: runtime {:?} ns {:?} pods {:?} snapshots {:?} leases {:?}\n{}",
        t.runtime_containers(),
        t.ns_files(),
        t.pod_dirs(),
        t.snapshots(),
        t.leases(),
        t.agent_log()
    );
}
