//! Mounts, their flags, masked/readonly paths, the root, and /dev: checked from
//! inside through /proc/self/mountinfo and real reads and writes.

use std::fs;
use std::path::Path;
use std::time::Duration;

use corral_tests::host::{find_mount, parse_mountinfo, sh, wait_until, MountInfo};
use corral_tests::{runtime_for, Bundle, Out};
use serde_json::json;

/// Run `script` after printing the container's mountinfo; returns (mounts, rest of stdout).
fn mounts_and_output(out: &Out) -> (Vec<MountInfo>, String) {
    let (mi, rest) = out
        .stdout
        .split_once("=====\n")
        .unwrap_or((&out.stdout, ""));
    (parse_mountinfo(mi), rest.to_string())
}

fn with_mountinfo(script: &str) -> String {
    format!("cat /proc/self/mountinfo; echo =====; {script}")
}

#[track_caller]
fn mount<'a>(mounts: &'a [MountInfo], at: &str, out: &Out) -> &'a MountInfo {
    find_mount(mounts, at)
        .unwrap_or_else(|| panic!("no mount at {at} inside the container:\n{out}"))
}

#[test]
fn default_mounts_and_flags() {
    let Some(rt) = runtime_for("mn-default") else {
        return;
    };
    let mut b = Bundle::new();
    let out = rt.run_sh(&mut b, &with_mountinfo("true"));
    out.assert_ok();
    let (m, _) = mounts_and_output(&out);
    assert_eq!(mount(&m, "/proc", &out).fstype, "proc");
    let dev = mount(&m, "/dev", &out);
    assert!(
        dev.fstype == "tmpfs" && dev.has_opt("nosuid"),
        "/dev: {dev:?}"
    );
    assert!(
        dev.has_super_opt("size=65536k") && dev.has_super_opt("mode=755"),
        "/dev options: {dev:?}"
    );
    let pts = mount(&m, "/dev/pts", &out);
    assert!(
        pts.fstype == "devpts" && pts.has_opt("nosuid") && pts.has_opt("noexec"),
        "/dev/pts: {pts:?}"
    );
    assert!(
        pts.has_super_opt("ptmxmode=666")
            && pts.has_super_opt("gid=5")
            && pts.has_super_opt("mode=620"),
        "/dev/pts: {pts:?}"
    );
    let shm = mount(&m, "/dev/shm", &out);
    assert!(
        shm.fstype == "tmpfs" && ["nosuid", "nodev", "noexec"].iter().all(|o| shm.has_opt(o)),
        "/dev/shm: {shm:?}"
    );
    let mq = mount(&m, "/dev/mqueue", &out);
    assert!(
        mq.fstype == "mqueue" && mq.has_opt("nodev"),
        "/dev/mqueue: {mq:?}"
    );
    let sys = mount(&m, "/sys", &out);
    assert!(
        sys.fstype == "sysfs" && sys.has_opt("ro") && sys.has_opt("nosuid"),
        "/sys: {sys:?}"
    );
    // runc mounts a tmpfs there and read-only binds of each hierarchy below it;
    // a cgroup namespace setup mounts cgroup(2) directly. Either way, ro.
    let cg: Vec<&MountInfo> = m
        .iter()
        .filter(|x| {
            x.mount_point.starts_with("/sys/fs/cgroup")
                && (x.fstype == "cgroup" || x.fstype == "cgroup2")
        })
        .collect();
    assert!(
        !cg.is_empty(),
        "no cgroup filesystem under /sys/fs/cgroup:\n{out}"
    );
    for c in cg {
        assert!(c.has_opt("ro"), "cgroup mount must be read-only: {c:?}");
    }
    let root = mount(&m, "/", &out);
    assert!(
        root.has_opt("rw"),
        "root is writable unless root.readonly: {root:?}"
    );
    // Nothing of the host's mount table beyond what was configured.
    for host_only in ["/boot", "/home", "/sys/fs/cgroup/unified", "/run/netns"] {
        assert!(
            find_mount(&m, host_only).is_none(),
            "host mount {host_only} visible in the container:\n{out}"
        );
    }
}

