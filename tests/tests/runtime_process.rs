//! The container process as configured by `process`: checked from inside.

use corral_tests::host::{cap_mask, status_field};
use corral_tests::{runtime_for, Bundle, Kind};

/// Value of `key=value` lines printed by a container script.
fn field(out: &str, key: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(|v| v.trim().to_string())
}

#[test]
fn pid_one_is_the_process() {
    let Some(rt) = runtime_for("pr-pid1") else {
        return;
    };
    let mut b = Bundle::new();
    let out = rt.run_sh(
        &mut b,
        "echo pid=$$; echo ppid=$PPID; cat /proc/1/cmdline | tr '\\0' ' '; echo",
    );
    out.assert_ok();
    assert_eq!(field(&out.stdout, "pid").as_deref(), Some("1"), "{out}");
    assert_eq!(field(&out.stdout, "ppid").as_deref(), Some("0"), "{out}");
    assert!(
        out.stdout.contains("sh -c echo pid"),
        "/proc/1 is not our shell: {out}"
    );
}

#[test]
fn hostname_and_domainname() {
    let Some(rt) = runtime_for("pr-hostname") else {
        return;
    };
    let mut b = Bundle::new();
    b.hostname("box-one").domainname("corral.test");
    let out = rt.run_sh(
        &mut b,
        "echo host=$(hostname); echo dom=$(cat /proc/sys/kernel/domainname)",
    );
    out.assert_ok();
    assert_eq!(
        field(&out.stdout, "host").as_deref(),
        Some("box-one"),
        "{out}"
    );
    if rt.kind() == Kind::Runc {
        eprintln!("note: runc 1.1 ignores `domainname` (added in runc 1.2); not checked");
        return;
    }
    assert_eq!(
        field(&out.stdout, "dom").as_deref(),
        Some("corral.test"),
        "{out}"
    );
}

#[test]
fn user_uid_gid_and_additional_gids() {
    let Some(rt) = runtime_for("pr-user") else {
        return;
    };
    let mut b = Bundle::new();
    b.user(1000, 1000).additional_gids(&[100, 5]);
    let out = rt.run_sh(&mut b, "echo uid=$(id -u); echo gid=$(id -g); echo groups=$(id -G); grep -E '^(Uid|Gid|Groups):' /proc/self/status");
    out.assert_ok();
    assert_eq!(field(&out.stdout, "uid").as_deref(), Some("1000"), "{out}");
    assert_eq!(field(&out.stdout, "gid").as_deref(), Some("1000"), "{out}");
    let groups = field(&out.stdout, "groups").unwrap_or_default();
    let mut g: Vec<&str> = groups.split_whitespace().collect();
    g.sort();
    assert_eq!(g, vec!["100", "1000", "5"], "supplementary groups: {out}");
    let uid_line = status_field(&out.stdout, "Uid").unwrap_or_default();
    assert_eq!(
        uid_line.split_whitespace().collect::<Vec<_>>(),
        vec!["1000"; 4],
        "real/effective/saved/fs uid: {out}"
    );
}

#[test]
fn root_user_has_no_extra_groups() {
    let Some(rt) = runtime_for("pr-root") else {
        return;
    };
    let mut b = Bundle::new();
    let out = rt.run_sh(&mut b, "echo ids=$(id -u):$(id -g); echo groups=$(id -G)");
    out.assert_ok();
    assert_eq!(field(&out.stdout, "ids").as_deref(), Some("0:0"), "{out}");
    assert_eq!(
        field(&out.stdout, "groups").as_deref(),
        Some("0"),
        "the runtime's groups leaked: {out}"
    );
}

#[test]
fn umask_is_applied() {
    let Some(rt) = runtime_for("pr-umask") else {
        return;
    };
    let mut b = Bundle::new();
    b.umask(0o027);
    let out = rt.run_sh(
        &mut b,
        "echo umask=$(umask); touch /tmp/f; stat -c mode=%a /tmp/f",
    );
    out.assert_ok();
    assert_eq!(
        field(&out.stdout, "umask").as_deref(),
        Some("0027"),
        "{out}"
    );
    assert_eq!(field(&out.stdout, "mode").as_deref(), Some("640"), "{out}");
}

