//! What one Deployment sync does, decided from the objects alone (the
//! Deployment, the ReplicaSets and pods of its namespace): which ReplicaSets
//! to adopt, release, create, scale and delete, the revision annotations,
//! and the status. Kubernetes' `syncDeployment`, step for step.

use std::collections::BTreeMap;

use corral_api::apps::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use corral_api::core::Pod;
use corral_api::meta::ObjectMeta;
use corral_api::Time;

use super::status::{self, Counts};
use super::util::{self, HASH_LABEL, REVISION};
use crate::controllers::replicaset::pods::{self, Claim};

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    /// The new ReplicaSet to create.
    pub create: Option<ReplicaSet>,
    /// ReplicaSets to write back (PUT) as given: adopted, released, scaled,
    /// re-annotated.
    pub update: Vec<ReplicaSet>,
    /// Old ReplicaSets beyond revisionHistoryLimit, as (name, uid).
    pub delete: Vec<(String, String)>,
    /// The Deployment's annotations when its revision changes.
    pub annotations: Option<BTreeMap<String, String>>,
    /// The status when it differs from the stored one.
    pub status: Option<DeploymentStatus>,
    /// Seconds until the sync should run again without any change seen
    /// (minReadySeconds, the progress deadline).
    pub requeue_after: Option<i64>,
}

/// Per ReplicaSet pod counts (its active pods).
#[derive(Debug, Default, Clone, Copy)]
struct PodCounts {
    active: i32,
    ready: i32,
    available: i32,
    /// Not terminated, being deleted or not: they still run.
    running: i32,
}

struct Work<'a> {
    d: &'a Deployment,
    now: Time,
    /// Claimed ReplicaSets, oldest first; changed in place.
    rss: Vec<ReplicaSet>,
    /// Their pod counts, same order.
    pods: Vec<PodCounts>,
    /// Index of the new ReplicaSet in `rss`.
    new: Option<usize>,
    /// Whether `rss[new]` is to be created.
    creating: bool,
    conditions: Vec<corral_api::apps::AppsCondition>,
    delete: Vec<(String, String)>,
    requeue_after: Option<i64>,
}

pub fn plan(d: &Deployment, ns_rss: &[&ReplicaSet], ns_pods: &[&Pod], now: Time) -> Plan {
    let selector = d.spec.selector.clone().unwrap_or_default();
    if selector.is_empty() {
        return Plan::default();
    }
    let mut released = Vec::new();
    let mut rss = Vec::new();
    for rs in ns_rss {
        let matches = selector.matches(&rs.metadata.labels);
        match pods::claim(&d.metadata, &rs.metadata, matches) {
            Claim::Owned => rss.push((*rs).clone()),
            Claim::Adopt => {
                let mut rs = (*rs).clone();
                rs.metadata.owner_references.push(owner_ref(d));
                rss.push(rs);
            }
            Claim::Release => {
                let mut rs = (*rs).clone();
                rs.metadata
                    .owner_references
                    .retain(|r| r.uid != d.metadata.uid);
                released.push(rs);
            }
            Claim::Ignore => {}
        }
    }
    rss.sort_by(|a, b| {
        (a.metadata.creation_timestamp, &a.metadata.name)
            .cmp(&(b.metadata.creation_timestamp, &b.metadata.name))
    });
    let originals: BTreeMap<String, ReplicaSet> = ns_rss
        .iter()
        .map(|r| (r.metadata.name.clone(), (*r).clone()))
        .collect();
    let mut w = Work::new(d, rss, ns_pods, now);
    let progress = w.sync();
    let mut out = w.finish(progress);
    let creating = w.new.filter(|_| w.creating);
    let kept = w
        .rss
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != creating)
        .map(|(_, rs)| rs);
    for rs in kept.chain(&released) {
        if originals.get(&rs.metadata.name) != Some(rs) {
            out.update.push(rs.clone());
        }
    }
    out
}

fn owner_ref(d: &Deployment) -> corral_api::OwnerReference {
    pods::controller_ref("apps/v1", "Deployment", &d.metadata)
}

fn pod_counts(rs: &ReplicaSet, ns_pods: &[&Pod], min_ready: i32, now: Time) -> PodCounts {
    let mut c = PodCounts::default();
    for p in ns_pods
        .iter()
        .filter(|p| pods::controlled_by(&p.metadata, &rs.metadata.uid))
    {
        if !pods::is_terminated(p) {
            c.running += 1;
        }
        if !pods::is_active(p) {
            continue;
        }
        c.active += 1;
        c.ready += i32::from(pods::is_ready(p));
        c.available += i32::from(pods::is_available(p, min_ready, now));
    }
    c
}

/// Seconds until some ready pod of these ReplicaSets becomes available.
fn next_available(rss: &[ReplicaSet], ns_pods: &[&Pod], min_ready: i32, now: Time) -> Option<i64> {
    ns_pods
        .iter()
        .filter(|p| pods::is_active(p))
        .filter(|p| {
            rss.iter()
                .any(|rs| pods::controlled_by(&p.metadata, &rs.metadata.uid))
        })
        .filter_map(|p| pods::available_in(p, min_ready, now))
        .filter(|s| *s > 0)
        .min()
}

