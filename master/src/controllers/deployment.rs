//! The Deployment controller: one ReplicaSet per pod template
//! (`<name>-<pod-template-hash>`), rolling updates within maxSurge and
//! maxUnavailable or Recreate, scaling (also while paused), revisions and
//! rollback, history cleanup, and the status `kubectl rollout status` reads.
//!
//! Level-triggered like the ReplicaSet controller: each sync reads the
//! Deployment, the ReplicaSets and the pods of its namespace from the caches
//! and [`plan::plan`] decides every write. Writes carry the resourceVersion
//! they were decided from, and the new ReplicaSet's name is derived from its
//! template, so a sync working from a stale cache fails with a conflict or
//! AlreadyExists and is retried instead of acting twice. Nothing is kept in
//! memory but the work queue.

pub mod plan;
pub mod status;
pub mod util;

use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_api::apps::{Deployment, ReplicaSet};
use corral_api::core::Pod;
use corral_api::{Resource, Time};
use corral_client::{Cache, Change, Client, DeleteParams, ListParams, Reflector};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::broadcast::Receiver;

use super::replicaset::queue::{Key, Queue};
use super::replicaset::{api_err, events, pods, SyncError};
use super::ControllerConfig;

const RESYNC: Duration = Duration::from_secs(30);
const COMPONENT: &str = "deployment-controller";

