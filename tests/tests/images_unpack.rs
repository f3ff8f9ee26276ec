//! Layer unpack, snapshots and image GC on the real filesystem (root, overlayfs):
//! the test images from `scripts/build-test-images` imported into a store,
//! hostile layers rejected without a trace, snapshots sharing layers.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use corral_images::config::resolve_user;
use corral_images::layers::{image_chain_ids, layer_dir, layers_dir};
use corral_images::{
    import, prune, remove_image, runtime_spec, unpack_layers, Error, ImageRecord, Limits,
    RunConfig, Snapshot, Store,
};
use corral_tests::layer_fixtures::{add_image, build_test_images, snapshot, Layer, LayerTar};
use corral_tests::{host, skip};

struct Env {
    dir: tempfile::TempDir,
    store: Store,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("store")).expect("open store");
        Env { dir, store }
    }

    /// Imports one of the layouts built by scripts/build-test-images.
    fn import(&self, name: &str) -> ImageRecord {
        let out = self.dir.path().join("images");
        if !out.exists() {
            build_test_images(&out).expect("build the test images");
        }
        let mut recs = import(&self.store, &out.join(name), None).expect("import");
        assert_eq!(recs.len(), 1, "{name} holds one image");
        recs.remove(0)
    }

    fn layer_dirs(&self) -> Vec<String> {
        names_in(&layers_dir(&self.store))
    }

    fn tmp_entries(&self) -> Vec<String> {
        names_in(&self.store.tmp_dir())
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("listing {}: {e}", dir.display()),
    };
    out.sort();
    out
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("path");
    let n = std::ffi::CString::new(name).expect("name");
    let mut buf = vec![0u8; 256];
    // SAFETY: both strings are NUL-terminated; buf has buf.len() writable bytes.
    let rc = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (rc >= 0).then(|| buf[..rc as usize].to_vec())
}

macro_rules! need_root {
    () => {
        if !host::is_root() {
            skip!("needs root (overlay mounts, chown, mknod)");
        }
    };
}

