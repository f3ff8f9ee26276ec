//! corral-shim's tiny supervisor: the steady state of a detached,
//! terminal-less container's supervision in a static no_std binary of a
//! few KiB (tens of KiB of RSS instead of megabytes).
//!
//! corral-shim creates and starts the container, reports on its sync fd,
//! then execs this binary in the same process (from a memfd) with the
//! container's output pipes open; this one relays the output into the CRI
//! log, forwards signals to the container's init and reaps it, then execs
//! corral-shim again as `corral-shim --finish STATUS ...`, which writes
//! the exit record and cleans up. Built by shim/build.rs with rustc
//! directly (`-C panic=abort`, no libc, static); see args.rs for the
//! command line and sys.rs for the only unsafe code.

#![no_std]
#![no_main]

mod args;
mod cri;
mod log;
mod record;
mod supervise;
mod sys;
mod time;
