//! CPU and memory usage read from cgroups (v1 and v2) and from /proc, in the
//! units of kubelet's summary API.
//!
//! A container is found through its init's `/proc/<pid>/cgroup`; the
//! hierarchy's mount point comes from `/proc/self/mountinfo`, so hosts that
//! mount cgroups somewhere other than /sys/fs/cgroup work too. On a hybrid
//! host (v1 controllers plus an empty cgroup2) the v1 controllers win.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StatsError {
    #[error("read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: no {what} in {content:?}")]
    Parse {
        path: PathBuf,
        what: &'static str,
        content: String,
    },
    #[error("process {pid}: no cgroup with the {controller} controller in /proc/{pid}/cgroup")]
    NoCgroup { pid: i32, controller: &'static str },
}

pub type Result<T> = std::result::Result<T, StatsError>;

/// Cumulative CPU time and current memory of a cgroup or of the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// CPU time used since the cgroup (or the host) began, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory charged, page cache included.
    pub memory_usage: u64,
    /// `memory_usage` less inactive file pages: what kubelet evicts on.
    pub working_set: u64,
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|source| StatsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_u64(path: &Path, what: &'static str, text: &str) -> Result<u64> {
    text.trim().parse().map_err(|_| StatsError::Parse {
        path: path.to_path_buf(),
        what,
        content: text.trim().chars().take(80).collect(),
    })
}

/// The value of `key` in a flat-keyed file (`memory.stat`, `cpu.stat`).
fn keyed(path: &Path, text: &str, key: &'static str) -> Result<u64> {
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok())?
        })
        .ok_or_else(|| StatsError::Parse {
            path: path.to_path_buf(),
            what: key,
            content: text.chars().take(80).collect(),
        })
}

/// Where a process's CPU and memory accounting lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupDirs {
    V1 { cpuacct: PathBuf, memory: PathBuf },
    V2(PathBuf),
}

impl CgroupDirs {
    /// The cgroup of a running process, through `/proc/<pid>/cgroup`.
    pub fn of_pid(pid: i32) -> Result<CgroupDirs> {
        let cgroup = read(Path::new(&format!("/proc/{pid}/cgroup")))?;
        let mountinfo = read(Path::new("/proc/self/mountinfo"))?;
        CgroupDirs::resolve(pid, &cgroup, &mountinfo)
    }

    /// Match the lines of a `/proc/<pid>/cgroup` to cgroup mounts.
    pub fn resolve(pid: i32, cgroup: &str, mountinfo: &str) -> Result<CgroupDirs> {
        let mounts = cgroup_mounts(mountinfo);
        let v1 = |controller: &'static str| -> Option<PathBuf> {
            let rel = cgroup.lines().find_map(|l| {
                let mut parts = l.splitn(3, ':');
                let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
                list.split(',').any(|c| c == controller).then_some(path)
            })?;
            let m = mounts
                .iter()
                .find(|m| !m.v2 && m.controllers.iter().any(|c| c == controller))?;
            Some(m.join(rel))
        };
        if let (Some(cpuacct), Some(memory)) = (v1("cpuacct"), v1("memory")) {
            return Ok(CgroupDirs::V1 { cpuacct, memory });
        }
        let rel =
            cgroup
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .ok_or(StatsError::NoCgroup {
                    pid,
                    controller: "cpu",
                })?;
        let m = mounts.iter().find(|m| m.v2).ok_or(StatsError::NoCgroup {
            pid,
            controller: "cgroup2",
        })?;
        Ok(CgroupDirs::V2(m.join(rel)))
    }

    pub fn usage(&self) -> Result<Usage> {
        match self {
            CgroupDirs::V1 { cpuacct, memory } => usage_v1(cpuacct, memory),
            CgroupDirs::V2(dir) => usage_v2(dir),
        }
    }
}

struct CgroupMount {
    /// The cgroup path mounted there (`/` unless the host mounted a subtree).
    root: String,
    mount_point: PathBuf,
    v2: bool,
    controllers: Vec<String>,
}

impl CgroupMount {
    fn join(&self, cgroup_path: &str) -> PathBuf {
        let rel = cgroup_path
            .strip_prefix(self.root.as_str())
            .unwrap_or(cgroup_path);
        self.mount_point.join(rel.trim_start_matches('/'))
    }
}

