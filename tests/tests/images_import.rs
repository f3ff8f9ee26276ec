//! Import without a registry: OCI layouts (directory, tar, gzipped tar) from
//! `scripts/build-test-images`, and `docker save` archives made by skopeo.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use corral_images::registry::manifest::OCI_LAYER_TAR;
use corral_images::{import, Digest, Error, ImageRecord, Reference, Store};
use corral_tests::registry::{build_test_images, missing_tools, run};

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
        .prefix("corral-import-")
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
    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    fn docker_archive(&self, layout: &str, name: &str) -> PathBuf {
        let out = self.path(&format!("{layout}-docker.tar"));
        run(Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--quiet"])
            .arg(format!("oci:{}:latest", self.images.join(layout).display()))
            .arg(format!("docker-archive:{}:{name}", out.display())));
        out
    }

    fn assert_no_partial_files(&self) {
        let left: Vec<_> = fs::read_dir(self.store.tmp_dir())
            .expect("read tmp")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert!(left.is_empty(), "left in the store's tmp: {left:?}");
    }
}

fn layout_manifest_digest(layout: &Path) -> Digest {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).expect("index")).expect("json");
    index["manifests"][0]["digest"]
        .as_str()
        .expect("digest")
        .parse()
        .expect("parse")
}

fn assert_blobs_intact(store: &Store, img: &ImageRecord) {
    for d in img.blobs() {
        store
            .verify_blob(d)
            .unwrap_or_else(|e| panic!("blob {d}: {e}"));
    }
}

fn tar_dir(dir: &Path, out: &Path, gzip: bool) {
    let flags = if gzip { "-czf" } else { "-cf" };
    run(Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg(flags)
        .arg(out)
        .arg("."));
}

#[test]
fn import_oci_layout_dir_named_from_ref_annotation_or_tag() {
    let Some(t) = setup("import_oci_layout_dir_named_from_ref_annotation_or_tag") else {
        return;
    };
    let layout = t.images.join("layered");
    let imported = import(&t.store, &layout, None).expect("import layout dir");
    assert_eq!(imported.len(), 1);
    let img = &imported[0];
    assert_eq!(img.manifest, layout_manifest_digest(&layout));
    // The layout's ref name is the bare tag "latest": the repository comes
    // from the layout's file name.
    assert_eq!(img.names, vec!["localhost/layered:latest"]);
    assert_eq!(img.layers.len(), 3);
    assert_blobs_intact(&t.store, img);
    assert_eq!(
        t.store.find_str("localhost/layered").expect("find"),
        Some(img.clone())
    );

    let tag: Reference = "example.com/team/app:1.0".parse().expect("ref");
    let again = import(&t.store, &layout, Some(&tag)).expect("import with a tag");
    assert_eq!(again[0].manifest, img.manifest);
    assert_eq!(
        again[0].names,
        vec!["localhost/layered:latest", "example.com/team/app:1.0"],
        "same image, one more name"
    );
    assert_eq!(t.store.images().expect("images").len(), 1);
    t.assert_no_partial_files();
}

#[test]
fn import_oci_layout_tar_plain_and_gzipped() {
    let Some(t) = setup("import_oci_layout_tar_plain_and_gzipped") else {
        return;
    };
    let layout = t.images.join("busybox");
    let plain = t.path("busybox.tar");
    tar_dir(&layout, &plain, false);
    let img = import(&t.store, &plain, None)
        .expect("import tar")
        .remove(0);
    assert_eq!(img.manifest, layout_manifest_digest(&layout));
    assert_eq!(img.names, vec!["localhost/busybox:latest"]);
    assert_blobs_intact(&t.store, &img);

    let fresh = Store::open(&t.path("store2")).expect("second store");
    let gz = t.path("bb.tar.gz");
    tar_dir(&layout, &gz, true);
    let img2 = import(&fresh, &gz, None).expect("import tar.gz").remove(0);
    assert_eq!(img2.manifest, img.manifest);
    assert_eq!(img2.names, vec!["localhost/bb:latest"]);
    assert_blobs_intact(&fresh, &img2);
    t.assert_no_partial_files();
}

