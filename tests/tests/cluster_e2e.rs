//! The cluster end to end: a master and three hosts (network namespaces on a
//! bridge, one real `corral-agent` each), stock kubectl, real pods serving
//! HTTP through a Service. All traffic stays inside the namespaces the
//! harness made (see tests/src/cluster.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_api::core::{ConditionStatus, Endpoints, Node, Pod, PodPhase, Service};
use corral_client::{Client, ListParams};
use corral_tests::cluster::ClusterHarness;
use corral_tests::skip;
use serde_json::{json, Value};

const WEB_SCRIPT: &str =
    "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www";

fn deployment(name: &str, replicas: u32, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "web",
                        "image": image,
                        "imagePullPolicy": "Never",
                        "command": ["sh", "-c", WEB_SCRIPT],
                        "ports": [{"containerPort": 80, "name": "http"}],
                        "readinessProbe": {
                            "httpGet": {"path": "/", "port": 80},
                            "periodSeconds": 1
                        }
                    }]
                }
            }
        }
    })
}

fn service(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": "http"}]}
    })
}

/// A pod on host `host` from which requests are sent.
fn client_pod(host: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": format!("client-{host}"), "namespace": "default"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "nodeSelector": {"kubernetes.io/hostname": host},
            "containers": [{
                "name": "c",
                "image": "localhost/busybox:latest",
                "imagePullPolicy": "Never",
                "command": ["sleep", "3600"]
            }]
        }
    })
}

struct Cluster {
    h: ClusterHarness,
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
}

impl Cluster {
    /// A master (with `flags`) and `hosts` joined agents, all nodes Ready.
    fn up(tag: u8, hosts: usize, flags: &[&str]) -> Result<Cluster, String> {
        let mut h = ClusterHarness::new(tag, hosts)?;
        h.master_flags(flags);
        h.start_master();
        for i in 0..hosts {
            h.start_agent(i);
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| format!("tokio: {e}"))?;
        let mut c = Cluster {
            h,
            rt,
            client: None,
        };
        c.reconnect();
        c.wait(
            "every node Ready with a pod CIDR",
            Duration::from_secs(60),
            |c| {
                let nodes = c.nodes();
                nodes.len() == hosts
                    && nodes
                        .iter()
                        .all(|n| is_ready(n) && !n.spec.pod_cidr.is_empty())
            },
        );
        Ok(c)
    }

    fn reconnect(&mut self) {
        self.client = Some(Client::from_kubeconfig(&self.h.kubeconfig()).expect("admin client"));
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("client")
    }

    fn nodes(&self) -> Vec<Node> {
        let c = self.client();
        self.rt
            .block_on(c.list::<Node>("", &ListParams::default()))
            .map(|l| l.items)
            .unwrap_or_default()
    }

    fn pods(&self, selector: &str) -> Vec<Pod> {
        let c = self.client();
        self.rt
            .block_on(c.list::<Pod>("default", &ListParams::labels(selector)))
            .map(|l| l.items)
            .unwrap_or_default()
    }

    /// Pods of `app` not being deleted.
    fn live_pods(&self, app: &str) -> Vec<Pod> {
        self.pods(&format!("app={app}"))
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect()
    }

    fn ready_addresses(&self, svc: &str) -> usize {
        let c = self.client();
        let ep = self.rt.block_on(c.get_opt::<Endpoints>("default", svc));
        ep.ok()
            .flatten()
            .map(|e| e.subsets.iter().map(|s| s.addresses.len()).sum())
            .unwrap_or(0)
    }

    fn cluster_ip(&self, svc: &str) -> String {
        let c = self.client();
        let s: Service = self
            .rt
            .block_on(c.get("default", svc))
            .expect("get service");
        assert!(
            !s.spec.cluster_ip.is_empty(),
            "service {svc} got no clusterIP"
        );
        s.spec.cluster_ip
    }

