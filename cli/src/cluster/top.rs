//! `corral top nodes|pods`, as kubectl prints them, computed here from each
//! node's summary API (`nodes/{name}/proxy/stats/summary`, which the master
//! forwards to the agent) instead of a metrics-server.
//!
//! CPU is `usageNanoCores`. The agent computes it against the previous
//! request's sample of the same cgroup and leaves it out on the first one;
//! when any is missing, a second summary is fetched [`SECOND_SAMPLE`] later
//! and the rate is taken from it, else from the two samples'
//! `usageCoreNanoSeconds` over the time between them. Memory is
//! `workingSetBytes`; percentages are of the Node's allocatable.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use corral_api::Quantity;
use serde_json::Value;

use super::args::TopVerb;
use super::client::Client;
use super::output::print_table;
use super::Error;

/// Time between the two samples a missing rate is computed from.
pub const SECOND_SAMPLE: Duration = Duration::from_millis(500);

/// What one summary says of a node or pod.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub nano_cores: Option<u64>,
    pub cumulative_ns: Option<u64>,
    pub working_set: Option<u64>,
}

/// `node/NAME` and `pod/NS/NAME` keys to their usage, per summary fetched.
#[derive(Debug, Default)]
struct Sample {
    usage: BTreeMap<String, Usage>,
    /// Nodes whose summary could not be read, with why.
    failed: BTreeMap<String, Error>,
    at: Option<Instant>,
}

pub fn run(c: &Client, v: &TopVerb) -> Result<(), Error> {
    let nodes = c.get("/api/v1/nodes")?;
    let nodes: Vec<Value> = nodes["items"].as_array().cloned().unwrap_or_default();
    let names: Vec<String> = nodes
        .iter()
        .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    let usage = sample_twice_if_needed(c, &names);
    let mut out = std::io::stdout().lock();
    match v {
        TopVerb::Nodes { name } => {
            let rows = node_rows(&nodes, &usage, name.as_deref())?;
            print_table(
                &mut out,
                &head(&["NAME", "CPU(cores)", "CPU%", "MEMORY(bytes)", "MEMORY%"]),
                &rows,
            )
        }
        TopVerb::Pods {
            name,
            all_namespaces,
        } => {
            for (node, e) in &usage.failed {
                eprintln!("warning: no metrics from node {node}: {e}");
            }
            let ns = (!*all_namespaces).then_some(c.namespace.as_str());
            let rows = pod_rows(&usage.usage, ns, name.as_deref())?;
            if rows.is_empty() {
                // As kubectl: an empty namespace is not an error, a named pod is.
                let e = no_pods(&usage, ns, name.as_deref());
                if name.is_some() || (usage.usage.is_empty() && !usage.failed.is_empty()) {
                    return Err(e);
                }
                eprintln!("{e}");
                return Ok(());
            }
            let mut cols = vec!["NAME", "CPU(cores)", "MEMORY(bytes)"];
            if ns.is_none() {
                cols.insert(0, "NAMESPACE");
            }
            print_table(&mut out, &head(&cols), &rows)
        }
    }
}

fn head(cols: &[&str]) -> Vec<String> {
    cols.iter().map(|s| s.to_string()).collect()
}

fn no_pods(usage: &Sample, ns: Option<&str>, name: Option<&str>) -> Error {
    if let Some((node, e)) = usage.failed.iter().next() {
        if usage.usage.is_empty() {
            return Error::msg(format!("no metrics from node {node}: {e}"));
        }
    }
    match (ns, name) {
        (Some(ns), Some(n)) => Error::msg(format!("Metrics not available for pod {ns}/{n}")),
        (None, Some(n)) => Error::msg(format!("Metrics not available for pod {n}")),
        (Some(ns), None) => Error::msg(format!("No resources found in {ns} namespace.")),
        (None, None) => Error::msg("No resources found"),
    }
}

fn fetch(c: &Client, nodes: &[String]) -> Sample {
    let mut s = Sample {
        at: Some(Instant::now()),
        ..Sample::default()
    };
    for n in nodes {
        match c.get(&format!("/api/v1/nodes/{n}/proxy/stats/summary")) {
            Ok(v) => s.usage.extend(parse_summary(n, &v)),
            Err(e) => {
                s.failed.insert(n.clone(), e);
            }
        }
    }
    s
}

