//! Scores of one feasible node for one pod, each brought to 0..=100 and
//! weighted as Kubernetes' default profile weighs the same plugins.

use corral_api::core::{TaintEffect, Toleration};

use super::snapshot::{NodeState, PodInfo};

pub const MAX: i64 = 100;
pub const WEIGHT_LEAST_ALLOCATED: i64 = 1;
pub const WEIGHT_SPREAD: i64 = 2;
pub const WEIGHT_NODE_AFFINITY: i64 = 2;
pub const WEIGHT_TAINTS: i64 = 3;

/// NodeResourcesFit LeastAllocated: the share of cpu and of memory left free
/// after the pod, averaged (requests of 0 weigh the non-zero defaults).
pub fn least_allocated(node: &NodeState, pod: &PodInfo) -> i64 {
    let (cpu, mem) = pod.requests.non_zero();
    let free = |alloc: i64, used: i64, want: i64| {
        let after = used.saturating_add(want);
        if alloc <= 0 || after > alloc {
            0
        } else {
            (alloc - after).saturating_mul(MAX) / alloc
        }
    };
    let c = free(node.allocatable.cpu_milli, node.scored_cpu, cpu);
    let m = free(node.allocatable.memory, node.scored_memory, mem);
    (c + m) / 2
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

/// Kubernetes' DefaultNormalizeScore: `raw` scaled so the largest is MAX;
/// `reverse` turns "more is worse" counts around (all MAX when none has any).
pub fn normalize(raw: i64, max: i64, reverse: bool) -> i64 {
    match (max, reverse) {
        (0, true) => MAX,
        (0, false) => 0,
        (_, true) => MAX - raw * MAX / max,
        (_, false) => raw * MAX / max,
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
        // busy: (4000-3000)/4000 = 25, (8-6)/8 = 25; idle: 75 and 75.
        assert_eq!(least_allocated(&snap.nodes[0], &info), 25);
        assert_eq!(least_allocated(&snap.nodes[1], &info), 75);
        // No requests: weighs 100m and 200Mi.
        let free = pod("free");
        let free = PodInfo::new(&free);
        assert_eq!(least_allocated(&snap.nodes[1], &free), (97 + 97) / 2);
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
        assert_eq!(normalize(0, 0, true), MAX);
        assert_eq!(normalize(0, 0, false), 0);
        assert_eq!(normalize(1, 4, true), 75);
        assert_eq!(normalize(1, 4, false), 25);
        assert_eq!(normalize(4, 4, true), 0);
    }
}
