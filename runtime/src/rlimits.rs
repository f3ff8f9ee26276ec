//! POSIX resource limits of the container process (`process.rlimits`),
//! checked at config load and set by the container init before execve.

use crate::error::{Error, Result};
use nix::errno::Errno;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

fn resource(t: PosixRlimitType) -> (Resource, &'static str) {
    use PosixRlimitType as T;
    match t {
        T::RlimitCpu => (Resource::RLIMIT_CPU, "RLIMIT_CPU"),
        T::RlimitFsize => (Resource::RLIMIT_FSIZE, "RLIMIT_FSIZE"),
        T::RlimitData => (Resource::RLIMIT_DATA, "RLIMIT_DATA"),
        T::RlimitStack => (Resource::RLIMIT_STACK, "RLIMIT_STACK"),
        T::RlimitCore => (Resource::RLIMIT_CORE, "RLIMIT_CORE"),
        T::RlimitRss => (Resource::RLIMIT_RSS, "RLIMIT_RSS"),
        T::RlimitNproc => (Resource::RLIMIT_NPROC, "RLIMIT_NPROC"),
        T::RlimitNofile => (Resource::RLIMIT_NOFILE, "RLIMIT_NOFILE"),
        T::RlimitMemlock => (Resource::RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK"),
        T::RlimitAs => (Resource::RLIMIT_AS, "RLIMIT_AS"),
        T::RlimitLocks => (Resource::RLIMIT_LOCKS, "RLIMIT_LOCKS"),
        T::RlimitSigpending => (Resource::RLIMIT_SIGPENDING, "RLIMIT_SIGPENDING"),
        T::RlimitMsgqueue => (Resource::RLIMIT_MSGQUEUE, "RLIMIT_MSGQUEUE"),
        T::RlimitNice => (Resource::RLIMIT_NICE, "RLIMIT_NICE"),
        T::RlimitRtprio => (Resource::RLIMIT_RTPRIO, "RLIMIT_RTPRIO"),
        T::RlimitRttime => (Resource::RLIMIT_RTTIME, "RLIMIT_RTTIME"),
    }
}

/// A limit as a person reads it: RLIM_INFINITY is "unlimited".
fn show(v: u64) -> String {
    if v == libc::RLIM_INFINITY {
        "unlimited".to_string()
    } else {
        v.to_string()
    }
}

/// Reject soft limits above their hard limit and types listed twice.
pub fn validate(r: &[PosixRlimit]) -> Result<()> {
    for (i, rl) in r.iter().enumerate() {
        let (_, name) = resource(rl.typ());
        if rl.soft() > rl.hard() {
            return Err(Error::Usage(format!(
                "process.rlimits[{i}]: {name} soft limit {} is above its hard limit {}",
                show(rl.soft()),
                show(rl.hard())
            )));
        }
        if let Some(first) = r[..i].iter().position(|o| o.typ() == rl.typ()) {
            return Err(Error::Usage(format!(
                "process.rlimits[{i}]: {name} is already set by process.rlimits[{first}]"
            )));
        }
    }
    Ok(())
}

/// Set every limit in order; the first failure stops.
pub fn apply(r: &[PosixRlimit]) -> Result<()> {
    for rl in r {
        let (res, name) = resource(rl.typ());
        setrlimit(res, rl.soft(), rl.hard())
            .map_err(|errno| Error::sys(explain(res, name, rl.soft(), rl.hard(), errno), errno))?;
    }
    Ok(())
}

/// The step text of a failed setrlimit: what was asked, and for EPERM what
/// the limit is now and why it cannot be raised.
fn explain(res: Resource, name: &str, soft: u64, hard: u64, errno: Errno) -> String {
    let asked = format!(
        "setrlimit {name} to soft {}, hard {}",
        show(soft),
        show(hard)
    );
    if errno != Errno::EPERM {
        return asked;
    }
    let Ok((_, cur_hard)) = getrlimit(res) else {
        return format!("{asked}: raising a hard limit needs CAP_SYS_RESOURCE");
    };
    let mut msg = format!(
        "{asked}: the current hard limit is {}, and raising a hard limit needs CAP_SYS_RESOURCE",
        show(cur_hard)
    );
    if res == Resource::RLIMIT_NOFILE {
        if let Some(nr_open) = nr_open().filter(|&n| hard > n) {
            msg.push_str(&format!(
                " (and RLIMIT_NOFILE can never exceed fs.nr_open = {nr_open})"
            ));
        }
    }
    msg
}

/// fs.nr_open, if /proc is readable here (it may not be inside the
/// container's mount namespace).
fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::test_support::in_child;

    fn rlimits(json: &str) -> Vec<PosixRlimit> {
        serde_json::from_str(json).expect("test rlimits parse")
    }

    #[test]
    fn validate_rejects_soft_above_hard_and_duplicates() {
        let ok = rlimits(
            r#"[{"type":"RLIMIT_NOFILE","soft":1024,"hard":4096},
            {"type":"RLIMIT_CORE","soft":0,"hard":18446744073709551615}]"#,
        );
        validate(&ok).expect("valid");
        let bad = rlimits(r#"[{"type":"RLIMIT_NOFILE","soft":4096,"hard":1024}]"#);
        let e = validate(&bad).expect_err("soft > hard").to_string();
        assert!(
            e.contains("rlimits[0]") && e.contains("RLIMIT_NOFILE"),
            "{e}"
        );
        assert!(e.contains("4096") && e.contains("1024"), "{e}");
        let dup = rlimits(
            r#"[{"type":"RLIMIT_CPU","soft":1,"hard":2},{"type":"RLIMIT_NPROC","soft":1,"hard":2},
            {"type":"RLIMIT_CPU","soft":1,"hard":2}]"#,
        );
        let e = validate(&dup).expect_err("duplicate").to_string();
        assert!(e.contains("rlimits[2]") && e.contains("rlimits[0]"), "{e}");
        assert!(e.contains("RLIMIT_CPU"), "{e}");
    }

    #[test]
    fn every_type_name_matches_the_spec() {
        for name in [
            "RLIMIT_CPU",
            "RLIMIT_FSIZE",
            "RLIMIT_DATA",
            "RLIMIT_STACK",
            "RLIMIT_CORE",
            "RLIMIT_RSS",
            "RLIMIT_NPROC",
            "RLIMIT_NOFILE",
            "RLIMIT_MEMLOCK",
            "RLIMIT_AS",
            "RLIMIT_LOCKS",
            "RLIMIT_SIGPENDING",
            "RLIMIT_MSGQUEUE",
            "RLIMIT_NICE",
            "RLIMIT_RTPRIO",
            "RLIMIT_RTTIME",
        ] {
            let t: PosixRlimitType =
                serde_json::from_str(&format!("\"{name}\"")).expect("type parses");
            assert_eq!(resource(t).1, name);
        }
    }

    #[test]
    fn apply_lowers_limits() {
        let r = rlimits(
            r#"[{"type":"RLIMIT_NOFILE","soft":64,"hard":128},
            {"type":"RLIMIT_CORE","soft":0,"hard":0}]"#,
        );
        in_child(|| {
            apply(&r).map_err(|e| e.to_string())?;
            let nofile = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| e.to_string())?;
            let core = getrlimit(Resource::RLIMIT_CORE).map_err(|e| e.to_string())?;
            if (nofile, core) != ((64, 128), (0, 0)) {
                return Err(format!("NOFILE {nofile:?}, CORE {core:?}"));
            }
            Ok(())
        })
        .expect("child checks");
    }

    #[test]
    fn raising_the_hard_limit_says_what_and_why() {
        in_child(|| {
            // Makes the test independent of whether the host grants
            // CAP_SYS_RESOURCE: without it in effective, raising must fail.
            caps::drop(
                None,
                caps::CapSet::Effective,
                caps::Capability::CAP_SYS_RESOURCE,
            )
            .map_err(|e| e.to_string())?;
            let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| e.to_string())?;
            let r = rlimits(&format!(
                r#"[{{"type":"RLIMIT_NOFILE","soft":{h},"hard":{h}}}]"#,
                h = hard + 1
            ));
            let msg = match apply(&r) {
                Err(
                    e @ Error::Sys {
                        errno: Errno::EPERM,
                        ..
                    },
                ) => e.to_string(),
                other => return Err(format!("expected EPERM, got {other:?}")),
            };
            let wanted = [
                "RLIMIT_NOFILE".to_string(),
                format!("hard {}", hard + 1),
                format!("current hard limit is {hard}"),
                "CAP_SYS_RESOURCE".to_string(),
            ];
            match wanted.iter().find(|w| !msg.contains(w.as_str())) {
                None => Ok(()),
                Some(w) => Err(format!("message lacks {w:?}: {msg}")),
            }
        })
        .expect("child checks");
    }
}
