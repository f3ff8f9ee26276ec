//! Endpoints: for every Service with a selector, an Endpoints object of the
//! same name listing the matching pods that have an IP: ready ones under
//! `addresses`, the others under `notReadyAddresses`, with the ports the
//! Service's `targetPort`s resolve to in each pod (a number, or a named
//! container port). Pods whose ports resolve alike share one subset.
//!
//! The Endpoints carries an owner reference to its Service, so deleting the
//! Service deletes it (in the request, or by the garbage collector); it is
//! written only when what it says changes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use corral_api::core::{
    ConditionStatus, EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference,
    Pod, PodPhase, Protocol, Service,
};
use corral_api::{IntOrString, ObjectMeta, OwnerReference};
use corral_client::{Client, ListParams, Reflector};

use super::ControllerConfig;

/// How often everything is compared again without any change reported.
const RESYNC: Duration = Duration::from_secs(30);
/// How soon a write refused as stale (409) is tried again at the latest.
const RETRY: Duration = Duration::from_millis(500);

fn selects(svc: &Service, pod: &Pod) -> bool {
    !svc.spec.selector.is_empty()
        && pod.metadata.namespace == svc.metadata.namespace
        && svc
            .spec
            .selector
            .iter()
            .all(|(k, v)| pod.metadata.labels.get(k) == Some(v))
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == ConditionStatus::True)
    })
}

/// The container port a Service port's targetPort names in `pod`
/// (`targetPort` unset = the Service port).
fn resolve_port(
    pod: &Pod,
    target: Option<&IntOrString>,
    port: i32,
    proto: Protocol,
) -> Option<i32> {
    match target {
        None => Some(port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => pod
            .spec
            .containers
            .iter()
            .flat_map(|c| &c.ports)
            .find(|p| p.name == *name && p.protocol.unwrap_or(Protocol::TCP) == proto)
            .map(|p| p.container_port),
    }
}

/// The subsets `svc`'s Endpoints should have, from the candidate `pods`.
pub fn desired_subsets(svc: &Service, pods: &[&Pod]) -> Vec<EndpointSubset> {
    let publish_all = svc.spec.publish_not_ready_addresses == Some(true);
    let mut groups: Vec<EndpointSubset> = Vec::new();
    for pod in pods.iter().filter(|p| selects(svc, p)) {
        let Some(status) = pod.status.as_ref() else {
            continue;
        };
        let done = matches!(status.phase, Some(PodPhase::Succeeded | PodPhase::Failed));
        let terminating = pod.metadata.deletion_timestamp.is_some();
        if status.pod_ip.is_empty() || done || (terminating && !publish_all) {
            continue;
        }
        let mut ports = Vec::new();
        for sp in &svc.spec.ports {
            let proto = sp.protocol.unwrap_or(Protocol::TCP);
            if let Some(port) = resolve_port(pod, sp.target_port.as_ref(), sp.port, proto) {
                ports.push(EndpointPort {
                    name: sp.name.clone(),
                    port,
                    protocol: Some(proto),
                    app_protocol: sp.app_protocol.clone(),
                });
            }
        }
        if ports.is_empty() && !svc.spec.ports.is_empty() {
            continue;
        }
        ports.sort_by(|a, b| (&a.name, a.port).cmp(&(&b.name, b.port)));
        let address = EndpointAddress {
            ip: status.pod_ip.clone(),
            hostname: if !pod.spec.hostname.is_empty() && pod.spec.subdomain == svc.metadata.name {
                pod.spec.hostname.clone()
            } else {
                String::new()
            },
            node_name: (!pod.spec.node_name.is_empty()).then(|| pod.spec.node_name.clone()),
            target_ref: Some(ObjectReference {
                kind: "Pod".into(),
                namespace: pod.metadata.namespace.clone(),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
                ..ObjectReference::default()
            }),
        };
        let idx = match groups.iter().position(|g| g.ports == ports) {
            Some(i) => i,
            None => {
                groups.push(EndpointSubset {
                    ports,
                    ..EndpointSubset::default()
                });
                groups.len() - 1
            }
        };
        if publish_all || pod_ready(pod) {
            groups[idx].addresses.push(address);
        } else {
            groups[idx].not_ready_addresses.push(address);
        }
    }
    let by_ip = |a: &EndpointAddress, b: &EndpointAddress| a.ip.cmp(&b.ip);
    for g in &mut groups {
        g.addresses.sort_by(by_ip);
        g.not_ready_addresses.sort_by(by_ip);
    }
    groups.sort_by(|a, b| {
        let first = |g: &EndpointSubset| {
            g.addresses
                .first()
                .or(g.not_ready_addresses.first())
                .map(|a| a.ip.clone())
        };
        first(a).cmp(&first(b))
    });
    groups
}

/// The whole Endpoints object `svc` should have.
pub fn desired(svc: &Service, pods: &[&Pod]) -> Endpoints {
    Endpoints {
        api_version: "v1".into(),
        kind: "Endpoints".into(),
        metadata: ObjectMeta {
            name: svc.metadata.name.clone(),
            namespace: svc.metadata.namespace.clone(),
            labels: svc.metadata.labels.clone(),
            owner_references: vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Service".into(),
                name: svc.metadata.name.clone(),
                uid: svc.metadata.uid.clone(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }],
            ..ObjectMeta::default()
        },
        subsets: desired_subsets(svc, pods),
    }
}

