//! The work queue both controllers run on, and the ReplicaSet controller's
//! expectations. Both are only about pacing: everything a sync decides is
//! read again from the caches, so a restart that loses them loses nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::SyncError;

/// An object by (namespace, name).
pub type Key = (String, String);

/// Keys due for a sync, each at most once, with delayed re-queues
/// (minReadySeconds, progress deadlines, back-off after a failed write).
#[derive(Debug, Default)]
pub struct Queue {
    due: BTreeMap<Key, Instant>,
    by_time: BTreeSet<(Instant, Key)>,
    failures: BTreeMap<Key, u32>,
}

impl Queue {
    pub fn add(&mut self, key: Key) {
        self.add_at(key, Instant::now());
    }

    pub fn add_after(&mut self, key: Key, after: Duration) {
        self.add_at(key, Instant::now() + after);
    }

    /// Keeps the earlier of the time already queued and `at`.
    fn add_at(&mut self, key: Key, at: Instant) {
        if let Some(&cur) = self.due.get(&key) {
            if cur <= at {
                return;
            }
            self.by_time.remove(&(cur, key.clone()));
        }
        self.due.insert(key.clone(), at);
        self.by_time.insert((at, key));
    }

    /// The next key whose time has come.
    pub fn pop_due(&mut self, now: Instant) -> Option<Key> {
        let first = self.by_time.iter().next()?.clone();
        if first.0 > now {
            return None;
        }
        self.by_time.remove(&first);
        self.due.remove(&first.1);
        Some(first.1)
    }

    /// When the earliest queued key is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.by_time.iter().next().map(|(t, _)| *t)
    }

    /// A failed sync comes back after 100 ms doubling up to 30 s.
    pub fn retry(&mut self, key: Key) {
        let n = self.failures.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        let exp = (*n - 1).min(9);
        let delay = Duration::from_millis(100 << exp).min(Duration::from_secs(30));
        self.add_after(key, delay);
    }

    /// After a sync of `key`: requeued when the sync asked to be called
    /// again, retried with back-off when it failed (a conflict, the normal
    /// outcome of acting on a cache a moment behind, without a log line).
    pub fn finish(&mut self, key: Key, outcome: Result<Option<Duration>, SyncError>, who: &str) {
        match outcome {
            Ok(after) => {
                self.forget_failures(&key);
                if let Some(s) = after {
                    self.add_after(key, s);
                }
            }
            Err(e) => {
                if !e.is_conflict() {
                    eprintln!("corral-master: {who}: {e}");
                }
                self.retry(key);
            }
        }
    }

    pub fn forget_failures(&mut self, key: &Key) {
        self.failures.remove(key);
    }
}

/// How long creates or deletes may stay unseen before the controller stops
/// waiting for them (a lost watch event must not stall it forever).
pub const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Pending {
    /// Pod names created but not yet in the cache.
    creates: BTreeSet<String>,
    /// (name, uid) of pods deleted but still in the cache.
    deletes: BTreeSet<(String, String)>,
    since: Instant,
}

/// Per ReplicaSet, the creates and deletes sent whose effect the pod cache
/// has not shown yet: while any is pending the controller does not count
/// pods again, so it never creates twice for one missing replica.
#[derive(Debug, Default)]
pub struct Expectations {
    pending: BTreeMap<Key, Pending>,
}

impl Expectations {
    pub fn expect(&mut self, key: &Key, creates: &[String], deletes: &[(String, String)]) {
        if creates.is_empty() && deletes.is_empty() {
            return;
        }
        let p = self.pending.entry(key.clone()).or_insert_with(|| Pending {
            creates: BTreeSet::new(),
            deletes: BTreeSet::new(),
            since: Instant::now(),
        });
        p.creates.extend(creates.iter().cloned());
        p.deletes.extend(deletes.iter().cloned());
        p.since = Instant::now();
    }

