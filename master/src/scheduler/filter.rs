//! The filters, in Kubernetes' plugin order. A node is judged by the first
//! filter it fails (only resource fit names every resource that is short), and
//! the failure is a small `Copy` value so the hot loop never allocates; words
//! are made only for pods that fit nowhere.

use std::sync::LazyLock;

use corral_api::core::{Taint, TaintEffect, Toleration};

use super::ports;
use super::snapshot::{NodeState, PodInfo};

/// Why one node cannot take one pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    NotReady,
    Unschedulable,
    /// Index into the node's taints of the first one not tolerated.
    Taint(usize),
    NodeAffinity,
    HostPorts,
    /// Bits: cpu, memory, ephemeral-storage, pods, then one per extended
    /// resource in the order of the pod's `requests.extended`.
    Resources(u64),
}

pub const SHORT_CPU: u64 = 1;
pub const SHORT_MEMORY: u64 = 1 << 1;
pub const SHORT_EPHEMERAL: u64 = 1 << 2;
pub const SHORT_PODS: u64 = 1 << 3;
const EXTENDED_SHIFT: usize = 4;

/// The taint Kubernetes puts on cordoned nodes; tolerating it lets a pod onto
/// an unschedulable node (DaemonSets do).
static UNSCHEDULABLE_TAINT: LazyLock<Taint> = LazyLock::new(|| Taint {
    key: "node.kubernetes.io/unschedulable".into(),
    value: String::new(),
    effect: TaintEffect::NoSchedule,
    time_added: None,
});

pub fn filter(node: &NodeState, pod: &PodInfo) -> Result<(), Failure> {
    if !node.ready {
        return Err(Failure::NotReady);
    }
    if node.unschedulable && !tolerated(&pod.pod.spec.tolerations, &UNSCHEDULABLE_TAINT) {
        return Err(Failure::Unschedulable);
    }
    if let Some(i) = untolerated_taint(node.taints, &pod.pod.spec.tolerations) {
        return Err(Failure::Taint(i));
    }
    if !matches_affinity(node, pod) {
        return Err(Failure::NodeAffinity);
    }
    if !pod.ports.is_empty() && !ports::free(&node.ports, &pod.ports) {
        return Err(Failure::HostPorts);
    }
    match short_resources(node, pod) {
        0 => Ok(()),
        mask => Err(Failure::Resources(mask)),
    }
}

fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| t.tolerates(taint))
}

/// The first NoSchedule/NoExecute taint no toleration covers.
fn untolerated_taint(taints: &[Taint], tolerations: &[Toleration]) -> Option<usize> {
    taints
        .iter()
        .position(|t| t.effect != TaintEffect::PreferNoSchedule && !tolerated(tolerations, t))
}

/// nodeSelector and required node affinity must both hold.
pub fn matches_affinity(node: &NodeState, pod: &PodInfo) -> bool {
    let spec = &pod.pod.spec;
    let selector_ok = spec
        .node_selector
        .iter()
        .all(|(k, v)| node.labels.get(k) == Some(v));
    selector_ok
        && pod
            .required
            .is_none_or(|r| r.matches(node.labels, &node.fields))
}

/// Kubernetes' NodeResourcesFit: the pod count always, each other resource
/// only when the pod asks for some of it.
fn short_resources(node: &NodeState, pod: &PodInfo) -> u64 {
    let (alloc, used, want) = (&node.allocatable, &node.requested, &pod.requests);
    let short = |w: i64, a: i64, u: i64| w > 0 && w > a.saturating_sub(u);
    let mut mask = 0;
    if used.pods.saturating_add(1) > alloc.pods {
        mask |= SHORT_PODS;
    }
    if short(want.cpu_milli, alloc.cpu_milli, used.cpu_milli) {
        mask |= SHORT_CPU;
    }
    if short(want.memory, alloc.memory, used.memory) {
        mask |= SHORT_MEMORY;
    }
    if short(want.ephemeral, alloc.ephemeral, used.ephemeral) {
        mask |= SHORT_EPHEMERAL;
    }
    for (i, (name, w)) in want.extended.iter().enumerate().take(60) {
        if short(*w, alloc.extended(name), used.extended(name)) {
            mask |= 1 << (EXTENDED_SHIFT + i);
        }
    }
    mask
}

