//! The tiny supervisor's modules that also compile in an ordinary std
//! process: corral-shim includes this file under `#[cfg(test)]` so
//! `cargo test -p corral-shim` runs their unit tests (the binary itself
//! is built by shim/build.rs from main.rs, which declares the same
//! modules plus `supervise`).

pub mod args;
pub mod cri;
pub mod log;
pub mod record;
pub mod sys;
pub mod time;
