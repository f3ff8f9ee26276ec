//! `meta.k8s.io/v1 Table` responses, what `kubectl get` prints: columns like
//! Kubernetes' for pods, deployments, replica sets, nodes, services and
//! namespaces, NAME and AGE for the rest. Columns with priority 1 are shown
//! by `-o wide` only.

use corral_api::resource::ResourceInfo;
use corral_api::Time;
use serde_json::{json, Value};

use super::objects::meta_str;

struct Column {
    name: &'static str,
    kind: &'static str,
    priority: u8,
}

const fn col(name: &'static str, kind: &'static str, priority: u8) -> Column {
    Column {
        name,
        kind,
        priority,
    }
}

fn columns(kind: &str) -> Vec<Column> {
    let name = col("Name", "string", 0);
    let age = col("Age", "string", 0);
    match kind {
        "Pod" => vec![
            name,
            col("Ready", "string", 0),
            col("Status", "string", 0),
            col("Restarts", "string", 0),
            age,
            col("IP", "string", 1),
            col("Node", "string", 1),
            col("Nominated Node", "string", 1),
            col("Readiness Gates", "string", 1),
        ],
        "Deployment" => vec![
            name,
            col("Ready", "string", 0),
            col("Up-to-date", "integer", 0),
            col("Available", "integer", 0),
            age,
            col("Containers", "string", 1),
            col("Images", "string", 1),
            col("Selector", "string", 1),
        ],
        "ReplicaSet" => vec![
            name,
            col("Desired", "integer", 0),
            col("Current", "integer", 0),
            col("Ready", "integer", 0),
            age,
            col("Containers", "string", 1),
            col("Images", "string", 1),
            col("Selector", "string", 1),
        ],
        "Node" => vec![
            name,
            col("Status", "string", 0),
            col("Roles", "string", 0),
            age,
            col("Version", "string", 0),
            col("Internal-IP", "string", 1),
            col("External-IP", "string", 1),
            col("OS-Image", "string", 1),
            col("Kernel-Version", "string", 1),
            col("Container-Runtime", "string", 1),
        ],
        "Service" => vec![
            name,
            col("Type", "string", 0),
            col("Cluster-IP", "string", 0),
            col("External-IP", "string", 0),
            col("Port(s)", "string", 0),
            age,
            col("Selector", "string", 1),
        ],
        "Namespace" => vec![name, col("Status", "string", 0), age],
        "Lease" => vec![name, col("Holder", "string", 0), age],
        "ConfigMap" | "Secret" => vec![name, col("Data", "integer", 0), age],
        _ => vec![name, age],
    }
}

/// The Table of `items` (all of kind `info`).
pub fn table(info: &ResourceInfo, items: &[Value], rv: &str, cont: &str) -> Value {
    let now = Time::now().unix_seconds();
    let defs: Vec<Value> = columns(info.kind)
        .iter()
        .map(|c| {
            json!({"name": c.name, "type": c.kind, "format": if c.name == "Name" {"name"} else {""},
                   "description": "", "priority": c.priority})
        })
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|o| json!({"cells": cells(info.kind, o, now), "object": o}))
        .collect();
    let mut meta = json!({"resourceVersion": rv});
    if !cont.is_empty() {
        meta["continue"] = cont.into();
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": defs,
        "rows": rows,
    })
}

fn s<'a>(o: &'a Value, pointer: &str) -> &'a str {
    o.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn i(o: &Value, pointer: &str) -> i64 {
    o.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn arr<'a>(o: &'a Value, pointer: &str) -> &'a [Value] {
    o.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn none_if_empty(v: String) -> String {
    if v.is_empty() {
        "<none>".into()
    } else {
        v
    }
}

fn cells(kind: &str, o: &Value, now: i64) -> Vec<Value> {
    let name = Value::from(meta_str(o, "name"));
    let age = Value::from(age(o, now));
    match kind {
        "Pod" => pod_cells(o, name, age),
        "Deployment" => {
            let desired = o
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let mut c = vec![
                name,
                format!("{}/{desired}", i(o, "/status/readyReplicas")).into(),
                i(o, "/status/updatedReplicas").into(),
                i(o, "/status/availableReplicas").into(),
                age,
            ];
            c.extend(workload_wide(o));
            c
        }
        "ReplicaSet" => {
            let mut c = vec![
                name,
                o.pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1)
                    .into(),
                i(o, "/status/replicas").into(),
                i(o, "/status/readyReplicas").into(),
                age,
            ];
            c.extend(workload_wide(o));
            c
        }
        "Node" => node_cells(o, name, age),
        "Service" => service_cells(o, name, age),
        "Namespace" => vec![name, s(o, "/status/phase").into(), age],
        "Lease" => vec![name, s(o, "/spec/holderIdentity").into(), age],
        "ConfigMap" | "Secret" => {
            let count = |p: &str| {
                o.pointer(p)
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len())
            };
            vec![
                name,
                (count("/data") + count("/binaryData") + count("/stringData")).into(),
                age,
            ]
        }
        _ => vec![name, age],
    }
}

