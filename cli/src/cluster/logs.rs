//! `corral logs` for a cluster pod: `GET pods/{name}/log`, which the master
//! proxies to the pod's agent; the body is copied to stdout as it arrives,
//! so `-f` follows until the container ends or we are interrupted.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use corral_api::Status;
use corral_client::kubeconfig::{self, Kubeconfig, Target};

use super::args::ClusterGlobal;
use super::{with_query, Error};

/// What the command line asks of one pod's log.
#[derive(Debug, Default, Clone)]
pub struct LogRequest<'a> {
    pub pod: &'a str,
    pub container: Option<&'a str>,
    pub follow: bool,
    pub previous: bool,
    pub tail: Option<usize>,
    pub timestamps: bool,
}

/// The server, credentials and namespace of the kubeconfig the flags name.
pub struct Endpoint {
    pub target: Target,
    pub namespace: String,
    pub kubeconfig: PathBuf,
}

impl Endpoint {
    pub fn from_flags(g: &ClusterGlobal) -> Result<Endpoint, Error> {
        let kubeconfig = kubeconfig::locate(g.kubeconfig.as_deref())?;
        let target = Kubeconfig::load(&kubeconfig)?.resolve(g.context.as_deref())?;
        let namespace = g
            .namespace
            .clone()
            .or_else(|| target.namespace.clone())
            .unwrap_or_else(|| "default".into());
        Ok(Endpoint {
            target,
            namespace,
            kubeconfig,
        })
    }

    /// A failure reply's body as the Status it carries (else its text).
    pub fn api_error(&self, code: u16, body: &[u8]) -> Error {
        let status = serde_json::from_slice::<Status>(body).unwrap_or_else(|_| {
            let text = String::from_utf8_lossy(body);
            Status::failure(
                code.into(),
                "",
                text.trim().chars().take(200).collect::<String>(),
            )
        });
        Error::Api {
            code,
            status: Box::new(status),
            user: self.target.user.clone(),
        }
    }

    fn http(&self) -> Result<reqwest::blocking::Client, Error> {
        let mut b = reqwest::blocking::Client::builder()
            .timeout(None)
            .connect_timeout(Duration::from_secs(10));
        if let Some(pem) = &self.target.ca_pem {
            let cert = reqwest::Certificate::from_pem(pem).map_err(|e| {
                Error::msg(format!(
                    "kubeconfig {}: certificate authority of context {:?}: {e}",
                    self.kubeconfig.display(),
                    self.target.context
                ))
            })?;
            b = b.add_root_certificate(cert).tls_built_in_root_certs(false);
        }
        if self.target.insecure {
            b = b.danger_accept_invalid_certs(true);
        }
        b.build()
            .map_err(|e| Error::msg(format!("building the HTTPS client: {e}")))
    }
}

/// The API path of the request, container and options in the query.
pub fn log_path(ns: &str, r: &LogRequest) -> String {
    let tail = r.tail.map(|n| n.to_string()).unwrap_or_default();
    with_query(
        &format!("/api/v1/namespaces/{ns}/pods/{}/log", r.pod),
        &[
            ("container", r.container.unwrap_or("")),
            ("follow", if r.follow { "true" } else { "" }),
            ("previous", if r.previous { "true" } else { "" }),
            ("tailLines", &tail),
            ("timestamps", if r.timestamps { "true" } else { "" }),
        ],
    )
}

/// Prints the log; the exit status (0) or the server's refusal.
pub fn run(g: &ClusterGlobal, r: &LogRequest) -> Result<i32, Error> {
    let ep = Endpoint::from_flags(g)?;
    let path = log_path(&ep.namespace, r);
    let mut req = ep.http()?.get(format!("{}{path}", ep.target.server));
    if let Some(t) = &ep.target.token {
        req = req.bearer_auth(t);
    }
    let mut resp = req
        .send()
        .map_err(|e| Error::msg(format!("GET {path}: {e}")))?;
    if !resp.status().is_success() {
        let code = resp.status().as_u16();
        let mut body = Vec::new();
        let _ = resp.read_to_end(&mut body);
        return Err(ep.api_error(code, &body));
    }
    copy_out(&mut resp, &mut std::io::stdout().lock(), &path)?;
    Ok(0)
}

/// Copies as each chunk comes (a follow has no end to wait for).
fn copy_out(from: &mut impl Read, to: &mut impl Write, what: &str) -> Result<(), Error> {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::msg(format!("GET {what}: reading the log: {e}"))),
        };
        to.write_all(&buf[..n])
            .and_then(|_| to.flush())
            .map_err(|e| Error::msg(format!("writing the log to stdout: {e}")))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_carry_the_options() {
        let r = LogRequest {
            pod: "web",
            ..Default::default()
        };
        assert_eq!(
            log_path("default", &r),
            "/api/v1/namespaces/default/pods/web/log"
        );
        let r = LogRequest {
            pod: "web",
            container: Some("c 1"),
            follow: true,
            previous: true,
            tail: Some(3),
            timestamps: true,
        };
        assert_eq!(
            log_path("ns", &r),
            "/api/v1/namespaces/ns/pods/web/log?container=c%201&follow=true&previous=true&tailLines=3&timestamps=true"
        );
    }

    #[test]
    fn copies_everything() {
        let mut out = Vec::new();
        copy_out(&mut &b"a\nb\n"[..], &mut out, "x").unwrap();
        assert_eq!(out, b"a\nb\n");
    }
}
