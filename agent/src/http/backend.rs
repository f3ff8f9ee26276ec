//! The agent itself as the HTTP server's backend.

use corral_api::core::Pod;

use super::{Backend, ContainerInfo, LookupError};
use crate::pods::{Agent, ContainerRef, LookupError as AgentLookupError};

impl Backend for Agent {
    fn pods(&self) -> Vec<Pod> {
        Agent::pods(self)
    }

    fn container(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
    ) -> Result<ContainerInfo, LookupError> {
        Agent::container(self, namespace, pod, container)
            .map(info)
            .map_err(lookup_error)
    }
}

fn info(c: ContainerRef) -> ContainerInfo {
    ContainerInfo {
        runtime_id: c.runtime_id,
        runtime_root: c.runtime_root,
        log_path: c.log_path,
        previous_log_path: c.previous_log_path,
        pid: c.pid,
        running: c.running,
    }
}

fn lookup_error(e: AgentLookupError) -> LookupError {
    match e {
        AgentLookupError::PodNotFound { namespace, name } => {
            LookupError::PodNotFound { namespace, name }
        }
        AgentLookupError::ContainerNotFound { pod, container } => {
            LookupError::ContainerNotFound { pod, container }
        }
        AgentLookupError::ContainerRequired { pod, choices } => {
            LookupError::ContainerRequired { pod, choices }
        }
        AgentLookupError::NotStarted { pod, container } => {
            LookupError::NotStarted { pod, container }
        }
    }
}
