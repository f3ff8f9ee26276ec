//! Service load balancing: every Service frontend (cluster IP, port, protocol,
//! optional node port) and its ready backends, rendered as ONE nftables script
//! that replaces a dedicated table (`table ip corral-services` by default) in a
//! single `nft -f -` transaction, so a packet sees either the old ruleset or the
//! new one, never a mix; conntrack keeps already DNATed connections on their
//! backend. The transaction never deletes the table: it reads what the table
//! holds ([`Current`]), flushes and refills the chains, changes only the map
//! elements that differ and deletes the chains no longer used (see
//! [`transaction`] for why).
//!
//! The net crate drives nftables through the `nft` CLI (see the `nft` module);
//! this module does the same.
//!
//! Layout (names as in kube-proxy's nftables mode, so the rules read alike):
//! - `nat-prerouting` (traffic from pods and other hosts) and `nat-output`
//!   (traffic from the host itself) jump to `services`, which looks up
//!   `daddr . l4proto . dport` in the verdict map `service-ips` and, for
//!   packets to a local address (`fib daddr type local`, loopback excluded),
//!   `l4proto . dport` in `service-nodeports`;
//! - `svc-<hash>-<name>`: one per frontend with backends; marks traffic from
//!   outside the cluster CIDR for masquerade, then picks a backend with
//!   `numgen random mod N vmap`;
//! - `ep-<hash>-<i>`: one per backend; marks hairpin traffic (a pod reaching
//!   itself through its service, whose reply would otherwise be a martian on its
//!   own interface) and DNATs;
//! - `ext-<hash>-<name>`: the NodePort entry; marks for masquerade (the client
//!   may be anywhere, the backend's reply must come back through this host to
//!   be un-NATed) and goes on to the `svc-` chain;
//! - `nat-postrouting`: masquerades marked packets (mark bit [`MASQ_BIT`]);
//! - `filter-input`/`filter-forward`/`filter-output`: new connections to a
//!   frontend without ready backends are rejected as Kubernetes does (a TCP
//!   reset, ICMP port unreachable for other protocols: the client sees
//!   "connection refused" at once);
//!   `filter-output` also drops the ICMP redirects the kernel sends a pod whose
//!   connection was DNATed back out of the bridge it came from (the pod would
//!   then send later packets for the cluster IP straight to that backend,
//!   which drops them).
//!
//! Same-bridge replies: when the backend sits on the same bridge as the client
//! pod, the reply is switched, not routed, and would skip this host's conntrack.
//! The pod network's own table (`corral-<bridge>`) masquerades `ct status dnat`
//! traffic from the bridge back onto it, which covers service DNAT too.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::cidr::Ipv4Cidr;
use crate::error::Result;
use crate::nft;

/// The table services live in unless configured otherwise.
pub const DEFAULT_TABLE: &str = "corral-services";

/// The packet mark bit asking `nat-postrouting` to masquerade (kube-proxy's).
pub const MASQ_BIT: u32 = 0x4000;

/// The longest part of a frontend's name kept in its chain names (readability
/// only: the hash makes them unique).
const NAME_IN_CHAIN: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum L4Proto {
    Tcp,
    Udp,
    Sctp,
}

impl fmt::Display for L4Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            L4Proto::Tcp => "tcp",
            L4Proto::Udp => "udp",
            L4Proto::Sctp => "sctp",
        })
    }
}

/// One service port: where clients connect and who answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frontend {
    /// Who this is, e.g. `default/web:http`: any text, only hashed and
    /// sanitized into chain names.
    pub name: String,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    pub proto: L4Proto,
    /// Also served on this port of the host's addresses.
    pub node_port: Option<u16>,
    /// The ready backends; order and duplicates do not matter.
    pub backends: Vec<SocketAddrV4>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicesConfig {
    /// The table's name (family ip).
    pub table: String,
    /// The pods' addresses: connections to a cluster IP from anywhere else
    /// (the host, another network) are masqueraded so replies come back here.
    /// `None`: only hairpin and NodePort traffic is masqueraded.
    pub cluster_cidr: Option<Ipv4Cidr>,
    /// The addresses NodePorts answer on; empty = every local address except
    /// loopback (a DNATed 127.0.0.1 packet cannot leave the host).
    pub node_port_addresses: Vec<Ipv4Addr>,
}

impl Default for ServicesConfig {
    fn default() -> ServicesConfig {
        ServicesConfig {
            table: DEFAULT_TABLE.to_string(),
            cluster_cidr: None,
            node_port_addresses: Vec::new(),
        }
    }
}

/// A rendered ruleset and what of the input it had to leave out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    /// The `nft -f` script that fills the table from empty: declarations,
    /// then rules and map elements. [`transaction`] puts the flushes of what
    /// is there now between the two and the deletion of unused chains after.
    pub script: String,
    /// Where the rules and the map elements begin in `script`.
    rules_at: usize,
    elements_at: usize,
    /// The per-frontend and per-backend chains the script declares.
    chains: BTreeSet<String>,
    /// What the maps hold.
    elements: Elements,
    /// One line per frontend, node port or backend skipped, saying why.
    pub skipped: Vec<String>,
    /// No frontend: `script` deletes the table.
    removes_table: bool,
}

