//! `cordon`, `uncordon` (the node's `spec.unschedulable`) and `drain`
//! (cordon, then delete every pod bound to the node and wait until they
//! are gone).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::args::DrainArgs;
use super::client::{Client, MERGE_PATCH};
use super::delete::meta;
use super::{kind, with_query, Error};

pub fn set_unschedulable(c: &Client, node: &str, on: bool) -> Result<(), Error> {
    let info = kind("node")?;
    let path = info.object_path(None, node);
    let current = c.get(&path)?;
    let word = if on { "cordoned" } else { "uncordoned" };
    if current["spec"]["unschedulable"].as_bool().unwrap_or(false) == on {
        println!("node/{node} already {word}");
        return Ok(());
    }
    // null removes the field, as kubectl's uncordon does.
    let value = if on { Value::Bool(true) } else { Value::Null };
    c.patch(
        &path,
        MERGE_PATCH,
        &json!({"spec": {"unschedulable": value}}),
    )?;
    println!("node/{node} {word}");
    Ok(())
}

fn pods_on(c: &Client, node: &str) -> Result<Vec<Value>, Error> {
    let path = with_query(
        &kind("pod")?.collection_path(None),
        &[("fieldSelector", &format!("spec.nodeName={node}"))],
    );
    Ok(c.get(&path)?["items"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

pub fn drain(c: &Client, a: &DrainArgs) -> Result<(), Error> {
    set_unschedulable(c, &a.node, true)?;
    let pods = kind("pod")?;
    for p in pods_on(c, &a.node)? {
        let (ns, name) = (meta(&p, "namespace"), meta(&p, "name"));
        println!("evicting pod {ns}/{name}");
        match c.delete(&pods.object_path(Some(&ns), &name)) {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    // Pods with finalizers (or an agent still stopping them) linger.
    let deadline = Instant::now() + Duration::from_secs(a.timeout);
    loop {
        let left = pods_on(c, &a.node)?;
        if left.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            let names: Vec<String> = left
                .iter()
                .map(|p| format!("{}/{}", meta(p, "namespace"), meta(p, "name")))
                .collect();
            return Err(Error::msg(format!(
                "drain node/{}: {} pod(s) still present after {}s: {}",
                a.node,
                left.len(),
                a.timeout,
                names.join(", ")
            )));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    println!("node/{} drained", a.node);
    Ok(())
}
