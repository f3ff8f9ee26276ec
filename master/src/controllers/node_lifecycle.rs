//! Node lifecycle: a Node whose agent stopped renewing its Lease (in
//! `kube-node-lease`) and posting status for `--node-monitor-grace-period`
//! gets Ready=Unknown and the `node.kubernetes.io/unreachable` taint
//! (`not-ready` when its agent reports Ready=False); its pods are marked not
//! Ready, and evicted (deleted) once a NoExecute taint has been there longer
//! than they tolerate it. The taints go when the agent reports Ready=True
//! again.
//!
//! Default toleration: a pod with no toleration for `not-ready` or
//! `unreachable` is treated as tolerating them for `--pod-eviction-timeout`
//! (what Kubernetes' DefaultTolerationSeconds admission would have added);
//! stored pods are left as they were written. A NoExecute taint of any other
//! key that a pod does not tolerate evicts it at once, as in Kubernetes.
//!
//! Heartbeats are judged by this master's clock: the time a new renewTime
//! (or Ready heartbeat) was first seen here, never the agent's own
//! timestamps, so clock skew between hosts does not matter. After a master
//! restart every node gets a full grace period again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use corral_api::coordination::Lease;
use corral_api::core::{
    ConditionStatus, Node, NodeCondition, NodeStatus, Pod, PodCondition, Taint, TaintEffect,
    Toleration,
};
use corral_api::{MicroTime, Time};
use corral_client::{Client, DeleteParams, ListParams, Patch, Reflector};
use serde_json::json;

use super::ControllerConfig;

pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
const REASON_UNKNOWN: &str = "NodeStatusUnknown";
const MESSAGE_UNKNOWN: &str = "Kubelet stopped posting node status.";
const REASON_NEVER: &str = "NodeStatusNeverUpdated";
const MESSAGE_NEVER: &str = "Kubelet never posted node status.";

/// When each node last showed a sign of life, by this master's clock.
#[derive(Debug, Default)]
pub struct Heartbeats {
    seen: HashMap<String, (Signs, SystemTime)>,
}

/// What a node's agent last wrote: the Lease's renewTime and the Ready
/// condition's lastHeartbeatTime.
type Signs = (Option<MicroTime>, Option<Time>);

impl Heartbeats {
    /// Records what was read at `now`; the time the node was last seen alive.
    pub fn observe(&mut self, node: &str, signs: Signs, now: SystemTime) -> SystemTime {
        match self.seen.get_mut(node) {
            Some((old, at)) if *old == signs => *at,
            Some(entry) => {
                *entry = (signs, now);
                now
            }
            None => {
                self.seen.insert(node.to_string(), (signs, now));
                now
            }
        }
    }

    /// Forgets the nodes not in `names`.
    pub fn retain(&mut self, names: &[&str]) {
        self.seen.retain(|n, _| names.contains(&n.as_str()));
    }
}

pub fn ready_condition(node: &Node) -> Option<&NodeCondition> {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
}

/// The status of a node not heard from: every condition Unknown (reason
/// NodeStatusUnknown), or a new Ready=Unknown (NodeStatusNeverUpdated) when
/// the agent never posted one. None when that is already so.
pub fn unknown_status(node: &Node, now: Time) -> Option<NodeStatus> {
    let mut status = node.status.clone().unwrap_or_default();
    let mut changed = false;
    for c in &mut status.conditions {
        if c.status != ConditionStatus::Unknown {
            c.status = ConditionStatus::Unknown;
            c.reason = REASON_UNKNOWN.into();
            c.message = MESSAGE_UNKNOWN.into();
            c.last_transition_time = Some(now);
            changed = true;
        }
    }
    if !status.conditions.iter().any(|c| c.type_ == "Ready") {
        status.conditions.push(NodeCondition {
            type_: "Ready".into(),
            status: ConditionStatus::Unknown,
            last_heartbeat_time: node.metadata.creation_timestamp,
            last_transition_time: Some(now),
            reason: REASON_NEVER.into(),
            message: MESSAGE_NEVER.into(),
        });
        changed = true;
    }
    changed.then_some(status)
}

