//! The ReplicaSet controller: keeps `spec.replicas` pods of each
//! ReplicaSet's template, adopts matching orphans and releases pods that
//! stopped matching, replaces terminated pods and reports the status.
//!
//! Level-triggered: every sync reads the ReplicaSet and the pods of its
//! namespace from the informer caches and decides from them alone
//! ([`plan::plan`]); the run loop only applies that plan. In memory there is
//! only the work queue and the expectations (creates/deletes sent but not yet
//! seen in the cache), which a restart may lose: the first sync after it
//! works from a fresh list instead.

pub mod events;
pub mod plan;
pub mod pods;
pub mod queue;

use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_api::apps::ReplicaSet;
use corral_api::core::Pod;
use corral_api::{Resource, Time};
use corral_client::{Cache, Change, Client, DeleteParams, ListParams, Reflector};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinSet;

use super::ControllerConfig;
use queue::{Expectations, Key, Queue};

const COMPONENT: &str = "replicaset-controller";

/// Every ReplicaSet is synced at least this often, whatever the watch says.
const RESYNC: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{what} {ns}/{name}: {source}")]
    Api {
        what: &'static str,
        ns: String,
        name: String,
        #[source]
        source: corral_client::Error,
    },
}

impl SyncError {
    pub fn is_conflict(&self) -> bool {
        match self {
            SyncError::Api { source, .. } => source.is_conflict(),
        }
    }
}

pub(super) fn api_err(
    what: &'static str,
    ns: &str,
    name: &str,
) -> impl FnOnce(corral_client::Error) -> SyncError {
    let (ns, name) = (ns.to_string(), name.to_string());
    move |source| SyncError::Api {
        what,
        ns,
        name,
        source,
    }
}

/// Runs the controller forever.
pub async fn run(client: Client, _cfg: Arc<ControllerConfig>) {
    let rs_informer = Reflector::<ReplicaSet>::spawn(client.clone(), "", ListParams::default());
    let pod_informer = Reflector::<Pod>::spawn(client.clone(), "", ListParams::default());
    let mut rs_changes = rs_informer.subscribe();
    let mut pod_changes = pod_informer.subscribe();
    let mut c = Controller {
        client,
        rss: rs_informer.cache(),
        pods: pod_informer.cache(),
        queue: Queue::default(),
        expectations: Expectations::default(),
    };
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
            ch = rs_changes.recv() => c.on_rs(ch),
            ch = pod_changes.recv() => c.on_pod(ch),
            _ = resync.tick() => c.add_all(),
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        c.drain(&mut rs_changes, &mut pod_changes);
        while let Some(key) = c.queue.pop_due(Instant::now()) {
            c.sync_and_requeue(key).await;
        }
    }
}

struct Controller {
    client: Client,
    rss: Cache<ReplicaSet>,
    pods: Cache<Pod>,
    queue: Queue,
    expectations: Expectations,
}

fn key_of<T: Resource>(o: &T) -> Key {
    (o.meta().namespace.clone(), o.meta().name.clone())
}

impl Controller {
    fn add_all(&mut self) {
        for rs in self.rss.list() {
            self.queue.add(key_of(rs.as_ref()));
        }
    }

    fn on_rs(&mut self, ch: Result<Change<ReplicaSet>, RecvError>) {
        match ch {
            Ok(Change::Applied(rs) | Change::Deleted(rs)) => self.queue.add(key_of(rs.as_ref())),
            Ok(Change::Resynced) | Err(RecvError::Lagged(_)) => self.add_all(),
            Err(RecvError::Closed) => {}
        }
    }

    /// A pod change wakes its controlling ReplicaSet, or for an orphan every
    /// ReplicaSet of its namespace that selects it (which may adopt it).
    fn on_pod(&mut self, ch: Result<Change<Pod>, RecvError>) {
        let (pod, deleted) = match ch {
            Ok(Change::Applied(p)) => (p, false),
            Ok(Change::Deleted(p)) => (p, true),
            Ok(Change::Resynced) | Err(RecvError::Lagged(_)) => return self.add_all(),
            Err(RecvError::Closed) => return,
        };
        let ns = &pod.metadata.namespace;
        match pod.metadata.controller_ref() {
            Some(r) if r.kind == "ReplicaSet" => {
                let key = (ns.clone(), r.name.clone());
                let m = &pod.metadata;
                self.expectations.observe(&key, &m.name, &m.uid, deleted);
                self.queue.add(key);
            }
            Some(_) => {}
            None => {
                for rs in self.rss.list_ns(ns) {
                    let sel = rs.spec.selector.clone().unwrap_or_default();
                    if !sel.is_empty() && sel.matches(&pod.metadata.labels) {
                        self.queue.add(key_of(rs.as_ref()));
                    }
                }
            }
        }
    }

