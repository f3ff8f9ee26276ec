//! resource.Quantity: `100m`, `0.5`, `128Mi`, `1G`, `1e3`.
//!
//! The value is kept exactly as an integer count of nano-units, which covers
//! every suffix Kubernetes accepts (n .. E, Ki .. Ei) without floating point;
//! like Kubernetes, anything finer than a nano-unit is rounded up. The suffix
//! family the user wrote (decimal SI, binary SI or `e` exponent) is kept so the
//! value is written back in the same family, in Kubernetes' canonical form
//! (`0.5` -> `500m`, `2000` -> `2k`, `1024Mi` -> `1Gi`). One deliberate
//! difference: a binary value that is not a whole number (`0.1Ki`) is written
//! exactly in decimal (`102400m`) instead of being rounded up.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::{Add, Sub};
use std::str::FromStr;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

const NANO: i128 = 1_000_000_000;
/// Exponents beyond this overflow i128 nano-units (about 1.7e38 / 1e9).
const MAX_DECIMAL_EXPONENT: i32 = 28;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("invalid quantity {0:?}: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    Syntax(String),
    #[error("invalid quantity {0:?}: unknown suffix {1:?}")]
    Suffix(String, String),
    #[error("invalid quantity {0:?}: value too large")]
    TooLarge(String),
}

/// Which family of suffixes a quantity is written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `m`, `k`, `M`, `G`, ... (and plain numbers)
    DecimalSI,
    /// `Ki`, `Mi`, `Gi`, ...
    BinarySI,
    /// `1e3`, `5E-3`
    DecimalExponent,
}

/// A resource amount. Equality and order compare the value, not the spelling.
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

enum Suffix {
    Decimal(i32),
    Binary(u32),
    Exponent(i32),
}

fn parse_suffix(input: &str, suffix: &str) -> Result<Suffix, QuantityError> {
    let decimal = match suffix {
        "" => Some(0),
        "n" => Some(-9),
        "u" => Some(-6),
        "m" => Some(-3),
        "k" => Some(3),
        "M" => Some(6),
        "G" => Some(9),
        "T" => Some(12),
        "P" => Some(15),
        "E" => Some(18),
        _ => None,
    };
    if let Some(e) = decimal {
        return Ok(Suffix::Decimal(e));
    }
    let binary = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
        .iter()
        .position(|b| *b == suffix);
    if let Some(i) = binary {
        return Ok(Suffix::Binary(i as u32 + 1));
    }
    if let Some(exp) = suffix.strip_prefix(['e', 'E']) {
        let digits = exp.trim_start_matches(['+', '-']);
        if !digits.is_empty()
            && digits.len() + 1 >= exp.len()
            && digits.bytes().all(|c| c.is_ascii_digit())
        {
            return exp
                .parse::<i32>()
                .map(Suffix::Exponent)
                .map_err(|_| QuantityError::TooLarge(input.to_string()));
        }
    }
    let looks_like_suffix = suffix
        .bytes()
        .all(|c| b"eEinumkKMGTP+-0123456789".contains(&c));
    if looks_like_suffix {
        Err(QuantityError::Suffix(input.to_string(), suffix.to_string()))
    } else {
        Err(QuantityError::Syntax(input.to_string()))
    }
}

fn pow10(e: u32) -> Option<i128> {
    10i128.checked_pow(e)
}

/// `mantissa * 10^exp10`, rounding a fractional result up (away from zero).
fn scale(input: &str, mantissa: i128, exp10: i32) -> Result<i128, QuantityError> {
    let too_large = || QuantityError::TooLarge(input.to_string());
    if exp10 >= 0 {
        let m = pow10(exp10 as u32).ok_or_else(too_large)?;
        return mantissa.checked_mul(m).ok_or_else(too_large);
    }
    match pow10(exp10.unsigned_abs()) {
        Some(d) => Ok(div_ceil(mantissa, d)),
        // Divisor beyond i128: any non-zero mantissa is below one nano-unit.
        None => Ok(i128::from(mantissa > 0)),
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(input: &str) -> Result<Quantity, QuantityError> {
        let syntax = || QuantityError::Syntax(input.to_string());
        let (negative, rest) = match input.as_bytes().first() {
            Some(b'-') => (true, &input[1..]),
            Some(b'+') => (false, &input[1..]),
            _ => (false, input),
        };
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(num_len);
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        if int_part.is_empty() && frac_part.is_empty() || frac_part.contains('.') {
            return Err(syntax());
        }
        let mut mantissa: i128 = 0;
        for c in int_part.bytes().chain(frac_part.bytes()) {
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(i128::from(c - b'0')))
                .ok_or_else(|| QuantityError::TooLarge(input.to_string()))?;
        }
        let frac = i32::try_from(frac_part.len()).map_err(|_| syntax())?;
        let (nanos, format) = match parse_suffix(input, suffix)? {
            Suffix::Decimal(e) => (scale(input, mantissa, e + 9 - frac)?, Format::DecimalSI),
            Suffix::Exponent(e) if e.abs() > MAX_DECIMAL_EXPONENT => {
                return Err(QuantityError::TooLarge(input.to_string()))
            }
            Suffix::Exponent(e) => (
                scale(input, mantissa, e + 9 - frac)?,
                Format::DecimalExponent,
            ),
            Suffix::Binary(n) => {
                let m = mantissa
                    .checked_mul(1i128 << (10 * n))
                    .ok_or_else(|| QuantityError::TooLarge(input.to_string()))?;
                (scale(input, m, 9 - frac)?, Format::BinarySI)
            }
        };
        Ok(Quantity {
            nanos: if negative { -nanos } else { nanos },
            format,
        })
    }
}

