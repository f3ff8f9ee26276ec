//! `corral describe KIND NAME...`: metadata, a kind's key fields (replicas,
//! pod state, node conditions, service ports), the rest of spec as YAML,
//! and the events whose involvedObject is this object.

use std::fmt::Write as _;

use corral_api::resource::ResourceInfo;
use serde_json::Value;

use super::apply::LAST_APPLIED;
use super::args::DescribeArgs;
use super::client::Client;
use super::{kind_and_names, ns_for, Error};

pub fn run(c: &Client, a: &DescribeArgs) -> Result<(), Error> {
    let wanted = if a.names.is_empty() && !a.kind.contains('/') {
        let info = super::kind(&a.kind)?;
        let list = c.get(&info.collection_path(ns_for(info, &c.namespace)))?;
        list["items"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|o| (info, super::delete::meta(o, "name")))
            .collect()
    } else {
        kind_and_names(&a.kind, &a.names)?
    };
    for (i, (info, name)) in wanted.iter().enumerate() {
        let obj = c.get(&info.object_path(ns_for(info, &c.namespace), name))?;
        let events = events_for(c, info, &obj)?;
        if i > 0 {
            println!();
        }
        print!("{}", describe(info, &obj, &events));
    }
    Ok(())
}

fn events_for(c: &Client, info: &ResourceInfo, obj: &Value) -> Result<Vec<Value>, Error> {
    let ev = super::kind("event")?;
    let ns = obj["metadata"]["namespace"]
        .as_str()
        .filter(|s| !s.is_empty());
    let list = c.get(&ev.collection_path(ns))?;
    let uid = &obj["metadata"]["uid"];
    let name = &obj["metadata"]["name"];
    let mut out: Vec<Value> = list["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|e| {
            let io = &e["involvedObject"];
            io["kind"] == info.kind
                && io["name"] == *name
                && (io["uid"].is_null() || io["uid"] == "" || io["uid"] == *uid)
        })
        .cloned()
        .collect();
    out.sort_by_key(|e| e["lastTimestamp"].as_str().unwrap_or("").to_string());
    Ok(out)
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "<none>".into(),
        Value::String(s) if s.is_empty() => "<none>".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn map_lines(out: &mut String, title: &str, v: &Value) {
    let entries: Vec<String> = v
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.as_str() != LAST_APPLIED)
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(&v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "{title:<20}{}",
        entries.first().map_or("<none>", String::as_str)
    );
    for e in entries.iter().skip(1) {
        let _ = writeln!(out, "{:<20}{e}", "");
    }
}

pub fn describe(info: &ResourceInfo, obj: &Value, events: &[Value]) -> String {
    let m = &obj["metadata"];
    let mut out = String::new();
    let _ = writeln!(out, "{:<20}{}", "Name:", s(&m["name"]));
    if info.namespaced {
        let _ = writeln!(out, "{:<20}{}", "Namespace:", s(&m["namespace"]));
    }
    map_lines(&mut out, "Labels:", &m["labels"]);
    map_lines(&mut out, "Annotations:", &m["annotations"]);
    let _ = writeln!(
        out,
        "{:<20}{}",
        "CreationTimestamp:",
        s(&m["creationTimestamp"])
    );
    key_fields(&mut out, info.kind, obj);
    if let Some(spec) = obj.get("spec").filter(|v| !v.is_null()) {
        let _ = writeln!(out, "Spec:");
        indent(&mut out, &yaml_serde::to_string(spec).unwrap_or_default());
    }
    events_section(&mut out, events);
    out
}

fn key_fields(out: &mut String, kind: &str, o: &Value) {
    let (sp, st) = (&o["spec"], &o["status"]);
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    match kind {
        "Deployment" | "ReplicaSet" => {
            let _ = writeln!(
                out,
                "{:<20}{} desired | {} updated | {} total | {} available | {} unavailable",
                "Replicas:",
                n(&sp["replicas"]),
                n(&st["updatedReplicas"]),
                n(&st["replicas"]),
                n(&st["availableReplicas"]),
                n(&st["unavailableReplicas"])
            );
            let sel = sp["selector"]["matchLabels"].as_object().map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join(",")
            });
            let _ = writeln!(out, "{:<20}{}", "Selector:", sel.unwrap_or_default());
        }
        "Pod" => {
            let _ = writeln!(out, "{:<20}{}", "Node:", s(&sp["nodeName"]));
            let _ = writeln!(out, "{:<20}{}", "Status:", s(&st["phase"]));
            let _ = writeln!(out, "{:<20}{}", "IP:", s(&st["podIP"]));
        }
        "Node" => {
            let cordoned = sp["unschedulable"].as_bool().unwrap_or(false);
            let _ = writeln!(out, "{:<20}{cordoned}", "Unschedulable:");
            for c in st["conditions"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                let _ = writeln!(
                    out,
                    "{:<20}{}={} {}",
                    "Condition:",
                    s(&c["type"]),
                    s(&c["status"]),
                    s(&c["message"])
                );
            }
        }
        "Service" => {
            let _ = writeln!(out, "{:<20}{}", "Type:", s(&sp["type"]));
            let _ = writeln!(out, "{:<20}{}", "IP:", s(&sp["clusterIP"]));
        }
        _ => {}
    }
    if let Some(status) = o
        .get("status")
        .filter(|v| v.as_object().is_some_and(|m| !m.is_empty()))
    {
        let _ = writeln!(out, "Status:");
        indent(out, &yaml_serde::to_string(status).unwrap_or_default());
    }
}

fn indent(out: &mut String, text: &str) {
    for line in text.lines() {
        let _ = writeln!(out, "  {line}");
    }
}

fn events_section(out: &mut String, events: &[Value]) {
    if events.is_empty() {
        let _ = writeln!(out, "Events:             <none>");
        return;
    }
    let _ = writeln!(out, "Events:");
    let head = ["Type", "Reason", "Last Seen", "From", "Message"];
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                s(&e["type"]),
                s(&e["reason"]),
                s(&e["lastTimestamp"]),
                s(&e["source"]["component"]),
                s(&e["message"]),
            ]
        })
        .collect();
    let mut buf = Vec::new();
    let _ = crate::table::print(&mut buf, &head, &rows);
    indent(out, &String::from_utf8_lossy(&buf));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deployment_summary_and_events() {
        let info = super::super::kind("deploy").unwrap();
        let d = json!({
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                          "annotations": {LAST_APPLIED: "{}"}},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}},
            "status": {}
        });
        let ev = json!({"type": "Normal", "reason": "ScalingReplicaSet", "message": "scaled up",
                        "involvedObject": {"kind": "Deployment", "name": "web"}});
        let text = describe(info, &d, &[ev]);
        assert!(text.contains("Replicas:           3 desired"), "{text}");
        assert!(text.contains("Selector:           app=web"), "{text}");
        assert!(text.contains("ScalingReplicaSet"), "{text}");
        assert!(!text.contains(LAST_APPLIED), "{text}");
    }
}
