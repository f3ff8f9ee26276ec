//! Service ClusterIP and NodePort allocation, done by the API server when a
//! Service is created or updated (as Kubernetes' apiserver does).
//!
//! Nothing is persisted besides the Services themselves: what is in use is
//! derived from the stored Services on every allocation, so a restarted
//! master can never hand out an address twice. The API server serialises
//! Service writes with one mutex so that two concurrent creates do not pick
//! the same free address from the same listing.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use corral_api::core::{Service, ServiceType};
use corral_api::validation::{FieldError, Path};

use crate::cidr::{Cidr, CidrError};
use crate::store::{ListOptions, Store, StoreError};

/// Where every Service is stored (all namespaces).
const SERVICES_PREFIX: &str = "/registry/services/";

/// The default service network and NodePort range of Kubernetes.
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/16";
pub const DEFAULT_NODE_PORT_RANGE: (u16, u16) = (30000, 32767);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("--service-cluster-ip-range: {0}")]
    Cidr(#[from] CidrError),
    #[error("--service-cluster-ip-range {0}: needs at least 4 addresses (prefix /30 or shorter)")]
    TooSmall(String),
    #[error("--service-node-port-range {0}-{1}: the first port is above the last, or is 0")]
    PortRange(u16, u16),
}

/// Where Service addresses and node ports come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceNetwork {
    cidr: Cidr,
    node_ports: RangeInclusive<u16>,
}

/// Addresses and node ports held by the other stored Services.
#[derive(Debug, Default, Clone)]
pub struct Used {
    ips: BTreeSet<Ipv4Addr>,
    ports: BTreeSet<u16>,
}

impl Used {
    /// What `services` hold, leaving out `skip` (namespace, name): the
    /// Service being updated may keep its own.
    pub fn from_services<'a>(
        services: impl IntoIterator<Item = &'a Service>,
        skip: Option<(&str, &str)>,
    ) -> Used {
        let mut used = Used::default();
        for s in services {
            let id = (s.metadata.namespace.as_str(), s.metadata.name.as_str());
            if Some(id) == skip {
                continue;
            }
            let ips = std::iter::once(&s.spec.cluster_ip).chain(&s.spec.cluster_ips);
            used.ips
                .extend(ips.filter_map(|ip| ip.parse::<Ipv4Addr>().ok()));
            let ports = s.spec.ports.iter().filter_map(|p| p.node_port);
            let ports = ports.chain(s.spec.health_check_node_port);
            used.ports
                .extend(ports.filter_map(|p| u16::try_from(p).ok()));
        }
        used
    }
}

impl Default for ServiceNetwork {
    fn default() -> ServiceNetwork {
        let (lo, hi) = DEFAULT_NODE_PORT_RANGE;
        ServiceNetwork {
            cidr: Cidr::new(Ipv4Addr::new(10, 96, 0, 0), 16).expect("/16 is a valid prefix"),
            node_ports: lo..=hi,
        }
    }
}

impl ServiceNetwork {
    pub fn new(cidr: &str, (lo, hi): (u16, u16)) -> Result<ServiceNetwork, ConfigError> {
        let parsed: Cidr = cidr.parse()?;
        if parsed.size() < 4 {
            return Err(ConfigError::TooSmall(cidr.to_string()));
        }
        if lo == 0 || lo > hi {
            return Err(ConfigError::PortRange(lo, hi));
        }
        Ok(ServiceNetwork {
            cidr: parsed,
            node_ports: lo..=hi,
        })
    }

    pub fn cidr(&self) -> Cidr {
        self.cidr
    }

    /// The first address, which belongs to the `kubernetes` Service.
    pub fn kubernetes_ip(&self) -> Ipv4Addr {
        self.cidr.nth(1).unwrap_or(self.cidr.network())
    }

    /// Offsets a Service may get without asking: not the network, not the
    /// first address (reserved for `kubernetes`), not the broadcast one.
    fn dynamic_offsets(&self) -> std::ops::Range<u64> {
        2..self.cidr.size() - 1
    }

