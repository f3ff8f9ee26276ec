//! Field-path errors and the name/label checks Kubernetes applies, with its
//! wording, so `corral` and kubectl users see the messages they know:
//! `spec.containers[1].name: Invalid value: "Foo": a lowercase RFC 1123 label must ...`.

use std::fmt;

use serde_json::Value;

/// Strings quoted, numbers and booleans bare, as Kubernetes prints a bad value.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// A path to a field: `spec.containers[1].name`, `metadata.labels[app]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Path(String);

impl Path {
    pub fn new(root: &str) -> Path {
        Path(root.to_string())
    }

    pub fn child(&self, name: &str) -> Path {
        if self.0.is_empty() {
            Path(name.to_string())
        } else {
            Path(format!("{}.{name}", self.0))
        }
    }

    pub fn index(&self, i: usize) -> Path {
        Path(format!("{}[{i}]", self.0))
    }

    pub fn key(&self, k: &str) -> Path {
        Path(format!("{}[{k}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What is wrong with a field (Kubernetes' field.ErrorType).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    Required {
        detail: String,
    },
    Invalid {
        value: Value,
        detail: String,
    },
    Duplicate {
        value: Value,
    },
    NotSupported {
        value: Value,
        supported: Vec<String>,
    },
    Forbidden {
        detail: String,
    },
    TooLong {
        max: usize,
    },
    NotFound {
        value: Value,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: Path,
    pub kind: ErrorKind,
}

impl FieldError {
    pub fn required(path: &Path) -> FieldError {
        FieldError::required_because(path, "")
    }

    pub fn required_because(path: &Path, detail: impl Into<String>) -> FieldError {
        FieldError {
            path: path.clone(),
            kind: ErrorKind::Required {
                detail: detail.into(),
            },
        }
    }

    pub fn invalid(path: &Path, value: impl Into<Value>, detail: impl Into<String>) -> FieldError {
        FieldError {
            path: path.clone(),
            kind: ErrorKind::Invalid {
                value: value.into(),
                detail: detail.into(),
            },
        }
    }

    pub fn duplicate(path: &Path, value: impl Into<Value>) -> FieldError {
        FieldError {
            path: path.clone(),
            kind: ErrorKind::Duplicate {
                value: value.into(),
            },
        }
    }

    pub fn not_supported(path: &Path, value: impl Into<Value>, supported: &[&str]) -> FieldError {
        FieldError {
            path: path.clone(),
            kind: ErrorKind::NotSupported {
                value: value.into(),
                supported: supported.iter().map(|s| s.to_string()).collect(),
            },
        }
    }

    pub fn forbidden(path: &Path, detail: impl Into<String>) -> FieldError {
        FieldError {
            path: path.clone(),
            kind: ErrorKind::Forbidden {
                detail: detail.into(),
            },
        }
    }

    pub fn not_found(path: &Path, value: impl Into<Value>) -> FieldError {
        FieldError {
            path: path.clone(),
            kind: ErrorKind::NotFound {
                value: value.into(),
            },
        }
    }

    /// The `reason` of a Status cause (metav1.CauseType).
    pub fn cause_type(&self) -> &'static str {
        match self.kind {
            ErrorKind::Required { .. } => "FieldValueRequired",
            ErrorKind::Invalid { .. } => "FieldValueInvalid",
            ErrorKind::Duplicate { .. } => "FieldValueDuplicate",
            ErrorKind::NotSupported { .. } => "FieldValueNotSupported",
            ErrorKind::Forbidden { .. } => "FieldValueForbidden",
            ErrorKind::TooLong { .. } => "FieldValueTooLong",
            ErrorKind::NotFound { .. } => "FieldValueNotFound",
        }
    }

    /// The message without the path, as in a Status cause.
    pub fn body(&self) -> String {
        match &self.kind {
            ErrorKind::Required { detail } if detail.is_empty() => "Required value".to_string(),
            ErrorKind::Required { detail } => format!("Required value: {detail}"),
            ErrorKind::Invalid { value, detail } => {
                format!("Invalid value: {}: {detail}", show(value))
            }
            ErrorKind::Duplicate { value } => format!("Duplicate value: {}", show(value)),
            ErrorKind::NotSupported { value, supported } => {
                let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
                format!(
                    "Unsupported value: {}: supported values: {}",
                    show(value),
                    list.join(", ")
                )
            }
            ErrorKind::Forbidden { detail } => format!("Forbidden: {detail}"),
            ErrorKind::TooLong { max } => {
                format!("Too long: may not be more than {max} bytes")
            }
            ErrorKind::NotFound { value } => format!("Not found: {}", show(value)),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.body())
    }
}

impl std::error::Error for FieldError {}

/// All problems found in one object, in the order they were found.
pub type ErrorList = Vec<FieldError>;

/// Joins errors as Kubernetes does in an Invalid Status message: one bare, several in `[a, b]`.
pub fn join_errors(errs: &[FieldError]) -> String {
    match errs {
        [one] => one.to_string(),
        many => {
            let parts: Vec<String> = many.iter().map(|e| e.to_string()).collect();
            format!("[{}]", parts.join(", "))
        }
    }
}

pub const DNS1123_LABEL_MAX: usize = 63;
pub const DNS1123_SUBDOMAIN_MAX: usize = 253;
const LABEL_VALUE_MAX: usize = 63;

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn dns_label_shape(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && is_lower_alnum(b[0])
        && is_lower_alnum(b[b.len() - 1])
        && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
}

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const ENV_VAR_NAME_MSG: &str = "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')";

fn max_len_msg(max: usize) -> String {
    format!("must be no more than {max} characters")
}

/// Problems with `s` as a DNS-1123 label (container, port and namespace names).
pub fn is_dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        errs.push(max_len_msg(DNS1123_LABEL_MAX));
    }
    if !dns_label_shape(s) {
        errs.push(DNS1123_LABEL_MSG.to_string());
    }
    errs
}

