//! Import without a registry: an OCI image layout (directory or tar) or a
//! `docker save` archive (tar, or its extracted directory).
//!
//! Every blob goes through the store's verified writer: OCI blobs against the
//! digest their file name claims, docker-save layers (named by ids, not
//! digests) get their real sha256 computed and, when uncompressed, checked
//! against the config's `rootfs.diff_ids`.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::digest::Digest;
use crate::error::Error;
use crate::reference::Reference;
use crate::registry::image_record;
use crate::registry::manifest::{self, Descriptor, Manifest, Platform};
use crate::store::{ImageRecord, Store, MAX_JSON_BLOB};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Imports every image in the archive at `path` and names it `tag` when
/// given (then the archive must hold exactly one image), else by the names
/// the archive carries (`io.containerd.image.name`, `org.opencontainers.image.ref.name`,
/// docker's `RepoTags`). A bare ref name such as `latest` becomes
/// `localhost/<file name>:latest`.
pub fn import(
    store: &Store,
    path: &Path,
    tag: Option<&Reference>,
) -> Result<Vec<ImageRecord>, Error> {
    let meta =
        fs::metadata(path).map_err(|e| Error::io(format!("importing {}", path.display()), e))?;
    let _gc = store.gc_lock(false)?;
    let src = if meta.is_dir() {
        Source::dir(path)?
    } else {
        Source::tar(store, path)?
    };
    let ctx = Ctx {
        store,
        path,
        src: &src,
    };
    if src.exists("oci-layout") && src.exists("index.json") {
        ctx.oci(tag)
    } else if src.exists("manifest.json") {
        ctx.docker(tag)
    } else {
        Err(ctx.err(
            "neither an OCI image layout (oci-layout + index.json) nor a docker save archive (manifest.json)"
                .into(),
        ))
    }
}

/// Where archive members come from: files under a directory, or a tar that
/// was read once (small JSON kept in memory, everything else already stored).
enum Source {
    Dir {
        root: PathBuf,
    },
    Tar {
        small: HashMap<String, Vec<u8>>,
        stored: HashMap<String, (Digest, u64)>,
        links: HashMap<String, String>,
    },
}

impl Source {
    fn dir(path: &Path) -> Result<Source, Error> {
        let root = path
            .canonicalize()
            .map_err(|e| Error::io(format!("importing {}", path.display()), e))?;
        Ok(Source::Dir { root })
    }

    fn tar(store: &Store, path: &Path) -> Result<Source, Error> {
        let io_err = |e| Error::io(format!("reading archive {}", path.display()), e);
        let mut file = BufReader::new(File::open(path).map_err(io_err)?);
        let reader: Box<dyn Read> = match sniff(&mut file).map_err(io_err)? {
            Kind::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(file)),
            Kind::Zstd => Box::new(zstd::Decoder::with_buffer(file).map_err(io_err)?),
            Kind::Plain => Box::new(file),
        };
        let mut small = HashMap::new();
        let mut stored = HashMap::new();
        let mut links = HashMap::new();
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().map_err(io_err)? {
            let mut entry = entry.map_err(io_err)?;
            let raw = entry.path().map_err(io_err)?.into_owned();
            let Some(name) = clean(&raw) else { continue };
            let kind = entry.header().entry_type();
            if kind.is_symlink() || kind.is_hard_link() {
                if let Some(target) = entry.link_name().map_err(io_err)? {
                    let base = if kind.is_symlink() {
                        Path::new(&name)
                            .parent()
                            .unwrap_or(Path::new(""))
                            .join(target)
                    } else {
                        target.into_owned()
                    };
                    if let Some(t) = clean(&base) {
                        links.insert(name, t);
                    }
                }
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let size = entry.header().size().map_err(io_err)?;
            if is_small_json(&name) && size <= MAX_JSON_BLOB {
                let mut bytes = Vec::with_capacity(size as usize);
                entry.read_to_end(&mut bytes).map_err(io_err)?;
                if let Some(d) = blob_name_digest(&name) {
                    store.put_blob(&format!("{name} in {}", path.display()), &bytes, Some(&d))?;
                    stored.insert(name.clone(), (d, size));
                }
                small.insert(name, bytes);
                continue;
            }
            let what = format!("{name} in {}", path.display());
            let expected = blob_name_digest(&name);
            if let Some(d) = expected.as_ref().filter(|d| store.has_blob(d, size)) {
                stored.insert(name, (d.clone(), size));
                continue;
            }
            let got = copy_to_store(store, &what, &mut entry, expected.as_ref(), Some(size))?;
            stored.insert(name, got);
        }
        Ok(Source::Tar {
            small,
            stored,
            links,
        })
    }

