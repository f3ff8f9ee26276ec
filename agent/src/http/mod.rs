//! The agent's HTTP API, shaped like kubelet's so the master can proxy
//! `kubectl logs`, `exec` and `top` to it later.
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | `ok`; the only route without a token |
//! | `GET /pods` | a PodList of every pod the agent runs |
//! | `GET /node` | this host as a Node (capacity, allocatable, addresses, nodeInfo) |
//! | `GET /containerLogs/{ns}/{pod}/{container}` | `follow`, `tailLines`, `previous`, `timestamps` |
//! | `GET /exec/{ns}/{pod}/{container}?command=..` | WebSocket, `v5.channel.k8s.io` / `v4.channel.k8s.io` |
//! | `GET /stats/summary` | kubelet's summary API (node, pods, containers: cpu and memory) |
//!
//! Every other route needs `Authorization: Bearer <token>`; failures are
//! Kubernetes `Status` objects. The server reads pods and containers through
//! [`Backend`] (the agent implements it in `backend.rs`) and never runs a
//! container process itself: exec goes through the `corral-runtime` binary.

mod backend;
mod exec;
mod logs;
mod params;
mod summary;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use corral_api::core::Pod;
use corral_api::{List, Status};
use tokio::net::TcpListener;

use crate::node::NodeConfig;

/// What the server needs from the agent.
pub trait Backend: Send + Sync + 'static {
    /// Every pod with its current status.
    fn pods(&self) -> Vec<Pod>;
    /// The runtime view of one container (`None`: the pod's only container).
    fn container(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
    ) -> Result<ContainerInfo, LookupError>;
}

/// Where a container lives on this host, and why a lookup failed: the pod
/// engine's own types, so the API and the engine cannot drift apart.
pub use crate::pods::{ContainerRef as ContainerInfo, LookupError};

impl LookupError {
    fn status(&self) -> Status {
        match self {
            LookupError::PodNotFound { name, .. } => Status::not_found("", "pods", name),
            LookupError::ContainerNotFound { .. } => {
                let mut s = Status::not_found("", "pods", "");
                s.message = self.to_string();
                s.details = None;
                s
            }
            LookupError::ContainerRequired { .. } | LookupError::NotStarted { .. } => {
                Status::bad_request(self.to_string())
            }
        }
    }
}

/// Server settings beyond the token.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The `corral-runtime` binary exec runs; default: next to this
    /// executable (or its parent directory), else `corral-runtime` on PATH.
    pub runtime_binary: Option<PathBuf>,
    /// What `/node` and `/stats/summary` report about the host.
    pub node: NodeConfig,
    /// Accepted besides the agent's own token: the master's join token
    /// when joined, which the master presents to proxy logs and exec.
    pub extra_tokens: Vec<String>,
}

struct Shared {
    backend: Arc<dyn Backend>,
    /// Every token accepted (the agent's own first); empty ones never match.
    tokens: Vec<String>,
    runtime: PathBuf,
    node: NodeConfig,
    /// Previous CPU samples by cgroup key, for usageNanoCores.
    cpu_samples: Mutex<HashMap<String, (u64, std::time::Instant)>>,
}

type AppState = Arc<Shared>;

/// Serve the API on `listen` until the future is dropped.
pub async fn serve(
    backend: impl Backend,
    listen: SocketAddr,
    token: String,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    serve_on(listener, backend, token, Options::default()).await
}

/// Serve the API on a bound listener (so callers can bind port 0 and read
/// the address first).
pub async fn serve_on(
    listener: TcpListener,
    backend: impl Backend,
    token: String,
    options: Options,
) -> std::io::Result<()> {
    axum::serve(listener, router(Arc::new(backend), token, options)).await
}

