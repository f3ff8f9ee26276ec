//! The agent's command line. Every flag has a `CORRAL_AGENT_*` environment
//! twin so tests run agents side by side in temporary directories.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "corral-agent",
    version,
    about = "The Corral node agent: runs the static pods of a manifests directory"
)]
pub struct Args {
    /// Pod state, sandboxes, logs and status files.
    #[arg(
        long,
        env = "CORRAL_AGENT_DATA_DIR",
        default_value = "/var/lib/corral/agent"
    )]
    pub data_dir: PathBuf,
    /// Static pod manifests (YAML or JSON, several Pods per file allowed).
    #[arg(
        long,
        env = "CORRAL_AGENT_MANIFESTS",
        default_value = "/etc/corral/manifests"
    )]
    pub manifests: PathBuf,
    /// This node's pod network; the first address is the bridge's.
    #[arg(long, env = "CORRAL_AGENT_POD_CIDR", default_value = "10.244.0.0/24")]
    pub pod_cidr: String,
    /// Address of the agent's HTTP API.
    #[arg(long, env = "CORRAL_AGENT_LISTEN", default_value = "127.0.0.1:10250")]
    pub listen: SocketAddr,
    /// File holding the bearer token of the HTTP API.
    #[arg(
        long,
        env = "CORRAL_AGENT_TOKEN_FILE",
        default_value = "/var/lib/corral/agent/token"
    )]
    pub token_file: PathBuf,
    /// Bridge of the pod network.
    #[arg(long, env = "CORRAL_AGENT_BRIDGE", default_value = "corral-pods")]
    pub bridge: String,
    #[arg(
        long,
        env = "CORRAL_AGENT_IMAGES_ROOT",
        default_value = "/var/lib/corral/images"
    )]
    pub images_root: PathBuf,
    #[arg(
        long,
        env = "CORRAL_AGENT_RUNTIME_ROOT",
        default_value = "/run/corral/runtime"
    )]
    pub runtime_root: PathBuf,
    /// Node name reported in spec.nodeName (default: the host name).
    #[arg(long, env = "CORRAL_AGENT_NODE_NAME")]
    pub node_name: Option<String>,
    /// The node's address reported as hostIP (default: the bridge's address).
    #[arg(long, env = "CORRAL_AGENT_NODE_IP")]
    pub node_ip: Option<String>,
    /// First restart back-off in seconds (doubles per crash).
    #[arg(long, env = "CORRAL_AGENT_BACKOFF_BASE", default_value_t = 10.0)]
    pub backoff_base: f64,
    /// Longest restart back-off in seconds.
    #[arg(long, env = "CORRAL_AGENT_BACKOFF_MAX", default_value_t = 300.0)]
    pub backoff_max: f64,
    /// A container running this many seconds resets its back-off.
    #[arg(long, env = "CORRAL_AGENT_BACKOFF_RESET", default_value_t = 600.0)]
    pub backoff_reset: f64,
    /// How often each pod is reconciled, in seconds (exits are noticed sooner).
    #[arg(long, env = "CORRAL_AGENT_SYNC_PERIOD", default_value_t = 1.0)]
    pub sync_period: f64,
    /// corral-shim binary (default: next to corral-agent, else on PATH).
    #[arg(long, env = "CORRAL_AGENT_SHIM")]
    pub shim: Option<PathBuf>,
    /// corral-runtime binary (default: next to corral-agent, else on PATH).
    #[arg(long, env = "CORRAL_AGENT_RUNTIME")]
    pub runtime: Option<PathBuf>,
    /// Master URL (joining a master is not supported yet).
    #[arg(long, env = "CORRAL_AGENT_SERVER")]
    pub server: Option<String>,
    /// Join token for the master (joining a master is not supported yet).
    #[arg(long, env = "CORRAL_AGENT_JOIN_TOKEN_FILE")]
    pub join_token_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--pod-cidr {value:?}: {msg}")]
    PodCidr { value: String, msg: String },
    #[error("--{flag} {value}: must be a positive number of seconds")]
    Seconds { flag: &'static str, value: f64 },
    #[error("--node-ip {0:?}: not an IPv4 address")]
    NodeIp(String),
    #[error("--server/--join-token-file: joining a master is not supported yet; run without them (static pods only)")]
    JoinUnsupported,
}

