//! core/v1 Node: a host running an agent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::container::ResourceList;
use super::scheduling::Taint;
use super::ConditionStatus;
use crate::meta::{meta_field, validate_subdomain_name, FieldSource, ObjectMeta};
use crate::resource::impl_resource;
use crate::skip::is_false;
use crate::time::Time;
use crate::validation::{ErrorList, FieldError, Path};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Node {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: NodeSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<NodeStatus>,
}

impl_resource!(Node, "", "Node");

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct NodeSpec {
    #[serde(rename = "podCIDR", skip_serializing_if = "String::is_empty")]
    pub pod_cidr: String,
    #[serde(rename = "podCIDRs", skip_serializing_if = "Vec::is_empty")]
    pub pod_cidrs: Vec<String>,
    #[serde(rename = "providerID", skip_serializing_if = "String::is_empty")]
    pub provider_id: String,
    #[serde(skip_serializing_if = "is_false")]
    pub unschedulable: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct NodeStatus {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub capacity: ResourceList,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub allocatable: ResourceList,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub phase: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<NodeCondition>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<NodeAddress>,
    /// `{"kubeletEndpoint": {"Port": 10250}}`; kept verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daemon_endpoints: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_info: Option<NodeSystemInfo>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes_in_use: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes_attached: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub runtime_handlers: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features: Option<serde_json::Value>,
}

/// `Ready`, `MemoryPressure`, `DiskPressure`, `PIDPressure`, `NetworkUnavailable`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// `InternalIP`, `ExternalIP`, `Hostname`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeAddress {
    #[serde(rename = "type")]
    pub type_: String,
    pub address: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct NodeSystemInfo {
    #[serde(rename = "machineID")]
    pub machine_id: String,
    #[serde(rename = "systemUUID")]
    pub system_uuid: String,
    #[serde(rename = "bootID")]
    pub boot_id: String,
    pub kernel_version: String,
    pub os_image: String,
    pub container_runtime_version: String,
    pub kubelet_version: String,
    pub kube_proxy_version: String,
    pub operating_system: String,
    pub architecture: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap: Option<serde_json::Value>,
}

impl Node {
    pub fn condition(&self, type_: &str) -> Option<&NodeCondition> {
        self.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
    }

    pub fn is_ready(&self) -> bool {
        self.condition("Ready")
            .is_some_and(|c| c.status == ConditionStatus::True)
    }

    /// The first address of a type, e.g. `InternalIP`.
    pub fn address(&self, type_: &str) -> Option<&str> {
        self.status
            .as_ref()?
            .addresses
            .iter()
            .find(|a| a.type_ == type_)
            .map(|a| a.address.as_str())
    }

    pub fn validate(&self) -> ErrorList {
        let mut errs = self.metadata.validate(false, validate_subdomain_name);
        let spec = Path::new("spec");
        if !self.spec.pod_cidr.is_empty()
            && !self.spec.pod_cidrs.is_empty()
            && self.spec.pod_cidrs[0] != self.spec.pod_cidr
        {
            errs.push(FieldError::invalid(
                &spec.child("podCIDRs"),
                self.spec.pod_cidrs[0].as_str(),
                "the first entry must match podCIDR",
            ));
        }
        errs
    }
}

impl FieldSource for Node {
    fn supported_fields() -> &'static [&'static str] {
        &["metadata.name", "spec.unschedulable"]
    }

    fn field_value(&self, field: &str) -> Option<String> {
        match field {
            "spec.unschedulable" => Some(self.spec.unschedulable.to_string()),
            _ => meta_field(&self.metadata, field),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::FieldSelector;

    const KUBECTL_NODE: &str = r#"{
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node-1", "labels": {"kubernetes.io/hostname": "node-1", "kubernetes.io/os": "linux"},
                     "resourceVersion": "77", "uid": "n-1", "creationTimestamp": "2026-11-26T00:00:00Z"},
        "spec": {"podCIDR": "10.88.1.0/24", "podCIDRs": ["10.88.1.0/24"],
                 "taints": [{"effect": "NoSchedule", "key": "node.kubernetes.io/unschedulable", "timeAdded": "2026-11-26T00:10:00Z"}],
                 "unschedulable": true},
        "status": {
            "addresses": [{"address": "192.0.2.10", "type": "InternalIP"}, {"address": "node-1", "type": "Hostname"}],
            "allocatable": {"cpu": "2", "ephemeral-storage": "47093746742", "memory": "24470392Ki", "pods": "110"},
            "capacity": {"cpu": "2", "ephemeral-storage": "51097340Ki", "memory": "24572792Ki", "pods": "110"},
            "conditions": [
                {"lastHeartbeatTime": "2026-11-26T00:20:00Z", "lastTransitionTime": "2026-11-26T00:00:10Z",
                 "message": "agent is posting ready status", "reason": "KubeletReady", "status": "True", "type": "Ready"}
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"architecture": "amd64", "bootID": "b", "containerRuntimeVersion": "corral://0.1.0",
                         "kernelVersion": "6.1.0-56-amd64", "kubeProxyVersion": "", "kubeletVersion": "v1.31.0-corral",
                         "machineID": "m", "operatingSystem": "linux", "osImage": "Debian GNU/Linux 12 (bookworm)", "systemUUID": "s"}
        }
    }"#;

    #[test]
    fn kubectl_node_round_trips() {
        let input: serde_json::Value = serde_json::from_str(KUBECTL_NODE).unwrap();
        let node: Node = serde_json::from_value(input.clone()).unwrap();
        assert_eq!(serde_json::to_value(&node).unwrap(), input);
        assert!(node.is_ready());
        assert_eq!(node.address("InternalIP"), Some("192.0.2.10"));
        let alloc = &node.status.as_ref().unwrap().allocatable;
        assert_eq!(alloc["memory"].value(), 24_470_392 * 1024);
        assert_eq!(alloc["cpu"].milli_value(), 2000);
        assert!(node.validate().is_empty());
        assert!(FieldSelector::parse("spec.unschedulable=true")
            .unwrap()
            .matches(&node));
    }
}