#[test]
fn cwd_and_env() {
    let Some(rt) = runtime_for("pr-cwdenv") else {
        return;
    };
    let mut b = Bundle::new();
    b.cwd("/home/user")
        .env("GREETING=hello world")
        .env("EMPTY=");
    let out = rt.run_sh(&mut b, "echo cwd=$(pwd); echo greet=$GREETING; echo path=$PATH; env | grep -c '^EMPTY=$' | sed 's/^/empty=/'");
    out.assert_ok();
    assert_eq!(
        field(&out.stdout, "cwd").as_deref(),
        Some("/home/user"),
        "{out}"
    );
    assert_eq!(
        field(&out.stdout, "greet").as_deref(),
        Some("hello world"),
        "{out}"
    );
    assert_eq!(
        field(&out.stdout, "path").as_deref(),
        Some("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        "{out}"
    );
    assert_eq!(field(&out.stdout, "empty").as_deref(), Some("1"), "{out}");
}

#[test]
fn cwd_is_created_if_missing() {
    let Some(rt) = runtime_for("pr-cwdnew") else {
        return;
    };
    let mut b = Bundle::new();
    b.cwd("/work/dir");
    let out = rt.run_sh(&mut b, "echo cwd=$(pwd)");
    assert!(out.ok(), "{out}");
    assert_eq!(
        field(&out.stdout, "cwd").as_deref(),
        Some("/work/dir"),
        "{out}"
    );
}

#[test]
fn env_is_exactly_the_configured_list() {
    let Some(rt) = runtime_for("pr-envonly") else {
        return;
    };
    let mut b = Bundle::new();
    b.args(&["env"]);
    let id = rt.id();
    let out = rt.run(&id, &b);
    out.assert_ok();
    let mut names: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    names.sort();
    // HOME is added by runtimes when missing (runc does); nothing from the host.
    names.retain(|n| *n != "HOME");
    assert_eq!(names, vec!["CORRAL_TEST_MARK", "PATH", "TERM"], "{out}");
}

fn cap_lines(stdout: &str) -> [String; 5] {
    ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]
        .map(|k| status_field(stdout, k).unwrap_or_default())
}

#[test]
fn capabilities_root_all_sets() {
    let Some(rt) = runtime_for("pr-caps") else {
        return;
    };
    let caps = [
        "CAP_CHOWN",
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_ADMIN",
    ];
    let mut b = Bundle::new();
    b.caps_all(&caps);
    let out = rt.run_sh(&mut b, "grep ^Cap /proc/self/status");
    out.assert_ok();
    let m = cap_mask(&caps);
    let [inh, prm, eff, bnd, amb] = cap_lines(&out.stdout);
    assert_eq!(
        (
            inh.as_str(),
            prm.as_str(),
            eff.as_str(),
            bnd.as_str(),
            amb.as_str()
        ),
        (m.as_str(), m.as_str(), m.as_str(), m.as_str(), m.as_str()),
        "{out}"
    );
}

