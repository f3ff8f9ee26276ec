//! Services on this node (kube-proxy's job): informers over every Service and
//! Endpoints in the cluster; after each change the whole nftables ruleset is
//! rendered again ([`corral_net::services`]) and, when it differs from the last
//! one applied, replaced in one transaction. Bursts of changes are coalesced
//! (at most one apply per `min_sync_interval`), a failed apply is retried with
//! back-off, and the ruleset is re-applied every `resync_interval` even when
//! nothing changed, so a flushed ruleset heals.
//!
//! Rules stay in place when the agent stops or loses the master: the pods keep
//! their service traffic, as with kube-proxy.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use corral_api::core::{EndpointSubset, Endpoints, Protocol, Service, ServicePort, ServiceType};
use corral_client::{Cache, Client, ListParams, Reflector};
use corral_net::services::{self, Frontend, L4Proto, Ruleset, ServicesConfig};
use corral_net::Ipv4Cidr;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::broadcast::Receiver;
use tokio::time::Instant;

/// How this node serves Services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// The addresses NodePorts answer on; empty = every local address except
    /// loopback.
    pub node_ips: Vec<Ipv4Addr>,
    /// The cluster's pod CIDR ("10.244.0.0/16"): connections to a cluster IP
    /// from outside it (the node itself, other hosts) are masqueraded so the
    /// replies come back through this node. Empty: unknown, not done.
    pub cluster_cidr: String,
    /// The nftables table (family ip) the services live in.
    pub table: String,
    /// At most one apply per this interval: a burst of changes costs one.
    pub min_sync_interval: Duration,
    /// Re-applied this often even when nothing changed.
    pub resync_interval: Duration,
    /// Program the rules in this network namespace (a bound netns file)
    /// instead of the agent's own: for an agent serving a node namespace from
    /// outside it, as tests do.
    pub netns: Option<PathBuf>,
}

impl Default for ProxyConfig {
    fn default() -> ProxyConfig {
        ProxyConfig {
            node_ips: Vec::new(),
            cluster_cidr: String::new(),
            table: services::DEFAULT_TABLE.to_string(),
            min_sync_interval: Duration::from_millis(100),
            resync_interval: Duration::from_secs(30),
            netns: None,
        }
    }
}

const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);

impl ProxyConfig {
    fn services_config(&self) -> ServicesConfig {
        let cluster_cidr = match self.cluster_cidr.trim() {
            "" => None,
            s => match s.parse::<Ipv4Cidr>() {
                Ok(c) => Some(c),
                Err(e) => {
                    eprintln!(
                        "corral-agent: proxy: cluster CIDR: {e}; masquerading only hairpin and NodePort traffic"
                    );
                    None
                }
            },
        };
        ServicesConfig {
            table: self.table.clone(),
            cluster_cidr,
            node_port_addresses: self.node_ips.clone(),
        }
    }
}

/// Programs this node's services until the future is dropped.
pub async fn run(client: Client, cfg: ProxyConfig) {
    let svcs: Reflector<Service> = Reflector::spawn(client.clone(), "", ListParams::default());
    let eps: Reflector<Endpoints> = Reflector::spawn(client, "", ListParams::default());
    let (mut svc_rx, mut ep_rx) = (svcs.subscribe(), eps.subscribe());
    let (svc_cache, ep_cache) = (svcs.cache(), eps.cache());
    svc_cache.ready().await;
    ep_cache.ready().await;
    let mut sync = Syncer::new(cfg.services_config(), cfg.netns.clone());
    loop {
        let ruleset = render(&sync.cfg, &svc_cache, &ep_cache);
        let wait = match sync.apply(ruleset).await {
            Ok(()) => cfg.resync_interval,
            Err(retry) => retry,
        };
        tokio::select! {
            r = svc_rx.recv() => if closed(r) { return },
            r = ep_rx.recv() => if closed(r) { return },
            _ = tokio::time::sleep(wait) => sync.force = true,
        }
        if let Some(last) = sync.last_attempt {
            tokio::time::sleep_until(last + cfg.min_sync_interval).await;
        }
        if drain(&mut svc_rx) || drain(&mut ep_rx) {
            return;
        }
    }
}

/// True when the channel is gone (its reflector dropped): nothing more comes.
fn closed<T>(r: Result<T, RecvError>) -> bool {
    matches!(r, Err(RecvError::Closed))
}

/// Empties a channel (the caches hold the state); true when it is closed.
fn drain<T: Clone>(rx: &mut Receiver<T>) -> bool {
    loop {
        match rx.try_recv() {
            Ok(_) | Err(TryRecvError::Lagged(_)) => {}
            Err(TryRecvError::Empty) => return false,
            Err(TryRecvError::Closed) => return true,
        }
    }
}

fn render(cfg: &ServicesConfig, svcs: &Cache<Service>, eps: &Cache<Endpoints>) -> Ruleset {
    let fronts = frontends(&svcs.list(), |ns, name| eps.get(ns, name));
    services::render(cfg, &fronts)
}

