//! Container networking on one host: a bridge with a gateway address, a veth and an
//! address per owner (container or pod) from a persisted IPAM, masquerade for
//! traffic leaving the host, and nftables DNAT for published ports. Links,
//! addresses and routes go through in-process rtnetlink; firewall changes are one
//! `nft -f -` transaction each.

pub mod cidr;
pub mod error;
pub mod ipam;
mod netlink;
pub mod netns;
mod network;
mod nft;
pub mod port;

pub use cidr::Ipv4Cidr;
pub use error::{Error, Result};
pub use netns::{create_netns, delete_netns, in_netns};
pub use network::{Attachment, Network, NetworkConfig, CONTAINER_IFNAME};
pub use port::{PortMapping, Proto};
