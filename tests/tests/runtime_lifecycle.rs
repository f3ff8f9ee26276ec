//! Lifecycle rules: create/start/state/kill/delete/run, ids, concurrency,
//! list/ps/pause/resume.

use std::time::Duration;

use corral_tests::host::{pid_alive, wait_until};
use corral_tests::runtime::VERB_TIMEOUT;
use corral_tests::{runtime_for, Bundle, Kind};
use serde_json::Value;

const T: Duration = Duration::from_secs(15);

#[test]
fn create_start_state_and_delete() {
    let Some(rt) = runtime_for("lc-basic") else {
        return;
    };
    let mut b = Bundle::new();
    b.sh("echo started-$$; sleep 120");
    let id = rt.id();
    rt.create(&id, &b).assert_ok();

    let st = rt.state_json(&id);
    assert_eq!(st["id"], id.as_str(), "state.id: {st}");
    assert_eq!(st["status"], "created", "state.status after create: {st}");
    assert!(
        st["ociVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "state.ociVersion: {st}"
    );
    let pid = st["pid"].as_i64().unwrap_or(0) as i32;
    assert!(
        pid > 0,
        "state.pid after create must be the container's init: {st}"
    );
    assert!(pid_alive(pid), "pid {pid} from state is not alive");
    let bundle = b.path().canonicalize().expect("canonical bundle");
    assert_eq!(
        st["bundle"].as_str().map(std::path::PathBuf::from),
        Some(bundle),
        "state.bundle: {st}"
    );
    assert!(
        !rt.output(&id).contains("started"),
        "the process ran before start: {:?}",
        rt.output(&id)
    );

    rt.start(&id).assert_ok();
    assert!(
        rt.wait_output(&id, "started-1", T),
        "container output after start: {:?}",
        rt.output(&id)
    );
    let st = rt.state_json(&id);
    assert_eq!(st["status"], "running", "state.status after start: {st}");
    assert_eq!(
        st["pid"].as_i64(),
        Some(pid as i64),
        "pid changed across start: {st}"
    );

    rt.kill(&id, "KILL").assert_ok();
    assert!(
        rt.wait_status(&id, "stopped", T),
        "not stopped after kill KILL: {:?}",
        rt.status(&id)
    );
    assert!(
        wait_until(T, || !pid_alive(pid)),
        "pid {pid} still alive after stop"
    );
    rt.delete(&id).assert_ok();
    rt.state(&id).assert_fail();
    let left = rt.leftovers(&id);
    assert!(left.is_empty(), "after delete: {left:?}");
}

#[test]
fn state_carries_annotations() {
    let Some(rt) = runtime_for("lc-annot") else {
        return;
    };
    let mut b = Bundle::new();
    b.args(&["sleep", "120"])
        .annotation("org.corral.test", "value-1")
        .annotation("io.example/other", "x y");
    let id = rt.id();
    rt.create(&id, &b).assert_ok();
    let st = rt.state_json(&id);
    assert_eq!(st["annotations"]["org.corral.test"], "value-1", "{st}");
    assert_eq!(st["annotations"]["io.example/other"], "x y", "{st}");
}

#[test]
fn kill_a_created_container() {
    // Engines kill containers that were created but never started.
    let Some(rt) = runtime_for("lc-killcreated") else {
        return;
    };
    let mut b = Bundle::new();
    b.args(&["sleep", "120"]);
    let id = rt.id();
    rt.create(&id, &b).assert_ok();
    let pid = rt.state_json(&id)["pid"].as_i64().unwrap_or(0) as i32;
    rt.kill(&id, "KILL").assert_ok();
    assert!(
        rt.wait_status(&id, "stopped", T),
        "created container not stopped by kill KILL: {:?}",
        rt.status(&id)
    );
    assert!(wait_until(T, || !pid_alive(pid)), "init {pid} survived");
    rt.delete(&id).assert_ok();
    let left = rt.leftovers(&id);
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn stopped_after_process_exits() {
    let Some(rt) = runtime_for("lc-exit") else {
        return;
    };
    let mut b = Bundle::new();
    b.args(&["true"]);
    let id = rt.id();
    rt.create(&id, &b).assert_ok();
    rt.start(&id).assert_ok();
    assert!(
        rt.wait_status(&id, "stopped", T),
        "status after the process exited: {:?}",
        rt.status(&id)
    );
    rt.start(&id).assert_fail();
    rt.delete(&id).assert_ok();
    rt.state(&id).assert_fail();
}

#[test]
fn start_twice_is_refused() {
    let Some(rt) = runtime_for("lc-start2") else {
        return;
    };
    let mut b = Bundle::new();
    let id = rt.start_sleeper(&mut b);
    let pid = rt.state_json(&id)["pid"].as_i64();
    let again = rt.start(&id);
    again.assert_fail();
    let st = rt.state_json(&id);
    assert_eq!(
        st["status"], "running",
        "second start changed the container: {st}"
    );
    assert_eq!(st["pid"].as_i64(), pid);
}

#[test]
fn delete_running_needs_force() {
    let Some(rt) = runtime_for("lc-delete") else {
        return;
    };
    let mut b = Bundle::new();
    let id = rt.start_sleeper(&mut b);
    let pid = rt.state_json(&id)["pid"].as_i64().unwrap_or(0) as i32;
    rt.delete(&id).assert_fail();
    assert_eq!(
        rt.status(&id).as_deref(),
        Some("running"),
        "delete without --force touched the container"
    );
    assert!(pid_alive(pid));
    rt.delete_force(&id).assert_ok();
    rt.state(&id).assert_fail();
    assert!(
        wait_until(T, || !pid_alive(pid)),
        "pid {pid} survived delete --force"
    );
    let left = rt.leftovers(&id);
    assert!(left.is_empty(), "after delete --force: {left:?}");
}

#[test]
fn reused_id_is_refused() {
    let Some(rt) = runtime_for("lc-reuse") else {
        return;
    };
    let mut b = Bundle::new();
    b.args(&["sleep", "120"]);
    let id = rt.id();
    rt.create(&id, &b).assert_ok();
    let other = Bundle::new();
    let out = rt.create(&id, &other);
    out.assert_fail();
    let st = rt.state_json(&id);
    assert_eq!(st["status"], "created", "{st}");
    let bundle = b.path().canonicalize().expect("canonical bundle");
    assert_eq!(
        st["bundle"].as_str().map(std::path::PathBuf::from),
        Some(bundle),
        "the first container was replaced: {st}"
    );
}

#[test]
fn kill_with_signal_names_and_numbers() {
    let Some(rt) = runtime_for("lc-kill") else {
        return;
    };
    let mut b = Bundle::new();
    b.sh(
        "trap 'echo got-USR1' USR1; trap 'echo got-USR2' USR2; trap 'echo got-HUP' HUP; \
         trap 'echo got-TERM; exit 3' TERM; echo ready; while :; do sleep 0.05; done",
    );
    let id = rt.start_container(&b);
    assert!(
        rt.wait_output(&id, "ready", T),
        "no ready: {:?}",
        rt.output(&id)
    );
    for (sig, want) in [
        ("USR1", "got-USR1"),
        ("SIGUSR2", "got-USR2"),
        ("1", "got-HUP"),
    ] {
        rt.kill(&id, sig).assert_ok();
        assert!(
            rt.wait_output(&id, want, T),
            "after kill {sig}: output {:?}",
            rt.output(&id)
        );
    }
    // No signal argument: SIGTERM.
    rt.cmd_for(&id, &["kill", &id]).assert_ok();
    assert!(
        rt.wait_output(&id, "got-TERM", T),
        "default signal is not TERM: {:?}",
        rt.output(&id)
    );
    assert!(
        rt.wait_status(&id, "stopped", T),
        "not stopped after TERM: {:?}",
        rt.status(&id)
    );
    rt.kill(&id, "KILL").assert_fail();
}

#[test]
fn kill_all_reaches_every_process() {
    let Some(rt) = runtime_for("lc-killall") else {
        return;
    };
    let mut b = Bundle::new();
    b.sh("sleep 111 & sleep 112 & echo ready; wait");
    let id = rt.start_container(&b);
    assert!(rt.wait_output(&id, "ready", T));
    let ps = rt.ps_json(&id);
    ps.assert_ok();
    let pids: Vec<i32> = serde_json::from_str::<Value>(&ps.stdout)
        .unwrap_or_else(|e| panic!("ps json ({e}): {ps}"))
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_i64().map(|p| p as i32))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        pids.len() >= 3,
        "ps should list sh and two sleeps: {pids:?}"
    );
    rt.cmd_for(&id, &["kill", "--all", &id, "KILL"]).assert_ok();
    assert!(
        wait_until(T, || pids.iter().all(|p| !pid_alive(*p))),
        "alive after kill --all: {:?}",
        pids.iter().filter(|p| pid_alive(**p)).collect::<Vec<_>>()
    );
    assert!(rt.wait_status(&id, "stopped", T));
}

