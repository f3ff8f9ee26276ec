//! The scheduler task: list+watch of nodes and pods into caches, a pass of
//! the pure scheduler whenever something changed (changes arriving within
//! `batch_delay` share one pass), binds sent concurrently, and for a pod that
//! fits nowhere its PodScheduled condition and a FailedScheduling event,
//! written again only when the reason changes.
//!
//! A pod is "assumed" on its node from the moment its bind is sent until the
//! watch shows it bound (or the bind fails), so the next pass neither places
//! it twice nor hands its room to another pod.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use corral_api::core::{
    ConditionStatus, Event, EventSource, Node, ObjectReference, Pod, PodCondition,
};
use corral_api::{ObjectMeta, Time};
use corral_client::{Cache, Client, Error, ListParams, Patch, Reflector};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, Semaphore};
use tokio::task::JoinSet;

use super::batch::{queue_order, Options, Placement};
use super::snapshot::{is_finished, Snapshot};

pub const DEFAULT_SCHEDULER: &str = "default-scheduler";

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Pods naming another scheduler in spec.schedulerName are left alone.
    pub scheduler_name: String,
    /// See [`Options::percentage_of_nodes_to_score`].
    pub percentage_of_nodes_to_score: u32,
    /// How long to gather changes before a pass.
    pub batch_delay: Duration,
    /// A pass also runs this often while some pod is waiting, as a safety net.
    pub retry_interval: Duration,
    /// Bind requests in flight at once.
    pub binds_in_flight: usize,
    /// Event reportingInstance (the host's name by default).
    pub instance: String,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            scheduler_name: DEFAULT_SCHEDULER.into(),
            percentage_of_nodes_to_score: 0,
            batch_delay: Duration::from_millis(10),
            retry_interval: Duration::from_secs(5),
            binds_in_flight: 32,
            instance: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default(),
        }
    }
}

