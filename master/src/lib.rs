//! The master: see ARCHITECTURE.md.
pub mod api;
pub mod auth;
pub mod cidr;
pub mod config;
pub mod controllers;
pub mod files;
pub mod ipalloc;
pub mod scheduler;
pub mod store;
pub mod tls;