#[test]
fn run_returns_exit_code() {
    let Some(rt) = runtime_for("lc-run") else {
        return;
    };
    let mut b = Bundle::new();
    let out = rt.run_sh(&mut b, "echo out-$$; echo err >&2; exit 7");
    assert_eq!(
        out.code(),
        Some(7),
        "run must return the container's exit code:\n{out}"
    );
    assert!(
        out.stdout.contains("out-1"),
        "container stdout not passed through:\n{out}"
    );
    assert!(
        out.stderr.contains("err"),
        "container stderr not passed through:\n{out}"
    );
    let out = rt.run_sh(&mut b, "exit 0");
    out.assert_ok();
}

#[test]
fn run_returns_128_plus_signal_when_killed() {
    let Some(rt) = runtime_for("lc-runsig") else {
        return;
    };
    let mut b = Bundle::new();
    b.sh("echo ready; exec sleep 120");
    let id = rt.id();
    rt.prepare(&id, &b);
    let bpath = b.path().to_string_lossy().into_owned();
    let child = rt.spawn_for(Some(&id), &["run", "--bundle", &bpath, &id]);
    assert!(
        wait_until(T, || child.stdout_so_far().contains("ready")),
        "no ready: {:?}",
        child.stdout_so_far()
    );
    assert!(wait_until(T, || rt.status(&id).as_deref() == Some("running")));
    rt.kill(&id, "KILL").assert_ok();
    let out = child.wait(T);
    assert_eq!(
        out.code(),
        Some(137),
        "run of a container killed by SIGKILL must exit 128+9:\n{out}"
    );
}

