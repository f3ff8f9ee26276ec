//! The pods the master bound to this node, as the agent's second pod
//! source (next to the static pods): an informer on
//! `fieldSelector=spec.nodeName=<node>`, whose cache is what the node runs.
//! The set is persisted, so an agent restarted while the master is down
//! keeps running it. A pod the master marks for deletion
//! (deletionTimestamp) is stopped, then deleted for good (grace 0); a pod
//! the master deletes at once is just stopped.
//!
//! One loop drives this and the status reporter: it wakes on an informer
//! change, on a status file written by a pod worker, and every few seconds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use corral_api::core::{Pod, PodPhase};
use corral_client::{Cache, Change, Client, DeleteParams, ListParams, Reflector};
use tokio::sync::broadcast::error::RecvError;

use super::status::{self, Reporter};
use crate::config::Config;
use crate::pods::SOURCE_API;
use crate::Agent;

/// Longest sleep of the loop when nothing wakes it (retries failed
/// reports and deletions).
const RESYNC: Duration = Duration::from_secs(5);
/// After a wake-up, let the rest of a burst arrive (many pods bound at once).
const SETTLE: Duration = Duration::from_millis(20);

fn saved_file(cfg: &Config) -> PathBuf {
    super::dir(cfg).join("pods.json")
}

/// The pods the last run was given by the master, ready for
/// `Agent::apply_source(SOURCE_API, ..)` before the master answers.
pub fn load_saved(cfg: &Config) -> Result<Vec<(Pod, PathBuf)>, super::ClusterError> {
    let pods: Vec<Pod> = super::load(&saved_file(cfg))?.unwrap_or_default();
    Ok(pods.into_iter().map(|p| with_source(p, cfg)).collect())
}

fn save(cfg: &Config, pods: &[Pod]) -> Result<(), super::ClusterError> {
    let bytes = serde_json::to_vec(pods).map_err(|e| super::ClusterError::Format {
        path: saved_file(cfg),
        msg: format!("encode: {e}"),
    })?;
    Ok(crate::state::write_atomic(&saved_file(cfg), &bytes)?)
}

fn with_source(pod: Pod, cfg: &Config) -> (Pod, PathBuf) {
    let m = &pod.metadata;
    let source = match &cfg.join {
        Some(j) => format!(
            "{}/api/v1/namespaces/{}/pods/{}",
            j.server, m.namespace, m.name
        ),
        None => format!("api/v1/namespaces/{}/pods/{}", m.namespace, m.name),
    };
    (pod, PathBuf::from(source))
}

/// What the node should run of the API's pods: not those being deleted,
/// nor finished ones it does not hold any more (kubelet does not start a
/// Succeeded/Failed pod again). The status is left out: the agent makes
/// its own.
pub fn desired(api: &[Arc<Pod>], has_worker: impl Fn(&str) -> bool) -> Vec<Pod> {
    api.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        // Copies of this node's static pods: those run from their manifests.
        .filter(|p| super::mirror::mirror_of(p).is_none())
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase);
            let finished = matches!(phase, Some(PodPhase::Succeeded | PodPhase::Failed));
            !finished || has_worker(&p.metadata.uid)
        })
        .map(|p| {
            let mut pod = Pod::clone(p);
            pod.status = None;
            pod.metadata.resource_version.clear();
            pod.metadata.managed_fields.clear();
            pod.apply_defaults();
            pod
        })
        .collect()
}

/// The pods marked for deletion whose containers are all gone: they can be
/// deleted from the API now.
pub fn deletable(api: &[Arc<Pod>], has_worker: impl Fn(&str) -> bool) -> Vec<Arc<Pod>> {
    api.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some() && !has_worker(&p.metadata.uid))
        .cloned()
        .collect()
}

fn identity(pods: &[Pod]) -> BTreeMap<String, String> {
    pods.iter()
        .map(|p| {
            (
                format!("{}/{}", p.metadata.namespace, p.metadata.name),
                p.metadata.uid.clone(),
            )
        })
        .collect()
}

