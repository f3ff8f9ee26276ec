//! The command line: global options, features, spec, logs, pid files, errors
//! about unknown containers.

use std::fs;
use std::process::Command;
use std::time::Duration;

use corral_tests::host::which;
use corral_tests::{runtime_for, skip, Bundle, Kind};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(15);

#[test]
fn version() {
    let Some(rt) = runtime_for("cli-version") else {
        return;
    };
    let out = rt.cmd(&["--version"]);
    out.assert_ok();
    assert!(
        !out.stdout.trim().is_empty(),
        "--version printed nothing: {out}"
    );
}

#[test]
fn features_json() {
    let Some(rt) = runtime_for("cli-features") else {
        return;
    };
    if rt.kind() == Kind::Crun {
        skip!("crun 1.8 has no `features` verb");
    }
    let out = rt.cmd(&["features"]);
    out.assert_ok();
    let f: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("features is not JSON ({e}): {out}"));
    assert_eq!(f["ociVersionMin"], "1.0.0", "{f}");
    assert!(
        f["ociVersionMax"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "{f}"
    );
    if rt.is_corral() {
        assert!(
            f["ociVersionMax"]
                .as_str()
                .is_some_and(|v| v.starts_with("1.3")),
            "corral must claim spec 1.3: {f}"
        );
    }
    let hooks: Vec<&str> = f["hooks"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for h in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        assert!(hooks.contains(&h), "features.hooks lacks {h}: {f}");
    }
    let opts: Vec<&str> = f["mountOptions"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for o in [
        "ro", "rw", "nosuid", "nodev", "noexec", "bind", "rbind", "rslave", "rprivate",
    ] {
        assert!(opts.contains(&o), "features.mountOptions lacks {o}: {f}");
    }
    let ns: Vec<&str> = f["linux"]["namespaces"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for n in ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"] {
        assert!(ns.contains(&n), "features.linux.namespaces lacks {n}: {f}");
    }
    let caps: Vec<&str> = f["linux"]["capabilities"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        caps.contains(&"CAP_SYS_ADMIN") && caps.contains(&"CAP_CHOWN"),
        "features.linux.capabilities: {f}"
    );
    assert_eq!(f["linux"]["cgroup"]["v1"], true, "{f}");
    assert_eq!(f["linux"]["cgroup"]["v2"], true, "{f}");
    assert_eq!(f["linux"]["seccomp"]["enabled"], true, "{f}");
    let actions: Vec<&str> = f["linux"]["seccomp"]["actions"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for a in ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL"] {
        assert!(
            actions.contains(&a),
            "features.linux.seccomp.actions lacks {a}: {f}"
        );
    }
}

#[test]
fn spec_writes_a_config_that_runs() {
    let Some(rt) = runtime_for("cli-spec") else {
        return;
    };
    let dir = rt.scratch("specbundle");
    let out = rt.cmd(&["spec", "--bundle", &dir.to_string_lossy()]);
    out.assert_ok();
    let text = fs::read_to_string(dir.join("config.json"))
        .unwrap_or_else(|e| panic!("spec wrote no config.json ({e}): {out}"));
    let mut c: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("spec config is not JSON ({e}):\n{text}"));
    assert!(
        c["ociVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "{c}"
    );
    assert_eq!(c["root"]["path"], "rootfs", "{c}");
    assert!(
        c["process"]["args"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{c}"
    );
    let ns: Vec<&str> = c["linux"]["namespaces"]
        .as_array()
        .map(|a| a.iter().filter_map(|n| n["type"].as_str()).collect())
        .unwrap_or_default();
    for n in ["pid", "network", "ipc", "uts", "mount"] {
        assert!(ns.contains(&n), "spec lacks the {n} namespace: {c}");
    }
    assert!(
        c["linux"]["maskedPaths"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{c}"
    );
    // Put a rootfs next to it and run it as generated, apart from the terminal
    // (no tty here) and the command.
    corral_tests::busybox_rootfs(&dir.join("rootfs")).expect("rootfs");
    c["process"]["terminal"] = json!(false);
    c["process"]["args"] = json!(["sh", "-c", "echo spec-ran-$$; exit 5"]);
    let id = rt.id();
    let mut env = c["process"]["env"].as_array().cloned().unwrap_or_default();
    env.push(json!(format!("CORRAL_TEST_MARK={id}")));
    c["process"]["env"] = json!(env);
    c["linux"]["cgroupsPath"] = json!(format!("/corral-test/{id}"));
    fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&c).expect("json"),
    )
    .expect("write");
    let bp = dir.to_string_lossy().into_owned();
    let out = rt
        .spawn_for(Some(&id), &["run", "--bundle", &bp, &id])
        .wait(T);
    assert_eq!(
        out.code(),
        Some(5),
        "the generated config did not run:\n{out}"
    );
    assert!(out.stdout.contains("spec-ran-1"), "{out}");
}

#[test]
fn log_format_json() {
    let Some(rt) = runtime_for("cli-logjson") else {
        return;
    };
    let out = rt.cmd(&["--log-format", "json", "state", "no-such-container-xyz"]);
    out.assert_fail();
    let log = rt.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        !lines.is_empty(),
        "nothing logged for a failed command; stderr {:?}",
        out.stderr
    );
    for l in &lines {
        let v: Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l:?}"));
        assert!(
            v["msg"].is_string() && v["level"].is_string(),
            "log entry lacks msg/level: {l}"
        );
    }
    assert!(
        lines.iter().any(|l| l.contains("\"error\"")),
        "no error-level entry: {log}"
    );
}

