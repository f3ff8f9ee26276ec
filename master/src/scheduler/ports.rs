//! Host ports: a pod asking for `hostPort` 8080/TCP conflicts with any pod on
//! the node holding 8080/TCP on the same host IP or on the wildcard address.

use corral_api::core::{Pod, Protocol};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub protocol: Protocol,
    pub port: i32,
    /// Empty for the wildcard (`""`, `0.0.0.0`, `::`).
    pub ip: String,
}

impl HostPort {
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip.is_empty() || other.ip.is_empty() || self.ip == other.ip)
    }
}

/// The host ports a pod's containers claim. With hostNetwork every container
/// port is a host port (Kubernetes defaults hostPort to containerPort there).
pub fn of_pod(pod: &Pod) -> Vec<HostPort> {
    let mut out = Vec::new();
    for c in &pod.spec.containers {
        for p in &c.ports {
            let port = match p.host_port {
                Some(h) if h > 0 => h,
                _ if pod.spec.host_network => p.container_port,
                _ => continue,
            };
            let ip = match p.host_ip.as_str() {
                "0.0.0.0" | "::" => String::new(),
                ip => ip.to_string(),
            };
            out.push(HostPort {
                protocol: p.protocol.unwrap_or(Protocol::TCP),
                port,
                ip,
            });
        }
    }
    out
}

/// True when none of `wanted` conflicts with what is already `used`.
pub fn free(used: &[HostPort], wanted: &[HostPort]) -> bool {
    wanted.iter().all(|w| !used.iter().any(|u| u.conflicts(w)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_api::core::{Container, ContainerPort};

    fn pod(ports: &[(Option<i32>, i32, Option<Protocol>, &str)], host_network: bool) -> Pod {
        let mut pod = Pod::default();
        pod.spec.host_network = host_network;
        pod.spec.containers = vec![Container {
            name: "c".into(),
            ports: ports
                .iter()
                .map(|(host, container, proto, ip)| ContainerPort {
                    host_port: *host,
                    container_port: *container,
                    protocol: *proto,
                    host_ip: ip.to_string(),
                    ..ContainerPort::default()
                })
                .collect(),
            ..Container::default()
        }];
        pod
    }

    #[test]
    fn only_host_ports_count() {
        let p = pod(
            &[(None, 80, None, ""), (Some(8080), 80, None, "0.0.0.0")],
            false,
        );
        assert_eq!(
            of_pod(&p),
            vec![HostPort {
                protocol: Protocol::TCP,
                port: 8080,
                ip: String::new()
            }]
        );
        let hn = pod(&[(None, 53, Some(Protocol::UDP), "")], true);
        assert_eq!(of_pod(&hn)[0].port, 53);
        assert_eq!(of_pod(&hn)[0].protocol, Protocol::UDP);
    }

    #[test]
    fn conflicts_by_protocol_port_and_address() {
        let used = of_pod(&pod(&[(Some(8080), 80, None, "10.0.0.1")], false));
        let same = of_pod(&pod(&[(Some(8080), 80, None, "10.0.0.1")], false));
        let other_ip = of_pod(&pod(&[(Some(8080), 80, None, "10.0.0.2")], false));
        let wildcard = of_pod(&pod(&[(Some(8080), 80, None, "")], false));
        let udp = of_pod(&pod(&[(Some(8080), 80, Some(Protocol::UDP), "")], false));
        let other_port = of_pod(&pod(&[(Some(8081), 80, None, "")], false));
        assert!(!free(&used, &same));
        assert!(free(&used, &other_ip));
        assert!(!free(&used, &wildcard));
        assert!(free(&used, &udp));
        assert!(free(&used, &other_port));
        assert!(free(&[], &same));
    }
}
