//! Garbage collection through ownerReferences, finishing what the DELETE
//! request (master/src/api/delete.rs) does in-request:
//! - a Pod, ReplicaSet or Endpoints whose owners are all gone (by uid: an
//!   owner of the same name made again is another object) is deleted; one
//!   with some owners gone loses the references to those;
//! - an owner left with the `foregroundDeletion` finalizer (the request
//!   failed half-way, the master was restarted, or a dependent was created
//!   meanwhile) gets its dependents deleted (foreground too), and loses the
//!   finalizer once no dependent with `blockOwnerDeletion` is left, which
//!   deletes it;
//! - an owner with the `orphan` finalizer has its dependents' references to
//!   it removed, then the finalizer.
//!
//! Absence is decided from the caches and confirmed by a live GET before
//! anything is deleted, so a dependent seen before its owner is not lost to
//! a cache lagging behind. Owners of kinds other than Deployment,
//! ReplicaSet, Pod, Service and Endpoints are never considered gone.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use corral_api::apps::{Deployment, ReplicaSet};
use corral_api::core::{Endpoints, Pod, Service};
use corral_api::resource::{self, Resource};
use corral_api::OwnerReference;
use corral_client::{Cache, Client, DeleteParams, Error, ListParams, Patch, Reflector};
use serde_json::{json, Value};

use super::ControllerConfig;

pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";

/// How often everything is looked at without any change reported.
const RESYNC: Duration = Duration::from_secs(20);

/// One cached object of any kind, as the collector sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    pub owners: Vec<OwnerReference>,
    pub deleting: bool,
    pub finalizers: Vec<String>,
}

fn view<T: Resource>(o: &T) -> View {
    let m = o.meta();
    View {
        kind: T::KIND,
        namespace: m.namespace.clone(),
        name: m.name.clone(),
        uid: m.uid.clone(),
        resource_version: m.resource_version.clone(),
        owners: m.owner_references.clone(),
        deleting: m.deletion_timestamp.is_some(),
        finalizers: m.finalizers.clone(),
    }
}

/// What is known of one owner reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    Present,
    Absent,
    /// A kind this master does not serve: never treated as gone.
    Unknown,
}

/// What to do with a dependent, from the states of its owner references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Every owner is gone.
    Delete,
    /// These owners (uids) are gone, others are not.
    DropRefs(Vec<String>),
}

pub fn verdict(
    owners: &[OwnerReference],
    state: impl Fn(&OwnerReference) -> OwnerState,
) -> Verdict {
    if owners.is_empty() {
        return Verdict::Keep;
    }
    let gone: Vec<String> = owners
        .iter()
        .filter(|r| state(r) == OwnerState::Absent)
        .map(|r| r.uid.clone())
        .collect();
    if gone.is_empty() {
        Verdict::Keep
    } else if gone.len() == owners.len() {
        Verdict::Delete
    } else {
        Verdict::DropRefs(gone)
    }
}

/// The next step for an owner being deleted in the foreground.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Foreground {
    /// Delete these dependents (indexes into the list given).
    DeleteDependents(Vec<usize>),
    /// Dependents that block the owner are still being deleted.
    Wait,
    RemoveFinalizer,
}

pub fn foreground_step(owner_uid: &str, objects: &[View]) -> Foreground {
    let deps: Vec<usize> = (0..objects.len())
        .filter(|&i| objects[i].owners.iter().any(|r| r.uid == owner_uid))
        .collect();
    let live: Vec<usize> = deps
        .iter()
        .copied()
        .filter(|&i| !objects[i].deleting)
        .collect();
    if !live.is_empty() {
        return Foreground::DeleteDependents(live);
    }
    let blocking = deps.iter().any(|&i| {
        objects[i]
            .owners
            .iter()
            .any(|r| r.uid == owner_uid && r.block_owner_deletion == Some(true))
    });
    if blocking {
        Foreground::Wait
    } else {
        Foreground::RemoveFinalizer
    }
}

struct Caches {
    pods: Reflector<Pod>,
    replica_sets: Reflector<ReplicaSet>,
    endpoints: Reflector<Endpoints>,
    deployments: Reflector<Deployment>,
    services: Reflector<Service>,
}

fn views<T: Resource>(c: &Cache<T>) -> Vec<View> {
    c.list().iter().map(|o| view(o.as_ref())).collect()
}