/// Map name -> element key -> verdict, as nft writes them
/// (`10.96.0.1 . tcp . 80` -> `goto svc-...`).
type Elements = BTreeMap<String, BTreeMap<String, String>>;

/// What the table holds now: its per-frontend chains and map elements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Current {
    pub chains: BTreeSet<String>,
    elements: Elements,
}

/// The base chains and their hooks (kept, with their hooks registered, across
/// every replacement).
const BASE_CHAINS: [(&str, &str); 6] = [
    ("nat-prerouting", "type nat hook prerouting priority dstnat"),
    ("nat-output", "type nat hook output priority -100"),
    (
        "nat-postrouting",
        "type nat hook postrouting priority srcnat",
    ),
    // Before the usual filter chains, so a reject is not pre-empted by
    // another table's accept.
    ("filter-input", "type filter hook input priority -10"),
    ("filter-forward", "type filter hook forward priority -10"),
    ("filter-output", "type filter hook output priority -10"),
];

/// The regular chains every ruleset has.
const FIXED_CHAINS: [&str; 4] = [
    "services",
    "endpoints-check",
    "mark-for-masquerade",
    "reject-chain",
];

/// The base and fixed chains' names: every ruleset has them.
fn builtin_chains<'a>() -> impl Iterator<Item = &'a str> {
    BASE_CHAINS.iter().map(|(c, _)| *c).chain(FIXED_CHAINS)
}

const BY_ADDR: &str = "ipv4_addr . inet_proto . inet_service : verdict";
const BY_PORT: &str = "inet_proto . inet_service : verdict";

/// The verdict maps and their types.
const MAPS: [(&str, &str); 4] = [
    ("service-ips", BY_ADDR),
    ("service-nodeports", BY_PORT),
    ("no-endpoint-services", BY_ADDR),
    ("no-endpoint-nodeports", BY_PORT),
];

/// A frontend after checks: sorted, unique backends, chain names.
struct Planned<'a> {
    fe: &'a Frontend,
    backends: Vec<SocketAddrV4>,
    node_port: Option<u16>,
    svc_chain: String,
    ext_chain: String,
    ep_prefix: String,
}

/// Renders the ruleset for `frontends`: the same input (in any order) gives
/// the same script. With no frontends the script deletes the table (one less
/// hook on every packet of a host without Services).
pub fn render(cfg: &ServicesConfig, frontends: &[Frontend]) -> Ruleset {
    let t = format!("ip {}", cfg.table);
    let (planned, skipped) = plan(frontends);
    if planned.is_empty() {
        let script = nft::delete_table(&cfg.table);
        return Ruleset {
            rules_at: script.len(),
            elements_at: script.len(),
            script,
            chains: BTreeSet::new(),
            elements: Elements::new(),
            skipped,
            removes_table: true,
        };
    }
    let mut script = String::new();
    let mut w = Writer {
        t: &t,
        s: &mut script,
    };
    let chains = w.declare(&planned);
    let rules_at = w.s.len();
    w.rules(cfg, &planned);
    let elements_at = w.s.len();
    let elements = elements_of(&planned);
    w.elements(&elements);
    Ruleset {
        script,
        rules_at,
        elements_at,
        chains,
        elements,
        skipped,
        removes_table: false,
    }
}

/// The one transaction that turns the table holding `current` into
/// `ruleset`: declarations (no-ops for what exists), chain flushes, the new
/// rules, the map elements that differ, then the deletion of the chains
/// nothing refers to any more.
///
/// The maps are changed element by element, never flushed: flushing a map and
/// adding the same elements back in one transaction let about one new
/// connection in 3,000 miss its DNAT on this kernel (6.1) while the ruleset
/// was replaced 50 times a second (deleting and redeclaring the whole table,
/// what this module did first, did the same). A frontend's element keeps its
/// value as long as the frontend exists, so changing backends touches no map.
pub fn transaction(cfg: &ServicesConfig, ruleset: &Ruleset, current: &Current) -> String {
    if ruleset.removes_table {
        return ruleset.script.clone();
    }
    let t = format!("ip {}", cfg.table);
    let declare = &ruleset.script[..ruleset.rules_at];
    let rules = &ruleset.script[ruleset.rules_at..ruleset.elements_at];
    let mut s = String::with_capacity(ruleset.script.len() + 64 * (current.chains.len() + 12));
    s.push_str(declare);
    for chain in builtin_chains().chain(current.chains.iter().map(String::as_str)) {
        s.push_str(&format!("flush chain {t} {chain}\n"));
    }
    s.push_str(rules);
    let none = BTreeMap::new();
    for (map, _) in MAPS {
        let want = ruleset.elements.get(map).unwrap_or(&none);
        let have = current.elements.get(map).unwrap_or(&none);
        let stale: Vec<&str> = have
            .iter()
            .filter(|(k, v)| want.get(*k) != Some(*v))
            .map(|(k, _)| k.as_str())
            .collect();
        if !stale.is_empty() {
            s.push_str(&format!(
                "delete element {t} {map} {{ {} }}\n",
                stale.join(", ")
            ));
        }
        let added: Vec<String> = want
            .iter()
            .filter(|(k, v)| have.get(*k) != Some(*v))
            .map(|(k, v)| format!("{k} : {v}"))
            .collect();
        if !added.is_empty() {
            s.push_str(&format!(
                "add element {t} {map} {{ {} }}\n",
                added.join(", ")
            ));
        }
    }
    for stale in current.chains.difference(&ruleset.chains) {
        s.push_str(&format!("delete chain {t} {stale}\n"));
    }
    s
}