#[test]
fn tmpfs_with_size_mode_and_flags() {
    let Some(rt) = runtime_for("mn-tmpfs") else {
        return;
    };
    let mut b = Bundle::new();
    b.mount(
        json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs",
                   "options": ["nosuid", "nodev", "noexec", "size=1m", "mode=750"]}),
    );
    let script = "printf '#!/bin/sh\\necho ran\\n' > /data/x.sh; chmod +x /data/x.sh; \
                  /data/x.sh && echo exec=yes || echo exec=no; \
                  dd if=/dev/zero of=/data/big bs=1k count=2048 2>/dev/null && echo fill=yes || echo fill=no; \
                  stat -c mode=%a /data";
    let out = rt.run_sh(&mut b, &with_mountinfo(script));
    let (m, rest) = mounts_and_output(&out);
    let d = mount(&m, "/data", &out);
    assert_eq!(d.fstype, "tmpfs");
    for o in ["nosuid", "nodev", "noexec"] {
        assert!(d.has_opt(o), "/data lacks {o}: {d:?}");
    }
    assert!(d.has_super_opt("size=1024k"), "/data size: {d:?}");
    assert!(rest.contains("exec=no"), "noexec not enforced: {out}");
    assert!(
        rest.contains("fill=no"),
        "size=1m not enforced (2 MiB fit): {out}"
    );
    assert!(rest.contains("mode=750"), "mode=750 not applied: {out}");
}

#[test]
fn bind_mounts_ro_and_rw() {
    let Some(rt) = runtime_for("mn-bind") else {
        return;
    };
    let ro = rt.scratch("ro");
    let rw = rt.scratch("rw");
    fs::write(ro.join("hello"), "from-host\n").expect("write");
    let file = rt.scratch("f").join("single.txt");
    fs::write(&file, "single-file\n").expect("write");
    let mut b = Bundle::new();
    b.mount(json!({"destination": "/ro", "type": "bind", "source": ro, "options": ["rbind", "ro"]}))
        .mount(json!({"destination": "/rw", "type": "bind", "source": rw, "options": ["bind", "rw", "nosuid"]}))
        .mount(json!({"destination": "/etc/single.txt", "type": "bind", "source": file, "options": ["bind", "ro"]}));
    let script = "cat /ro/hello; touch /ro/new 2>&1 && echo ro-write=yes || echo ro-write=no; \
                  echo from-container > /rw/out; cat /etc/single.txt";
    let out = rt.run_sh(&mut b, &with_mountinfo(script));
    let (m, rest) = mounts_and_output(&out);
    assert!(rest.contains("from-host"), "bind source not visible: {out}");
    assert!(rest.contains("ro-write=no"), "ro bind is writable: {out}");
    assert!(!ro.join("new").exists(), "file created through a ro bind");
    assert!(
        mount(&m, "/ro", &out).has_opt("ro"),
        "/ro not ro in mountinfo"
    );
    let rwm = mount(&m, "/rw", &out);
    assert!(rwm.has_opt("rw") && rwm.has_opt("nosuid"), "/rw: {rwm:?}");
    assert_eq!(
        fs::read_to_string(rw.join("out")).unwrap_or_default(),
        "from-container\n",
        "write through rw bind: {out}"
    );
    assert!(rest.contains("single-file"), "file bind mount: {out}");
    assert!(mount(&m, "/etc/single.txt", &out).has_opt("ro"));
}

#[test]
fn bind_mount_propagation_rslave() {
    let Some(rt) = runtime_for("mn-prop") else {
        return;
    };
    let shared = rt.scratch("shared");
    let sp = shared.to_string_lossy().into_owned();
    let (ok, msg) = sh(&format!(
        "mount --bind {sp} {sp} && mount --make-shared {sp}"
    ));
    if !ok {
        corral_tests::skip!("cannot make a shared mount on the host: {msg}");
    }
    struct Unmount(String);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = sh(&format!("umount -R {}", self.0));
        }
    }
    let _guard = Unmount(sp.clone());
    fs::create_dir(shared.join("sub")).expect("mkdir");
    let mut b = Bundle::new();
    // The default root propagation differs (runc: rslave, crun: rprivate); ask for it.
    b.set("/linux/rootfsPropagation", json!("rslave"));
    b.mount(json!({"destination": "/prop", "type": "bind", "source": sp, "options": ["rbind", "rslave"]}));
    b.sh("echo ready; i=0; while [ $i -lt 200 ]; do [ -e /prop/sub/marker ] && { echo seen; exit 0; }; sleep 0.05; i=$((i+1)); done; echo timeout; exit 1");
    let id = rt.start_container(&b);
    assert!(rt.wait_output(&id, "ready", Duration::from_secs(10)));
    let (ok, msg) = sh(&format!(
        "mount -t tmpfs tmpfs {sp}/sub && touch {sp}/sub/marker"
    ));
    assert!(ok, "host mount: {msg}");
    assert!(
        rt.wait_output(&id, "seen", Duration::from_secs(15)),
        "host mount did not propagate into an rslave bind: {:?}",
        rt.output(&id)
    );
}