    fn resolve<'a>(&'a self, name: &'a str) -> &'a str {
        let mut name = name;
        if let Source::Tar { links, .. } = self {
            for _ in 0..16 {
                match links.get(name) {
                    Some(t) => name = t,
                    None => break,
                }
            }
        }
        name
    }

    fn exists(&self, name: &str) -> bool {
        match self {
            Source::Dir { root } => root.join(name).is_file(),
            Source::Tar { small, stored, .. } => {
                let n = self.resolve(name);
                small.contains_key(n) || stored.contains_key(n)
            }
        }
    }

    /// A path inside the directory; symlinks may not lead out of it.
    fn dir_file(root: &Path, name: &str) -> Result<PathBuf, String> {
        let clean_name = clean(Path::new(name))
            .ok_or_else(|| format!("{name:?}: not a relative path inside the archive"))?;
        let real = root
            .join(&clean_name)
            .canonicalize()
            .map_err(|e| format!("{clean_name}: {e}"))?;
        if !real.starts_with(root) {
            return Err(format!(
                "{clean_name} leads outside the archive (to {})",
                real.display()
            ));
        }
        Ok(real)
    }

    fn read_small(&self, name: &str) -> Result<Vec<u8>, String> {
        match self {
            Source::Dir { root } => {
                let path = Source::dir_file(root, name)?;
                let file = File::open(&path).map_err(|e| format!("{name}: {e}"))?;
                let mut bytes = Vec::new();
                file.take(MAX_JSON_BLOB + 1)
                    .read_to_end(&mut bytes)
                    .map_err(|e| format!("{name}: {e}"))?;
                if bytes.len() as u64 > MAX_JSON_BLOB {
                    return Err(format!("{name}: larger than {MAX_JSON_BLOB} bytes"));
                }
                Ok(bytes)
            }
            Source::Tar { small, .. } => small
                .get(self.resolve(name))
                .cloned()
                .ok_or_else(|| format!("{name}: missing from the archive")),
        }
    }

    /// Puts the member `name` into the store, checked against `expected` when given.
    fn store_file(
        &self,
        store: &Store,
        archive: &Path,
        name: &str,
        expected: Option<(&Digest, u64)>,
    ) -> Result<(Digest, u64), Error> {
        let what = format!("{name} in {}", archive.display());
        match self {
            Source::Dir { root } => {
                if let Some((d, size)) = expected {
                    if store.has_blob(d, size) {
                        return Ok((d.clone(), size));
                    }
                }
                let path = Source::dir_file(root, name).map_err(|reason| Error::Import {
                    path: archive.to_path_buf(),
                    reason,
                })?;
                let mut file = File::open(&path)
                    .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
                copy_to_store(
                    store,
                    &what,
                    &mut file,
                    expected.map(|e| e.0),
                    expected.map(|e| e.1),
                )
            }
            Source::Tar { stored, .. } => {
                let (d, size) =
                    stored
                        .get(self.resolve(name))
                        .cloned()
                        .ok_or_else(|| Error::Import {
                            path: archive.to_path_buf(),
                            reason: format!("{name}: missing from the archive"),
                        })?;
                if let Some((want, want_size)) = expected {
                    if *want != d {
                        return Err(Error::DigestMismatch {
                            what,
                            expected: want.clone(),
                            actual: d,
                        });
                    }
                    if want_size != size {
                        return Err(Error::SizeMismatch {
                            what,
                            expected: want_size,
                            actual: size,
                        });
                    }
                }
                Ok((d, size))
            }
        }
    }
}

fn copy_to_store(
    store: &Store,
    what: &str,
    reader: &mut dyn Read,
    digest: Option<&Digest>,
    size: Option<u64>,
) -> Result<(Digest, u64), Error> {
    let mut w = store.blob_writer(what, digest, size)?;
    io::copy(reader, &mut w).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidData => Error::invalid(what, e.to_string()),
        _ => Error::io(format!("{what}: copying into the store"), e),
    })?;
    w.commit()
}

