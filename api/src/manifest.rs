//! Manifests: one or many YAML documents, or JSON, into typed objects chosen
//! by apiVersion and kind. `kind: List` (as `kubectl get -o yaml` prints
//! several objects) is expanded into its items.

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::apps::{Deployment, ReplicaSet};
use crate::coordination::Lease;
use crate::core::{Binding, ConfigMap, Endpoints, Event, Namespace, Node, Pod, Secret, Service};
use crate::decode::{self, strip_position, DecodeError};
use crate::meta::ObjectMeta;
use crate::resource::{self, Resource, ResourceInfo};
use crate::validation::ErrorList;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("invalid {format} at line {line} column {column}: {message}")]
    Syntax {
        format: &'static str,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("document {doc}: not an object")]
    NotAnObject { doc: usize },
    #[error("document {doc}: missing apiVersion")]
    MissingApiVersion { doc: usize },
    #[error("document {doc}: missing kind")]
    MissingKind { doc: usize },
    #[error("document {doc}: no matches for kind {kind:?} in version {api_version:?}")]
    UnknownKind {
        doc: usize,
        api_version: String,
        kind: String,
    },
    #[error("document {doc} ({kind} {name:?}): {error}")]
    Field {
        doc: usize,
        kind: String,
        name: String,
        error: DecodeError,
    },
}

impl ManifestError {
    /// The field path of a decoding error, if the error is about a field.
    pub fn field_path(&self) -> Option<&str> {
        match self {
            ManifestError::Field { error, .. } => Some(error.path()),
            _ => None,
        }
    }
}

macro_rules! objects {
    ($($variant:ident),* $(,)?) => {
        /// Any object a manifest may hold.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Object {
            $($variant(Box<$variant>),)*
        }

        impl Object {
            pub fn meta(&self) -> &ObjectMeta {
                match self {
                    $(Object::$variant(o) => o.meta(),)*
                }
            }

            pub fn meta_mut(&mut self) -> &mut ObjectMeta {
                match self {
                    $(Object::$variant(o) => o.meta_mut(),)*
                }
            }

            pub fn kind(&self) -> &'static str {
                match self {
                    $(Object::$variant(_) => <$variant as Resource>::KIND,)*
                }
            }

            pub fn info(&self) -> &'static ResourceInfo {
                match self {
                    $(Object::$variant(_) => <$variant as Resource>::info(),)*
                }
            }

            pub fn validate(&self) -> ErrorList {
                match self {
                    $(Object::$variant(o) => o.validate(),)*
                }
            }

            pub fn to_value(&self) -> Result<Value, serde_json::Error> {
                match self {
                    $(Object::$variant(o) => serde_json::to_value(o),)*
                }
            }

            /// Decodes a value whose apiVersion/kind were checked to be `info`'s.
            fn decode(info: &ResourceInfo, value: Value) -> Result<Object, DecodeError> {
                $(
                    if info.kind == <$variant as Resource>::KIND
                        && info.group == <$variant as Resource>::GROUP
                    {
                        return decode::from_value::<$variant>(value)
                            .map(|o| Object::$variant(Box::new(o)));
                    }
                )*
                Err(DecodeError::Field {
                    path: "kind".into(),
                    message: format!("kind {:?} has no object type", info.kind),
                })
            }
        }

        $(
            impl From<$variant> for Object {
                fn from(o: $variant) -> Object {
                    Object::$variant(Box::new(o))
                }
            }
        )*

        impl Serialize for Object {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self {
                    $(Object::$variant(o) => o.serialize(s),)*
                }
            }
        }
    };
}

objects!(
    Namespace, Pod, Node, Service, Endpoints, ConfigMap, Secret, Event, Binding, Deployment,
    ReplicaSet, Lease,
);

impl Object {
    pub fn name(&self) -> &str {
        &self.meta().name
    }

    pub fn namespace(&self) -> &str {
        &self.meta().namespace
    }

    /// The defaults the API server applies on create, for kinds that have any.
    pub fn apply_defaults(&mut self) {
        match self {
            Object::Namespace(o) => o.apply_defaults(),
            Object::Pod(o) => o.apply_defaults(),
            Object::Service(o) => o.apply_defaults(),
            Object::Secret(o) => o.apply_defaults(),
            Object::Deployment(o) => o.apply_defaults(),
            Object::ReplicaSet(o) => o.apply_defaults(),
            Object::Node(_)
            | Object::Endpoints(_)
            | Object::ConfigMap(_)
            | Object::Event(_)
            | Object::Binding(_)
            | Object::Lease(_) => {}
        }
    }

