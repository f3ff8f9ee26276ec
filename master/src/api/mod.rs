//! The HTTPS front door: authentication, body limits, discovery and the
//! routing of resource paths to the verbs in [`objects`] and [`watch`].

mod alloc;
mod delete;
mod discovery;
mod immutable;
mod jsonpatch;
mod list;
mod objects;
mod patch;
mod proxy;
mod rawjson;
mod request;
mod response;
mod route;
mod services;
mod table;
mod watch;

use std::convert::Infallible;
use std::io;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use corral_api::Status;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::Method;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::auth::Tokens;
use crate::ipalloc::{ServiceAllocator, ServiceNetwork};
use crate::store::Store;
pub use objects::SYSTEM_NAMESPACES;
use request::Request;
use response::{bytes_response, json, status, ApiResult, Resp};
use route::RouteError;

/// The API server's state, shared by every connection.
pub struct Api {
    store: Arc<dyn Store>,
    tokens: Tokens,
    max_body: usize,
    services: ServiceAllocator,
    /// Where the `kubernetes` Service in `default` points (None: no such Service).
    kubernetes_endpoint: Option<std::net::SocketAddr>,
    /// The join token, which agents accept: pod log and exec are proxied with it.
    agent_token: Option<String>,
}

/// Paths anyone may read: they say whether the server is up and nothing else.
const PUBLIC_PATHS: &[&str] = &["/healthz", "/livez", "/readyz"];

impl Api {
    pub fn new(store: Arc<dyn Store>, tokens: Tokens, max_body: usize) -> Api {
        alloc::limit_arenas();
        Api {
            store,
            tokens,
            max_body,
            services: ServiceAllocator::default(),
            kubernetes_endpoint: None,
            agent_token: None,
        }
    }

    /// Service ClusterIPs from `cidr` and node ports from `node_ports`
    /// (both ends included) instead of Kubernetes' defaults.
    pub fn with_service_network(
        mut self,
        cidr: &str,
        node_ports: (u16, u16),
    ) -> Result<Api, crate::ipalloc::ConfigError> {
        self.services = ServiceAllocator::new(ServiceNetwork::new(cidr, node_ports)?);
        Ok(self)
    }

    /// Pod log and exec requests are proxied to the agents with `token` (the
    /// cluster's join token); without it they get 503.
    pub fn with_agent_token(mut self, token: &str) -> Api {
        self.agent_token = Some(token.to_string());
        self
    }

    /// [`Api::init`] also makes the `kubernetes` Service in `default` (the
    /// first address of the service network) with `addr` as its endpoint.
    pub fn with_kubernetes_endpoint(mut self, addr: std::net::SocketAddr) -> Api {
        self.kubernetes_endpoint = Some(addr);
        self
    }

    /// Creates the namespaces every cluster has (`default`, `kube-system`, ...).
    pub async fn init(&self) -> Result<(), Status> {
        self.ensure_system_namespaces().await.map_err(|e| *e.0)?;
        if let Some(addr) = self.kubernetes_endpoint {
            self.ensure_kubernetes_service(addr)
                .await
                .map_err(|e| *e.0)?;
        }
        Ok(())
    }

