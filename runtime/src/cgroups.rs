//! Container cgroups on cgroup v1 (one hierarchy per controller, as on this
//! hybrid host) and cgroup v2 (the unified hierarchy).
//!
//! Resource limits go through cgroups-rs's `FsManager::set`, one spec section
//! at a time so that a failure names the section and the file. A few pieces
//! are written here directly because cgroups-rs does them differently from
//! runc, and runc is the behaviour engines expect:
//! - v2 memory: cgroups-rs writes `memory.swap.max = 0` when no swap limit is
//!   given (disabling swap) and rejects limits without saying why;
//! - block-I/O weights: cgroups-rs only knows `blkio.weight`/`io.bfq.weight`,
//!   while kernels with BFQ have `blkio.bfq.weight` and v2 without BFQ has
//!   `io.weight`;
//! - devices: cgroups-rs reads an absent major/minor as 0 instead of `*`, and
//!   has nothing for v2, where rules become an eBPF program (see `devfilter`);
//! - freezing waits until the kernel reports FROZEN, and pids come from
//!   `cgroup.procs` of the whole subtree (cgroups-rs lists threads).
//!
//! Process model: `create` runs in the runtime parent while the container init
//! waits, so everything here is synchronous and reads only the files it needs.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cgroups_rs::manager::{FsManager, Manager};
use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType, LinuxMemory, LinuxResources,
};

/// Where both v1 hierarchies and the v2 unified hierarchy are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// Parent of containers whose `cgroupsPath` is relative or absent.
const DEFAULT_PARENT: &str = "corral";
/// How long `freeze` waits for the kernel to report the cgroup frozen.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(2);
/// v1 controller names, to tell them apart from mount flags in mountinfo.
const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "blkio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// `linux.cgroupsPath` (or the container id it is built from) is unusable.
    #[error("linux.cgroupsPath {path:?}: {reason}")]
    BadPath { path: String, reason: String },

    #[error(
        "linux.cgroupsPath {0:?} is a systemd cgroup path (slice:prefix:name), which cannot be \
         honoured: there is no systemd on this host; give a plain path such as \"/machine/<id>\""
    )]
    SystemdPath(String),

    /// A resource value that is out of range, malformed or unsupported.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },

    #[error("cgroup {file} = {value} in {}: {errno}", dir.display())]
    Write {
        file: String,
        value: String,
        dir: PathBuf,
        errno: Errno,
    },

    #[error("cgroup read {}: {errno}", path.display())]
    Read { path: PathBuf, errno: Errno },

    #[error("cgroup mkdir {}: {errno}", path.display())]
    Mkdir { path: PathBuf, errno: Errno },

    #[error("cgroup rmdir {}: {errno}", path.display())]
    Rmdir { path: PathBuf, errno: Errno },

    #[error("cgroup {path:?}: {what}")]
    Unsupported { path: String, what: String },

    /// A cgroups-rs failure that carries no errno (it names its own step).
    #[error("cgroup {path:?}: setting {section}: {msg}")]
    Library {
        path: String,
        section: &'static str,
        msg: String,
    },

    #[error("cgroup {path:?} does not exist in any hierarchy")]
    NotFound { path: String },

    #[error("cgroup {}: not frozen after {} ms (freezer state {state:?})", path.display(), waited.as_millis())]
    FreezeTimeout {
        path: PathBuf,
        waited: Duration,
        state: String,
    },

    #[error("cgroup {path:?}: kill({pid}, {sig}): {errno}")]
    Kill {
        path: String,
        pid: i32,
        sig: Signal,
        errno: Errno,
    },

    /// Loading or attaching the v2 device filter (an eBPF program) failed.
    #[error("cgroup {} device filter: {step}: {errno}{log}", dir.display())]
    Bpf {
        dir: PathBuf,
        step: &'static str,
        errno: Errno,
        log: String,
    },

    #[error("no cgroup v1 hierarchy is mounted under {CGROUP_ROOT}")]
    NoHierarchy,
}

type Result<T, E = CgroupError> = std::result::Result<T, E>;

fn errno_of(e: &io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// The host's cgroup mode: v2 only when /sys/fs/cgroup itself is cgroup2
/// (hybrid hosts, with cgroup2 at /sys/fs/cgroup/unified, count as v1).
pub fn version() -> CgroupVersion {
    static VERSION: OnceLock<CgroupVersion> = OnceLock::new();
    *VERSION.get_or_init(|| {
        if cgroups_rs::fs::hierarchies::is_cgroup2_unified_mode() {
            CgroupVersion::V2
        } else {
            CgroupVersion::V1
        }
    })
}

// ---------------------------------------------------------------------------
// Path resolution
// ---------------------------------------------------------------------------

/// Resolve `linux.cgroupsPath` to a path relative to every hierarchy root
/// (no leading '/'): absolute "/a/b" -> "a/b"; none (or empty) ->
/// "corral/<id>"; relative "a/b" -> "<own>/a/b", below the cgroup this
/// runtime process runs in, as runc does (so an engine's containers nest
/// under the engine's cgroup). Resolved once at create and stored, so later
/// verbs find the cgroup whatever cgroup they run in.
pub fn resolve_path(cgroups_path: Option<&Path>, id: &str, systemd: bool) -> Result<String> {
    check_id(id)?;
    let raw = match cgroups_path {
        None => return Ok(format!("{DEFAULT_PARENT}/{id}")),
        Some(p) => p.to_str().ok_or_else(|| CgroupError::BadPath {
            path: p.display().to_string(),
            reason: "is not valid UTF-8".into(),
        })?,
    };
    if raw.is_empty() {
        return Ok(format!("{DEFAULT_PARENT}/{id}"));
    }
    if systemd && is_systemd_path(raw) {
        return Err(CgroupError::SystemdPath(raw.to_string()));
    }
    let bad = |reason: &str| CgroupError::BadPath {
        path: raw.to_string(),
        reason: reason.to_string(),
    };
    let mut parts = Vec::new();
    for comp in Path::new(raw).components() {
        match comp {
            Component::Normal(s) => parts.push(s.to_str().ok_or_else(|| bad("not UTF-8"))?),
            Component::ParentDir => return Err(bad("contains a \"..\" component")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    if parts.is_empty() {
        return Err(bad(
            "names the hierarchy root; a container needs a cgroup of its own",
        ));
    }
    let joined = parts.join("/");
    if raw.starts_with('/') {
        return Ok(joined);
    }
    let own = own_cgroup()?;
    let own = own.trim_matches('/');
    Ok(if own.is_empty() {
        joined
    } else {
        format!("{own}/{joined}")
    })
}

/// The cgroup of the calling process: the unified one on v2; on v1 the
/// name=systemd hierarchy's (systemd keeps the others aligned with it), else
/// pids', else the first listed. runc resolves each v1 hierarchy on its own;
/// one path for all keeps a container's cgroup a single stored string.
fn own_cgroup() -> Result<String> {
    let text = fs::read_to_string("/proc/self/cgroup").map_err(|e| CgroupError::Read {
        path: "/proc/self/cgroup".into(),
        errno: errno_of(&e),
    })?;
    Ok(pick_own_cgroup(&text, version()).unwrap_or_default())
}

fn pick_own_cgroup(text: &str, v: CgroupVersion) -> Option<String> {
    // Lines are "hierarchy-id:controllers:path"; the path may contain ':'.
    let lines: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let (_, ctrls, path) = (it.next()?, it.next()?, it.next()?);
            Some((ctrls, path))
        })
        .collect();
    let find = |pred: &dyn Fn(&str) -> bool| {
        lines
            .iter()
            .find(|(c, _)| pred(c))
            .map(|(_, p)| p.to_string())
    };
    match v {
        CgroupVersion::V2 => find(&|c| c.is_empty()),
        CgroupVersion::V1 => find(&|c| c == "name=systemd")
            .or_else(|| find(&|c| c.split(',').any(|x| x == "pids")))
            .or_else(|| find(&|c| !c.is_empty())),
    }
}

fn check_id(id: &str) -> Result<()> {
    let reason = if id.is_empty() {
        "the container id is empty"
    } else if id.contains('/') {
        "the container id contains '/'"
    } else if id == "." || id == ".." {
        "the container id is \".\" or \"..\""
    } else {
        return Ok(());
    };
    Err(CgroupError::BadPath {
        path: id.to_string(),
        reason: reason.into(),
    })
}

/// systemd's "slice:prefix:name" form (the slice may be empty, as runc allows).
fn is_systemd_path(p: &str) -> bool {
    !p.starts_with('/') && p.split(':').count() == 3
}

/// A relative, already-resolved path must not escape the hierarchy.
fn check_resolved(path: &str) -> Result<()> {
    let ok = !path.is_empty()
        && !path.starts_with('/')
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err(CgroupError::BadPath {
            path: path.to_string(),
            reason: "must be a resolved path below the hierarchy root (see resolve_path)".into(),
        })
    }
}

// ---------------------------------------------------------------------------
// Validation (pure: runs when config.json is loaded)
// ---------------------------------------------------------------------------

fn invalid(field: &str, reason: impl Into<String>) -> CgroupError {
    CgroupError::Invalid {
        field: format!("linux.resources.{field}"),
        reason: reason.into(),
    }
}

/// -1 means unlimited; anything else below zero is nonsense.
fn check_limit(field: &str, v: Option<i64>) -> Result<()> {
    match v {
        Some(x) if x < -1 => Err(invalid(field, format!("{x} is negative"))),
        _ => Ok(()),
    }
}

/// Reject values the kernel would refuse (or silently clamp), naming the field.
pub fn validate(resources: &LinuxResources) -> Result<()> {
    if let Some(m) = resources.memory() {
        validate_memory(m)?;
    }
    if let Some(c) = resources.cpu() {
        validate_cpu(c)?;
    }
    if let Some(p) = resources.pids() {
        check_limit("pids.limit", Some(p.limit()))?;
    }
    if let Some(b) = resources.block_io() {
        validate_blkio(b)?;
    }
    for (i, h) in resources.hugepage_limits().iter().flatten().enumerate() {
        if parse_page_size(h.page_size()).is_none() {
            return Err(invalid(
                &format!("hugepageLimits[{i}].pageSize"),
                format!("{:?} is not a size like \"2MB\" or \"1GB\"", h.page_size()),
            ));
        }
        check_limit(&format!("hugepageLimits[{i}].limit"), Some(h.limit()))?;
    }
    for (i, d) in resources.devices().iter().flatten().enumerate() {
        DevRule::from_spec(d).map_err(|r| invalid(&format!("devices[{i}]"), r))?;
    }
    for key in resources.unified().iter().flat_map(|u| u.keys()) {
        if key.is_empty() || key.contains('/') || !key.contains('.') || key.starts_with('.') {
            return Err(invalid(
                "unified",
                format!("{key:?} is not a cgroup v2 file name like \"memory.high\""),
            ));
        }
    }
    Ok(())
}

fn validate_memory(m: &LinuxMemory) -> Result<()> {
    check_limit("memory.limit", m.limit())?;
    check_limit("memory.reservation", m.reservation())?;
    check_limit("memory.swap", m.swap())?;
    check_limit("memory.kernel", m.kernel())?;
    check_limit("memory.kernelTCP", m.kernel_tcp())?;
    if let Some(s) = m.swappiness() {
        if s > 100 {
            return Err(invalid("memory.swappiness", format!("{s} is above 100")));
        }
    }
    match (m.limit().unwrap_or(0), m.swap().unwrap_or(0)) {
        (0, s) if s > 0 => Err(invalid(
            "memory.swap",
            format!("{s} needs memory.limit too (swap is the memory+swap total)"),
        )),
        (l, s) if l > 0 && s > 0 && s < l => Err(invalid(
            "memory.swap",
            format!("{s} is below memory.limit {l} (swap is the memory+swap total)"),
        )),
        _ => Ok(()),
    }
}

fn validate_cpu(c: &LinuxCpu) -> Result<()> {
    if let Some(s) = c.shares() {
        if s == 1 || s > 262_144 {
            return Err(invalid(
                "cpu.shares",
                format!("{s} is outside 2..=262144 (0 leaves it unset)"),
            ));
        }
    }
    match c.quota() {
        Some(q) if q < -1 => return Err(invalid("cpu.quota", format!("{q} is negative"))),
        Some(q) if q > 0 && q < 1000 => {
            return Err(invalid("cpu.quota", format!("{q} is below 1000 µs")))
        }
        _ => {}
    }
    if let Some(p) = c.period() {
        if p != 0 && !(1000..=1_000_000).contains(&p) {
            return Err(invalid(
                "cpu.period",
                format!("{p} is outside 1000..=1000000 µs"),
            ));
        }
    }
    check_limit("cpu.realtimeRuntime", c.realtime_runtime())?;
    if let Some(i) = c.idle() {
        if i != 0 && i != 1 {
            return Err(invalid("cpu.idle", format!("{i} is neither 0 nor 1")));
        }
    }
    for (field, list) in [("cpu.cpus", c.cpus()), ("cpu.mems", c.mems())] {
        if let Some(l) = list {
            if !is_cpu_list(l) {
                return Err(invalid(
                    field,
                    format!("{l:?} is not a list like \"0-3,6\""),
                ));
            }
        }
    }
    Ok(())
}

fn is_cpu_list(s: &str) -> bool {
    let s = s.trim();
    let num = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    s.is_empty()
        || s.split(',').all(|part| match part.split_once('-') {
            Some((a, b)) => num(a) && num(b),
            None => num(part),
        })
}

fn validate_blkio(b: &LinuxBlockIo) -> Result<()> {
    let weight = |field: &str, w: Option<u16>| match w {
        Some(w) if w != 0 && !(10..=1000).contains(&w) => Err(invalid(
            field,
            format!("{w} is outside 10..=1000 (0 leaves it unset)"),
        )),
        _ => Ok(()),
    };
    weight("blockIO.weight", b.weight())?;
    weight("blockIO.leafWeight", b.leaf_weight())?;
    for (i, d) in b.weight_device().iter().flatten().enumerate() {
        weight(&format!("blockIO.weightDevice[{i}].weight"), d.weight())?;
        weight(
            &format!("blockIO.weightDevice[{i}].leafWeight"),
            d.leaf_weight(),
        )?;
        check_dev_number(&format!("blockIO.weightDevice[{i}]"), d.major(), d.minor())?;
    }
    let throttles = [
        ("throttleReadBpsDevice", b.throttle_read_bps_device()),
        ("throttleWriteBpsDevice", b.throttle_write_bps_device()),
        ("throttleReadIOPSDevice", b.throttle_read_iops_device()),
        ("throttleWriteIOPSDevice", b.throttle_write_iops_device()),
    ];
    for (name, list) in throttles {
        for (i, d) in list.iter().flatten().enumerate() {
            check_dev_number(&format!("blockIO.{name}[{i}]"), d.major(), d.minor())?;
        }
    }
    Ok(())
}

fn check_dev_number(field: &str, major: i64, minor: i64) -> Result<()> {
    if major < 0 || minor < 0 {
        return Err(invalid(
            field,
            format!("device {major}:{minor} has a negative number"),
        ));
    }
    Ok(())
}

/// "2MB" -> bytes; the suffixes cgroups name hugetlb files with.
fn parse_page_size(s: &str) -> Option<u64> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (n, unit) = s.split_at(digits);
    let n: u64 = n.parse().ok()?;
    let shift = match unit {
        "KB" => 10,
        "MB" => 20,
        "GB" => 30,
        "TB" => 40,
        _ => return None,
    };
    (n > 0).then(|| n << shift)
}

