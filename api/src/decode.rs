//! Strict decoding of one typed object with the path of the offending field:
//! `spec.containers[0].imagePullPolicyy: unknown field`.

use serde::de::DeserializeOwned;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The text is not JSON (or YAML) at all.
    #[error("invalid {format} at line {line} column {column}: {message}")]
    Syntax {
        format: &'static str,
        line: usize,
        column: usize,
        message: String,
    },
    /// The text parses but a field does not fit the type.
    #[error("{}", field_message(.path, .message))]
    Field { path: String, message: String },
}

fn field_message(path: &str, message: &str) -> String {
    if path.is_empty() {
        message.to_string()
    } else {
        format!("{path}: {message}")
    }
}

impl DecodeError {
    /// The field path, empty for the document root or a syntax error.
    pub fn path(&self) -> &str {
        match self {
            DecodeError::Field { path, .. } => path,
            DecodeError::Syntax { .. } => "",
        }
    }
}

/// Rewrites serde's wording into the API's: the unknown field goes into the
/// path, backticks become quotes, and the long "expected one of" list of
/// every struct field is dropped (a variant list is kept: it names the choices).
fn field_error(path: String, message: String) -> DecodeError {
    let path = if path == "." { String::new() } else { path };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or_default();
        let full = if path.is_empty() {
            name.to_string()
        } else if path == name || path.ends_with(&format!(".{name}")) {
            path
        } else {
            format!("{path}.{name}")
        };
        return DecodeError::Field {
            path: full,
            message: "unknown field".into(),
        };
    }
    DecodeError::Field {
        path,
        message: message.replace('`', "\""),
    }
}

fn from_path_error<E: std::fmt::Display>(e: serde_path_to_error::Error<E>) -> DecodeError {
    let path = e.path().to_string();
    field_error(path, strip_position(&e.into_inner().to_string()))
}

/// Decodes a JSON request body into `T`.
pub fn from_json_slice<T: DeserializeOwned>(body: &[u8]) -> Result<T, DecodeError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let inner = e.inner();
        if inner.is_syntax() || inner.is_eof() {
            DecodeError::Syntax {
                format: "JSON",
                line: inner.line(),
                column: inner.column(),
                message: strip_position(&inner.to_string()),
            }
        } else {
            from_path_error(e)
        }
    })?;
    de.end().map_err(|e| DecodeError::Syntax {
        format: "JSON",
        line: e.line(),
        column: e.column(),
        message: strip_position(&e.to_string()),
    })?;
    Ok(value)
}

/// serde_json and yaml_serde append " at line L column C"; the error carries them as fields.
pub(crate) fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Decodes an already parsed JSON value into `T`.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize(value).map_err(from_path_error)
}

/// Decodes one YAML document into `T`. The document is read into a JSON
/// value first, so syntax errors carry a line and field errors a path, as
/// for JSON bodies.
pub fn from_yaml_str<T: DeserializeOwned>(text: &str) -> Result<T, DecodeError> {
    let value: serde_json::Value = yaml_serde::from_str(text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        DecodeError::Syntax {
            format: "YAML",
            line,
            column,
            message: strip_position(&e.to_string()),
        }
    })?;
    from_value(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Pod;

    #[test]
    fn unknown_field_names_its_path() {
        let body = br#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "busybox", "imagePullPolicyy": "Always"}]}}"#;
        let e = from_json_slice::<Pod>(body).unwrap_err();
        assert_eq!(
            e.to_string(),
            "spec.containers[0].imagePullPolicyy: unknown field"
        );
        assert_eq!(e.path(), "spec.containers[0].imagePullPolicyy");
        let e = from_json_slice::<Pod>(br#"{"spek": {}}"#).unwrap_err();
        assert_eq!(e.to_string(), "spek: unknown field");
    }

    #[test]
    fn wrong_types_and_variants() {
        let e = from_json_slice::<Pod>(br#"{"spec": {"restartPolicy": "Sometimes"}}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "spec.restartPolicy: unknown variant \"Sometimes\", expected one of \"Always\", \"OnFailure\", \"Never\""
        );
        let e = from_json_slice::<Pod>(br#"{"spec": {"containers": [{"name": 5}]}}"#).unwrap_err();
        assert_eq!(e.path(), "spec.containers[0].name");
        let e = from_json_slice::<Pod>(
            br#"{"spec": {"containers": [{"resources": {"limits": {"cpu": "lots"}}}]}}"#,
        )
        .unwrap_err();
        assert_eq!(e.path(), "spec.containers[0].resources.limits.cpu");
        assert!(e.to_string().contains("\"lots\""), "{e}");
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = from_json_slice::<Pod>(b"{\n  \"metadata\": {\n    \"name\": \"p\",\n  }\n}")
            .unwrap_err();
        assert!(matches!(e, DecodeError::Syntax { line: 4, .. }), "{e:?}");
        assert!(
            e.to_string().starts_with("invalid JSON at line 4 column"),
            "{e}"
        );
        let e = from_json_slice::<Pod>(b"{} x").unwrap_err();
        assert!(matches!(e, DecodeError::Syntax { .. }), "{e:?}");
        let e = from_yaml_str::<Pod>("metadata:\n  name: p\n   bad: indent\n").unwrap_err();
        assert!(
            matches!(
                e,
                DecodeError::Syntax {
                    format: "YAML",
                    line: 3,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn yaml_field_paths() {
        let e = from_yaml_str::<Pod>(
            "spec:\n  containers:\n  - name: c\n    imagePullPolicyy: Always\n",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "spec.containers[0].imagePullPolicyy: unknown field"
        );
        let p: Pod = from_yaml_str("metadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    resources:\n      limits: {cpu: 0.5}\n").unwrap();
        let cpu = &p.spec.containers[0].resources.as_ref().unwrap().limits["cpu"];
        assert_eq!(cpu.to_string(), "500m");
    }
}