#[test]
fn masked_paths_are_unreadable() {
    let Some(rt) = runtime_for("mn-masked") else {
        return;
    };
    let mut b = Bundle::new();
    b.write_rootfs_file("etc/secret", "TOPSECRET\n");
    b.write_rootfs_file("secretdir/inner", "INNERSECRET\n");
    b.masked_path("/etc/secret")
        .masked_path("/secretdir")
        .masked_path("/does/not/exist");
    let script = "cat /etc/secret; ls -A /secretdir; cat /secretdir/inner; echo x > /etc/secret && echo wrote; \
                  echo keys=$(cat /proc/keys | wc -c)";
    let out = rt.run_sh(&mut b, &with_mountinfo(script));
    let (m, rest) = mounts_and_output(&out);
    assert!(!rest.contains("TOPSECRET"), "masked file readable: {out}");
    assert!(
        !rest.contains("INNERSECRET") && !rest.contains("inner\n"),
        "masked dir readable: {out}"
    );
    assert!(
        rest.contains("keys=0"),
        "/proc/keys (default masked) readable: {out}"
    );
    assert!(
        find_mount(&m, "/etc/secret").is_some() && find_mount(&m, "/secretdir").is_some(),
        "{out}"
    );
    assert!(
        find_mount(&m, "/proc/keys").is_some(),
        "default masked /proc/keys not masked: {out}"
    );
    assert_eq!(
        b.read_rootfs_file("etc/secret").as_deref(),
        Some("TOPSECRET\n"),
        "masking changed the file"
    );
}

#[test]
fn readonly_paths_are_read_only() {
    let Some(rt) = runtime_for("mn-ropaths") else {
        return;
    };
    let mut b = Bundle::new();
    b.write_rootfs_file("rodir/file", "content\n");
    b.readonly_path("/rodir");
    let script = "cat /rodir/file; touch /rodir/new 2>/dev/null && echo rodir-write=yes || echo rodir-write=no; \
                  echo 1 > /proc/sys/kernel/shm_rmid_forced 2>/dev/null && echo procsys-write=yes || echo procsys-write=no; \
                  touch /tmp/elsewhere && echo tmp-write=yes";
    let out = rt.run_sh(&mut b, &with_mountinfo(script));
    let (m, rest) = mounts_and_output(&out);
    assert!(rest.contains("content"), "{out}");
    assert!(
        rest.contains("rodir-write=no"),
        "readonly path writable: {out}"
    );
    assert!(
        rest.contains("procsys-write=no"),
        "/proc/sys writable: {out}"
    );
    assert!(
        rest.contains("tmp-write=yes"),
        "readonly path made more read-only than asked: {out}"
    );
    assert!(mount(&m, "/rodir", &out).has_opt("ro"));
    assert!(mount(&m, "/proc/sys", &out).has_opt("ro"));
    assert!(mount(&m, "/proc/irq", &out).has_opt("ro"));
}

#[test]
fn readonly_root() {
    let Some(rt) = runtime_for("mn-roroot") else {
        return;
    };
    let mut b = Bundle::new();
    b.root_readonly(true);
    let script = "touch /newfile 2>&1; echo root-write=$?; touch /dev/shm/ok && echo shm-write=yes";
    let out = rt.run_sh(&mut b, &with_mountinfo(script));
    let (m, rest) = mounts_and_output(&out);
    assert!(rest.contains("Read-only file system"), "{out}");
    assert!(!rest.contains("root-write=0"), "{out}");
    assert!(rest.contains("shm-write=yes"), "{out}");
    assert!(
        mount(&m, "/", &out).has_opt("ro"),
        "/ not ro in mountinfo: {out}"
    );
    assert!(!b.rootfs().join("newfile").exists());
}

#[test]
fn default_devices() {
    let Some(rt) = runtime_for("mn-devices") else {
        return;
    };
    let mut b = Bundle::new();
    let script = "for d in null zero full random urandom tty; do stat -c \"$d=%F %t:%T %a\" /dev/$d; done; \
                  echo ptmx=$(readlink /dev/ptmx || stat -c '%t:%T' /dev/ptmx); \
                  for l in fd stdin stdout stderr; do echo $l=$(readlink /dev/$l); done; \
                  echo zero=$(head -c 5 /dev/zero | wc -c); echo x > /dev/null && echo null-ok; \
                  echo x > /dev/full 2>/dev/null || echo full-enospc; \
                  echo rand=$(head -c 8 /dev/urandom | wc -c); ls /dev/pts/ptmx >/dev/null && echo pts-ok";
    let out = rt.run_sh(&mut b, script);
    out.assert_ok();
    let want = [
        ("null", "1:3"),
        ("zero", "1:5"),
        ("full", "1:7"),
        ("random", "1:8"),
        ("urandom", "1:9"),
        ("tty", "5:0"),
    ];
    for (dev, mm) in want {
        let line = out
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{dev}=")))
            .unwrap_or_default();
        assert!(
            line.contains("character special file"),
            "/dev/{dev} not a char device: {out}"
        );
        assert!(
            line.contains(&format!(" {mm} ")),
            "/dev/{dev} major:minor not {mm}: {line:?}"
        );
        assert!(line.ends_with(" 666"), "/dev/{dev} mode not 0666: {line:?}");
    }
    let ptmx = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("ptmx="))
        .unwrap_or_default();
    assert!(
        ptmx == "pts/ptmx" || ptmx == "/dev/pts/ptmx" || ptmx == "5:2",
        "/dev/ptmx: {ptmx:?}"
    );
    for (l, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        assert!(
            out.stdout.contains(&format!("{l}={target}\n")),
            "/dev/{l} should link to {target}: {out}"
        );
    }
    for s in ["zero=5", "null-ok", "full-enospc", "rand=8", "pts-ok"] {
        assert!(out.stdout.contains(s), "{s}: {out}");
    }
}