/// Problems with `s` as a DNS-1123 subdomain (most object names).
pub fn is_dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(max_len_msg(DNS1123_SUBDOMAIN_MAX));
    }
    if !s.split('.').all(dns_label_shape) {
        errs.push(DNS1123_SUBDOMAIN_MSG.to_string());
    }
    errs
}

fn qualified_name_part_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Problems with `s` as a label or annotation key: `[prefix/]name`.
pub fn is_qualified_name(s: &str) -> Vec<String> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let mut errs = Vec::new();
    match prefix {
        Some("") => errs.push("prefix part must be non-empty".to_string()),
        Some(p) => errs.extend(
            is_dns1123_subdomain(p)
                .into_iter()
                .map(|m| format!("prefix part {m}")),
        ),
        None => {}
    }
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
        return errs;
    }
    if name.len() > DNS1123_LABEL_MAX {
        errs.push(format!("name part {}", max_len_msg(DNS1123_LABEL_MAX)));
    }
    if !qualified_name_part_ok(name) {
        errs.push(QUALIFIED_NAME_MSG.to_string());
    }
    errs
}

/// Problems with `s` as a label value (may be empty).
pub fn is_valid_label_value(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > LABEL_VALUE_MAX {
        errs.push(max_len_msg(LABEL_VALUE_MAX));
    }
    if !s.is_empty() && !qualified_name_part_ok(s) {
        errs.push(LABEL_VALUE_MSG.to_string());
    }
    errs
}

pub fn is_env_var_name(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && !b[0].is_ascii_digit()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if ok {
        Vec::new()
    } else {
        vec![ENV_VAR_NAME_MSG.to_string()]
    }
}

/// An IANA service name, as used for named ports: at most 15 characters of
/// lowercase letters, digits and single '-', with at least one letter.
pub fn is_valid_port_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 15 {
        errs.push("must be no more than 15 characters".to_string());
    }
    if !s
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    }
    if s.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if !s.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if s.starts_with('-') || s.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

pub fn is_valid_port_num(port: i32) -> Vec<String> {
    if (1..=65535).contains(&port) {
        Vec::new()
    } else {
        vec!["must be between 1 and 65535, inclusive".to_string()]
    }
}

/// Turns the messages of a check into one Invalid error per message.
pub fn invalid_each(path: &Path, value: &str, msgs: Vec<String>) -> ErrorList {
    msgs.into_iter()
        .map(|m| FieldError::invalid(path, value, m))
        .collect()
}

/// Validates a label map (keys qualified names, values label values).
pub fn validate_labels(
    labels: &std::collections::BTreeMap<String, String>,
    path: &Path,
) -> ErrorList {
    let mut errs = ErrorList::new();
    for (k, v) in labels {
        errs.extend(invalid_each(path, k, is_qualified_name(k)));
        errs.extend(invalid_each(&path.key(k), v, is_valid_label_value(v)));
    }
    errs
}

