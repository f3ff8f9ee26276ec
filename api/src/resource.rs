//! The table of kinds: group, version, plural name, scope and short names, so
//! the master's discovery documents, its URL routing and the CLI's `get po`
//! all read one list; and the `Resource` trait every top-level type implements.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::meta::ObjectMeta;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceInfo {
    /// "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The path segment: `pods`, `deployments`.
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// `status`, `scale`, `binding`, `log`, `exec`.
    pub subresources: &'static [&'static str],
    pub verbs: &'static [&'static str],
}

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

const fn info(
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    subresources: &'static [&'static str],
) -> ResourceInfo {
    ResourceInfo {
        group,
        version: "v1",
        kind,
        plural,
        singular,
        namespaced,
        short_names,
        subresources,
        verbs: ALL_VERBS,
    }
}

/// Every kind the API serves.
pub static RESOURCES: &[ResourceInfo] = &[
    info(
        "",
        "Namespace",
        "namespaces",
        "namespace",
        false,
        &["ns"],
        &["status"],
    ),
    info("", "Node", "nodes", "node", false, &["no"], &["status"]),
    info(
        "",
        "Pod",
        "pods",
        "pod",
        true,
        &["po"],
        &["status", "binding", "log", "exec"],
    ),
    info(
        "",
        "Service",
        "services",
        "service",
        true,
        &["svc"],
        &["status"],
    ),
    info(
        "",
        "Endpoints",
        "endpoints",
        "endpoints",
        true,
        &["ep"],
        &[],
    ),
    info(
        "",
        "ConfigMap",
        "configmaps",
        "configmap",
        true,
        &["cm"],
        &[],
    ),
    info("", "Secret", "secrets", "secret", true, &[], &[]),
    info("", "Event", "events", "event", true, &["ev"], &[]),
    ResourceInfo {
        verbs: &["create"],
        ..info("", "Binding", "bindings", "binding", true, &[], &[])
    },
    info(
        "apps",
        "Deployment",
        "deployments",
        "deployment",
        true,
        &["deploy"],
        &["status", "scale"],
    ),
    info(
        "apps",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        true,
        &["rs"],
        &["status", "scale"],
    ),
    info(
        "coordination.k8s.io",
        "Lease",
        "leases",
        "lease",
        true,
        &[],
        &[],
    ),
];

impl ResourceInfo {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The URL of the collection: `/api/v1/namespaces/{ns}/pods`,
    /// `/apis/apps/v1/deployments` (all namespaces when `namespace` is None).
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        let root = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match namespace.filter(|_| self.namespaced) {
            Some(ns) => format!("{root}/namespaces/{ns}/{}", self.plural),
            None => format!("{root}/{}", self.plural),
        }
    }

    pub fn object_path(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}/{name}", self.collection_path(namespace))
    }

    /// Whether `name` (as typed after `corral get`) names this kind: plural,
    /// singular, short name or kind, case-insensitive, optionally `.group`.
    pub fn is_named(&self, name: &str) -> bool {
        let lower = name.to_ascii_lowercase();
        let (base, group) = match lower.split_once('.') {
            Some((b, g)) => (b, Some(g)),
            None => (lower.as_str(), None),
        };
        if group.is_some_and(|g| g != self.group) {
            return false;
        }
        base == self.plural
            || base == self.singular
            || base == self.kind.to_ascii_lowercase()
            || self.short_names.contains(&base)
    }
}

impl fmt::Display for ResourceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            f.write_str(self.plural)
        } else {
            write!(f, "{}.{}", self.plural, self.group)
        }
    }
}

/// The kind a CLI user means by `po`, `pods`, `Pod`, `deploy`, `deployments.apps`.
pub fn lookup(name: &str) -> Option<&'static ResourceInfo> {
    RESOURCES.iter().find(|r| r.is_named(name))
}

/// By `apiVersion` and `kind`, as written in a manifest.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// By group and plural, as in a URL.
pub fn by_plural(group: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.plural == plural)
}