/// Replaces the table's content with `ruleset` in one transaction.
pub fn apply(cfg: &ServicesConfig, ruleset: &Ruleset) -> Result<()> {
    let current = if ruleset.removes_table {
        Current::default()
    } else {
        Current::read(cfg)?
    };
    nft::apply(
        &format!("replace table ip {}", cfg.table),
        &transaction(cfg, ruleset, &current),
    )
}

impl Current {
    /// Reads the table from the kernel (empty when it does not exist).
    pub fn read(cfg: &ServicesConfig) -> Result<Current> {
        let chains = nft::list_json(&["chains", "ip"])?;
        let maps = nft::list_json(&["maps", "ip"])?;
        Ok(Current::parse(&chains, &maps, &cfg.table))
    }

    /// From `nft -j list chains` and `nft -j list maps` output: the chains of
    /// `table` but the base and fixed ones, and the elements of its maps.
    fn parse(chains: &serde_json::Value, maps: &serde_json::Value, table: &str) -> Current {
        let builtin: BTreeSet<&str> = builtin_chains().collect();
        let chains = objects(chains, "chain", table)
            .filter_map(|c| c["name"].as_str())
            .filter(|name| !builtin.contains(name))
            .map(str::to_string)
            .collect();
        let elements = objects(maps, "map", table)
            .filter_map(|m| {
                let elems = m["elem"].as_array().into_iter().flatten();
                let pairs = elems.filter_map(|e| Some((key_text(&e[0])?, verdict_text(&e[1]))));
                Some((m["name"].as_str()?.to_string(), pairs.collect()))
            })
            .collect();
        Current { chains, elements }
    }
}

/// The `kind` objects (`chain`, `map`) of family ip table `table` in nft's JSON.
fn objects<'a>(
    listing: &'a serde_json::Value,
    kind: &'a str,
    table: &'a str,
) -> impl Iterator<Item = &'a serde_json::Value> {
    listing["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(move |item| item.get(kind))
        .filter(move |o| o["table"] == table && o["family"] == "ip")
}

/// An element key as this module writes it: concatenations joined by ` . `.
fn key_text(key: &serde_json::Value) -> Option<String> {
    let scalar = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    match key.get("concat") {
        Some(parts) => {
            let parts: Option<Vec<String>> = parts.as_array()?.iter().map(scalar).collect();
            Some(parts?.join(" . "))
        }
        None => scalar(key),
    }
}

/// A verdict as this module writes it (`goto CHAIN`); anything else is kept
/// as its JSON, which never equals a wanted verdict, so it gets replaced.
fn verdict_text(verdict: &serde_json::Value) -> String {
    for kind in ["goto", "jump"] {
        if let Some(target) = verdict[kind]["target"].as_str() {
            return format!("{kind} {target}");
        }
    }
    verdict.to_string()
}

/// Deletes the table; a missing table is fine.
pub fn remove(cfg: &ServicesConfig) -> Result<()> {
    nft::apply(
        &format!("delete table ip {}", cfg.table),
        &nft::delete_table(&cfg.table),
    )
}

fn plan(frontends: &[Frontend]) -> (Vec<Planned<'_>>, Vec<String>) {
    let mut sorted: Vec<&Frontend> = frontends.iter().collect();
    sorted.sort_by(|a, b| {
        (&a.name, a.cluster_ip, a.proto, a.port).cmp(&(&b.name, b.cluster_ip, b.proto, b.port))
    });
    let mut skipped = Vec::new();
    let mut addrs = BTreeSet::new();
    let mut node_ports = BTreeSet::new();
    let mut planned = Vec::new();
    for fe in sorted {
        let what = format!("{:?} ({}:{}/{})", fe.name, fe.cluster_ip, fe.port, fe.proto);
        if fe.port == 0 || fe.cluster_ip.is_unspecified() {
            skipped.push(format!("{what}: no cluster IP or port 0"));
            continue;
        }
        if !addrs.insert((fe.cluster_ip, fe.proto, fe.port)) {
            skipped.push(format!("{what}: another frontend has the same address"));
            continue;
        }
        let node_port = fe.node_port.filter(|p| *p != 0);
        let node_port = match node_port {
            Some(p) if !node_ports.insert((fe.proto, p)) => {
                skipped.push(format!("{what}: node port {p} is used by another frontend"));
                None
            }
            other => other,
        };
        let mut backends: Vec<SocketAddrV4> = Vec::new();
        for b in &fe.backends {
            if b.port() == 0 || b.ip().is_unspecified() {
                skipped.push(format!("{what}: backend {b} has no address or port 0"));
            } else {
                backends.push(*b);
            }
        }
        backends.sort();
        backends.dedup();
        let id = format!("{:016x}", fnv1a(&what));
        let readable = chain_safe(&fe.name);
        planned.push(Planned {
            fe,
            backends,
            node_port,
            svc_chain: format!("svc-{id}-{readable}"),
            ext_chain: format!("ext-{id}-{readable}"),
            ep_prefix: format!("ep-{id}"),
        });
    }
    (planned, skipped)
}

