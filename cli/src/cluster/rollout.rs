//! `corral rollout status|restart|undo deploy/NAME`.

use std::time::{Duration, Instant};

use corral_api::resource::ResourceInfo;
use corral_api::Time;
use serde_json::{json, Value};

use super::args::RolloutVerb;
use super::client::{Client, JSON_PATCH, STRATEGIC_PATCH};
use super::{display_name, kind_and_names, ns_for, Error};

pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
pub const REVISION: &str = "deployment.kubernetes.io/revision";

pub fn run(c: &Client, v: &RolloutVerb) -> Result<(), Error> {
    match v {
        RolloutVerb::Status { target, timeout } => status(c, target, *timeout),
        RolloutVerb::Restart { target } => restart(c, target),
        RolloutVerb::Undo {
            target,
            to_revision,
        } => undo(c, target, *to_revision),
    }
}

fn deployment(target: &str) -> Result<(&'static ResourceInfo, String), Error> {
    let (info, name) = kind_and_names(target, &[])?
        .into_iter()
        .next()
        .ok_or_else(|| Error::msg(format!("{target:?}: expected deployment/NAME")))?;
    if info.kind != "Deployment" {
        return Err(Error::msg(format!(
            "rollout works on deployments, not {}",
            info.plural
        )));
    }
    Ok((info, name))
}

/// None when rolled out, else what it is waiting for (kubectl's words).
pub fn progress(d: &Value) -> Option<String> {
    let name = d["metadata"]["name"].as_str().unwrap_or("");
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    let st = &d["status"];
    let want = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let (updated, total, available) = (
        n(&st["updatedReplicas"]),
        n(&st["replicas"]),
        n(&st["availableReplicas"]),
    );
    if n(&st["observedGeneration"]) < n(&d["metadata"]["generation"]) {
        return Some(format!(
            "Waiting for deployment spec update to be observed ({name:?})..."
        ));
    }
    if updated < want {
        return Some(format!("Waiting for deployment {name:?} rollout to finish: {updated} out of {want} new replicas have been updated..."));
    }
    if total > updated {
        return Some(format!("Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...", total - updated));
    }
    if available < updated {
        return Some(format!("Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available..."));
    }
    None
}

fn status(c: &Client, target: &str, timeout: u64) -> Result<(), Error> {
    let (info, name) = deployment(target)?;
    let path = info.object_path(ns_for(info, &c.namespace), &name);
    let deadline = (timeout > 0).then(|| Instant::now() + Duration::from_secs(timeout));
    let mut last = String::new();
    loop {
        let d = c.get(&path)?;
        match progress(&d) {
            None => {
                println!("deployment {name:?} successfully rolled out");
                return Ok(());
            }
            Some(msg) => {
                if msg != last {
                    println!("{msg}");
                    last = msg;
                }
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Error::msg(format!(
                "timed out after {timeout}s waiting for deployment {name:?} to roll out \
                 (is the deployment controller running?)"
            )));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn restart(c: &Client, target: &str) -> Result<(), Error> {
    let (info, name) = deployment(target)?;
    let path = info.object_path(ns_for(info, &c.namespace), &name);
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {
        RESTARTED_AT: Time::now().to_string()
    }}}}});
    c.patch(&path, STRATEGIC_PATCH, &patch)?;
    println!("{} restarted", display_name(info, &name));
    Ok(())
}

fn revision(o: &Value) -> Option<i64> {
    o["metadata"]["annotations"][REVISION]
        .as_str()?
        .parse()
        .ok()
}

/// The ReplicaSets this deployment owns (by uid), with their revisions.
fn history(c: &Client, d: &Value) -> Result<Vec<(i64, Value)>, Error> {
    let rs = super::kind("rs")?;
    let ns = d["metadata"]["namespace"].as_str().unwrap_or("");
    let uid = &d["metadata"]["uid"];
    let list = c.get(&rs.collection_path(Some(ns)))?;
    let mut out: Vec<(i64, Value)> = list["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|r| {
            r["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| refs.iter().any(|o| o["uid"] == *uid))
        })
        .filter_map(|r| revision(r).map(|n| (n, r.clone())))
        .collect();
    out.sort_by_key(|(n, _)| *n);
    Ok(out)
}

fn undo(c: &Client, target: &str, to: Option<i64>) -> Result<(), Error> {
    let (info, name) = deployment(target)?;
    let path = info.object_path(ns_for(info, &c.namespace), &name);
    let d = c.get(&path)?;
    let hist = history(c, &d)?;
    if hist.is_empty() {
        return Err(Error::msg(format!(
            "no rollout history found for deployment {name:?}: no ReplicaSet it owns carries a {REVISION} annotation"
        )));
    }
    let current = revision(&d).unwrap_or(hist[hist.len() - 1].0);
    let chosen = match to {
        Some(r) => hist.iter().find(|(n, _)| *n == r).ok_or_else(|| {
            Error::msg(format!(
                "unable to find the specified revision {r} for deployment {name:?}"
            ))
        })?,
        None => hist
            .iter()
            .rev()
            .find(|(n, _)| *n < current)
            .ok_or_else(|| {
                Error::msg(format!(
                    "no revision before {current} to roll back to for deployment {name:?}"
                ))
            })?,
    };
    let mut template = chosen.1["spec"]["template"].clone();
    if let Some(labels) = template["metadata"]["labels"].as_object_mut() {
        labels.remove("pod-template-hash");
    }
    if template == d["spec"]["template"] {
        println!(
            "{} skipped rollback (current template already matches revision {})",
            display_name(info, &name),
            chosen.0
        );
        return Ok(());
    }
    // A JSON patch replaces the whole template (a merge patch would merge
    // into it); its test of the generation read makes a concurrent spec
    // change fail instead of being overwritten, while the controllers'
    // status writes (which keep the generation) do not get in the way.
    let ops = json!([
        {"op": "test", "path": "/metadata/generation", "value": d["metadata"]["generation"]},
        {"op": "replace", "path": "/spec/template", "value": template},
    ]);
    c.patch(&path, JSON_PATCH, &ops)?;
    println!("{} rolled back", display_name(info, &name));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_follows_kubectl() {
        let mut d = json!({
            "metadata": {"name": "web", "generation": 2},
            "spec": {"replicas": 2},
            "status": {"observedGeneration": 1}
        });
        assert!(progress(&d).unwrap().contains("spec update"));
        d["status"] = json!({"observedGeneration": 2, "updatedReplicas": 1, "replicas": 2});
        assert!(progress(&d).unwrap().contains("1 out of 2 new replicas"));
        d["status"] = json!({"observedGeneration": 2, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 1});
        assert!(progress(&d)
            .unwrap()
            .contains("1 of 2 updated replicas are available"));
        d["status"]["availableReplicas"] = json!(2);
        assert_eq!(progress(&d), None);
    }
}
