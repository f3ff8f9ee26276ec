//! Times as users see them: "5 seconds ago", "Up 2 minutes".

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parse the RFC 3339 UTC times we write (`2026-01-02T03:04:05.123Z`,
/// fraction optional, `Z` or `+00:00`).
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let (date, rest) = s.split_once('T')?;
    let mut d = date.splitn(3, '-');
    let y: i64 = d.next()?.parse().ok()?;
    let m: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    let (clock, offset) = split_offset(rest)?;
    let (hms, frac) = match clock.split_once('.') {
        Some((h, f)) => (h, f),
        None => (clock, ""),
    };
    let mut t = hms.splitn(3, ':');
    let hh: i64 = t.next()?.parse().ok()?;
    let mm: i64 = t.next()?.parse().ok()?;
    let ss: i64 = t.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().take(9).collect();
        let n: u32 = digits.parse().ok()?;
        n * 10u32.pow(9 - digits.len() as u32)
    };
    let secs = days_from_civil(y, m, day) * 86_400 + hh * 3600 + mm * 60 + ss - offset;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// ("03:04:05.1", offset seconds) from "03:04:05.1Z" or "...+02:00".
fn split_offset(rest: &str) -> Option<(&str, i64)> {
    if let Some(c) = rest.strip_suffix('Z').or_else(|| rest.strip_suffix('z')) {
        return Some((c, 0));
    }
    let i = rest.rfind(['+', '-'])?;
    let (clock, off) = rest.split_at(i);
    let sign = if off.starts_with('-') { -1 } else { 1 };
    let (h, m) = off[1..].split_once(':')?;
    let secs = h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60;
    Some((clock, sign * secs))
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Time since `rfc3339` (zero for the future or garbage).
pub fn since(rfc3339: &str) -> Duration {
    parse_rfc3339(rfc3339)
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default()
}

/// Docker's (go-units) human durations.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    let (m, h) = (s / 60, s / 3600);
    match () {
        _ if s < 1 => "Less than a second".into(),
        _ if s == 1 => "1 second".into(),
        _ if s < 60 => format!("{s} seconds"),
        _ if m == 1 => "About a minute".into(),
        _ if m < 60 => format!("{m} minutes"),
        _ if h == 1 => "About an hour".into(),
        _ if h < 48 => format!("{h} hours"),
        _ if h < 24 * 7 * 2 => format!("{} days", h / 24),
        _ if h < 24 * 30 * 2 => format!("{} weeks", h / 24 / 7),
        _ if h < 24 * 365 * 2 => format!("{} months", h / 24 / 30),
        _ => format!("{} years", h / 24 / 365),
    }
}

/// "5 seconds ago".
pub fn ago(rfc3339: &str) -> String {
    format!("{} ago", human(since(rfc3339)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &str) -> u64 {
        parse_rfc3339(s)
            .unwrap()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn parses_what_we_write() {
        assert_eq!(secs("1970-01-01T00:00:00Z"), 0);
        assert_eq!(secs("2000-02-29T00:00:00.000000005Z"), 951_782_400);
        assert_eq!(secs("2026-11-25T00:00:00+01:00"), 1_795_564_800 - 3600);
        let now = corral_runtime::state::now_rfc3339();
        assert!(since(&now) < Duration::from_secs(5));
        let t = parse_rfc3339("2026-11-25T00:00:00.5Z").unwrap();
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().subsec_millis(), 500);
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "yesterday",
            "2026-01-01T00:00:00",
        ] {
            assert!(parse_rfc3339(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn human_durations() {
        let h = |s| human(Duration::from_secs(s));
        assert_eq!(h(0), "Less than a second");
        assert_eq!(h(1), "1 second");
        assert_eq!(h(42), "42 seconds");
        assert_eq!(h(90), "About a minute");
        assert_eq!(h(600), "10 minutes");
        assert_eq!(h(3600), "About an hour");
        assert_eq!(h(5 * 3600), "5 hours");
        assert_eq!(h(3 * 86_400), "3 days");
        assert_eq!(h(30 * 86_400), "4 weeks");
        assert_eq!(h(100 * 86_400), "3 months");
        assert_eq!(h(800 * 86_400), "2 years");
    }
}
