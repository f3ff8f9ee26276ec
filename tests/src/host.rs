//! Facts about the host and small helpers: cgroups, /proc parsing, mounts, tools.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Parent of every cgroup the tests create, relative to each hierarchy's root.
pub const CGROUP_PARENT: &str = "corral-test";

/// Marker put in the environment of the runtime and of the container process so
/// that leftover processes of a given container can be found in /proc.
pub const MARK_VAR: &str = "CORRAL_TEST_MARK";

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Full path of a program on PATH, or the path itself if it contains a slash.
pub fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Poll `f` every 20 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Directory of a cgroup v1 controller hierarchy if mounted (e.g. "memory").
pub fn cgroup_v1_root(controller: &str) -> Option<PathBuf> {
    let mi = fs::read_to_string("/proc/self/mountinfo").ok()?;
    parse_mountinfo(&mi)
        .into_iter()
        .find(|m| m.fstype == "cgroup" && m.super_opts.iter().any(|o| o == controller))
        .map(|m| PathBuf::from(m.mount_point))
}

/// The cgroup directory tests use for container `id` under one controller.
pub fn test_cgroup_dir(controller: &str, id: &str) -> Option<PathBuf> {
    cgroup_v1_root(controller).map(|r| r.join(CGROUP_PARENT).join(id))
}

/// Every place a test cgroup parent may live: each hierarchy's root (absolute
/// cgroupsPath) and this process's own cgroup in it (relative cgroupsPath).
pub fn cgroup_bases() -> Vec<PathBuf> {
    let Ok(mi) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut out: Vec<PathBuf> = Vec::new();
    for m in parse_mountinfo(&mi)
        .into_iter()
        .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
    {
        let own_path = own.lines().find_map(|l| {
            let mut it = l.splitn(3, ':');
            let (_, ctrls, path) = (it.next()?, it.next()?, it.next()?);
            let matches = if m.fstype == "cgroup2" {
                ctrls.is_empty()
            } else {
                !ctrls.is_empty() && ctrls.split(',').any(|c| m.has_super_opt(c))
            };
            matches.then(|| path.trim_start_matches('/').to_string())
        });
        let root = PathBuf::from(&m.mount_point);
        if let Some(p) = own_path.filter(|p| !p.is_empty()) {
            out.push(root.join(p));
        }
        out.push(root);
    }
    out.dedup();
    out
}

/// Every existing cgroup directory (any hierarchy, v1 or v2) of container `id`.
pub fn existing_test_cgroups(id: &str) -> Vec<PathBuf> {
    cgroup_bases()
        .into_iter()
        .map(|b| b.join(CGROUP_PARENT).join(id))
        .filter(|d| d.is_dir())
        .collect()
}

/// Kill every process in the cgroup and remove it (and empty children first).
pub fn remove_cgroup(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup(&e.path());
            }
        }
    }
    for _ in 0..100 {
        if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let freezer = dir.join("freezer.state");
        if freezer.exists() {
            let _ = fs::write(&freezer, "THAWED");
        }
        match fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    eprintln!("warning: could not remove test cgroup {}", dir.display());
}

/// Processes whose environment carries the test marker of container `id`.
pub fn marked_processes(id: &str) -> Vec<i32> {
    let needle = format!("{MARK_VAR}={id}");
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(env) = fs::read(e.path().join("environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

pub fn pid_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // State is the field after the parenthesised comm; Z means a zombie.
        Ok(s) => s
            .rsplit_once(')')
            .map(|(_, r)| !r.trim_start().starts_with('Z'))
            .unwrap_or(true),
        Err(_) => false,
    }
}

#[derive(Debug, Clone)]
pub struct MountInfo {
    pub mount_point: String,
    pub opts: Vec<String>,
    pub fstype: String,
    pub source: String,
    pub super_opts: Vec<String>,
}

impl MountInfo {
    pub fn has_opt(&self, o: &str) -> bool {
        self.opts.iter().any(|x| x == o)
    }
    pub fn has_super_opt(&self, o: &str) -> bool {
        self.super_opts.iter().any(|x| x == o)
    }
}

/// Parse /proc/<pid>/mountinfo text (octal escapes in paths are decoded).
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 6 || r.len() < 3 {
            continue;
        }
        out.push(MountInfo {
            mount_point: unescape(l[4]),
            opts: l[5].split(',').map(String::from).collect(),
            fstype: r[0].to_string(),
            source: unescape(r[1]),
            super_opts: r[2].split(',').map(String::from).collect(),
        });
    }
    out
}