    fn apply(&self, docs: &[Value]) {
        // One file per object in a fresh directory: `apply -f DIR`.
        let dir = tempfile::tempdir_in(self.h.path("")).expect("manifest dir");
        for (i, doc) in docs.iter().enumerate() {
            let path = dir.path().join(format!("{i}.json"));
            std::fs::write(&path, doc.to_string()).expect("write manifest");
        }
        let out = self
            .h
            .kubectl(&["apply", "-f", &dir.path().to_string_lossy()]);
        assert!(out.status.success(), "kubectl apply: {}", text(&out.stderr));
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.h.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {}: {}{}",
            args.join(" "),
            text(&out.stderr),
            self.diagnostics()
        );
        text(&out.stdout)
    }

    /// Fetches `http://ip/` `n` times from inside pod `pod` (kubectl exec
    /// through the master to the pod's agent); the bodies, one per line.
    fn fetch_from(&self, pod: &str, ip: &str, n: usize) -> Vec<String> {
        // Not `wget -T`: Debian's static busybox 1.35 segfaults with it.
        let script = format!(
            "for i in $(seq {n}); do timeout 3 wget -q -O - http://{ip}/ 2>&1 || echo FAILED; done"
        );
        self.kubectl_ok(&["exec", pod, "--", "sh", "-c", &script])
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn wait(&self, what: &str, timeout: Duration, mut ok: impl FnMut(&Cluster) -> bool) {
        let deadline = Instant::now() + timeout;
        while !ok(self) {
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}{}", self.diagnostics());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn wait_ready(&self, app: &str, n: usize, timeout: Duration) -> Vec<Pod> {
        self.wait(&format!("{n} ready pods of {app}"), timeout, |c| {
            let pods = c.live_pods(app);
            pods.len() == n && pods.iter().all(pod_ready)
        });
        self.live_pods(app)
    }

    fn diagnostics(&self) -> String {
        let pods = self.h.kubectl(&["get", "pods", "-o", "wide", "-A"]);
        let nodes = self.h.kubectl(&["get", "nodes", "-o", "wide"]);
        let tail = |s: String| {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(30)..].join("\n")
        };
        let agents: String = self
            .h
            .hosts
            .iter()
            .map(|h| format!("\n--- agent {} ---\n{}", h.name, tail(h.agent_log())))
            .collect();
        format!(
            "\n--- pods ---\n{}\n--- nodes ---\n{}\n--- master ---\n{}{agents}",
            text(&pods.stdout),
            text(&nodes.stdout),
            tail(self.h.master_log())
        )
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn is_ready(n: &Node) -> bool {
    n.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == ConditionStatus::True)
    })
}

fn pod_ready(p: &Pod) -> bool {
    p.status.as_ref().is_some_and(|s| {
        s.phase == Some(PodPhase::Running)
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == ConditionStatus::True)
    })
}

fn per_node(pods: &[Pod]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for p in pods {
        *m.entry(p.spec.node_name.clone()).or_default() += 1;
    }
    m
}

fn names(pods: &[Pod]) -> BTreeSet<String> {
    pods.iter().map(|p| p.metadata.name.clone()).collect()
}

