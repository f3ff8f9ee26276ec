//! A real etcd (Debian's `etcd-server`) for one test: client and peer URLs on free
//! 127.0.0.1 ports, data in a temporary directory, killed and removed on drop.

use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::registry::free_port;

/// How long etcd may take to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Etcd {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    pub client_port: u16,
    _data: tempfile::TempDir,
}

/// Why there is no etcd to test against, or None when `etcd` is installed.
pub fn missing() -> Option<String> {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("etcd").is_file()));
    (!found).then(|| "etcd is not installed (apt-get install etcd-server)".to_string())
}

impl Etcd {
    /// Start etcd and wait until it serves requests.
    pub fn start() -> Etcd {
        let data = tempfile::tempdir().expect("etcd data tempdir");
        let client_port = free_port();
        let peer_port = free_port();
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(data.path().join("etcd.log")).expect("etcd log file");
        let child = Command::new("etcd")
            .arg("--name=corral-test")
            .arg(format!("--data-dir={}", data.path().join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=corral-test={peer}"))
            .arg("--log-outputs=stderr")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        let mut etcd = Etcd {
            child,
            endpoint: client,
            client_port,
            _data: data,
        };
        etcd.wait_ready();
        etcd
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("etcd exited during start ({status}): {}", self.log_tail());
            }
            if health(self.client_port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "etcd did not answer on {} within {START_TIMEOUT:?}: {}",
            self.endpoint,
            self.log_tail()
        );
    }

    /// The end of etcd's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self._data.path().join("etcd.log")).unwrap_or_default();
        let start = text.len().saturating_sub(2000);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[start..].to_string()
    }

    pub fn data_dir(&self) -> &Path {
        self._data.path()
    }
}

/// GET /health with a raw HTTP/1.0 request (no client library needed before
/// etcd is up).
fn health(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if std::io::Write::write_all(&mut s, b"GET /health HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.contains("\"health\":\"true\"")
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