/// True when `have` already says what `want` says.
pub fn up_to_date(have: &Endpoints, want: &Endpoints) -> bool {
    have.subsets == want.subsets
        && have.metadata.labels == want.metadata.labels
        && have.metadata.owner_references == want.metadata.owner_references
}

pub async fn run(client: Client, _cfg: Arc<ControllerConfig>) {
    let services = Reflector::<Service>::spawn(client.clone(), "", ListParams::default());
    let pods = Reflector::<Pod>::spawn(client.clone(), "", ListParams::default());
    let endpoints = Reflector::<Endpoints>::spawn(client.clone(), "", ListParams::default());
    // Endpoints changes wake the loop too: a write that lost to a stale
    // cache is retried once the cache has caught up with the winner.
    let mut rxs = (
        services.subscribe(),
        pods.subscribe(),
        endpoints.subscribe(),
    );
    services.cache().ready().await;
    pods.cache().ready().await;
    endpoints.cache().ready().await;
    loop {
        let stale = sync(&client, &services, &pods, &endpoints).await;
        let every = if stale { RETRY } else { RESYNC };
        tokio::select! {
            _ = rxs.0.recv() => {}
            _ = rxs.1.recv() => {}
            _ = rxs.2.recv() => {}
            _ = tokio::time::sleep(every) => {}
        }
        // Changes arrive in bursts; one sync covers them all.
        tokio::time::sleep(Duration::from_millis(20)).await;
        drain(&mut rxs.0);
        drain(&mut rxs.1);
        drain(&mut rxs.2);
    }
}

fn drain<T: Clone>(rx: &mut tokio::sync::broadcast::Receiver<T>) {
    use tokio::sync::broadcast::error::TryRecvError;
    while matches!(rx.try_recv(), Ok(_) | Err(TryRecvError::Lagged(_))) {}
}

