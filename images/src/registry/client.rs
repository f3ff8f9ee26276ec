//! A distribution API v2 client for one repository: scheme discovery (`/v2/`
//! ping), anonymous / Basic / Bearer-token auth, manifest and blob GETs, and
//! HTTP failures turned into errors that name the registry and reference.

use std::fs;
use std::io::Read;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::blocking::{Client as Http, RequestBuilder, Response};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde::Deserialize;

use super::auth::{self, Challenge, Credentials};
use super::PullOptions;
use crate::digest::Digest;
use crate::error::Error;
use crate::reference::{Reference, DEFAULT_REGISTRY};
use crate::store::MAX_JSON_BLOB;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct Client {
    http: Http,
    /// `https://host[:port]` or `http://...` once the ping found it.
    base: String,
    registry: String,
    repository: String,
    reference: String,
    creds: Option<Credentials>,
    /// The `Authorization` value in use; shared by the download threads and
    /// replaced when a token must be renewed.
    auth: Mutex<Option<String>>,
}

/// A fetched manifest: body, `Content-Type`, and its digest (verified).
pub(crate) struct Fetched {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
    pub digest: Digest,
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
}

#[derive(Deserialize)]
struct RegistryErrors {
    #[serde(default)]
    errors: Vec<RegistryError>,
}

#[derive(Deserialize)]
struct RegistryError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

impl Client {
    /// Builds the HTTP client, loads credentials, pings `/v2/` (HTTPS, and
    /// plain HTTP too when `insecure`) and authenticates if challenged.
    pub(crate) fn connect(r: &Reference, opts: &PullOptions) -> Result<Client, Error> {
        let creds = match auth::auth_file_path(opts.auth_file.as_deref()) {
            Some((path, must_exist)) => auth::load_credentials(&path, must_exist, &r.registry)?,
            None => None,
        };
        let mut client = Client {
            http: build_http(opts)?,
            base: String::new(),
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            reference: r.to_string(),
            creds,
            auth: Mutex::new(None),
        };
        client.ping(opts.insecure)?;
        Ok(client)
    }

    fn ping(&mut self, insecure: bool) -> Result<(), Error> {
        let host = api_host(&self.registry);
        let schemes: &[&str] = if insecure {
            &["https", "http"]
        } else {
            &["https"]
        };
        let mut urls = Vec::new();
        let mut reasons: Vec<String> = Vec::new();
        for scheme in schemes {
            let url = format!("{scheme}://{host}/v2/");
            match self.http.get(&url).send() {
                Ok(resp) => {
                    self.base = format!("{scheme}://{host}");
                    return self.after_ping(resp, &url);
                }
                Err(e) => {
                    reasons.push(format!("{scheme}: {}", cause(&e)));
                    urls.push(url);
                }
            }
        }
        let bare: Vec<&str> = reasons
            .iter()
            .filter_map(|r| r.split_once(": ").map(|x| x.1))
            .collect();
        if bare.windows(2).all(|w| w[0] == w[1]) {
            reasons = bare
                .first()
                .map(|r| vec![r.to_string()])
                .unwrap_or_default();
        }
        if !insecure {
            reasons.push("for a plain-HTTP registry, use --insecure".into());
        }
        Err(Error::Connect {
            registry: self.registry.clone(),
            reference: self.reference.clone(),
            url: urls.join(" and "),
            reason: reasons.join("; "),
        })
    }

    fn after_ping(&self, resp: Response, url: &str) -> Result<(), Error> {
        match resp.status() {
            s if s.is_success() => Ok(()),
            StatusCode::UNAUTHORIZED => match challenges(&resp).first() {
                Some(ch) => self.answer(ch).map(|_| ()),
                None => Err(self.unauthorized("no WWW-Authenticate challenge on /v2/".into())),
            },
            s => Err(self.registry_err(
                &format!("GET {url}"),
                format!("HTTP {s}: not a distribution API v2 registry?"),
            )),
        }
    }

    /// Sets the `Authorization` value for a challenge; false when there is
    /// nothing (new) to answer it with.
    fn answer(&self, ch: &Challenge) -> Result<bool, Error> {
        let header = match ch.scheme.as_str() {
            "bearer" => Some(format!("Bearer {}", self.fetch_token(ch)?)),
            "basic" => self.creds.as_ref().map(basic_header),
            _ => None,
        };
        let mut current = self.auth.lock().unwrap_or_else(|p| p.into_inner());
        if header.is_none() || *current == header {
            return Ok(false);
        }
        *current = header;
        Ok(true)
    }

