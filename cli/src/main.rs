//! `corral`: run OCI images on this host without a daemon. Node-local verbs:
//! `image pull|import|ls|inspect|rm|prune`, `run`, `ps`, `logs`, `stop`,
//! `kill`, `rm`, `exec`, `inspect`; cluster verbs against corral-master
//! (`apply`, `get`, `describe`, `delete`, `scale`, `rollout`, `cordon`,
//! `uncordon`, `drain`, `config`, `top`, and `logs`/`exec` of pods) in `cluster/`. Each running container is supervised by
//! its own `corral-shim` (stdio, log, exit record), so `corral` itself
//! exits after every verb. See `corral --help` and ARCHITECTURE.md.

mod bench;
mod cli;
mod cluster;
mod containers;
mod exec;
mod images;
mod lifecycle;
mod logs;
mod names;
mod net;
mod ps;
mod run;
mod table;
mod time;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Verb};

/// Exit status for corral's own failures (podman's convention).
const FAILED: u8 = 125;

/// An error that carries the exit status `corral` should end with.
#[derive(Debug)]
pub struct ExitCodeError {
    pub code: i32,
    pub message: String,
}

impl std::fmt::Display for ExitCodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExitCodeError {}

fn main() -> ExitCode {
    // `corral ps | head` should end quietly like other Unix tools, not
    // report a broken pipe.
    // SAFETY: SIG_DFL installs no code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    match dispatch(&cli) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("Error: {e:#}");
            match e.downcast_ref::<ExitCodeError>() {
                Some(c) => ExitCode::from(c.code.clamp(0, 255) as u8),
                None => ExitCode::from(FAILED),
            }
        }
    }
}

fn dispatch(cli: &Cli) -> anyhow::Result<i32> {
    let g = &cli.global;
    match &cli.verb {
        Verb::Run(a) => return run::run(g, a),
        Verb::Exec(a) => return exec::exec(g, &cli.cluster, a),
        Verb::Image(v) => images::dispatch(g, v)?,
        Verb::Ps(a) => ps::ps(g, a)?,
        Verb::Logs(a) => return logs::logs(g, &cli.cluster, a),
        Verb::Stop(a) => lifecycle::stop(g, a)?,
        Verb::Kill(a) => lifecycle::kill(g, a)?,
        Verb::Rm(a) => lifecycle::rm(g, a)?,
        Verb::Inspect { containers } => ps::inspect(g, containers)?,
        Verb::Bench(v) => return bench::dispatch(g, v, cli.cluster.namespace.as_deref()),
        Verb::Cluster(v) => return Ok(cluster::dispatch(&cli.cluster, v)),
    }
    Ok(0)
}
