//! Stored objects written out without decoding them.
//!
//! The store holds each object as the compact JSON the API server produced
//! (`serde_json::to_vec` of the finalized object, resourceVersion removed).
//! A LIST, GET or watch event only has to add the resourceVersion: it is
//! spliced in as the first field of the top-level `metadata` object, found by
//! a byte scan that skips values without building them. Selectors read only
//! the fields they compare ([`pick`]), with serde's `IgnoredAny` for the rest.
//! Anything unexpected (not an object, no `metadata` object, a stored
//! resourceVersion) makes [`splice_rv`] say so, and callers take the decoding
//! path, so odd records are still served exactly as before.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a record cannot be spliced (the caller decodes it instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unspliceable {
    /// The bytes ended or broke JSON's grammar where the scan looked.
    Malformed,
    /// No top-level `metadata` object.
    NoMetadata,
    /// `metadata` already has a resourceVersion (not written by this server).
    HasResourceVersion,
}

/// Appends `stored` to `out` with `"resourceVersion":"<rv>"` as the first
/// field of its top-level metadata. On error `out` is unchanged.
pub fn splice_rv(stored: &[u8], rv: i64, out: &mut Vec<u8>) -> Result<(), Unspliceable> {
    let (at, empty) = metadata_start(stored)?;
    out.reserve(stored.len() + 40);
    out.extend_from_slice(&stored[..at]);
    out.extend_from_slice(b"\"resourceVersion\":\"");
    out.extend_from_slice(rv.to_string().as_bytes());
    out.push(b'"');
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(&stored[at..]);
    Ok(())
}

/// The offset just after the `{` of the top-level `metadata` object, and
/// whether that object is empty. Only the fields before `metadata` and the
/// metadata itself are scanned (serde_json writes keys in sorted order, so
/// that is `apiVersion`, `kind` and the metadata).
fn metadata_start(b: &[u8]) -> Result<(usize, bool), Unspliceable> {
    let mut s = Scan { b, i: 0 };
    s.expect(b'{')?;
    if s.peek_after_ws()? == b'}' {
        return Err(Unspliceable::NoMetadata);
    }
    loop {
        let key = s.key()?;
        if key == b"metadata" && s.peek_after_ws()? == b'{' {
            s.i += 1;
            let at = s.i;
            let empty = s.peek_after_ws()? == b'}';
            if !empty && s.object_has_key(b"resourceVersion")? {
                return Err(Unspliceable::HasResourceVersion);
            }
            return Ok((at, empty));
        }
        s.skip_value()?;
        match s.next_after_ws()? {
            b',' => continue,
            b'}' => return Err(Unspliceable::NoMetadata),
            _ => return Err(Unspliceable::Malformed),
        }
    }
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    fn skip_ws(&mut self) {
        while self
            .b
            .get(self.i)
            .is_some_and(|c| matches!(c, b' ' | b'\n' | b'\r' | b'\t'))
        {
            self.i += 1;
        }
    }

    fn peek_after_ws(&mut self) -> Result<u8, Unspliceable> {
        self.skip_ws();
        self.b.get(self.i).copied().ok_or(Unspliceable::Malformed)
    }

    fn next_after_ws(&mut self) -> Result<u8, Unspliceable> {
        let c = self.peek_after_ws()?;
        self.i += 1;
        Ok(c)
    }

    fn expect(&mut self, want: u8) -> Result<(), Unspliceable> {
        match self.next_after_ws()? {
            c if c == want => Ok(()),
            _ => Err(Unspliceable::Malformed),
        }
    }

    /// A string starting at the current `"`; its raw (still escaped) bytes.
    fn string(&mut self) -> Result<&'a [u8], Unspliceable> {
        self.expect(b'"')?;
        let start = self.i;
        loop {
            match self.b.get(self.i) {
                None => return Err(Unspliceable::Malformed),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(&self.b[start..self.i - 1]);
                }
                Some(b'\\') => self.i += 2,
                Some(_) => self.i += 1,
            }
        }
    }

    /// `"key" :`; the key's raw bytes.
    fn key(&mut self) -> Result<&'a [u8], Unspliceable> {
        let key = self.string()?;
        self.expect(b':')?;
        Ok(key)
    }

    /// Skips one value of any type (nested ones by counting brackets outside
    /// strings).
    fn skip_value(&mut self) -> Result<(), Unspliceable> {
        match self.peek_after_ws()? {
            b'"' => self.string().map(|_| ()),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.b.get(self.i) {
                        None => return Err(Unspliceable::Malformed),
                        Some(b'"') => {
                            self.string()?;
                            continue;
                        }
                        Some(b'{' | b'[') => depth += 1,
                        Some(b'}' | b']') => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return Ok(());
                            }
                        }
                        Some(_) => {}
                    }
                    self.i += 1;
                }
            }
            _ => {
                let start = self.i;
                while self.b.get(self.i).is_some_and(|c| {
                    !matches!(c, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t')
                }) {
                    self.i += 1;
                }
                if self.i == start {
                    return Err(Unspliceable::Malformed);
                }
                Ok(())
            }
        }
    }

    /// Inside an object just after its `{` (known not to be empty): whether
    /// it has `want` as a key. Leaves the scan after the object.
    fn object_has_key(&mut self, want: &[u8]) -> Result<bool, Unspliceable> {
        let mut found = false;
        loop {
            found |= self.key()? == want;
            self.skip_value()?;
            match self.next_after_ws()? {
                b',' => continue,
                b'}' => return Ok(found),
                _ => return Err(Unspliceable::Malformed),
            }
        }
    }
}

