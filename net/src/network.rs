//! One bridge network: open (bridge, forwarding, nftables table), attach and detach
//! owners (veth + address + routes + published ports), destroy.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::cidr::Ipv4Cidr;
use crate::error::{Error, Result};
use crate::ipam::{GroupCommit, Lease, Locked, State};
use crate::netlink::Socket;
use crate::netns::in_netns;
use crate::nft;
use crate::port::PortMapping;

/// The interface name of an owner's end inside its namespace.
pub const CONTAINER_IFNAME: &str = "eth0";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Bridge interface name: 1-15 characters from `[A-Za-z0-9_.-]`.
    pub bridge: String,
    pub cidr: Ipv4Cidr,
    /// Holds the IPAM state and its lock; one directory per network.
    pub state_dir: PathBuf,
    /// Destinations reached without masquerade: the cluster's pod network,
    /// so pods on other nodes see a pod's own address.
    pub cluster_cidr: Option<Ipv4Cidr>,
}

impl Default for NetworkConfig {
    fn default() -> NetworkConfig {
        NetworkConfig {
            bridge: "corral0".to_string(),
            cidr: Ipv4Cidr::new(Ipv4Addr::new(10, 88, 0, 0), 16)
                .unwrap_or_else(|_| unreachable!("10.88.0.0/16 is a valid network")),
            state_dir: PathBuf::from("/var/lib/corral/net"),
            cluster_cidr: None,
        }
    }
}

/// What an owner got from [`Network::attach`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub veth_host: String,
}

#[derive(Debug, Clone)]
pub struct Network {
    bridge: String,
    cidr: Ipv4Cidr,
    state_dir: PathBuf,
    table: String,
    cluster_cidr: Option<Ipv4Cidr>,
    /// Lease changes of this process's threads, saved in batches.
    leases: std::sync::Arc<GroupCommit>,
}

impl Network {
    /// Makes sure the bridge exists, is up and carries the gateway address, that
    /// IPv4 forwarding is on, and that the network's nftables table is in place.
    /// Idempotent; concurrent callers are serialized by the state directory's lock.
    pub fn open(cfg: NetworkConfig) -> Result<Network> {
        check_bridge_name(&cfg.bridge)?;
        let net = Network {
            table: nft::table_name(&cfg.bridge),
            leases: std::sync::Arc::new(GroupCommit::new(&cfg.state_dir, cfg.cidr)),
            bridge: cfg.bridge,
            cidr: cfg.cidr,
            state_dir: cfg.state_dir,
            cluster_cidr: cfg.cluster_cidr,
        };
        let lock = Locked::acquire(&net.state_dir)?;
        lock.load(net.cidr)?;
        let mut nl = Socket::open()?;
        net.ensure_bridge(&mut nl)?;
        write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
        // Lets DNATed packets from 127.0.0.1 leave through the bridge (and their
        // replies come back), so published ports answer on the host's loopback.
        write_sysctl(
            &format!("/proc/sys/net/ipv4/conf/{}/route_localnet", net.bridge),
            "1",
        )?;
        let ruleset = nft::base_ruleset(&net.table, &net.bridge, net.cidr, net.cluster_cidr);
        if !net.ruleset_in_place(&ruleset)? {
            nft::apply(&format!("set up table ip {}", net.table), &ruleset)?;
            net.remember_ruleset(&ruleset)?;
        }
        Ok(net)
    }

