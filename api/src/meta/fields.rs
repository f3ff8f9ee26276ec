//! Field selectors (`?fieldSelector=spec.nodeName=node1,status.phase!=Failed`).
//!
//! Only equality tests exist; which fields may be named depends on the kind,
//! each kind lists them through [`FieldSource`].

use std::fmt;

use super::selector::SelectorError;
use super::ObjectMeta;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOp {
    Equals,
    NotEquals,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub op: FieldOp,
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}

/// A kind whose objects can be filtered by field selectors.
pub trait FieldSource {
    /// The fields this kind supports, e.g. `["metadata.name", "spec.nodeName"]`.
    fn supported_fields() -> &'static [&'static str];
    /// The value of a supported field (empty string when unset, as in Kubernetes).
    fn field_value(&self, field: &str) -> Option<String>;
}

/// `metadata.name` and `metadata.namespace`, supported by every kind.
pub fn meta_field(meta: &ObjectMeta, field: &str) -> Option<String> {
    match field {
        "metadata.name" => Some(meta.name.clone()),
        "metadata.namespace" => Some(meta.namespace.clone()),
        _ => None,
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// Finds the first unescaped `=`, `==` or `!=`: (operator start, operator end, op).
fn find_operator(term: &str) -> Option<(usize, usize, FieldOp)> {
    let b = term.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'!' if b.get(i + 1) == Some(&b'=') => return Some((i, i + 2, FieldOp::NotEquals)),
            b'=' if b.get(i + 1) == Some(&b'=') => return Some((i, i + 2, FieldOp::Equals)),
            b'=' => return Some((i, i + 1, FieldOp::Equals)),
            _ => {}
        }
        i += 1;
    }
    None
}

fn parse_term(input: &str, term: &str) -> Result<FieldRequirement, SelectorError> {
    let err = |message: String| SelectorError {
        input: input.to_string(),
        message,
    };
    let Some((start, end, op)) = find_operator(term) else {
        return Err(err(format!(
            "invalid field selector term {term:?}: expected field=value or field!=value"
        )));
    };
    let field = term[..start].trim();
    if field.is_empty() {
        return Err(err(format!(
            "invalid field selector term {term:?}: empty field name"
        )));
    }
    Ok(FieldRequirement {
        field: field.to_string(),
        op,
        value: unescape(term[end..].trim()),
    })
}

impl FieldSelector {
    pub fn parse(input: &str) -> Result<FieldSelector, SelectorError> {
        if input.trim().is_empty() {
            return Ok(FieldSelector::default());
        }
        let mut requirements = Vec::new();
        for raw in split_terms(input) {
            requirements.push(parse_term(input, &raw)?);
        }
        Ok(FieldSelector { requirements })
    }

    /// Fails like the API server does: `field label not supported: spec.foo`.
    pub fn check_supported<T: FieldSource>(&self) -> Result<(), SelectorError> {
        for r in &self.requirements {
            if !T::supported_fields().contains(&r.field.as_str()) {
                return Err(SelectorError {
                    input: self.to_string(),
                    message: format!("field label not supported: {}", r.field),
                });
            }
        }
        Ok(())
    }

    pub fn matches<T: FieldSource>(&self, obj: &T) -> bool {
        self.requirements.iter().all(|r| {
            let have = obj.field_value(&r.field);
            match r.op {
                FieldOp::Equals => have.as_deref() == Some(r.value.as_str()),
                FieldOp::NotEquals => have.as_deref() != Some(r.value.as_str()),
            }
        })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The value required for `field` by an `=` term, used to narrow a list
    /// (e.g. the agent's `spec.nodeName=<node>` watch).
    pub fn required_value(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.op == FieldOp::Equals)
            .map(|r| r.value.as_str())
    }
}

/// Splits on commas not preceded by a backslash; escapes stay for the term parser.
fn split_terms(input: &str) -> Vec<String> {
    let mut terms = vec![String::new()];
    let mut escaped = false;
    for c in input.chars() {
        let cur = terms.last_mut();
        match (c, escaped, cur) {
            (',', false, _) => terms.push(String::new()),
            (c, _, Some(cur)) => {
                cur.push(c);
                escaped = c == '\\' && !escaped;
            }
            (_, _, None) => {}
        }
    }
    terms
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace('=', "\\=")
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| {
                let op = if r.op == FieldOp::Equals { "=" } else { "!=" };
                format!("{}{op}{}", r.field, escape(&r.value))
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl std::str::FromStr for FieldSelector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<FieldSelector, SelectorError> {
        FieldSelector::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Thing {
        meta: ObjectMeta,
        node: String,
    }

    impl FieldSource for Thing {
        fn supported_fields() -> &'static [&'static str] {
            &["metadata.name", "metadata.namespace", "spec.nodeName"]
        }
        fn field_value(&self, field: &str) -> Option<String> {
            match field {
                "spec.nodeName" => Some(self.node.clone()),
                _ => meta_field(&self.meta, field),
            }
        }
    }

    #[test]
    fn parse_and_match() {
        let t = Thing {
            meta: ObjectMeta::namespaced("default", "web"),
            node: "node-1".into(),
        };
        let s = FieldSelector::parse("spec.nodeName=node-1,metadata.name!=db").unwrap();
        assert!(s.check_supported::<Thing>().is_ok());
        assert!(s.matches(&t));
        assert_eq!(s.required_value("spec.nodeName"), Some("node-1"));
        assert!(!FieldSelector::parse("metadata.namespace==kube-system")
            .unwrap()
            .matches(&t));
        assert!(FieldSelector::parse("spec.nodeName=")
            .unwrap()
            .matches(&Thing {
                meta: ObjectMeta::default(),
                node: String::new()
            }));
        assert_eq!(s.to_string(), "spec.nodeName=node-1,metadata.name!=db");
        assert!(FieldSelector::parse("").unwrap().matches(&t));
    }

    #[test]
    fn escapes() {
        let s = FieldSelector::parse(r"metadata.name=a\,b\=c").unwrap();
        assert_eq!(s.requirements.len(), 1);
        assert_eq!(s.requirements[0].value, "a,b=c");
        assert_eq!(s.to_string(), r"metadata.name=a\,b\=c");
    }

    #[test]
    fn errors() {
        assert!(FieldSelector::parse("spec.nodeName").is_err());
        assert!(FieldSelector::parse("=x").is_err());
        let e = FieldSelector::parse("spec.foo=1")
            .unwrap()
            .check_supported::<Thing>()
            .unwrap_err();
        assert_eq!(e.message, "field label not supported: spec.foo");
    }
}
