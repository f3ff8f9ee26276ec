//! core/v1 Container and what hangs off it: ports, env, resources, mounts,
//! probes, lifecycle hooks and the security context.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::intstr::IntOrString;
use crate::quantity::Quantity;
use crate::skip::is_false;
use crate::validation::{
    invalid_each, is_dns1123_label, is_env_var_name, is_valid_port_name, is_valid_port_num,
    ErrorList, FieldError, Path,
};

/// `cpu`, `memory`, `pods`, `ephemeral-storage`, ... to an amount.
pub type ResourceList = BTreeMap<String, Quantity>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Protocol {
    TCP,
    UDP,
    SCTP,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Container {
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromSource>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Probe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub termination_message_path: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub termination_message_policy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    /// `Always` marks a sidecar init container; accepted and kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub stdin: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub stdin_once: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub tty: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ContainerPort {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i32>,
    pub container_port: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    #[serde(rename = "hostIP", skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct EnvVar {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvVarSource>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct EnvVarSource {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<ObjectFieldSelector>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_field_ref: Option<ResourceFieldSelector>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeySelector>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeySelector>,
}

/// `metadata.name`, `status.podIP`, ... of the pod the container runs in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ObjectFieldSelector {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    pub field_path: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ResourceFieldSelector {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub container_name: String,
    pub resource: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub divisor: Option<Quantity>,
}

/// A key of a ConfigMap or Secret (configMapKeyRef / secretKeyRef).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct KeySelector {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct EnvFromSource {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<NameRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<NameRef>,
}