#[test]
fn deployment_spread_service_scale_and_rollout() {
    let c = match Cluster::up(41, 3, &[]) {
        Ok(c) => c,
        Err(e) => skip!("{e}"),
    };
    c.apply(&[
        deployment("web", 6, "localhost/busybox:latest"),
        service("web"),
        client_pod("host1"),
        client_pod("host2"),
        client_pod("host3"),
    ]);
    let pods = c.wait_ready("web", 6, Duration::from_secs(120));
    let spread: Vec<usize> = per_node(&pods).into_values().collect();
    assert_eq!(
        spread,
        vec![2, 2, 2],
        "replicas per node: {:?}",
        per_node(&pods)
    );

    c.wait("6 ready endpoints", Duration::from_secs(30), |c| {
        c.ready_addresses("web") == 6
    });
    let ip = c.cluster_ip("web");
    for host in ["host1", "host2", "host3"] {
        let client = format!("client-{host}");
        c.wait(&format!("{client} running"), Duration::from_secs(60), |c| {
            c.pods("")
                .iter()
                .any(|p| p.metadata.name == client && pod_ready(p))
        });
        let bodies = c.fetch_from(&client, &ip, 60);
        assert_eq!(bodies.len(), 60, "{bodies:?}");
        let answered: BTreeSet<String> = bodies.iter().cloned().collect();
        assert!(
            !answered.contains("FAILED"),
            "failed requests from {host}: {bodies:?}"
        );
        assert_eq!(answered, names(&pods), "backends reached from {host}");
    }

    c.kubectl_ok(&["scale", "deployment/web", "--replicas=12"]);
    let pods = c.wait_ready("web", 12, Duration::from_secs(120));
    assert!(
        per_node(&pods).values().all(|&n| n == 4),
        "{:?}",
        per_node(&pods)
    );
    c.kubectl_ok(&["scale", "deployment/web", "--replicas=3"]);
    c.wait_ready("web", 3, Duration::from_secs(60));
    c.wait("3 endpoints", Duration::from_secs(30), |c| {
        c.ready_addresses("web") == 3
    });

    // Rolling update: the Service keeps a ready endpoint at every sample.
    let stop = Arc::new(AtomicBool::new(false));
    let min_ready = Arc::new(AtomicUsize::new(usize::MAX));
    let sampler = {
        let (stop, min_ready) = (stop.clone(), min_ready.clone());
        let client = c.client().clone();
        c.rt.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(Some(ep)) = client.get_opt::<Endpoints>("default", "web").await {
                    let n = ep.subsets.iter().map(|s| s.addresses.len()).sum();
                    min_ready.fetch_min(n, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    c.kubectl_ok(&["set", "image", "deployment/web", "web=localhost/busybox:v2"]);
    c.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    stop.store(true, Ordering::Relaxed);
    let _ = c.rt.block_on(sampler);
    assert!(
        min_ready.load(Ordering::Relaxed) >= 1,
        "the Service had no ready endpoint during the rollout"
    );
    let pods = c.wait_ready("web", 3, Duration::from_secs(60));
    for p in &pods {
        assert_eq!(
            p.spec.containers[0].image, "localhost/busybox:v2",
            "{}",
            p.metadata.name
        );
    }

    // A pod that fits nowhere stays Pending with the scheduler's reason.
    c.apply(&[json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "huge", "namespace": "default"},
        "spec": {"containers": [{
            "name": "c", "image": "localhost/busybox:latest", "imagePullPolicy": "Never",
            "command": ["sleep", "1"],
            "resources": {"requests": {"cpu": "1000"}}
        }]}
    })]);
    c.wait(
        "huge to be reported unschedulable",
        Duration::from_secs(30),
        |c| {
            c.pods("").iter().any(|p| {
                p.metadata.name == "huge"
                    && p.spec.node_name.is_empty()
                    && p.status.as_ref().is_some_and(|s| {
                        s.conditions.iter().any(|cond| {
                            cond.type_ == "PodScheduled"
                                && cond.reason == "Unschedulable"
                                && cond.message.contains("Insufficient cpu")
                        })
                    })
            })
        },
    );
}

