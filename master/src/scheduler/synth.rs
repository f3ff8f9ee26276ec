//! Synthetic nodes and pods: the building blocks of the scheduler's tests and
//! of `corral-bench-scheduler`'s clusters. Objects look like what the agent
//! registers and the ReplicaSet controller creates.

use std::collections::BTreeMap;

use corral_api::core::{
    ConditionStatus, Container, Node, NodeCondition, NodeStatus, Pod, ResourceRequirements, Taint,
    TaintEffect, Toleration, TolerationOperator,
};
use corral_api::quantity::{Format, Quantity};
use corral_api::{ObjectMeta, OwnerReference, Time};

/// A Ready node that heartbeated just now, with 110 pod slots and 100 GiB of
/// ephemeral storage.
pub fn node(name: &str, cpu_milli: i64, memory: i64) -> Node {
    let now = Time::now();
    let mut allocatable = BTreeMap::new();
    allocatable.insert("cpu".to_string(), Quantity::from_milli(cpu_milli));
    allocatable.insert(
        "memory".to_string(),
        Quantity::from_value(memory, Format::BinarySI),
    );
    allocatable.insert(
        "pods".to_string(),
        Quantity::from_value(110, Format::DecimalSI),
    );
    allocatable.insert(
        "ephemeral-storage".to_string(),
        Quantity::from_value(100 << 30, Format::BinarySI),
    );
    let mut meta = ObjectMeta::named(name);
    meta.uid = format!("uid-node-{name}");
    for (k, v) in [
        ("kubernetes.io/hostname", name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
    ] {
        meta.labels.insert(k.to_string(), v.to_string());
    }
    Node {
        api_version: "v1".into(),
        kind: "Node".into(),
        metadata: meta,
        spec: Default::default(),
        status: Some(NodeStatus {
            capacity: allocatable.clone(),
            allocatable,
            conditions: vec![NodeCondition {
                type_: "Ready".into(),
                status: ConditionStatus::True,
                last_heartbeat_time: Some(now),
                last_transition_time: Some(now),
                reason: "KubeletReady".into(),
                message: "agent is posting ready status".into(),
            }],
            ..NodeStatus::default()
        }),
    }
}

/// A pending pod in `default` with one container and no requests.
pub fn pod(name: &str) -> Pod {
    let mut meta = ObjectMeta::namespaced("default", name);
    meta.uid = format!("uid-pod-{name}");
    let mut pod = Pod {
        api_version: "v1".into(),
        kind: "Pod".into(),
        metadata: meta,
        ..Pod::default()
    };
    pod.spec.containers = vec![Container {
        name: "app".into(),
        image: "busybox".into(),
        ..Container::default()
    }];
    pod.spec.scheduler_name = "default-scheduler".into();
    pod
}

/// Sets the first container's cpu and memory requests (`"250m"`, `"256Mi"`).
pub fn with_requests(mut pod: Pod, cpu: &str, memory: &str) -> Pod {
    let mut requests = BTreeMap::new();
    for (name, v) in [("cpu", cpu), ("memory", memory)] {
        if let Ok(q) = Quantity::parse(v) {
            requests.insert(name.to_string(), q);
        }
    }
    if let Some(c) = pod.spec.containers.first_mut() {
        c.resources = Some(ResourceRequirements {
            requests,
            ..ResourceRequirements::default()
        });
    }
    pod
}

/// Makes the pod a replica of the ReplicaSet with this uid.
pub fn owned_by(mut pod: Pod, uid: &str) -> Pod {
    pod.metadata.owner_references = vec![OwnerReference {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        name: uid.to_string(),
        uid: uid.to_string(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }];
    pod
}

/// One Deployment's worth of pending pods.
pub struct Workload {
    pub name: &'static str,
    pub replicas: usize,
    pub cpu: &'static str,
    pub memory: &'static str,
    /// Steered to the `gpu` nodes: tolerates their taint and requires their label.
    pub gpu: bool,
    /// nodeSelector `disk: ssd`.
    pub ssd: bool,
}

/// The benchmark's mix: 10,000 replicas of five Deployments.
pub const BENCH_WORKLOADS: [Workload; 5] = [
    Workload {
        name: "web",
        replicas: 4000,
        cpu: "250m",
        memory: "256Mi",
        gpu: false,
        ssd: false,
    },
    Workload {
        name: "api",
        replicas: 3000,
        cpu: "500m",
        memory: "512Mi",
        gpu: false,
        ssd: false,
    },
    Workload {
        name: "worker",
        replicas: 2000,
        cpu: "1",
        memory: "1Gi",
        gpu: false,
        ssd: false,
    },
    Workload {
        name: "cache",
        replicas: 800,
        cpu: "200m",
        memory: "2Gi",
        gpu: false,
        ssd: true,
    },
    Workload {
        name: "train",
        replicas: 200,
        cpu: "500m",
        memory: "1Gi",
        gpu: true,
        ssd: false,
    },
];

/// `count` nodes of three sizes (4, 8 and 16 cpus with 4 GiB per cpu) in
/// three zones; one in 3 has an SSD, one in 50 is a tainted GPU node, one in
/// 100 is cordoned and one in 200 is not Ready.
pub fn nodes(count: usize) -> Vec<Node> {
    (0..count)
        .map(|i| {
            let cpus = [4, 8, 16][i % 3];
            let mut n = node(&format!("node-{i:05}"), cpus * 1000, cpus << 32);
            let labels = &mut n.metadata.labels;
            let zone = ["zone-a", "zone-b", "zone-c"][(i / 3) % 3];
            labels.insert("topology.kubernetes.io/zone".into(), zone.into());
            if i % 3 == 1 {
                labels.insert("disk".into(), "ssd".into());
            }
            if i % 50 == 7 {
                labels.insert("accelerator".into(), "gpu".into());
                n.spec.taints.push(Taint {
                    key: "dedicated".into(),
                    value: "gpu".into(),
                    effect: TaintEffect::NoSchedule,
                    time_added: None,
                });
            }
            if i % 100 == 13 {
                n.spec.unschedulable = true;
            }
            if i % 200 == 42 {
                if let Some(s) = n.status.as_mut() {
                    s.conditions[0].status = ConditionStatus::Unknown;
                }
            }
            n
        })
        .collect()
}

/// The replicas of `workloads`, interleaved by creation time as several
/// controllers would create them; each pod's creation second is its index.
pub fn pending_pods(workloads: &[Workload]) -> Vec<Pod> {
    let mut per: Vec<Vec<Pod>> = workloads.iter().map(replicas).collect();
    let mut out = Vec::new();
    let mut k = 0usize;
    while per.iter().any(|v| !v.is_empty()) {
        for v in per.iter_mut() {
            if let Some(mut p) = v.pop() {
                p.metadata.creation_timestamp = Some(Time::from_unix(1_800_000_000 + k as i64));
                k += 1;
                out.push(p);
            }
        }
    }
    out
}

fn replicas(w: &Workload) -> Vec<Pod> {
    let uid = format!("uid-rs-{}", w.name);
    (0..w.replicas)
        .rev()
        .map(|r| {
            let mut p = owned_by(
                with_requests(pod(&format!("{}-{r:05}", w.name)), w.cpu, w.memory),
                &uid,
            );
            p.metadata.labels.insert("app".into(), w.name.into());
            if w.ssd {
                p.spec.node_selector.insert("disk".into(), "ssd".into());
            }
            if w.gpu {
                steer_to_gpu(&mut p);
            }
            p
        })
        .collect()
}

fn steer_to_gpu(p: &mut Pod) {
    use corral_api::core::{
        Affinity, NodeAffinity, NodeSelector, NodeSelectorOperator, NodeSelectorRequirement,
        NodeSelectorTerm,
    };
    p.spec.tolerations.push(Toleration {
        key: "dedicated".into(),
        operator: Some(TolerationOperator::Equal),
        value: "gpu".into(),
        effect: Some(TaintEffect::NoSchedule),
        toleration_seconds: None,
    });
    p.spec.affinity = Some(Affinity {
        node_affinity: Some(NodeAffinity {
            required: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: vec![NodeSelectorRequirement {
                        key: "accelerator".into(),
                        operator: NodeSelectorOperator::Exists,
                        values: vec![],
                    }],
                    match_fields: vec![],
                }],
            }),
            preferred: vec![],
        }),
        ..Affinity::default()
    });
}
