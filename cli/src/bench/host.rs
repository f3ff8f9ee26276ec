//! The machine a report was made on: printed with every table and carried
//! in the JSON, because start times mean little without it.

use std::path::Path;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub kernel: String,
    pub cpus: usize,
    pub cpu_model: String,
    pub cgroup: String,
    /// What the VM contender found about KVM (absent, boots guests, or not).
    pub kvm: String,
    /// Changes the bench made to the host or workarounds it used.
    pub notes: Vec<String>,
}

impl Host {
    pub fn probe() -> Host {
        Host {
            kernel: kernel_release(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: cpu_model(),
            cgroup: cgroup_mode(Path::new("/sys/fs/cgroup")),
            kvm: if Path::new("/dev/kvm").exists() {
                "/dev/kvm present, not tried".to_string()
            } else {
                "no /dev/kvm".to_string()
            },
            notes: Vec::new(),
        }
    }

    pub fn line(&self) -> String {
        format!(
            "host: kernel {}, {} CPUs ({}), cgroup {}, KVM: {}",
            self.kernel, self.cpus, self.cpu_model, self.cgroup, self.kvm
        )
    }
}

fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|e| format!("unknown (uname: {e})"))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown model".to_string())
}

/// "v2", "v1 hybrid (...)" or "v1", judged from the mounts under `root`.
pub fn cgroup_mode(root: &Path) -> String {
    if root.join("cgroup.controllers").exists() {
        return "v2 (unified)".to_string();
    }
    let unified = root.join("unified");
    if unified.is_dir() {
        let ctl = std::fs::read_to_string(unified.join("cgroup.controllers")).unwrap_or_default();
        return if ctl.trim().is_empty() {
            "v1 hybrid (empty cgroup2 at /sys/fs/cgroup/unified)".to_string()
        } else {
            format!(
                "v1 hybrid (cgroup2 at /sys/fs/cgroup/unified with {})",
                ctl.trim()
            )
        };
    }
    "v1".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_modes() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(cgroup_mode(d.path()), "v1");
        std::fs::create_dir(d.path().join("unified")).unwrap();
        assert!(cgroup_mode(d.path()).starts_with("v1 hybrid (empty"));
        std::fs::write(d.path().join("unified/cgroup.controllers"), "hugetlb\n").unwrap();
        assert!(cgroup_mode(d.path()).ends_with("with hugetlb)"));
        std::fs::write(d.path().join("cgroup.controllers"), "cpu\n").unwrap();
        assert_eq!(cgroup_mode(d.path()), "v2 (unified)");
    }

    #[test]
    fn probe_fills_facts() {
        let h = Host::probe();
        assert!(h.cpus >= 1);
        assert!(!h.kernel.is_empty());
        assert!(h.line().contains(&h.kernel));
    }
}
