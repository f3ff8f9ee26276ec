//! corral-shim: the per-container supervisor (like conmon or containerd's
//! shim). One shim process per running container owns the container's
//! stdio, writes it to a CRI-format log, reaps the container's init and
//! records how it ended, so whoever started the container (`corral run`,
//! the agent) can exit, crash or be upgraded without losing anything.
//!
//! The binary is exec'd by its caller with [`ShimArgs`] (see [`args::USAGE`]
//! for the command line). It creates and starts the container through the
//! `corral_runtime` library in-process, reports success or the runtime's
//! error on `--sync-fd` ([`sync::Report`]), then runs a single-threaded
//! poll loop until the container is gone, writes the [`ExitRecord`]
//! atomically and deletes the runtime's state. Callers use the library
//! half for the same types: building the argv, reading the report, the
//! exit record and the log.
//!
//! A detached container without a terminal spends its life under the tiny
//! supervisor instead: a static no_std binary (shim/tiny/, built by
//! build.rs, embedded) that this process execs from a memfd right after
//! the report, keeping its pid. It relays the output to the same CRI log,
//! forwards signals and reaps, then execs `corral-shim --finish STATUS`
//! ([`args::Finish`]) for the exit record and the cleanup. See
//! `handoff` and shim/tiny/main.rs.

pub mod args;
pub mod cri;
pub mod error;
pub mod exit;
mod handoff;
mod supervise;
pub mod sync;
pub mod term;

pub use args::{Finish, Parsed, ShimArgs};
pub use error::{Error, Result};
pub use exit::ExitRecord;
pub use supervise::{finish_reaped as finish, run};
pub use sync::Report;

/// The tiny supervisor's std-compatible modules, for their unit tests.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../tiny/shared.rs"]
mod tiny;
