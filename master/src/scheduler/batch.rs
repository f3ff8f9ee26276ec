//! One batch: every pending pod in queue order, each placed on the best
//! feasible node before the next is considered, so later pods see the
//! resources, ports and replicas of earlier ones.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use corral_api::core::{Node, Pod};

use super::filter::{self, Failure};
use super::score::{self, Normalize};
use super::snapshot::{mix, GroupKey, PodInfo, Snapshot};

/// Kubernetes' percentageOfNodesToScore rules.
const MIN_FEASIBLE_NODES: usize = 100;
const BASE_PERCENTAGE: usize = 50;
const MIN_PERCENTAGE: usize = 5;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Stop looking once this share of the nodes was found feasible, like
    /// Kubernetes' percentageOfNodesToScore; 0 is Kubernetes' adaptive
    /// default (50% minus 1% per 125 nodes, at least 5%), 100 scores all.
    /// Clusters under 100 nodes are always searched whole.
    pub percentage_of_nodes_to_score: u32,
}

impl Options {
    pub fn nodes_to_find(&self, all: usize) -> usize {
        let pct = self.percentage_of_nodes_to_score as usize;
        if all < MIN_FEASIBLE_NODES || pct >= 100 {
            return all;
        }
        let pct = if pct == 0 {
            BASE_PERCENTAGE
                .saturating_sub(all / 125)
                .max(MIN_PERCENTAGE)
        } else {
            pct
        };
        (all * pct / 100).max(MIN_FEASIBLE_NODES)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement<'a> {
    Node(&'a str),
    Unschedulable(Unschedulable),
}

/// Why a pod fits nowhere: how many nodes gave each reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unschedulable {
    pub nodes: usize,
    pub reasons: BTreeMap<String, usize>,
}

impl fmt::Display for Unschedulable {
    /// `0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient cpu.`,
    /// reasons sorted as Kubernetes sorts them (as strings, count first).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nodes == 0 {
            return f.write_str("no nodes available to schedule pods");
        }
        let mut parts: Vec<String> = self
            .reasons
            .iter()
            .map(|(reason, n)| format!("{n} {reason}"))
            .collect();
        parts.sort();
        write!(
            f,
            "0/{} nodes are available: {}.",
            self.nodes,
            parts.join(", ")
        )
    }
}