    /// One object from a parsed JSON value; `doc` (1-based) is used in errors.
    pub fn from_value(value: Value, doc: usize) -> Result<Object, ManifestError> {
        let obj = value
            .as_object()
            .ok_or(ManifestError::NotAnObject { doc })?;
        let text = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let (api_version, kind) = (text("apiVersion"), text("kind"));
        if api_version.is_empty() {
            return Err(ManifestError::MissingApiVersion { doc });
        }
        if kind.is_empty() {
            return Err(ManifestError::MissingKind { doc });
        }
        let info =
            resource::by_kind(&api_version, &kind).ok_or_else(|| ManifestError::UnknownKind {
                doc,
                api_version: api_version.clone(),
                kind: kind.clone(),
            })?;
        let name = obj
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        Object::decode(info, value).map_err(|error| ManifestError::Field {
            doc,
            kind,
            name,
            error,
        })
    }
}

/// `kind: List` and `PodList`-style wrappers: their items are the objects.
fn is_list(value: &Value) -> bool {
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
    let items = value.get("items").is_some_and(Value::is_array);
    items
        && (kind == "List"
            || kind
                .strip_suffix("List")
                .is_some_and(|k| resource::RESOURCES.iter().any(|r| r.kind == k)))
}

/// Turns parsed documents into objects, skipping empty ones and expanding
/// lists; an item without `kind` in a `PodList` is a Pod.
fn objects_from_documents(docs: Vec<Value>) -> Result<Vec<Object>, ManifestError> {
    let mut out = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        let n = i + 1;
        if doc.is_null() {
            continue;
        }
        if !is_list(&doc) {
            out.push(Object::from_value(doc, n)?);
            continue;
        }
        let list_kind = doc["kind"].as_str().unwrap_or("").to_string();
        let list_version = doc["apiVersion"].as_str().unwrap_or("").to_string();
        let items = match doc {
            Value::Object(mut m) => match m.remove("items") {
                Some(Value::Array(a)) => a,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        for item in items {
            out.push(Object::from_value(
                fill_list_item(item, &list_kind, &list_version),
                n,
            )?);
        }
    }
    Ok(out)
}

fn fill_list_item(mut item: Value, list_kind: &str, list_version: &str) -> Value {
    let item_kind = list_kind.strip_suffix("List").filter(|k| !k.is_empty());
    if let (Some(kind), Some(map)) = (item_kind, item.as_object_mut()) {
        map.entry("kind").or_insert_with(|| Value::from(kind));
        map.entry("apiVersion")
            .or_insert_with(|| Value::from(list_version));
    }
    item
}

fn looks_like_json(text: &str) -> bool {
    matches!(text.trim_start().as_bytes().first(), Some(b'{' | b'['))
}

fn parse_json_documents(text: &str) -> Result<Vec<Value>, ManifestError> {
    let mut docs = Vec::new();
    for v in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        let v = v.map_err(|e| ManifestError::Syntax {
            format: "JSON",
            line: e.line(),
            column: e.column(),
            message: strip_position(&e.to_string()),
        })?;
        // A top-level JSON array is a list of objects.
        match v {
            Value::Array(items) => docs.extend(items),
            other => docs.push(other),
        }
    }
    Ok(docs)
}

fn parse_yaml_documents(text: &str) -> Result<Vec<Value>, ManifestError> {
    let mut docs = Vec::new();
    for de in yaml_serde::Deserializer::from_str(text) {
        let v = Value::deserialize(de).map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            ManifestError::Syntax {
                format: "YAML",
                line,
                column,
                message: strip_position(&e.to_string()),
            }
        })?;
        docs.push(v);
    }
    Ok(docs)
}

/// Parses YAML (one or many `---` documents) or JSON (one or more values, or
/// an array) into objects, in order.
pub fn parse(text: &str) -> Result<Vec<Object>, ManifestError> {
    let docs = if looks_like_json(text) {
        // A YAML flow mapping also starts with `{`: fall back to YAML, but
        // report the JSON error if neither reads it.
        match parse_json_documents(text) {
            Ok(d) => d,
            Err(json_err) => parse_yaml_documents(text).map_err(|_| json_err)?,
        }
    } else {
        parse_yaml_documents(text)?
    };
    objects_from_documents(docs)
}

/// Exactly one object (for a request body or a static pod file).
pub fn parse_one(text: &str) -> Result<Object, ManifestError> {
    let mut objects = parse(text)?;
    match objects.len() {
        1 => Ok(objects.remove(0)),
        n => Err(ManifestError::Field {
            doc: n.min(2),
            kind: String::new(),
            name: String::new(),
            error: DecodeError::Field {
                path: String::new(),
                message: format!("expected exactly one object, found {n}"),
            },
        }),
    }
}

