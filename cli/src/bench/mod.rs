//! `corral bench`: how fast a container starts on this host, against the
//! peer runtimes, against podman and against a virtual machine
//! (`bench startup`), and how fast the agent brings up many pods
//! (`bench pods`). Every run is checked to have done its work; a failed run
//! is counted, never dropped.

mod args;
mod bundle;
mod contenders;
mod host;
mod images;
mod memory;
mod plot;
mod pods;
mod proc;
mod report;
mod startup;
mod stats;
mod vm;

pub use args::BenchVerb;

use crate::cli::Global;

/// `dash_n` is the value of the global `-n` (the cluster verbs' namespace
/// flag, global to every verb), which bench reads as its count.
pub fn dispatch(g: &Global, verb: &BenchVerb, dash_n: Option<&str>) -> anyhow::Result<i32> {
    let count = |long: Option<usize>, default: usize| -> anyhow::Result<usize> {
        match (long, dash_n) {
            (Some(n), _) => Ok(n),
            (None, Some(s)) => s
                .parse()
                .map_err(|_| anyhow::anyhow!("-n {s}: expected a number of runs")),
            (None, None) => Ok(default),
        }
    };
    match verb {
        BenchVerb::Startup(a) => startup::startup(g, a, count(a.runs, 20)?),
        BenchVerb::Pods(a) => pods::pods(g, a, count(a.pods, 100)?),
    }
}