impl Caches {
    /// Every cached object; the first three kinds are the collected ones.
    fn all(&self) -> (Vec<View>, Vec<View>) {
        let mut dependents = views(&self.pods.cache());
        dependents.extend(views(&self.replica_sets.cache()));
        dependents.extend(views(&self.endpoints.cache()));
        let mut owners = dependents.clone();
        owners.extend(views(&self.deployments.cache()));
        owners.extend(views(&self.services.cache()));
        (dependents, owners)
    }

    async fn ready(&self) {
        self.pods.cache().ready().await;
        self.replica_sets.cache().ready().await;
        self.endpoints.cache().ready().await;
        self.deployments.cache().ready().await;
        self.services.cache().ready().await;
    }
}

pub async fn run(client: Client, _cfg: Arc<ControllerConfig>) {
    let spawn_all = || ListParams::default();
    let caches = Caches {
        pods: Reflector::spawn(client.clone(), "", spawn_all()),
        replica_sets: Reflector::spawn(client.clone(), "", spawn_all()),
        endpoints: Reflector::spawn(client.clone(), "", spawn_all()),
        deployments: Reflector::spawn(client.clone(), "", spawn_all()),
        services: Reflector::spawn(client.clone(), "", spawn_all()),
    };
    let mut rxs = (
        caches.pods.subscribe(),
        caches.replica_sets.subscribe(),
        caches.endpoints.subscribe(),
        caches.deployments.subscribe(),
        caches.services.subscribe(),
    );
    caches.ready().await;
    loop {
        let (dependents, owners) = caches.all();
        collect_orphans(&client, &dependents, &owners).await;
        finish_deletions(&client, &dependents, &owners).await;
        tokio::select! {
            _ = rxs.0.recv() => {}
            _ = rxs.1.recv() => {}
            _ = rxs.2.recv() => {}
            _ = rxs.3.recv() => {}
            _ = rxs.4.recv() => {}
            _ = tokio::time::sleep(RESYNC) => {}
        }
        // Deletions come in bursts (a whole ReplicaSet's pods): settle first.
        tokio::time::sleep(Duration::from_millis(50)).await;
        drain(&mut rxs.0);
        drain(&mut rxs.1);
        drain(&mut rxs.2);
        drain(&mut rxs.3);
        drain(&mut rxs.4);
    }
}

fn drain<T: Clone>(rx: &mut tokio::sync::broadcast::Receiver<T>) {
    use tokio::sync::broadcast::error::TryRecvError;
    while matches!(rx.try_recv(), Ok(_) | Err(TryRecvError::Lagged(_))) {}
}

fn cached_state(owners: &[View], dep: &View, r: &OwnerReference) -> OwnerState {
    let Some(info) = resource::by_kind(&r.api_version, &r.kind) else {
        return OwnerState::Unknown;
    };
    let ns = if info.namespaced {
        dep.namespace.as_str()
    } else {
        ""
    };
    if !is_cached_kind(info.kind) {
        return OwnerState::Unknown;
    }
    let found = owners
        .iter()
        .any(|o| o.kind == info.kind && o.namespace == ns && o.name == r.name && o.uid == r.uid);
    if found {
        OwnerState::Present
    } else {
        OwnerState::Absent
    }
}

fn is_cached_kind(kind: &str) -> bool {
    matches!(
        kind,
        "Pod" | "ReplicaSet" | "Endpoints" | "Deployment" | "Service"
    )
}

async fn collect_orphans(client: &Client, dependents: &[View], owners: &[View]) {
    for dep in dependents
        .iter()
        .filter(|d| !d.deleting && !d.owners.is_empty())
    {
        if verdict(&dep.owners, |r| cached_state(owners, dep, r)) == Verdict::Keep {
            continue;
        }
        let mut states = Vec::with_capacity(dep.owners.len());
        for r in &dep.owners {
            states.push((r.uid.clone(), live_state(client, dep, r).await));
        }
        let live = verdict(&dep.owners, |r| {
            states
                .iter()
                .find(|(uid, _)| *uid == r.uid)
                .map_or(OwnerState::Unknown, |(_, s)| *s)
        });
        match live {
            Verdict::Keep => {}
            Verdict::Delete => delete(client, dep, "Background", "its owners are gone").await,
            Verdict::DropRefs(uids) => {
                drop_refs(client, dep, &uids).await;
            }
        }
    }
}