/// Serializes objects as multi-document YAML (what `apply -f` reads back).
pub fn to_yaml(objects: &[Object]) -> Result<String, yaml_serde::Error> {
    let mut out = String::new();
    for (i, o) in objects.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&yaml_serde::to_string(o)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MULTI: &str = r#"
# a namespace, a deployment and a service, as for Kubernetes
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: busybox:1.36
        command: ["httpd", "-f", "-p", "8080"]
        ports:
        - containerPort: 8080
        resources:
          limits: {cpu: 0.5, memory: 64Mi}
        livenessProbe:
          httpGet: {path: /, port: 8080}
---
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
"#;

    #[test]
    fn multi_document_yaml() {
        let objs = parse(MULTI).unwrap();
        let kinds: Vec<&str> = objs.iter().map(|o| o.kind()).collect();
        assert_eq!(kinds, ["Namespace", "Deployment", "Service"]);
        assert_eq!(objs[1].namespace(), "shop");
        assert_eq!(objs[1].info().plural, "deployments");
        let Object::Deployment(d) = &objs[1] else {
            panic!("not a deployment")
        };
        let limits = &d.spec.template.spec.containers[0]
            .resources
            .as_ref()
            .unwrap()
            .limits;
        assert_eq!(limits["cpu"].milli_value(), 500);
        for o in &objs {
            assert!(o.validate().is_empty(), "{}: {:?}", o.kind(), o.validate());
        }
        // Written back and read again, nothing changes.
        let again = parse(&to_yaml(&objs).unwrap()).unwrap();
        assert_eq!(again, objs);
    }

    #[test]
    fn json_single_stream_and_list() {
        let one = parse(r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}"#).unwrap();
        assert_eq!(one[0].kind(), "ConfigMap");
        let stream = parse(r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}
                              {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "b"}}"#).unwrap();
        assert_eq!(stream.len(), 2);
        let list = parse(r#"{"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
            {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"}, "spec": {}}]}"#).unwrap();
        assert_eq!(
            list.iter().map(|o| o.kind()).collect::<Vec<_>>(),
            ["Pod", "Lease"]
        );
        let typed = parse(
            r#"{"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "5"},
            "items": [{"metadata": {"name": "p"}, "spec": {"containers": []}}]}"#,
        )
        .unwrap();
        assert_eq!(typed[0].kind(), "Pod");
        let flow = parse("{apiVersion: v1, kind: Namespace, metadata: {name: flow}}").unwrap();
        assert_eq!(flow[0].name(), "flow");
    }

    #[test]
    fn clear_errors() {
        let e = parse("apiVersion: v1\nkind: Widget\nmetadata: {name: w}\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "document 1: no matches for kind \"Widget\" in version \"v1\""
        );
        let e = parse("kind: Pod\nmetadata: {name: p}\n").unwrap_err();
        assert_eq!(e.to_string(), "document 1: missing apiVersion");
        let e = parse("apiVersion: v1\nmetadata: {name: p}\n").unwrap_err();
        assert_eq!(e.to_string(), "document 1: missing kind");
        let e = parse("apiVersion: apps/v1\nkind: Pod\n").unwrap_err();
        assert!(matches!(e, ManifestError::UnknownKind { .. }));
        let e = parse("- a\n- b\n").unwrap_err();
        assert_eq!(e.to_string(), "document 1: not an object");

        let bad_yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n    labels: x\n";
        let e = parse(bad_yaml).unwrap_err();
        assert!(
            matches!(
                e,
                ManifestError::Syntax {
                    format: "YAML",
                    line: 5,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            e.to_string().starts_with("invalid YAML at line 5 column"),
            "{e}"
        );

        let bad_json = "{\"apiVersion\": \"v1\",\n \"kind\": \"Pod\",,}";
        let e = parse(bad_json).unwrap_err();
        assert!(
            matches!(
                e,
                ManifestError::Syntax {
                    format: "JSON",
                    line: 2,
                    ..
                }
            ),
            "{e:?}"
        );

        let typo = MULTI.replace("        ports:\n", "        portz:\n");
        let e = parse(&typo).unwrap_err();
        assert_eq!(
            e.to_string(),
            "document 2 (Deployment \"web\"): spec.template.spec.containers[0].portz: unknown field"
        );
        assert_eq!(
            e.field_path(),
            Some("spec.template.spec.containers[0].portz")
        );
    }

    #[test]
    fn parse_one_and_defaults() {
        let mut o = parse_one("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: busybox}]\n").unwrap();
        o.apply_defaults();
        let Object::Pod(p) = &o else {
            panic!("not a pod")
        };
        assert_eq!(p.spec.termination_grace_period_seconds, Some(30));
        assert!(parse_one(MULTI).is_err());
        assert!(parse_one("").is_err());
    }

    #[test]
    fn every_table_kind_has_a_type() {
        for info in resource::RESOURCES {
            let v = serde_json::json!({"apiVersion": info.api_version(), "kind": info.kind, "metadata": {"name": "x"}});
            let o = Object::from_value(v, 1).unwrap_or_else(|e| panic!("{}: {e}", info.kind));
            assert_eq!(o.info(), info);
            assert_eq!(o.to_value().unwrap()["kind"], info.kind);
        }
    }
}
