//! Detached containers: the shim keeps them (and their logs and exit codes)
//! after `corral` exits; logs -f, stop, kill, rm -f, exec, ps.

use std::io::Read;
use std::time::{Duration, Instant};

use corral_tests::corral::Corral;

fn setup(n: u8) -> Option<Corral> {
    match Corral::new(n) {
        Ok(c) => Some(c),
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            None
        }
    }
}

const TICKER: &str = "echo start; trap 'echo bye; exit 3' TERM; \
                      i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.1; done";

#[test]
fn detached_logs_follow_stop_and_ps() {
    let Some(c) = setup(20) else { return };
    let out = c.ok(&[
        "run", "-d", "--name", "ticker", "busybox", "sh", "-c", TICKER,
    ]);
    let id = out.stdout.trim().to_string();
    assert_eq!(id.len(), 64, "{out}");
    let ps = c.ok(&["ps"]);
    assert!(
        ps.stdout.contains(&id[..12]) && ps.stdout.contains("Up "),
        "{ps}"
    );
    // Follow until the container ends.
    let mut follow = c.spawn(&["logs", "-f", "ticker"]);
    std::thread::sleep(Duration::from_millis(500));
    let stop = c.ok(&["stop", "-t", "10", "ticker"]);
    assert_eq!(stop.stdout, "ticker\n");
    let mut text = String::new();
    follow
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert!(follow.wait().unwrap().success());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.first(), Some(&"start"), "{text}");
    assert_eq!(lines.last(), Some(&"bye"), "{text}");
    assert!(lines.contains(&"tick 3"), "{text}");
    // Exited with the trap's code, shown by ps -a (not by ps).
    let ps = c.ok(&["ps", "-a"]);
    assert!(ps.stdout.contains("Exited (3)"), "{ps}");
    assert!(!c.ok(&["ps"]).stdout.contains("ticker"));
    let json: serde_json::Value =
        serde_json::from_str(&c.ok(&["ps", "-a", "--format", "json"]).stdout).unwrap();
    assert_eq!(json[0]["Names"][0], "ticker");
    assert_eq!(json[0]["ExitCode"], 3);
    assert_eq!(json[0]["State"], "exited");
    // --tail counts lines from the end.
    let tail = c.ok(&["logs", "--tail", "2", "ticker"]);
    assert_eq!(tail.stdout.lines().last(), Some("bye"), "{tail}");
    assert_eq!(tail.stdout.lines().count(), 2, "{tail}");
    c.ok(&["rm", "ticker"]);
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

#[test]
fn stop_kills_what_ignores_the_stop_signal() {
    let Some(c) = setup(21) else { return };
    // sleep as pid 1 ignores SIGTERM (no handler): stop must SIGKILL it.
    c.ok(&[
        "run",
        "-d",
        "--name",
        "stubborn",
        "--network",
        "none",
        "busybox",
        "sleep",
        "1000",
    ]);
    let t = Instant::now();
    c.ok(&["stop", "-t", "1", "stubborn"]);
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    let v = c.inspect("stubborn");
    assert_eq!(v["state"]["status"], "exited");
    assert_eq!(v["state"]["exitCode"], 137);
    assert_eq!(v["state"]["signal"], 9);
}

#[test]
fn shim_outlives_corral_and_records_the_exit() {
    let Some(c) = setup(22) else { return };
    let t = Instant::now();
    c.ok(&[
        "run",
        "-d",
        "--name",
        "later",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "sleep 1; echo done; exit 9",
    ]);
    // `run -d` returned while the container still runs.
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    let v = c.inspect("later");
    assert_eq!(v["state"]["status"], "running", "{v}");
    let shim = v["shimPid"].as_i64().unwrap() as i32;
    assert!(corral_tests::host::pid_alive(shim));
    // The shim is nobody's child of ours: corral has exited and it was reparented.
    let stat = std::fs::read_to_string(format!("/proc/{shim}/stat")).unwrap();
    let ppid: i32 = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(ppid, std::process::id() as i32);
    assert!(c.wait_state("later", "exited", Duration::from_secs(20)));
    let v = c.inspect("later");
    assert_eq!(v["state"]["exitCode"], 9, "{v}");
    assert_eq!(c.ok(&["logs", "later"]).stdout, "done\n");
    assert!(corral_tests::host::wait_until(
        Duration::from_secs(5),
        || !corral_tests::host::pid_alive(shim)
    ));
    // The runtime's state went with the shim; the container's record stays.
    assert_eq!(std::fs::read_dir(c.runtime_root()).unwrap().count(), 0);
}

