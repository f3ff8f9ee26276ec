//! corral-agent: runs the static pods of a manifests directory on this host.

use anyhow::Context as _;
use clap::Parser;
use corral_agent::config::{Args, Config};
use corral_agent::Agent;

fn main() {
    if let Err(e) = run() {
        eprintln!("corral-agent: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let cfg = Config::from_args(&args)?;
    std::fs::create_dir_all(&cfg.manifests)
        .with_context(|| format!("create manifests directory {}", cfg.manifests.display()))?;
    let agent = Agent::start(cfg).context("start the agent")?;
    eprintln!(
        "corral-agent: running static pods of {} (data {})",
        agent.config().manifests.display(),
        agent.config().data_dir.display()
    );
    corral_agent::static_pods::watch(agent);
    Ok(())
}