/// Brings every selector Service's Endpoints up to date; true when some
/// write was refused because the cache was behind.
async fn sync(
    client: &Client,
    services: &Reflector<Service>,
    pods: &Reflector<Pod>,
    endpoints: &Reflector<Endpoints>,
) -> bool {
    let mut stale = false;
    let all_pods = pods.cache().list();
    let mut by_ns: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
    for p in &all_pods {
        by_ns
            .entry(p.metadata.namespace.as_str())
            .or_default()
            .push(p);
    }
    for svc in services.cache().list() {
        if svc.spec.selector.is_empty() || svc.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let ns = svc.metadata.namespace.as_str();
        let candidates = by_ns.get(ns).map(Vec::as_slice).unwrap_or(&[]);
        let want = desired(&svc, candidates);
        let have = endpoints.cache().get(ns, &svc.metadata.name);
        let result = match have {
            Some(h) if up_to_date(&h, &want) => continue,
            Some(h) => {
                let mut next = want;
                next.metadata.resource_version = h.metadata.resource_version.clone();
                next.metadata.annotations = h.metadata.annotations.clone();
                client.update(&next).await.map(|_| ())
            }
            None => match client.create(&want).await {
                Err(e) if e.is_already_exists() => Ok(()),
                other => other.map(|_| ()),
            },
        };
        match result {
            Ok(()) => {}
            // Stale cache: tried again when it catches up.
            Err(e) if e.is_conflict() || e.is_not_found() => stale = true,
            Err(e) => eprintln!(
                "corral-master: endpoints: writing endpoints {ns}/{}: {e}",
                svc.metadata.name
            ),
        }
    }
    stale
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(spec: serde_json::Value) -> Service {
        let mut s: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "s1", "labels": {"tier": "a"}},
            "spec": spec})).unwrap();
        s.apply_defaults();
        s
    }

    fn pod(name: &str, ip: &str, ready: bool, port_name: &str, port: i32) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("u-{name}"),
                         "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i",
                     "ports": [{"name": port_name, "containerPort": port}]}]},
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        }))
        .unwrap()
    }

    #[test]
    fn ready_and_not_ready_with_named_ports() {
        let s = svc(json!({"selector": {"app": "web"},
                           "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}));
        let a = pod("a", "10.244.1.5", true, "http", 8080);
        let b = pod("b", "10.244.0.7", false, "http", 8080);
        let c = pod("c", "10.244.2.9", true, "http", 9090);
        let d = pod("d", "", true, "http", 8080);
        let mut e = pod("e", "10.244.2.2", true, "http", 8080);
        e.metadata.labels.clear();
        let f = pod("f", "10.244.2.3", true, "metrics", 8080);
        let ep = desired(&s, &[&a, &b, &c, &d, &e, &f]);
        assert_eq!(ep.subsets.len(), 2);
        let first = &ep.subsets[0];
        assert_eq!(first.ports[0].port, 8080);
        assert_eq!(first.ports[0].name, "http");
        assert_eq!(first.addresses.len(), 1);
        assert_eq!(first.addresses[0].ip, "10.244.1.5");
        assert_eq!(first.addresses[0].node_name.as_deref(), Some("n1"));
        assert_eq!(first.addresses[0].target_ref.as_ref().unwrap().uid, "u-a");
        assert_eq!(first.not_ready_addresses[0].ip, "10.244.0.7");
        assert_eq!(ep.subsets[1].ports[0].port, 9090);
        assert_eq!(ep.metadata.owner_references[0].uid, "s1");
        assert_eq!(
            ep.metadata.labels.get("tier").map(String::as_str),
            Some("a")
        );
        assert!(up_to_date(&ep, &desired(&s, &[&f, &e, &d, &c, &b, &a])));
        let after = desired(&s, &[&a, &c]);
        assert!(!up_to_date(&ep, &after));
    }

    #[test]
    fn numeric_ports_terminating_and_finished() {
        let s = svc(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
        let a = pod("a", "10.0.0.1", true, "x", 1);
        let mut gone = pod("b", "10.0.0.2", true, "x", 1);
        gone.metadata.deletion_timestamp = Some(corral_api::Time::from_unix(1));
        let mut done = pod("c", "10.0.0.3", true, "x", 1);
        done.status.as_mut().unwrap().phase = Some(PodPhase::Succeeded);
        let ep = desired(&s, &[&a, &gone, &done]);
        assert_eq!(ep.subsets.len(), 1);
        assert_eq!(ep.subsets[0].ports[0].port, 80);
        assert_eq!(ep.subsets[0].addresses.len(), 1);
        let none = desired(&s, &[]);
        assert!(none.subsets.is_empty());
    }
}
