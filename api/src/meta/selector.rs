//! Label selectors: the structured form in specs (`matchLabels`,
//! `matchExpressions`) and the string form of `?labelSelector=` and `-l`
//! (`a=b,c!=d,e in (x,y),!f,g`).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::validation::{is_qualified_name, is_valid_label_value};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: LabelSelectorOperator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LabelSelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// The parsed string form: requirements that must all hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    pub requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: Operator,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector {input:?}: {message}")]
pub struct SelectorError {
    pub input: String,
    pub message: String,
}

impl LabelSelector {
    pub fn from_labels(labels: &BTreeMap<String, String>) -> LabelSelector {
        LabelSelector {
            match_labels: labels.clone(),
            match_expressions: Vec::new(),
        }
    }

    /// True when the selector has no terms; an empty selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.to_selector().matches(labels)
    }

    pub fn to_selector(&self) -> Selector {
        let from_labels = self.match_labels.iter().map(|(k, v)| Requirement {
            key: k.clone(),
            op: Operator::Equals,
            values: vec![v.clone()],
        });
        let from_exprs = self.match_expressions.iter().map(|e| Requirement {
            key: e.key.clone(),
            op: match e.operator {
                LabelSelectorOperator::In => Operator::In,
                LabelSelectorOperator::NotIn => Operator::NotIn,
                LabelSelectorOperator::Exists => Operator::Exists,
                LabelSelectorOperator::DoesNotExist => Operator::DoesNotExist,
            },
            values: e.values.clone(),
        });
        Selector {
            requirements: from_labels.chain(from_exprs).collect(),
        }
    }
}

impl Requirement {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        let listed = |v: &String| self.values.iter().any(|x| x == v);
        let compare = |v: &String, f: fn(i64, i64) -> bool| {
            let (Ok(have), Some(Ok(want))) = (
                v.parse::<i64>(),
                self.values.first().map(|w| w.parse::<i64>()),
            ) else {
                return false;
            };
            f(have, want)
        };
        match self.op {
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::Equals | Operator::In => value.is_some_and(listed),
            Operator::NotEquals | Operator::NotIn => !value.is_some_and(listed),
            Operator::GreaterThan => value.is_some_and(|v| compare(v, |a, b| a > b)),
            Operator::LessThan => value.is_some_and(|v| compare(v, |a, b| a < b)),
        }
    }
}

impl Selector {
    /// Everything matches the empty selector.
    pub fn everything() -> Selector {
        Selector::default()
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// `app=web,tier` from a label map.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Selector {
        LabelSelector::from_labels(labels).to_selector()
    }

    pub fn parse(input: &str) -> Result<Selector, SelectorError> {
        Parser::new(input).selector()
    }
}

impl std::str::FromStr for Selector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Selector, SelectorError> {
        Selector::parse(s)
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.values.first().map(String::as_str).unwrap_or("");
        match self.op {
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::Equals => write!(f, "{}={first}", self.key),
            Operator::NotEquals => write!(f, "{}!={first}", self.key),
            Operator::GreaterThan => write!(f, "{}>{first}", self.key),
            Operator::LessThan => write!(f, "{}<{first}", self.key),
            Operator::In | Operator::NotIn => {
                let word = if self.op == Operator::In {
                    "in"
                } else {
                    "notin"
                };
                let mut values = self.values.clone();
                values.sort();
                write!(f, "{} {word} ({})", self.key, values.join(","))
            }
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.requirements.iter().map(|r| r.to_string()).collect();
        f.write_str(&parts.join(","))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Eq,
    NotEq,
    In,
    NotIn,
    Open,
    Close,
    Comma,
    Bang,
    Gt,
    Lt,
    End,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Ident(s) => write!(f, "identifier {s:?}"),
            Token::Eq => f.write_str("'='"),
            Token::NotEq => f.write_str("'!='"),
            Token::In => f.write_str("'in'"),
            Token::NotIn => f.write_str("'notin'"),
            Token::Open => f.write_str("'('"),
            Token::Close => f.write_str("')'"),
            Token::Comma => f.write_str("','"),
            Token::Bang => f.write_str("'!'"),
            Token::Gt => f.write_str("'>'"),
            Token::Lt => f.write_str("'<'"),
            Token::End => f.write_str("end of input"),
        }
    }
}

