//! `corral run` in the foreground: output, exit codes, options, terminals,
//! failures. Each test has its own corral setup (see corral_tests::corral).

use std::io::{Read, Write};
use std::time::Duration;

use corral_tests::corral::Corral;
use corral_tests::skip;

fn setup(n: u8) -> Option<Corral> {
    match Corral::new(n) {
        Ok(c) => Some(c),
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            None
        }
    }
}

#[test]
fn run_rm_echo_prints_hi_and_leaves_nothing() {
    let Some(c) = setup(1) else { return };
    let out = c.ok(&["run", "--rm", "busybox", "echo", "hi"]);
    assert_eq!(out.stdout, "hi\n", "{out}");
    assert_eq!(c.leftovers(), Vec::<String>::new());
    let ps = c.ok(&["ps", "-a", "-q"]);
    assert_eq!(ps.stdout, "", "{ps}");
}

#[test]
fn exit_codes_pass_through() {
    let Some(c) = setup(2) else { return };
    let out = c.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "exit 7",
    ]);
    assert_eq!(out.code(), Some(7), "{out}");
    let out = c.run(&["run", "--rm", "--network", "none", "busybox", "false"]);
    assert_eq!(out.code(), Some(1), "{out}");
    // Without --rm the exit stays on record.
    let out = c.run(&[
        "run",
        "--name",
        "seven",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(out.code(), Some(7), "{out}");
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str()),
        ("out\n", "err\n")
    );
    let v = c.inspect("seven");
    assert_eq!(v["state"]["status"], "exited");
    assert_eq!(v["state"]["exitCode"], 7);
    let ps = c.ok(&["ps", "-a"]);
    assert!(
        ps.stdout.contains("Exited (7)") && ps.stdout.contains("seven"),
        "{ps}"
    );
    let logs = c.ok(&["logs", "seven"]);
    assert_eq!(
        (logs.stdout.as_str(), logs.stderr.as_str()),
        ("out\n", "err\n"),
        "{logs}"
    );
    c.ok(&["rm", "seven"]);
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

#[test]
fn env_workdir_user_and_env_file() {
    let Some(c) = setup(3) else { return };
    let env_file = c.path("env");
    std::fs::write(&env_file, "# a comment\nFROM_FILE=yes\nA=from-file\n").unwrap();
    let out = c.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--env-file",
        &env_file.display().to_string(),
        "-e",
        "A=1",
        "-e",
        "B=two words",
        "-w",
        "/tmp",
        "-u",
        "1000:1001",
        "busybox",
        "sh",
        "-c",
        "echo \"$A|$B|$FROM_FILE\"; pwd; id -u; id -g",
    ]);
    assert_eq!(out.stdout, "1|two words|yes\n/tmp\n1000\n1001\n", "{out}");
}

#[test]
fn read_only_bind_and_read_only_root() {
    let Some(c) = setup(4) else { return };
    let vol = c.path("vol");
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("f"), "from the host\n").unwrap();
    let rw = c.path("rw");
    std::fs::create_dir(&rw).unwrap();
    let script = "cat /data/f; \
        touch /data/new 2>/dev/null && echo data-writable || echo data-ro; \
        touch /rootfile 2>/dev/null && echo root-writable || echo root-ro; \
        echo written > /out/w && echo out-ok";
    let out = c.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--read-only",
        "-v",
        &format!("{}:/data:ro", vol.display()),
        "-v",
        &format!("{}:/out", rw.display()),
        "busybox",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(
        out.stdout, "from the host\ndata-ro\nroot-ro\nout-ok\n",
        "{out}"
    );
    assert!(!vol.join("new").exists());
    assert_eq!(std::fs::read_to_string(rw.join("w")).unwrap(), "written\n");
    // Without --read-only the root is writable (its own upper layer).
    let out = c.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "touch /rootfile && echo ok",
    ]);
    assert_eq!(out.stdout, "ok\n", "{out}");
}

#[test]
fn memory_cpu_and_pids_limits_are_visible_inside() {
    let Some(c) = setup(5) else { return };
    let script = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; \
                  cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cut -d' ' -f1 /sys/fs/cgroup/cpu.max; \
                  cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max";
    let out = c.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--memory",
        "64m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "42",
        "busybox",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(out.stdout, format!("{}\n50000\n42\n", 64 << 20), "{out}");
}

#[test]
fn network_none_has_only_loopback() {
    let Some(c) = setup(6) else { return };
    let out = c.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "ls",
        "/sys/class/net",
    ]);
    assert_eq!(
        out.stdout.split_whitespace().collect::<Vec<_>>(),
        ["lo"],
        "{out}"
    );
    let out = c.ok(&["run", "--rm", "busybox", "ls", "/sys/class/net"]);
    assert_eq!(
        out.stdout.split_whitespace().collect::<Vec<_>>(),
        ["eth0", "lo"],
        "{out}"
    );
}