#[test]
fn import_docker_save_archive_records_real_layer_digests() {
    let Some(t) = setup("import_docker_save_archive_records_real_layer_digests") else {
        return;
    };
    let archive = t.docker_archive("layered", "corral/layered:v1");
    let imported = import(&t.store, &archive, None).expect("import docker archive");
    assert_eq!(imported.len(), 1);
    let img = &imported[0];
    assert_eq!(img.names, vec!["docker.io/corral/layered:v1"]);
    assert_eq!(img.layers.len(), 3);
    assert_blobs_intact(&t.store, img);
    let config = t.store.config(img).expect("config");
    let diff_ids: Vec<String> = config.rootfs().diff_ids().to_vec();
    for (layer, diff_id) in img.layers.iter().zip(&diff_ids) {
        assert_eq!(
            layer.media_type, OCI_LAYER_TAR,
            "docker save layers are plain tars"
        );
        assert_eq!(
            &layer.digest.to_string(),
            diff_id,
            "recorded with its real digest"
        );
        let len = fs::metadata(t.store.blob_path(&layer.digest))
            .expect("blob")
            .len();
        assert_eq!(len, layer.size);
    }
    // The synthesized manifest is a stored, parseable OCI manifest.
    let manifest: serde_json::Value =
        serde_json::from_slice(&t.store.read_blob(&img.manifest).expect("manifest")).expect("json");
    assert_eq!(manifest["config"]["digest"], img.config.to_string());

    // Importing the same archive again gives the same image (stable manifest).
    let again = import(&t.store, &archive, None).expect("re-import");
    assert_eq!(&again[0], img);

    let tag: Reference = "localhost/renamed:2".parse().expect("ref");
    let renamed = import(&t.store, &archive, Some(&tag)).expect("import with a tag");
    assert!(renamed[0].names.contains(&tag.to_string()));
    assert_eq!(renamed[0].manifest, img.manifest);
    t.assert_no_partial_files();
}

#[test]
fn import_rejects_a_corrupted_blob_and_leaves_nothing() {
    let Some(t) = setup("import_rejects_a_corrupted_blob_and_leaves_nothing") else {
        return;
    };
    let layout = t.path("broken");
    run(Command::new("cp")
        .arg("-a")
        .arg(t.images.join("busybox"))
        .arg(&layout));
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(
            layout
                .join("blobs/sha256")
                .join(layout_manifest_digest(&layout).hex()),
        )
        .expect("manifest"),
    )
    .expect("json");
    let layer: Digest = manifest["layers"][0]["digest"]
        .as_str()
        .expect("layer")
        .parse()
        .expect("digest");
    let file = layout.join("blobs/sha256").join(layer.hex());
    let mut bytes = fs::read(&file).expect("layer");
    bytes[100] ^= 0x55;
    fs::write(&file, &bytes).expect("corrupt");

    let err = import(&t.store, &layout, None).expect_err("corrupt layer");
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains(layer.hex()), "{err}");
    assert!(!t.store.blob_path(&layer).exists());
    assert!(t.store.images().expect("images").is_empty());

    let tarball = t.path("broken.tar");
    tar_dir(&layout, &tarball, false);
    let err = import(&t.store, &tarball, None).expect_err("corrupt layer in a tar");
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
    assert!(!t.store.blob_path(&layer).exists());
    assert!(t.store.images().expect("images").is_empty());
    t.assert_no_partial_files();

    fs::remove_file(&file).expect("remove layer");
    let err = import(&t.store, &layout, None)
        .expect_err("missing layer")
        .to_string();
    assert!(err.contains(layer.hex()) && err.contains("broken"), "{err}");
}
