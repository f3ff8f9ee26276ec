//! core/v1 Event (what `describe` shows) and Binding (how the scheduler assigns a node).

use serde::{Deserialize, Serialize};

use super::ObjectReference;
use crate::meta::{meta_field, validate_subdomain_name, FieldSource, ObjectMeta};
use crate::resource::impl_resource;
use crate::skip::is_zero_i32;
use crate::time::{MicroTime, Time};
use crate::validation::{ErrorList, FieldError, Path};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Event {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub metadata: ObjectMeta,
    pub involved_object: ObjectReference,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<EventSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_timestamp: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_timestamp: Option<Time>,
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub count: i32,
    /// `Normal` or `Warning`.
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub type_: String,
    /// Kubernetes writes `null` here for core/v1 events.
    pub event_time: Option<MicroTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub related: Option<ObjectReference>,
    pub reporting_component: String,
    pub reporting_instance: String,
}

impl_resource!(Event, "", "Event");

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventSource {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub component: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
}

impl Event {
    pub fn validate(&self) -> ErrorList {
        let mut errs = self.metadata.validate(true, validate_subdomain_name);
        let obj = Path::new("involvedObject");
        if self.involved_object.name.is_empty() && self.involved_object.kind != "Namespace" {
            errs.push(FieldError::required(&obj.child("name")));
        }
        if !matches!(self.type_.as_str(), "" | "Normal" | "Warning") {
            errs.push(FieldError::not_supported(
                &Path::new("type"),
                self.type_.as_str(),
                &["Normal", "Warning"],
            ));
        }
        errs
    }
}

impl FieldSource for Event {
    fn supported_fields() -> &'static [&'static str] {
        &[
            "metadata.name",
            "metadata.namespace",
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ]
    }

    fn field_value(&self, field: &str) -> Option<String> {
        let o = &self.involved_object;
        Some(match field {
            "involvedObject.kind" => o.kind.clone(),
            "involvedObject.namespace" => o.namespace.clone(),
            "involvedObject.name" => o.name.clone(),
            "involvedObject.uid" => o.uid.clone(),
            "involvedObject.apiVersion" => o.api_version.clone(),
            "involvedObject.resourceVersion" => o.resource_version.clone(),
            "involvedObject.fieldPath" => o.field_path.clone(),
            "reason" => self.reason.clone(),
            "reportingComponent" => self.reporting_component.clone(),
            "source" => self
                .source
                .as_ref()
                .map(|s| s.component.clone())
                .unwrap_or_default(),
            "type" => self.type_.clone(),
            _ => return meta_field(&self.metadata, field),
        })
    }
}

/// POSTed to `pods/{name}/binding` to place a pod on a node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Binding {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub metadata: ObjectMeta,
    pub target: ObjectReference,
}

impl_resource!(Binding, "", "Binding");

impl Binding {
    pub fn validate(&self) -> ErrorList {
        let mut errs = self.metadata.validate(true, validate_subdomain_name);
        if self.target.name.is_empty() {
            errs.push(FieldError::required(&Path::new("target").child("name")));
        }
        if !matches!(self.target.kind.as_str(), "" | "Node") {
            errs.push(FieldError::not_supported(
                &Path::new("target").child("kind"),
                self.target.kind.as_str(),
                &["Node"],
            ));
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::FieldSelector;

    #[test]
    fn kubectl_event_round_trips() {
        let json = serde_json::json!({
            "apiVersion": "v1", "kind": "Event",
            "count": 3,
            "eventTime": null,
            "firstTimestamp": "2026-11-26T01:00:00Z",
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": "web-1", "namespace": "default",
                               "resourceVersion": "10", "uid": "u1", "fieldPath": "spec.containers{web}"},
            "lastTimestamp": "2026-11-26T01:05:00Z",
            "message": "Back-off restarting failed container web in pod web-1",
            "metadata": {"name": "web-1.17f3a", "namespace": "default"},
            "reason": "BackOff",
            "reportingComponent": "",
            "reportingInstance": "",
            "source": {"component": "corral-agent", "host": "node-1"},
            "type": "Warning"
        });
        let ev: Event = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&ev).unwrap(), json);
        assert!(ev.validate().is_empty());
        let f = FieldSelector::parse("involvedObject.name=web-1,type=Warning").unwrap();
        assert!(f.check_supported::<Event>().is_ok());
        assert!(f.matches(&ev));
    }

    #[test]
    fn binding() {
        let b: Binding = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": "web-1", "namespace": "default"},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}
        }))
        .unwrap();
        assert!(b.validate().is_empty());
        let none = Binding {
            metadata: ObjectMeta::named("p"),
            ..Binding::default()
        };
        assert_eq!(
            none.validate()[0].to_string(),
            "target.name: Required value"
        );
    }
}
