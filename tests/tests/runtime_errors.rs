//! Bad and hostile input: rejected with a message naming the field or file, a
//! non-zero exit, and nothing left behind (state, cgroup, process, host paths).
//! Message wording is only asserted on corral-runtime; other runtimes must still
//! fail cleanly.

use std::path::Path;

use corral_tests::{runtime_for, skip, Bundle, Kind, Runtime};
use serde_json::json;

/// Create must fail; on corral the error (stderr or log) must contain every needle.
#[track_caller]
fn expect_rejected(rt: &Runtime, b: &Bundle, needles: &[&str]) {
    let id = rt.id();
    let out = rt.create(&id, b);
    out.assert_fail();
    let msg = format!("{}\n{}", out.stderr, rt.log());
    if rt.is_corral() {
        for n in needles {
            assert!(
                msg.contains(n),
                "error message should contain {n:?}:\n{msg}"
            );
        }
        assert!(!msg.contains("panicked"), "runtime panicked:\n{msg}");
    } else {
        eprintln!(
            "note: {:?} message not checked: {}",
            rt.kind(),
            out.stderr.trim()
        );
    }
    let left = rt.leftovers(&id);
    assert!(left.is_empty(), "failed create left: {left:?}");
    let mounts = corral_tests::host::mounts_under(b.path());
    assert!(
        mounts.is_empty(),
        "failed create left mounts on the host: {mounts:?}"
    );
}

/// Skip (with the reason) on peers known to accept this input; corral must not.
macro_rules! strict_only {
    ($rt:expr, $kinds:expr, $why:expr) => {
        if $kinds.contains(&$rt.kind()) {
            skip!(
                "{:?} accepts this ({}); only checked on corral-runtime and stricter peers",
                $rt.kind(),
                $why
            );
        }
    };
}

#[test]
fn malformed_json() {
    let Some(rt) = runtime_for("er-json") else {
        return;
    };
    let mut b = Bundle::new();
    b.raw_config("{ \"ociVersion\": \"1.0.2\", \"process\": { \"args\": [\"sh\" ");
    expect_rejected(&rt, &b, &["config.json"]);
}

#[test]
fn missing_config_json() {
    let Some(rt) = runtime_for("er-noconfig") else {
        return;
    };
    let b = Bundle::new();
    let id = rt.id();
    let bp = b.path().to_string_lossy().into_owned();
    // No write: the bundle has a rootfs but no config.json.
    let out = rt.cmd_for(&id, &["create", "--bundle", &bp, &id]);
    out.assert_fail();
    if rt.is_corral() {
        let msg = format!("{}{}", out.stderr, rt.log());
        assert!(msg.contains("config.json"), "{msg}");
    }
    assert!(rt.leftovers(&id).is_empty());
}

#[test]
fn wrong_type_in_field() {
    let Some(rt) = runtime_for("er-type") else {
        return;
    };
    let mut b = Bundle::new();
    strict_only!(rt, [Kind::Crun], "crun 1.8 ignores a string uid");
    b.set("/process/user/uid", json!("zero"));
    expect_rejected(&rt, &b, &["uid"]);
}

#[test]
fn empty_process_args() {
    let Some(rt) = runtime_for("er-args") else {
        return;
    };
    let mut b = Bundle::new();
    b.args(&[]);
    expect_rejected(&rt, &b, &["process.args"]);
}

#[test]
fn unknown_namespace_type() {
    let Some(rt) = runtime_for("er-ns") else {
        return;
    };
    let mut b = Bundle::new();
    b.namespace("foo", None);
    expect_rejected(&rt, &b, &["namespace", "foo"]);
}

#[test]
fn missing_rootfs() {
    let Some(rt) = runtime_for("er-rootfs") else {
        return;
    };
    let b = Bundle::without_rootfs();
    expect_rejected(&rt, &b, &["rootfs"]);
}

#[test]
fn negative_memory_limit() {
    let Some(rt) = runtime_for("er-mem") else {
        return;
    };
    let mut b = Bundle::new();
    b.args(&["true"])
        .resource("memory", json!({"limit": -1000}));
    expect_rejected(&rt, &b, &["memory"]);
}

#[test]
fn relative_cwd() {
    let Some(rt) = runtime_for("er-cwd") else {
        return;
    };
    let mut b = Bundle::new();
    strict_only!(rt, [Kind::Crun], "crun 1.8 takes a relative cwd");
    b.cwd("tmp");
    expect_rejected(&rt, &b, &["cwd"]);
}

#[test]
fn unknown_capability_is_named() {
    // runc ignores capabilities it does not know (newer than itself) with a
    // warning, which engines rely on; refusing is also acceptable. Silence is not.
    let Some(rt) = runtime_for("er-cap") else {
        return;
    };
    let mut b = Bundle::new();
    b.caps_set("bounding", &["CAP_KILL", "CAP_NOT_A_THING"])
        .args(&["true"]);
    let id = rt.id();
    let out = rt.create(&id, &b);
    let msg = format!("{}{}", out.stderr, rt.log());
    if rt.kind() == Kind::Crun {
        eprintln!("note: crun ignores unknown capabilities silently; not checked");
        return;
    }
    assert!(
        msg.contains("CAP_NOT_A_THING"),
        "unknown capability neither refused nor warned about:\n{out}\nlog: {}",
        rt.log()
    );
    if !out.ok() {
        out.assert_fail();
        let left = rt.leftovers(&id);
        assert!(left.is_empty(), "{left:?}");
    }
}

