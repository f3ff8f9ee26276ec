//! A real registry for image tests: Debian's `docker-registry` (distribution
//! 2.8) on 127.0.0.1 with a config written per test, test images from
//! `scripts/build-test-images` pushed into it with `skopeo`, and a tiny token
//! server for the Bearer flow. Everything is stopped and removed on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;

pub const USER: &str = "corral";
pub const PASSWORD: &str = "s3cret-pw";

/// What the host lacks to run registry tests, if anything.
pub fn missing_tools() -> Option<String> {
    let missing: Vec<&str> = [
        "docker-registry",
        "skopeo",
        "htpasswd",
        "openssl",
        "python3",
    ]
    .into_iter()
    .filter(|t| !on_path(t))
    .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "missing {} (apt-get install docker-registry skopeo apache2-utils openssl python3)",
            missing.join(", ")
        )
    })
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// Runs a command, panicking with its output if it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds `busybox` and `layered` OCI layouts into `out` with the project's script.
pub fn build_test_images(out: &Path) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-test-images");
    run(Command::new("python3").arg(&script).arg(out));
    out.to_path_buf()
}

pub enum Auth {
    None,
    /// htpasswd (bcrypt) with [`USER`] / [`PASSWORD`].
    Basic,
    /// Bearer tokens from a [`TokenServer`].
    Token {
        realm: String,
        cert: PathBuf,
    },
}

pub const TOKEN_SERVICE: &str = "corral-test-registry";
pub const TOKEN_ISSUER: &str = "corral-test-issuer";

pub struct Registry {
    child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    tls: bool,
}

impl Registry {
    pub fn start(auth: Auth) -> Registry {
        Registry::start_with(auth, false)
    }

