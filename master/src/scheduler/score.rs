//! Scores of one feasible node for one pod, each brought to 0..=100 and
//! weighted as Kubernetes' default profile weighs the same plugins.

use corral_api::core::{TaintEffect, Toleration};

use super::snapshot::{NodeState, PodInfo};

/// Scores are floats: the divisions behind them were most of the time spent
/// per node, and with a scale per node (or per pod) they become multiplications.
pub const MAX: f64 = 100.0;
pub const WEIGHT_LEAST_ALLOCATED: f64 = 1.0;
pub const WEIGHT_SPREAD: f64 = 2.0;
pub const WEIGHT_NODE_AFFINITY: f64 = 2.0;
pub const WEIGHT_TAINTS: f64 = 3.0;

/// `MAX / allocatable`, what turns a free amount into a score (0 for none).
pub fn scale(allocatable: i64) -> f64 {
    if allocatable > 0 {
        MAX / allocatable as f64
    } else {
        0.0
    }
}

/// NodeResourcesFit LeastAllocated: the share of cpu and of memory left free
/// after the pod, averaged (requests of 0 weigh the non-zero defaults).
pub fn least_allocated(node: &NodeState, pod: &PodInfo) -> f64 {
    let (cpu, mem) = pod.requests.non_zero();
    let free = |alloc: i64, used: i64, want: i64, scale: f64| {
        let after = used.saturating_add(want);
        if alloc <= 0 || after > alloc {
            0.0
        } else {
            (alloc - after) as f64 * scale
        }
    };
    let c = free(
        node.allocatable.cpu_milli,
        node.scored_cpu,
        cpu,
        node.cpu_scale,
    );
    let m = free(
        node.allocatable.memory,
        node.scored_memory,
        mem,
        node.memory_scale,
    );
    (c + m) / 2.0
}

/// Sum of the weights of the preferred node-affinity terms the node matches.
pub fn preferred_affinity(node: &NodeState, pod: &PodInfo) -> i64 {
    pod.preferred
        .iter()
        .filter(|t| t.preference.matches(node.labels, &node.fields))
        .map(|t| i64::from(t.weight))
        .sum()
}

/// PreferNoSchedule taints the pod does not tolerate.
pub fn soft_taints(node: &NodeState, pod: &PodInfo) -> i64 {
    if !node.prefer_no_schedule {
        return 0;
    }
    let tolerations = &pod.pod.spec.tolerations;
    let soft = |t: &&Toleration| t.effect.is_none_or(|e| e == TaintEffect::PreferNoSchedule);
    node.taints
        .iter()
        .filter(|t| t.effect == TaintEffect::PreferNoSchedule)
        .filter(|t| !tolerations.iter().filter(soft).any(|tol| tol.tolerates(t)))
        .count() as i64
}

/// Kubernetes' DefaultNormalizeScore, set up once per pod from the largest
/// raw value among the nodes: raw values scaled so the largest is MAX;
/// `reverse` turns "more is worse" counts around (all MAX when none has any).
#[derive(Debug, Clone, Copy)]
pub struct Normalize {
    scale: f64,
    reverse: bool,
}

impl Normalize {
    pub fn new(max: i64, reverse: bool) -> Normalize {
        let scale = if max > 0 { MAX / max as f64 } else { 0.0 };
        Normalize { scale, reverse }
    }

