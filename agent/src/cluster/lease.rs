//! The heartbeat: the Lease `kube-node-lease/<node>` renewed every
//! `--lease-renew`, which the master's node lifecycle controller reads.

use corral_api::coordination::{Lease, LeaseSpec};
use corral_api::core::Node;
use corral_api::{MicroTime, ObjectMeta, OwnerReference};
use corral_client::Client;

use super::{Backoff, Quiet};
use crate::config::JoinConfig;

pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// The lease as this node holds it, renewed at `now`; `current` is the
/// server's copy (its metadata and acquire time are kept).
pub fn renewed(current: Option<Lease>, node: &str, duration_secs: i32, now: MicroTime) -> Lease {
    let mut lease = current.unwrap_or_else(|| Lease {
        api_version: "coordination.k8s.io/v1".into(),
        kind: "Lease".into(),
        metadata: ObjectMeta::namespaced(LEASE_NAMESPACE, node),
        spec: LeaseSpec::default(),
    });
    let s = &mut lease.spec;
    if s.holder_identity.as_deref() != Some(node) {
        s.holder_identity = Some(node.to_string());
        s.acquire_time = Some(now);
        s.lease_transitions = Some(s.lease_transitions.map_or(0, |n| n + 1));
    }
    s.lease_duration_seconds = Some(duration_secs);
    s.renew_time = Some(now);
    lease
}

/// Renew (or create) the lease once; the Node's uid makes the lease its
/// dependent, so deleting the Node deletes its lease (as kubelet does).
async fn renew_once(
    client: &Client,
    node: &str,
    duration_secs: i32,
) -> Result<(), corral_client::Error> {
    let current = client.get_opt::<Lease>(LEASE_NAMESPACE, node).await?;
    let create = current.is_none();
    let mut lease = renewed(current, node, duration_secs, MicroTime::now());
    if create {
        if let Ok(Some(n)) = client.get_opt::<Node>("", node).await {
            lease.metadata.owner_references = vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: node.to_string(),
                uid: n.metadata.uid,
                controller: None,
                block_owner_deletion: None,
            }];
        }
        client.create(&lease).await.map(drop)
    } else {
        client.update(&lease).await.map(drop)
    }
}

/// Renew forever: every `lease_renew`, sooner (back-off from 1 s) after a
/// failure while that is shorter.
pub async fn heartbeat(client: Client, node: String, join: JoinConfig) {
    let duration = join.lease_duration.as_secs_f64().ceil().max(1.0) as i32;
    let mut backoff = Backoff::default();
    let mut quiet = Quiet::default();
    let what = format!("renew lease {LEASE_NAMESPACE}/{node}");
    loop {
        let wait = match renew_once(&client, &node, duration).await {
            Ok(()) => {
                quiet.ok(&what);
                backoff.reset();
                join.lease_renew
            }
            Err(e) => {
                quiet.failed(&what, e.to_string());
                backoff.fail().min(join.lease_renew)
            }
        };
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_keeps_acquire_time_and_counts_transitions() {
        let t1 = MicroTime::from_unix_micros(1_000_000);
        let first = renewed(None, "n1", 40, t1);
        assert_eq!(first.metadata.namespace, LEASE_NAMESPACE);
        assert_eq!(first.metadata.name, "n1");
        assert_eq!(first.spec.holder_identity.as_deref(), Some("n1"));
        assert_eq!(first.spec.lease_duration_seconds, Some(40));
        assert_eq!(first.spec.lease_transitions, Some(0));
        let t2 = MicroTime::from_unix_micros(11_000_000);
        let second = renewed(Some(first.clone()), "n1", 40, t2);
        assert_eq!(second.spec.acquire_time, Some(t1));
        assert_eq!(second.spec.renew_time, Some(t2));
        assert_eq!(second.spec.lease_transitions, Some(0));
        assert!(!second.is_expired(MicroTime::from_unix_micros(50_000_000)));
        assert!(second.is_expired(MicroTime::from_unix_micros(52_000_000)));
        let mut taken = second.clone();
        taken.spec.holder_identity = Some("other".into());
        let back = renewed(Some(taken), "n1", 40, t2);
        assert_eq!(back.spec.lease_transitions, Some(1));
    }
}
