//! cgroup v2, checked in a QEMU guest booted with `cgroup_no_v1=all` (this host
//! is v1 hybrid with no usable cgroup2 controllers).
//!
//! `scripts/build-v2-guest` packs the kernel, busybox, the runtime binary and the
//! runtime library's unit-test binary into an initramfs; `scripts/run-v2-guest`
//! boots it under TCG and relays the serial console. The guest prints one
//! `PASS name` / `FAIL name: why` line per check and a final
//! `CORRAL-V2-DONE pass=N fail=M` line, which this test parses.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use corral_tests::host::which;
use corral_tests::skip;

/// Checks the guest must report as passed for the runtime under test.
const RUNTIME_CHECKS: &[&str] = &[
    "memory.max",
    "oom-kill",
    "delete-after-oom",
    "pids.max",
    "fork-bomb-capped",
    "delete-after-fork-bomb",
    "cpu.max",
    "cpu.weight",
    "unified-memory.high",
    "pause-freezes",
    "resume-thaws",
    "delete-removes-cgroup",
    "device-rules",
];

/// `cgroups::` unit tests that touch real cgroups (so they mean something on v2).
const UNIT_CHECKS: &[&str] = &[
    "cgroups::tests::create_sets_limits_freezes_updates_and_destroys",
    "cgroups::tests::failed_create_names_the_file_and_removes_what_it_made",
    "cgroups::tests::memory_limit_gets_a_process_oom_killed",
    "cgroups::tests::kill_all_reaches_every_process_and_subcgroup",
    "cgroups::tests::blkio_weight_uses_the_file_the_kernel_has",
    "cgroups::tests::device_filter_program_enforces_rules",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Why the guest cannot be built or booted here, if it cannot.
fn missing_prerequisite() -> Option<String> {
    if which("qemu-system-x86_64").is_none() {
        return Some(
            "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)".into(),
        );
    }
    let kernel = std::env::var_os("CORRAL_V2_KERNEL").map(PathBuf::from);
    let has_kernel = match kernel {
        Some(k) => k.is_file(),
        None => std::fs::read_dir("/boot").is_ok_and(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-"))
        }),
    };
    if !has_kernel {
        return Some(
            "no /boot/vmlinuz-* (apt-get install linux-image-amd64) and no CORRAL_V2_KERNEL".into(),
        );
    }
    for tool in ["busybox", "cpio", "gzip"] {
        if which(tool).is_none() {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

/// The runtime binary under test, as the other whole-binary tests choose it.
fn runtime_under_test() -> PathBuf {
    match corral_tests::runtime::runtime_binary() {
        Ok(p) => p,
        Err(e) => panic!("runtime binary: {e}"),
    }
}

/// The guest's verdicts: name -> passed, in order of appearance.
struct Report {
    passed: BTreeSet<String>,
    failed: Vec<String>,
    done: Option<String>,
}

fn parse(serial: &str) -> Report {
    let mut r = Report {
        passed: BTreeSet::new(),
        failed: Vec::new(),
        done: None,
    };
    for line in serial.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(name) = line.strip_prefix("PASS ") {
            r.passed.insert(name.to_string());
        } else if let Some(f) = line.strip_prefix("FAIL ") {
            r.failed.push(f.to_string());
        } else if line.starts_with("CORRAL-V2-DONE ") {
            r.done = Some(line.to_string());
        }
    }
    r
}

fn run_script(cmd: &mut Command, what: &str) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn cgroup_v2_limits_in_a_qemu_guest() {
    if let Some(why) = missing_prerequisite() {
        skip!("{why}");
    }
    let runtime = runtime_under_test();
    let name = runtime
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .expect("runtime binary has a file name");
    let scripts = repo_root().join("scripts");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("v2-guest");

    let mut build = Command::new(scripts.join("build-v2-guest"));
    build.arg(&out).arg("--runtime").arg(&runtime);
    let (ok, log) = run_script(&mut build, "build-v2-guest");
    assert!(ok, "build-v2-guest failed:\n{log}");
    let has_unit = log.contains("unit-tests=");
    if !has_unit {
        eprintln!(
            "note: no corral_runtime unit-test binary with cgroups:: tests was found, so only \
             the runtime binary is checked (cargo test -p corral-runtime --no-run builds it)"
        );
    }

    let started = Instant::now();
    let mut run = Command::new(scripts.join("run-v2-guest"));
    run.arg(&out).arg("--timeout").arg("900");
    let (_, serial) = run_script(&mut run, "run-v2-guest");
    eprintln!(
        "guest ran {:.1} s; serial log: {}",
        started.elapsed().as_secs_f64(),
        out.join("serial.log").display()
    );

    let report = parse(&serial);
    assert!(
        report.done.is_some(),
        "the guest never finished (no CORRAL-V2-DONE line):\n{serial}"
    );
    assert!(
        report.failed.is_empty(),
        "failed in the v2 guest:\n  {}\n\nserial log:\n{serial}",
        report.failed.join("\n  ")
    );
    let mut missing: Vec<String> = RUNTIME_CHECKS
        .iter()
        .map(|c| format!("{name}:{c}"))
        .collect();
    if has_unit {
        missing.extend(UNIT_CHECKS.iter().map(|c| format!("unit:{c}")));
    }
    missing.retain(|c| !report.passed.contains(c));
    assert!(
        missing.is_empty(),
        "checks that did not report PASS: {missing:?}\n\nserial log:\n{serial}"
    );
}

#[test]
fn serial_report_parsing() {
    let r = parse(
        "[ 1.0] boot noise\nPASS a:x\r\nFAIL a:y: got '1', want '2'\nSKIP z: n/a\nCORRAL-V2-DONE pass=1 fail=1\n",
    );
    assert!(r.passed.contains("a:x"));
    assert_eq!(r.failed, vec!["a:y: got '1', want '2'".to_string()]);
    assert_eq!(r.done.as_deref(), Some("CORRAL-V2-DONE pass=1 fail=1"));
    assert!(parse("PASS only\n").done.is_none());
}
