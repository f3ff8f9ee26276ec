//! The exit record the shim leaves behind: what `corral ps`, `corral run`
//! and the agent read once the container has ended.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitRecord {
    /// The exit status, or 128 + signal when a signal ended the process.
    pub exit_code: i32,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// The kernel's OOM killer fired in the container's memory cgroup.
    pub oom_killed: bool,
    /// RFC 3339 times (UTC, nanoseconds).
    pub started_at: String,
    pub finished_at: String,
}

impl ExitRecord {
    /// Write atomically: readers see no file or the whole record.
    pub fn write(&self, path: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Format {
            what: format!("encode exit record {}", path.display()),
            msg: e.to_string(),
        })?;
        Ok(corral_runtime::state::write_atomic(path, &bytes)?)
    }

    /// The record, or None when the container has not exited (no file yet).
    pub fn read(path: &Path) -> Result<Option<ExitRecord>> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).step(|| format!("read exit record {}", path.display())),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Format {
                what: format!("exit record {}", path.display()),
                msg: e.to_string(),
            })
    }
}

/// Whether the OOM killer fired in the memory cgroup at `cgroup_path`
/// (relative to the hierarchy root): v1 `memory.oom_control` or v2
/// `memory.events`, whichever exists. False when neither can be read.
pub fn oom_killed(cgroup_path: &str) -> bool {
    let rel = cgroup_path.trim_start_matches('/');
    let candidates = [
        format!("/sys/fs/cgroup/memory/{rel}/memory.oom_control"),
        format!("/sys/fs/cgroup/{rel}/memory.events"),
        format!("/sys/fs/cgroup/unified/{rel}/memory.events"),
    ];
    candidates
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .any(|text| oom_kill_count(&text) > 0)
}

/// The `oom_kill N` line of memory.oom_control / memory.events.
fn oom_kill_count(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.strip_prefix("oom_kill "))
        .filter_map(|n| n.trim().parse().ok())
        .next()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exit.json");
        assert_eq!(ExitRecord::read(&path).unwrap(), None);
        let rec = ExitRecord {
            exit_code: 137,
            signal: Some(9),
            oom_killed: true,
            started_at: "2026-01-01T00:00:00.000000000Z".into(),
            finished_at: "2026-01-01T00:00:01.000000000Z".into(),
        };
        rec.write(&path).unwrap();
        assert_eq!(ExitRecord::read(&path).unwrap(), Some(rec));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"exitCode\": 137") && text.contains("\"oomKilled\": true"));
        std::fs::write(&path, "{").unwrap();
        assert!(ExitRecord::read(&path)
            .unwrap_err()
            .to_string()
            .contains("exit.json"));
    }

    #[test]
    fn oom_counts() {
        assert_eq!(
            oom_kill_count("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"),
            3
        );
        assert_eq!(
            oom_kill_count("low 0\nhigh 0\nmax 5\noom 2\noom_kill 1\n"),
            1
        );
        assert_eq!(oom_kill_count("oom_kill_disable 1\n"), 0);
        assert!(!oom_killed("corral-test-no-such-cgroup/x"));
    }
}
