//! The cluster verbs of `corral`, talking to corral-master (or any
//! Kubernetes-shaped API server) with a kubeconfig: apply, get, describe,
//! delete, scale, rollout, cordon/uncordon/drain, config, top, and the
//! cluster side of `logs` and `exec` (see [`pod_ref`]). Failures are
//! printed as one `error: ...` line (the server's Status message, which
//! names the field) and end with exit status 1, like kubectl.

pub mod apply;
pub mod args;
pub mod client;
pub mod config;
pub mod delete;
pub mod describe;
pub mod exec;
pub mod get;
pub mod logs;
pub mod node;
pub mod output;
pub mod rollout;
pub mod scale;
pub mod top;

use std::fmt;

use corral_api::resource::{self, ResourceInfo};
use corral_api::Status;

use args::{ClusterGlobal, ClusterVerb};
use client::Client;

#[derive(Debug)]
pub enum Error {
    /// The server answered with a failure Status.
    Api {
        code: u16,
        status: Box<Status>,
        user: String,
    },
    Msg(String),
}

impl From<corral_client::kubeconfig::Error> for Error {
    fn from(e: corral_client::kubeconfig::Error) -> Error {
        Error::Msg(e.0)
    }
}

impl Error {
    pub fn msg(m: impl Into<String>) -> Error {
        Error::Msg(m.into())
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Api { code: 404, .. })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Msg(m) => f.write_str(m),
            Error::Api {
                code: 401,
                status,
                user,
            } => {
                write!(
                    f,
                    "the server rejected the credentials of user {user:?} (401 Unauthorized)"
                )?;
                if !status.message.is_empty() && status.message != "Unauthorized" {
                    write!(f, ": {}", status.message)?;
                }
                Ok(())
            }
            Error::Api { code, status, .. } if status.message.is_empty() => {
                write!(f, "the server returned HTTP {code} ({})", status.reason)
            }
            Error::Api { status, .. } => f.write_str(one_line(&status.message)),
        }
    }
}

impl std::error::Error for Error {}

/// Kubernetes messages are one line already; a proxy's HTML page is not.
fn one_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// Runs a cluster verb; returns the exit status after printing any error.
pub fn dispatch(g: &ClusterGlobal, verb: &ClusterVerb) -> i32 {
    report(run(g, verb))
}

/// The exit status of a cluster verb, its error printed as one line.
pub fn report(r: Result<i32, Error>) -> i32 {
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// For `logs` and `exec`, which serve local containers and cluster pods:
/// `pod/NAME` or `po/NAME` gives Some(NAME), a bare name None (the caller
/// decides), any other kind an error.
pub fn pod_ref(arg: &str) -> Result<Option<&str>, Error> {
    let Some((k, name)) = arg.split_once('/') else {
        return Ok(None);
    };
    let info = kind(k)?;
    if info.kind != "Pod" {
        return Err(Error::msg(format!(
            "{arg:?}: only pods are supported here (pod/NAME), not {}",
            info.plural
        )));
    }
    if name.is_empty() || name.contains('/') {
        return Err(Error::msg(format!("{arg:?}: expected pod/NAME")));
    }
    Ok(Some(name))
}

fn run(g: &ClusterGlobal, verb: &ClusterVerb) -> Result<i32, Error> {
    if let ClusterVerb::Config(v) = verb {
        return config::run(g, v).map(|_| 0);
    }
    let c = Client::from_flags(g)?;
    match verb {
        ClusterVerb::Apply(a) => apply::run(&c, a),
        ClusterVerb::Get(a) => get::run(&c, a).map(|_| 0),
        ClusterVerb::Describe(a) => describe::run(&c, a).map(|_| 0),
        ClusterVerb::Delete(a) => delete::run(&c, a),
        ClusterVerb::Scale(a) => scale::run(&c, a).map(|_| 0),
        ClusterVerb::Rollout(v) => rollout::run(&c, v).map(|_| 0),
        ClusterVerb::Cordon { node } => node::set_unschedulable(&c, node, true).map(|_| 0),
        ClusterVerb::Uncordon { node } => node::set_unschedulable(&c, node, false).map(|_| 0),
        ClusterVerb::Drain(a) => node::drain(&c, a).map(|_| 0),
        ClusterVerb::Top(v) => top::run(&c, v).map(|_| 0),
        ClusterVerb::Config(_) => Ok(0),
    }
}

/// The kind a user typed (`po`, `deploy`, `deployments.apps`).
pub fn kind(name: &str) -> Result<&'static ResourceInfo, Error> {
    resource::lookup(name)
        .ok_or_else(|| Error::msg(format!("the server doesn't have a resource type {name:?}")))
}