#[test]
fn rm_force_removes_a_running_container() {
    let Some(c) = setup(23) else { return };
    let id = c
        .ok(&["run", "-d", "--name", "victim", "busybox", "sleep", "1000"])
        .stdout
        .trim()
        .to_string();
    let pid = c.inspect("victim")["pid"].as_i64().unwrap() as i32;
    assert!(corral_tests::host::pid_alive(pid));
    let out = c.run(&["rm", "victim"]);
    out.assert_fail();
    assert!(out.stderr.contains("rm -f"), "{out}");
    let out = c.ok(&["rm", "-f", "victim"]);
    assert_eq!(out.stdout.trim(), id);
    assert!(!corral_tests::host::pid_alive(pid));
    assert_eq!(c.leftovers(), Vec::<String>::new());
    assert!(c
        .run(&["inspect", "victim"])
        .stderr
        .contains("no container named"));
}

#[test]
fn detached_rm_removes_itself_after_exit() {
    let Some(c) = setup(24) else { return };
    c.ok(&[
        "run",
        "-d",
        "--rm",
        "--name",
        "brief",
        "busybox",
        "sh",
        "-c",
        "sleep 0.3",
    ]);
    assert!(
        corral_tests::host::wait_until(Duration::from_secs(20), || c.leftovers().is_empty()),
        "left behind: {:?}",
        c.leftovers()
    );
}

#[test]
fn kill_and_exec() {
    let Some(c) = setup(25) else { return };
    c.ok(&[
        "run",
        "-d",
        "--name",
        "box",
        "--network",
        "none",
        "-e",
        "FROM_RUN=1",
        "busybox",
        "sh",
        "-c",
        "trap 'echo usr1; exit 4' USR1; while true; do sleep 0.1; done",
    ]);
    let out = c.run(&[
        "exec",
        "-e",
        "X=y",
        "-w",
        "/tmp",
        "box",
        "sh",
        "-c",
        "echo $X $FROM_RUN $(pwd); exit 6",
    ]);
    assert_eq!(out.code(), Some(6), "{out}");
    assert_eq!(out.stdout, "y 1 /tmp\n", "{out}");
    let out = c.ok(&["exec", "-u", "1000", "box", "id", "-u"]);
    assert_eq!(out.stdout, "1000\n");
    let out = c.ok(&["kill", "-s", "USR1", "box"]);
    assert_eq!(out.stdout, "box\n");
    assert!(c.wait_state("box", "exited", Duration::from_secs(10)));
    assert_eq!(c.inspect("box")["state"]["exitCode"], 4);
    let out = c.run(&["exec", "box", "true"]);
    out.assert_fail();
    assert!(out.stderr.contains("exited"), "{out}");
    let out = c.run(&["kill", "box"]);
    out.assert_fail();
}

