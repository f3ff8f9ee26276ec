//! Facts about this host for the master: what it has (capacity), what pods
//! may use (allocatable), its addresses and system info, as the status of a
//! core/v1 Node.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::fs;
use std::net::{IpAddr, Ipv4Addr};

use corral_api::core::{Node, NodeAddress, NodeStatus, NodeSystemInfo};
use corral_api::quantity::Format;
use corral_api::{ObjectMeta, Quantity};
use thiserror::Error;

use crate::stats;

/// kubelet's default `--max-pods`.
pub const DEFAULT_MAX_PODS: u32 = 110;

#[derive(Debug, Error)]
pub enum NodeError {
    #[error("uname: {0}")]
    Uname(nix::Error),
    #[error("node memory: {0}")]
    Memory(#[from] stats::StatsError),
    #[error("node has no hostname (uname nodename is empty) and none was configured")]
    NoHostname,
}

/// What the operator configures about the node; everything else is read
/// from the host.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node's name and Hostname address; default: uname's nodename.
    pub hostname: Option<String>,
    /// InternalIP; default: the address of the default route's interface.
    pub internal_ip: Option<IpAddr>,
    pub max_pods: u32,
    /// Held back from pods for the system (kubelet's --system-reserved).
    pub reserved_cpu_millis: i64,
    pub reserved_memory_bytes: i64,
}

impl Default for NodeConfig {
    fn default() -> NodeConfig {
        NodeConfig {
            hostname: None,
            internal_ip: None,
            max_pods: DEFAULT_MAX_PODS,
            reserved_cpu_millis: 0,
            reserved_memory_bytes: 0,
        }
    }
}

/// A Node named after the host with its labels and status filled in.
pub fn node(cfg: &NodeConfig) -> Result<Node, NodeError> {
    let status = facts(cfg)?;
    let info = status.node_info.clone().unwrap_or_default();
    let name = status
        .addresses
        .iter()
        .find(|a| a.type_ == "Hostname")
        .map(|a| a.address.clone())
        .ok_or(NodeError::NoHostname)?;
    let mut meta = ObjectMeta::named(&name);
    meta.labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), name.clone()),
        ("kubernetes.io/os".to_string(), info.operating_system),
        ("kubernetes.io/arch".to_string(), info.architecture),
    ]);
    Ok(Node {
        api_version: "v1".into(),
        kind: "Node".into(),
        metadata: meta,
        status: Some(status),
        ..Node::default()
    })
}

/// Capacity, allocatable, addresses and nodeInfo of this host.
pub fn facts(cfg: &NodeConfig) -> Result<NodeStatus, NodeError> {
    let uts = nix::sys::utsname::uname().map_err(NodeError::Uname)?;
    let text = |s: &std::ffi::OsStr| s.to_string_lossy().into_owned();
    let hostname = match &cfg.hostname {
        Some(h) => h.clone(),
        None => text(uts.nodename()),
    };
    if hostname.is_empty() {
        return Err(NodeError::NoHostname);
    }
    let cpus = online_cpus();
    let memory = stats::memory_total()? as i64;
    let resources = |cpu_millis: i64, mem: i64, pods: i64| {
        BTreeMap::from([
            ("cpu".to_string(), Quantity::from_milli(cpu_millis.max(0))),
            (
                "memory".to_string(),
                Quantity::from_value(mem.max(0), Format::BinarySI),
            ),
            (
                "pods".to_string(),
                Quantity::from_value(pods, Format::DecimalSI),
            ),
        ])
    };
    let mut addresses = Vec::new();
    if let Some(ip) = cfg.internal_ip.or_else(default_route_ip) {
        addresses.push(NodeAddress {
            type_: "InternalIP".into(),
            address: ip.to_string(),
        });
    }
    addresses.push(NodeAddress {
        type_: "Hostname".into(),
        address: hostname,
    });
    Ok(NodeStatus {
        capacity: resources(cpus * 1000, memory, cfg.max_pods.into()),
        allocatable: resources(
            cpus * 1000 - cfg.reserved_cpu_millis,
            memory - cfg.reserved_memory_bytes,
            cfg.max_pods.into(),
        ),
        addresses,
        node_info: Some(system_info(&text(uts.release()), &text(uts.machine()))),
        ..NodeStatus::default()
    })
}

fn online_cpus() -> i64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as i64
}