/// cgroup and cgroup2 mounts of a mountinfo text.
fn cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fields: Vec<&str> = left.split(' ').collect();
            let mut rfields = right.split(' ');
            let fstype = rfields.next()?;
            let super_opts = rfields.nth(1).unwrap_or("");
            let v2 = match fstype {
                "cgroup2" => true,
                "cgroup" => false,
                _ => return None,
            };
            Some(CgroupMount {
                root: fields.get(3)?.to_string(),
                mount_point: PathBuf::from(fields.get(4)?),
                v2,
                controllers: super_opts.split(',').map(String::from).collect(),
            })
        })
        .collect()
}

fn usage_v1(cpuacct: &Path, memory: &Path) -> Result<Usage> {
    let cpu_path = cpuacct.join("cpuacct.usage");
    let cpu_ns = parse_u64(&cpu_path, "cpuacct.usage", &read(&cpu_path)?)?;
    let usage_path = memory.join("memory.usage_in_bytes");
    let memory_usage = parse_u64(&usage_path, "usage", &read(&usage_path)?)?;
    let stat_path = memory.join("memory.stat");
    let inactive = keyed(&stat_path, &read(&stat_path)?, "total_inactive_file")?;
    Ok(Usage {
        cpu_ns,
        memory_usage,
        working_set: memory_usage.saturating_sub(inactive),
    })
}

fn usage_v2(dir: &Path) -> Result<Usage> {
    let cpu_path = dir.join("cpu.stat");
    let usec = keyed(&cpu_path, &read(&cpu_path)?, "usage_usec")?;
    let current_path = dir.join("memory.current");
    let memory_usage = parse_u64(&current_path, "usage", &read(&current_path)?)?;
    let stat_path = dir.join("memory.stat");
    let inactive = keyed(&stat_path, &read(&stat_path)?, "inactive_file")?;
    Ok(Usage {
        cpu_ns: usec.saturating_mul(1000),
        memory_usage,
        working_set: memory_usage.saturating_sub(inactive),
    })
}

/// The whole host: CPU time from /proc/stat, memory from /proc/meminfo.
pub fn node_usage() -> Result<Usage> {
    let stat = read(Path::new("/proc/stat"))?;
    let meminfo = read(Path::new("/proc/meminfo"))?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    node_usage_from(&stat, &meminfo, if hz > 0 { hz as u64 } else { 100 })
}

fn node_usage_from(stat: &str, meminfo: &str, hz: u64) -> Result<Usage> {
    let bad = |what| StatsError::Parse {
        path: PathBuf::from(if what == "cpu" {
            "/proc/stat"
        } else {
            "/proc/meminfo"
        }),
        what,
        content: String::new(),
    };
    let cpu = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| bad("cpu"))?;
    let ticks: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().map_err(|_| bad("cpu")))
        .collect::<Result<_>>()?;
    // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
    let busy: u64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    let kib = |key: &'static str| -> Result<u64> {
        meminfo
            .lines()
            .find_map(|l| {
                let rest = l.strip_prefix(key)?.strip_prefix(':')?;
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|v| v * 1024)
            .ok_or_else(|| bad(key))
    };
    let total = kib("MemTotal")?;
    Ok(Usage {
        cpu_ns: busy.saturating_mul(1_000_000_000 / hz),
        memory_usage: total.saturating_sub(kib("MemFree")?),
        working_set: total.saturating_sub(kib("MemAvailable")?),
    })
}

/// `MemTotal` of /proc/meminfo in bytes.
pub fn memory_total() -> Result<u64> {
    let meminfo = read(Path::new("/proc/meminfo"))?;
    meminfo
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix("MemTotal:")?;
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|v| v * 1024)
        .ok_or(StatsError::Parse {
            path: PathBuf::from("/proc/meminfo"),
            what: "MemTotal",
            content: meminfo.chars().take(80).collect(),
        })
}

