//! JSON patch (RFC 6902) with JSON pointers (RFC 6901): `add`, `remove`,
//! `replace`, `move`, `copy` and `test`, applied in order to a copy of the
//! object. Any failing operation (a failed `test` included) fails the whole
//! patch, so nothing of it is stored.

use serde_json::Value;

/// Why a JSON patch could not be applied (the message of the 422).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("operation {index} ({op} {path:?}): {why}")]
pub struct PatchError {
    pub index: usize,
    pub op: String,
    pub path: String,
    pub why: String,
}

/// Applies every operation of `patch` (a JSON array) to `doc`.
pub fn apply(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let top = |why: &str| PatchError {
        index: 0,
        op: String::new(),
        path: String::new(),
        why: why.to_string(),
    };
    let ops = patch
        .as_array()
        .ok_or_else(|| top("a JSON patch must be an array of operations"))?;
    let mut doc = doc.clone();
    for (index, op) in ops.iter().enumerate() {
        let name = op.get("op").and_then(Value::as_str).unwrap_or("");
        let path = op.get("path").and_then(Value::as_str).unwrap_or("");
        let fail = |why: String| PatchError {
            index,
            op: name.to_string(),
            path: path.to_string(),
            why,
        };
        if op.get("path").and_then(Value::as_str).is_none() {
            return Err(fail("missing \"path\"".into()));
        }
        apply_one(&mut doc, name, path, op).map_err(fail)?;
    }
    Ok(doc)
}

fn apply_one(doc: &mut Value, name: &str, path: &str, op: &Value) -> Result<(), String> {
    let value = || {
        op.get("value")
            .cloned()
            .ok_or_else(|| "missing \"value\"".to_string())
    };
    let from = || {
        op.get("from")
            .and_then(Value::as_str)
            .ok_or_else(|| "missing \"from\"".to_string())
    };
    match name {
        "add" => add(doc, path, value()?),
        "remove" => remove(doc, path).map(drop),
        "replace" => {
            let v = value()?;
            let target = doc
                .pointer_mut(&check_pointer(path)?)
                .ok_or_else(|| format!("path {path:?} does not exist"))?;
            *target = v;
            Ok(())
        }
        "move" => {
            let from = from()?;
            if path.starts_with(&format!("{from}/")) {
                return Err(format!("cannot move {from:?} into its own child {path:?}"));
            }
            let v = remove(doc, from)?;
            add(doc, path, v)
        }
        "copy" => {
            let from = from()?;
            let v = doc
                .pointer(&check_pointer(from)?)
                .cloned()
                .ok_or_else(|| format!("from path {from:?} does not exist"))?;
            add(doc, path, v)
        }
        "test" => {
            let want = value()?;
            let have = doc.pointer(&check_pointer(path)?);
            if have != Some(&want) {
                let shown = have.map_or("nothing".to_string(), Value::to_string);
                return Err(format!("test failed: expected {want}, found {shown}"));
            }
            Ok(())
        }
        other => Err(format!("unknown operation {other:?}")),
    }
}

fn check_pointer(path: &str) -> Result<String, String> {
    if path.is_empty() || path.starts_with('/') {
        Ok(path.to_string())
    } else {
        Err(format!(
            "{path:?} is not a JSON pointer (it must start with \"/\")"
        ))
    }
}

/// `(parent pointer, last token unescaped)`; None for the whole document.
fn split(path: &str) -> Result<Option<(String, String)>, String> {
    check_pointer(path)?;
    if path.is_empty() {
        return Ok(None);
    }
    let (parent, last) = path.rsplit_once('/').unwrap_or(("", path));
    let last = last.replace("~1", "/").replace("~0", "~");
    Ok(Some((parent.to_string(), last)))
}

fn array_index(token: &str, len: usize, allow_end: bool) -> Result<usize, String> {
    if allow_end && token == "-" {
        return Ok(len);
    }
    let bad = || format!("{token:?} is not a valid index into an array of {len}");
    if token.len() > 1 && token.starts_with('0') {
        return Err(bad());
    }
    let i: usize = token.parse().map_err(|_| bad())?;
    let limit = if allow_end {
        len
    } else {
        len.saturating_sub(1)
    };
    if i > limit || (!allow_end && len == 0) {
        return Err(bad());
    }
    Ok(i)
}

fn add(doc: &mut Value, path: &str, v: Value) -> Result<(), String> {
    let Some((parent, last)) = split(path)? else {
        *doc = v;
        return Ok(());
    };
    let target = doc
        .pointer_mut(&parent)
        .ok_or_else(|| format!("parent {parent:?} of {path:?} does not exist"))?;
    match target {
        Value::Object(m) => {
            m.insert(last, v);
            Ok(())
        }
        Value::Array(a) => {
            let i = array_index(&last, a.len(), true)?;
            a.insert(i, v);
            Ok(())
        }
        _ => Err(format!(
            "parent {parent:?} of {path:?} is not an object or array"
        )),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let Some((parent, last)) = split(path)? else {
        return Err("cannot remove the whole document".into());
    };
    let missing = || format!("path {path:?} does not exist");
    match doc.pointer_mut(&parent).ok_or_else(missing)? {
        Value::Object(m) => m.remove(&last).ok_or_else(missing),
        Value::Array(a) => {
            let i = array_index(&last, a.len(), false)?;
            Ok(a.remove(i))
        }
        _ => Err(missing()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(doc: Value, patch: Value) -> Result<Value, PatchError> {
        apply(&doc, &patch)
    }

    #[test]
    fn rfc6902_operations() {
        let doc = json!({"a": {"b": [1, 2]}, "c": "x", "k/~": 1});
        let out = run(
            doc,
            json!([
                {"op": "add", "path": "/a/b/1", "value": 9},
                {"op": "add", "path": "/a/b/-", "value": 3},
                {"op": "replace", "path": "/c", "value": "y"},
                {"op": "copy", "from": "/c", "path": "/d"},
                {"op": "move", "from": "/k~1~0", "path": "/e"},
                {"op": "remove", "path": "/a/b/0"},
                {"op": "test", "path": "/a/b", "value": [9, 2, 3]},
                {"op": "add", "path": "/n", "value": {"x": null}}
            ]),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"a": {"b": [9, 2, 3]}, "c": "y", "d": "y", "e": 1, "n": {"x": null}})
        );
    }

    #[test]
    fn failures_name_the_operation() {
        let doc = json!({"a": 1, "l": [1]});
        let e = run(
            doc.clone(),
            json!([{"op": "test", "path": "/a", "value": 2}]),
        )
        .unwrap_err();
        assert_eq!((e.index, e.op.as_str()), (0, "test"));
        assert!(e.why.contains("test failed"), "{e}");
        for bad in [
            json!([{"op": "replace", "path": "/nope", "value": 1}]),
            json!([{"op": "remove", "path": "/l/1"}]),
            json!([{"op": "add", "path": "/l/2", "value": 1}]),
            json!([{"op": "add", "path": "/x/y", "value": 1}]),
            json!([{"op": "add", "path": "a", "value": 1}]),
            json!([{"op": "add", "path": "/a"}]),
            json!([{"op": "move", "from": "/l", "path": "/l/0"}]),
            json!([{"op": "frobnicate", "path": "/a"}]),
            json!({"op": "add"}),
        ] {
            assert!(run(doc.clone(), bad.clone()).is_err(), "{bad}");
        }
    }
}
