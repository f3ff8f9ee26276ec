//! Peak RSS of a per-container supervisor (corral-shim, conmon). It is not
//! our child (podman double-forks conmon; corral waits for its shim itself),
//! so wait4 cannot tell: a thread polls /proc every millisecond during one
//! extra, untimed run and keeps the largest VmHWM (the kernel's own
//! high-water mark of the process's RSS, so a late sample still sees an
//! earlier peak) of the processes with that name whose command line names
//! our temporary directory.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Option<u64>>,
}

impl Sampler {
    pub fn start(comm: &'static str, needle: String) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut peak = None;
            while !flag.load(Ordering::Relaxed) {
                for kib in matching_hwm(comm, &needle) {
                    peak = Some(peak.map_or(kib, |p: u64| p.max(kib)));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            peak
        });
        Sampler { stop, handle }
    }

    /// The peak seen, in KiB; None when no such process was seen.
    pub fn finish(self) -> Option<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().ok().flatten()
    }
}

fn matching_hwm(comm: &str, needle: &str) -> Vec<u64> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let base = std::path::Path::new("/proc").join(pid);
        let Ok(c) = std::fs::read_to_string(base.join("comm")) else {
            continue;
        };
        if c.trim_end() != comm {
            continue;
        }
        let Ok(cmdline) = std::fs::read(base.join("cmdline")) else {
            continue;
        };
        if !String::from_utf8_lossy(&cmdline).contains(needle) {
            continue;
        }
        if let Some(kib) = std::fs::read_to_string(base.join("status"))
            .ok()
            .and_then(|s| vm_hwm(&s))
        {
            out.push(kib);
        }
    }
    out
}

/// VmHWM of a /proc/PID/status text, in KiB.
pub fn vm_hwm(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vmhwm() {
        assert_eq!(
            vm_hwm("Name:\tx\nVmHWM:\t   4242 kB\nVmRSS:\t1 kB\n"),
            Some(4242)
        );
        assert_eq!(vm_hwm("Name:\tx\n"), None);
    }

    #[test]
    fn samples_a_real_process() {
        // A copy of sleep inside a fresh directory: its comm is "sleep" and
        // its command line names the directory, like a shim of one bench.
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("sleep");
        std::fs::copy("/bin/sleep", &bin).unwrap();
        let needle = dir.path().to_string_lossy().into_owned();
        let s = Sampler::start("sleep", needle);
        let other = Sampler::start("sleep", "/no/such/needle".into());
        let mut c = std::process::Command::new(&bin).arg("0.2").spawn().unwrap();
        c.wait().unwrap();
        let peak = s.finish().expect("the sleep process was sampled");
        assert!(peak > 0);
        assert_eq!(other.finish(), None);
    }
}