#[test]
fn log_text_records_errors() {
    let Some(rt) = runtime_for("cli-logtext") else {
        return;
    };
    let out = rt.cmd(&["state", "no-such-container-abc"]);
    out.assert_fail();
    let log = rt.log();
    assert!(
        !log.trim().is_empty() || !out.stderr.trim().is_empty(),
        "failure reported nowhere"
    );
    if rt.is_corral() {
        assert!(
            format!("{}{log}", out.stderr).contains("no-such-container-abc"),
            "error does not name the container: {} / {log}",
            out.stderr
        );
    }
}

#[test]
fn unknown_container_verbs_fail() {
    let Some(rt) = runtime_for("cli-unknown") else {
        return;
    };
    for verb in [
        vec!["state"],
        vec!["start"],
        vec!["kill"],
        vec!["delete"],
        vec!["pause"],
        vec!["resume"],
        vec!["ps"],
        vec!["exec"],
    ] {
        let mut args = verb.clone();
        args.push("never-created-id");
        if verb == ["exec"] {
            args.push("true");
        }
        let out = rt.cmd(&args);
        out.assert_fail();
        if rt.is_corral() {
            let msg = format!("{}{}", out.stderr, rt.log());
            assert!(
                msg.contains("never-created-id"),
                "{verb:?}: error does not name the container: {msg}"
            );
        }
    }
}

#[test]
fn pid_file_on_create() {
    let Some(rt) = runtime_for("cli-pidfile") else {
        return;
    };
    let mut b = Bundle::new();
    b.args(&["sleep", "120"]);
    let id = rt.id();
    let pf = rt.scratch("pid").join("ct.pid");
    rt.create_with(&id, &b, &["--pid-file", &pf.to_string_lossy()])
        .assert_ok();
    let from_file: i64 = fs::read_to_string(&pf)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(-1);
    assert_eq!(
        Some(from_file),
        rt.state_json(&id)["pid"].as_i64(),
        "pid file does not match state"
    );
}

#[test]
fn debug_flag_is_accepted() {
    let Some(rt) = runtime_for("cli-debug") else {
        return;
    };
    let mut b = Bundle::new();
    b.args(&["true"]);
    let id = rt.id();
    rt.prepare(&id, &b);
    let bp = b.path().to_string_lossy().into_owned();
    let out = rt
        .spawn_for(Some(&id), &["--debug", "run", "--bundle", &bp, &id])
        .wait(T);
    out.assert_ok();
}

#[test]
fn no_pivot_runs() {
    let Some(rt) = runtime_for("cli-nopivot") else {
        return;
    };
    let mut b = Bundle::new();
    b.sh("echo nopivot-$$; ls /");
    let id = rt.id();
    rt.create_with(&id, &b, &["--no-pivot"]).assert_ok();
    rt.start(&id).assert_ok();
    assert!(
        rt.wait_output(&id, "nopivot-1", T),
        "{:?} {:?}",
        rt.output(&id),
        rt.output_err(&id)
    );
    assert!(rt.wait_status(&id, "stopped", T));
    assert!(rt.output(&id).contains("etc"), "{:?}", rt.output(&id));
}

#[test]
fn systemd_cgroup_flag_is_honoured_or_refused_clearly() {
    let Some(rt) = runtime_for("cli-systemd") else {
        return;
    };
    let mut b = Bundle::new();
    b.args(&["true"]);
    let id = rt.id();
    b.cgroups_path(&format!("system.slice:corral-test:{id}"));
    rt.prepare(&id, &b);
    let bp = b.path().to_string_lossy().into_owned();
    let out = rt
        .spawn_for(
            Some(&id),
            &["--systemd-cgroup", "create", "--bundle", &bp, &id],
        )
        .wait(T);
    if out.ok() {
        return;
    }
    out.assert_fail();
    if rt.is_corral() {
        let msg = format!("{}{}", out.stderr, rt.log());
        assert!(
            msg.contains("systemd"),
            "the refusal does not say it is about systemd: {msg}"
        );
    }
    let left = rt.leftovers(&id);
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn root_directory_is_created() {
    let Some(rt) = runtime_for("cli-newroot") else {
        return;
    };
    let root = rt.scratch("deep").join("not/yet/there");
    let root_s = root.to_string_lossy().into_owned();
    let mut b = Bundle::new();
    b.args(&["true"]);
    let id = rt.id();
    rt.prepare(&id, &b);
    let bp = b.path().to_string_lossy().into_owned();
    let bin = rt.bin().to_path_buf();
    let run = |args: &[&str]| {
        let mut c = if rt.kind() == Kind::Crun && which("unshare").is_some() {
            // Same hybrid-host workaround as the harness applies to crun.
            let mut c = Command::new("unshare");
            c.args(["--mount", "--propagation", "unchanged", "/bin/sh", "-c", "mount --make-private /sys/fs/cgroup/unified && umount /sys/fs/cgroup/unified; exec \"$0\" \"$@\""]);
            c.arg(&bin);
            c
        } else {
            Command::new(&bin)
        };
        c.args(["--root", &root_s])
            .args(args)
            .env("CORRAL_TEST_MARK", &id);
        c.output().expect("spawn runtime")
    };
    let o = run(&["run", "--bundle", &bp, &id]);
    let _ = run(&["delete", "--force", &id]);
    assert!(
        o.status.success(),
        "run with a --root that does not exist yet: {:?}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(root.is_dir(), "--root was not created");
}
