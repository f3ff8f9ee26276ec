//! Kubernetes-shaped API objects shared by the agent, the master and the CLI.
//!
//! Types carry the same JSON field names and shapes as Kubernetes (camelCase,
//! empty fields omitted), so manifests written for Kubernetes parse unchanged,
//! and unknown fields are rejected with the path of the field. See
//! ARCHITECTURE.md for where each crate uses them.
//!
//! - [`meta`]: ObjectMeta, ListMeta, label and field selectors, Status.
//! - [`core`], [`apps`], [`coordination`]: the object kinds, each with
//!   `apply_defaults` (what the API server fills in) and `validate`
//!   (Kubernetes' rules and messages, as [`validation::FieldError`]s).
//! - [`quantity`], [`intstr`], [`time`]: the value types of those objects.
//! - [`resource`]: the table of kinds (group, version, plural, short names)
//!   and the [`Resource`] trait.
//! - [`decode`]: strict decoding of one typed object with field paths;
//!   [`manifest`]: YAML/JSON documents into [`Object`]s by apiVersion and kind.
//! - [`list`]: `List<T>` for list responses.

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
