//! Registry pull against a real Debian `docker-registry` on 127.0.0.1, with
//! test images pushed by skopeo: anonymous, Basic (htpasswd), Bearer token,
//! HTTPS with a CA file; 404s, corrupted blobs, connection refused; blobs
//! already present are not downloaded again.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use corral_images::registry::manifest::{OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_LAYER_ZSTD};
use corral_images::{pull, Digest, Error, ImageRecord, PullOptions, Reference, Store};
use corral_tests::registry::{
    auth_file, build_test_images, free_port, missing_tools, Auth, Registry, TokenServer, PASSWORD,
    USER,
};

struct Setup {
    work: tempfile::TempDir,
    images: PathBuf,
    store: Store,
}

fn setup(test: &str) -> Option<Setup> {
    if let Some(why) = missing_tools() {
        eprintln!("SKIPPED [{test}]: {why}");
        return None;
    }
    let work = tempfile::Builder::new()
        .prefix("corral-pull-")
        .tempdir()
        .expect("tempdir");
    let images = build_test_images(&work.path().join("images"));
    let store = Store::open(&work.path().join("store")).expect("open store");
    Some(Setup {
        work,
        images,
        store,
    })
}

impl Setup {
    /// Options with a credentials file of our own, so the host's
    /// `$REGISTRY_AUTH_FILE` or `~/.config` never leak in.
    fn opts(&self, auth: Option<&Path>) -> PullOptions {
        let empty = self.work.path().join("no-auth.json");
        fs::write(&empty, r#"{"auths":{}}"#).expect("write empty auth file");
        PullOptions {
            insecure: true,
            progress: false,
            auth_file: Some(auth.map_or(empty, Path::to_path_buf)),
            ..PullOptions::default()
        }
    }

    fn layout(&self, name: &str) -> PathBuf {
        self.images.join(name)
    }

    fn assert_no_partial_files(&self) {
        let left: Vec<_> = fs::read_dir(self.store.tmp_dir())
            .expect("read tmp")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert!(left.is_empty(), "left in the store's tmp: {left:?}");
    }
}

fn reference(reg: &Registry, repo_tag: &str) -> Reference {
    format!("{}/{repo_tag}", reg.host())
        .parse()
        .expect("reference")
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .expect("json")
}

/// The manifest digest of a layout's first image, and that manifest.
fn layout_manifest(layout: &Path) -> (Digest, serde_json::Value) {
    let index = json(&layout.join("index.json"));
    let digest: Digest = index["manifests"][0]["digest"]
        .as_str()
        .expect("digest")
        .parse()
        .expect("parse");
    let manifest = json(&layout.join("blobs/sha256").join(digest.hex()));
    (digest, manifest)
}

fn assert_blobs_intact(store: &Store, img: &ImageRecord) {
    for d in img.blobs() {
        store
            .verify_blob(d)
            .unwrap_or_else(|e| panic!("blob {d}: {e}"));
    }
    for l in &img.layers {
        assert_eq!(
            fs::metadata(store.blob_path(&l.digest))
                .expect("layer blob")
                .len(),
            l.size
        );
    }
}

#[test]
fn pull_anonymous_single_layer() {
    let Some(t) = setup("pull_anonymous_single_layer") else {
        return;
    };
    let reg = Registry::start(Auth::None);
    reg.push(&t.layout("busybox"), "busybox", "latest", &[]);
    let r = reference(&reg, "busybox:latest");

    let img = pull(&t.store, &r, &t.opts(None)).expect("pull");

    let (digest, manifest) = layout_manifest(&t.layout("busybox"));
    assert_eq!(
        img.manifest, digest,
        "the registry served the manifest skopeo pushed"
    );
    assert_eq!(img.names, vec![r.to_string()]);
    assert_eq!(img.config.to_string(), manifest["config"]["digest"]);
    assert_eq!(img.layers.len(), 1);
    assert_eq!(img.layers[0].media_type, OCI_LAYER_GZIP);
    assert_eq!(
        img.layers[0].digest.to_string(),
        manifest["layers"][0]["digest"]
    );
    assert_blobs_intact(&t.store, &img);
    let config = t.store.config(&img).expect("config");
    assert_eq!(config.rootfs().diff_ids().len(), 1);
    assert_eq!(t.store.images().expect("images"), vec![img.clone()]);
    assert_eq!(t.store.find(&r).expect("find"), Some(img.clone()));
    assert_eq!(
        t.store
            .find_str(&format!("{}/busybox", reg.host()))
            .expect("find_str"),
        Some(img)
    );
    t.assert_no_partial_files();
}

#[test]
fn pull_multi_layer_then_second_pull_skips_present_blobs() {
    let Some(t) = setup("pull_multi_layer_then_second_pull_skips_present_blobs") else {
        return;
    };
    let reg = Registry::start(Auth::None);
    reg.push(&t.layout("layered"), "layered", "v1", &[]);
    let r = reference(&reg, "layered:v1");
    let before = reg.blob_gets("layered");

    let img = pull(&t.store, &r, &t.opts(None)).expect("first pull");
    assert_eq!(img.layers.len(), 3);
    assert_blobs_intact(&t.store, &img);
    assert_eq!(
        reg.blob_gets("layered") - before,
        4,
        "config + 3 layers:\n{}",
        reg.log()
    );
    let inodes: Vec<u64> = img
        .blobs()
        .iter()
        .map(|d| fs::metadata(t.store.blob_path(d)).expect("blob").ino())
        .collect();

    let again = pull(&t.store, &r, &t.opts(None)).expect("second pull");
    assert_eq!(again, img);
    assert_eq!(
        reg.blob_gets("layered") - before,
        4,
        "no blob fetched again:\n{}",
        reg.log()
    );
    let inodes_again: Vec<u64> = img
        .blobs()
        .iter()
        .map(|d| fs::metadata(t.store.blob_path(d)).expect("blob").ino())
        .collect();
    assert_eq!(inodes, inodes_again, "blobs were not rewritten");

    // Only what is missing is fetched.
    fs::remove_file(t.store.blob_path(&img.layers[1].digest)).expect("remove a layer");
    pull(&t.store, &r, &t.opts(None)).expect("third pull");
    assert_eq!(
        reg.blob_gets("layered") - before,
        5,
        "exactly the missing layer:\n{}",
        reg.log()
    );
    assert_blobs_intact(&t.store, &img);
    assert_eq!(t.store.images().expect("images").len(), 1);
}

#[test]
fn pull_zstd_and_uncompressed_layers() {
    let Some(t) = setup("pull_zstd_and_uncompressed_layers") else {
        return;
    };
    let reg = Registry::start(Auth::None);
    reg.push(
        &t.layout("layered"),
        "zstd",
        "latest",
        &["--dest-compress", "--dest-compress-format", "zstd"],
    );
    let plain_digest = reg.push_uncompressed(&t.layout("layered"), "plain", "latest");

    let z = pull(&t.store, &reference(&reg, "zstd"), &t.opts(None)).expect("pull zstd");
    assert!(
        z.layers.iter().all(|l| l.media_type == OCI_LAYER_ZSTD),
        "{:?}",
        z.layers
    );
    assert_blobs_intact(&t.store, &z);
    let head = fs::read(t.store.blob_path(&z.layers[0].digest)).expect("layer");
    assert_eq!(&head[..4], &[0x28, 0xb5, 0x2f, 0xfd], "really zstd");

    let p = pull(&t.store, &reference(&reg, "plain"), &t.opts(None)).expect("pull plain");
    assert_eq!(p.manifest.to_string(), plain_digest);
    assert!(
        p.layers.iter().all(|l| l.media_type == OCI_LAYER_TAR),
        "{:?}",
        p.layers
    );
    assert_blobs_intact(&t.store, &p);
    // Uncompressed layers are their own diff IDs.
    let config = t.store.config(&p).expect("config");
    let diff_ids: Vec<String> = config.rootfs().diff_ids().to_vec();
    let layer_digests: Vec<String> = p.layers.iter().map(|l| l.digest.to_string()).collect();
    assert_eq!(diff_ids, layer_digests);
    assert_eq!(
        z.config, p.config,
        "same image config whatever the compression"
    );
}

#[test]
fn pull_by_digest_and_clear_404s() {
    let Some(t) = setup("pull_by_digest_and_clear_404s") else {
        return;
    };
    let reg = Registry::start(Auth::None);
    reg.push(&t.layout("busybox"), "busybox", "latest", &[]);
    let (digest, _) = layout_manifest(&t.layout("busybox"));

    let pinned = reference(&reg, &format!("busybox@{digest}"));
    let img = pull(&t.store, &pinned, &t.opts(None)).expect("pull by digest");
    assert_eq!(img.manifest, digest);
    assert_eq!(img.names, vec![format!("{}/busybox@{digest}", reg.host())]);
    assert_eq!(t.store.find(&pinned).expect("find"), Some(img));

    let missing_tag = reference(&reg, "busybox:nope");
    let err = pull(&t.store, &missing_tag, &t.opts(None)).expect_err("missing tag");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    let msg = err.to_string();
    for part in [
        &reg.host(),
        "busybox:nope",
        "manifest nope",
        "404",
        "MANIFEST_UNKNOWN",
    ] {
        assert!(msg.contains(part), "{part:?} not in: {msg}");
    }

    let err =
        pull(&t.store, &reference(&reg, "nosuchrepo"), &t.opts(None)).expect_err("missing repo");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("nosuchrepo:latest"), "{err}");