/// CPU rate between two samples of cumulative CPU time, in nanocores
/// (1e9 = one core busy), as kubelet's `usageNanoCores`.
pub fn nano_cores(prev_ns: u64, prev_at: std::time::Instant, now_ns: u64) -> Option<u64> {
    let elapsed = prev_at.elapsed().as_nanos();
    if elapsed == 0 || now_ns < prev_ns {
        return None;
    }
    Some(((now_ns - prev_ns) as u128 * 1_000_000_000 / elapsed) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
24 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
27 24 0:25 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
28 27 0:26 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
31 27 0:29 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory
33 27 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,cpu,cpuacct
";

    #[test]
    fn hybrid_host_uses_v1_controllers() {
        let cgroup = "12:memory:/corral/c1\n4:cpu,cpuacct:/corral/c1\n0::/\n";
        let dirs = CgroupDirs::resolve(1, cgroup, MOUNTINFO).unwrap();
        assert_eq!(
            dirs,
            CgroupDirs::V1 {
                cpuacct: "/sys/fs/cgroup/cpu,cpuacct/corral/c1".into(),
                memory: "/sys/fs/cgroup/memory/corral/c1".into(),
            }
        );
    }

    #[test]
    fn v2_host_and_subtree_mounts() {
        let mi = "30 1 0:26 /kubepods /mnt/cg rw - cgroup2 cgroup2 rw\n";
        let dirs = CgroupDirs::resolve(1, "0::/kubepods/pod1/c\n", mi).unwrap();
        assert_eq!(dirs, CgroupDirs::V2("/mnt/cg/pod1/c".into()));
        let err = CgroupDirs::resolve(7, "0::/x\n", MOUNTINFO.lines().next().unwrap());
        assert!(
            err.unwrap_err().to_string().contains("process 7"),
            "no cgroup2 mount is an error naming the process"
        );
    }

    fn write(dir: &Path, name: &str, text: &str) {
        fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn v1_files() {
        let cpu = tempfile::tempdir().unwrap();
        let mem = tempfile::tempdir().unwrap();
        write(cpu.path(), "cpuacct.usage", "123456789\n");
        write(mem.path(), "memory.usage_in_bytes", "10485760\n");
        write(
            mem.path(),
            "memory.stat",
            "cache 4096\ninactive_file 8192\ntotal_cache 4096\ntotal_inactive_file 1048576\n",
        );
        let dirs = CgroupDirs::V1 {
            cpuacct: cpu.path().into(),
            memory: mem.path().into(),
        };
        assert_eq!(
            dirs.usage().unwrap(),
            Usage {
                cpu_ns: 123456789,
                memory_usage: 10485760,
                working_set: 10485760 - 1048576,
            }
        );
        fs::remove_file(mem.path().join("memory.stat")).unwrap();
        let err = dirs.usage().unwrap_err().to_string();
        assert!(err.contains("memory.stat"), "{err}");
    }

    #[test]
    fn v2_files() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "cpu.stat",
            "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n",
        );
        write(dir.path(), "memory.current", "4096000\n");
        write(
            dir.path(),
            "memory.stat",
            "anon 1000\nfile 2000\nactive_file 1000\ninactive_file 96000\n",
        );
        let u = CgroupDirs::V2(dir.path().into()).usage().unwrap();
        assert_eq!(
            u,
            Usage {
                cpu_ns: 2_500_000,
                memory_usage: 4096000,
                working_set: 4000000,
            }
        );
        write(dir.path(), "memory.current", "max\n");
        let err = CgroupDirs::V2(dir.path().into())
            .usage()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("memory.current") && err.contains("max"),
            "{err}"
        );
    }

    #[test]
    fn node_from_proc() {
        let stat = "cpu  100 5 50 1000 20 3 2 0 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n";
        let meminfo =
            "MemTotal:       16000 kB\nMemFree:         4000 kB\nMemAvailable:    10000 kB\n";
        let u = node_usage_from(stat, meminfo, 100).unwrap();
        assert_eq!(u.cpu_ns, 160 * 10_000_000);
        assert_eq!(u.memory_usage, 12000 * 1024);
        assert_eq!(u.working_set, 6000 * 1024);
        assert!(node_usage_from("", meminfo, 100).is_err());
        let live = node_usage().unwrap();
        assert!(live.cpu_ns > 0 && live.working_set > 0);
        assert!(memory_total().unwrap() >= live.working_set);
    }

    #[test]
    fn this_process_has_a_cgroup() {
        let dirs = CgroupDirs::of_pid(std::process::id() as i32).unwrap();
        let u = dirs.usage().unwrap();
        assert!(u.cpu_ns > 0, "{dirs:?}: {u:?}");
    }

    #[test]
    fn rate() {
        let at = std::time::Instant::now() - std::time::Duration::from_secs(2);
        let r = nano_cores(0, at, 1_000_000_000).unwrap();
        assert!((400_000_000..=500_000_000).contains(&r), "{r}");
        assert_eq!(nano_cores(10, at, 5), None);
    }
}