/// One sample, or two when a rate is missing (see the module's comment).
fn sample_twice_if_needed(c: &Client, nodes: &[String]) -> Sample {
    let first = fetch(c, nodes);
    if first.usage.values().all(|u| u.nano_cores.is_some()) {
        return first;
    }
    std::thread::sleep(SECOND_SAMPLE);
    let mut second = fetch(c, nodes);
    let elapsed = match (first.at, second.at) {
        (Some(a), Some(b)) => b.duration_since(a),
        _ => SECOND_SAMPLE,
    };
    for (key, u) in second.usage.iter_mut() {
        if u.nano_cores.is_none() {
            u.nano_cores = first
                .usage
                .get(key)
                .and_then(|old| rate(old.cumulative_ns?, u.cumulative_ns?, elapsed));
        }
    }
    second
}

/// Cores (in nanocores) used between two cumulative CPU times.
pub fn rate(before_ns: u64, after_ns: u64, elapsed: Duration) -> Option<u64> {
    let dt = elapsed.as_nanos();
    if dt == 0 || after_ns < before_ns {
        return None;
    }
    u64::try_from(u128::from(after_ns - before_ns) * 1_000_000_000 / dt).ok()
}

fn usage_of(v: &Value) -> Option<Usage> {
    let (cpu, mem) = (&v["cpu"], &v["memory"]);
    if cpu.is_null() && mem.is_null() {
        return None;
    }
    Some(Usage {
        nano_cores: cpu["usageNanoCores"].as_u64(),
        cumulative_ns: cpu["usageCoreNanoSeconds"].as_u64(),
        working_set: mem["workingSetBytes"].as_u64(),
    })
}

/// The node's and its pods' usage from one summary (pods without stats,
/// i.e. not running, are left out as metrics-server leaves them out).
pub fn parse_summary(node: &str, v: &Value) -> Vec<(String, Usage)> {
    let mut out = Vec::new();
    if let Some(u) = usage_of(&v["node"]) {
        out.push((format!("node/{node}"), u));
    }
    for p in v["pods"].as_array().into_iter().flatten() {
        let (Some(ns), Some(name)) = (
            p["podRef"]["namespace"].as_str(),
            p["podRef"]["name"].as_str(),
        ) else {
            continue;
        };
        if let Some(u) = usage_of(p) {
            out.push((format!("pod/{ns}/{name}"), u));
        }
    }
    out
}

fn node_rows(
    nodes: &[Value],
    usage: &Sample,
    only: Option<&str>,
) -> Result<Vec<Vec<String>>, Error> {
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for n in nodes {
        let Some(name) = n["metadata"]["name"].as_str() else {
            continue;
        };
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let alloc = &n["status"]["allocatable"];
        let quantity = |k: &str| alloc[k].as_str().and_then(|s| Quantity::parse(s).ok());
        match usage.usage.get(&format!("node/{name}")) {
            Some(u) => known.push(vec![
                name.to_string(),
                u.nano_cores.map_or("<unknown>".into(), cpu),
                percent(u.nano_cores, quantity("cpu").map(|q| q.nanos())),
                u.working_set.map_or("<unknown>".into(), memory),
                percent(u.working_set, quantity("memory").map(|q| q.value().into())),
            ]),
            None => unknown.push(vec![
                name.to_string(),
                "<unknown>".into(),
                "<unknown>".into(),
                "<unknown>".into(),
                "<unknown>".into(),
            ]),
        }
    }
    if let Some(o) = only {
        if known.is_empty() && unknown.is_empty() {
            return Err(Error::msg(format!("nodes \"{o}\" not found")));
        }
        if known.is_empty() {
            let why = usage
                .failed
                .get(o)
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            return Err(Error::msg(format!(
                "metrics not available for node {o}{why}"
            )));
        }
    }
    // As kubectl: nodes without metrics last.
    known.extend(unknown);
    Ok(known)
}

