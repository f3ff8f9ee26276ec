//! The network's nftables table, as text for `nft -f -`: one transaction per change.
//!
//! Layout of `table ip corral-<bridge>`:
//! - `prerouting`/`output` (nat): packets to a local address look up
//!   `(l4proto . dport)` in the verdict map `published`, whose elements jump to the
//!   chain of the owner publishing that port;
//! - `o-<hash>` per owner: its DNAT rules; adding or removing an owner touches only
//!   its chain and its map elements;
//! - `postrouting` (nat): masquerade for the network leaving by another interface,
//!   and for DNATed traffic coming from the host's loopback or from the network
//!   itself (hairpin), whose replies would otherwise not come back through us;
//! - `input` (filter): drops new connections to 127.0.0.0/8 arriving on the
//!   bridge. `route_localnet` (needed for loopback publishing) would otherwise let
//!   a container reach the host's loopback-only services through the gateway
//!   (the hole kube-proxy closed for CVE-2020-8558); replies to our own DNATed
//!   loopback connections are established and pass;
//! - `forward` (filter, policy accept): accepts the bridge's traffic and what is
//!   DNATed to it. An accept here cannot overrule a drop in another table's forward
//!   chain (every base chain of a hook must accept); it keeps the rules complete
//!   should the policy ever become drop.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::cidr::Ipv4Cidr;
use crate::error::{Error, Result};
use crate::port::PortMapping;

/// The table of the network on `bridge`.
pub fn table_name(bridge: &str) -> String {
    format!("corral-{bridge}")
}

/// Declares the table, chains and map (no-ops when present) and rewrites the base
/// chains' rules; owner chains and map elements are kept.
/// `cluster`: destinations that keep the pod's source address (other nodes'
/// pods), exempt from the masquerade of traffic leaving the bridge.
pub fn base_ruleset(
    table: &str,
    bridge: &str,
    cidr: Ipv4Cidr,
    cluster: Option<Ipv4Cidr>,
) -> String {
    let t = format!("ip {table}");
    let mut s = declare(&t);
    for chain in ["prerouting", "output", "postrouting", "input", "forward"] {
        s += &format!("flush chain {t} {chain}\n");
    }
    let lookup = "fib daddr type local meta l4proto . th dport vmap @published";
    s += &format!("add rule {t} prerouting {lookup}\n");
    s += &format!("add rule {t} output {lookup}\n");
    let exempt = cluster
        .map(|c| format!("ip daddr != {c} "))
        .unwrap_or_default();
    s += &format!(
        "add rule {t} postrouting ip saddr {cidr} {exempt}oifname != \"{bridge}\" masquerade\n"
    );
    for src in ["127.0.0.0/8".to_string(), cidr.to_string()] {
        s += &format!(
            "add rule {t} postrouting oifname \"{bridge}\" ct status dnat ip saddr {src} masquerade\n"
        );
    }
    s += &format!(
        "add rule {t} input iifname \"{bridge}\" ip daddr 127.0.0.0/8 ct state new,invalid drop\n"
    );
    s += &format!("add rule {t} forward iifname \"{bridge}\" accept\n");
    s +=
        &format!("add rule {t} forward oifname \"{bridge}\" ct state established,related accept\n");
    s += &format!("add rule {t} forward oifname \"{bridge}\" ct status dnat accept\n");
    s
}

fn declare(t: &str) -> String {
    let mut s = format!("add table {t}\n");
    for (chain, hook) in [
        ("prerouting", "type nat hook prerouting priority dstnat"),
        ("output", "type nat hook output priority -100"),
        ("postrouting", "type nat hook postrouting priority srcnat"),
        ("input", "type filter hook input priority filter"),
        ("forward", "type filter hook forward priority filter"),
    ] {
        s += &format!("add chain {t} {chain} {{ {hook}; policy accept; }}\n");
    }
    s += &format!("add map {t} published {{ type inet_proto . inet_service : verdict; }}\n");
    s
}