/// `./a/../b` style names normalized to `b`; None for names escaping the root.
fn clean(p: &Path) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => {}
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

fn blob_name_digest(name: &str) -> Option<Digest> {
    let hex = name.strip_prefix("blobs/sha256/")?;
    format!("sha256:{hex}").parse().ok()
}

fn is_small_json(name: &str) -> bool {
    name.ends_with(".json") || name == "oci-layout" || name == "repositories"
}

enum Kind {
    Gzip,
    Zstd,
    Plain,
}

fn sniff(r: &mut BufReader<File>) -> io::Result<Kind> {
    use io::BufRead;
    let head = r.fill_buf()?;
    Ok(magic_kind(head))
}

fn magic_kind(head: &[u8]) -> Kind {
    if head.starts_with(&[0x1f, 0x8b]) {
        Kind::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Kind::Zstd
    } else {
        Kind::Plain
    }
}

struct Ctx<'a> {
    store: &'a Store,
    path: &'a Path,
    src: &'a Source,
}

#[derive(Deserialize)]
struct OciLayout {
    #[serde(rename = "imageLayoutVersion")]
    version: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct DiffIds {
    rootfs: DiffIdsRootFs,
}

#[derive(Deserialize)]
struct DiffIdsRootFs {
    #[serde(default)]
    diff_ids: Vec<Digest>,
}

impl Ctx<'_> {
    fn err(&self, reason: String) -> Error {
        Error::Import {
            path: self.path.to_path_buf(),
            reason,
        }
    }