    fn is_assignable(&self, ip: Ipv4Addr) -> bool {
        self.cidr
            .offset(ip)
            .is_some_and(|o| o >= 1 && o < self.cidr.size() - 1)
    }

    fn next_free_ip(&self, used: &Used) -> Option<Ipv4Addr> {
        self.dynamic_offsets()
            .filter_map(|o| self.cidr.nth(o))
            .find(|ip| !used.ips.contains(ip))
    }

    fn next_free_port(&self, used: &Used) -> Option<u16> {
        self.node_ports.clone().find(|p| !used.ports.contains(p))
    }

    /// Fills in the Service's clusterIP and node ports (create: `old` None;
    /// update: kept from `old` when the new spec leaves them out), checks the
    /// requested ones, and refuses a changed clusterIP. Errors carry the
    /// field path, as Kubernetes' 422 does.
    pub fn allocate(
        &self,
        svc: &mut Service,
        old: Option<&Service>,
        used: &Used,
    ) -> Result<(), Vec<FieldError>> {
        let mut used = used.clone();
        let mut errs = Vec::new();
        if svc.service_type() == ServiceType::ExternalName {
            return Ok(());
        }
        if let Err(e) = self.allocate_ip(svc, old, &mut used) {
            errs.push(e);
        }
        errs.extend(self.allocate_node_ports(svc, old, &mut used));
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }

    fn allocate_ip(
        &self,
        svc: &mut Service,
        old: Option<&Service>,
        used: &mut Used,
    ) -> Result<(), FieldError> {
        let path = Path::new("spec").child("clusterIP");
        let ips_path = Path::new("spec").child("clusterIPs").index(0);
        let spec = &mut svc.spec;
        let first = spec.cluster_ips.first().cloned().unwrap_or_default();
        let old_ip = old
            .filter(|o| o.service_type() != ServiceType::ExternalName)
            .map(|o| o.spec.cluster_ip.clone())
            .filter(|ip| !ip.is_empty());
        if let Some(o) = &old_ip {
            // An update: left out means kept, anything else is a change.
            for (p, v) in [(&path, &spec.cluster_ip), (&ips_path, &first)] {
                if !v.is_empty() && v != o {
                    return Err(FieldError::invalid(p, v.as_str(), "field is immutable"));
                }
            }
            spec.cluster_ip = o.clone();
        } else if spec.cluster_ip.is_empty() {
            spec.cluster_ip = first.clone();
        } else if !first.is_empty() && first != spec.cluster_ip {
            return Err(FieldError::invalid(
                &ips_path,
                first,
                "must match `clusterIP` when both are specified",
            ));
        }
        let requested = spec.cluster_ip.clone();
        if requested == "None" {
            spec.cluster_ips = vec![requested];
        } else if requested.is_empty() {
            let ip = self.next_free_ip(used).ok_or_else(|| {
                FieldError::invalid(
                    &path,
                    "",
                    format!(
                        "failed to allocate a serviceIP: range {} is full",
                        self.cidr
                    ),
                )
            })?;
            used.ips.insert(ip);
            spec.cluster_ip = ip.to_string();
            spec.cluster_ips = vec![ip.to_string()];
        } else if old_ip.as_deref() != Some(requested.as_str()) {
            let ip = self.check_requested_ip(&path, &requested, used)?;
            used.ips.insert(ip);
            spec.cluster_ips = vec![requested];
        } else {
            spec.cluster_ips = vec![requested];
        }
        if spec.ip_families.is_empty() {
            spec.ip_families = vec!["IPv4".into()];
        }
        spec.ip_family_policy
            .get_or_insert_with(|| "SingleStack".into());
        Ok(())
    }

    fn check_requested_ip(
        &self,
        path: &Path,
        requested: &str,
        used: &Used,
    ) -> Result<Ipv4Addr, FieldError> {
        let ip: Ipv4Addr = requested.parse().map_err(|_| {
            FieldError::invalid(
                path,
                requested,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            )
        })?;
        if !self.is_assignable(ip) {
            let msg = format!(
                "failed to allocate IP {ip}: provided IP ({ip}) is not in the valid range. The range of valid IPs is {}",
                self.cidr
            );
            return Err(FieldError::invalid(path, requested, msg));
        }
        if used.ips.contains(&ip) {
            let msg = format!("failed to allocate IP {ip}: provided IP is already allocated");
            return Err(FieldError::invalid(path, requested, msg));
        }
        Ok(ip)
    }

