//! Capabilities of the container process, applied by the container init:
//! the bounding set is cut before setuid; after it (PR_SET_KEEPCAPS kept the
//! permitted set) permitted, inheritable and effective are set together by
//! one capset(2), then the ambient set is raised.
//!
//! Capabilities newer than the running kernel (above
//! /proc/sys/kernel/cap_last_cap) are ignored, as runc does. Capabilities the
//! kernel knows but the profile does not list are always dropped, even those
//! newer than the `caps` crate: the sets are handled as bit masks up to the
//! kernel's last capability.

use caps::Capability as Cap;
use nix::errno::Errno;
use oci_spec::runtime::{Capabilities, Capability as OciCap, LinuxCapabilities};

#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    /// The requested sets break a kernel rule; `set` is the OCI field.
    #[error("process.capabilities.{set}: {cap} {reason}")]
    NotAllowed {
        set: &'static str,
        cap: String,
        reason: String,
    },

    #[error("dropping {cap} from the bounding set: {errno}")]
    Bounding { cap: String, errno: Errno },

    #[error("reading this process's capabilities (capget): {0}")]
    Capget(Errno),

    #[error("setting permitted {permitted:#x}, inheritable {inheritable:#x}, effective {effective:#x} (capset): {errno}")]
    Capset {
        permitted: u64,
        inheritable: u64,
        effective: u64,
        errno: Errno,
    },

    #[error("ambient set: {step}: {msg}")]
    Ambient { step: String, msg: String },

    #[error("finding the kernel's last capability: PR_CAPBSET_READ accepts no capability")]
    NoCapabilities,
}

/// Highest capability number the running kernel knows. Probed with
/// PR_CAPBSET_READ rather than read from /proc, which the container's mount
/// namespace may not have at this point.
pub fn last_cap() -> Result<u8, CapsError> {
    (0..64u8)
        .rev()
        .find(|&n| bounding_has(n).is_ok())
        .ok_or(CapsError::NoCapabilities)
}

fn bounding_has(n: u8) -> Result<bool, Errno> {
    // SAFETY: PR_CAPBSET_READ takes a capability number and touches no memory.
    let r = unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(n), 0, 0, 0) };
    Errno::result(r).map(|v| v == 1)
}

/// `CAP_X` for capabilities the `caps` crate knows, `capability N` otherwise.
fn cap_name(n: u8) -> String {
    caps::all()
        .into_iter()
        .find(|c| c.index() == n)
        .map_or_else(|| format!("capability {n}"), |c| c.to_string())
}

fn to_caps(c: OciCap) -> Cap {
    match c {
        OciCap::AuditControl => Cap::CAP_AUDIT_CONTROL,
        OciCap::AuditRead => Cap::CAP_AUDIT_READ,
        OciCap::AuditWrite => Cap::CAP_AUDIT_WRITE,
        OciCap::BlockSuspend => Cap::CAP_BLOCK_SUSPEND,
        OciCap::Bpf => Cap::CAP_BPF,
        OciCap::CheckpointRestore => Cap::CAP_CHECKPOINT_RESTORE,
        OciCap::Chown => Cap::CAP_CHOWN,
        OciCap::DacOverride => Cap::CAP_DAC_OVERRIDE,
        OciCap::DacReadSearch => Cap::CAP_DAC_READ_SEARCH,
        OciCap::Fowner => Cap::CAP_FOWNER,
        OciCap::Fsetid => Cap::CAP_FSETID,
        OciCap::IpcLock => Cap::CAP_IPC_LOCK,
        OciCap::IpcOwner => Cap::CAP_IPC_OWNER,
        OciCap::Kill => Cap::CAP_KILL,
        OciCap::Lease => Cap::CAP_LEASE,
        OciCap::LinuxImmutable => Cap::CAP_LINUX_IMMUTABLE,
        OciCap::MacAdmin => Cap::CAP_MAC_ADMIN,
        OciCap::MacOverride => Cap::CAP_MAC_OVERRIDE,
        OciCap::Mknod => Cap::CAP_MKNOD,
        OciCap::NetAdmin => Cap::CAP_NET_ADMIN,
        OciCap::NetBindService => Cap::CAP_NET_BIND_SERVICE,
        OciCap::NetBroadcast => Cap::CAP_NET_BROADCAST,
        OciCap::NetRaw => Cap::CAP_NET_RAW,
        OciCap::Perfmon => Cap::CAP_PERFMON,
        OciCap::Setgid => Cap::CAP_SETGID,
        OciCap::Setfcap => Cap::CAP_SETFCAP,
        OciCap::Setpcap => Cap::CAP_SETPCAP,
        OciCap::Setuid => Cap::CAP_SETUID,
        OciCap::SysAdmin => Cap::CAP_SYS_ADMIN,
        OciCap::SysBoot => Cap::CAP_SYS_BOOT,
        OciCap::SysChroot => Cap::CAP_SYS_CHROOT,
        OciCap::SysModule => Cap::CAP_SYS_MODULE,
        OciCap::SysNice => Cap::CAP_SYS_NICE,
        OciCap::SysPacct => Cap::CAP_SYS_PACCT,
        OciCap::SysPtrace => Cap::CAP_SYS_PTRACE,
        OciCap::SysRawio => Cap::CAP_SYS_RAWIO,
        OciCap::SysResource => Cap::CAP_SYS_RESOURCE,
        OciCap::SysTime => Cap::CAP_SYS_TIME,
        OciCap::SysTtyConfig => Cap::CAP_SYS_TTY_CONFIG,
        OciCap::Syslog => Cap::CAP_SYSLOG,
        OciCap::WakeAlarm => Cap::CAP_WAKE_ALARM,
    }
}