    fn drain(
        &mut self,
        rs_changes: &mut tokio::sync::broadcast::Receiver<Change<ReplicaSet>>,
        pod_changes: &mut tokio::sync::broadcast::Receiver<Change<Pod>>,
    ) {
        loop {
            match rs_changes.try_recv() {
                Ok(ch) => self.on_rs(Ok(ch)),
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => {
                    self.on_rs(Err(RecvError::Lagged(n)))
                }
                Err(_) => break,
            }
        }
        loop {
            match pod_changes.try_recv() {
                Ok(ch) => self.on_pod(Ok(ch)),
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => {
                    self.on_pod(Err(RecvError::Lagged(n)))
                }
                Err(_) => break,
            }
        }
    }

    async fn sync_and_requeue(&mut self, key: Key) {
        let outcome = self.sync(&key).await;
        self.queue.finish(key, outcome, "replicaset controller");
    }

    async fn sync(&mut self, key: &Key) -> Result<Option<Duration>, SyncError> {
        let (ns, name) = key;
        let Some(rs) = self.rss.get(ns, name) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let all = self.pods.list_ns(ns);
        let refs: Vec<&Pod> = all.iter().map(Arc::as_ref).collect();
        let pods = self.pods.clone();
        let manage = self
            .expectations
            .satisfied(key, |n| pods.get(ns, n).map(|p| p.metadata.uid.clone()));
        let p = plan::plan(&rs, &refs, Time::now(), manage);
        let mut first_err = None;
        for name in &p.adopt {
            if let Err(e) = self.set_owner(&rs, name, true).await {
                first_err.get_or_insert(e);
            }
        }
        for name in &p.release {
            if let Err(e) = self.set_owner(&rs, name, false).await {
                first_err.get_or_insert(e);
            }
        }
        if let Err(e) = self.create_pods(key, &rs, p.create).await {
            first_err.get_or_insert(e);
        }
        if let Err(e) = self.delete_pods(key, &rs, &p.delete).await {
            first_err.get_or_insert(e);
        }
        if rs.status.as_ref() != Some(&p.status) {
            let mut updated = (*rs).clone();
            updated.status = Some(p.status.clone());
            match self.client.update_status(&updated).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    first_err
                        .get_or_insert(api_err("updating the status of replicaset", ns, name)(e));
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(p
                .requeue_after
                .map(|s| Duration::from_secs(s.unsigned_abs()))),
        }
    }

