//! The tiny supervisor's command line, positional (corral-shim builds it,
//! see shim/src/tiny.rs `tiny_argv`):
//!
//! `ARGV0 INIT_PID STDOUT_FD STDERR_FD HOLD_FD SHIM_FD LOG MAX_SIZE MAX_FILES -- FINISH...`
//!
//! HOLD_FD is an fd kept open and never used (a detached `--stdin`
//! container's stdin pipe), -1 for none. SHIM_FD is corral-shim's own
//! executable, which the supervisor runs at the end as
//! `ARGV0 --finish STATUS FINISH...`.

use super::sys::CStr;

/// Index of the first FINISH argument.
pub const FINISH_AT: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Work<'a> {
    pub init: i32,
    pub stdout_fd: i32,
    pub stderr_fd: i32,
    pub hold_fd: Option<i32>,
    pub shim_fd: i32,
    pub log: CStr<'a>,
    pub max_size: u64,
    pub max_files: u32,
}

/// Parse argv (program name included). The error names the bad argument.
pub fn parse<'a>(argv: &[CStr<'a>]) -> Result<Work<'a>, &'static str> {
    if argv.len() < FINISH_AT {
        return Err("too few arguments");
    }
    if argv[9].bytes() != b"--" {
        return Err("argument 9 must be --");
    }
    let fd = |i: usize, what| {
        number(argv[i].bytes())
            .filter(|&n| n <= i32::MAX as u64)
            .ok_or(what)
    };
    let hold = match argv[4].bytes() {
        b"-1" => None,
        _ => Some(fd(4, "HOLD_FD: not -1 or an fd")? as i32),
    };
    Ok(Work {
        init: fd(1, "INIT_PID: not a pid")? as i32,
        stdout_fd: fd(2, "STDOUT_FD: not an fd")? as i32,
        stderr_fd: fd(3, "STDERR_FD: not an fd")? as i32,
        hold_fd: hold,
        shim_fd: fd(5, "SHIM_FD: not an fd")? as i32,
        log: argv[6],
        max_size: number(argv[7].bytes()).ok_or("MAX_SIZE: not a number")?,
        max_files: number(argv[8].bytes())
            .filter(|&n| (1..=u32::MAX as u64).contains(&n))
            .ok_or("MAX_FILES: not a number from 1")? as u32,
    })
    .and_then(|w| {
        if w.log.bytes().is_empty() {
            Err("LOG: empty")
        } else {
            Ok(w)
        }
    })
}

/// A decimal number without sign or spaces.
pub fn number(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add((b - b'0') as u64)
    })
}

/// `n` in decimal (with a minus sign when negative) into `buf`,
/// NUL-terminated; the text's length without the NUL.
pub fn decimal(n: i64, buf: &mut [u8; 24]) -> usize {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let mut len = 0;
    if n < 0 {
        buf[0] = b'-';
        len = 1;
    }
    let d = &digits[i..];
    buf[len..len + d.len()].copy_from_slice(d);
    len += d.len();
    buf[len] = 0;
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cstrs(v: &[&str]) -> Vec<Vec<u8>> {
        v.iter()
            .map(|s| {
                let mut b = s.as_bytes().to_vec();
                b.push(0);
                b
            })
            .collect()
    }

    fn parse_strs(v: &[&str]) -> Result<Work<'static>, &'static str> {
        let owned: &'static [Vec<u8>] = Vec::leak(cstrs(v));
        let args: Vec<CStr<'static>> = owned.iter().map(|b| CStr::new(b).unwrap()).collect();
        parse(&args)
    }

    const GOOD: [&str; 12] = [
        "/usr/bin/corral-shim",
        "42",
        "5",
        "6",
        "-1",
        "7",
        "/l/ctr.log",
        "1048576",
        "3",
        "--",
        "--started-at",
        "T",
    ];

    #[test]
    fn parses_the_positions() {
        let w = parse_strs(&GOOD).unwrap();
        assert_eq!(
            (w.init, w.stdout_fd, w.stderr_fd, w.hold_fd, w.shim_fd),
            (42, 5, 6, None, 7)
        );
        assert_eq!(w.log.bytes(), b"/l/ctr.log");
        assert_eq!((w.max_size, w.max_files), (1 << 20, 3));
        let mut held = GOOD;
        held[4] = "9";
        assert_eq!(parse_strs(&held).unwrap().hold_fd, Some(9));
    }

    #[test]
    fn rejects_bad_arguments() {
        let bad = |i: usize, v: &'static str| {
            let mut a = GOOD;
            a[i] = v;
            parse_strs(&a).unwrap_err()
        };
        assert_eq!(bad(1, "x"), "INIT_PID: not a pid");
        assert_eq!(bad(2, "-5"), "STDOUT_FD: not an fd");
        assert_eq!(bad(4, "-2"), "HOLD_FD: not -1 or an fd");
        assert_eq!(bad(5, "99999999999"), "SHIM_FD: not an fd");
        assert_eq!(bad(6, ""), "LOG: empty");
        assert_eq!(bad(7, "1m"), "MAX_SIZE: not a number");
        assert_eq!(bad(8, "0"), "MAX_FILES: not a number from 1");
        assert_eq!(bad(9, "-"), "argument 9 must be --");
        assert_eq!(parse_strs(&GOOD[..9]).unwrap_err(), "too few arguments");
    }

    #[test]
    fn numbers() {
        assert_eq!(number(b"0"), Some(0));
        assert_eq!(number(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(number(b"18446744073709551616"), None);
        assert_eq!(number(b""), None);
        assert_eq!(number(b"+1"), None);
        let mut buf = [0u8; 24];
        for (n, s) in [
            (0i64, "0"),
            (137, "137"),
            (-1, "-1"),
            (i64::MIN, "-9223372036854775808"),
        ] {
            let len = decimal(n, &mut buf);
            assert_eq!(&buf[..len], s.as_bytes());
            assert_eq!(buf[len], 0);
        }
    }
}