/// A top-level object type with its place in the table.
pub trait Resource:
    Serialize + DeserializeOwned + Clone + Default + fmt::Debug + Send + Sync + 'static
{
    const GROUP: &'static str;
    const VERSION: &'static str;
    const KIND: &'static str;

    fn meta(&self) -> &ObjectMeta;
    fn meta_mut(&mut self) -> &mut ObjectMeta;
    /// The object's `apiVersion` and `kind` fields.
    fn type_meta_mut(&mut self) -> (&mut String, &mut String);

    fn api_version() -> String {
        if Self::GROUP.is_empty() {
            Self::VERSION.to_string()
        } else {
            format!("{}/{}", Self::GROUP, Self::VERSION)
        }
    }

    fn info() -> &'static ResourceInfo {
        RESOURCES
            .iter()
            .find(|r| r.group == Self::GROUP && r.kind == Self::KIND)
            .expect("every Resource type is listed in RESOURCES (checked by a test)")
    }

    /// Fills `apiVersion` and `kind`, which list items may lack.
    fn set_type_meta(&mut self) {
        let (api_version, kind) = self.type_meta_mut();
        *api_version = Self::api_version();
        *kind = Self::KIND.to_string();
    }

    /// An empty object of this kind with its type and name set.
    fn named(namespace: &str, name: &str) -> Self {
        let mut obj = Self::default();
        obj.set_type_meta();
        let meta = obj.meta_mut();
        meta.name = name.to_string();
        meta.namespace = namespace.to_string();
        obj
    }
}

/// Implements [`Resource`] for a struct with `api_version`, `kind` and `metadata` fields.
macro_rules! impl_resource {
    ($t:ty, $group:expr, $kind:expr) => {
        impl $crate::resource::Resource for $t {
            const GROUP: &'static str = $group;
            const VERSION: &'static str = "v1";
            const KIND: &'static str = $kind;

            fn meta(&self) -> &$crate::meta::ObjectMeta {
                &self.metadata
            }

            fn meta_mut(&mut self) -> &mut $crate::meta::ObjectMeta {
                &mut self.metadata
            }

            fn type_meta_mut(&mut self) -> (&mut String, &mut String) {
                (&mut self.api_version, &mut self.kind)
            }
        }
    };
}

pub(crate) use impl_resource;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_by_any_name() {
        for (name, plural) in [
            ("po", "pods"),
            ("pods", "pods"),
            ("Pod", "pods"),
            ("no", "nodes"),
            ("svc", "services"),
            ("deploy", "deployments"),
            ("deployments.apps", "deployments"),
            ("rs", "replicasets"),
            ("cm", "configmaps"),
            ("ns", "namespaces"),
            ("ep", "endpoints"),
            ("ev", "events"),
            ("lease", "leases"),
            ("leases.coordination.k8s.io", "leases"),
        ] {
            assert_eq!(lookup(name).map(|r| r.plural), Some(plural), "{name}");
        }
        assert!(lookup("deployments.core").is_none());
        assert!(lookup("widgets").is_none());
    }

    #[test]
    fn paths_and_versions() {
        let pods = by_kind("v1", "Pod").unwrap();
        assert_eq!(
            pods.collection_path(Some("default")),
            "/api/v1/namespaces/default/pods"
        );
        assert_eq!(
            pods.object_path(Some("default"), "web"),
            "/api/v1/namespaces/default/pods/web"
        );
        assert_eq!(pods.collection_path(None), "/api/v1/pods");
        let deploy = by_kind("apps/v1", "Deployment").unwrap();
        assert_eq!(deploy.api_version(), "apps/v1");
        assert_eq!(
            deploy.collection_path(Some("x")),
            "/apis/apps/v1/namespaces/x/deployments"
        );
        assert_eq!(deploy.to_string(), "deployments.apps");
        let nodes = by_plural("", "nodes").unwrap();
        assert_eq!(nodes.object_path(Some("ignored"), "n1"), "/api/v1/nodes/n1");
        assert!(by_kind("apps/v1", "Pod").is_none());
        assert!(by_kind("v2", "Pod").is_none());
    }

    #[test]
    fn names_are_unique() {
        for (i, a) in RESOURCES.iter().enumerate() {
            for b in &RESOURCES[i + 1..] {
                assert!(!(a.group == b.group && a.plural == b.plural), "{a}");
                for s in a.short_names {
                    assert!(!b.short_names.contains(s), "{s}");
                }
            }
        }
    }
}