    let other = Digest::of_bytes(b"no such manifest");
    let err = pull(
        &t.store,
        &reference(&reg, &format!("busybox@{other}")),
        &t.opts(None),
    )
    .expect_err("missing digest");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert_eq!(
        t.store.images().expect("images").len(),
        1,
        "failed pulls record nothing"
    );
}

#[test]
fn connection_refused_is_clear() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let port = free_port();
    let r: Reference = format!("127.0.0.1:{port}/busybox:latest")
        .parse()
        .expect("ref");
    let auth = dir.path().join("auth.json");
    fs::write(&auth, r#"{"auths":{}}"#).expect("auth file");
    let opts = PullOptions {
        insecure: true,
        progress: false,
        auth_file: Some(auth),
        ..PullOptions::default()
    };

    let err = pull(&store, &r, &opts).expect_err("nothing listens");
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("cannot connect to registry 127.0.0.1:{port}")),
        "{msg}"
    );
    assert!(msg.contains(&r.to_string()), "names the reference: {msg}");
    assert!(msg.to_lowercase().contains("connection refused"), "{msg}");

    let secure = PullOptions {
        insecure: false,
        ..opts
    };
    let msg = pull(&store, &r, &secure)
        .expect_err("nothing listens")
        .to_string();
    assert!(msg.contains("--insecure"), "hints at plain HTTP: {msg}");
}

