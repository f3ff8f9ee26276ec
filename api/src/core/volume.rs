//! core/v1 volumes a pod can use: emptyDir, hostPath, configMap, secret
//! (and persistentVolumeClaim, accepted and kept).

use serde::{Deserialize, Serialize};

use crate::quantity::Quantity;
use crate::skip::is_false;
use crate::validation::{invalid_each, is_dns1123_label, ErrorList, FieldError, Path};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Volume {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDirVolumeSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_path: Option<HostPathVolumeSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapVolumeSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretVolumeSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<PersistentVolumeClaimVolumeSource>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct EmptyDirVolumeSource {
    /// "" (node disk) or "Memory" (tmpfs).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub medium: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<Quantity>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct HostPathVolumeSource {
    pub path: String,
    /// "", DirectoryOrCreate, Directory, FileOrCreate, File, Socket, CharDevice, BlockDevice.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct KeyToPath {
    pub key: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<i32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ConfigMapVolumeSource {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<KeyToPath>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_mode: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct SecretVolumeSource {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub secret_name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<KeyToPath>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_mode: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct PersistentVolumeClaimVolumeSource {
    pub claim_name: String,
    #[serde(skip_serializing_if = "is_false")]
    pub read_only: bool,
}

/// 0644, Kubernetes' default file mode for projected keys.
const DEFAULT_MODE: i32 = 0o644;

impl Volume {
    pub fn apply_defaults(&mut self) {
        if let Some(c) = self.config_map.as_mut() {
            c.default_mode.get_or_insert(DEFAULT_MODE);
        }
        if let Some(s) = self.secret.as_mut() {
            s.default_mode.get_or_insert(DEFAULT_MODE);
        }
        if let Some(h) = self.host_path.as_mut() {
            h.type_.get_or_insert_with(String::new);
        }
    }

    fn source_count(&self) -> usize {
        usize::from(self.empty_dir.is_some())
            + usize::from(self.host_path.is_some())
            + usize::from(self.config_map.is_some())
            + usize::from(self.secret.is_some())
            + usize::from(self.persistent_volume_claim.is_some())
    }

    pub fn validate(&self, path: &Path) -> ErrorList {
        let mut errs = ErrorList::new();
        if self.name.is_empty() {
            errs.push(FieldError::required(&path.child("name")));
        } else {
            errs.extend(invalid_each(
                &path.child("name"),
                &self.name,
                is_dns1123_label(&self.name),
            ));
        }
        match self.source_count() {
            0 => errs.push(FieldError::required_because(
                path,
                "must specify a volume type",
            )),
            1 => {}
            _ => errs.push(FieldError::forbidden(
                path,
                "may not specify more than 1 volume type",
            )),
        }
        if let Some(h) = &self.host_path {
            if h.path.is_empty() {
                errs.push(FieldError::required(&path.child("hostPath").child("path")));
            }
        }
        if let Some(s) = &self.secret {
            if s.secret_name.is_empty() {
                errs.push(FieldError::required(
                    &path.child("secret").child("secretName"),
                ));
            }
        }
        if let Some(c) = &self.config_map {
            if c.name.is_empty() {
                errs.push(FieldError::required(&path.child("configMap").child("name")));
            }
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_source_each() {
        let v: Volume = serde_json::from_str(
            r#"{"name": "data", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}"#,
        )
        .unwrap();
        assert!(v.validate(&Path::new("spec.volumes").index(0)).is_empty());
        let none = Volume {
            name: "x".into(),
            ..Volume::default()
        };
        assert_eq!(
            none.validate(&Path::new("spec.volumes").index(0))[0].to_string(),
            "spec.volumes[0]: Required value: must specify a volume type"
        );
        let e = serde_json::from_str::<Volume>(r#"{"name": "x", "nfs": {}}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `nfs`"), "{e}");
    }

    #[test]
    fn defaults_modes() {
        let mut v: Volume =
            serde_json::from_str(r#"{"name": "c", "configMap": {"name": "cfg"}}"#).unwrap();
        v.apply_defaults();
        assert_eq!(v.config_map.unwrap().default_mode, Some(420));
    }
}
