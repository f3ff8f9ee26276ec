//! The crate's error: every variant says which step failed and on what.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use crate::port::Proto;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed during a named step.
    #[error("{step}: {errno}")]
    Sys {
        step: String,
        errno: nix::errno::Errno,
    },

    /// A file operation failed on a path.
    #[error("{step} {path}: {source}")]
    Io {
        step: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    /// The kernel refused a netlink request.
    #[error("netlink {op}: {errno}")]
    Netlink {
        op: String,
        errno: nix::errno::Errno,
    },

    /// A netlink answer could not be understood.
    #[error("netlink {op}: malformed answer: {msg}")]
    NetlinkProtocol { op: String, msg: String },

    /// `nft` could not be run or refused a transaction.
    #[error("nft ({what}): {msg}")]
    Nft { what: String, msg: String },

    #[error("invalid CIDR {input:?}: {reason}")]
    Cidr { input: String, reason: String },

    #[error("invalid port mapping {input:?}: {reason}")]
    PortMapping { input: String, reason: String },

    #[error("invalid {what} {name:?}: {reason}")]
    Name {
        what: &'static str,
        name: String,
        reason: &'static str,
    },

    #[error("link {name:?} exists but is a {kind:?}, not a bridge")]
    NotABridge { name: String, kind: String },

    #[error("no free address left in {cidr} ({leases} leases held)")]
    Exhausted { cidr: String, leases: usize },

    #[error("host port {port}/{proto} is already published by {owner:?}")]
    PortInUse {
        port: u16,
        proto: Proto,
        owner: String,
    },

    #[error(
        "network state {path} was made for {state}, not {config}: detach its {leases} owners first"
    )]
    CidrMismatch {
        path: PathBuf,
        state: String,
        config: String,
        leases: usize,
    },

    #[error("network state {path}: {source}")]
    State {
        path: PathBuf,
        source: serde_json::Error,
    },

    #[error("veth name {veth} of owner {owner:?} collides with owner {other:?}")]
    VethCollision {
        veth: String,
        owner: String,
        other: String,
    },

    #[error("address {ip} held in state is outside {cidr}")]
    ForeignAddress { ip: Ipv4Addr, cidr: String },
}

impl Error {
    pub(crate) fn sys(step: impl Into<String>, errno: nix::errno::Errno) -> Error {
        Error::Sys {
            step: step.into(),
            errno,
        }
    }

    pub(crate) fn io(
        step: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Error {
        Error::Io {
            step,
            path: path.into(),
            source,
        }
    }
}