/// Whether the sync took a rollout step (status then gets the Progressing
/// treatment) or only scaled / reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Rollout,
    Sync,
}

impl<'a> Work<'a> {
    fn new(d: &'a Deployment, rss: Vec<ReplicaSet>, ns_pods: &[&Pod], now: Time) -> Work<'a> {
        let min_ready = d.spec.min_ready_seconds;
        let pods = rss
            .iter()
            .map(|rs| pod_counts(rs, ns_pods, min_ready, now))
            .collect();
        let new = rss
            .iter()
            .position(|rs| util::equal_ignore_hash(&rs.spec.template, &d.spec.template));
        let mut conditions = d.status.clone().unwrap_or_default().conditions;
        status::paused_condition(d, &mut conditions, now);
        let requeue_after = next_available(&rss, ns_pods, min_ready, now);
        Work {
            d,
            now,
            rss,
            pods,
            new,
            creating: false,
            conditions,
            delete: Vec::new(),
            requeue_after,
        }
    }

    fn old(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.rss.len()).filter(move |i| Some(*i) != self.new)
    }

    fn replicas(&self, i: usize) -> i32 {
        self.rss[i].replicas()
    }

    /// Pods of `rs[i]` that count as available for the rollout arithmetic:
    /// never more than it is scaled to, since the surplus is about to go.
    fn available(&self, i: usize) -> i32 {
        if self.creating && Some(i) == self.new {
            return 0;
        }
        self.pods[i].available.min(self.replicas(i))
    }

    fn total_replicas(&self) -> i32 {
        (0..self.rss.len()).map(|i| self.replicas(i)).sum()
    }

    /// `scaleReplicaSet`: the size and the desired/max annotations that tell
    /// later syncs which deployment size it was scaled for.
    fn scale(&mut self, i: usize, to: i32) {
        let desired = self.d.replicas();
        let max = desired + util::max_surge(self.d);
        let rs = &mut self.rss[i];
        rs.spec.replicas = Some(to.max(0));
        let a = &mut rs.metadata.annotations;
        a.insert(util::DESIRED_REPLICAS.into(), desired.to_string());
        a.insert(util::MAX_REPLICAS.into(), max.to_string());
    }

    fn sync(&mut self) -> Step {
        if self.d.metadata.is_being_deleted() {
            return Step::Sync;
        }
        if self.d.spec.paused || self.is_scaling_event() {
            self.sync_revision(false);
            self.scale_deployment();
            if self.d.spec.paused {
                self.cleanup();
            }
            return Step::Sync;
        }
        if util::is_rolling(self.d) {
            self.rolling();
        } else {
            self.recreate();
        }
        Step::Rollout
    }

    /// `isScalingEvent`: an active ReplicaSet was sized for another
    /// deployment size than the current one.
    fn is_scaling_event(&self) -> bool {
        let want = self.d.replicas().to_string();
        self.rss.iter().any(|rs| {
            rs.replicas() > 0
                && rs
                    .metadata
                    .annotations
                    .get(util::DESIRED_REPLICAS)
                    .is_some_and(|v| *v != want)
        })
    }

    fn max_old_revision(&self) -> i64 {
        self.old()
            .map(|i| util::rs_revision(&self.rss[i]))
            .max()
            .unwrap_or(0)
    }

    /// `getNewReplicaSet`: the existing new ReplicaSet gets the next
    /// revision when it is an old one coming back (rollback), the
    /// Deployment's annotations, and its minReadySeconds; with `create`, a
    /// missing one is made.
    fn sync_revision(&mut self, create: bool) {
        let next = self.max_old_revision() + 1;
        match self.new {
            Some(i) => {
                let d = self.d;
                let rs = &mut self.rss[i];
                copy_annotations(d, &mut rs.metadata.annotations);
                if util::rs_revision(rs) < next {
                    rs.metadata
                        .annotations
                        .insert(REVISION.into(), next.to_string());
                }
                rs.spec.min_ready_seconds = d.spec.min_ready_seconds;
            }
            None if create => {
                let rs = new_replica_set(self.d, next);
                self.rss.push(rs);
                self.pods.push(PodCounts::default());
                self.new = Some(self.rss.len() - 1);
                self.creating = true;
                if status::has_deadline(self.d) {
                    let name = self.rss[self.rss.len() - 1].metadata.name.clone();
                    let c = status::condition(
                        status::PROGRESSING,
                        corral_api::core::ConditionStatus::True,
                        status::NEW_RS_CREATED,
                        format!("Created new replica set {name:?}"),
                        self.now,
                    );
                    status::set(&mut self.conditions, c);
                }
            }
            None => {}
        }
    }

