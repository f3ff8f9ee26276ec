//! The Node object: registration (create, or update when it exists), the pod
//! CIDR the master assigns, and the node status written every
//! `--node-status-period` or as soon as a fact changes.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use corral_api::core::{ConditionStatus, Node, NodeCondition};
use corral_api::Time;
use corral_client::{Cache, Client};
use corral_net::Ipv4Cidr;

use super::{Backoff, ClusterError, Quiet};
use crate::config::{Config, JoinConfig};
use crate::node::{NodeConfig, NodeError};

/// How often node facts (and the informer's copy of the Node) are
/// compared with what was last written; no request is made for it.
const FACTS_CHECK: Duration = Duration::from_secs(2);
/// How often the Node is read while waiting for its pod CIDR.
const CIDR_POLL: Duration = Duration::from_secs(1);

/// The Node this agent registers: host facts, `--node-labels`, the API
/// port, Ready, and `pod_cidr` when the agent already runs with one.
pub fn node_object(
    cfg: &Config,
    join: &JoinConfig,
    pod_cidr: Option<Ipv4Cidr>,
) -> Result<Node, NodeError> {
    let mut node = crate::node::node(&NodeConfig {
        hostname: Some(cfg.node_name.clone()),
        internal_ip: Some(IpAddr::V4(cfg.node_ip)),
        ..NodeConfig::default()
    })?;
    node.metadata
        .labels
        .extend(join.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    if let Some(c) = pod_cidr {
        node.spec.pod_cidr = c.to_string();
        node.spec.pod_cidrs = vec![c.to_string()];
    }
    if let Some(st) = node.status.as_mut() {
        st.daemon_endpoints = Some(serde_json::json!({
            "kubeletEndpoint": {"Port": cfg.listen.port()}
        }));
        st.conditions = vec![ready_condition(None, Time::now())];
    }
    Ok(node)
}

/// Ready=True as of `now`, keeping the transition time of a previous
/// Ready=True.
pub fn ready_condition(prev: Option<&NodeCondition>, now: Time) -> NodeCondition {
    let since = prev
        .filter(|c| c.status == ConditionStatus::True)
        .and_then(|c| c.last_transition_time)
        .unwrap_or(now);
    NodeCondition {
        type_: "Ready".into(),
        status: ConditionStatus::True,
        last_heartbeat_time: Some(now),
        last_transition_time: Some(since),
        reason: "KubeletReady".into(),
        message: "corral-agent is posting ready status".into(),
    }
}

/// Create the Node, or bring an existing one up to date (labels merged,
/// status replaced); the server's Node afterwards.
pub async fn register(client: &Client, node: &Node) -> Result<Node, corral_client::Error> {
    let name = &node.metadata.name;
    let existing = match client.get_opt::<Node>("", name).await? {
        Some(n) => n,
        None => match client.create(node).await {
            Ok(created) => return write_status(client, created, node).await,
            Err(e) if e.is_already_exists() => client.get::<Node>("", name).await?,
            Err(e) => return Err(e),
        },
    };
    let mut wanted = existing.clone();
    wanted.metadata.labels.extend(
        node.metadata
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    if wanted.spec.pod_cidr.is_empty() && !node.spec.pod_cidr.is_empty() {
        wanted.spec.pod_cidr = node.spec.pod_cidr.clone();
        wanted.spec.pod_cidrs = node.spec.pod_cidrs.clone();
    }
    let current = if wanted != existing {
        client.update(&wanted).await?
    } else {
        existing
    };
    write_status(client, current, node).await
}

/// PUT the status of `ours` onto the server's `current` Node.
async fn write_status(
    client: &Client,
    mut current: Node,
    ours: &Node,
) -> Result<Node, corral_client::Error> {
    let mut status = ours.status.clone().unwrap_or_default();
    let prev = current.condition("Ready").cloned();
    status.conditions = vec![ready_condition(prev.as_ref(), Time::now())];
    current.status = Some(status);
    client.update_status(&current).await
}

fn cidr_file(cfg: &Config) -> PathBuf {
    super::dir(cfg).join("pod-cidr")
}

/// The pod CIDR this node used before, if any.
pub fn saved_pod_cidr(cfg: &Config) -> Result<Option<Ipv4Cidr>, ClusterError> {
    let path = cidr_file(cfg);
    match std::fs::read_to_string(&path) {
        Ok(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|e: corral_net::Error| ClusterError::Format {
                path,
                msg: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ClusterError::Io {
            what: "read",
            path,
            source,
        }),
    }
}

/// The node's pod CIDR: the one it used before (so a restart while the
/// master is down keeps its network), else the master's assignment,
/// waited for with the Node registered meanwhile (retrying with back-off).
pub async fn pod_cidr(client: &Client, cfg: &Config) -> Result<Ipv4Cidr, ClusterError> {
    if let Some(c) = saved_pod_cidr(cfg)? {
        return Ok(c);
    }
    let join = cfg
        .join
        .as_ref()
        .expect("pod_cidr is only asked when joined");
    let mut backoff = Backoff::default();
    let mut registered = false;
    loop {
        let step = if registered {
            client.get::<Node>("", &cfg.node_name).await
        } else {
            let node = node_object(cfg, join, None)?;
            register(client, &node).await
        };
        match step {
            Ok(node) => {
                if !registered {
                    eprintln!(
                        "corral-agent: node {} registered with {}; waiting for its pod CIDR",
                        cfg.node_name,
                        client.server()
                    );
                }
                registered = true;
                backoff.reset();
                if let Ok(c) = node.spec.pod_cidr.parse::<Ipv4Cidr>() {
                    crate::state::write_atomic(&cidr_file(cfg), c.to_string().as_bytes())?;
                    eprintln!("corral-agent: pod CIDR {c} assigned by the master");
                    return Ok(c);
                }
                tokio::time::sleep(CIDR_POLL).await;
            }
            Err(e) => {
                let wait = backoff.fail();
                eprintln!(
                    "corral-agent: register node {} with {}: {e}; retry in {}s",
                    cfg.node_name,
                    client.server(),
                    wait.as_secs()
                );
                if e.is_not_found() {
                    registered = false;
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Keep the Node registered and its status current: written every
/// `--node-status-period`, when a fact changes, and again (created if it
/// was deleted) after any failure, with back-off.
pub async fn node_status_loop(client: Client, cfg: Config, join: JoinConfig, nodes: Cache<Node>) {
    let mut backoff = Backoff::default();
    let mut last: Option<(serde_json::Value, Instant)> = None;
    let mut warned_cidr = false;
    let mut quiet = Quiet::default();
    let what = format!("status of node {}", cfg.node_name);
    loop {
        let node = match node_object(&cfg, &join, Some(cfg.pod_cidr)) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("corral-agent: node facts: {e}");
                tokio::time::sleep(backoff.fail()).await;
                continue;
            }
        };
        let facts = facts_key(&node);
        // Marked NotReady/Unknown by the node lifecycle controller (say,
        // while the master could not be reached): say Ready again now.
        let doubted = nodes.get("", &cfg.node_name).is_some_and(|n| !n.is_ready());
        let due = match &last {
            Some((f, at)) => *f != facts || at.elapsed() >= join.node_status_period || doubted,
            None => true,
        };
        if !due {
            tokio::time::sleep(FACTS_CHECK.min(join.node_status_period)).await;
            continue;
        }
        match register(&client, &node).await {
            Ok(server) => {
                if server.spec.pod_cidr != node.spec.pod_cidr && !warned_cidr {
                    warned_cidr = true;
                    eprintln!(
                        "corral-agent: the master says node {} has pod CIDR {:?}; this agent keeps {} (its running pods use it); remove {} and restart the agent to take the new one",
                        cfg.node_name,
                        server.spec.pod_cidr,
                        cfg.pod_cidr,
                        cidr_file(&cfg).display()
                    );
                }
                quiet.ok(&what);
                backoff.reset();
                last = Some((facts, Instant::now()));
            }
            Err(e) => {
                quiet.failed(&what, e.to_string());
                tokio::time::sleep(backoff.fail()).await;
            }
        }
    }
}

/// What of the Node is compared to decide a write: labels, spec and status
/// without the heartbeat (which changes every time).
fn facts_key(node: &Node) -> serde_json::Value {
    let mut status = node.status.clone().unwrap_or_default();
    status.conditions.clear();
    // Free memory moves all the time; capacity and allocatable do not.
    serde_json::json!({
        "labels": node.metadata.labels,
        "spec": node.spec,
        "status": status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &std::path::Path) -> Config {
        use clap::Parser;
        let args = crate::config::Args::parse_from([
            "corral-agent",
            "--data-dir",
            dir.to_str().unwrap(),
            "--server",
            "https://127.0.0.1:6443",
            "--token",
            "t",
            "--node-name",
            "n1",
            "--listen",
            "0.0.0.0:10999",
            "--node-labels",
            "zone=a",
        ]);
        Config::from_args(&args).unwrap()
    }

    #[test]
    fn node_object_has_what_the_master_needs() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path());
        let j = c.join.clone().unwrap();
        let n = node_object(&c, &j, Some("10.244.3.0/24".parse().unwrap())).unwrap();
        assert_eq!(n.metadata.name, "n1");
        assert_eq!(n.metadata.labels["kubernetes.io/hostname"], "n1");
        assert_eq!(n.metadata.labels["kubernetes.io/os"], "linux");
        assert_eq!(n.metadata.labels["zone"], "a");
        assert_eq!(n.spec.pod_cidr, "10.244.3.0/24");
        let st = n.status.as_ref().unwrap();
        assert!(st.capacity.contains_key("cpu") && st.allocatable.contains_key("pods"));
        let ip = st
            .addresses
            .iter()
            .find(|a| a.type_ == "InternalIP")
            .unwrap();
        assert_eq!(ip.address, "127.0.0.1");
        assert_eq!(
            st.daemon_endpoints.as_ref().unwrap()["kubeletEndpoint"]["Port"],
            10999
        );
        assert!(n.is_ready());
    }

    #[test]
    fn ready_keeps_its_transition_time() {
        let t0 = Time::from_unix(1000);
        let first = ready_condition(None, t0);
        let later = ready_condition(Some(&first), Time::from_unix(2000));
        assert_eq!(later.last_transition_time, Some(t0));
        assert_eq!(later.last_heartbeat_time, Some(Time::from_unix(2000)));
        let mut unknown = first.clone();
        unknown.status = ConditionStatus::Unknown;
        let back = ready_condition(Some(&unknown), Time::from_unix(3000));
        assert_eq!(back.last_transition_time, Some(Time::from_unix(3000)));
    }

    #[test]
    fn saved_cidr_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path());
        assert_eq!(saved_pod_cidr(&c).unwrap(), None);
        crate::state::write_atomic(&cidr_file(&c), b"10.244.7.0/24\n").unwrap();
        assert_eq!(
            saved_pod_cidr(&c).unwrap().unwrap().to_string(),
            "10.244.7.0/24"
        );
        std::fs::write(cidr_file(&c), "junk").unwrap();
        assert!(saved_pod_cidr(&c).is_err());
    }
}
