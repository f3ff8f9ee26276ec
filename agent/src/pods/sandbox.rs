//! The pod sandbox: network, uts and ipc namespaces that outlive every
//! container of the pod, held by bind mounts of their `/proc` files (no
//! pause process), and the pod's address on the bridge.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use corral_net::{Network, NetworkConfig};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::config::Config;
use crate::state::Sandbox;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("pod network (bridge {bridge}): {source}")]
    Network {
        bridge: String,
        source: corral_net::Error,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: {errno}")]
    Sys { what: String, errno: nix::Error },
}

pub fn open_network(cfg: &Config) -> Result<Network, SandboxError> {
    Network::open(NetworkConfig {
        bridge: cfg.bridge.clone(),
        cidr: cfg.pod_cidr,
        state_dir: cfg.net_dir(),
        cluster_cidr: cfg.join.as_ref().map(|j| j.cluster_cidr),
    })
    .map_err(|source| SandboxError::Network {
        bridge: cfg.bridge.clone(),
        source,
    })
}

/// The node's pod network, opened once and shared by every pod worker:
/// opening takes the network's state lock and checks bridge, sysctls and
/// nftables, which per pod made 100 pods starting together queue on that
/// lock for seconds. A failed open is retried by the next caller.
#[derive(Default)]
pub(crate) struct SharedNetwork(std::sync::Mutex<Option<std::sync::Arc<Network>>>);

impl SharedNetwork {
    pub(crate) fn get(&self, cfg: &Config) -> Result<std::sync::Arc<Network>, SandboxError> {
        // Held across the open so that concurrent first callers wait for it
        // instead of each opening the network.
        let mut net = super::lock(&self.0);
        if let Some(n) = net.as_ref() {
            return Ok(n.clone());
        }
        let n = std::sync::Arc::new(open_network(cfg)?);
        *net = Some(n.clone());
        Ok(n)
    }
}

/// The sandbox files of pod `uid` (whether they exist or not).
pub fn paths(cfg: &Config, uid: &str) -> (PathBuf, PathBuf, PathBuf) {
    let d = cfg.ns_dir();
    (
        d.join(format!("{uid}.net")),
        d.join(format!("{uid}.uts")),
        d.join(format!("{uid}.ipc")),
    )
}

/// Make the namespaces and attach the network namespace to the bridge.
/// Leftovers of an earlier, interrupted try are removed first; the IPAM
/// lease is keyed by the pod uid, so an address given before is kept.
pub fn create(
    cfg: &Config,
    net: &Network,
    uid: &str,
    hostname: &str,
) -> Result<Sandbox, SandboxError> {
    let (netns, uts, ipc) = paths(cfg, uid);
    let t = std::time::Instant::now();
    release_namespaces(&netns, &uts, &ipc)?;
    corral_net::create_netns(&netns).map_err(|source| SandboxError::Network {
        bridge: cfg.bridge.clone(),
        source,
    })?;
    create_uts_ipc(&uts, &ipc, hostname)?;
    super::trace(hostname, "namespaces", t);
    let t = std::time::Instant::now();
    let att = net
        .attach(uid, &netns, &[])
        .map_err(|source| SandboxError::Network {
            bridge: cfg.bridge.clone(),
            source,
        })?;
    super::trace(hostname, "net.attach", t);
    Ok(Sandbox {
        netns,
        uts,
        ipc,
        ip: att.ip.to_string(),
    })
}

/// Undo `create`: detach (frees the address), unmount and remove the
/// namespace files. Pieces already gone are fine.
pub fn destroy(cfg: &Config, net: &Network, uid: &str) -> Result<(), SandboxError> {
    net.detach(uid).map_err(|source| SandboxError::Network {
        bridge: cfg.bridge.clone(),
        source,
    })?;
    let (netns, uts, ipc) = paths(cfg, uid);
    release_namespaces(&netns, &uts, &ipc)
}

fn release_namespaces(netns: &Path, uts: &Path, ipc: &Path) -> Result<(), SandboxError> {
    corral_net::delete_netns(netns).map_err(|e| SandboxError::Sys {
        what: format!("delete network namespace {}: {e}", netns.display()),
        errno: nix::Error::EIO,
    })?;
    for p in [uts, ipc] {
        unbind(p)?;
    }
    Ok(())
}

fn unbind(path: &Path) -> Result<(), SandboxError> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(errno) => {
            return Err(SandboxError::Sys {
                what: format!("umount {}", path.display()),
                errno,
            })
        }
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(SandboxError::Io {
            what: "remove namespace file",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// New uts and ipc namespaces on a short-lived thread (namespaces are per
/// task), the pod's hostname set in the uts one, both bound to files.
/// create_netns already made the parent directory a shared mount.
fn create_uts_ipc(uts: &Path, ipc: &Path, hostname: &str) -> Result<(), SandboxError> {
    for p in [uts, ipc] {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(p)
            .map_err(|source| SandboxError::Io {
                what: "create namespace file",
                path: p.to_path_buf(),
                source,
            })?;
    }
    let made = std::thread::scope(|s| {
        s.spawn(|| -> Result<(), SandboxError> {
            let sys = |what: String| move |errno| SandboxError::Sys { what, errno };
            unshare(CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC)
                .map_err(sys("unshare(CLONE_NEWUTS|CLONE_NEWIPC)".into()))?;
            nix::unistd::sethostname(hostname).map_err(sys(format!("sethostname {hostname:?}")))?;
            let tid = nix::unistd::gettid();
            for (kind, p) in [("uts", uts), ("ipc", ipc)] {
                let own = format!("/proc/self/task/{tid}/ns/{kind}");
                mount(
                    Some(own.as_str()),
                    p,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(sys(format!("bind {own} onto {}", p.display())))?;
            }
            Ok(())
        })
        .join()
        .unwrap_or_else(|_| {
            Err(SandboxError::Sys {
                what: "uts/ipc namespace thread panicked".into(),
                errno: nix::Error::EIO,
            })
        })
    });
    if made.is_err() {
        let _ = unbind(uts);
        let _ = unbind(ipc);
    }
    made
}
