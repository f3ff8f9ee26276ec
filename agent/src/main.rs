//! corral-agent: runs the static pods of a manifests directory on this host
//! and serves its HTTP API.

use anyhow::{bail, Context as _};
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
    let token = std::fs::read_to_string(&cfg.token_file)
        .with_context(|| format!("read the API token from {}", cfg.token_file.display()))?
        .trim()
        .to_string();
    if token.is_empty() {
        bail!("{}: the API token is empty", cfg.token_file.display());
    }
    std::fs::create_dir_all(&cfg.manifests)
        .with_context(|| format!("create manifests directory {}", cfg.manifests.display()))?;
    let agent = Agent::start(cfg).context("start the agent")?;
    eprintln!(
        "corral-agent: running static pods of {} (data {}), API on {}",
        agent.config().manifests.display(),
        agent.config().data_dir.display(),
        agent.config().listen
    );
    let watcher = agent.clone();
    std::thread::Builder::new()
        .name("static pods".into())
        .spawn(move || corral_agent::static_pods::watch(watcher))
        .context("start the static pod watcher")?;
    // The pod engine runs on plain threads; tokio only serves the API.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the async runtime of the API")?;
    let listen = agent.config().listen;
    rt.block_on(corral_agent::http::serve(agent, listen, token))
        .with_context(|| format!("serve the API on {listen}"))
}