fn system_info(kernel: &str, machine: &str) -> NodeSystemInfo {
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default().trim().to_string();
    let version = env!("CARGO_PKG_VERSION");
    NodeSystemInfo {
        machine_id: read("/etc/machine-id"),
        system_uuid: read("/sys/class/dmi/id/product_uuid"),
        boot_id: read("/proc/sys/kernel/random/boot_id"),
        kernel_version: kernel.to_string(),
        os_image: os_image(&fs::read_to_string("/etc/os-release").unwrap_or_default()),
        container_runtime_version: format!("corral://{version}"),
        kubelet_version: format!("v{version}-corral"),
        kube_proxy_version: String::new(),
        operating_system: "linux".into(),
        architecture: go_arch(machine).to_string(),
        swap: None,
    }
}

/// `PRETTY_NAME` of os-release, as kubelet reports `osImage`.
fn os_image(os_release: &str) -> String {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

/// uname's machine in Go's GOARCH spelling, as Kubernetes labels nodes.
fn go_arch(machine: &str) -> &str {
    match machine {
        "x86_64" => "amd64",
        "aarch64" | "arm64" => "arm64",
        "i386" | "i686" => "386",
        "armv7l" | "armv6l" => "arm",
        "ppc64le" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// The interface of the IPv4 default route in /proc/net/route.
fn default_route_interface(route_table: &str) -> Option<String> {
    route_table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 7 && f[1] == "00000000" && f[7] == "00000000").then(|| f[0].to_string())
    })
}

fn default_route_ip() -> Option<IpAddr> {
    let table = fs::read_to_string("/proc/net/route").ok()?;
    let iface = default_route_interface(&table)?;
    interface_ipv4(&iface).map(IpAddr::V4)
}

/// The first IPv4 address of an interface, through getifaddrs(3).
fn interface_ipv4(name: &str) -> Option<Ipv4Addr> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head into `head`, freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return None;
    }
    let mut found = None;
    let mut cur = head;
    while !cur.is_null() && found.is_none() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let ifname = unsafe { CStr::from_ptr(ifa.ifa_name) };
        // SAFETY: ifa_addr, when not null, points to a sockaddr whose family
        // says its real type; AF_INET means sockaddr_in.
        let family = (!ifa.ifa_addr.is_null()).then(|| unsafe { (*ifa.ifa_addr).sa_family });
        if ifname.to_bytes() == name.as_bytes() && family == Some(libc::AF_INET as u16) {
            // SAFETY: checked above that the address is AF_INET.
            let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            found = Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_route_from_proc_net_route() {
        let table =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            br0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            eth0\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n";
        assert_eq!(default_route_interface(table).as_deref(), Some("eth0"));
        assert_eq!(default_route_interface("Iface\tDestination\n"), None);
    }

    #[test]
    fn loopback_has_127_0_0_1() {
        assert_eq!(interface_ipv4("lo"), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(interface_ipv4("no-such-if0"), None);
    }

    #[test]
    fn os_release_and_arch() {
        let rel = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(os_image(rel), "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(os_image(""), "Linux");
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
    }

    #[test]
    fn facts_of_this_host() {
        let cfg = NodeConfig {
            hostname: Some("node-a".into()),
            internal_ip: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))),
            reserved_cpu_millis: 500,
            reserved_memory_bytes: 64 << 20,
            ..NodeConfig::default()
        };
        let node = node(&cfg).unwrap();
        assert_eq!(node.metadata.name, "node-a");
        assert_eq!(node.metadata.labels["kubernetes.io/os"], "linux");
        assert_eq!(node.address("InternalIP"), Some("192.0.2.7"));
        assert_eq!(node.address("Hostname"), Some("node-a"));
        let st = node.status.unwrap();
        let cpu = st.capacity["cpu"].milli_value();
        assert_eq!(cpu, online_cpus() * 1000);
        assert_eq!(st.allocatable["cpu"].milli_value(), cpu - 500);
        let mem = st.capacity["memory"].value();
        assert_eq!(mem as u64, stats::memory_total().unwrap());
        assert_eq!(st.allocatable["memory"].value(), mem - (64 << 20));
        assert_eq!(st.capacity["pods"].value(), 110);
        let info = st.node_info.unwrap();
        assert!(!info.kernel_version.is_empty());
        assert_eq!(info.operating_system, "linux");
        let v = serde_json::to_value(&st.capacity).unwrap();
        assert!(v["memory"].as_str().unwrap().ends_with("Ki"), "{v}");
    }
}
