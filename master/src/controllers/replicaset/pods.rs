//! Pod and owner-reference rules shared by the ReplicaSet and Deployment
//! controllers: which pods count, which are ready or available, which go
//! first on a scale-down, and who owns what.

use std::cmp::Ordering;

use corral_api::core::{ConditionStatus, Pod, PodCondition, PodPhase};
use corral_api::meta::{ObjectMeta, OwnerReference};
use corral_api::Time;

/// Succeeded or Failed: the pod will not run again.
pub fn is_terminated(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase),
        Some(PodPhase::Succeeded | PodPhase::Failed)
    )
}

/// Counts toward a replica count: not terminated and not being deleted.
pub fn is_active(pod: &Pod) -> bool {
    !is_terminated(pod) && !pod.metadata.is_being_deleted()
}

fn ready_condition(pod: &Pod) -> Option<&PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == ConditionStatus::True)
}

/// Ready for at least `min_ready` seconds at `now`.
pub fn is_available(pod: &Pod, min_ready: i32, now: Time) -> bool {
    available_in(pod, min_ready, now) == Some(0)
}

/// Seconds until a ready pod counts as available (0 = it does now); None
/// when it is not ready.
pub fn available_in(pod: &Pod, min_ready: i32, now: Time) -> Option<i64> {
    let c = ready_condition(pod).filter(|c| c.status == ConditionStatus::True)?;
    if min_ready <= 0 {
        return Some(0);
    }
    // A Ready condition without a transition time cannot be timed: count it
    // from now, so it becomes available only after a full minReadySeconds.
    let since = c.last_transition_time.unwrap_or(now).unix_seconds();
    Some((since + i64::from(min_ready) - now.unix_seconds()).max(0))
}

fn phase_rank(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase) {
        Some(PodPhase::Pending) | None => 0,
        Some(PodPhase::Unknown) => 1,
        Some(PodPhase::Running) => 2,
        Some(PodPhase::Succeeded | PodPhase::Failed) => 3,
    }
}

fn restarts(pod: &Pod) -> i32 {
    pod.status.as_ref().map_or(0, |s| {
        s.container_statuses
            .iter()
            .map(|c| c.restart_count)
            .max()
            .unwrap_or(0)
    })
}

fn ready_since(pod: &Pod) -> Option<Time> {
    ready_condition(pod)
        .filter(|c| c.status == ConditionStatus::True)
        .and_then(|c| c.last_transition_time)
}

/// Kubernetes' deletion order (`controller.ActivePods`): the pod to delete
/// first sorts first. Unscheduled before scheduled, Pending before Unknown
/// before Running, not ready before ready, ready more recently before ready
/// longer, more restarts before fewer, newer before older; the name breaks
/// ties so the order is stable across syncs.
pub fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    let scheduled = |p: &Pod| !p.spec.node_name.is_empty();
    scheduled(a)
        .cmp(&scheduled(b))
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        .then_with(|| ready_since(b).cmp(&ready_since(a)))
        .then_with(|| restarts(b).cmp(&restarts(a)))
        .then_with(|| {
            b.metadata
                .creation_timestamp
                .cmp(&a.metadata.creation_timestamp)
        })
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// What a controller does with one object found in its namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Already controlled by this owner and matching its selector.
    Owned,
    /// An orphan that matches: add this owner as its controller.
    Adopt,
    /// Controlled by this owner but no longer matching: remove the reference.
    Release,
    /// Someone else's, or an orphan that does not match.
    Ignore,
}

/// Kubernetes' `ClaimObject` rule. A controller that is being deleted
/// neither adopts nor releases; an object being deleted is not adopted.
pub fn claim(owner: &ObjectMeta, obj: &ObjectMeta, matches: bool) -> Claim {
    match obj.controller_ref() {
        Some(r) if r.uid != owner.uid => Claim::Ignore,
        Some(_) if matches => Claim::Owned,
        Some(_) if owner.is_being_deleted() => Claim::Ignore,
        Some(_) => Claim::Release,
        None if owner.is_being_deleted() || !matches || obj.is_being_deleted() => Claim::Ignore,
        None => Claim::Adopt,
    }
}

/// The controller reference an owner puts on what it manages.
pub fn controller_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: owner.name.clone(),
        uid: owner.uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether `obj` is controlled by the object with `uid`.
