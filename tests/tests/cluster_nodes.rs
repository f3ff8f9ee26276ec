//! The master's node-facing controllers and the Service allocator, end to
//! end against the real `corral-master` binary. The nodes are Node and Lease
//! objects this test writes itself, renewing leases and posting status as an
//! agent does (no agent runs here: the lead's cluster tests cover real ones).
//!
//! - node IPAM: distinct pod CIDRs, the same after a master restart, a
//!   deleted node's block reused, none when the range is exhausted;
//! - node lifecycle: a lease not renewed -> Ready=Unknown + unreachable taint
//!   within the grace period, pods marked not ready, evicted after their
//!   toleration (default: --pod-eviction-timeout), tolerating pods kept;
//!   heartbeats back -> taint removed;
//! - endpoints follow pod readiness and go with their Service;
//! - the garbage collector deletes orphans (owner gone by uid) and finishes
//!   a foreground deletion left with its finalizer;
//! - ClusterIPs unique under 20 concurrent creates and after a restart, a
//!   bad or taken clusterIP refused with the field path, NodePorts, headless.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use corral_tests::master::Master;
use reqwest::Method;
use serde_json::{json, Value};

const NODES: &str = "/api/v1/nodes";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";
const PODS: &str = "/api/v1/namespaces/default/pods";
const SVCS: &str = "/api/v1/namespaces/default/services";
const EPS: &str = "/api/v1/namespaces/default/endpoints";
const MERGE: &str = "application/merge-patch+json";

fn start(flags: &[&str]) -> Master {
    Master::start(flags).unwrap_or_else(|e| panic!("starting corral-master: {e}"))
}

fn create(m: &Master, path: &str, body: &Value) -> Value {
    let (code, v) = m.call(Method::POST, path, Some(body));
    assert_eq!(code, 201, "creating at {path}: {v}");
    v
}

fn get(m: &Master, path: &str) -> Option<Value> {
    let (code, v) = m.call(Method::GET, path, None);
    assert!(code == 200 || code == 404, "GET {path}: {code} {v}");
    (code == 200).then_some(v)
}

/// Polls `f` every 100 ms until it gives Some, or panics after `limit` saying `what`.
fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn now_rfc3339(micros: bool) -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let t = corral_api::MicroTime::from_unix_micros(d.as_micros() as i64);
    if micros {
        t.to_string()
    } else {
        t.to_time().to_string()
    }
}

fn node_body(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
           "spec": {}, "status": {}})
}

fn pod_cidr(m: &Master, name: &str) -> Option<String> {
    let n = get(m, &format!("{NODES}/{name}"))?;
    n["spec"]["podCIDR"].as_str().map(str::to_string)
}

#[test]
fn pod_cidrs_distinct_stable_across_restart_and_reused() {
    let mut m = start(&[
        "--cluster-cidr",
        "10.200.0.0/22",
        "--node-cidr-mask-size",
        "24",
    ]);
    for n in ["n1", "n2", "n3"] {
        create(&m, NODES, &node_body(n));
    }
    let limit = Duration::from_secs(20);
    let first: Vec<String> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| wait_for(limit, &format!("a pod CIDR on {n}"), || pod_cidr(&m, n)))
        .collect();
    let distinct: BTreeSet<&String> = first.iter().collect();
    assert_eq!(distinct.len(), 3, "{first:?}");
    for c in &first {
        assert!(c.starts_with("10.200.") && c.ends_with("/24"), "{c}");
    }
    let n1 = get(&m, &format!("{NODES}/n1")).unwrap();
    assert_eq!(n1["spec"]["podCIDRs"], json!([first[0]]));

    m.restart().unwrap();
    create(&m, NODES, &node_body("n4"));
    let fourth = wait_for(limit, "a pod CIDR on n4", || pod_cidr(&m, "n4"));
    assert!(
        !first.contains(&fourth),
        "{fourth} handed out twice: {first:?}"
    );
    for (n, c) in ["n1", "n2", "n3"].iter().zip(&first) {
        assert_eq!(
            pod_cidr(&m, n).as_ref(),
            Some(c),
            "{n} changed across the restart"
        );
    }

    // The /22 is exhausted: n5 waits until n2 goes, then gets its block.
    create(&m, NODES, &node_body("n5"));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(pod_cidr(&m, "n5"), None, "a /24 out of an exhausted /22");
    let (code, v) = m.call(Method::DELETE, &format!("{NODES}/n2"), None);
    assert_eq!(code, 200, "{v}");
    let got = wait_for(limit, "n2's block on n5", || pod_cidr(&m, "n5"));
    assert_eq!(got, first[1]);
}

