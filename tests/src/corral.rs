//! Harness for whole-binary tests of the `corral` command: every test gets its
//! own images root, state dir, runtime root, net state dir, netns dir, bridge
//! (`crlcli<N>`) and subnet (`10.214.<N>.0/24`), all passed through the
//! environment twins of corral's flags, with the test image (`busybox`, from
//! `scripts/build-test-images`, built once per test binary) imported. On drop
//! every container is removed (`rm -f`), the bridge and its nftables table are
//! destroyed and mounts under the temporary directory are undone, also when
//! the test panics. Traffic goes only to 127.0.0.1 and to the test's bridge.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use corral_net::{Network, NetworkConfig};

use crate::runtime::{run_command, Out};

/// Timeout of one corral invocation.
pub const CORRAL_TIMEOUT: Duration = Duration::from_secs(60);

/// `target/<profile>/<name>` next to this test executable.
pub fn workspace_binary(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut dir = exe
        .parent()
        .ok_or("test executable has no parent directory")?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent().ok_or("deps directory has no parent")?;
    }
    let bin = dir.join(name);
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "{} does not exist: build it with `cargo build --workspace --bins`",
            bin.display()
        ))
    }
}

fn images_dir() -> PathBuf {
    std::env::temp_dir().join(format!("corral-cli-images-{}", std::process::id()))
}

extern "C" fn remove_images_dir() {
    let _ = std::fs::remove_dir_all(images_dir());
}

/// The test images' OCI layouts (OUT/busybox, OUT/layered), built once per
/// test binary and removed when it exits.
fn test_images() -> Result<&'static Path, String> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = images_dir();
        // SAFETY: registers a plain function without captured state; it only
        // removes a directory when the process exits.
        unsafe { libc::atexit(remove_images_dir) };
        let out = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-test-images"))
            .arg(&dir)
            .output()
            .map_err(|e| format!("run scripts/build-test-images: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "scripts/build-test-images failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(dir)
    })
    .as_ref()
    .map(PathBuf::as_path)
    .map_err(Clone::clone)
}

pub struct Corral {
    pub n: u8,
    dir: tempfile::TempDir,
    bin: PathBuf,
    shim: PathBuf,
}

impl Corral {
    /// A fresh setup numbered `n` (unique among the CLI tests, 1-254) with the
    /// busybox test image imported as `busybox`. Err(reason) when the test
    /// cannot run here.
    pub fn new(n: u8) -> Result<Corral, String> {
        if !crate::host::is_root() {
            return Err("corral tests need root".into());
        }
        let bin = workspace_binary("corral")?;
        let shim = workspace_binary("corral-shim")?;
        let images = test_images()?;
        let dir = tempfile::Builder::new()
            .prefix("corral-cli-test")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        let c = Corral { n, dir, bin, shim };
        // A crashed earlier run may have left this bridge and table behind.
        if let Ok(net) = Network::open(c.net_config(&c.dir.path().join("stale"))) {
            let _ = net.destroy();
        }
        let out = c.run(&[
            "image",
            "import",
            "--tag",
            "busybox",
            &images.join("busybox").display().to_string(),
        ]);
        if !out.ok() {
            return Err(format!("import the busybox test image:\n{out}"));
        }
        Ok(c)
    }

    fn net_config(&self, state: &Path) -> NetworkConfig {
        NetworkConfig {
            bridge: self.bridge(),
            cidr: self
                .subnet()
                .parse()
                .unwrap_or_else(|e| panic!("test subnet: {e}")),
            state_dir: state.join(self.bridge()),
            cluster_cidr: None,
        }
    }

    /// The OCI layout of a test image (`busybox`, `layered`).
    pub fn layout(&self, name: &str) -> PathBuf {
        test_images()
            .unwrap_or_else(|e| panic!("test images: {e}"))
            .join(name)
    }

    pub fn bridge(&self) -> String {
        format!("crlcli{}", self.n)
    }