/// The last (topmost) mount at `mount_point`.
pub fn find_mount<'a>(mounts: &'a [MountInfo], mount_point: &str) -> Option<&'a MountInfo> {
    mounts.iter().rev().find(|m| m.mount_point == mount_point)
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points of this mount namespace at or under `dir` (e.g. a bundle).
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let Ok(canon) = dir.canonicalize() else {
        return Vec::new();
    };
    let mi = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    parse_mountinfo(&mi)
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| Path::new(p).starts_with(&canon))
        .collect()
}

/// Unmount (lazily, deepest first) every mount of this mount namespace under `dir`,
/// so that removing a test directory never walks into a mount left by a runtime.
pub fn unmount_under(dir: &Path) {
    let Ok(canon) = dir.canonicalize() else {
        return;
    };
    let Ok(mi) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<String> = parse_mountinfo(&mi)
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| Path::new(p).starts_with(&canon))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let Ok(c) = CString::new(Path::new(&p).as_os_str().as_bytes()) else {
            continue;
        };
        // SAFETY: c is a valid NUL-terminated path that outlives the call.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// A field of /proc/<pid>/status (e.g. "CapEff"), trimmed.
pub fn status_field(status: &str, key: &str) -> Option<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .map(|v| v.trim().to_string())
}

/// Capability numbers as in linux/capability.h.
pub fn cap_number(name: &str) -> Option<u32> {
    const CAPS: [&str; 41] = [
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ];
    let n = name.strip_prefix("CAP_").unwrap_or(name);
    CAPS.iter().position(|c| *c == n).map(|p| p as u32)
}

/// The /proc/<pid>/status hex mask (16 digits) of a set of capability names.
pub fn cap_mask(names: &[&str]) -> String {
    let mut m: u64 = 0;
    for n in names {
        let bit = cap_number(n).unwrap_or_else(|| panic!("unknown capability {n}"));
        m |= 1 << bit;
    }
    format!("{m:016x}")
}

/// Run a host command, returning (success, stdout+stderr).
pub fn sh(cmd: &str) -> (bool, String) {
    match Command::new("/bin/sh").arg("-c").arg(cmd).output() {
        Ok(o) => {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            (o.status.success(), s)
        }
        Err(e) => (false, format!("spawn /bin/sh: {e}")),
    }
}

/// A network namespace made with `ip netns add`, deleted on drop.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    /// None (with the reason) when `ip` is missing or the namespace cannot be made.
    pub fn create(name: &str) -> Result<NetNs, String> {
        if which("ip").is_none() {
            return Err("`ip` (iproute2) is not installed".into());
        }
        let (ok, out) = sh(&format!("ip netns add {name}"));
        if !ok {
            return Err(format!("ip netns add {name}: {out}"));
        }
        Ok(NetNs {
            name: name.to_string(),
        })
    }
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let (ok, out) = sh(&format!("ip netns del {}", self.name));
        if !ok {
            eprintln!("warning: ip netns del {}: {out}", self.name);
        }
    }
}

/// The inode behind a namespace file, as shown in /proc/*/ns links ("net:[4026531840]").
pub fn ns_inode(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).ok().map(|m| m.ino())
}

/// The host's own /proc/self/ns/<kind> link text.
pub fn host_ns(kind: &str) -> String {
    fs::read_link(format!("/proc/self/ns/{kind}"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}