/// Run the API's pods on this node and report their status, forever.
pub async fn run(agent: Agent, client: Client) {
    let cfg = agent.config().clone();
    let selector = format!("spec.nodeName={}", cfg.node_name);
    let reflector = Reflector::<Pod>::spawn(client.clone(), "", ListParams::fields(&selector));
    let cache = reflector.cache();
    let mut changes = reflector.subscribe();
    let status_written = status::watch_dir(&cfg.status_dir());
    let mut sync = Sync {
        agent,
        client,
        cache,
        reporter: Reporter::default(),
        applied: None,
        deleting: BTreeSet::new(),
        node_uid: None,
        mirror_errors: Vec::new(),
    };
    loop {
        tokio::select! {
            c = changes.recv() => match c {
                // After a relist (a reconnect) the server's statuses are the truth again.
                Ok(Change::Resynced) | Err(RecvError::Lagged(_)) => sync.reporter.forget(),
                Ok(_) => {}
                Err(RecvError::Closed) => return,
            },
            _ = status_written.notified() => {}
            _ = tokio::time::sleep(RESYNC) => {}
        }
        tokio::time::sleep(SETTLE).await;
        sync.once().await;
    }
}

struct Sync {
    agent: Agent,
    client: Client,
    cache: Cache<Pod>,
    reporter: Reporter,
    /// The (namespace/name -> uid) set last given to the agent.
    applied: Option<BTreeMap<String, String>>,
    /// Deletions sent and not yet seen in the informer.
    deleting: BTreeSet<String>,
    /// The Node's uid, owner of the mirror pods.
    node_uid: Option<String>,
    mirror_errors: Vec<String>,
}

impl Sync {
    async fn once(&mut self) {
        // Before the first list the saved pods stay as they are.
        if !self.cache.is_ready() {
            return;
        }
        let api = self.cache.list();
        let agent = self.agent.clone();
        let want = desired(&api, |uid| agent.has_worker(uid));
        let ids = identity(&want);
        if self.applied.as_ref() != Some(&ids) {
            let cfg = self.agent.config().clone();
            if let Err(e) = save(&cfg, &want) {
                eprintln!("corral-agent: remember the master's pods: {e}");
            }
            let agent = self.agent.clone();
            let pods = want.into_iter().map(|p| with_source(p, &cfg)).collect();
            let applied = tokio::task::spawn_blocking(move || agent.apply_source(SOURCE_API, pods));
            if let Err(e) = applied.await {
                eprintln!("corral-agent: apply the master's pods: {e}");
            }
            self.applied = Some(ids);
        }
        self.finish_deletions(&api).await;
        self.mirror(&api).await;
        self.reporter
            .report(&self.agent, &self.client, &self.cache)
            .await;
    }

    /// Keep a mirror pod in the API for each static pod.
    async fn mirror(&mut self, api: &[Arc<Pod>]) {
        let statics = self.agent.source_pods(crate::pods::SOURCE_STATIC);
        let (create, _) = super::mirror::plan(&statics, api);
        if self.node_uid.is_none() && !create.is_empty() {
            let node = &self.agent.config().node_name;
            if let Ok(Some(n)) = self
                .client
                .get_opt::<corral_api::core::Node>("", node)
                .await
            {
                self.node_uid = Some(n.metadata.uid);
            }
        }
        let errors =
            super::mirror::sync(&self.client, &statics, api, self.node_uid.as_deref()).await;
        if errors != self.mirror_errors {
            for e in &errors {
                eprintln!("corral-agent: {e}");
            }
            self.mirror_errors = errors;
        }
    }

