//! Byte layout of the embedded store's records. Fixed-width little-endian integers
//! and length-prefixed byte strings: no schema library, and a truncated or foreign
//! record is detected (never read past its end).

use super::{Event, KeyValue, StoreError};

/// A stored value: `create_revision i64 | mod_revision i64 | value`.
pub(crate) fn encode_value(create_revision: i64, mod_revision: i64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + value.len());
    out.extend_from_slice(&create_revision.to_le_bytes());
    out.extend_from_slice(&mod_revision.to_le_bytes());
    out.extend_from_slice(value);
    out
}

pub(crate) fn decode_value(key: &str, bytes: &[u8]) -> Result<KeyValue, StoreError> {
    let mut r = Reader::new(bytes, key);
    let create_revision = r.i64()?;
    let mod_revision = r.i64()?;
    Ok(KeyValue {
        key: key.to_string(),
        value: r.rest().to_vec(),
        create_revision,
        mod_revision,
    })
}

const TAG_PUT: u8 = 0;
const TAG_DELETE: u8 = 1;

/// A change-log entry (its revision is the table key):
/// `tag u8 | key | kv (put) or prev (delete) | [has_prev u8 | prev]` where a kv is
/// `create i64 | mod i64 | len-prefixed value` and strings are u32-length-prefixed.
pub(crate) fn encode_event(event: &Event) -> Vec<u8> {
    let mut out = Vec::new();
    match event {
        Event::Put { kv, prev } => {
            out.push(TAG_PUT);
            put_bytes(&mut out, kv.key.as_bytes());
            put_kv(&mut out, kv);
            match prev {
                Some(prev) => {
                    out.push(1);
                    put_kv(&mut out, prev);
                }
                None => out.push(0),
            }
        }
        Event::Delete { prev, .. } => {
            out.push(TAG_DELETE);
            put_bytes(&mut out, prev.key.as_bytes());
            put_kv(&mut out, prev);
        }
    }
    out
}

pub(crate) fn decode_event(revision: i64, bytes: &[u8]) -> Result<Event, StoreError> {
    let what = format!("change log entry {revision}");
    let mut r = Reader::new(bytes, &what);
    let tag = r.u8()?;
    let key = r.string()?;
    let kv = r.kv(&key)?;
    match tag {
        TAG_PUT => {
            let prev = match r.u8()? {
                0 => None,
                _ => Some(r.kv(&key)?),
            };
            Ok(Event::Put { kv, prev })
        }
        TAG_DELETE => Ok(Event::Delete { prev: kv, revision }),
        other => Err(r.corrupt(&format!("unknown event tag {other}"))),
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Keys and values are bounded far below 4 GiB by the API server's body limit.
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn put_kv(out: &mut Vec<u8>, kv: &KeyValue) {
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    put_bytes(out, &kv.value);
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    what: &'a str,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], what: &'a str) -> Self {
        Reader {
            bytes,
            pos: 0,
            what,
        }
    }

    fn corrupt(&self, detail: &str) -> StoreError {
        StoreError::Corrupt {
            what: self.what.to_string(),
            detail: format!("{detail} at byte {}", self.pos),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(self.corrupt(&format!(
                "truncated: need {n} bytes of {}",
                self.bytes.len()
            )));
        };
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }

    fn i64(&mut self) -> Result<i64, StoreError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_le_bytes(a))
    }

    fn bytes(&mut self) -> Result<&'a [u8], StoreError> {
        let b = self.take(4)?;
        let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        self.take(len)
    }

    fn string(&mut self) -> Result<String, StoreError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| self.corrupt("key is not UTF-8"))
    }

    fn kv(&mut self, key: &str) -> Result<KeyValue, StoreError> {
        Ok(KeyValue {
            key: key.to_string(),
            create_revision: self.i64()?,
            mod_revision: self.i64()?,
            value: self.bytes()?.to_vec(),
        })
    }

    fn rest(&mut self) -> &'a [u8] {
        let out = &self.bytes[self.pos..];
        self.pos = self.bytes.len();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, c: i64, m: i64) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
            create_revision: c,
            mod_revision: m,
        }
    }

    #[test]
    fn events_round_trip() {
        let events = [
            Event::Put {
                kv: kv("/a", "{}", 2, 2),
                prev: None,
            },
            Event::Put {
                kv: kv("/a", "{\"x\":1}", 2, 3),
                prev: Some(kv("/a", "{}", 2, 2)),
            },
            Event::Delete {
                prev: kv("/a", "{\"x\":1}", 2, 3),
                revision: 4,
            },
        ];
        for event in events {
            let bytes = encode_event(&event);
            assert_eq!(decode_event(event.revision(), &bytes).unwrap(), event);
        }
    }

    #[test]
    fn truncated_records_are_corrupt_not_misread() {
        let event = Event::Put {
            kv: kv("/k", "value", 5, 6),
            prev: Some(kv("/k", "old", 5, 5)),
        };
        let bytes = encode_event(&event);
        for cut in 0..bytes.len() {
            let err = decode_event(6, &bytes[..cut]).unwrap_err();
            assert!(
                matches!(err, StoreError::Corrupt { .. }),
                "cut {cut}: {err}"
            );
        }
        let value = encode_value(3, 9, b"{}");
        assert_eq!(decode_value("/k", &value).unwrap(), kv("/k", "{}", 3, 9));
        assert!(decode_value("/k", &value[..15]).is_err());
    }
}
