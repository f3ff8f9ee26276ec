//! Manifests and indexes (OCI and Docker schema 2), media types, and platform
//! selection from an index / manifest list. Also used by `import`.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use crate::digest::Digest;
use crate::error::Error;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1";

/// Everything a registry may answer for an image, best first.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

const LAYER_TYPES: &[&str] = &[
    OCI_LAYER_TAR,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    DOCKER_LAYER_GZIP,
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: Option<String>,
    pub digest: Digest,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<PlatformJson>,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct PlatformJson {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

#[derive(Debug)]
pub enum Manifest {
    /// An OCI index or Docker manifest list.
    Index(Vec<Descriptor>),
    Image {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
}

/// Parses a manifest or index; `content_type` is the HTTP header, used when the
/// body does not say its own media type. Checks media types of config and layers.
pub fn parse(what: &str, bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, Error> {
    let raw: RawManifest = serde_json::from_slice(bytes).map_err(|e| Error::json(what, e))?;
    let media_type = raw
        .media_type
        .clone()
        .or_else(|| content_type.map(|c| c.split(';').next().unwrap_or(c).trim().to_string()))
        .unwrap_or_default();
    if raw.schema_version == Some(1) || media_type.starts_with(DOCKER_SCHEMA1) {
        return Err(Error::UnsupportedMediaType {
            what: format!("{what} (Docker schema 1 manifests are deprecated; re-push the image)"),
            media_type,
        });
    }
    let is_index = media_type == OCI_INDEX || media_type == DOCKER_LIST;
    match (raw.manifests, raw.config) {
        (Some(list), None) if is_index || raw.layers.is_none() => Ok(Manifest::Index(list)),
        (_, Some(config)) if !is_index => image(what, config, raw.layers.unwrap_or_default()),
        _ => Err(Error::invalid(
            what,
            format!("neither an image manifest nor an index (media type {media_type:?})"),
        )),
    }
}

fn image(what: &str, config: Descriptor, layers: Vec<Descriptor>) -> Result<Manifest, Error> {
    let config_type = config.media_type.as_deref().unwrap_or("");
    if config_type != OCI_CONFIG && config_type != DOCKER_CONFIG {
        return Err(Error::UnsupportedMediaType {
            what: format!("{what}: config {} (not a container image)", config.digest),
            media_type: config_type.to_string(),
        });
    }
    for layer in &layers {
        let t = layer.media_type.as_deref().unwrap_or("");
        if !LAYER_TYPES.contains(&t) {
            return Err(Error::UnsupportedMediaType {
                what: format!("{what}: layer {}", layer.digest),
                media_type: t.to_string(),
            });
        }
    }
    Ok(Manifest::Image { config, layers })
}

/// `os/arch[/variant]`, as `--platform` takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Default for Platform {
    fn default() -> Platform {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = Error;

    fn from_str(s: &str) -> Result<Platform, Error> {
        let bad = |reason: &str| Error::InvalidPlatform {
            platform: s.to_string(),
            reason: reason.to_string(),
        };
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() < 2 || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(bad("expected os/arch or os/arch/variant, e.g. linux/arm64"));
        }
        if parts
            .iter()
            .any(|p| !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return Err(bad("use letters, digits and '_' only"));
        }
        let (architecture, implied) = normalize_arch(&parts[1].to_ascii_lowercase());
        let variant = parts.get(2).map(|v| v.to_ascii_lowercase()).or(implied);
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            architecture,
            variant,
        })
    }
}

/// Architecture aliases as uname and Debian spell them.
fn normalize_arch(arch: &str) -> (String, Option<String>) {
    match arch {
        "x86_64" | "x86-64" => ("amd64".into(), None),
        "aarch64" => ("arm64".into(), None),
        "armhf" => ("arm".into(), Some("v7".into())),
        "armel" => ("arm".into(), Some("v6".into())),
        "i386" | "i686" => ("386".into(), None),
        other => (other.into(), None),
    }
}

/// The variant an entry without one is taken to have.
fn default_variant(arch: &str) -> Option<&'static str> {
    match arch {
        "arm64" => Some("v8"),
        "arm" => Some("v7"),
        _ => None,
    }
}

impl Platform {
    fn matches(&self, p: &PlatformJson) -> bool {
        if p.os != self.os || p.architecture != self.architecture {
            return false;
        }
        let default = default_variant(&self.architecture);
        if self.variant.is_none() && default.is_none() {
            return true;
        }
        let want = self.variant.as_deref().or(default);
        let have = p.variant.as_deref().or(default);
        want == have
    }
}

