//! Fields an update may not change, as Kubernetes' update validation has
//! them for the kinds that exist here: a Pod's spec except container images,
//! `activeDeadlineSeconds` and additions to `tolerations`; the
//! `spec.selector` of a Deployment or ReplicaSet (apps/v1).

use corral_api::resource::ResourceInfo;
use corral_api::validation::{FieldError, Path};
use corral_api::Status;
use serde_json::Value;

use super::response::ApiResult;

const POD_UPDATE_RULE: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations)";

/// Refuses (422) an update of `old` to `new` (both defaulted) that changes
/// an immutable field.
pub fn check(info: &ResourceInfo, old: &Value, new: &Value) -> ApiResult<()> {
    let errs = match info.kind {
        "Pod" => pod(old, new),
        "Deployment" | "ReplicaSet" => selector(old, new),
        _ => Vec::new(),
    };
    if errs.is_empty() {
        return Ok(());
    }
    let name = new
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    Err(Status::invalid(info.group, info.kind, name, &errs).into())
}

fn selector(old: &Value, new: &Value) -> Vec<FieldError> {
    let (o, n) = (old.pointer("/spec/selector"), new.pointer("/spec/selector"));
    if o == n {
        return Vec::new();
    }
    let path = Path::new("spec").child("selector");
    let shown = n.cloned().unwrap_or(Value::Null);
    vec![FieldError::invalid(&path, shown, "field is immutable")]
}

fn pod(old: &Value, new: &Value) -> Vec<FieldError> {
    let (Some(old_spec), Some(new_spec)) = (old.get("spec"), new.get("spec")) else {
        return Vec::new();
    };
    // The new spec with every allowed change undone must equal the old one.
    let mut undone = new_spec.clone();
    for list in ["containers", "initContainers"] {
        undo_images(&mut undone, old_spec, list);
    }
    restore(&mut undone, old_spec, "activeDeadlineSeconds");
    if tolerations_only_added(old_spec, new_spec) {
        restore(&mut undone, old_spec, "tolerations");
    }
    if &undone == old_spec {
        return Vec::new();
    }
    vec![FieldError::forbidden(&Path::new("spec"), POD_UPDATE_RULE)]
}

fn restore(spec: &mut Value, old: &Value, field: &str) {
    let Some(obj) = spec.as_object_mut() else {
        return;
    };
    match old.get(field) {
        Some(v) => obj.insert(field.into(), v.clone()),
        None => obj.remove(field),
    };
}

/// Puts back the old image of each container at the same position.
fn undo_images(spec: &mut Value, old: &Value, list: &str) {
    let (Some(Value::Array(new_list)), Some(Value::Array(old_list))) =
        (spec.get_mut(list), old.get(list))
    else {
        return;
    };
    if new_list.len() != old_list.len() {
        return;
    }
    for (n, o) in new_list.iter_mut().zip(old_list) {
        if let (Some(obj), Some(image)) = (n.as_object_mut(), o.get("image")) {
            obj.insert("image".into(), image.clone());
        }
    }
}

fn tolerations_only_added(old: &Value, new: &Value) -> bool {
    let list = |v: &Value| {
        v.get("tolerations")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let new_list = list(new);
    list(old).iter().all(|t| new_list.contains(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_api::resource;
    use serde_json::json;

    fn pod_with(spec: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": spec})
    }

    #[test]
    fn pod_spec_changes() {
        let info = resource::by_plural("", "pods").unwrap();
        let old = pod_with(json!({"containers": [{"name": "c", "image": "a"}],
                                  "tolerations": [{"key": "k", "operator": "Exists"}]}));
        let ok = pod_with(json!({"containers": [{"name": "c", "image": "b"}],
                                 "activeDeadlineSeconds": 30,
                                 "tolerations": [{"key": "k", "operator": "Exists"},
                                                 {"key": "j", "operator": "Exists"}]}));
        assert!(check(info, &old, &ok).is_ok());
        for bad in [
            json!({"containers": [{"name": "c", "image": "a", "command": ["sh"]}],
                   "tolerations": [{"key": "k", "operator": "Exists"}]}),
            json!({"containers": [{"name": "c", "image": "a"}]}),
            json!({"containers": [{"name": "c", "image": "a"}], "nodeName": "n1",
                   "tolerations": [{"key": "k", "operator": "Exists"}]}),
        ] {
            let e = check(info, &old, &pod_with(bad.clone())).unwrap_err();
            assert_eq!(e.0.code, 422, "{bad}");
            let causes = &e.0.details.as_ref().unwrap().causes;
            assert_eq!(causes[0].field, "spec");
        }
    }

    #[test]
    fn selectors_are_immutable() {
        let info = resource::by_plural("apps", "replicasets").unwrap();
        let old =
            json!({"metadata": {"name": "r"}, "spec": {"selector": {"matchLabels": {"a": "1"}}}});
        let mut new = old.clone();
        new["spec"]["replicas"] = 3.into();
        assert!(check(info, &old, &new).is_ok());
        new["spec"]["selector"] = json!({"matchLabels": {"a": "2"}});
        let e = check(info, &old, &new).unwrap_err();
        assert_eq!(
            e.0.details.as_ref().unwrap().causes[0].field,
            "spec.selector"
        );
    }
}