/// A ConfigMap or Secret by name (configMapRef / secretRef).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct NameRef {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ResourceRequirements {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: ResourceList,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: ResourceList,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct VolumeMount {
    pub name: String,
    #[serde(skip_serializing_if = "is_false")]
    pub read_only: bool,
    pub mount_path: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sub_path: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sub_path_expr: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mount_propagation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recursive_read_only: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Probe {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocketAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_delay_seconds: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ExecAction {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
}

#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scheme {
    HTTP,
    HTTPS,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpGetAction {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    pub port: IntOrString,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<Scheme>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_headers: Vec<HttpHeader>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct HttpHeader {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpSocketAction {
    pub port: IntOrString,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct GrpcAction {
    pub port: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Lifecycle {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_start: Option<LifecycleHandler>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_stop: Option<LifecycleHandler>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct LifecycleHandler {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocketAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sleep: Option<SleepAction>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct SleepAction {
    pub seconds: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct SecurityContext {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub se_linux_options: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub windows_options: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only_root_filesystem: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_privilege_escalation: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proc_mount: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seccomp_profile: Option<SeccompProfile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_armor_profile: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Capabilities {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct SeccompProfile {
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub localhost_profile: Option<String>,
}

/// Kubernetes' rule: `:latest` or no tag means the image moves, so pull always.
pub fn default_pull_policy(image: &str) -> PullPolicy {
    if image.contains('@') {
        return PullPolicy::IfNotPresent;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) if tag != "latest" => PullPolicy::IfNotPresent,
        _ => PullPolicy::Always,
    }
}

impl Probe {
    /// periodSeconds 10, timeoutSeconds 1, successThreshold 1, failureThreshold 3.
    pub fn apply_defaults(&mut self) {
        self.timeout_seconds.get_or_insert(1);
        self.period_seconds.get_or_insert(10);
        self.success_threshold.get_or_insert(1);
        self.failure_threshold.get_or_insert(3);
        if let Some(h) = self.http_get.as_mut() {
            h.apply_defaults();
        }
    }

    fn handler_count(&self) -> usize {
        usize::from(self.exec.is_some())
            + usize::from(self.http_get.is_some())
            + usize::from(self.tcp_socket.is_some())
            + usize::from(self.grpc.is_some())
    }

    fn validate(&self, path: &Path, liveness_or_startup: bool) -> ErrorList {
        let mut errs = ErrorList::new();
        match self.handler_count() {
            0 => errs.push(FieldError::required_because(
                path,
                "must specify a handler type",
            )),
            1 => {}
            _ => errs.push(FieldError::forbidden(
                path,
                "may not specify more than 1 handler type",
            )),
        }
        let numbers = [
            ("initialDelaySeconds", self.initial_delay_seconds),
            ("timeoutSeconds", self.timeout_seconds),
            ("periodSeconds", self.period_seconds),
            ("successThreshold", self.success_threshold),
            ("failureThreshold", self.failure_threshold),
        ];
        for (field, v) in numbers {
            if let Some(v) = v.filter(|v| *v < 0) {
                errs.push(FieldError::invalid(
                    &path.child(field),
                    v,
                    "must be greater than or equal to 0",
                ));
            }
        }
        if liveness_or_startup && self.success_threshold.is_some_and(|s| s != 1) {
            let v = self.success_threshold.unwrap_or(1);
            errs.push(FieldError::invalid(
                &path.child("successThreshold"),
                v,
                "must be 1",
            ));
        }
        if let Some(h) = &self.http_get {
            errs.extend(validate_action_port(
                &h.port,
                &path.child("httpGet").child("port"),
            ));
        }
        if let Some(t) = &self.tcp_socket {
            errs.extend(validate_action_port(
                &t.port,
                &path.child("tcpSocket").child("port"),
            ));
        }
        if let Some(e) = &self.exec {
            if e.command.is_empty() {
                errs.push(FieldError::required(&path.child("exec").child("command")));
            }
        }
        errs
    }
}

fn validate_action_port(port: &IntOrString, path: &Path) -> ErrorList {
    match port {
        IntOrString::Int(n) => is_valid_port_num(*n)
            .into_iter()
            .map(|m| FieldError::invalid(path, *n, m))
            .collect(),
        IntOrString::String(s) => invalid_each(path, s, is_valid_port_name(s)),
    }
}

impl HttpGetAction {
    pub fn apply_defaults(&mut self) {
        if self.path.is_empty() {
            self.path = "/".into();
        }
        self.scheme.get_or_insert(Scheme::HTTP);
    }
}

impl ResourceRequirements {
    pub fn request(&self, name: &str) -> Option<&Quantity> {
        self.requests.get(name)
    }

    pub fn limit(&self, name: &str) -> Option<&Quantity> {
        self.limits.get(name)
    }

    fn validate(&self, path: &Path) -> ErrorList {
        let mut errs = ErrorList::new();
        for (which, list) in [("limits", &self.limits), ("requests", &self.requests)] {
            for (name, q) in list {
                if q.is_negative() {
                    let p = path.child(which).key(name);
                    errs.push(FieldError::invalid(
                        &p,
                        q.to_string(),
                        "must be greater than or equal to 0",
                    ));
                }
            }
        }
        for (name, req) in &self.requests {
            if let Some(lim) = self.limits.get(name).filter(|lim| req > *lim) {
                let p = path.child("requests").key(name);
                let detail = format!("must be less than or equal to {name} limit of {lim}");
                errs.push(FieldError::invalid(&p, req.to_string(), detail));
            }
        }
        errs
    }
}

impl Container {
    /// imagePullPolicy from the tag, terminationMessagePath/Policy, port
    /// protocol TCP, probe timings.
    pub fn apply_defaults(&mut self) {
        if self.image_pull_policy.is_none() && !self.image.is_empty() {
            self.image_pull_policy = Some(default_pull_policy(&self.image));
        }
        if self.termination_message_path.is_empty() {
            self.termination_message_path = "/dev/termination-log".into();
        }
        if self.termination_message_policy.is_empty() {
            self.termination_message_policy = "File".into();
        }
        for p in &mut self.ports {
            p.protocol.get_or_insert(Protocol::TCP);
        }
        for probe in [
            &mut self.liveness_probe,
            &mut self.readiness_probe,
            &mut self.startup_probe,
        ]
        .into_iter()
        .flatten()
        {
            probe.apply_defaults();
        }
        if let Some(l) = self.lifecycle.as_mut() {
            for h in [&mut l.post_start, &mut l.pre_stop].into_iter().flatten() {
                if let Some(g) = h.http_get.as_mut() {
                    g.apply_defaults();
                }
            }
        }
    }

    /// Everything about one container that does not need the rest of the pod;
    /// `volumes` are the pod's volume names, for checking mounts.
    pub fn validate(&self, path: &Path, volumes: &BTreeSet<&str>) -> ErrorList {
        let mut errs = ErrorList::new();
        if self.name.is_empty() {
            errs.push(FieldError::required(&path.child("name")));
        } else {
            errs.extend(invalid_each(
                &path.child("name"),
                &self.name,
                is_dns1123_label(&self.name),
            ));
        }
        if self.image.trim().is_empty() {
            errs.push(FieldError::required(&path.child("image")));
        }
        errs.extend(self.validate_ports(&path.child("ports")));
        errs.extend(self.validate_env(path));
        errs.extend(self.validate_mounts(&path.child("volumeMounts"), volumes));
        if let Some(r) = &self.resources {
            errs.extend(r.validate(&path.child("resources")));
        }
        let probes = [
            ("livenessProbe", &self.liveness_probe, true),
            ("readinessProbe", &self.readiness_probe, false),
            ("startupProbe", &self.startup_probe, true),
        ];
        for (field, probe, strict) in probes {
            if let Some(p) = probe {
                errs.extend(p.validate(&path.child(field), strict));
            }
        }
        errs
    }

    fn validate_ports(&self, path: &Path) -> ErrorList {
        let mut errs = ErrorList::new();
        let mut names = BTreeSet::new();
        for (i, p) in self.ports.iter().enumerate() {
            let pp = path.index(i);
            if !p.name.is_empty() {
                errs.extend(invalid_each(
                    &pp.child("name"),
                    &p.name,
                    is_valid_port_name(&p.name),
                ));
                if !names.insert(p.name.as_str()) {
                    errs.push(FieldError::duplicate(&pp.child("name"), p.name.as_str()));
                }
            }
            for msg in is_valid_port_num(p.container_port) {
                errs.push(FieldError::invalid(
                    &pp.child("containerPort"),
                    p.container_port,
                    msg,
                ));
            }
            if let Some(h) = p.host_port.filter(|h| *h != 0) {
                for msg in is_valid_port_num(h) {
                    errs.push(FieldError::invalid(&pp.child("hostPort"), h, msg));
                }
            }
        }
        errs
    }

    fn validate_env(&self, path: &Path) -> ErrorList {
        let mut errs = ErrorList::new();
        for (i, e) in self.env.iter().enumerate() {
            let p = path.child("env").index(i);
            if e.name.is_empty() {
                errs.push(FieldError::required(&p.child("name")));
            } else {
                errs.extend(invalid_each(
                    &p.child("name"),
                    &e.name,
                    is_env_var_name(&e.name),
                ));
            }
            if let Some(src) = &e.value_from {
                errs.extend(src.validate(&p.child("valueFrom"), e.value.is_some()));
            }
        }
        for (i, e) in self.env_from.iter().enumerate() {
            let p = path.child("envFrom").index(i);
            let n = usize::from(e.config_map_ref.is_some()) + usize::from(e.secret_ref.is_some());
            if n != 1 {
                errs.push(FieldError::invalid(
                    &p,
                    "",
                    "must specify one of: `configMapRef` or `secretRef`",
                ));
            }
        }
        errs
    }

    fn validate_mounts(&self, path: &Path, volumes: &BTreeSet<&str>) -> ErrorList {
        let mut errs = ErrorList::new();
        let mut paths = BTreeSet::new();
        for (i, m) in self.volume_mounts.iter().enumerate() {
            let p = path.index(i);
            if m.name.is_empty() {
                errs.push(FieldError::required(&p.child("name")));
            } else if !volumes.contains(m.name.as_str()) {
                errs.push(FieldError::not_found(&p.child("name"), m.name.as_str()));
            }
            if m.mount_path.is_empty() {
                errs.push(FieldError::required(&p.child("mountPath")));
            } else if !paths.insert(m.mount_path.as_str()) {
                errs.push(FieldError::invalid(
                    &p.child("mountPath"),
                    m.mount_path.as_str(),
                    "must be unique",
                ));
            }
            if m.sub_path.split('/').any(|c| c == "..") || m.sub_path.starts_with('/') {
                errs.push(FieldError::invalid(
                    &p.child("subPath"),
                    m.sub_path.as_str(),
                    "must be a relative path without '..'",
                ));
            }
        }
        errs
    }
}

impl EnvVarSource {
    fn validate(&self, path: &Path, has_value: bool) -> ErrorList {
        let mut errs = ErrorList::new();
        let n = usize::from(self.field_ref.is_some())
            + usize::from(self.resource_field_ref.is_some())
            + usize::from(self.config_map_key_ref.is_some())
            + usize::from(self.secret_key_ref.is_some());
        if n != 1 {
            errs.push(FieldError::invalid(
                path,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ));
        }
        if has_value {
            errs.push(FieldError::invalid(
                path,
                "",
                "may not be specified when `value` is not empty",
            ));
        }
        if let Some(f) = &self.field_ref {
            if f.field_path.is_empty() {
                errs.push(FieldError::required(
                    &path.child("fieldRef").child("fieldPath"),
                ));
            }
        }
        for (field, r) in [
            ("configMapKeyRef", &self.config_map_key_ref),
            ("secretKeyRef", &self.secret_key_ref),
        ] {
            if let Some(r) = r {
                if r.key.is_empty() {
                    errs.push(FieldError::required(&path.child(field).child("key")));
                }
            }
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(default_pull_policy("busybox"), PullPolicy::Always);
        assert_eq!(default_pull_policy("busybox:latest"), PullPolicy::Always);
        assert_eq!(
            default_pull_policy("busybox:1.36"),
            PullPolicy::IfNotPresent
        );
        assert_eq!(
            default_pull_policy("localhost:5000/busybox"),
            PullPolicy::Always
        );
        assert_eq!(
            default_pull_policy("localhost:5000/busybox:1"),
            PullPolicy::IfNotPresent
        );
        assert_eq!(
            default_pull_policy("busybox@sha256:abcd"),
            PullPolicy::IfNotPresent
        );
    }

    #[test]
    fn probe_defaults() {
        let mut p: Probe = serde_json::from_str(r#"{"httpGet": {"port": 80}}"#).unwrap();
        p.apply_defaults();
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!({
                "httpGet": {"path": "/", "port": 80, "scheme": "HTTP"},
                "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3
            })
        );
        let mut p = Probe {
            period_seconds: Some(5),
            ..Probe::default()
        };
        p.apply_defaults();
        assert_eq!(p.period_seconds, Some(5));
    }

    #[test]
    fn container_validation() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "Web",
            "ports": [{"containerPort": 0, "name": "http"}, {"containerPort": 80, "name": "http"}],
            "env": [{"name": "1X", "value": "a"}],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}},
            "livenessProbe": {"periodSeconds": 5, "successThreshold": 2, "exec": {"command": ["true"]}}
        }))
        .unwrap();
        let errs = c.validate(&Path::new("spec.containers").index(0), &BTreeSet::new());
        let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        let expect_prefixes = [
            "spec.containers[0].name: Invalid value: \"Web\": a lowercase RFC 1123 label",
            "spec.containers[0].image: Required value",
            "spec.containers[0].ports[0].containerPort: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.containers[0].ports[1].name: Duplicate value: \"http\"",
            "spec.containers[0].env[0].name: Invalid value: \"1X\"",
            "spec.containers[0].volumeMounts[0].name: Not found: \"data\"",
            "spec.containers[0].resources.requests[cpu]: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
            "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
        ];
        assert_eq!(msgs.len(), expect_prefixes.len(), "{msgs:#?}");
        for (m, want) in msgs.iter().zip(expect_prefixes) {
            assert!(m.starts_with(want), "{m}\n  does not start with\n{want}");
        }
    }

    #[test]
    fn probe_needs_exactly_one_handler() {
        let p = Probe::default();
        let errs = p.validate(&Path::new("livenessProbe"), true);
        assert_eq!(
            errs[0].to_string(),
            "livenessProbe: Required value: must specify a handler type"
        );
        let two: Probe = serde_json::from_value(serde_json::json!({
            "exec": {"command": ["true"]}, "tcpSocket": {"port": 80}
        }))
        .unwrap();
        assert_eq!(two.validate(&Path::new("p"), false).len(), 1);
    }
}
