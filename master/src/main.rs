//! `corral-master`: the API server on the embedded store or etcd.
//!
//! On first start it makes its CA, serving certificate and tokens under
//! `--data-dir`, and (re)writes `DATA_DIR/admin.kubeconfig` on every start.
//! The address it listens on is printed on stdout as `listening on ADDR`
//! (useful with `--listen 127.0.0.1:0`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use corral_master::api::{self, Api};
use corral_master::config::Config;
use corral_master::{auth, controllers, scheduler, store, tls};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

fn main() -> ExitCode {
    let mut config = Config::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("corral-master: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&mut config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("corral-master: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: &mut Config) -> anyhow::Result<()> {
    let dir = config.data_dir.clone();
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("chmod 0700 {}", dir.display()))?;
    // Bound first so `--listen HOST:0` learns its port before the
    // kubeconfig is written.
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    config.listen = listener
        .local_addr()
        .context("reading the listen address")?;

    let names = tls::serving_names(config.listen, config.advertise_address.as_deref());
    let pki = tls::load_or_create(&dir, &names)?;
    let tokens = auth::Tokens::load_or_create(&dir)?;
    let kubeconfig = dir.join("admin.kubeconfig");
    auth::write_kubeconfig(
        &kubeconfig,
        &config.server_url(),
        &pki.ca_pem,
        tokens.admin_token(),
    )?;

    let store_config = store::StoreConfig::from_flag(config.store.as_deref(), &dir)?;
    let store = store::open(&store_config).await?;
    if let Some(every) = config.compact_interval() {
        let keep = i64::try_from(config.compact_keep).unwrap_or(i64::MAX);
        store::spawn_compactor(store.clone(), every, keep);
    }
    let admin_token = tokens.admin_token().to_string();
    let join_token = tokens.join_token().to_string();
    let mut api = Api::new(store, tokens, config.max_body_bytes)
        .with_service_network(
            &config.service_cluster_ip_range,
            config.service_node_port_range,
        )?
        .with_agent_token(&join_token);
    // The `kubernetes` Service in `default` points at this master when the
    // advertised host is an address.
    if let Ok(ip) = config.advertise_host().parse::<std::net::IpAddr>() {
        api = api.with_kubernetes_endpoint(std::net::SocketAddr::new(ip, config.listen.port()));
    }
    let api = Arc::new(api);
    api.init()
        .await
        .map_err(|s| anyhow::anyhow!("creating the system namespaces: {s}"))?;

    if !config.no_controllers {
        spawn_controllers(config, &pki.ca_pem, &admin_token)?;
    }

    println!("listening on {}", config.listen);
    eprintln!(
        "corral-master: serving {} (kubeconfig {})",
        config.server_url(),
        kubeconfig.display()
    );
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        r = api::serve(api, listener, pki.server_config) => r.context("accepting connections")?,
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

/// The scheduler and controllers talk to this very server, over loopback
/// when it listens on every address, with the admin token.
fn spawn_controllers(config: &Config, ca_pem: &str, token: &str) -> anyhow::Result<()> {
    let url = format!("https://{}", loopback(config.listen));
    let client = corral_client::Client::new(&url, token, Some(ca_pem.as_bytes()))
        .context("building the controllers' API client")?;
    tokio::spawn(scheduler::run(
        client.clone(),
        scheduler::SchedulerConfig::default(),
    ));
    controllers::spawn_all(client, config.controllers());
    Ok(())
}

/// `listen` with an unspecified address replaced by loopback.
fn loopback(listen: std::net::SocketAddr) -> std::net::SocketAddr {
    let mut a = listen;
    if a.ip().is_unspecified() {
        a.set_ip(match a {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    a
}
