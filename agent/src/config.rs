//! The agent's command line. Every flag has a `CORRAL_AGENT_*` environment
//! twin so tests run agents side by side in temporary directories.

use std::collections::BTreeMap;
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
    /// This node's pod network; the first address is the bridge's. Only
    /// standalone: joined to a master, the master assigns it.
    #[arg(long, env = "CORRAL_AGENT_POD_CIDR", default_value = "10.244.0.0/24")]
    pub pod_cidr: String,
    /// Address of the agent's HTTP API (default 127.0.0.1:10250; joined to
    /// a master, --node-ip:10250, where the master proxies logs and exec).
    #[arg(long, env = "CORRAL_AGENT_LISTEN")]
    pub listen: Option<SocketAddr>,
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
    /// How many pods may be starting (sandbox, network, first containers)
    /// at once; the rest wait their turn in arrival order. 0: no limit.
    #[arg(long, env = "CORRAL_AGENT_PARALLEL_STARTS", default_value_t = 0)]
    pub parallel_starts: usize,
    /// corral-shim binary (default: next to corral-agent, else on PATH).
    #[arg(long, env = "CORRAL_AGENT_SHIM")]
    pub shim: Option<PathBuf>,
    /// corral-runtime binary (default: next to corral-agent, else on PATH).
    #[arg(long, env = "CORRAL_AGENT_RUNTIME")]
    pub runtime: Option<PathBuf>,
    /// Master URL (e.g. https://10.0.0.1:6443): join it. Without it the
    /// agent runs only the static pods of --manifests.
    #[arg(long, env = "CORRAL_AGENT_SERVER")]
    pub server: Option<String>,
    /// File holding the master's join token (its DATA_DIR/join-token).
    #[arg(long, env = "CORRAL_AGENT_JOIN_TOKEN_FILE")]
    pub join_token_file: Option<PathBuf>,
    /// The master's join token itself (--join-token-file is preferred: a
    /// flag shows in the process list).
    #[arg(
        long = "token",
        env = "CORRAL_AGENT_JOIN_TOKEN",
        hide_env_values = true
    )]
    pub join_token: Option<String>,
    /// The master's CA certificate (PEM); without it the system roots.
    #[arg(long, env = "CORRAL_AGENT_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Labels of this node, `k=v,k2=v2`.
    #[arg(long, env = "CORRAL_AGENT_NODE_LABELS", default_value = "")]
    pub node_labels: String,
    /// Every node's pods together: traffic between pods is not masqueraded.
    #[arg(
        long,
        env = "CORRAL_AGENT_CLUSTER_CIDR",
        default_value = "10.244.0.0/16"
    )]
    pub cluster_cidr: String,
    /// How long the master waits for a lease renewal before it suspects the node.
    #[arg(long, env = "CORRAL_AGENT_LEASE_DURATION", default_value_t = 40.0)]
    pub lease_duration: f64,
    /// How often the node's Lease is renewed, in seconds.
    #[arg(long, env = "CORRAL_AGENT_LEASE_RENEW", default_value_t = 10.0)]
    pub lease_renew: f64,
    /// nftables table (family ip) of the Service rules when joined.
    #[arg(long, env = "CORRAL_AGENT_SERVICES_TABLE", default_value = corral_net::services::DEFAULT_TABLE)]
    pub services_table: String,
    /// How often the Node's status is written when nothing changed, in seconds.
    #[arg(long, env = "CORRAL_AGENT_NODE_STATUS_PERIOD", default_value_t = 60.0)]
    pub node_status_period: f64,
}

/// kubelet's port.
pub const DEFAULT_PORT: u16 = 10250;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--pod-cidr {value:?}: {msg}")]
    PodCidr { value: String, msg: String },
    #[error("--{flag} {value}: must be a positive number of seconds")]
    Seconds { flag: &'static str, value: f64 },
    #[error("--node-ip {0:?}: not an IPv4 address")]
    NodeIp(String),
    #[error("--server {0}: needs --join-token-file or --token")]
    NoJoinToken(String),
    #[error("--join-token-file/--token/--ca-file: only with --server")]
    NoServer,
    #[error("--server {value:?}: {msg}")]
    Server { value: String, msg: String },
    #[error("--node-labels {value:?}: {msg}")]
    Labels { value: String, msg: String },
    #[error("--cluster-cidr {value:?}: {msg}")]
    ClusterCidr { value: String, msg: String },
}

