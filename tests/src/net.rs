//! Harness for bridge-network tests: each test gets its own bridge (`crltest<N>`),
//! CIDR (`10.213.<N>.0/24`), nftables table, state directory and namespaces in a
//! temporary directory, all removed on drop, also when the test panics. Traffic
//! goes only to loopback and to namespaces the test created.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use corral_net::{create_netns, delete_netns, in_netns, Network, NetworkConfig};
use nix::mount::{umount2, MntFlags};

pub struct TestNet {
    pub n: u8,
    dir: tempfile::TempDir,
    network: Option<Network>,
    namespaces: Vec<PathBuf>,
}

impl TestNet {
    /// A fresh network number `n` (1-254), after removing what a crashed earlier
    /// run may have left of the same bridge and table.
    pub fn new(n: u8) -> anyhow::Result<TestNet> {
        let dir = tempfile::Builder::new()
            .prefix("corral-net-test")
            .tempdir()?;
        let leftover = Network::open(Self::config_in(n, &dir.path().join("stale")))?;
        leftover.destroy()?;
        let network = Network::open(Self::config_in(n, &dir.path().join("state")))?;
        Ok(TestNet {
            n,
            dir,
            network: Some(network),
            namespaces: Vec::new(),
        })
    }

    fn config_in(n: u8, state_dir: &Path) -> NetworkConfig {
        NetworkConfig {
            bridge: format!("crltest{n}"),
            cidr: format!("10.213.{n}.0/24")
                .parse()
                .unwrap_or_else(|e| panic!("test CIDR: {e}")),
            state_dir: state_dir.to_path_buf(),
            cluster_cidr: None,
        }
    }

    pub fn config(&self) -> NetworkConfig {
        Self::config_in(self.n, &self.dir.path().join("state"))
    }

    pub fn network(&self) -> &Network {
        self.network
            .as_ref()
            .unwrap_or_else(|| unreachable!("the network lives until drop"))
    }

    /// A new persistent network namespace, deleted on drop.
    pub fn netns(&mut self, name: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.path().join("netns").join(name);
        create_netns(&path)?;
        self.namespaces.push(path.clone());
        Ok(path)
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        if let Some(net) = self.network.take() {
            if let Err(e) = net.destroy() {
                eprintln!("TestNet {}: destroy: {e}", self.n);
            }
        }
        for ns in &self.namespaces {
            if let Err(e) = delete_netns(ns) {
                eprintln!("TestNet {}: {e}", self.n);
            }
        }
        // create_netns made the directory a mount point of its own.
        let _ = umount2(&self.dir.path().join("netns"), MntFlags::MNT_DETACH);
    }
}

/// A TCP server whose listening socket lives in a namespace: it answers every
/// connection with `reply` and stops on drop.
pub struct TcpServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TcpServer {
    pub fn start(netns: &Path, port: u16, reply: &'static str) -> anyhow::Result<TcpServer> {
        let listener = in_netns(netns, || TcpListener::bind(("0.0.0.0", port)))??;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        let _ = conn.write_all(reply.as_bytes());
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => return,
                }
            }
        });
        Ok(TcpServer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A UDP socket in a namespace answering each datagram with `reply`, for as long as
/// the returned guard lives.
pub struct UdpServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpServer {
    pub fn start(netns: &Path, port: u16, reply: &'static str) -> anyhow::Result<UdpServer> {
        let sock = in_netns(netns, || UdpSocket::bind(("0.0.0.0", port)))??;
        sock.set_read_timeout(Some(Duration::from_millis(20)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((_, from)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(reply.as_bytes(), from);
                }
            }
        });
        Ok(UdpServer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for UdpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects to `addr` (from the calling thread's namespace, or from `netns`) and
/// returns what the server sent before closing.
pub fn tcp_fetch(netns: Option<&Path>, addr: SocketAddr) -> anyhow::Result<String> {
    let connect = || TcpStream::connect_timeout(&addr, Duration::from_secs(2));
    let mut stream = match netns {
        Some(ns) => in_netns(ns, connect)??,
        None => connect()?,
    };
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut out = String::new();
    stream.read_to_string(&mut out)?;
    Ok(out)
}

/// Sends one datagram to `addr` from the host and returns the answer.
pub fn udp_ask(addr: SocketAddr) -> anyhow::Result<String> {
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))?;
    sock.send_to(b"ping", addr)?;
    let mut buf = [0u8; 512];
    let (n, _) = sock.recv_from(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Runs a command inside `netns` through `nsenter --net=`; returns (success, output).
pub fn ns_exec(netns: &Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .arg("--")
        .args(args)
        .output();
    match out {
        Ok(o) => (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => (false, format!("nsenter: {e}")),
    }
}

/// `nft list table ip TABLE` output, or the error text.
pub fn nft_table(table: &str) -> String {
    let out = std::process::Command::new("nft")
        .args(["list", "table", "ip", table])
        .output();
    match out {
        Ok(o) => format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => format!("nft: {e}"),
    }
}

/// Whether a link named `name` exists in the host namespace.
pub fn host_link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Deletes `table ip NAME` on drop: a joined agent's Service rules outlive
/// the agent by design, so a test that runs one removes them itself.
pub struct NftTableGuard(pub String);

impl Drop for NftTableGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("nft")
            .args(["delete", "table", "ip", &self.0])
            .stderr(std::process::Stdio::null())
            .status();
    }
}