/// Owners being deleted with the foreground or orphan finalizer.
async fn finish_deletions(client: &Client, dependents: &[View], owners: &[View]) {
    for owner in owners.iter().filter(|o| o.deleting) {
        if owner.finalizers.iter().any(|f| f == ORPHAN) {
            let mut pending = false;
            for dep in dependents
                .iter()
                .filter(|d| d.owners.iter().any(|r| r.uid == owner.uid))
            {
                pending |= !drop_refs(client, dep, std::slice::from_ref(&owner.uid)).await;
            }
            if !pending {
                remove_finalizer(client, owner, ORPHAN).await;
            }
            continue;
        }
        if !owner.finalizers.iter().any(|f| f == FOREGROUND) {
            continue;
        }
        match foreground_step(&owner.uid, dependents) {
            Foreground::DeleteDependents(idx) => {
                for i in idx {
                    delete(
                        client,
                        &dependents[i],
                        "Foreground",
                        "its owner is deleted in the foreground",
                    )
                    .await;
                }
            }
            Foreground::Wait => {}
            Foreground::RemoveFinalizer => remove_finalizer(client, owner, FOREGROUND).await,
        }
    }
}

/// The owner as the API server has it now.
async fn live_state(client: &Client, dep: &View, r: &OwnerReference) -> OwnerState {
    let Some(info) = resource::by_kind(&r.api_version, &r.kind) else {
        return OwnerState::Unknown;
    };
    let ns = if info.namespaced {
        dep.namespace.as_str()
    } else {
        ""
    };
    let uid = match info.kind {
        "Pod" => live_uid::<Pod>(client, ns, &r.name).await,
        "ReplicaSet" => live_uid::<ReplicaSet>(client, ns, &r.name).await,
        "Deployment" => live_uid::<Deployment>(client, ns, &r.name).await,
        "Service" => live_uid::<Service>(client, ns, &r.name).await,
        "Endpoints" => live_uid::<Endpoints>(client, ns, &r.name).await,
        _ => return OwnerState::Unknown,
    };
    match uid {
        Ok(Some(uid)) if uid == r.uid => OwnerState::Present,
        Ok(_) => OwnerState::Absent,
        Err(e) => {
            eprintln!(
                "corral-master: garbage-collector: looking up owner {} {ns}/{}: {e}",
                r.kind, r.name
            );
            OwnerState::Unknown
        }
    }
}