    async fn handle(&self, req: hyper::Request<Incoming>) -> Resp {
        let path = req.uri().path().to_string();
        let header = |name| {
            req.headers()
                .get(name)
                .and_then(|v: &hyper::header::HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let identity = self.tokens.authenticate(header(AUTHORIZATION).as_deref());
        if !PUBLIC_PATHS.contains(&path.as_str()) && identity.is_none() {
            return status(&Status::unauthorized(""));
        }
        if let Some((ns, name, kind)) = proxy::match_path(&path) {
            // Agents may not reach into each other's pods through the master.
            if identity != Some(crate::auth::Identity::Admin) {
                let why = "only the admin may use log and exec";
                return status(&Status::forbidden("", "pods", &name, why));
            }
            return self.proxy(&ns, &name, kind, req).await;
        }
        if let Some((node, sub)) = proxy::match_node_proxy(&path) {
            let admin = identity == Some(crate::auth::Identity::Admin);
            return self.proxy_node(&node, &sub, admin, req).await;
        }
        let too_large = || {
            status(&Status::request_entity_too_large(format!(
                "the request body is larger than {} bytes",
                self.max_body
            )))
        };
        let (content_type, accept) = (header(CONTENT_TYPE), header(ACCEPT));
        let method = req.method().clone();
        let query = request::parse_query(req.uri().query());
        let body = match read_body(req.into_body(), self.max_body).await {
            Ok(Some(b)) => b,
            Ok(None) => return too_large(),
            Err(e) => return status(&Status::bad_request(format!("reading the body: {e}"))),
        };
        let req = Request {
            method,
            path,
            query,
            content_type: content_type.unwrap_or_default(),
            accept: accept.unwrap_or_default(),
            body,
        };
        match self.dispatch(&req).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        }
    }

    async fn dispatch(&self, req: &Request) -> ApiResult<Resp> {
        if let Some(r) = self.discovery(req) {
            return r;
        }
        let t = match route::parse(&req.path) {
            Ok(t) => t,
            Err(RouteError::NotFound | RouteError::NotResourcePath) => {
                return Err(Status::failure(
                    404,
                    corral_api::meta::reasons::NOT_FOUND,
                    "the server could not find the requested resource",
                )
                .into())
            }
        };
        if req.method != Method::GET {
            req.dry_run()?;
        }
        let name = t.name.clone();
        let sub = t.subresource.as_deref();
        let not_allowed = || {
            let verb = req.method.as_str().to_ascii_lowercase();
            Err(Status::method_not_supported(t.info.group, t.info.plural, &verb).into())
        };
        match (&req.method, name.as_deref(), sub) {
            (&Method::GET, None, _) if t.watch_path || req.flag("watch") => {
                self.watch(&t, req).await
            }
            (&Method::GET, Some(_), _) if t.watch_path => self.watch(&t, req).await,
            (&Method::GET, None, _) => self.list(&t, req).await,
            (&Method::GET, Some(n), None | Some("status" | "scale")) => self.get(&t, req, n).await,
            (&Method::POST, None, None) => self.create(&t, req).await,
            (&Method::POST, Some(n), Some("binding")) => {
                let ns = t.namespace.clone().unwrap_or_default();
                self.bind(&ns, n, req.body_value()?).await
            }
            (&Method::PUT, Some(n), None | Some("status" | "scale")) => {
                self.update(&t, req, n).await
            }
            (&Method::PATCH, Some(n), None | Some("status" | "scale")) => {
                self.patch(&t, req, n).await
            }
            (&Method::DELETE, Some(n), None) => self.delete(&t, req, n).await,
            (&Method::DELETE, None, None) => self.delete_collection(&t, req).await,
            _ => not_allowed(),
        }
    }

    /// Discovery and OpenAPI documents; None for other paths.
    fn discovery(&self, req: &Request) -> Option<ApiResult<Resp>> {
        let path = req.path.trim_end_matches('/');
        let doc = match path {
            "/healthz" | "/livez" | "/readyz" => {
                return Some(Ok(bytes_response(200, "text/plain", "ok")))
            }
            "/version" => Some(discovery::version()),
            "/api" => Some(discovery::api_versions()),
            "/apis" => Some(discovery::api_group_list()),
            "/api/v1" => discovery::resource_list("", "v1"),
            "/openapi/v3" => Some(discovery::openapi_v3_index()),
            p if p.starts_with("/openapi/v3/") => {
                discovery::openapi_v3_doc(&p["/openapi/v3/".len()..])
            }
            p if p.starts_with("/apis/") => {
                let parts: Vec<&str> = p["/apis/".len()..].split('/').collect();
                match parts.as_slice() {
                    [group] => discovery::api_group(group),
                    [group, version] => discovery::resource_list(group, version),
                    _ => return None,
                }
            }
            _ => return None,
        };
        let not_found = || {
            Status::failure(
                404,
                corral_api::meta::reasons::NOT_FOUND,
                "the server could not find the requested resource",
            )
        };
        Some(match (doc, &req.method) {
            (Some(d), &Method::GET) => Ok(json(200, &d)),
            (Some(_), _) => Err(Status::failure(
                405,
                corral_api::meta::reasons::METHOD_NOT_ALLOWED,
                "only GET is allowed on discovery documents",
            )
            .into()),
            (None, _) => Err(not_found().into()),
        })
    }
}

/// Past this many bytes an oversized body is no longer drained: the
/// connection is dropped instead of read to its end.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// The whole body, or None when it is larger than `max`. An oversized body
/// is still read (and dropped) so that the client, which is usually still
/// sending, gets the 413 reply instead of a reset connection.
async fn read_body(mut body: Incoming, max: usize) -> Result<Option<Bytes>, hyper::Error> {
    let mut buf = BytesMut::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        total = total.saturating_add(data.len());
        if total <= max {
            buf.extend_from_slice(&data);
        } else if total > DRAIN_LIMIT {
            return Ok(None);
        }
    }
    Ok((total <= max).then(|| buf.freeze()))
}

/// Accepts TLS connections on `listener` until it fails; one task per connection.
pub async fn serve(
    api: Arc<Api>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
) -> io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            // Out of descriptors or a connection reset before accept: keep serving.
            Err(e) if is_transient(&e) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let (acceptor, api) = (acceptor.clone(), api.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let svc = hyper::service::service_fn(move |req| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(api.handle(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    ) || e.raw_os_error() == Some(24)
        || e.raw_os_error() == Some(23)
}
