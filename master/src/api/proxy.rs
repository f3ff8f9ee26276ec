//! `pods/{name}/log` and `pods/{name}/exec`, proxied to the agent of the
//! pod's node as kube-apiserver proxies them to the kubelet: the Node's
//! InternalIP and `status.daemonEndpoints.kubeletEndpoint.Port`, plain HTTP
//! (the agent serves no TLS), `Authorization: Bearer <join token>`.
//!
//! - log: `GET /containerLogs/{ns}/{pod}/{container}?follow&tailLines&previous&timestamps`;
//!   the agent's body is streamed through as it comes (follow never ends
//!   until either side goes).
//! - exec: a WebSocket upgrade (`v5.channel.k8s.io`/`v4.channel.k8s.io`) is
//!   forwarded with the client's own key and subprotocols to
//!   `GET /exec/{ns}/{pod}/{container}?command=..`; once the agent answers
//!   101 the client gets that answer and the two upgraded connections are
//!   spliced byte for byte (the channel protocol passes through unread).
//!   SPDY, which older kubectl speaks, is refused with a 400 that says so.
//! - `nodes/{name}/proxy/stats/summary`: the agent's `/stats/summary`
//!   (kubelet's summary API, what `corral top` reads), admin only; other
//!   node proxy paths are not offered.

use std::sync::OnceLock;
use std::time::Duration;

use corral_api::core::{Node, Pod};
use corral_api::resource;
use corral_api::Status;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::response::{full, ApiError, ApiResult, ChannelBody, Resp};
use super::Api;

/// Headers of a WebSocket handshake passed on to the agent and back.
const WS_REQUEST_HEADERS: &[&str] = &[
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
];
const WS_RESPONSE_HEADERS: &[&str] = &["sec-websocket-accept", "sec-websocket-protocol"];

/// The kubelet port Kubernetes assumes when a Node reports none.
const DEFAULT_AGENT_PORT: u16 = 10250;

/// Which proxied subresource a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Log,
    Exec,
}

/// `(namespace, pod, kind)` of `/api/v1/namespaces/{ns}/pods/{name}/log|exec`.
pub fn match_path(path: &str) -> Option<(String, String, Kind)> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["api", "v1", "namespaces", ns, "pods", name, sub]
            if !ns.is_empty() && !name.is_empty() =>
        {
            let kind = match *sub {
                "log" => Kind::Log,
                "exec" => Kind::Exec,
                _ => return None,
            };
            Some((ns.to_string(), name.to_string(), kind))
        }
        _ => None,
    }
}

/// The only node proxy path offered: what `top` needs.
const NODE_STATS: &str = "stats/summary";

/// `(node, path after proxy/)` of `/api/v1/nodes/{name}/proxy/{path}`.
pub fn match_node_proxy(path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix("/api/v1/nodes/")?;
    let (node, sub) = rest.split_once('/')?;
    let sub = sub.strip_prefix("proxy")?;
    if node.is_empty() || !(sub.is_empty() || sub.starts_with('/')) {
        return None;
    }
    Some((node.to_string(), sub.trim_start_matches('/').to_string()))
}

/// How the client asks to upgrade the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade {
    None,
    WebSocket,
    Spdy,
    Other,
}

pub fn upgrade_kind(headers: &HeaderMap) -> Upgrade {
    let Some(up) = headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()) else {
        return Upgrade::None;
    };
    let up = up.to_ascii_lowercase();
    if up.split(',').any(|p| p.trim() == "websocket") {
        Upgrade::WebSocket
    } else if up.starts_with("spdy/") {
        Upgrade::Spdy
    } else {
        Upgrade::Other
    }
}

/// The query without `container` (the agent has it in its path), every
/// other key kept in order, repeated ones (`command`) included.
pub fn forwarded_query(raw: Option<&str>) -> String {
    let pairs =
        form_urlencoded::parse(raw.unwrap_or("").as_bytes()).filter(|(k, _)| k != "container");
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn query_value(raw: Option<&str>, key: &str) -> Option<String> {
    form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .filter(|(k, _)| k == key)
        .last()
        .map(|(_, v)| v.into_owned())
}

/// The container a request names, or the pod's only one; Kubernetes' wording otherwise.
pub fn pick_container(pod: &Pod, requested: Option<&str>) -> ApiResult<String> {
    let name = &pod.metadata.name;
    let all: Vec<&str> = pod
        .spec
        .init_containers
        .iter()
        .chain(&pod.spec.containers)
        .map(|c| c.name.as_str())
        .collect();
    match requested.filter(|c| !c.is_empty()) {
        Some(c) if all.contains(&c) => Ok(c.to_string()),
        Some(c) => {
            Err(Status::bad_request(format!("container {c} is not valid for pod {name}")).into())
        }
        None if pod.spec.containers.len() == 1 => Ok(pod.spec.containers[0].name.clone()),
        None => {
            let names: Vec<&str> = pod
                .spec
                .containers
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            Err(Status::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                names.join(" ")
            ))
            .into())
        }
    }
}