fn describe(p: &PlatformJson) -> String {
    match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

/// The index entry for `platform`; the error lists what the index offers.
pub fn select_platform<'a>(
    reference: &str,
    manifests: &'a [Descriptor],
    platform: &Platform,
) -> Result<&'a Descriptor, Error> {
    let images = manifests.iter().filter(|d| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os != "unknown" && p.architecture != "unknown")
    });
    if let Some(found) = images
        .clone()
        .find(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p)))
    {
        return Ok(found);
    }
    Err(Error::NoMatchingPlatform {
        reference: reference.to_string(),
        platform: platform.to_string(),
        available: images
            .filter_map(|d| d.platform.as_ref().map(describe))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> String {
        Digest::of_bytes(&[n]).to_string()
    }

    fn index(platforms: &[&str]) -> Vec<Descriptor> {
        let entries: Vec<String> = platforms
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let parts: Vec<&str> = p.split('/').collect();
                let variant = parts
                    .get(2)
                    .map(|v| format!(r#","variant":"{v}""#))
                    .unwrap_or_default();
                format!(
                    r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1,
                    "platform":{{"os":"{}","architecture":"{}"{variant}}}}}"#,
                    d(i as u8),
                    parts[0],
                    parts[1]
                )
            })
            .collect();
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
            entries.join(",")
        );
        match parse("index", json.as_bytes(), None).unwrap() {
            Manifest::Index(list) => list,
            other => panic!("{other:?}"),
        }
    }

    fn pick(platforms: &[&str], want: &str) -> Result<String, String> {
        let list = index(platforms);
        let p: Platform = want.parse().unwrap();
        select_platform("r", &list, &p)
            .map(|desc| describe(desc.platform.as_ref().unwrap()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn platform_selection() {
        let all = [
            "unknown/unknown",
            "linux/arm/v6",
            "linux/arm/v7",
            "linux/arm64/v8",
            "linux/amd64",
            "windows/amd64",
        ];
        assert_eq!(pick(&all, "linux/amd64").unwrap(), "linux/amd64");
        assert_eq!(pick(&all, "linux/x86_64").unwrap(), "linux/amd64");
        assert_eq!(pick(&all, "linux/arm64").unwrap(), "linux/arm64/v8");
        assert_eq!(pick(&all, "linux/aarch64").unwrap(), "linux/arm64/v8");
        assert_eq!(pick(&all, "linux/arm").unwrap(), "linux/arm/v7");
        assert_eq!(pick(&all, "linux/arm/v6").unwrap(), "linux/arm/v6");
        assert_eq!(pick(&all, "windows/amd64").unwrap(), "windows/amd64");
        assert_eq!(
            pick(&["linux/arm64"], "linux/arm64/v8").unwrap(),
            "linux/arm64"
        );
        assert_eq!(
            pick(&["linux/arm64/v8"], "linux/arm64").unwrap(),
            "linux/arm64/v8"
        );

        let err = pick(&all, "linux/s390x").unwrap_err();
        assert!(
            err.contains("no manifest for platform linux/s390x"),
            "{err}"
        );
        assert!(
            err.contains("linux/arm/v6, linux/arm/v7, linux/arm64/v8, linux/amd64, windows/amd64"),
            "{err}"
        );
        assert!(
            !err.contains("unknown"),
            "attestations are not offered: {err}"
        );
        let err = pick(&["linux/arm/v6"], "linux/arm").unwrap_err();
        assert!(err.contains("available: linux/arm/v6"), "{err}");
    }

    #[test]
    fn platform_parse_errors() {
        assert_eq!(Platform::default().to_string(), "linux/amd64");
        assert_eq!(
            "linux/armhf".parse::<Platform>().unwrap().to_string(),
            "linux/arm/v7"
        );
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/amd 64"] {
            let err = bad.parse::<Platform>().unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn image_manifests_docker_and_oci() {
        let docker = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}",
            "config":{{"mediaType":"{DOCKER_CONFIG}","digest":"{}","size":10}},
            "layers":[{{"mediaType":"{DOCKER_LAYER_GZIP}","digest":"{}","size":20}}]}}"#,
            d(1),
            d(2)
        );
        match parse("m", docker.as_bytes(), None).unwrap() {
            Manifest::Image { config, layers } => {
                assert_eq!(config.size, 10);
                assert_eq!(layers[0].media_type.as_deref(), Some(DOCKER_LAYER_GZIP));
            }
            other => panic!("{other:?}"),
        }
        // OCI manifests may omit mediaType; zstd and plain tar layers are fine.
        let oci = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","digest":"{}","size":1}},
            "layers":[{{"mediaType":"{OCI_LAYER_ZSTD}","digest":"{}","size":2}},
                      {{"mediaType":"{OCI_LAYER_TAR}","digest":"{}","size":3}}]}}"#,
            d(1),
            d(2),
            d(3)
        );
        assert!(matches!(
            parse("m", oci.as_bytes(), Some(OCI_MANIFEST)).unwrap(),
            Manifest::Image { .. }
        ));
        // An index without mediaType is recognized by its content type.
        let list = r#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(
            parse("l", list.as_bytes(), Some(DOCKER_LIST)).unwrap(),
            Manifest::Index(_)
        ));
    }

    #[test]
    fn unsupported_manifests_are_named() {
        let schema1 = r#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
        let err = parse("manifest of x", schema1.as_bytes(), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("schema 1"), "{err}");

        let helm = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":"{}","size":1}},"layers":[]}}"#,
            d(1)
        );
        let err = parse("m", helm.as_bytes(), None).unwrap_err().to_string();
        assert!(
            err.contains("not a container image") && err.contains("helm"),
            "{err}"
        );

        let enc = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","digest":"{}","size":1}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip+encrypted","digest":"{}","size":2}}]}}"#,
            d(1),
            d(2)
        );
        let err = parse("m", enc.as_bytes(), None).unwrap_err().to_string();
        assert!(
            err.contains(&format!("layer {}", d(2))) && err.contains("encrypted"),
            "{err}"
        );

        let err = parse("m", b"{\"schemaVersion\":2}", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("neither an image manifest nor an index"),
            "{err}"
        );
        let err = parse("m", b"[1,2]", None).unwrap_err().to_string();
        assert!(err.contains("m: invalid JSON"), "{err}");
    }
}