    pub fn apply(&self, raw: i64) -> f64 {
        let v = raw as f64 * self.scale;
        if self.reverse {
            MAX - v
        } else {
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::synth::{node, pod, with_requests};
    use crate::scheduler::Snapshot;
    use corral_api::core::{
        Affinity, NodeAffinity, NodeSelectorOperator, NodeSelectorRequirement, NodeSelectorTerm,
        PreferredSchedulingTerm, Taint, TolerationOperator,
    };

    #[test]
    fn least_allocated_prefers_the_emptier_node() {
        let nodes = vec![node("busy", 4000, 8 << 30), node("idle", 4000, 8 << 30)];
        let mut bound = with_requests(pod("b"), "2", "4Gi");
        bound.spec.node_name = "busy".into();
        let mut snap = Snapshot::new(&nodes);
        snap.add_pod(&bound);
        let p = with_requests(pod("p"), "1", "2Gi");
        let info = PodInfo::new(&p);
        // busy: (4000-3000)/4000 = 25%, (8-6)/8 = 25%; idle: 75% and 75%.
        assert_eq!(least_allocated(&snap.nodes[0], &info), 25.0);
        assert_eq!(least_allocated(&snap.nodes[1], &info), 75.0);
        // No requests: weighs 100m and 200Mi.
        let free = pod("free");
        let free = PodInfo::new(&free);
        let want =
            (3900.0 / 4000.0 + ((8u64 << 30) - (200 << 20)) as f64 / (8u64 << 30) as f64) * 50.0;
        assert!((least_allocated(&snap.nodes[1], &free) - want).abs() < 1e-9);
        // Over-committed or without allocatable: 0.
        let tiny = vec![node("tiny", 50, 1 << 20), node("none", 0, 0)];
        let snap = Snapshot::new(&tiny);
        assert_eq!(least_allocated(&snap.nodes[0], &info), 0.0);
        assert_eq!(least_allocated(&snap.nodes[1], &info), 0.0);
    }

    fn preferred(weight: i32, key: &str, value: &str) -> PreferredSchedulingTerm {
        PreferredSchedulingTerm {
            weight,
            preference: NodeSelectorTerm {
                match_expressions: vec![NodeSelectorRequirement {
                    key: key.into(),
                    operator: NodeSelectorOperator::In,
                    values: vec![value.into()],
                }],
                match_fields: vec![],
            },
        }
    }

    #[test]
    fn preferred_affinity_adds_matching_weights() {
        let mut n = node("n1", 4000, 8 << 30);
        n.metadata.labels.insert("zone".into(), "a".into());
        n.metadata.labels.insert("disk".into(), "ssd".into());
        let nodes = vec![n];
        let snap = Snapshot::new(&nodes);
        let mut p = pod("p");
        p.spec.affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required: None,
                preferred: vec![
                    preferred(10, "zone", "a"),
                    preferred(5, "disk", "ssd"),
                    preferred(80, "zone", "b"),
                ],
            }),
            ..Affinity::default()
        });
        assert_eq!(preferred_affinity(&snap.nodes[0], &PodInfo::new(&p)), 15);
    }

    #[test]
    fn soft_taints_count_unless_tolerated() {
        let mut n = node("n1", 4000, 8 << 30);
        n.spec.taints = vec![
            Taint {
                key: "spot".into(),
                value: String::new(),
                effect: TaintEffect::PreferNoSchedule,
                time_added: None,
            },
            Taint {
                key: "hard".into(),
                value: String::new(),
                effect: TaintEffect::NoSchedule,
                time_added: None,
            },
        ];
        let nodes = vec![n];
        let snap = Snapshot::new(&nodes);
        let mut p = pod("p");
        assert_eq!(soft_taints(&snap.nodes[0], &PodInfo::new(&p)), 1);
        // A toleration for another effect does not help.
        p.spec.tolerations = vec![Toleration {
            key: "spot".into(),
            operator: Some(TolerationOperator::Exists),
            effect: Some(TaintEffect::NoSchedule),
            ..Toleration::default()
        }];
        assert_eq!(soft_taints(&snap.nodes[0], &PodInfo::new(&p)), 1);
        p.spec.tolerations[0].effect = None;
        assert_eq!(soft_taints(&snap.nodes[0], &PodInfo::new(&p)), 0);
    }

    #[test]
    fn normalization() {
        assert_eq!(Normalize::new(0, true).apply(0), MAX);
        assert_eq!(Normalize::new(0, false).apply(0), 0.0);
        assert_eq!(Normalize::new(4, true).apply(1), 75.0);
        assert_eq!(Normalize::new(4, false).apply(1), 25.0);
        assert_eq!(Normalize::new(4, true).apply(4), 0.0);
        assert_eq!(scale(0), 0.0);
        assert_eq!(scale(200), 0.5);
    }
}