/// `http://IP:PORT` of the agent on `node`: the InternalIP (else the
/// ExternalIP) and the port the agent reported.
pub fn agent_base(node: &Node) -> ApiResult<String> {
    let status = node.status.as_ref();
    let addrs = status.map(|s| s.addresses.as_slice()).unwrap_or(&[]);
    let ip = ["InternalIP", "ExternalIP"]
        .iter()
        .find_map(|t| addrs.iter().find(|a| a.type_ == *t))
        .map(|a| a.address.clone())
        .ok_or_else(|| {
            let known: Vec<String> = addrs
                .iter()
                .map(|a| format!("{}: {}", a.type_, a.address))
                .collect();
            ApiError::from(Status::service_unavailable(format!(
                "no preferred addresses found for node {}; known addresses: [{}]",
                node.metadata.name,
                known.join(", ")
            )))
        })?;
    let port = status
        .and_then(|s| s.daemon_endpoints.as_ref())
        .and_then(|d| d.pointer("/kubeletEndpoint/Port"))
        .and_then(serde_json::Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or(DEFAULT_AGENT_PORT);
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip
    };
    Ok(format!("http://{host}:{port}"))
}

/// The agent URL for `kind` on container `container` of `ns/pod`.
pub fn agent_url(
    base: &str,
    kind: Kind,
    ns: &str,
    pod: &str,
    container: &str,
    query: &str,
) -> String {
    let route = match kind {
        Kind::Log => "containerLogs",
        Kind::Exec => "exec",
    };
    let enc = |s: &str| -> String { form_urlencoded::byte_serialize(s.as_bytes()).collect() };
    let mut url = format!("{base}/{route}/{}/{}/{}", enc(ns), enc(pod), enc(container));
    if !query.is_empty() {
        url.push('?');
        url.push_str(query);
    }
    url
}

fn http_client() -> ApiResult<&'static reqwest::Client> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .http1_only()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| {
            Status::internal_error(format!("building the HTTP client for agents: {e}")).into()
        })
}

