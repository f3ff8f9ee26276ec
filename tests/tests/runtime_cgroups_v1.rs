//! cgroup v1 resources: values in the cgroup files and limits enforced from inside.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use corral_tests::host::{cgroup_v1_root, test_cgroup_dir, wait_until, CGROUP_PARENT};
use corral_tests::{runtime_for, skip, Bundle, Runtime};
use serde_json::json;

// Generous: the OOM test reclaims under memory pressure, slow when the
// machine is busy (the QEMU v2 guest test may run beside it).
const T: Duration = Duration::from_secs(90);
const MIB: i64 = 1024 * 1024;

/// True when the memory etc. controllers are on cgroup v1 (this suite's host).
fn v1(controllers: &[&str]) -> Result<(), String> {
    for c in controllers {
        if cgroup_v1_root(c).is_none() {
            return Err(format!(
                "cgroup v1 controller {c} is not mounted (v2-only host?)"
            ));
        }
    }
    Ok(())
}

fn read(dir: &Path, file: &str) -> String {
    let p = dir.join(file);
    fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

#[track_caller]
fn cg(controller: &str, id: &str) -> PathBuf {
    let d = test_cgroup_dir(controller, id).expect("controller mounted");
    assert!(
        d.is_dir(),
        "cgroup {} was not created (cgroupsPath /{CGROUP_PARENT}/{id})",
        d.display()
    );
    d
}

/// Start a container that runs `script` then sleeps; wait until it printed `done`.
#[track_caller]
fn run_then_hold(rt: &Runtime, b: &mut Bundle, script: &str) -> String {
    // exec: holding the container must not need a fork (the pids test uses them up).
    b.sh(&format!("{script}; echo done; exec sleep 120"));
    let id = rt.start_container(b);
    assert!(
        rt.wait_output(&id, "done", T),
        "script did not finish: out {:?} err {:?}",
        rt.output(&id),
        rt.output_err(&id)
    );
    id
}

#[test]
fn process_is_in_its_cgroups() {
    let Some(rt) = runtime_for("cg-member") else {
        return;
    };
    if let Err(e) = v1(&["memory", "pids", "cpu"]) {
        skip!("{e}");
    }
    let mut b = Bundle::new();
    let id = rt.start_sleeper(&mut b);
    let pid = rt.state_json(&id)["pid"].as_i64().expect("pid");
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read /proc/pid/cgroup");
    for c in ["memory", "pids", "cpu", "devices", "freezer"] {
        let line = cgroups.lines().find(|l| {
            l.split(':')
                .nth(1)
                .is_some_and(|cs| cs.split(',').any(|x| x == c))
        });
        let want = format!("/{CGROUP_PARENT}/{id}");
        assert!(
            line.is_some_and(|l| l.ends_with(&want)),
            "{c} cgroup of the container is not {want}:\n{cgroups}"
        );
    }
    let procs = read(&cg("pids", &id), "cgroup.procs");
    assert!(
        procs.lines().any(|p| p == pid.to_string()),
        "pid {pid} not in cgroup.procs: {procs}"
    );
}

#[test]
fn memory_limit_oom_kills() {
    let Some(rt) = runtime_for("cg-oom") else {
        return;
    };
    if let Err(e) = v1(&["memory"]) {
        skip!("{e}");
    }
    let mut b = Bundle::new();
    let mut mem = json!({"limit": 32 * MIB});
    if cgroup_v1_root("memory").is_some_and(|r| r.join("memory.memsw.limit_in_bytes").exists()) {
        mem["swap"] = json!(32 * MIB);
    }
    b.resource("memory", mem);
    let id = run_then_hold(
        &rt,
        &mut b,
        "head -c 8m /dev/zero | tail > /dev/null; echo small=$?; \
         head -c 64m /dev/zero | tail > /dev/null; echo big=$?; \
         echo limit=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null)",
    );
    let out = rt.output(&id);
    assert!(
        out.contains("small=0"),
        "8 MiB under a 32 MiB limit failed: {out:?}"
    );
    assert!(
        out.contains("big=137"),
        "200 MiB in a 32 MiB container was not OOM-killed (137 = SIGKILL): {out:?}"
    );
    let d = cg("memory", &id);
    assert_eq!(read(&d, "memory.limit_in_bytes"), (32 * MIB).to_string());
    let oom = read(&d, "memory.oom_control");
    let kills: u64 = oom
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(kills >= 1, "memory.oom_control reports no OOM kill:\n{oom}");
}

#[test]
fn memory_reservation_and_swap_values() {
    let Some(rt) = runtime_for("cg-memvals") else {
        return;
    };
    if let Err(e) = v1(&["memory"]) {
        skip!("{e}");
    }
    let memsw =
        cgroup_v1_root("memory").is_some_and(|r| r.join("memory.memsw.limit_in_bytes").exists());
    let mut b = Bundle::new();
    let mut mem = json!({"limit": 64 * MIB, "reservation": 32 * MIB});
    if memsw {
        mem["swap"] = json!(96 * MIB);
    }
    b.resource("memory", mem);
    let id = rt.start_sleeper(&mut b);
    let d = cg("memory", &id);
    assert_eq!(read(&d, "memory.limit_in_bytes"), (64 * MIB).to_string());
    assert_eq!(
        read(&d, "memory.soft_limit_in_bytes"),
        (32 * MIB).to_string()
    );
    if memsw {
        assert_eq!(
            read(&d, "memory.memsw.limit_in_bytes"),
            (96 * MIB).to_string()
        );
    } else {
        eprintln!("note: no swap accounting (memory.memsw.*): swap not checked");
    }
}

#[test]
fn pids_limit_caps_forks() {
    let Some(rt) = runtime_for("cg-pids") else {
        return;
    };
    if let Err(e) = v1(&["pids"]) {
        skip!("{e}");
    }
    let mut b = Bundle::new();
    b.resource("pids", json!({"limit": 16}));
    // Try to start 60 sleepers; with at most 16 tasks most forks must fail. ash
    // exits when a fork fails, hence the subshell; counting uses no fork.
    let id = run_then_hold(
        &rt,
        &mut b,
        "( i=0; while [ $i -lt 60 ]; do sleep 100 & i=$((i+1)); done ) 2>/dev/null; \
         set -- /proc/[0-9]*; echo running=$#",
    );
    let d = cg("pids", &id);
    assert_eq!(read(&d, "pids.max"), "16");
    let current: u64 = read(&d, "pids.current").parse().unwrap_or(999);
    assert!(current <= 16, "pids.current {current} above the limit");
    let events = fs::read_to_string(d.join("pids.events")).unwrap_or_default();
    let failures: u64 = events
        .lines()
        .find_map(|l| l.strip_prefix("max "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        failures > 0,
        "no fork was refused (pids.events: {events:?}); output {:?}",
        rt.output(&id)
    );
    let out = rt.output(&id);
    let running: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("running="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(999);
    assert!(
        running <= 16,
        "{running} processes visible in a container limited to 16: {out:?}"
    );
}

#[test]
fn cpu_shares_quota_period_values() {
    let Some(rt) = runtime_for("cg-cpu") else {
        return;
    };
    if let Err(e) = v1(&["cpu", "cpuset"]) {
        skip!("{e}");
    }
    let mut b = Bundle::new();
    b.resource(
        "cpu",
        json!({"shares": 512, "quota": 20000, "period": 100000, "cpus": "0", "mems": "0"}),
    );
    let id = run_then_hold(
        &rt,
        &mut b,
        "grep Cpus_allowed_list /proc/self/status; timeout 1 sh -c 'while :; do :; done'",
    );
    let d = cg("cpu", &id);
    assert_eq!(read(&d, "cpu.shares"), "512");
    assert_eq!(read(&d, "cpu.cfs_quota_us"), "20000");
    assert_eq!(read(&d, "cpu.cfs_period_us"), "100000");
    let stat = read(&d, "cpu.stat");
    let throttled: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("nr_throttled "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        throttled > 0,
        "a busy loop under a 20% quota was never throttled:\n{stat}"
    );
    let cs = cg("cpuset", &id);
    assert_eq!(read(&cs, "cpuset.cpus"), "0");
    assert_eq!(read(&cs, "cpuset.mems"), "0");
    let out = rt.output(&id);
    assert!(
        out.contains("Cpus_allowed_list:\t0\n"),
        "cpuset not applied to the process: {out:?}"
    );
}

#[test]
fn blkio_throttle_and_weight() {
    let Some(rt) = runtime_for("cg-blkio") else {
        return;
    };
    if let Err(e) = v1(&["blkio"]) {
        skip!("{e}");
    }
    let root = cgroup_v1_root("blkio").expect("blkio");
    let Some(dev) = root_block_device() else {
        skip!("cannot find the major:minor of the root block device")
    };
    let has_weight = root.join("blkio.weight").exists();
    let mut b = Bundle::new();
    let mut blkio = json!({"throttleReadBpsDevice": [{"major": dev.0, "minor": dev.1, "rate": 1048576}],
                           "throttleWriteIOPSDevice": [{"major": dev.0, "minor": dev.1, "rate": 300}]});
    if has_weight {
        blkio["weight"] = json!(300);
    }
    b.resource("blockIO", blkio);
    let id = rt.start_sleeper(&mut b);
    let d = cg("blkio", &id);
    assert_eq!(
        read(&d, "blkio.throttle.read_bps_device"),
        format!("{}:{} 1048576", dev.0, dev.1)
    );
    assert_eq!(
        read(&d, "blkio.throttle.write_iops_device"),
        format!("{}:{} 300", dev.0, dev.1)
    );
    if has_weight {
        assert_eq!(read(&d, "blkio.weight"), "300");
    } else {
        eprintln!("note: this kernel has no blkio.weight (no CFQ/BFQ weight): weight not checked");
    }
}

fn root_block_device() -> Option<(u64, u64)> {
    let mi = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let line = mi.lines().find(|l| l.split(' ').nth(4) == Some("/"))?;
    let (maj, min) = line.split(' ').nth(2)?.split_once(':')?;
    let (maj, min) = (maj.parse().ok()?, min.parse().ok()?);
    // Only a real block device can be throttled (not overlay/tmpfs with major 0).
    (maj != 0).then_some((maj, min))
}

#[test]
fn relative_cgroups_path() {
    let Some(rt) = runtime_for("cg-relative") else {
        return;
    };
    if let Err(e) = v1(&["pids"]) {
        skip!("{e}");
    }
    let mut b = Bundle::new();
    b.args(&["sleep", "120"])
        .resource("pids", json!({"limit": 42}));
    let id = rt.id();
    b.cgroups_path(&format!("{CGROUP_PARENT}/{id}"));
    rt.create(&id, &b).assert_ok();
    let pid = rt.state_json(&id)["pid"].as_i64().expect("pid");
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read");
    let own = fs::read_to_string("/proc/self/cgroup").expect("read");
    let own_pids = own
        .lines()
        .find(|l| l.split(':').nth(1) == Some("pids"))
        .and_then(|l| l.split(':').nth(2))
        .unwrap_or("/");
    let want = format!("{}/{CGROUP_PARENT}/{id}", own_pids.trim_end_matches('/'));
    let line = cgroups
        .lines()
        .find(|l| l.split(':').nth(1) == Some("pids"))
        .unwrap_or_default();
    assert!(
        line.ends_with(&format!(":{want}")),
        "relative cgroupsPath must be below the runtime's cgroup {own_pids:?}: {line:?}"
    );
    let dir = cgroup_v1_root("pids")
        .expect("pids")
        .join(want.trim_start_matches('/'));
    assert_eq!(read(&dir, "pids.max"), "42");
    rt.delete_force(&id).assert_ok();
    assert!(
        wait_until(Duration::from_secs(5), || !dir.exists()),
        "cgroup {} left after delete",
        dir.display()
    );
}

#[test]
fn cgroups_removed_on_delete() {
    let Some(rt) = runtime_for("cg-cleanup") else {
        return;
    };
    if let Err(e) = v1(&["memory", "pids"]) {
        skip!("{e}");
    }
    let mut b = Bundle::new();
    b.resource("memory", json!({"limit": 64 * MIB}))
        .resource("pids", json!({"limit": 50}));
    let id = rt.start_sleeper(&mut b);
    let dirs = corral_tests::host::existing_test_cgroups(&id);
    assert!(dirs.len() >= 2, "expected cgroups for {id}, found {dirs:?}");
    rt.delete_force(&id).assert_ok();
    assert!(
        wait_until(Duration::from_secs(5), || {
            corral_tests::host::existing_test_cgroups(&id).is_empty()
        }),
        "cgroups left after delete --force: {:?}",
        corral_tests::host::existing_test_cgroups(&id)
    );
}