#[test]
fn host_failure_and_return() {
    let mut c = match Cluster::up(
        42,
        3,
        &[
            "--node-monitor-grace-period",
            "3",
            "--node-monitor-period",
            "0.5",
            "--pod-eviction-timeout",
            "2",
        ],
    ) {
        Ok(c) => c,
        Err(e) => skip!("{e}"),
    };
    c.apply(&[
        deployment("web", 6, "localhost/busybox:latest"),
        service("web"),
        client_pod("host1"),
    ]);
    let before = c.wait_ready("web", 6, Duration::from_secs(120));
    let on_host3: BTreeSet<String> = before
        .iter()
        .filter(|p| p.spec.node_name == "host3")
        .map(|p| p.metadata.name.clone())
        .collect();
    assert_eq!(on_host3.len(), 2, "{:?}", per_node(&before));

    // host3 goes away: its agent dies and its link is cut.
    c.h.kill_agent(2);
    c.h.cut_host(2).expect("cut host3");
    c.wait("host3 NotReady", Duration::from_secs(30), |c| {
        c.nodes()
            .iter()
            .any(|n| n.metadata.name == "host3" && !is_ready(n))
    });
    c.wait(
        "6 ready replicas on host1 and host2",
        Duration::from_secs(90),
        |c| {
            let pods: Vec<Pod> = c
                .live_pods("web")
                .into_iter()
                .filter(|p| p.spec.node_name != "host3")
                .collect();
            pods.len() == 6 && pods.iter().all(pod_ready)
        },
    );
    c.wait("endpoints without host3", Duration::from_secs(30), |c| {
        c.ready_addresses("web") == 6
    });
    let ip = c.cluster_ip("web");
    let bodies = c.fetch_from("client-host1", &ip, 30);
    assert!(
        bodies.iter().all(|b| b != "FAILED"),
        "the Service failed while host3 was away: {bodies:?}"
    );

    // host3 comes back: the pods evicted from it are stopped there, nothing
    // runs twice.
    c.h.plug_host(2).expect("plug host3");
    c.h.start_agent(2);
    c.wait("host3 Ready again", Duration::from_secs(60), |c| {
        c.nodes()
            .iter()
            .any(|n| n.metadata.name == "host3" && is_ready(n))
    });
    c.wait(
        "the evicted pods gone from the API",
        Duration::from_secs(60),
        |c| {
            let all = names(&c.pods("app=web"));
            on_host3.iter().all(|n| !all.contains(n))
        },
    );
    let host3 = &c.h.hosts[2];
    c.wait(
        "host3's old containers stopped",
        Duration::from_secs(60),
        |_| running_pod_names(host3).is_disjoint(&on_host3),
    );
    let after = c.wait_ready("web", 6, Duration::from_secs(30));
    assert_eq!(names(&after).len(), 6);
}

/// Pods whose containers run on a host, from its agent's status files.
fn running_pod_names(h: &corral_tests::cluster::Host) -> BTreeSet<String> {
    let dir = h.path("data").join("status");
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let Ok(p) = serde_json::from_str::<Pod>(&text) else {
            continue;
        };
        let running = p.status.as_ref().is_some_and(|s| {
            s.container_statuses
                .iter()
                .any(|c| c.state.as_ref().is_some_and(|st| st.running.is_some()))
        });
        if running {
            out.insert(p.metadata.name);
        }
    }
    out
}

#[test]
fn master_restart_mid_way() {
    let mut c = match Cluster::up(43, 2, &[]) {
        Ok(c) => c,
        Err(e) => skip!("{e}"),
    };
    c.apply(&[
        deployment("web", 4, "localhost/busybox:latest"),
        service("web"),
    ]);
    // Killed while the controllers and agents are still at work.
    std::thread::sleep(Duration::from_millis(300));
    c.h.kill_master();
    std::thread::sleep(Duration::from_secs(2));
    c.h.start_master();
    c.reconnect();
    let pods = c.wait_ready("web", 4, Duration::from_secs(120));
    let uids: BTreeSet<String> = pods.iter().map(|p| p.metadata.uid.clone()).collect();
    c.wait("4 endpoints", Duration::from_secs(30), |c| {
        c.ready_addresses("web") == 4
    });
    // Once converged it stays: no extra ReplicaSet, no pod replaced.
    let rs = c.kubectl_ok(&["get", "replicasets", "-o", "name"]);
    assert_eq!(rs.lines().count(), 1, "replicasets: {rs}");
    std::thread::sleep(Duration::from_secs(3));
    let again: BTreeSet<String> = c
        .live_pods("web")
        .iter()
        .map(|p| p.metadata.uid.clone())
        .collect();
    assert_eq!(again, uids, "pods changed after convergence");
    assert_eq!(
        c.pods("app=web").len(),
        4,
        "pods: {:?}",
        names(&c.pods("app=web"))
    );
}