    fn allocate_node_ports(
        &self,
        svc: &mut Service,
        old: Option<&Service>,
        used: &mut Used,
    ) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let wants = match svc.service_type() {
            ServiceType::NodePort => true,
            ServiceType::LoadBalancer => svc.spec.allocate_load_balancer_node_ports != Some(false),
            _ => false,
        };
        if !wants {
            return errs;
        }
        let old_ports: Vec<_> = old.map(|o| o.spec.ports.clone()).unwrap_or_default();
        for (i, p) in svc.spec.ports.iter_mut().enumerate() {
            let path = Path::new("spec").child("ports").index(i).child("nodePort");
            let kept = old_ports
                .iter()
                .find(|o| o.port == p.port && o.protocol == p.protocol)
                .and_then(|o| o.node_port);
            match p.node_port.filter(|n| *n != 0) {
                Some(n) if Some(n) == kept => {
                    used.ports.extend(u16::try_from(n).ok());
                }
                Some(n) => match self.check_port(n, used) {
                    Ok(port) => {
                        used.ports.insert(port);
                    }
                    Err(msg) => errs.push(FieldError::invalid(&path, n, msg)),
                },
                None => {
                    let pick = kept
                        .and_then(|k| u16::try_from(k).ok())
                        .filter(|k| !used.ports.contains(k))
                        .or_else(|| self.next_free_port(used));
                    match pick {
                        Some(port) => {
                            used.ports.insert(port);
                            p.node_port = Some(i32::from(port));
                        }
                        None => errs.push(FieldError::invalid(
                            &path,
                            0,
                            "failed to allocate a nodePort: range is full",
                        )),
                    }
                }
            }
        }
        errs
    }

    fn check_port(&self, n: i32, used: &Used) -> Result<u16, String> {
        let port = u16::try_from(n)
            .ok()
            .filter(|p| self.node_ports.contains(p));
        let Some(port) = port else {
            return Err(format!(
                "provided port is not in the valid range. The range of valid ports is {}-{}",
                self.node_ports.start(),
                self.node_ports.end()
            ));
        };
        if used.ports.contains(&port) {
            return Err("provided port is already allocated".into());
        }
        Ok(port)
    }
}

/// Why a Service write got no addresses.
#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    /// The request asked for something it may not have (422 with these causes).
    #[error("invalid Service")]
    Invalid(Vec<FieldError>),
    #[error("listing the stored Services: {0}")]
    Store(#[from] StoreError),
    #[error("decoding Service {what}: {message}")]
    Decode { what: String, message: String },
}

/// The API server's allocator: the network plus the lock that makes
/// "list what is used, pick, store" one step among concurrent writers.
#[derive(Debug, Default)]
pub struct ServiceAllocator {
    net: ServiceNetwork,
    lock: tokio::sync::Mutex<()>,
}

