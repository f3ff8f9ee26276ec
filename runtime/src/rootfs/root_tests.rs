//! Root-only tests: build a busybox rootfs, then run prepare/pivot/finalize for real in a
//! child process started through `unshare` (fresh mount, pid, ipc and maybe network and
//! user namespaces), re-executing this test binary so no fork happens in the threaded
//! test process. The child checks the container's view from inside and panics on the
//! first mismatch; the parent checks the host was not touched.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{finalize, move_root, pivot, prepare, validate, RootfsContext};

const BUNDLE_ENV: &str = "CORRAL_ROOTFS_TEST_BUNDLE";
const MODE_ENV: &str = "CORRAL_ROOTFS_TEST_MODE";
const CGROUPS_ENV: &str = "CORRAL_ROOTFS_TEST_CGROUPS";

/// Why the root tests cannot run here, if they cannot.
fn skip_reason() -> Option<&'static str> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root");
    }
    if !Path::new("/usr/bin/busybox").exists() {
        return Some("/usr/bin/busybox is missing (install busybox-static)");
    }
    if Command::new("unshare").arg("--version").output().is_err() {
        return Some("unshare(1) is missing");
    }
    None
}

/// cgroup v1 directories for the test, removed on drop.
struct TestCgroups(Vec<(String, PathBuf)>);

impl TestCgroups {
    fn create(tag: &str) -> Self {
        let mut made = Vec::new();
        // On a hybrid host the cgroup2 part ("" controller) must not show up.
        for (controller, dir) in [("memory", "memory"), ("cpu", "cpu"), ("", "unified")] {
            let hierarchy = Path::new("/sys/fs/cgroup").join(dir);
            let dir = hierarchy.join(format!("corral-test-rootfs-{}-{tag}", std::process::id()));
            if !super::sys::cgroup2_unified() && hierarchy.is_dir() && fs::create_dir(&dir).is_ok()
            {
                made.push((controller.to_string(), dir));
            }
        }
        TestCgroups(made)
    }
}

impl Drop for TestCgroups {
    fn drop(&mut self) {
        for (_, dir) in &self.0 {
            let _ = fs::remove_dir(dir);
        }
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    escape_probe: PathBuf,
    cgroups: TestCgroups,
}

impl Fixture {
    fn bundle(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }
    fn rootfs(&self) -> PathBuf {
        self.bundle().join("rootfs")
    }
}

fn build_rootfs(rootfs: &Path, escape_name: &str) {
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    fs::copy("/usr/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "cat", "ls", "echo", "touch"] {
        symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    for d in ["etc", "proc", "sys", "dev", "tmp"] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").unwrap();
    fs::create_dir_all(rootfs.join("seed/sub")).unwrap();
    fs::write(rootfs.join("seed/sub/file"), "from the image").unwrap();
    fs::set_permissions(rootfs.join("seed"), fs::Permissions::from_mode(0o750)).unwrap();
    // A hostile image: an absolute symlink climbing out of the rootfs.
    symlink(
        format!("/../../../../../../tmp/{escape_name}"),
        rootfs.join("evil"),
    )
    .unwrap();
}

fn fixture(tag: &str) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let escape_name = format!("corral-rootfs-escape-{}-{tag}", std::process::id());
    build_rootfs(&dir.path().join("bundle/rootfs"), &escape_name);
    let host = dir.path().join("hostsrc");
    fs::create_dir_all(&host).unwrap();
    fs::write(host.join("file"), "host data").unwrap();
    fs::write(dir.path().join("bundle/hostfile"), "relative source").unwrap();
    Fixture {
        dir,
        escape_probe: Path::new("/tmp").join(escape_name),
        cgroups: TestCgroups::create(tag),
    }
}

fn config(f: &Fixture, userns: bool) -> serde_json::Value {
    let host = f.dir.path().join("hostsrc");
    let mut namespaces = vec![
        serde_json::json!({"type": "mount"}),
        serde_json::json!({"type": "pid"}),
        serde_json::json!({"type": "ipc"}),
    ];
    let mut sysctl = serde_json::json!({"kernel.shmmni": "1000"});
    if !userns {
        namespaces.push(serde_json::json!({"type": "network"}));
        sysctl["net.ipv4.ip_forward"] = "1".into();
    }
    serde_json::json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs", "readonly": true},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k", "ro"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["rprivate", "nosuid", "noexec", "nodev", "relatime", "ro"]},
            {"destination": "/mnt/ro", "type": "bind", "source": host, "options": ["rbind", "ro", "nosuid", "rprivate"]},
            {"destination": "/seed", "type": "tmpfs", "source": "tmpfs", "options": ["rw", "nosuid", "nodev", "tmpcopyup"]},
            {"destination": "/evil/x", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/etc/hostfile", "type": "bind", "source": "hostfile", "options": ["bind"]}
        ],
        "linux": {
            "namespaces": namespaces,
            "sysctl": sysctl,
            "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o640, "uid": 0, "gid": 0}],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/acpi", "/sys/firmware", "/no/such/path"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger", "/no/such/path"]
        }
    })
}