/// Runs the controller forever.
pub async fn run(client: Client, _cfg: Arc<ControllerConfig>) {
    let d_inf = Reflector::<Deployment>::spawn(client.clone(), "", ListParams::default());
    let rs_inf = Reflector::<ReplicaSet>::spawn(client.clone(), "", ListParams::default());
    let pod_inf = Reflector::<Pod>::spawn(client.clone(), "", ListParams::default());
    let (mut d_rx, mut rs_rx, mut pod_rx) =
        (d_inf.subscribe(), rs_inf.subscribe(), pod_inf.subscribe());
    let mut c = Controller {
        client,
        deployments: d_inf.cache(),
        rss: rs_inf.cache(),
        pods: pod_inf.cache(),
        queue: Queue::default(),
    };
    c.deployments.ready().await;
    c.rss.ready().await;
    c.pods.ready().await;
    c.add_all();
    let mut resync = tokio::time::interval(RESYNC);
    loop {
        let wake = c
            .queue
            .next_due()
            .unwrap_or_else(|| Instant::now() + RESYNC);
        tokio::select! {
            ch = d_rx.recv() => c.on_deployment(ch),
            ch = rs_rx.recv() => c.on_rs(ch),
            ch = pod_rx.recv() => c.on_pod(ch),
            _ = resync.tick() => c.add_all(),
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        c.drain(&mut d_rx, &mut rs_rx, &mut pod_rx);
        while let Some(key) = c.queue.pop_due(Instant::now()) {
            c.sync_and_requeue(key).await;
        }
    }
}

struct Controller {
    client: Client,
    deployments: Cache<Deployment>,
    rss: Cache<ReplicaSet>,
    pods: Cache<Pod>,
    queue: Queue,
}

fn key_of<T: Resource>(o: &T) -> Key {
    (o.meta().namespace.clone(), o.meta().name.clone())
}

/// Drains a receiver without waiting.
fn drain_one<T>(rx: &mut Receiver<Change<T>>, mut f: impl FnMut(Result<Change<T>, RecvError>)) {
    loop {
        match rx.try_recv() {
            Ok(ch) => f(Ok(ch)),
            Err(TryRecvError::Lagged(n)) => f(Err(RecvError::Lagged(n))),
            Err(_) => break,
        }
    }
}

impl Controller {
    fn add_all(&mut self) {
        for d in self.deployments.list() {
            self.queue.add(key_of(d.as_ref()));
        }
    }

    fn on_deployment(&mut self, ch: Result<Change<Deployment>, RecvError>) {
        match ch {
            Ok(Change::Applied(d) | Change::Deleted(d)) => self.queue.add(key_of(d.as_ref())),
            Ok(Change::Resynced) | Err(RecvError::Lagged(_)) => self.add_all(),
            Err(RecvError::Closed) => {}
        }
    }

    /// The Deployment controlling a ReplicaSet, or for an orphan each one
    /// in its namespace that selects it.
    fn owners_of(&mut self, rs: &ReplicaSet) {
        let ns = &rs.metadata.namespace;
        match rs.metadata.controller_ref() {
            Some(r) if r.kind == "Deployment" => self.queue.add((ns.clone(), r.name.clone())),
            Some(_) => {}
            None => {
                for d in self.deployments.list_ns(ns) {
                    let sel = d.spec.selector.clone().unwrap_or_default();
                    if !sel.is_empty() && sel.matches(&rs.metadata.labels) {
                        self.queue.add(key_of(d.as_ref()));
                    }
                }
            }
        }
    }

    fn on_rs(&mut self, ch: Result<Change<ReplicaSet>, RecvError>) {
        match ch {
            Ok(Change::Applied(rs) | Change::Deleted(rs)) => self.owners_of(&rs),
            Ok(Change::Resynced) | Err(RecvError::Lagged(_)) => self.add_all(),
            Err(RecvError::Closed) => {}
        }
    }

    /// Pods move a Deployment's status (ready, available) and a Recreate
    /// rollout waits for old pods to stop: wake the owner of their owner.
    fn on_pod(&mut self, ch: Result<Change<Pod>, RecvError>) {
        let pod = match ch {
            Ok(Change::Applied(p) | Change::Deleted(p)) => p,
            Ok(Change::Resynced) | Err(RecvError::Lagged(_)) => return self.add_all(),
            Err(RecvError::Closed) => return,
        };
        let Some(r) = pod
            .metadata
            .controller_ref()
            .filter(|r| r.kind == "ReplicaSet")
        else {
            return;
        };
        if let Some(rs) = self.rss.get(&pod.metadata.namespace, &r.name) {
            self.owners_of(&rs);
        }
    }

    fn drain(
        &mut self,
        d_rx: &mut Receiver<Change<Deployment>>,
        rs_rx: &mut Receiver<Change<ReplicaSet>>,
        pod_rx: &mut Receiver<Change<Pod>>,
    ) {
        drain_one(d_rx, |ch| self.on_deployment(ch));
        drain_one(rs_rx, |ch| self.on_rs(ch));
        drain_one(pod_rx, |ch| self.on_pod(ch));
    }

    async fn sync_and_requeue(&mut self, key: Key) {
        let outcome = self.sync(&key).await;
        self.queue.finish(key, outcome, "deployment controller");
    }

    async fn sync(&mut self, key: &Key) -> Result<Option<Duration>, SyncError> {
        let (ns, name) = key;
        let Some(d) = self.deployments.get(ns, name) else {
            return Ok(None);
        };
        let rss = self.rss.list_ns(ns);
        let pods = self.pods.list_ns(ns);
        let rs_refs: Vec<&ReplicaSet> = rss.iter().map(Arc::as_ref).collect();
        let pod_refs: Vec<&Pod> = pods.iter().map(Arc::as_ref).collect();
        let p = plan::plan(&d, &rs_refs, &pod_refs, Time::now());
        for rs in &p.update {
            let before = rss
                .iter()
                .find(|r| r.metadata.name == rs.metadata.name)
                .map_or(0, |r| r.replicas());
            match self.client.update(rs).await {
                Ok(_) => self.scaled(&d, &rs.metadata.name, before, rs.replicas()),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(api_err("updating replicaset", ns, &rs.metadata.name)(e)),
            }
        }
        if let Some(rs) = &p.create {
            if let Err(e) = self.client.create(rs).await {
                return self.create_failed(&d, rs, e).await;
            }
            self.scaled(&d, &rs.metadata.name, 0, rs.replicas());
        }
        for (rs, uid) in &p.delete {
            let params = DeleteParams {
                preconditions_uid: Some(uid.clone()),
                ..DeleteParams::default()
            };
            match self.client.delete::<ReplicaSet>(ns, rs, &params).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(api_err("deleting old replicaset", ns, rs)(e)),
            }
        }
        let mut cur = (*d).clone();
        if let Some(a) = p.annotations {
            cur.metadata.annotations = a;
            cur = self.client.update(&cur).await.map_err(api_err(
                "updating the revision of deployment",
                ns,
                name,
            ))?;
        }
        if let Some(s) = p.status {
            cur.status = Some(s);
            self.client.update_status(&cur).await.map_err(api_err(
                "updating the status of deployment",
                ns,
                name,
            ))?;
        }
        Ok(p.requeue_after
            .map(|s| Duration::from_secs(s.unsigned_abs())))
    }

    /// Kubernetes' ScalingReplicaSet event, when the size changed.
    fn scaled(&self, d: &Deployment, rs: &str, from: i32, to: i32) {
        if from == to {
            return;
        }
        let way = if to > from { "up" } else { "down" };
        let msg = format!("Scaled {way} replica set {rs} from {from} to {to}");
        let ev = events::event(d, COMPONENT, "Normal", "ScalingReplicaSet", msg);
        events::record(&self.client, ev);
    }

    /// The new ReplicaSet's name is taken. When it is ours with the same
    /// template the cache was only behind; otherwise it is a hash collision
    /// and `status.collisionCount` goes up, which changes the hash.
    async fn create_failed(
        &self,
        d: &Deployment,
        rs: &ReplicaSet,
        e: corral_client::Error,
    ) -> Result<Option<Duration>, SyncError> {
        let (ns, name) = (&rs.metadata.namespace, &rs.metadata.name);
        if !e.is_already_exists() {
            return Err(api_err("creating replicaset", ns, name)(e));
        }
        let existing = self
            .client
            .get_opt::<ReplicaSet>(ns, name)
            .await
            .map_err(api_err("reading replicaset", ns, name))?;
        if let Some(x) = existing {
            if pods::controlled_by(&x.metadata, &d.metadata.uid)
                && util::equal_ignore_hash(&x.spec.template, &d.spec.template)
            {
                return Ok(Some(Duration::from_millis(100)));
            }
        }
        let mut cur = d.clone();
        let st = cur.status.get_or_insert_with(Default::default);
        st.collision_count = Some(st.collision_count.unwrap_or(0) + 1);
        self.client.update_status(&cur).await.map_err(api_err(
            "counting a hash collision of deployment",
            ns,
            &d.metadata.name,
        ))?;
        Ok(None)
    }
}