#[test]
fn run_forwards_signals() {
    let Some(rt) = runtime_for("lc-fwd") else {
        return;
    };
    let mut b = Bundle::new();
    b.sh("trap 'echo got-TERM; exit 42' TERM; echo ready; while :; do sleep 0.05; done");
    let id = rt.id();
    rt.prepare(&id, &b);
    let bpath = b.path().to_string_lossy().into_owned();
    let child = rt.spawn_for(Some(&id), &["run", "--bundle", &bpath, &id]);
    assert!(
        wait_until(T, || child.stdout_so_far().contains("ready")),
        "no ready: {:?}",
        child.stdout_so_far()
    );
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(child.pid(), libc::SIGTERM) };
    let out = child.wait(T);
    assert!(
        out.stdout.contains("got-TERM"),
        "SIGTERM was not forwarded to the container:\n{out}"
    );
    assert_eq!(out.code(), Some(42), "{out}");
}

#[test]
fn run_detached() {
    let Some(rt) = runtime_for("lc-rund") else {
        return;
    };
    let mut b = Bundle::new();
    b.sh("echo detached-ok; sleep 120");
    let id = rt.id();
    let out = rt.run_detached(&id, &b);
    out.assert_ok();
    assert!(
        out.elapsed < Duration::from_secs(10),
        "run -d did not return promptly: {out}"
    );
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
    assert!(
        rt.wait_output(&id, "detached-ok", T),
        "{:?}",
        rt.output(&id)
    );
}

#[test]
fn options_before_or_after_the_id() {
    let Some(rt) = runtime_for("lc-argorder") else {
        return;
    };
    let mut b = Bundle::new();
    b.args(&["sleep", "120"]);
    let bpath = b.path().to_string_lossy().into_owned();
    let canon = b.path().canonicalize().expect("canonical");
    for form in 0..3 {
        if form == 1 && rt.kind() == Kind::Crun {
            eprintln!("note: crun does not accept options after the id; `create ID --bundle B` not checked");
            continue;
        }
        let id = rt.id();
        rt.prepare(&id, &b);
        let args: Vec<&str> = match form {
            0 => vec!["create", "--bundle", &bpath, &id],
            1 => vec!["create", &id, "--bundle", &bpath],
            _ => vec!["create", "-b", &bpath, &id],
        };
        let out = rt.cmd_for(&id, &args);
        assert!(out.ok(), "create form {args:?} failed:\n{out}");
        let st = rt.state_json(&id);
        assert_eq!(
            st["bundle"].as_str().map(std::path::PathBuf::from),
            Some(canon.clone()),
            "{args:?}: {st}"
        );
        let delete: Vec<&str> = if rt.kind() == Kind::Crun {
            // crun does not take options after the id of delete.
            vec!["delete", "--force", &id]
        } else {
            vec!["delete", &id, "--force"]
        };
        let out = rt.cmd_for(&id, &delete);
        assert!(out.ok(), "{delete:?}:\n{out}");
        rt.state(&id).assert_fail();
    }
}