/// How to join a master (`--server` given).
#[derive(Debug, Clone)]
pub struct JoinConfig {
    pub server: String,
    pub token: TokenSource,
    pub ca_file: Option<PathBuf>,
    pub labels: BTreeMap<String, String>,
    pub cluster_cidr: corral_net::Ipv4Cidr,
    pub lease_duration: Duration,
    pub lease_renew: Duration,
    pub node_status_period: Duration,
    pub services_table: String,
}

#[derive(Debug, Clone)]
pub enum TokenSource {
    File(PathBuf),
    Value(String),
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
    /// Pods starting at once (0: any number).
    pub parallel_starts: usize,
    pub shim: PathBuf,
    pub runtime: PathBuf,
    /// Set when the agent joins a master.
    pub join: Option<JoinConfig>,
}

impl Config {
    pub fn from_args(a: &Args) -> Result<Config, ConfigError> {
        let join = join_config(a)?;
        let pod_cidr: corral_net::Ipv4Cidr =
            a.pod_cidr
                .parse()
                .map_err(|e: corral_net::Error| ConfigError::PodCidr {
                    value: a.pod_cidr.clone(),
                    msg: e.to_string(),
                })?;
        let node_ip = match (&a.node_ip, &join) {
            (Some(s), _) => s.parse().map_err(|_| ConfigError::NodeIp(s.clone()))?,
            (None, Some(j)) => route_source(&j.server)?,
            (None, None) => pod_cidr.gateway(),
        };
        Ok(Config {
            data_dir: absolute(&a.data_dir),
            manifests: absolute(&a.manifests),
            pod_cidr,
            listen: a.listen.unwrap_or_else(|| {
                let ip = if join.is_some() {
                    node_ip
                } else {
                    std::net::Ipv4Addr::LOCALHOST
                };
                SocketAddr::from((ip, DEFAULT_PORT))
            }),
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
            parallel_starts: a.parallel_starts,
            shim: a.shim.clone().unwrap_or_else(|| sibling("corral-shim")),
            runtime: a
                .runtime
                .clone()
                .unwrap_or_else(|| sibling("corral-runtime")),
            join,
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

fn join_config(a: &Args) -> Result<Option<JoinConfig>, ConfigError> {
    let Some(server) = a.server.clone() else {
        if a.join_token_file.is_some() || a.join_token.is_some() || a.ca_file.is_some() {
            return Err(ConfigError::NoServer);
        }
        return Ok(None);
    };
    let token = match (&a.join_token_file, &a.join_token) {
        (Some(f), _) => TokenSource::File(absolute(f)),
        (None, Some(t)) => TokenSource::Value(t.clone()),
        (None, None) => return Err(ConfigError::NoJoinToken(server)),
    };
    let cluster_cidr =
        a.cluster_cidr
            .parse()
            .map_err(|e: corral_net::Error| ConfigError::ClusterCidr {
                value: a.cluster_cidr.clone(),
                msg: e.to_string(),
            })?;
    Ok(Some(JoinConfig {
        server,
        token,
        ca_file: a.ca_file.as_deref().map(absolute),
        labels: parse_labels(&a.node_labels)?,
        cluster_cidr,
        lease_duration: seconds("lease-duration", a.lease_duration)?,
        lease_renew: seconds("lease-renew", a.lease_renew)?,
        node_status_period: seconds("node-status-period", a.node_status_period)?,
        services_table: a.services_table.clone(),
    }))
}

/// `k=v,k2=v2` (empty: none), keys and values checked as Kubernetes does.
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let err = |msg: String| ConfigError::Labels {
        value: s.to_string(),
        msg,
    };
    let mut out = BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| err(format!("{item:?} is not key=value")))?;
        let mut labels = BTreeMap::new();
        labels.insert(k.to_string(), v.to_string());
        let errs = corral_api::validation::validate_labels(
            &labels,
            &corral_api::validation::Path::new("metadata.labels"),
        );
        if !errs.is_empty() {
            return Err(err(corral_api::validation::join_errors(&errs)));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// The host part and port of `https://host:port/...` (port 443 by default).
fn server_host_port(server: &str) -> Result<(String, u16), ConfigError> {
    let err = |msg: &str| ConfigError::Server {
        value: server.to_string(),
        msg: msg.to_string(),
    };
    let rest = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .ok_or_else(|| err("must start with https://"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(err("no host"));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            (h, p.parse().map_err(|_| err("the port is not a number"))?)
        }
        _ => (authority, 443),
    };
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}

/// The local address the kernel picks to reach the server: the address of
/// the interface that routes there (a UDP connect sends nothing).
fn route_source(server: &str) -> Result<std::net::Ipv4Addr, ConfigError> {
    use std::net::{IpAddr, ToSocketAddrs, UdpSocket};
    let (host, port) = server_host_port(server)?;
    let err = |msg: String| ConfigError::Server {
        value: server.to_string(),
        msg,
    };
    let target = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| err(format!("resolve {host}: {e} (give --node-ip)")))?
        .find(|a| a.is_ipv4())
        .ok_or_else(|| err(format!("{host} has no IPv4 address (give --node-ip)")))?;
    let sock = UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect(target).map(|()| s))
        .and_then(|s| s.local_addr())
        .map_err(|e| {
            err(format!(
                "find the address that routes to {target}: {e} (give --node-ip)"
            ))
        })?;
    match sock.ip() {
        IpAddr::V4(ip) => Ok(ip),
        IpAddr::V6(_) => Err(err("routes over IPv6 (give --node-ip)".into())),
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
        assert_eq!(c.listen.to_string(), "127.0.0.1:10250");
        assert_eq!(c.backoff_max, Duration::from_secs(300));
        let e = parse(&["--pod-cidr", "10.1.2.3"]).unwrap_err().to_string();
        assert!(e.contains("--pod-cidr"), "{e}");
        let e = parse(&["--backoff-base", "0"]).unwrap_err().to_string();
        assert!(e.contains("--backoff-base"), "{e}");
        assert!(c.join.is_none());
        let e = parse(&["--server", "https://m:6443"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--join-token-file or --token"), "{e}");
        let e = parse(&["--token", "t"]).unwrap_err().to_string();
        assert!(e.contains("only with --server"), "{e}");
    }

    #[test]
    fn joining() {
        let c = parse(&[
            "--server",
            "https://127.0.0.1:6443",
            "--token",
            "abc",
            "--node-labels",
            "zone=a, disk=ssd",
            "--lease-renew",
            "0.5",
        ])
        .unwrap();
        assert_eq!(c.node_ip.to_string(), "127.0.0.1", "routes to the server");
        let j = c.join.unwrap();
        assert!(matches!(j.token, TokenSource::Value(ref t) if t == "abc"));
        assert_eq!(j.labels["zone"], "a");
        assert_eq!(j.labels["disk"], "ssd");
        assert_eq!(j.lease_renew, Duration::from_millis(500));
        assert_eq!(j.lease_duration, Duration::from_secs(40));
        assert_eq!(j.cluster_cidr.to_string(), "10.244.0.0/16");
        let f = parse(&[
            "--server",
            "https://127.0.0.1:6443",
            "--token",
            "abc",
            "--join-token-file",
            "/t",
            "--node-ip",
            "10.1.1.1",
        ])
        .unwrap();
        assert!(
            matches!(f.join.unwrap().token, TokenSource::File(ref p) if p == std::path::Path::new("/t"))
        );
        assert_eq!(f.node_ip.to_string(), "10.1.1.1");
        assert_eq!(
            f.listen.to_string(),
            "10.1.1.1:10250",
            "reachable by the master"
        );
        let e = parse(&[
            "--server",
            "https://m",
            "--token",
            "t",
            "--node-labels",
            "a",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("not key=value"), "{e}");
        let e = parse(&["--server", "m:6443", "--token", "t"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("https://"), "{e}");
    }

    #[test]
    fn server_addresses() {
        assert_eq!(
            server_host_port("https://10.0.0.1:6443/").unwrap(),
            ("10.0.0.1".to_string(), 6443)
        );
        assert_eq!(
            server_host_port("https://master").unwrap(),
            ("master".to_string(), 443)
        );
        assert_eq!(
            server_host_port("https://[::1]:8443").unwrap(),
            ("::1".to_string(), 8443)
        );
    }
}