/// `KIND NAME...` or `KIND/NAME ...` into a kind and names.
pub fn kind_and_names(
    first: &str,
    rest: &[String],
) -> Result<Vec<(&'static ResourceInfo, String)>, Error> {
    if first.contains('/') {
        std::iter::once(first)
            .chain(rest.iter().map(String::as_str))
            .map(|s| match s.split_once('/') {
                Some((k, n)) if !n.is_empty() => Ok((kind(k)?, n.to_string())),
                _ => Err(Error::msg(format!(
                    "{s:?}: mixing KIND/NAME with plain names is not allowed"
                ))),
            })
            .collect()
    } else {
        let info = kind(first)?;
        Ok(rest.iter().map(|n| (info, n.clone())).collect())
    }
}

/// `deployment.apps/web`: how kubectl names an object in its messages.
pub fn display_name(info: &ResourceInfo, name: &str) -> String {
    if info.group.is_empty() {
        format!("{}/{name}", info.singular)
    } else {
        format!("{}.{}/{name}", info.singular, info.group)
    }
}

/// The namespace to put in a path: None for cluster-scoped kinds.
pub fn ns_for<'a>(info: &ResourceInfo, ns: &'a str) -> Option<&'a str> {
    info.namespaced.then_some(ns)
}

/// Adds URL query parameters (already-safe selector text is escaped).
pub fn with_query(path: &str, params: &[(&str, &str)]) -> String {
    let mut out = path.to_string();
    for (k, v) in params.iter().filter(|(_, v)| !v.is_empty()) {
        out.push(if out.contains('?') { '&' } else { '?' });
        out.push_str(k);
        out.push('=');
        out.push_str(&escape(v));
    }
    out
}

fn escape(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_names() {
        let v = kind_and_names("deploy/web", &["po/x".into()]).unwrap();
        assert_eq!(v[0].0.kind, "Deployment");
        assert_eq!(v[1], (kind("pod").unwrap(), "x".to_string()));
        assert!(kind_and_names("deploy/web", &["x".into()]).is_err());
        assert!(kind("nosuch").is_err());
    }

    #[test]
    fn pod_refs() {
        assert_eq!(pod_ref("web").unwrap(), None);
        assert_eq!(pod_ref("pod/web").unwrap(), Some("web"));
        assert_eq!(pod_ref("po/web").unwrap(), Some("web"));
        assert_eq!(pod_ref("pods/web").unwrap(), Some("web"));
        assert!(pod_ref("deploy/web")
            .unwrap_err()
            .to_string()
            .contains("only pods"));
        assert!(pod_ref("pod/").is_err());
        assert!(pod_ref("pod/a/b").is_err());
        assert!(pod_ref("nosuch/web").is_err());
    }

    #[test]
    fn query_is_escaped() {
        assert_eq!(
            with_query(
                "/api/v1/pods",
                &[("labelSelector", "app=web,x!=y"), ("limit", "")]
            ),
            "/api/v1/pods?labelSelector=app%3Dweb%2Cx%21%3Dy"
        );
        assert_eq!(
            display_name(kind("deploy").unwrap(), "web"),
            "deployment.apps/web"
        );
    }
}
