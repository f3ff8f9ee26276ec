//! `exec` into a running container: inline args, `-p process.json`, options,
//! exit codes, detached processes, and that the process joins the container.

use std::fs;
use std::time::Duration;

use corral_tests::host::{pid_alive, status_field, wait_until};
use corral_tests::{runtime_for, Bundle};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(15);

#[test]
fn exec_echo() {
    let Some(rt) = runtime_for("ex-echo") else {
        return;
    };
    let mut b = Bundle::new();
    let id = rt.start_sleeper(&mut b);
    let out = rt.exec(&id, &["echo", "hi"]);
    out.assert_ok();
    assert_eq!(out.stdout, "hi\n", "{out}");
}

#[test]
fn exec_exit_code_passthrough() {
    let Some(rt) = runtime_for("ex-code") else {
        return;
    };
    let mut b = Bundle::new();
    let id = rt.start_sleeper(&mut b);
    let out = rt.exec(&id, &["sh", "-c", "echo err >&2; exit 3"]);
    assert_eq!(out.code(), Some(3), "{out}");
    assert!(out.stderr.contains("err"), "{out}");
    // The container is unaffected.
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
}

#[test]
fn exec_cwd_env_user() {
    let Some(rt) = runtime_for("ex-opts") else {
        return;
    };
    let mut b = Bundle::new();
    let id = rt.start_sleeper(&mut b);
    let out = rt.exec(
        &id,
        &[
            "--cwd",
            "/tmp",
            "--env",
            "FOO=bar baz",
            "--user",
            "1000:1000",
            "--",
            "/bin/sh",
            "-c",
            "pwd; echo foo=$FOO; echo path=$PATH; id -u; id -g",
        ],
    );
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first().copied(), Some("/tmp"), "--cwd: {out}");
    assert!(out.stdout.contains("foo=bar baz\n"), "--env: {out}");
    if rt.kind() == corral_tests::Kind::Crun {
        eprintln!("note: crun 1.8 drops the config env when --env is given; not checked");
    } else {
        assert!(
            out.stdout.contains("path=/usr/local/sbin:"),
            "exec --env lost the config env: {out}"
        );
    }
    assert_eq!(&lines[lines.len() - 2..], ["1000", "1000"], "--user: {out}");
}

#[test]
fn exec_process_json() {
    let Some(rt) = runtime_for("ex-pjson") else {
        return;
    };
    let mut b = Bundle::new();
    let id = rt.start_sleeper(&mut b);
    let p = rt.scratch("proc").join("process.json");
    let process = json!({
        "terminal": false,
        "user": {"uid": 1000, "gid": 1000, "additionalGids": [100]},
        "args": ["sh", "-c", "echo from-json $X; pwd; id -G; grep ^CapEff /proc/self/status; exit 4"],
        "env": ["X=42", "PATH=/bin:/usr/bin"],
        "cwd": "/home/user",
        "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"], "inheritable": ["CAP_KILL"], "ambient": ["CAP_KILL"]},
        "noNewPrivileges": true
    });
    fs::write(&p, serde_json::to_string(&process).expect("json")).expect("write process.json");
    let ps = p.to_string_lossy().into_owned();
    let out = rt.exec(&id, &["-p", &ps, "--"]);
    assert_eq!(out.code(), Some(4), "{out}");
    assert!(out.stdout.contains("from-json 42\n/home/user\n"), "{out}");
    assert!(
        out.stdout.contains("1000 100") || out.stdout.contains("100 1000"),
        "additionalGids: {out}"
    );
    assert_eq!(
        status_field(&out.stdout, "CapEff").as_deref(),
        Some("0000000000000020"),
        "exec caps from process.json: {out}"
    );
}

