//! corral-agent: runs the static pods of a manifests directory on this host
//! and serves its HTTP API; with `--server` it also joins a master and runs
//! the pods bound to this node.

use anyhow::{bail, Context as _};
use clap::Parser;
use corral_agent::config::{Args, Config};
use corral_agent::{cluster, Agent};

fn main() {
    if let Err(e) = run() {
        eprintln!("corral-agent: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut cfg = Config::from_args(&args)?;
    let token = std::fs::read_to_string(&cfg.token_file)
        .with_context(|| format!("read the API token from {}", cfg.token_file.display()))?
        .trim()
        .to_string();
    if token.is_empty() {
        bail!("{}: the API token is empty", cfg.token_file.display());
    }
    std::fs::create_dir_all(&cfg.manifests)
        .with_context(|| format!("create manifests directory {}", cfg.manifests.display()))?;
    // The pod engine runs on plain threads; tokio serves the API and talks
    // to the master.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the async runtime of the API")?;
    let joined = match cfg.join.clone() {
        Some(j) => {
            let join_token = cluster::join_token(&j)?;
            let client = cluster::client(&j, &join_token)?;
            // The pod network needs the CIDR before any pod starts.
            cfg.pod_cidr = rt
                .block_on(cluster::register::pod_cidr(&client, &cfg))
                .context("pod CIDR of this node")?;
            Some((client, join_token))
        }
        None => None,
    };
    let agent = Agent::start(cfg).context("start the agent")?;
    if joined.is_some() {
        // Before the static pods are applied: the pods the master gave the
        // last run keep running even while the master is down.
        let saved = cluster::pods::load_saved(agent.config()).context("pods of the last run")?;
        agent.apply_source(corral_agent::pods::SOURCE_API, saved);
    }
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
    let listen = agent.config().listen;
    let Some((client, join_token)) = joined else {
        return rt
            .block_on(corral_agent::http::serve(agent, listen, token))
            .with_context(|| format!("serve the API on {listen}"));
    };
    let cfg = agent.config().clone();
    eprintln!(
        "corral-agent: node {} ({}, pod CIDR {}) joined {}",
        cfg.node_name,
        cfg.node_ip,
        cfg.pod_cidr,
        client.server()
    );
    let options = corral_agent::http::Options {
        runtime_binary: Some(cfg.runtime.clone()),
        node: corral_agent::node::NodeConfig {
            hostname: Some(cfg.node_name.clone()),
            internal_ip: Some(cfg.node_ip.into()),
            ..Default::default()
        },
        extra_tokens: vec![join_token],
    };
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        cluster::spawn(agent.clone(), client);
        corral_agent::http::serve_on(listener, agent, token, options).await
    })
    .with_context(|| format!("serve the API on {listen}"))
}