#[test]
fn configured_devices() {
    let Some(rt) = runtime_for("mn-mydev") else {
        return;
    };
    let mut b = Bundle::new();
    b.device(json!({"path": "/dev/custom-null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o640, "uid": 0, "gid": 5}));
    b.device(json!({"path": "/dev/sub/custom-zero", "type": "c", "major": 1, "minor": 5, "fileMode": 0o604, "uid": 1000, "gid": 1000}));
    let script = "stat -c 'a=%F %t:%T %a %u:%g' /dev/custom-null; stat -c 'b=%F %t:%T %a %u:%g' /dev/sub/custom-zero; \
                  echo x > /dev/custom-null && echo write-ok; echo z=$(head -c 3 /dev/sub/custom-zero | wc -c)";
    let out = rt.run_sh(&mut b, script);
    out.assert_ok();
    assert!(
        out.stdout.contains("a=character special file 1:3 640 0:5"),
        "{out}"
    );
    assert!(
        out.stdout
            .contains("b=character special file 1:5 604 1000:1000"),
        "{out}"
    );
    assert!(
        out.stdout.contains("write-ok") && out.stdout.contains("z=3"),
        "{out}"
    );
}

#[test]
fn device_cgroup_denies_unlisted_devices() {
    let Some(rt) = runtime_for("mn-devcg") else {
        return;
    };
    if corral_tests::host::cgroup_v1_root("devices").is_none() {
        corral_tests::skip!("no devices cgroup controller");
    }
    // fuse: a misc device anyone may open, and not in runc's default allow list.
    if !fs::read_to_string("/proc/misc")
        .unwrap_or_default()
        .lines()
        .any(|l| l.trim() == "229 fuse")
    {
        corral_tests::skip!("no fuse misc device (10:229) in this kernel");
    }
    let tun = json!({"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666, "uid": 0, "gid": 0});
    let script = "exec 3<>/dev/fuse && echo open=ok";
    // Node present but no cgroup rule allowing it: open must fail with EPERM.
    let mut denied = Bundle::new();
    denied.device(tun.clone());
    denied.set(
        "/linux/resources/devices",
        json!([{"allow": false, "access": "rwm"}]),
    );
    let out = rt.run_sh(&mut denied, script);
    assert!(
        out.all().contains("Operation not permitted") && !out.stdout.contains("open=ok"),
        "device cgroup did not deny c 10:229: {out}"
    );
    // With an allow rule it opens.
    let mut allowed = Bundle::new();
    allowed.device(tun);
    allowed.device_rule(
        json!({"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rw"}),
    );
    let out = rt.run_sh(&mut allowed, script);
    assert!(
        out.stdout.contains("open=ok"),
        "allowed device did not open: {out}"
    );
}

#[test]
fn mount_wait_free_of_host_leaks() {
    // After a container ran with extra mounts, none of them shows up on the host.
    let Some(rt) = runtime_for("mn-hostleak") else {
        return;
    };
    let src = rt.scratch("src");
    let mut b = Bundle::new();
    b.mount(json!({"destination": "/x", "type": "bind", "source": src, "options": ["rbind"]}))
        .mount(json!({"destination": "/t", "type": "tmpfs", "source": "tmpfs"}));
    let out = rt.run_sh(&mut b, "true");
    out.assert_ok();
    let root = b.rootfs().canonicalize().expect("canonical rootfs");
    assert!(
        wait_until(Duration::from_secs(5), || {
            let mi = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            !parse_mountinfo(&mi)
                .iter()
                .any(|m| Path::new(&m.mount_point).starts_with(&root))
        }),
        "container mounts leaked into the host mount namespace"
    );
}