    pub fn subnet(&self) -> String {
        format!("10.214.{}.0/24", self.n)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path("state")
    }

    pub fn runtime_root(&self) -> PathBuf {
        self.path("runtime")
    }

    pub fn images_root(&self) -> PathBuf {
        self.path("images")
    }

    pub fn netns_dir(&self) -> PathBuf {
        self.path("netns")
    }

    /// `corral ARGS` with this test's paths in the environment.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .env("CORRAL_IMAGES_ROOT", self.images_root())
            .env("CORRAL_STATE_DIR", self.state_dir())
            .env("CORRAL_RUNTIME_ROOT", self.runtime_root())
            .env("CORRAL_NET_STATE_DIR", self.path("net"))
            .env("CORRAL_NETNS_DIR", self.netns_dir())
            .env("CORRAL_BRIDGE", self.bridge())
            .env("CORRAL_SUBNET", self.subnet())
            .env("CORRAL_SHIM", &self.shim);
        c
    }

    /// Run `corral ARGS` to completion (stdin /dev/null).
    pub fn run<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Out {
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let tag = format!(
            "corral-{}",
            SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        run_command(self.command(args), self.dir.path(), &tag, CORRAL_TIMEOUT)
    }

    /// Like [`run`](Self::run), panicking with the output unless it succeeded.
    pub fn ok<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Out {
        let out = self.run(args);
        assert!(out.ok(), "corral failed:\n{out}");
        out
    }

    /// Start `corral ARGS` with piped stdio (for stdin and follow tests).
    pub fn spawn<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Child {
        self.command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn corral: {e}"))
    }

    /// `corral inspect NAME` as JSON (the single object).
    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let out = self.ok(&["inspect", name]);
        let v: serde_json::Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("inspect output is not JSON ({e}):\n{out}"));
        v[0].clone()
    }

    /// Poll `inspect` until the container's state is `want` (or time runs out).
    pub fn wait_state(&self, name: &str, want: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.inspect(name)["state"]["status"] == want {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// (owner, host-side veth) of every address lease on this test's bridge.
    pub fn leases(&self) -> Vec<(String, String)> {
        let net = Network::open(self.net_config(&self.path("net")))
            .unwrap_or_else(|e| panic!("open network {}: {e}", self.bridge()));
        net.attachments()
            .unwrap_or_else(|e| panic!("leases of {}: {e}", self.bridge()))
            .into_iter()
            .map(|(owner, a)| (owner, a.veth_host))
            .collect()
    }

    /// Container ids with a directory in the state dir.
    pub fn container_dirs(&self) -> Vec<String> {
        list(&self.state_dir())
            .into_iter()
            .filter(|n| n.len() == 64)
            .collect()
    }

    /// Directory entries of the runtime root, snapshots and netns dir: what a
    /// removed container must not leave behind.
    pub fn leftovers(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (what, dir) in [
            ("state", self.state_dir()),
            ("runtime", self.runtime_root()),
            ("snapshot", self.images_root().join("snapshots")),
            ("netns", self.netns_dir()),
        ] {
            for n in list(&dir) {
                if n != ".names" {
                    out.push(format!("{what}: {n}"));
                }
            }
        }
        for n in list(&self.state_dir().join(".names")) {
            out.push(format!("name: {n}"));
        }
        out
    }
}

fn list(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

impl Drop for Corral {
    fn drop(&mut self) {
        let ids = self.container_dirs();
        if !ids.is_empty() {
            let mut args = vec!["rm".to_string(), "-f".to_string()];
            args.extend(ids);
            let out = self.run(&args);
            if !out.ok() {
                eprintln!("cleanup: {out}");
            }
        }
        if let Ok(net) = Network::open(self.net_config(&self.path("net"))) {
            if let Err(e) = net.destroy() {
                eprintln!("cleanup: destroy bridge {}: {e}", self.bridge());
            }
        }
        crate::host::unmount_under(self.dir.path());
    }
}
