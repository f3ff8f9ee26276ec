//! What one ReplicaSet sync does, decided from the objects alone: which pods
//! to adopt, release, create and delete, and the status to report.

use std::collections::BTreeMap;

use corral_api::apps::{ReplicaSet, ReplicaSetStatus};
use corral_api::core::Pod;
use corral_api::Time;

use super::pods::{self, Claim};

/// Kubernetes' `burstReplicas`: at most this many pods created or deleted
/// in one sync, so a huge scale does not flood the API at once.
pub const BURST: usize = 500;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    /// Orphans to take (names).
    pub adopt: Vec<String>,
    /// Owned pods whose labels left the selector (names).
    pub release: Vec<String>,
    /// New pods to make from the template.
    pub create: usize,
    /// Pods to delete as (name, uid): surplus, then terminated ones.
    pub delete: Vec<(String, String)>,
    pub status: ReplicaSetStatus,
    /// Seconds until a ready pod becomes available (minReadySeconds), when
    /// the status should be computed again without any other change.
    pub requeue_after: Option<i64>,
}

/// `manage` is false while earlier creates or deletes have not reached the
/// cache yet: then only claims and status are decided, no count change.
pub fn plan(rs: &ReplicaSet, ns_pods: &[&Pod], now: Time, manage: bool) -> Plan {
    let mut out = Plan::default();
    let selector = rs.spec.selector.clone().unwrap_or_default();
    // An empty selector would select every pod in the namespace; validation
    // refuses it, and a controller must not act on one either.
    let usable = !selector.is_empty();
    let mut owned: Vec<&Pod> = Vec::new();
    for pod in ns_pods {
        let matches = usable && selector.matches(&pod.metadata.labels);
        let claim = if pods::is_terminated(pod) && pod.metadata.controller_ref().is_none() {
            Claim::Ignore
        } else {
            pods::claim(&rs.metadata, &pod.metadata, matches)
        };
        match claim {
            Claim::Owned => owned.push(pod),
            Claim::Adopt => {
                out.adopt.push(pod.metadata.name.clone());
                owned.push(pod);
            }
            Claim::Release => out.release.push(pod.metadata.name.clone()),
            Claim::Ignore => {}
        }
    }
    let mut active: Vec<&Pod> = owned
        .iter()
        .copied()
        .filter(|p| pods::is_active(p))
        .collect();
    if manage && usable && !rs.metadata.is_being_deleted() {
        decide_counts(rs, &mut active, &owned, &mut out);
    }
    out.status = status(rs, &active, now);
    out.requeue_after = active
        .iter()
        .filter_map(|p| pods::available_in(p, rs.spec.min_ready_seconds, now))
        .filter(|s| *s > 0)
        .min();
    out
}

fn decide_counts(rs: &ReplicaSet, active: &mut Vec<&Pod>, owned: &[&Pod], out: &mut Plan) {
    let want = usize::try_from(rs.replicas()).unwrap_or(0);
    if active.len() < want {
        out.create = (want - active.len()).min(BURST);
    } else if active.len() > want {
        let surplus = (active.len() - want).min(BURST);
        active.sort_by(|a, b| pods::deletion_order(a, b));
        out.delete.extend(
            active
                .drain(..surplus)
                .map(|p| (p.metadata.name.clone(), p.metadata.uid.clone())),
        );
    }
    // Terminated pods never run again: delete them so the names and the
    // listing do not fill up (there is no pod garbage collector).
    out.delete.extend(
        owned
            .iter()
            .filter(|p| pods::is_terminated(p) && !p.metadata.is_being_deleted())
            .map(|p| (p.metadata.name.clone(), p.metadata.uid.clone())),
    );
}

fn has_labels(pod: &Pod, want: &BTreeMap<String, String>) -> bool {
    want.iter()
        .all(|(k, v)| pod.metadata.labels.get(k) == Some(v))
}

