//! Container networking on one host: a bridge with a gateway address, a veth and an
//! address per owner (container or pod) from a persisted IPAM, masquerade for
//! traffic leaving the host, and nftables DNAT for published ports. Links,
//! addresses and routes go through in-process rtnetlink; firewall changes are one
//! `nft -f -` transaction each.
//!
//! ```no_run
//! use corral_net::{create_netns, delete_netns, Network, NetworkConfig, PortMapping};
//! # fn main() -> Result<(), corral_net::Error> {
//! let net = Network::open(NetworkConfig::default())?; // corral0, 10.88.0.0/16
//! let ns = std::path::Path::new("/run/corral/netns/web");
//! create_netns(ns)?;
//! let ports: Vec<PortMapping> = vec!["8080:80".parse()?];
//! let att = net.attach("web", ns, &ports)?;
//! println!("web is {}/{} via {}", att.ip, att.prefix, att.gateway);
//! net.detach("web")?;
//! delete_netns(ns)?;
//! # Ok(()) }
//! ```
//!
//! What lives where, for a network on bridge `B`:
//! - links: bridge `B` (gateway = first host address), one `veth<11 hex>` per owner
//!   on it, whose peer is `eth0` in the owner's namespace; names derive from a hash
//!   of bridge and owner id, so they are stable across restarts;
//! - nftables: `table ip corral-B` (see the `nft` module): masquerade, DNAT per
//!   owner in chain `o-<16 hex>`, a drop of new bridge traffic to 127.0.0.0/8;
//! - sysctls: `net.ipv4.ip_forward=1`, `route_localnet=1` on `B`;
//! - state: `state_dir/state.json` (leases: owner -> ip, veth, ports) and
//!   `state_dir/lock`. Leases outlive a reboot while links and rules do not: a
//!   caller reconciles with [`Network::attachments`] and [`Network::detach`] (or
//!   attaches again, which rebuilds the owner's links and rules on its address).

pub mod cidr;
pub mod error;
mod ipam;
mod netlink;
pub mod netns;
mod network;
mod nft;
pub mod port;
pub mod routes;
pub mod services;

pub use cidr::Ipv4Cidr;
pub use error::{Error, Result};
pub use netns::{create_netns, delete_netns, in_netns};
pub use network::{Attachment, Network, NetworkConfig, CONTAINER_IFNAME};
pub use port::{PortMapping, Proto};