#[test]
fn corrupted_blob_is_rejected_and_leaves_nothing() {
    let Some(t) = setup("corrupted_blob_is_rejected_and_leaves_nothing") else {
        return;
    };
    let reg = Registry::start(Auth::None);
    reg.push(&t.layout("busybox"), "busybox", "latest", &[]);
    let (_, manifest) = layout_manifest(&t.layout("busybox"));
    let layer: Digest = manifest["layers"][0]["digest"]
        .as_str()
        .expect("layer")
        .parse()
        .expect("digest");

    // Flip one byte of the layer in the registry's storage: same size,
    // different content, as a bad disk or proxy would deliver it.
    let file = reg.blob_file(layer.hex());
    let mut bytes = fs::read(&file).expect("registry blob");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&file, &bytes).expect("corrupt it");

    let r = reference(&reg, "busybox:latest");
    let err = pull(&t.store, &r, &t.opts(None)).expect_err("corrupt layer");
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("layer {layer}")) && msg.contains(&r.to_string()),
        "{msg}"
    );
    assert!(
        msg.contains(&Digest::of_bytes(&bytes).to_string()),
        "names what arrived: {msg}"
    );
    assert!(
        !t.store.blob_path(&layer).exists(),
        "no blob under the layer's digest"
    );
    assert!(!t.store.blob_path(&Digest::of_bytes(&bytes)).exists());
    assert!(
        t.store.images().expect("images").is_empty(),
        "no image recorded"
    );
    t.assert_no_partial_files();
}