/// The checked configuration the agent runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub manifests: PathBuf,
    pub pod_cidr: corral_net::Ipv4Cidr,
    pub listen: SocketAddr,
    pub token_file: PathBuf,
    pub bridge: String,
    pub images_root: PathBuf,
    pub runtime_root: PathBuf,
    pub node_name: String,
    pub node_ip: std::net::Ipv4Addr,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub backoff_reset: Duration,
    pub sync_period: Duration,
    pub shim: PathBuf,
    pub runtime: PathBuf,
}

impl Config {
    pub fn from_args(a: &Args) -> Result<Config, ConfigError> {
        if a.server.is_some() || a.join_token_file.is_some() {
            return Err(ConfigError::JoinUnsupported);
        }
        let pod_cidr: corral_net::Ipv4Cidr =
            a.pod_cidr
                .parse()
                .map_err(|e: corral_net::Error| ConfigError::PodCidr {
                    value: a.pod_cidr.clone(),
                    msg: e.to_string(),
                })?;
        let node_ip = match &a.node_ip {
            Some(s) => s.parse().map_err(|_| ConfigError::NodeIp(s.clone()))?,
            None => pod_cidr.gateway(),
        };
        Ok(Config {
            data_dir: absolute(&a.data_dir),
            manifests: absolute(&a.manifests),
            pod_cidr,
            listen: a.listen,
            token_file: absolute(&a.token_file),
            bridge: a.bridge.clone(),
            images_root: absolute(&a.images_root),
            runtime_root: absolute(&a.runtime_root),
            node_name: a.node_name.clone().unwrap_or_else(host_name),
            node_ip,
            backoff_base: seconds("backoff-base", a.backoff_base)?,
            backoff_max: seconds("backoff-max", a.backoff_max)?,
            backoff_reset: seconds("backoff-reset", a.backoff_reset)?,
            sync_period: seconds("sync-period", a.sync_period)?,
            shim: a.shim.clone().unwrap_or_else(|| sibling("corral-shim")),
            runtime: a
                .runtime
                .clone()
                .unwrap_or_else(|| sibling("corral-runtime")),
        })
    }

    /// `<data>/pods`: one directory per pod.
    pub fn pods_dir(&self) -> PathBuf {
        self.data_dir.join("pods")
    }

    /// `<data>/ns`: the bind-mounted namespaces of the sandboxes.
    pub fn ns_dir(&self) -> PathBuf {
        self.data_dir.join("ns")
    }

    /// `<data>/status`: one `<ns>_<name>.json` per pod.
    pub fn status_dir(&self) -> PathBuf {
        self.data_dir.join("status")
    }

    /// `<data>/net`: the IPAM leases of the pod network.
    pub fn net_dir(&self) -> PathBuf {
        self.data_dir.join("net").join(&self.bridge)
    }
}

fn seconds(flag: &'static str, value: f64) -> Result<Duration, ConfigError> {
    if value > 0.0 && value.is_finite() {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(ConfigError::Seconds { flag, value })
    }
}

fn absolute(p: &std::path::Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
        .to_ascii_lowercase()
}

/// A binary next to our own executable, else the bare name (PATH lookup).
fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(name)))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["corral-agent"];
        argv.extend_from_slice(extra);
        Config::from_args(&Args::parse_from(argv))
    }

    #[test]
    fn defaults_and_checks() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/corral/agent"));
        assert_eq!(c.pod_cidr.to_string(), "10.244.0.0/24");
        assert_eq!(c.node_ip.to_string(), "10.244.0.1");
        assert_eq!(c.backoff_base, Duration::from_secs(10));
        assert_eq!(c.backoff_max, Duration::from_secs(300));
        let e = parse(&["--pod-cidr", "10.1.2.3"]).unwrap_err().to_string();
        assert!(e.contains("--pod-cidr"), "{e}");
        let e = parse(&["--backoff-base", "0"]).unwrap_err().to_string();
        assert!(e.contains("--backoff-base"), "{e}");
        let e = parse(&["--server", "https://m:6443"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not supported yet"), "{e}");
    }
}