/// A node as an agent keeps it: Lease renewed and Ready=True posted while
/// `alive` is set.
struct FakeAgent<'a> {
    m: &'a Master,
    name: &'a str,
}

impl FakeAgent<'_> {
    fn register(&self) {
        create(self.m, NODES, &node_body(self.name));
        self.post_ready();
        let lease = json!({"metadata": {"name": self.name},
            "spec": {"holderIdentity": self.name, "leaseDurationSeconds": 40,
                     "renewTime": now_rfc3339(true)}});
        create(self.m, LEASES, &lease);
    }

    fn post_ready(&self) {
        let now = now_rfc3339(false);
        let status = json!({"status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "corral-agent is posting ready status",
                            "lastHeartbeatTime": now, "lastTransitionTime": now}]}});
        let (code, v) = self.m.patch(
            &format!("{NODES}/{}/status", self.name),
            MERGE,
            &status.to_string(),
        );
        assert_eq!(code, 200, "posting node status: {v}");
    }

    fn renew(&self) {
        let patch = json!({"spec": {"renewTime": now_rfc3339(true)}});
        let (code, v) = self.m.patch(
            &format!("{LEASES}/{}", self.name),
            MERGE,
            &patch.to_string(),
        );
        assert_eq!(code, 200, "renewing the lease: {v}");
    }

    /// Renews every 300 ms while `alive`; posts Ready=True again when the
    /// server's Ready is not True (what an agent does when it comes back).
    fn run(&self, alive: &AtomicBool, stop: &AtomicBool) {
        while !stop.load(Ordering::SeqCst) {
            if alive.load(Ordering::SeqCst) {
                self.renew();
                if ready_status(self.m, self.name).as_deref() != Some("True") {
                    self.post_ready();
                }
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

fn ready_status(m: &Master, node: &str) -> Option<String> {
    let n = get(m, &format!("{NODES}/{node}"))?;
    n["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["status"].as_str().map(str::to_string))
}

fn taint<'a>(node: &'a Value, key: &str, effect: &str) -> Option<&'a Value> {
    node["spec"]["taints"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key && t["effect"] == effect)
}

fn bound_pod(name: &str, node: &str, tolerations: Value) -> Value {
    json!({"metadata": {"name": name, "labels": {"app": name}},
           "spec": {"nodeName": node, "tolerations": tolerations,
                    "containers": [{"name": "c", "image": "busybox:1.36"}]}})
}

fn set_pod_status(m: &Master, name: &str, ip: &str, ready: bool) {
    let now = now_rfc3339(false);
    let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"},
                        "lastTransitionTime": now}]}});
    let (code, v) = m.patch(&format!("{PODS}/{name}/status"), MERGE, &status.to_string());
    assert_eq!(code, 200, "pod {name} status: {v}");
}