    fn rolling(&mut self) {
        self.sync_revision(true);
        if let Some(i) = self.new.filter(|_| self.creating) {
            let n = self.new_rs_replicas(i);
            self.scale(i, n);
        }
        if self.reconcile_new() || self.reconcile_old() {
            return;
        }
        self.cleanup_if_complete();
    }

    /// `NewRSNewReplicas` for a rolling update: up to replicas + maxSurge
    /// pods in total, never more than replicas in the new set.
    fn new_rs_replicas(&self, i: usize) -> i32 {
        let want = self.d.replicas();
        let max_total = want + util::max_surge(self.d);
        let current = self.total_replicas();
        let cur = self.replicas(i);
        if current >= max_total {
            return cur;
        }
        cur + (max_total - current).min(want - cur).max(0)
    }

    /// Grows (or trims) the new ReplicaSet; true when it changed.
    fn reconcile_new(&mut self) -> bool {
        let Some(i) = self.new else { return false };
        if self.creating {
            return false;
        }
        let want = self.d.replicas();
        let cur = self.replicas(i);
        let to = if cur > want {
            want
        } else {
            self.new_rs_replicas(i)
        };
        if to == cur {
            return false;
        }
        self.scale(i, to);
        true
    }

    /// `reconcileOldReplicaSets`: shrinks old sets as far as the pods
    /// available allow, unhealthy ones first; true when one changed.
    fn reconcile_old(&mut self) -> bool {
        let old: Vec<usize> = self.old().collect();
        let old_total: i32 = old.iter().map(|i| self.replicas(*i)).sum();
        if old_total == 0 {
            return false;
        }
        let min_available = self.d.replicas() - util::max_unavailable(self.d);
        let new_unavailable = self.new.map_or(0, |i| self.replicas(i) - self.available(i));
        let max_scaled_down = self.total_replicas() - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return false;
        }
        let mut changed = self.cleanup_unhealthy(&old, max_scaled_down);
        changed |= self.scale_down_old(&old, min_available);
        changed
    }

    fn cleanup_unhealthy(&mut self, old: &[usize], max: i32) -> bool {
        let mut total = 0;
        let mut changed = false;
        for &i in old {
            if total >= max {
                break;
            }
            let (replicas, available) = (self.replicas(i), self.available(i));
            if replicas == 0 || available >= replicas {
                continue;
            }
            let n = (max - total).min(replicas - available);
            self.scale(i, replicas - n);
            total += n;
            changed = true;
        }
        changed
    }

    fn scale_down_old(&mut self, old: &[usize], min_available: i32) -> bool {
        let available: i32 = (0..self.rss.len()).map(|i| self.available(i)).sum();
        if available <= min_available {
            return false;
        }
        let budget = available - min_available;
        let mut total = 0;
        let mut changed = false;
        for &i in old {
            if total >= budget {
                break;
            }
            let replicas = self.replicas(i);
            if replicas == 0 {
                continue;
            }
            let n = replicas.min(budget - total);
            self.scale(i, replicas - n);
            total += n;
            changed = true;
        }
        changed
    }

    /// `rolloutRecreate`: every old set to 0, wait until none of their pods
    /// runs, then the new set at full size.
    fn recreate(&mut self) {
        self.sync_revision(false);
        let active_old: Vec<usize> = self.old().filter(|i| self.replicas(*i) > 0).collect();
        if !active_old.is_empty() {
            for i in active_old {
                self.scale(i, 0);
            }
            return;
        }
        if self.old().any(|i| self.pods[i].running > 0) {
            return;
        }
        if self.new.is_none() {
            self.sync_revision(true);
        }
        if let Some(i) = self.new {
            if self.replicas(i) != self.d.replicas() || self.creating {
                self.scale(i, self.d.replicas());
            }
        }
        self.cleanup_if_complete();
    }

    /// `scale`: a size change outside a rollout step (or while paused),
    /// spread over the active sets in proportion to their sizes.
    fn scale_deployment(&mut self) {
        let want = self.d.replicas();
        if let Some(i) = self.active_or_latest() {
            self.scale(i, want);
            return;
        }
        if self.new.is_some_and(|i| self.is_saturated(i)) {
            let old: Vec<usize> = self.old().filter(|i| self.replicas(*i) > 0).collect();
            for i in old {
                self.scale(i, 0);
            }
            return;
        }
        if util::is_rolling(self.d) {
            self.scale_proportionally();
        }
    }

    /// `FindActiveOrLatest`: the only set with replicas, or the newest when
    /// none has any; None when several have.
    fn active_or_latest(&self) -> Option<usize> {
        let active: Vec<usize> = (0..self.rss.len())
            .filter(|i| self.replicas(*i) > 0)
            .collect();
        match active.len() {
            0 => self.new.or_else(|| self.old().last()),
            1 => Some(active[0]),
            _ => None,
        }
    }

    fn is_saturated(&self, i: usize) -> bool {
        let want = self.d.replicas();
        let rs = &self.rss[i];
        rs.replicas() == want
            && rs.metadata.annotations.get(util::DESIRED_REPLICAS) == Some(&want.to_string())
            && self.pods[i].available >= want
    }

    fn scale_proportionally(&mut self) {
        let want = self.d.replicas();
        let allowed = if want > 0 {
            want + util::max_surge(self.d)
        } else {
            0
        };
        let mut active: Vec<usize> = (0..self.rss.len())
            .filter(|i| self.replicas(*i) > 0)
            .collect();
        let to_add = allowed - active.iter().map(|i| self.replicas(*i)).sum::<i32>();
        // Larger sets first; on a tie the newer when growing, the older
        // when shrinking, so the leftover lands where Kubernetes puts it.
        active.sort_by(|a, b| {
            self.replicas(*b).cmp(&self.replicas(*a)).then_with(|| {
                if to_add > 0 {
                    b.cmp(a)
                } else {
                    a.cmp(b)
                }
            })
        });
        let mut added = 0;
        let mut sizes: Vec<i32> = Vec::new();
        for &i in &active {
            let p = if to_add == 0 {
                0
            } else {
                self.proportion(i, to_add, added)
            };
            sizes.push(self.replicas(i) + p);
            added += p;
        }
        for (k, &i) in active.iter().enumerate() {
            let mut size = sizes[k];
            if k == 0 && to_add != 0 {
                size = (size + to_add - added).max(0);
            }
            // Also a set whose size stays: its annotations must say it was
            // sized for this deployment size, or every later sync would take
            // this for a scaling event again and never roll.
            self.scale(i, size);
        }
    }

    /// `GetProportion`: this set's share of `to_add`, from the size it was
    /// scaled for (its max-replicas annotation).
    fn proportion(&self, i: usize, to_add: i32, added: i32) -> i32 {
        let replicas = self.replicas(i);
        if replicas == 0 || to_add == added {
            return 0;
        }
        let want = self.d.replicas();
        let fraction = if want == 0 {
            -replicas
        } else {
            let target = want + util::max_surge(self.d);
            let annotated = self.rss[i]
                .metadata
                .annotations
                .get(util::MAX_REPLICAS)
                .and_then(|v| v.parse::<i32>().ok())
                .unwrap_or_else(|| self.d.status.as_ref().map_or(0, |s| s.replicas));
            if annotated <= 0 {
                0
            } else {
                let size = f64::from(replicas) * f64::from(target) / f64::from(annotated);
                // Kubernetes' RoundToInt32 rounds half away from zero.
                size.round() as i32 - replicas
            }
        };
        let allowed = to_add - added;
        if to_add > 0 {
            fraction.min(allowed)
        } else {
            fraction.max(allowed)
        }
    }

    fn cleanup_if_complete(&mut self) {
        let s = status::calculate(self.d, self.counts(), self.conditions.clone(), self.now);
        if status::complete(self.d, &s) {
            self.cleanup();
        }
    }

    /// `cleanupDeployment`: old sets beyond revisionHistoryLimit, oldest
    /// revision first, once they are scaled to 0 and have no pods left.
    fn cleanup(&mut self) {
        let Some(limit) = self.d.spec.revision_history_limit else {
            return;
        };
        let mut alive: Vec<usize> = self
            .old()
            .filter(|i| !self.rss[*i].metadata.is_being_deleted())
            .collect();
        let excess = alive.len() as i64 - i64::from(limit.max(0));
        if excess <= 0 {
            return;
        }
        alive.sort_by_key(|i| (util::rs_revision(&self.rss[*i]), *i));
        for &i in alive.iter().take(usize::try_from(excess).unwrap_or(0)) {
            let rs = &self.rss[i];
            let st = rs.status.clone().unwrap_or_default();
            if st.replicas != 0
                || rs.replicas() != 0
                || self.pods[i].running != 0
                || rs.metadata.generation > st.observed_generation
            {
                continue;
            }
            self.delete
                .push((rs.metadata.name.clone(), rs.metadata.uid.clone()));
        }
    }

    fn counts(&self) -> Counts {
        let deleted = |i: usize| {
            self.delete
                .iter()
                .any(|(n, _)| *n == self.rss[i].metadata.name)
        };
        let mut c = Counts::default();
        for i in (0..self.rss.len()).filter(|i| !deleted(*i)) {
            let p = self.pods[i];
            c.replicas += p.active;
            c.ready += p.ready;
            c.available += p.available;
            c.desired_total += self.replicas(i);
            if Some(i) == self.new {
                c.updated = p.active;
            }
        }
        c
    }

    fn finish(&self, step: Step) -> Plan {
        let base = status::calculate(self.d, self.counts(), self.conditions.clone(), self.now);
        let new_name = self.new.map(|i| self.rss[i].metadata.name.as_str());
        let (st, deadline) = match step {
            Step::Rollout => status::rollout(self.d, base, new_name, self.now),
            Step::Sync => (base, None),
        };
        let mut annotations = None;
        if let Some(i) = self.new {
            let rev = util::rs_revision(&self.rss[i]);
            if rev > 0 && util::revision(&self.d.metadata.annotations) != rev {
                let mut a = self.d.metadata.annotations.clone();
                a.insert(REVISION.into(), rev.to_string());
                annotations = Some(a);
            }
        }
        let requeue_after = match (self.requeue_after, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Plan {
            create: self
                .new
                .filter(|_| self.creating)
                .map(|i| self.rss[i].clone()),
            update: Vec::new(),
            delete: self.delete.clone(),
            annotations,
            status: (self.d.status.as_ref() != Some(&st)).then_some(st),
            requeue_after,
        }
    }
}