/// The node's taints with ours (`not-ready` for Ready=False, `unreachable`
/// for Unknown, both NoSchedule and NoExecute) made to match `ready`; a
/// taint already there keeps its timeAdded. Other taints are untouched.
pub fn desired_taints(current: &[Taint], ready: Option<ConditionStatus>, now: Time) -> Vec<Taint> {
    let want = match ready {
        Some(ConditionStatus::False) => Some(TAINT_NOT_READY),
        Some(ConditionStatus::Unknown) => Some(TAINT_UNREACHABLE),
        Some(ConditionStatus::True) | None => None,
    };
    let ours = |t: &Taint| t.key == TAINT_NOT_READY || t.key == TAINT_UNREACHABLE;
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| !ours(t) || Some(t.key.as_str()) == want)
        .cloned()
        .collect();
    if let Some(key) = want {
        for effect in [TaintEffect::NoSchedule, TaintEffect::NoExecute] {
            if !out.iter().any(|t| t.key == key && t.effect == effect) {
                out.push(Taint {
                    key: key.into(),
                    value: String::new(),
                    effect,
                    time_added: (effect == TaintEffect::NoExecute).then_some(now),
                });
            }
        }
    }
    out
}

/// When a pod with `tolerations` on a node with `taints` is to be evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    Never,
    At(Time),
}

/// The earliest time some NoExecute taint stops being tolerated: its
/// timeAdded (`now` when unset) plus the shortest tolerationSeconds of the
/// tolerations that match it; a matching toleration without seconds
/// tolerates it forever; none matching is `default_secs` for our two taints
/// and immediate for others.
pub fn eviction(
    taints: &[Taint],
    tolerations: &[Toleration],
    default_secs: i64,
    now: Time,
) -> Eviction {
    let mut earliest: Option<Time> = None;
    for t in taints.iter().filter(|t| t.effect == TaintEffect::NoExecute) {
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|tol| tol.tolerates(t)).collect();
        let secs = if matching.is_empty() {
            if t.key == TAINT_UNREACHABLE || t.key == TAINT_NOT_READY {
                default_secs
            } else {
                0
            }
        } else if matching.iter().any(|tol| tol.toleration_seconds.is_none()) {
            continue;
        } else {
            matching
                .iter()
                .filter_map(|tol| tol.toleration_seconds)
                .min()
                .unwrap_or(0)
                .max(0)
        };
        let at = t.time_added.unwrap_or(now).add_seconds(secs);
        earliest = Some(earliest.map_or(at, |e| e.min(at)));
    }
    earliest.map_or(Eviction::Never, Eviction::At)
}

/// The pod's conditions with Ready set False; None when it is not True.
pub fn pod_not_ready(pod: &Pod, now: Time) -> Option<Vec<PodCondition>> {
    let conds = &pod.status.as_ref()?.conditions;
    let ready = conds.iter().position(|c| c.type_ == "Ready")?;
    if conds[ready].status != ConditionStatus::True {
        return None;
    }
    let mut out = conds.clone();
    out[ready].status = ConditionStatus::False;
    out[ready].last_transition_time = Some(now);
    out[ready].reason = "NodeNotReady".into();
    out[ready].message = "Node is not ready".into();
    Some(out)
}

fn to_duration_secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

struct Caches {
    nodes: Reflector<Node>,
    leases: Reflector<Lease>,
    pods: Reflector<Pod>,
}

pub async fn run(client: Client, cfg: Arc<ControllerConfig>) {
    let caches = Caches {
        nodes: Reflector::spawn(client.clone(), "", ListParams::default()),
        leases: Reflector::spawn(client.clone(), LEASE_NAMESPACE, ListParams::default()),
        pods: Reflector::spawn(client.clone(), "", ListParams::default()),
    };
    caches.nodes.cache().ready().await;
    caches.leases.cache().ready().await;
    caches.pods.cache().ready().await;
    let mut beats = Heartbeats::default();
    let period = cfg.node_monitor_period.max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        sync(&client, &cfg, &caches, &mut beats).await;
    }
}

async fn sync(client: &Client, cfg: &ControllerConfig, caches: &Caches, beats: &mut Heartbeats) {
    let now = SystemTime::now();
    let nodes = caches.nodes.cache().list();
    let leases = caches.leases.cache();
    let names: Vec<&str> = nodes.iter().map(|n| n.metadata.name.as_str()).collect();
    beats.retain(&names);
    let mut tainted: HashMap<String, Vec<Taint>> = HashMap::new();
    for node in &nodes {
        let name = &node.metadata.name;
        let renew = leases
            .get(LEASE_NAMESPACE, name)
            .and_then(|l| l.spec.renew_time);
        let heartbeat = ready_condition(node).and_then(|c| c.last_heartbeat_time);
        let alive_at = beats.observe(name, (renew, heartbeat), now);
        let stale = now
            .duration_since(alive_at)
            .is_ok_and(|d| d > cfg.node_monitor_grace);
        let taints = reconcile_node(client, node, stale).await;
        let taints = taints.unwrap_or_else(|| node.spec.taints.clone());
        if stale {
            mark_pods_not_ready(client, caches, name).await;
        }
        if taints.iter().any(|t| t.effect == TaintEffect::NoExecute) {
            tainted.insert(name.clone(), taints);
        }
    }
    evict(client, cfg, caches, &tainted).await;
}

