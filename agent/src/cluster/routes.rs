//! Pods on different nodes reach each other by pod IP: for every other Node
//! with a pod CIDR and an InternalIP this node holds the route
//! `podCIDR via InternalIP` (Corral's route protocol, so the routes it made
//! are found again after a restart). Routes follow the Nodes: added,
//! moved when a node's address changes, removed with the node. Until the
//! master has answered once, the routes already there stay.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use corral_api::core::Node;
use corral_client::{Cache, Reflector};
use corral_net::routes::{self, Route};
use corral_net::Ipv4Cidr;
use tokio::sync::broadcast::error::RecvError;

/// Routes are compared with the kernel's this often even without a change
/// (someone may have removed one by hand).
const RESYNC: Duration = Duration::from_secs(30);

/// The routes this node should have, one per other node's pod CIDR.
pub fn wanted(nodes: &[Arc<Node>], me: &str, own: Ipv4Cidr) -> Vec<Route> {
    let mut by_dst: BTreeMap<(Ipv4Addr, u8), Route> = BTreeMap::new();
    for n in nodes.iter().filter(|n| n.metadata.name != me) {
        let Ok(dst) = n.spec.pod_cidr.parse::<Ipv4Cidr>() else {
            continue;
        };
        let gateway = n
            .status
            .as_ref()
            .and_then(|s| s.addresses.iter().find(|a| a.type_ == "InternalIP"))
            .and_then(|a| a.address.parse::<Ipv4Addr>().ok());
        let Some(gateway) = gateway else { continue };
        if dst == own || gateway.is_unspecified() {
            continue;
        }
        by_dst
            .entry((dst.addr(), dst.prefix()))
            .or_insert(Route { dst, gateway });
    }
    by_dst.into_values().collect()
}

/// The routes to add or replace, and the destinations to delete, to go
/// from `current` (Corral's routes in the kernel) to `wanted`.
pub fn plan(current: &[Route], wanted: &[Route]) -> (Vec<Route>, Vec<Ipv4Cidr>) {
    let have: BTreeSet<_> = current.iter().map(key).collect();
    let replace = wanted
        .iter()
        .filter(|r| !have.contains(&key(r)))
        .copied()
        .collect();
    let keep: BTreeSet<_> = wanted
        .iter()
        .map(|r| (r.dst.addr(), r.dst.prefix()))
        .collect();
    let delete = current
        .iter()
        .filter(|r| !keep.contains(&(r.dst.addr(), r.dst.prefix())))
        .map(|r| r.dst)
        .collect();
    (replace, delete)
}

fn key(r: &Route) -> (Ipv4Addr, u8, Ipv4Addr) {
    (r.dst.addr(), r.dst.prefix(), r.gateway)
}

/// Make the kernel's Corral routes `wanted`; errors by route.
fn sync(wanted: &[Route]) -> Vec<String> {
    let current = match routes::list() {
        Ok(c) => c,
        Err(e) => return vec![e.to_string()],
    };
    let (replace, delete) = plan(&current, wanted);
    let mut errors = Vec::new();
    for r in &replace {
        match routes::replace(r) {
            Ok(()) => eprintln!("corral-agent: route {r}"),
            Err(e) => errors.push(e.to_string()),
        }
    }
    for d in delete {
        match routes::delete(d) {
            Ok(_) => eprintln!("corral-agent: route to {d} removed"),
            Err(e) => errors.push(e.to_string()),
        }
    }
    errors
}

/// Keep the routes to the other nodes, forever.
pub async fn run(reflector: Reflector<Node>, me: String, own: Ipv4Cidr) {
    let cache: Cache<Node> = reflector.cache();
    let mut changes = reflector.subscribe();
    let mut reported: Vec<String> = Vec::new();
    loop {
        if cache.is_ready() {
            let want = wanted(&cache.list(), &me, own);
            match tokio::task::spawn_blocking(move || sync(&want)).await {
                Ok(errors) => {
                    if errors != reported {
                        for e in &errors {
                            eprintln!("corral-agent: routes to other nodes: {e}");
                        }
                        reported = errors;
                    }
                }
                Err(e) => eprintln!("corral-agent: routes to other nodes: {e}"),
            }
        }
        tokio::select! {
            c = changes.recv() => if let Err(RecvError::Closed) = c { return },
            _ = tokio::time::sleep(RESYNC) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_api::core::{NodeAddress, NodeStatus};

    fn node(name: &str, cidr: &str, ip: &str) -> Arc<Node> {
        let mut n = Node::default();
        n.metadata.name = name.into();
        n.spec.pod_cidr = cidr.into();
        n.status = Some(NodeStatus {
            addresses: vec![
                NodeAddress {
                    type_: "Hostname".into(),
                    address: name.into(),
                },
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: ip.into(),
                },
            ],
            ..NodeStatus::default()
        });
        Arc::new(n)
    }

    fn route(dst: &str, gw: &str) -> Route {
        Route {
            dst: dst.parse().unwrap(),
            gateway: gw.parse().unwrap(),
        }
    }

    #[test]
    fn one_route_per_other_node_with_cidr_and_address() {
        let nodes = vec![
            node("me", "10.244.0.0/24", "10.0.0.1"),
            node("b", "10.244.1.0/24", "10.0.0.2"),
            node("c", "", "10.0.0.3"),
            node("d", "10.244.3.0/24", "not-an-ip"),
            node("e", "10.244.4.0/24", "10.0.0.5"),
        ];
        let own = "10.244.0.0/24".parse().unwrap();
        assert_eq!(
            wanted(&nodes, "me", own),
            vec![
                route("10.244.1.0/24", "10.0.0.2"),
                route("10.244.4.0/24", "10.0.0.5")
            ]
        );
    }

    #[test]
    fn plan_adds_moves_and_removes() {
        let current = vec![
            route("10.244.1.0/24", "10.0.0.2"),
            route("10.244.2.0/24", "10.0.0.3"),
            route("10.244.9.0/24", "10.0.0.9"),
        ];
        let wanted = vec![
            route("10.244.1.0/24", "10.0.0.2"),
            route("10.244.2.0/24", "10.0.0.33"),
            route("10.244.4.0/24", "10.0.0.5"),
        ];
        let (replace, delete) = plan(&current, &wanted);
        assert_eq!(
            replace,
            vec![
                route("10.244.2.0/24", "10.0.0.33"),
                route("10.244.4.0/24", "10.0.0.5")
            ]
        );
        assert_eq!(delete, vec!["10.244.9.0/24".parse::<Ipv4Cidr>().unwrap()]);
        assert_eq!(plan(&wanted, &wanted), (vec![], vec![]));
    }
}
