//! corral-runtime: a daemonless OCI runtime (runtime-spec 1.x) built directly
//! on Linux namespaces, cgroups, pivot_root and capabilities.
//!
//! Layout: `spec` parses and validates `config.json` at the edge; `state`
//! owns the on-disk container records and their locks; `container` holds the
//! lifecycle verbs (create/start/kill/delete/...); `init` is the code that
//! runs inside the forked container init; `rootfs`, `cgroups`,
//! `capabilities`, `rlimits`, `seccomp`, `hooks`, `console` are the pieces
//! init and the verbs use; `sys` keeps the thin syscall wrappers.
//!
//! The runtime binary is single-threaded on purpose: it forks the container
//! init without exec'ing a helper, which is only sound when no other thread
//! can hold a lock (malloc, stdio) at fork time.

pub mod capabilities;
pub mod cgroups;
pub mod console;
pub mod container;
pub mod error;
pub mod exec;
pub mod features;
pub mod hooks;
pub mod init;
pub mod namespaces;
pub mod rlimits;
pub mod rootfs;
pub mod seccomp;
pub mod signals;
pub mod spec;
pub mod state;
pub mod sync;
pub mod sys;

pub use error::{Error, Result};