/// Writes the node's Unknown status (when stale) and its taints; the taints
/// now in force, None when a write failed (the next sync tries again).
async fn reconcile_node(client: &Client, node: &Node, stale: bool) -> Option<Vec<Taint>> {
    let now = Time::now();
    let name = &node.metadata.name;
    let mut current = node.clone();
    if stale {
        if let Some(status) = unknown_status(node, now) {
            current.status = Some(status);
            match client.update_status(&current).await {
                Ok(n) => {
                    eprintln!("corral-master: node-lifecycle: node {name} stopped posting status: Ready=Unknown");
                    current = n;
                }
                Err(e) => {
                    if !e.is_conflict() && !e.is_not_found() {
                        eprintln!(
                            "corral-master: node-lifecycle: marking node {name} Unknown: {e}"
                        );
                    }
                    return None;
                }
            }
        }
    }
    let ready = ready_condition(&current).map(|c| c.status);
    let want = desired_taints(&current.spec.taints, ready, now);
    if want == current.spec.taints {
        return Some(want);
    }
    let patch = Patch::Merge(json!({
        "metadata": {"resourceVersion": current.metadata.resource_version},
        "spec": {"taints": want},
    }));
    match client.patch::<Node>("", name, &patch).await {
        Ok(n) => Some(n.spec.taints),
        Err(e) => {
            if !e.is_conflict() && !e.is_not_found() {
                eprintln!("corral-master: node-lifecycle: setting the taints of node {name}: {e}");
            }
            None
        }
    }
}

async fn mark_pods_not_ready(client: &Client, caches: &Caches, node: &str) {
    let now = Time::now();
    for pod in caches.pods.cache().list() {
        if pod.spec.node_name != node {
            continue;
        }
        let Some(conditions) = pod_not_ready(&pod, now) else {
            continue;
        };
        let mut p = (*pod).clone();
        if let Some(s) = p.status.as_mut() {
            s.conditions = conditions;
        }
        if let Err(e) = client.update_status(&p).await {
            if !e.is_conflict() && !e.is_not_found() {
                eprintln!(
                    "corral-master: node-lifecycle: marking pod {}/{} not ready: {e}",
                    p.metadata.namespace, p.metadata.name
                );
            }
        }
    }
}