/// FNV-1a: stable across builds and platforms (std's hasher is not).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What nft accepts unquoted in an identifier after a letter: letters, digits
/// and `/ - _ .`; anything else becomes `_`, and the result is cut short.
fn chain_safe(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '/' | '-' | '_' | '.' => c,
            _ => '_',
        })
        .take(NAME_IN_CHAIN)
        .collect()
}

/// Each frontend's entry: its cluster IP (and node port) to its chain, or to
/// the reject chain when it has no backend.
fn elements_of(planned: &[Planned<'_>]) -> Elements {
    let mut maps = Elements::new();
    let mut put = |map: &str, key: String, verdict: String| {
        maps.entry(map.to_string())
            .or_default()
            .insert(key, verdict);
    };
    for p in planned {
        let fe = p.fe;
        let addr = format!("{} . {} . {}", fe.cluster_ip, fe.proto, fe.port);
        let node = p.node_port.map(|n| format!("{} . {n}", fe.proto));
        let reject = "goto reject-chain".to_string();
        if p.backends.is_empty() {
            put("no-endpoint-services", addr, reject.clone());
            if let Some(n) = node {
                put("no-endpoint-nodeports", n, reject);
            }
        } else {
            put("service-ips", addr, format!("goto {}", p.svc_chain));
            if let Some(n) = node {
                put("service-nodeports", n, format!("goto {}", p.ext_chain));
            }
        }
    }
    maps
}

struct Writer<'a> {
    t: &'a str,
    s: &'a mut String,
}

