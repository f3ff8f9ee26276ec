//! Discovery documents (`/version`, `/api`, `/apis`, the resource lists of
//! each group version) and the OpenAPI documents kubectl reads, all built
//! from `corral_api::resource::RESOURCES`.
//!
//! The OpenAPI v3 documents are deliberately small: one PATCH operation per
//! kind carrying `x-kubernetes-group-version-kind` and the `fieldValidation`
//! query parameter. That is what kubectl checks to leave validation to the
//! server (which always decodes strictly), instead of validating on the
//! client against schemas this server does not publish.

use corral_api::resource::{ResourceInfo, RESOURCES};
use serde_json::{json, Map, Value};

/// The Kubernetes API version this server speaks (kubectl warns beyond one
/// minor version of skew).
pub const KUBE_MINOR: &str = "32";

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBE_MINOR,
        "gitVersion": format!("v1.{KUBE_MINOR}.0+corral-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": "linux/amd64",
    })
}

pub fn api_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
}

/// The groups other than the core one, in table order.
fn groups() -> Vec<&'static str> {
    let mut out: Vec<&str> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        if !out.contains(&r.group) {
            out.push(r.group);
        }
    }
    out
}

fn group_doc(group: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/v1"), "version": "v1"});
    json!({"kind": "APIGroup", "apiVersion": "v1", "name": group,
           "versions": [gv.clone()], "preferredVersion": gv})
}

pub fn api_group_list() -> Value {
    let groups: Vec<Value> = groups().into_iter().map(group_doc).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn api_group(group: &str) -> Option<Value> {
    groups().contains(&group).then(|| group_doc(group))
}

/// Subresources this server serves (`log` and `exec` are not proxied yet).
fn served_subresources(r: &ResourceInfo) -> impl Iterator<Item = &'static str> {
    r.subresources
        .iter()
        .copied()
        .filter(|s| matches!(*s, "status" | "scale" | "binding"))
}

fn categories(r: &ResourceInfo) -> Vec<&'static str> {
    match r.kind {
        "Pod" | "Service" | "Deployment" | "ReplicaSet" => vec!["all"],
        _ => vec![],
    }
}

fn resource_entries(r: &ResourceInfo) -> Vec<Value> {
    let mut out = vec![json!({
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": r.verbs,
        "shortNames": r.short_names,
        "categories": categories(r),
    })];
    for sub in served_subresources(r) {
        let mut e = json!({
            "name": format!("{}/{sub}", r.plural),
            "singularName": "",
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": ["get", "patch", "update"],
        });
        if sub == "scale" {
            e["group"] = "autoscaling".into();
            e["version"] = "v1".into();
            e["kind"] = "Scale".into();
        }
        if sub == "binding" {
            e["kind"] = "Binding".into();
            e["verbs"] = json!(["create"]);
        }
        out.push(e);
    }
    out
}

/// The APIResourceList of `group`/`version` ("" for the core group).
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let rs: Vec<&ResourceInfo> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if rs.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let resources: Vec<Value> = rs.into_iter().flat_map(resource_entries).collect();
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                "resources": resources}),
    )
}

/// `api/v1`, `apis/apps/v1`: the OpenAPI v3 paths of each group version.
fn group_version_paths() -> Vec<(String, &'static str, &'static str)> {
    let mut out = vec![("api/v1".to_string(), "", "v1")];
    for g in groups() {
        out.push((format!("apis/{g}/v1"), g, "v1"));
    }
    out
}

/// `/openapi/v3`: where each group version's document is.
pub fn openapi_v3_index() -> Value {
    let mut paths = Map::new();
    for (path, _, _) in group_version_paths() {
        let url = format!("/openapi/v3/{path}?hash={}", doc_hash());
        paths.insert(path, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

/// Changes whenever the documents could: they only depend on this build.
fn doc_hash() -> &'static str {
    concat!("corral-", env!("CARGO_PKG_VERSION"))
}

fn schema_name(r: &ResourceInfo) -> String {
    let group = if r.group.is_empty() {
        "core"
    } else {
        r.group.split('.').next().unwrap_or(r.group)
    };
    format!("io.k8s.api.{group}.{}.{}", r.version, r.kind)
}

/// `/openapi/v3/api/v1` and friends.
pub fn openapi_v3_doc(path: &str) -> Option<Value> {
    let (_, group, version) = group_version_paths()
        .into_iter()
        .find(|(p, _, _)| p == path)?;
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let name = schema_name(r);
        let schema_ref = json!({"$ref": format!("#/components/schemas/{name}")});
        let object_path = r.object_path(r.namespaced.then_some("{namespace}"), "{name}");
        let op = |verb: &str| {
            json!({
                "operationId": format!("{verb}{}", r.kind),
                "x-kubernetes-action": verb,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": [
                    {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                    {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                    {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}}
                ],
                "responses": {"200": {"description": "OK",
                    "content": {"application/json": {"schema": schema_ref}}}},
            })
        };
        paths.insert(
            format!("/{}", object_path.trim_start_matches('/')),
            json!({"get": op("get"), "put": op("put"), "patch": op("patch")}),
        );
        schemas.insert(
            name,
            json!({
                "type": "object",
                "description": format!("{} ({})", r.kind, r.api_version()),
                "x-kubernetes-group-version-kind": [gvk],
                "x-kubernetes-preserve-unknown-fields": true,
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                },
            }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Corral", "version": format!("v1.{KUBE_MINOR}.0")},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents() {
        let core = resource_list("", "v1").unwrap();
        let names: Vec<&str> = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"pods"));
        assert!(names.contains(&"pods/status"));
        assert!(names.contains(&"pods/binding"));
        assert!(!names.contains(&"pods/exec"));
        let apps = resource_list("apps", "v1").unwrap();
        let scale = apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .unwrap();
        assert_eq!(scale["group"], "autoscaling");
        assert!(resource_list("apps", "v2").is_none());
        let groups = api_group_list();
        assert_eq!(groups["groups"][0]["name"], "apps");
        assert!(api_group("coordination.k8s.io").is_some());
        let idx = openapi_v3_index();
        assert!(idx["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap()
            .starts_with("/openapi/v3/apis/apps/v1?hash="));
        let doc = openapi_v3_doc("apis/apps/v1").unwrap();
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert_eq!(patch["parameters"][0]["name"], "fieldValidation");
        assert!(openapi_v3_doc("apis/widgets/v1").is_none());
    }
}
