//! `corral scale deploy/NAME --replicas N`, through the `/scale` subresource.

use serde_json::json;

use super::args::ScaleArgs;
use super::client::{Client, MERGE_PATCH};
use super::{display_name, kind_and_names, ns_for, Error};

pub fn run(c: &Client, a: &ScaleArgs) -> Result<(), Error> {
    let (first, rest) = a
        .target
        .split_first()
        .ok_or_else(|| Error::msg("scale needs KIND/NAME or KIND NAME"))?;
    for (info, name) in kind_and_names(first, rest)? {
        if !info.subresources.contains(&"scale") {
            return Err(Error::msg(format!("{} cannot be scaled", info.kind)));
        }
        let path = format!(
            "{}/scale",
            info.object_path(ns_for(info, &c.namespace), &name)
        );
        c.patch(
            &path,
            MERGE_PATCH,
            &json!({"spec": {"replicas": a.replicas}}),
        )?;
        println!("{} scaled", display_name(info, &name));
    }
    Ok(())
}