fn pod_cells(o: &Value, name: Value, age: Value) -> Vec<Value> {
    let statuses = arr(o, "/status/containerStatuses");
    let total = arr(o, "/spec/containers").len();
    let ready = statuses
        .iter()
        .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
        .count();
    let restarts: i64 = statuses
        .iter()
        .map(|c| c.get("restartCount").and_then(Value::as_i64).unwrap_or(0))
        .sum();
    let mut status = s(o, "/status/phase").to_string();
    if !s(o, "/status/reason").is_empty() {
        status = s(o, "/status/reason").to_string();
    }
    for c in statuses {
        let waiting = c.pointer("/state/waiting/reason").and_then(Value::as_str);
        let terminated = c
            .pointer("/state/terminated/reason")
            .and_then(Value::as_str);
        if let Some(r) = waiting.or(terminated).filter(|r| !r.is_empty()) {
            status = r.to_string();
        }
    }
    if o.pointer("/metadata/deletionTimestamp").is_some() {
        status = "Terminating".into();
    }
    let node = none_if_empty(s(o, "/spec/nodeName").to_string());
    let ip = none_if_empty(s(o, "/status/podIP").to_string());
    vec![
        name,
        format!("{ready}/{total}").into(),
        status.into(),
        restarts.to_string().into(),
        age,
        ip.into(),
        node.into(),
        "<none>".into(),
        "<none>".into(),
    ]
}

fn workload_wide(o: &Value) -> Vec<Value> {
    let containers = arr(o, "/spec/template/spec/containers");
    let join = |field: &str| {
        containers
            .iter()
            .filter_map(|c| c.get(field).and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(",")
    };
    let selector = o
        .pointer("/spec/selector")
        .and_then(|s| serde_json::from_value::<corral_api::LabelSelector>(s.clone()).ok())
        .map(|s| s.to_selector().to_string())
        .unwrap_or_default();
    vec![
        join("name").into(),
        join("image").into(),
        none_if_empty(selector).into(),
    ]
}

fn node_cells(o: &Value, name: Value, age: Value) -> Vec<Value> {
    let ready = arr(o, "/status/conditions")
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        .and_then(|c| c.get("status").and_then(Value::as_str));
    let mut status = match ready {
        Some("True") => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if o.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    let roles: Vec<&str> = o
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|l| {
            l.keys()
                .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                .collect()
        })
        .unwrap_or_default();
    let address = |t: &str| {
        arr(o, "/status/addresses")
            .iter()
            .find(|a| a.get("type").and_then(Value::as_str) == Some(t))
            .and_then(|a| a.get("address").and_then(Value::as_str))
            .unwrap_or("<none>")
            .to_string()
    };
    vec![
        name,
        status.into(),
        none_if_empty(roles.join(",")).into(),
        age,
        s(o, "/status/nodeInfo/kubeletVersion").into(),
        address("InternalIP").into(),
        address("ExternalIP").into(),
        s(o, "/status/nodeInfo/osImage").into(),
        s(o, "/status/nodeInfo/kernelVersion").into(),
        s(o, "/status/nodeInfo/containerRuntimeVersion").into(),
    ]
}

fn service_cells(o: &Value, name: Value, age: Value) -> Vec<Value> {
    let ports: Vec<String> = arr(o, "/spec/ports")
        .iter()
        .map(|p| {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            match p.get("nodePort").and_then(Value::as_i64) {
                Some(n) => format!("{port}:{n}/{proto}"),
                None => format!("{port}/{proto}"),
            }
        })
        .collect();
    let external: Vec<&str> = arr(o, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let selector: Vec<String> = o
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    let type_ = s(o, "/spec/type");
    vec![
        name,
        (if type_.is_empty() { "ClusterIP" } else { type_ }).into(),
        none_if_empty(s(o, "/spec/clusterIP").to_string()).into(),
        none_if_empty(external.join(",")).into(),
        none_if_empty(ports.join(",")).into(),
        age,
        none_if_empty(selector.join(",")).into(),
    ]
}

fn age(o: &Value, now: i64) -> String {
    let created = o
        .pointer("/metadata/creationTimestamp")
        .and_then(|t| serde_json::from_value::<Time>(t.clone()).ok());
    match created {
        Some(t) => human_duration(now - t.unix_seconds()),
        None => "<unknown>".into(),
    }
}

/// kubectl's short durations: `45s`, `5m12s`, `3h20m`, `4d`, `2y100d`.
pub fn human_duration(secs: i64) -> String {
    let secs = secs.max(0);
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        let rest = secs % 60;
        if rest == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{rest}s")
        }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        let rest = m % 60;
        if rest == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{rest}m")
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        let rest = h % 24;
        if rest == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{rest}h")
        }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else if d < 365 * 8 {
        let rest = d % 365;
        if rest == 0 {
            format!("{}y", d / 365)
        } else {
            format!("{}y{rest}d", d / 365)
        }
    } else {
        format!("{}y", d / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_api::resource::by_plural;

    #[test]
    fn durations() {
        for (s, want) in [
            (5, "5s"),
            (119, "119s"),
            (312, "5m12s"),
            (600, "10m"),
            (3 * 3600 + 1200, "3h20m"),
            (20 * 3600, "20h"),
            (4 * 86400, "4d"),
            (100 * 86400, "100d"),
        ] {
            assert_eq!(human_duration(s), want);
        }
    }

    #[test]
    fn pod_rows() {
        let pod = json!({"metadata": {"name": "web", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.5", "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 2},
                {"name": "b", "ready": false, "restartCount": 1,
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        let t = table(by_plural("", "pods").unwrap(), &[pod], "9", "");
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[0], "web");
        assert_eq!(cells[1], "1/2");
        assert_eq!(cells[2], "CrashLoopBackOff");
        assert_eq!(cells[3], "3");
        assert_eq!(cells[5], "10.0.0.5");
        assert_eq!(cells[6], "n1");
        assert_eq!(t["columnDefinitions"].as_array().unwrap().len(), 9);
        assert_eq!(t["metadata"]["resourceVersion"], "9");
    }
}
