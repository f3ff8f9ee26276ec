//! Deployment helpers: the pod-template hash, revisions, template equality
//! and the maxSurge/maxUnavailable arithmetic, as Kubernetes defines them.

use corral_api::apps::{Deployment, DeploymentStrategyType, ReplicaSet};
use corral_api::core::PodTemplateSpec;
use corral_api::IntOrString;
use sha2::{Digest, Sha256};

pub const HASH_LABEL: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";

/// Annotations that belong to the Deployment alone and are not copied to
/// its ReplicaSets.
pub fn skip_copy(key: &str) -> bool {
    matches!(
        key,
        LAST_APPLIED | REVISION | REVISION_HISTORY | DESIRED_REPLICAS | MAX_REPLICAS
    )
}

/// Kubernetes' "safe" alphabet (no vowels, no easily confused characters).
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Ten characters from a SHA-256 of the template (in its [`canonical`]
/// form, the hash label removed) and the collision count.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    // serde_json maps are sorted, so equal templates give equal bytes.
    let bytes = serde_json::to_vec(&canonical(template)).unwrap_or_default();
    let mut h = Sha256::new();
    h.update(&bytes);
    if let Some(c) = collision_count {
        h.update(c.to_le_bytes());
    }
    h.finalize()
        .iter()
        .take(10)
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// The template as JSON without the hash label and without empty values
/// (null, "", {} and []): a client that sends `resources: {}` or
/// `creationTimestamp: null` (kubectl does, on `rollout undo`) means the
/// same template as one that leaves them out, as Go's DeepEqual on
/// Kubernetes' structs sees it.
pub fn canonical(template: &PodTemplateSpec) -> serde_json::Value {
    let mut t = template.clone();
    t.metadata.labels.remove(HASH_LABEL);
    let mut v = serde_json::to_value(&t).unwrap_or_default();
    prune(&mut v);
    v
}

/// Removes empty values; true when `v` itself is empty.
fn prune(v: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => {
            for x in a.iter_mut() {
                prune(x);
            }
            a.is_empty()
        }
        Value::Object(o) => {
            o.retain(|_, x| !prune(x));
            o.is_empty()
        }
        Value::Bool(_) | Value::Number(_) => false,
    }
}

/// `EqualIgnoreHash`: the same template apart from the hash label.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    a == b || canonical(a) == canonical(b)
}

/// The revision annotation of an object (0 when absent or malformed).
pub fn revision(annotations: &std::collections::BTreeMap<String, String>) -> i64 {
    annotations
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

pub fn rs_revision(rs: &ReplicaSet) -> i64 {
    revision(&rs.metadata.annotations)
}

pub fn is_rolling(d: &Deployment) -> bool {
    d.spec
        .strategy
        .as_ref()
        .and_then(|s| s.type_)
        .unwrap_or(DeploymentStrategyType::RollingUpdate)
        == DeploymentStrategyType::RollingUpdate
}

fn scaled(v: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    let default = IntOrString::String("25%".into());
    v.unwrap_or(&default)
        .scaled_value(total, round_up)
        .unwrap_or(0)
        .max(0)
}

/// (maxSurge, maxUnavailable) for `d`'s replicas: surge rounded up,
/// unavailable down, and unavailable 1 when both come out 0 so a rollout
/// can always move (`ResolveFenceposts`).
pub fn fenceposts(d: &Deployment) -> (i32, i32) {
    let ru = d
        .spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref());
    let replicas = d.replicas();
    let surge = scaled(ru.and_then(|r| r.max_surge.as_ref()), replicas, true);
    let unavailable = scaled(ru.and_then(|r| r.max_unavailable.as_ref()), replicas, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

pub fn max_surge(d: &Deployment) -> i32 {
    if is_rolling(d) {
        fenceposts(d).0
    } else {
        0
    }
}

pub fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling(d) || d.replicas() == 0 {
        return 0;
    }
    fenceposts(d).1.min(d.replicas())
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_api::apps::{DeploymentStrategy, RollingUpdateDeployment};

    fn deploy(replicas: i32, surge: IntOrString, unavailable: IntOrString) -> Deployment {
        let mut d = Deployment::default();
        d.spec.replicas = Some(replicas);
        d.spec.strategy = Some(DeploymentStrategy {
            type_: Some(DeploymentStrategyType::RollingUpdate),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(surge),
                max_unavailable: Some(unavailable),
            }),
        });
        d
    }

    #[test]
    fn fenceposts_round_like_kubernetes() {
        let pct = |s: &str| IntOrString::String(s.into());
        assert_eq!(fenceposts(&deploy(3, pct("25%"), pct("25%"))), (1, 0));
        assert_eq!(fenceposts(&deploy(10, pct("25%"), pct("25%"))), (3, 2));
        assert_eq!(
            fenceposts(&deploy(4, IntOrString::Int(0), pct("10%"))),
            (0, 1)
        );
        assert_eq!(
            fenceposts(&deploy(5, IntOrString::Int(2), IntOrString::Int(1))),
            (2, 1)
        );
        assert_eq!(
            max_unavailable(&deploy(2, IntOrString::Int(0), IntOrString::Int(5))),
            2
        );
        let mut recreate = deploy(3, pct("25%"), pct("25%"));
        recreate.spec.strategy = Some(DeploymentStrategy {
            type_: Some(DeploymentStrategyType::Recreate),
            rolling_update: None,
        });
        assert_eq!((max_surge(&recreate), max_unavailable(&recreate)), (0, 0));
    }

    #[test]
    fn hash_is_stable_and_ignores_its_own_label() {
        let mut t = PodTemplateSpec::default();
        t.metadata.labels.insert("app".into(), "web".into());
        let h = template_hash(&t, None);
        assert_eq!(h.len(), 10);
        assert!(h.bytes().all(|b| ALPHABET.contains(&b)));
        assert_eq!(h, template_hash(&t, None));
        let mut labelled = t.clone();
        labelled
            .metadata
            .labels
            .insert(HASH_LABEL.into(), h.clone());
        assert_eq!(template_hash(&labelled, None), h);
        assert!(equal_ignore_hash(&t, &labelled));
        assert_ne!(template_hash(&t, Some(1)), h);
        t.metadata.labels.insert("tier".into(), "x".into());
        assert_ne!(template_hash(&t, None), h);
        assert!(!equal_ignore_hash(&t, &labelled));
    }

    #[test]
    fn empty_values_do_not_make_templates_differ() {
        let a: PodTemplateSpec = serde_json::from_value(serde_json::json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "v1"}]}
        }))
        .unwrap();
        let b: PodTemplateSpec = serde_json::from_value(serde_json::json!({
            "metadata": {"labels": {"app": "web", "pod-template-hash": "x"}, "creationTimestamp": null},
            "spec": {"containers": [{"name": "c", "image": "v1", "resources": {}}]}
        }))
        .unwrap();
        assert!(equal_ignore_hash(&a, &b));
        assert_eq!(template_hash(&a, None), template_hash(&b, None));
        let mut c = a.clone();
        c.spec.containers[0].image = "v2".into();
        assert!(!equal_ignore_hash(&a, &c));
    }
}