    fn fetch_token(&self, ch: &Challenge) -> Result<String, Error> {
        let realm = ch.param("realm").ok_or_else(|| {
            self.registry_err(
                "Bearer challenge",
                "it has no realm (token server URL)".into(),
            )
        })?;
        let default_scope = format!("repository:{}:pull", self.repository);
        let scope = ch.param("scope").unwrap_or(&default_scope);
        let mut query = vec![("scope", scope)];
        if let Some(service) = ch.param("service") {
            query.push(("service", service));
        }
        let mut req = self.http.get(realm).query(&query);
        if let Some(c) = &self.creds {
            req = req.basic_auth(&c.username, Some(&c.password));
        }
        let resp = req.send().map_err(|e| self.connect_err(realm, &e))?;
        let status = resp.status();
        let body = read_limited(resp, 1 << 20).map_err(|e| {
            self.registry_err(
                &format!("token from {realm}"),
                format!("reading the response: {e}"),
            )
        })?;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(self.unauthorized(format!(
                "token server {realm} refused: HTTP {status} {}",
                String::from_utf8_lossy(&body).trim()
            )));
        }
        if !status.is_success() {
            return Err(self.registry_err(&format!("token from {realm}"), format!("HTTP {status}")));
        }
        let token: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            self.registry_err(&format!("token from {realm}"), format!("invalid JSON: {e}"))
        })?;
        token
            .token
            .or(token.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                self.registry_err(
                    &format!("token from {realm}"),
                    "no token in the response".into(),
                )
            })
    }

    /// GET a manifest or index by tag or digest, verified against the digest
    /// it was asked by (or the registry's `Docker-Content-Digest`).
    pub(crate) fn manifest(&self, tag_or_digest: &str) -> Result<Fetched, Error> {
        let url = format!(
            "{}/v2/{}/manifests/{tag_or_digest}",
            self.base, self.repository
        );
        let what = format!("manifest {tag_or_digest}");
        let resp = self.get(&url, Some(super::manifest::ACCEPT), &what)?;
        let content_type = header(&resp, CONTENT_TYPE.as_str());
        let claimed = header(&resp, "docker-content-digest");
        let bytes = read_limited(resp, MAX_JSON_BLOB)
            .map_err(|e| self.registry_err(&what, format!("reading the response: {e}")))?;
        let digest = Digest::of_bytes(&bytes);
        let expected = match tag_or_digest.parse::<Digest>() {
            Ok(d) => Some(d),
            Err(_) => claimed.and_then(|c| c.parse().ok()),
        };
        if let Some(expected) = expected.filter(|e| *e != digest) {
            return Err(Error::DigestMismatch {
                what: format!("{what} of {} from {}", self.reference, self.registry),
                expected,
                actual: digest,
            });
        }
        Ok(Fetched {
            bytes,
            content_type,
            digest,
        })
    }

    /// GET a blob; the caller streams and verifies the body.
    pub(crate) fn blob(&self, d: &Digest, what: &str) -> Result<Response, Error> {
        let url = format!("{}/v2/{}/blobs/{d}", self.base, self.repository);
        self.get(&url, None, what)
    }

    fn get(&self, url: &str, accept: Option<&str>, what: &str) -> Result<Response, Error> {
        let mut retried = false;
        loop {
            let resp = self
                .request(url, accept)
                .send()
                .map_err(|e| self.connect_err(url, &e))?;
            if resp.status() == StatusCode::UNAUTHORIZED && !retried {
                retried = true;
                // A token may have expired or lack this scope: answer the new
                // challenge once, then give up.
                if let Some(ch) = challenges(&resp).first() {
                    if self.answer(ch)? {
                        continue;
                    }
                }
            }
            return self.check(resp, what);
        }
    }

    fn request(&self, url: &str, accept: Option<&str>) -> RequestBuilder {
        let mut req = self.http.get(url);
        if let Some(a) = accept {
            req = req.header(ACCEPT, a);
        }
        if let Some(h) = self
            .auth
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_deref()
        {
            req = req.header(AUTHORIZATION, h);
        }
        req
    }

    fn check(&self, resp: Response, what: &str) -> Result<Response, Error> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let detail = error_detail(resp);
        Err(match status {
            StatusCode::UNAUTHORIZED => self.unauthorized(detail),
            StatusCode::FORBIDDEN => Error::Forbidden {
                registry: self.registry.clone(),
                reference: self.reference.clone(),
                detail,
            },
            StatusCode::NOT_FOUND => Error::NotFound {
                registry: self.registry.clone(),
                reference: self.reference.clone(),
                what: what.to_string(),
                detail,
            },
            _ => self.registry_err(what, format!("HTTP {status}: {detail}")),
        })
    }

    fn unauthorized(&self, detail: String) -> Error {
        Error::Unauthorized {
            registry: self.registry.clone(),
            reference: self.reference.clone(),
            had_credentials: self.creds.is_some(),
            detail,
        }
    }

    pub(crate) fn registry_err(&self, what: &str, reason: String) -> Error {
        Error::Registry {
            registry: self.registry.clone(),
            reference: self.reference.clone(),
            what: what.to_string(),
            reason,
        }
    }

    fn connect_err(&self, url: &str, e: &reqwest::Error) -> Error {
        if e.is_connect() || e.is_timeout() {
            Error::Connect {
                registry: self.registry.clone(),
                reference: self.reference.clone(),
                url: url.to_string(),
                reason: cause(e),
            }
        } else {
            self.registry_err(&format!("GET {url}"), chain(e))
        }
    }

    pub(crate) fn reference(&self) -> &str {
        &self.reference
    }
}

