//! Namespaces created, joined by path, user namespace mappings, sysctl.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use corral_tests::host::{host_ns, ns_inode, status_field, NetNs};
use corral_tests::{runtime_for, skip, Bundle};

const KINDS: [&str; 7] = ["pid", "net", "ipc", "uts", "mnt", "cgroup", "user"];

fn spec_name(kind: &str) -> &str {
    match kind {
        "net" => "network",
        "mnt" => "mount",
        k => k,
    }
}

/// ns links as seen from inside: kind -> "net:[4026...]".
fn ns_links(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("ns-").and_then(|r| r.split_once('=')))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

fn ns_script() -> String {
    KINDS
        .iter()
        .map(|k| format!("echo ns-{k}=$(readlink /proc/self/ns/{k});"))
        .collect()
}

#[track_caller]
fn check_namespaces(b: &mut Bundle, created: &[&str], test: &str) {
    let Some(rt) = runtime_for(test) else { return };
    let names: Vec<&str> = created.iter().map(|k| spec_name(k)).collect();
    b.namespaces(&names);
    let out = rt.run_sh(b, &ns_script());
    out.assert_ok();
    let links = ns_links(&out.stdout);
    assert_eq!(links.len(), KINDS.len(), "{out}");
    for (kind, inside) in links {
        let host = host_ns(&kind);
        assert!(!inside.is_empty(), "no /proc/self/ns/{kind} inside: {out}");
        if created.contains(&kind.as_str()) {
            assert_ne!(inside, host, "{kind} namespace was not created: {out}");
        } else {
            assert_eq!(
                inside, host,
                "{kind} namespace is not the host's though not configured: {out}"
            );
        }
    }
}

#[test]
fn default_namespaces_are_new() {
    let mut b = Bundle::new();
    check_namespaces(&mut b, &["pid", "net", "ipc", "uts", "mnt"], "ns-default");
}

#[test]
fn cgroup_namespace_is_new_when_asked() {
    let mut b = Bundle::new();
    check_namespaces(
        &mut b,
        &["pid", "net", "ipc", "uts", "mnt", "cgroup"],
        "ns-cgroup",
    );
}

#[test]
fn host_network_when_not_configured() {
    let mut b = Bundle::new();
    check_namespaces(&mut b, &["pid", "ipc", "uts", "mnt"], "ns-hostnet");
}

#[test]
fn pid_namespace_shows_only_container_processes() {
    let Some(rt) = runtime_for("ns-pidonly") else {
        return;
    };
    let mut b = Bundle::new();
    let out = rt.run_sh(
        &mut b,
        "sleep 30 & ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '; echo; kill %1",
    );
    out.assert_ok();
    let pids: Vec<u32> = out
        .stdout
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    // Only the shell, sleep and the pipeline: small pid numbers, no host processes.
    assert!(
        pids.len() <= 8 && pids.contains(&1) && pids.iter().all(|p| *p < 100),
        "processes visible in a new pid namespace: {out}"
    );
}

#[test]
fn new_network_namespace_has_only_loopback() {
    let Some(rt) = runtime_for("ns-lo") else {
        return;
    };
    let mut b = Bundle::new();
    let out = rt.run_sh(&mut b, "ls /sys/class/net | tr '\\n' ' '; echo; cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '");
    out.assert_ok();
    let first = out.stdout.lines().next().unwrap_or_default();
    assert_eq!(first.trim(), "lo", "{out}");
}

