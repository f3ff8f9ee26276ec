//! Deployment status and its `Available` / `Progressing` conditions, as
//! Kubernetes' deployment controller writes them and `kubectl rollout
//! status` reads them.

use corral_api::apps::{AppsCondition, Deployment, DeploymentStatus};
use corral_api::core::ConditionStatus;
use corral_api::Time;

use super::util;

pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";

/// Pod counts over a deployment's ReplicaSets.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Active pods of all its ReplicaSets.
    pub replicas: i32,
    /// Active pods of the new ReplicaSet.
    pub updated: i32,
    pub ready: i32,
    pub available: i32,
    /// Sum of the ReplicaSets' spec.replicas.
    pub desired_total: i32,
}

pub fn condition(
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: String,
    now: Time,
) -> AppsCondition {
    AppsCondition {
        type_: type_.to_string(),
        status,
        last_update_time: Some(now),
        last_transition_time: Some(now),
        reason: reason.to_string(),
        message,
    }
}

pub fn get<'a>(conds: &'a [AppsCondition], type_: &str) -> Option<&'a AppsCondition> {
    conds.iter().find(|c| c.type_ == type_)
}

/// `SetDeploymentCondition`: nothing when status and reason are unchanged;
/// the transition time kept when only the reason changes.
pub fn set(conds: &mut Vec<AppsCondition>, mut c: AppsCondition) {
    if let Some(cur) = get(conds, &c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time;
        }
    }
    conds.retain(|x| x.type_ != c.type_);
    conds.push(c);
}

pub fn has_deadline(d: &Deployment) -> bool {
    d.spec
        .progress_deadline_seconds
        .is_some_and(|s| s != i32::MAX)
}

/// `calculateStatus`: counts, observedGeneration and the Available condition;
/// other conditions carried over from `conds`.
pub fn calculate(
    d: &Deployment,
    counts: Counts,
    conds: Vec<AppsCondition>,
    now: Time,
) -> DeploymentStatus {
    let old = d.status.clone().unwrap_or_default();
    let mut s = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: counts.replicas,
        updated_replicas: counts.updated,
        ready_replicas: counts.ready,
        available_replicas: counts.available,
        unavailable_replicas: (counts.desired_total - counts.available).max(0),
        terminating_replicas: old.terminating_replicas,
        conditions: conds,
        collision_count: old.collision_count,
    };
    let c = if counts.available >= d.replicas() - util::max_unavailable(d) {
        condition(
            AVAILABLE,
            ConditionStatus::True,
            MIN_AVAILABLE,
            "Deployment has minimum availability.".into(),
            now,
        )
    } else {
        condition(
            AVAILABLE,
            ConditionStatus::False,
            MIN_UNAVAILABLE,
            "Deployment does not have minimum availability.".into(),
            now,
        )
    };
    set(&mut s.conditions, c);
    s
}

/// `checkPausedConditions`: Progressing Unknown while paused, and again
/// (resumed) when unpaused, so the deadline counts from the resume.
pub fn paused_condition(d: &Deployment, conds: &mut Vec<AppsCondition>, now: Time) {
    if !has_deadline(d) {
        return;
    }
    let cur = get(conds, PROGRESSING);
    if cur.is_some_and(|c| c.reason == TIMED_OUT) {
        return;
    }
    let paused_now = cur.is_some_and(|c| c.reason == PAUSED);
    if d.spec.paused && !paused_now {
        let c = condition(
            PROGRESSING,
            ConditionStatus::Unknown,
            PAUSED,
            "Deployment is paused".into(),
            now,
        );
        set(conds, c);
    } else if !d.spec.paused && paused_now {
        let c = condition(
            PROGRESSING,
            ConditionStatus::Unknown,
            RESUMED,
            "Deployment is resumed".into(),
            now,
        );
        set(conds, c);
    }
}

/// `DeploymentComplete`.
pub fn complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let want = d.replicas();
    s.updated_replicas == want
        && s.replicas == want
        && s.available_replicas == want
        && s.observed_generation >= d.metadata.generation
}

/// `DeploymentProgressing`: more new, fewer old, more ready or more
/// available pods than the stored status says.
fn progressing(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let old_old = old.replicas - old.updated_replicas;
    let new_old = new.replicas - new.updated_replicas;
    new.updated_replicas > old.updated_replicas
        || new_old < old_old
        || new.ready_replicas > old.ready_replicas
        || new.available_replicas > old.available_replicas
}

/// Seconds left before the progress deadline (<= 0: passed), None when no
/// deadline applies to the current condition.
fn deadline_left(d: &Deployment, s: &DeploymentStatus, now: Time) -> Option<i64> {
    let secs = d
        .spec
        .progress_deadline_seconds
        .filter(|_| has_deadline(d))?;
    let c = get(&s.conditions, PROGRESSING)?;
    if c.reason == NEW_RS_AVAILABLE || c.reason == TIMED_OUT {
        return None;
    }
    let from = c.last_update_time?.unix_seconds();
    Some(from + i64::from(secs) - now.unix_seconds())
}