/// Runs until the task is dropped (abort it to stop). Request failures are
/// logged on stderr and retried by later passes.
pub async fn run(client: Client, cfg: SchedulerConfig) {
    let nodes = Reflector::<Node>::spawn(client.clone(), "", ListParams::default());
    let pods = Reflector::<Pod>::spawn(client.clone(), "", ListParams::default());
    let mut node_rx = nodes.subscribe();
    let mut pod_rx = pods.subscribe();
    nodes.cache().ready().await;
    pods.cache().ready().await;
    let mut tick = tokio::time::interval(cfg.retry_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let batch_delay = cfg.batch_delay;
    let mut r = Runner::new(client, cfg, nodes.cache(), pods.cache());
    let mut dirty = true;
    loop {
        if dirty {
            tokio::time::sleep(batch_delay).await;
            if drain(&mut node_rx).is_err() || drain(&mut pod_rx).is_err() {
                return;
            }
            r.pass();
        }
        dirty = tokio::select! {
            c = node_rx.recv() => match c {
                Err(RecvError::Closed) => return,
                _ => true,
            },
            c = pod_rx.recv() => match c {
                Err(RecvError::Closed) => return,
                _ => true,
            },
            Some(done) = r.tasks.join_next() => r.finished(done),
            _ = tick.tick() => !r.reported.is_empty(),
        };
    }
}

/// Empties a change channel (the pass reads the caches, not the changes).
fn drain<T: Clone>(rx: &mut broadcast::Receiver<T>) -> Result<(), ()> {
    loop {
        match rx.try_recv() {
            Ok(_) | Err(TryRecvError::Lagged(_)) => continue,
            Err(TryRecvError::Empty) => return Ok(()),
            Err(TryRecvError::Closed) => return Err(()),
        }
    }
}

enum Done {
    Bound {
        uid: String,
        pod: String,
        node: String,
        result: Result<(), Error>,
    },
    Reported {
        uid: String,
        pod: String,
        result: Result<(), Error>,
    },
}

struct Runner {
    client: Client,
    cfg: SchedulerConfig,
    nodes: Cache<Node>,
    pods: Cache<Pod>,
    /// Pod uid -> node, for binds sent and not yet seen by the watch.
    assumed: HashMap<String, String>,
    /// Pod uid -> the unschedulable message last written for it.
    reported: HashMap<String, String>,
    tasks: JoinSet<Done>,
    binds: Arc<Semaphore>,
}

impl Runner {
    fn new(client: Client, cfg: SchedulerConfig, nodes: Cache<Node>, pods: Cache<Pod>) -> Runner {
        let binds = Arc::new(Semaphore::new(cfg.binds_in_flight.max(1)));
        Runner {
            client,
            cfg,
            nodes,
            pods,
            assumed: HashMap::new(),
            reported: HashMap::new(),
            tasks: JoinSet::new(),
            binds,
        }
    }

    fn is_ours(&self, pod: &Pod) -> bool {
        let name = pod.spec.scheduler_name.as_str();
        name == self.cfg.scheduler_name
            || (name.is_empty() && self.cfg.scheduler_name == DEFAULT_SCHEDULER)
    }

    /// One run of the pure scheduler over the current caches.
    fn pass(&mut self) {
        let nodes = self.nodes.list();
        let pods = self.pods.list();
        let mut snap = Snapshot::new(&nodes);
        let mut pending: Vec<&Pod> = Vec::new();
        let mut unbound: HashSet<&str> = HashSet::new();
        for p in &pods {
            if !p.spec.node_name.is_empty() {
                snap.add_pod(p);
                continue;
            }
            let uid = p.metadata.uid.as_str();
            unbound.insert(uid);
            if let Some(node) = self.assumed.get(uid) {
                snap.add_assumed(p, node);
            } else if self.is_ours(p) && !p.metadata.is_being_deleted() && !is_finished(p) {
                pending.push(p);
            }
        }
        // Bound (the watch caught up) or gone: no longer ours to account for.
        self.assumed.retain(|uid, _| unbound.contains(uid.as_str()));
        let waiting: HashSet<&str> = pending.iter().map(|p| p.metadata.uid.as_str()).collect();
        self.reported
            .retain(|uid, _| waiting.contains(uid.as_str()));
        if pending.is_empty() {
            return;
        }
        pending.sort_by(|a, b| queue_order(a, b));
        let opts = Options {
            percentage_of_nodes_to_score: self.cfg.percentage_of_nodes_to_score,
        };
        let placements = snap.schedule(&pending, &opts);
        for (pod, placement) in pending.into_iter().zip(placements) {
            match placement {
                Placement::Node(node) => self.bind(pod, node),
                Placement::Unschedulable(u) => self.report(pod, u.to_string()),
            }
        }
    }

    fn bind(&mut self, pod: &Pod, node: &str) {
        let uid = pod.metadata.uid.clone();
        self.assumed.insert(uid.clone(), node.to_string());
        self.reported.remove(&uid);
        let (client, permits) = (self.client.clone(), self.binds.clone());
        let (ns, name, node) = (
            pod.metadata.namespace.clone(),
            pod.metadata.name.clone(),
            node.to_string(),
        );
        self.tasks.spawn(async move {
            // The semaphore is never closed, so acquire cannot fail.
            let _permit = permits.acquire_owned().await.ok();
            let result = client.bind(&ns, &name, &node).await;
            Done::Bound {
                uid,
                pod: format!("{ns}/{name}"),
                node,
                result,
            }
        });
    }

    /// Writes the reason once per change: skipped when this pass's message is
    /// what was last written, or what the pod's condition already says (so a
    /// restarted scheduler does not repeat itself).
    fn report(&mut self, pod: &Pod, message: String) {
        let uid = pod.metadata.uid.clone();
        if self.reported.get(&uid) == Some(&message) || condition_says(pod, &message) {
            self.reported.insert(uid, message);
            return;
        }
        self.reported.insert(uid.clone(), message.clone());
        let patch = Patch::Merge(serde_json::json!({
            "status": {"conditions": unschedulable_conditions(pod, &message)}
        }));
        let event = failed_scheduling_event(pod, &message, &self.cfg.instance);
        let client = self.client.clone();
        let (ns, name) = (pod.metadata.namespace.clone(), pod.metadata.name.clone());
        self.tasks.spawn(async move {
            let mut result = client
                .patch_status::<Pod>(&ns, &name, &patch)
                .await
                .map(|_| ());
            if result.is_ok() {
                result = client.create(&event).await.map(|_| ());
            }
            Done::Reported {
                uid,
                pod: format!("{ns}/{name}"),
                result,
            }
        });
    }

    /// Handles a finished request; true when a new pass is needed.
    fn finished(&mut self, done: Result<Done, tokio::task::JoinError>) -> bool {
        match done {
            Ok(Done::Bound { result: Ok(()), .. }) => false,
            Ok(Done::Bound {
                uid,
                pod,
                node,
                result: Err(e),
            }) => {
                // A conflict means someone bound it first; the watch will show it.
                if !e.is_conflict() && !e.is_not_found() {
                    eprintln!("corral-master: scheduler: binding {pod} to {node}: {e}");
                }
                self.assumed.remove(&uid);
                true
            }
            Ok(Done::Reported { result: Ok(()), .. }) => false,
            Ok(Done::Reported {
                uid,
                pod,
                result: Err(e),
            }) => {
                if !e.is_not_found() {
                    eprintln!(
                        "corral-master: scheduler: recording why {pod} is unschedulable: {e}"
                    );
                }
                // Forgotten, so a later pass writes it again.
                self.reported.remove(&uid);
                false
            }
            Err(e) => {
                eprintln!("corral-master: scheduler: request task failed: {e}");
                true
            }
        }
    }
}

fn scheduled_condition(pod: &Pod) -> Option<&PodCondition> {
    pod.status.as_ref()?.condition("PodScheduled")
}

fn condition_says(pod: &Pod, message: &str) -> bool {
    scheduled_condition(pod).is_some_and(|c| {
        c.status == ConditionStatus::False && c.reason == "Unschedulable" && c.message == message
    })
}

/// The pod's conditions with PodScheduled set to False/Unschedulable (a
/// merge patch replaces the whole list, so the others are kept as they are).
pub fn unschedulable_conditions(pod: &Pod, message: &str) -> Vec<PodCondition> {
    let old = scheduled_condition(pod);
    let since = old
        .filter(|c| c.status == ConditionStatus::False)
        .and_then(|c| c.last_transition_time)
        .unwrap_or_else(Time::now);
    let mut conds: Vec<PodCondition> = pod
        .status
        .iter()
        .flat_map(|s| s.conditions.iter())
        .filter(|c| c.type_ != "PodScheduled")
        .cloned()
        .collect();
    conds.push(PodCondition {
        type_: "PodScheduled".into(),
        status: ConditionStatus::False,
        observed_generation: None,
        last_probe_time: None,
        last_transition_time: Some(since),
        reason: "Unschedulable".into(),
        message: message.to_string(),
    });
    conds
}

/// A Warning event on the pod, named like Kubernetes names its events.
pub fn failed_scheduling_event(pod: &Pod, message: &str, instance: &str) -> Event {
    let now = Time::now();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let m = &pod.metadata;
    Event {
        api_version: "v1".into(),
        kind: "Event".into(),
        metadata: ObjectMeta::namespaced(&m.namespace, &format!("{}.{nanos:x}", m.name)),
        involved_object: ObjectReference {
            kind: "Pod".into(),
            namespace: m.namespace.clone(),
            name: m.name.clone(),
            uid: m.uid.clone(),
            api_version: "v1".into(),
            resource_version: m.resource_version.clone(),
            field_path: String::new(),
        },
        reason: "FailedScheduling".into(),
        message: message.to_string(),
        source: Some(EventSource {
            component: DEFAULT_SCHEDULER.into(),
            host: String::new(),
        }),
        first_timestamp: Some(now),
        last_timestamp: Some(now),
        count: 1,
        type_: "Warning".into(),
        event_time: None,
        series: None,
        action: "Scheduling".into(),
        related: None,
        reporting_component: DEFAULT_SCHEDULER.into(),
        reporting_instance: instance.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::synth::pod;

    #[test]
    fn unschedulable_condition_keeps_the_others_and_its_first_time() {
        let mut p = pod("p");
        let earlier = Time::from_unix(1_800_000_000);
        p.status.get_or_insert_with(Default::default).conditions = vec![
            PodCondition {
                type_: "Ready".into(),
                status: ConditionStatus::False,
                observed_generation: None,
                last_probe_time: None,
                last_transition_time: None,
                reason: String::new(),
                message: String::new(),
            },
            PodCondition {
                type_: "PodScheduled".into(),
                status: ConditionStatus::False,
                observed_generation: None,
                last_probe_time: None,
                last_transition_time: Some(earlier),
                reason: "Unschedulable".into(),
                message: "0/1 nodes are available: 1 Insufficient cpu.".into(),
            },
        ];
        let msg = "0/2 nodes are available: 2 Insufficient cpu.";
        assert!(!condition_says(&p, msg));
        let conds = unschedulable_conditions(&p, msg);
        assert_eq!(conds.len(), 2);
        assert_eq!(conds[0].type_, "Ready");
        assert_eq!(conds[1].message, msg);
        assert_eq!(conds[1].reason, "Unschedulable");
        assert_eq!(conds[1].last_transition_time, Some(earlier));
        p.status.as_mut().unwrap().conditions = conds;
        assert!(condition_says(&p, msg));
        // The patch body serializes lastProbeTime as null, as Kubernetes does.
        let v = serde_json::to_value(unschedulable_conditions(&p, msg)).unwrap();
        assert!(v[1]["lastProbeTime"].is_null());
    }

    #[test]
    fn event_names_the_pod_and_validates() {
        let p = pod("web-1");
        let e = failed_scheduling_event(&p, "0/3 nodes are available: 3 Insufficient cpu.", "h1");
        assert!(e.validate().is_empty(), "{:?}", e.validate());
        assert_eq!(e.involved_object.kind, "Pod");
        assert_eq!(e.involved_object.uid, "uid-pod-web-1");
        assert_eq!(e.type_, "Warning");
        assert_eq!(e.reason, "FailedScheduling");
        assert!(e.metadata.name.starts_with("web-1."));
        assert_eq!(e.metadata.namespace, "default");
    }
}
