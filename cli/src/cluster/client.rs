//! A blocking HTTPS client for corral-master (or any Kubernetes API server):
//! it trusts only the kubeconfig's CA, sends the kubeconfig user's bearer
//! token, and turns a failure reply into its `Status`.

use std::io::BufReader;
use std::time::Duration;

use corral_api::Status;
use reqwest::blocking::{RequestBuilder, Response};
use reqwest::Method;
use serde_json::Value;

use super::args::ClusterGlobal;
use super::Error;
use corral_client::kubeconfig::{self, Kubeconfig};

/// A single request may take this long; watches are unbounded.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What `kubectl get` asks for: the server's own columns.
pub const ACCEPT_TABLE: &str =
    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;q=0.9";

pub const MERGE_PATCH: &str = "application/merge-patch+json";
pub const STRATEGIC_PATCH: &str = "application/strategic-merge-patch+json";
pub const JSON_PATCH: &str = "application/json-patch+json";

pub struct Client {
    http: reqwest::blocking::Client,
    server: String,
    token: Option<String>,
    user: String,
    /// The namespace of `-n`, else the context's, else `default`.
    pub namespace: String,
}

impl Client {
    pub fn from_flags(g: &ClusterGlobal) -> Result<Client, Error> {
        let path = kubeconfig::locate(g.kubeconfig.as_deref())?;
        let target = Kubeconfig::load(&path)?.resolve(g.context.as_deref())?;
        let mut b = reqwest::blocking::Client::builder()
            .timeout(None)
            .connect_timeout(Duration::from_secs(10));
        if let Some(pem) = &target.ca_pem {
            let cert = reqwest::Certificate::from_pem(pem).map_err(|e| {
                Error::msg(format!(
                    "kubeconfig {}: certificate authority of context {:?}: {e}",
                    path.display(),
                    target.context
                ))
            })?;
            b = b.add_root_certificate(cert).tls_built_in_root_certs(false);
        }
        if target.insecure {
            b = b.danger_accept_invalid_certs(true);
        }
        let http = b
            .build()
            .map_err(|e| Error::msg(format!("building the HTTPS client: {e}")))?;
        let namespace = g
            .namespace
            .clone()
            .or(target.namespace)
            .unwrap_or_else(|| "default".into());
        Ok(Client {
            http,
            server: target.server,
            token: target.token,
            user: target.user,
            namespace,
        })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.server));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    fn send_raw(&self, r: RequestBuilder, what: &str) -> Result<Response, Error> {
        let resp = r
            .send()
            .map_err(|e| Error::msg(format!("{what}: {}", corral_client::error_chain(&e))))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let code = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        let status = serde_json::from_str::<Status>(&text).unwrap_or_else(|_| {
            Status::failure(
                code.into(),
                "",
                text.trim().chars().take(200).collect::<String>(),
            )
        });
        Err(Error::Api {
            code,
            status: Box::new(status),
            user: self.user.clone(),
        })
    }

    fn send(&self, r: RequestBuilder, what: &str) -> Result<Value, Error> {
        let resp = self.send_raw(r.timeout(REQUEST_TIMEOUT), what)?;
        let text = resp
            .text()
            .map_err(|e| Error::msg(format!("{what}: reading the reply: {e}")))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::msg(format!("{what}: the reply is not JSON: {e}")))
    }

    pub fn get(&self, path: &str) -> Result<Value, Error> {
        self.send(self.request(Method::GET, path), &format!("GET {path}"))
    }

    /// GET asking for a `Table` (falls back to the object if the server
    /// cannot make one).
    pub fn get_table(&self, path: &str) -> Result<Value, Error> {
        let r = self
            .request(Method::GET, path)
            .header("Accept", ACCEPT_TABLE);
        self.send(r, &format!("GET {path}"))
    }

    pub fn create(&self, path: &str, body: &Value) -> Result<Value, Error> {
        self.send(
            self.request(Method::POST, path).json(body),
            &format!("POST {path}"),
        )
    }

    pub fn patch(&self, path: &str, content_type: &str, body: &Value) -> Result<Value, Error> {
        let r = self
            .request(Method::PATCH, path)
            .header("Content-Type", content_type)
            .body(body.to_string());
        self.send(r, &format!("PATCH {path}"))
    }

    pub fn delete(&self, path: &str) -> Result<Value, Error> {
        let body = serde_json::json!({
            "kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"
        });
        self.send(
            self.request(Method::DELETE, path).json(&body),
            &format!("DELETE {path}"),
        )
    }

    /// Watches `path` (with `watch=1` added), calling `event` for every
    /// event until it returns false or the server ends the stream.
    pub fn watch(
        &self,
        path: &str,
        table: bool,
        mut event: impl FnMut(Value) -> Result<bool, Error>,
    ) -> Result<(), Error> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let full = format!("{path}{sep}watch=1");
        let mut r = self.request(Method::GET, &full);
        if table {
            r = r.header("Accept", ACCEPT_TABLE);
        }
        let resp = self.send_raw(r, &format!("watching {path}"))?;
        let events =
            serde_json::Deserializer::from_reader(BufReader::new(resp)).into_iter::<Value>();
        for ev in events {
            let ev = ev.map_err(|e| Error::msg(format!("watching {path}: {e}")))?;
            if ev["type"] == "ERROR" {
                let status: Status =
                    serde_json::from_value(ev["object"].clone()).unwrap_or_default();
                return Err(Error::Api {
                    code: u16::try_from(status.code).unwrap_or(500),
                    status: Box::new(status),
                    user: self.user.clone(),
                });
            }
            if !event(ev)? {
                break;
            }
        }
        Ok(())
    }
}
