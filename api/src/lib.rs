//! Kubernetes-shaped API objects shared by the agent, the master and the CLI.
//!
//! Types carry the same JSON field names and shapes as Kubernetes (camelCase,
//! empty fields omitted), so manifests written for Kubernetes parse unchanged,
//! and unknown fields are rejected with the path of the field. See
//! ARCHITECTURE.md for where each crate uses them.

pub mod apps;
pub mod coordination;
pub mod core;
pub mod decode;
pub mod intstr;
pub mod list;
pub mod manifest;
pub mod meta;
pub mod quantity;
pub mod resource;
mod skip;
pub mod time;
pub mod validation;

pub use decode::DecodeError;
pub use intstr::IntOrString;
pub use list::List;
pub use manifest::{ManifestError, Object};
pub use meta::{LabelSelector, ListMeta, ObjectMeta, OwnerReference, Status, TypeMeta};
pub use quantity::Quantity;
pub use resource::{Resource, ResourceInfo};
pub use time::{MicroTime, Time};
