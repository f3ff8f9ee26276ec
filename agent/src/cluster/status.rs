//! Pod status to the master: when the agent's status of a pod differs from
//! what the server last got, the difference goes out as one JSON merge
//! patch of `pods/{name}/status` (RFC 7386, with nulls for fields that
//! went away). Pod workers write `<data>/status/<ns>_<name>.json` only when
//! the status changes, so an inotify watch on that directory is the signal;
//! nothing polls the pods in a tight loop.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use corral_api::core::Pod;
use corral_client::{Cache, Client, Patch};
use serde_json::{Map, Value};
use tokio::sync::Notify;

use crate::Agent;

/// The JSON merge patch that turns `old` into `new`; None when equal.
pub fn merge_diff(old: &Value, new: &Value) -> Option<Value> {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut patch = Map::new();
            for (k, nv) in n {
                match o.get(k) {
                    Some(ov) if ov == nv => {}
                    Some(ov) => {
                        if let Some(d) = merge_diff(ov, nv) {
                            patch.insert(k.clone(), d);
                        }
                    }
                    // A null in the patch would delete: send the value's own
                    // patch against nothing (objects without their nulls).
                    None => {
                        patch.insert(k.clone(), strip_nulls(nv));
                    }
                }
            }
            for k in o.keys().filter(|k| !n.contains_key(*k)) {
                patch.insert(k.clone(), Value::Null);
            }
            (!patch.is_empty()).then_some(Value::Object(patch))
        }
        // An object replacing a non-object must not be read as a patch of it.
        (_, Value::Object(_)) if old != new => Some(strip_nulls(new)),
        _ if old != new => Some(new.clone()),
        _ => None,
    }
}

fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Add to `new` the conditions of `server` whose type the agent does not
/// set (written by others, e.g. an eviction's DisruptionTarget): the list
/// is replaced as a whole by a merge patch.
fn keep_foreign_conditions(new: &mut Value, server: &Value) {
    let Some(theirs) = server.get("conditions").and_then(Value::as_array) else {
        return;
    };
    let Some(obj) = new.as_object_mut() else {
        return;
    };
    let ours = obj
        .entry("conditions")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Some(ours) = ours.as_array_mut() else {
        return;
    };
    let foreign: Vec<Value> = theirs
        .iter()
        .filter(|c| !ours.iter().any(|o| o.get("type") == c.get("type")))
        .cloned()
        .collect();
    ours.extend(foreign);
}

/// Wakes whoever waits on the returned `Notify` when a file appears in,
/// is replaced in or leaves `dir` (falls back to once a second without
/// inotify).
pub fn watch_dir(dir: &Path) -> Arc<Notify> {
    let notify = Arc::new(Notify::new());
    let n = notify.clone();
    let dir = dir.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("status watch".into())
        .spawn(move || watch_loop(&dir, &n));
    if let Err(e) = spawned {
        eprintln!("corral-agent: start the status watcher: {e}; statuses go out every few seconds");
    }
    notify
}

fn watch_loop(dir: &Path, notify: &Notify) {
    use nix::sys::inotify::{AddWatchFlags as F, InitFlags, Inotify};
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC).and_then(|i| {
        i.add_watch(dir, F::IN_MOVED_TO | F::IN_CLOSE_WRITE | F::IN_DELETE)
            .map(|_| i)
    });
    match inotify {
        Ok(i) => loop {
            match i.read_events() {
                Ok(_) => notify.notify_one(),
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    eprintln!("corral-agent: inotify on {}: {e}; polling", dir.display());
                    break;
                }
            }
        },
        Err(e) => eprintln!(
            "corral-agent: no inotify watch on {} ({e}); polling statuses every second",
            dir.display()
        ),
    }
    loop {
        std::thread::sleep(Duration::from_secs(1));
        notify.notify_one();
    }
}

/// What the server last accepted from this agent, by pod uid.
#[derive(Default)]
pub struct Reporter {
    sent: HashMap<String, Value>,
    /// Last error per pod, so a master that is down is not logged every pass.
    errors: HashMap<String, String>,
}

impl Reporter {
    /// Compare with the server's copies from now on (after a relist).
    pub fn forget(&mut self) {
        self.sent.clear();
    }

