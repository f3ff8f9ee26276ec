//! core/v1 Pod: spec, status, defaults and validation.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::container::Container;
use super::scheduling::{Affinity, Toleration};
use super::volume::Volume;
use super::{ConditionStatus, LocalObjectReference};
use crate::meta::{meta_field, validate_subdomain_name, FieldSource, ObjectMeta};
use crate::resource::impl_resource;
use crate::skip::{is_false, is_zero_i32};
use crate::time::Time;
use crate::validation::{
    invalid_each, is_dns1123_label, validate_labels, ErrorList, FieldError, Path,
};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Pod {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: PodSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<PodStatus>,
}

impl_resource!(Pod, "", "Pod");

/// metadata and spec of the pods a controller creates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct PodTemplateSpec {
    pub metadata: ObjectMeta,
    pub spec: PodSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DnsPolicy {
    ClusterFirst,
    ClusterFirstWithHostNet,
    Default,
    None,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct PodSpec {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub init_containers: Vec<Container>,
    pub containers: Vec<Container>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_policy: Option<DnsPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_config: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub service_account_name: String,
    /// Deprecated alias of serviceAccountName; accepted and kept.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub service_account: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub automount_service_account_token: Option<bool>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub node_name: String,
    #[serde(skip_serializing_if = "is_false")]
    pub host_network: bool,
    #[serde(rename = "hostPID", skip_serializing_if = "is_false")]
    pub host_pid: bool,
    #[serde(rename = "hostIPC", skip_serializing_if = "is_false")]
    pub host_ipc: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share_process_namespace: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subdomain: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_hostname_as_fqdn: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scheduler_name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub host_aliases: Vec<HostAlias>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub priority_class_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preemption_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_service_links: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_class_name: Option<String>,
    /// Accepted and kept; the scheduler does not act on these.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub readiness_gates: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct HostAlias {
    pub ip: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct PodSecurityContext {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub supplemental_groups: Vec<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fs_group: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fs_group_change_policy: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sysctls: Vec<Sysctl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seccomp_profile: Option<super::container::SeccompProfile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub se_linux_options: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_armor_profile: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Sysctl {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

impl PodPhase {
    pub fn as_str(&self) -> &'static str {
        match self {
            PodPhase::Pending => "Pending",
            PodPhase::Running => "Running",
            PodPhase::Succeeded => "Succeeded",
            PodPhase::Failed => "Failed",
            PodPhase::Unknown => "Unknown",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct PodStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<PodPhase>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<PodCondition>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub nominated_node_name: String,
    #[serde(rename = "hostIP", skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
    #[serde(rename = "hostIPs", skip_serializing_if = "Vec::is_empty")]
    pub host_ips: Vec<PodIp>,
    #[serde(rename = "podIP", skip_serializing_if = "String::is_empty")]
    pub pod_ip: String,
    #[serde(rename = "podIPs", skip_serializing_if = "Vec::is_empty")]
    pub pod_ips: Vec<PodIp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub init_container_statuses: Vec<ContainerStatus>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub container_statuses: Vec<ContainerStatus>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub qos_class: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PodIp {
    pub ip: String,
}

/// `PodScheduled`, `Initialized`, `ContainersReady`, `Ready`, ...
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Kubernetes writes `null` here; kept as an option.
    #[serde(default)]
    pub last_probe_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ContainerStatus {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<ContainerState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_state: Option<ContainerState>,
    pub ready: bool,
    pub restart_count: i32,
    pub image: String,
    #[serde(rename = "imageID")]
    pub image_id: String,
    #[serde(rename = "containerID", skip_serializing_if = "String::is_empty")]
    pub container_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<bool>,
    /// Newer status fields (allocatedResources, volumeMounts, user, ...): kept verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_mounts: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocated_resources: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<serde_json::Value>,
}

/// At most one of the three is set; none means "not yet known".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ContainerState {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<ContainerStateWaiting>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<ContainerStateRunning>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminated: Option<ContainerStateTerminated>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ContainerStateWaiting {
    /// `ContainerCreating`, `CrashLoopBackOff`, `ImagePullBackOff`, ...
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ContainerStateRunning {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ContainerStateTerminated {
    pub exit_code: i32,
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub signal: i32,
    /// `Completed`, `Error`, `OOMKilled`, ...
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    #[serde(rename = "containerID", skip_serializing_if = "String::is_empty")]
    pub container_id: String,
}

impl RestartPolicy {
    pub fn as_str(&self) -> &'static str {
        match self {
            RestartPolicy::Always => "Always",
            RestartPolicy::OnFailure => "OnFailure",
            RestartPolicy::Never => "Never",
        }
    }
}

impl PodSpec {
    /// restartPolicy Always, terminationGracePeriodSeconds 30, dnsPolicy
    /// ClusterFirst, schedulerName default-scheduler, then each container and volume.
    pub fn apply_defaults(&mut self) {
        self.restart_policy.get_or_insert(RestartPolicy::Always);
        self.termination_grace_period_seconds.get_or_insert(30);
        self.dns_policy.get_or_insert(DnsPolicy::ClusterFirst);
        if self.scheduler_name.is_empty() {
            self.scheduler_name = "default-scheduler".into();
        }
        if self.service_account_name.is_empty() && !self.service_account.is_empty() {
            self.service_account_name = self.service_account.clone();
        }
        self.security_context
            .get_or_insert_with(PodSecurityContext::default);
        for c in self
            .init_containers
            .iter_mut()
            .chain(self.containers.iter_mut())
        {
            c.apply_defaults();
        }
        for v in &mut self.volumes {
            v.apply_defaults();
        }
    }

    pub fn validate(&self, path: &Path) -> ErrorList {
        let mut errs = ErrorList::new();
        let (volume_names, volume_errs) = self.validate_volumes(&path.child("volumes"));
        errs.extend(volume_errs);
        if self.containers.is_empty() {
            errs.push(FieldError::required(&path.child("containers")));
        }
        let mut names = BTreeSet::new();
        let groups = [
            ("initContainers", &self.init_containers),
            ("containers", &self.containers),
        ];
        for (field, list) in groups {
            for (i, c) in list.iter().enumerate() {
                let p = path.child(field).index(i);
                errs.extend(c.validate(&p, &volume_names));
                if !c.name.is_empty() && !names.insert(c.name.as_str()) {
                    errs.push(FieldError::duplicate(&p.child("name"), c.name.as_str()));
                }
            }
        }
        if let Some(g) = self.termination_grace_period_seconds.filter(|g| *g < 0) {
            let p = path.child("terminationGracePeriodSeconds");
            errs.push(FieldError::invalid(
                &p,
                g,
                "must be greater than or equal to 0",
            ));
        }
        for (field, v) in [("hostname", &self.hostname), ("subdomain", &self.subdomain)] {
            if !v.is_empty() {
                errs.extend(invalid_each(&path.child(field), v, is_dns1123_label(v)));
            }
        }
        errs.extend(validate_labels(
            &self.node_selector,
            &path.child("nodeSelector"),
        ));
        errs.extend(self.validate_tolerations(&path.child("tolerations")));
        errs
    }

    fn validate_volumes<'a>(&'a self, path: &Path) -> (BTreeSet<&'a str>, ErrorList) {
        let mut errs = ErrorList::new();
        let mut names = BTreeSet::new();
        for (i, v) in self.volumes.iter().enumerate() {
            errs.extend(v.validate(&path.index(i)));
            if !v.name.is_empty() && !names.insert(v.name.as_str()) {
                errs.push(FieldError::duplicate(
                    &path.index(i).child("name"),
                    v.name.as_str(),
                ));
            }
        }
        (names, errs)
    }

    fn validate_tolerations(&self, path: &Path) -> ErrorList {
        use super::scheduling::TolerationOperator;
        let mut errs = ErrorList::new();
        for (i, t) in self.tolerations.iter().enumerate() {
            let p = path.index(i);
            let exists = t.operator == Some(TolerationOperator::Exists);
            if exists && !t.value.is_empty() {
                errs.push(FieldError::invalid(
                    &p.child("operator"),
                    "Exists",
                    "value must be empty when `operator` is 'Exists'",
                ));
            }
            if t.key.is_empty() && !exists {
                errs.push(FieldError::invalid(
                    &p.child("operator"),
                    "Equal",
                    "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
                ));
            }
        }
        errs
    }

    /// Every container, init containers first.
    pub fn all_containers(&self) -> impl Iterator<Item = &Container> {
        self.init_containers.iter().chain(self.containers.iter())
    }
}

impl Pod {
    pub fn apply_defaults(&mut self) {
        self.spec.apply_defaults();
    }

    pub fn validate(&self) -> ErrorList {
        let mut errs = self.metadata.validate(true, validate_subdomain_name);
        errs.extend(self.spec.validate(&Path::new("spec")));
        errs
    }

    pub fn phase(&self) -> Option<PodPhase> {
        self.status.as_ref().and_then(|s| s.phase)
    }

    /// The Ready condition is True.
    pub fn is_ready(&self) -> bool {
        self.status
            .as_ref()
            .and_then(|s| s.condition("Ready"))
            .is_some_and(|c| c.status == ConditionStatus::True)
    }
}

impl PodStatus {
    pub fn condition(&self, type_: &str) -> Option<&PodCondition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

impl PodTemplateSpec {
    pub fn apply_defaults(&mut self) {
        self.spec.apply_defaults();
    }

    pub fn validate(&self, path: &Path) -> ErrorList {
        let mut errs = validate_labels(
            &self.metadata.labels,
            &path.child("metadata").child("labels"),
        );
        errs.extend(self.spec.validate(&path.child("spec")));
        if let Some(p) = self
            .spec
            .restart_policy
            .filter(|p| *p != RestartPolicy::Always)
        {
            let field = path.child("spec").child("restartPolicy");
            errs.push(FieldError::not_supported(&field, p.as_str(), &["Always"]));
        }
        errs
    }
}

impl FieldSource for Pod {
    fn supported_fields() -> &'static [&'static str] {
        &[
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ]
    }

    fn field_value(&self, field: &str) -> Option<String> {
        let status = self.status.as_ref();
        Some(match field {
            "spec.nodeName" => self.spec.node_name.clone(),
            "spec.restartPolicy" => self
                .spec
                .restart_policy
                .map(|p| p.as_str().to_string())
                .unwrap_or_default(),
            "spec.schedulerName" => self.spec.scheduler_name.clone(),
            "spec.serviceAccountName" => self.spec.service_account_name.clone(),
            "spec.hostNetwork" => self.spec.host_network.to_string(),
            "status.phase" => status
                .and_then(|s| s.phase)
                .map(|p| p.as_str().to_string())
                .unwrap_or_default(),
            "status.podIP" => status.map(|s| s.pod_ip.clone()).unwrap_or_default(),
            "status.nominatedNodeName" => status
                .map(|s| s.nominated_node_name.clone())
                .unwrap_or_default(),
            _ => return meta_field(&self.metadata, field),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::FieldSelector;

    /// A pod as `kubectl get pod -o json` prints it, status included.
    const KUBECTL_POD: &str = r#"{
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "creationTimestamp": "2026-11-26T01:02:03Z",
            "generateName": "web-7d4b9c7f5-",
            "labels": {"app": "web", "pod-template-hash": "7d4b9c7f5"},
            "name": "web-7d4b9c7f5-x2x9q",
            "namespace": "default",
            "ownerReferences": [{"apiVersion": "apps/v1", "blockOwnerDeletion": true, "controller": true,
                                 "kind": "ReplicaSet", "name": "web-7d4b9c7f5", "uid": "0a1b2c3d-0000-4000-8000-000000000001"}],
            "resourceVersion": "1234",
            "uid": "0a1b2c3d-0000-4000-8000-000000000002"
        },
        "spec": {
            "containers": [{
                "image": "busybox:1.36",
                "imagePullPolicy": "IfNotPresent",
                "name": "web",
                "command": ["httpd", "-f", "-p", "8080"],
                "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "volumeMounts": [{"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": "kube-api-access-abcde", "readOnly": true}]
            }],
            "dnsPolicy": "ClusterFirst",
            "enableServiceLinks": true,
            "nodeName": "node-1",
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "securityContext": {},
            "serviceAccount": "default",
            "serviceAccountName": "default",
            "terminationGracePeriodSeconds": 30,
            "tolerations": [
                {"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300},
                {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 300}
            ],
            "volumes": [{"name": "kube-api-access-abcde", "secret": {"secretName": "token", "defaultMode": 420}}]
        },
        "status": {
            "conditions": [
                {"lastProbeTime": null, "lastTransitionTime": "2026-11-26T01:02:03Z", "status": "True", "type": "Initialized"},
                {"lastProbeTime": null, "lastTransitionTime": "2026-11-26T01:02:05Z", "status": "True", "type": "Ready"},
                {"lastProbeTime": null, "lastTransitionTime": "2026-11-26T01:02:05Z", "status": "True", "type": "ContainersReady"},
                {"lastProbeTime": null, "lastTransitionTime": "2026-11-26T01:02:03Z", "status": "True", "type": "PodScheduled"}
            ],
            "containerStatuses": [{
                "containerID": "corral://3f2a",
                "image": "docker.io/library/busybox:1.36",
                "imageID": "docker.io/library/busybox@sha256:5eef5ed34e1e1ff0a4ae850395cbf665c4de6b4b83a32a0bc7bcb998e24e7bbb",
                "lastState": {"terminated": {"containerID": "corral://1e9c", "exitCode": 137, "finishedAt": "2026-11-26T01:02:04Z",
                                              "reason": "OOMKilled", "startedAt": "2026-11-26T01:02:03Z"}},
                "name": "web",
                "ready": true,
                "restartCount": 1,
                "started": true,
                "state": {"running": {"startedAt": "2026-11-26T01:02:04Z"}}
            }],
            "hostIP": "192.0.2.10",
            "hostIPs": [{"ip": "192.0.2.10"}],
            "phase": "Running",
            "podIP": "10.88.0.5",
            "podIPs": [{"ip": "10.88.0.5"}],
            "qosClass": "BestEffort",
            "startTime": "2026-11-26T01:02:03Z"
        }
    }"#;

    #[test]
    fn kubectl_pod_round_trips() {
        let input: serde_json::Value = serde_json::from_str(KUBECTL_POD).unwrap();
        let pod: Pod = serde_json::from_value(input.clone()).unwrap();
        assert_eq!(serde_json::to_value(&pod).unwrap(), input);
        assert!(pod.is_ready());
        assert_eq!(pod.phase(), Some(PodPhase::Running));
        let st = &pod.status.as_ref().unwrap().container_statuses[0];
        let last = st.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!((last.exit_code, last.reason.as_str()), (137, "OOMKilled"));
        assert!(pod.validate().is_empty(), "{:?}", pod.validate());
    }

    #[test]
    fn field_selectors_on_pods() {
        let pod: Pod = serde_json::from_str(KUBECTL_POD).unwrap();
        let sel = |s: &str| {
            let f = FieldSelector::parse(s).unwrap();
            f.check_supported::<Pod>().unwrap();
            f.matches(&pod)
        };
        assert!(sel("spec.nodeName=node-1"));
        assert!(sel("status.phase=Running,metadata.namespace=default"));
        assert!(!sel("status.phase!=Running"));
        assert!(sel("metadata.name=web-7d4b9c7f5-x2x9q"));
        assert!(!sel("spec.nodeName="));
        let unscheduled = Pod::default();
        assert!(FieldSelector::parse("spec.nodeName=")
            .unwrap()
            .matches(&unscheduled));
    }

    #[test]
    fn defaults() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [
                {"name": "a", "image": "busybox", "ports": [{"containerPort": 80}],
                 "readinessProbe": {"tcpSocket": {"port": 80}}},
                {"name": "b", "image": "busybox:1.36"}
            ]}
        }))
        .unwrap();
        pod.apply_defaults();
        let s = &pod.spec;
        assert_eq!(s.restart_policy, Some(RestartPolicy::Always));
        assert_eq!(s.termination_grace_period_seconds, Some(30));
        assert_eq!(s.dns_policy, Some(DnsPolicy::ClusterFirst));
        use super::super::container::{Protocol, PullPolicy};
        assert_eq!(s.containers[0].image_pull_policy, Some(PullPolicy::Always));
        assert_eq!(
            s.containers[1].image_pull_policy,
            Some(PullPolicy::IfNotPresent)
        );
        assert_eq!(s.containers[0].ports[0].protocol, Some(Protocol::TCP));
        let probe = s.containers[0].readiness_probe.as_ref().unwrap();
        assert_eq!(
            (
                probe.period_seconds,
                probe.timeout_seconds,
                probe.success_threshold,
                probe.failure_threshold
            ),
            (Some(10), Some(1), Some(1), Some(3))
        );
        let once = pod.clone();
        pod.apply_defaults();
        assert_eq!(pod, once, "defaulting twice changes nothing");
    }

    #[test]
    fn validation_paths() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "labels": {"app": "-bad"}},
            "spec": {
                "initContainers": [{"name": "web", "image": "busybox"}],
                "containers": [{"name": "web", "image": "busybox"}, {"name": "Foo", "image": "busybox"}],
                "volumes": [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}],
                "tolerations": [{"key": "a", "operator": "Exists", "value": "x"}]
            }
        }))
        .unwrap();
        let msgs: Vec<String> = pod.validate().iter().map(|e| e.to_string()).collect();
        let want = [
            "metadata.labels[app]: Invalid value: \"-bad\"",
            "spec.volumes[1].name: Duplicate value: \"v\"",
            "spec.containers[0].name: Duplicate value: \"web\"",
            "spec.containers[1].name: Invalid value: \"Foo\": a lowercase RFC 1123 label must",
            "spec.tolerations[0].operator: Invalid value: \"Exists\"",
        ];
        assert_eq!(msgs.len(), want.len(), "{msgs:#?}");
        for (m, w) in msgs.iter().zip(want) {
            assert!(m.starts_with(w), "{m}\n  vs {w}");
        }
        let empty = Pod {
            metadata: ObjectMeta::named("p"),
            ..Pod::default()
        };
        assert_eq!(
            empty.validate()[0].to_string(),
            "spec.containers: Required value"
        );
    }
}