impl Quantity {
    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        s.parse()
    }

    /// `n` thousandths, written like CPU (`250m`).
    pub fn from_milli(n: i64) -> Quantity {
        Quantity {
            nanos: i128::from(n) * 1_000_000,
            format: Format::DecimalSI,
        }
    }

    /// A whole number in the given family (`from_value(64 << 20, BinarySI)` is `64Mi`).
    pub fn from_value(n: i64, format: Format) -> Quantity {
        Quantity {
            nanos: i128::from(n) * NANO,
            format,
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// The value in nano-units, exact.
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    /// Thousandths, rounded up like Kubernetes' MilliValue (CPU in millicores).
    pub fn milli_value(&self) -> i64 {
        clamp_i64(div_ceil(self.nanos, 1_000_000))
    }

    /// Whole units, rounded up like Kubernetes' Value (memory in bytes).
    pub fn value(&self) -> i64 {
        clamp_i64(div_ceil(self.nanos, NANO))
    }

    pub fn as_f64(&self) -> f64 {
        self.nanos as f64 / NANO as f64
    }
}

fn div_ceil(a: i128, b: i128) -> i128 {
    let q = a.div_euclid(b);
    if a.rem_euclid(b) == 0 {
        q
    } else {
        q + 1
    }
}

fn clamp_i64(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

impl Add for Quantity {
    type Output = Quantity;
    fn add(self, rhs: Quantity) -> Quantity {
        Quantity {
            nanos: self.nanos.saturating_add(rhs.nanos),
            format: self.format,
        }
    }
}

impl Sub for Quantity {
    type Output = Quantity;
    fn sub(self, rhs: Quantity) -> Quantity {
        Quantity {
            nanos: self.nanos.saturating_sub(rhs.nanos),
            format: self.format,
        }
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Quantity) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl Hash for Quantity {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.nanos.hash(h);
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Quantity) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Quantity) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

const DECIMAL_SUFFIXES: [(u32, &str); 10] = [
    (27, "E"),
    (24, "P"),
    (21, "T"),
    (18, "G"),
    (15, "M"),
    (12, "k"),
    (9, ""),
    (6, "m"),
    (3, "u"),
    (0, "n"),
];

const BINARY_SUFFIXES: [(u32, &str); 6] = [
    (60, "Ei"),
    (50, "Pi"),
    (40, "Ti"),
    (30, "Gi"),
    (20, "Mi"),
    (10, "Ki"),
];

impl Quantity {
    /// Largest power of a thousand that divides the value exactly.
    fn fmt_decimal(&self, f: &mut fmt::Formatter<'_>, exponent_style: bool) -> fmt::Result {
        for (exp, suffix) in DECIMAL_SUFFIXES {
            let unit = 10i128.pow(exp);
            if self.nanos % unit == 0 {
                let n = self.nanos / unit;
                let e = exp as i32 - 9;
                return match (exponent_style, e) {
                    (true, 0) => write!(f, "{n}"),
                    (true, e) => write!(f, "{n}e{e}"),
                    (false, _) => write!(f, "{n}{suffix}"),
                };
            }
        }
        unreachable!("every integer is a multiple of 10^0")
    }

    fn fmt_binary(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values that are not whole units go out in decimal: Kubernetes rounds
        // them up to a whole unit, which would change a stored value.
        if self.nanos % NANO != 0 {
            return self.fmt_decimal(f, false);
        }
        let whole = self.nanos / NANO;
        for (shift, suffix) in BINARY_SUFFIXES {
            if whole % (1i128 << shift) == 0 {
                return write!(f, "{}{suffix}", whole >> shift);
            }
        }
        write!(f, "{whole}")
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        match self.format {
            Format::DecimalSI => self.fmt_decimal(f, false),
            Format::DecimalExponent => self.fmt_decimal(f, true),
            Format::BinarySI => self.fmt_binary(f),
        }
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Accepts strings and, as Kubernetes does, bare JSON/YAML numbers (`cpu: 0.5`).
impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Quantity, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quantity such as \"100m\", \"128Mi\" or 0.5")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Quantity, E> {
                s.parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Quantity, E> {
                Ok(Quantity::from_value(n, Format::DecimalSI))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Quantity, E> {
                n.to_string().parse().map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Quantity, E> {
                if !n.is_finite() {
                    return Err(E::custom(format!("invalid quantity {n}")));
                }
                n.to_string().parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        s.parse()
            .unwrap_or_else(|e| panic!("{s:?} did not parse: {e}"))
    }

    #[test]
    fn parse_table() {
        // input, canonical form, milli value, value
        let table: &[(&str, &str, i64, i64)] = &[
            ("100m", "100m", 100, 1),
            ("0.5", "500m", 500, 1),
            ("1", "1", 1000, 1),
            ("2000", "2k", 2_000_000, 2000),
            ("1500", "1500", 1_500_000, 1500),
            ("1.5", "1500m", 1500, 2),
            ("128Mi", "128Mi", 134_217_728_000, 134_217_728),
            ("1024Mi", "1Gi", 1_073_741_824_000, 1_073_741_824),
            ("1.5Gi", "1536Mi", 1_610_612_736_000, 1_610_612_736),
            ("1G", "1G", 1_000_000_000_000, 1_000_000_000),
            ("1e3", "1e3", 1_000_000, 1000),
            ("1.5e3", "1500", 1_500_000, 1500),
            ("5E-3", "5e-3", 5, 1),
            ("250u", "250u", 1, 1),
            ("10n", "10n", 1, 1),
            ("+3", "3", 3000, 3),
            ("-100m", "-100m", -100, 0),
            ("0", "0", 0, 0),
            ("0Mi", "0", 0, 0),
            (".5", "500m", 500, 1),
            ("5.", "5", 5000, 5),
            ("0.1Ki", "102400m", 102_400, 103),
            ("2Ei", "2Ei", i64::MAX, 2_305_843_009_213_693_952),
        ];
        for (input, canon, milli, value) in table {
            let v = q(input);
            assert_eq!(v.to_string(), *canon, "canonical of {input}");
            assert_eq!(v.milli_value(), *milli, "milli of {input}");
            assert_eq!(v.value(), *value, "value of {input}");
            assert_eq!(q(canon), v, "{canon} re-parses to the same value");
        }
    }

    #[test]
    fn finer_than_nano_rounds_up() {
        assert_eq!(q("0.0000000001").nanos(), 1);
        assert_eq!(q("1.0000000001").to_string(), "1000000001n");
    }

    #[test]
    fn garbage_is_rejected() {
        for bad in [
            "",
            "m",
            "abc",
            "1.2.3",
            "1 Gi",
            " 1",
            "1Gb",
            "1mi",
            "1KiB",
            "1e",
            "1e+",
            "--1",
            "0x10",
            "1e99",
            "99999999999999999999999999999999999999999",
        ] {
            assert!(bad.parse::<Quantity>().is_err(), "{bad:?} parsed");
        }
        let e = "1Gb".parse::<Quantity>().unwrap_err().to_string();
        assert!(e.contains("1Gb"), "{e}");
    }

    #[test]
    fn compare_and_sum_across_formats() {
        assert_eq!(q("1Gi"), q("1073741824"));
        assert_eq!(q("0.5"), q("500m"));
        assert!(q("1G") < q("1Gi"));
        assert_eq!((q("250m") + q("0.75")).to_string(), "1");
        assert_eq!((q("1Gi") - q("512Mi")).to_string(), "512Mi");
    }

    #[test]
    fn serde_accepts_numbers_and_strings() {
        let v: Vec<Quantity> = serde_json::from_str(r#"["100m", 0.5, 2, "1Gi"]"#).unwrap();
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"["100m","500m","2","1Gi"]"#
        );
        let e = serde_json::from_str::<Quantity>(r#""lots""#).unwrap_err();
        assert!(e.to_string().contains("lots"), "{e}");
        assert!(serde_json::from_str::<Quantity>("true").is_err());
    }

    #[test]
    fn constructors() {
        assert_eq!(Quantity::from_milli(250).to_string(), "250m");
        assert_eq!(
            Quantity::from_value(64 << 20, Format::BinarySI).to_string(),
            "64Mi"
        );
        assert_eq!(Quantity::from_value(3, Format::DecimalSI).to_string(), "3");
    }
}