    /// True when our table exists and the last ruleset applied to it (recorded
    /// in the state directory) is this one: then `open` skips the `nft` process,
    /// the slowest step of a warm `corral run`. A reboot or a flushed ruleset
    /// removes the table, so the check then fails and the ruleset is applied.
    fn ruleset_in_place(&self, ruleset: &str) -> Result<bool> {
        let recorded = match fs::read_to_string(self.ruleset_file()) {
            Ok(s) => s,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io("read", self.ruleset_file(), e)),
        };
        Ok(recorded == ruleset && Socket::open_netfilter()?.nft_table_exists(&self.table)?)
    }

    fn remember_ruleset(&self, ruleset: &str) -> Result<()> {
        let path = self.ruleset_file();
        fs::write(&path, ruleset).map_err(|e| Error::io("write", &path, e))
    }

    fn ruleset_file(&self) -> PathBuf {
        self.state_dir.join("base-ruleset.nft")
    }

    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    pub fn cidr(&self) -> Ipv4Cidr {
        self.cidr
    }

    pub fn gateway(&self) -> Ipv4Addr {
        self.cidr.gateway()
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The nftables table of this network (family ip).
    pub fn table(&self) -> &str {
        &self.table
    }

    fn ensure_bridge(&self, nl: &mut Socket) -> Result<()> {
        nl.create_link(&self.bridge, "bridge")?;
        let link = nl.link(&self.bridge)?.ok_or_else(|| Error::Netlink {
            op: format!("find bridge {} after creating it", self.bridge),
            errno: Errno::ENODEV,
        })?;
        if link.kind.as_deref() != Some("bridge") {
            return Err(Error::NotABridge {
                name: self.bridge.clone(),
                kind: link.kind.unwrap_or_else(|| "device without a kind".into()),
            });
        }
        nl.add_address(
            link.index,
            self.gateway(),
            self.cidr.prefix(),
            self.cidr.broadcast(),
        )?;
        nl.set_up(&self.bridge)
    }

    /// Connects the namespace at `netns` to the bridge: a veth pair whose peer is
    /// `eth0` inside, an address from the IPAM, loopback up, a default route via the
    /// gateway, and DNAT for `ports`. An owner already attached is torn down and
    /// attached again on the same address.
    ///
    /// The lease is saved (fsync'd) before anything is configured, in one
    /// batch with the leases other threads of this process ask for at the
    /// same time; the plumbing (veth, addresses, DNAT) runs outside the state
    /// lock: the veth name and address are the owner's alone once the lease
    /// is saved, so owners attach in parallel. The caller must not attach or
    /// detach the same owner concurrently.
    pub fn attach(&self, owner: &str, netns: &Path, ports: &[PortMapping]) -> Result<Attachment> {
        check_owner(owner)?;
        let veth = veth_name(&self.bridge, owner);
        let (who, wanted) = (owner.to_string(), ports.to_vec());
        // On disk before anything is configured: a crash from here on leaves a
        // lease that detach can clean up, never an address in use but unrecorded.
        let (old, lease) = self.leases.update(move |state| {
            state.check_ports(&who, &wanted)?;
            let old = state.leases.get(&who).cloned();
            let ip = state.allocate(&who, &veth)?;
            if let Some(lease) = state.leases.get_mut(&who) {
                lease.ports = wanted.clone();
            }
            Ok((
                old,
                Lease {
                    ip,
                    veth,
                    ports: wanted,
                },
            ))
        })?;
        let mut nl = Socket::open()?;
        if let Some(old) = old {
            // Same veth and address: what an earlier attach left goes first.
            self.teardown(&mut nl, owner, &old)?;
        }
        if let Err(e) = self.plumb(&mut nl, owner, netns, &lease) {
            let _ = self.teardown(&mut nl, owner, &lease);
            let _ = self.release(owner);
            return Err(e);
        }
        Ok(self.attachment(&lease))
    }

    /// Forget `owner`'s lease (after its plumbing failed, or its detach).
    fn release(&self, owner: &str) -> Result<()> {
        let who = owner.to_string();
        self.leases.update(move |state| {
            state.release(&who);
            Ok(())
        })
    }

    fn plumb(&self, nl: &mut Socket, owner: &str, netns: &Path, lease: &Lease) -> Result<()> {
        let ns = File::open(netns).map_err(|e| Error::io("open netns", netns, e))?;
        let bridge = nl.link(&self.bridge)?.ok_or_else(|| Error::Netlink {
            op: format!("find bridge {} (was the network opened?)", self.bridge),
            errno: Errno::ENODEV,
        })?;
        let fd = ns.as_raw_fd();
        match nl.create_veth(&lease.veth, bridge.index, CONTAINER_IFNAME, fd) {
            // A veth left by a crash between its creation and a state update.
            Err(Error::Netlink {
                errno: Errno::EEXIST,
                ..
            }) if nl.delete_link(&lease.veth)? => {
                nl.create_veth(&lease.veth, bridge.index, CONTAINER_IFNAME, fd)?
            }
            other => other?,
        }
        let veth = nl.link(&lease.veth)?.ok_or_else(|| Error::Netlink {
            op: format!("find veth {} after creating it", lease.veth),
            errno: Errno::ENODEV,
        })?;
        nl.set_hairpin(veth.index, &lease.veth)?;
        let (ip, prefix, gw, brd) = (
            lease.ip,
            self.cidr.prefix(),
            self.gateway(),
            self.cidr.broadcast(),
        );
        in_netns(netns, || configure_inside(ip, prefix, gw, brd))??;
        if !lease.ports.is_empty() {
            nft::apply(
                &format!("publish ports of {owner}"),
                &nft::add_owner(
                    &self.table,
                    &owner_chain(&self.bridge, owner),
                    ip,
                    &lease.ports,
                ),
            )?;
        }
        Ok(())
    }

    fn teardown(&self, nl: &mut Socket, owner: &str, lease: &Lease) -> Result<()> {
        nl.delete_link(&lease.veth)?;
        if !lease.ports.is_empty() {
            nft::apply(
                &format!("unpublish ports of {owner}"),
                &nft::remove_owner(&self.table, &owner_chain(&self.bridge, owner), &lease.ports),
            )?;
        }
        Ok(())
    }

    /// Removes the owner's veth (and with it the namespace's `eth0`), published
    /// ports and address lease. Detaching an unknown owner does nothing. The
    /// lease goes last (saved with other threads' changes): a crash before
    /// leaves it for the next detach.
    pub fn detach(&self, owner: &str) -> Result<()> {
        let lease = {
            let lock = Locked::acquire(&self.state_dir)?;
            let state = lock.load(self.cidr)?;
            state.leases.get(owner).cloned()
        };
        let Some(lease) = lease else {
            return Ok(());
        };
        let mut nl = Socket::open()?;
        self.teardown(&mut nl, owner, &lease)?;
        self.release(owner)
    }

    /// The owners holding an address, with what they hold (e.g. to reconcile
    /// after a restart).
    pub fn attachments(&self) -> Result<Vec<(String, Attachment)>> {
        let lock = Locked::acquire(&self.state_dir)?;
        let state = lock.load(self.cidr)?;
        Ok(state
            .leases
            .iter()
            .map(|(owner, lease)| (owner.clone(), self.attachment(lease)))
            .collect())
    }

    fn attachment(&self, lease: &Lease) -> Attachment {
        Attachment {
            ip: lease.ip,
            prefix: self.cidr.prefix(),
            gateway: self.gateway(),
            veth_host: lease.veth.clone(),
        }
    }

    /// Removes everything of this network: owners' veths, the nftables table, the
    /// bridge and the state files. The sysctls are left as they are (ip_forward is
    /// host-wide, route_localnet goes with the bridge).
    pub fn destroy(self) -> Result<()> {
        let lock = Locked::acquire(&self.state_dir)?;
        let state = lock
            .load(self.cidr)
            .unwrap_or_else(|_| State::new(self.cidr));
        let mut nl = Socket::open()?;
        for lease in state.leases.values() {
            nl.delete_link(&lease.veth)?;
        }
        nft::apply(
            &format!("delete table ip {}", self.table),
            &nft::delete_table(&self.table),
        )?;
        nl.delete_link(&self.bridge)?;
        remove_if_exists(&lock.state_path())?;
        drop(lock);
        remove_if_exists(&self.state_dir.join("lock"))?;
        match fs::remove_dir(&self.state_dir) {
            Err(e)
                if e.kind() != ErrorKind::NotFound && e.kind() != ErrorKind::DirectoryNotEmpty =>
            {
                Err(Error::io("remove state directory", &self.state_dir, e))
            }
            _ => Ok(()),
        }
    }
}

