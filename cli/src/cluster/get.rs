//! `corral get KIND [NAME...]`: the server's Table, aligned; `-o
//! json|yaml|name` print the objects; `-w` keeps printing changes.

use std::io::Write;

use corral_api::resource::ResourceInfo;
use serde_json::Value;

use super::args::{GetArgs, Output};
use super::client::Client;
use super::output::{self, io};
use super::{kind_and_names, ns_for, with_query, Error};

pub fn run(c: &Client, a: &GetArgs) -> Result<(), Error> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if a.names.is_empty() && !a.kind.contains('/') {
        let info = super::kind(&a.kind)?;
        return list(c, a, info, &mut out);
    }
    let wanted = kind_and_names(&a.kind, &a.names)?;
    by_name(c, a, &wanted, &mut out)
}

fn namespace<'a>(c: &'a Client, a: &GetArgs, info: &ResourceInfo) -> Option<&'a str> {
    if a.all_namespaces {
        None
    } else {
        ns_for(info, &c.namespace)
    }
}

fn list(c: &Client, a: &GetArgs, info: &ResourceInfo, out: &mut impl Write) -> Result<(), Error> {
    let sel = a.selector.as_deref().unwrap_or("");
    let path = with_query(
        &info.collection_path(namespace(c, a, info)),
        &[("labelSelector", sel)],
    );
    let rv = match a.output {
        Some(f @ (Output::Json | Output::Yaml | Output::Name)) => {
            let list = c.get(&path)?;
            let items = with_type(info, list["items"].as_array().cloned().unwrap_or_default());
            output::print_objects(out, info, items, false, f)?;
            list["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("")
                .to_string()
        }
        _ => {
            let table = c.get_table(&path)?;
            let (head, rows) = output::table_rows(
                &table,
                a.output == Some(Output::Wide),
                a.all_namespaces && info.namespaced,
            );
            if rows.is_empty() {
                no_resources(c, a, info);
            } else {
                output::print_table(out, &head, &rows)?;
            }
            table["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("")
                .to_string()
        }
    };
    if a.watch {
        let wpath = with_query(&path, &[("resourceVersion", &rv)]);
        watch(c, a, info, &wpath, out)?;
    }
    Ok(())
}

fn no_resources(c: &Client, a: &GetArgs, info: &ResourceInfo) {
    if a.all_namespaces || !info.namespaced {
        eprintln!("No resources found");
    } else {
        eprintln!("No resources found in {} namespace.", c.namespace);
    }
}

/// List items carry no apiVersion/kind; printed alone they should.
fn with_type(info: &ResourceInfo, items: Vec<Value>) -> Vec<Value> {
    items
        .into_iter()
        .map(|mut o| {
            if let Some(m) = o.as_object_mut() {
                m.entry("apiVersion")
                    .or_insert_with(|| info.api_version().into());
                m.entry("kind").or_insert_with(|| info.kind.into());
            }
            o
        })
        .collect()
}

fn by_name(
    c: &Client,
    a: &GetArgs,
    wanted: &[(&'static ResourceInfo, String)],
    out: &mut impl Write,
) -> Result<(), Error> {
    let mut failed = None;
    let mut objects = Vec::new();
    let mut head = Vec::new();
    let mut rows = Vec::new();
    let table = !matches!(a.output, Some(Output::Json | Output::Yaml | Output::Name));
    for (info, name) in wanted {
        let path = info.object_path(namespace(c, a, info), name);
        let got = if table {
            c.get_table(&path)
        } else {
            c.get(&path)
        };
        match got {
            Ok(v) if table => {
                let (h, r) = output::table_rows(&v, a.output == Some(Output::Wide), false);
                if head.is_empty() {
                    head = h;
                }
                rows.extend(r);
            }
            Ok(v) => objects.push((*info, v)),
            Err(e) => {
                if let Some(prev) = failed.replace(e) {
                    eprintln!("error: {prev}");
                }
            }
        }
    }
    if table && !rows.is_empty() {
        output::print_table(out, &head, &rows)?;
    }
    if let Some(f) = a.output.filter(|_| !table) {
        let single = wanted.len() == 1;
        for (info, v) in objects.iter().filter(|_| f == Output::Name) {
            output::print_objects(out, info, vec![v.clone()], true, f)?;
        }
        if f != Output::Name && !objects.is_empty() {
            let info = objects[0].0;
            let vals = objects.into_iter().map(|(_, v)| v).collect();
            output::print_objects(out, info, vals, single, f)?;
        }
    }
    if a.watch && failed.is_none() {
        if let [(info, name)] = wanted {
            let path = with_query(
                &info.collection_path(namespace(c, a, info)),
                &[("fieldSelector", &format!("metadata.name={name}"))],
            );
            return watch(c, a, info, &path, out);
        }
        return Err(Error::msg("watch needs one kind and at most one name"));
    }
    failed.map_or(Ok(()), Err)
}

/// Prints every change until interrupted (Ctrl-C ends the process).
fn watch(
    c: &Client,
    a: &GetArgs,
    info: &ResourceInfo,
    path: &str,
    out: &mut impl Write,
) -> Result<(), Error> {
    let table = !matches!(a.output, Some(Output::Json | Output::Yaml | Output::Name));
    c.watch(path, table, |ev| {
        if ev["type"] == "BOOKMARK" {
            return Ok(true);
        }
        let obj = &ev["object"];
        if table {
            let (_, rows) = output::table_rows(
                obj,
                a.output == Some(Output::Wide),
                a.all_namespaces && info.namespaced,
            );
            for r in rows {
                writeln!(out, "{}", r.join("   ")).map_err(io)?;
            }
        } else if let Some(f) = a.output {
            let item = with_type(info, vec![obj.clone()]);
            output::print_objects(out, info, item, true, f)?;
        }
        out.flush().map_err(io)?;
        Ok(true)
    })
}