#[test]
fn names_are_unique_and_ids_resolve_by_prefix() {
    let Some(c) = setup(26) else { return };
    let id = c
        .ok(&[
            "run",
            "-d",
            "--name",
            "one",
            "--network",
            "none",
            "busybox",
            "sleep",
            "1000",
        ])
        .stdout
        .trim()
        .to_string();
    let out = c.run(&[
        "run",
        "-d",
        "--name",
        "one",
        "--network",
        "none",
        "busybox",
        "true",
    ]);
    out.assert_fail();
    assert!(out.stderr.contains("already in use"), "{out}");
    assert_eq!(c.inspect(&id[..8])["name"], "one");
    // A generated name.
    let other = c
        .ok(&["run", "-d", "--network", "none", "busybox", "sleep", "1000"])
        .stdout
        .trim()
        .to_string();
    let name = c.inspect(&other)["name"].as_str().unwrap().to_string();
    assert!(name.contains('_'), "{name}");
    c.ok(&["rm", "-f", "one", &name]);
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

#[test]
fn log_rotation_keeps_the_newest_output() {
    let Some(c) = setup(27) else { return };
    let id = c
        .ok(&[
            "run",
            "-d",
            "--name",
            "chatty",
            "--network",
            "none",
            "--log-max-size",
            "1k",
            "--log-max-files",
            "3",
            "busybox",
            "sh",
            "-c",
            "for i in $(seq 1 200); do echo line $i; done",
        ])
        .stdout
        .trim()
        .to_string();
    assert!(c.wait_state("chatty", "exited", Duration::from_secs(20)));
    let dir = c.state_dir().join(&id);
    for f in ["ctr.log", "ctr.log.1", "ctr.log.2"] {
        let len = std::fs::metadata(dir.join(f))
            .unwrap_or_else(|e| panic!("{f}: {e}"))
            .len();
        assert!(len <= 1024, "{f} is {len} bytes");
    }
    assert!(!dir.join("ctr.log.3").exists());
    let logs = c.ok(&["logs", "chatty"]).stdout;
    let lines: Vec<&str> = logs.lines().collect();
    assert_eq!(lines.last(), Some(&"line 200"), "{logs}");
    // What is kept is a contiguous run of the newest lines.
    let first: usize = lines[0].trim_start_matches("line ").parse().unwrap();
    assert!(first > 1, "nothing was rotated away");
    let want: Vec<String> = (first..=200).map(|i| format!("line {i}")).collect();
    assert_eq!(lines, want.iter().map(String::as_str).collect::<Vec<_>>());
    let stamped = c
        .ok(&["logs", "--timestamps", "--tail", "1", "chatty"])
        .stdout;
    assert!(
        stamped.ends_with("Z line 200\n") && stamped.starts_with("20"),
        "{stamped}"
    );
}

#[test]
fn detached_terminal_shell_stays_up() {
    let Some(c) = setup(28) else { return };
    // -dit: a shell on a terminal nobody types into waits instead of exiting.
    c.ok(&[
        "run",
        "-dit",
        "--name",
        "shell",
        "--network",
        "none",
        "busybox",
        "sh",
    ]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.inspect("shell")["state"]["status"], "running");
    let out = c.ok(&["exec", "shell", "sh", "-c", "tty <&0 || ls -l /proc/1/fd/0"]);
    assert!(out.stdout.contains("/dev/pts/"), "{out}");
    c.ok(&["rm", "-f", "shell"]);
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

#[test]
fn exec_with_a_terminal() {
    let Some(c) = setup(29) else { return };
    if corral_tests::host::which("script").is_none() {
        eprintln!("SKIPPED: script(1) is not installed");
        return;
    }
    c.ok(&[
        "run",
        "-d",
        "--name",
        "box",
        "--network",
        "none",
        "busybox",
        "sleep",
        "1000",
    ]);
    let bin = c
        .command(&[] as &[&str])
        .get_program()
        .to_string_lossy()
        .into_owned();
    let mut cmd = std::process::Command::new("script");
    cmd.args([
        "-qec",
        &format!("{bin} exec -t box sh -c 'tty; exit 3'"),
        "/dev/null",
    ]);
    for (k, v) in c.command(&[] as &[&str]).get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let out =
        corral_tests::runtime::run_command(cmd, &c.path(""), "script", Duration::from_secs(60));
    assert!(out.stdout.contains("/dev/pts/"), "{out}");
    assert_eq!(out.code(), Some(3), "{out}");
}
