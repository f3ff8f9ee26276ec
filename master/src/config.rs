//! The master's command line; every flag has a `CORRAL_MASTER_*` twin so
//! tests run several masters side by side in temporary directories.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Request bodies above this size get 413 (Kubernetes allows 3 MiB objects).
pub const DEFAULT_MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

#[derive(Debug, Clone, Parser)]
#[command(name = "corral-master", version, about = "Corral's API server")]
pub struct Config {
    /// Where the embedded store, the certificates and the tokens live.
    #[arg(
        long,
        env = "CORRAL_MASTER_DATA_DIR",
        default_value = "/var/lib/corral/master"
    )]
    pub data_dir: PathBuf,

    /// Address of the HTTPS listener.
    #[arg(long, env = "CORRAL_MASTER_LISTEN", default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,

    /// The address clients use to reach this master: added to the serving
    /// certificate and written into admin.kubeconfig. Default: the listen
    /// address (127.0.0.1 when it listens on every address).
    #[arg(long, env = "CORRAL_MASTER_ADVERTISE_ADDRESS")]
    pub advertise_address: Option<String>,

    /// `etcd://HOST:PORT[,HOST:PORT...]`; the embedded store when absent.
    #[arg(long, env = "CORRAL_MASTER_STORE")]
    pub store: Option<String>,

    /// Largest accepted request body in bytes.
    #[arg(long, env = "CORRAL_MASTER_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,

    /// How often the store's history older than `--compact-keep` revisions is
    /// compacted, in seconds (0 = never).
    #[arg(long, env = "CORRAL_MASTER_COMPACT_INTERVAL", default_value_t = 300)]
    pub compact_interval: u64,

    /// How many revisions of history compaction keeps for watchers to resume from.
    #[arg(long, env = "CORRAL_MASTER_COMPACT_KEEP", default_value_t = 1000)]
    pub compact_keep: u64,

    /// Pod addresses of the whole cluster; each node gets a slice of it.
    #[arg(
        long,
        env = "CORRAL_MASTER_CLUSTER_CIDR",
        default_value = "10.244.0.0/16"
    )]
    pub cluster_cidr: String,

    /// Prefix length of each node's slice of `--cluster-cidr`.
    #[arg(long, env = "CORRAL_MASTER_NODE_CIDR_MASK_SIZE", default_value_t = 24)]
    pub node_cidr_mask_size: u8,

    /// Where Service ClusterIPs come from.
    #[arg(
        long,
        env = "CORRAL_MASTER_SERVICE_CLUSTER_IP_RANGE",
        default_value = "10.96.0.0/16"
    )]
    pub service_cluster_ip_range: String,

    /// NodePorts are taken from this range, `FIRST-LAST`.
    #[arg(
        long,
        env = "CORRAL_MASTER_SERVICE_NODE_PORT_RANGE",
        default_value = "30000-32767",
        value_parser = parse_port_range
    )]
    pub service_node_port_range: (u16, u16),

    /// A node whose lease is this old goes NotReady (seconds, fractions allowed).
    #[arg(
        long,
        env = "CORRAL_MASTER_NODE_MONITOR_GRACE_PERIOD",
        default_value = "40",
        value_parser = parse_seconds
    )]
    pub node_monitor_grace_period: Duration,

    /// How often node leases are checked (seconds).
    #[arg(
        long,
        env = "CORRAL_MASTER_NODE_MONITOR_PERIOD",
        default_value = "5",
        value_parser = parse_seconds
    )]
    pub node_monitor_period: Duration,

    /// Pods on an unreachable or not-ready node without their own toleration
    /// are evicted after this long (seconds).
    #[arg(
        long,
        env = "CORRAL_MASTER_POD_EVICTION_TIMEOUT",
        default_value = "300",
        value_parser = parse_seconds
    )]
    pub pod_eviction_timeout: Duration,

    /// Run the API server only: no scheduler, no controllers.
    #[arg(long, env = "CORRAL_MASTER_NO_CONTROLLERS")]
    pub no_controllers: bool,
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} is not a valid duration"))
}

fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{s:?} is not a port range FIRST-LAST");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b): (u16, u16) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if a == 0 || a > b {
        return Err(bad());
    }
    Ok((a, b))
}

impl Config {
    /// The host clients are told to connect to.
    pub fn advertise_host(&self) -> String {
        match &self.advertise_address {
            Some(a) => a.clone(),
            None if self.listen.ip().is_unspecified() => "127.0.0.1".into(),
            None => self.listen.ip().to_string(),
        }
    }

    /// `https://HOST:PORT` as written into admin.kubeconfig.
    pub fn server_url(&self) -> String {
        let host = self.advertise_host();
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        format!("https://{host}:{}", self.listen.port())
    }

    /// What the scheduler and controllers are told.
    pub fn controllers(&self) -> crate::controllers::ControllerConfig {
        crate::controllers::ControllerConfig {
            cluster_cidr: self.cluster_cidr.clone(),
            node_cidr_mask: self.node_cidr_mask_size,
            service_cidr: self.service_cluster_ip_range.clone(),
            node_port_range: self.service_node_port_range,
            node_monitor_grace: self.node_monitor_grace_period,
            node_monitor_period: self.node_monitor_period,
            pod_eviction_timeout: self.pod_eviction_timeout,
        }
    }

    pub fn compact_interval(&self) -> Option<Duration> {
        (self.compact_interval > 0).then(|| Duration::from_secs(self.compact_interval))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_urls() {
        let c = Config::try_parse_from(["corral-master"]).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/corral/master"));
        assert_eq!(c.server_url(), "https://127.0.0.1:6443");
        let c = Config::try_parse_from(["corral-master", "--listen", "0.0.0.0:7000"]).unwrap();
        assert_eq!(c.advertise_host(), "127.0.0.1");
        let c = Config::try_parse_from([
            "corral-master",
            "--listen",
            "[::1]:7000",
            "--advertise-address",
            "::1",
        ])
        .unwrap();
        assert_eq!(c.server_url(), "https://[::1]:7000");
    }

    #[test]
    fn cluster_flags() {
        let c = Config::try_parse_from([
            "corral-master",
            "--node-monitor-grace-period",
            "1.5",
            "--service-node-port-range",
            "31000-31010",
        ])
        .unwrap();
        assert_eq!(c.node_monitor_grace_period, Duration::from_millis(1500));
        assert_eq!(c.service_node_port_range, (31000, 31010));
        assert_eq!(c.pod_eviction_timeout, Duration::from_secs(300));
        assert!(
            Config::try_parse_from(["corral-master", "--service-node-port-range", "9-3"]).is_err()
        );
        assert!(Config::try_parse_from(["corral-master", "--pod-eviction-timeout", "x"]).is_err());
    }
}
