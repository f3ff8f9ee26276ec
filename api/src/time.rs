//! RFC 3339 timestamps as Kubernetes writes them.
//!
//! `Time` has second precision and is written `2026-11-26T01:02:03Z` (metav1.Time);
//! `MicroTime` keeps microseconds, `2026-11-26T01:02:03.000123Z` (metav1.MicroTime,
//! used by Lease and Event.eventTime). Both read any RFC 3339 offset and fraction,
//! so timestamps written by other tools parse too. Hand-written because the
//! civil-date arithmetic is twenty lines and the crate needs nothing else.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid RFC 3339 timestamp {input:?}: {reason}")]
pub struct TimeError {
    pub input: String,
    pub reason: &'static str,
}

/// A point in time with second precision (metav1.Time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time {
    secs: i64,
}

/// A point in time with microsecond precision (metav1.MicroTime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MicroTime {
    micros: i64,
}

impl Time {
    pub fn now() -> Time {
        Time::from_system_time(SystemTime::now())
    }

    pub fn from_unix(secs: i64) -> Time {
        Time { secs }
    }

    /// Truncates to the second, as the API server does when it stores a Time.
    pub fn from_system_time(t: SystemTime) -> Time {
        Time {
            secs: MicroTime::from_system_time(t).micros.div_euclid(1_000_000),
        }
    }

    pub fn unix_seconds(&self) -> i64 {
        self.secs
    }

    pub fn to_system_time(&self) -> SystemTime {
        MicroTime::from_unix_micros(self.secs.saturating_mul(1_000_000)).to_system_time()
    }

    /// `self + secs`, used for deadlines such as a deletion grace period.
    pub fn add_seconds(&self, secs: i64) -> Time {
        Time {
            secs: self.secs.saturating_add(secs),
        }
    }
}

impl MicroTime {
    pub fn now() -> MicroTime {
        MicroTime::from_system_time(SystemTime::now())
    }

    pub fn from_unix_micros(micros: i64) -> MicroTime {
        MicroTime { micros }
    }

    pub fn from_system_time(t: SystemTime) -> MicroTime {
        let micros = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
        };
        MicroTime { micros }
    }

    pub fn unix_micros(&self) -> i64 {
        self.micros
    }

    pub fn to_system_time(&self) -> SystemTime {
        let magnitude = Duration::from_micros(self.micros.unsigned_abs());
        if self.micros >= 0 {
            UNIX_EPOCH + magnitude
        } else {
            UNIX_EPOCH - magnitude
        }
    }

    pub fn to_time(&self) -> Time {
        Time {
            secs: self.micros.div_euclid(1_000_000),
        }
    }
}

impl From<Time> for MicroTime {
    fn from(t: Time) -> MicroTime {
        MicroTime {
            micros: t.secs.saturating_mul(1_000_000),
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn write_civil(f: &mut fmt::Formatter<'_>, secs: i64) -> fmt::Result {
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    write!(
        f,
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_civil(f, self.secs)?;
        f.write_str("Z")
    }
}

impl fmt::Display for MicroTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_civil(f, self.micros.div_euclid(1_000_000))?;
        write!(f, ".{:06}Z", self.micros.rem_euclid(1_000_000))
    }
}

/// Reads fixed-width ASCII digits at `pos`.
fn digits(b: &[u8], pos: usize, n: usize) -> Option<u32> {
    let s = b.get(pos..pos + n)?;
    s.iter().try_fold(0u32, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

/// Parses RFC 3339 into microseconds since the epoch (fractions past µs are dropped).
fn parse_rfc3339(s: &str) -> Result<i64, TimeError> {
    let err = |reason| TimeError {
        input: s.to_string(),
        reason,
    };
    let b = s.as_bytes();
    let shape_ok = b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't' | b' ')
        && b[13] == b':'
        && b[16] == b':';
    if !shape_ok {
        return Err(err(
            "expected YYYY-MM-DDTHH:MM:SS followed by Z or an offset",
        ));
    }
    let field = |pos, n| digits(b, pos, n).ok_or_else(|| err("expected digits"));
    let (y, mo, d) = (i64::from(field(0, 4)?), field(5, 2)?, field(8, 2)?);
    let (h, mi, sec) = (field(11, 2)?, field(14, 2)?, field(17, 2)?);
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) {
        return Err(err("date out of range"));
    }
    if h > 23 || mi > 59 || sec > 60 {
        return Err(err("time of day out of range"));
    }
    let mut pos = 19;
    let mut micros = 0i64;
    if b[pos] == b'.' {
        pos += 1;
        let start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            if pos - start < 6 {
                micros = micros * 10 + i64::from(b[pos] - b'0');
            }
            pos += 1;
        }
        if pos == start {
            return Err(err("empty fraction of a second"));
        }
        micros *= 10i64.pow(6u32.saturating_sub((pos - start) as u32));
    }
    let offset = parse_offset(&b[pos..]).ok_or_else(|| err("expected Z or +HH:MM / -HH:MM"))?;
    let secs =
        days_from_civil(y, mo, d) * 86_400 + i64::from(h * 3600 + mi * 60 + sec.min(59)) - offset;
    Ok(secs * 1_000_000 + micros)
}

