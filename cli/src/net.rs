//! The default bridge network as the global flags describe it.

use anyhow::{Context as _, Result};
use corral_net::{Ipv4Cidr, Network, NetworkConfig};

use crate::cli::Global;

pub fn config(g: &Global) -> Result<NetworkConfig> {
    let cidr: Ipv4Cidr = g
        .subnet
        .parse()
        .with_context(|| format!("--subnet {:?}", g.subnet))?;
    Ok(NetworkConfig {
        bridge: g.bridge.clone(),
        cidr,
        // One directory per bridge: networks never share a lease file.
        state_dir: g.net_state_dir.join(&g.bridge),
        cluster_cidr: None,
    })
}

/// Bring the network up (idempotent) and return it.
pub fn open(g: &Global) -> Result<Network> {
    let cfg = config(g)?;
    Network::open(cfg).with_context(|| format!("set up bridge network {} ({})", g.bridge, g.subnet))
}