fn build_http(opts: &PullOptions) -> Result<Http, Error> {
    let mut b = Http::builder()
        .user_agent(concat!("corral/", env!("CARGO_PKG_VERSION")))
        // Layers can take minutes: no overall deadline, only for connecting.
        .timeout(None::<Duration>)
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_keepalive(Duration::from_secs(30));
    if let Some(ca) = &opts.ca_file {
        let pem =
            fs::read(ca).map_err(|e| Error::io(format!("reading CA file {}", ca.display()), e))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| Error::invalid(format!("CA file {}", ca.display()), chain(&e)))?;
        if certs.is_empty() {
            return Err(Error::invalid(
                format!("CA file {}", ca.display()),
                "no PEM certificate in it",
            ));
        }
        for cert in certs {
            b = b.add_root_certificate(cert);
        }
    }
    if opts.insecure {
        b = b.danger_accept_invalid_certs(true);
    }
    b.build()
        .map_err(|e| Error::invalid("HTTP client", chain(&e)))
}

/// Docker Hub's API is not served at the name images use.
fn api_host(registry: &str) -> &str {
    if registry == DEFAULT_REGISTRY {
        "registry-1.docker.io"
    } else {
        registry
    }
}

fn basic_header(c: &Credentials) -> String {
    use base64::Engine as _;
    let raw = format!("{}:{}", c.username, c.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn challenges(resp: &Response) -> Vec<Challenge> {
    let mut all: Vec<Challenge> = resp
        .headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(auth::parse_challenges)
        .collect();
    // Prefer a token over sending the password on every request.
    all.sort_by_key(|c| c.scheme != "bearer");
    all
}

fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn read_limited(resp: Response, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    resp.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(bytes)
}

/// The registry's own words from an error body (`{"errors":[{code,message}]}`).
fn error_detail(resp: Response) -> String {
    let body = read_limited(resp, 64 << 10).unwrap_or_default();
    if let Ok(parsed) = serde_json::from_slice::<RegistryErrors>(&body) {
        let msgs: Vec<String> = parsed
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.code, e.message))
            .collect();
        if !msgs.is_empty() {
            return msgs.join("; ");
        }
    }
    let text = String::from_utf8_lossy(&body).trim().to_string();
    if text.is_empty() {
        "no details".to_string()
    } else {
        text.chars().take(300).collect()
    }
}

/// The chain below reqwest's "error sending request for url (...)", whose
/// URL the caller names already.
fn cause(e: &reqwest::Error) -> String {
    match std::error::Error::source(e) {
        Some(inner) => chain(inner).replace("client error (Connect): ", ""),
        None => chain(e),
    }
}

/// An error and its sources, so "connection refused" is not hidden behind
/// "error sending request".
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_api_host_and_basic_header() {
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(api_host("127.0.0.1:5000"), "127.0.0.1:5000");
        let c = Credentials {
            username: "alice".into(),
            password: "s3cret".into(),
        };
        assert_eq!(basic_header(&c), "Basic YWxpY2U6czNjcmV0");
    }

    #[test]
    fn error_chain_keeps_the_root_cause() {
        let inner =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let outer = Error::io("connecting to 127.0.0.1:1", inner);
        let text = chain(&outer);
        assert!(
            text.contains("connecting to 127.0.0.1:1") && text.contains("Connection refused"),
            "{text}"
        );
        assert_eq!(text.matches("Connection refused").count(), 1, "{text}");
    }
}
