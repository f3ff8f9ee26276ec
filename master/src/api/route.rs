//! URL paths of the resource API, Kubernetes' layout:
//! `/api/v1/namespaces/{ns}/{plural}[/{name}[/{sub}]]`, cluster-scoped
//! `/api/v1/{plural}[/{name}[/{sub}]]`, `/apis/{group}/{version}/...`, and
//! the legacy `/watch/` prefix after the version.

use corral_api::resource::{self, ResourceInfo};

/// What a resource path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub info: &'static ResourceInfo,
    /// The namespace from the URL (None for cluster-scoped kinds and for
    /// lists across all namespaces).
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// The path had `/watch/` after the version.
    pub watch_path: bool,
}

/// Why a path names no resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// Not a resource path at all (discovery and others are tried first).
    NotResourcePath,
    /// A resource path whose group, version, kind or subresource is unknown.
    NotFound,
}

/// `(group, version, rest)` of `/api/v1/rest` or `/apis/g/v/rest`.
fn split_root(path: &str) -> Option<(&str, &str, Vec<&str>)> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["api", version, rest @ ..] if !rest.is_empty() => Some(("", version, rest.to_vec())),
        ["apis", group, version, rest @ ..] if !rest.is_empty() => {
            Some((group, version, rest.to_vec()))
        }
        _ => None,
    }
}

pub fn parse(path: &str) -> Result<Target, RouteError> {
    let (group, version, mut rest) = split_root(path).ok_or(RouteError::NotResourcePath)?;
    let watch_path = rest.first() == Some(&"watch");
    if watch_path {
        rest.remove(0);
    }
    if rest.iter().any(|s| s.is_empty()) {
        return Err(RouteError::NotFound);
    }
    let find = |plural: &str| {
        resource::by_plural(group, plural)
            .filter(|r| r.version == version)
            .ok_or(RouteError::NotFound)
    };
    let target = |info, ns: Option<&str>, name: Option<&str>, sub: Option<&str>| Target {
        info,
        namespace: ns.map(str::to_string),
        name: name.map(str::to_string),
        subresource: sub.map(str::to_string),
        watch_path,
    };
    let namespaced = |plural: &str| find(plural).map(|i| i.namespaced).unwrap_or(false);
    let t = match rest.as_slice() {
        // `namespaces/{ns}/{plural}...` when the third segment is a namespaced
        // kind; otherwise a namespace's own subresource (`namespaces/x/status`).
        ["namespaces", ns, plural, tail @ ..] if namespaced(plural) => {
            let info = find(plural)?;
            match tail {
                [] => target(info, Some(ns), None, None),
                [name] => target(info, Some(ns), Some(name), None),
                [name, sub] => target(info, Some(ns), Some(name), Some(sub)),
                _ => return Err(RouteError::NotFound),
            }
        }
        [plural, tail @ ..] => {
            let info = find(plural)?;
            match tail {
                [] => target(info, None, None, None),
                // A namespaced kind's object paths need the namespace.
                _ if info.namespaced => return Err(RouteError::NotFound),
                [name] => target(info, None, Some(name), None),
                [name, sub] => target(info, None, Some(name), Some(sub)),
                _ => return Err(RouteError::NotFound),
            }
        }
        [] => return Err(RouteError::NotFound),
    };
    if let Some(sub) = &t.subresource {
        if !t.info.subresources.contains(&sub.as_str()) {
            return Err(RouteError::NotFound);
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(path: &str) -> (String, Option<String>, Option<String>, Option<String>, bool) {
        let t = parse(path).unwrap();
        (
            t.info.plural.to_string(),
            t.namespace,
            t.name,
            t.subresource,
            t.watch_path,
        )
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn paths() {
        assert_eq!(
            p("/api/v1/namespaces/default/pods"),
            ("pods".into(), s("default"), None, None, false)
        );
        assert_eq!(
            p("/api/v1/namespaces/default/pods/web/status"),
            ("pods".into(), s("default"), s("web"), s("status"), false)
        );
        assert_eq!(p("/api/v1/pods"), ("pods".into(), None, None, None, false));
        assert_eq!(
            p("/api/v1/namespaces"),
            ("namespaces".into(), None, None, None, false)
        );
        assert_eq!(
            p("/api/v1/namespaces/kube-system"),
            ("namespaces".into(), None, s("kube-system"), None, false)
        );
        assert_eq!(
            p("/api/v1/namespaces/x/status"),
            ("namespaces".into(), None, s("x"), s("status"), false)
        );
        assert_eq!(
            p("/apis/apps/v1/watch/namespaces/a/deployments"),
            ("deployments".into(), s("a"), None, None, true)
        );
        assert_eq!(
            p("/apis/apps/v1/namespaces/a/deployments/web/scale"),
            ("deployments".into(), s("a"), s("web"), s("scale"), false)
        );
        assert_eq!(
            p("/api/v1/nodes/n1/status"),
            ("nodes".into(), None, s("n1"), s("status"), false)
        );
        assert_eq!(
            p("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1"),
            ("leases".into(), s("kube-node-lease"), s("n1"), None, false)
        );
    }

    #[test]
    fn unknown() {
        assert_eq!(parse("/version"), Err(RouteError::NotResourcePath));
        assert_eq!(parse("/api/v1"), Err(RouteError::NotResourcePath));
        for bad in [
            "/api/v1/widgets",
            "/api/v2/pods",
            "/apis/apps/v1/pods",
            "/api/v1/deployments",
            "/api/v1/pods/web",
            "/api/v1/namespaces/a/pods/web/scale",
            "/api/v1/namespaces/a/pods/web/status/x",
            "/api/v1/nodes/n1/binding",
            "/api/v1/namespaces/a/widgets/x",
        ] {
            assert_eq!(parse(bad), Err(RouteError::NotFound), "{bad}");
        }
    }
}
