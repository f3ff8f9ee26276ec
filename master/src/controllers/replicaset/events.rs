//! Events the two controllers record, as Kubernetes' do (`kubectl describe`
//! shows them): best effort, sent in the background, never failing a sync.

use corral_api::core::{Event, EventSource, ObjectReference};
use corral_api::meta::ObjectMeta;
use corral_api::{Resource, Time};
use corral_client::Client;

/// An event about `obj`: `type_` Normal or Warning, Kubernetes' reason.
pub fn event<T: Resource>(
    obj: &T,
    component: &str,
    type_: &str,
    reason: &str,
    message: String,
) -> Event {
    let m = obj.meta();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let now = Time::now();
    Event {
        api_version: "v1".into(),
        kind: "Event".into(),
        metadata: ObjectMeta::namespaced(&m.namespace, &format!("{}.{nanos:x}", m.name)),
        involved_object: ObjectReference {
            kind: T::KIND.into(),
            namespace: m.namespace.clone(),
            name: m.name.clone(),
            uid: m.uid.clone(),
            api_version: T::api_version(),
            resource_version: m.resource_version.clone(),
            field_path: String::new(),
        },
        reason: reason.into(),
        message,
        source: Some(EventSource {
            component: component.into(),
            host: String::new(),
        }),
        first_timestamp: Some(now),
        last_timestamp: Some(now),
        count: 1,
        type_: type_.into(),
        event_time: None,
        series: None,
        action: String::new(),
        related: None,
        reporting_component: component.into(),
        reporting_instance: String::new(),
    }
}

/// Creates the event without waiting; a failure only loses the event.
pub fn record(client: &Client, ev: Event) {
    let client = client.clone();
    tokio::spawn(async move {
        let _ = client.create(&ev).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_api::apps::Deployment;

    #[test]
    fn events_point_at_their_object() {
        let mut d = Deployment::named("prod", "web");
        d.metadata.uid = "u1".into();
        let e = event(
            &d,
            "deployment-controller",
            "Normal",
            "ScalingReplicaSet",
            "m".into(),
        );
        assert!(e.metadata.name.starts_with("web."));
        assert_eq!(e.metadata.namespace, "prod");
        let o = &e.involved_object;
        assert_eq!(
            (o.kind.as_str(), o.api_version.as_str(), o.uid.as_str()),
            ("Deployment", "apps/v1", "u1")
        );
        assert_eq!(e.count, 1);
    }
}
