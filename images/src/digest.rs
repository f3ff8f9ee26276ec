//! Content digests. Only sha256 is supported: the store addresses blobs by it and
//! every registry and image tool produces it.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::error::Error;

/// `sha256:<64 lowercase hex>`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        Digest::from_hash(Sha256::digest(bytes).as_slice())
    }

    fn from_hash(hash: &[u8]) -> Digest {
        Digest {
            hex: hex::encode(hash),
        }
    }

    pub fn algorithm(&self) -> &'static str {
        "sha256"
    }

    /// The 64 hex characters, as used for the blob file name.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex characters, as `docker images` shows image ids.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

impl FromStr for Digest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Digest, Error> {
        let bad = |reason: &str| Error::InvalidDigest {
            digest: s.to_string(),
            reason: reason.to_string(),
        };
        let (algorithm, hex) = s
            .split_once(':')
            .ok_or_else(|| bad("expected <algorithm>:<hex>"))?;
        if algorithm != "sha256" {
            return Err(bad(&format!(
                "unsupported algorithm {algorithm:?} (only sha256)"
            )));
        }
        if hex.len() != 64 {
            return Err(bad(&format!(
                "sha256 needs 64 hex characters, got {}",
                hex.len()
            )));
        }
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad("sha256 hex must be lowercase 0-9a-f"));
        }
        Ok(Digest {
            hex: hex.to_string(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Hashes and counts everything written through it, so a stream can be verified
/// against a descriptor without a second pass.
pub struct Hasher {
    sha: Sha256,
    len: u64,
}

impl Hasher {
    pub fn new() -> Hasher {
        Hasher {
            sha: Sha256::new(),
            len: 0,
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.sha.update(bytes);
        self.len += bytes.len() as u64;
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> Digest {
        Digest::from_hash(self.sha.finalize().as_slice())
    }
}

impl Default for Hasher {
    fn default() -> Hasher {
        Hasher::new()
    }
}

impl Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Checks that `bytes` have the expected digest (and so the expected content).
pub fn verify(what: &str, bytes: &[u8], expected: &Digest) -> Result<(), Error> {
    let actual = Digest::of_bytes(bytes);
    if &actual != expected {
        return Err(Error::DigestMismatch {
            what: what.to_string(),
            expected: expected.clone(),
            actual,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn of_bytes_matches_known_sha256() {
        assert_eq!(Digest::of_bytes(b"").to_string(), EMPTY);
        let hello = Digest::of_bytes(b"hello");
        assert_eq!(
            hello.hex(),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(hello.short(), "2cf24dba5fb0");
    }

    #[test]
    fn parse_round_trips_and_rejects_bad_input() {
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d.to_string(), EMPTY);
        for (bad, why) in [
            ("e3b0c442", "expected <algorithm>:<hex>"),
            ("sha512:abcd", "unsupported algorithm"),
            ("sha256:abcd", "64 hex characters, got 4"),
            (
                &EMPTY.to_uppercase().replace("SHA256", "sha256"),
                "lowercase",
            ),
            (&EMPTY.replace('e', "g"), "lowercase"),
        ] {
            let err = bad.parse::<Digest>().unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(err.contains(bad), "error names the input: {err}");
        }
    }

    #[test]
    fn hasher_matches_of_bytes_and_counts() {
        let mut h = Hasher::new();
        h.update(b"hel");
        h.write_all(b"lo").unwrap();
        assert_eq!(h.len(), 5);
        assert_eq!(h.finish(), Digest::of_bytes(b"hello"));
    }

    #[test]
    fn verify_reports_both_digests() {
        let want = Digest::of_bytes(b"good");
        assert!(verify("blob x", b"good", &want).is_ok());
        let err = verify("blob x", b"evil", &want).unwrap_err().to_string();
        assert!(
            err.contains("blob x") && err.contains(&want.to_string()),
            "{err}"
        );
        assert!(
            err.contains(&Digest::of_bytes(b"evil").to_string()),
            "{err}"
        );
    }

    #[test]
    fn serde_as_string() {
        let d = Digest::of_bytes(b"x");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{d}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"md5:00\"").is_err());
    }
}