#[test]
fn accepts_oci_versions() {
    let Some(rt) = runtime_for("lc-ociver") else {
        return;
    };
    let mut versions = vec!["1.0.0", "1.0.1", "1.0.2", "1.0.2-dev", "1.1.0"];
    match rt.kind() {
        Kind::Corral => versions.extend(["1.2.0", "1.2.1", "1.3.0"]),
        Kind::Crun => eprintln!(
            "note: crun 1.8 knows ociVersion up to 1.1; 1.2/1.3 only checked on corral-runtime"
        ),
        _ => {
            versions.push("1.2.0");
            eprintln!("note: ociVersion 1.2.1/1.3.0 only checked on corral-runtime");
        }
    }
    for v in versions {
        let mut b = Bundle::new();
        b.oci_version(v);
        let out = rt.run_sh(&mut b, "echo ran-$$");
        assert!(
            out.ok() && out.stdout.contains("ran-1"),
            "ociVersion {v} refused:\n{out}"
        );
    }
}

#[test]
fn parallel_creates_with_distinct_ids() {
    let Some(rt) = runtime_for("lc-parallel") else {
        return;
    };
    const N: usize = 8;
    let bundles: Vec<Bundle> = (0..N)
        .map(|_| {
            let mut b = Bundle::new();
            b.args(&["sleep", "120"]);
            b
        })
        .collect();
    let ids: Vec<String> = (0..N).map(|_| rt.id()).collect();
    std::thread::scope(|s| {
        let hs: Vec<_> = ids
            .iter()
            .zip(&bundles)
            .map(|(id, b)| s.spawn(|| rt.create(id, b)))
            .collect();
        for (h, id) in hs.into_iter().zip(&ids) {
            let out = h.join().expect("thread");
            assert!(out.ok(), "parallel create of {id} failed:\n{out}");
        }
    });
    let list = rt.list(true);
    list.assert_ok();
    let v: Value =
        serde_json::from_str(&list.stdout).unwrap_or_else(|e| panic!("list json ({e}): {list}"));
    for id in &ids {
        let st = rt.state_json(id);
        assert_eq!(st["status"], "created", "{st}");
        assert!(
            v.as_array()
                .is_some_and(|a| a.iter().any(|c| c["id"] == id.as_str())),
            "{id} missing in list: {v}"
        );
    }
    let pids: std::collections::HashSet<i64> = ids
        .iter()
        .map(|id| rt.state_json(id)["pid"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(pids.len(), N, "containers share pids: {pids:?}");
}

#[test]
fn concurrent_verbs_on_one_id_are_serialized() {
    let Some(rt) = runtime_for("lc-concurrent") else {
        return;
    };
    let mut b = Bundle::new();
    b.args(&["sleep", "120"]);
    let id = rt.id();
    rt.create(&id, &b).assert_ok();
    let outs: Vec<(String, corral_tests::Out)> = std::thread::scope(|s| {
        let mut hs = Vec::new();
        for i in 0..12 {
            let (rt, id) = (&rt, &id);
            hs.push(s.spawn(move || {
                let verb = match i % 4 {
                    0 => "start",
                    1 | 2 => "state",
                    _ => "ps",
                };
                let out = if verb == "ps" {
                    rt.ps_json(id)
                } else {
                    rt.cmd_for(id, &[verb, id])
                };
                (verb.to_string(), out)
            }));
        }
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let mut starts = 0;
    for (verb, out) in &outs {
        assert!(
            !out.timed_out && out.signal().is_none(),
            "{verb} crashed or hung:\n{out}"
        );
        assert!(!out.all().contains("panicked"), "{verb} panicked:\n{out}");
        if verb == "start" && out.ok() {
            starts += 1;
        }
        if verb == "state" {
            out.assert_ok();
            let st: Value = serde_json::from_str(&out.stdout)
                .unwrap_or_else(|e| panic!("state not JSON ({e}):\n{out}"));
            assert!(
                matches!(st["status"].as_str(), Some("created" | "running")),
                "{st}"
            );
        }
    }
    assert_eq!(
        starts, 1,
        "exactly one concurrent start must win: {outs:#?}"
    );
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
    rt.delete_force(&id).assert_ok();
    let left = rt.leftovers(&id);
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn list_table_and_json() {
    let Some(rt) = runtime_for("lc-list") else {
        return;
    };
    let mut b = Bundle::new();
    let id = rt.start_sleeper(&mut b);
    let pid = rt.state_json(&id)["pid"].as_i64().expect("pid");
    let t = rt.list(false);
    t.assert_ok();
    let header = t.stdout.lines().next().unwrap_or_default();
    for col in ["ID", "PID", "STATUS", "BUNDLE"] {
        assert!(header.contains(col), "list header lacks {col}: {header:?}");
    }
    let row = t
        .stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id.as_str()));
    let row = row.unwrap_or_else(|| panic!("no row for {id}:\n{t}"));
    assert!(
        row.contains("running") && row.contains(&pid.to_string()),
        "row: {row:?}"
    );

    let j = rt.list(true);
    j.assert_ok();
    let v: Value =
        serde_json::from_str(&j.stdout).unwrap_or_else(|e| panic!("list json ({e}): {j}"));
    let c = v
        .as_array()
        .and_then(|a| a.iter().find(|c| c["id"] == id.as_str()))
        .unwrap_or_else(|| panic!("{id} not in {v}"));
    assert_eq!(c["status"], "running", "{c}");
    assert_eq!(c["pid"].as_i64(), Some(pid), "{c}");
    assert!(c["bundle"].as_str().is_some(), "{c}");
}

#[test]
fn ps_lists_container_processes() {
    let Some(rt) = runtime_for("lc-ps") else {
        return;
    };
    let mut b = Bundle::new();
    let id = rt.start_sleeper(&mut b);
    let pid = rt.state_json(&id)["pid"].as_i64().expect("pid");
    let ps = rt.ps_json(&id);
    ps.assert_ok();
    let v: Value =
        serde_json::from_str(&ps.stdout).unwrap_or_else(|e| panic!("ps json ({e}): {ps}"));
    assert_eq!(
        v.as_array().map(|a| a.contains(&Value::from(pid))),
        Some(true),
        "ps {v} lacks init pid {pid}"
    );
}

#[test]
fn pause_stops_progress_and_resume_restarts_it() {
    let Some(rt) = runtime_for("lc-pause") else {
        return;
    };
    if corral_tests::host::cgroup_v1_root("freezer").is_none()
        && !std::path::Path::new("/sys/fs/cgroup/cgroup.freeze").exists()
    {
        corral_tests::skip!("no freezer cgroup on this host");
    }
    let mut b = Bundle::new();
    b.sh("i=0; while :; do i=$((i+1)); echo $i > /tmp/counter.new; mv /tmp/counter.new /tmp/counter; done");
    let id = rt.start_container(&b);
    let counter = || {
        b.read_rootfs_file("tmp/counter")
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(
        wait_until(T, || counter() > 10),
        "counter does not move: {}",
        counter()
    );
    rt.pause(&id).assert_ok();
    assert_eq!(rt.status(&id).as_deref(), Some("paused"));
    std::thread::sleep(Duration::from_millis(100));
    let a = counter();
    std::thread::sleep(Duration::from_millis(500));
    let c = counter();
    assert_eq!(a, c, "counter moved while paused");
    rt.resume(&id).assert_ok();
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
    assert!(
        wait_until(T, || counter() > c + 10),
        "counter did not move after resume"
    );
    rt.pause(&id).assert_ok();
    // A paused container can be force-deleted.
    rt.delete_force(&id).assert_ok();
    let left = rt.leftovers(&id);
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn delete_runs_after_stop_and_frees_the_id() {
    let Some(rt) = runtime_for("lc-reid") else {
        return;
    };
    let mut b = Bundle::new();
    b.args(&["true"]);
    let id = rt.id();
    rt.create(&id, &b).assert_ok();
    rt.start(&id).assert_ok();
    assert!(rt.wait_status(&id, "stopped", VERB_TIMEOUT));
    rt.delete(&id).assert_ok();
    // The id can be used again once deleted.
    rt.create(&id, &b).assert_ok();
    assert_eq!(rt.status(&id).as_deref(), Some("created"));
}