/// The set as a bit mask, without capabilities above `last`. An absent set
/// is empty.
fn mask(set: &Option<Capabilities>, last: u8) -> u64 {
    set.iter()
        .flatten()
        .map(|c| to_caps(*c).index())
        .filter(|&n| n <= last)
        .fold(0, |m, n| m | (1u64 << n))
}

fn bits(m: u64) -> impl Iterator<Item = u8> {
    (0..64u8).filter(move |n| m & (1u64 << n) != 0)
}

/// Drop from the bounding set every capability `bounding` does not list.
/// Needs CAP_SETPCAP, so it runs before setuid.
pub fn drop_bounding(c: &LinuxCapabilities) -> Result<(), CapsError> {
    let last = last_cap()?;
    let keep = mask(c.bounding(), last);
    for n in (0..=last).filter(|n| keep & (1u64 << n) == 0) {
        let bounding_err = |errno| CapsError::Bounding {
            cap: cap_name(n),
            errno,
        };
        if !bounding_has(n).map_err(bounding_err)? {
            continue;
        }
        // SAFETY: PR_CAPBSET_DROP takes a capability number and touches no memory.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(n), 0, 0, 0) };
        Errno::result(r).map_err(bounding_err)?;
    }
    Ok(())
}

/// The three base sets, as capget(2)/capset(2) see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BaseSets {
    effective: u64,
    permitted: u64,
    inheritable: u64,
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

fn capget() -> Result<BaseSets, CapsError> {
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: version 3 capget writes exactly two CapData entries, and both
    // structs match the kernel's layout.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) };
    Errno::result(r).map_err(CapsError::Capget)?;
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    Ok(BaseSets {
        effective: join(data[0].effective, data[1].effective),
        permitted: join(data[0].permitted, data[1].permitted),
        inheritable: join(data[0].inheritable, data[1].inheritable),
    })
}

fn capset(s: BaseSets) -> Result<(), CapsError> {
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let split = |m: u64| (m as u32, (m >> 32) as u32);
    let (e, p, i) = (split(s.effective), split(s.permitted), split(s.inheritable));
    let data = [
        CapData {
            effective: e.0,
            permitted: p.0,
            inheritable: i.0,
        },
        CapData {
            effective: e.1,
            permitted: p.1,
            inheritable: i.1,
        },
    ];
    // SAFETY: version 3 capset reads exactly two CapData entries, and both
    // structs match the kernel's layout.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) };
    Errno::result(r).map_err(|errno| CapsError::Capset {
        permitted: s.permitted,
        inheritable: s.inheritable,
        effective: s.effective,
        errno,
    })?;
    Ok(())
}

/// Fail on the first capability of `set` that is not in `allowed`.
fn require_subset(
    field: &'static str,
    set: u64,
    allowed: u64,
    reason: &str,
) -> Result<(), CapsError> {
    match bits(set & !allowed).next() {
        None => Ok(()),
        Some(n) => Err(CapsError::NotAllowed {
            set: field,
            cap: cap_name(n),
            reason: reason.to_string(),
        }),
    }
}