#[test]
fn basic_auth_good_bad_and_missing_credentials() {
    let Some(t) = setup("basic_auth_good_bad_and_missing_credentials") else {
        return;
    };
    let reg = Registry::start(Auth::Basic);
    reg.push(
        &t.layout("busybox"),
        "busybox",
        "latest",
        &["--dest-creds", &format!("{USER}:{PASSWORD}")],
    );
    let r = reference(&reg, "busybox:latest");
    let creds = t.work.path().join("creds");
    fs::create_dir(&creds).expect("mkdir");

    let good = auth_file(&creds, &reg.host(), USER, PASSWORD);
    let img = pull(&t.store, &r, &t.opts(Some(&good))).expect("pull with credentials");
    assert_blobs_intact(&t.store, &img);

    let bad = auth_file(&creds, &reg.host(), USER, "wrong");
    let err = pull(&t.store, &r, &t.opts(Some(&bad))).expect_err("bad password");
    assert!(
        matches!(
            err,
            Error::Unauthorized {
                had_credentials: true,
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("401") && msg.contains("with the configured credentials"),
        "{msg}"
    );
    assert!(
        msg.contains(&reg.host()) && msg.contains(&r.to_string()),
        "{msg}"
    );

    let elsewhere = auth_file(&creds, "127.0.0.1:1", USER, PASSWORD);
    let err = pull(&t.store, &r, &t.opts(Some(&elsewhere))).expect_err("no credentials");
    assert!(
        matches!(
            err,
            Error::Unauthorized {
                had_credentials: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("no credentials configured for this registry"),
        "{err}"
    );

    let missing = creds.join("missing.json");
    let err = pull(&t.store, &r, &t.opts(Some(&missing))).expect_err("missing file");
    assert!(err.to_string().contains("missing.json"), "{err}");
}

#[test]
fn bearer_token_auth() {
    let Some(t) = setup("bearer_token_auth") else {
        return;
    };
    let tokens = TokenServer::start();
    let reg = Registry::start(Auth::Token {
        realm: tokens.realm(),
        cert: tokens.cert(),
    });
    reg.push(
        &t.layout("layered"),
        "app/layered",
        "v2",
        &["--dest-creds", &format!("{USER}:{PASSWORD}")],
    );
    let pushed = tokens.issued.load(std::sync::atomic::Ordering::SeqCst);
    assert!(pushed > 0, "skopeo got a token to push");
    let r = reference(&reg, "app/layered:v2");
    let creds = t.work.path().join("creds");
    fs::create_dir(&creds).expect("mkdir");

    let good = auth_file(&creds, &reg.host(), USER, PASSWORD);
    let img = pull(&t.store, &r, &t.opts(Some(&good))).expect("pull with a token");
    assert_eq!(img.layers.len(), 3);
    assert_blobs_intact(&t.store, &img);
    assert!(
        tokens.issued.load(std::sync::atomic::Ordering::SeqCst) > pushed,
        "we asked for a token"
    );

    let bad = auth_file(&creds, &reg.host(), USER, "wrong");
    let err = pull(&t.store, &r, &t.opts(Some(&bad))).expect_err("bad password");
    assert!(
        matches!(
            err,
            Error::Unauthorized {
                had_credentials: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&tokens.realm()),
        "names the token server: {err}"
    );

    let err = pull(&t.store, &r, &t.opts(None)).expect_err("anonymous");
    assert!(
        matches!(
            err,
            Error::Unauthorized {
                had_credentials: false,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn https_with_ca_file_or_insecure() {
    let Some(t) = setup("https_with_ca_file_or_insecure") else {
        return;
    };
    let reg = Registry::start_with(Auth::None, true);
    reg.push(&t.layout("busybox"), "busybox", "latest", &[]);
    let r = reference(&reg, "busybox:latest");

    let verified = PullOptions {
        insecure: false,
        ca_file: Some(reg.ca_file()),
        ..t.opts(None)
    };
    let img = pull(&t.store, &r, &verified).expect("HTTPS with the CA file");
    assert_blobs_intact(&t.store, &img);

    let untrusted = PullOptions {
        insecure: false,
        ..t.opts(None)
    };
    let err = pull(&t.store, &r, &untrusted).expect_err("unknown CA");
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );

    fs::remove_file(t.store.blob_path(&img.layers[0].digest)).expect("remove layer");
    let img = pull(&t.store, &r, &t.opts(None)).expect("insecure HTTPS");
    assert_blobs_intact(&t.store, &img);
}

/// Writes `bytes` as a blob of `layout`; returns its descriptor fields.
fn put_layout_blob(layout: &Path, bytes: &[u8]) -> (Digest, usize) {
    let d = Digest::of_bytes(bytes);
    fs::write(layout.join("blobs/sha256").join(d.hex()), bytes).expect("write blob");
    (d, bytes.len())
}

/// A copy of the busybox layout whose tag names an OCI index with a
/// linux/amd64 entry (the original image) and a linux/arm64/v8 entry (same
/// layers, a config saying arm64). Returns the index digest.
fn multi_arch_layout(t: &Setup, out: &Path) -> Digest {
    corral_tests::registry::run(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(t.layout("busybox"))
            .arg(out),
    );
    let (amd64, manifest) = layout_manifest(out);
    let amd64_len = fs::metadata(out.join("blobs/sha256").join(amd64.hex()))
        .expect("manifest")
        .len();
    let config_digest: Digest = manifest["config"]["digest"]
        .as_str()
        .expect("config")
        .parse()
        .expect("digest");
    let mut config = json(&out.join("blobs/sha256").join(config_digest.hex()));
    config["architecture"] = "arm64".into();
    config["variant"] = "v8".into();
    let (arm_config, arm_config_len) =
        put_layout_blob(out, &serde_json::to_vec(&config).expect("json"));
    let mut arm_manifest = manifest.clone();
    arm_manifest["config"]["digest"] = arm_config.to_string().into();
    arm_manifest["config"]["size"] = arm_config_len.into();
    let (arm, arm_len) = put_layout_blob(out, &serde_json::to_vec(&arm_manifest).expect("json"));
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm.to_string(),
             "size": arm_len, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd64.to_string(),
             "size": amd64_len, "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    });
    let (index_digest, index_len) =
        put_layout_blob(out, &serde_json::to_vec(&index).expect("json"));
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": index_digest.to_string(), "size": index_len,
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    fs::write(out.join("index.json"), top.to_string()).expect("index.json");
    index_digest
}

#[test]
fn pull_selects_the_platform_from_an_index() {
    let Some(t) = setup("pull_selects_the_platform_from_an_index") else {
        return;
    };
    let layout = t.work.path().join("multi");
    let index_digest = multi_arch_layout(&t, &layout);
    let reg = Registry::start(Auth::None);
    reg.push(&layout, "multi", "latest", &["--all"]);
    let r = reference(&reg, "multi:latest");
    let (amd64, _) = layout_manifest(&t.layout("busybox"));

    let img = pull(&t.store, &r, &t.opts(None)).expect("default platform");
    assert_eq!(img.manifest, amd64, "linux/amd64 by default");
    assert_eq!(
        t.store
            .config(&img)
            .expect("config")
            .architecture()
            .to_string(),
        "amd64"
    );

    let arm = PullOptions {
        platform: "linux/arm64".parse().expect("platform"),
        ..t.opts(None)
    };
    let arm_img = pull(&t.store, &r, &arm).expect("arm64");
    assert_ne!(arm_img.manifest, amd64);
    assert_eq!(arm_img.layers, img.layers, "the same layers");
    assert_eq!(
        t.store
            .config(&arm_img)
            .expect("config")
            .architecture()
            .to_string(),
        "arm64"
    );
    assert_eq!(
        arm_img.names,
        vec![r.to_string()],
        "the tag moved to the arm64 image"
    );

    let pinned = reference(&reg, &format!("multi@{index_digest}"));
    let by_index = pull(&t.store, &pinned, &t.opts(None)).expect("pull by index digest");
    assert_eq!(by_index.manifest, amd64);
    assert_eq!(t.store.find(&pinned).expect("find"), Some(by_index));

    let s390x = PullOptions {
        platform: "linux/s390x".parse().expect("platform"),
        ..t.opts(None)
    };
    let err = pull(&t.store, &r, &s390x).expect_err("no such platform");
    assert!(matches!(err, Error::NoMatchingPlatform { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("linux/s390x") && msg.contains(&r.to_string()),
        "{msg}"
    );
    assert!(
        msg.contains("available: linux/arm64/v8, linux/amd64"),
        "{msg}"
    );
}

#[test]
fn pull_docker_schema2_manifest_and_manifest_list() {
    let Some(t) = setup("pull_docker_schema2_manifest_and_manifest_list") else {
        return;
    };
    let reg = Registry::start(Auth::None);
    reg.push(
        &t.layout("layered"),
        "docker",
        "v2s2",
        &["--format", "v2s2"],
    );
    let img = pull(&t.store, &reference(&reg, "docker:v2s2"), &t.opts(None)).expect("pull v2s2");
    let manifest: serde_json::Value =
        serde_json::from_slice(&t.store.read_blob(&img.manifest).expect("manifest")).expect("json");
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(img.layers.len(), 3);
    assert!(
        img.layers
            .iter()
            .all(|l| l.media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip"),
        "{:?}",
        img.layers
    );
    assert_blobs_intact(&t.store, &img);

    let layout = t.work.path().join("multi");
    multi_arch_layout(&t, &layout);
    reg.push(&layout, "list", "latest", &["--all", "--format", "v2s2"]);
    let raw = corral_tests::registry::run(std::process::Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/list:latest", reg.host()),
    ]));
    assert!(
        raw.contains("application/vnd.docker.distribution.manifest.list.v2+json"),
        "skopeo pushed a Docker manifest list: {raw}"
    );
    let arm = PullOptions {
        platform: "linux/arm64/v8".parse().expect("platform"),
        ..t.opts(None)
    };
    let r = reference(&reg, "list:latest");
    let arm_img = pull(&t.store, &r, &arm).expect("arm64 from a manifest list");
    assert_eq!(
        t.store
            .config(&arm_img)
            .expect("config")
            .architecture()
            .to_string(),
        "arm64"
    );
    let amd = pull(&t.store, &r, &t.opts(None)).expect("amd64 from a manifest list");
    assert_eq!(
        t.store
            .config(&amd)
            .expect("config")
            .architecture()
            .to_string(),
        "amd64"
    );
}