#[test]
fn layered_image_merges_to_exactly_the_final_tree() {
    need_root!();
    let env = Env::new();
    let img = env.import("layered");
    assert_eq!(img.layers.len(), 3);
    let layers = unpack_layers(&env.store, &img, &Limits::default()).expect("unpack");
    assert_eq!(layers.len(), 3);
    let snap = snapshot(&env.store, "layered-1", &img, &layers, false).expect("snapshot");
    let m = snap.merged();

    assert!(m.join("bin/busybox").is_file());
    assert_eq!(
        fs::read_link(m.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert!(!m.join("etc/motd").exists(), "deleted by a whiteout");
    assert!(fs::symlink_metadata(m.join("etc/motd")).is_err());
    assert!(
        !m.join("var/cache/old").exists(),
        "directory deleted by a whiteout"
    );
    assert!(m.join("var/cache").is_dir());
    assert_eq!(
        names_in(&m.join("opt/app")),
        ["new.txt"],
        "opaque directory"
    );
    assert_eq!(
        fs::read(m.join("opt/app/new.txt")).unwrap(),
        b"new content\n"
    );

    let share = m.join("usr/share/corral");
    let data = fs::metadata(share.join("data.txt")).unwrap();
    let hard = fs::metadata(share.join("hardlink")).unwrap();
    assert_eq!(hard.ino(), data.ino(), "the hard link shares the inode");
    assert_eq!(data.nlink(), 2);
    assert_eq!((data.uid(), data.gid()), (1000, 2000));
    assert_eq!(data.permissions().mode() & 0o7777, 0o640);
    assert_eq!(data.mtime(), 1_600_000_000);
    assert_eq!(
        xattr(&share.join("data.txt"), "user.corral").as_deref(),
        Some(&b"layered"[..])
    );
    assert_eq!(
        fs::read_link(share.join("symlink")).unwrap(),
        Path::new("data.txt")
    );
    assert_eq!(
        fs::read(share.join("symlink")).unwrap(),
        b"shared by a hard link\n"
    );
    assert!(fs::symlink_metadata(m.join("run/corral.fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    let home = fs::metadata(m.join("home/app")).unwrap();
    assert_eq!(
        (home.uid(), home.permissions().mode() & 0o777),
        (1000, 0o750)
    );

    let app = resolve_user(m, "app").expect("user app");
    assert_eq!(
        (app.uid, app.gid, app.additional_gids.clone()),
        (1000, 1000, vec![2000])
    );
    let cfg = env.store.config(&img).unwrap();
    let run = RunConfig {
        rootfs: m.to_path_buf(),
        user: Some("app".into()),
        hostname: "layered".into(),
        ..RunConfig::default()
    };
    let spec = runtime_spec(&cfg, &run).expect("spec");
    let user = spec.process().as_ref().unwrap().user();
    assert_eq!((user.uid(), user.gid()), (1000, 1000));
    let ann = spec.annotations().as_ref().unwrap();
    assert_eq!(ann["org.opencontainers.image.stopSignal"], "SIGQUIT");
    assert_eq!(ann["org.corral.test"], "layered");

    // The image's own busybox sees the same tree.
    let out = Command::new("chroot")
        .arg(m)
        .args([
            "/bin/sh",
            "-c",
            "ls /opt/app; cat /usr/share/corral/hardlink; id -u app",
        ])
        .output()
        .expect("chroot");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "new.txt\nshared by a hard link\n1000\n"
    );

    // Writes land in the snapshot's upper directory, never in a shared layer.
    fs::write(m.join("opt/app/new.txt"), b"changed").unwrap();
    fs::remove_file(m.join("bin/busybox")).unwrap();
    assert_eq!(
        fs::read(layers[1].join("opt/app/new.txt")).unwrap(),
        b"new content\n"
    );
    assert!(layers[0].join("bin/busybox").is_file());
    assert_eq!(
        fs::read(snap.snap.dir.join("upper/opt/app/new.txt")).unwrap(),
        b"changed"
    );
}

#[test]
fn snapshots_share_layers_and_removal_keeps_them() {
    need_root!();
    let env = Env::new();
    let img = env.import("layered");
    let layers = unpack_layers(&env.store, &img, &Limits::default()).unwrap();
    let inode = |p: &PathBuf| fs::metadata(p).unwrap().ino();
    let before: Vec<u64> = layers.iter().map(inode).collect();
    let again = unpack_layers(&env.store, &img, &Limits::default()).unwrap();
    assert_eq!(again, layers);
    assert_eq!(
        again.iter().map(inode).collect::<Vec<_>>(),
        before,
        "unpacked once"
    );
    assert_eq!(env.layer_dirs().len(), 3);
    assert!(env.tmp_entries().iter().all(|n| !n.starts_with("unpack-")));

    let a = snapshot(&env.store, "a", &img, &layers, false).unwrap();
    let b = snapshot(&env.store, "b", &img, &layers, false).unwrap();
    let chains = image_chain_ids(&env.store, &img).unwrap();
    assert_eq!(a.snap.chain_ids, chains);
    assert_eq!(Snapshot::open(&env.store, "b").unwrap().chain_ids, chains);
    fs::write(a.merged().join("etc/only-a"), b"a").unwrap();
    assert!(
        !b.merged().join("etc/only-a").exists(),
        "each has its own upper"
    );
    let err = Snapshot::create(&env.store, "a", &img, &layers, false).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");

    let a_dir = a.snap.dir.clone();
    drop(a);
    assert!(!a_dir.exists(), "the snapshot's own directory is gone");
    assert_eq!(env.layer_dirs().len(), 3, "layers stay");
    assert!(layers.iter().all(|l| l.is_dir()));
    assert!(layers[0].join("bin/busybox").is_file());
    assert!(b.snap.is_mounted());
    assert_eq!(
        fs::read(b.merged().join("opt/app/new.txt")).unwrap(),
        b"new content\n"
    );
    Snapshot::remove(&env.store, "a").expect("removing a missing snapshot is fine");
}

#[test]
fn readonly_snapshots_refuse_writes() {
    need_root!();
    let env = Env::new();
    for name in ["busybox", "layered"] {
        let img = env.import(name);
        let layers = unpack_layers(&env.store, &img, &Limits::default()).unwrap();
        let ro = snapshot(&env.store, &format!("ro-{name}"), &img, &layers, true).unwrap();
        assert!(ro.merged().join("bin/busybox").is_file(), "{name}");
        let err = fs::write(ro.merged().join("new"), b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{name}: {err}");
        assert!(!ro.snap.dir.join("upper").exists());
    }
}

#[test]
fn many_layers_mount_through_short_links() {
    need_root!();
    // A deep store root makes the absolute lowerdir list longer than a page.
    let env = Env::new();
    let deep = env.dir.path().join("d".repeat(200)).join("e".repeat(200));
    let store = Store::open(&deep).unwrap();
    let layers: Vec<Layer> = (0..40)
        .map(|i| {
            Layer::plain(
                LayerTar::new()
                    .file(&format!("l{i}"), b"x")
                    .file("top", format!("{i}").as_bytes())
                    .finish(),
            )
        })
        .collect();
    let img = add_image(&store, "localhost/many:1", &layers);
    let diffs = unpack_layers(&store, &img, &Limits::default()).unwrap();
    let total: usize = diffs.iter().map(|d| d.as_os_str().len() + 1).sum();
    assert!(
        total > 4096,
        "the test needs a long option string ({total})"
    );
    let cwd = std::env::current_dir().unwrap();
    let snap = snapshot(&store, "many", &img, &diffs, false).unwrap();
    assert_eq!(
        fs::read(snap.merged().join("top")).unwrap(),
        b"39",
        "highest layer wins"
    );
    assert!(snap.merged().join("l0").exists() && snap.merged().join("l39").exists());
    assert!(snap.snap.dir.join("l").is_dir());
    assert_eq!(
        std::env::current_dir().unwrap(),
        cwd,
        "the process cwd is untouched"
    );
}

/// A sentinel path outside every store: must not exist after a hostile unpack.
fn sentinel(tag: &str) -> PathBuf {
    PathBuf::from(format!("/tmp/corral-sentinel-{}-{tag}", std::process::id()))
}

fn up_to_root(rel: &str) -> String {
    format!("{}{}", "../".repeat(12), rel.trim_start_matches('/'))
}

/// Unpacks an image of the single `tar` layer: must fail naming `entry`, with no
/// layer directory and no unpack directory left.
fn assert_rejected(env: &Env, layer: Layer, entry: &str, why: &str, limits: &Limits) {
    let img = add_image(
        &env.store,
        &format!("localhost/hostile:{}", env.layer_dirs().len()),
        &[layer],
    );
    let err = unpack_layers(&env.store, &img, limits).expect_err("hostile layer accepted");
    let msg = err.to_string();
    match &err {
        Error::Layer { entry: e, .. } => assert_eq!(e, entry, "{msg}"),
        other => panic!("expected a layer entry error, got {other:?}"),
    }
    assert!(msg.contains(why), "{msg}");
    assert!(
        msg.contains(&img.layers[0].digest.to_string()),
        "names the layer: {msg}"
    );
    assert!(env.layer_dirs().is_empty(), "left {:?}", env.layer_dirs());
    assert!(env.tmp_entries().is_empty(), "left {:?}", env.tmp_entries());
}

#[test]
fn hostile_layers_are_rejected_and_write_nothing_outside() {
    need_root!();
    let env = Env::new();
    let limits = Limits::default();

    let dotdot = sentinel("dotdot");
    let name = up_to_root(dotdot.to_str().unwrap());
    let tar = LayerTar::new().file(&name, b"x").finish();
    assert_rejected(&env, Layer::plain(tar), &name, "'..'", &limits);
    assert!(!dotdot.exists());

    let abs = sentinel("abs");
    let abs_name = abs.to_str().unwrap();
    let tar = LayerTar::new().file(abs_name, b"x").finish();
    assert_rejected(&env, Layer::plain(tar), abs_name, "absolute", &limits);
    assert!(!abs.exists());

    // A symlink out of the layer, then a write through it.
    let outside = tempfile::tempdir().unwrap();
    let tar = LayerTar::new()
        .symlink("evil", outside.path().to_str().unwrap())
        .file("evil/owned", b"x")
        .finish();
    assert_rejected(&env, Layer::gzip(&tar), "evil/owned", "symlink", &limits);
    assert!(!outside.path().join("owned").exists());

    // A symlink to `..` (a chain of them reaches /), then a write through it.
    let up = sentinel("up");
    let through = format!("up/{}", up.to_str().unwrap().trim_start_matches('/'));
    let tar = LayerTar::new()
        .symlink("up", &"../".repeat(12))
        .file(&through, b"x")
        .finish();
    assert_rejected(
        &env,
        Layer::plain(tar),
        &through,
        "parent up is a symlink",
        &limits,
    );
    assert!(!up.exists());

    // Hard links to a file outside, absolute and relative, then a write to them.
    let victim = outside.path().join("victim");
    fs::write(&victim, b"original").unwrap();
    let rel = up_to_root(victim.to_str().unwrap());
    for target in [victim.to_str().unwrap(), rel.as_str()] {
        let tar = LayerTar::new()
            .hardlink("pw", target)
            .file("pw", b"owned")
            .finish();
        let why = if target.starts_with('/') {
            "absolute"
        } else {
            "'..'"
        };
        assert_rejected(&env, Layer::plain(tar), "pw", why, &limits);
        assert_eq!(fs::read(&victim).unwrap(), b"original");
        assert_eq!(fs::metadata(&victim).unwrap().nlink(), 1);
    }
    // ...and through a symlink inside the layer.
    let tar = LayerTar::new()
        .symlink("o", outside.path().to_str().unwrap())
        .hardlink("pw", "o/victim")
        .finish();
    assert_rejected(
        &env,
        Layer::plain(tar),
        "pw",
        "parent o is a symlink",
        &limits,
    );
    assert_eq!(fs::metadata(&victim).unwrap().nlink(), 1);

    // A size bomb: 64 MiB of zeros is a small gzip blob.
    let bomb = LayerTar::new().file("zeros", &vec![0u8; 64 << 20]).finish();
    let small = Limits {
        max_bytes: 16 << 20,
        ..Limits::default()
    };
    assert_rejected(
        &env,
        Layer::gzip(&bomb),
        "zeros",
        "Limits.max_bytes",
        &small,
    );

    let mut many = LayerTar::new();
    for i in 0..150 {
        many = many.file(&format!("f{i}"), b"");
    }
    let few = Limits {
        max_entries: 100,
        ..Limits::default()
    };
    assert_rejected(
        &env,
        Layer::plain(many.finish()),
        "f100",
        "Limits.max_entries",
        &few,
    );

    for p in [dotdot, abs, up] {
        assert!(fs::symlink_metadata(&p).is_err(), "{} exists", p.display());
    }
}

#[test]
fn device_nodes_stay_device_nodes_inside_the_layer() {
    need_root!();
    let env = Env::new();
    let tar = LayerTar::new()
        .dir("dev")
        .char_device("dev/mem-like", 1, 1)
        .file("hello", b"hi")
        .finish();
    let img = add_image(&env.store, "localhost/dev:1", &[Layer::plain(tar)]);
    let layers = unpack_layers(&env.store, &img, &Limits::default()).unwrap();
    let node = fs::symlink_metadata(layers[0].join("dev/mem-like")).unwrap();
    assert!(node.file_type().is_char_device());
    assert_eq!(node.rdev(), libc::makedev(1, 1));
    let snap = snapshot(&env.store, "dev", &img, &layers, false).unwrap();
    let err = fs::File::open(snap.merged().join("dev/mem-like")).unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(libc::EACCES),
        "the rootfs is nodev: {err}"
    );
    assert_eq!(fs::read(snap.merged().join("hello")).unwrap(), b"hi");
}

#[test]
fn prune_keeps_what_images_and_snapshots_use() {
    need_root!();
    let env = Env::new();
    let busybox = env.import("busybox");
    let layered = env.import("layered");
    let bb_layers = unpack_layers(&env.store, &busybox, &Limits::default()).unwrap();
    let layers = unpack_layers(&env.store, &layered, &Limits::default()).unwrap();
    let stray = env
        .store
        .put_blob("stray", b"nobody uses this", None)
        .unwrap();
    assert_eq!(env.layer_dirs().len(), 4);

    let report = prune(&env.store).unwrap();
    assert_eq!(report.blobs, vec![stray.clone()]);
    assert!(report.layers.is_empty());
    assert_eq!(report.bytes, 16);

    let snap = snapshot(&env.store, "keep", &layered, &layers, false).unwrap();
    let err = remove_image(&env.store, &layered.config.hex()[..12], &|i| {
        i.config == layered.config
    })
    .unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
    let removed = remove_image(&env.store, &layered.names[0], &|_| false).unwrap();
    assert_eq!(
        removed.last().unwrap(),
        &format!("Deleted: {}", layered.config)
    );

    let report = prune(&env.store).unwrap();
    let mut want: Vec<_> = layered.blobs().into_iter().cloned().collect();
    want.sort();
    assert_eq!(report.blobs, want, "the image's blobs go");
    assert!(report.layers.is_empty(), "the snapshot keeps its layers");
    assert_eq!(env.layer_dirs().len(), 4);
    assert_eq!(
        fs::read(snap.merged().join("opt/app/new.txt")).unwrap(),
        b"new content\n"
    );

    drop(snap);
    let report = prune(&env.store).unwrap();
    assert_eq!(report.layers.len(), 3, "{:?}", report.layers);
    assert!(
        report.bytes > 1_000_000,
        "busybox in the base layer: {}",
        report.bytes
    );
    assert!(report.blobs.is_empty());
    let bb_chain = image_chain_ids(&env.store, &busybox).unwrap()[0].clone();
    assert_eq!(env.layer_dirs(), [bb_chain.hex()]);
    assert_eq!(bb_layers[0], layer_dir(&env.store, &bb_chain).join("diff"));
    assert!(
        bb_layers[0].join("bin/busybox").is_file(),
        "busybox's layer stays"
    );
    assert!(env
        .store
        .has_blob(&busybox.layers[0].digest, busybox.layers[0].size));
    assert!(env.tmp_entries().iter().all(|n| !n.starts_with("gc-")));
    assert_eq!(env.store.images().unwrap(), vec![busybox]);
}