#[test]
fn unknown_rlimit() {
    let Some(rt) = runtime_for("er-rlimit") else {
        return;
    };
    let mut b = Bundle::new();
    b.rlimit("RLIMIT_BOGUS", 1, 1);
    expect_rejected(&rt, &b, &["RLIMIT_BOGUS"]);
}

#[test]
fn mappings_without_user_namespace() {
    let Some(rt) = runtime_for("er-map") else {
        return;
    };
    let mut b = Bundle::new();
    strict_only!(
        rt,
        [Kind::Runc, Kind::Crun],
        "mappings are ignored without a user namespace"
    );
    b.uid_mapping(0, 100000, 65536)
        .gid_mapping(0, 100000, 65536);
    expect_rejected(&rt, &b, &["user"]);
}

#[test]
fn root_outside_bundle_via_relative_path() {
    let Some(rt) = runtime_for("er-rootrel") else {
        return;
    };
    if !rt.is_corral() {
        skip!("runc and crun accept a relative root that leaves the bundle; the issue asks corral to refuse it");
    }
    let mut b = Bundle::new();
    b.set("/root/path", json!("../../.."));
    expect_rejected(&rt, &b, &["root"]);
}

#[test]
fn mount_failure_inside_init_is_reported() {
    let Some(rt) = runtime_for("er-mountfail") else {
        return;
    };
    let mut b = Bundle::new();
    b.args(&["true"])
        .mount(json!({"destination": "/failing-mount", "type": "nosuchfs", "source": "none"}));
    expect_rejected(&rt, &b, &["/failing-mount"]);
}

#[test]
fn missing_executable() {
    let Some(rt) = runtime_for("er-noexe") else {
        return;
    };
    let mut b = Bundle::new();
    b.args(&["/no/such/program"]);
    let id = rt.id();
    let created = rt.create(&id, &b);
    // runc fails at create (it resolves the program before waiting for start);
    // a runtime may also fail at start. Either way the error names the program.
    let failed = if created.ok() { rt.start(&id) } else { created };
    let msg = format!("{}{}{}", failed.stderr, rt.output_err(&id), rt.log());
    assert!(
        !failed.ok() || rt.status(&id).as_deref() == Some("stopped"),
        "a missing executable neither failed create/start nor stopped the container:\n{failed}"
    );
    assert!(
        msg.contains("/no/such/program"),
        "error does not name the program:\n{msg}"
    );
    let _ = rt.delete_force(&id);
    let left = rt.leftovers(&id);
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn hostile_container_ids() {
    let Some(rt) = runtime_for("er-ids") else {
        return;
    };
    let b = Bundle::new();
    let escape = rt.root().parent().expect("parent").join("escaped-id");
    for bad in ["../escaped-id", "a/b", "", "..", "."] {
        rt.prepare("x", &b);
        let bp = b.path().to_string_lossy().into_owned();
        let out = rt.cmd(&["create", "--bundle", &bp, bad]);
        assert!(!out.ok() && !out.timed_out, "id {bad:?} accepted:\n{out}");
        assert!(
            !escape.exists(),
            "id {bad:?} created state outside --root: {}",
            escape.display()
        );
    }
}

#[test]
fn mount_destination_cannot_escape_rootfs() {
    let Some(rt) = runtime_for("er-mntesc") else {
        return;
    };
    let mut b = Bundle::new();
    let tag = format!("corral-test-escape-{}", std::process::id());
    // Naively joined, "/../../<tag>" lands next to the bundle; a symlink in the
    // rootfs points to an absolute host path.
    let outside = b.path().parent().expect("parent").join(&tag);
    let host_target = std::env::temp_dir().join(format!("{tag}-link"));
    std::os::unix::fs::symlink(&host_target, b.rootfs().join("evil")).expect("symlink");
    b.args(&["true"])
        .mount(json!({"destination": format!("/../../{tag}"), "type": "tmpfs", "source": "tmpfs"}))
        .mount(json!({"destination": "/evil/x", "type": "tmpfs", "source": "tmpfs"}));
    let id = rt.id();
    let out = rt.run(&id, &b);
    let _ = rt.delete_force(&id);
    let escaped: Vec<&Path> = [outside.as_path(), host_target.as_path()]
        .into_iter()
        .filter(|p| p.exists())
        .collect();
    for p in &escaped {
        let _ = std::fs::remove_dir_all(p);
    }
    assert!(
        escaped.is_empty(),
        "mount destinations escaped the rootfs to {escaped:?}:\n{out}"
    );
}
