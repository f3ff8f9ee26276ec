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
            pass_off_the_reactor(&mut r);
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
            _ = tick.tick() => r.waiting > 0,
        };
    }
}

/// A pass over thousands of pods takes a good fraction of a second: on a
/// multi-threaded runtime the worker hands its other tasks (the API server's
/// connections, in the master) to the rest of the pool meanwhile.
fn pass_off_the_reactor(r: &mut Runner) {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
        tokio::task::block_in_place(|| r.pass());
    } else {
        r.pass();
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
    /// Pod uids whose status write or event is in flight: not bound until it
    /// is done, or a late write could say Unschedulable of a bound pod.
    reporting: HashSet<String>,
    /// Pods the last pass could not place: while any, passes also run every
    /// retry_interval (which also retries a failed status write, at that pace).
    waiting: usize,
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
            reporting: HashSet::new(),
            waiting: 0,
            tasks: JoinSet::new(),
            binds,
        }
    }

    fn is_ours(&self, pod: &Pod) -> bool {
        let name = pod.spec.scheduler_name.as_str();
        name == self.cfg.scheduler_name
            || (name.is_empty() && self.cfg.scheduler_name == DEFAULT_SCHEDULER)
    }

    /// One run of the pure scheduler over the current caches. Most passes
    /// (node heartbeats, pod status updates) find nothing pending and stop
    /// before building a snapshot.
    fn pass(&mut self) {
        let pods = self.pods.list();
        let mut pending: Vec<&Pod> = Vec::new();
        let mut unbound: HashSet<&str> = HashSet::new();
        let mut held = 0;
        for p in pods.iter().filter(|p| p.spec.node_name.is_empty()) {
            let uid = p.metadata.uid.as_str();
            unbound.insert(uid);
            let to_place = !self.assumed.contains_key(uid)
                && self.is_ours(p)
                && !p.metadata.is_being_deleted()
                && !is_finished(p);
            if to_place && self.reporting.contains(uid) {
                held += 1;
            } else if to_place {
                pending.push(p);
            }
        }
        // Bound (the watch caught up) or gone: no longer ours to account for.
        self.assumed.retain(|uid, _| unbound.contains(uid.as_str()));
        let pending_uids: HashSet<&str> = pending.iter().map(|p| p.metadata.uid.as_str()).collect();
        self.reported
            .retain(|uid, _| pending_uids.contains(uid.as_str()));
        self.waiting = held;
        if pending.is_empty() {
            return;
        }
        let nodes = self.nodes.list();
        let mut snap = Snapshot::new(&nodes);
        for p in &pods {
            match self.assumed.get(p.metadata.uid.as_str()) {
                Some(node) if p.spec.node_name.is_empty() => snap.add_assumed(p, node),
                _ => snap.add_pod(p),
            }
        }
        pending.sort_by(|a, b| queue_order(a, b));
        let opts = Options {
            percentage_of_nodes_to_score: self.cfg.percentage_of_nodes_to_score,
        };
        let placements = snap.schedule(&pending, &opts);
        for (pod, placement) in pending.into_iter().zip(placements) {
            match placement {
                Placement::Node(node) => self.bind(pod, node),
                Placement::Unschedulable(u) => {
                    self.waiting += 1;
                    self.report(pod, u.to_string());
                }
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
        self.reporting.insert(uid.clone());
        let patch = unschedulable_patch(pod, &message);
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
            Ok(Done::Reported {
                uid,
                result: Ok(()),
                ..
            }) => {
                // The pod may fit by now: it was held back while this ran.
                self.reporting.remove(&uid);
                true
            }
            Ok(Done::Reported {
                uid,
                pod,
                result: Err(e),
            }) => {
                self.reporting.remove(&uid);
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

/// A strategic merge patch of the PodScheduled condition alone: the server
/// merges `status.conditions` by type (Kubernetes' patchMergeKey), so what an
/// agent or a test wrote in the other conditions is never overwritten from a
/// stale copy. lastTransitionTime is kept while the condition stays False.
pub fn unschedulable_patch(pod: &Pod, message: &str) -> Patch {
    let since = scheduled_condition(pod)
        .filter(|c| c.status == ConditionStatus::False)
        .and_then(|c| c.last_transition_time)
        .unwrap_or_else(Time::now);
    Patch::Strategic(serde_json::json!({"status": {"conditions": [{
        "type": "PodScheduled",
        "status": "False",
        "lastTransitionTime": since,
        "reason": "Unschedulable",
        "message": message,
    }]}}))
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

    fn condition(type_: &str, since: Option<Time>, message: &str) -> PodCondition {
        PodCondition {
            type_: type_.into(),
            status: ConditionStatus::False,
            observed_generation: None,
            last_probe_time: None,
            last_transition_time: since,
            reason: if message.is_empty() {
                ""
            } else {
                "Unschedulable"
            }
            .into(),
            message: message.into(),
        }
    }

    #[test]
    fn unschedulable_patch_touches_only_pod_scheduled_and_keeps_its_first_time() {
        let mut p = pod("p");
        let earlier = Time::from_unix(1_800_000_000);
        let old = "0/1 nodes are available: 1 Insufficient cpu.";
        p.status.get_or_insert_with(Default::default).conditions = vec![
            condition("Ready", None, ""),
            condition("PodScheduled", Some(earlier), old),
        ];
        let msg = "0/2 nodes are available: 2 Insufficient cpu.";
        assert!(condition_says(&p, old));
        assert!(!condition_says(&p, msg));
        let Patch::Strategic(v) = unschedulable_patch(&p, msg) else {
            panic!("not a strategic merge patch");
        };
        let conds = v["status"]["conditions"].as_array().unwrap();
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0]["type"], "PodScheduled");
        assert_eq!(conds[0]["status"], "False");
        assert_eq!(conds[0]["reason"], "Unschedulable");
        assert_eq!(conds[0]["message"], msg);
        assert_eq!(conds[0]["lastTransitionTime"], serde_json::json!(earlier));
        // Scheduled before (True): the transition is now.
        p.status.as_mut().unwrap().conditions[1].status = ConditionStatus::True;
        let Patch::Strategic(v) = unschedulable_patch(&p, msg) else {
            panic!("not a strategic merge patch");
        };
        assert_ne!(
            v["status"]["conditions"][0]["lastTransitionTime"],
            serde_json::json!(earlier)
        );
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

/// The runner against a real API server (this crate's, in-process, over
/// HTTPS on loopback) and the real client.
#[cfg(test)]
mod live {
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use corral_api::core::{Event, Node, Pod};
    use corral_client::{Client, ListParams};

    use super::{run, SchedulerConfig};
    use crate::api::{self, Api};
    use crate::scheduler::synth::{node, owned_by, pod, with_requests};
    use crate::{auth, store, tls};

    const DEADLINE: Duration = Duration::from_secs(20);

    struct Server {
        client: Client,
        task: tokio::task::JoinHandle<()>,
        _dir: tempfile::TempDir,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn start_server() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let pki = tls::load_or_create(dir.path(), &tls::serving_names(addr, None)).unwrap();
        let tokens = auth::Tokens::load_or_create(dir.path()).unwrap();
        let token = tokens.admin_token().to_string();
        let cfg = store::StoreConfig::from_flag(None, dir.path()).unwrap();
        let store = store::open(&cfg).await.unwrap();
        let api = std::sync::Arc::new(Api::new(store, tokens, 3 << 20));
        api.init().await.unwrap();
        let task = tokio::spawn(async move {
            let _ = api::serve(api, listener, pki.server_config).await;
        });
        let client = Client::new(
            &format!("https://{addr}"),
            &token,
            Some(pki.ca_pem.as_bytes()),
        )
        .unwrap();
        Server {
            client,
            task,
            _dir: dir,
        }
    }

    async fn create_node(c: &Client, name: &str, cpu_milli: i64) {
        let mut n = node(name, cpu_milli, 8 << 30);
        n.metadata.uid.clear();
        c.create(&n).await.unwrap();
    }

    async fn create_pod(c: &Client, mut p: Pod) {
        p.metadata.uid.clear();
        c.create(&p).await.unwrap();
    }

    /// Polls `check` until it gives Some, or fails the test after DEADLINE.
    async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let start = Instant::now();
        loop {
            if let Some(v) = check().await {
                return v;
            }
            assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn node_of(c: &Client, name: &str) -> String {
        let p: Pod = c.get("default", name).await.unwrap();
        p.spec.node_name
    }

    async fn failed_events(c: &Client, pod: &str) -> Vec<Event> {
        let sel = format!("involvedObject.name={pod},reason=FailedScheduling");
        c.list::<Event>("default", &ListParams::fields(&sel))
            .await
            .unwrap()
            .items
    }

    /// On a current-thread runtime (the pass runs inline there).
    #[tokio::test]
    async fn room_freed_by_a_deleted_pod_is_used() {
        let server = start_server().await;
        let c = server.client.clone();
        create_node(&c, "n1", 2000).await;
        create_pod(&c, with_requests(pod("first"), "1500m", "64Mi")).await;
        let cfg = SchedulerConfig {
            batch_delay: Duration::from_millis(5),
            ..SchedulerConfig::default()
        };
        let sched = tokio::spawn(run(c.clone(), cfg));
        eventually("first bound", || async {
            (node_of(&c, "first").await == "n1").then_some(())
        })
        .await;
        create_pod(&c, with_requests(pod("second"), "1", "64Mi")).await;
        eventually("second unschedulable", || async {
            let ev = failed_events(&c, "second").await;
            let msg = "0/1 nodes are available: 1 Insufficient cpu.";
            ev.iter().any(|e| e.message == msg).then_some(())
        })
        .await;
        assert_eq!(node_of(&c, "second").await, "");
        let now = corral_client::DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        c.delete::<Pod>("default", "first", &now).await.unwrap();
        eventually("second bound once first is gone", || async {
            (node_of(&c, "second").await == "n1").then_some(())
        })
        .await;
        sched.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn binds_spreads_reports_once_and_retries() {
        let server = start_server().await;
        let c = server.client.clone();
        create_node(&c, "n1", 2000).await;
        create_node(&c, "n2", 2000).await;
        for i in 0..4 {
            let p = owned_by(
                with_requests(pod(&format!("web-{i}")), "500m", "64Mi"),
                "rs-web",
            );
            create_pod(&c, p).await;
        }
        create_pod(&c, with_requests(pod("big"), "4", "64Mi")).await;
        // Written by someone else before the scheduler runs: must survive.
        let mine = corral_client::Patch::Merge(serde_json::json!({"status": {"conditions": [
            {"type": "example.com/Checked", "status": "True", "lastProbeTime": null}
        ]}}));
        c.patch_status::<Pod>("default", "big", &mine)
            .await
            .unwrap();
        let mut other = pod("other");
        other.spec.scheduler_name = "someone-else".into();
        create_pod(&c, other).await;

        let cfg = SchedulerConfig {
            batch_delay: Duration::from_millis(5),
            retry_interval: Duration::from_millis(200),
            ..SchedulerConfig::default()
        };
        let sched = tokio::spawn(run(c.clone(), cfg));

        let placed = eventually("4 web pods bound", || async {
            let mut by_node: BTreeMap<String, usize> = BTreeMap::new();
            for i in 0..4 {
                let n = node_of(&c, &format!("web-{i}")).await;
                if n.is_empty() {
                    return None;
                }
                *by_node.entry(n).or_default() += 1;
            }
            Some(by_node)
        })
        .await;
        assert_eq!(placed.values().copied().collect::<Vec<_>>(), vec![2, 2]);
        let web: Pod = c.get("default", "web-0").await.unwrap();
        assert!(web
            .status
            .as_ref()
            .and_then(|s| s.condition("PodScheduled"))
            .is_some_and(|c| c.status == corral_api::core::ConditionStatus::True));

        let msg = "0/2 nodes are available: 2 Insufficient cpu.";
        let big = eventually("big's PodScheduled=False", || async {
            let p: Pod = c.get("default", "big").await.ok()?;
            let cond = p.status.as_ref()?.condition("PodScheduled")?.clone();
            (cond.reason == "Unschedulable" && cond.message == msg).then_some(p)
        })
        .await;
        let status = big.status.as_ref().unwrap();
        assert!(
            status.condition("example.com/Checked").is_some(),
            "{status:?}"
        );
        let events = eventually("one FailedScheduling event", || async {
            let ev = failed_events(&c, "big").await;
            (!ev.is_empty()).then_some(ev)
        })
        .await;
        assert_eq!(events[0].message, msg);
        assert_eq!(events[0].type_, "Warning");
        // Several retry ticks and the watch of our own patch later: still one.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(failed_events(&c, "big").await.len(), 1);

        // Room appears: the waiting pod is retried and bound there.
        create_node(&c, "n3", 8000).await;
        let n = eventually("big bound", || async {
            let n = node_of(&c, "big").await;
            (!n.is_empty()).then_some(n)
        })
        .await;
        assert_eq!(n, "n3");
        assert_eq!(node_of(&c, "other").await, "");
        let nodes: Vec<Node> = c.list("", &ListParams::default()).await.unwrap().items;
        assert_eq!(nodes.len(), 3);
        sched.abort();
    }
}
