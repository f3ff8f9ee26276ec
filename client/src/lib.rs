//! An async, typed HTTPS client for corral-master (or any Kubernetes-shaped
//! API server), used by the agent to join a cluster, by the master's own
//! scheduler and controllers (which talk to their API server like any other
//! client, so every write goes through the same validation), and by tests.
//!
//! - [`Client`]: the verbs on any [`corral_api::Resource`] type, watch included.
//! - [`Reflector`] and [`Cache`]: list + watch into a local cache (an
//!   informer), relisting after a 410 or a broken stream.
//! - [`kubeconfig`]: kubeconfig files as kubectl reads them.

mod client;
mod error;
pub mod kubeconfig;
mod params;
mod reflector;
mod watch;

pub use client::Client;
pub use error::{chain as error_chain, Error};
pub use params::{DeleteParams, ListParams, Patch};
pub use reflector::{Cache, Change, Reflector};
pub use watch::{WatchEvent, WatchStream};