pub fn controlled_by(obj: &ObjectMeta, uid: &str) -> bool {
    obj.controller_ref().is_some_and(|r| r.uid == uid)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use corral_api::core::PodStatus;

    pub fn pod(name: &str, phase: PodPhase, ready: Option<i64>) -> Pod {
        let mut p = Pod {
            metadata: ObjectMeta {
                uid: format!("uid-{name}"),
                creation_timestamp: Some(Time::from_unix(1000)),
                ..ObjectMeta::namespaced("default", name)
            },
            ..Pod::default()
        };
        let conditions = ready
            .map(|t| {
                vec![PodCondition {
                    type_: "Ready".into(),
                    status: ConditionStatus::True,
                    observed_generation: None,
                    last_probe_time: None,
                    last_transition_time: Some(Time::from_unix(t)),
                    reason: String::new(),
                    message: String::new(),
                }]
            })
            .unwrap_or_default();
        p.status = Some(PodStatus {
            phase: Some(phase),
            conditions,
            ..PodStatus::default()
        });
        p
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let p = pod("a", PodPhase::Running, Some(100));
        assert!(is_available(&p, 0, Time::from_unix(100)));
        assert!(!is_available(&p, 10, Time::from_unix(105)));
        assert_eq!(available_in(&p, 10, Time::from_unix(105)), Some(5));
        assert!(is_available(&p, 10, Time::from_unix(110)));
        let pending = pod("b", PodPhase::Pending, None);
        assert!(!is_ready(&pending));
        assert_eq!(available_in(&pending, 0, Time::from_unix(1)), None);
    }

    #[test]
    fn active_excludes_terminated_and_deleting() {
        assert!(is_active(&pod("a", PodPhase::Running, None)));
        assert!(!is_active(&pod("a", PodPhase::Failed, None)));
        assert!(!is_active(&pod("a", PodPhase::Succeeded, None)));
        let mut d = pod("a", PodPhase::Running, None);
        d.metadata.deletion_timestamp = Some(Time::from_unix(5));
        assert!(!is_active(&d));
    }

    #[test]
    fn deletion_prefers_unscheduled_then_not_ready_then_newest() {
        let mut scheduled_ready = pod("a", PodPhase::Running, Some(10));
        scheduled_ready.spec.node_name = "n1".into();
        let mut scheduled_pending = pod("b", PodPhase::Pending, None);
        scheduled_pending.spec.node_name = "n1".into();
        let unscheduled = pod("c", PodPhase::Pending, None);
        let mut old_ready = pod("d", PodPhase::Running, Some(5));
        old_ready.spec.node_name = "n1".into();
        let mut newer = pod("e", PodPhase::Running, Some(10));
        newer.spec.node_name = "n1".into();
        newer.metadata.creation_timestamp = Some(Time::from_unix(2000));
        let mut pods = [
            old_ready.clone(),
            scheduled_ready,
            newer,
            unscheduled,
            scheduled_pending,
        ];
        pods.sort_by(deletion_order);
        let names: Vec<&str> = pods.iter().map(|p| p.metadata.name.as_str()).collect();
        // c unscheduled, b pending, then ready ones: most recently ready
        // first (a and e at 10: e is newer), d ready longest goes last.
        assert_eq!(names, ["c", "b", "e", "a", "d"]);
    }

    #[test]
    fn claims_follow_controller_refs() {
        let mut owner = ObjectMeta::namespaced("default", "rs");
        owner.uid = "o1".into();
        let mut obj = ObjectMeta::namespaced("default", "p");
        assert_eq!(claim(&owner, &obj, true), Claim::Adopt);
        assert_eq!(claim(&owner, &obj, false), Claim::Ignore);
        obj.owner_references
            .push(controller_ref("apps/v1", "ReplicaSet", &owner));
        assert_eq!(claim(&owner, &obj, true), Claim::Owned);
        assert_eq!(claim(&owner, &obj, false), Claim::Release);
        let mut other = owner.clone();
        other.uid = "o2".into();
        assert_eq!(claim(&other, &obj, true), Claim::Ignore);
        owner.deletion_timestamp = Some(Time::from_unix(1));
        assert_eq!(claim(&owner, &obj, false), Claim::Ignore);
        let orphan = ObjectMeta::namespaced("default", "q");
        assert_eq!(claim(&owner, &orphan, true), Claim::Ignore);
    }
}
