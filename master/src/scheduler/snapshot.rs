//! The per-batch state: one `NodeState` per node, computed once from the node
//! and the pods already on it, then updated as the batch places pods.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};

use corral_api::core::{
    Node, NodeSelector, Pod, PodPhase, PreferredSchedulingTerm, Taint, TaintEffect,
};

use super::ports::{self, HostPort};
use super::resources::Resources;
use super::score;

/// Laid out by hand (`repr(C)`): the fields every filter and score reads for
/// every pod come first and fill three cache lines; at 5,000 nodes the array
/// no longer fits in L2, so the lines touched per node are the cost.
#[repr(C)]
pub struct NodeState<'a> {
    pub ready: bool,
    pub unschedulable: bool,
    pub prefer_no_schedule: bool,
    pub taints: &'a [Taint],
    pub allocatable: Resources,
    /// Sum of the requests of the pods placed here.
    pub requested: Resources,
    /// cpu and memory of those pods with the non-zero defaults, for scoring.
    pub scored_cpu: i64,
    pub scored_memory: i64,
    /// score::scale of the allocatable cpu and memory.
    pub cpu_scale: f64,
    pub memory_scale: f64,
    pub hash: u64,
    // Read only for pods with a selector, affinity or host ports.
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    /// `metadata.name`, what matchFields can test.
    pub fields: BTreeMap<String, String>,
    pub ports: Vec<HostPort>,
}

impl<'a> NodeState<'a> {
    fn new(node: &'a Node) -> NodeState<'a> {
        let name = node.metadata.name.as_str();
        let allocatable = node
            .status
            .as_ref()
            .map(|s| Resources::from_list(&s.allocatable))
            .unwrap_or_default();
        NodeState {
            name,
            cpu_scale: score::scale(allocatable.cpu_milli),
            memory_scale: score::scale(allocatable.memory),
            labels: &node.metadata.labels,
            fields: BTreeMap::from([("metadata.name".to_string(), name.to_string())]),
            taints: &node.spec.taints,
            ready: node.is_ready(),
            unschedulable: node.spec.unschedulable,
            allocatable,
            requested: Resources::default(),
            scored_cpu: 0,
            scored_memory: 0,
            ports: Vec::new(),
            hash: hash_str(name),
            prefer_no_schedule: node
                .spec
                .taints
                .iter()
                .any(|t| t.effect == TaintEffect::PreferNoSchedule),
        }
    }

    /// Accounts for a pod now running here (or about to).
    pub fn take(&mut self, requests: &Resources, ports: &[HostPort]) {
        self.requested.add(requests);
        let (cpu, mem) = requests.non_zero();
        self.scored_cpu = self.scored_cpu.saturating_add(cpu);
        self.scored_memory = self.scored_memory.saturating_add(mem);
        self.ports.extend_from_slice(ports);
    }
}

/// A pending pod, with what the filters and scores need worked out once.
pub struct PodInfo<'a> {
    pub pod: &'a Pod,
    pub requests: Resources,
    pub ports: Vec<HostPort>,
    pub required: Option<&'a NodeSelector>,
    pub preferred: &'a [PreferredSchedulingTerm],
    pub hash: u64,
    /// Index of the pod's spread group in the snapshot (set by the batch).
    pub group: Option<usize>,
}

impl<'a> PodInfo<'a> {
    pub fn new(pod: &'a Pod) -> PodInfo<'a> {
        let node_affinity = pod
            .spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref());
        PodInfo {
            pod,
            requests: Resources::of_pod(pod),
            ports: ports::of_pod(pod),
            required: node_affinity.and_then(|a| a.required.as_ref()),
            preferred: node_affinity.map_or(&[], |a| a.preferred.as_slice()),
            hash: hash_str(&pod.metadata.namespace) ^ hash_str(&pod.metadata.name).rotate_left(1),
            group: None,
        }
    }
}

/// Replicas of one owner, spread across nodes: the controller's uid, or for a
/// pod with no controller its namespace and labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GroupKey<'a> {
    Owner(&'a str),
    Labels(&'a str, &'a BTreeMap<String, String>),
}

