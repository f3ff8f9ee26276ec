//! corral-agent: the node agent (kubelet class). It keeps the pods of one
//! host running: static pods from a manifests directory, each with a
//! sandbox (network, uts and ipc namespaces held by bind mounts), its
//! containers supervised by one `corral-shim` process each, restarts with
//! back-off, probes, and Kubernetes-shaped status. See ARCHITECTURE.md.
//!
//! - [`config`]: flags and their environment twins.
//! - [`state`]: the on-disk records written before and after each action,
//!   so a SIGKILLed agent picks up where it was.
//! - [`pods`]: the [`Agent`] handle, sandboxes, containers, probes, status.
//! - [`static_pods`]: the manifests directory watcher.
//! - [`cluster`]: joining a master (`--server`): Node, Lease, pods bound
//!   here, status reports, routes to the other nodes.

pub mod cluster;
pub mod config;
pub mod pods;
pub mod state;
pub mod static_pods;

pub use pods::{Agent, ContainerRef, LookupError};
pub mod http;
pub mod node;
pub mod stats;