#[test]
fn exec_detached_with_pid_file() {
    let Some(rt) = runtime_for("ex-detach") else {
        return;
    };
    let mut b = Bundle::new();
    let id = rt.start_sleeper(&mut b);
    let pidfile = rt.scratch("pid").join("exec.pid");
    let pf = pidfile.to_string_lossy().into_owned();
    let out = rt.exec(&id, &["-d", "--pid-file", &pf, "--", "sleep", "77"]);
    out.assert_ok();
    assert!(
        out.elapsed < Duration::from_secs(10),
        "exec -d did not return promptly: {out}"
    );
    let pid: i32 = fs::read_to_string(&pidfile)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("pid file {pf} missing or not a number"));
    assert!(pid_alive(pid), "exec'd pid {pid} is not running");
    let cmd = fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .replace('\0', " ");
    assert_eq!(
        cmd.trim(),
        "sleep 77",
        "pid file does not point at the exec'd process"
    );
    let init = rt.state_json(&id)["pid"].as_i64().expect("pid");
    for ns in ["pid", "net", "mnt", "uts", "ipc"] {
        let a = fs::read_link(format!("/proc/{init}/ns/{ns}")).expect("readlink");
        let e = fs::read_link(format!("/proc/{pid}/ns/{ns}")).expect("readlink");
        assert_eq!(
            a, e,
            "exec'd process is not in the container's {ns} namespace"
        );
    }
    let ps = rt.ps_json(&id);
    ps.assert_ok();
    let v: Value =
        serde_json::from_str(&ps.stdout).unwrap_or_else(|e| panic!("ps json ({e}): {ps}"));
    assert!(
        v.as_array().is_some_and(|a| a.contains(&json!(pid))),
        "ps does not list the exec'd pid {pid}: {v}"
    );
    // Deleting the container takes the exec'd process with it.
    rt.delete_force(&id).assert_ok();
    assert!(
        wait_until(T, || !pid_alive(pid)),
        "exec'd process {pid} survived delete --force"
    );
}

#[test]
fn exec_joins_container_cgroup_and_sees_its_root() {
    let Some(rt) = runtime_for("ex-join") else {
        return;
    };
    let mut b = Bundle::new();
    b.hostname("exec-host");
    b.write_rootfs_file("etc/marker", "inside-rootfs\n");
    let id = rt.start_sleeper(&mut b);
    let init = rt.state_json(&id)["pid"].as_i64().expect("pid");
    let out = rt.exec(&id, &["sh", "-c", "hostname; cat /etc/marker; echo pid1=$(cat /proc/1/cmdline | tr '\\0' ' '); cat /proc/self/cgroup"]);
    out.assert_ok();
    assert!(
        out.stdout.starts_with("exec-host\ninside-rootfs\n"),
        "{out}"
    );
    assert!(
        out.stdout.contains("pid1=sleep 120"),
        "exec is not in the container's pid namespace: {out}"
    );
    let init_cg = fs::read_to_string(format!("/proc/{init}/cgroup")).expect("read");
    let mem = |s: &str| {
        s.lines()
            .find(|l| l.contains(":memory:"))
            .map(|l| l.rsplit(':').next().unwrap_or("").to_string())
    };
    assert!(
        mem(&init_cg).is_some_and(|p| p.contains(&id)),
        "init memory cgroup: {init_cg}"
    );
    assert_eq!(
        mem(&out.stdout),
        mem(&init_cg),
        "exec'd process not in the container's memory cgroup: {out}"
    );
}

#[test]
fn exec_missing_binary_fails_cleanly() {
    let Some(rt) = runtime_for("ex-missing") else {
        return;
    };
    let mut b = Bundle::new();
    let id = rt.start_sleeper(&mut b);
    let out = rt.exec(&id, &["/no/such/binary"]);
    out.assert_fail();
    assert!(
        out.all().contains("/no/such/binary") || rt.log().contains("/no/such/binary"),
        "error does not name the binary: {out}"
    );
    assert_eq!(
        rt.status(&id).as_deref(),
        Some("running"),
        "the container suffered from a failed exec"
    );
}

#[test]
fn exec_into_stopped_container_is_refused() {
    let Some(rt) = runtime_for("ex-stopped") else {
        return;
    };
    let mut b = Bundle::new();
    b.args(&["true"]);
    let id = rt.id();
    rt.create(&id, &b).assert_ok();
    rt.start(&id).assert_ok();
    assert!(rt.wait_status(&id, "stopped", T));
    rt.exec(&id, &["echo", "hi"]).assert_fail();
}
