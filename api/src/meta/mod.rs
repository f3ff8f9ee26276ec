//! meta/v1: object and list metadata, selectors and the Status error object.

mod fields;
mod selector;
mod status;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::skip::is_zero_i64;
use crate::time::Time;
use crate::validation::{
    invalid_each, is_dns1123_label, is_dns1123_subdomain, validate_annotations, validate_labels,
    ErrorList, FieldError, Path,
};

pub use fields::{meta_field, FieldOp, FieldRequirement, FieldSelector, FieldSource};
pub use selector::{
    LabelSelector, LabelSelectorOperator, LabelSelectorRequirement, Operator, Requirement,
    Selector, SelectorError,
};
pub use status::{reasons, Status, StatusCause, StatusDetails};

/// apiVersion and kind, read first to pick the type of a document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TypeMeta {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
}

/// metadata of every stored object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ObjectMeta {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub generate_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub self_link: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub generation: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion_grace_period_seconds: Option<i64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<OwnerReference>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
    /// Server-side apply bookkeeping: kept verbatim, never interpreted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub managed_fields: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct OwnerReference {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub controller: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_owner_deletion: Option<bool>,
}

/// metadata of a list response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ListMeta {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub self_link: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    #[serde(rename = "continue", skip_serializing_if = "String::is_empty")]
    pub continue_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining_item_count: Option<i64>,
}

impl ObjectMeta {
    pub fn named(name: &str) -> ObjectMeta {
        ObjectMeta {
            name: name.to_string(),
            ..ObjectMeta::default()
        }
    }

    pub fn namespaced(namespace: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: name.to_string(),
            namespace: namespace.to_string(),
            ..ObjectMeta::default()
        }
    }

    /// The owner with `controller: true`, which manages this object.
    pub fn controller_ref(&self) -> Option<&OwnerReference> {
        self.owner_references
            .iter()
            .find(|o| o.controller == Some(true))
    }

    pub fn is_being_deleted(&self) -> bool {
        self.deletion_timestamp.is_some()
    }

    /// Checks names, labels and annotations. `namespaced` says whether the kind
    /// lives in a namespace; `name_check` is the kind's name rule (most kinds use
    /// [`is_dns1123_subdomain`], namespaces and services [`is_dns1123_label`]).
    pub fn validate(&self, namespaced: bool, name_check: fn(&str) -> Vec<String>) -> ErrorList {
        let path = Path::new("metadata");
        let mut errs = ErrorList::new();
        if self.name.is_empty() && self.generate_name.is_empty() {
            errs.push(FieldError::required(&path.child("name")));
        } else if !self.name.is_empty() {
            errs.extend(invalid_each(
                &path.child("name"),
                &self.name,
                name_check(&self.name),
            ));
        }
        if namespaced && !self.namespace.is_empty() {
            let p = path.child("namespace");
            errs.extend(invalid_each(
                &p,
                &self.namespace,
                is_dns1123_label(&self.namespace),
            ));
        } else if !namespaced && !self.namespace.is_empty() {
            errs.push(FieldError::forbidden(
                &path.child("namespace"),
                "not allowed on this type",
            ));
        }
        errs.extend(validate_labels(&self.labels, &path.child("labels")));
        errs.extend(validate_annotations(
            &self.annotations,
            &path.child("annotations"),
        ));
        for (i, o) in self.owner_references.iter().enumerate() {
            errs.extend(o.validate(&path.child("ownerReferences").index(i)));
        }
        errs
    }
}

impl OwnerReference {
    fn validate(&self, path: &Path) -> ErrorList {
        let mut errs = ErrorList::new();
        for (field, v) in [
            ("apiVersion", &self.api_version),
            ("kind", &self.kind),
            ("name", &self.name),
            ("uid", &self.uid),
        ] {
            if v.is_empty() {
                errs.push(FieldError::required(&path.child(field)));
            }
        }
        errs
    }
}

/// The name rule of most kinds.
pub fn validate_subdomain_name(name: &str) -> Vec<String> {
    is_dns1123_subdomain(name)
}

/// The name rule of namespaces, services and container names.
pub fn validate_label_name(name: &str) -> Vec<String> {
    is_dns1123_label(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_meta_round_trip() {
        let json = serde_json::json!({
            "name": "web-7d4b9c7f5-abcde",
            "generateName": "web-7d4b9c7f5-",
            "namespace": "default",
            "uid": "6d5f3c7e-1111-2222-3333-444455556666",
            "resourceVersion": "4242",
            "generation": 2,
            "creationTimestamp": "2026-11-26T01:02:03Z",
            "labels": {"app": "web", "pod-template-hash": "7d4b9c7f5"},
            "annotations": {"example.com/note": "hi"},
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9c7f5",
                "uid": "0000", "controller": true, "blockOwnerDeletion": true
            }],
            "finalizers": ["example.com/keep"],
            "managedFields": [{"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {}}}]
        });
        let meta: ObjectMeta = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(meta.controller_ref().unwrap().name, "web-7d4b9c7f5");
        assert_eq!(serde_json::to_value(&meta).unwrap(), json);
        assert!(serde_json::from_value::<ObjectMeta>(serde_json::json!({"nmae": "x"})).is_err());
    }

    #[test]
    fn validate_names_and_namespace() {
        let ok = ObjectMeta::namespaced("default", "web.v1");
        assert!(ok.validate(true, validate_subdomain_name).is_empty());
        let errs = ObjectMeta::named("Web").validate(true, validate_subdomain_name);
        assert_eq!(errs.len(), 1);
        assert!(errs[0]
            .to_string()
            .starts_with("metadata.name: Invalid value: \"Web\""));
        let errs = ObjectMeta::default().validate(true, validate_subdomain_name);
        assert_eq!(errs[0].to_string(), "metadata.name: Required value");
        let generated = ObjectMeta {
            generate_name: "web-".into(),
            ..ObjectMeta::default()
        };
        assert!(generated.validate(true, validate_subdomain_name).is_empty());
        let errs = ObjectMeta::namespaced("default", "n1").validate(false, validate_label_name);
        assert_eq!(errs[0].path.as_str(), "metadata.namespace");
    }
}