impl<'a> GroupKey<'a> {
    /// None for a bare pod with no labels: it belongs to no group.
    pub fn of(pod: &'a Pod) -> Option<GroupKey<'a>> {
        if let Some(owner) = pod.metadata.controller_ref() {
            return Some(GroupKey::Owner(owner.uid.as_str()));
        }
        if pod.metadata.labels.is_empty() {
            return None;
        }
        Some(GroupKey::Labels(
            pod.metadata.namespace.as_str(),
            &pod.metadata.labels,
        ))
    }
}

/// Nodes and what is on them, borrowed from the caller's objects.
pub struct Snapshot<'a> {
    pub(super) nodes: Vec<NodeState<'a>>,
    by_name: HashMap<&'a str, usize>,
    /// Placed pods by node, kept for the spread counts of the groups that the
    /// pending pods turn out to belong to.
    pub(super) placed: Vec<(&'a Pod, usize)>,
    /// Where the next search for feasible nodes starts.
    pub(super) next_start: usize,
}

impl<'a> Snapshot<'a> {
    pub fn new<N: Borrow<Node>>(nodes: &'a [N]) -> Snapshot<'a> {
        let nodes: Vec<NodeState<'a>> = nodes.iter().map(|n| NodeState::new(n.borrow())).collect();
        let by_name = nodes.iter().enumerate().map(|(i, n)| (n.name, i)).collect();
        Snapshot {
            nodes,
            by_name,
            placed: Vec::new(),
            next_start: 0,
        }
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Counts a pod against its node when it is bound and not finished;
    /// pending pods and pods of nodes not in the snapshot are ignored.
    pub fn add_pod(&mut self, pod: &'a Pod) {
        let node = pod.spec.node_name.as_str();
        if node.is_empty() || is_finished(pod) {
            return;
        }
        self.add_assumed(pod, node);
    }

    /// Counts a pod on `node` whatever its spec says: a binding this scheduler
    /// made that the watch has not shown yet.
    pub fn add_assumed(&mut self, pod: &'a Pod, node: &str) {
        let Some(&i) = self.by_name.get(node) else {
            return;
        };
        let requests = Resources::of_pod(pod);
        let ports = ports::of_pod(pod);
        self.nodes[i].take(&requests, &ports);
        self.placed.push((pod, i));
    }

    /// Pods placed on each node so far, by node name (for reports and tests).
    pub fn pods_per_node(&self) -> Vec<(&'a str, usize)> {
        let mut counts = vec![0usize; self.nodes.len()];
        for (_, i) in &self.placed {
            counts[*i] += 1;
        }
        self.nodes.iter().map(|n| n.name).zip(counts).collect()
    }
}

/// Succeeded and Failed pods no longer hold resources.
pub fn is_finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase),
        Some(PodPhase::Succeeded | PodPhase::Failed)
    )
}

/// FNV-1a, finished with a splitmix step so close names land far apart.
pub fn hash_str(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::synth::{node, owned_by, pod, with_requests};

    #[test]
    fn bound_pods_count_against_their_node() {
        let nodes = vec![node("n1", 2000, 4 << 30), node("n2", 2000, 4 << 30)];
        let mut a = with_requests(pod("a"), "500m", "1Gi");
        a.spec.node_name = "n1".into();
        let mut done = with_requests(pod("done"), "1", "1Gi");
        done.spec.node_name = "n1".into();
        done.status.get_or_insert_with(Default::default).phase = Some(PodPhase::Succeeded);
        let pending = with_requests(pod("pending"), "1", "1Gi");
        let mut elsewhere = pod("gone");
        elsewhere.spec.node_name = "n9".into();
        let mut snap = Snapshot::new(&nodes);
        for p in [&a, &done, &pending, &elsewhere] {
            snap.add_pod(p);
        }
        let n1 = &snap.nodes[0];
        assert_eq!(n1.requested.cpu_milli, 500);
        assert_eq!(n1.requested.memory, 1 << 30);
        assert_eq!(n1.requested.pods, 1);
        assert_eq!(snap.nodes[1].requested, Resources::default());
        snap.add_assumed(&pending, "n2");
        assert_eq!(snap.nodes[1].requested.cpu_milli, 1000);
        assert_eq!(snap.pods_per_node(), vec![("n1", 1), ("n2", 1)]);
    }

    #[test]
    fn scoring_weight_uses_non_zero_defaults() {
        let nodes = vec![node("n1", 2000, 4 << 30)];
        let mut free = pod("free");
        free.spec.node_name = "n1".into();
        let mut snap = Snapshot::new(&nodes);
        snap.add_pod(&free);
        assert_eq!(snap.nodes[0].requested.cpu_milli, 0);
        assert_eq!(snap.nodes[0].scored_cpu, 100);
        assert_eq!(snap.nodes[0].scored_memory, 200 << 20);
    }

    #[test]
    fn hot_fields_fit_three_cache_lines() {
        assert!(std::mem::offset_of!(NodeState, name) <= 3 * 64);
    }

    #[test]
    fn group_keys() {
        let mut a = owned_by(pod("a"), "rs-uid");
        a.metadata.labels.insert("app".into(), "web".into());
        assert_eq!(GroupKey::of(&a), Some(GroupKey::Owner("rs-uid")));
        let mut b = pod("b");
        assert_eq!(GroupKey::of(&b), None);
        b.metadata.labels.insert("app".into(), "web".into());
        let mut c = pod("c");
        c.metadata.labels.insert("app".into(), "web".into());
        assert_eq!(GroupKey::of(&b), GroupKey::of(&c));
        c.metadata.namespace = "other".into();
        assert_ne!(GroupKey::of(&b), GroupKey::of(&c));
    }
}