fn configure_inside(ip: Ipv4Addr, prefix: u8, gw: Ipv4Addr, brd: Ipv4Addr) -> Result<()> {
    let mut nl = Socket::open()?;
    nl.set_up("lo")?;
    let eth = nl.link(CONTAINER_IFNAME)?.ok_or_else(|| Error::Netlink {
        op: format!("find {CONTAINER_IFNAME} in the namespace"),
        errno: Errno::ENODEV,
    })?;
    nl.add_address(eth.index, ip, prefix, brd)?;
    // Up only now: the kernel refuses to create the peer up (ENOTCONN on 6.x).
    nl.set_up(CONTAINER_IFNAME)?;
    nl.add_default_route(gw, eth.index)
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(Error::io("remove", path, e)),
        _ => Ok(()),
    }
}

fn write_sysctl(path: &str, value: &str) -> Result<()> {
    if fs::read_to_string(path).is_ok_and(|v| v.trim() == value) {
        return Ok(());
    }
    fs::write(path, value).map_err(|e| Error::io("write sysctl", path, e))
}

fn check_bridge_name(name: &str) -> Result<()> {
    let bad = |reason| Error::Name {
        what: "bridge name",
        name: name.to_string(),
        reason,
    };
    if name.is_empty() || name.len() > 15 {
        return Err(bad("use 1 to 15 characters"));
    }
    if name == "." || name == ".." {
        return Err(bad("not a valid interface name"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        return Err(bad("use only characters from [A-Za-z0-9_.-]"));
    }
    Ok(())
}

fn check_owner(owner: &str) -> Result<()> {
    if owner.is_empty() || owner.len() > 1024 || owner.contains('\0') {
        return Err(Error::Name {
            what: "owner id",
            name: owner.to_string(),
            reason: "use 1 to 1024 characters, no NUL",
        });
    }
    Ok(())
}

/// FNV-1a over bridge and owner: stable across processes and releases, so a
/// restarted caller finds the same names.
fn owner_hash(bridge: &str, owner: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bridge.bytes().chain([0]).chain(owner.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// `veth` + 11 hex digits: 15 characters, the longest interface name.
fn veth_name(bridge: &str, owner: &str) -> String {
    format!("veth{:011x}", owner_hash(bridge, owner) >> 20)
}

fn owner_chain(bridge: &str, owner: &str) -> String {
    format!("o-{:016x}", owner_hash(bridge, owner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_short_and_per_bridge() {
        let v = veth_name("corral0", "abc");
        assert_eq!(v.len(), 15);
        assert!(v.starts_with("veth"));
        assert_eq!(v, veth_name("corral0", "abc"));
        assert_ne!(v, veth_name("corral1", "abc"));
        assert_ne!(v, veth_name("corral0", "abd"));
        assert_eq!(owner_chain("corral0", "abc").len(), 18);
    }

    #[test]
    fn bridge_names_are_checked() {
        for good in ["corral0", "crltest7", "br-x.1_2", "a23456789012345"] {
            check_bridge_name(good).unwrap();
        }
        for bad in ["", "a234567890123456", "br 0", "br/0", "..", "br\"0"] {
            assert!(check_bridge_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn owner_ids_are_checked() {
        check_owner("4f2a-pod_1").unwrap();
        assert!(check_owner("").is_err());
        assert!(check_owner("a\0b").is_err());
    }
}
