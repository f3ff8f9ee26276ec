//! The agent joined to a master (`--server`): it registers its Node, waits
//! for the pod CIDR the master assigns, renews its Lease, runs the pods
//! bound to it next to the static pods, reports their status, and routes the
//! other nodes' pod CIDRs via their addresses.
//!
//! Everything here tolerates an unreachable master: the pods last known
//! (persisted under `<data>/cluster/`) keep running and reconciling, each
//! loop retries with back-off, and after a reconnect the informers relist
//! and the status reporter compares against what the server now holds.
//!
//! - [`register`]: the Node object, registration, pod CIDR, node status.
//! - [`lease`]: the heartbeat Lease in `kube-node-lease`.
//! - [`pods`]: the pods bound to this node as a pod source; graceful delete.
//! - [`mirror`]: API copies of the static pods (kubelet's mirror pods).
//! - [`status`]: pod status diffs patched to `pods/{name}/status`.
//! - [`routes`]: routes to the other nodes' pod CIDRs.
//! - [`proxy`]: Service virtual IPs and NodePorts in nftables (kube-proxy).

pub mod lease;
pub mod mirror;
pub mod pods;
pub mod proxy;
pub mod register;
pub mod routes;
pub mod status;

use std::path::{Path, PathBuf};
use std::time::Duration;

use corral_client::Client;

use crate::config::{Config, JoinConfig, TokenSource};
use crate::Agent;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: the join token is empty")]
    EmptyToken(String),
    #[error("client for {server}: {source}")]
    Client {
        server: String,
        source: corral_client::Error,
    },
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("node facts: {0}")]
    Node(#[from] crate::node::NodeError),
}

/// The master's join token: from the file (preferred) or the flag.
pub fn join_token(j: &JoinConfig) -> Result<String, ClusterError> {
    let (token, from) = match &j.token {
        TokenSource::File(p) => (
            std::fs::read_to_string(p).map_err(|source| ClusterError::Io {
                what: "read the join token",
                path: p.clone(),
                source,
            })?,
            p.display().to_string(),
        ),
        TokenSource::Value(t) => (t.clone(), "--token".to_string()),
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err(ClusterError::EmptyToken(from));
    }
    Ok(token)
}

/// A client of the master that trusts only `--ca-file` (when given).
pub fn client(j: &JoinConfig, token: &str) -> Result<Client, ClusterError> {
    let ca = match &j.ca_file {
        Some(p) => Some(std::fs::read(p).map_err(|source| ClusterError::Io {
            what: "read the master's CA",
            path: p.clone(),
            source,
        })?),
        None => None,
    };
    Client::new(&j.server, token, ca.as_deref()).map_err(|source| ClusterError::Client {
        server: j.server.clone(),
        source,
    })
}

/// `<data>/cluster`: what the agent remembers of the master.
pub fn dir(cfg: &Config) -> PathBuf {
    cfg.data_dir.join("cluster")
}

/// Start every loop of a joined agent on the current tokio runtime. The
/// agent already runs with its pod CIDR (see [`register::pod_cidr`]) and
/// the pods persisted by its last run.
pub fn spawn(agent: Agent, client: Client) {
    let cfg = agent.config().clone();
    let Some(join) = cfg.join.clone() else {
        return;
    };
    // One informer on the Nodes: routes to the others, and this node's
    // own copy (a Ready condition someone else changed is written back at once).
    let nodes = corral_client::Reflector::<corral_api::core::Node>::spawn(
        client.clone(),
        "",
        corral_client::ListParams::default(),
    );
    tokio::spawn(register::node_status_loop(
        client.clone(),
        cfg.clone(),
        join.clone(),
        nodes.cache(),
    ));
    tokio::spawn(lease::heartbeat(
        client.clone(),
        cfg.node_name.clone(),
        join.clone(),
    ));
    tokio::spawn(pods::run(agent, client.clone()));
    tokio::spawn(proxy::run(
        client.clone(),
        proxy::ProxyConfig {
            node_ips: vec![cfg.node_ip],
            cluster_cidr: join.cluster_cidr.to_string(),
            table: join.services_table.clone(),
            ..proxy::ProxyConfig::default()
        },
    ));
    tokio::spawn(routes::run(nodes, cfg.node_name.clone(), cfg.pod_cidr));
}

/// 1 s doubling to 30 s while failures repeat; reset after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            next: BACKOFF_FIRST,
        }
    }
}

impl Backoff {
    /// The wait before the next attempt, doubling the one after.
    pub fn fail(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        d
    }

    pub fn reset(&mut self) {
        self.next = BACKOFF_FIRST;
    }
}

/// Logs a loop's failure once, not at every retry while the master stays
/// away, and the recovery once.
#[derive(Debug, Default)]
pub struct Quiet {
    last: Option<String>,
}

impl Quiet {
    pub fn failed(&mut self, what: &str, msg: String) {
        if self.last.as_ref() != Some(&msg) {
            eprintln!("corral-agent: {what}: {msg}");
            self.last = Some(msg);
        }
    }

    pub fn ok(&mut self, what: &str) {
        if self.last.take().is_some() {
            eprintln!("corral-agent: {what}: working again");
        }
    }
}

/// Read a JSON record of the cluster directory; None when there is none.
pub(crate) fn load<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, ClusterError> {
    Ok(crate::state::load(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_thirty_seconds() {
        let mut b = Backoff::default();
        let waits: Vec<u64> = (0..7).map(|_| b.fail().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
        b.reset();
        assert_eq!(b.fail(), BACKOFF_FIRST);
    }

    #[test]
    fn join_token_from_file_or_flag() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("join-token");
        std::fs::write(&f, "s3cret\n").unwrap();
        let mut j =
            crate::config::Config::from_args(&<crate::config::Args as clap::Parser>::parse_from([
                "corral-agent",
                "--server",
                "https://127.0.0.1:6443",
                "--join-token-file",
                f.to_str().unwrap(),
            ]))
            .unwrap()
            .join
            .unwrap();
        assert_eq!(join_token(&j).unwrap(), "s3cret");
        std::fs::write(&f, "\n").unwrap();
        assert!(join_token(&j).unwrap_err().to_string().contains("empty"));
        j.token = TokenSource::Value("abc".into());
        assert_eq!(join_token(&j).unwrap(), "abc");
        j.token = TokenSource::File(dir.path().join("missing"));
        let e = join_token(&j).unwrap_err().to_string();
        assert!(
            e.contains("read the join token") && e.contains("missing"),
            "{e}"
        );
    }
}