impl Api {
    /// Answers a log or exec request (already authenticated).
    pub async fn proxy(
        &self,
        ns: &str,
        name: &str,
        kind: Kind,
        req: hyper::Request<Incoming>,
    ) -> Resp {
        match self.proxy_inner(ns, name, kind, req).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        }
    }

    async fn proxy_inner(
        &self,
        ns: &str,
        name: &str,
        kind: Kind,
        req: hyper::Request<Incoming>,
    ) -> ApiResult<Resp> {
        let allowed = match kind {
            Kind::Log => req.method() == Method::GET,
            Kind::Exec => req.method() == Method::GET || req.method() == Method::POST,
        };
        if !allowed {
            let verb = req.method().as_str().to_ascii_lowercase();
            return Err(Status::method_not_supported("", "pods", &verb).into());
        }
        let upgrade = upgrade_kind(req.headers());
        if kind == Kind::Exec {
            match upgrade {
                Upgrade::WebSocket => {}
                Upgrade::Spdy => {
                    return Err(Status::bad_request(
                        "exec over SPDY is not supported: use a client that speaks WebSocket (v5.channel.k8s.io or v4.channel.k8s.io), such as kubectl 1.30 or later",
                    )
                    .into())
                }
                _ => {
                    return Err(Status::bad_request(
                        "exec needs a WebSocket upgrade (Upgrade: websocket, Sec-WebSocket-Protocol: v5.channel.k8s.io)",
                    )
                    .into())
                }
            }
        }
        let raw_query = req.uri().query().map(str::to_string);
        let url = self
            .agent_url_for(ns, name, kind, raw_query.as_deref())
            .await?;
        let token = self.agent_token.clone().ok_or_else(|| {
            ApiError::from(Status::service_unavailable(
                "this master has no token for its agents: log and exec are not available",
            ))
        })?;
        match kind {
            Kind::Log => proxy_log(&url, &token).await,
            Kind::Exec => proxy_exec(&url, &token, req).await,
        }
    }

    /// Answers `nodes/{node}/proxy/{sub}` (already authenticated).
    pub async fn proxy_node(
        &self,
        node: &str,
        sub: &str,
        admin: bool,
        req: hyper::Request<Incoming>,
    ) -> Resp {
        match self.proxy_node_inner(node, sub, admin, req).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        }
    }

    async fn proxy_node_inner(
        &self,
        node: &str,
        sub: &str,
        admin: bool,
        req: hyper::Request<Incoming>,
    ) -> ApiResult<Resp> {
        // Agents may not read each other's stats through the master.
        if !admin {
            let why = "only the admin may use the node proxy";
            return Err(Status::forbidden("", "nodes", node, why).into());
        }
        if req.method() != Method::GET {
            let verb = req.method().as_str().to_ascii_lowercase();
            return Err(Status::method_not_supported("", "nodes/proxy", &verb).into());
        }
        if sub != NODE_STATS {
            return Err(Status::failure(
                404,
                corral_api::meta::reasons::NOT_FOUND,
                format!("the node proxy offers only {NODE_STATS}, not {sub:?}"),
            )
            .into());
        }
        let nodes = resource::by_plural("", "nodes")
            .ok_or_else(|| Status::internal_error("no nodes kind"))?;
        let stored = self.get_stored(nodes, "", node).await?;
        let n: Node = serde_json::from_value(stored.value)
            .map_err(|e| Status::internal_error(format!("stored node {node}: {e}")))?;
        let url = format!("{}/{NODE_STATS}", agent_base(&n)?);
        let token = self.agent_token.clone().ok_or_else(|| {
            ApiError::from(Status::service_unavailable(
                "this master has no token for its agents: the node proxy is not available",
            ))
        })?;
        proxy_log(&url, &token).await
    }

    async fn agent_url_for(
        &self,
        ns: &str,
        name: &str,
        kind: Kind,
        query: Option<&str>,
    ) -> ApiResult<String> {
        let pods = resource::by_plural("", "pods")
            .ok_or_else(|| Status::internal_error("no pods kind"))?;
        let nodes = resource::by_plural("", "nodes")
            .ok_or_else(|| Status::internal_error("no nodes kind"))?;
        let stored = self.get_stored(pods, ns, name).await?;
        let pod: Pod = serde_json::from_value(stored.value)
            .map_err(|e| Status::internal_error(format!("stored pod {ns}/{name}: {e}")))?;
        let container = pick_container(&pod, query_value(query, "container").as_deref())?;
        let node_name = pod.spec.node_name.clone();
        if node_name.is_empty() {
            return Err(
                Status::bad_request(format!("pod {name} does not have a host assigned")).into(),
            );
        }
        let stored = self.get_stored(nodes, "", &node_name).await?;
        let node: Node = serde_json::from_value(stored.value)
            .map_err(|e| Status::internal_error(format!("stored node {node_name}: {e}")))?;
        let base = agent_base(&node)?;
        Ok(agent_url(
            &base,
            kind,
            ns,
            name,
            &container,
            &forwarded_query(query),
        ))
    }
}

fn dial_error(url: &str, e: impl std::fmt::Display) -> ApiError {
    Status::internal_error(format!("error dialing backend {url}: {e}")).into()
}

/// A GET to the agent, its body streamed through as it comes (logs, stats).
async fn proxy_log(url: &str, token: &str) -> ApiResult<Resp> {
    let resp = http_client()?
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| dial_error(url, e))?;
    let code = resp.status();
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("text/plain"));
    let (tx, body) = ChannelBody::new(16);
    tokio::spawn(async move {
        let mut resp = resp;
        loop {
            tokio::select! {
                // The client went away: stop reading from the agent.
                _ = tx.closed() => break,
                chunk = resp.chunk() => match chunk {
                    Ok(Some(bytes)) => {
                        if tx.send(bytes).await.is_err() {
                            break;
                        }
                    }
                    Ok(None) | Err(_) => break,
                },
            }
        }
    });
    let mut r = Response::new(http_body_util::BodyExt::boxed(body));
    *r.status_mut() = StatusCode::from_u16(code.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    if let Ok(v) = HeaderValue::from_bytes(content_type.as_bytes()) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    Ok(r)
}

