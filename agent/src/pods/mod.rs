//! The pods of this node: the [`Agent`] handle and one worker thread per
//! pod that builds its sandbox, starts and restarts its containers, runs
//! its probes and tears it down.

mod container;
mod gate;
mod probe;
mod sandbox;
mod spawn;
mod spec;
mod status;
mod worker;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use corral_api::core::Pod;

use crate::config::Config;
use crate::state::{self, PodRecord};

/// The agent: cheap to clone (an `Arc` inside), shared by the static pod
/// watcher, the pod workers and the HTTP API.
#[derive(Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: Config,
    /// Current pods by `namespace/name`.
    pods: Mutex<BTreeMap<String, Arc<PodHandle>>>,
    /// Pods being stopped and removed (no longer listed).
    stopping: Mutex<Vec<Arc<PodHandle>>>,
    manifest_errors: Mutex<BTreeMap<PathBuf, String>>,
    net: Arc<sandbox::SharedNetwork>,
    /// Turns for new pods to start (`--parallel-starts`).
    gate: Arc<gate::StartGate>,
    /// The desired pods of each source (static manifests, the master); held
    /// while the union is applied so that two sources never interleave.
    sources: Mutex<BTreeMap<String, Vec<(Pod, PathBuf)>>>,
}

/// The static pods of the manifests directory: they win over a pod of the
/// same namespace/name from another source (kubelet's rule).
pub const SOURCE_STATIC: &str = "static";
/// The pods the master bound to this node.
pub const SOURCE_API: &str = "api";

/// The pods of every source together, static pods first; a pod whose
/// namespace/name another source already gave is left out and named in the
/// second list.
pub fn merge_sources(
    sources: &BTreeMap<String, Vec<(Pod, PathBuf)>>,
) -> (Vec<(Pod, PathBuf)>, Vec<String>) {
    let order = sources
        .get_key_value(SOURCE_STATIC)
        .into_iter()
        .chain(sources.iter().filter(|(k, _)| k.as_str() != SOURCE_STATIC));
    let mut seen = std::collections::BTreeSet::new();
    let (mut out, mut conflicts) = (Vec::new(), Vec::new());
    for (source, pods) in order {
        for (pod, path) in pods {
            let key = format!("{}/{}", pod.metadata.namespace, pod.metadata.name);
            if seen.insert(key.clone()) {
                out.push((pod.clone(), path.clone()));
            } else {
                conflicts.push(format!("{key} (from {source})"));
            }
        }
    }
    (out, conflicts)
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    State(#[from] state::StateError),
}

/// One pod as the agent tracks it in memory (its disk records are in
/// `state`); filled by the pod's worker.
pub(crate) struct PodHandle {
    pub(crate) uid: String,
    pub(crate) view: Mutex<PodView>,
    /// Set to make the worker stop the pod and remove it.
    pub(crate) stop: AtomicBool,
    /// Remove the status file too (false when a new version replaces the pod).
    pub(crate) remove_status: AtomicBool,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// What the API shows of a pod: the pod with its current status, and the
/// runtime side of each container.
#[derive(Debug, Clone)]
pub(crate) struct PodView {
    pub(crate) pod: Pod,
    pub(crate) containers: Vec<ContainerView>,
}

#[derive(Debug, Clone)]
pub(crate) struct ContainerView {
    pub(crate) name: String,
    pub(crate) init: bool,
    pub(crate) runtime_id: Option<String>,
    pub(crate) log_path: PathBuf,
    pub(crate) previous_log_path: Option<PathBuf>,
    pub(crate) pid: Option<i32>,
    pub(crate) running: bool,
}

/// A container's runtime side, for logs and exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRef {
    /// Id under `runtime_root` (for `corral-runtime exec/state`).
    pub runtime_id: String,
    pub runtime_root: PathBuf,
    /// The current (or last) attempt's CRI log; may not exist yet.
    pub log_path: PathBuf,
    /// The attempt before, if there was one.
    pub previous_log_path: Option<PathBuf>,
    /// Host pid of the container's init while it runs.
    pub pid: Option<i32>,
    pub running: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("pods \"{name}\" not found")]
    PodNotFound { namespace: String, name: String },
    #[error("container {container} is not valid for pod {pod}")]
    ContainerNotFound { pod: String, container: String },
    #[error("a container name must be specified for pod {pod}, choose one of: [{}]", .choices.join(" "))]
    ContainerRequired { pod: String, choices: Vec<String> },
    #[error("container \"{container}\" in pod \"{pod}\" is waiting to start")]
    NotStarted { pod: String, container: String },
}

