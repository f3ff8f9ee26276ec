//! What the agent keeps on disk per pod, written atomically (tmp, fsync,
//! rename, fsync of the directory) before each action (the intent) and
//! after it, so an agent killed at any point finds out on its next start
//! what it was doing and finishes or undoes it.
//!
//! Layout under `<data>/pods/<ns>_<name>_<uid>/`:
//! - `pod.json`: [`PodRecord`] (the pod as read from its manifest, sandbox paths, IP)
//! - `<container>/state.json`: [`ContainerRecord`]
//! - `<container>/<restartCount>.log`, `<restartCount>.exit.json`,
//!   `<restartCount>/config.json` (bundle) of each attempt.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use corral_api::core::{ContainerStateTerminated, Pod};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StateError {
    let path = path.to_path_buf();
    move |source| StateError::Io { what, path, source }
}

/// Write `bytes` to `path` so a reader (or a crash) sees the old or the new
/// content, never a mix: tmp file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io("create directory", dir))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = File::create(&tmp).map_err(io("create", &tmp))?;
    f.write_all(bytes).map_err(io("write", &tmp))?;
    f.sync_all().map_err(io("fsync", &tmp))?;
    fs::rename(&tmp, path).map_err(io("rename into place", path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync directory", dir))
}

/// Like [`write_atomic`] without the fsyncs: readers still see the old or
/// the new content, but a host crash may lose the write. Only for files the
/// agent makes again from its records (status, `/etc/hosts`, the bundle of
/// an attempt still recorded as `Creating`): each fsync costs ~8 ms on this
/// project's hosts, which every pod start paid several times.
pub fn write_replace(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io("create directory", dir))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&tmp, bytes).map_err(io("write", &tmp))?;
    fs::rename(&tmp, path).map_err(io("rename into place", path))
}

pub fn save<T: Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| StateError::Format {
        path: path.to_path_buf(),
        msg: format!("encode: {e}"),
    })?;
    write_atomic(path, &bytes)
}

/// The record at `path`, None when there is none.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("read", path)(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StateError::Format {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })
}

/// A pod the agent runs, as it was when admitted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRecord {
    /// The pod: metadata (uid set) and spec with defaults applied.
    pub pod: Pod,
    /// The manifest file it came from.
    pub source: PathBuf,
    /// Set once the sandbox's namespaces and address exist.
    pub sandbox: Option<Sandbox>,
    /// RFC 3339, when the agent admitted the pod.
    pub start_time: String,
}

/// The pod's shared namespaces (bind-mounted files) and address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sandbox {
    pub netns: PathBuf,
    pub uts: PathBuf,
    pub ipc: PathBuf,
    pub ip: String,
}

/// Where one container attempt stands. Written as `Creating` before the
/// shim is spawned, so a restarted agent knows an attempt may exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// The shim may have been spawned; not known whether it started.
    Creating,
    Running,
    /// Its exit is recorded in `ContainerRecord::terminated`.
    Exited,
}

/// One start of a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// The restart count this attempt was started as (names its files).
    pub number: i32,
    pub runtime_id: String,
    pub phase: Phase,
    pub pid: Option<i32>,
    pub shim_pid: Option<i32>,
    /// The init's start time in clock ticks since boot (/proc/PID/stat
    /// field 22): tells our container from a later process reusing its pid.
    pub pid_start: Option<u64>,
    pub started_at: Option<String>,
    pub image: String,
    pub image_id: String,
    /// The image's StopSignal, if it names one.
    #[serde(default)]
    pub stop_signal: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRecord {
    pub name: String,
    pub restart_count: i32,
    /// The latest attempt, if any was made.
    pub attempt: Option<Attempt>,
    /// How the latest attempt ended (when it has).
    pub terminated: Option<ContainerStateTerminated>,
    /// How the attempt before ended (Kubernetes' lastState).
    pub last_terminated: Option<ContainerStateTerminated>,
    /// Unix seconds before which no new attempt starts (CrashLoopBackOff).
    pub backoff_until: Option<f64>,
    /// The next back-off, in seconds (0: the configured base).
    pub next_backoff: f64,
    /// The back-off being waited out now, in seconds.
    #[serde(default)]
    pub current_backoff: f64,
    /// The last error starting it (image pull, create), for waiting.message.
    pub error: Option<(String, String)>,
}

/// `<ns>_<name>_<uid>`: the pod's directory name.
pub fn pod_dir_name(namespace: &str, name: &str, uid: &str) -> String {
    format!("{namespace}_{name}_{uid}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/state.json");
        assert!(load::<ContainerRecord>(&path).unwrap().is_none());
        let rec = ContainerRecord {
            name: "web".into(),
            restart_count: 3,
            next_backoff: 20.0,
            ..Default::default()
        };
        save(&path, &rec).unwrap();
        let back: ContainerRecord = load(&path).unwrap().unwrap();
        assert_eq!((back.name.as_str(), back.restart_count), ("web", 3));
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no tmp file is left behind");
        fs::write(&path, "{").unwrap();
        let e = load::<ContainerRecord>(&path).unwrap_err().to_string();
        assert!(e.contains("state.json"), "{e}");
    }
}