/// The routes, for embedding in another server.
pub fn router(backend: Arc<dyn Backend>, token: String, options: Options) -> Router {
    let mut tokens = vec![token];
    tokens.extend(options.extra_tokens);
    tokens.retain(|t| !t.is_empty());
    let state = Arc::new(Shared {
        backend,
        tokens,
        runtime: options.runtime_binary.unwrap_or_else(default_runtime),
        node: options.node,
        cpu_samples: Mutex::new(HashMap::new()),
    });
    let authed = Router::new()
        .route("/pods", get(pods))
        .route("/node", get(node))
        .route("/stats/summary", get(summary::summary))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(logs::container_logs),
        )
        .route("/exec/{namespace}/{pod}/{container}", get(exec::exec))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(authed)
        .fallback(|| async { status_response(Status::not_found("", "", "")) })
        .with_state(state)
}

fn default_runtime() -> PathBuf {
    let name = "corral-runtime";
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from(name)
}

/// A Status as the response, with its code as the HTTP status.
pub(crate) fn status_response(status: Status) -> Response {
    let code = u16::try_from(status.code)
        .ok()
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, Json(status)).into_response()
}

async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(t) if token_accepted(&state.tokens, t) => next.run(req).await,
        _ => status_response(Status::unauthorized("")),
    }
}

/// Whether `given` is one of `tokens`; every token is compared, so the time
/// taken does not tell which one matched.
fn token_accepted(tokens: &[String], given: &str) -> bool {
    tokens
        .iter()
        .fold(false, |ok, want| constant_time_eq(given, want) | ok)
}

/// Compares without an early exit, so the time taken does not tell how
/// much of a guessed token was right (only its length).
fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn pods(State(state): State<AppState>) -> Response {
    let backend = state.backend.clone();
    match tokio::task::spawn_blocking(move || backend.pods()).await {
        Ok(pods) => Json(List::new(pods, "")).into_response(),
        Err(e) => status_response(Status::internal_error(format!("listing pods: {e}"))),
    }
}

async fn node(State(state): State<AppState>) -> Response {
    let cfg = state.node.clone();
    match tokio::task::spawn_blocking(move || crate::node::node(&cfg)).await {
        Ok(Ok(node)) => Json(node).into_response(),
        Ok(Err(e)) => status_response(Status::internal_error(e)),
        Err(e) => status_response(Status::internal_error(format!("node facts: {e}"))),
    }
}

/// Look a container up on a blocking thread (the backend may take locks).
async fn lookup(
    state: &AppState,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Result<ContainerInfo, Response> {
    let backend = state.backend.clone();
    let (ns, p, c) = (
        namespace.to_string(),
        pod.to_string(),
        container.to_string(),
    );
    match tokio::task::spawn_blocking(move || backend.container(&ns, &p, Some(&c))).await {
        Ok(Ok(info)) => Ok(info),
        Ok(Err(e)) => Err(status_response(e.status())),
        Err(e) => Err(status_response(Status::internal_error(format!(
            "looking up container {container} of pod {namespace}/{pod}: {e}"
        )))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_compare() {
        assert!(constant_time_eq("s3cret", "s3cret"));
        assert!(!constant_time_eq("s3cret", "s3creT"));
        assert!(!constant_time_eq("s3cret", "s3cret1"));
        assert!(!constant_time_eq("", "x"));
        let tokens = ["own".to_string(), "join".to_string()];
        assert!(token_accepted(&tokens, "own"));
        assert!(token_accepted(&tokens, "join"));
        assert!(!token_accepted(&tokens, "other"));
        assert!(!token_accepted(&[], ""));
    }

    #[test]
    fn lookup_errors_as_kubernetes_says_them() {
        let s = LookupError::PodNotFound {
            namespace: "default".into(),
            name: "web".into(),
        }
        .status();
        assert_eq!(
            (s.code, s.message.as_str()),
            (404, "pods \"web\" not found")
        );
        let s = LookupError::ContainerNotFound {
            pod: "web".into(),
            container: "x".into(),
        }
        .status();
        assert_eq!(s.code, 404);
        assert_eq!(s.message, "container x is not valid for pod web");
        let s = LookupError::ContainerRequired {
            pod: "web".into(),
            choices: vec!["a".into(), "b".into()],
        }
        .status();
        assert_eq!(s.code, 400);
        assert!(s.message.ends_with("choose one of: [a b]"), "{}", s.message);
    }
}
