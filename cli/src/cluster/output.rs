//! Printing what the server returned: its `Table` columns aligned like
//! kubectl's, or objects as JSON, YAML or `kind/name`.

use std::io::Write;

use corral_api::resource::ResourceInfo;
use serde_json::Value;

use super::args::Output;
use super::Error;

/// The header and rows of a `meta.k8s.io/v1 Table` (priority-0 columns,
/// all with `wide`), with a NAMESPACE column first when asked.
pub fn table_rows(
    table: &Value,
    wide: bool,
    namespace_column: bool,
) -> (Vec<String>, Vec<Vec<String>>) {
    let cols = table["columnDefinitions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let shown: Vec<usize> = cols
        .iter()
        .enumerate()
        .filter(|(_, c)| wide || c["priority"].as_i64().unwrap_or(0) == 0)
        .map(|(i, _)| i)
        .collect();
    let mut head: Vec<String> = shown
        .iter()
        .map(|&i| cols[i]["name"].as_str().unwrap_or("").to_uppercase())
        .collect();
    if namespace_column {
        head.insert(0, "NAMESPACE".into());
    }
    let rows = table["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    let mut cells: Vec<String> =
                        shown.iter().map(|&i| cell(&r["cells"][i])).collect();
                    if namespace_column {
                        let ns = r["object"]["metadata"]["namespace"].as_str().unwrap_or("");
                        cells.insert(0, ns.to_string());
                    }
                    cells
                })
                .collect()
        })
        .unwrap_or_default();
    (head, rows)
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "<none>".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn print_table(
    out: &mut impl Write,
    head: &[String],
    rows: &[Vec<String>],
) -> Result<(), Error> {
    let head: Vec<&str> = head.iter().map(String::as_str).collect();
    crate::table::print(out, &head, rows).map_err(io)
}

/// Objects as `-o json|yaml|name` print them: one object alone, several
/// as a `List`.
pub fn print_objects(
    out: &mut impl Write,
    info: &ResourceInfo,
    objects: Vec<Value>,
    single: bool,
    format: Output,
) -> Result<(), Error> {
    if format == Output::Name {
        for o in &objects {
            let name = o["metadata"]["name"].as_str().unwrap_or("");
            writeln!(out, "{}", super::display_name(info, name)).map_err(io)?;
        }
        return Ok(());
    }
    let doc = if single && objects.len() == 1 {
        objects.into_iter().next().unwrap_or(Value::Null)
    } else {
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": objects,
            "metadata": {"resourceVersion": ""},
        })
    };
    print_value(out, &doc, format)
}

pub fn print_value(out: &mut impl Write, doc: &Value, format: Output) -> Result<(), Error> {
    let text = match format {
        Output::Yaml => yaml_serde::to_string(doc).map_err(|e| Error::msg(format!("YAML: {e}")))?,
        _ => {
            let mut s =
                serde_json::to_string_pretty(doc).map_err(|e| Error::msg(format!("JSON: {e}")))?;
            s.push('\n');
            s
        }
    };
    out.write_all(text.as_bytes()).map_err(io)
}

pub fn io(e: std::io::Error) -> Error {
    Error::msg(format!("writing output: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wide_shows_priority_columns_and_namespace_comes_first() {
        let t = json!({
            "columnDefinitions": [
                {"name": "Name", "priority": 0},
                {"name": "Ready", "priority": 0},
                {"name": "Node", "priority": 1}
            ],
            "rows": [{"cells": ["web", "1/1", null], "object": {"metadata": {"namespace": "shop"}}}]
        });
        let (h, r) = table_rows(&t, false, false);
        assert_eq!(h, ["NAME", "READY"]);
        assert_eq!(r, [["web", "1/1"]]);
        let (h, r) = table_rows(&t, true, true);
        assert_eq!(h, ["NAMESPACE", "NAME", "READY", "NODE"]);
        assert_eq!(r, [["shop", "web", "1/1", "<none>"]]);
    }
}
