//! `corral delete KIND NAME... | KIND/NAME... | -f FILE | KIND -l SEL`.

use corral_api::resource::ResourceInfo;
use serde_json::Value;

use super::apply::read_manifests;
use super::args::DeleteArgs;
use super::client::Client;
use super::{kind_and_names, ns_for, with_query, Error};

pub fn run(c: &Client, a: &DeleteArgs) -> Result<i32, Error> {
    let targets = targets(c, a)?;
    if targets.is_empty() {
        eprintln!("No resources found");
        return Ok(0);
    }
    let mut failed = None;
    for (info, ns, name) in targets {
        match c.delete(&info.object_path(ns_for(info, &ns), &name)) {
            Ok(_) => println!("{} \"{name}\" deleted", qualified(info)),
            Err(e) if e.is_not_found() && a.ignore_not_found => {}
            Err(e) => {
                if let Some(prev) = failed.replace(e) {
                    eprintln!("error: {prev}");
                }
            }
        }
    }
    failed.map_or(Ok(0), Err)
}

/// `pod`, `deployment.apps` (kubectl's wording in `... "x" deleted`).
fn qualified(info: &ResourceInfo) -> String {
    if info.group.is_empty() {
        info.singular.to_string()
    } else {
        format!("{}.{}", info.singular, info.group)
    }
}

type Target = (&'static ResourceInfo, String, String);

fn targets(c: &Client, a: &DeleteArgs) -> Result<Vec<Target>, Error> {
    if !a.files.is_empty() {
        if a.kind.is_some() {
            return Err(Error::msg("give either -f or KIND NAME, not both"));
        }
        return Ok(read_manifests(&a.files)?
            .iter()
            .map(|o| {
                let ns = if o.namespace().is_empty() {
                    c.namespace.clone()
                } else {
                    o.namespace().to_string()
                };
                (o.info(), ns, o.name().to_string())
            })
            .collect());
    }
    let kind = a.kind.as_deref().ok_or_else(|| {
        Error::msg("delete needs KIND NAME..., KIND/NAME, -f FILE or KIND -l SELECTOR")
    })?;
    if let Some(sel) = &a.selector {
        if !a.names.is_empty() {
            return Err(Error::msg("give either names or -l, not both"));
        }
        let info = super::kind(kind)?;
        let path = with_query(
            &info.collection_path(ns_for(info, &c.namespace)),
            &[("labelSelector", sel)],
        );
        let list = c.get(&path)?;
        return Ok(list["items"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|o| (info, meta(o, "namespace"), meta(o, "name")))
            .collect());
    }
    let wanted = kind_and_names(kind, &a.names)?;
    if wanted.is_empty() {
        return Err(Error::msg(format!(
            "delete {kind}: give names, -l SELECTOR or -f FILE"
        )));
    }
    Ok(wanted
        .into_iter()
        .map(|(info, name)| (info, c.namespace.clone(), name))
        .collect())
}

pub fn meta(o: &Value, field: &str) -> String {
    o["metadata"][field].as_str().unwrap_or("").to_string()
}