/// Run the in-namespace half of `test` through `unshare <flags>`; returns its output.
fn run_child(f: &Fixture, mode: &str, unshare_flags: &[&str]) -> (bool, String) {
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new("unshare")
        .args(unshare_flags)
        .args(["--propagation", "private", "--"])
        .arg(exe)
        .args([
            "--exact",
            "rootfs::root_tests::child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(BUNDLE_ENV, f.bundle())
        .env(MODE_ENV, mode)
        .env(CGROUPS_ENV, cgroups_env(&f.cgroups.0))
        .output()
        .expect("run unshare");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn write_config(f: &Fixture, cfg: &serde_json::Value) {
    fs::write(
        f.bundle().join("config.json"),
        serde_json::to_vec_pretty(cfg).unwrap(),
    )
    .unwrap();
}

fn check_host_untouched(f: &Fixture) {
    assert!(
        !f.escape_probe.exists(),
        "a mount escaped the rootfs to {}",
        f.escape_probe.display()
    );
    let inside = f
        .rootfs()
        .join("tmp")
        .join(f.escape_probe.file_name().unwrap())
        .join("x");
    assert!(
        inside.is_dir(),
        "the /evil/x mount point should be {}",
        inside.display()
    );
}

#[test]
fn prepare_pivot_finalize_as_root() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping rootfs root test: {why}");
        return;
    }
    let f = fixture("plain");
    write_config(&f, &config(&f, false));
    let (ok, out) = run_child(&f, "full", &["-m", "-p", "-f", "-i", "-n"]);
    assert!(ok, "child failed:\n{out}");
    assert!(
        out.contains("CHILD-CHECKS-PASSED"),
        "child did not run its checks:\n{out}"
    );
    check_host_untouched(&f);
}

#[test]
fn prepare_move_root_finalize_as_root() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping rootfs --no-pivot test: {why}");
        return;
    }
    let f = fixture("nopivot");
    write_config(&f, &config(&f, false));
    let (ok, out) = run_child(&f, "nopivot", &["-m", "-p", "-f", "-i", "-n"]);
    assert!(ok, "child failed:\n{out}");
    assert!(
        out.contains("CHILD-CHECKS-PASSED"),
        "child did not run its checks:\n{out}"
    );
    check_host_untouched(&f);
}

#[test]
fn prepare_pivot_finalize_in_user_namespace() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping rootfs user-namespace test: {why}");
        return;
    }
    let f = fixture("userns");
    write_config(&f, &config(&f, true));
    // No new network namespace: sysfs cannot be mounted and falls back to a bind of /sys.
    let (ok, out) = run_child(&f, "userns", &["-U", "-r", "-m", "-p", "-f", "-i"]);
    assert!(ok, "child failed:\n{out}");
    assert!(
        out.contains("CHILD-CHECKS-PASSED"),
        "child did not run its checks:\n{out}"
    );
    check_host_untouched(&f);
}

#[test]
fn errors_name_step_path_and_errno() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping rootfs error test: {why}");
        return;
    }
    let f = fixture("errors");
    let cfg = serde_json::json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs"},
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}]
    });
    write_config(&f, &cfg);
    // A user namespace without its own pid namespace may not mount procfs.
    let (ok, out) = run_child(&f, "expect-error", &["-U", "-r", "-m"]);
    assert!(ok, "child failed:\n{out}");
    let want = format!(
        "mount proc on {}/proc (mounts[0]): EPERM",
        f.rootfs().canonicalize().unwrap().display()
    );
    assert!(out.contains(&want), "expected {want:?} in:\n{out}");
}