    /// Patch the status of every pod of the API whose status here differs.
    pub async fn report(&mut self, agent: &Agent, client: &Client, cache: &Cache<Pod>) {
        let mut live = Vec::new();
        for pod in agent.pods() {
            let m = &pod.metadata;
            // The API's pod, or the mirror of a static pod.
            let Some(api) = cache.get(&m.namespace, &m.name).filter(|a| {
                a.metadata.uid == m.uid || super::mirror::mirror_of(a) == Some(m.uid.as_str())
            }) else {
                continue; // gone from the API, or a static pod without its mirror yet
            };
            live.push(m.uid.clone());
            let mut new = serde_json::to_value(&pod.status).unwrap_or(Value::Null);
            if new.is_null() {
                continue;
            }
            let server = serde_json::to_value(&api.status).unwrap_or(Value::Null);
            keep_foreign_conditions(&mut new, &server);
            let base = match self.sent.get(&m.uid) {
                Some(v) => v.clone(),
                None => server,
            };
            let Some(diff) = merge_diff(&base, &new) else {
                continue;
            };
            let patch = Patch::Merge(serde_json::json!({ "status": diff }));
            match client
                .patch_status::<Pod>(&m.namespace, &m.name, &patch)
                .await
            {
                Ok(_) => {
                    self.sent.insert(m.uid.clone(), new);
                    self.errors.remove(&m.uid);
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    let msg = e.to_string();
                    if self.errors.get(&m.uid) != Some(&msg) {
                        eprintln!(
                            "corral-agent: report status of pod {}/{}: {msg}",
                            m.namespace, m.name
                        );
                        self.errors.insert(m.uid.clone(), msg);
                    }
                }
            }
        }
        self.sent.retain(|uid, _| live.contains(uid));
        self.errors.retain(|uid, _| live.contains(uid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// RFC 7386's apply, to check that a diff really turns old into new.
    fn apply(target: &Value, patch: &Value) -> Value {
        match patch {
            Value::Object(p) => {
                let mut t = match target {
                    Value::Object(m) => m.clone(),
                    _ => Map::new(),
                };
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        let cur = t.get(k).cloned().unwrap_or(Value::Null);
                        t.insert(k.clone(), apply(&cur, v));
                    }
                }
                Value::Object(t)
            }
            other => other.clone(),
        }
    }

    #[test]
    fn diff_of_pod_status() {
        let old = json!({"phase": "Pending", "message": "pulling", "conditions": [{"type": "Ready", "status": "False"}]});
        let new = json!({
            "phase": "Running", "podIP": "10.244.1.5", "hostIP": "10.0.0.2",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "c", "ready": true, "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]
        });
        let d = merge_diff(&old, &new).unwrap();
        assert_eq!(d["message"], Value::Null, "a field gone is deleted");
        assert_eq!(d["phase"], "Running");
        assert!(d.get("hostIP").is_some());
        assert_eq!(apply(&old, &d), new);
        assert_eq!(merge_diff(&new, &new), None);
    }

    #[test]
    fn conditions_of_others_are_kept() {
        let server = json!({"conditions": [
            {"type": "Ready", "status": "False"},
            {"type": "DisruptionTarget", "status": "True"}
        ]});
        let mut new = json!({"conditions": [{"type": "Ready", "status": "True"}]});
        keep_foreign_conditions(&mut new, &server);
        assert_eq!(
            new["conditions"],
            json!([{"type": "Ready", "status": "True"}, {"type": "DisruptionTarget", "status": "True"}])
        );
        let mut bare = json!({"phase": "Running"});
        keep_foreign_conditions(&mut bare, &json!({"phase": "Pending"}));
        assert_eq!(bare, json!({"phase": "Running"}));
    }

    #[test]
    fn diff_goes_into_nested_objects_and_replaces_lists() {
        let old = json!({"a": {"x": 1, "y": 2}, "l": [1, 2], "s": "v"});
        let new = json!({"a": {"x": 1, "y": 3, "z": {"k": null, "j": 1}}, "l": [1], "s": {"o": 1}});
        let d = merge_diff(&old, &new).unwrap();
        assert_eq!(
            d,
            json!({"a": {"y": 3, "z": {"j": 1}}, "l": [1], "s": {"o": 1}})
        );
        // Nulls inside new values carry no meaning in a merge patch.
        assert_eq!(
            apply(&old, &d),
            json!({"a": {"x": 1, "y": 3, "z": {"j": 1}}, "l": [1], "s": {"o": 1}})
        );
        assert_eq!(
            merge_diff(&Value::Null, &json!({"p": 1})),
            Some(json!({"p": 1}))
        );
    }
}
