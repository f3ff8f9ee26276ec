//! A backend for the agent's HTTP server made of real parts, for testing the
//! server without the pod engine: containers started by the runtime under
//! test (their pid and status come from its `state` verb on every call) and
//! CRI log files written by the shim's `LogWriter`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use corral_agent::http::{Backend, ContainerInfo, LookupError};
use corral_api::core::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus,
    Pod, PodStatus,
};
use corral_api::Resource;
use serde_json::Value;

/// One container of a test pod.
#[derive(Debug, Clone)]
pub struct TestContainer {
    pub name: String,
    /// The runtime's id; None: not started yet.
    pub runtime_id: Option<String>,
    pub log_path: PathBuf,
    pub previous_log_path: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct TestPod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub containers: Vec<TestContainer>,
}

/// Pods whose containers live in one runtime `--root`.
pub struct RuntimeBackend {
    runtime: PathBuf,
    root: PathBuf,
    pods: Mutex<Vec<TestPod>>,
}

impl RuntimeBackend {
    pub fn new(runtime: PathBuf, root: PathBuf, pods: Vec<TestPod>) -> RuntimeBackend {
        RuntimeBackend {
            runtime,
            root,
            pods: Mutex::new(pods),
        }
    }

    /// `(status, pid)` from the runtime's `state`; None when it has no such
    /// container (deleted, or never created).
    fn state(&self, id: &str) -> Option<(String, Option<i32>)> {
        let out = Command::new(&self.runtime)
            .arg("--root")
            .arg(&self.root)
            .args(["state", id])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        let status = v["status"].as_str()?.to_string();
        let pid = v["pid"].as_i64().filter(|p| *p > 0).map(|p| p as i32);
        Some((status, pid))
    }

    fn info(&self, c: &TestContainer) -> Result<ContainerInfo, String> {
        let id = c.runtime_id.clone().ok_or_else(|| c.name.clone())?;
        let state = self.state(&id);
        let running = state.as_ref().is_some_and(|(s, _)| s == "running");
        Ok(ContainerInfo {
            runtime_id: id,
            runtime_root: self.root.clone(),
            log_path: c.log_path.clone(),
            previous_log_path: c.previous_log_path.clone(),
            pid: state.and_then(|(_, pid)| pid).filter(|_| running),
            running,
        })
    }

    fn pod_object(&self, p: &TestPod) -> Pod {
        let mut pod = Pod::named(&p.namespace, &p.name);
        pod.metadata.uid = p.uid.clone();
        let mut statuses = Vec::new();
        for c in &p.containers {
            pod.spec.containers.push(Container {
                name: c.name.clone(),
                image: "busybox".into(),
                ..Container::default()
            });
            let running = self.info(c).is_ok_and(|i| i.running);
            let state = if running {
                ContainerState {
                    running: Some(ContainerStateRunning::default()),
                    ..ContainerState::default()
                }
            } else {
                ContainerState {
                    terminated: Some(ContainerStateTerminated::default()),
                    ..ContainerState::default()
                }
            };
            statuses.push(ContainerStatus {
                name: c.name.clone(),
                state: Some(state),
                ready: running,
                image: "busybox".into(),
                ..ContainerStatus::default()
            });
        }
        pod.status = Some(PodStatus {
            container_statuses: statuses,
            ..PodStatus::default()
        });
        pod
    }
}

impl Backend for RuntimeBackend {
    fn pods(&self) -> Vec<Pod> {
        let pods = self.pods.lock().expect("pods lock").clone();
        pods.iter().map(|p| self.pod_object(p)).collect()
    }

    fn container(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
    ) -> Result<ContainerInfo, LookupError> {
        let pods = self.pods.lock().expect("pods lock").clone();
        let p = pods
            .iter()
            .find(|p| p.namespace == namespace && p.name == pod)
            .ok_or_else(|| LookupError::PodNotFound {
                namespace: namespace.into(),
                name: pod.into(),
            })?;
        let c = match container {
            Some(name) => p.containers.iter().find(|c| c.name == name),
            None if p.containers.len() == 1 => p.containers.first(),
            None => {
                return Err(LookupError::ContainerRequired {
                    pod: pod.into(),
                    choices: p.containers.iter().map(|c| c.name.clone()).collect(),
                })
            }
        }
        .ok_or_else(|| LookupError::ContainerNotFound {
            pod: pod.into(),
            container: container.unwrap_or_default().into(),
        })?;
        self.info(c).map_err(|name| LookupError::NotStarted {
            pod: pod.into(),
            container: name,
        })
    }
}