/// What was applied last, and when to try again.
struct Syncer {
    cfg: ServicesConfig,
    netns: Option<PathBuf>,
    applied: Option<String>,
    skipped: Vec<String>,
    last_attempt: Option<Instant>,
    retry: Duration,
    force: bool,
}

impl Syncer {
    fn new(cfg: ServicesConfig, netns: Option<PathBuf>) -> Syncer {
        Syncer {
            cfg,
            netns,
            applied: None,
            skipped: Vec::new(),
            last_attempt: None,
            retry: RETRY_FIRST,
            force: false,
        }
    }

    /// Applies `ruleset` unless it is the one in place (and no resync is due);
    /// on failure returns how long to wait before trying again.
    async fn apply(&mut self, ruleset: Ruleset) -> Result<(), Duration> {
        if ruleset.skipped != self.skipped {
            for s in &ruleset.skipped {
                eprintln!("corral-agent: proxy: skipped {s}");
            }
            self.skipped = ruleset.skipped.clone();
        }
        if !self.force && self.applied.as_deref() == Some(ruleset.script.as_str()) {
            return Ok(());
        }
        self.force = false;
        self.last_attempt = Some(Instant::now());
        let cfg = self.cfg.clone();
        let script = ruleset.script.clone();
        let netns = self.netns.clone();
        let done = tokio::task::spawn_blocking(move || match netns {
            Some(ns) => corral_net::in_netns(&ns, || services::apply(&cfg, &ruleset))
                .and_then(|applied| applied),
            None => services::apply(&cfg, &ruleset),
        })
        .await;
        let err = match done {
            Ok(Ok(())) => {
                self.applied = Some(script);
                self.retry = RETRY_FIRST;
                return Ok(());
            }
            Ok(Err(e)) => e.to_string(),
            Err(e) => format!("apply task: {e}"),
        };
        eprintln!("corral-agent: proxy: {err}; retrying in {:?}", self.retry);
        self.applied = None;
        let wait = self.retry;
        self.retry = (self.retry * 2).min(RETRY_MAX);
        Err(wait)
    }
}

/// The frontends of `svcs`, each with the ready addresses of its Endpoints
/// (looked up by namespace and name). Headless, ExternalName and non-IPv4
/// services have none.
pub fn frontends(
    svcs: &[Arc<Service>],
    endpoints: impl Fn(&str, &str) -> Option<Arc<Endpoints>>,
) -> Vec<Frontend> {
    let mut out = Vec::new();
    for svc in svcs {
        if svc.service_type() == ServiceType::ExternalName {
            continue;
        }
        let Ok(cluster_ip) = svc.spec.cluster_ip.parse::<Ipv4Addr>() else {
            continue;
        };
        let (ns, name) = (&svc.metadata.namespace, &svc.metadata.name);
        let ep = endpoints(ns, name);
        let subsets = ep
            .as_ref()
            .map(|e| e.subsets.as_slice())
            .unwrap_or_default();
        let with_node_port = matches!(
            svc.service_type(),
            ServiceType::NodePort | ServiceType::LoadBalancer
        );
        for p in &svc.spec.ports {
            let Some(port) = port_number(p.port) else {
                continue;
            };
            let label = if p.name.is_empty() {
                p.port.to_string()
            } else {
                p.name.clone()
            };
            out.push(Frontend {
                name: format!("{ns}/{name}:{label}"),
                cluster_ip,
                port,
                proto: l4(p.protocol),
                node_port: p.node_port.filter(|_| with_node_port).and_then(port_number),
                backends: backends(p, subsets),
            });
        }
    }
    out
}

/// The ready addresses serving service port `p`: in each subset, the endpoint
/// port with the same name and protocol (how the endpoints controller
/// resolved a named targetPort per pod).
fn backends(p: &ServicePort, subsets: &[EndpointSubset]) -> Vec<SocketAddrV4> {
    let proto = l4(p.protocol);
    let mut out = Vec::new();
    for s in subsets {
        let Some(port) = s
            .ports
            .iter()
            .find(|ep| ep.name == p.name && l4(ep.protocol) == proto)
            .and_then(|ep| port_number(ep.port))
        else {
            continue;
        };
        for a in &s.addresses {
            if let Ok(ip) = a.ip.parse::<Ipv4Addr>() {
                out.push(SocketAddrV4::new(ip, port));
            }
        }
    }
    out
}

fn port_number(p: i32) -> Option<u16> {
    u16::try_from(p).ok().filter(|p| *p != 0)
}

