//! core/v1 Namespace.

use serde::{Deserialize, Serialize};

use crate::meta::{validate_label_name, ObjectMeta};
use crate::resource::impl_resource;
use crate::validation::ErrorList;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Namespace {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec: Option<NamespaceSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<NamespaceStatus>,
}

impl_resource!(Namespace, "", "Namespace");

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NamespaceSpec {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NamespacePhase {
    Active,
    Terminating,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NamespaceStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<NamespacePhase>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<serde_json::Value>,
}

impl Namespace {
    /// spec.finalizers [kubernetes] and status.phase Active, as the API server sets on create.
    pub fn apply_defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(NamespaceSpec::default);
        if spec.finalizers.is_empty() {
            spec.finalizers.push("kubernetes".into());
        }
        let status = self.status.get_or_insert_with(NamespaceStatus::default);
        status.phase.get_or_insert(NamespacePhase::Active);
    }

    pub fn validate(&self) -> ErrorList {
        self.metadata.validate(false, validate_label_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_defaults() {
        let json = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}});
        let mut ns: Namespace = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&ns).unwrap(), json);
        assert!(ns.validate().is_empty());
        ns.apply_defaults();
        assert_eq!(
            serde_json::to_value(&ns).unwrap(),
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"},
                               "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
        );
        let bad = Namespace {
            metadata: ObjectMeta::named("a.b"),
            ..Namespace::default()
        };
        assert_eq!(bad.validate().len(), 1);
    }
}