fn lex(input: &str) -> Vec<Token> {
    let special = |c: char| c.is_whitespace() || "!=(),<>".contains(c);
    let mut tokens = Vec::new();
    let mut chars = input.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if special(c) {
            chars.next();
            let doubled = |next: Option<&char>| next == Some(&'=');
            tokens.push(match c {
                '!' if doubled(chars.peek()) => {
                    chars.next();
                    Token::NotEq
                }
                '=' => {
                    if doubled(chars.peek()) {
                        chars.next();
                    }
                    Token::Eq
                }
                '!' => Token::Bang,
                '(' => Token::Open,
                ')' => Token::Close,
                ',' => Token::Comma,
                '<' => Token::Lt,
                _ => Token::Gt,
            });
            continue;
        }
        let mut word = String::new();
        while let Some(&c) = chars.peek() {
            if special(c) {
                break;
            }
            word.push(c);
            chars.next();
        }
        tokens.push(match word.as_str() {
            "in" => Token::In,
            "notin" => Token::NotIn,
            _ => Token::Ident(word),
        });
    }
    tokens.push(Token::End);
    tokens
}

struct Parser<'a> {
    input: &'a str,
    tokens: Vec<Token>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Parser<'a> {
        Parser {
            input,
            tokens: lex(input),
            pos: 0,
        }
    }

    fn peek(&self) -> &Token {
        self.tokens.get(self.pos).unwrap_or(&Token::End)
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        self.pos += 1;
        t
    }

    fn error(&self, message: String) -> SelectorError {
        SelectorError {
            input: self.input.to_string(),
            message,
        }
    }

    fn unexpected(&self, found: &Token, expected: &str) -> SelectorError {
        self.error(format!("found {found}, expected {expected}"))
    }

    fn selector(mut self) -> Result<Selector, SelectorError> {
        let mut requirements = Vec::new();
        if *self.peek() == Token::End {
            return Ok(Selector { requirements });
        }
        loop {
            requirements.push(self.requirement()?);
            match self.next() {
                Token::End => return Ok(Selector { requirements }),
                Token::Comma => {}
                other => return Err(self.unexpected(&other, "',' or end of input")),
            }
        }
    }

    fn key(&mut self) -> Result<String, SelectorError> {
        match self.next() {
            Token::Ident(k) => {
                if let Some(m) = is_qualified_name(&k).into_iter().next() {
                    return Err(self.error(format!("invalid label key {k:?}: {m}")));
                }
                Ok(k)
            }
            other => Err(self.unexpected(&other, "a label key")),
        }
    }

    fn value(&mut self) -> Result<String, SelectorError> {
        let v = match self.peek().clone() {
            Token::Ident(v) => {
                self.pos += 1;
                v
            }
            // `a=` selects an empty value, as in Kubernetes.
            Token::Comma | Token::End | Token::Close => String::new(),
            other => return Err(self.unexpected(&other, "a label value")),
        };
        if let Some(m) = is_valid_label_value(&v).into_iter().next() {
            return Err(self.error(format!("invalid label value {v:?}: {m}")));
        }
        Ok(v)
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let req = |key, op, values| Requirement { key, op, values };
        if *self.peek() == Token::Bang {
            self.pos += 1;
            return Ok(req(self.key()?, Operator::DoesNotExist, Vec::new()));
        }
        let key = self.key()?;
        match self.peek().clone() {
            Token::Comma | Token::End => Ok(req(key, Operator::Exists, Vec::new())),
            Token::Eq => {
                self.pos += 1;
                Ok(req(key, Operator::Equals, vec![self.value()?]))
            }
            Token::NotEq => {
                self.pos += 1;
                Ok(req(key, Operator::NotEquals, vec![self.value()?]))
            }
            Token::Gt | Token::Lt => {
                let op = if self.next() == Token::Gt {
                    Operator::GreaterThan
                } else {
                    Operator::LessThan
                };
                let v = self.value()?;
                if v.parse::<i64>().is_err() {
                    return Err(self.error(format!(
                        "for '<' and '>' operators the value must be an integer, not {v:?}"
                    )));
                }
                Ok(req(key, op, vec![v]))
            }
            Token::In | Token::NotIn => {
                let op = if self.next() == Token::In {
                    Operator::In
                } else {
                    Operator::NotIn
                };
                Ok(req(key, op, self.value_set()?))
            }
            other => Err(self.unexpected(&other, "'=', '!=', 'in', 'notin', ',' or end of input")),
        }
    }

    fn value_set(&mut self) -> Result<Vec<String>, SelectorError> {
        let open = self.next();
        if open != Token::Open {
            return Err(self.unexpected(&open, "'('"));
        }
        let mut values = Vec::new();
        loop {
            values.push(self.value()?);
            match self.next() {
                Token::Comma => {}
                Token::Close => break,
                other => return Err(self.unexpected(&other, "',' or ')'")),
            }
        }
        if values == [""] {
            return Err(self.error("for 'in', 'notin' operators, values set can't be empty".into()));
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parse_every_operator() {
        let s = Selector::parse("a=b, c!=d,e in (x, y),f notin (z),!g,h,i==j,n>3,m<10").unwrap();
        let ops: Vec<Operator> = s.requirements.iter().map(|r| r.op).collect();
        use Operator::*;
        assert_eq!(
            ops,
            [
                Equals,
                NotEquals,
                In,
                NotIn,
                DoesNotExist,
                Exists,
                Equals,
                GreaterThan,
                LessThan
            ]
        );
        assert_eq!(s.requirements[2].values, ["x", "y"]);
        assert_eq!(
            s.to_string(),
            "a=b,c!=d,e in (x,y),f notin (z),!g,h,i=j,n>3,m<10"
        );
        assert_eq!(Selector::parse(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn empty_selects_everything() {
        let s = Selector::parse("").unwrap();
        assert!(s.is_empty());
        assert!(s.matches(&labels(&[])));
        assert!(Selector::parse("  ").unwrap().is_empty());
    }

    #[test]
    fn matching() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("rev", "7")]);
        let m = |s: &str| Selector::parse(s).unwrap().matches(&l);
        assert!(m("app=web"));
        assert!(m("app=web,tier in (front,back)"));
        assert!(!m("app=web,tier notin (front)"));
        assert!(m("env!=prod"));
        assert!(m("!env"));
        assert!(!m("!app"));
        assert!(m("rev>5,rev<8"));
        assert!(!m("rev>7"));
        assert!(!m("env in (prod)"));
        assert!(m("env notin (prod)"));
        assert!(m("app=web,tier"));
        assert!(!m("app="));
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "a in x",
            "a in ()",
            "a in (x",
            "=b",
            "a b",
            "a=b,",
            "a>x",
            "a=b=c",
            "!",
            "Bad Key=1",
            "a=-x",
            "a,,b",
        ] {
            let e = Selector::parse(bad);
            assert!(e.is_err(), "{bad:?} parsed as {:?}", e.unwrap());
        }
        let e = Selector::parse("a in x").unwrap_err();
        assert_eq!(e.message, "found identifier \"x\", expected '('");
    }

    #[test]
    fn label_selector_matches_and_converts() {
        let json = serde_json::json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "back"]},
                {"key": "canary", "operator": "DoesNotExist"}
            ]
        });
        let sel: LabelSelector = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&sel).unwrap(), json);
        assert!(sel.matches(&labels(&[("app", "web"), ("tier", "back")])));
        assert!(!sel.matches(&labels(&[
            ("app", "web"),
            ("tier", "back"),
            ("canary", "1")
        ])));
        assert!(!sel.matches(&labels(&[("app", "db"), ("tier", "back")])));
        assert_eq!(
            sel.to_selector().to_string(),
            "app=web,tier in (back,front),!canary"
        );
        assert!(LabelSelector::default().matches(&labels(&[("x", "y")])));
        let bad = serde_json::json!({"matchExpressions": [{"key": "a", "operator": "Equals"}]});
        assert!(serde_json::from_value::<LabelSelector>(bad).is_err());
    }
}