    /// A create or delete that failed will never show up.
    pub fn lower(&mut self, key: &Key, create: Option<&str>, delete: Option<&(String, String)>) {
        if let Some(p) = self.pending.get_mut(key) {
            if let Some(c) = create {
                p.creates.remove(c);
            }
            if let Some(d) = delete {
                p.deletes.remove(d);
            }
        }
    }

    /// A watch event for pod `name` of `key`: a created pod that shows up is
    /// observed even when it is deleted again before any sync reads the
    /// cache (which would then never show it); a deleted one is gone.
    pub fn observe(&mut self, key: &Key, name: &str, uid: &str, deleted: bool) {
        if let Some(p) = self.pending.get_mut(key) {
            p.creates.remove(name);
            if deleted {
                p.deletes.remove(&(name.to_string(), uid.to_string()));
            }
        }
    }

    /// True when nothing is pending for `key`. `present(name)` gives the uid
    /// of the pod of that name in the cache.
    pub fn satisfied(&mut self, key: &Key, present: impl Fn(&str) -> Option<String>) -> bool {
        let Some(p) = self.pending.get_mut(key) else {
            return true;
        };
        p.creates.retain(|name| present(name).is_none());
        p.deletes
            .retain(|(name, uid)| present(name).as_deref() == Some(uid.as_str()));
        if (p.creates.is_empty() && p.deletes.is_empty()) || p.since.elapsed() > EXPECTATION_TIMEOUT
        {
            self.pending.remove(key);
            return true;
        }
        false
    }

    pub fn forget(&mut self, key: &Key) {
        self.pending.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: &str) -> Key {
        ("default".into(), n.into())
    }

    #[test]
    fn queue_dedups_and_orders_by_time() {
        let mut q = Queue::default();
        let now = Instant::now();
        q.add_after(k("b"), Duration::from_secs(60));
        q.add(k("a"));
        q.add(k("a"));
        q.add(k("b"));
        let later = now + Duration::from_secs(1);
        let mut got = vec![];
        while let Some(key) = q.pop_due(later) {
            got.push(key.1);
        }
        assert_eq!(got, ["a", "b"], "b was moved up to now, each once");
        q.add_after(k("c"), Duration::from_secs(60));
        assert!(q.pop_due(later).is_none());
        assert!(q.next_due().is_some());
    }

    #[test]
    fn retries_back_off() {
        let mut q = Queue::default();
        q.retry(k("a"));
        let first = q.next_due().unwrap();
        q.pop_due(first);
        q.retry(k("a"));
        q.retry(k("a"));
        let third = q.next_due().unwrap();
        assert!(third > first);
        q.forget_failures(&k("a"));
        assert!(q.failures.is_empty());
    }

    #[test]
    fn expectations_wait_for_the_cache() {
        let mut e = Expectations::default();
        let key = k("rs");
        e.expect(
            &key,
            &["p1".into(), "p2".into()],
            &[("old".into(), "u-old".into())],
        );
        let cache: BTreeMap<&str, &str> = [("p1", "u1"), ("old", "u-old")].into();
        let present = |c: &BTreeMap<&str, &str>, n: &str| c.get(n).map(|u| u.to_string());
        assert!(!e.satisfied(&key, |n| present(&cache, n)));
        let cache: BTreeMap<&str, &str> = [("p1", "u1"), ("p2", "u2")].into();
        assert!(e.satisfied(&key, |n| present(&cache, n)));
        e.expect(&key, &["p3".into()], &[]);
        e.lower(&key, Some("p3"), None);
        assert!(e.satisfied(&key, |_| None));
        // Created and deleted again before a sync: the events say it happened.
        e.expect(&key, &["p4".into()], &[("p1".into(), "u1".into())]);
        e.observe(&key, "p4", "u4", false);
        e.observe(&key, "p4", "u4", true);
        assert!(!e.satisfied(&key, |n| (n == "p1").then(|| "u1".to_string())));
        e.observe(&key, "p1", "u1", true);
        assert!(e.satisfied(&key, |_| None));
    }
}