async fn proxy_exec(url: &str, token: &str, mut req: hyper::Request<Incoming>) -> ApiResult<Resp> {
    let mut out = http_client()?
        .get(url)
        .bearer_auth(token)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket");
    for name in WS_REQUEST_HEADERS {
        for v in req.headers().get_all(*name) {
            out = out.header(*name, v.as_bytes());
        }
    }
    let resp = out.send().await.map_err(|e| dial_error(url, e))?;
    if resp.status() != reqwest::StatusCode::SWITCHING_PROTOCOLS {
        // The agent's refusal (a Status) goes to the client as it is.
        let code = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| dial_error(url, e))?;
        let mut r = Response::new(full(body));
        *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return Ok(r);
    }
    let mut reply = Response::new(full(bytes::Bytes::new()));
    *reply.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = reply.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    for name in WS_RESPONSE_HEADERS {
        if let Some(v) = resp.headers().get(*name) {
            if let Ok(v) = HeaderValue::from_bytes(v.as_bytes()) {
                h.insert(HeaderName::from_static(name), v);
            }
        }
    }
    let client_side = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let agent = match resp.upgrade().await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("corral-master: exec proxy: upgrading the agent connection: {e}");
                return;
            }
        };
        let client = match client_side.await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("corral-master: exec proxy: upgrading the client connection: {e}");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut agent = agent;
        let _ = tokio::io::copy_bidirectional(&mut client, &mut agent).await;
    });
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths() {
        assert_eq!(
            match_path("/api/v1/namespaces/default/pods/web/log"),
            Some(("default".into(), "web".into(), Kind::Log))
        );
        assert_eq!(
            match_path("/api/v1/namespaces/a/pods/b/exec"),
            Some(("a".into(), "b".into(), Kind::Exec))
        );
        assert_eq!(match_path("/api/v1/namespaces/a/pods/b/status"), None);
        assert_eq!(match_path("/api/v1/namespaces/a/pods/b"), None);
        assert_eq!(match_path("/apis/apps/v1/namespaces/a/pods/b/log"), None);
    }

    #[test]
    fn node_proxy_paths() {
        assert_eq!(
            match_node_proxy("/api/v1/nodes/n1/proxy/stats/summary"),
            Some(("n1".into(), "stats/summary".into()))
        );
        assert_eq!(
            match_node_proxy("/api/v1/nodes/n1/proxy"),
            Some(("n1".into(), "".into()))
        );
        assert_eq!(match_node_proxy("/api/v1/nodes/n1/proxyx/a"), None);
        assert_eq!(match_node_proxy("/api/v1/nodes/n1/status"), None);
        assert_eq!(match_node_proxy("/api/v1/nodes/n1"), None);
        assert_eq!(match_node_proxy("/api/v1/nodes//proxy/stats/summary"), None);
    }

    #[test]
    fn queries_drop_the_container_and_keep_repeats() {
        let q = forwarded_query(Some(
            "container=c&command=sh&command=-c&command=echo+a%26b&stdin=true",
        ));
        assert_eq!(q, "command=sh&command=-c&command=echo+a%26b&stdin=true");
        assert_eq!(
            query_value(Some("container=x&tty=1"), "container").as_deref(),
            Some("x")
        );
        assert_eq!(forwarded_query(None), "");
    }

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn agent_addresses() {
        let n = node(json!({"metadata": {"name": "n1"}, "status": {
            "addresses": [{"type": "Hostname", "address": "h"}, {"type": "InternalIP", "address": "10.0.0.2"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10555}}}}));
        let base = agent_base(&n).unwrap();
        assert_eq!(base, "http://10.0.0.2:10555");
        assert_eq!(
            agent_url(
                &base,
                Kind::Exec,
                "default",
                "web",
                "c 1",
                "command=ls&stdout=1"
            ),
            "http://10.0.0.2:10555/exec/default/web/c+1?command=ls&stdout=1"
        );
        assert_eq!(
            agent_url(&base, Kind::Log, "default", "web", "c", ""),
            "http://10.0.0.2:10555/containerLogs/default/web/c"
        );
        let v6 = node(json!({"metadata": {"name": "n2"}, "status": {
            "addresses": [{"type": "InternalIP", "address": "fd00::2"}]}}));
        assert_eq!(agent_base(&v6).unwrap(), "http://[fd00::2]:10250");
        let none = node(json!({"metadata": {"name": "n3"}, "status": {
            "addresses": [{"type": "Hostname", "address": "h"}]}}));
        let e = agent_base(&none).unwrap_err();
        assert_eq!(e.0.code, 503);
        assert!(
            e.0.message.contains("known addresses: [Hostname: h]"),
            "{}",
            e.0.message
        );
    }

    #[test]
    fn containers() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {
            "initContainers": [{"name": "init", "image": "i"}],
            "containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "i"}]}}))
        .unwrap();
        assert_eq!(pick_container(&pod, Some("b")).unwrap(), "b");
        assert_eq!(pick_container(&pod, Some("init")).unwrap(), "init");
        let e = pick_container(&pod, None).unwrap_err();
        assert_eq!(
            e.0.message,
            "a container name must be specified for pod p, choose one of: [a b]"
        );
        let e = pick_container(&pod, Some("z")).unwrap_err();
        assert_eq!(e.0.message, "container z is not valid for pod p");
        let mut one = pod.clone();
        one.spec.containers.truncate(1);
        assert_eq!(pick_container(&one, Some("")).unwrap(), "a");
    }

    #[test]
    fn upgrades() {
        let mut h = HeaderMap::new();
        assert_eq!(upgrade_kind(&h), Upgrade::None);
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(upgrade_kind(&h), Upgrade::WebSocket);
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        assert_eq!(upgrade_kind(&h), Upgrade::Spdy);
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        assert_eq!(upgrade_kind(&h), Upgrade::Other);
    }
}