/// Kubernetes' wording for each reason (several for a resource shortage).
pub fn reasons(f: Failure, node: &NodeState, pod: &PodInfo) -> Vec<String> {
    match f {
        Failure::NotReady => vec!["node(s) were not ready".into()],
        Failure::Unschedulable => vec!["node(s) were unschedulable".into()],
        Failure::Taint(i) => {
            let t = &node.taints[i];
            vec![format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key, t.value
            )]
        }
        Failure::NodeAffinity => vec!["node(s) didn't match Pod's node affinity/selector".into()],
        Failure::HostPorts => {
            vec!["node(s) didn't have free ports for the requested pod ports".into()]
        }
        Failure::Resources(mask) => {
            let mut out = Vec::new();
            let named = [
                (SHORT_PODS, "Too many pods"),
                (SHORT_CPU, "Insufficient cpu"),
                (SHORT_MEMORY, "Insufficient memory"),
                (SHORT_EPHEMERAL, "Insufficient ephemeral-storage"),
            ];
            for (bit, text) in named {
                if mask & bit != 0 {
                    out.push(text.to_string());
                }
            }
            for (i, (name, _)) in pod.requests.extended.iter().enumerate().take(60) {
                if mask & (1 << (EXTENDED_SHIFT + i)) != 0 {
                    out.push(format!("Insufficient {name}"));
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::synth::{node, pod, with_requests};
    use crate::scheduler::Snapshot;
    use corral_api::core::{
        NodeSelector, NodeSelectorOperator, NodeSelectorRequirement, NodeSelectorTerm,
        TolerationOperator,
    };

    /// The filter verdict of one pending pod on one node (nothing else placed).
    fn verdict(n: &corral_api::core::Node, p: &corral_api::core::Pod) -> Result<(), Failure> {
        let nodes = vec![n.clone()];
        let snap = Snapshot::new(&nodes);
        let info = PodInfo::new(p);
        filter(&snap.nodes[0], &info)
    }

    fn taint(key: &str, value: &str, effect: TaintEffect) -> Taint {
        Taint {
            key: key.into(),
            value: value.into(),
            effect,
            time_added: None,
        }
    }

    fn toleration(key: &str, op: TolerationOperator, value: &str) -> Toleration {
        Toleration {
            key: key.into(),
            operator: Some(op),
            value: value.into(),
            ..Toleration::default()
        }
    }

    #[test]
    fn not_ready_nodes_are_filtered() {
        let mut n = node("n1", 4000, 8 << 30);
        assert_eq!(verdict(&n, &pod("p")), Ok(()));
        n.status.as_mut().unwrap().conditions[0].status = corral_api::core::ConditionStatus::False;
        assert_eq!(verdict(&n, &pod("p")), Err(Failure::NotReady));
        n.status.as_mut().unwrap().conditions.clear();
        assert_eq!(verdict(&n, &pod("p")), Err(Failure::NotReady));
    }

    #[test]
    fn cordoned_nodes_unless_tolerated() {
        let mut n = node("n1", 4000, 8 << 30);
        n.spec.unschedulable = true;
        let mut p = pod("p");
        assert_eq!(verdict(&n, &p), Err(Failure::Unschedulable));
        p.spec.tolerations = vec![toleration(
            "node.kubernetes.io/unschedulable",
            TolerationOperator::Exists,
            "",
        )];
        assert_eq!(verdict(&n, &p), Ok(()));
    }

    #[test]
    fn taints_need_tolerations() {
        let mut n = node("n1", 4000, 8 << 30);
        n.spec.taints = vec![
            taint("soft", "", TaintEffect::PreferNoSchedule),
            taint("dedicated", "gpu", TaintEffect::NoSchedule),
            taint("evict", "", TaintEffect::NoExecute),
        ];
        let mut p = pod("p");
        // PreferNoSchedule never filters; the first hard taint is reported.
        assert_eq!(verdict(&n, &p), Err(Failure::Taint(1)));
        p.spec.tolerations = vec![toleration("dedicated", TolerationOperator::Equal, "cpu")];
        assert_eq!(verdict(&n, &p), Err(Failure::Taint(1)));
        p.spec.tolerations = vec![toleration("dedicated", TolerationOperator::Equal, "gpu")];
        assert_eq!(verdict(&n, &p), Err(Failure::Taint(2)));
        p.spec
            .tolerations
            .push(toleration("evict", TolerationOperator::Exists, ""));
        assert_eq!(verdict(&n, &p), Ok(()));
        // Equal is the default operator; an empty key with Exists tolerates everything.
        p.spec.tolerations = vec![Toleration {
            key: "dedicated".into(),
            value: "gpu".into(),
            ..Toleration::default()
        }];
        assert_eq!(verdict(&n, &p), Err(Failure::Taint(2)));
        p.spec.tolerations = vec![toleration("", TolerationOperator::Exists, "")];
        assert_eq!(verdict(&n, &p), Ok(()));
        // A toleration limited to another effect does not count.
        p.spec.tolerations = vec![Toleration {
            effect: Some(TaintEffect::NoSchedule),
            ..toleration("evict", TolerationOperator::Exists, "")
        }];
        assert_eq!(verdict(&n, &p), Err(Failure::Taint(1)));
    }

    #[test]
    fn node_selector_matches_labels() {
        let mut n = node("n1", 4000, 8 << 30);
        n.metadata.labels.insert("disk".into(), "ssd".into());
        let mut p = pod("p");
        p.spec.node_selector.insert("disk".into(), "ssd".into());
        assert_eq!(verdict(&n, &p), Ok(()));
        p.spec.node_selector.insert("zone".into(), "a".into());
        assert_eq!(verdict(&n, &p), Err(Failure::NodeAffinity));
    }

    fn required(terms: Vec<NodeSelectorTerm>) -> corral_api::core::Affinity {
        corral_api::core::Affinity {
            node_affinity: Some(corral_api::core::NodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: terms,
                }),
                preferred: vec![],
            }),
            ..Default::default()
        }
    }

    fn req(key: &str, op: NodeSelectorOperator, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    fn expr_term(reqs: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: reqs,
            match_fields: vec![],
        }
    }

    #[test]
    fn required_node_affinity_operators() {
        use NodeSelectorOperator::*;
        let mut n = node("n1", 4000, 8 << 30);
        n.metadata.labels.insert("zone".into(), "a".into());
        n.metadata.labels.insert("cores".into(), "16".into());
        let cases = [
            (req("zone", In, &["a", "b"]), true),
            (req("zone", In, &["b"]), false),
            (req("zone", NotIn, &["b"]), true),
            (req("zone", NotIn, &["a"]), false),
            (req("missing", NotIn, &["a"]), true),
            (req("zone", Exists, &[]), true),
            (req("missing", Exists, &[]), false),
            (req("missing", DoesNotExist, &[]), true),
            (req("zone", DoesNotExist, &[]), false),
            (req("cores", Gt, &["8"]), true),
            (req("cores", Gt, &["16"]), false),
            (req("cores", Lt, &["32"]), true),
            (req("cores", Lt, &["4"]), false),
            (req("zone", Gt, &["1"]), false),
        ];
        for (r, fits) in cases {
            let mut p = pod("p");
            p.spec.affinity = Some(required(vec![expr_term(vec![r.clone()])]));
            let want = if fits {
                Ok(())
            } else {
                Err(Failure::NodeAffinity)
            };
            assert_eq!(verdict(&n, &p), want, "{r:?}");
        }
        // Terms are ORed, expressions within a term ANDed.
        let mut p = pod("p");
        p.spec.affinity = Some(required(vec![
            expr_term(vec![req("zone", In, &["a"]), req("cores", Lt, &["4"])]),
            expr_term(vec![req("zone", In, &["b"])]),
        ]));
        assert_eq!(verdict(&n, &p), Err(Failure::NodeAffinity));
        p.spec.affinity = Some(required(vec![
            expr_term(vec![req("zone", In, &["b"])]),
            expr_term(vec![req("zone", In, &["a"]), req("cores", Gt, &["4"])]),
        ]));
        assert_eq!(verdict(&n, &p), Ok(()));
    }

    #[test]
    fn required_node_affinity_match_fields_by_name() {
        let n = node("n1", 4000, 8 << 30);
        let fields = |names: &[&str]| NodeSelectorTerm {
            match_expressions: vec![],
            match_fields: vec![req("metadata.name", NodeSelectorOperator::In, names)],
        };
        let mut p = pod("p");
        p.spec.affinity = Some(required(vec![fields(&["n1"])]));
        assert_eq!(verdict(&n, &p), Ok(()));
        p.spec.affinity = Some(required(vec![fields(&["n2"])]));
        assert_eq!(verdict(&n, &p), Err(Failure::NodeAffinity));
    }

    #[test]
    fn host_ports_against_bound_pods() {
        let nodes = vec![node("n1", 4000, 8 << 30)];
        let mut bound = pod("web-0");
        bound.spec.node_name = "n1".into();
        bound.spec.containers[0].ports = vec![corral_api::core::ContainerPort {
            host_port: Some(8080),
            container_port: 80,
            ..Default::default()
        }];
        let mut snap = Snapshot::new(&nodes);
        snap.add_pod(&bound);
        let mut want = bound.clone();
        want.spec.node_name.clear();
        assert_eq!(
            filter(&snap.nodes[0], &PodInfo::new(&want)),
            Err(Failure::HostPorts)
        );
        want.spec.containers[0].ports[0].host_port = Some(8081);
        assert_eq!(filter(&snap.nodes[0], &PodInfo::new(&want)), Ok(()));
    }

    #[test]
    fn resources_fit_what_is_left() {
        let nodes = vec![node("n1", 1000, 1 << 30)];
        let mut bound = with_requests(pod("a"), "600m", "512Mi");
        bound.spec.node_name = "n1".into();
        let mut snap = Snapshot::new(&nodes);
        snap.add_pod(&bound);
        let fits = with_requests(pod("b"), "400m", "512Mi");
        assert_eq!(filter(&snap.nodes[0], &PodInfo::new(&fits)), Ok(()));
        let both = with_requests(pod("c"), "500m", "600Mi");
        assert_eq!(
            filter(&snap.nodes[0], &PodInfo::new(&both)),
            Err(Failure::Resources(SHORT_CPU | SHORT_MEMORY))
        );
        // A pod asking for nothing still needs a pod slot.
        let mut full = nodes[0].clone();
        full.status
            .as_mut()
            .unwrap()
            .allocatable
            .insert("pods".into(), "1".parse().unwrap());
        let full = vec![full];
        let mut snap = Snapshot::new(&full);
        snap.add_pod(&bound);
        assert_eq!(
            filter(&snap.nodes[0], &PodInfo::new(&pod("d"))),
            Err(Failure::Resources(SHORT_PODS))
        );
    }

    #[test]
    fn extended_resources_and_their_words() {
        let nodes = vec![node("n1", 1000, 1 << 30)];
        let snap = Snapshot::new(&nodes);
        let mut p = pod("p");
        let res = p.spec.containers[0]
            .resources
            .get_or_insert_with(Default::default);
        res.requests
            .insert("example.com/gpu".into(), "1".parse().unwrap());
        res.requests
            .insert("ephemeral-storage".into(), "1Ti".parse().unwrap());
        let info = PodInfo::new(&p);
        let f = filter(&snap.nodes[0], &info).unwrap_err();
        assert_eq!(
            reasons(f, &snap.nodes[0], &info),
            vec![
                "Insufficient ephemeral-storage".to_string(),
                "Insufficient example.com/gpu".to_string()
            ]
        );
    }
}