#[test]
fn join_network_namespace_by_path() {
    let Some(rt) = runtime_for("ns-joinnet") else {
        return;
    };
    let name = format!("corral-test-{}-joinnet", std::process::id());
    let ns = match NetNs::create(&name) {
        Ok(ns) => ns,
        Err(e) => skip!("{e}"),
    };
    let ino = ns_inode(&ns.path()).expect("netns inode");
    // Make the namespace recognisable from inside as well.
    let ok = Command::new("ip")
        .args([
            "netns",
            "exec",
            &name,
            "ip",
            "link",
            "add",
            "corraldummy0",
            "type",
            "dummy",
        ])
        .output();
    // No dummy driver (modules off) is fine: the inode check below suffices.
    let has_dummy = ok.map(|o| o.status.success()).unwrap_or(false);
    let mut b = Bundle::new();
    b.namespace("network", Some(&ns.path()));
    let out = rt.run_sh(
        &mut b,
        "echo net=$(readlink /proc/self/ns/net); ls /sys/class/net",
    );
    out.assert_ok();
    assert!(
        out.stdout.contains(&format!("net=net:[{ino}]")),
        "did not join {}: {out}",
        ns.path().display()
    );
    if has_dummy {
        assert!(
            out.stdout.contains("corraldummy0"),
            "joined netns lacks its interface: {out}"
        );
    }
}

#[test]
fn join_another_containers_namespaces() {
    let Some(rt) = runtime_for("ns-joinct") else {
        return;
    };
    let mut a = Bundle::new();
    a.hostname("pod-host");
    let id_a = rt.start_sleeper(&mut a);
    let pid_a = rt.state_json(&id_a)["pid"].as_i64().expect("pid");
    let mut b = Bundle::new();
    b.remove("/hostname");
    for (kind, link) in [("network", "net"), ("uts", "uts"), ("ipc", "ipc")] {
        b.namespace(kind, Some(Path::new(&format!("/proc/{pid_a}/ns/{link}"))));
    }
    let out = rt.run_sh(&mut b, "echo host=$(hostname); echo net=$(readlink /proc/self/ns/net); echo pid=$(readlink /proc/self/ns/pid)");
    out.assert_ok();
    assert!(
        out.stdout.contains("host=pod-host"),
        "uts not shared: {out}"
    );
    let a_net = fs::read_link(format!("/proc/{pid_a}/ns/net")).expect("readlink");
    assert!(
        out.stdout.contains(&format!("net={}", a_net.display())),
        "net not shared: {out}"
    );
    let a_pid = fs::read_link(format!("/proc/{pid_a}/ns/pid")).expect("readlink");
    assert!(
        !out.stdout.contains(&format!("pid={}", a_pid.display())),
        "pid ns joined though not asked: {out}"
    );
}

fn userns_possible() -> Result<(), String> {
    let max = fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap_or_default();
    if max.trim() == "0" {
        return Err("user namespaces disabled (user.max_user_namespaces=0)".into());
    }
    Ok(())
}

#[test]
fn user_namespace_with_mappings() {
    let Some(rt) = runtime_for("ns-user") else {
        return;
    };
    if let Err(e) = userns_possible() {
        skip!("{e}");
    }
    let mut b = Bundle::new();
    b.namespace("user", None)
        .uid_mapping(0, 100000, 65536)
        .gid_mapping(0, 100000, 65536);
    b.sh("echo uid=$(id -u) gid=$(id -g); cat /proc/self/uid_map /proc/self/gid_map; touch /tmp/made-by-root; echo ready; sleep 120");
    let id = rt.start_container(&b);
    assert!(
        rt.wait_output(&id, "ready", std::time::Duration::from_secs(10)),
        "{:?} {:?}",
        rt.output(&id),
        rt.output_err(&id)
    );
    let out = rt.output(&id);
    assert!(
        out.contains("uid=0 gid=0"),
        "inside the user namespace the process is not root: {out:?}"
    );
    let maps: Vec<Vec<&str>> = out
        .lines()
        .filter(|l| l.split_whitespace().count() == 3)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        maps.iter()
            .filter(|m| *m == &vec!["0", "100000", "65536"])
            .count()
            == 2,
        "uid_map/gid_map: {out:?}"
    );
    let pid = rt.state_json(&id)["pid"].as_i64().expect("pid");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let uid = status_field(&status, "Uid").unwrap_or_default();
    let gid = status_field(&status, "Gid").unwrap_or_default();
    assert_eq!(
        uid.split_whitespace().collect::<Vec<_>>(),
        vec!["100000"; 4],
        "host view of the container uid"
    );
    assert_eq!(
        gid.split_whitespace().collect::<Vec<_>>(),
        vec!["100000"; 4],
        "host view of the container gid"
    );
    let host_user_ns = host_ns("user");
    let ct_user_ns = fs::read_link(format!("/proc/{pid}/ns/user"))
        .expect("readlink")
        .to_string_lossy()
        .into_owned();
    assert_ne!(host_user_ns, ct_user_ns, "no new user namespace");
    let made =
        fs::metadata(b.rootfs().join("tmp/made-by-root")).expect("file made in the container");
    assert_eq!(
        (made.uid(), made.gid()),
        (100000, 100000),
        "file owner on the host"
    );
}