    /// With `tls`, serves HTTPS with a self-signed certificate for 127.0.0.1
    /// whose PEM is at [`Registry::ca_file`].
    pub fn start_with(auth: Auth, tls: bool) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("corral-registry-")
            .tempdir()
            .expect("tempdir");
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("storage").display()
        );
        if tls {
            ca_and_leaf(dir.path());
            config += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.path().join("tls.crt").display(),
                dir.path().join("tls.key").display()
            );
        }
        config += &auth_config(dir.path(), &auth);
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("create log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn docker-registry");
        let mut reg = Registry {
            child: Some(child),
            port,
            dir,
            tls,
        };
        reg.wait_ready();
        reg
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("docker-registry exited ({status}):\n{}", self.log());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "docker-registry did not listen on {} in 20 s:\n{}",
            self.port,
            self.log()
        );
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn ca_file(&self) -> PathBuf {
        assert!(self.tls, "no TLS on this registry");
        self.dir.path().join("ca.crt")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// How many blob GETs the registry served for `repo` (from its access log).
    pub fn blob_gets(&self, repo: &str) -> usize {
        let needle = format!("\"GET /v2/{repo}/blobs/");
        self.log().lines().filter(|l| l.contains(&needle)).count()
    }

    /// Pushes the OCI layout `layout` (tag `latest`) as `repo:tag`, with
    /// extra skopeo flags (compression, credentials).
    pub fn push(&self, layout: &Path, repo: &str, tag: &str, extra: &[&str]) {
        let dest = format!("docker://{}/{repo}:{tag}", self.host());
        run(Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
            ])
            .args(extra)
            .arg(format!("oci:{}:latest", layout.display()))
            .arg(dest));
    }

    /// Pushes the layout's image with its gzip layers stored uncompressed
    /// (`application/vnd.oci.image.layer.v1.tar`) through the registry API:
    /// skopeo always compresses for a registry. Returns the manifest digest.
    pub fn push_uncompressed(&self, layout: &Path, repo: &str, tag: &str) -> String {
        let http = reqwest::blocking::Client::builder()
            .no_proxy()
            .build()
            .expect("HTTP client");
        let read_json = |p: PathBuf| -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(&p).expect("read layout file"))
                .expect("layout JSON")
        };
        let blob_path = |d: &str| {
            layout
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:"))
        };
        let index = read_json(layout.join("index.json"));
        let digest = index["manifests"][0]["digest"]
            .as_str()
            .expect("manifest digest");
        let mut manifest = read_json(blob_path(digest));
        let config = manifest["config"]["digest"]
            .as_str()
            .expect("config digest")
            .to_string();
        self.upload(
            &http,
            repo,
            &std::fs::read(blob_path(&config)).expect("config blob"),
        );
        let layers = manifest["layers"].as_array_mut().expect("layers");
        for layer in layers.iter_mut() {
            let gz =
                std::fs::read(blob_path(layer["digest"].as_str().expect("digest"))).expect("layer");
            let mut tar = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut tar)
                .expect("gunzip layer");
            let d = self.upload(&http, repo, &tar);
            *layer = serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": d,
                "size": tar.len(),
            });
        }
        let body = serde_json::to_vec(&manifest).expect("manifest JSON");
        let resp = http
            .put(format!("http://{}/v2/{repo}/manifests/{tag}", self.host()))
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .body(body.clone())
            .send()
            .expect("PUT manifest");
        assert_eq!(
            resp.status().as_u16(),
            201,
            "PUT manifest: {:?}",
            resp.text()
        );
        corral_images::Digest::of_bytes(&body).to_string()
    }

    /// Monolithic blob upload (POST, then PUT with the digest); returns the digest.
    fn upload(&self, http: &reqwest::blocking::Client, repo: &str, bytes: &[u8]) -> String {
        let digest = corral_images::Digest::of_bytes(bytes).to_string();
        let base = format!("http://{}", self.host());
        let resp = http
            .post(format!("{base}/v2/{repo}/blobs/uploads/"))
            .send()
            .expect("POST upload");
        assert_eq!(
            resp.status().as_u16(),
            202,
            "start upload: {:?}",
            resp.text()
        );
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .expect("upload Location")
            .to_string();
        let url = if location.starts_with('/') {
            format!("{base}{location}")
        } else {
            location
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        let resp = http
            .put(format!("{url}{sep}digest={digest}"))
            .header("Content-Type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .expect("PUT blob");
        assert_eq!(
            resp.status().as_u16(),
            201,
            "finish upload: {:?}",
            resp.text()
        );
        digest
    }

    /// The file the registry stores a blob in.
    pub fn blob_file(&self, hex: &str) -> PathBuf {
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn auth_config(dir: &Path, auth: &Auth) -> String {
    match auth {
        Auth::None => String::new(),
        Auth::Basic => {
            let line = run(Command::new("htpasswd").args(["-Bbn", USER, PASSWORD]));
            let path = dir.join("htpasswd");
            std::fs::write(&path, line.trim_end().to_string() + "\n").expect("write htpasswd");
            format!(
                "auth:\n  htpasswd:\n    realm: corral-test\n    path: {}\n",
                path.display()
            )
        }
        Auth::Token { realm, cert } => format!(
            "auth:\n  token:\n    realm: {realm}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
            cert.display()
        ),
    }
}

/// `dir/<name>.key` and `dir/<name>.crt`: an RSA key and a self-signed cert.
pub fn self_signed(dir: &Path, name: &str, san: &str) {
    run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", &format!("/CN=corral-test-{name}")])
        .args(["-addext", &format!("subjectAltName={san}")])
        .arg("-keyout")
        .arg(dir.join(format!("{name}.key")))
        .arg("-out")
        .arg(dir.join(format!("{name}.crt")))
        .stderr(Stdio::null()));
}

/// `dir/ca.crt` (a CA) and `dir/tls.{crt,key}` (a server certificate for
/// 127.0.0.1 signed by it): TLS libraries refuse a CA certificate as a leaf.
pub fn ca_and_leaf(dir: &Path) {
    self_signed(dir, "ca", "DNS:corral-test-ca");
    let ext = dir.join("leaf.ext");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write leaf.ext");
    run(Command::new("openssl")
        .args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(dir.join("tls.key"))
        .arg("-out")
        .arg(dir.join("tls.csr"))
        .stderr(Stdio::null()));
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-set_serial", "2"])
        .arg("-in")
        .arg(dir.join("tls.csr"))
        .arg("-CA")
        .arg(dir.join("ca.crt"))
        .arg("-CAkey")
        .arg(dir.join("ca.key"))
        .arg("-extfile")
        .arg(&ext)
        .arg("-out")
        .arg(dir.join("tls.crt"))
        .stderr(Stdio::null()));
}

/// A docker `config.json`-style credentials file for `host` in `dir`.
pub fn auth_file(dir: &Path, host: &str, user: &str, password: &str) -> PathBuf {
    let path = dir.join("auth.json");
    let auth = STANDARD.encode(format!("{user}:{password}"));
    let json = serde_json::json!({ "auths": { host: { "auth": auth } } });
    std::fs::write(&path, json.to_string()).expect("write auth file");
    path
}

/// A token server for the registry's `auth: token:` mode. It answers
/// `GET /token?service=..&scope=repository:NAME:ACTIONS` with an RS256 JWT
/// (signed by `openssl dgst`, the certificate in the `x5c` header) granting
/// the requested scope, but only to Basic credentials [`USER`]:[`PASSWORD`].
pub struct TokenServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub issued: Arc<AtomicUsize>,
    pub refused: Arc<AtomicUsize>,
}

