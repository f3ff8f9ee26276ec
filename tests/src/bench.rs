//! Harness for `corral bench` tests: the corral binary, the busybox OCI
//! layout of `scripts/build-test-images` and the VM guest of
//! `scripts/build-vm-guest`, each built once per test binary into a
//! temporary directory removed at exit, and a runner that parses the JSON.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use crate::corral::workspace_binary;
use crate::runtime::{run_command, Out};

/// A bench with tiny N still boots VMs under emulation: a few seconds each.
pub const BENCH_TIMEOUT: Duration = Duration::from_secs(240);

fn scratch() -> PathBuf {
    std::env::temp_dir().join(format!("corral-bench-tests-{}", std::process::id()))
}

extern "C" fn remove_scratch() {
    let _ = std::fs::remove_dir_all(scratch());
}

fn scratch_dir() -> PathBuf {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = std::fs::create_dir_all(scratch());
        // SAFETY: registers a plain function without captured state; it only
        // removes a directory when the process exits.
        unsafe { libc::atexit(remove_scratch) };
    });
    scratch()
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(name)
}

fn build(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("run {what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// OUT/busybox from scripts/build-test-images.
pub fn image_layout() -> Result<PathBuf, String> {
    static L: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    L.get_or_init(|| {
        let out = scratch_dir().join("images");
        build(
            Command::new("python3")
                .arg(script("build-test-images"))
                .arg(&out),
            "scripts/build-test-images",
        )?;
        Ok(out.join("busybox"))
    })
    .clone()
}

/// The VM guest, or why it cannot be built or booted here (a reason to skip).
pub fn vm_guest() -> Result<PathBuf, String> {
    static G: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    G.get_or_init(|| {
        if crate::host::which("qemu-system-x86_64").is_none() {
            return Err("qemu-system-x86_64 is not installed".into());
        }
        let has_kernel = std::fs::read_dir("/boot").is_ok_and(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-"))
        });
        if !has_kernel && std::env::var_os("CORRAL_VM_KERNEL").is_none() {
            return Err("no /boot/vmlinuz-* (install linux-image-amd64)".into());
        }
        let out = scratch_dir().join("vm");
        build(
            Command::new("bash").arg(script("build-vm-guest")).arg(&out),
            "scripts/build-vm-guest",
        )?;
        Ok(out)
    })
    .clone()
}

/// A directory for one test's files (plots, fake runtimes).
pub fn test_dir(test: &str) -> PathBuf {
    let d = scratch_dir().join(test);
    let _ = std::fs::create_dir_all(&d);
    d
}

/// Write an executable shell script standing in for a broken peer.
pub fn fake_program(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n"))
        .unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
    p
}

/// `corral bench ARGS` with its output captured in `dir`.
pub fn bench(dir: &Path, tag: &str, args: &[&str]) -> Out {
    let bin = workspace_binary("corral").unwrap_or_else(|e| panic!("{e}"));
    let mut c = Command::new(bin);
    c.arg("bench").args(args);
    // The user's settings must not leak into the test.
    for k in [
        "CORRAL_BENCH_RUNTIME",
        "CORRAL_BENCH_RUNC",
        "CORRAL_BENCH_CRUN",
        "CORRAL_BENCH_PODMAN",
        "CORRAL_BENCH_QEMU",
        "CORRAL_BENCH_VM_GUEST",
        "CORRAL_BENCH_IMAGE",
    ] {
        c.env_remove(k);
    }
    run_command(c, dir, tag, BENCH_TIMEOUT)
}

/// The JSON report of a successful `--json` run.
#[track_caller]
pub fn report(out: &Out) -> Value {
    out.assert_ok();
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("bench --json printed no JSON ({e}):\n{out}"))
}

/// The entry of contender `name` in `mode` (None: any mode).
#[track_caller]
pub fn contender<'a>(r: &'a Value, name: &str, mode: Option<&str>) -> &'a Value {
    r["contenders"]
        .as_array()
        .and_then(|cs| {
            cs.iter()
                .find(|c| c["name"] == name && mode.is_none_or(|m| c["mode"] == m))
        })
        .unwrap_or_else(|| panic!("no contender {name} {mode:?} in {r:#}"))
}
