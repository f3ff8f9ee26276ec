use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use corral_api::{List, Resource, Status};
use reqwest::{Method, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::Error;
use crate::kubeconfig::Kubeconfig;
use crate::params::{DeleteParams, ListParams, Patch};
use crate::watch::WatchStream;

/// A single request may take this long; watches are bounded by the server.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The API server, its CA and a bearer token. Cheap to clone: clones share
/// one connection pool.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    server: String,
    token: String,
}

impl Client {
    /// `server` like `https://10.0.0.1:6443`; `ca_pem` is the only CA trusted
    /// (None: the system's roots).
    pub fn new(server: &str, token: &str, ca_pem: Option<&[u8]>) -> Result<Client, Error> {
        let mut b = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .tcp_keepalive(Duration::from_secs(30))
            // A watch stays open for minutes; a dead peer must not hang it.
            .http2_keep_alive_interval(Duration::from_secs(30));
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Error::Config(format!("the CA certificate is not PEM: {e}")))?;
            if certs.is_empty() {
                return Err(Error::Config(
                    "the CA file holds no PEM certificate".to_string(),
                ));
            }
            for cert in certs {
                b = b.add_root_certificate(cert);
            }
            b = b.tls_built_in_root_certs(false);
        }
        let http = b
            .build()
            .map_err(|e| Error::Config(format!("building the HTTPS client: {e}")))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                server: server.trim_end_matches('/').to_string(),
                token: token.to_string(),
            }),
        })
    }

    /// The server, CA and token of the kubeconfig's current context.
    pub fn from_kubeconfig(path: &Path) -> Result<Client, Error> {
        let target = Kubeconfig::load(path)?.resolve(None)?;
        let token = target.token.ok_or_else(|| {
            Error::Config(format!(
                "kubeconfig {}: user {:?} has no token",
                path.display(),
                target.user
            ))
        })?;
        Client::new(&target.server, &token, target.ca_pem.as_deref())
    }

    pub fn server(&self) -> &str {
        &self.inner.server
    }

    pub async fn get<T: Resource>(&self, ns: &str, name: &str) -> Result<T, Error> {
        let path = path::<T>(ns, Some(name), None);
        self.send_json(Method::GET, &path, &[], None).await
    }

    /// Like [`Client::get`], with a 404 as None.
    pub async fn get_opt<T: Resource>(&self, ns: &str, name: &str) -> Result<Option<T>, Error> {
        match self.get(ns, name).await {
            Ok(o) => Ok(Some(o)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every object of the kind in `ns` ("" = all namespaces). Items get
    /// their apiVersion and kind filled in.
    pub async fn list<T: Resource>(&self, ns: &str, p: &ListParams) -> Result<List<T>, Error> {
        let path = path::<T>(ns, None, None);
        let mut list: List<T> = self.send_json(Method::GET, &path, &p.query(), None).await?;
        list.fill_item_types();
        Ok(list)
    }

    /// Creates `obj` in its metadata.namespace.
    pub async fn create<T: Resource>(&self, obj: &T) -> Result<T, Error> {
        let path = path::<T>(&obj.meta().namespace, None, None);
        self.send_json(Method::POST, &path, &[], Some(body(obj)?))
            .await
    }

    /// Replaces `obj`; a stale metadata.resourceVersion gets a conflict.
    pub async fn update<T: Resource>(&self, obj: &T) -> Result<T, Error> {
        let m = obj.meta();
        let path = path::<T>(&m.namespace, Some(&m.name), None);
        self.send_json(Method::PUT, &path, &[], Some(body(obj)?))
            .await
    }

    /// Replaces the status of `obj` (its spec is ignored by the server).
    pub async fn update_status<T: Resource>(&self, obj: &T) -> Result<T, Error> {
        let m = obj.meta();
        let path = path::<T>(&m.namespace, Some(&m.name), Some("status"));
        self.send_json(Method::PUT, &path, &[], Some(body(obj)?))
            .await
    }

    pub async fn patch<T: Resource>(
        &self,
        ns: &str,
        name: &str,
        patch: &Patch,
    ) -> Result<T, Error> {
        self.send_patch(path::<T>(ns, Some(name), None), patch)
            .await
    }

    pub async fn patch_status<T: Resource>(
        &self,
        ns: &str,
        name: &str,
        patch: &Patch,
    ) -> Result<T, Error> {
        self.send_patch(path::<T>(ns, Some(name), Some("status")), patch)
            .await
    }

    pub async fn delete<T: Resource>(
        &self,
        ns: &str,
        name: &str,
        p: &DeleteParams,
    ) -> Result<(), Error> {
        let path = path::<T>(ns, Some(name), None);
        let what = format!("DELETE {path}");
        let r = self.request(Method::DELETE, &path).json(&p.body());
        self.send(r.timeout(REQUEST_TIMEOUT), &what).await?;
        Ok(())
    }

    /// Binds a pod to a node (POST .../pods/{pod}/binding), as a scheduler does.
    pub async fn bind(&self, ns: &str, pod: &str, node: &str) -> Result<(), Error> {
        let path = path::<corral_api::core::Pod>(ns, Some(pod), Some("binding"));
        let binding = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": pod, "namespace": ns},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        });
        let what = format!("POST {path}");
        let r = self.request(Method::POST, &path).json(&binding);
        self.send(r.timeout(REQUEST_TIMEOUT), &what).await?;
        Ok(())
    }

    /// The changes after `resource_version` (a list's resourceVersion), with
    /// the server's bookmarks. The stream ends when the server closes it
    /// (its timeout) or on an error; a 410 means: list again.
    pub async fn watch<T: Resource>(
        &self,
        ns: &str,
        p: &ListParams,
        resource_version: &str,
    ) -> Result<WatchStream<T>, Error> {
        let path = path::<T>(ns, None, None);
        let mut q = p.query();
        q.push(("watch", "1".into()));
        q.push(("allowWatchBookmarks", "true".into()));
        q.push(("resourceVersion", resource_version.to_string()));
        let what = format!("watching {path}");
        let resp = self
            .send(self.request(Method::GET, &path).query(&q), &what)
            .await?;
        Ok(WatchStream::new(resp, what))
    }

    /// GET of any path as text (pod logs and the like).
    pub async fn get_text(&self, path: &str, query: &[(&str, String)]) -> Result<String, Error> {
        let what = format!("GET {path}");
        let r = self.request(Method::GET, path).query(query);
        let resp = self.send(r.timeout(REQUEST_TIMEOUT), &what).await?;
        resp.text().await.map_err(|e| Error::http(&what, &e))
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.inner
            .http
            .request(method, format!("{}{path}", self.inner.server))
            .bearer_auth(&self.inner.token)
    }

    async fn send_patch<T: DeserializeOwned>(
        &self,
        path: String,
        patch: &Patch,
    ) -> Result<T, Error> {
        let r = self
            .request(Method::PATCH, &path)
            .header("Content-Type", patch.content_type())
            .body(patch.body().to_string());
        let what = format!("PATCH {path}");
        decode(self.send(r.timeout(REQUEST_TIMEOUT), &what).await?, &what).await
    }

    async fn send_json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<T, Error> {
        let what = format!("{method} {path}");
        let mut r = self.request(method, path).query(query);
        if let Some(b) = body {
            r = r.header("Content-Type", "application/json").body(b);
        }
        decode(self.send(r.timeout(REQUEST_TIMEOUT), &what).await?, &what).await
    }

    /// Sends; a failure reply becomes `Error::Api` with the server's Status.
    async fn send(&self, r: RequestBuilder, what: &str) -> Result<Response, Error> {
        let resp = r.send().await.map_err(|e| Error::http(what, &e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let code = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let status = serde_json::from_str::<Status>(&text)
            .ok()
            .filter(|s| s.code != 0)
            .unwrap_or_else(|| {
                Status::failure(
                    code.into(),
                    "",
                    text.trim().chars().take(200).collect::<String>(),
                )
            });
        Err(Error::Api(Box::new(status)))
    }
}

fn body<T: Serialize>(obj: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(obj).map_err(|e| Error::Decode {
        what: "encoding the request body".into(),
        message: e.to_string(),
    })
}

async fn decode<T: DeserializeOwned>(resp: Response, what: &str) -> Result<T, Error> {
    let bytes = resp.bytes().await.map_err(|e| Error::http(what, &e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Decode {
        what: format!("{what}: the reply"),
        message: e.to_string(),
    })
}

/// `/api/v1/namespaces/{ns}/pods/{name}/{sub}` and the like; `ns` is
/// ignored for cluster-scoped kinds and "" lists across namespaces.
pub(crate) fn path<T: Resource>(ns: &str, name: Option<&str>, sub: Option<&str>) -> String {
    let info = T::info();
    let mut p = if info.group.is_empty() {
        format!("/api/{}", info.version)
    } else {
        format!("/apis/{}/{}", info.group, info.version)
    };
    if info.namespaced && !ns.is_empty() {
        p.push_str("/namespaces/");
        p.push_str(ns);
    }
    p.push('/');
    p.push_str(info.plural);
    for seg in [name, sub].into_iter().flatten() {
        p.push('/');
        p.push_str(seg);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_api::apps::Deployment;
    use corral_api::core::{Node, Pod};

    #[test]
    fn paths_follow_kubernetes_layout() {
        assert_eq!(
            path::<Pod>("default", None, None),
            "/api/v1/namespaces/default/pods"
        );
        assert_eq!(path::<Pod>("", None, None), "/api/v1/pods");
        assert_eq!(
            path::<Pod>("a", Some("p"), Some("status")),
            "/api/v1/namespaces/a/pods/p/status"
        );
        assert_eq!(
            path::<Node>("ignored", Some("n1"), None),
            "/api/v1/nodes/n1"
        );
        assert_eq!(
            path::<Deployment>("default", Some("web"), Some("scale")),
            "/apis/apps/v1/namespaces/default/deployments/web/scale"
        );
    }

    #[test]
    fn bad_ca_is_a_config_error() {
        let e = Client::new("https://127.0.0.1:1", "t", Some(b"not pem")).err();
        assert!(matches!(e, Some(Error::Config(_))), "{e:?}");
    }
}