fn elements(ports: &[PortMapping], chain: Option<&str>) -> String {
    ports
        .iter()
        .map(|p| match chain {
            Some(c) => format!("{} . {} : jump {c}", p.proto, p.host_port),
            None => format!("{} . {}", p.proto, p.host_port),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Publishes `ports` of the owner whose chain is `chain` at `ip`, replacing what
/// that chain held.
pub fn add_owner(table: &str, chain: &str, ip: Ipv4Addr, ports: &[PortMapping]) -> String {
    let t = format!("ip {table}");
    let mut s = format!("add chain {t} {chain}\nflush chain {t} {chain}\n");
    for p in ports {
        let daddr = p
            .host_ip
            .map(|h| format!("ip daddr {h} "))
            .unwrap_or_default();
        s += &format!(
            "add rule {t} {chain} {daddr}{} dport {} dnat to {ip}:{}\n",
            p.proto, p.host_port, p.container_port
        );
    }
    if !ports.is_empty() {
        s += &format!(
            "add element {t} published {{ {} }}\n",
            elements(ports, Some(chain))
        );
    }
    s
}

/// Removes the owner's map elements and chain. The objects are declared first so
/// that the transaction also succeeds when some are already gone (nft 1.0.6 has no
/// `destroy`).
pub fn remove_owner(table: &str, chain: &str, ports: &[PortMapping]) -> String {
    let t = format!("ip {table}");
    let mut s = format!("add table {t}\n");
    s += &format!("add map {t} published {{ type inet_proto . inet_service : verdict; }}\n");
    s += &format!("add chain {t} {chain}\n");
    if !ports.is_empty() {
        s += &format!(
            "add element {t} published {{ {} }}\n",
            elements(ports, Some(chain))
        );
        s += &format!(
            "delete element {t} published {{ {} }}\n",
            elements(ports, None)
        );
    }
    s += &format!("flush chain {t} {chain}\ndelete chain {t} {chain}\n");
    s
}

/// Deletes the whole table; a missing table is fine.
pub fn delete_table(table: &str) -> String {
    format!("add table ip {table}\ndelete table ip {table}\n")
}

/// Runs `nft -f -` with `script` as one atomic transaction.
pub fn apply(what: &str, script: &str) -> Result<()> {
    let fail = |msg: String| Error::Nft {
        what: what.to_string(),
        msg,
    };
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run nft (is nftables installed?): {e}")))?;
    let written = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(script.as_bytes()))
        .unwrap_or(Ok(()));
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("waiting for nft: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(fail(format!("{}: {}", out.status, stderr.trim())));
    }
    written.map_err(|e| fail(format!("writing the ruleset to nft: {e}")))
}

/// `nft -j list WHAT...` (e.g. `chains ip`) as nft's JSON.
pub fn list_json(what: &[&str]) -> Result<serde_json::Value> {
    let fail = |msg: String| Error::Nft {
        what: format!("list {}", what.join(" ")),
        msg,
    };
    let out = Command::new("nft")
        .args(["-j", "list"])
        .args(what)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail(format!("cannot run nft (is nftables installed?): {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(fail(format!("{}: {}", out.status, stderr.trim())));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| fail(format!("reading nft's JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_ruleset_masquerades_and_looks_up_published_ports() {
        let s = base_ruleset("corral-br0", "br0", "10.9.0.0/16".parse().unwrap(), None);
        assert!(s.starts_with("add table ip corral-br0\n"));
        for line in [
            "add chain ip corral-br0 prerouting { type nat hook prerouting priority dstnat; policy accept; }",
            "add chain ip corral-br0 output { type nat hook output priority -100; policy accept; }",
            "flush chain ip corral-br0 postrouting",
            "add rule ip corral-br0 output fib daddr type local meta l4proto . th dport vmap @published",
            "add rule ip corral-br0 postrouting ip saddr 10.9.0.0/16 oifname != \"br0\" masquerade",
            "add rule ip corral-br0 postrouting oifname \"br0\" ct status dnat ip saddr 127.0.0.0/8 masquerade",
            "add rule ip corral-br0 forward iifname \"br0\" accept",
            "add rule ip corral-br0 input iifname \"br0\" ip daddr 127.0.0.0/8 ct state new,invalid drop",
            "flush chain ip corral-br0 input",
        ] {
            assert!(s.lines().any(|l| l == line), "missing {line:?} in\n{s}");
        }
        // The published map is declared, never flushed: owners' ports survive a re-open.
        assert!(!s.contains("flush map"));
        assert!(!s.contains("flush chain ip corral-br0 o-"));
    }

    #[test]
    fn owner_rules_dnat_each_port_and_fill_the_map() {
        let ports: Vec<PortMapping> = ["8080:80", "127.0.0.1:5353:53/udp"]
            .iter()
            .map(|p| p.parse().unwrap())
            .collect();
        let s = add_owner("corral-br0", "o-ab", Ipv4Addr::new(10, 9, 0, 2), &ports);
        let want = "add chain ip corral-br0 o-ab\n\
                    flush chain ip corral-br0 o-ab\n\
                    add rule ip corral-br0 o-ab tcp dport 8080 dnat to 10.9.0.2:80\n\
                    add rule ip corral-br0 o-ab ip daddr 127.0.0.1 udp dport 5353 dnat to 10.9.0.2:53\n\
                    add element ip corral-br0 published { tcp . 8080 : jump o-ab, udp . 5353 : jump o-ab }\n";
        assert_eq!(s, want);
    }

    #[test]
    fn owner_removal_is_idempotent_by_construction() {
        let ports: Vec<PortMapping> = vec!["8080:80".parse().unwrap()];
        let s = remove_owner("corral-br0", "o-ab", &ports);
        let lines: Vec<&str> = s.lines().collect();
        let pos = |needle: &str| lines.iter().position(|l| l.starts_with(needle)).unwrap();
        assert!(pos("add element") < pos("delete element"));
        assert!(pos("delete element") < pos("delete chain"));
        assert!(pos("flush chain") < pos("delete chain"));
        assert!(s.contains("delete element ip corral-br0 published { tcp . 8080 }"));
        let none = remove_owner("corral-br0", "o-ab", &[]);
        assert!(!none.contains("element"));
    }

    #[test]
    fn nft_errors_carry_stderr() {
        if Command::new("nft").arg("--version").output().is_err() {
            eprintln!("SKIPPED: nft is not installed");
            return;
        }
        let err = apply("syntax check", "this is not nft\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("syntax check"), "{err}");
        assert!(
            err.contains("syntax error") || err.contains("Error"),
            "{err}"
        );
    }
}
