//! The master's command line; every flag has a `CORRAL_MASTER_*` twin so
//! tests run several masters side by side in temporary directories.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Request bodies above this size get 413 (Kubernetes allows 3 MiB objects).
pub const DEFAULT_MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

#[derive(Debug, Clone, Parser)]
#[command(name = "corral-master", version, about = "Corral's API server")]
pub struct Config {
    /// Where the embedded store, the certificates and the tokens live.
    #[arg(
        long,
        env = "CORRAL_MASTER_DATA_DIR",
        default_value = "/var/lib/corral/master"
    )]
    pub data_dir: PathBuf,

    /// Address of the HTTPS listener.
    #[arg(long, env = "CORRAL_MASTER_LISTEN", default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,

    /// The address clients use to reach this master: added to the serving
    /// certificate and written into admin.kubeconfig. Default: the listen
    /// address (127.0.0.1 when it listens on every address).
    #[arg(long, env = "CORRAL_MASTER_ADVERTISE_ADDRESS")]
    pub advertise_address: Option<String>,

    /// `etcd://HOST:PORT[,HOST:PORT...]`; the embedded store when absent.
    #[arg(long, env = "CORRAL_MASTER_STORE")]
    pub store: Option<String>,

    /// Largest accepted request body in bytes.
    #[arg(long, env = "CORRAL_MASTER_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,

    /// How often the store's history older than `--compact-keep` revisions is
    /// compacted, in seconds (0 = never).
    #[arg(long, env = "CORRAL_MASTER_COMPACT_INTERVAL", default_value_t = 300)]
    pub compact_interval: u64,

    /// How many revisions of history compaction keeps for watchers to resume from.
    #[arg(long, env = "CORRAL_MASTER_COMPACT_KEEP", default_value_t = 1000)]
    pub compact_keep: u64,
}

impl Config {
    /// The host clients are told to connect to.
    pub fn advertise_host(&self) -> String {
        match &self.advertise_address {
            Some(a) => a.clone(),
            None if self.listen.ip().is_unspecified() => "127.0.0.1".into(),
            None => self.listen.ip().to_string(),
        }
    }

    /// `https://HOST:PORT` as written into admin.kubeconfig.
    pub fn server_url(&self) -> String {
        let host = self.advertise_host();
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        format!("https://{host}:{}", self.listen.port())
    }

    pub fn compact_interval(&self) -> Option<Duration> {
        (self.compact_interval > 0).then(|| Duration::from_secs(self.compact_interval))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_urls() {
        let c = Config::try_parse_from(["corral-master"]).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/corral/master"));
        assert_eq!(c.server_url(), "https://127.0.0.1:6443");
        let c = Config::try_parse_from(["corral-master", "--listen", "0.0.0.0:7000"]).unwrap();
        assert_eq!(c.advertise_host(), "127.0.0.1");
        let c = Config::try_parse_from([
            "corral-master",
            "--listen",
            "[::1]:7000",
            "--advertise-address",
            "::1",
        ])
        .unwrap();
        assert_eq!(c.server_url(), "https://[::1]:7000");
    }
}
