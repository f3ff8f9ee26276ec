//! `GET /stats/summary`: the subset of kubelet's summary API that `kubectl
//! top` and the master use: node, pod and container CPU and memory.
//!
//! CPU rates (`usageNanoCores`) need two samples: each response computes
//! them against the previous request's sample of the same cgroup and leaves
//! them out on the first one, as kubelet does before its first housekeeping.

use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use corral_api::core::Pod;
use corral_api::{Status, Time};
use serde::Serialize;

use super::{status_response, AppState};
use crate::stats::{self, CgroupDirs, Usage};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub node: NodeStats,
    pub pods: Vec<PodStats>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    pub node_name: String,
    pub cpu: CpuStats,
    pub memory: MemoryStats,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodReference {
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    pub pod_ref: PodReference,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    pub containers: Vec<ContainerStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    pub time: Time,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_nano_cores: Option<u64>,
    pub usage_core_nano_seconds: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    pub time: Time,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    pub usage_bytes: u64,
    pub working_set_bytes: u64,
}

pub(super) async fn summary(State(state): State<AppState>) -> Response {
    let st = state.clone();
    match tokio::task::spawn_blocking(move || collect(&st)).await {
        Ok(Ok(s)) => Json(s).into_response(),
        Ok(Err(s)) => status_response(*s),
        Err(e) => status_response(Status::internal_error(format!("stats: {e}"))),
    }
}

fn collect(state: &AppState) -> Result<Summary, Box<Status>> {
    let started = Instant::now();
    let node_usage = stats::node_usage().map_err(internal)?;
    let total = stats::memory_total().map_err(internal)?;
    let node_name = match &state.node.hostname {
        Some(h) => h.clone(),
        None => nix::sys::utsname::uname()
            .map(|u| u.nodename().to_string_lossy().into_owned())
            .map_err(|e| internal(format!("uname: {e}")))?,
    };
    let (cpu, mut memory) = usage_stats(state, "node", node_usage);
    memory.available_bytes = Some(total.saturating_sub(node_usage.working_set));
    let pods = state
        .backend
        .pods()
        .iter()
        .map(|p| pod_stats(state, p))
        .collect();
    // Forget cgroups this request did not see (pods gone, containers restarted).
    state
        .cpu_samples
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|_, (_, at)| *at >= started);
    Ok(Summary {
        node: NodeStats {
            node_name,
            cpu,
            memory,
        },
        pods,
    })
}

fn internal(e: impl std::fmt::Display) -> Box<Status> {
    Box::new(Status::internal_error(e))
}

fn pod_stats(state: &AppState, pod: &Pod) -> PodStats {
    let meta = &pod.metadata;
    let mut containers = Vec::new();
    let mut sum: Option<Usage> = None;
    for c in &pod.spec.containers {
        let usage = container_usage(state, &meta.namespace, &meta.name, &c.name);
        let (cpu, memory) = match usage {
            Some((key, u)) => {
                let s = sum.get_or_insert_with(Usage::default);
                s.cpu_ns += u.cpu_ns;
                s.memory_usage += u.memory_usage;
                s.working_set += u.working_set;
                let (cpu, mem) = usage_stats(state, &key, u);
                (Some(cpu), Some(mem))
            }
            None => (None, None),
        };
        containers.push(ContainerStats {
            name: c.name.clone(),
            cpu,
            memory,
        });
    }
    let pod_key = format!("pod/{}/{}/{}", meta.namespace, meta.name, meta.uid);
    let (cpu, memory) = match sum {
        Some(u) => {
            let (c, m) = usage_stats(state, &pod_key, u);
            (Some(c), Some(m))
        }
        None => (None, None),
    };
    PodStats {
        pod_ref: PodReference {
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            uid: meta.uid.clone(),
        },
        start_time: pod.status.as_ref().and_then(|s| s.start_time),
        containers,
        cpu,
        memory,
    }
}

/// The usage of a running container's cgroup, with the key its CPU
/// samples are kept under; None when it does not run (or just ended).
fn container_usage(state: &AppState, ns: &str, pod: &str, name: &str) -> Option<(String, Usage)> {
    let info = state.backend.container(ns, pod, Some(name)).ok()?;
    let pid = info.pid.filter(|_| info.running)?;
    let usage = CgroupDirs::of_pid(pid).and_then(|d| d.usage()).ok()?;
    Some((format!("ctr/{}", info.runtime_id), usage))
}

fn usage_stats(state: &AppState, key: &str, u: Usage) -> (CpuStats, MemoryStats) {
    let now = Time::now();
    let rate = {
        let mut samples = state.cpu_samples.lock().unwrap_or_else(|p| p.into_inner());
        let prev = samples.insert(key.to_string(), (u.cpu_ns, Instant::now()));
        prev.and_then(|(ns, at)| stats::nano_cores(ns, at, u.cpu_ns))
    };
    (
        CpuStats {
            time: now,
            usage_nano_cores: rate,
            usage_core_nano_seconds: u.cpu_ns,
        },
        MemoryStats {
            time: now,
            available_bytes: None,
            usage_bytes: u.memory_usage,
            working_set_bytes: u.working_set,
        },
    )
}
