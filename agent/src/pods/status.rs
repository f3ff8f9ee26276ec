//! Pod status as Kubernetes reports it, from the worker's records.

use corral_api::core::{
    ConditionStatus, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, PodCondition, PodIp, PodPhase, PodStatus,
    RestartPolicy,
};
use corral_api::Time;

use crate::state::{ContainerRecord, Phase};

/// One container as the status needs it.
pub struct Observed<'a> {
    pub name: &'a str,
    pub image: &'a str,
    pub init: bool,
    pub rec: &'a ContainerRecord,
    pub ready: bool,
    pub started: bool,
    /// In back-off now (waiting CrashLoopBackOff).
    pub backing_off: bool,
}

pub fn container_status(o: &Observed) -> ContainerStatus {
    let rec = o.rec;
    let a = rec.attempt.as_ref();
    let running = a.is_some_and(|a| a.phase == Phase::Running);
    let state = if running {
        ContainerState {
            running: Some(ContainerStateRunning {
                started_at: a
                    .and_then(|a| a.started_at.as_deref())
                    .and_then(|s| s.parse().ok()),
            }),
            ..Default::default()
        }
    } else if let (Some(t), false) = (&rec.terminated, o.backing_off) {
        ContainerState {
            terminated: Some(t.clone()),
            ..Default::default()
        }
    } else {
        let (reason, message) = if o.backing_off {
            (
                "CrashLoopBackOff".to_string(),
                format!(
                    "back-off {}s restarting failed container={}",
                    rec.next_backoff_shown(),
                    o.name
                ),
            )
        } else if let Some((r, m)) = &rec.error {
            (r.clone(), m.clone())
        } else if o.init {
            ("PodInitializing".to_string(), String::new())
        } else {
            ("ContainerCreating".to_string(), String::new())
        };
        ContainerState {
            waiting: Some(ContainerStateWaiting { reason, message }),
            ..Default::default()
        }
    };
    let last = if state.terminated.is_some() {
        rec.last_terminated.clone()
    } else {
        rec.terminated
            .clone()
            .or_else(|| rec.last_terminated.clone())
    };
    ContainerStatus {
        name: o.name.to_string(),
        state: Some(state),
        last_state: Some(ContainerState {
            terminated: last,
            ..Default::default()
        }),
        ready: o.ready && running,
        restart_count: rec.restart_count,
        image: a
            .map(|a| a.image.clone())
            .unwrap_or_else(|| o.image.to_string()),
        image_id: a.map(|a| a.image_id.clone()).unwrap_or_default(),
        container_id: a
            .map(|a| format!("corral://{}", a.runtime_id))
            .unwrap_or_default(),
        started: Some(o.started && running),
        ..Default::default()
    }
}

impl ContainerRecord {
    /// The back-off being waited out, in whole seconds.
    fn next_backoff_shown(&self) -> u64 {
        (self.current_backoff.max(0.0)).round() as u64
    }
}

fn condition(type_: &str, ok: bool, reason: &str) -> PodCondition {
    PodCondition {
        type_: type_.into(),
        status: if ok {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        },
        observed_generation: None,
        last_probe_time: None,
        last_transition_time: None,
        reason: if ok { String::new() } else { reason.into() },
        message: String::new(),
    }
}

/// A terminated state counts as success for the pod phase.
fn succeeded(t: &ContainerStateTerminated) -> bool {
    t.exit_code == 0
}

pub struct PodFacts<'a> {
    pub policy: RestartPolicy,
    pub ip: Option<&'a str>,
    pub host_ip: &'a str,
    pub start_time: Option<Time>,
    pub init_failed: bool,
}

/// Phase and conditions from the containers' statuses.
pub fn pod_status(
    facts: &PodFacts,
    init: Vec<ContainerStatus>,
    apps: Vec<ContainerStatus>,
    app_recs: &[&ContainerRecord],
) -> PodStatus {
    let initialized = init.iter().all(|s| {
        s.state
            .as_ref()
            .and_then(|st| st.terminated.as_ref())
            .is_some_and(succeeded)
    });
    let any_running = apps
        .iter()
        .any(|s| s.state.as_ref().is_some_and(|st| st.running.is_some()));
    let finals: Vec<Option<&ContainerStateTerminated>> = app_recs
        .iter()
        .map(|r| match r.attempt.as_ref().map(|a| a.phase) {
            Some(Phase::Exited) => r.terminated.as_ref(),
            _ => None,
        })
        .collect();
    let all_done = !finals.is_empty() && finals.iter().all(Option::is_some);
    let restarts = |t: &ContainerStateTerminated| match facts.policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => !succeeded(t),
        RestartPolicy::Never => false,
    };
    let phase = if facts.init_failed {
        PodPhase::Failed
    } else if all_done && finals.iter().flatten().all(|t| !restarts(t)) {
        if finals.iter().flatten().all(|t| succeeded(t)) {
            PodPhase::Succeeded
        } else {
            PodPhase::Failed
        }
    } else if initialized && (any_running || all_done) {
        PodPhase::Running
    } else {
        PodPhase::Pending
    };
    let ready = initialized && !apps.is_empty() && apps.iter().all(|s| s.ready);
    let conditions = vec![
        condition("PodScheduled", true, ""),
        condition("Initialized", initialized, "ContainersNotInitialized"),
        condition("ContainersReady", ready, "ContainersNotReady"),
        condition("Ready", ready, "ContainersNotReady"),
    ];
    PodStatus {
        phase: Some(phase),
        conditions,
        host_ip: facts.host_ip.to_string(),
        host_ips: vec![PodIp {
            ip: facts.host_ip.to_string(),
        }],
        pod_ip: facts.ip.unwrap_or_default().to_string(),
        pod_ips: facts
            .ip
            .map(|ip| vec![PodIp { ip: ip.to_string() }])
            .unwrap_or_default(),
        start_time: facts.start_time,
        init_container_statuses: init,
        container_statuses: apps,
        qos_class: "BestEffort".into(),
        ..Default::default()
    }
}
