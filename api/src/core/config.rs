//! core/v1 ConfigMap and Secret.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use crate::meta::{validate_subdomain_name, ObjectMeta};
use crate::resource::impl_resource;
use crate::validation::{ErrorList, FieldError, Path};

/// Bytes written as base64 in JSON, as Kubernetes does for Secret data and
/// ConfigMap binaryData.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ByteString(pub Vec<u8>);

impl fmt::Debug for ByteString {
    /// Secret values stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ByteString({} bytes)", self.0.len())
    }
}

impl Serialize for ByteString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for ByteString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ByteString, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map(ByteString)
            .map_err(|e| de::Error::custom(format!("illegal base64 data: {e}")))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ConfigMap {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub binary_data: BTreeMap<String, ByteString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

impl_resource!(ConfigMap, "", "ConfigMap");

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Secret {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, ByteString>,
    /// Write-only convenience: merged into `data` by [`Secret::apply_defaults`].
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub string_data: BTreeMap<String, String>,
    /// `Opaque` when unset.
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub type_: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

impl_resource!(Secret, "", "Secret");

/// Keys of ConfigMap and Secret data: `[-._a-zA-Z0-9]+`, not `.` or `..`.
fn validate_data_keys<'a>(keys: impl Iterator<Item = &'a String>, path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    for k in keys {
        let ok = !k.is_empty()
            && k != "."
            && k != ".."
            && k.len() <= 253
            && k.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
        if !ok {
            errs.push(FieldError::invalid(
                path,
                k.as_str(),
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
            ));
        }
    }
    errs
}

impl ConfigMap {
    pub fn validate(&self) -> ErrorList {
        let mut errs = self.metadata.validate(true, validate_subdomain_name);
        errs.extend(validate_data_keys(self.data.keys(), &Path::new("data")));
        errs.extend(validate_data_keys(
            self.binary_data.keys(),
            &Path::new("binaryData"),
        ));
        for k in self
            .data
            .keys()
            .filter(|k| self.binary_data.contains_key(*k))
        {
            errs.push(FieldError::invalid(
                &Path::new("data").key(k),
                k.as_str(),
                "duplicate of key present in binaryData",
            ));
        }
        errs
    }
}

impl Secret {
    /// type Opaque; stringData merged into data (and cleared), as the API server stores it.
    pub fn apply_defaults(&mut self) {
        if self.type_.is_empty() {
            self.type_ = "Opaque".into();
        }
        for (k, v) in std::mem::take(&mut self.string_data) {
            self.data.insert(k, ByteString(v.into_bytes()));
        }
    }

    pub fn validate(&self) -> ErrorList {
        let mut errs = self.metadata.validate(true, validate_subdomain_name);
        errs.extend(validate_data_keys(self.data.keys(), &Path::new("data")));
        errs.extend(validate_data_keys(
            self.string_data.keys(),
            &Path::new("stringData"),
        ));
        let size: usize = self.data.values().map(|v| v.0.len()).sum::<usize>()
            + self.string_data.values().map(String::len).sum::<usize>();
        if size > 1024 * 1024 {
            errs.push(FieldError::forbidden(
                &Path::new("data"),
                "Too long: must have at most 1048576 bytes",
            ));
        }
        errs
    }

    /// The value of a key, from data or (before defaulting) stringData.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.data
            .get(key)
            .map(|b| b.0.as_slice())
            .or_else(|| self.string_data.get(key).map(String::as_bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_data_is_base64() {
        let json = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
            "type": "Opaque",
            "data": {"password": "czNjcjN0"}
        });
        let s: Secret = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(s.get("password"), Some(&b"s3cr3t"[..]));
        assert_eq!(serde_json::to_value(&s).unwrap(), json);
        assert!(!format!("{s:?}").contains("s3cr3t"));
        let e = serde_json::from_value::<Secret>(serde_json::json!({"data": {"k": "not base64!"}}))
            .unwrap_err();
        assert!(e.to_string().contains("illegal base64 data"), "{e}");
    }

    #[test]
    fn string_data_merges_on_defaults() {
        let mut s: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db"}, "stringData": {"user": "admin"}, "data": {"password": "czNjcjN0"}
        }))
        .unwrap();
        s.apply_defaults();
        assert!(s.string_data.is_empty());
        assert_eq!(s.type_, "Opaque");
        assert_eq!(
            serde_json::to_value(&s.data).unwrap(),
            serde_json::json!({"password": "czNjcjN0", "user": "YWRtaW4="})
        );
    }

    #[test]
    fn config_map_keys() {
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "cfg"},
            "data": {"app.conf": "x=1", "bad/key": "y"},
            "binaryData": {"blob": "AAEC"}
        }))
        .unwrap();
        assert_eq!(cm.binary_data["blob"].0, vec![0, 1, 2]);
        let errs = cm.validate();
        assert_eq!(errs.len(), 1);
        assert!(errs[0]
            .to_string()
            .starts_with("data: Invalid value: \"bad/key\""));
    }
}