// ---------------------------------------------------------------------------
// Device rules: the kernel's v1 semantics, shared by v1 writes and the v2 program
// ---------------------------------------------------------------------------

const ACC_MKNOD: u8 = 1;
const ACC_READ: u8 = 2;
const ACC_WRITE: u8 = 4;
const ACC_ALL: u8 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// One `linux.resources.devices` entry, normalised ('a', 'b' or 'c'; `None` = any number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DevRule {
    allow: bool,
    kind: char,
    major: Option<u32>,
    minor: Option<u32>,
    access: u8,
}

impl DevRule {
    fn from_spec(d: &LinuxDeviceCgroup) -> Result<Self, String> {
        let kind = match d.typ().unwrap_or_default() {
            LinuxDeviceType::A => 'a',
            LinuxDeviceType::B => 'b',
            // 'u' (unbuffered char) is a char device as far as cgroups go.
            LinuxDeviceType::C | LinuxDeviceType::U => 'c',
            LinuxDeviceType::P => return Err("type \"p\" (FIFO) cannot be a cgroup rule".into()),
        };
        let number = |what: &str, v: Option<i64>| match v {
            None | Some(-1) => Ok(None),
            Some(n) if (0..=u32::MAX as i64 >> 1).contains(&n) => Ok(Some(n as u32)),
            Some(n) => Err(format!("{what} {n} is not a device number (or -1 for any)")),
        };
        let mut access = 0;
        for ch in d.access().as_deref().unwrap_or("rwm").chars() {
            access |= match ch {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => return Err(format!("access {:?} has {ch:?}: use r, w, m", d.access())),
            };
        }
        Ok(DevRule {
            allow: d.allow(),
            kind,
            major: number("major", d.major())?,
            minor: number("minor", d.minor())?,
            access: if access == 0 { ACC_ALL } else { access },
        })
    }

    const fn allow_char(major: u32, minor: Option<u32>) -> Self {
        DevRule {
            allow: true,
            kind: 'c',
            major: Some(major),
            minor,
            access: ACC_ALL,
        }
    }

    /// The line the v1 `devices.allow`/`devices.deny` files take.
    fn v1_line(&self) -> String {
        let num = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        let acc: String = [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')]
            .iter()
            .filter(|(bit, _)| self.access & bit != 0)
            .map(|&(_, c)| c)
            .collect();
        format!(
            "{} {}:{} {acc}",
            self.kind,
            num(self.major),
            num(self.minor)
        )
    }
}

/// Devices every container may use, appended after the spec's rules as runc
/// does: mknod of anything, and null, zero, full, random, urandom, tty, ptmx, pts.
const DEFAULT_DEVICE_RULES: &[DevRule] = &[
    DevRule {
        allow: true,
        kind: 'c',
        major: None,
        minor: None,
        access: ACC_MKNOD,
    },
    DevRule {
        allow: true,
        kind: 'b',
        major: None,
        minor: None,
        access: ACC_MKNOD,
    },
    DevRule::allow_char(1, Some(3)),
    DevRule::allow_char(1, Some(8)),
    DevRule::allow_char(1, Some(7)),
    DevRule::allow_char(5, Some(0)),
    DevRule::allow_char(1, Some(5)),
    DevRule::allow_char(1, Some(9)),
    DevRule::allow_char(136, None),
    DevRule::allow_char(5, Some(2)),
];

const DENY_ALL: DevRule = DevRule {
    allow: false,
    kind: 'a',
    major: None,
    minor: None,
    access: ACC_ALL,
};

/// The full rule list a container gets: deny all, the spec's rules, the defaults.
fn effective_device_rules(spec: Option<&Vec<LinuxDeviceCgroup>>) -> Result<Vec<DevRule>> {
    let mut rules = vec![DENY_ALL];
    for (i, d) in spec.into_iter().flatten().enumerate() {
        rules.push(DevRule::from_spec(d).map_err(|r| invalid(&format!("devices[{i}]"), r))?);
    }
    rules.extend_from_slice(DEFAULT_DEVICE_RULES);
    Ok(rules)
}

/// What a v1 device cgroup holds after the rules are written in order: a
/// default verdict and exceptions to it (the kernel's devcgroup semantics).
#[derive(Debug, Clone, PartialEq, Eq)]
struct DevPolicy {
    default_allow: bool,
    exceptions: Vec<DevRule>,
}

impl DevPolicy {
    fn from_rules(rules: &[DevRule]) -> Self {
        let mut p = DevPolicy {
            default_allow: true,
            exceptions: Vec::new(),
        };
        for r in rules {
            if r.kind == 'a' {
                p.default_allow = r.allow;
                p.exceptions.clear();
                continue;
            }
            let same = |e: &DevRule| (e.kind, e.major, e.minor) == (r.kind, r.major, r.minor);
            if r.allow != p.default_allow {
                match p.exceptions.iter_mut().find(|e| same(e)) {
                    Some(e) => e.access |= r.access,
                    None => p.exceptions.push(DevRule {
                        allow: r.allow,
                        ..*r
                    }),
                }
            } else if let Some(i) = p.exceptions.iter().position(same) {
                p.exceptions[i].access &= !r.access;
                if p.exceptions[i].access == 0 {
                    p.exceptions.remove(i);
                }
            }
        }
        p
    }

    /// Reference check with the kernel's matching rules: in allow-list mode an
    /// exception must grant every requested bit; in deny-list mode any overlap denies.
    #[cfg(test)]
    fn permits(&self, kind: char, major: u32, minor: u32, access: u8) -> bool {
        let hit = |e: &&DevRule| {
            e.kind == kind
                && e.major.is_none_or(|m| m == major)
                && e.minor.is_none_or(|m| m == minor)
                && if self.default_allow {
                    e.access & access != 0
                } else {
                    access & !e.access == 0
                }
        };
        let matched = self.exceptions.iter().any(|e| hit(&e));
        self.default_allow != matched
    }
}

/// Generates and attaches the v2 device filter: a BPF_PROG_TYPE_CGROUP_DEVICE
/// program (as runc's devicefilter) checking one `DevPolicy`.
mod devfilter {
    use super::{CgroupError, DevPolicy, ACC_ALL};
    use nix::errno::Errno;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::path::Path;

    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_ATTACH: libc::c_long = 8;
    const BPF_PROG_DETACH: libc::c_long = 9;
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    const BPF_PROG_QUERY: libc::c_long = 16;
    const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
    const BPF_CGROUP_DEVICE: u32 = 6;
    const BPF_F_ALLOW_MULTI: u32 = 2;
    // struct bpf_cgroup_dev_ctx: access_type = access << 16 | type; major; minor.
    const DEV_BLOCK: i32 = 1;
    const DEV_CHAR: i32 = 2;

