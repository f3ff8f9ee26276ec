//! The controllers: level-triggered loops, each talking to the API server
//! through `corral_client` like any other client (so their writes pass the
//! same validation), each deriving everything from what the API holds, so a
//! master restart loses nothing and a controller can restart at any time.

use std::sync::Arc;
use std::time::Duration;

use corral_client::Client;
use tokio::task::JoinHandle;

pub mod deployment;
pub mod endpoints;
pub mod garbage_collector;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod replicaset;

/// The cluster-wide settings controllers work with (flags of corral-master).
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Pod addresses of the cluster, e.g. `10.244.0.0/16`.
    pub cluster_cidr: String,
    /// Prefix length of each node's pod CIDR.
    pub node_cidr_mask: u8,
    /// Service ClusterIPs, e.g. `10.96.0.0/16`.
    pub service_cidr: String,
    pub node_port_range: (u16, u16),
    /// A lease older than this makes its node NotReady.
    pub node_monitor_grace: Duration,
    pub node_monitor_period: Duration,
    /// Pods on a tainted node without their own toleration go after this.
    pub pod_eviction_timeout: Duration,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            cluster_cidr: "10.244.0.0/16".into(),
            node_cidr_mask: 24,
            service_cidr: "10.96.0.0/16".into(),
            node_port_range: (30000, 32767),
            node_monitor_grace: Duration::from_secs(40),
            node_monitor_period: Duration::from_secs(5),
            pod_eviction_timeout: Duration::from_secs(300),
        }
    }
}

/// Starts every controller; each runs until the master exits.
pub fn spawn_all(client: Client, cfg: ControllerConfig) -> Vec<JoinHandle<()>> {
    let cfg = Arc::new(cfg);
    vec![
        tokio::spawn(replicaset::run(client.clone(), cfg.clone())),
        tokio::spawn(deployment::run(client.clone(), cfg.clone())),
        tokio::spawn(node_ipam::run(client.clone(), cfg.clone())),
        tokio::spawn(node_lifecycle::run(client.clone(), cfg.clone())),
        tokio::spawn(endpoints::run(client.clone(), cfg.clone())),
        tokio::spawn(garbage_collector::run(client, cfg)),
    ]
}