    /// Adds (adopt) or removes (release) `rs` as the controller of a pod.
    async fn set_owner(&self, rs: &ReplicaSet, pod: &str, adopt: bool) -> Result<(), SyncError> {
        let ns = &rs.metadata.namespace;
        let Some(cached) = self.pods.get(ns, pod) else {
            return Ok(());
        };
        let mut p = (*cached).clone();
        let uid = &rs.metadata.uid;
        p.metadata.owner_references.retain(|r| r.uid != *uid);
        if adopt {
            p.metadata.owner_references.push(pods::controller_ref(
                "apps/v1",
                "ReplicaSet",
                &rs.metadata,
            ));
        }
        let what = if adopt {
            "adopting pod"
        } else {
            "releasing pod"
        };
        match self.client.update(&p).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(api_err(what, ns, pod)(e)),
        }
    }

    /// Creates `n` pods in batches of 1, 2, 4, ... (Kubernetes' slow start:
    /// a template the server refuses fails once, not `n` times).
    async fn create_pods(&mut self, key: &Key, rs: &ReplicaSet, n: usize) -> Result<(), SyncError> {
        let names: Vec<String> = (0..n).map(|_| pod_name(&rs.metadata.name)).collect();
        self.expectations.expect(key, &names, &[]);
        let mut batch = 1;
        let mut rest = names.as_slice();
        while !rest.is_empty() {
            let (now, later) = rest.split_at(batch.min(rest.len()));
            rest = later;
            let mut set = JoinSet::new();
            for name in now {
                let pod = pod_from_template(rs, name);
                let client = self.client.clone();
                set.spawn(async move { (pod.metadata.name.clone(), client.create(&pod).await) });
            }
            let mut failed = None;
            while let Some(joined) = set.join_next().await {
                let Ok((name, res)) = joined else { continue };
                match res {
                    Ok(_) => {
                        let msg = format!("Created pod: {name}");
                        let ev = events::event(rs, COMPONENT, "Normal", "SuccessfulCreate", msg);
                        events::record(&self.client, ev);
                    }
                    Err(e) => {
                        self.expectations.lower(key, Some(&name), None);
                        if !e.is_already_exists() {
                            let msg = format!("Error creating: {e}");
                            let ev = events::event(rs, COMPONENT, "Warning", "FailedCreate", msg);
                            events::record(&self.client, ev);
                        }
                        failed.get_or_insert(api_err("creating pod", &key.0, &name)(e));
                    }
                }
            }
            if let Some(e) = failed {
                for name in rest {
                    self.expectations.lower(key, Some(name), None);
                }
                return Err(e);
            }
            batch *= 2;
        }
        Ok(())
    }

    async fn delete_pods(
        &mut self,
        key: &Key,
        rs: &ReplicaSet,
        victims: &[(String, String)],
    ) -> Result<(), SyncError> {
        self.expectations.expect(key, &[], victims);
        let mut set = JoinSet::new();
        for (name, uid) in victims.iter().cloned() {
            let client = self.client.clone();
            let ns = key.0.clone();
            set.spawn(async move {
                let p = DeleteParams {
                    preconditions_uid: Some(uid.clone()),
                    ..DeleteParams::default()
                };
                let res = client.delete::<Pod>(&ns, &name, &p).await;
                ((name, uid), res)
            });
        }
        let mut failed = None;
        while let Some(joined) = set.join_next().await {
            let Ok((victim, res)) = joined else { continue };
            match res {
                Ok(()) => {
                    let msg = format!("Deleted pod: {}", victim.0);
                    let ev = events::event(rs, COMPONENT, "Normal", "SuccessfulDelete", msg);
                    events::record(&self.client, ev);
                }
                // Already gone: nothing to wait for. (A conflict, a new pod
                // under that name or a write racing the delete, is retried
                // from a fresh cache like any other failure.)
                Err(e) if e.is_not_found() => self.expectations.lower(key, None, Some(&victim)),
                Err(e) => {
                    self.expectations.lower(key, None, Some(&victim));
                    failed.get_or_insert(api_err("deleting pod", &key.0, &victim.0)(e));
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

/// `<replicaset>-<5 characters>` as generateName makes them (the prefix cut
/// to 58 characters), chosen here so expectations know the name up front.
pub fn pod_name(rs: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let base: String = rs.chars().take(57).collect();
    let mut b = [0u8; 5];
    // Without randomness names would repeat and creates fail with
    // AlreadyExists, which the next sync retries; never unsound.
    let _ = getrandom::getrandom(&mut b);
    let suffix: String = b
        .iter()
        .map(|x| ALPHABET[usize::from(*x) % ALPHABET.len()] as char)
        .collect();
    format!("{base}-{suffix}")
}

/// A pod of `rs`'s template (`GetPodFromTemplate`).
pub fn pod_from_template(rs: &ReplicaSet, name: &str) -> Pod {
    let t = &rs.spec.template;
    let mut pod = Pod::named(&rs.metadata.namespace, name);
    pod.metadata.generate_name =
        format!("{}-", rs.metadata.name.chars().take(57).collect::<String>());
    pod.metadata.labels = t.metadata.labels.clone();
    pod.metadata.annotations = t.metadata.annotations.clone();
    pod.metadata.finalizers = t.metadata.finalizers.clone();
    pod.metadata
        .owner_references
        .push(pods::controller_ref("apps/v1", "ReplicaSet", &rs.metadata));
    pod.spec = t.spec.clone();
    pod
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_from_the_template() {
        let mut rs = ReplicaSet {
            metadata: corral_api::ObjectMeta {
                uid: "u1".into(),
                ..corral_api::ObjectMeta::namespaced("prod", "web-abc")
            },
            ..ReplicaSet::default()
        };
        rs.spec
            .template
            .metadata
            .labels
            .insert("app".into(), "web".into());
        rs.spec.template.spec.node_name = String::new();
        let name = pod_name("web-abc");
        assert!(name.starts_with("web-abc-") && name.len() == "web-abc-".len() + 5);
        assert_ne!(name, pod_name("web-abc"));
        let p = pod_from_template(&rs, &name);
        assert_eq!(p.metadata.namespace, "prod");
        assert_eq!(p.metadata.labels["app"], "web");
        let r = p.metadata.controller_ref().unwrap();
        assert_eq!(
            (r.kind.as_str(), r.uid.as_str(), r.block_owner_deletion),
            ("ReplicaSet", "u1", Some(true))
        );
        assert_eq!((p.api_version.as_str(), p.kind.as_str()), ("v1", "Pod"));
        assert_eq!(pod_name(&"x".repeat(80)).len(), 57 + 6);
    }
}
