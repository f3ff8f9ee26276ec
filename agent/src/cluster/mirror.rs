//! Mirror pods: each static pod of the node gets a copy in the API (as
//! kubelet does), annotated `kubernetes.io/config.mirror: <static uid>`,
//! so `get pods` shows it and its status; the agent keeps running the
//! static pod whatever happens to the copy. A copy of a changed static pod
//! is replaced, the copy of a removed one deleted.

use std::sync::Arc;

use corral_api::core::Pod;
use corral_api::{ObjectMeta, OwnerReference};
use corral_client::{Client, DeleteParams};

pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// The static pod uid a mirror pod stands for (None: not a mirror pod).
pub fn mirror_of(p: &Pod) -> Option<&str> {
    p.metadata
        .annotations
        .get(MIRROR_ANNOTATION)
        .map(String::as_str)
}

/// The API copy of a static pod.
pub fn mirror(static_pod: &Pod, node_uid: Option<&str>) -> Pod {
    let m = &static_pod.metadata;
    let mut meta = ObjectMeta::namespaced(&m.namespace, &m.name);
    meta.labels = m.labels.clone();
    meta.annotations = m.annotations.clone();
    meta.annotations
        .insert(MIRROR_ANNOTATION.into(), m.uid.clone());
    if let Some(uid) = node_uid {
        meta.owner_references = vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: static_pod.spec.node_name.clone(),
            uid: uid.to_string(),
            controller: Some(true),
            block_owner_deletion: None,
        }];
    }
    Pod {
        api_version: "v1".into(),
        kind: "Pod".into(),
        metadata: meta,
        spec: static_pod.spec.clone(),
        status: None,
    }
}

/// What to create and delete so the API holds one current mirror per
/// static pod and no other mirror pod of this node. An API pod that is not
/// a mirror but has a static pod's name is left alone.
pub fn plan<'a>(statics: &'a [Pod], api: &[Arc<Pod>]) -> (Vec<&'a Pod>, Vec<Arc<Pod>>) {
    let find = |ns: &str, name: &str| {
        api.iter()
            .find(|a| a.metadata.namespace == ns && a.metadata.name == name)
    };
    let mut create = Vec::new();
    let mut delete = Vec::new();
    for s in statics {
        match find(&s.metadata.namespace, &s.metadata.name) {
            None => create.push(s),
            Some(a) => match mirror_of(a) {
                Some(uid) if uid == s.metadata.uid => {}
                // A mirror of an older version: replaced (created again once gone).
                Some(_) => delete.push(a.clone()),
                None => {}
            },
        }
    }
    for a in api.iter().filter(|a| mirror_of(a).is_some()) {
        let has_static = statics.iter().any(|s| {
            s.metadata.namespace == a.metadata.namespace && s.metadata.name == a.metadata.name
        });
        if !has_static {
            delete.push(a.clone());
        }
    }
    (create, delete)
}

/// One pass of the plan against the API; errors as one line each.
pub async fn sync(
    client: &Client,
    statics: &[Pod],
    api: &[Arc<Pod>],
    node_uid: Option<&str>,
) -> Vec<String> {
    let (create, delete) = plan(statics, api);
    let mut errors = Vec::new();
    for s in create {
        let m = &s.metadata;
        match client.create(&mirror(s, node_uid)).await {
            Ok(_) => {}
            Err(e) if e.is_already_exists() => {}
            Err(e) => errors.push(format!("create mirror pod {}/{}: {e}", m.namespace, m.name)),
        }
    }
    for a in delete {
        let m = &a.metadata;
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions_uid: Some(m.uid.clone()),
            ..DeleteParams::default()
        };
        match client.delete::<Pod>(&m.namespace, &m.name, &params).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() || e.is_conflict() => {}
            Err(e) => errors.push(format!("delete mirror pod {}/{}: {e}", m.namespace, m.name)),
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn static_pod(name: &str, uid: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.namespace = "default".into();
        p.metadata.name = name.into();
        p.metadata.uid = uid.into();
        p.metadata.labels.insert("app".into(), name.into());
        p.spec.node_name = "n1".into();
        p
    }

    fn api(name: &str, uid: &str, mirror_uid: Option<&str>) -> Arc<Pod> {
        let mut p = static_pod(name, uid);
        if let Some(m) = mirror_uid {
            p.metadata
                .annotations
                .insert(MIRROR_ANNOTATION.into(), m.into());
        }
        Arc::new(p)
    }

    #[test]
    fn mirror_copies_the_static_pod() {
        let m = mirror(&static_pod("web", "s1"), Some("node-uid"));
        assert_eq!(mirror_of(&m), Some("s1"));
        assert!(
            m.metadata.uid.is_empty(),
            "the API gives the copy its own uid"
        );
        assert_eq!(m.metadata.labels["app"], "web");
        assert_eq!(m.spec.node_name, "n1");
        assert_eq!(m.metadata.owner_references[0].kind, "Node");
        assert_eq!(m.metadata.owner_references[0].uid, "node-uid");
    }

    #[test]
    fn plan_creates_replaces_and_removes() {
        let statics = vec![
            static_pod("new", "s1"),
            static_pod("same", "s2"),
            static_pod("changed", "s3"),
            static_pod("taken", "s4"),
        ];
        let api_pods = vec![
            api("same", "a2", Some("s2")),
            api("changed", "a3", Some("old")),
            api("taken", "a4", None),
            api("gone", "a5", Some("s9")),
            api("other", "a6", None),
        ];
        let (create, delete) = plan(&statics, &api_pods);
        let created: Vec<_> = create.iter().map(|p| p.metadata.name.as_str()).collect();
        assert_eq!(created, ["new"]);
        let deleted: Vec<_> = delete.iter().map(|p| p.metadata.uid.as_str()).collect();
        assert_eq!(deleted, ["a3", "a5"]);
    }
}