#[test]
fn capabilities_default_set() {
    let Some(rt) = runtime_for("pr-capsdef") else {
        return;
    };
    let mut b = Bundle::new();
    let out = rt.run_sh(&mut b, "grep ^Cap /proc/self/status");
    out.assert_ok();
    let m = cap_mask(&["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    let [inh, prm, eff, bnd, amb] = cap_lines(&out.stdout);
    assert_eq!(prm, m, "CapPrm: {out}");
    assert_eq!(eff, m, "CapEff: {out}");
    assert_eq!(bnd, m, "CapBnd: {out}");
    // No inheritable set configured: ambient caps cannot be raised without it.
    assert_eq!(inh, "0000000000000000", "CapInh: {out}");
    assert_eq!(amb, "0000000000000000", "CapAmb: {out}");
}

#[test]
fn capabilities_non_root_keep_only_ambient() {
    let Some(rt) = runtime_for("pr-capsuser") else {
        return;
    };
    let bounding = [
        "CAP_CHOWN",
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_ADMIN",
    ];
    let small = ["CAP_KILL", "CAP_NET_BIND_SERVICE"];
    let mut b = Bundle::new();
    b.user(1000, 1000).caps_set("bounding", &bounding);
    for set in ["effective", "permitted", "inheritable", "ambient"] {
        b.caps_set(set, &small);
    }
    let out = rt.run_sh(&mut b, "grep ^Cap /proc/self/status");
    out.assert_ok();
    let [inh, prm, eff, bnd, amb] = cap_lines(&out.stdout);
    let (mb, ms) = (cap_mask(&bounding), cap_mask(&small));
    assert_eq!(bnd, mb, "CapBnd: {out}");
    assert_eq!(inh, ms, "CapInh: {out}");
    assert_eq!(prm, ms, "CapPrm: {out}");
    assert_eq!(eff, ms, "CapEff: {out}");
    assert_eq!(amb, ms, "CapAmb: {out}");
}

#[test]
fn capabilities_none() {
    let Some(rt) = runtime_for("pr-capsnone") else {
        return;
    };
    let mut b = Bundle::new();
    b.caps_all(&[]);
    let out = rt.run_sh(
        &mut b,
        "grep ^Cap /proc/self/status; chown 1000 /tmp && echo chown-worked",
    );
    let [inh, prm, eff, bnd, amb] = cap_lines(&out.stdout);
    for (n, v) in [
        ("CapInh", inh),
        ("CapPrm", prm),
        ("CapEff", eff),
        ("CapBnd", bnd),
        ("CapAmb", amb),
    ] {
        assert_eq!(v, "0000000000000000", "{n}: {out}");
    }
    assert!(
        !out.stdout.contains("chown-worked"),
        "chown without CAP_CHOWN succeeded: {out}"
    );
}

#[test]
fn no_new_privileges_flag() {
    let Some(rt) = runtime_for("pr-nnp") else {
        return;
    };
    for (on, want) in [(true, "1"), (false, "0")] {
        let mut b = Bundle::new();
        b.no_new_privileges(on);
        let out = rt.run_sh(&mut b, "grep ^NoNewPrivs /proc/self/status");
        out.assert_ok();
        assert_eq!(
            status_field(&out.stdout, "NoNewPrivs").as_deref(),
            Some(want),
            "noNewPrivileges={on}: {out}"
        );
    }
}

#[test]
fn rlimits_soft_and_hard() {
    let Some(rt) = runtime_for("pr-rlimit") else {
        return;
    };
    let mut b = Bundle::new();
    b.rlimit("RLIMIT_NOFILE", 512, 768)
        .rlimit("RLIMIT_NPROC", 300, 400)
        .rlimit("RLIMIT_CORE", 0, 0);
    let out = rt.run_sh(&mut b, "echo n=$(ulimit -Sn)/$(ulimit -Hn); echo u=$(ulimit -Su)/$(ulimit -Hu); echo c=$(ulimit -Hc); grep 'open files' /proc/self/limits");
    out.assert_ok();
    assert_eq!(field(&out.stdout, "n").as_deref(), Some("512/768"), "{out}");
    assert_eq!(field(&out.stdout, "u").as_deref(), Some("300/400"), "{out}");
    assert_eq!(field(&out.stdout, "c").as_deref(), Some("0"), "{out}");
    let limits = out
        .stdout
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_default();
    assert_eq!(
        limits.split_whitespace().collect::<Vec<_>>()[3..5],
        ["512", "768"],
        "{out}"
    );
}

#[test]
fn oom_score_adj_is_set() {
    let Some(rt) = runtime_for("pr-oomadj") else {
        return;
    };
    let mut b = Bundle::new();
    b.oom_score_adj(573);
    let out = rt.run_sh(&mut b, "echo adj=$(cat /proc/self/oom_score_adj)");
    out.assert_ok();
    assert_eq!(field(&out.stdout, "adj").as_deref(), Some("573"), "{out}");
}

#[test]
fn args_are_passed_verbatim() {
    let Some(rt) = runtime_for("pr-args") else {
        return;
    };
    let mut b = Bundle::new();
    b.args(&["/bin/echo", "a b", "", "$HOME", "*", "--x"]);
    let id = rt.id();
    let out = rt.run(&id, &b);
    out.assert_ok();
    assert_eq!(out.stdout, "a b  $HOME * --x\n", "{out}");
}

#[test]
fn program_is_looked_up_in_path() {
    let Some(rt) = runtime_for("pr-pathlookup") else {
        return;
    };
    let mut b = Bundle::new();
    b.set(
        "/process/env",
        serde_json::json!(["PATH=/nowhere:/usr/sbin"]),
    );
    b.write_rootfs_file("usr/sbin/hello-tool", "#!/bin/sh\necho tool-ran\n");
    std::fs::set_permissions(
        b.rootfs().join("usr/sbin/hello-tool"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    b.args(&["hello-tool"]);
    let id = rt.id();
    let out = rt.run(&id, &b);
    out.assert_ok();
    assert_eq!(out.stdout.trim(), "tool-ran", "{out}");
}
