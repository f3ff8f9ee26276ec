//! The master: see ARCHITECTURE.md.
pub mod store;
