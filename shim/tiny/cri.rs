//! The pure half of the CRI log format, as shim/src/cri.rs writes it:
//! `<RFC3339Nano> <stdout|stderr> <F|P> <text>\n`, one entry per line of a
//! chunk of output, `P` for a trailing piece without its newline; rotated
//! files are named `log.1` (newest) .. `log.N-1`.

use super::time::STAMP_LEN;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Bytes before an entry's text: stamp, stream, tag and three spaces.
pub const HEADER_LEN: usize = STAMP_LEN + 10;

/// `<stamp> stdout F ` (both stream names have six letters).
pub fn header(stamp: &[u8; STAMP_LEN], stream: Stream, complete: bool) -> [u8; HEADER_LEN] {
    let mut h = [b' '; HEADER_LEN];
    h[..STAMP_LEN].copy_from_slice(stamp);
    let name: &[u8; 6] = match stream {
        Stream::Stdout => b"stdout",
        Stream::Stderr => b"stderr",
    };
    h[STAMP_LEN + 1..STAMP_LEN + 7].copy_from_slice(name);
    h[STAMP_LEN + 8] = if complete { b'F' } else { b'P' };
    h
}

/// The lines of a chunk: (text without '\n', ended by '\n').
pub struct Lines<'a> {
    rest: &'a [u8],
}

impl<'a> Lines<'a> {
    pub fn new(data: &'a [u8]) -> Lines<'a> {
        Lines { rest: data }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = (&'a [u8], bool);

    fn next(&mut self) -> Option<(&'a [u8], bool)> {
        if self.rest.is_empty() {
            return None;
        }
        match self.rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let (line, rest) = self.rest.split_at(i);
                self.rest = &rest[1..];
                Some((line, true))
            }
            None => {
                let line = self.rest;
                self.rest = &[];
                Some((line, false))
            }
        }
    }
}

/// Whether an entry of `entry_len` bytes must start a new file: the log
/// (with `pending` bytes, written or buffered) would pass `max_size`, and
/// is not empty (an oversized entry goes into an empty file whole).
pub fn must_rotate(max_size: u64, pending: u64, entry_len: u64) -> bool {
    max_size > 0 && pending > 0 && pending + entry_len > max_size
}

/// `path` (for 0) or `path.N`, NUL-terminated, in `buf`; None if it does
/// not fit.
pub fn numbered<'b>(path: &[u8], n: u32, buf: &'b mut [u8]) -> Option<&'b [u8]> {
    let mut len = path.len();
    buf.get_mut(..len)?.copy_from_slice(path);
    if n > 0 {
        let mut digits = [0u8; 10];
        let mut i = digits.len();
        let mut rest = n;
        while rest > 0 || i == digits.len() {
            i -= 1;
            digits[i] = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        *buf.get_mut(len)? = b'.';
        len += 1;
        let d = &digits[i..];
        buf.get_mut(len..len + d.len())?.copy_from_slice(d);
        len += d.len();
    }
    *buf.get_mut(len)? = 0;
    Some(&buf[..len + 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_like_the_shim() {
        let got: Vec<(&[u8], bool)> = Lines::new(b"hi\nthere\n\npart").collect();
        assert_eq!(
            got,
            [
                (&b"hi"[..], true),
                (&b"there"[..], true),
                (&b""[..], true),
                (&b"part"[..], false)
            ]
        );
        assert_eq!(Lines::new(b"").count(), 0);
        assert_eq!(Lines::new(b"\n").collect::<Vec<_>>(), [(&b""[..], true)]);
    }

    #[test]
    fn headers_parse_as_cri() {
        let stamp = super::super::time::rfc3339(1_795_676_400, 5);
        for (stream, complete) in [
            (Stream::Stdout, true),
            (Stream::Stderr, false),
            (Stream::Stderr, true),
        ] {
            let mut line = header(&stamp, stream, complete).to_vec();
            line.extend_from_slice(b"a b  c");
            let e = crate::cri::parse_line(&line).unwrap();
            assert_eq!(e.time, "2026-11-26T07:00:00.000000005Z");
            assert_eq!(e.partial, !complete);
            assert_eq!(e.content, b"a b  c");
            let want = match stream {
                Stream::Stdout => crate::cri::Stream::Stdout,
                Stream::Stderr => crate::cri::Stream::Stderr,
            };
            assert_eq!(e.stream, want);
        }
    }

    #[test]
    fn rotation_rule() {
        assert!(!must_rotate(0, 1000, 1000));
        assert!(!must_rotate(100, 0, 500));
        assert!(!must_rotate(100, 50, 50));
        assert!(must_rotate(100, 50, 51));
    }

    #[test]
    fn numbered_names() {
        let mut buf = [0u8; 32];
        assert_eq!(
            numbered(b"/l/ctr.log", 0, &mut buf).unwrap(),
            b"/l/ctr.log\0"
        );
        assert_eq!(
            numbered(b"/l/ctr.log", 1, &mut buf).unwrap(),
            b"/l/ctr.log.1\0"
        );
        assert_eq!(
            numbered(b"/l/ctr.log", 4_000_000_000, &mut buf).unwrap(),
            b"/l/ctr.log.4000000000\0"
        );
        let mut small = [0u8; 13];
        assert!(numbered(b"/l/ctr.log", 10, &mut small).is_none());
        assert_eq!(
            numbered(b"/l/ctr.log", 9, &mut small).unwrap(),
            b"/l/ctr.log.9\0"
        );
    }
}