impl ServiceAllocator {
    pub fn new(net: ServiceNetwork) -> ServiceAllocator {
        ServiceAllocator {
            net,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    pub fn network(&self) -> &ServiceNetwork {
        &self.net
    }

    /// Fills in `new` (a defaulted, validated Service as JSON) against the
    /// stored Services. The returned guard must be held until `new` is
    /// stored, so that no other write picks the same address meanwhile.
    pub async fn allocate(
        &self,
        store: &dyn Store,
        new: &mut serde_json::Value,
        old: Option<&serde_json::Value>,
    ) -> Result<tokio::sync::MutexGuard<'_, ()>, AllocError> {
        let guard = self.lock.lock().await;
        let decode = |v: &serde_json::Value, what: &str| {
            serde_json::from_value::<Service>(v.clone()).map_err(|e| AllocError::Decode {
                what: what.to_string(),
                message: e.to_string(),
            })
        };
        let mut svc = decode(new, "being written")?;
        let old = old.map(|o| decode(o, "stored")).transpose()?;
        let page = store.list(SERVICES_PREFIX, ListOptions::default()).await?;
        let mut stored = Vec::with_capacity(page.items.len());
        for kv in &page.items {
            let v: serde_json::Value =
                serde_json::from_slice(&kv.value).map_err(|e| AllocError::Decode {
                    what: kv.key.clone(),
                    message: e.to_string(),
                })?;
            stored.push(decode(&v, &kv.key)?);
        }
        let me = (svc.metadata.namespace.as_str(), svc.metadata.name.as_str());
        let exists = stored
            .iter()
            .any(|s| (s.metadata.namespace.as_str(), s.metadata.name.as_str()) == me);
        if old.is_none() && exists {
            // The create fails with AlreadyExists at the store, as it should;
            // checking its addresses would answer 422 instead.
            return Ok(guard);
        }
        let used = Used::from_services(&stored, old.as_ref().map(|_| me));
        self.net
            .allocate(&mut svc, old.as_ref(), &used)
            .map_err(AllocError::Invalid)?;
        *new = serde_json::to_value(&svc).map_err(|e| AllocError::Decode {
            what: "being written".into(),
            message: e.to_string(),
        })?;
        Ok(guard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        let mut s: Service = serde_json::from_value(v).unwrap();
        s.apply_defaults();
        s
    }

    fn net() -> ServiceNetwork {
        ServiceNetwork::new("10.96.0.0/29", (30000, 30002)).unwrap()
    }

    fn named(name: &str, spec: serde_json::Value) -> Service {
        svc(json!({"metadata": {"name": name, "namespace": "default"}, "spec": spec}))
    }

    #[test]
    fn allocates_lowest_free_skipping_reserved() {
        let n = net();
        let mut a = named("a", json!({"ports": [{"port": 80}]}));
        n.allocate(&mut a, None, &Used::default()).unwrap();
        assert_eq!(a.spec.cluster_ip, "10.96.0.2");
        assert_eq!(a.spec.cluster_ips, vec!["10.96.0.2"]);
        assert_eq!(a.spec.ip_families, vec!["IPv4"]);
        let mut b = named("b", json!({"ports": [{"port": 80}]}));
        n.allocate(&mut b, None, &Used::from_services([&a], None))
            .unwrap();
        assert_eq!(b.spec.cluster_ip, "10.96.0.3");
        assert_eq!(n.kubernetes_ip().to_string(), "10.96.0.1");
    }

    #[test]
    fn range_exhaustion_and_bad_requests() {
        let n = net();
        // /29: .2 to .6 can be handed out.
        let mut all = Vec::new();
        for i in 0..5 {
            let mut s = named(&format!("s{i}"), json!({"ports": [{"port": 80}]}));
            n.allocate(&mut s, None, &Used::from_services(&all, None))
                .unwrap();
            all.push(s);
        }
        let mut full = named("full", json!({"ports": [{"port": 80}]}));
        let e = n
            .allocate(&mut full, None, &Used::from_services(&all, None))
            .unwrap_err();
        assert!(
            e[0].to_string().contains("range 10.96.0.0/29 is full"),
            "{}",
            e[0]
        );
        let used = Used::from_services(&all[..1], None);
        let cases = [
            ("10.96.0.2", "provided IP is already allocated"),
            (
                "10.97.0.2",
                "is not in the valid range. The range of valid IPs is 10.96.0.0/29",
            ),
            ("10.96.0.7", "is not in the valid range"),
            ("10.96.0", "must be a valid IP address"),
        ];
        for (ip, want) in cases {
            let mut s = named("x", json!({"clusterIP": ip, "ports": [{"port": 80}]}));
            let e = n.allocate(&mut s, None, &used).unwrap_err();
            assert_eq!(e[0].path.as_str(), "spec.clusterIP");
            assert!(e[0].to_string().contains(want), "{ip}: {}", e[0]);
        }
        // The first address may be requested (the kubernetes Service does).
        let mut k = named(
            "kubernetes",
            json!({"clusterIP": "10.96.0.1", "ports": [{"port": 443}]}),
        );
        n.allocate(&mut k, None, &used).unwrap();
        let mut h = named("h", json!({"clusterIP": "None"}));
        n.allocate(&mut h, None, &used).unwrap();
        assert_eq!(h.spec.cluster_ips, vec!["None"]);
    }

    #[test]
    fn updates_keep_the_address_and_refuse_a_change() {
        let n = net();
        let mut old = named("a", json!({"type": "NodePort", "ports": [{"port": 80}]}));
        n.allocate(&mut old, None, &Used::default()).unwrap();
        assert_eq!(old.spec.ports[0].node_port, Some(30000));
        let others = Used::from_services([&old], Some(("default", "a")));
        let mut same = named("a", json!({"type": "NodePort", "ports": [{"port": 80}]}));
        n.allocate(&mut same, Some(&old), &others).unwrap();
        assert_eq!(same.spec.cluster_ip, old.spec.cluster_ip);
        assert_eq!(same.spec.ports[0].node_port, Some(30000));
        let mut moved = named(
            "a",
            json!({"clusterIP": "10.96.0.5", "ports": [{"port": 80}]}),
        );
        let e = n.allocate(&mut moved, Some(&old), &others).unwrap_err();
        assert_eq!(
            e[0].to_string(),
            "spec.clusterIP: Invalid value: \"10.96.0.5\": field is immutable"
        );
        // A merge patch of clusterIP alone leaves the old clusterIPs beside it.
        let mut patched = old.clone();
        patched.spec.cluster_ip = "10.96.0.5".into();
        let e = n.allocate(&mut patched, Some(&old), &others).unwrap_err();
        assert_eq!(e[0].path.as_str(), "spec.clusterIP");
        let mut ips_only = old.clone();
        ips_only.spec.cluster_ip.clear();
        ips_only.spec.cluster_ips = vec!["10.96.0.5".into()];
        let e = n.allocate(&mut ips_only, Some(&old), &others).unwrap_err();
        assert_eq!(e[0].path.as_str(), "spec.clusterIPs[0]");
    }

    #[test]
    fn node_ports_checked_and_unique() {
        let n = net();
        let mut a = named(
            "a",
            json!({"type": "NodePort", "ports": [{"name": "x", "port": 80, "nodePort": 30001},
                                                {"name": "y", "port": 81}]}),
        );
        n.allocate(&mut a, None, &Used::default()).unwrap();
        assert_eq!(a.spec.ports[1].node_port, Some(30000));
        let used = Used::from_services([&a], None);
        let mut b = named(
            "b",
            json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30001}]}),
        );
        let e = n.allocate(&mut b, None, &used).unwrap_err();
        assert_eq!(e[0].path.as_str(), "spec.ports[0].nodePort");
        assert!(e[0].to_string().contains("already allocated"));
        let mut c = named(
            "c",
            json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 31000}]}),
        );
        let e = n.allocate(&mut c, None, &used).unwrap_err();
        assert!(
            e[0].to_string().contains("valid ports is 30000-30002"),
            "{}",
            e[0]
        );
        let mut d = named(
            "d",
            json!({"type": "NodePort", "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81}]}),
        );
        let e = n.allocate(&mut d, None, &used).unwrap_err();
        assert_eq!(e[0].path.as_str(), "spec.ports[1].nodePort");
        let mut plain = named("p", json!({"ports": [{"port": 80}]}));
        n.allocate(&mut plain, None, &used).unwrap();
        assert_eq!(plain.spec.ports[0].node_port, None);
    }

    #[test]
    fn config_errors() {
        assert!(ServiceNetwork::new("10.96.0.0/31", (1, 2)).is_err());
        assert!(ServiceNetwork::new("10.96.0.1/16", (1, 2)).is_err());
        assert!(ServiceNetwork::new("10.96.0.0/16", (3, 2)).is_err());
        assert_eq!(ServiceNetwork::default().cidr().to_string(), "10.96.0.0/16");
    }
}