impl TokenServer {
    pub fn start() -> TokenServer {
        let dir = tempfile::Builder::new()
            .prefix("corral-token-")
            .tempdir()
            .expect("tempdir");
        self_signed(dir.path(), "token", "DNS:corral-test-token");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token server");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let issued = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let signer = Signer::new(dir.path());
        let thread = {
            let (stop, issued, refused) = (stop.clone(), issued.clone(), refused.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(conn) = conn {
                        let ok = serve_token(conn, &signer);
                        let counter = if ok { &issued } else { &refused };
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        };
        TokenServer {
            port,
            dir,
            stop,
            thread: Some(thread),
            issued,
            refused,
        }
    }

    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("token.crt")
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Signer {
    key: PathBuf,
    cert_der_b64: String,
}

impl Signer {
    fn new(dir: &Path) -> Signer {
        let pem = std::fs::read_to_string(dir.join("token.crt")).expect("read token cert");
        let cert_der_b64: String = pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .concat();
        Signer {
            key: dir.join("token.key"),
            cert_der_b64,
        }
    }

    fn token(&self, scopes: &[String]) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [self.cert_der_b64]});
        let access: Vec<serde_json::Value> = scopes
            .iter()
            .filter_map(|s| {
                let mut parts = s.splitn(3, ':');
                let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                Some(serde_json::json!({
                    "type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()
                }))
            })
            .collect();
        let claims = serde_json::json!({
            "iss": TOKEN_ISSUER, "sub": USER, "aud": TOKEN_SERVICE,
            "exp": now + 600, "nbf": now - 60, "iat": now - 60,
            "jti": format!("{now}-{}", std::process::id()), "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut child = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(&self.key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn openssl dgst");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(signing_input.as_bytes())
            .expect("write to openssl");
        let out = child.wait_with_output().expect("openssl dgst");
        assert!(out.status.success(), "openssl dgst failed");
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(out.stdout))
    }
}

/// Answers one HTTP request; true if a token was issued.
fn serve_token(mut conn: TcpStream, signer: &Signer) -> bool {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return false,
    });
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return false;
    }
    let mut authorized = false;
    let expected = format!("Basic {}", STANDARD.encode(format!("{USER}:{PASSWORD}")));
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") && value.trim() == expected {
                authorized = true;
            }
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("");
    let scopes: Vec<String> = target
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.strip_prefix("scope="))
        .map(percent_decode)
        .flat_map(|s| s.split(' ').map(str::to_string).collect::<Vec<_>>())
        .collect();
    let (status, body) = if !target.starts_with("/token") {
        ("404 Not Found", "{}".to_string())
    } else if !authorized {
        (
            "401 Unauthorized",
            r#"{"details":"bad or missing credentials"}"#.to_string(),
        )
    } else {
        let token = signer.token(&scopes);
        (
            "200 OK",
            serde_json::json!({"token": token, "access_token": token, "expires_in": 600})
                .to_string(),
        )
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(response.as_bytes());
    let _ = conn.shutdown(Shutdown::Both);
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    status.starts_with("200")
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