    // Opcodes (BPF_CLASS | BPF_OP | BPF_SRC).
    const LDX_W: u8 = 0x61;
    const AND32_K: u8 = 0x54;
    const RSH32_K: u8 = 0x74;
    const MOV32_K: u8 = 0xb4;
    const MOV32_X: u8 = 0xbc;
    const JEQ_K: u8 = 0x15;
    const JNE_K: u8 = 0x55;
    const JNE_X: u8 = 0x5d;
    const EXIT: u8 = 0x95;

    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(super) struct Insn {
        code: u8,
        regs: u8, // dst in the low nibble, src in the high one
        off: i16,
        imm: i32,
    }

    const fn ins(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: dst | (src << 4),
            off,
            imm,
        }
    }

    /// R2 = device type, R3 = requested access, R4 = major, R5 = minor; then one
    /// block per exception that returns its verdict, then the default verdict.
    pub(super) fn program(policy: &DevPolicy) -> Vec<Insn> {
        let mut p = vec![
            ins(LDX_W, 2, 1, 0, 0),
            ins(AND32_K, 2, 0, 0, 0xffff),
            ins(LDX_W, 3, 1, 0, 0),
            ins(RSH32_K, 3, 0, 0, 16),
            ins(LDX_W, 4, 1, 4, 0),
            ins(LDX_W, 5, 1, 8, 0),
        ];
        let verdict = i32::from(!policy.default_allow);
        for e in &policy.exceptions {
            // Jumps are emitted with off = 0 and patched to "next block" below.
            let mut block = Vec::new();
            let kind = if e.kind == 'b' { DEV_BLOCK } else { DEV_CHAR };
            block.push(ins(JNE_K, 2, 0, 0, kind));
            if policy.default_allow {
                // A deny exception hits on any overlap with the requested access.
                if e.access != ACC_ALL {
                    block.push(ins(MOV32_X, 1, 3, 0, 0));
                    block.push(ins(AND32_K, 1, 0, 0, i32::from(e.access)));
                    block.push(ins(JEQ_K, 1, 0, 0, 0));
                }
            } else if e.access != ACC_ALL {
                // An allow exception must cover every requested bit.
                block.push(ins(MOV32_X, 1, 3, 0, 0));
                block.push(ins(AND32_K, 1, 0, 0, i32::from(e.access)));
                block.push(ins(JNE_X, 1, 3, 0, 0));
            }
            if let Some(m) = e.major {
                block.push(ins(JNE_K, 4, 0, 0, m as i32));
            }
            if let Some(m) = e.minor {
                block.push(ins(JNE_K, 5, 0, 0, m as i32));
            }
            block.push(ins(MOV32_K, 0, 0, 0, verdict));
            block.push(ins(EXIT, 0, 0, 0, 0));
            let len = block.len();
            for (i, insn) in block.iter_mut().enumerate() {
                if matches!(insn.code, JNE_K | JNE_X | JEQ_K) {
                    insn.off = (len - i - 1) as i16;
                }
            }
            p.extend(block);
        }
        p.push(ins(MOV32_K, 0, 0, 0, i32::from(policy.default_allow)));
        p.push(ins(EXIT, 0, 0, 0, 0));
        p
    }

    #[repr(C)]
    #[derive(Default)]
    struct ProgLoadAttr {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        prog_name: [u8; 16],
        prog_ifindex: u32,
        expected_attach_type: u32,
    }

    #[repr(C)]
    #[derive(Default)]
    struct AttachAttr {
        target_fd: u32,
        attach_bpf_fd: u32,
        attach_type: u32,
        attach_flags: u32,
        replace_bpf_fd: u32,
    }

    #[repr(C)]
    #[derive(Default)]
    struct QueryAttr {
        target_fd: u32,
        attach_type: u32,
        query_flags: u32,
        attach_flags: u32,
        prog_ids: u64,
        prog_cnt: u32,
        _pad: u32,
        prog_attach_flags: u64,
    }

    #[repr(C)]
    #[derive(Default)]
    struct GetFdAttr {
        prog_id: u32,
        next_id: u32,
        open_flags: u32,
    }

    fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> Result<libc::c_long, Errno> {
        // SAFETY: `attr` is a live, initialised #[repr(C)] prefix of union
        // bpf_attr and its exact size is passed; pointers inside it point to
        // buffers that outlive the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                attr as *mut T as *mut libc::c_void,
                std::mem::size_of::<T>() as libc::c_uint,
            )
        };
        if r < 0 {
            Err(Errno::last())
        } else {
            Ok(r)
        }
    }

    fn owned(fd: libc::c_long) -> OwnedFd {
        // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
        unsafe { OwnedFd::from_raw_fd(fd as i32) }
    }

    fn load(insns: &[Insn], log: Option<&mut Vec<u8>>) -> Result<OwnedFd, Errno> {
        let license = b"Apache\0";
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            ..Default::default()
        };
        attr.prog_name[..6].copy_from_slice(b"corral");
        if let Some(buf) = log {
            attr.log_level = 1;
            attr.log_size = buf.len() as u32;
            attr.log_buf = buf.as_mut_ptr() as u64;
        }
        bpf(BPF_PROG_LOAD, &mut attr).map(owned)
    }

    /// Ids of the device programs attached to the cgroup itself.
    fn attached(cg: &OwnedFd) -> Result<Vec<u32>, Errno> {
        let mut ids = vec![0u32; 64];
        let mut attr = QueryAttr {
            target_fd: cg.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: ids.len() as u32,
            ..Default::default()
        };
        bpf(BPF_PROG_QUERY, &mut attr)?;
        ids.truncate(attr.prog_cnt as usize);
        Ok(ids)
    }

    fn detach(cg: &OwnedFd, id: u32) -> Result<(), Errno> {
        let mut get = GetFdAttr {
            prog_id: id,
            ..Default::default()
        };
        let prog = match bpf(BPF_PROG_GET_FD_BY_ID, &mut get) {
            Ok(fd) => owned(fd),
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut attr = AttachAttr {
            target_fd: cg.as_raw_fd() as u32,
            attach_bpf_fd: prog.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            ..Default::default()
        };
        match bpf(BPF_PROG_DETACH, &mut attr) {
            Ok(_) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Replace the cgroup's device programs with one enforcing `policy`
    /// (none at all when it allows everything). The new program is attached
    /// before the old ones go, so access never widens in between.
    pub(super) fn apply(dir: &Path, policy: &DevPolicy) -> Result<(), CgroupError> {
        let err = |step, errno, log: String| CgroupError::Bpf {
            dir: dir.to_path_buf(),
            step,
            errno,
            log,
        };
        let cg: OwnedFd = std::fs::File::open(dir)
            .map_err(|e| err("open cgroup directory", super::errno_of(&e), String::new()))?
            .into();
        let old = attached(&cg).map_err(|e| err("BPF_PROG_QUERY", e, String::new()))?;
        if !(policy.default_allow && policy.exceptions.is_empty()) {
            let insns = program(policy);
            let prog = load(&insns, None).map_err(|e| {
                // Load again with the verifier log so the error says why.
                let mut buf = vec![0u8; 64 * 1024];
                let _ = load(&insns, Some(&mut buf));
                let text = String::from_utf8_lossy(&buf);
                let text = text.trim_end_matches('\0').trim();
                let log = if text.is_empty() {
                    String::new()
                } else {
                    format!(" (verifier: {text})")
                };
                err("BPF_PROG_LOAD", e, log)
            })?;
            let mut attr = AttachAttr {
                target_fd: cg.as_raw_fd() as u32,
                attach_bpf_fd: prog.as_raw_fd() as u32,
                attach_type: BPF_CGROUP_DEVICE,
                attach_flags: BPF_F_ALLOW_MULTI,
                ..Default::default()
            };
            bpf(BPF_PROG_ATTACH, &mut attr)
                .map_err(|e| err("BPF_PROG_ATTACH", e, String::new()))?;
        }
        for id in old {
            detach(&cg, id).map_err(|e| err("BPF_PROG_DETACH", e, String::new()))?;
        }
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::super::{DevPolicy, DevRule, ACC_ALL, DEFAULT_DEVICE_RULES, DENY_ALL};
        use super::*;

        /// Runs a program over one device access the way the kernel would.
        fn run(p: &[Insn], kind: char, major: u32, minor: u32, access: u8) -> bool {
            let ty = if kind == 'b' { DEV_BLOCK } else { DEV_CHAR } as u32;
            let ctx = [(u32::from(access) << 16) | ty, major, minor];
            let mut r = [0u64; 11];
            let mut pc = 0usize;
            loop {
                let i = p[pc];
                let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
                let imm32 = i.imm as u32;
                let jump = |taken: bool| if taken { i.off as usize } else { 0 };
                pc += 1;
                match i.code {
                    LDX_W => r[dst] = u64::from(ctx[i.off as usize / 4]),
                    AND32_K => r[dst] = u64::from(r[dst] as u32 & imm32),
                    RSH32_K => r[dst] = u64::from((r[dst] as u32) >> imm32),
                    MOV32_K => r[dst] = u64::from(imm32),
                    MOV32_X => r[dst] = u64::from(r[src] as u32),
                    JEQ_K => pc += jump(r[dst] == u64::from(imm32)),
                    JNE_K => pc += jump(r[dst] != u64::from(imm32)),
                    JNE_X => pc += jump(r[dst] != r[src]),
                    EXIT => return r[0] != 0,
                    c => panic!("unexpected opcode {c:#x}"),
                }
            }
        }

        #[test]
        fn program_agrees_with_the_reference_policy() {
            let deny_w = DevRule {
                allow: false,
                access: 4,
                ..DevRule::allow_char(1, Some(3))
            };
            let allow_all = DevRule {
                allow: true,
                ..DENY_ALL
            };
            let block_r = DevRule {
                kind: 'b',
                access: 2,
                ..DevRule::allow_char(8, None)
            };
            let mut defaults = vec![DENY_ALL];
            defaults.extend_from_slice(DEFAULT_DEVICE_RULES);
            defaults.push(block_r);
            let sets = [
                defaults,
                vec![allow_all, deny_w],
                vec![DENY_ALL],
                vec![allow_all],
            ];
            for rules in &sets {
                let policy = DevPolicy::from_rules(rules);
                let prog = program(&policy);
                for kind in ['b', 'c'] {
                    for (major, minor) in [(1, 3), (1, 5), (8, 0), (8, 17), (136, 4), (5, 2)] {
                        for access in 1..=ACC_ALL {
                            assert_eq!(
                                run(&prog, kind, major, minor, access),
                                policy.permits(kind, major, minor, access),
                                "{rules:?}: {kind} {major}:{minor} access {access}"
                            );
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Hierarchies and files
// ---------------------------------------------------------------------------

/// (controllers, mount point) for each mounted v1 hierarchy, e.g.
/// ("cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct"), ("name=systemd", ...).
///
/// Read from mountinfo once per process and kept: the kernel prints the
/// whole mount table for every read, and a node running 100 pods has ~500
/// mounts (overlays, namespace binds), which made the 5 reads of one
/// container start (shim and init) cost ~14 ms of CPU. The runtime's
/// processes are short-lived or exec soon (the shim after `start`), and
/// `create` fills this before forking init, which inherits it.
pub(crate) fn v1_hierarchies() -> Result<Vec<(String, PathBuf)>> {
    static HIERARCHIES: OnceLock<Vec<(String, PathBuf)>> = OnceLock::new();
    if let Some(h) = HIERARCHIES.get() {
        return Ok(h.clone());
    }
    let h = read_v1_hierarchies()?;
    Ok(HIERARCHIES.get_or_init(|| h).clone())
}

/// Learn the cgroup version and v1 hierarchies now, so that a process
/// forked afterwards (the container init) does not read mountinfo again.
/// Errors are left for the call that needs the hierarchies to report.
pub fn prime() {
    if version() == CgroupVersion::V1 {
        let _ = v1_hierarchies();
    }
}

fn read_v1_hierarchies() -> Result<Vec<(String, PathBuf)>> {
    if let Some(h) = conventional_v1_hierarchies() {
        return Ok(h);
    }
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    for m in cgroups_rs::fs::hierarchies::mountinfo_self() {
        if !m.mount_point.starts_with(CGROUP_ROOT) {
            continue;
        }
        let names: Vec<&str> = m
            .super_opts
            .iter()
            .map(String::as_str)
            .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
            .collect();
        if names.is_empty() {
            continue;
        }
        let key = names.join(",");
        if !out.iter().any(|(k, _)| *k == key) {
            out.push((key, m.mount_point));
        }
    }
    if out.is_empty() {
        return Err(CgroupError::NoHierarchy);
    }
    Ok(out)
}

/// v1 controllers with no files in a hierarchy's root cgroup.
const NO_ROOT_FILES: &[&str] = &["pids", "freezer", "rdma", "misc"];

/// The v1 hierarchies without reading mountinfo: the ones listed in
/// /proc/self/cgroup (a few lines), each where every distribution mounts
/// it, `/sys/fs/cgroup/<controllers>` (`name=x` at `.../x`), checked to be
/// a cgroup mount of its own whose root holds the files of those
/// controllers (where the kernel puts any there). None when any is not so
/// (then mountinfo decides).
fn conventional_v1_hierarchies() -> Option<Vec<(String, PathBuf)>> {
    use std::os::unix::fs::MetadataExt;
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut out = Vec::new();
    let mut devices = Vec::new();
    for (key, dir) in conventional_candidates(&text)? {
        let dir = Path::new(CGROUP_ROOT).join(dir);
        let magic = nix::sys::statfs::statfs(&dir).ok()?.filesystem_type();
        let dev = fs::metadata(&dir).ok()?.dev();
        if magic != nix::sys::statfs::CGROUP_SUPER_MAGIC || devices.contains(&dev) {
            return None;
        }
        devices.push(dev);
        let files: Vec<String> = fs::read_dir(&dir)
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        let has = |c: &&str| {
            NO_ROOT_FILES.contains(c) || files.iter().any(|f| f.starts_with(&format!("{c}.")))
        };
        if !key
            .split(',')
            .filter(|c| !c.starts_with("name="))
            .all(|c| has(&c))
        {
            return None;
        }
        out.push((key, dir));
    }
    (!out.is_empty()).then_some(out)
}

/// (controllers, directory name under /sys/fs/cgroup) of each v1 line of
/// /proc/self/cgroup; None for a line this naming convention cannot place.
fn conventional_candidates(text: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.splitn(3, ':');
        let (_id, ctrls, _path) = (parts.next()?, parts.next()?, parts.next()?);
        if ctrls.is_empty() {
            continue; // the cgroup2 line of a hybrid host
        }
        let names: Vec<&str> = ctrls.split(',').collect();
        if !names
            .iter()
            .all(|n| V1_CONTROLLERS.contains(n) || n.starts_with("name="))
        {
            return None;
        }
        let dir = match names.as_slice() {
            [one] => one.strip_prefix("name=").unwrap_or(one).to_string(),
            many if many.iter().any(|n| n.starts_with("name=")) => return None,
            many => many.join(","),
        };
        out.push((names.join(","), dir));
    }
    Some(out)
}

fn dirs_for(path: &str) -> Result<Vec<(String, PathBuf)>> {
    Ok(match version() {
        CgroupVersion::V2 => vec![(String::new(), Path::new(CGROUP_ROOT).join(path))],
        CgroupVersion::V1 => v1_hierarchies()?
            .into_iter()
            .map(|(k, mount)| (k, mount.join(path)))
            .collect(),
    })
}

fn write_file(dir: &Path, file: &str, value: &str) -> Result<()> {
    let res = fs::OpenOptions::new()
        .write(true)
        .open(dir.join(file))
        .and_then(|mut f| f.write_all(value.as_bytes()));
    res.map_err(|e| CgroupError::Write {
        file: file.to_string(),
        value: value.to_string(),
        dir: dir.to_path_buf(),
        errno: errno_of(&e),
    })
}

fn read_file(dir: &Path, file: &str) -> Result<String> {
    let path = dir.join(file);
    fs::read_to_string(&path).map_err(|e| CgroupError::Read {
        errno: errno_of(&e),
        path,
    })
}

/// The value of `key` in a flat-keyed file such as memory.events.
fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// v2: turn on, from the root down to the parent of `dir`, every controller
/// the level offers. Failures are left to surface when a limit file is
/// missing: a controller may be legitimately unavailable (e.g. busy parent).
fn enable_v2_controllers(dir: &Path) {
    let root = Path::new(CGROUP_ROOT);
    let Ok(rel) = dir.strip_prefix(root) else {
        return;
    };
    let mut level = root.to_path_buf();
    for comp in rel.components() {
        enable_level(&level);
        level.push(comp);
    }
}

fn enable_level(level: &Path) {
    let (Ok(avail), Ok(enabled)) = (
        read_file(level, "cgroup.controllers"),
        read_file(level, "cgroup.subtree_control"),
    ) else {
        return;
    };
    let enabled: Vec<&str> = enabled.split_whitespace().collect();
    for c in avail.split_whitespace().filter(|c| !enabled.contains(c)) {
        let _ = write_file(level, "cgroup.subtree_control", &format!("+{c}"));
    }
}

/// A new v1 cpuset cgroup starts with no CPUs or memory nodes, so no task
/// could join it: inherit the parent's.
fn init_v1_cpuset(dir: &Path) -> Result<()> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        if read_file(dir, file)?.trim().is_empty() {
            let v = read_file(parent, file)?;
            write_file(dir, file, v.trim())?;
        }
    }
    Ok(())
}

/// mkdir -p `dir`, recording every directory this call made (parents first).
fn mkdir_all(root: &Path, dir: &Path, cpuset: bool, made: &mut Vec<PathBuf>) -> Result<()> {
    let rel = dir.strip_prefix(root).unwrap_or(dir);
    let mut cur = root.to_path_buf();
    for comp in rel.components() {
        cur.push(comp);
        match fs::create_dir(&cur) {
            Ok(()) => made.push(cur.clone()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(CgroupError::Mkdir {
                    path: cur,
                    errno: errno_of(&e),
                })
            }
        }
        // Also for a directory that exists: another container's runtime may
        // have just made it and not yet filled it in, and a child copied from
        // an empty parent stays empty (its tasks then get ENOSPC).
        if cpuset {
            init_v1_cpuset(&cur)?;
        }
    }
    Ok(())
}

/// rmdir a cgroup and any sub-cgroups the container made, retrying while
/// the kernel still reports dying tasks (EBUSY), as runc does.
fn remove_cgroup_dir(dir: &Path) -> Result<()> {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_dir(&e.path())?;
            }
        }
    }
    let mut delay = Duration::from_millis(10);
    for attempt in 0..6 {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 5 => {
                std::thread::sleep(delay);
                delay *= 2;
            }
            Err(e) => {
                return Err(CgroupError::Rmdir {
                    path: dir.to_path_buf(),
                    errno: errno_of(&e),
                })
            }
        }
    }
    Ok(())
}

/// Pids in `dir` and every cgroup below it.
fn collect_pids(dir: &Path, out: &mut Vec<i32>) -> Result<()> {
    let procs = read_file(dir, "cgroup.procs")?;
    out.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_pids(&e.path(), out)?;
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The container's cgroup
// ---------------------------------------------------------------------------

#[derive(Debug)]
pub struct ContainerCgroup {
    /// Relative to every hierarchy root, e.g. "corral/abc".
    path: String,
    v2: bool,
    /// (controllers or "" on v2, absolute directory) per hierarchy.
    dirs: Vec<(String, PathBuf)>,
}

impl ContainerCgroup {
    /// mkdir the cgroup in every hierarchy, apply `resources` (devices always:
    /// deny all, then the spec's rules, then the runtime's default devices),
    /// move `pid` in. On failure, remove the directories this call created.
    pub fn create(path: &str, resources: Option<&LinuxResources>, pid: i32) -> Result<Self> {
        let mut cg = Self::create_empty(path, resources)?;
        if let Err(e) = cg.add_pid(pid) {
            cg.move_out(pid, cg.dirs.len());
            let _ = cg.destroy();
            return Err(e);
        }
        Ok(cg)
    }

    /// Make the cgroup and apply its limits, with no process in it yet.
    /// `create` splits into this and `add_pid` so the runtime can let the
    /// container init work while the (slow: an RCU grace period on the
    /// first migration) `cgroup.procs` write runs. On failure, nothing made
    /// here is left behind.
    pub fn create_empty(path: &str, resources: Option<&LinuxResources>) -> Result<Self> {
        check_resolved(path)?;
        if let Some(r) = resources {
            validate(r)?;
        }
        let cg = ContainerCgroup {
            path: path.to_string(),
            v2: version() == CgroupVersion::V2,
            dirs: dirs_for(path)?,
        };
        let mut made = Vec::new();
        let res = cg
            .make_dirs(&mut made)
            .and_then(|()| cg.apply(resources.unwrap_or(&LinuxResources::default()), true));
        if let Err(e) = res {
            for d in made.iter().rev() {
                let _ = fs::remove_dir(d);
            }
            return Err(e);
        }
        Ok(cg)
    }

    fn make_dirs(&self, made: &mut Vec<PathBuf>) -> Result<()> {
        let depth = Path::new(&self.path).components().count();
        for (ctrl, dir) in &self.dirs {
            let root = dir.ancestors().nth(depth).unwrap_or(dir);
            if self.v2 {
                mkdir_all(root, dir, false, made)?;
                enable_v2_controllers(dir);
            } else {
                let cpuset = ctrl.split(',').any(|c| c == "cpuset");
                mkdir_all(root, dir, cpuset, made)?;
            }
        }
        Ok(())
    }

    /// After a failed create: put `pid` back in the parent cgroup of the
    /// first `joined` hierarchies, so the directories can be removed.
    fn move_out(&self, pid: i32, joined: usize) {
        for (_, dir) in self.dirs.iter().take(joined) {
            if let Some(parent) = dir.parent() {
                let _ = write_file(parent, "cgroup.procs", &pid.to_string());
            }
        }
    }

    /// Handle on an existing cgroup (for state, kill --all, pause, delete, ps, exec).
    pub fn load(path: &str) -> Result<Self> {
        check_resolved(path)?;
        let dirs = dirs_for(path)?;
        if !dirs.iter().any(|(_, d)| d.is_dir()) {
            return Err(CgroupError::NotFound {
                path: path.to_string(),
            });
        }
        Ok(ContainerCgroup {
            path: path.to_string(),
            v2: version() == CgroupVersion::V2,
            dirs,
        })
    }

    pub fn add_pid(&mut self, pid: i32) -> Result<()> {
        let pid = pid.to_string();
        for (_, dir) in &self.dirs {
            write_file(dir, "cgroup.procs", &pid)?;
        }
        Ok(())
    }

    /// The directory of the hierarchy holding controller `name` (v2: the one dir).
    fn dir_of(&self, name: &str) -> Option<&Path> {
        if self.v2 {
            return self.dirs.first().map(|(_, d)| d.as_path());
        }
        self.dirs
            .iter()
            .find(|(k, _)| k.split(',').any(|c| c == name))
            .map(|(_, d)| d.as_path())
    }

    fn need_dir(&self, name: &str) -> Result<&Path> {
        self.dir_of(name).ok_or_else(|| CgroupError::Unsupported {
            path: self.path.clone(),
            what: format!("the {name} controller is not mounted"),
        })
    }

    /// A hierarchy every container process is in, to list and signal them.
    fn procs_dir(&self) -> &Path {
        ["freezer", "pids", "memory", "cpu"]
            .iter()
            .find_map(|c| self.dir_of(c))
            .or_else(|| self.dirs.first().map(|(_, d)| d.as_path()))
            .unwrap_or(Path::new(CGROUP_ROOT))
    }

    /// Every process in the container cgroup, sub-cgroups included.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let mut out = Vec::new();
        collect_pids(self.procs_dir(), &mut out)?;
        Ok(out)
    }

    /// Freeze every process and wait until the kernel says FROZEN.
    pub fn freeze(&self) -> Result<()> {
        let dir = self.need_dir("freezer")?;
        let (file, want) = if self.v2 {
            ("cgroup.freeze", "1")
        } else {
            ("freezer.state", "FROZEN")
        };
        write_file(dir, file, want)?;
        let start = Instant::now();
        let mut delay = Duration::from_micros(50);
        loop {
            let state = self.freezer_state(dir)?;
            if state == "FROZEN" {
                return Ok(());
            }
            if start.elapsed() > FREEZE_TIMEOUT {
                let _ = self.thaw();
                return Err(CgroupError::FreezeTimeout {
                    path: dir.to_path_buf(),
                    waited: start.elapsed(),
                    state,
                });
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(10));
            if !self.v2 {
                // v1 can fall back to THAWED when a task forks mid-freeze; ask again.
                write_file(dir, file, want)?;
            }
        }
    }

    /// "FROZEN", "FREEZING" or "THAWED", for v2 derived from cgroup.freeze + cgroup.events.
    fn freezer_state(&self, dir: &Path) -> Result<String> {
        if !self.v2 {
            return Ok(read_file(dir, "freezer.state")?.trim().to_string());
        }
        if read_file(dir, "cgroup.freeze")?.trim() != "1" {
            return Ok("THAWED".into());
        }
        let events = read_file(dir, "cgroup.events")?;
        Ok(if keyed_value(&events, "frozen") == Some(1) {
            "FROZEN".into()
        } else {
            "FREEZING".into()
        })
    }

    pub fn thaw(&self) -> Result<()> {
        let dir = self.need_dir("freezer")?;
        if self.v2 {
            write_file(dir, "cgroup.freeze", "0")
        } else {
            write_file(dir, "freezer.state", "THAWED")
        }
    }

    pub fn is_frozen(&self) -> Result<bool> {
        let dir = self.need_dir("freezer")?;
        Ok(self.freezer_state(dir)? == "FROZEN")
    }

    /// Apply new limits to a running container (`runc update`).
    pub fn update(&mut self, resources: &LinuxResources) -> Result<()> {
        validate(resources)?;
        self.apply(resources, false)
    }

    /// rmdir in every hierarchy (sub-cgroups first); fine if already gone.
    pub fn destroy(self) -> Result<()> {
        let mut first_err = None;
        for (_, dir) in &self.dirs {
            if let Err(e) = remove_cgroup_dir(dir) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Whether the kernel OOM killer has killed a process of this cgroup.
    pub fn oom_killed(&self) -> bool {
        let Some(dir) = self.dir_of("memory") else {
            return false;
        };
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        read_file(dir, file)
            .ok()
            .and_then(|t| keyed_value(&t, "oom_kill"))
            .is_some_and(|n| n > 0)
    }

    /// (controllers as in /proc/self/cgroup, e.g. "cpu,cpuacct", "name=systemd",
    /// or "" on v2; absolute directory) for each hierarchy.
    pub fn paths(&self) -> Vec<(String, PathBuf)> {
        self.dirs.clone()
    }

    /// The resolved path below the hierarchy roots, e.g. "corral/abc".
    pub fn path(&self) -> &str {
        &self.path
    }

    // -- resources ---------------------------------------------------------

    fn apply(&self, r: &LinuxResources, creating: bool) -> Result<()> {
        let mut mgr = None;
        if let Some(cpu) = r.cpu() {
            self.apply_cpu(cpu, &mut mgr)?;
        }
        if let Some(m) = r.memory() {
            self.apply_memory(m, &mut mgr)?;
        }
        if let Some(p) = r.pids() {
            // 0 means "leave as is" (runc); -1 and positive values go through.
            if p.limit() != 0 {
                let mut part = LinuxResources::default();
                part.set_pids(Some(*p));
                self.set_via_lib("pids", &part, &mut mgr)?;
            }
        }
        if let Some(b) = r.block_io() {
            self.apply_blkio(b, &mut mgr)?;
        }
        if let Some(h) = r.hugepage_limits() {
            self.apply_hugepages(h, &mut mgr)?;
        }
        if let Some(n) = r.network() {
            self.apply_network(n, &mut mgr)?;
        }
        if let Some(rdma) = r.rdma() {
            self.apply_rdma(rdma)?;
        }
        if let Some(u) = r.unified() {
            self.apply_unified(u)?;
        }
        if creating || r.devices().is_some() {
            self.apply_devices(r.devices().as_ref())?;
        }
        Ok(())
    }

    /// Run cgroups-rs's `FsManager::set` on one section, mapping its error to
    /// the file, value and directory it concerns.
    fn set_via_lib(
        &self,
        section: &'static str,
        part: &LinuxResources,
        mgr: &mut Option<FsManager>,
    ) -> Result<()> {
        let lib_err = |msg: String| CgroupError::Library {
            path: self.path.clone(),
            section,
            msg,
        };
        if mgr.is_none() {
            *mgr = Some(FsManager::new(&self.path).map_err(|e| lib_err(e.to_string()))?);
        }
        let Some(m) = mgr.as_mut() else {
            return Err(lib_err("no cgroup manager".into()));
        };
        m.set(part).map_err(|e| self.map_lib_error(section, e))
    }

    fn map_lib_error(&self, section: &'static str, e: cgroups_rs::manager::Error) -> CgroupError {
        use cgroups_rs::fs::error::ErrorKind;
        use std::error::Error as _;
        if let cgroups_rs::manager::Error::Cgroupfs(fe) = &e {
            let errno = fe
                .source()
                .and_then(|s| s.downcast_ref::<io::Error>())
                .map(errno_of);
            if let (ErrorKind::WriteFailed(file, value), Some(errno)) = (fe.kind(), errno) {
                let (dir, file) = self.locate(file);
                // cgroups-rs reports a failed open with a placeholder value.
                let value = if value == "[CREATE FILE]" {
                    "(file could not be opened)".to_string()
                } else {
                    value.clone()
                };
                return CgroupError::Write {
                    file,
                    value,
                    dir,
                    errno,
                };
            }
        }
        CgroupError::Library {
            path: self.path.clone(),
            section,
            msg: e.to_string(),
        }
    }

    /// cgroups-rs names files either by full path or by bare name
    /// ("memory.limit_in_bytes"): find the directory either way.
    fn locate(&self, file: &str) -> (PathBuf, String) {
        let p = Path::new(file);
        if p.is_absolute() {
            let name = p
                .file_name()
                .map_or(file.into(), |n| n.to_string_lossy().into());
            return (p.parent().unwrap_or(p).to_path_buf(), name);
        }
        let ctrl = file.split('.').next().unwrap_or("");
        let dir = self
            .dir_of(ctrl)
            .or_else(|| self.dirs.first().map(|(_, d)| d.as_path()))
            .unwrap_or(Path::new(CGROUP_ROOT));
        (dir.to_path_buf(), file.to_string())
    }

    fn apply_cpu(&self, cpu: &LinuxCpu, mgr: &mut Option<FsManager>) -> Result<()> {
        // 0 and "" mean unset in the spec; cgroups-rs would write them.
        let nz_u = |v: Option<u64>| v.filter(|&x| x != 0);
        let nz_i = |v: Option<i64>| v.filter(|&x| x != 0);
        let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        let mut c = LinuxCpu::default();
        c.set_shares(nz_u(cpu.shares()))
            .set_quota(nz_i(cpu.quota()))
            .set_period(nz_u(cpu.period()))
            .set_realtime_runtime(nz_i(cpu.realtime_runtime()))
            .set_realtime_period(nz_u(cpu.realtime_period()))
            .set_cpus(nonempty(cpu.cpus()))
            .set_mems(nonempty(cpu.mems()));
        let has_cpuset = c.cpus().is_some() || c.mems().is_some();
        let has_cpu = c.shares().is_some()
            || c.quota().is_some()
            || c.period().is_some()
            || c.realtime_runtime().is_some()
            || c.realtime_period().is_some();
        if has_cpuset {
            self.need_dir("cpuset")?;
        }
        if has_cpu {
            self.need_dir("cpu")?;
        }
        if has_cpu || has_cpuset {
            let mut part = LinuxResources::default();
            part.set_cpu(Some(c));
            self.set_via_lib("cpu", &part, mgr)?;
        }
        if let Some(idle) = cpu.idle() {
            write_file(self.need_dir("cpu")?, "cpu.idle", &idle.to_string())?;
        }
        if let Some(burst) = cpu.burst() {
            let file = if self.v2 {
                "cpu.max.burst"
            } else {
                "cpu.cfs_burst_us"
            };
            write_file(self.need_dir("cpu")?, file, &burst.to_string())?;
        }
        Ok(())
    }

    fn apply_memory(&self, m: &LinuxMemory, mgr: &mut Option<FsManager>) -> Result<()> {
        let dir = self.need_dir("memory")?;
        if !self.v2 {
            let mut part = LinuxResources::default();
            part.set_memory(Some(*m));
            return self.set_via_lib("memory", &part, mgr);
        }
        let text = |v: i64| {
            if v == -1 {
                "max".to_string()
            } else {
                v.to_string()
            }
        };
        let limit = m.limit().unwrap_or(0);
        // The spec's swap is memory+swap; v2's memory.swap.max is swap alone.
        let swap = match (m.swap().unwrap_or(0), limit) {
            (0, -1) => Some(-1),
            (0, _) => None,
            (-1, _) => Some(-1),
            (s, l) if l > 0 => Some(s - l),
            (s, _) => Some(s),
        };
        if let Some(s) = swap {
            write_file(dir, "memory.swap.max", &text(s))?;
        }
        if limit != 0 {
            write_file(dir, "memory.max", &text(limit))?;
        }
        if let Some(r) = m.reservation().filter(|&r| r != 0) {
            write_file(dir, "memory.low", &text(r))?;
        }
        // swappiness, kernel memory and disableOOMKiller have no v2 file;
        // runc ignores them there too.
        Ok(())
    }

    fn apply_blkio(&self, b: &LinuxBlockIo, mgr: &mut Option<FsManager>) -> Result<()> {
        let dir = self.need_dir(if self.v2 { "io" } else { "blkio" })?;
        if let Some(w) = b.weight().filter(|&w| w != 0) {
            self.write_io_weight(dir, None, w)?;
        }
        if let Some(w) = b.leaf_weight().filter(|&w| w != 0) {
            // No v2 equivalent; runc drops it there as well.
            if !self.v2 {
                write_file(dir, "blkio.leaf_weight", &w.to_string())?;
            }
        }
        for d in b.weight_device().iter().flatten() {
            let dev = (d.major(), d.minor());
            if let Some(w) = d.weight().filter(|&w| w != 0) {
                self.write_io_weight(dir, Some(dev), w)?;
            }
            if let Some(w) = d.leaf_weight().filter(|&w| w != 0) {
                if !self.v2 {
                    let line = format!("{}:{} {w}", dev.0, dev.1);
                    write_file(dir, "blkio.leaf_weight_device", &line)?;
                }
            }
        }
        let mut throttle = b.clone();
        throttle
            .set_weight(None)
            .set_leaf_weight(None)
            .set_weight_device(None);
        if throttle != LinuxBlockIo::default() {
            let mut part = LinuxResources::default();
            part.set_block_io(Some(throttle));
            self.set_via_lib("blockIO", &part, mgr)?;
        }
        Ok(())
    }

    /// BFQ's weight file takes the spec's 10..1000 as is; v2's io.weight
    /// (1..10000) gets runc's linear conversion.
    fn write_io_weight(&self, dir: &Path, dev: Option<(i64, i64)>, w: u16) -> Result<()> {
        let prefix = dev.map_or(String::new(), |(a, b)| format!("{a}:{b} "));
        let suffix = if dev.is_some() { "_device" } else { "" };
        let (bfq, plain) = if self.v2 {
            ("io.bfq.weight".to_string(), "io.weight".to_string())
        } else {
            (
                format!("blkio.bfq.weight{suffix}"),
                format!("blkio.weight{suffix}"),
            )
        };
        if dir.join(&bfq).exists() {
            return write_file(dir, &bfq, &format!("{prefix}{w}"));
        }
        let v = if self.v2 {
            1 + (u64::from(w).saturating_sub(10)) * 9999 / 990
        } else {
            u64::from(w)
        };
        write_file(dir, &plain, &format!("{prefix}{v}"))
    }

    fn apply_hugepages(
        &self,
        limits: &[oci_spec::runtime::LinuxHugepageLimit],
        mgr: &mut Option<FsManager>,
    ) -> Result<()> {
        if limits.is_empty() {
            return Ok(());
        }
        let dir = self.need_dir("hugetlb")?;
        for (i, l) in limits.iter().enumerate() {
            // cgroups-rs skips sizes the kernel lacks; a silent no-op is not a limit.
            let file = if self.v2 {
                format!("hugetlb.{}.max", l.page_size())
            } else {
                format!("hugetlb.{}.limit_in_bytes", l.page_size())
            };
            if !dir.join(&file).exists() {
                return Err(invalid(
                    &format!("hugepageLimits[{i}].pageSize"),
                    format!(
                        "this kernel has no {:?} huge pages ({file} is missing)",
                        l.page_size()
                    ),
                ));
            }
        }
        let mut part = LinuxResources::default();
        part.set_hugepage_limits(Some(limits.to_vec()));
        self.set_via_lib("hugepageLimits", &part, mgr)
    }

    fn apply_network(
        &self,
        n: &oci_spec::runtime::LinuxNetwork,
        mgr: &mut Option<FsManager>,
    ) -> Result<()> {
        if n.class_id().is_none() && n.priorities().is_none() {
            return Ok(());
        }
        if self.v2 {
            return Err(invalid(
                "network",
                "classID and priorities need the v1 net_cls/net_prio controllers; cgroup v2 has none",
            ));
        }
        if n.class_id().is_some() {
            self.need_dir("net_cls")?;
        }
        if n.priorities().is_some() {
            self.need_dir("net_prio")?;
        }
        let mut part = LinuxResources::default();
        part.set_network(Some(n.clone()));
        self.set_via_lib("network", &part, mgr)
    }

    fn apply_rdma(&self, rdma: &HashMap<String, oci_spec::runtime::LinuxRdma>) -> Result<()> {
        if rdma.is_empty() {
            return Ok(());
        }
        let dir = self.need_dir("rdma")?;
        for (dev, l) in rdma {
            let mut line = dev.clone();
            if let Some(h) = l.hca_handles() {
                line.push_str(&format!(" hca_handle={h}"));
            }
            if let Some(o) = l.hca_objects() {
                line.push_str(&format!(" hca_object={o}"));
            }
            write_file(dir, "rdma.max", &line)?;
        }
        Ok(())
    }

    fn apply_unified(&self, u: &HashMap<String, String>) -> Result<()> {
        if u.is_empty() {
            return Ok(());
        }
        if !self.v2 {
            return Err(invalid(
                "unified",
                "needs a cgroup v2 host (this one is v1)",
            ));
        }
        let dir = &self.dirs[0].1;
        for (k, v) in u {
            write_file(dir, k, v)?;
        }
        Ok(())
    }

    fn apply_devices(&self, spec: Option<&Vec<LinuxDeviceCgroup>>) -> Result<()> {
        let rules = effective_device_rules(spec)?;
        if self.v2 {
            return devfilter::apply(&self.dirs[0].1, &DevPolicy::from_rules(&rules));
        }
        let dir = self
            .dir_of("devices")
            .ok_or_else(|| CgroupError::Unsupported {
                path: self.path.clone(),
                what: "the devices controller is not mounted, so device rules cannot be enforced"
                    .into(),
            })?;
        // Written here rather than through cgroups-rs, whose manager reads
        // mountinfo twice to find the hierarchies we already know (and
        // takes absent numbers as 0 where the kernel wants `*`).
        for r in &rules {
            let file = if r.allow {
                "devices.allow"
            } else {
                "devices.deny"
            };
            write_file(dir, file, &r.v1_line())?;
        }
        Ok(())
    }
}

/// Signal every process in the cgroup. The cgroup is frozen meanwhile so
/// nothing forks past the signal (as runc does); a cgroup that was already
/// paused stays paused unless the signal is SIGKILL, which needs thawing to land on v1.
pub fn kill_all(path: &str, sig: Signal) -> Result<()> {
    let cg = ContainerCgroup::load(path)?;
    if cg.v2 && sig == Signal::SIGKILL {
        let dir = &cg.dirs[0].1;
        if dir.join("cgroup.kill").exists() {
            return write_file(dir, "cgroup.kill", "1");
        }
    }
    let can_freeze = cg.dir_of("freezer").is_some();
    let was_frozen = can_freeze && cg.is_frozen()?;
    if can_freeze && !was_frozen {
        cg.freeze()?;
    }
    let result = signal_pids(&cg, sig);
    if can_freeze && (!was_frozen || sig == Signal::SIGKILL) {
        cg.thaw()?;
    }
    result
}

fn signal_pids(cg: &ContainerCgroup, sig: Signal) -> Result<()> {
    for pid in cg.pids()? {
        match nix::sys::signal::kill(Pid::from_raw(pid), sig) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(errno) => {
                return Err(CgroupError::Kill {
                    path: cg.path.clone(),
                    pid,
                    sig,
                    errno,
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxBlockIoBuilder, LinuxPids};
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};

    // -- path resolution ---------------------------------------------------

    #[test]
    fn resolve_defaults_under_corral() {
        assert_eq!(resolve_path(None, "abc", false).unwrap(), "corral/abc");
        assert_eq!(
            resolve_path(Some(Path::new("")), "abc", false).unwrap(),
            "corral/abc"
        );
    }

    #[test]
    fn resolve_relative_below_own_cgroup() {
        let own = own_cgroup().unwrap();
        let own = own.trim_matches('/');
        let want = |rel: &str| {
            if own.is_empty() {
                rel.to_string()
            } else {
                format!("{own}/{rel}")
            }
        };
        assert_eq!(
            resolve_path(Some(Path::new("pods/x")), "abc", false).unwrap(),
            want("pods/x")
        );
        assert_eq!(
            resolve_path(Some(Path::new("./a//b/")), "abc", false).unwrap(),
            want("a/b")
        );
    }

    #[test]
    fn own_cgroup_comes_from_the_reference_hierarchy() {
        let hybrid = "9:name=systemd:/user.slice/s\n4:memory:/sandbox/x\n8:pids:/p\n0::/u\n";
        assert_eq!(
            pick_own_cgroup(hybrid, CgroupVersion::V1).as_deref(),
            Some("/user.slice/s")
        );
        let no_systemd = "4:memory:/sandbox/x\n8:pids:/p\n0::/u\n";
        assert_eq!(
            pick_own_cgroup(no_systemd, CgroupVersion::V1).as_deref(),
            Some("/p")
        );
        assert_eq!(
            pick_own_cgroup("4:cpu,cpuacct:/a\n", CgroupVersion::V1).as_deref(),
            Some("/a")
        );
        assert_eq!(
            pick_own_cgroup("0::/x:y\n", CgroupVersion::V2).as_deref(),
            Some("/x:y")
        );
        assert_eq!(pick_own_cgroup("", CgroupVersion::V2), None);
    }

    #[test]
    fn resolve_absolute_from_root() {
        assert_eq!(
            resolve_path(Some(Path::new("/machine/abc")), "abc", false).unwrap(),
            "machine/abc"
        );
        // A plain path is fine with --systemd-cgroup too.
        assert_eq!(
            resolve_path(Some(Path::new("/machine/abc")), "abc", true).unwrap(),
            "machine/abc"
        );
    }

    #[test]
    fn resolve_rejects_escapes_root_and_bad_ids() {
        let e = resolve_path(Some(Path::new("/a/../../etc")), "abc", false).unwrap_err();
        assert!(e.to_string().contains("\"..\""), "{e}");
        let e = resolve_path(Some(Path::new("/")), "abc", false).unwrap_err();
        assert!(e.to_string().contains("hierarchy root"), "{e}");
        let e = resolve_path(None, "", false).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        assert!(resolve_path(None, "a/b", false).is_err());
        assert!(resolve_path(None, "..", false).is_err());
    }

    #[test]
    fn resolve_systemd_paths() {
        let e = resolve_path(Some(Path::new("system.slice:corral:abc")), "abc", true).unwrap_err();
        assert!(matches!(e, CgroupError::SystemdPath(_)));
        assert!(e.to_string().contains("systemd"), "{e}");
        // Without --systemd-cgroup a colon is just part of a cgroupfs name (runc does the same).
        assert!(
            resolve_path(Some(Path::new("system.slice:corral:abc")), "abc", false)
                .unwrap()
                .ends_with("system.slice:corral:abc")
        );
    }

    #[test]
    fn resolved_paths_are_checked_again_before_use() {
        assert!(check_resolved("corral/x").is_ok());
        for bad in ["", "/corral/x", "corral/../x", "./x"] {
            assert!(check_resolved(bad).is_err(), "{bad:?}");
        }
    }

    // -- validation --------------------------------------------------------

    fn res_from(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    fn validate_err(json: &str) -> String {
        validate(&res_from(json)).unwrap_err().to_string()
    }

    #[test]
    fn validate_accepts_typical_and_unlimited_values() {
        let r = res_from(
            r#"{"memory":{"limit":-1,"reservation":1048576,"swap":-1,"swappiness":60},
                "cpu":{"shares":1024,"quota":-1,"period":100000,"cpus":"0-3,6","mems":"0"},
                "pids":{"limit":-1},
                "blockIO":{"weight":500,"weightDevice":[{"major":8,"minor":0,"weight":100}]},
                "hugepageLimits":[{"pageSize":"2MB","limit":0}],
                "devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3}],
                "unified":{"memory.high":"1G"}}"#,
        );
        validate(&r).unwrap();
        validate(&LinuxResources::default()).unwrap();
    }

    #[test]
    fn validate_names_the_field_and_value() {
        assert_eq!(
            validate_err(r#"{"memory":{"limit":-5}}"#),
            "linux.resources.memory.limit: -5 is negative"
        );
        let cases = [
            (r#"{"memory":{"limit":200,"swap":100}}"#, "memory.swap: 100"),
            (r#"{"memory":{"swap":100}}"#, "memory.swap: 100 needs"),
            (r#"{"memory":{"swappiness":101}}"#, "memory.swappiness: 101"),
            (r#"{"memory":{"reservation":-2}}"#, "memory.reservation: -2"),
            (r#"{"cpu":{"shares":1}}"#, "cpu.shares: 1"),
            (r#"{"cpu":{"shares":300000}}"#, "cpu.shares: 300000"),
            (r#"{"cpu":{"quota":-7}}"#, "cpu.quota: -7 is negative"),
            (r#"{"cpu":{"quota":500}}"#, "cpu.quota: 500"),
            (r#"{"cpu":{"period":10}}"#, "cpu.period: 10"),
            (r#"{"cpu":{"cpus":"0-x"}}"#, "cpu.cpus: \"0-x\""),
            (r#"{"cpu":{"idle":3}}"#, "cpu.idle: 3"),
            (r#"{"pids":{"limit":-2}}"#, "pids.limit: -2 is negative"),
            (r#"{"blockIO":{"weight":5}}"#, "blockIO.weight: 5"),
            (
                r#"{"hugepageLimits":[{"pageSize":"2XB","limit":1}]}"#,
                "hugepageLimits[0].pageSize",
            ),
            (
                r#"{"devices":[{"allow":true,"access":"rwx"}]}"#,
                "devices[0]: access",
            ),
            (
                r#"{"devices":[{"allow":true,"type":"c","major":-3}]}"#,
                "devices[0]: major -3",
            ),
            (r#"{"unified":{"../x":"1"}}"#, "unified: \"../x\""),
        ];
        for (json, want) in cases {
            let got = validate_err(json);
            assert!(
                got.starts_with("linux.resources.") && got.contains(want),
                "{json}: {got}"
            );
        }
    }

    #[test]
    fn page_sizes_parse() {
        assert_eq!(parse_page_size("2MB"), Some(2 << 20));
        assert_eq!(parse_page_size("1GB"), Some(1 << 30));
        assert_eq!(parse_page_size("64KB"), Some(64 << 10));
        assert_eq!(parse_page_size("MB"), None);
        assert_eq!(parse_page_size("0MB"), None);
        assert_eq!(parse_page_size("2mb"), None);
    }

    // -- device policy -----------------------------------------------------

    fn rules(json: &str) -> Vec<DevRule> {
        let spec: Vec<LinuxDeviceCgroup> = serde_json::from_str(json).unwrap();
        effective_device_rules(Some(&spec)).unwrap()
    }

    #[test]
    fn default_device_policy_is_deny_with_the_standard_devices() {
        let p = DevPolicy::from_rules(&effective_device_rules(None).unwrap());
        assert!(!p.default_allow);
        assert!(p.permits('c', 1, 3, ACC_READ | ACC_WRITE)); // /dev/null
        assert!(p.permits('c', 136, 7, ACC_ALL)); // /dev/pts/7
        assert!(p.permits('b', 8, 0, ACC_MKNOD)); // mknod is allowed, use is not
        assert!(!p.permits('b', 8, 0, ACC_READ));
        assert!(!p.permits('c', 10, 200, ACC_READ)); // /dev/net/tun
        assert!(!p.permits('c', 1, 3, ACC_READ | ACC_MKNOD) || p.permits('c', 1, 3, ACC_ALL));
    }

    #[test]
    fn device_rules_follow_kernel_order_semantics() {
        // Privileged: allow all resets the list, later defaults change nothing.
        let p = DevPolicy::from_rules(&rules(r#"[{"allow":true,"access":"rwm"}]"#));
        assert!(p.default_allow);
        assert!(p.exceptions.is_empty());
        // Allow all, then deny writes to /dev/null: a read passes, anything with w is denied.
        let p = DevPolicy::from_rules(&[
            DevRule {
                allow: true,
                kind: 'a',
                major: None,
                minor: None,
                access: ACC_ALL,
            },
            DevRule {
                allow: false,
                access: ACC_WRITE,
                ..DevRule::allow_char(1, Some(3))
            },
        ]);
        assert!(p.permits('c', 1, 3, ACC_READ));
        assert!(!p.permits('c', 1, 3, ACC_WRITE));
        assert!(!p.permits('c', 1, 3, ACC_READ | ACC_WRITE));
        assert!(p.permits('c', 1, 5, ACC_WRITE));
        // Deny mode: two partial allows of the same device merge.
        let p = DevPolicy::from_rules(&rules(
            r#"[{"allow":true,"type":"b","major":8,"minor":0,"access":"r"},
                {"allow":true,"type":"b","major":8,"minor":0,"access":"w"}]"#,
        ));
        assert!(p.permits('b', 8, 0, ACC_READ | ACC_WRITE));
        assert!(!p.permits('b', 8, 1, ACC_READ));
        // ...and a later deny takes bits back.
        let p = DevPolicy::from_rules(&rules(
            r#"[{"allow":true,"type":"b","major":8,"minor":0,"access":"rw"},
                {"allow":false,"type":"b","major":8,"minor":0,"access":"w"}]"#,
        ));
        assert!(p.permits('b', 8, 0, ACC_READ));
        assert!(!p.permits('b', 8, 0, ACC_WRITE));
    }

    #[test]
    fn v1_device_lines_spell_wildcards() {
        assert_eq!(DEFAULT_DEVICE_RULES[0].v1_line(), "c *:* m");
        assert_eq!(DevRule::allow_char(136, None).v1_line(), "c 136:* rwm");
        assert_eq!(DENY_ALL.v1_line(), "a *:* rwm");
    }

    #[test]
    fn hierarchies_from_proc_self_cgroup() {
        let hybrid = "12:rdma:/\n11:cpu,cpuacct:/x\n1:name=systemd:/user.slice\n0::/user.slice\n";
        let got = conventional_candidates(hybrid).unwrap();
        let want = [
            ("rdma", "rdma"),
            ("cpu,cpuacct", "cpu,cpuacct"),
            ("name=systemd", "systemd"),
        ];
        assert_eq!(got.len(), want.len());
        for ((k, d), (wk, wd)) in got.iter().zip(want) {
            assert_eq!((k.as_str(), d.as_str()), (wk, wd));
        }
        // Unknown controllers or a named hierarchy with controllers: ask mountinfo.
        assert!(conventional_candidates("3:cpu,name=x:/\n").is_none());
        assert!(conventional_candidates("3:newctl:/\n").is_none());
        assert!(conventional_candidates("garbage").is_none());
    }

    #[test]
    fn conventional_hierarchies_match_mountinfo_here() {
        if version() != CgroupVersion::V1 {
            return;
        }
        // This project's hosts mount the hierarchies the usual way.
        let mut fast = conventional_v1_hierarchies().expect("conventional v1 layout");
        let mut slow = Vec::new();
        for m in cgroups_rs::fs::hierarchies::mountinfo_self() {
            let names: Vec<&str> = m
                .super_opts
                .iter()
                .map(String::as_str)
                .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                .collect();
            if m.mount_point.starts_with(CGROUP_ROOT) && !names.is_empty() {
                slow.push((names.join(","), m.mount_point));
            }
        }
        fast.sort();
        slow.sort();
        slow.dedup_by(|a, b| a.0 == b.0);
        assert_eq!(fast, slow);
    }

    #[test]
    fn keyed_files_parse() {
        let ev = "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n";
        assert_eq!(keyed_value(ev, "oom_kill"), Some(2));
        assert_eq!(keyed_value(ev, "oom"), Some(1));
        assert_eq!(keyed_value(ev, "absent"), None);
        assert_eq!(keyed_value("populated 1\nfrozen 0\n", "frozen"), Some(0));
    }

    // -- as root, on the host's hierarchies ----------------------------------

    /// Kills the child and removes the test cgroup whatever the test did.
    struct Guard {
        child: Option<Child>,
        dirs: Vec<PathBuf>,
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            if let Some(c) = self.child.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
            for d in &self.dirs {
                // Thaw first: a frozen v1 task cannot exit, so rmdir would stay EBUSY.
                let _ = write_file(d, "freezer.state", "THAWED");
                let _ = remove_cgroup_dir(d);
            }
        }
    }

    fn test_name() -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!("corral-test-{}-{nanos:x}", std::process::id())
    }

    /// Why the as-root tests cannot run here, if they cannot.
    fn root_skip_reason() -> Option<String> {
        if !nix::unistd::geteuid().is_root() {
            return Some("not root".into());
        }
        if let Err(e) = dirs_for("x") {
            return Some(format!("no usable cgroup hierarchy: {e}"));
        }
        None
    }

    macro_rules! need_root {
        () => {
            if let Some(why) = root_skip_reason() {
                eprintln!("skipping: {why}");
                return;
            }
        };
    }

    /// A child that waits for one line on stdin, then runs `script`.
    fn spawn_waiting(script: &str) -> Child {
        Command::new("sh")
            .arg("-c")
            .arg(format!("read _go; {script}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sh")
    }

    fn release(child: &mut Child) {
        let stdin = child.stdin.as_mut().expect("piped stdin");
        stdin.write_all(b"go\n").expect("write to child");
    }

    fn guard_for(path: &str, child: Child) -> Guard {
        Guard {
            child: Some(child),
            dirs: dirs_for(path)
                .unwrap()
                .into_iter()
                .map(|(_, d)| d)
                .collect(),
        }
    }

    fn read_in(cg: &ContainerCgroup, ctrl: &str, file: &str) -> String {
        read_file(cg.dir_of(ctrl).unwrap(), file)
            .unwrap()
            .trim()
            .to_string()
    }

    #[test]
    fn a_cpuset_parent_made_but_not_filled_in_by_another_runtime_is_filled_in() {
        need_root!();
        let root = Path::new("/sys/fs/cgroup/cpuset");
        if !root.join("cpuset.cpus").exists() {
            eprintln!(
                "SKIPPED: no cgroup v1 cpuset hierarchy at {}",
                root.display()
            );
            return;
        }
        // What a concurrent runtime leaves between its mkdir and its writes.
        let parent = root.join(format!("corral-test-cpuset-{}", std::process::id()));
        fs::create_dir(&parent).unwrap();
        struct Rm(PathBuf);
        impl Drop for Rm {
            fn drop(&mut self) {
                let _ = fs::remove_dir(self.0.join("child"));
                let _ = fs::remove_dir(&self.0);
            }
        }
        let _rm = Rm(parent.clone());
        assert_eq!(read_file(&parent, "cpuset.cpus").unwrap().trim(), "");
        let mut made = Vec::new();
        mkdir_all(root, &parent.join("child"), true, &mut made).unwrap();
        assert_eq!(made, vec![parent.join("child")]);
        let want = read_file(root, "cpuset.cpus").unwrap();
        for dir in [parent.clone(), parent.join("child")] {
            assert_eq!(read_file(&dir, "cpuset.cpus").unwrap().trim(), want.trim());
            assert!(!read_file(&dir, "cpuset.mems").unwrap().trim().is_empty());
        }
    }

    #[test]
    fn create_sets_limits_freezes_updates_and_destroys() {
        need_root!();
        let path = test_name();
        let child = spawn_waiting("sleep 30");
        let pid = child.id() as i32;
        let mut guard = guard_for(&path, child);
        let r = res_from(
            r#"{"memory":{"limit":67108864,"reservation":33554432,"swap":134217728},
                "cpu":{"shares":512,"quota":50000,"period":100000,"cpus":"0"},
                "pids":{"limit":50},
                "devices":[{"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"}]}"#,
        );
        let start = Instant::now();
        let mut cg = ContainerCgroup::create(&path, Some(&r), pid).unwrap();
        eprintln!("create took {:?}", start.elapsed());
        assert!(cg.pids().unwrap().contains(&pid));
        if cg.v2 {
            assert_eq!(read_in(&cg, "memory", "memory.max"), "67108864");
            // The spec's swap is memory+swap; v2 wants the swap part alone.
            assert_eq!(read_in(&cg, "memory", "memory.swap.max"), "67108864");
            assert_eq!(read_in(&cg, "memory", "memory.low"), "33554432");
            assert_eq!(read_in(&cg, "pids", "pids.max"), "50");
            assert_eq!(read_in(&cg, "cpu", "cpu.max"), "50000 100000");
            assert_eq!(read_in(&cg, "cpu", "cpu.weight"), "20");
            assert_eq!(read_in(&cg, "cpuset", "cpuset.cpus"), "0");
        } else {
            assert_eq!(read_in(&cg, "memory", "memory.limit_in_bytes"), "67108864");
            assert_eq!(
                read_in(&cg, "memory", "memory.memsw.limit_in_bytes"),
                "134217728"
            );
            assert_eq!(
                read_in(&cg, "memory", "memory.soft_limit_in_bytes"),
                "33554432"
            );
            assert_eq!(read_in(&cg, "pids", "pids.max"), "50");
            assert_eq!(read_in(&cg, "cpu", "cpu.shares"), "512");
            assert_eq!(read_in(&cg, "cpu", "cpu.cfs_quota_us"), "50000");
            assert_eq!(read_in(&cg, "cpu", "cpu.cfs_period_us"), "100000");
            assert_eq!(read_in(&cg, "cpuset", "cpuset.cpus"), "0");
            let devs = read_in(&cg, "devices", "devices.list");
            assert!(
                devs.contains("c 1:3 rwm") && devs.contains("c 136:* rwm"),
                "{devs}"
            );
            assert!(!devs.contains("a *:* rwm"), "{devs}");
            // Every mounted hierarchy got the cgroup, and paths() says where.
            for (ctrl, dir) in cg.paths() {
                assert!(dir.ends_with(&path), "{ctrl}: {}", dir.display());
                let procs = read_file(&dir, "cgroup.procs").unwrap();
                assert!(procs.lines().any(|l| l == pid.to_string()), "{ctrl}");
            }
        }

        let loaded = ContainerCgroup::load(&path).unwrap();
        assert!(!loaded.is_frozen().unwrap());
        loaded.freeze().unwrap();
        assert!(loaded.is_frozen().unwrap());
        // A frozen task does not run: its CPU time stays put.
        let ticks = |p: i32| {
            let stat = fs::read_to_string(format!("/proc/{p}/stat")).unwrap();
            stat.rsplit(')')
                .next()
                .unwrap()
                .split_whitespace()
                .nth(11)
                .unwrap()
                .to_string()
        };
        let before = ticks(pid);
        release(guard.child.as_mut().unwrap());
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(ticks(pid), before);
        loaded.thaw().unwrap();
        assert!(!loaded.is_frozen().unwrap());

        let mut upd = LinuxResources::default();
        upd.set_pids(Some({
            let mut p = LinuxPids::default();
            p.set_limit(20);
            p
        }));
        cg.update(&upd).unwrap();
        assert_eq!(read_in(&cg, "pids", "pids.max"), "20");
        // Devices are left alone by an update that does not mention them.
        if !cg.v2 {
            assert!(read_in(&cg, "devices", "devices.list").contains("c 1:3 rwm"));
        }
        assert!(!cg.oom_killed());

        // While the child lives, the cgroup cannot go; after kill_all it can.
        kill_all(&path, Signal::SIGKILL).unwrap();
        let status = guard.child.as_mut().unwrap().wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        cg.destroy().unwrap();
        for d in &guard.dirs {
            assert!(!d.exists(), "{} still exists", d.display());
        }
        assert!(matches!(
            ContainerCgroup::load(&path),
            Err(CgroupError::NotFound { .. })
        ));
    }

    #[test]
    fn failed_create_names_the_file_and_removes_what_it_made() {
        need_root!();
        let path = format!("{}/inner", test_name());
        let child = spawn_waiting("sleep 30");
        let pid = child.id() as i32;
        let top = path.split('/').next().unwrap().to_string();
        let guard = guard_for(&top, child);
        let before = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let r = res_from(r#"{"cpu":{"cpus":"4095"}}"#);
        let e = ContainerCgroup::create(&path, Some(&r), pid).unwrap_err();
        let msg = e.to_string();
        // The kernel says ERANGE or EINVAL depending on version: any errno name will do.
        let dir = match version() {
            CgroupVersion::V1 => format!("/sys/fs/cgroup/cpuset/{path}"),
            CgroupVersion::V2 => format!("/sys/fs/cgroup/{path}"),
        };
        let want = format!("cgroup cpuset.cpus = 4095 in {dir}: E");
        assert!(msg.starts_with(&want), "{msg}");
        for d in &guard.dirs {
            assert!(!d.exists(), "{} left behind", d.display());
        }
        // The process was never moved.
        assert_eq!(
            fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap(),
            before
        );
    }

    #[test]
    fn memory_limit_gets_a_process_oom_killed() {
        need_root!();
        let path = test_name();
        // Builds a 64 MiB shell string under a 16 MiB limit (no swap allowed).
        let child = spawn_waiting("x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo survived");
        let pid = child.id() as i32;
        let mut guard = guard_for(&path, child);
        let r = res_from(r#"{"memory":{"limit":16777216,"swap":16777216}}"#);
        let cg = ContainerCgroup::create(&path, Some(&r), pid).unwrap();
        release(guard.child.as_mut().unwrap());
        let mut out = String::new();
        let stdout = guard.child.as_mut().unwrap().stdout.take().unwrap();
        BufReader::new(stdout).read_line(&mut out).unwrap();
        guard.child.as_mut().unwrap().wait().unwrap();
        assert!(
            !out.contains("survived"),
            "allocation above the limit succeeded"
        );
        assert!(cg.oom_killed(), "no oom_kill recorded");
    }

    #[test]
    fn kill_all_reaches_every_process_and_subcgroup() {
        need_root!();
        let path = test_name();
        let child = spawn_waiting("sleep 30 & sleep 30 & wait");
        let pid = child.id() as i32;
        let mut guard = guard_for(&path, child);
        let cg = ContainerCgroup::create(&path, None, pid).unwrap();
        release(guard.child.as_mut().unwrap());
        let deadline = Instant::now() + Duration::from_secs(5);
        while cg.pids().unwrap().len() < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(cg.pids().unwrap().len(), 3);
        kill_all(&path, Signal::SIGTERM).unwrap();
        guard.child.as_mut().unwrap().wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cg.pids().unwrap().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(cg.pids().unwrap().is_empty());
        assert!(!cg.is_frozen().unwrap(), "kill_all left the cgroup frozen");
        cg.destroy().unwrap();
    }

    #[test]
    fn blkio_weight_uses_the_file_the_kernel_has() {
        need_root!();
        let path = test_name();
        let child = spawn_waiting("sleep 30");
        let pid = child.id() as i32;
        let _guard = guard_for(&path, child);
        let mut r = LinuxResources::default();
        r.set_block_io(Some(
            LinuxBlockIoBuilder::default()
                .weight(300u16)
                .build()
                .unwrap(),
        ));
        let cg = match ContainerCgroup::create(&path, Some(&r), pid) {
            Err(CgroupError::Unsupported { what, .. }) => {
                eprintln!("skipping: {what}");
                return;
            }
            other => other.unwrap(),
        };
        let ctrl = if cg.v2 { "io" } else { "blkio" };
        let dir = cg.dir_of(ctrl).unwrap();
        let bfq = if cg.v2 {
            "io.bfq.weight"
        } else {
            "blkio.bfq.weight"
        };
        if dir.join(bfq).exists() {
            assert!(read_file(dir, bfq).unwrap().contains("300"));
        }
    }

    /// The v2 device program, checked on the host's cgroup2 mount (in hybrid
    /// mode BPF device programs apply there too): /dev/null allowed, /dev/zero not.
    #[test]
    fn device_filter_program_enforces_rules() {
        need_root!();
        let unified = Path::new("/sys/fs/cgroup/unified");
        let dir = match version() {
            CgroupVersion::V2 => Path::new(CGROUP_ROOT).join(test_name()),
            CgroupVersion::V1 if unified.join("cgroup.procs").exists() => unified.join(test_name()),
            CgroupVersion::V1 => {
                eprintln!("skipping: no cgroup2 mount to attach a device program to");
                return;
            }
        };
        let child = spawn_waiting(
            "cat /dev/null && echo null-ok; head -c1 /dev/zero >/dev/null 2>&1 || echo zero-denied",
        );
        let pid = child.id() as i32;
        let mut guard = Guard {
            child: Some(child),
            dirs: vec![dir.clone()],
        };
        fs::create_dir(&dir).unwrap();
        // Only /dev/null: the runtime's defaults would allow /dev/zero too.
        let policy = DevPolicy::from_rules(&[DENY_ALL, DevRule::allow_char(1, Some(3))]);
        assert!(!policy.permits('c', 1, 5, ACC_READ));
        devfilter::apply(&dir, &policy).unwrap();
        // Applying again replaces the program instead of stacking a second one.
        devfilter::apply(&dir, &policy).unwrap();
        write_file(&dir, "cgroup.procs", &pid.to_string()).unwrap();
        release(guard.child.as_mut().unwrap());
        let mut out = String::new();
        let stdout = guard.child.as_mut().unwrap().stdout.take().unwrap();
        std::io::Read::read_to_string(&mut BufReader::new(stdout), &mut out).unwrap();
        guard.child.as_mut().unwrap().wait().unwrap();
        assert_eq!(out, "null-ok\nzero-denied\n");
    }
}