async fn evict(
    client: &Client,
    cfg: &ControllerConfig,
    caches: &Caches,
    tainted: &HashMap<String, Vec<Taint>>,
) {
    let now = Time::now();
    let default_secs = to_duration_secs(cfg.pod_eviction_timeout);
    for pod in caches.pods.cache().list() {
        let Some(taints) = tainted.get(&pod.spec.node_name) else {
            continue;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Eviction::At(at) = eviction(taints, &pod.spec.tolerations, default_secs, now) else {
            continue;
        };
        if at > now {
            continue;
        }
        let (ns, name) = (&pod.metadata.namespace, &pod.metadata.name);
        let params = DeleteParams {
            preconditions_uid: Some(pod.metadata.uid.clone()),
            ..DeleteParams::default()
        };
        match client.delete::<Pod>(ns, name, &params).await {
            Ok(()) => eprintln!(
                "corral-master: node-lifecycle: evicted pod {ns}/{name} from node {}",
                pod.spec.node_name
            ),
            Err(e) if e.is_not_found() || e.is_conflict() => {}
            Err(e) => eprintln!("corral-master: node-lifecycle: evicting pod {ns}/{name}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_api::core::TolerationOperator;

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    fn t(secs: i64) -> Time {
        Time::from_unix(1_000_000 + secs)
    }

    fn taint(key: &str, effect: TaintEffect, added: i64) -> Taint {
        Taint {
            key: key.into(),
            value: String::new(),
            effect,
            time_added: Some(t(added)),
        }
    }

    fn tol(key: &str, secs: Option<i64>) -> Toleration {
        Toleration {
            key: key.into(),
            operator: Some(TolerationOperator::Exists),
            effect: Some(TaintEffect::NoExecute),
            toleration_seconds: secs,
            ..Toleration::default()
        }
    }

    #[test]
    fn heartbeats_use_the_local_clock() {
        let mut b = Heartbeats::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let renew = Some(MicroTime::from_unix_micros(5));
        assert_eq!(b.observe("n", (renew, None), t0), t0);
        // Unchanged renewTime: still alive as of the first sighting.
        assert_eq!(
            b.observe("n", (renew, None), t0 + Duration::from_secs(50)),
            t0
        );
        let renew2 = Some(MicroTime::from_unix_micros(6));
        let t1 = t0 + Duration::from_secs(60);
        assert_eq!(b.observe("n", (renew2, None), t1), t1);
        b.retain(&[]);
        assert_eq!(
            b.observe("n", (renew2, None), t1 + Duration::from_secs(9)),
            t1 + Duration::from_secs(9)
        );
    }

    #[test]
    fn stale_node_goes_unknown_once() {
        let n = node(serde_json::json!({
            "metadata": {"name": "n1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady",
                 "lastHeartbeatTime": "2026-01-01T00:00:10Z"},
                {"type": "MemoryPressure", "status": "False"}]}
        }));
        let s = unknown_status(&n, t(0)).unwrap();
        for c in &s.conditions {
            assert_eq!(c.status, ConditionStatus::Unknown);
            assert_eq!(c.reason, "NodeStatusUnknown");
            assert_eq!(c.message, "Kubelet stopped posting node status.");
        }
        assert_eq!(
            s.conditions[0].last_heartbeat_time,
            Some("2026-01-01T00:00:10Z".parse().unwrap())
        );
        let mut again = n.clone();
        again.status = Some(s);
        assert_eq!(unknown_status(&again, t(5)), None);
        let never = node(serde_json::json!({"metadata": {"name": "n2"}}));
        let s = unknown_status(&never, t(0)).unwrap();
        assert_eq!(s.conditions[0].reason, "NodeStatusNeverUpdated");
    }

    #[test]
    fn taints_follow_readiness() {
        let other = taint("dedicated", TaintEffect::NoSchedule, 0);
        let got = desired_taints(
            std::slice::from_ref(&other),
            Some(ConditionStatus::Unknown),
            t(10),
        );
        assert_eq!(got.len(), 3);
        assert_eq!(got[2].key, TAINT_UNREACHABLE);
        assert_eq!(got[2].effect, TaintEffect::NoExecute);
        assert_eq!(got[2].time_added, Some(t(10)));
        // Kept with its first timeAdded.
        assert_eq!(
            desired_taints(&got, Some(ConditionStatus::Unknown), t(99)),
            got
        );
        let not_ready = desired_taints(&got, Some(ConditionStatus::False), t(20));
        assert!(not_ready.iter().all(|t| t.key != TAINT_UNREACHABLE));
        assert!(not_ready
            .iter()
            .any(|t| t.key == TAINT_NOT_READY && t.effect == TaintEffect::NoExecute));
        assert_eq!(
            desired_taints(&not_ready, Some(ConditionStatus::True), t(30)),
            vec![other]
        );
    }

    #[test]
    fn eviction_times() {
        let unreachable = [taint(TAINT_UNREACHABLE, TaintEffect::NoExecute, 10)];
        // No toleration: the default (DefaultTolerationSeconds' 300 s).
        assert_eq!(
            eviction(&unreachable, &[], 300, t(11)),
            Eviction::At(t(310))
        );
        assert_eq!(
            eviction(&unreachable, &[tol(TAINT_UNREACHABLE, Some(5))], 300, t(11)),
            Eviction::At(t(15))
        );
        assert_eq!(
            eviction(&unreachable, &[tol(TAINT_UNREACHABLE, None)], 300, t(11)),
            Eviction::Never
        );
        // Exists with an empty key tolerates everything.
        assert_eq!(
            eviction(
                &unreachable,
                &[tol("", Some(60)), tol(TAINT_UNREACHABLE, Some(20))],
                300,
                t(11)
            ),
            Eviction::At(t(30))
        );
        let foreign = [taint("maintenance", TaintEffect::NoExecute, 40)];
        assert_eq!(eviction(&foreign, &[], 300, t(41)), Eviction::At(t(40)));
        let soft = [taint(TAINT_UNREACHABLE, TaintEffect::NoSchedule, 0)];
        assert_eq!(eviction(&soft, &[], 300, t(41)), Eviction::Never);
        assert_eq!(eviction(&[], &[], 300, t(41)), Eviction::Never);
    }

    #[test]
    fn pods_marked_not_ready() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}]}
        }))
        .unwrap();
        let c = pod_not_ready(&pod, t(0)).unwrap();
        assert_eq!(c[0].status, ConditionStatus::False);
        assert_eq!(c[1].status, ConditionStatus::True);
        let mut p2 = pod.clone();
        p2.status.as_mut().unwrap().conditions = c;
        assert_eq!(pod_not_ready(&p2, t(1)), None);
    }
}