async fn live_uid<T: Resource>(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<Option<String>, Error> {
    Ok(client
        .get_opt::<T>(ns, name)
        .await?
        .map(|o| o.meta().uid.clone()))
}

async fn delete(client: &Client, v: &View, policy: &str, why: &str) {
    let p = DeleteParams {
        propagation_policy: Some(policy.into()),
        preconditions_uid: Some(v.uid.clone()),
        ..DeleteParams::default()
    };
    let (ns, name) = (v.namespace.as_str(), v.name.as_str());
    let r = match v.kind {
        "Pod" => client.delete::<Pod>(ns, name, &p).await,
        "ReplicaSet" => client.delete::<ReplicaSet>(ns, name, &p).await,
        "Endpoints" => client.delete::<Endpoints>(ns, name, &p).await,
        _ => Ok(()),
    };
    match r {
        Ok(()) => eprintln!(
            "corral-master: garbage-collector: deleted {} {ns}/{name} ({policy}): {why}",
            v.kind
        ),
        Err(e) if e.is_not_found() || e.is_conflict() => {}
        Err(e) => eprintln!(
            "corral-master: garbage-collector: deleting {} {ns}/{name}: {e}",
            v.kind
        ),
    }
}

async fn patch_meta(client: &Client, v: &View, meta: Value) -> Result<(), Error> {
    let patch = Patch::Merge(json!({ "metadata": meta }));
    let (ns, name) = (v.namespace.as_str(), v.name.as_str());
    match v.kind {
        "Pod" => client.patch::<Pod>(ns, name, &patch).await.map(|_| ()),
        "ReplicaSet" => client
            .patch::<ReplicaSet>(ns, name, &patch)
            .await
            .map(|_| ()),
        "Endpoints" => client
            .patch::<Endpoints>(ns, name, &patch)
            .await
            .map(|_| ()),
        "Deployment" => client
            .patch::<Deployment>(ns, name, &patch)
            .await
            .map(|_| ()),
        "Service" => client.patch::<Service>(ns, name, &patch).await.map(|_| ()),
        _ => Ok(()),
    }
}

/// Removes the references to `uids`; true when done (or nothing to do).
async fn drop_refs(client: &Client, v: &View, uids: &[String]) -> bool {
    let gone: BTreeSet<&str> = uids.iter().map(String::as_str).collect();
    let keep: Vec<&OwnerReference> = v
        .owners
        .iter()
        .filter(|r| !gone.contains(r.uid.as_str()))
        .collect();
    if keep.len() == v.owners.len() {
        return true;
    }
    let refs = if keep.is_empty() {
        Value::Null
    } else {
        json!(keep)
    };
    let meta = json!({"resourceVersion": v.resource_version, "ownerReferences": refs});
    report(
        patch_meta(client, v, meta).await,
        v,
        "removing owner references from",
    )
}

async fn remove_finalizer(client: &Client, v: &View, finalizer: &str) {
    let left: Vec<&String> = v.finalizers.iter().filter(|f| *f != finalizer).collect();
    let list = if left.is_empty() {
        Value::Null
    } else {
        json!(left)
    };
    let meta = json!({"resourceVersion": v.resource_version, "finalizers": list});
    if report(
        patch_meta(client, v, meta).await,
        v,
        "removing a finalizer from",
    ) {
        eprintln!(
            "corral-master: garbage-collector: {} {}/{}: {finalizer} done",
            v.kind, v.namespace, v.name
        );
    }
}

fn report(r: Result<(), Error>, v: &View, what: &str) -> bool {
    match r {
        Ok(()) => true,
        Err(e) if e.is_not_found() => true,
        Err(e) if e.is_conflict() => false,
        Err(e) => {
            eprintln!(
                "corral-master: garbage-collector: {what} {} {}/{}: {e}",
                v.kind, v.namespace, v.name
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: format!("rs-{uid}"),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(block),
        }
    }

    fn v(name: &str, owners: Vec<OwnerReference>, deleting: bool) -> View {
        View {
            kind: "Pod",
            namespace: "default".into(),
            name: name.into(),
            uid: format!("u-{name}"),
            resource_version: "1".into(),
            owners,
            deleting,
            finalizers: Vec::new(),
        }
    }

    #[test]
    fn verdicts() {
        let st = |gone: &'static [&'static str]| {
            move |r: &OwnerReference| {
                if r.uid == "x" {
                    OwnerState::Unknown
                } else if gone.contains(&r.uid.as_str()) {
                    OwnerState::Absent
                } else {
                    OwnerState::Present
                }
            }
        };
        assert_eq!(verdict(&[], st(&["a"])), Verdict::Keep);
        assert_eq!(verdict(&[r("a", true)], st(&["a"])), Verdict::Delete);
        assert_eq!(verdict(&[r("a", true)], st(&[])), Verdict::Keep);
        assert_eq!(
            verdict(&[r("a", true), r("b", true)], st(&["a"])),
            Verdict::DropRefs(vec!["a".into()])
        );
        assert_eq!(
            verdict(&[r("a", true), r("b", true)], st(&["a", "b"])),
            Verdict::Delete
        );
        // An owner of unknown kind keeps the dependent.
        assert_eq!(
            verdict(&[r("a", true), r("x", true)], st(&["a"])),
            Verdict::DropRefs(vec!["a".into()])
        );
        assert_eq!(verdict(&[r("x", true)], st(&[])), Verdict::Keep);
    }

    #[test]
    fn cached_absence_is_by_uid() {
        let owner = View {
            kind: "ReplicaSet",
            name: "rs-a".into(),
            ..v("ignored", vec![], false)
        };
        let mut same_name = owner.clone();
        same_name.uid = "other".into();
        let dep = v("p", vec![r("a", true)], false);
        let mut owner_a = owner.clone();
        owner_a.uid = "a".into();
        assert_eq!(
            cached_state(&[owner_a], &dep, &dep.owners[0]),
            OwnerState::Present
        );
        assert_eq!(
            cached_state(&[same_name], &dep, &dep.owners[0]),
            OwnerState::Absent
        );
        let mut foreign = dep.owners[0].clone();
        foreign.kind = "StatefulSet".into();
        assert_eq!(cached_state(&[], &dep, &foreign), OwnerState::Unknown);
    }

    #[test]
    fn foreground_steps() {
        let objs = vec![
            v("a", vec![r("o", true)], false),
            v("b", vec![r("o", true)], true),
            v("c", vec![r("other", true)], false),
        ];
        assert_eq!(
            foreground_step("o", &objs),
            Foreground::DeleteDependents(vec![0])
        );
        assert_eq!(foreground_step("o", &objs[1..]), Foreground::Wait);
        let not_blocking = vec![v("b", vec![r("o", false)], true)];
        assert_eq!(
            foreground_step("o", &not_blocking),
            Foreground::RemoveFinalizer
        );
        assert_eq!(
            foreground_step("o", &objs[2..]),
            Foreground::RemoveFinalizer
        );
    }
}