// ---- the half that runs inside the namespaces ----

fn load_spec(bundle: &Path) -> oci_spec::runtime::Spec {
    let text = fs::read_to_string(bundle.join("config.json")).expect("read config.json");
    serde_json::from_str(&text).expect("parse config.json")
}

#[test]
#[ignore = "runs only as the child of the root tests above"]
fn child() {
    let (Ok(bundle), Ok(mode)) = (std::env::var(BUNDLE_ENV), std::env::var(MODE_ENV)) else {
        return;
    };
    let bundle = PathBuf::from(bundle);
    let spec = load_spec(&bundle);
    validate(&spec).expect("validate");
    let ctx = RootfsContext {
        rootfs: bundle.join("rootfs"),
        bundle: bundle.clone(),
        in_user_ns: mode == "userns" || mode == "expect-error",
        cgroup_ns: false,
        cgroup_paths: cgroup_paths_from_env(),
    };
    if mode == "expect-error" {
        let err = prepare(&spec, &ctx).expect_err("prepare should fail");
        println!("ERROR: {err}");
        return;
    }
    prepare(&spec, &ctx).expect("prepare");
    if mode == "nopivot" {
        move_root(&ctx.rootfs).expect("move_root");
    } else {
        pivot(&ctx.rootfs).expect("pivot");
    }
    finalize(&spec).expect("finalize");
    check_inside(mode != "userns");
    println!("CHILD-CHECKS-PASSED");
}

/// "controller=path;..." for the child.
fn cgroups_env(paths: &[(String, PathBuf)]) -> String {
    let parts: Vec<String> = paths
        .iter()
        .map(|(c, p)| format!("{c}={}", p.display()))
        .collect();
    parts.join(";")
}

fn cgroup_paths_from_env() -> Vec<(String, PathBuf)> {
    std::env::var(CGROUPS_ENV)
        .unwrap_or_default()
        .split(';')
        .filter_map(|part| part.split_once('='))
        .map(|(c, p)| (c.to_string(), PathBuf::from(p)))
        .collect()
}

fn errno_of(r: std::io::Result<()>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

fn mount_points() -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .collect()
}

fn check_inside(full: bool) {
    let mounts = mount_points();
    for m in [
        "/",
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/mqueue",
        "/sys",
        "/mnt/ro",
        "/seed",
        "/etc/hostfile",
    ] {
        assert!(mounts.iter().any(|p| p == m), "{m} not mounted: {mounts:?}");
    }
    // /evil -> /../../tmp/<probe>: the mount landed on the rootfs's own /tmp/<probe>/x.
    let evil = fs::canonicalize("/evil").expect("resolve /evil");
    assert!(
        evil.to_string_lossy()
            .starts_with("/tmp/corral-rootfs-escape-"),
        "{evil:?}"
    );
    assert!(
        mounts.iter().any(|p| Path::new(p) == evil.join("x")),
        "{evil:?}/x not mounted: {mounts:?}"
    );
    check_devices(full);
    check_read_only_parts();
    check_masks();
    // tmpcopyup: the image's files are in the tmpfs, with the directory's mode.
    assert_eq!(
        fs::read_to_string("/seed/sub/file").unwrap(),
        "from the image"
    );
    assert_eq!(fs::metadata("/seed").unwrap().mode() & 0o7777, 0o750);
    fs::write("/seed/new", "tmpfs is writable").expect("write into the tmpcopyup tmpfs");
    assert_eq!(
        fs::read_to_string("/etc/hostfile").unwrap(),
        "relative source"
    );
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/shmmni")
            .unwrap()
            .trim(),
        "1000"
    );
    if full {
        assert_eq!(
            fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
                .unwrap()
                .trim(),
            "1"
        );
    }
    check_cgroups(&cgroup_paths_from_env());
    let out = Command::new("/bin/sh")
        .args(["-c", "echo hello from busybox; ls /dev/pts"])
        .output()
        .expect("run busybox sh");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("hello from busybox"),
        "{out:?}"
    );
}

