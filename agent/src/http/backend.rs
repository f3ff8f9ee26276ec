//! The agent itself as the HTTP server's backend.

use corral_api::core::Pod;

use super::{Backend, ContainerInfo, LookupError};
use crate::pods::Agent;

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
    }
}