/// The status of `rs` given its active pods (those being deleted excluded).
pub fn status(rs: &ReplicaSet, active: &[&Pod], now: Time) -> ReplicaSetStatus {
    let count = |f: &dyn Fn(&Pod) -> bool| {
        i32::try_from(active.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let labels = &rs.spec.template.metadata.labels;
    let min_ready = rs.spec.min_ready_seconds;
    let old = rs.status.clone().unwrap_or_default();
    ReplicaSetStatus {
        replicas: count(&|_| true),
        fully_labeled_replicas: count(&|p| has_labels(p, labels)),
        ready_replicas: count(&pods::is_ready),
        available_replicas: count(&|p| pods::is_available(p, min_ready, now)),
        terminating_replicas: old.terminating_replicas,
        observed_generation: rs.metadata.generation,
        conditions: old.conditions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::replicaset::pods::controller_ref;
    use crate::controllers::replicaset::pods::tests::pod;
    use corral_api::core::PodPhase;
    use corral_api::meta::{LabelSelector, ObjectMeta};

    fn rs(replicas: i32) -> ReplicaSet {
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                uid: "rs1".into(),
                generation: 3,
                ..ObjectMeta::namespaced("default", "web")
            },
            ..ReplicaSet::default()
        };
        rs.spec.replicas = Some(replicas);
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        rs.spec.selector = Some(LabelSelector::from_labels(&labels));
        rs.spec.template.metadata.labels = labels;
        rs
    }

    fn owned(rs: &ReplicaSet, name: &str, phase: PodPhase, ready: Option<i64>) -> Pod {
        let mut p = pod(name, phase, ready);
        p.metadata.labels.insert("app".into(), "web".into());
        p.metadata
            .owner_references
            .push(controller_ref("apps/v1", "ReplicaSet", &rs.metadata));
        p
    }

    fn names(v: &[(String, String)]) -> Vec<&str> {
        v.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn creates_the_missing_pods() {
        let rs = rs(3);
        let a = owned(&rs, "a", PodPhase::Running, Some(1));
        let p = plan(&rs, &[&a], Time::from_unix(10), true);
        assert_eq!(p.create, 2);
        assert!(p.delete.is_empty());
        assert_eq!(p.status.replicas, 1);
        assert_eq!(p.status.ready_replicas, 1);
        assert_eq!(p.status.available_replicas, 1);
        assert_eq!(p.status.observed_generation, 3);
        let waiting = plan(&rs, &[&a], Time::from_unix(10), false);
        assert_eq!(
            waiting.create, 0,
            "no creates while expectations are pending"
        );
        assert_eq!(waiting.status.replicas, 1);
    }

    #[test]
    fn deletes_surplus_not_ready_first() {
        let rs = rs(1);
        let mut ready = owned(&rs, "a", PodPhase::Running, Some(1));
        ready.spec.node_name = "n1".into();
        let mut pending = owned(&rs, "b", PodPhase::Pending, None);
        pending.spec.node_name = "n1".into();
        let unscheduled = owned(&rs, "c", PodPhase::Pending, None);
        let p = plan(
            &rs,
            &[&ready, &pending, &unscheduled],
            Time::from_unix(10),
            true,
        );
        assert_eq!(names(&p.delete), ["c", "b"]);
        assert_eq!(p.create, 0);
    }

    #[test]
    fn adopts_matching_orphans_and_releases_mismatches() {
        let rs = rs(2);
        let mut orphan = pod("o", PodPhase::Running, None);
        orphan.metadata.labels.insert("app".into(), "web".into());
        let mut moved = owned(&rs, "m", PodPhase::Running, None);
        moved.metadata.labels.insert("app".into(), "other".into());
        let mut foreign = pod("f", PodPhase::Running, None);
        foreign.metadata.labels.insert("app".into(), "web".into());
        foreign.metadata.owner_references.push(controller_ref(
            "apps/v1",
            "ReplicaSet",
            &ObjectMeta {
                uid: "someone-else".into(),
                ..ObjectMeta::namespaced("default", "x")
            },
        ));
        let p = plan(&rs, &[&orphan, &moved, &foreign], Time::from_unix(10), true);
        assert_eq!(p.adopt, ["o"]);
        assert_eq!(p.release, ["m"]);
        assert_eq!(
            p.create, 1,
            "the adopted orphan counts, the released pod does not"
        );
    }

    #[test]
    fn terminated_and_deleting_pods_are_replaced() {
        let rs = rs(2);
        let failed = owned(&rs, "a", PodPhase::Failed, None);
        let done = owned(&rs, "b", PodPhase::Succeeded, None);
        let mut going = owned(&rs, "c", PodPhase::Running, Some(1));
        going.metadata.deletion_timestamp = Some(Time::from_unix(5));
        let p = plan(&rs, &[&failed, &done, &going], Time::from_unix(10), true);
        assert_eq!(p.create, 2);
        assert_eq!(names(&p.delete), ["a", "b"]);
        assert_eq!(p.status.replicas, 0);
    }

    #[test]
    fn min_ready_seconds_delays_availability_and_requeues() {
        let mut rs = rs(1);
        rs.spec.min_ready_seconds = 30;
        let a = owned(&rs, "a", PodPhase::Running, Some(100));
        let p = plan(&rs, &[&a], Time::from_unix(110), true);
        assert_eq!(p.status.ready_replicas, 1);
        assert_eq!(p.status.available_replicas, 0);
        assert_eq!(p.requeue_after, Some(20));
        let later = plan(&rs, &[&a], Time::from_unix(130), true);
        assert_eq!(later.status.available_replicas, 1);
        assert_eq!(later.requeue_after, None);
    }

    #[test]
    fn fully_labeled_counts_template_labels() {
        let mut rs = rs(2);
        rs.spec
            .template
            .metadata
            .labels
            .insert("tier".into(), "front".into());
        let mut full = owned(&rs, "a", PodPhase::Running, None);
        full.metadata.labels.insert("tier".into(), "front".into());
        let partial = owned(&rs, "b", PodPhase::Running, None);
        let p = plan(&rs, &[&full, &partial], Time::from_unix(10), true);
        assert_eq!(p.status.replicas, 2);
        assert_eq!(p.status.fully_labeled_replicas, 1);
    }

    #[test]
    fn scale_to_zero_and_deleted_owner() {
        let mut rs = rs(0);
        let a = owned(&rs, "a", PodPhase::Running, None);
        assert_eq!(
            names(&plan(&rs, &[&a], Time::from_unix(1), true).delete),
            ["a"]
        );
        rs.metadata.deletion_timestamp = Some(Time::from_unix(1));
        let p = plan(&rs, &[&a], Time::from_unix(1), true);
        assert!(p.delete.is_empty() && p.create == 0);
    }
}
