//! OCI images: see ARCHITECTURE.md.

pub mod config;
pub mod digest;
pub mod error;
pub mod gc;
pub mod import;
pub mod layers;
mod progress;
pub mod reference;
pub mod registry;
pub mod snapshot;
pub mod store;
pub mod unpack;

pub use config::{runtime_spec, BindMount, NetNs, RunConfig};
pub use digest::Digest;
pub use error::Error;
pub use gc::{prune, remove_image, PruneReport};
pub use import::import;
pub use layers::unpack_layers;
pub use reference::Reference;
pub use registry::{pull, Platform, PullOptions};
pub use snapshot::Snapshot;
pub use store::{ImageRecord, LayerRef, Store};
pub use unpack::{unpack_layer, Limits};
