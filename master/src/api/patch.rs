//! PATCH bodies: JSON merge patch (RFC 7386), strategic merge patch as far
//! as kubectl uses it (lists of named things merged by their key, the
//! `$patch`, `$setElementOrder`, `$retainKeys` and `$deleteFromPrimitiveList`
//! directives), and server-side apply simplified to "create, or merge the
//! applied configuration like a strategic patch". JSON patches (RFC 6902)
//! are in [`super::jsonpatch`].

use corral_api::meta::reasons;
use corral_api::Status;
use serde_json::{Map, Value};

use super::response::ApiResult;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Merge,
    Strategic,
    Apply,
    Json,
}

impl Kind {
    pub fn from_media_type(media: &str) -> ApiResult<Kind> {
        match media {
            "application/merge-patch+json" => Ok(Kind::Merge),
            "application/strategic-merge-patch+json" => Ok(Kind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(Kind::Apply),
            "application/json-patch+json" => Ok(Kind::Json),
            other => Err(Status::unsupported_media_type(other).into()),
        }
    }

    /// The patched object; a JSON patch that cannot be applied is a 422
    /// (Kubernetes' answer), the other kinds always apply.
    pub fn apply(self, target: Value, patch: &Value) -> ApiResult<Value> {
        let mut target = target;
        match self {
            Kind::Merge => merge(&mut target, patch),
            Kind::Strategic | Kind::Apply => strategic(&mut target, patch, ""),
            Kind::Json => {
                return super::jsonpatch::apply(&target, patch).map_err(|e| {
                    Status::failure(422, reasons::INVALID, format!("the JSON patch failed: {e}"))
                        .into()
                })
            }
        }
        Ok(target)
    }
}

/// RFC 7386: objects merge recursively, `null` removes, anything else replaces.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// The key that identifies elements of the list in field `field` (Kubernetes'
/// `patchMergeKey`), for the lists kubectl patches.
fn merge_key(field: &str, sample: &Value) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets" => Some("name"),
        // Container ports are keyed by containerPort, Service ports by port.
        "ports" if sample.get("containerPort").is_some() => Some("containerPort"),
        "ports" => Some("port"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "conditions" | "addresses" => Some("type"),
        "ownerReferences" => Some("uid"),
        "hostAliases" => Some("ip"),
        _ => None,
    }
}

/// Lists of scalars merged as sets (`patchStrategy: merge` without a key).
fn is_primitive_set(field: &str) -> bool {
    matches!(field, "finalizers")
}

fn strategic(target: &mut Value, patch: &Value, _field: &str) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replaced = patch.clone();
        if let Value::Object(r) = &mut replaced {
            r.remove("$patch");
        }
        *target = replaced;
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if k.starts_with("$setElementOrder/") || k == "$retainKeys" || k == "$patch" {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(gone)) = (t.get_mut(field), v) {
                list.retain(|x| !gone.contains(x));
            }
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        match v {
            Value::Array(items) => merge_list(t, k, items),
            _ => strategic(t.entry(k.clone()).or_insert(Value::Null), v, k),
        }
    }
}

fn merge_list(t: &mut Map<String, Value>, field: &str, items: &[Value]) {
    let sample = items.first().cloned().unwrap_or(Value::Null);
    if is_primitive_set(field) {
        let list = t
            .entry(field.to_string())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = list {
            for i in items {
                if !list.contains(i) {
                    list.push(i.clone());
                }
            }
        }
        return;
    }
    let Some(key) = merge_key(field, &sample).filter(|_| sample.is_object()) else {
        t.insert(field.to_string(), Value::Array(items.to_vec()));
        return;
    };
    let entry = t
        .entry(field.to_string())
        .or_insert_with(|| Value::Array(Vec::new()));
    if !entry.is_array() {
        *entry = Value::Array(Vec::new());
    }
    let Value::Array(list) = entry else { return };
    for item in items {
        let id = item.get(key);
        let pos = list.iter().position(|e| e.get(key) == id);
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                list.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => strategic(&mut list[i], item, field),
            (None, false) => {
                let mut new = Value::Null;
                strategic(&mut new, item, field);
                list.push(new);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge(
            &mut t,
            &json!({"a": "z", "c": {"f": null}, "l": [3], "n": {"x": 1}}),
        );
        assert_eq!(
            t,
            json!({"a": "z", "c": {"d": "e"}, "l": [3], "n": {"x": 1}})
        );
    }

    #[test]
    fn strategic_merges_named_lists() {
        let t = json!({"spec": {"containers": [
            {"name": "a", "image": "busybox:1", "env": [{"name": "X", "value": "1"}],
             "ports": [{"containerPort": 80}]},
            {"name": "b", "image": "nginx"}]},
            "metadata": {"finalizers": ["x"]}});
        let p = json!({"spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [
                {"name": "a", "image": "busybox:2", "env": [{"name": "Y", "value": "2"}]},
                {"name": "b", "$patch": "delete"},
                {"name": "c", "image": "redis"}]},
            "metadata": {"finalizers": ["y"]}});
        let out = Kind::Strategic.apply(t, &p).unwrap();
        let cs = out["spec"]["containers"].as_array().unwrap();
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[0]["image"], "busybox:2");
        assert_eq!(cs[0]["env"].as_array().unwrap().len(), 2);
        assert_eq!(cs[0]["ports"][0]["containerPort"], 80);
        assert_eq!(cs[1]["name"], "c");
        assert_eq!(out["metadata"]["finalizers"], json!(["x", "y"]));
        assert!(out["spec"].get("$setElementOrder/containers").is_none());
        let out = Kind::Strategic
            .apply(
                out,
                &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]},
                    "spec": {"$patch": "replace", "containers": []}}),
            )
            .unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["y"]));
        assert_eq!(out["spec"], json!({"containers": []}));
    }

    #[test]
    fn media_types() {
        assert_eq!(
            Kind::from_media_type("application/merge-patch+json").unwrap(),
            Kind::Merge
        );
        assert_eq!(
            Kind::from_media_type("application/json-patch+json").unwrap(),
            Kind::Json
        );
        let e = Kind::Json
            .apply(
                serde_json::json!({"a": 1}),
                &serde_json::json!([{"op": "test", "path": "/a", "value": 2}]),
            )
            .unwrap_err();
        assert_eq!(e.0.code, 422);
        let e = Kind::from_media_type("application/x-unknown-patch").unwrap_err();
        assert_eq!(e.0.code, 415);
    }
}