/// Offset in seconds east of UTC.
fn parse_offset(b: &[u8]) -> Option<i64> {
    match b {
        [b'Z' | b'z'] => Some(0),
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let h = i64::from(digits(b, 1, 2)?);
            let m = i64::from(digits(b, 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let off = h * 3600 + m * 60;
            Some(if *sign == b'-' { -off } else { off })
        }
        _ => None,
    }
}

impl FromStr for Time {
    type Err = TimeError;
    fn from_str(s: &str) -> Result<Time, TimeError> {
        parse_rfc3339(s).map(|us| MicroTime::from_unix_micros(us).to_time())
    }
}

impl FromStr for MicroTime {
    type Err = TimeError;
    fn from_str(s: &str) -> Result<MicroTime, TimeError> {
        parse_rfc3339(s).map(MicroTime::from_unix_micros)
    }
}

macro_rules! serde_via_string {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_via_string!(Time);
serde_via_string!(MicroTime);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_round_trips_kubernetes_format() {
        let t: Time = "2026-11-26T01:02:03Z".parse().unwrap();
        assert_eq!(t.to_string(), "2026-11-26T01:02:03Z");
        assert_eq!(
            "1970-01-01T00:00:00Z"
                .parse::<Time>()
                .unwrap()
                .unix_seconds(),
            0
        );
        assert_eq!(
            "2000-02-29T12:00:00Z"
                .parse::<Time>()
                .unwrap()
                .unix_seconds(),
            951_825_600
        );
    }

    #[test]
    fn offsets_and_fractions_are_normalised() {
        let t: Time = "2026-11-26T03:02:03.999+02:00".parse().unwrap();
        assert_eq!(t.to_string(), "2026-11-26T01:02:03Z");
        let m: MicroTime = "2026-11-26T01:02:03.123456789Z".parse().unwrap();
        assert_eq!(m.to_string(), "2026-11-26T01:02:03.123456Z");
        let m: MicroTime = "2026-11-26T01:02:03.5Z".parse().unwrap();
        assert_eq!(m.to_string(), "2026-11-26T01:02:03.500000Z");
    }

    #[test]
    fn before_epoch() {
        let t: MicroTime = "1969-12-31T23:59:59.250000Z".parse().unwrap();
        assert_eq!(t.unix_micros(), -750_000);
        assert_eq!(t.to_string(), "1969-12-31T23:59:59.250000Z");
        assert_eq!(t.to_time().to_string(), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn garbage_is_rejected() {
        for bad in [
            "",
            "2026-11-26",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-26T24:00:00Z",
            "2026-11-26T01:02:03",
            "2026-11-26T01:02:03+0200",
            "2026-11-26T01:02:03.Z",
            "2026-11-26T01:02:0xZ",
        ] {
            assert!(bad.parse::<Time>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn system_time_conversion() {
        let now = SystemTime::now();
        let m = MicroTime::from_system_time(now);
        let back = m.to_system_time();
        let diff = now.duration_since(back).unwrap();
        assert!(diff < Duration::from_micros(1));
        let t = Time::from_system_time(now);
        assert_eq!(t, m.to_time());
    }

    #[test]
    fn serde_as_string() {
        let t: Time = serde_json::from_str("\"2026-11-26T01:02:03Z\"").unwrap();
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"2026-11-26T01:02:03Z\""
        );
        let e = serde_json::from_str::<Time>("\"yesterday\"").unwrap_err();
        assert!(e.to_string().contains("yesterday"), "{e}");
    }
}