    /// Delete (grace 0, this uid only) the pods marked for deletion that
    /// the agent has stopped.
    async fn finish_deletions(&mut self, api: &[Arc<Pod>]) {
        let agent = self.agent.clone();
        let done = deletable(api, |uid| agent.has_worker(uid));
        self.deleting
            .retain(|uid| done.iter().any(|p| &p.metadata.uid == uid));
        for p in done {
            let m = &p.metadata;
            if !self.deleting.insert(m.uid.clone()) {
                continue;
            }
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions_uid: Some(m.uid.clone()),
                ..DeleteParams::default()
            };
            match self
                .client
                .delete::<Pod>(&m.namespace, &m.name, &params)
                .await
            {
                Ok(()) => {}
                Err(e) if e.is_not_found() || e.is_conflict() => {}
                Err(e) => {
                    eprintln!(
                        "corral-agent: delete stopped pod {}/{}: {e}",
                        m.namespace, m.name
                    );
                    self.deleting.remove(&m.uid);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_api::core::PodStatus;
    use corral_api::Time;

    fn pod(name: &str, uid: &str, phase: Option<PodPhase>, deleting: bool) -> Arc<Pod> {
        let mut p = Pod::default();
        p.metadata.namespace = "default".into();
        p.metadata.name = name.into();
        p.metadata.uid = uid.into();
        p.metadata.resource_version = "7".into();
        p.spec.node_name = "n1".into();
        p.status = Some(PodStatus {
            phase,
            ..PodStatus::default()
        });
        if deleting {
            p.metadata.deletion_timestamp = Some(Time::from_unix(5));
        }
        Arc::new(p)
    }

    #[test]
    fn desired_leaves_out_deleted_and_finished_pods() {
        let api = vec![
            pod("run", "u1", Some(PodPhase::Pending), false),
            pod("gone", "u2", Some(PodPhase::Running), true),
            pod("done-here", "u3", Some(PodPhase::Succeeded), false),
            pod("done-elsewhere", "u4", Some(PodPhase::Failed), false),
        ];
        let held = |uid: &str| uid == "u3";
        let want = desired(&api, held);
        let names: Vec<_> = want.iter().map(|p| p.metadata.name.as_str()).collect();
        assert_eq!(names, ["run", "done-here"]);
        assert!(want.iter().all(|p| p.status.is_none()));
        assert!(want[0].metadata.resource_version.is_empty());
        assert_eq!(
            identity(&want).get("default/run").map(String::as_str),
            Some("u1")
        );
    }

    #[test]
    fn mirror_pods_are_not_run_from_the_api() {
        let mut m = Pod::clone(&pod("static-web", "u9", None, false));
        m.metadata
            .annotations
            .insert(super::super::mirror::MIRROR_ANNOTATION.into(), "s1".into());
        assert!(desired(&[Arc::new(m)], |_| false).is_empty());
    }

    #[test]
    fn deletable_once_stopped() {
        let api = vec![
            pod("a", "u1", None, true),
            pod("b", "u2", None, true),
            pod("c", "u3", None, false),
        ];
        let stopping = |uid: &str| uid == "u1";
        let names: Vec<_> = deletable(&api, stopping)
            .iter()
            .map(|p| p.metadata.name.clone())
            .collect();
        assert_eq!(names, ["b"]);
    }

    #[test]
    fn saved_pods_round_trip() {
        use clap::Parser;
        let dir = tempfile::tempdir().unwrap();
        let args = crate::config::Args::parse_from([
            "corral-agent",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--server",
            "https://127.0.0.1:6443",
            "--token",
            "t",
        ]);
        let cfg = Config::from_args(&args).unwrap();
        assert!(load_saved(&cfg).unwrap().is_empty());
        let want = desired(&[pod("run", "u1", None, false)], |_| false);
        save(&cfg, &want).unwrap();
        let back = load_saved(&cfg).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].0.metadata.uid, "u1");
        assert_eq!(
            back[0].1,
            PathBuf::from("https://127.0.0.1:6443/api/v1/namespaces/default/pods/run")
        );
    }
}