/// The Deployment's own annotations that its new ReplicaSet carries too.
fn copy_annotations(d: &Deployment, to: &mut BTreeMap<String, String>) {
    for (k, v) in &d.metadata.annotations {
        if !util::skip_copy(k) {
            to.insert(k.clone(), v.clone());
        }
    }
}

/// The ReplicaSet for `d`'s current template: `<name>-<hash>`, the hash as
/// a label on it, its selector and its template, controlled by `d`.
pub fn new_replica_set(d: &Deployment, revision: i64) -> ReplicaSet {
    let collision = d.status.as_ref().and_then(|s| s.collision_count);
    let hash = util::template_hash(&d.spec.template, collision);
    let mut template = d.spec.template.clone();
    template
        .metadata
        .labels
        .insert(HASH_LABEL.into(), hash.clone());
    let mut selector = d.spec.selector.clone().unwrap_or_default();
    selector
        .match_labels
        .insert(HASH_LABEL.into(), hash.clone());
    let mut annotations = BTreeMap::new();
    copy_annotations(d, &mut annotations);
    annotations.insert(REVISION.into(), revision.to_string());
    let metadata = ObjectMeta {
        name: format!("{}-{hash}", d.metadata.name),
        namespace: d.metadata.namespace.clone(),
        labels: template.metadata.labels.clone(),
        annotations,
        owner_references: vec![owner_ref(d)],
        ..ObjectMeta::default()
    };
    ReplicaSet {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        metadata,
        spec: ReplicaSetSpec {
            replicas: Some(0),
            min_ready_seconds: d.spec.min_ready_seconds,
            selector: Some(selector),
            template,
        },
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::replicaset::plan as rs_plan;
    use crate::controllers::replicaset::{pod_from_template, pods as podutil};
    use corral_api::apps::{DeploymentStrategy, DeploymentStrategyType, RollingUpdateDeployment};
    use corral_api::core::{ConditionStatus, Container, PodCondition, PodPhase, PodStatus};
    use corral_api::meta::LabelSelector;
    use corral_api::IntOrString;

    fn deploy(replicas: i32, surge: i32, unavailable: i32) -> Deployment {
        let mut d = Deployment {
            metadata: ObjectMeta {
                uid: "d1".into(),
                generation: 1,
                ..ObjectMeta::namespaced("default", "web")
            },
            ..Deployment::default()
        };
        d.spec.replicas = Some(replicas);
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        d.spec.selector = Some(LabelSelector::from_labels(&labels));
        d.spec.template.metadata.labels = labels;
        d.spec.template.spec.containers = vec![Container {
            name: "web".into(),
            image: "v1".into(),
            ..Container::default()
        }];
        d.spec.strategy = Some(DeploymentStrategy {
            type_: Some(DeploymentStrategyType::RollingUpdate),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(IntOrString::Int(surge)),
                max_unavailable: Some(IntOrString::Int(unavailable)),
            }),
        });
        d.spec.revision_history_limit = Some(10);
        d.spec.progress_deadline_seconds = Some(600);
        d
    }

    fn set_image(d: &mut Deployment, image: &str) {
        d.spec.template.spec.containers[0].image = image.into();
        d.metadata.generation += 1;
    }

    /// The API server and both controllers in memory: the deployment plan,
    /// then the ReplicaSet plan, applied to plain vectors.
    struct Sim {
        d: Deployment,
        rss: Vec<ReplicaSet>,
        pods: Vec<Pod>,
        clock: i64,
        serial: u32,
    }

    impl Sim {
        fn new(d: Deployment) -> Sim {
            Sim {
                d,
                rss: vec![],
                pods: vec![],
                clock: 1000,
                serial: 0,
            }
        }

        fn now(&self) -> Time {
            Time::from_unix(self.clock)
        }

        fn uid(&mut self) -> String {
            self.serial += 1;
            format!("u{}", self.serial)
        }

        fn deployment_step(&mut self) -> Plan {
            self.clock += 1;
            let rss: Vec<ReplicaSet> = self.rss.clone();
            let pods: Vec<Pod> = self.pods.clone();
            let p = plan(
                &self.d,
                &rss.iter().collect::<Vec<_>>(),
                &pods.iter().collect::<Vec<_>>(),
                self.now(),
            );
            for rs in &p.update {
                let slot = self
                    .rss
                    .iter_mut()
                    .find(|r| r.metadata.name == rs.metadata.name)
                    .expect("updates name an existing replicaset");
                let spec_changed = slot.spec != rs.spec;
                *slot = rs.clone();
                if spec_changed {
                    slot.metadata.generation += 1;
                }
            }
            if let Some(rs) = &p.create {
                assert!(self.rss.iter().all(|r| r.metadata.name != rs.metadata.name));
                let mut rs = rs.clone();
                rs.metadata.uid = self.uid();
                rs.metadata.generation = 1;
                rs.metadata.creation_timestamp = Some(self.now());
                self.rss.push(rs);
            }
            self.rss
                .retain(|r| !p.delete.iter().any(|(n, _)| *n == r.metadata.name));
            if let Some(a) = &p.annotations {
                self.d.metadata.annotations = a.clone();
            }
            if let Some(s) = &p.status {
                self.d.status = Some(s.clone());
            }
            p
        }

        fn replicaset_step(&mut self) {
            self.clock += 1;
            for i in 0..self.rss.len() {
                let pods = self.pods.clone();
                let refs: Vec<&Pod> = pods.iter().collect();
                let p = rs_plan::plan(&self.rss[i], &refs, self.now(), true);
                self.pods
                    .retain(|x| !p.delete.iter().any(|(n, _)| *n == x.metadata.name));
                for _ in 0..p.create {
                    let uid = self.uid();
                    let mut pod = pod_from_template(&self.rss[i], &format!("p-{uid}"));
                    pod.metadata.uid = uid;
                    pod.metadata.creation_timestamp = Some(self.now());
                    pod.status = Some(PodStatus {
                        phase: Some(PodPhase::Pending),
                        ..PodStatus::default()
                    });
                    self.pods.push(pod);
                }
                let pods = self.pods.clone();
                let refs: Vec<&Pod> = pods.iter().collect();
                self.rss[i].status =
                    Some(rs_plan::plan(&self.rss[i], &refs, self.now(), false).status);
            }
        }

        /// Up to `n` pending pods become Running and Ready.
        fn make_ready(&mut self, n: usize) {
            let now = self.now();
            for p in self
                .pods
                .iter_mut()
                .filter(|p| !podutil::is_ready(p))
                .take(n)
            {
                p.status = Some(PodStatus {
                    phase: Some(PodPhase::Running),
                    conditions: vec![PodCondition {
                        type_: "Ready".into(),
                        status: ConditionStatus::True,
                        observed_generation: None,
                        last_probe_time: None,
                        last_transition_time: Some(now),
                        reason: String::new(),
                        message: String::new(),
                    }],
                    ..PodStatus::default()
                });
            }
        }

        fn available(&self) -> usize {
            self.pods.iter().filter(|p| podutil::is_ready(p)).count()
        }

        fn images(&self) -> Vec<String> {
            let mut v: Vec<String> = self
                .pods
                .iter()
                .map(|p| p.spec.containers[0].image.clone())
                .collect();
            v.sort();
            v
        }

        fn rs_named(&self, image: &str) -> &ReplicaSet {
            self.rss
                .iter()
                .find(|r| r.spec.template.spec.containers[0].image == image)
                .expect("a replicaset for the image")
        }

        /// Runs both controllers, `ready_per_round` pods becoming ready each
        /// round, until nothing changes; checks `min_available` throughout.
        fn converge(&mut self, ready_per_round: usize, min_available: usize) {
            for _ in 0..200 {
                let before = (self.rss.clone(), self.pods.clone(), self.d.clone());
                self.deployment_step();
                self.replicaset_step();
                assert!(
                    self.available() >= min_available,
                    "only {} available, want at least {min_available}: {:?}",
                    self.available(),
                    self.images()
                );
                self.make_ready(ready_per_round);
                if (self.rss.clone(), self.pods.clone(), self.d.clone()) == before {
                    return;
                }
            }
            panic!("did not converge");
        }

        fn status(&self) -> DeploymentStatus {
            self.d.status.clone().unwrap_or_default()
        }

        fn progressing_reason(&self) -> String {
            status::get(&self.status().conditions, status::PROGRESSING)
                .map(|c| c.reason.clone())
                .unwrap_or_default()
        }
    }

    fn rolled_out(sim: &Sim) -> bool {
        crate::controllers::deployment::status::complete(&sim.d, &sim.status())
    }

    #[test]
    fn first_rollout_creates_one_replicaset_and_completes() {
        let mut sim = Sim::new(deploy(3, 1, 0));
        let p = sim.deployment_step();
        let rs = p.create.expect("a new replicaset");
        let hash = rs.metadata.labels[HASH_LABEL].clone();
        assert_eq!(rs.metadata.name, format!("web-{hash}"));
        assert_eq!(
            rs.spec.selector.as_ref().unwrap().match_labels[HASH_LABEL],
            hash
        );
        assert_eq!(rs.spec.template.metadata.labels[HASH_LABEL], hash);
        assert_eq!(rs.replicas(), 3);
        assert_eq!(rs.metadata.annotations[REVISION], "1");
        assert_eq!(rs.metadata.controller_ref().unwrap().uid, "d1");
        assert_eq!(sim.d.metadata.annotations[REVISION], "1");
        assert_eq!(sim.progressing_reason(), status::NEW_RS_CREATED);
        sim.converge(3, 0);
        assert_eq!(sim.rss.len(), 1);
        assert_eq!(sim.pods.len(), 3);
        assert!(rolled_out(&sim));
        assert_eq!(sim.progressing_reason(), status::NEW_RS_AVAILABLE);
        assert_eq!(sim.d.metadata.annotations[REVISION], "1");
        let s = sim.status();
        assert_eq!(
            (
                s.replicas,
                s.updated_replicas,
                s.ready_replicas,
                s.available_replicas
            ),
            (3, 3, 3, 3)
        );
        assert_eq!(s.observed_generation, 1);
    }

    #[test]
    fn rolling_update_respects_max_unavailable_and_surge() {
        for (replicas, surge, unavailable) in [(4, 1, 1), (3, 1, 0), (5, 0, 2), (10, 3, 2)] {
            let mut sim = Sim::new(deploy(replicas, surge, unavailable));
            sim.converge(100, 0);
            set_image(&mut sim.d, "v2");
            let mut max_pods = 0;
            for _ in 0..200 {
                sim.deployment_step();
                sim.replicaset_step();
                max_pods = max_pods.max(sim.pods.len());
                let min = usize::try_from(replicas - unavailable).unwrap();
                assert!(
                    sim.available() >= min,
                    "{replicas}/{surge}/{unavailable}: {} available",
                    sim.available()
                );
                sim.make_ready(1);
                if rolled_out(&sim) && sim.pods.len() == usize::try_from(replicas).unwrap() {
                    break;
                }
            }
            assert!(
                rolled_out(&sim),
                "{replicas}/{surge}/{unavailable} did not finish"
            );
            assert!(
                max_pods <= usize::try_from(replicas + surge).unwrap(),
                "surge exceeded: {max_pods}"
            );
            assert_eq!(
                sim.images(),
                vec!["v2".to_string(); usize::try_from(replicas).unwrap()]
            );
            assert_eq!(sim.rs_named("v1").replicas(), 0);
            assert_eq!(sim.rs_named("v2").metadata.annotations[REVISION], "2");
            assert_eq!(sim.d.metadata.annotations[REVISION], "2");
        }
    }

    #[test]
    fn rollback_reuses_the_old_replicaset_with_a_new_revision() {
        let mut sim = Sim::new(deploy(2, 1, 0));
        sim.converge(100, 0);
        let v1 = sim.rs_named("v1").metadata.name.clone();
        set_image(&mut sim.d, "v2");
        sim.converge(100, 0);
        // What `rollout undo` does: the old template back, without the hash.
        let mut template = sim.rs_named("v1").spec.template.clone();
        template.metadata.labels.remove(HASH_LABEL);
        sim.d.spec.template = template;
        sim.d.metadata.generation += 1;
        let p = sim.deployment_step();
        assert!(p.create.is_none(), "no new replicaset for an old template");
        sim.converge(100, 0);
        assert_eq!(sim.rss.len(), 2);
        let back = sim.rs_named("v1");
        assert_eq!(back.metadata.name, v1);
        assert_eq!(back.metadata.annotations[REVISION], "3");
        assert_eq!(back.replicas(), 2);
        assert_eq!(sim.rs_named("v2").replicas(), 0);
        assert_eq!(sim.d.metadata.annotations[REVISION], "3");
        assert!(rolled_out(&sim));
    }

    #[test]
    fn paused_deployment_scales_but_does_not_roll() {
        let mut sim = Sim::new(deploy(2, 1, 0));
        sim.converge(100, 0);
        sim.d.spec.paused = true;
        set_image(&mut sim.d, "v2");
        sim.converge(100, 0);
        assert_eq!(sim.rss.len(), 1);
        assert_eq!(sim.images(), ["v1", "v1"]);
        assert_eq!(sim.progressing_reason(), status::PAUSED);
        sim.d.spec.replicas = Some(4);
        sim.d.metadata.generation += 1;
        sim.converge(100, 0);
        assert_eq!(sim.images(), ["v1", "v1", "v1", "v1"]);
        sim.d.spec.paused = false;
        sim.d.metadata.generation += 1;
        sim.converge(100, 0);
        assert_eq!(sim.images(), ["v2", "v2", "v2", "v2"]);
        assert_eq!(sim.progressing_reason(), status::NEW_RS_AVAILABLE);
    }

    #[test]
    fn scale_up_and_down_and_proportionally_mid_rollout() {
        let mut sim = Sim::new(deploy(3, 1, 0));
        sim.converge(100, 0);
        for n in [5, 1, 0, 3] {
            sim.d.spec.replicas = Some(n);
            sim.d.metadata.generation += 1;
            sim.converge(100, 0);
            assert_eq!(sim.pods.len(), usize::try_from(n).unwrap());
            assert!(rolled_out(&sim));
        }
        // Mid-rollout (new pods never get ready), scale 3 -> 9: both sets grow.
        let mut sim = Sim::new(deploy(3, 1, 0));
        sim.converge(100, 0);
        set_image(&mut sim.d, "v2");
        sim.converge(0, 3);
        let (old, new) = (sim.rs_named("v1").replicas(), sim.rs_named("v2").replicas());
        assert_eq!((old, new), (3, 1));
        sim.d.spec.replicas = Some(9);
        sim.d.metadata.generation += 1;
        sim.deployment_step();
        let (old, new) = (sim.rs_named("v1").replicas(), sim.rs_named("v2").replicas());
        // replicas + maxSurge, in proportion to the sizes 3:1 they had
        // for 3 + 1: 7.5 -> 8 and 2.5 -> 3 (capped by what is left).
        assert_eq!((old, new), (8, 2));
        // And the rollout goes on from there once pods get ready.
        sim.converge(100, 0);
        assert_eq!(sim.images(), vec!["v2".to_string(); 9]);
        // A scale that leaves one set's size alone still finishes.
        set_image(&mut sim.d, "v3");
        sim.converge(0, 8);
        sim.d.spec.replicas = Some(10);
        sim.d.metadata.generation += 1;
        sim.converge(100, 0);
        assert_eq!(sim.images(), vec!["v3".to_string(); 10]);
        assert!(rolled_out(&sim));
    }

    #[test]
    fn recreate_stops_old_pods_before_starting_new_ones() {
        let mut d = deploy(3, 1, 0);
        d.spec.strategy = Some(DeploymentStrategy {
            type_: Some(DeploymentStrategyType::Recreate),
            rolling_update: None,
        });
        let mut sim = Sim::new(d);
        sim.converge(100, 0);
        set_image(&mut sim.d, "v2");
        let p = sim.deployment_step();
        assert!(p.create.is_none());
        assert_eq!(sim.rs_named("v1").replicas(), 0);
        // Old pods still exist until the ReplicaSet controller runs.
        let p = sim.deployment_step();
        assert!(p.create.is_none(), "old pods still running");
        sim.replicaset_step();
        assert!(sim.pods.is_empty());
        let p = sim.deployment_step();
        assert_eq!(p.create.map(|r| r.replicas()), Some(3));
        sim.converge(100, 0);
        assert_eq!(sim.images(), ["v2", "v2", "v2"]);
    }

    #[test]
    fn history_beyond_the_limit_is_deleted() {
        let mut d = deploy(1, 1, 0);
        d.spec.revision_history_limit = Some(1);
        let mut sim = Sim::new(d);
        for image in ["v1", "v2", "v3", "v4"] {
            if image != "v1" {
                set_image(&mut sim.d, image);
            }
            sim.converge(100, 0);
        }
        let mut images: Vec<String> = sim
            .rss
            .iter()
            .map(|r| r.spec.template.spec.containers[0].image.clone())
            .collect();
        images.sort();
        assert_eq!(images, ["v3", "v4"]);
    }

    #[test]
    fn adopts_and_releases_replicasets() {
        let d = deploy(1, 1, 0);
        let mut orphan = new_replica_set(&d, 1);
        orphan.metadata.owner_references.clear();
        orphan.metadata.uid = "rs-orphan".into();
        let mut stray = new_replica_set(&d, 1);
        stray.metadata.name = "stray".into();
        stray.metadata.uid = "rs-stray".into();
        stray.metadata.labels.insert("app".into(), "other".into());
        let p = plan(&d, &[&orphan, &stray], &[], Time::from_unix(1));
        assert!(
            p.create.is_none(),
            "the adopted orphan is the new replicaset"
        );
        let adopted = p
            .update
            .iter()
            .find(|r| r.metadata.name == orphan.metadata.name)
            .unwrap();
        assert_eq!(adopted.metadata.controller_ref().unwrap().uid, "d1");
        let released = p
            .update
            .iter()
            .find(|r| r.metadata.name == "stray")
            .unwrap();
        assert!(released.metadata.owner_references.is_empty());
    }

    #[test]
    fn progress_deadline_exceeded() {
        let mut d = deploy(1, 1, 0);
        d.spec.progress_deadline_seconds = Some(10);
        let mut sim = Sim::new(d);
        sim.converge(0, 0);
        assert_eq!(sim.progressing_reason(), status::RS_UPDATED);
        sim.clock += 5;
        sim.deployment_step();
        assert_eq!(sim.progressing_reason(), status::RS_UPDATED);
        sim.clock += 20;
        sim.deployment_step();
        assert_eq!(sim.progressing_reason(), status::TIMED_OUT);
    }
}