fn pod_ready(m: &Master, name: &str) -> Option<String> {
    let p = get(m, &format!("{PODS}/{name}"))?;
    p["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["status"].as_str().map(str::to_string))
}

#[test]
fn lost_lease_taints_evicts_and_recovers() {
    let grace = 2.0;
    let eviction = 4.0;
    let m = start(&[
        "--node-monitor-grace-period",
        "2",
        "--node-monitor-period",
        "0.3",
        "--pod-eviction-timeout",
        "4",
    ]);
    let agent = FakeAgent { m: &m, name: "w1" };
    agent.register();
    let unreachable = "node.kubernetes.io/unreachable";
    let forever = json!([{"key": unreachable, "operator": "Exists", "effect": "NoExecute"}]);
    let short = json!([{"key": unreachable, "operator": "Exists", "effect": "NoExecute",
                        "tolerationSeconds": 1}]);
    create(&m, PODS, &bound_pod("plain", "w1", json!([])));
    create(&m, PODS, &bound_pod("stays", "w1", forever));
    create(&m, PODS, &bound_pod("quick", "w1", short));
    for (i, p) in ["plain", "stays", "quick"].iter().enumerate() {
        set_pod_status(&m, p, &format!("10.244.0.{}", i + 2), true);
    }
    let alive = AtomicBool::new(true);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| agent.run(&alive, &stop));
        let _stop = StopOnDrop(&stop);
        // Healthy for longer than the grace period: no taint.
        std::thread::sleep(Duration::from_secs_f64(grace + 1.0));
        let n = get(&m, &format!("{NODES}/w1")).unwrap();
        assert_eq!(ready_status(&m, "w1").as_deref(), Some("True"), "{n}");
        assert!(
            taint(&n, unreachable, "NoExecute").is_none(),
            "tainted while renewing: {n}"
        );

        alive.store(false, Ordering::SeqCst);
        let stopped = Instant::now();
        let n = wait_for(
            Duration::from_secs_f64(grace + 4.0),
            "the unreachable taint",
            || {
                let n = get(&m, &format!("{NODES}/w1"))?;
                taint(&n, unreachable, "NoExecute").is_some().then_some(n)
            },
        );
        let took = stopped.elapsed().as_secs_f64();
        assert!(
            took >= grace - 0.5,
            "tainted {took:.1}s after the last renewal, grace {grace}s"
        );
        let ready = n["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap()
            .clone();
        assert_eq!(ready["status"], "Unknown", "{n}");
        assert_eq!(ready["reason"], "NodeStatusUnknown");
        assert_eq!(ready["message"], "Kubelet stopped posting node status.");
        assert!(taint(&n, unreachable, "NoSchedule").is_some(), "{n}");
        let tainted_at = Instant::now();

        wait_for(Duration::from_secs(5), "pods marked not ready", || {
            (pod_ready(&m, "plain").as_deref() == Some("False")).then_some(())
        });
        wait_for(
            Duration::from_secs(5),
            "the pod tolerating 1 s to go",
            || get(&m, &format!("{PODS}/quick")).is_none().then_some(()),
        );
        assert!(
            get(&m, &format!("{PODS}/plain")).is_some(),
            "evicted before --pod-eviction-timeout"
        );
        wait_for(
            Duration::from_secs_f64(eviction + 5.0),
            "the plain pod to be evicted",
            || get(&m, &format!("{PODS}/plain")).is_none().then_some(()),
        );
        let after = tainted_at.elapsed().as_secs_f64();
        assert!(
            after >= eviction - 1.5,
            "evicted {after:.1}s after the taint, timeout {eviction}s"
        );
        assert!(
            get(&m, &format!("{PODS}/stays")).is_some(),
            "a pod tolerating forever was evicted"
        );

        alive.store(true, Ordering::SeqCst);
        wait_for(
            Duration::from_secs(10),
            "the taint to go with the heartbeats back",
            || {
                let n = get(&m, &format!("{NODES}/w1"))?;
                let clean = taint(&n, unreachable, "NoExecute").is_none()
                    && taint(&n, unreachable, "NoSchedule").is_none();
                (clean && ready_status(&m, "w1").as_deref() == Some("True")).then_some(())
            },
        );
        assert!(get(&m, &format!("{PODS}/stays")).is_some());
    });
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn endpoint_ips(ep: &Value, field: &str) -> Vec<String> {
    let mut ips: Vec<String> = ep["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s[field].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["ip"].as_str().map(str::to_string))
        .collect();
    ips.sort();
    ips
}

#[test]
fn endpoints_follow_readiness_and_go_with_the_service() {
    let m = start(&[]);
    let svc = json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"},
        "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}});
    let svc = create(&m, SVCS, &svc);
    for name in ["a", "b"] {
        let pod = json!({"metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"nodeName": "nowhere", "containers": [{"name": "c", "image": "busybox:1.36",
                     "ports": [{"name": "http", "containerPort": 8080}]}]}});
        create(&m, PODS, &pod);
    }
    let other = json!({"metadata": {"name": "other", "labels": {"app": "db"}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}});
    create(&m, PODS, &other);
    set_pod_status(&m, "a", "10.244.1.10", true);
    set_pod_status(&m, "b", "10.244.1.11", false);
    set_pod_status(&m, "other", "10.244.1.12", true);
    let limit = Duration::from_secs(10);
    let ep = wait_for(limit, "endpoints with a ready and a not-ready pod", || {
        let ep = get(&m, &format!("{EPS}/web"))?;
        (endpoint_ips(&ep, "addresses") == ["10.244.1.10"]
            && endpoint_ips(&ep, "notReadyAddresses") == ["10.244.1.11"])
        .then_some(ep)
    });
    let subset = &ep["subsets"][0];
    assert_eq!(
        subset["ports"],
        json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
    );
    let addr = &subset["addresses"][0];
    assert_eq!(addr["nodeName"], "nowhere");
    assert_eq!(addr["targetRef"]["kind"], "Pod");
    assert_eq!(addr["targetRef"]["name"], "a");
    assert_eq!(
        ep["metadata"]["ownerReferences"][0]["uid"],
        svc["metadata"]["uid"]
    );

    // Unchanged pods: the Endpoints is not rewritten.
    let rv = ep["metadata"]["resourceVersion"].clone();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        get(&m, &format!("{EPS}/web")).unwrap()["metadata"]["resourceVersion"],
        rv
    );

    set_pod_status(&m, "b", "10.244.1.11", true);
    wait_for(limit, "both pods ready in the endpoints", || {
        let ep = get(&m, &format!("{EPS}/web"))?;
        (endpoint_ips(&ep, "addresses") == ["10.244.1.10", "10.244.1.11"]
            && endpoint_ips(&ep, "notReadyAddresses").is_empty())
        .then_some(())
    });
    let (code, v) = m.call(Method::DELETE, &format!("{PODS}/a"), None);
    assert_eq!(code, 200, "{v}");
    wait_for(limit, "the deleted pod out of the endpoints", || {
        let ep = get(&m, &format!("{EPS}/web"))?;
        (endpoint_ips(&ep, "addresses") == ["10.244.1.11"]).then_some(())
    });
    let (code, v) = m.call(Method::DELETE, &format!("{SVCS}/web"), None);
    assert_eq!(code, 200, "{v}");
    wait_for(limit, "the endpoints to go with the service", || {
        get(&m, &format!("{EPS}/web")).is_none().then_some(())
    });
}

