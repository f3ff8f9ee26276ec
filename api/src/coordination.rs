//! coordination.k8s.io/v1 Lease: node heartbeats and the masters' leader lock.

use serde::{Deserialize, Serialize};

use crate::meta::{validate_subdomain_name, ObjectMeta};
use crate::resource::impl_resource;
use crate::time::MicroTime;
use crate::validation::{ErrorList, FieldError, Path};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Lease {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: LeaseSpec,
}

impl_resource!(Lease, "coordination.k8s.io", "Lease");

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct LeaseSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder_identity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_duration_seconds: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acquire_time: Option<MicroTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renew_time: Option<MicroTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_transitions: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_holder: Option<String>,
}

impl Lease {
    /// Whether the holder's lease has run out at `now` (no renewal or no
    /// duration counts as expired).
    pub fn is_expired(&self, now: MicroTime) -> bool {
        match (self.spec.renew_time, self.spec.lease_duration_seconds) {
            (Some(renew), Some(secs)) => {
                now.unix_micros() > renew.unix_micros() + i64::from(secs) * 1_000_000
            }
            _ => true,
        }
    }

    pub fn validate(&self) -> ErrorList {
        let mut errs = self.metadata.validate(true, validate_subdomain_name);
        let spec = Path::new("spec");
        if let Some(d) = self.spec.lease_duration_seconds.filter(|d| *d <= 0) {
            errs.push(FieldError::invalid(
                &spec.child("leaseDurationSeconds"),
                d,
                "must be greater than 0",
            ));
        }
        if let Some(t) = self.spec.lease_transitions.filter(|t| *t < 0) {
            errs.push(FieldError::invalid(
                &spec.child("leaseTransitions"),
                t,
                "must be greater than or equal to 0",
            ));
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_round_trip_with_microseconds() {
        let json = serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "node-1", "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40,
                     "acquireTime": "2026-11-26T01:02:03.000000Z",
                     "renewTime": "2026-11-26T01:02:13.123456Z", "leaseTransitions": 2}
        });
        let lease: Lease = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&lease).unwrap(), json);
        assert!(lease.validate().is_empty());
        let renew = lease.spec.renew_time.unwrap();
        assert!(!lease.is_expired(MicroTime::from_unix_micros(
            renew.unix_micros() + 40_000_000
        )));
        assert!(lease.is_expired(MicroTime::from_unix_micros(
            renew.unix_micros() + 40_000_001
        )));
        assert!(Lease::default().is_expired(renew));
    }
}
