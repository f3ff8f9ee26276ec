//! Node IPAM: every Node without `spec.podCIDR` gets the next free block of
//! `--node-cidr-mask-size` from `--cluster-cidr`.
//!
//! What is in use is derived from all Nodes on every sync, so a restarted
//! master cannot hand out a block twice, and a deleted Node's block is free
//! again as soon as the Node is gone. The write carries the Node's
//! resourceVersion: a Node that got a block meanwhile makes it a conflict,
//! retried at the next sync.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use corral_api::core::Node;
use corral_client::{Client, ListParams, Patch, Reflector};
use serde_json::json;

use super::ControllerConfig;
use crate::cidr::Cidr;

/// How often the Nodes are looked at without any change reported.
const RESYNC: Duration = Duration::from_secs(30);

/// One Node as IPAM sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCidr {
    pub name: String,
    /// `spec.podCIDR` ("" when unset).
    pub pod_cidr: String,
}

/// The blocks to give to the Nodes that have none, in name order. Blocks
/// of Nodes that have one (even a foreign one, outside the cluster CIDR or
/// of another size) are never handed out again; Nodes left when the range
/// is exhausted are missing from the answer.
pub fn plan(cluster: Cidr, mask: u8, nodes: &[NodeCidr]) -> Vec<(String, Cidr)> {
    let mut used = BTreeSet::new();
    for n in nodes {
        let Ok(c) = n.pod_cidr.parse::<Cidr>() else {
            continue;
        };
        // A block of another size takes every block of `mask` it touches.
        let first = Cidr::new(c.network(), mask).and_then(|b| cluster.subnet_index(&b));
        let span = if c.prefix() < mask {
            1u64 << u32::from(mask - c.prefix())
        } else {
            1
        };
        if let Some(first) = first {
            used.extend(first..first + span);
        }
    }
    let total = cluster.subnet_count(mask);
    let mut free = (0..total).filter(|i| !used.contains(i));
    let mut out = Vec::new();
    let mut wanting: Vec<&NodeCidr> = nodes.iter().filter(|n| n.pod_cidr.is_empty()).collect();
    wanting.sort_by(|a, b| a.name.cmp(&b.name));
    for n in wanting {
        let Some(block) = free.next().and_then(|i| cluster.subnet(mask, i)) else {
            break;
        };
        out.push((n.name.clone(), block));
    }
    out
}

pub async fn run(client: Client, cfg: Arc<ControllerConfig>) {
    let cluster = match cfg.cluster_cidr.parse::<Cidr>() {
        Ok(c) if c.subnet_count(cfg.node_cidr_mask) > 0 => c,
        Ok(c) => {
            eprintln!(
                "corral-master: node-ipam: --node-cidr-mask-size {} does not fit in --cluster-cidr {c}; pod CIDRs are not allocated",
                cfg.node_cidr_mask
            );
            return std::future::pending().await;
        }
        Err(e) => {
            eprintln!("corral-master: node-ipam: --cluster-cidr: {e}; pod CIDRs are not allocated");
            return std::future::pending().await;
        }
    };
    let nodes = Reflector::<Node>::spawn(client.clone(), "", ListParams::default());
    let mut changes = nodes.subscribe();
    let cache = nodes.cache();
    cache.ready().await;
    let mut reported_full = false;
    loop {
        let view: Vec<NodeCidr> = cache
            .list()
            .iter()
            .map(|n| NodeCidr {
                name: n.metadata.name.clone(),
                pod_cidr: n.spec.pod_cidr.clone(),
            })
            .collect();
        let assignments = plan(cluster, cfg.node_cidr_mask, &view);
        let wanting = view.iter().filter(|n| n.pod_cidr.is_empty()).count();
        if assignments.len() < wanting && !reported_full {
            eprintln!(
                "corral-master: node-ipam: --cluster-cidr {cluster} has no free /{} left for {} node(s)",
                cfg.node_cidr_mask,
                wanting - assignments.len()
            );
        }
        reported_full = assignments.len() < wanting;
        let versions: BTreeMap<String, String> = cache
            .list()
            .iter()
            .map(|n| (n.metadata.name.clone(), n.metadata.resource_version.clone()))
            .collect();
        for (name, block) in assignments {
            let rv = versions.get(&name).cloned().unwrap_or_default();
            assign(&client, &name, &rv, block).await;
        }
        wait(&mut changes, RESYNC).await;
    }
}

/// Sets the block on the Node, if it is still the version that had none.
async fn assign(client: &Client, name: &str, rv: &str, block: Cidr) {
    let patch = Patch::Merge(json!({
        "metadata": {"resourceVersion": rv},
        "spec": {"podCIDR": block.to_string(), "podCIDRs": [block.to_string()]},
    }));
    match client.patch::<Node>("", name, &patch).await {
        Ok(_) => eprintln!("corral-master: node-ipam: node {name} gets pod CIDR {block}"),
        // Changed or deleted meanwhile: the next sync sees the new state.
        Err(e) if e.is_conflict() || e.is_not_found() => {}
        Err(e) => eprintln!("corral-master: node-ipam: setting the pod CIDR of node {name}: {e}"),
    }
}

/// Until something changed (drained, since the state is read whole) or `every` passed.
async fn wait<T: Clone>(rx: &mut tokio::sync::broadcast::Receiver<T>, every: Duration) {
    use tokio::sync::broadcast::error::RecvError;
    match tokio::time::timeout(every, rx.recv()).await {
        Ok(Err(RecvError::Closed)) => tokio::time::sleep(every).await,
        _ => drain(rx),
    }
}

fn drain<T: Clone>(rx: &mut tokio::sync::broadcast::Receiver<T>) {
    use tokio::sync::broadcast::error::TryRecvError;
    while matches!(rx.try_recv(), Ok(_) | Err(TryRecvError::Lagged(_))) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(name: &str, cidr: &str) -> NodeCidr {
        NodeCidr {
            name: name.into(),
            pod_cidr: cidr.into(),
        }
    }

    #[test]
    fn gives_free_blocks_in_name_order() {
        let cluster: Cidr = "10.244.0.0/16".parse().unwrap();
        let nodes = [
            n("c", ""),
            n("a", "10.244.0.0/24"),
            n("b", ""),
            n("d", "10.244.2.0/24"),
        ];
        let got: Vec<(String, String)> = plan(cluster, 24, &nodes)
            .into_iter()
            .map(|(n, c)| (n, c.to_string()))
            .collect();
        assert_eq!(
            got,
            [
                ("b".into(), "10.244.1.0/24".into()),
                ("c".into(), "10.244.3.0/24".into())
            ]
        );
    }

    #[test]
    fn exhaustion_and_foreign_blocks() {
        let cluster: Cidr = "10.0.0.0/22".parse().unwrap();
        // A /23 in use covers two /24s; a block outside the range covers none.
        let nodes = [
            n("a", "10.0.0.0/23"),
            n("b", "192.168.0.0/24"),
            n("c", ""),
            n("d", ""),
            n("e", ""),
        ];
        let got = plan(cluster, 24, &nodes);
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["c", "d"]);
        assert_eq!(got[0].1.to_string(), "10.0.2.0/24");
        assert_eq!(got[1].1.to_string(), "10.0.3.0/24");
        // Released by construction: without node a its blocks are free again.
        let got = plan(cluster, 24, &nodes[1..]);
        assert_eq!(got[0].1.to_string(), "10.0.0.0/24");
        assert_eq!(got.len(), 3);
    }
}