/// Step timings of pod starts, appended to the file named by
/// `CORRAL_AGENT_TRACE` (unset: nothing is measured or written). Each line:
/// milliseconds since the first traced step, pod, step, milliseconds it took.
pub(crate) fn trace(pod: &str, step: &str, since: std::time::Instant) {
    use std::io::Write;
    use std::sync::OnceLock;
    static OUT: OnceLock<Option<(std::time::Instant, Mutex<std::fs::File>)>> = OnceLock::new();
    let out = OUT.get_or_init(|| {
        let path = std::env::var_os("CORRAL_AGENT_TRACE")?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()?;
        Some((std::time::Instant::now(), Mutex::new(f)))
    });
    if let Some((t0, f)) = out {
        let line = format!(
            "{:.1} {pod} {step} {:.1}\n",
            t0.elapsed().as_secs_f64() * 1e3,
            since.elapsed().as_secs_f64() * 1e3
        );
        let _ = lock(f).write_all(line.as_bytes());
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking worker must not take the whole agent's view down with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Agent {
    /// An agent with no pods yet (see `Agent::start` for a running one).
    pub fn new(cfg: Config) -> Agent {
        Agent {
            inner: Arc::new(Inner {
                gate: gate::StartGate::new(cfg.parallel_starts),
                cfg,
                pods: Mutex::new(BTreeMap::new()),
                stopping: Mutex::new(Vec::new()),
                manifest_errors: Mutex::new(BTreeMap::new()),
                net: Arc::default(),
                sources: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// Create the agent's directories and take over the pods recorded by
    /// an earlier run (their containers kept running under their shims).
    pub fn start(cfg: Config) -> Result<Agent, AgentError> {
        for d in [cfg.pods_dir(), cfg.ns_dir(), cfg.status_dir()] {
            std::fs::create_dir_all(&d).map_err(|source| AgentError::Io {
                what: "create directory",
                path: d.clone(),
                source,
            })?;
        }
        let agent = Agent::new(cfg);
        // Opened now rather than by the first pod (~10 ms of its start); on
        // failure the pods' workers try again and report it in their status.
        if let Err(e) = agent.inner.net.get(&agent.inner.cfg) {
            eprintln!("corral-agent: {e}; retried when a pod needs it");
        }
        for (record, dir) in agent.recorded_pods() {
            agent.launch(record, dir, true);
        }
        Ok(agent)
    }

    fn recorded_pods(&self) -> Vec<(PodRecord, PathBuf)> {
        let dir = self.inner.cfg.pods_dir();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let path = e.path().join("pod.json");
            match state::load::<PodRecord>(&path) {
                Ok(Some(r)) => out.push((r, e.path())),
                Ok(None) => {
                    // Admission wrote nothing yet: nothing was started from here.
                    let _ = std::fs::remove_dir_all(e.path());
                }
                Err(e) => eprintln!("corral-agent: {e}; pod left alone"),
            }
        }
        out
    }

    /// Start the pod's worker; `recorded`: its pod.json is on disk already
    /// (else the worker writes it before anything else).
    fn launch(&self, record: PodRecord, dir: PathBuf, recorded: bool) {
        let key = format!(
            "{}/{}",
            record.pod.metadata.namespace, record.pod.metadata.name
        );
        let handle = Arc::new(PodHandle {
            uid: record.pod.metadata.uid.clone(),
            view: Mutex::new(PodView {
                pod: record.pod.clone(),
                containers: Vec::new(),
            }),
            stop: AtomicBool::new(false),
            remove_status: AtomicBool::new(true),
            thread: Mutex::new(None),
        });
        let w = worker::Worker::new(
            self.inner.cfg.clone(),
            self.inner.net.clone(),
            self.inner.gate.clone(),
            handle.clone(),
            (record, recorded),
            dir,
        );
        let t = std::thread::Builder::new()
            .name(format!("pod {key}"))
            .spawn(move || w.run());
        match t {
            Ok(t) => *lock(&handle.thread) = Some(t),
            Err(e) => eprintln!("corral-agent: pod {key}: start its worker thread: {e}"),
        }
        if let Some(old) = lock(&self.inner.pods).insert(key, handle) {
            old.remove_status.store(false, Ordering::SeqCst);
            old.stop.store(true, Ordering::SeqCst);
            lock(&self.inner.stopping).push(old);
        }
    }

    /// The static pods are `desired` (see [`Agent::apply_source`]).
    pub fn apply(&self, desired: Vec<(Pod, PathBuf)>) {
        self.apply_source(SOURCE_STATIC, desired);
    }

    /// The pods of `source` are now `desired`; the node runs the pods of
    /// every source together (see [`merge_sources`]).
    pub fn apply_source(&self, source: &str, desired: Vec<(Pod, PathBuf)>) {
        let mut sources = lock(&self.inner.sources);
        sources.insert(source.to_string(), desired);
        let (all, conflicts) = merge_sources(&sources);
        for c in conflicts {
            eprintln!("corral-agent: pod {c} ignored: a static pod has its name");
        }
        self.reconcile(all);
    }

    /// The pods `source` last gave (as given: no status).
    pub fn source_pods(&self, source: &str) -> Vec<Pod> {
        lock(&self.inner.sources)
            .get(source)
            .map(|pods| pods.iter().map(|(p, _)| p.clone()).collect())
            .unwrap_or_default()
    }

    /// Whether a pod with this uid still has a worker (running, or being
    /// stopped and removed).
    pub fn has_worker(&self, uid: &str) -> bool {
        let alive = |h: &Arc<PodHandle>| {
            h.uid == uid && lock(&h.thread).as_ref().is_some_and(|t| !t.is_finished())
        };
        lock(&self.inner.pods).values().any(alive) || lock(&self.inner.stopping).iter().any(alive)
    }

    /// Make the node run exactly `desired` (pods with metadata.uid set):
    /// new pods start, pods whose uid changed are replaced, the rest stop.
    fn reconcile(&self, desired: Vec<(Pod, PathBuf)>) {
        let current: BTreeMap<String, String> = lock(&self.inner.pods)
            .iter()
            .map(|(k, h)| (k.clone(), h.uid.clone()))
            .collect();
        let mut wanted = std::collections::BTreeSet::new();
        for (pod, source) in desired {
            let key = format!("{}/{}", pod.metadata.namespace, pod.metadata.name);
            wanted.insert(key.clone());
            if current.get(&key) == Some(&pod.metadata.uid) {
                continue;
            }
            self.admit(pod, source);
        }
        let gone: Vec<_> = {
            let mut pods = lock(&self.inner.pods);
            let keys: Vec<String> = pods
                .keys()
                .filter(|k| !wanted.contains(*k))
                .cloned()
                .collect();
            keys.iter().filter_map(|k| pods.remove(k)).collect()
        };
        for h in gone {
            h.stop.store(true, Ordering::SeqCst);
            lock(&self.inner.stopping).push(h);
        }
        lock(&self.inner.stopping)
            .retain(|h| lock(&h.thread).as_ref().is_some_and(|t| !t.is_finished()));
    }

    /// Start a new pod's worker, which records the pod (its directory and
    /// pod.json) before it does anything else: written here, one fsync'd
    /// file after the other, 100 new pods waited ~1 s for the last one.
    fn admit(&self, pod: Pod, source: PathBuf) {
        let m = &pod.metadata;
        let dir =
            self.inner
                .cfg
                .pods_dir()
                .join(state::pod_dir_name(&m.namespace, &m.name, &m.uid));
        let record = PodRecord {
            pod,
            source,
            sandbox: None,
            start_time: corral_api::Time::now().to_string(),
        };
        self.launch(record, dir, false);
    }

    /// Stop every pod and wait for their workers (used by tests and on
    /// shutdown of a node that should leave nothing behind).
    pub fn remove_all(&self) {
        {
            let mut sources = lock(&self.inner.sources);
            sources.clear();
            self.reconcile(Vec::new());
        }
        let stopping: Vec<_> = lock(&self.inner.stopping).drain(..).collect();
        for h in stopping {
            if let Some(t) = lock(&h.thread).take() {
                let _ = t.join();
            }
        }
    }

    /// Errors of the manifests directory, by file.
    pub fn manifest_errors(&self) -> BTreeMap<PathBuf, String> {
        lock(&self.inner.manifest_errors).clone()
    }

    pub(crate) fn set_manifest_errors(&self, errors: BTreeMap<PathBuf, String>) {
        *lock(&self.inner.manifest_errors) = errors;
    }

    pub fn config(&self) -> &Config {
        &self.inner.cfg
    }

    /// Every pod: metadata, spec (defaults applied) and current status.
    pub fn pods(&self) -> Vec<Pod> {
        let handles: Vec<_> = lock(&self.inner.pods).values().cloned().collect();
        handles.iter().map(|h| lock(&h.view).pod.clone()).collect()
    }

    /// One pod by namespace and name.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        self.handle(namespace, name)
            .map(|h| lock(&h.view).pod.clone())
    }

    fn handle(&self, namespace: &str, name: &str) -> Option<Arc<PodHandle>> {
        lock(&self.inner.pods)
            .get(&format!("{namespace}/{name}"))
            .cloned()
    }

    /// The runtime side of a container; `None` picks the only app container.
    pub fn container(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
    ) -> Result<ContainerRef, LookupError> {
        let h = self
            .handle(namespace, pod)
            .ok_or_else(|| LookupError::PodNotFound {
                namespace: namespace.into(),
                name: pod.into(),
            })?;
        let view = lock(&h.view);
        let c = pick(&view.containers, pod, container)?;
        let runtime_id = c
            .runtime_id
            .clone()
            .ok_or_else(|| LookupError::NotStarted {
                pod: pod.into(),
                container: c.name.clone(),
            })?;
        Ok(ContainerRef {
            runtime_id,
            runtime_root: self.inner.cfg.runtime_root.clone(),
            log_path: c.log_path.clone(),
            previous_log_path: c.previous_log_path.clone(),
            pid: c.pid,
            running: c.running,
        })
    }
}

fn pick<'a>(
    cs: &'a [ContainerView],
    pod: &str,
    name: Option<&str>,
) -> Result<&'a ContainerView, LookupError> {
    match name {
        Some(n) => cs
            .iter()
            .find(|c| c.name == n)
            .ok_or_else(|| LookupError::ContainerNotFound {
                pod: pod.into(),
                container: n.into(),
            }),
        None => {
            let apps: Vec<_> = cs.iter().filter(|c| !c.init).collect();
            match apps.as_slice() {
                [one] => Ok(one),
                _ => Err(LookupError::ContainerRequired {
                    pod: pod.into(),
                    choices: apps.iter().map(|c| c.name.clone()).collect(),
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(name: &str, init: bool) -> ContainerView {
        ContainerView {
            name: name.into(),
            init,
            runtime_id: Some(format!("id-{name}")),
            log_path: PathBuf::from(format!("/x/{name}/0.log")),
            previous_log_path: None,
            pid: Some(1),
            running: true,
        }
    }

    fn pod(ns: &str, name: &str, uid: &str) -> (Pod, PathBuf) {
        let mut p = Pod::default();
        p.metadata.namespace = ns.into();
        p.metadata.name = name.into();
        p.metadata.uid = uid.into();
        (p, PathBuf::from(uid))
    }

    #[test]
    fn sources_merge_with_static_pods_first() {
        let mut s = BTreeMap::new();
        s.insert(
            SOURCE_API.to_string(),
            vec![
                pod("default", "web", "api-1"),
                pod("default", "db", "api-2"),
            ],
        );
        s.insert(
            SOURCE_STATIC.to_string(),
            vec![
                pod("default", "db", "static-1"),
                pod("kube-system", "x", "static-2"),
            ],
        );
        let (all, conflicts) = merge_sources(&s);
        let uids: Vec<_> = all.iter().map(|(p, _)| p.metadata.uid.as_str()).collect();
        assert_eq!(uids, ["static-1", "static-2", "api-1"]);
        assert_eq!(conflicts, ["default/db (from api)"]);
        s.remove(SOURCE_STATIC);
        let (all, conflicts) = merge_sources(&s);
        assert_eq!(all.len(), 2);
        assert!(conflicts.is_empty());
    }

    #[test]
    fn picking_containers() {
        let cs = [view("setup", true), view("web", false)];
        assert_eq!(pick(&cs, "p", None).unwrap().name, "web");
        assert_eq!(pick(&cs, "p", Some("setup")).unwrap().name, "setup");
        let e = pick(&cs, "p", Some("nope")).unwrap_err();
        assert_eq!(e.to_string(), "container nope is not valid for pod p");
        let two = [view("a", false), view("b", false)];
        let e = pick(&two, "p", None).unwrap_err().to_string();
        assert_eq!(
            e,
            "a container name must be specified for pod p, choose one of: [a b]"
        );
    }
}