    fn json<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<T, Error> {
        let bytes = self.src.read_small(name).map_err(|r| self.err(r))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::json(format!("{name} in {}", self.path.display()), e))
    }

    fn oci(&self, tag: Option<&Reference>) -> Result<Vec<ImageRecord>, Error> {
        let layout: OciLayout = self.json("oci-layout")?;
        if !layout.version.starts_with("1.") {
            return Err(self.err(format!(
                "unsupported imageLayoutVersion {:?}",
                layout.version
            )));
        }
        let index_bytes = self.src.read_small("index.json").map_err(|r| self.err(r))?;
        let what = format!("index.json in {}", self.path.display());
        let Manifest::Index(entries) =
            manifest::parse(&what, &index_bytes, Some(manifest::OCI_INDEX))?
        else {
            return Err(self.err("index.json is not an image index".into()));
        };
        if entries.is_empty() {
            return Err(self.err("index.json lists no images".into()));
        }
        if tag.is_some() && entries.len() > 1 {
            return Err(self.err(format!(
                "the layout holds {} images; a tag can name only one (import without a tag)",
                entries.len()
            )));
        }
        let mut out = Vec::new();
        for entry in &entries {
            let names = self.oci_names(entry, tag)?;
            out.push(self.oci_image(entry, names)?);
        }
        Ok(out)
    }

    fn oci_names(&self, entry: &Descriptor, tag: Option<&Reference>) -> Result<Vec<String>, Error> {
        if let Some(t) = tag {
            return Ok(vec![t.to_string()]);
        }
        let parse = |n: &str| {
            n.parse::<Reference>()
                .map(|r| vec![r.to_string()])
                .map_err(|e| self.err(format!("image name annotation: {e}")))
        };
        if let Some(full) = entry.annotations.get(CONTAINERD_NAME) {
            return parse(full);
        }
        match entry.annotations.get(REF_NAME) {
            Some(n) if n.contains(['/', ':', '@']) => parse(n),
            Some(tag_only) => parse(&format!(
                "localhost/{}:{tag_only}",
                self.repo_from_file_name()
            )),
            None => Ok(Vec::new()),
        }
    }

    /// `OUT/busybox.tar` -> `busybox`, made a valid repository component.
    fn repo_from_file_name(&self) -> String {
        let stem = self
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .map(|n| n.split('.').next().unwrap_or(n))
            .unwrap_or("")
            .to_ascii_lowercase();
        let repo: String = stem
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let repo = repo.trim_matches('-').to_string();
        if repo.is_empty() {
            "imported".into()
        } else {
            repo
        }
    }

    fn oci_blob(&self, d: &Descriptor) -> Result<(), Error> {
        let name = format!("blobs/sha256/{}", d.digest.hex());
        self.src
            .store_file(self.store, self.path, &name, Some((&d.digest, d.size)))?;
        Ok(())
    }

    fn oci_image(&self, entry: &Descriptor, names: Vec<String>) -> Result<ImageRecord, Error> {
        let mut desc = entry.clone();
        for _ in 0..4 {
            self.oci_blob(&desc)?;
            let bytes = self.store.read_blob(&desc.digest)?;
            let what = format!("manifest {} in {}", desc.digest, self.path.display());
            match manifest::parse(&what, &bytes, desc.media_type.as_deref())? {
                Manifest::Index(list) => {
                    desc = manifest::select_platform(&what, &list, &Platform::default())?.clone();
                }
                Manifest::Image { config, layers } => {
                    self.oci_blob(&config)?;
                    for l in &layers {
                        self.oci_blob(l)?;
                    }
                    let rec = image_record(
                        self.store,
                        names,
                        &desc.digest,
                        bytes.len() as u64,
                        &config,
                        &layers,
                    )?;
                    return self.store.add_image(rec);
                }
            }
        }
        Err(self.err(format!("indexes nested too deep below {}", entry.digest)))
    }

    fn docker(&self, tag: Option<&Reference>) -> Result<Vec<ImageRecord>, Error> {
        let entries: Vec<DockerEntry> = self.json("manifest.json")?;
        if entries.is_empty() {
            return Err(self.err("manifest.json lists no images".into()));
        }
        if tag.is_some() && entries.len() > 1 {
            return Err(self.err(format!(
                "the archive holds {} images; a tag can name only one (import without a tag)",
                entries.len()
            )));
        }
        entries.iter().map(|e| self.docker_image(e, tag)).collect()
    }

    fn docker_image(
        &self,
        entry: &DockerEntry,
        tag: Option<&Reference>,
    ) -> Result<ImageRecord, Error> {
        let config_bytes = self
            .src
            .read_small(&entry.config)
            .map_err(|r| self.err(r))?;
        let config_what = format!("config {} in {}", entry.config, self.path.display());
        let config_digest = self.store.put_blob(&config_what, &config_bytes, None)?;
        let diff_ids: DiffIds =
            serde_json::from_slice(&config_bytes).map_err(|e| Error::json(&config_what, e))?;
        let mut layers = Vec::new();
        for (i, name) in entry.layers.iter().enumerate() {
            let (digest, size) = self.src.store_file(self.store, self.path, name, None)?;
            let media_type = self.layer_media_type(&digest)?;
            let diff_id = diff_ids.rootfs.diff_ids.get(i);
            if media_type == manifest::OCI_LAYER_TAR && diff_id.is_some_and(|d| *d != digest) {
                return Err(Error::DigestMismatch {
                    what: format!(
                        "layer {name} in {} (rootfs.diff_ids[{i}] of its config)",
                        self.path.display()
                    ),
                    expected: diff_id.cloned().unwrap_or_else(|| digest.clone()),
                    actual: digest,
                });
            }
            layers.push(descriptor(media_type, digest, size));
        }
        let config = descriptor(
            manifest::OCI_CONFIG,
            config_digest,
            config_bytes.len() as u64,
        );
        let manifest_bytes = synthesize_manifest(&config, &layers)?;
        let manifest_digest = self.store.put_blob(
            &format!("manifest for {} in {}", entry.config, self.path.display()),
            &manifest_bytes,
            None,
        )?;
        let names = match tag {
            Some(t) => vec![t.to_string()],
            None => entry
                .repo_tags
                .iter()
                .flatten()
                .map(|t| t.parse::<Reference>().map(|r| r.to_string()))
                .collect::<Result<_, _>>()
                .map_err(|e| self.err(format!("RepoTags: {e}")))?,
        };
        let rec = image_record(
            self.store,
            names,
            &manifest_digest,
            manifest_bytes.len() as u64,
            &config,
            &layers,
        )?;
        self.store.add_image(rec)
    }

    /// Docker archives carry uncompressed layers, but some tools write
    /// compressed ones: the magic bytes decide.
    fn layer_media_type(&self, d: &Digest) -> Result<&'static str, Error> {
        let mut head = [0u8; 4];
        let mut blob = self.store.open_blob(d)?;
        let mut n = 0;
        while n < head.len() {
            match blob.read(&mut head[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) => return Err(Error::io(format!("reading blob {d}"), e)),
            }
        }
        Ok(match magic_kind(&head[..n]) {
            Kind::Gzip => manifest::OCI_LAYER_GZIP,
            Kind::Zstd => manifest::OCI_LAYER_ZSTD,
            Kind::Plain => manifest::OCI_LAYER_TAR,
        })
    }
}