fn pod_rows(
    usage: &BTreeMap<String, Usage>,
    ns: Option<&str>,
    only: Option<&str>,
) -> Result<Vec<Vec<String>>, Error> {
    let mut rows = Vec::new();
    for (key, u) in usage {
        let Some(rest) = key.strip_prefix("pod/") else {
            continue;
        };
        let Some((pns, name)) = rest.split_once('/') else {
            continue;
        };
        if ns.is_some_and(|n| n != pns) || only.is_some_and(|o| o != name) {
            continue;
        }
        let mut row = vec![
            name.to_string(),
            u.nano_cores.map_or("<unknown>".into(), cpu),
            u.working_set.map_or("<unknown>".into(), memory),
        ];
        if ns.is_none() {
            row.insert(0, pns.to_string());
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Millicores, as kubectl prints them.
pub fn cpu(nano_cores: u64) -> String {
    format!("{}m", nano_cores / 1_000_000)
}

/// Mebibytes as kubectl prints them; under 1 MiB in KiB, so that a small
/// process does not show as 0.
pub fn memory(bytes: u64) -> String {
    if bytes > 0 && bytes < 1 << 20 {
        return format!("{}Ki", bytes.div_ceil(1024));
    }
    format!("{}Mi", bytes >> 20)
}

fn percent(used: Option<u64>, of: Option<i128>) -> String {
    match (used, of) {
        (Some(u), Some(total)) if total > 0 => format!("{}%", i128::from(u) * 100 / total),
        _ => "<unknown>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn summaries_and_rows() {
        let v = json!({
            "node": {"nodeName": "n1",
                "cpu": {"time": "t", "usageNanoCores": 250_000_000u64, "usageCoreNanoSeconds": 9},
                "memory": {"time": "t", "usageBytes": 5, "workingSetBytes": 1u64 << 30}},
            "pods": [
                {"podRef": {"name": "web", "namespace": "default", "uid": "u"},
                 "containers": [],
                 "cpu": {"time": "t", "usageCoreNanoSeconds": 100},
                 "memory": {"time": "t", "usageBytes": 1, "workingSetBytes": 3u64 << 20}},
                {"podRef": {"name": "down", "namespace": "default", "uid": "v"}, "containers": []},
                {"podRef": {"name": "dns", "namespace": "kube-system", "uid": "w"}, "containers": [],
                 "cpu": {"time": "t", "usageNanoCores": 2_000_000u64, "usageCoreNanoSeconds": 1},
                 "memory": {"time": "t", "usageBytes": 1, "workingSetBytes": 4000}}
            ]
        });
        let s = Sample {
            usage: parse_summary("n1", &v).into_iter().collect(),
            ..Sample::default()
        };
        assert_eq!(s.usage.len(), 3, "{:?}", s.usage);
        assert_eq!(s.usage["pod/default/web"].nano_cores, None);
        assert_eq!(s.usage["pod/default/web"].cumulative_ns, Some(100));
        let node = json!({"metadata": {"name": "n1"},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi"}}});
        let gone = json!({"metadata": {"name": "n0"}, "status": {}});
        let rows = node_rows(&[gone, node.clone()], &s, None).unwrap();
        assert_eq!(rows[0], ["n1", "250m", "12%", "1024Mi", "25%"]);
        assert_eq!(rows[1][0], "n0");
        assert_eq!(rows[1][1], "<unknown>");
        assert!(node_rows(&[node], &s, Some("nx")).is_err());
        let rows = pod_rows(&s.usage, Some("default"), None).unwrap();
        assert_eq!(rows, vec![vec!["web", "<unknown>", "3Mi"]]);
        let rows = pod_rows(&s.usage, None, None).unwrap();
        assert_eq!(rows[0], ["default", "web", "<unknown>", "3Mi"]);
        assert_eq!(rows[1], ["kube-system", "dns", "2m", "4Ki"]);
        assert!(pod_rows(&s.usage, Some("default"), Some("nope"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn rates_and_formats() {
        let half = Duration::from_millis(500);
        assert_eq!(rate(1_000, 50_001_000, half), Some(100_000_000));
        assert_eq!(rate(5, 4, half), None);
        assert_eq!(rate(1, 2, Duration::ZERO), None);
        assert_eq!(cpu(1_999_999), "1m");
        assert_eq!(memory(0), "0Mi");
        assert_eq!(memory(1), "1Ki");
        assert_eq!(memory(5 << 20), "5Mi");
        assert_eq!(percent(Some(1), Some(3)), "33%");
        assert_eq!(percent(Some(1), None), "<unknown>");
    }
}