/// Set permitted, inheritable and effective exactly as listed, then raise
/// the ambient set. Runs after setuid with PR_SET_KEEPCAPS set, or as root.
pub fn apply(c: &LinuxCapabilities) -> Result<(), CapsError> {
    let last = last_cap()?;
    let want = BaseSets {
        effective: mask(c.effective(), last),
        permitted: mask(c.permitted(), last),
        inheritable: mask(c.inheritable(), last),
    };
    // The kernel only lets a capability be ambient when it is permitted and
    // inheritable; runc and crun skip the others rather than fail, and
    // `runc spec` writes exactly such a config, so do the same.
    let ambient = mask(c.ambient(), last) & want.permitted & want.inheritable;
    check_sets(want, ambient, capget()?, bounding_mask(last)?)?;
    capset(want)?;
    set_ambient(ambient)
}

fn bounding_mask(last: u8) -> Result<u64, CapsError> {
    (0..=last).try_fold(0u64, |m, n| {
        let has = bounding_has(n).map_err(|errno| CapsError::Bounding {
            cap: cap_name(n),
            errno,
        })?;
        Ok(if has { m | (1u64 << n) } else { m })
    })
}

/// The kernel's capset rules, checked first so that the error names the set
/// and capability instead of a bare EPERM.
fn check_sets(
    want: BaseSets,
    ambient: u64,
    have: BaseSets,
    bounding: u64,
) -> Result<(), CapsError> {
    require_subset(
        "permitted",
        want.permitted,
        have.permitted,
        "is not in the runtime's own permitted set, so it cannot be granted",
    )?;
    require_subset(
        "effective",
        want.effective,
        want.permitted,
        "is not in the permitted set (effective must be a subset of permitted)",
    )?;
    require_subset(
        "inheritable",
        want.inheritable,
        bounding,
        "is not in the bounding set (inheritable must be a subset of bounding)",
    )?;
    require_subset(
        "ambient",
        ambient,
        want.permitted & want.inheritable,
        "must also be in both permitted and inheritable",
    )
}

fn set_ambient(ambient: u64) -> Result<(), CapsError> {
    let ambient_err = |step: String| {
        move |e: caps::errors::CapsError| CapsError::Ambient {
            step,
            msg: e.to_string(),
        }
    };
    caps::clear(None, caps::CapSet::Ambient).map_err(ambient_err("clearing".into()))?;
    for n in bits(ambient) {
        let Some(cap) = caps::all().into_iter().find(|c| c.index() == n) else {
            continue;
        };
        caps::raise(None, caps::CapSet::Ambient, cap)
            .map_err(ambient_err(format!("raising {cap}")))?;
    }
    Ok(())
}

