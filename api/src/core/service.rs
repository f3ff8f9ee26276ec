//! core/v1 Service and Endpoints.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::container::Protocol;
use super::ObjectReference;
use crate::intstr::IntOrString;
use crate::meta::{validate_label_name, ObjectMeta};
use crate::resource::impl_resource;
use crate::validation::{
    invalid_each, is_dns1123_label, is_valid_port_name, is_valid_port_num, validate_labels,
    ErrorList, FieldError, Path,
};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Service {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: ServiceSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<ServiceStatus>,
}

impl_resource!(Service, "", "Service");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceType {
    ClusterIP,
    NodePort,
    LoadBalancer,
    ExternalName,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ServiceSpec {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ServicePort>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
    /// An address, `None` for a headless service, or empty until allocated.
    #[serde(rename = "clusterIP", skip_serializing_if = "String::is_empty")]
    pub cluster_ip: String,
    #[serde(rename = "clusterIPs", skip_serializing_if = "Vec::is_empty")]
    pub cluster_ips: Vec<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<ServiceType>,
    #[serde(rename = "externalIPs", skip_serializing_if = "Vec::is_empty")]
    pub external_ips: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub session_affinity: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_affinity_config: Option<serde_json::Value>,
    #[serde(rename = "loadBalancerIP", skip_serializing_if = "String::is_empty")]
    pub load_balancer_ip: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub load_balancer_source_ranges: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balancer_class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocate_load_balancer_node_ports: Option<bool>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub external_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub external_traffic_policy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub internal_traffic_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check_node_port: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_not_ready_addresses: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ip_families: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_family_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic_distribution: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ServicePort {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
    pub port: i32,
    /// A number or a container port name; the same as `port` when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_port: Option<IntOrString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_port: Option<i32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ServiceStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerStatus>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoadBalancerStatus {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<LoadBalancerIngress>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct LoadBalancerIngress {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ip: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_mode: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<serde_json::Value>,
}

/// Any port a NodePort could be; the API server checks its configured
/// `--service-node-port-range` when it allocates.
const PORT_NUMBERS: std::ops::RangeInclusive<i32> = 1..=65535;

impl Service {
    /// type ClusterIP, protocol TCP, targetPort = port, sessionAffinity None.
    pub fn apply_defaults(&mut self) {
        let spec = &mut self.spec;
        spec.type_.get_or_insert(ServiceType::ClusterIP);
        if spec.session_affinity.is_empty() {
            spec.session_affinity = "None".into();
        }
        for p in &mut spec.ports {
            p.protocol.get_or_insert(Protocol::TCP);
            p.target_port.get_or_insert(IntOrString::Int(p.port));
        }
        if spec.internal_traffic_policy.is_none() {
            spec.internal_traffic_policy = Some("Cluster".into());
        }
        if spec.type_ == Some(ServiceType::NodePort) && spec.external_traffic_policy.is_empty() {
            spec.external_traffic_policy = "Cluster".into();
        }
    }

    pub fn service_type(&self) -> ServiceType {
        self.spec.type_.unwrap_or(ServiceType::ClusterIP)
    }

    pub fn validate(&self) -> ErrorList {
        let mut errs = self.metadata.validate(true, validate_label_name);
        let spec = Path::new("spec");
        let is_external = self.spec.type_ == Some(ServiceType::ExternalName);
        if self.spec.ports.is_empty() && !is_external && self.spec.cluster_ip != "None" {
            errs.push(FieldError::required(&spec.child("ports")));
        }
        let multi = self.spec.ports.len() > 1;
        let mut names = BTreeSet::new();
        let mut seen = BTreeSet::new();
        for (i, p) in self.spec.ports.iter().enumerate() {
            let pp = spec.child("ports").index(i);
            errs.extend(p.validate(&pp, multi, self.service_type()));
            if !p.name.is_empty() && !names.insert(p.name.as_str()) {
                errs.push(FieldError::duplicate(&pp.child("name"), p.name.as_str()));
            }
            if !seen.insert((p.port, p.protocol.unwrap_or(Protocol::TCP))) {
                errs.push(FieldError::duplicate(
                    &pp,
                    format!("{}/{:?}", p.port, p.protocol.unwrap_or(Protocol::TCP)),
                ));
            }
        }
        errs.extend(validate_labels(
            &self.spec.selector,
            &spec.child("selector"),
        ));
        errs
    }
}

impl ServicePort {
    fn validate(&self, path: &Path, multi: bool, type_: ServiceType) -> ErrorList {
        let mut errs = ErrorList::new();
        if self.name.is_empty() && multi {
            errs.push(FieldError::required(&path.child("name")));
        } else if !self.name.is_empty() {
            errs.extend(invalid_each(
                &path.child("name"),
                &self.name,
                is_dns1123_label(&self.name),
            ));
        }
        for m in is_valid_port_num(self.port) {
            errs.push(FieldError::invalid(&path.child("port"), self.port, m));
        }
        match &self.target_port {
            Some(IntOrString::Int(n)) => {
                for m in is_valid_port_num(*n) {
                    errs.push(FieldError::invalid(&path.child("targetPort"), *n, m));
                }
            }
            Some(IntOrString::String(s)) => {
                errs.extend(invalid_each(
                    &path.child("targetPort"),
                    s,
                    is_valid_port_name(s),
                ));
            }
            None => {}
        }
        if let Some(n) = self.node_port.filter(|n| *n != 0) {
            if type_ == ServiceType::ClusterIP {
                errs.push(FieldError::forbidden(
                    &path.child("nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            } else if !PORT_NUMBERS.contains(&n) {
                errs.push(FieldError::invalid(
                    &path.child("nodePort"),
                    n,
                    "must be between 1 and 65535, inclusive",
                ));
            }
        }
        errs
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Endpoints {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subsets: Vec<EndpointSubset>,
}

impl_resource!(Endpoints, "", "Endpoints");

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct EndpointSubset {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<EndpointAddress>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_ready_addresses: Vec<EndpointAddress>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<EndpointPort>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct EndpointAddress {
    pub ip: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<ObjectReference>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct EndpointPort {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub port: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

impl Endpoints {
    pub fn validate(&self) -> ErrorList {
        let mut errs = self.metadata.validate(true, validate_label_name);
        for (i, s) in self.subsets.iter().enumerate() {
            let sp = Path::new("subsets").index(i);
            for (field, list) in [
                ("addresses", &s.addresses),
                ("notReadyAddresses", &s.not_ready_addresses),
            ] {
                for (j, a) in list.iter().enumerate() {
                    if a.ip.parse::<std::net::IpAddr>().is_err() {
                        let p = sp.child(field).index(j).child("ip");
                        errs.push(FieldError::invalid(
                            &p,
                            a.ip.as_str(),
                            "must be a valid IP address",
                        ));
                    }
                }
            }
            for (j, p) in s.ports.iter().enumerate() {
                for m in is_valid_port_num(p.port) {
                    errs.push(FieldError::invalid(
                        &sp.child("ports").index(j).child("port"),
                        p.port,
                        m,
                    ));
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
    fn service_round_trip_defaults_validation() {
        let json = serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "type": "NodePort",
                "selector": {"app": "web"},
                "ports": [
                    {"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080},
                    {"name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"}
                ]
            }
        });
        let mut svc: Service = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&svc).unwrap(), json);
        assert!(svc.validate().is_empty(), "{:?}", svc.validate());
        svc.apply_defaults();
        assert_eq!(svc.spec.ports[0].protocol, Some(Protocol::TCP));
        assert_eq!(
            svc.spec.ports[0].target_port,
            Some(IntOrString::from("http"))
        );
        let mut plain: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db"}, "spec": {"ports": [{"port": 5432}]}
        }))
        .unwrap();
        plain.apply_defaults();
        assert_eq!(plain.service_type(), ServiceType::ClusterIP);
        assert_eq!(
            plain.spec.ports[0].target_port,
            Some(IntOrString::Int(5432))
        );
    }

    #[test]
    fn service_errors() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web.v1"},
            "spec": {"ports": [{"port": 80, "nodePort": 30080}, {"name": "b", "port": 70000}]}
        }))
        .unwrap();
        let msgs: Vec<String> = svc.validate().iter().map(|e| e.to_string()).collect();
        assert!(
            msgs[0].starts_with("metadata.name: Invalid value: \"web.v1\""),
            "{msgs:?}"
        );
        assert_eq!(msgs[1], "spec.ports[0].name: Required value");
        assert_eq!(
            msgs[2],
            "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"
        );
        assert_eq!(
            msgs[3],
            "spec.ports[1].port: Invalid value: 70000: must be between 1 and 65535, inclusive"
        );
        let e = serde_json::from_value::<Service>(serde_json::json!({"spec": {"type": "Cluster"}}))
            .unwrap_err();
        assert!(e.to_string().contains("unknown variant `Cluster`"), "{e}");
    }

    #[test]
    fn endpoints_round_trip() {
        let json = serde_json::json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "web", "namespace": "default"},
            "subsets": [{
                "addresses": [{"ip": "10.88.0.5", "nodeName": "node-1",
                               "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "default", "uid": "u1"}}],
                "notReadyAddresses": [{"ip": "10.88.1.7", "nodeName": "node-2"}],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
            }]
        });
        let ep: Endpoints = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&ep).unwrap(), json);
        assert!(ep.validate().is_empty());
        let mut bad = ep.clone();
        bad.subsets[0].addresses[0].ip = "10.88.0".into();
        assert_eq!(
            bad.validate()[0].path.as_str(),
            "subsets[0].addresses[0].ip"
        );
    }
}