#[test]
fn user_namespace_non_root_mapping() {
    let Some(rt) = runtime_for("ns-user1000") else {
        return;
    };
    if let Err(e) = userns_possible() {
        skip!("{e}");
    }
    let mut b = Bundle::new();
    b.namespace("user", None)
        .uid_mapping(0, 200000, 2000)
        .gid_mapping(0, 200000, 2000)
        .user(1000, 1000);
    b.sh("echo uid=$(id -u) gid=$(id -g); echo ready; sleep 120");
    let id = rt.start_container(&b);
    assert!(
        rt.wait_output(&id, "ready", std::time::Duration::from_secs(10)),
        "{:?}",
        rt.output_err(&id)
    );
    assert!(
        rt.output(&id).contains("uid=1000 gid=1000"),
        "{:?}",
        rt.output(&id)
    );
    let pid = rt.state_json(&id)["pid"].as_i64().expect("pid");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    assert_eq!(
        status_field(&status, "Uid")
            .unwrap_or_default()
            .split_whitespace()
            .next(),
        Some("201000")
    );
}

/// What a fresh network namespace reports for ip_forward.
fn fresh_netns_ip_forward() -> Option<String> {
    let o = Command::new("unshare")
        .args(["--net", "cat", "/proc/sys/net/ipv4/ip_forward"])
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

#[test]
fn sysctl_applied_in_container_namespaces() {
    let Some(rt) = runtime_for("ns-sysctl") else {
        return;
    };
    let Some(fresh) = fresh_netns_ip_forward() else {
        skip!("cannot read ip_forward of a fresh netns with unshare")
    };
    let want_fwd = if fresh == "1" { "0" } else { "1" };
    let host_fwd = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default();
    let host_rmid = fs::read_to_string("/proc/sys/kernel/shm_rmid_forced").unwrap_or_default();
    let mut b = Bundle::new();
    b.sysctl("net.ipv4.ip_forward", want_fwd)
        .sysctl("net.ipv4.ping_group_range", "100 200")
        .sysctl("kernel.shm_rmid_forced", "1");
    let out = rt.run_sh(&mut b, "echo fwd=$(cat /proc/sys/net/ipv4/ip_forward); echo pgr=$(cat /proc/sys/net/ipv4/ping_group_range); echo rmid=$(cat /proc/sys/kernel/shm_rmid_forced)");
    out.assert_ok();
    assert!(
        out.stdout.contains(&format!("fwd={want_fwd}\n")),
        "net.ipv4.ip_forward: {out}"
    );
    assert!(
        out.stdout.contains("pgr=100 200\n"),
        "net.ipv4.ping_group_range: {out}"
    );
    assert!(
        out.stdout.contains("rmid=1\n"),
        "kernel.shm_rmid_forced: {out}"
    );
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default(),
        host_fwd,
        "host sysctl changed"
    );
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/shm_rmid_forced").unwrap_or_default(),
        host_rmid,
        "host sysctl changed"
    );
}
