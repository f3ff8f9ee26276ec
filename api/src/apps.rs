//! apps/v1 Deployment and ReplicaSet, and the autoscaling/v1 Scale object
//! their `/scale` subresource speaks.

use serde::{Deserialize, Serialize};

use crate::core::PodTemplateSpec;
use crate::intstr::IntOrString;
use crate::meta::{validate_subdomain_name, LabelSelector, ObjectMeta};
use crate::resource::impl_resource;
use crate::skip::{is_false, is_zero_i32, is_zero_i64};
use crate::time::Time;
use crate::validation::{ErrorList, FieldError, Path};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Deployment {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: DeploymentSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<DeploymentStatus>,
}

impl_resource!(Deployment, "apps", "Deployment");

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct DeploymentSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    pub template: PodTemplateSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<DeploymentStrategy>,
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub min_ready_seconds: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<i32>,
    #[serde(skip_serializing_if = "is_false")]
    pub paused: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeploymentStrategyType {
    RollingUpdate,
    Recreate,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct DeploymentStrategy {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<DeploymentStrategyType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdateDeployment>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct RollingUpdateDeployment {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<IntOrString>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct DeploymentStatus {
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub observed_generation: i64,
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub replicas: i32,
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub updated_replicas: i32,
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub ready_replicas: i32,
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub available_replicas: i32,
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub unavailable_replicas: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminating_replicas: Option<i32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<AppsCondition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collision_count: Option<i32>,
}

/// A Deployment or ReplicaSet condition (`Available`, `Progressing`, `ReplicaFailure`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppsCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: crate::core::ConditionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ReplicaSet {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: ReplicaSetSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<ReplicaSetStatus>,
}

impl_resource!(ReplicaSet, "apps", "ReplicaSet");

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ReplicaSetSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub min_ready_seconds: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    pub template: PodTemplateSpec,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ReplicaSetStatus {
    pub replicas: i32,
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub fully_labeled_replicas: i32,
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub ready_replicas: i32,
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub available_replicas: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminating_replicas: Option<i32>,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub observed_generation: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<AppsCondition>,
}

/// autoscaling/v1 Scale, read and written through `/scale`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Scale {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: ScaleSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<ScaleStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScaleSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScaleStatus {
    pub replicas: i32,
    /// The label selector in string form (`app=web`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub selector: String,
}

fn nonnegative(errs: &mut ErrorList, path: &Path, v: Option<i32>) {
    if let Some(v) = v.filter(|v| *v < 0) {
        errs.push(FieldError::invalid(
            path,
            v,
            "must be greater than or equal to 0",
        ));
    }
}

/// The selector/template rules shared by Deployment and ReplicaSet.
fn validate_workload(
    selector: Option<&LabelSelector>,
    template: &PodTemplateSpec,
    replicas: Option<i32>,
    min_ready: i32,
) -> ErrorList {
    let spec = Path::new("spec");
    let mut errs = ErrorList::new();
    nonnegative(&mut errs, &spec.child("replicas"), replicas);
    nonnegative(&mut errs, &spec.child("minReadySeconds"), Some(min_ready));
    match selector {
        None => errs.push(FieldError::required(&spec.child("selector"))),
        Some(s) if s.is_empty() => errs.push(FieldError::invalid(
            &spec.child("selector"),
            "",
            "empty selector is invalid for deployment",
        )),
        Some(s) => {
            for (i, e) in s.match_expressions.iter().enumerate() {
                let p = spec
                    .child("selector")
                    .child("matchExpressions")
                    .index(i)
                    .child("values");
                errs.extend(validate_selector_values(e, &p));
            }
            if !s.matches(&template.metadata.labels) {
                let labels = serde_json::to_string(&template.metadata.labels).unwrap_or_default();
                errs.push(FieldError::invalid(
                    &spec.child("template").child("metadata").child("labels"),
                    labels,
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
    errs.extend(template.validate(&spec.child("template")));
    errs
}

fn validate_selector_values(e: &crate::meta::LabelSelectorRequirement, path: &Path) -> ErrorList {
    use crate::meta::LabelSelectorOperator as Op;
    match (e.operator, e.values.is_empty()) {
        (Op::In | Op::NotIn, true) => vec![FieldError::required_because(
            path,
            "must be specified when `operator` is 'In' or 'NotIn'",
        )],
        (Op::Exists | Op::DoesNotExist, false) => vec![FieldError::forbidden(
            path,
            "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        )],
        _ => ErrorList::new(),
    }
}

fn validate_surge(errs: &mut ErrorList, path: &Path, v: &IntOrString) {
    match v {
        IntOrString::Int(n) if *n < 0 => {
            errs.push(FieldError::invalid(path, *n, "must be greater than or equal to 0"))
        }
        IntOrString::String(s) => match s.strip_suffix('%').map(str::parse::<i32>) {
            Some(Ok(p)) if (0..=100).contains(&p) => {}
            Some(Ok(_)) => errs.push(FieldError::invalid(path, s.as_str(), "must not be greater than 100%")),
            _ => errs.push(FieldError::invalid(
                path,
                s.as_str(),
                "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
            )),
        },
        IntOrString::Int(_) => {}
    }
}

fn is_zero(v: &Option<IntOrString>) -> bool {
    match v {
        None => false,
        Some(IntOrString::Int(n)) => *n == 0,
        Some(IntOrString::String(s)) => s == "0%",
    }
}

impl DeploymentStrategy {
    fn validate(&self, path: &Path) -> ErrorList {
        let mut errs = ErrorList::new();
        let ru_path = path.child("rollingUpdate");
        match (self.type_, &self.rolling_update) {
            (Some(DeploymentStrategyType::Recreate), Some(_)) => errs.push(FieldError::forbidden(
                &ru_path,
                "may not be specified when strategy `type` is 'Recreate'",
            )),
            (_, Some(ru)) => {
                let surge = ru_path.child("maxSurge");
                let unavailable = ru_path.child("maxUnavailable");
                if let Some(v) = &ru.max_surge {
                    validate_surge(&mut errs, &surge, v);
                }
                if let Some(v) = &ru.max_unavailable {
                    validate_surge(&mut errs, &unavailable, v);
                }
                if is_zero(&ru.max_surge) && is_zero(&ru.max_unavailable) {
                    errs.push(FieldError::invalid(
                        &unavailable,
                        0,
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
            }
            _ => {}
        }
        errs
    }
}

impl Deployment {
    /// replicas 1, strategy RollingUpdate 25%/25%, revisionHistoryLimit 10,
    /// progressDeadlineSeconds 600, and the pod template's defaults.
    pub fn apply_defaults(&mut self) {
        let spec = &mut self.spec;
        spec.replicas.get_or_insert(1);
        let strategy = spec
            .strategy
            .get_or_insert_with(DeploymentStrategy::default);
        let kind = *strategy
            .type_
            .get_or_insert(DeploymentStrategyType::RollingUpdate);
        if kind == DeploymentStrategyType::RollingUpdate {
            let ru = strategy
                .rolling_update
                .get_or_insert_with(RollingUpdateDeployment::default);
            ru.max_unavailable.get_or_insert_with(|| "25%".into());
            ru.max_surge.get_or_insert_with(|| "25%".into());
        }
        spec.revision_history_limit.get_or_insert(10);
        spec.progress_deadline_seconds.get_or_insert(600);
        spec.template.apply_defaults();
    }

    pub fn validate(&self) -> ErrorList {
        let spec = &self.spec;
        let path = Path::new("spec");
        let mut errs = self.metadata.validate(true, validate_subdomain_name);
        errs.extend(validate_workload(
            spec.selector.as_ref(),
            &spec.template,
            spec.replicas,
            spec.min_ready_seconds,
        ));
        if let Some(s) = &spec.strategy {
            errs.extend(s.validate(&path.child("strategy")));
        }
        nonnegative(
            &mut errs,
            &path.child("revisionHistoryLimit"),
            spec.revision_history_limit,
        );
        if let Some(d) = spec.progress_deadline_seconds {
            if d <= spec.min_ready_seconds {
                errs.push(FieldError::invalid(
                    &path.child("progressDeadlineSeconds"),
                    d,
                    "must be greater than minReadySeconds",
                ));
            }
        }
        errs
    }

    pub fn replicas(&self) -> i32 {
        self.spec.replicas.unwrap_or(1)
    }
}

impl ReplicaSet {
    pub fn apply_defaults(&mut self) {
        self.spec.replicas.get_or_insert(1);
        self.spec.template.apply_defaults();
    }

    pub fn validate(&self) -> ErrorList {
        let spec = &self.spec;
        let mut errs = self.metadata.validate(true, validate_subdomain_name);
        errs.extend(validate_workload(
            spec.selector.as_ref(),
            &spec.template,
            spec.replicas,
            spec.min_ready_seconds,
        ));
        errs
    }

    pub fn replicas(&self) -> i32 {
        self.spec.replicas.unwrap_or(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{PullPolicy, RestartPolicy};

    /// A Deployment written as for Kubernetes: probes, resources, env from
    /// fields/ConfigMaps/Secrets, volumes.
    pub(crate) const DEPLOYMENT: &str = r#"{
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                     "annotations": {"deployment.kubernetes.io/revision": "3"}},
        "spec": {
            "replicas": 3,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web", "tier": "front"}},
                "spec": {
                    "containers": [{
                        "name": "web",
                        "image": "busybox:1.36",
                        "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "env": [
                            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            {"name": "POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}},
                            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "web-config", "key": "mode"}}},
                            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "web-secret", "key": "token", "optional": true}}},
                            {"name": "GREETING", "value": "hello"}
                        ],
                        "envFrom": [{"configMapRef": {"name": "web-env"}, "prefix": "CFG_"}],
                        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}},
                        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "initialDelaySeconds": 1, "periodSeconds": 2},
                        "livenessProbe": {"tcpSocket": {"port": 8080}, "failureThreshold": 5},
                        "startupProbe": {"exec": {"command": ["cat", "/www/index.html"]}, "periodSeconds": 1, "failureThreshold": 30},
                        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "2"]}}},
                        "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "readOnlyRootFilesystem": true,
                                            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}},
                        "volumeMounts": [
                            {"name": "www", "mountPath": "/www"},
                            {"name": "config", "mountPath": "/etc/web", "readOnly": true},
                            {"name": "cache", "mountPath": "/cache", "subPath": "web"}
                        ]
                    }],
                    "initContainers": [{"name": "seed", "image": "busybox:1.36",
                                        "command": ["sh", "-c", "echo hi > /www/index.html"],
                                        "volumeMounts": [{"name": "www", "mountPath": "/www"}]}],
                    "volumes": [
                        {"name": "www", "emptyDir": {}},
                        {"name": "config", "configMap": {"name": "web-config", "items": [{"key": "mode", "path": "mode.txt"}]}},
                        {"name": "cache", "hostPath": {"path": "/var/cache/web", "type": "DirectoryOrCreate"}},
                        {"name": "certs", "secret": {"secretName": "web-tls", "defaultMode": 256}}
                    ],
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]}}},
                    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"}],
                    "terminationGracePeriodSeconds": 10
                }
            }
        },
        "status": {
            "observedGeneration": 4, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3,
            "conditions": [
                {"type": "Available", "status": "True", "lastUpdateTime": "2026-11-26T01:00:00Z",
                 "lastTransitionTime": "2026-11-26T01:00:00Z", "reason": "MinimumReplicasAvailable",
                 "message": "Deployment has minimum availability."},
                {"type": "Progressing", "status": "True", "lastUpdateTime": "2026-11-26T01:02:00Z",
                 "lastTransitionTime": "2026-11-26T00:59:00Z", "reason": "NewReplicaSetAvailable",
                 "message": "ReplicaSet \"web-7d4b9c7f5\" has successfully progressed."}
            ]
        }
    }"#;

    #[test]
    fn deployment_round_trips_and_validates() {
        let input: serde_json::Value = serde_json::from_str(DEPLOYMENT).unwrap();
        let d: Deployment = serde_json::from_value(input.clone()).unwrap();
        assert_eq!(serde_json::to_value(&d).unwrap(), input);
        assert!(d.validate().is_empty(), "{:#?}", d.validate());
        let c = &d.spec.template.spec.containers[0];
        let res = c.resources.as_ref().unwrap();
        assert_eq!(res.request("cpu").unwrap().milli_value(), 100);
        assert_eq!(res.limit("memory").unwrap().value(), 128 << 20);
        let ru = d
            .spec
            .strategy
            .as_ref()
            .unwrap()
            .rolling_update
            .as_ref()
            .unwrap();
        assert_eq!(
            ru.max_surge
                .as_ref()
                .unwrap()
                .scaled_value(3, true)
                .unwrap(),
            1
        );
        assert_eq!(
            ru.max_unavailable
                .as_ref()
                .unwrap()
                .scaled_value(3, false)
                .unwrap(),
            0
        );
    }

    #[test]
    fn null_timestamps_as_kubectl_prints_them() {
        let d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "creationTimestamp": "2026-11-26T01:00:00Z"},
            "spec": {"template": {"metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "busybox", "resources": {}}]}}}
        }))
        .unwrap();
        assert!(d.spec.template.metadata.creation_timestamp.is_none());
        let out = serde_json::to_value(&d).unwrap();
        assert!(out["spec"]["template"]["metadata"]
            .get("creationTimestamp")
            .is_none());
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["resources"],
            serde_json::json!({})
        );
    }

    #[test]
    fn deployment_defaults() {
        let mut d: Deployment = serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "busybox"}]}}}
        }))
        .unwrap();
        d.apply_defaults();
        assert_eq!(d.spec.replicas, Some(1));
        assert_eq!(d.spec.revision_history_limit, Some(10));
        assert_eq!(d.spec.progress_deadline_seconds, Some(600));
        assert_eq!(
            serde_json::to_value(&d.spec.strategy).unwrap(),
            serde_json::json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        let c = &d.spec.template.spec.containers[0];
        assert_eq!(c.image_pull_policy, Some(PullPolicy::Always));
        assert_eq!(
            d.spec.template.spec.restart_policy,
            Some(RestartPolicy::Always)
        );
        assert!(d.validate().is_empty());
        let mut recreate = d.clone();
        recreate.spec.strategy = Some(DeploymentStrategy {
            type_: Some(DeploymentStrategyType::Recreate),
            rolling_update: None,
        });
        recreate.apply_defaults();
        assert!(recreate
            .spec
            .strategy
            .as_ref()
            .unwrap()
            .rolling_update
            .is_none());
    }

    #[test]
    fn deployment_errors() {
        let d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web"},
            "spec": {"replicas": -1,
                     "selector": {"matchLabels": {"app": "web"}},
                     "strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}},
                     "template": {"metadata": {"labels": {"app": "db"}},
                                  "spec": {"restartPolicy": "Never", "containers": [{"name": "web", "image": "busybox"}]}}}
        }))
        .unwrap();
        let msgs: Vec<String> = d.validate().iter().map(|e| e.to_string()).collect();
        let want = [
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            "spec.template.metadata.labels: Invalid value: \"{\\\"app\\\":\\\"db\\\"}\": `selector` does not match template `labels`",
            "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0",
        ];
        assert_eq!(msgs, want);
        let none = Deployment {
            metadata: ObjectMeta::named("x"),
            ..Deployment::default()
        };
        assert!(none
            .validate()
            .iter()
            .any(|e| e.to_string() == "spec.selector: Required value"));
    }

    #[test]
    fn replica_set_round_trip() {
        let json = serde_json::json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-7d4b9c7f5", "namespace": "default",
                         "labels": {"app": "web", "pod-template-hash": "7d4b9c7f5"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                              "uid": "d1", "controller": true, "blockOwnerDeletion": true}]},
            "spec": {"replicas": 2,
                     "selector": {"matchLabels": {"app": "web", "pod-template-hash": "7d4b9c7f5"}},
                     "template": {"metadata": {"labels": {"app": "web", "pod-template-hash": "7d4b9c7f5"}},
                                  "spec": {"containers": [{"name": "web", "image": "busybox:1.36"}]}}},
            "status": {"replicas": 0, "observedGeneration": 1}
        });
        let rs: ReplicaSet = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&rs).unwrap(), json);
        assert!(rs.validate().is_empty());
        assert_eq!(rs.replicas(), 2);
    }

    #[test]
    fn scale_shape() {
        let json = serde_json::json!({
            "apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 5}, "status": {"replicas": 3, "selector": "app=web"}
        });
        let s: Scale = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&s).unwrap(), json);
    }
}