/// Names of the capabilities the running kernel knows, in number order.
pub fn supported() -> Vec<String> {
    let Ok(last) = last_cap() else {
        return Vec::new();
    };
    let mut known: Vec<Cap> = caps::all()
        .into_iter()
        .filter(|c| c.index() <= last)
        .collect();
    known.sort_by_key(|c| c.index());
    known.iter().map(ToString::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::test_support::in_child;

    fn caps_json(json: &str) -> LinuxCapabilities {
        serde_json::from_str(json).expect("test capabilities parse")
    }

    fn status_masks() -> Result<[u64; 5], String> {
        let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
        let field = |name: &str| -> Result<u64, String> {
            let line = status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .ok_or(format!("{name} missing from /proc/self/status"))?;
            u64::from_str_radix(line.trim(), 16).map_err(|e| format!("{name}: {e}"))
        };
        Ok([
            field("CapInh:")?,
            field("CapPrm:")?,
            field("CapEff:")?,
            field("CapBnd:")?,
            field("CapAmb:")?,
        ])
    }

    fn bit(c: Cap) -> u64 {
        1u64 << c.index()
    }

    #[test]
    fn last_cap_matches_proc() {
        let proc: u8 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .expect("cap_last_cap")
            .trim()
            .parse()
            .expect("number");
        assert_eq!(last_cap().expect("probe"), proc);
        let names = supported();
        assert_eq!(names.len(), usize::from(proc) + 1);
        assert_eq!(names[0], "CAP_CHOWN");
    }

    #[test]
    fn mask_ignores_caps_above_the_kernels_last() {
        let c = caps_json(r#"{"bounding":["CAP_CHOWN","CAP_CHECKPOINT_RESTORE","CAP_BPF"]}"#);
        assert_eq!(
            mask(c.bounding(), 39),
            bit(Cap::CAP_CHOWN) | bit(Cap::CAP_BPF)
        );
        assert_eq!(mask(c.effective(), 40), 0);
    }

    #[test]
    fn check_sets_names_the_set_and_capability() {
        let have = BaseSets {
            effective: 0,
            permitted: bit(Cap::CAP_CHOWN) | bit(Cap::CAP_KILL),
            inheritable: 0,
        };
        let want = BaseSets {
            effective: bit(Cap::CAP_KILL),
            permitted: bit(Cap::CAP_CHOWN),
            inheritable: 0,
        };
        let e = check_sets(want, 0, have, u64::MAX)
            .expect_err("effective")
            .to_string();
        assert!(e.contains("effective") && e.contains("CAP_KILL"), "{e}");
        let want = BaseSets {
            effective: 0,
            permitted: bit(Cap::CAP_CHOWN),
            inheritable: bit(Cap::CAP_KILL),
        };
        let e = check_sets(want, bit(Cap::CAP_KILL), have, u64::MAX)
            .expect_err("ambient")
            .to_string();
        assert!(e.contains("ambient") && e.contains("CAP_KILL"), "{e}");
        let e = check_sets(want, 0, have, bit(Cap::CAP_CHOWN))
            .expect_err("inheritable")
            .to_string();
        assert!(e.contains("inheritable") && e.contains("bounding"), "{e}");
    }

    #[test]
    fn reduced_set_after_setuid() {
        let c = caps_json(
            r#"{"bounding":["CAP_CHOWN","CAP_KILL","CAP_NET_BIND_SERVICE","CAP_NET_RAW"],
            "permitted":["CAP_CHOWN","CAP_KILL","CAP_NET_BIND_SERVICE"],
            "inheritable":["CAP_KILL","CAP_NET_BIND_SERVICE"],
            "effective":["CAP_CHOWN","CAP_KILL"],
            "ambient":["CAP_NET_BIND_SERVICE"]}"#,
        );
        let want = [
            bit(Cap::CAP_KILL) | bit(Cap::CAP_NET_BIND_SERVICE),
            bit(Cap::CAP_CHOWN) | bit(Cap::CAP_KILL) | bit(Cap::CAP_NET_BIND_SERVICE),
            bit(Cap::CAP_CHOWN) | bit(Cap::CAP_KILL),
            bit(Cap::CAP_CHOWN)
                | bit(Cap::CAP_KILL)
                | bit(Cap::CAP_NET_BIND_SERVICE)
                | bit(Cap::CAP_NET_RAW),
            bit(Cap::CAP_NET_BIND_SERVICE),
        ];
        in_child(|| {
            drop_bounding(&c).map_err(|e| e.to_string())?;
            nix::sys::prctl::set_keepcaps(true).map_err(|e| format!("keepcaps: {e}"))?;
            let id = nix::unistd::Uid::from_raw(1000);
            nix::unistd::setresuid(id, id, id).map_err(|e| format!("setresuid: {e}"))?;
            apply(&c).map_err(|e| e.to_string())?;
            let got = status_masks()?;
            if got != want {
                return Err(format!("Inh/Prm/Eff/Bnd/Amb got {got:x?}, want {want:x?}"));
            }
            Ok(())
        })
        .expect("child checks");
    }

    #[test]
    fn root_with_full_effective_set_is_reduced_in_one_step() {
        let c = caps_json(
            r#"{"bounding":["CAP_KILL"],"permitted":["CAP_KILL"],"effective":["CAP_KILL"]}"#,
        );
        let k = bit(Cap::CAP_KILL);
        in_child(|| {
            drop_bounding(&c).map_err(|e| e.to_string())?;
            apply(&c).map_err(|e| e.to_string())?;
            let got = status_masks()?;
            if got != [0, k, k, k, 0] {
                return Err(format!("Inh/Prm/Eff/Bnd/Amb got {got:x?}"));
            }
            Ok(())
        })
        .expect("child checks");
    }

    #[test]
    fn asking_for_a_capability_the_runtime_lacks_names_it() {
        in_child(|| {
            for set in [caps::CapSet::Effective, caps::CapSet::Permitted] {
                caps::drop(None, set, Cap::CAP_SYS_NICE).map_err(|e| e.to_string())?;
            }
            let c = caps_json(r#"{"permitted":["CAP_SYS_NICE"]}"#);
            match apply(&c) {
                Err(
                    e @ CapsError::NotAllowed {
                        set: "permitted", ..
                    },
                ) if e.to_string().contains("CAP_SYS_NICE") => Ok(()),
                other => Err(format!("expected a permitted error, got {other:?}")),
            }
        })
        .expect("child checks");
    }
}
