//! RFC 3339 UTC timestamps with nanoseconds, as corral-runtime's
//! `now_rfc3339` writes them (`2026-11-26T07:00:00.123456789Z`), without
//! an allocator: a fixed 30-byte array.

/// Bytes of a timestamp (years 0000-9999).
pub const STAMP_LEN: usize = 30;

/// `secs` since the Unix epoch plus `nanos`, as RFC 3339 UTC.
pub fn rfc3339(secs: i64, nanos: u32) -> [u8; STAMP_LEN] {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut out = *b"0000-00-00T00:00:00.000000000Z";
    digits(&mut out[0..4], y.clamp(0, 9999) as u64);
    digits(&mut out[5..7], m as u64);
    digits(&mut out[8..10], d as u64);
    digits(&mut out[11..13], (rem / 3600) as u64);
    digits(&mut out[14..16], (rem % 3600 / 60) as u64);
    digits(&mut out[17..19], (rem % 60) as u64);
    digits(&mut out[20..29], nanos.min(999_999_999) as u64);
    out
}

/// `n` in decimal, zero-padded to fill `dst` (high digits cut).
fn digits(dst: &mut [u8], mut n: u64) {
    for b in dst.iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's days-to-civil algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(secs: i64, nanos: u32) -> String {
        String::from_utf8(rfc3339(secs, nanos).to_vec()).unwrap()
    }

    #[test]
    fn known_instants() {
        // Expected values from `date -u -d @SECS +%Y-%m-%dT%H:%M:%S.%NZ`.
        assert_eq!(stamp(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(stamp(951_782_400, 0), "2000-02-29T00:00:00.000000000Z");
        assert_eq!(stamp(951_868_799, 1), "2000-02-29T23:59:59.000000001Z");
        assert_eq!(
            stamp(1_795_676_400, 123_456_789),
            "2026-11-26T07:00:00.123456789Z"
        );
        assert_eq!(stamp(-1, 0), "1969-12-31T23:59:59.000000000Z");
        assert_eq!(stamp(4_107_542_400, 0), "2100-03-01T00:00:00.000000000Z");
    }

    #[test]
    fn agrees_with_the_runtime_clock() {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let ours = stamp(secs, 0);
        let theirs = corral_runtime::state::now_rfc3339();
        assert_eq!(theirs.len(), STAMP_LEN);
        // Taken later, to the nanosecond: never earlier, and within seconds.
        assert!(ours <= theirs, "{ours} > {theirs}");
        assert!(stamp(secs + 5, 0) > theirs, "{theirs} too far from {ours}");
    }
}