#[test]
fn bad_command_fails_clearly_and_leaves_nothing() {
    let Some(c) = setup(7) else { return };
    let out = c.run(&["run", "--rm", "busybox", "/no/such/command"]);
    assert_eq!(out.code(), Some(127), "{out}");
    assert!(out.stderr.contains("/no/such/command"), "{out}");
    assert_eq!(
        out.stderr.lines().count(),
        1,
        "one message, not two:\n{out}"
    );
    // Also without --rm, and detached: a failed start leaves nothing either.
    let out = c.run(&["run", "--name", "bad", "busybox", "/no/such/command"]);
    assert_eq!(out.code(), Some(127), "{out}");
    let out = c.run(&["run", "-d", "--name", "bad", "busybox", "/no/such/command"]);
    assert_eq!(out.code(), Some(127), "{out}");
    assert!(out.stderr.contains("/no/such/command"), "{out}");
    assert_eq!(c.leftovers(), Vec::<String>::new());
    // The name is free again.
    c.ok(&[
        "run",
        "--rm",
        "--name",
        "bad",
        "--network",
        "none",
        "busybox",
        "true",
    ]);
}

#[test]
fn unknown_image_and_bad_flags_are_clear_errors() {
    let Some(c) = setup(8) else { return };
    let out = c.run(&[
        "run",
        "--rm",
        "-p",
        "8080:80",
        "--network",
        "none",
        "busybox",
        "true",
    ]);
    out.assert_fail();
    assert!(out.stderr.contains("--network none"), "{out}");
    let out = c.run(&["run", "--rm", "-v", "relative:/x", "busybox", "true"]);
    out.assert_fail();
    assert!(out.stderr.contains("named volumes"), "{out}");
    let out = c.run(&["run", "--rm", "--name", "no spaces", "busybox", "true"]);
    out.assert_fail();
    assert!(out.stderr.contains("invalid container name"), "{out}");
    // An id prefix that matches no image is not pulled from anywhere: it is
    // not a valid reference (uppercase).
    let out = c.run(&["run", "--rm", "NOSUCHIMAGE", "true"]);
    out.assert_fail();
    assert!(out.stderr.contains("NOSUCHIMAGE"), "{out}");
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

#[test]
fn interactive_stdin_passes_through() {
    let Some(c) = setup(9) else { return };
    let mut child = c.spawn(&[
        "run",
        "--rm",
        "-i",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "tr a-z A-Z; exit 3",
    ]);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello\nworld\n")
        .unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(out, "HELLO\nWORLD\n");
    assert_eq!(status.code(), Some(3));
    // Without -i the container's stdin is empty.
    let mut child = c.spawn(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "cat; echo done",
    ]);
    let _stdin = child.stdin.take();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(out, "done\n");
    assert!(child.wait().unwrap().success());
}

#[test]
fn tty_gives_the_container_a_terminal() {
    let Some(c) = setup(10) else { return };
    if corral_tests::host::which("script").is_none() {
        skip!("script(1) is not installed");
    }
    // script(1) gives corral a terminal; the container gets its own pty.
    let inner = format!(
        "{} run --rm -t --network none busybox sh -c 'tty; test -t 0 && echo stdin-is-tty; exit 5'",
        c.command(&[] as &[&str]).get_program().to_string_lossy()
    );
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &inner, "/dev/null"]);
    for (k, v) in c.command(&[] as &[&str]).get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let out =
        corral_tests::runtime::run_command(cmd, &c.path(""), "script", Duration::from_secs(60));
    assert!(out.stdout.contains("/dev/pts/"), "{out}");
    assert!(out.stdout.contains("stdin-is-tty"), "{out}");
    assert_eq!(out.code(), Some(5), "{out}");
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

#[test]
fn oom_kill_is_recorded() {
    let Some(c) = setup(11) else { return };
    // busybox tail keeps the one endless "line" in memory: it hits the limit.
    let out = c.run(&[
        "run",
        "--name",
        "hog",
        "--network",
        "none",
        "--memory",
        "16m",
        "busybox",
        "sh",
        "-c",
        "head -c 256m /dev/zero | tail -n1 >/dev/null",
    ]);
    assert_eq!(out.code(), Some(137), "{out}");
    let v = c.inspect("hog");
    assert_eq!(v["state"]["exitCode"], 137, "{v}");
    assert_eq!(v["state"]["oomKilled"], true, "{v}");
    c.ok(&[
        "run",
        "--name",
        "calm",
        "--network",
        "none",
        "--memory",
        "16m",
        "busybox",
        "true",
    ]);
    assert_eq!(c.inspect("calm")["state"]["oomKilled"], false);
}

#[test]
fn foreground_run_forwards_sigterm_to_the_container() {
    let Some(c) = setup(12) else { return };
    let mut child = c.spawn(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "trap 'echo got-term; exit 2' TERM; echo ready; while true; do sleep 0.1; done",
    ]);
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&seen).contains("ready\n") {
        assert_eq!(
            stdout.read(&mut byte).unwrap(),
            1,
            "output ended early: {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.push(byte[0]);
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "got-term\n");
    assert_eq!(child.wait().unwrap().code(), Some(2));
    assert_eq!(c.leftovers(), Vec::<String>::new());
}
