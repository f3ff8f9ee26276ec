//! IntOrString: a port (`8080` or `http`) or an amount (`1` or `25%`).

use std::fmt;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IntOrString {
    Int(i32),
    String(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value {value:?}: {reason}")]
pub struct IntOrStringError {
    pub value: String,
    pub reason: &'static str,
}

impl IntOrString {
    /// An absolute count, or a percentage of `total` (`25%`), as for maxSurge
    /// (rounded up) and maxUnavailable (rounded down).
    pub fn scaled_value(&self, total: i32, round_up: bool) -> Result<i32, IntOrStringError> {
        let s = match self {
            IntOrString::Int(n) => return Ok(*n),
            IntOrString::String(s) => s,
        };
        let err = |reason| IntOrStringError {
            value: s.clone(),
            reason,
        };
        let pct: i64 = s
            .strip_suffix('%')
            .ok_or_else(|| err("must be an integer or a percentage"))?
            .parse()
            .map_err(|_| err("must be an integer or a percentage"))?;
        let scaled = i64::from(total) * pct;
        let v = if round_up {
            (scaled + 99).div_euclid(100)
        } else {
            scaled.div_euclid(100)
        };
        i32::try_from(v).map_err(|_| err("percentage out of range"))
    }

    pub fn as_int(&self) -> Option<i32> {
        match self {
            IntOrString::Int(n) => Some(*n),
            IntOrString::String(_) => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            IntOrString::Int(_) => None,
            IntOrString::String(s) => Some(s),
        }
    }
}

impl From<i32> for IntOrString {
    fn from(n: i32) -> Self {
        IntOrString::Int(n)
    }
}

impl From<&str> for IntOrString {
    fn from(s: &str) -> Self {
        IntOrString::String(s.to_string())
    }
}

impl fmt::Display for IntOrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrString::Int(n) => write!(f, "{n}"),
            IntOrString::String(s) => f.write_str(s),
        }
    }
}

impl Serialize for IntOrString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            IntOrString::Int(n) => s.serialize_i32(*n),
            IntOrString::String(v) => s.serialize_str(v),
        }
    }
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<IntOrString, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = IntOrString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a string")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<IntOrString, E> {
                i32::try_from(n)
                    .map(IntOrString::Int)
                    .map_err(|_| E::custom(format!("integer {n} out of range")))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<IntOrString, E> {
                i32::try_from(n)
                    .map(IntOrString::Int)
                    .map_err(|_| E::custom(format!("integer {n} out of range")))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<IntOrString, E> {
                Ok(IntOrString::String(s.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_keeps_the_kind() {
        let v: Vec<IntOrString> = serde_json::from_str(r#"[8080, "http", "25%"]"#).unwrap();
        assert_eq!(v[0], IntOrString::Int(8080));
        assert_eq!(v[1], IntOrString::from("http"));
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"[8080,"http","25%"]"#);
        assert!(serde_json::from_str::<IntOrString>("1.5").is_err());
        assert!(serde_json::from_str::<IntOrString>("4294967296").is_err());
    }

    #[test]
    fn percentages_scale_with_rounding() {
        let p = IntOrString::from("25%");
        assert_eq!(p.scaled_value(10, true).unwrap(), 3);
        assert_eq!(p.scaled_value(10, false).unwrap(), 2);
        assert_eq!(p.scaled_value(0, true).unwrap(), 0);
        assert_eq!(IntOrString::Int(4).scaled_value(10, true).unwrap(), 4);
        assert!(IntOrString::from("25").scaled_value(10, true).is_err());
        assert!(IntOrString::from("x%").scaled_value(10, true).is_err());
    }
}
