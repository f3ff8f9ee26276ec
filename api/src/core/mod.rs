//! core/v1: Pod, Node, Namespace, Service, Endpoints, ConfigMap, Secret,
//! Event, Binding, and the small types they share.

mod config;
mod container;
mod event;
mod namespace;
mod node;
mod pod;
mod scheduling;
mod service;
mod volume;

use serde::{Deserialize, Serialize};

pub use config::{ByteString, ConfigMap, Secret};
pub use container::{
    default_pull_policy, Capabilities, Container, ContainerPort, EnvFromSource, EnvVar,
    EnvVarSource, ExecAction, GrpcAction, HttpGetAction, HttpHeader, KeySelector, Lifecycle,
    LifecycleHandler, NameRef, ObjectFieldSelector, Probe, Protocol, PullPolicy,
    ResourceFieldSelector, ResourceList, ResourceRequirements, Scheme, SeccompProfile,
    SecurityContext, SleepAction, TcpSocketAction, VolumeMount,
};
pub use event::{Binding, Event, EventSource};
pub use namespace::{Namespace, NamespacePhase, NamespaceSpec, NamespaceStatus};
pub use node::{Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo};
pub use pod::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, DnsPolicy, HostAlias, Pod, PodCondition, PodIp, PodPhase, PodSecurityContext,
    PodSpec, PodStatus, PodTemplateSpec, RestartPolicy, Sysctl,
};
pub use scheduling::{
    tolerates_all, Affinity, NodeAffinity, NodeSelector, NodeSelectorOperator,
    NodeSelectorRequirement, NodeSelectorTerm, PreferredSchedulingTerm, Taint, TaintEffect,
    Toleration, TolerationOperator,
};
pub use service::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, LoadBalancerIngress,
    LoadBalancerStatus, Service, ServicePort, ServiceSpec, ServiceStatus, ServiceType,
};
pub use volume::{
    ConfigMapVolumeSource, EmptyDirVolumeSource, HostPathVolumeSource, KeyToPath,
    PersistentVolumeClaimVolumeSource, SecretVolumeSource, Volume,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// A reference by name within the same namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalObjectReference {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// A reference to any object (Event.involvedObject, Endpoints targetRef, Binding target).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ObjectReference {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub field_path: String,
}
