//! seccomp profiles and the real effect of capabilities, checked from inside.

use corral_tests::host::status_field;
use corral_tests::{runtime_for, Bundle};
use serde_json::{json, Value};

fn profile(rules: Value) -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": rules
    })
}

#[test]
fn seccomp_denies_mkdir_with_eperm() {
    let Some(rt) = runtime_for("sc-mkdir") else {
        return;
    };
    let mut b = Bundle::new();
    b.seccomp(profile(
        json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]),
    ));
    let out = rt.run_sh(&mut b, "mkdir /tmp/x 2>&1; echo mkdir=$?; touch /tmp/y && echo touch=ok; grep ^Seccomp: /proc/self/status");
    assert!(
        out.stdout.contains("Operation not permitted"),
        "mkdir was not denied with EPERM: {out}"
    );
    assert!(!out.stdout.contains("mkdir=0"), "{out}");
    assert!(
        out.stdout.contains("touch=ok"),
        "the profile denied more than mkdir: {out}"
    );
    assert_eq!(
        status_field(&out.stdout, "Seccomp").as_deref(),
        Some("2"),
        "no seccomp filter on the process: {out}"
    );
    assert!(!b.rootfs().join("tmp/x").exists());
}

#[test]
fn seccomp_errno_ret_is_honoured() {
    let Some(rt) = runtime_for("sc-errno") else {
        return;
    };
    let mut b = Bundle::new();
    b.seccomp(profile(
        json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]),
    ));
    let out = rt.run_sh(&mut b, "mkdir /tmp/x 2>&1; true");
    assert!(
        out.stdout.contains("Permission denied"),
        "errnoRet 13 (EACCES) not returned: {out}"
    );
}

#[test]
fn seccomp_kill_action() {
    let Some(rt) = runtime_for("sc-kill") else {
        return;
    };
    let mut b = Bundle::new();
    b.seccomp(profile(
        json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL"}]),
    ));
    let out = rt.run_sh(&mut b, "mkdir /tmp/x; echo status=$?");
    // Killed by SIGSYS (31): the shell reports 128+31.
    assert!(
        out.stdout.contains("status=159"),
        "mkdir was not killed by SIGSYS: {out}"
    );
}

#[test]
fn seccomp_argument_conditions() {
    let Some(rt) = runtime_for("sc-args") else {
        return;
    };
    let mut b = Bundle::new();
    b.seccomp(profile(json!([{
        "names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
        "args": [{"index": 1, "value": 10, "op": "SCMP_CMP_EQ"}]
    }])));
    let out = rt.run_sh(
        &mut b,
        "sleep 30 & p=$!; kill -USR1 $p 2>&1; echo usr1=$?; kill -0 $p; echo zero=$?; kill -KILL $p; echo kill=$?",
    );
    assert!(
        out.stdout.contains("usr1=1"),
        "kill(pid, SIGUSR1) should fail: {out}"
    );
    assert!(
        out.stdout.contains("zero=0") && out.stdout.contains("kill=0"),
        "other signals must pass: {out}"
    );
}

#[test]
fn no_seccomp_without_profile() {
    let Some(rt) = runtime_for("sc-none") else {
        return;
    };
    let mut b = Bundle::new();
    let out = rt.run_sh(
        &mut b,
        "grep ^Seccomp: /proc/self/status; mkdir /tmp/x && echo mkdir=ok",
    );
    out.assert_ok();
    assert_eq!(
        status_field(&out.stdout, "Seccomp").as_deref(),
        Some("0"),
        "{out}"
    );
    assert!(out.stdout.contains("mkdir=ok"), "{out}");
}

#[test]
fn capabilities_take_effect() {
    let Some(rt) = runtime_for("sc-capeffect") else {
        return;
    };
    let script = "mount -t tmpfs t /mnt 2>&1 && echo mount=ok; chown 1000 /tmp/f 2>&1 && echo chown=ok; true";
    let mut without = Bundle::new();
    without.write_rootfs_file("tmp/f", "x");
    let out = rt.run_sh(&mut without, script);
    assert!(
        !out.stdout.contains("mount=ok"),
        "mount worked without CAP_SYS_ADMIN: {out}"
    );
    assert!(
        !out.stdout.contains("chown=ok"),
        "chown worked without CAP_CHOWN: {out}"
    );
    let mut with = Bundle::new();
    with.write_rootfs_file("tmp/f", "x");
    with.caps_all(&["CAP_SYS_ADMIN", "CAP_CHOWN"]);
    let out = rt.run_sh(&mut with, script);
    assert!(
        out.stdout.contains("mount=ok"),
        "mount failed with CAP_SYS_ADMIN: {out}"
    );
    assert!(
        out.stdout.contains("chown=ok"),
        "chown failed with CAP_CHOWN: {out}"
    );
}

/// Run `busybox-suid cat /proc/self/status` (a setuid-root busybox copy) as uid
/// 1000 and return the saved set-user-ID the kernel gave it at exec (busybox
/// itself drops the effective uid, but the saved one shows what exec granted).
fn suid_euid(rt: &corral_tests::Runtime, nnp: bool) -> (Option<String>, corral_tests::Out) {
    let mut b = Bundle::new();
    let dst = b.rootfs().join("bin/busybox-suid");
    std::fs::copy(b.rootfs().join("bin/busybox"), &dst).expect("copy busybox");
    std::fs::set_permissions(&dst, std::os::unix::fs::PermissionsExt::from_mode(0o4755))
        .expect("chmod");
    b.user(1000, 1000).no_new_privileges(nnp);
    let out = rt.run_sh(
        &mut b,
        "/bin/busybox-suid cat /proc/self/status | grep ^Uid:",
    );
    let euid = status_field(&out.stdout, "Uid")
        .and_then(|u| u.split_whitespace().nth(2).map(String::from));
    (euid, out)
}

#[test]
fn no_new_privileges_blocks_setuid_gain() {
    let Some(rt) = runtime_for("sc-nnp-suid") else {
        return;
    };
    let (euid, out) = suid_euid(&rt, false);
    if euid.as_deref() != Some("0") {
        corral_tests::skip!(
            "setuid busybox does not get saved uid 0 here even without noNewPrivileges: {out}"
        );
    }
    let (euid, out) = suid_euid(&rt, true);
    assert_eq!(
        euid.as_deref(),
        Some("1000"),
        "setuid gained privileges under noNewPrivileges: {out}"
    );
}