/// Annotation keys are qualified names; their values are free, up to 256 KiB in total.
pub fn validate_annotations(
    annotations: &std::collections::BTreeMap<String, String>,
    path: &Path,
) -> ErrorList {
    const TOTAL_MAX: usize = 256 * 1024;
    let mut errs = ErrorList::new();
    let mut total = 0;
    for (k, v) in annotations {
        errs.extend(invalid_each(path, k, is_qualified_name(&k.to_lowercase())));
        total += k.len() + v.len();
    }
    if total > TOTAL_MAX {
        errs.push(FieldError {
            path: path.clone(),
            kind: ErrorKind::TooLong { max: TOTAL_MAX },
        });
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for ok in ["a", "my-name", "123-abc", "a1", &"a".repeat(63)] {
            assert!(is_dns1123_label(ok).is_empty(), "{ok:?}");
        }
        for bad in ["", "Foo", "-a", "a-", "a.b", "a_b", &"a".repeat(64)] {
            assert!(!is_dns1123_label(bad).is_empty(), "{bad:?}");
        }
        assert_eq!(is_dns1123_label(&"a".repeat(64)), vec![max_len_msg(63)]);
    }

    #[test]
    fn dns_subdomains() {
        for ok in ["example.com", "a", "web-1.default", "1.2.3"] {
            assert!(is_dns1123_subdomain(ok).is_empty(), "{ok:?}");
        }
        for bad in ["", "a..b", ".a", "a.", "A.b", "a_b.c", &"a.".repeat(127)] {
            assert!(!is_dns1123_subdomain(bad).is_empty(), "{bad:?}");
        }
    }

    #[test]
    fn label_keys_and_values() {
        for ok in ["app", "app.kubernetes.io/name", "a_b.C-d", "example.com/X"] {
            assert!(is_qualified_name(ok).is_empty(), "{ok:?}");
        }
        for bad in [
            "",
            "/a",
            "a/",
            "Example.com/a",
            "-a",
            "a/b/c",
            &"a".repeat(64),
        ] {
            assert!(!is_qualified_name(bad).is_empty(), "{bad:?}");
        }
        for ok in ["", "v1", "my_value", "A.b-C"] {
            assert!(is_valid_label_value(ok).is_empty(), "{ok:?}");
        }
        for bad in ["-v", "v ", "a/b", &"v".repeat(64)] {
            assert!(!is_valid_label_value(bad).is_empty(), "{bad:?}");
        }
    }

    #[test]
    fn env_names_and_ports() {
        assert!(is_env_var_name("MY_ENV.NAME-1").is_empty());
        assert!(!is_env_var_name("1ABC").is_empty());
        assert!(!is_env_var_name("A B").is_empty());
        assert!(is_valid_port_num(80).is_empty());
        assert!(!is_valid_port_num(0).is_empty());
        assert!(!is_valid_port_num(65536).is_empty());
        assert!(is_valid_port_name("http-alt").is_empty());
        assert!(!is_valid_port_name("8080").is_empty());
        assert!(!is_valid_port_name("HTTP").is_empty());
        assert!(!is_valid_port_name("a--b").is_empty());
        assert!(!is_valid_port_name("averyveryverylongname").is_empty());
    }

    #[test]
    fn messages_read_like_kubernetes() {
        let p = Path::new("spec").child("containers").index(1).child("name");
        let e = FieldError::invalid(&p, "Foo", DNS1123_LABEL_MSG);
        assert_eq!(
            e.to_string(),
            format!("spec.containers[1].name: Invalid value: \"Foo\": {DNS1123_LABEL_MSG}")
        );
        let r = FieldError::required(
            &Path::new("spec")
                .child("containers")
                .index(0)
                .child("image"),
        );
        assert_eq!(r.to_string(), "spec.containers[0].image: Required value");
        let n = FieldError::not_supported(
            &Path::new("spec.restartPolicy"),
            "Sometimes",
            &["Always", "Never"],
        );
        assert_eq!(
            n.to_string(),
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"Never\""
        );
        assert_eq!(join_errors(std::slice::from_ref(&r)), r.to_string());
        assert_eq!(join_errors(&[r.clone(), n.clone()]), format!("[{r}, {n}]"));
        assert_eq!(
            Path::new("metadata").child("labels").key("app").as_str(),
            "metadata.labels[app]"
        );
    }

    #[test]
    fn label_maps() {
        let mut m = std::collections::BTreeMap::new();
        m.insert("app".to_string(), "web".to_string());
        assert!(validate_labels(&m, &Path::new("metadata.labels")).is_empty());
        m.insert("bad key".to_string(), "-x".to_string());
        let errs = validate_labels(&m, &Path::new("metadata.labels"));
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[1].path.as_str(), "metadata.labels[bad key]");
    }
}