/// Queue order: higher priority first, then older, then by namespace/name.
pub fn queue_order(a: &Pod, b: &Pod) -> Ordering {
    let prio = |p: &Pod| p.spec.priority.unwrap_or(0);
    prio(b)
        .cmp(&prio(a))
        .then_with(|| {
            a.metadata
                .creation_timestamp
                .cmp(&b.metadata.creation_timestamp)
        })
        .then_with(|| a.metadata.namespace.cmp(&b.metadata.namespace))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// The whole pure scheduler: nodes, every pod (bound ones take room), the
/// pending pods in queue order; one placement per pending pod.
pub fn schedule<'a, N, P>(
    nodes: &'a [N],
    pods: &'a [P],
    pending: &[&'a Pod],
    opts: &Options,
) -> Vec<Placement<'a>>
where
    N: Borrow<Node>,
    P: Borrow<Pod>,
{
    let mut snap = Snapshot::new(nodes);
    for p in pods {
        snap.add_pod(p.borrow());
    }
    snap.schedule(pending, opts)
}

#[derive(Default)]
struct Scratch {
    feasible: Vec<usize>,
    failures: Vec<(usize, Failure)>,
    raw: Vec<Raw>,
}

#[derive(Clone, Copy)]
struct Raw {
    node: usize,
    least: f64,
    spread: i64,
    affinity: i64,
    taints: i64,
}

/// One spread group's pods per node: an array when the group is large
/// enough to be worth one (at least 1 member per 8 nodes), otherwise a map,
/// so thousands of one- or two-pod owners do not cost nodes x owners memory.
enum Counts {
    Dense(Vec<u32>),
    Sparse(HashMap<usize, u32>),
}

impl Counts {
    fn new(members: usize, nodes: usize) -> Counts {
        if members.saturating_mul(8) >= nodes {
            Counts::Dense(vec![0; nodes])
        } else {
            Counts::Sparse(HashMap::new())
        }
    }

    fn get(&self, node: usize) -> u32 {
        match self {
            Counts::Dense(v) => v[node],
            Counts::Sparse(m) => m.get(&node).copied().unwrap_or(0),
        }
    }

    fn add(&mut self, node: usize) {
        match self {
            Counts::Dense(v) => v[node] += 1,
            Counts::Sparse(m) => *m.entry(node).or_insert(0) += 1,
        }
    }
}

impl<'a> Snapshot<'a> {
    /// Places `pending` in order; placed pods stay counted in the snapshot.
    pub fn schedule(&mut self, pending: &[&'a Pod], opts: &Options) -> Vec<Placement<'a>> {
        let mut infos: Vec<PodInfo<'a>> = pending.iter().map(|p| PodInfo::new(p)).collect();
        let mut spread = self.spread_counts(&mut infos);
        let want = opts.nodes_to_find(self.nodes.len());
        let mut scratch = Scratch::default();
        let mut out = Vec::with_capacity(infos.len());
        for info in &infos {
            self.find_feasible(info, want, &mut scratch);
            let counts = info.group.map(|g| &spread[g]);
            match self.best(info, counts, &mut scratch) {
                Some(i) => {
                    self.nodes[i].take(&info.requests, &info.ports);
                    if let Some(g) = info.group {
                        spread[g].add(i);
                    }
                    self.placed.push((info.pod, i));
                    out.push(Placement::Node(self.nodes[i].name));
                }
                None => out.push(Placement::Unschedulable(self.diagnose(info, &scratch))),
            }
        }
        out
    }

    /// Per spread group of the pending pods, its pods on each node.
    fn spread_counts(&self, infos: &mut [PodInfo<'a>]) -> Vec<Counts> {
        let mut groups: HashMap<GroupKey<'a>, usize> = HashMap::new();
        let mut members: Vec<usize> = Vec::new();
        for info in infos.iter_mut() {
            if let Some(key) = GroupKey::of(info.pod) {
                let next = groups.len();
                let g = *groups.entry(key).or_insert(next);
                if g == members.len() {
                    members.push(0);
                }
                members[g] += 1;
                info.group = Some(g);
            }
        }
        let placed: Vec<(usize, usize)> = self
            .placed
            .iter()
            .filter_map(|(pod, node)| {
                let g = GroupKey::of(pod).and_then(|k| groups.get(&k))?;
                Some((*g, *node))
            })
            .collect();
        for (g, _) in &placed {
            members[*g] += 1;
        }
        let n = self.nodes.len();
        let mut counts: Vec<Counts> = members.iter().map(|m| Counts::new(*m, n)).collect();
        for (g, node) in placed {
            counts[g].add(node);
        }
        counts
    }

    /// Feasible nodes, up to `want`. Like Kubernetes, each search starts
    /// where the previous one stopped, so with sampling consecutive pods look
    /// at consecutive slices of the cluster and a Deployment's replicas sweep
    /// all of it instead of crowding one slice.
    fn find_feasible(&mut self, pod: &PodInfo, want: usize, s: &mut Scratch) {
        s.feasible.clear();
        s.failures.clear();
        let n = self.nodes.len();
        if n == 0 {
            return;
        }
        let start = self.next_start % n;
        let mut seen = 0;
        for i in (start..n).chain(0..start) {
            seen += 1;
            match filter::filter(&self.nodes[i], pod) {
                Ok(()) => {
                    s.feasible.push(i);
                    if s.feasible.len() >= want {
                        break;
                    }
                }
                Err(f) => s.failures.push((i, f)),
            }
        }
        self.next_start = (start + seen) % n;
    }

    /// The highest weighted score; ties go to the node whose name hashes
    /// lowest together with the pod's, which is stable yet spreads pods.
    fn best(&self, pod: &PodInfo, spread: Option<&Counts>, s: &mut Scratch) -> Option<usize> {
        match s.feasible.as_slice() {
            [] => return None,
            [only] => return Some(*only),
            _ => {}
        }
        s.raw.clear();
        let (mut max_spread, mut max_aff, mut max_taints) = (0, 0, 0);
        for &i in &s.feasible {
            let node = &self.nodes[i];
            let r = Raw {
                node: i,
                least: score::least_allocated(node, pod),
                spread: spread.map_or(0, |c| i64::from(c.get(i))),
                affinity: if pod.preferred.is_empty() {
                    0
                } else {
                    score::preferred_affinity(node, pod)
                },
                taints: score::soft_taints(node, pod),
            };
            max_spread = max_spread.max(r.spread);
            max_aff = max_aff.max(r.affinity);
            max_taints = max_taints.max(r.taints);
            s.raw.push(r);
        }
        let spread_n = Normalize::new(max_spread, true);
        let aff_n = Normalize::new(max_aff, false);
        let taints_n = Normalize::new(max_taints, true);
        let total = |r: &Raw| {
            r.least * score::WEIGHT_LEAST_ALLOCATED
                + spread_n.apply(r.spread) * score::WEIGHT_SPREAD
                + aff_n.apply(r.affinity) * score::WEIGHT_NODE_AFFINITY
                + taints_n.apply(r.taints) * score::WEIGHT_TAINTS
        };
        let tie_key = |i: usize| mix(pod.hash ^ self.nodes[i].hash);
        let mut best: Option<(f64, u64, usize)> = None;
        for r in &s.raw {
            let t = total(r);
            best = match best {
                Some((bt, _, _)) if t < bt => best,
                // Equal inputs give bit-equal sums, so == finds true ties.
                Some((bt, bk, _)) if t == bt => {
                    let k = tie_key(r.node);
                    if k < bk {
                        Some((t, k, r.node))
                    } else {
                        best
                    }
                }
                _ => Some((t, tie_key(r.node), r.node)),
            };
        }
        best.map(|(_, _, i)| i)
    }

    fn diagnose(&self, pod: &PodInfo, s: &Scratch) -> Unschedulable {
        let mut reasons = BTreeMap::new();
        for (i, f) in &s.failures {
            for r in filter::reasons(*f, &self.nodes[*i], pod) {
                *reasons.entry(r).or_insert(0) += 1;
            }
        }
        Unschedulable {
            nodes: self.nodes.len(),
            reasons,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::synth::{self, node, owned_by, pod, with_requests};
    use corral_api::core::{
        Affinity, NodeAffinity, NodeSelectorOperator, NodeSelectorRequirement, NodeSelectorTerm,
        PreferredSchedulingTerm, Taint, TaintEffect,
    };
    use corral_api::Time;

    fn names<'a>(placements: &[Placement<'a>]) -> Vec<&'a str> {
        placements
            .iter()
            .map(|p| match p {
                Placement::Node(n) => *n,
                Placement::Unschedulable(u) => panic!("unschedulable: {u}"),
            })
            .collect()
    }

    fn tally(placed: &[&str]) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for n in placed {
            *m.entry(n.to_string()).or_insert(0) += 1;
        }
        m
    }

    fn replicas(owner: &str, n: usize) -> Vec<corral_api::core::Pod> {
        (0..n)
            .map(|i| {
                owned_by(
                    with_requests(pod(&format!("{owner}-{i}")), "100m", "128Mi"),
                    owner,
                )
            })
            .collect()
    }

    #[test]
    fn six_replicas_on_three_nodes_land_two_each() {
        let nodes: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|n| node(n, 4000, 8 << 30))
            .collect();
        let pods = replicas("rs-1", 6);
        let pending: Vec<&_> = pods.iter().collect();
        let none: [corral_api::core::Pod; 0] = [];
        let placed = names(&schedule(&nodes, &none, &pending, &Options::default()));
        let counts = tally(&placed);
        assert_eq!(
            counts.values().copied().collect::<Vec<_>>(),
            vec![2, 2, 2],
            "{placed:?}"
        );
        // Deterministic: the same input gives the same answer.
        assert_eq!(
            names(&schedule(&nodes, &none, &pending, &Options::default())),
            placed
        );
    }

    #[test]
    fn sampling_still_spreads_replicas_over_the_whole_cluster() {
        // 100 feasible nodes scored per pod out of 300: consecutive searches
        // cover consecutive slices, so 600 replicas still land 2 per node.
        let nodes: Vec<_> = (0..300)
            .map(|i| node(&format!("n{i:03}"), 64_000, 256 << 30))
            .collect();
        let pods = replicas("rs-1", 600);
        let pending: Vec<&_> = pods.iter().collect();
        let opts = Options {
            percentage_of_nodes_to_score: 10,
        };
        assert_eq!(opts.nodes_to_find(nodes.len()), 100);
        let placed = names(&schedule(&nodes, &pods, &pending, &opts));
        let counts = tally(&placed);
        assert_eq!(counts.len(), 300);
        assert!(counts.values().all(|c| *c == 2), "{counts:?}");
    }

    #[test]
    fn small_groups_on_many_nodes_spread_too() {
        // 3 replicas on 100 nodes: a sparse count, same spreading. n050 is
        // by far the emptiest node, but it already has a replica.
        let mut nodes: Vec<_> = (0..100)
            .map(|i| node(&format!("n{i:03}"), 4000, 8 << 30))
            .collect();
        nodes[50] = node("n050", 64_000, 256 << 30);
        let mut pods = replicas("rs-small", 3);
        pods[0].spec.node_name = "n050".into();
        let pending: Vec<&_> = pods[1..].iter().collect();
        let placed = names(&schedule(&nodes, &pods, &pending, &Options::default()));
        assert!(!placed.contains(&"n050"), "{placed:?}");
        assert_ne!(placed[0], placed[1]);
        let mut dense = Counts::new(13, 100);
        let mut sparse = Counts::new(12, 100);
        assert!(matches!(
            (&dense, &sparse),
            (Counts::Dense(_), Counts::Sparse(_))
        ));
        for c in [&mut dense, &mut sparse] {
            c.add(7);
            c.add(7);
            assert_eq!((c.get(7), c.get(8)), (2, 0));
        }
    }

    #[test]
    fn spread_counts_replicas_already_bound() {
        let nodes: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|n| node(n, 4000, 8 << 30))
            .collect();
        let mut pods = replicas("rs-1", 5);
        for (p, n) in pods.iter_mut().zip(["a", "a", "b"]) {
            p.spec.node_name = n.into();
        }
        let pending: Vec<&_> = pods[3..].iter().collect();
        // Other owners' pods make c the most loaded node; spread still wins.
        let mut other = replicas("rs-2", 3);
        for p in &mut other {
            p.spec.node_name = "c".into();
        }
        let all: Vec<_> = pods.iter().chain(other.iter()).cloned().collect();
        let placed = names(&schedule(&nodes, &all, &pending, &Options::default()));
        let mut sorted = placed.clone();
        sorted.sort();
        assert_eq!(sorted, vec!["b", "c"], "{placed:?}");
    }

    #[test]
    fn pods_without_owner_spread_by_labels() {
        let nodes: Vec<_> = ["a", "b"].iter().map(|n| node(n, 4000, 8 << 30)).collect();
        let pods: Vec<_> = (0..4)
            .map(|i| {
                let mut p = pod(&format!("bare-{i}"));
                p.metadata.labels.insert("app".into(), "web".into());
                p
            })
            .collect();
        let pending: Vec<&_> = pods.iter().collect();
        let placed = names(&schedule(&nodes, &pods, &pending, &Options::default()));
        assert_eq!(
            tally(&placed).values().copied().collect::<Vec<_>>(),
            vec![2, 2]
        );
    }

    #[test]
    fn batch_accounts_for_pods_placed_earlier() {
        // Two nodes with room for exactly two 1-cpu pods each.
        let nodes: Vec<_> = ["a", "b"].iter().map(|n| node(n, 2000, 8 << 30)).collect();
        let pods: Vec<_> = (0..5)
            .map(|i| with_requests(pod(&format!("p{i}")), "1", "1Gi"))
            .collect();
        let pending: Vec<&_> = pods.iter().collect();
        let out = schedule(&nodes, &pods, &pending, &Options::default());
        assert_eq!(
            tally(&names(&out[..4]))
                .values()
                .copied()
                .collect::<Vec<_>>(),
            vec![2, 2]
        );
        let Placement::Unschedulable(u) = &out[4] else {
            panic!("fifth pod placed: {:?}", out[4]);
        };
        assert_eq!(
            u.to_string(),
            "0/2 nodes are available: 2 Insufficient cpu."
        );
    }

    #[test]
    fn snapshot_keeps_placements_between_batches() {
        let nodes = vec![node("a", 1000, 8 << 30)];
        let first = with_requests(pod("first"), "1", "1Gi");
        let second = with_requests(pod("second"), "1", "1Gi");
        let mut snap = Snapshot::new(&nodes);
        assert_eq!(
            snap.schedule(&[&first], &Options::default()),
            vec![Placement::Node("a")]
        );
        assert!(matches!(
            snap.schedule(&[&second], &Options::default())[0],
            Placement::Unschedulable(_)
        ));
        assert_eq!(snap.pods_per_node(), vec![("a", 1)]);
    }

    #[test]
    fn host_ports_taken_earlier_in_the_batch() {
        let nodes: Vec<_> = ["a", "b"].iter().map(|n| node(n, 4000, 8 << 30)).collect();
        let pods: Vec<_> = (0..3)
            .map(|i| {
                let mut p = pod(&format!("hp{i}"));
                p.spec.containers[0].ports = vec![corral_api::core::ContainerPort {
                    host_port: Some(9000),
                    container_port: 9000,
                    ..Default::default()
                }];
                p
            })
            .collect();
        let pending: Vec<&_> = pods.iter().collect();
        let out = schedule(&nodes, &pods, &pending, &Options::default());
        let mut two = names(&out[..2]);
        two.sort();
        assert_eq!(two, vec!["a", "b"]);
        let Placement::Unschedulable(u) = &out[2] else {
            panic!("third pod placed: {:?}", out[2]);
        };
        assert_eq!(
            u.to_string(),
            "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports."
        );
    }

    #[test]
    fn unschedulable_message_counts_each_reason() {
        let mut cordoned = node("a", 4000, 8 << 30);
        cordoned.spec.unschedulable = true;
        let mut tainted = node("b", 4000, 8 << 30);
        tainted.spec.taints = vec![Taint {
            key: "dedicated".into(),
            value: "gpu".into(),
            effect: TaintEffect::NoSchedule,
            time_added: None,
        }];
        let small = node("c", 500, 1 << 30);
        let small2 = node("d", 500, 1 << 30);
        let nodes = vec![cordoned, tainted, small, small2];
        let p = with_requests(pod("big"), "1", "2Gi");
        let none: [corral_api::core::Pod; 0] = [];
        let out = schedule(&nodes, &none, &[&p], &Options::default());
        let Placement::Unschedulable(u) = &out[0] else {
            panic!("placed: {:?}", out[0]);
        };
        assert_eq!(
            u.to_string(),
            "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, \
             1 node(s) were unschedulable, 2 Insufficient cpu, 2 Insufficient memory."
        );
        let empty: [corral_api::core::Node; 0] = [];
        let out = schedule(&empty, &none, &[&p], &Options::default());
        let Placement::Unschedulable(u) = &out[0] else {
            panic!("placed without nodes");
        };
        assert_eq!(u.to_string(), "no nodes available to schedule pods");
    }

    #[test]
    fn preferred_affinity_steers_placement() {
        let mut nodes: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|n| node(n, 4000, 8 << 30))
            .collect();
        nodes[1].metadata.labels.insert("zone".into(), "z1".into());
        let mut p = pod("p");
        p.spec.affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required: None,
                preferred: vec![PreferredSchedulingTerm {
                    weight: 50,
                    preference: NodeSelectorTerm {
                        match_expressions: vec![NodeSelectorRequirement {
                            key: "zone".into(),
                            operator: NodeSelectorOperator::In,
                            values: vec!["z1".into()],
                        }],
                        match_fields: vec![],
                    },
                }],
            }),
            ..Affinity::default()
        });
        let none: [corral_api::core::Pod; 0] = [];
        assert_eq!(
            schedule(&nodes, &none, &[&p], &Options::default()),
            vec![Placement::Node("b")]
        );
    }

    #[test]
    fn soft_taint_is_avoided_when_possible() {
        let mut nodes: Vec<_> = ["a", "b"].iter().map(|n| node(n, 4000, 8 << 30)).collect();
        nodes[0].spec.taints = vec![Taint {
            key: "spot".into(),
            value: String::new(),
            effect: TaintEffect::PreferNoSchedule,
            time_added: None,
        }];
        let p = pod("p");
        let none: [corral_api::core::Pod; 0] = [];
        assert_eq!(
            schedule(&nodes, &none, &[&p], &Options::default()),
            vec![Placement::Node("b")]
        );
        // Only node: still used.
        assert_eq!(
            schedule(&nodes[..1], &none, &[&p], &Options::default()),
            vec![Placement::Node("a")]
        );
    }

    #[test]
    fn least_allocated_picks_the_emptier_node() {
        let nodes: Vec<_> = ["a", "b"].iter().map(|n| node(n, 4000, 8 << 30)).collect();
        let mut busy = with_requests(pod("busy"), "3", "6Gi");
        busy.spec.node_name = "a".into();
        let p = with_requests(pod("p"), "100m", "100Mi");
        let bound = [busy];
        let out = schedule(&nodes, &bound, &[&p], &Options::default());
        assert_eq!(out, vec![Placement::Node("b")]);
    }

    #[test]
    fn queue_order_is_priority_then_age_then_name() {
        let mut low_old = pod("low-old");
        low_old.metadata.creation_timestamp = Some(Time::from_unix(10));
        let mut low_new = pod("low-new");
        low_new.metadata.creation_timestamp = Some(Time::from_unix(20));
        let mut high = pod("high");
        high.metadata.creation_timestamp = Some(Time::from_unix(30));
        high.spec.priority = Some(1000);
        let mut tie = pod("a-tie");
        tie.metadata.creation_timestamp = Some(Time::from_unix(20));
        let mut v = [&low_new, &tie, &low_old, &high];
        v.sort_by(|a, b| queue_order(a, b));
        let order: Vec<&str> = v.iter().map(|p| p.metadata.name.as_str()).collect();
        assert_eq!(order, vec!["high", "low-old", "a-tie", "low-new"]);
    }

    #[test]
    fn nodes_to_find_follows_kubernetes() {
        let adaptive = Options::default();
        assert_eq!(adaptive.nodes_to_find(50), 50);
        assert_eq!(adaptive.nodes_to_find(1000), 420);
        assert_eq!(adaptive.nodes_to_find(5000), 500);
        assert_eq!(adaptive.nodes_to_find(6000), 300);
        assert_eq!(adaptive.nodes_to_find(200), 100);
        assert_eq!(adaptive.nodes_to_find(250), 120);
        let all = Options {
            percentage_of_nodes_to_score: 100,
        };
        assert_eq!(all.nodes_to_find(5000), 5000);
        let few = Options {
            percentage_of_nodes_to_score: 1,
        };
        assert_eq!(few.nodes_to_find(5000), 100);
    }

    /// The benchmark's cluster, scaled down: everything fits, nothing lands
    /// where a filter forbids, no node is over-committed, replicas spread.
    #[test]
    fn synthetic_cluster_respects_every_filter() {
        let nodes = synth::nodes(300);
        let workloads: Vec<synth::Workload> = synth::BENCH_WORKLOADS
            .iter()
            .map(|w| synth::Workload {
                replicas: w.replicas / 10,
                ..*w
            })
            .collect();
        let pods = synth::pending_pods(&workloads);
        let pending: Vec<&_> = pods.iter().collect();
        let out = schedule(&nodes, &pods, &pending, &Options::default());
        let by_name: HashMap<&str, &Node> = nodes
            .iter()
            .map(|n| (n.metadata.name.as_str(), n))
            .collect();
        let mut cpu: HashMap<&str, i64> = HashMap::new();
        let mut per_owner: HashMap<(&str, &str), u32> = HashMap::new();
        for (p, placed) in pods.iter().zip(&out) {
            let Placement::Node(name) = placed else {
                panic!("{} unschedulable: {placed:?}", p.metadata.name);
            };
            let n = by_name[name];
            assert!(n.is_ready() && !n.spec.unschedulable, "{name}");
            assert!(corral_api::core::tolerates_all(
                &p.spec.tolerations,
                &n.spec.taints
            ));
            for (k, v) in &p.spec.node_selector {
                assert_eq!(n.metadata.labels.get(k), Some(v));
            }
            let required = p
                .spec
                .affinity
                .as_ref()
                .and_then(|a| a.node_affinity.as_ref());
            if let Some(r) = required.and_then(|a| a.required.as_ref()) {
                let fields = BTreeMap::from([("metadata.name".to_string(), name.to_string())]);
                assert!(r.matches(&n.metadata.labels, &fields), "{name}");
            }
            *cpu.entry(name).or_default() +=
                super::super::resources::Resources::of_pod(p).cpu_milli;
            let owner = p.metadata.owner_references[0].uid.as_str();
            *per_owner.entry((owner, name)).or_default() += 1;
        }
        for (name, used) in cpu {
            let alloc = by_name[name].status.as_ref().unwrap().allocatable["cpu"].milli_value();
            assert!(used <= alloc, "{name}: {used}m of {alloc}m");
        }
        // 400 web replicas over ~290 usable nodes: nobody gets more than 2.
        let web_max = per_owner
            .iter()
            .filter(|((o, _), _)| *o == "uid-rs-web")
            .map(|(_, c)| *c)
            .max();
        assert!(web_max <= Some(2), "{web_max:?}");
    }
}