fn owner(kind: &str, api_version: &str, name: &str, uid: &str) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "name": name, "uid": uid,
           "controller": true, "blockOwnerDeletion": true})
}

fn owned_pod(name: &str, owners: Value) -> Value {
    json!({"metadata": {"name": name, "ownerReferences": owners},
           "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}})
}

#[test]
fn garbage_collector_deletes_orphans_and_finishes_foreground_deletion() {
    let m = start(&[]);
    let keeper = create(
        &m,
        SVCS,
        &json!({"metadata": {"name": "keeper"}, "spec": {"ports": [{"port": 80}]}}),
    );
    let keeper_uid = keeper["metadata"]["uid"].as_str().unwrap().to_string();
    // An owner deleted and made again under the same name is another object.
    let old = create(
        &m,
        SVCS,
        &json!({"metadata": {"name": "again"}, "spec": {"ports": [{"port": 80}]}}),
    );
    let old_uid = old["metadata"]["uid"].as_str().unwrap().to_string();
    let (code, v) = m.call(Method::DELETE, &format!("{SVCS}/again"), None);
    assert_eq!(code, 200, "{v}");
    create(
        &m,
        SVCS,
        &json!({"metadata": {"name": "again"}, "spec": {"ports": [{"port": 80}]}}),
    );

    let ghost_rs = owner(
        "ReplicaSet",
        "apps/v1",
        "ghost",
        "00000000-0000-4000-8000-000000000001",
    );
    create(&m, PODS, &owned_pod("orphan", json!([ghost_rs])));
    create(
        &m,
        PODS,
        &owned_pod(
            "renamed",
            json!([owner("Service", "v1", "again", &old_uid)]),
        ),
    );
    create(
        &m,
        PODS,
        &owned_pod(
            "kept",
            json!([owner("Service", "v1", "keeper", &keeper_uid)]),
        ),
    );
    create(
        &m,
        PODS,
        &owned_pod(
            "half",
            json!([owner("Service", "v1", "keeper", &keeper_uid), ghost_rs]),
        ),
    );
    create(
        &m,
        PODS,
        &owned_pod(
            "foreign",
            json!([owner("StatefulSet", "apps/v1", "db", "u-db")]),
        ),
    );
    let ep = json!({"metadata": {"name": "lonely", "ownerReferences":
        [owner("Service", "v1", "lonely", "00000000-0000-4000-8000-000000000002")]}});
    create(&m, EPS, &ep);

    let limit = Duration::from_secs(15);
    for gone in [
        format!("{PODS}/orphan"),
        format!("{PODS}/renamed"),
        format!("{EPS}/lonely"),
    ] {
        wait_for(limit, &format!("{gone} to be collected"), || {
            get(&m, &gone).is_none().then_some(())
        });
    }
    let half = wait_for(limit, "the dangling reference dropped", || {
        let p = get(&m, &format!("{PODS}/half"))?;
        (p["metadata"]["ownerReferences"].as_array()?.len() == 1).then_some(p)
    });
    assert_eq!(
        half["metadata"]["ownerReferences"][0]["uid"],
        keeper_uid.as_str()
    );
    assert!(get(&m, &format!("{PODS}/kept")).is_some());
    assert!(
        get(&m, &format!("{PODS}/foreign")).is_some(),
        "an owner of a kind not served was taken as gone"
    );

    // A Service held by the foregroundDeletion finalizer (as a failed
    // foreground DELETE leaves it): the GC deletes its dependents, then it.
    let fg = json!({"metadata": {"name": "fg", "finalizers": ["foregroundDeletion"]},
                    "spec": {"ports": [{"port": 80}]}});
    let fg = create(&m, SVCS, &fg);
    let fg_uid = fg["metadata"]["uid"].as_str().unwrap().to_string();
    create(
        &m,
        PODS,
        &owned_pod("fg-dep", json!([owner("Service", "v1", "fg", &fg_uid)])),
    );
    let (code, v) = m.call(Method::DELETE, &format!("{SVCS}/fg"), None);
    assert_eq!(code, 200, "{v}");
    assert!(v["metadata"]["deletionTimestamp"].is_string(), "{v}");
    wait_for(limit, "the foreground owner's dependent deleted", || {
        get(&m, &format!("{PODS}/fg-dep")).is_none().then_some(())
    });
    wait_for(limit, "the foreground owner deleted", || {
        get(&m, &format!("{SVCS}/fg")).is_none().then_some(())
    });
}

fn cluster_ip(v: &Value) -> Ipv4Addr {
    v["spec"]["clusterIP"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no clusterIP: {v}"))
}

fn svc(name: &str, extra: Value) -> Value {
    let mut spec = json!({"ports": [{"port": 80}]});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    json!({"metadata": {"name": name}, "spec": spec})
}

fn cause_field(v: &Value) -> String {
    v["details"]["causes"][0]["field"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn cluster_ips_unique_checked_and_restart_safe() {
    let mut m = start(&[
        "--service-cluster-ip-range",
        "10.100.0.0/24",
        "--service-node-port-range",
        "30000-30100",
    ]);
    let ips: Vec<Ipv4Addr> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let m = &m;
                s.spawn(move || cluster_ip(&create(m, SVCS, &svc(&format!("s{i}"), json!({})))))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let distinct: BTreeSet<Ipv4Addr> = ips.iter().copied().collect();
    assert_eq!(distinct.len(), 20, "{ips:?}");
    for ip in &ips {
        let o = ip.octets();
        assert!(
            o[..3] == [10, 100, 0] && o[3] >= 2 && o[3] < 255,
            "{ip} outside 10.100.0.2-254"
        );
    }
    let s0 = get(&m, &format!("{SVCS}/s0")).unwrap();
    assert_eq!(s0["spec"]["clusterIPs"], json!([s0["spec"]["clusterIP"]]));

    let (code, v) = m.call(
        Method::POST,
        SVCS,
        Some(&svc("outside", json!({"clusterIP": "10.200.0.5"}))),
    );
    assert_eq!(code, 422, "{v}");
    assert_eq!(cause_field(&v), "spec.clusterIP");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("The range of valid IPs is 10.100.0.0/24"),
        "{v}"
    );
    let taken = ips[0].to_string();
    let (code, v) = m.call(
        Method::POST,
        SVCS,
        Some(&svc("dup", json!({"clusterIP": taken}))),
    );
    assert_eq!(code, 422, "{v}");
    assert_eq!(cause_field(&v), "spec.clusterIP");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("provided IP is already allocated"),
        "{v}"
    );
    assert!(get(&m, &format!("{SVCS}/dup")).is_none());
    let free = (2..255u8)
        .map(|i| Ipv4Addr::new(10, 100, 0, i))
        .find(|ip| !distinct.contains(ip))
        .unwrap();
    let chosen = create(
        &m,
        SVCS,
        &svc("chosen", json!({"clusterIP": free.to_string()})),
    );
    assert_eq!(cluster_ip(&chosen), free);
    let headless = create(&m, SVCS, &svc("headless", json!({"clusterIP": "None"})));
    assert_eq!(headless["spec"]["clusterIP"], "None");

    let np = create(&m, SVCS, &svc("np", json!({"type": "NodePort"})));
    let port = np["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30000..=30100).contains(&port), "{np}");
    let (code, v) = m.call(
        Method::POST,
        SVCS,
        Some(&json!({"metadata": {"name": "np2"},
        "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": port}]}})),
    );
    assert_eq!(code, 422, "{v}");
    assert_eq!(cause_field(&v), "spec.ports[0].nodePort");

    // Updates keep the address; changing it is refused.
    let path = format!("{SVCS}/s1");
    let (code, v) = m.patch(
        &path,
        MERGE,
        &json!({"metadata": {"labels": {"x": "y"}}}).to_string(),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(cluster_ip(&v), ips[1]);
    let (code, v) = m.patch(
        &path,
        MERGE,
        &json!({"spec": {"clusterIP": free.to_string()}}).to_string(),
    );
    assert_eq!(code, 422, "{v}");
    assert_eq!(cause_field(&v), "spec.clusterIP");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("field is immutable"),
        "{v}"
    );

    // After a restart the stored Services still hold their addresses.
    m.restart().unwrap();
    let after = create(&m, SVCS, &svc("after", json!({})));
    let ip = cluster_ip(&after);
    assert!(
        !distinct.contains(&ip) && ip != free,
        "{ip} handed out twice after a restart"
    );
}

#[test]
fn log_and_exec_errors_name_the_pod_and_node() {
    let m = start(&[]);
    // Never scheduled: a nodeSelector no node has.
    let pending = json!({"metadata": {"name": "pending"},
        "spec": {"nodeSelector": {"corral.test/none": "x"},
                 "containers": [{"name": "c", "image": "busybox:1.36"}]}});
    create(&m, PODS, &pending);
    let (code, v) = m.call(Method::GET, &format!("{PODS}/pending/log"), None);
    assert_eq!(code, 400, "{v}");
    assert_eq!(v["message"], "pod pending does not have a host assigned");
    create(&m, PODS, &bound_pod("lost", "ghost-node", json!([])));
    let (code, v) = m.call(Method::GET, &format!("{PODS}/lost/log"), None);
    assert_eq!(code, 404, "{v}");
    assert_eq!(v["message"], "nodes \"ghost-node\" not found");
    let (code, v) = m.call(Method::GET, &format!("{PODS}/nothere/log"), None);
    assert_eq!(code, 404, "{v}");
    let (code, v) = m.call(Method::GET, &format!("{PODS}/lost/log?container=zz"), None);
    assert_eq!(code, 400, "{v}");
    assert_eq!(v["message"], "container zz is not valid for pod lost");
    // exec needs a WebSocket; SPDY (older kubectl) is refused saying so.
    let (code, v) = m.call(Method::POST, &format!("{PODS}/lost/exec?command=ls"), None);
    assert_eq!(code, 400, "{v}");
    let spdy = m
        .request(Method::POST, &format!("{PODS}/lost/exec?command=ls"))
        .header("Connection", "Upgrade")
        .header("Upgrade", "SPDY/3.1");
    let (code, v) = corral_tests::master::send(spdy);
    assert_eq!(code, 400, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or("")
            .contains("SPDY is not supported"),
        "{v}"
    );
    // Only the admin: the join token (an agent's) may not exec through the master.
    let join = std::fs::read_to_string(m.data_dir().join("join-token")).unwrap();
    let r = m
        .anonymous(Method::GET, &format!("{PODS}/lost/log"))
        .bearer_auth(join.trim());
    let (code, v) = corral_tests::master::send(r);
    assert_eq!(code, 403, "{v}");
}

/// `kubectl logs`, `logs -f` and `exec` through the master to a real
/// corral-agent running a real pod (skipped without root or the binaries).
#[test]
fn log_and_exec_reach_the_agent() {
    use corral_tests::agent::{sh_container, AgentTest};
    // The joined agent's Service rules, in a table of this test's own,
    // removed after the agent (declared first, dropped last).
    let table = corral_tests::net::NftTableGuard("crlnodesvc58".into());
    let mut agent = match AgentTest::new(58) {
        Ok(a) => a,
        Err(e) => corral_tests::skip!("{e}"),
    };
    std::env::set_var("CORRAL_MASTER_CLUSTER_CIDR", agent.cidr());
    std::env::set_var("CORRAL_MASTER_NODE_CIDR_MASK_SIZE", "24");
    let m = start(&[]);
    let d = m.data_dir();
    std::env::set_var("CORRAL_AGENT_SERVER", m.url(""));
    std::env::set_var("CORRAL_AGENT_JOIN_TOKEN_FILE", d.join("join-token"));
    std::env::set_var("CORRAL_AGENT_CA_FILE", d.join("pki/ca.crt"));
    std::env::set_var("CORRAL_AGENT_LEASE_RENEW", "1");
    std::env::set_var("CORRAL_AGENT_SERVICES_TABLE", &table.0);
    agent.start();
    let script =
        "echo hello-from-pod; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done";
    let pod = json!({"metadata": {"name": "talk"},
        "spec": {"nodeName": "agent-test", "terminationGracePeriodSeconds": 1,
                 "containers": [sh_container("c", script)]}});
    create(&m, PODS, &pod);
    wait_for(
        Duration::from_secs(60),
        "the pod running on the agent",
        || {
            let p = get(&m, &format!("{PODS}/talk"))?;
            (p["status"]["phase"] == "Running").then_some(())
        },
    );

    let log = wait_for(
        Duration::from_secs(10),
        "the pod's log through the master",
        || {
            let r = m
                .request(Method::GET, &format!("{PODS}/talk/log"))
                .send()
                .ok()?;
            let body = r.text().ok()?;
            body.contains("hello-from-pod").then_some(body)
        },
    );
    assert!(log.starts_with("hello-from-pod\n"), "{log}");

    // follow: lines keep arriving on one open response.
    use std::io::Read;
    let mut r = m
        .request(
            Method::GET,
            &format!("{PODS}/talk/log?follow=true&tailLines=1"),
        )
        .timeout(Duration::from_secs(30))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut seen = String::new();
    let mut buf = [0u8; 256];
    let began = Instant::now();
    while seen.matches("tick").count() < 6 {
        let n = r.read(&mut buf).unwrap();
        assert!(n > 0, "the followed log ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(
        began.elapsed() >= Duration::from_millis(600),
        "6 ticks 200 ms apart came at once: {seen}"
    );
    drop(r);

    if !std::process::Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("note: kubectl missing: kubectl logs/exec not checked");
        return;
    }
    let kubectl = |args: &[&str]| {
        std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(m.kubeconfig())
            .args(args)
            .output()
            .unwrap()
    };
    let out = kubectl(&["logs", "talk", "--tail=1"]);
    assert!(
        out.status.success(),
        "kubectl logs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("tick "),
        "{out:?}"
    );
    let out = kubectl(&[
        "exec",
        "talk",
        "--",
        "sh",
        "-c",
        "echo out-$((6*7)); echo err >&2; exit 3",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out-42\n", "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("err"),
        "{out:?}"
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(m.kubeconfig())
        .args(["exec", "-i", "talk", "--", "cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"through the master\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "through the master\n",
        "{out:?}"
    );
}