fn check_devices(full: bool) {
    let null = fs::metadata("/dev/null").unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(
        (
            nix::sys::stat::major(null.rdev()),
            nix::sys::stat::minor(null.rdev())
        ),
        (1, 3)
    );
    let fuse = fs::metadata("/dev/fuse").unwrap();
    assert_eq!(
        (
            nix::sys::stat::major(fuse.rdev()),
            nix::sys::stat::minor(fuse.rdev())
        ),
        (10, 229)
    );
    if full {
        // mknod'ed with the configured mode (umask 0); in a user namespace it is the host's.
        assert_eq!(null.mode() & 0o777, 0o666);
        assert_eq!(fuse.mode() & 0o777, 0o640);
    }
    assert_eq!(fs::read_link("/dev/ptmx").unwrap(), Path::new("pts/ptmx"));
    assert_eq!(
        fs::read_link("/dev/fd").unwrap(),
        Path::new("/proc/self/fd")
    );
    assert_eq!(
        fs::read_link("/dev/stdin").unwrap(),
        Path::new("/proc/self/fd/0")
    );
    assert!(fs::metadata("/dev/pts/ptmx").is_ok());
    fs::write("/dev/null", "discarded").expect("write /dev/null");
    // /dev was asked read-only: made so in finalize, after the nodes were created.
    assert_eq!(errno_of(fs::write("/dev/newfile", "x")), Some(libc::EROFS));
}

fn check_read_only_parts() {
    assert_eq!(fs::read_to_string("/mnt/ro/file").unwrap(), "host data");
    assert_eq!(errno_of(fs::write("/mnt/ro/new", "x")), Some(libc::EROFS));
    // root.readonly
    assert_eq!(errno_of(fs::write("/etc/new", "x")), Some(libc::EROFS));
    // readonlyPaths
    assert_eq!(
        errno_of(fs::write("/proc/sys/kernel/shmmni", "2000")),
        Some(libc::EROFS)
    );
    assert_eq!(
        errno_of(fs::write("/sys/kernel/uevent_helper", "")),
        Some(libc::EROFS)
    );
}

fn check_masks() {
    // Files become /dev/null, directories an empty read-only tmpfs; whichever this kernel has.
    for file in ["/proc/kcore", "/proc/keys"] {
        if let Ok(md) = fs::metadata(file) {
            assert!(
                md.file_type().is_char_device(),
                "{file} should be /dev/null"
            );
            assert_eq!(fs::read(file).unwrap().len(), 0);
        }
    }
    for dir in ["/proc/acpi", "/sys/firmware"] {
        if let Ok(entries) = fs::read_dir(dir) {
            assert_eq!(entries.count(), 0, "{dir} should be an empty tmpfs");
            assert_eq!(
                errno_of(fs::create_dir(Path::new(dir).join("x"))),
                Some(libc::EROFS)
            );
        }
    }
    assert!(
        fs::metadata("/proc/keys").is_ok() || fs::metadata("/sys/firmware").is_ok(),
        "nothing was masked"
    );
    assert!(matches!(fs::metadata("/no/such/path"), Err(e) if e.kind() == ErrorKind::NotFound));
}

fn check_cgroups(paths: &[(String, PathBuf)]) {
    // Each v1 hierarchy appears under its host directory name, read-only.
    assert!(
        !Path::new("/sys/fs/cgroup/unified").exists(),
        "hybrid cgroup2 part is shown"
    );
    for (controller, _) in paths.iter().filter(|(c, _)| !c.is_empty()) {
        let dir = Path::new("/sys/fs/cgroup").join(controller);
        assert!(
            dir.join("cgroup.procs").exists(),
            "{dir:?} is not a cgroup directory"
        );
        assert_eq!(
            errno_of(fs::create_dir(dir.join("child"))),
            Some(libc::EROFS)
        );
    }
    assert!(
        paths.is_empty() || !Path::new("/sys/fs/cgroup/pids").exists(),
        "only the container's hierarchies"
    );
    assert_eq!(
        errno_of(fs::create_dir("/sys/fs/cgroup/new")),
        Some(libc::EROFS)
    );
}