fn l4(p: Option<Protocol>) -> L4Proto {
    match p.unwrap_or(Protocol::TCP) {
        Protocol::TCP => L4Proto::Tcp,
        Protocol::UDP => L4Proto::Udp,
        Protocol::SCTP => L4Proto::Sctp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(json: serde_json::Value) -> Arc<Service> {
        Arc::new(serde_json::from_value(json).unwrap())
    }

    fn eps(json: serde_json::Value) -> Arc<Endpoints> {
        Arc::new(serde_json::from_value(json).unwrap())
    }

    fn addrs(v: &[&str]) -> Vec<SocketAddrV4> {
        v.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn named_ports_match_their_endpoint_ports() {
        let web = svc(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "ports": [
                {"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080},
                {"name": "dns", "port": 53, "protocol": "UDP"}
            ]}
        }));
        let ep = eps(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default"},
            "subsets": [
                {"addresses": [{"ip": "10.244.1.5"}, {"ip": "10.244.2.5"}],
                 "notReadyAddresses": [{"ip": "10.244.3.5"}],
                 "ports": [{"name": "http", "port": 8080}, {"name": "dns", "port": 5353, "protocol": "UDP"}]},
                {"addresses": [{"ip": "10.244.4.5"}],
                 "ports": [{"name": "http", "port": 9090}]}
            ]
        }));
        let got = frontends(&[web], |ns, n| {
            (ns == "default" && n == "web").then(|| ep.clone())
        });
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].name, "default/web:http");
        assert_eq!(got[0].cluster_ip, Ipv4Addr::new(10, 96, 0, 10));
        assert_eq!((got[0].port, got[0].proto), (80, L4Proto::Tcp));
        assert_eq!(got[0].node_port, Some(30080));
        assert_eq!(
            got[0].backends,
            addrs(&["10.244.1.5:8080", "10.244.2.5:8080", "10.244.4.5:9090"])
        );
        assert_eq!((got[1].port, got[1].proto), (53, L4Proto::Udp));
        assert_eq!(got[1].node_port, None, "no nodePort on this port");
        assert_eq!(
            got[1].backends,
            addrs(&["10.244.1.5:5353", "10.244.2.5:5353"])
        );
    }

    #[test]
    fn unusable_services_give_no_frontend_and_missing_endpoints_no_backend() {
        let list = [
            svc(
                serde_json::json!({"metadata": {"name": "headless", "namespace": "a"},
                "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}),
            ),
            svc(
                serde_json::json!({"metadata": {"name": "pending", "namespace": "a"},
                "spec": {"ports": [{"port": 80}]}}),
            ),
            svc(
                serde_json::json!({"metadata": {"name": "ext", "namespace": "a"},
                "spec": {"type": "ExternalName", "externalName": "example.org", "clusterIP": "10.96.0.3"}}),
            ),
            svc(
                serde_json::json!({"metadata": {"name": "v6", "namespace": "a"},
                "spec": {"clusterIP": "fd00::1", "ports": [{"port": 80}]}}),
            ),
            // A ClusterIP service's nodePort is ignored.
            svc(
                serde_json::json!({"metadata": {"name": "plain", "namespace": "a"},
                "spec": {"clusterIP": "10.96.0.4", "ports": [{"port": 80, "nodePort": 30001}]}}),
            ),
        ];
        let got = frontends(&list, |_, _| None);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].name, "a/plain:80");
        assert_eq!(got[0].node_port, None);
        assert!(got[0].backends.is_empty());
    }

    #[test]
    fn the_frontends_render_and_follow_endpoint_changes() {
        let web = svc(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80, "targetPort": 8080}]}
        }));
        let two = eps(
            serde_json::json!({"metadata": {"name": "web", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "10.244.1.5"}, {"ip": "10.244.2.5"}], "ports": [{"port": 8080}]}]}),
        );
        let one = eps(
            serde_json::json!({"metadata": {"name": "web", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "10.244.2.5"}], "notReadyAddresses": [{"ip": "10.244.1.5"}],
                         "ports": [{"port": 8080}]}]}),
        );
        let cfg = ProxyConfig {
            cluster_cidr: "10.244.0.0/16".into(),
            ..ProxyConfig::default()
        }
        .services_config();
        let render_with = |e: &Arc<Endpoints>| {
            services::render(
                &cfg,
                &frontends(std::slice::from_ref(&web), |_, _| Some(e.clone())),
            )
            .script
        };
        let (a, b) = (render_with(&two), render_with(&one));
        assert!(a.contains("numgen random mod 2"), "{a}");
        assert!(a.contains("dnat to 10.244.1.5:8080") && a.contains("dnat to 10.244.2.5:8080"));
        assert!(b.contains("numgen random mod 1"), "{b}");
        assert!(!b.contains("10.244.1.5"), "not ready: {b}");
        assert!(a.contains("ip saddr != 10.244.0.0/16 jump mark-for-masquerade"));
    }

    #[test]
    fn a_bad_cluster_cidr_is_not_fatal() {
        let cfg = ProxyConfig {
            cluster_cidr: "10.244.0.0/33".into(),
            node_ips: vec![Ipv4Addr::new(192, 168, 1, 2)],
            ..ProxyConfig::default()
        }
        .services_config();
        assert_eq!(cfg.cluster_cidr, None);
        assert_eq!(cfg.node_port_addresses, vec![Ipv4Addr::new(192, 168, 1, 2)]);
        assert_eq!(cfg.table, "corral-services");
    }
}