impl Writer<'_> {
    fn line(&mut self, args: fmt::Arguments<'_>) {
        // Writing to a String cannot fail.
        let _ = self.s.write_fmt(args);
        self.s.push('\n');
    }

    fn rules(&mut self, cfg: &ServicesConfig, planned: &[Planned<'_>]) {
        self.hooks(cfg);
        for p in planned.iter().filter(|p| !p.backends.is_empty()) {
            self.service(cfg, p);
        }
    }

    /// Declares the table, chains and maps; returns the per-frontend chains.
    fn declare(&mut self, planned: &[Planned<'_>]) -> BTreeSet<String> {
        let t = self.t;
        self.line(format_args!("add table {t}"));
        for (chain, hook) in BASE_CHAINS {
            self.line(format_args!(
                "add chain {t} {chain} {{ {hook}; policy accept; }}"
            ));
        }
        for chain in FIXED_CHAINS {
            self.line(format_args!("add chain {t} {chain}"));
        }
        let mut chains = BTreeSet::new();
        for p in planned.iter().filter(|p| !p.backends.is_empty()) {
            chains.insert(p.svc_chain.clone());
            if p.node_port.is_some() {
                chains.insert(p.ext_chain.clone());
            }
            for i in 0..p.backends.len() {
                chains.insert(format!("{}-{i}", p.ep_prefix));
            }
        }
        for chain in &chains {
            self.line(format_args!("add chain {t} {chain}"));
        }
        for (map, ty) in MAPS {
            self.line(format_args!("add map {t} {map} {{ type {ty}; }}"));
        }
        chains
    }

    fn hooks(&mut self, cfg: &ServicesConfig) {
        let t = self.t;
        let local = match cfg.node_port_addresses.as_slice() {
            [] => "fib daddr type local ip daddr != 127.0.0.0/8".to_string(),
            addrs => {
                let list: BTreeSet<Ipv4Addr> = addrs.iter().copied().collect();
                let list: Vec<String> = list.iter().map(|a| a.to_string()).collect();
                format!("ip daddr {{ {} }}", list.join(", "))
            }
        };
        let by_addr = "ip daddr . meta l4proto . th dport vmap";
        let by_port = "meta l4proto . th dport vmap";
        self.line(format_args!("add rule {t} nat-prerouting jump services"));
        self.line(format_args!("add rule {t} nat-output jump services"));
        self.line(format_args!("add rule {t} services {by_addr} @service-ips"));
        self.line(format_args!(
            "add rule {t} services {local} {by_port} @service-nodeports"
        ));
        for chain in ["filter-input", "filter-forward", "filter-output"] {
            self.line(format_args!(
                "add rule {t} {chain} ct state new jump endpoints-check"
            ));
        }
        self.line(format_args!(
            "add rule {t} endpoints-check {by_addr} @no-endpoint-services"
        ));
        self.line(format_args!(
            "add rule {t} endpoints-check {local} {by_port} @no-endpoint-nodeports"
        ));
        // A pod's connection DNATed to a pod on the same bridge leaves by the
        // interface it came in on, so the kernel tells the client (ICMP
        // redirect) to send to that pod directly, which then drops what is
        // addressed to the cluster IP: later connections to it hang.
        self.line(format_args!(
            "add rule {t} filter-output icmp type redirect ct status dnat drop"
        ));
        // A TCP reset reaches a connect() at once; an ICMP error that arrives
        // while connect() still holds its socket (always, when the client is
        // on this host) only surfaces at the SYN's retransmission, 1 s later.
        self.line(format_args!(
            "add rule {t} reject-chain meta l4proto tcp reject with tcp reset"
        ));
        self.line(format_args!("add rule {t} reject-chain reject"));
        self.line(format_args!(
            "add rule {t} mark-for-masquerade meta mark set meta mark or {MASQ_BIT:#x}"
        ));
        self.line(format_args!(
            "add rule {t} nat-postrouting meta mark and {MASQ_BIT:#x} == 0 return"
        ));
        self.line(format_args!(
            "add rule {t} nat-postrouting meta mark set meta mark xor {MASQ_BIT:#x}"
        ));
        self.line(format_args!(
            "add rule {t} nat-postrouting masquerade fully-random"
        ));
    }

    fn elements(&mut self, elements: &Elements) {
        let t = self.t;
        for (map, elems) in elements {
            let list: Vec<String> = elems.iter().map(|(k, v)| format!("{k} : {v}")).collect();
            self.line(format_args!(
                "add element {t} {map} {{ {} }}",
                list.join(", ")
            ));
        }
    }

    fn service(&mut self, cfg: &ServicesConfig, p: &Planned<'_>) {
        let t = self.t;
        let svc = &p.svc_chain;
        if let Some(cidr) = cfg.cluster_cidr {
            self.line(format_args!(
                "add rule {t} {svc} ip saddr != {cidr} jump mark-for-masquerade"
            ));
        }
        let picks: Vec<String> = (0..p.backends.len())
            .map(|i| format!("{i} : goto {}-{i}", p.ep_prefix))
            .collect();
        self.line(format_args!(
            "add rule {t} {svc} numgen random mod {} vmap {{ {} }}",
            p.backends.len(),
            picks.join(", ")
        ));
        if p.node_port.is_some() {
            let ext = &p.ext_chain;
            self.line(format_args!("add rule {t} {ext} jump mark-for-masquerade"));
            self.line(format_args!("add rule {t} {ext} goto {svc}"));
        }
        for (i, b) in p.backends.iter().enumerate() {
            let ep = format!("{}-{i}", p.ep_prefix);
            self.line(format_args!(
                "add rule {t} {ep} ip saddr {} jump mark-for-masquerade",
                b.ip()
            ));
            self.line(format_args!(
                "add rule {t} {ep} meta l4proto {} dnat to {b}",
                p.fe.proto
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fe(name: &str, ip: [u8; 4], port: u16, backends: &[&str]) -> Frontend {
        Frontend {
            name: name.to_string(),
            cluster_ip: Ipv4Addr::from(ip),
            port,
            proto: L4Proto::Tcp,
            node_port: None,
            backends: backends.iter().map(|b| b.parse().unwrap()).collect(),
        }
    }

    fn cfg() -> ServicesConfig {
        ServicesConfig {
            cluster_cidr: Some("10.244.0.0/16".parse().unwrap()),
            ..ServicesConfig::default()
        }
    }

    fn lines(s: &str) -> Vec<&str> {
        s.lines().collect()
    }

    #[test]
    fn no_frontends_only_delete_the_table() {
        let r = render(&cfg(), &[]);
        let want = "add table ip corral-services\ndelete table ip corral-services\n";
        assert_eq!(r.script, want);
        let current = Current {
            chains: ["svc-1-a".to_string()].into(),
            ..Current::default()
        };
        assert_eq!(transaction(&cfg(), &r, &current), want);
        assert!(r.skipped.is_empty());
    }

    #[test]
    fn the_transaction_flushes_chains_changes_elements_then_deletes_what_is_gone() {
        let web = fe("ns/web", [10, 96, 0, 10], 80, &["10.244.0.5:80"]);
        let r = render(&cfg(), &[web]);
        let kept = r
            .chains
            .iter()
            .find(|c| c.starts_with("svc-"))
            .unwrap()
            .clone();
        let gone = "svc-0000000000000000-gone";
        let mut current = Current {
            chains: [kept.clone(), gone.to_string()].into(),
            ..Current::default()
        };
        let ips = current.elements.entry("service-ips".into()).or_default();
        ips.insert("10.96.0.10 . tcp . 80".into(), format!("goto {kept}"));
        ips.insert("10.96.0.99 . tcp . 80".into(), format!("goto {gone}"));
        let s = transaction(&cfg(), &r, &current);
        let lines = lines(&s);
        let pos = |l: &str| {
            lines
                .iter()
                .position(|x| *x == l)
                .unwrap_or_else(|| panic!("missing {l:?} in\n{s}"))
        };
        let t = "ip corral-services";
        let first_rule = lines
            .iter()
            .position(|l| l.starts_with("add rule"))
            .unwrap();
        let last_map = pos(&format!(
            "add map {t} no-endpoint-nodeports {{ type {BY_PORT}; }}"
        ));
        for flushed in [
            format!("flush chain {t} nat-prerouting"),
            format!("flush chain {t} reject-chain"),
            format!("flush chain {t} {kept}"),
            format!("flush chain {t} {gone}"),
        ] {
            assert!(
                last_map < pos(&flushed) && pos(&flushed) < first_rule,
                "{flushed}:\n{s}"
            );
        }
        assert!(!s.contains("flush map"), "maps are never flushed:\n{s}");
        // The element that stays is neither deleted nor added again.
        assert!(!s.contains("add element"), "{s}");
        let dropped = pos(&format!(
            "delete element {t} service-ips {{ 10.96.0.99 . tcp . 80 }}"
        ));
        assert!(dropped > first_rule);
        assert_eq!(
            pos(&format!("delete chain {t} {gone}")),
            lines.len() - 1,
            "{s}"
        );
        assert!(!s.contains(&format!("delete chain {t} {kept}")), "{s}");
        assert!(!s.contains("delete table"), "{s}");

        // From an empty table: every element is added.
        let fresh = transaction(&cfg(), &r, &Current::default());
        let add = format!("add element {t} service-ips {{ 10.96.0.10 . tcp . 80 : goto {kept} }}");
        assert!(fresh.lines().any(|l| l == add), "{fresh}");
        assert!(!fresh.contains("delete"), "{fresh}");
    }

    #[test]
    fn a_changed_element_is_deleted_then_added() {
        let r = render(
            &cfg(),
            &[fe("ns/new", [10, 96, 0, 10], 80, &["10.244.0.5:80"])],
        );
        let mut current = Current::default();
        current
            .elements
            .entry("service-ips".into())
            .or_default()
            .insert("10.96.0.10 . tcp . 80".into(), "goto svc-1-old".into());
        let s = transaction(&cfg(), &r, &current);
        let del = s.find("delete element ip corral-services service-ips { 10.96.0.10 . tcp . 80 }");
        let add = s
            .find("add element ip corral-services service-ips { 10.96.0.10 . tcp . 80 : goto svc-");
        assert!(del.is_some() && add.is_some() && del < add, "{s}");
    }

    #[test]
    fn the_current_table_is_read_from_nft_json() {
        let chains = serde_json::json!({"nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {"chain": {"family": "ip", "table": "corral-services", "name": "nat-prerouting", "hook": "prerouting"}},
            {"chain": {"family": "ip", "table": "corral-services", "name": "services"}},
            {"chain": {"family": "ip", "table": "corral-services", "name": "svc-1-a"}},
            {"chain": {"family": "ip", "table": "corral-services", "name": "ep-1-0"}},
            {"chain": {"family": "ip", "table": "nat", "name": "svc-2-b"}},
            {"chain": {"family": "ip6", "table": "corral-services", "name": "svc-3-c"}},
        ]});
        let maps = serde_json::json!({"nftables": [
            {"map": {"family": "ip", "name": "service-ips", "table": "corral-services", "map": "verdict",
                     "elem": [[{"concat": ["10.96.0.10", "tcp", 80]}, {"goto": {"target": "svc-1-a"}}],
                              [{"concat": ["10.96.0.11", "udp", 53]}, {"accept": null}]]}},
            {"map": {"family": "ip", "name": "service-nodeports", "table": "corral-services", "map": "verdict"}},
            {"map": {"family": "ip", "name": "service-ips", "table": "other", "map": "verdict",
                     "elem": [[{"concat": ["10.96.0.12", "tcp", 80]}, {"goto": {"target": "x"}}]]}},
        ]});
        let got = Current::parse(&chains, &maps, "corral-services");
        let want: BTreeSet<String> = ["ep-1-0", "svc-1-a"].map(String::from).into();
        assert_eq!(got.chains, want);
        let ips = &got.elements["service-ips"];
        assert_eq!(ips.len(), 2);
        assert_eq!(ips["10.96.0.10 . tcp . 80"], "goto svc-1-a");
        assert!(!ips["10.96.0.11 . udp . 53"].starts_with("goto"));
        assert!(got.elements["service-nodeports"].is_empty());
        let none = serde_json::json!({});
        assert_eq!(
            Current::parse(&none, &none, "corral-services"),
            Current::default()
        );
    }

    #[test]
    fn one_service_balances_over_its_backends() {
        let mut web = fe(
            "default/web:http",
            [10, 96, 0, 10],
            80,
            &["10.244.1.7:8080", "10.244.0.5:8080"],
        );
        web.node_port = Some(30080);
        let r = render(&cfg(), &[web]);
        let s = &r.script;
        assert!(s.starts_with("add table ip corral-services\nadd chain "));
        assert!(!s.contains("delete"), "{s}");
        let id = format!("{:016x}", fnv1a("\"default/web:http\" (10.96.0.10:80/tcp)"));
        let svc = format!("svc-{id}-default/web_http");
        let ext = format!("ext-{id}-default/web_http");
        for want in [
            "add chain ip corral-services nat-prerouting { type nat hook prerouting priority dstnat; policy accept; }".to_string(),
            "add rule ip corral-services services ip daddr . meta l4proto . th dport vmap @service-ips".to_string(),
            "add rule ip corral-services services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports".to_string(),
            format!("add element ip corral-services service-ips {{ 10.96.0.10 . tcp . 80 : goto {svc} }}"),
            format!("add element ip corral-services service-nodeports {{ tcp . 30080 : goto {ext} }}"),
            format!("add rule ip corral-services {svc} ip saddr != 10.244.0.0/16 jump mark-for-masquerade"),
            format!("add rule ip corral-services {svc} numgen random mod 2 vmap {{ 0 : goto ep-{id}-0, 1 : goto ep-{id}-1 }}"),
            format!("add rule ip corral-services {ext} jump mark-for-masquerade"),
            format!("add rule ip corral-services {ext} goto {svc}"),
            // Backends sorted by address: .0.5 is ep-0.
            format!("add rule ip corral-services ep-{id}-0 ip saddr 10.244.0.5 jump mark-for-masquerade"),
            format!("add rule ip corral-services ep-{id}-0 meta l4proto tcp dnat to 10.244.0.5:8080"),
            format!("add rule ip corral-services ep-{id}-1 meta l4proto tcp dnat to 10.244.1.7:8080"),
            "add rule ip corral-services nat-postrouting meta mark and 0x4000 == 0 return".to_string(),
            "add rule ip corral-services nat-postrouting masquerade fully-random".to_string(),
        ] {
            assert!(lines(s).contains(&want.as_str()), "missing {want:?} in\n{s}");
        }
        // Chains are declared before any map element or rule refers to them.
        let pos = |needle: &str| s.find(needle).unwrap();
        assert!(pos(&format!("add chain ip corral-services {svc}\n")) < pos("add element"));
        assert!(
            !s.contains("add element ip corral-services no-endpoint"),
            "{s}"
        );
    }

    #[test]
    fn stable_whatever_the_input_order() {
        let a = fe(
            "ns/a:x",
            [10, 96, 0, 1],
            80,
            &["10.244.0.2:80", "10.244.0.3:80"],
        );
        let b = fe("ns/b:y", [10, 96, 0, 2], 53, &["10.244.0.4:53"]);
        let mut b_udp = b.clone();
        b_udp.proto = L4Proto::Udp;
        let one = render(&cfg(), &[a.clone(), b.clone(), b_udp.clone()]);
        let mut a_rev = a.clone();
        a_rev.backends.reverse();
        a_rev.backends.push(a.backends[0]);
        let two = render(&cfg(), &[b_udp, b, a_rev]);
        assert_eq!(one, two);
        assert!(one
            .script
            .contains("meta l4proto udp dnat to 10.244.0.4:53"));
    }

    #[test]
    fn names_are_sanitized_and_hashed() {
        let evil = fe(
            "ns/x\"; flush ruleset; {:\n",
            [10, 96, 0, 1],
            80,
            &["10.244.0.2:80"],
        );
        let r = render(&cfg(), &[evil]);
        assert!(!r.script.contains("flush ruleset;"), "{}", r.script);
        assert!(!r.script.contains('"'), "{}", r.script);
        assert!(
            r.script.contains("-ns/x___flush_ruleset_____\n"),
            "{}",
            r.script
        );
        let long = fe(&"n".repeat(300), [10, 96, 0, 1], 80, &["10.244.0.2:80"]);
        let r = render(&cfg(), &[long]);
        let svc = r
            .script
            .lines()
            .find_map(|l| l.strip_prefix("add chain ip corral-services svc-"))
            .unwrap();
        assert_eq!(svc.len(), 16 + 1 + NAME_IN_CHAIN);
        // Same name, other address: other chains.
        let x = fe("same", [10, 96, 0, 1], 80, &["10.244.0.2:80"]);
        let y = fe("same", [10, 96, 0, 2], 80, &["10.244.0.3:80"]);
        let s = render(&cfg(), &[x, y]).script;
        let chains: BTreeSet<&str> = s
            .lines()
            .filter(|l| l.starts_with("add chain ip corral-services svc-"))
            .collect();
        assert_eq!(chains.len(), 2, "{s}");
    }

    #[test]
    fn no_ready_backends_rejects() {
        let mut dead = fe("ns/dead", [10, 96, 0, 9], 443, &[]);
        dead.node_port = Some(30443);
        let r = render(&cfg(), &[dead]);
        let s = &r.script;
        for want in [
            "add element ip corral-services no-endpoint-services { 10.96.0.9 . tcp . 443 : goto reject-chain }",
            "add element ip corral-services no-endpoint-nodeports { tcp . 30443 : goto reject-chain }",
            "add rule ip corral-services filter-forward ct state new jump endpoints-check",
            "add rule ip corral-services filter-input ct state new jump endpoints-check",
            "add rule ip corral-services filter-output ct state new jump endpoints-check",
            "add rule ip corral-services reject-chain meta l4proto tcp reject with tcp reset",
            "add rule ip corral-services reject-chain reject",
        ] {
            assert!(lines(s).contains(&want), "missing {want:?} in\n{s}");
        }
        assert!(!s.contains("svc-"), "{s}");
        assert!(!s.contains("service-ips {  }") && !s.contains("service-ips { 10"));
    }

    #[test]
    fn bad_and_duplicate_input_is_skipped_with_a_reason() {
        let a = fe("a", [10, 96, 0, 1], 80, &["10.244.0.2:80", "10.244.0.3:0"]);
        let mut dup = fe("b", [10, 96, 0, 1], 80, &["10.244.0.4:80"]);
        dup.node_port = Some(30000);
        let zero = fe("c", [10, 96, 0, 3], 0, &[]);
        let mut np = fe("d", [10, 96, 0, 4], 80, &["10.244.0.5:80"]);
        np.node_port = Some(30000);
        let mut np2 = fe("e", [10, 96, 0, 5], 80, &["10.244.0.6:80"]);
        np2.node_port = Some(30000);
        let r = render(&cfg(), &[np2, zero, dup, a, np]);
        let joined = r.skipped.join("\n");
        assert_eq!(r.skipped.len(), 4, "{joined}");
        assert!(joined.contains("backend 10.244.0.3:0"), "{joined}");
        assert!(
            joined.contains("\"b\" (10.96.0.1:80/tcp): another frontend"),
            "{joined}"
        );
        assert!(joined.contains("\"c\""), "{joined}");
        assert!(
            joined.contains("\"e\" (10.96.0.5:80/tcp): node port 30000"),
            "{joined}"
        );
        assert_eq!(r.script.matches("tcp . 30000 :").count(), 1, "{}", r.script);
        assert!(
            r.script.contains("dnat to 10.244.0.6:80"),
            "e keeps its cluster IP"
        );
    }

    #[test]
    fn node_port_addresses_restrict_node_ports() {
        let mut web = fe("w", [10, 96, 0, 1], 80, &["10.244.0.2:80"]);
        web.node_port = Some(30001);
        let c = ServicesConfig {
            node_port_addresses: vec![Ipv4Addr::new(192, 168, 1, 9), Ipv4Addr::new(192, 168, 1, 2)],
            cluster_cidr: None,
            table: "t1".into(),
        };
        let s = render(&c, &[web]).script;
        assert!(s.contains(
            "add rule ip t1 services ip daddr { 192.168.1.2, 192.168.1.9 } meta l4proto . th dport vmap @service-nodeports"
        ), "{s}");
        assert!(
            !s.contains("saddr !="),
            "no cluster CIDR, no mark by source: {s}"
        );
    }

    #[test]
    fn nft_accepts_the_script() {
        // `nft -c` checks a script against the kernel without committing it.
        let ok = std::process::Command::new("nft")
            .args(["-c", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let Ok(mut child) = ok else {
            eprintln!("SKIPPED: nft is not installed");
            return;
        };
        let mut web = fe(
            "default/web:http",
            [10, 96, 0, 10],
            80,
            &["10.244.0.5:8080", "10.244.1.7:8080"],
        );
        web.node_port = Some(30080);
        let mut dns = fe(
            "kube-system/dns:dns",
            [10, 96, 0, 2],
            53,
            &["10.244.0.9:53"],
        );
        dns.proto = L4Proto::Udp;
        let mut dead = fe("ns/dead", [10, 96, 0, 9], 443, &[]);
        dead.node_port = Some(30443);
        let mut sctp = fe("ns/s", [10, 96, 0, 7], 9, &["10.244.0.9:9"]);
        sctp.proto = L4Proto::Sctp;
        let c = ServicesConfig {
            table: "corral-services-check".into(),
            ..cfg()
        };
        let r = render(&c, &[web, dns, dead, sctp]);
        let script = transaction(&c, &r, &Current::default());
        let mut stdin = child.stdin.take().unwrap();
        std::io::Write::write_all(&mut stdin, script.as_bytes()).unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        if String::from_utf8_lossy(&out.stderr).contains("Operation not permitted") {
            eprintln!("SKIPPED: nft -c needs CAP_NET_ADMIN");
            return;
        }
        assert!(
            out.status.success(),
            "{}\n{script}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