fn descriptor(media_type: &str, digest: Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type: Some(media_type.to_string()),
        digest,
        size,
        platform: None,
        annotations: HashMap::new(),
    }
}

/// An OCI manifest for a docker-save image, so it is stored like a pulled one.
/// serde_json's maps are sorted, so the same archive yields the same digest.
fn synthesize_manifest(config: &Descriptor, layers: &[Descriptor]) -> Result<Vec<u8>, Error> {
    let desc = |d: &Descriptor| {
        serde_json::json!({
            "mediaType": d.media_type,
            "digest": d.digest.to_string(),
            "size": d.size,
        })
    };
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_MANIFEST,
        "config": desc(config),
        "layers": layers.iter().map(desc).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&m).map_err(|e| Error::json("synthesized manifest", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_names() {
        assert_eq!(
            clean(Path::new("./index.json")).as_deref(),
            Some("index.json")
        );
        assert_eq!(
            clean(Path::new("a/../b/layer.tar")).as_deref(),
            Some("b/layer.tar")
        );
        assert_eq!(clean(Path::new("/abs/x")).as_deref(), Some("abs/x"));
        assert_eq!(clean(Path::new("../x")), None);
        assert_eq!(clean(Path::new("./")), None);
    }

    #[test]
    fn blob_names_and_magic() {
        let d = Digest::of_bytes(b"x");
        assert_eq!(
            blob_name_digest(&format!("blobs/sha256/{}", d.hex())),
            Some(d)
        );
        assert_eq!(blob_name_digest("blobs/sha256/zz"), None);
        assert!(matches!(magic_kind(&[0x1f, 0x8b, 8, 0]), Kind::Gzip));
        assert!(matches!(magic_kind(&[0x28, 0xb5, 0x2f, 0xfd]), Kind::Zstd));
        assert!(matches!(magic_kind(b"bin/"), Kind::Plain));
        assert!(matches!(magic_kind(b""), Kind::Plain));
    }

    #[test]
    fn synthesized_manifest_is_stable_and_parses() {
        let config = descriptor(manifest::OCI_CONFIG, Digest::of_bytes(b"c"), 1);
        let layers = vec![descriptor(
            manifest::OCI_LAYER_TAR,
            Digest::of_bytes(b"l"),
            2,
        )];
        let a = synthesize_manifest(&config, &layers).unwrap();
        assert_eq!(a, synthesize_manifest(&config, &layers).unwrap());
        match manifest::parse("m", &a, None).unwrap() {
            Manifest::Image {
                config: c,
                layers: l,
            } => {
                assert_eq!(c.digest, config.digest);
                assert_eq!(l[0].media_type.as_deref(), Some(manifest::OCI_LAYER_TAR));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn not_an_archive_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let empty = dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        let err = import(&store, &empty, None).unwrap_err().to_string();
        assert!(
            err.contains("empty") && err.contains("neither an OCI image layout"),
            "{err}"
        );
        let err = import(&store, &dir.path().join("missing.tar"), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.tar"), "{err}");
    }

    #[test]
    fn symlink_out_of_a_layout_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let layout = dir.path().join("layout");
        fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
        fs::write(
            layout.join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        let secret = dir.path().join("secret");
        fs::write(&secret, b"not for the store").unwrap();
        let d = Digest::of_bytes(b"not for the store");
        std::os::unix::fs::symlink(&secret, layout.join("blobs/sha256").join(d.hex())).unwrap();
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{d}","size":17}}]}}"#,
            manifest::OCI_MANIFEST
        );
        fs::write(layout.join("index.json"), index).unwrap();
        let err = import(&store, &layout, None).unwrap_err().to_string();
        assert!(err.contains("leads outside the archive"), "{err}");
        assert!(!store.blob_path(&d).exists());
    }
}
