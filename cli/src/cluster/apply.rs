//! `corral apply -f`: every manifest is parsed (and rejected with its field
//! path) before anything is sent; then each object is created when absent,
//! or patched with what changed since the last apply. The applied manifest is
//! kept in kubectl's `last-applied-configuration` annotation, so fields
//! removed from the manifest are removed from the object, and an identical
//! manifest is reported `unchanged` without a write.

use std::io::Read;
use std::path::Path;

use corral_api::manifest;
use corral_api::Object;
use serde_json::{Map, Value};

use super::args::{manifest_sources, ApplyArgs};
use super::client::{Client, STRATEGIC_PATCH};
use super::{display_name, ns_for, Error};

pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

pub fn run(c: &Client, a: &ApplyArgs) -> Result<i32, Error> {
    let objects = read_manifests(&a.files)?;
    if objects.is_empty() {
        return Err(Error::msg("no objects passed to apply"));
    }
    for o in &objects {
        let outcome = apply_one(c, o)?;
        println!("{} {outcome}", display_name(o.info(), o.name()));
    }
    Ok(0)
}

/// Every object of every `-f` source, in order; the first bad document
/// stops everything.
pub fn read_manifests(files: &[String]) -> Result<Vec<Object>, Error> {
    let sources = manifest_sources(files).map_err(|e| Error::msg(format!("reading -f: {e}")))?;
    let mut objects = Vec::new();
    for src in sources {
        let text = read_source(&src)?;
        let parsed = manifest::parse(&text)
            .map_err(|e| Error::msg(format!("error parsing {}: {e}", src.display())))?;
        objects.extend(parsed);
    }
    Ok(objects)
}

fn read_source(src: &Path) -> Result<String, Error> {
    if src == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Error::msg(format!("reading stdin: {e}")))?;
        return Ok(s);
    }
    std::fs::read_to_string(src).map_err(|e| Error::msg(format!("reading {}: {e}", src.display())))
}

fn apply_one(c: &Client, o: &Object) -> Result<&'static str, Error> {
    let info = o.info();
    let ns = if o.namespace().is_empty() {
        c.namespace.as_str()
    } else {
        o.namespace()
    };
    let mut desired = o
        .to_value()
        .map_err(|e| Error::msg(format!("encoding {}: {e}", o.name())))?;
    if info.namespaced {
        desired["metadata"]["namespace"] = Value::from(ns);
    }
    let applied = desired.to_string();
    set_annotation(&mut desired, LAST_APPLIED, &applied);
    let path = info.object_path(ns_for(info, ns), o.name());
    let existing = match c.get(&path) {
        Ok(v) => v,
        Err(e) if e.is_not_found() => {
            c.create(&info.collection_path(ns_for(info, ns)), &desired)?;
            return Ok("created");
        }
        Err(e) => return Err(e),
    };
    let last = existing["metadata"]["annotations"][LAST_APPLIED]
        .as_str()
        .and_then(|s| serde_json::from_str::<Value>(s).ok());
    let applied_value: Value = serde_json::from_str(&applied).unwrap_or(Value::Null);
    if last.as_ref() == Some(&applied_value) {
        return Ok("unchanged");
    }
    let mut patch = desired;
    if let Some(last) = &last {
        remove_dropped(&mut patch, last);
    }
    c.patch(&path, STRATEGIC_PATCH, &patch)?;
    Ok("configured")
}

fn set_annotation(v: &mut Value, key: &str, value: &str) {
    let meta = &mut v["metadata"];
    if !meta["annotations"].is_object() {
        meta["annotations"] = Value::Object(Map::new());
    }
    meta["annotations"][key] = Value::from(value);
}

/// Map keys the last apply set but this manifest no longer has become
/// `null` in the patch, which deletes them (lists are sent whole).
fn remove_dropped(patch: &mut Value, last: &Value) {
    let (Some(p), Some(l)) = (patch.as_object_mut(), last.as_object()) else {
        return;
    };
    for (k, lv) in l {
        match p.get_mut(k) {
            None => {
                p.insert(k.clone(), Value::Null);
            }
            Some(pv) => remove_dropped(pv, lv),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dropped_map_keys_become_null() {
        let mut patch = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 2}});
        let last = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 1, "paused": true}});
        remove_dropped(&mut patch, &last);
        assert_eq!(
            patch,
            json!({"metadata": {"labels": {"a": "1", "b": null}}, "spec": {"replicas": 2, "paused": null}})
        );
    }

    #[test]
    fn a_bad_manifest_names_the_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bad.yaml");
        std::fs::write(
            &f,
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndatta: {}\n",
        )
        .unwrap();
        let e = read_manifests(&[f.display().to_string()])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("bad.yaml") && e.contains("datta"), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }
}