/// The fields at `paths` (dotted, as in field selectors: `metadata.labels`,
/// `spec.nodeName`) of the JSON object `bytes`, as a sparse object holding
/// only those; everything else is skipped without being built.
pub fn pick(bytes: &[u8], paths: &[Vec<String>]) -> Result<Value, serde_json::Error> {
    let refs: Vec<&[String]> = paths
        .iter()
        .filter(|p| !p.is_empty())
        .map(Vec::as_slice)
        .collect();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = Pick { paths: refs }.deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// The remaining segments of the paths wanted below the current value.
struct Pick<'p> {
    paths: Vec<&'p [String]>,
}

impl<'de> DeserializeSeed<'de> for Pick<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Pick<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        let wanted = KeySeed {
            firsts: self.paths.iter().map(|p| p[0].as_str()).collect(),
        };
        while let Some(key) = map.next_key_seed(&wanted)? {
            let Some(key) = key else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let below: Vec<&[String]> = self
                .paths
                .iter()
                .filter(|p| p[0] == key)
                .map(|p| &p[1..])
                .collect();
            let value = if below.iter().any(|p| p.is_empty()) {
                map.next_value::<Value>()?
            } else {
                map.next_value_seed(Pick { paths: below })?
            };
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }

    // A path through a non-object finds nothing: the value is skipped.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value::Null)
    }

    fn visit_str<E>(self, _: &str) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

/// Reads a map key; Some(owned key) only when a path goes through it, so
/// the keys that are skipped cost no allocation.
struct KeySeed<'p> {
    firsts: Vec<&'p str>,
}

impl<'de> DeserializeSeed<'de> for &KeySeed<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for &KeySeed<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<Option<String>, E> {
        Ok(self.firsts.contains(&key).then(|| key.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spliced(v: &Value, rv: i64) -> Result<Value, Unspliceable> {
        let bytes = serde_json::to_vec(v).unwrap();
        let mut out = b"prefix".to_vec();
        splice_rv(&bytes, rv, &mut out)?;
        assert!(out.starts_with(b"prefix"));
        Ok(serde_json::from_slice(&out[6..]).expect("spliced output is JSON"))
    }

    #[test]
    fn resource_version_lands_in_top_level_metadata() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a", "labels": {"x": "y"},
                         "annotations": {"note": "{\"metadata\":{}} \\\" ]}"}},
            "spec": {"containers": [{"name": "c", "args": ["[", "{", "\"}"]}]},
            "status": {"phase": "Pending"}});
        let mut want = pod.clone();
        want["metadata"]["resourceVersion"] = "42".into();
        assert_eq!(spliced(&pod, 42).unwrap(), want);
    }

    #[test]
    fn nested_metadata_before_the_top_level_one_is_skipped() {
        // A key sorting before "metadata" whose value holds a metadata object.
        let v = json!({"apiVersion": "v1", "kind": "X", "data": {"metadata": {"a": 1}},
                       "items": [{"metadata": {}}], "metadata": {"name": "n"}});
        let out = spliced(&v, 7).unwrap();
        assert_eq!(out["metadata"]["resourceVersion"], "7");
        assert_eq!(out["data"]["metadata"], json!({"a": 1}));
        assert_eq!(out["items"], json!([{"metadata": {}}]));
    }

    #[test]
    fn empty_metadata_and_whitespace() {
        assert_eq!(
            spliced(&json!({"metadata": {}}), 3).unwrap(),
            json!({"metadata": {"resourceVersion": "3"}})
        );
        let mut out = Vec::new();
        splice_rv(b" { \"a\" : [1, 2] , \"metadata\" : { } } ", 5, &mut out).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            json!({"a": [1, 2], "metadata": {"resourceVersion": "5"}})
        );
    }

    #[test]
    fn odd_records_are_refused_not_mangled() {
        let cases: [(&[u8], Unspliceable); 7] = [
            (b"", Unspliceable::Malformed),
            (b"[1]", Unspliceable::Malformed),
            (b"{}", Unspliceable::NoMetadata),
            (b"{\"kind\":\"X\"}", Unspliceable::NoMetadata),
            (b"{\"metadata\":\"str\"}", Unspliceable::NoMetadata),
            (
                b"{\"kind\":\"X\",\"metadata\":{\"name\":\"a\"",
                Unspliceable::Malformed,
            ),
            (
                b"{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"1\"}}",
                Unspliceable::HasResourceVersion,
            ),
        ];
        for (bytes, want) in cases {
            let mut out = b"keep".to_vec();
            assert_eq!(splice_rv(bytes, 1, &mut out), Err(want), "{bytes:?}");
            assert_eq!(out, b"keep");
        }
    }

    #[test]
    fn pick_reads_only_the_wanted_paths() {
        let pod = json!({"metadata": {"name": "a", "labels": {"app": "web"}, "uid": "u"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
            "status": "not an object"});
        let paths: Vec<Vec<String>> = [
            "metadata.labels",
            "metadata.name",
            "spec.nodeName",
            "status.phase",
        ]
        .iter()
        .map(|p| p.split('.').map(str::to_string).collect())
        .collect();
        let got = pick(&serde_json::to_vec(&pod).unwrap(), &paths).unwrap();
        assert_eq!(
            got,
            json!({"metadata": {"name": "a", "labels": {"app": "web"}},
                   "spec": {"nodeName": "n1"}, "status": null})
        );
        assert!(pick(b"{\"metadata\":", &paths).is_err());
        assert!(pick(b"{} trailing", &paths).is_err());
    }
}