/// `syncRolloutStatus`: the Progressing condition of a rollout step. Returns
/// the status and, when the deadline is still ahead, the seconds to wait
/// before looking again.
pub fn rollout(
    d: &Deployment,
    mut s: DeploymentStatus,
    new_rs: Option<&str>,
    now: Time,
) -> (DeploymentStatus, Option<i64>) {
    let old = d.status.clone().unwrap_or_default();
    if !has_deadline(d) {
        s.conditions.retain(|c| c.type_ != PROGRESSING);
        return (s, None);
    }
    let cur = get(&old.conditions, PROGRESSING).cloned();
    let is_complete = s.replicas == s.updated_replicas
        && cur.as_ref().is_some_and(|c| c.reason == NEW_RS_AVAILABLE);
    let what = |tail: &str| match new_rs {
        Some(rs) => format!("ReplicaSet {rs:?} {tail}"),
        None => format!("Deployment {:?} {tail}", d.metadata.name),
    };
    if !is_complete {
        if complete(d, &s) {
            let c = condition(
                PROGRESSING,
                ConditionStatus::True,
                NEW_RS_AVAILABLE,
                what("has successfully progressed."),
                now,
            );
            set(&mut s.conditions, c);
        } else if progressing(&old, &s) {
            let mut c = condition(
                PROGRESSING,
                ConditionStatus::True,
                RS_UPDATED,
                what("is progressing."),
                now,
            );
            // Progress moves lastUpdateTime even when the reason stays, so
            // the deadline counts from the last progress.
            if let Some(cur) = get(&s.conditions, PROGRESSING) {
                if cur.status == ConditionStatus::True {
                    c.last_transition_time = cur.last_transition_time;
                }
            }
            s.conditions.retain(|x| x.type_ != PROGRESSING);
            s.conditions.push(c);
        } else if deadline_left(d, &s, now).is_some_and(|left| left < 0) {
            let c = condition(
                PROGRESSING,
                ConditionStatus::False,
                TIMED_OUT,
                what("has timed out progressing."),
                now,
            );
            set(&mut s.conditions, c);
        }
    }
    let requeue = if complete(d, &s) {
        None
    } else {
        deadline_left(d, &s, now).map(|l| l.max(0) + 1)
    };
    (s, requeue)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(replicas: i32) -> Deployment {
        let mut d = Deployment::default();
        d.metadata.name = "web".into();
        d.metadata.generation = 2;
        d.spec.replicas = Some(replicas);
        d.spec.progress_deadline_seconds = Some(600);
        d
    }

    fn counts(replicas: i32, updated: i32, available: i32) -> Counts {
        Counts {
            replicas,
            updated,
            ready: available,
            available,
            desired_total: replicas,
        }
    }

    #[test]
    fn available_condition_follows_max_unavailable() {
        let d = deploy(4); // 25%: one may be unavailable
        let now = Time::from_unix(100);
        let s = calculate(&d, counts(4, 4, 3), vec![], now);
        assert_eq!(get(&s.conditions, AVAILABLE).unwrap().reason, MIN_AVAILABLE);
        assert_eq!(s.unavailable_replicas, 1);
        assert_eq!(s.observed_generation, 2);
        let s = calculate(&d, counts(4, 4, 2), vec![], now);
        assert_eq!(
            get(&s.conditions, AVAILABLE).unwrap().reason,
            MIN_UNAVAILABLE
        );
    }

    #[test]
    fn rollout_conditions_progress_complete_and_time_out() {
        let mut d = deploy(2);
        let t0 = Time::from_unix(1000);
        let s = calculate(&d, counts(2, 1, 1), vec![], t0);
        let (s, requeue) = rollout(&d, s, Some("web-abc"), t0);
        let c = get(&s.conditions, PROGRESSING).unwrap();
        assert_eq!(c.reason, RS_UPDATED);
        assert_eq!(c.message, "ReplicaSet \"web-abc\" is progressing.");
        assert_eq!(requeue, Some(601));
        d.status = Some(s);
        // No progress for longer than the deadline.
        let late = Time::from_unix(1700);
        let s = calculate(
            &d,
            counts(2, 1, 1),
            d.status.clone().unwrap().conditions,
            late,
        );
        let (s, requeue) = rollout(&d, s, Some("web-abc"), late);
        assert_eq!(get(&s.conditions, PROGRESSING).unwrap().reason, TIMED_OUT);
        assert_eq!(
            get(&s.conditions, PROGRESSING).unwrap().status,
            ConditionStatus::False
        );
        assert_eq!(requeue, None);
        d.status = Some(s);
        // Completion replaces even a timeout.
        let s = calculate(
            &d,
            counts(2, 2, 2),
            d.status.clone().unwrap().conditions,
            late,
        );
        let (s, _) = rollout(&d, s, Some("web-abc"), late);
        let c = get(&s.conditions, PROGRESSING).unwrap();
        assert_eq!(
            (c.reason.as_str(), c.status),
            (NEW_RS_AVAILABLE, ConditionStatus::True)
        );
    }

    #[test]
    fn paused_and_resumed() {
        let mut d = deploy(1);
        d.spec.paused = true;
        let mut conds = vec![];
        paused_condition(&d, &mut conds, Time::from_unix(5));
        assert_eq!(get(&conds, PROGRESSING).unwrap().reason, PAUSED);
        d.spec.paused = false;
        paused_condition(&d, &mut conds, Time::from_unix(6));
        let c = get(&conds, PROGRESSING).unwrap();
        assert_eq!(
            (c.reason.as_str(), c.last_transition_time),
            (RESUMED, Some(Time::from_unix(5)))
        );
    }

    #[test]
    fn set_keeps_transition_time_for_same_status() {
        let mut conds = vec![condition(
            AVAILABLE,
            ConditionStatus::True,
            "A",
            String::new(),
            Time::from_unix(1),
        )];
        set(
            &mut conds,
            condition(
                AVAILABLE,
                ConditionStatus::True,
                "B",
                String::new(),
                Time::from_unix(9),
            ),
        );
        assert_eq!(conds[0].last_transition_time, Some(Time::from_unix(1)));
        assert_eq!(conds[0].reason, "B");
        let before = conds.clone();
        set(
            &mut conds,
            condition(
                AVAILABLE,
                ConditionStatus::True,
                "B",
                String::new(),
                Time::from_unix(20),
            ),
        );
        assert_eq!(conds, before);
    }
}
