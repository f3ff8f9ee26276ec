//! What one Deployment sync does, decided from the objects alone (the
//! Deployment, the ReplicaSets and pods of its namespace): which ReplicaSets
//! to adopt, release, create, scale and delete, the revision annotations,
//! and the status. Kubernetes' `syncDeployment`, step for step.

use std::collections::BTreeMap;

use corral_api::apps::{Deployment, DeploymentStatus, ReplicaSet};
use corral_api::core::Pod;
use corral_api::meta::LabelSelector;
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
        .filter(|p| rss.iter().any(|rs| pods::controlled_by(&p.metadata, &rs.metadata.uid)))
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
        let new_unavailable = self
            .new
            .map_or(0, |i| self.replicas(i) - self.available(i));
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
            if size != self.replicas(i) {
                self.scale(i, size);
            }
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
    let mut selector = d.spec.selector.clone().unwrap_or_else(LabelSelector::default);
    selector
        .match_labels
        .insert(HASH_LABEL.into(), hash.clone());
    let mut rs = ReplicaSet::default();
    rs.api_version = "apps/v1".into();
    rs.kind = "ReplicaSet".into();
    rs.metadata.name = format!("{}-{hash}", d.metadata.name);
    rs.metadata.namespace = d.metadata.namespace.clone();
    rs.metadata.labels = template.metadata.labels.clone();
    copy_annotations(d, &mut rs.metadata.annotations);
    rs.metadata
        .annotations
        .insert(REVISION.into(), revision.to_string());
    rs.metadata.owner_references.push(owner_ref(d));
    rs.spec.replicas = Some(0);
    rs.spec.min_ready_seconds = d.spec.min_ready_seconds;
    rs.spec.selector = Some(selector);
    rs.spec.template = template;
    rs
}
