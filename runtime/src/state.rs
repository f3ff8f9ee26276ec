//! Container records under `--root`: one directory per container holding
//! `state.json`, the exec fifo and a lock file. The lifecycle status is not
//! stored but derived from facts (is init alive, has `start` consumed the
//! fifo, is the cgroup frozen), so a crash between two steps cannot leave a
//! record that lies.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::Flock;
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};

pub const STATE_FILE: &str = "state.json";
pub const EXEC_FIFO: &str = "exec.fifo";
const LOCK_FILE: &str = "lock";

/// The lifecycle states of the runtime spec, plus `paused` (runc's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What later verbs need to know about a container, written once by `create`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    /// Host pid of the container init; 0 while creating.
    pub pid: i32,
    /// Start time of `pid` (clock ticks since boot), to detect pid reuse.
    pub pid_start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339 creation time.
    pub created: String,
    pub owner: String,
    /// Cgroup path relative to each hierarchy root.
    pub cgroup_path: String,
    /// The spec the container was created from (exec, hooks and delete use it).
    pub spec: Spec,
}

impl Record {
    pub fn annotations(&self) -> std::collections::HashMap<String, String> {
        self.spec.annotations().clone().unwrap_or_default()
    }

    /// Whether the recorded init process is still the same live process.
    pub fn init_alive(&self) -> bool {
        if self.pid <= 0 {
            return false;
        }
        match crate::sys::process_start_time(self.pid) {
            Some(t) if t == self.pid_start_time => {
                crate::sys::process_state(self.pid).is_some_and(|s| s != 'Z' && s != 'X')
            }
            _ => false,
        }
    }
}

/// Root directory of all container records.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// An open container directory, held under an exclusive lock for the life of
/// the value: concurrent verbs on one id run one after the other.
pub struct Entry {
    pub id: String,
    pub dir: PathBuf,
    _lock: Flock<File>,
}

impl Store {
    pub fn new(root: &Path) -> Result<Store> {
        std::fs::create_dir_all(root).step(|| format!("create state root {}", root.display()))?;
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Claim a new id: the directory's `mkdir` is the atomic "does it exist"
    /// check, so two creates of one id cannot both succeed.
    pub fn create(&self, id: &str) -> Result<Entry> {
        validate_id(id)?;
        let dir = self.root.join(id);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::Exists(id.to_string()))
            }
            Err(e) => return Err(Error::io(format!("create {}", dir.display()), e)),
        }
        let lock = lock_dir(&dir)?;
        Ok(Entry {
            id: id.to_string(),
            dir,
            _lock: lock,
        })
    }

    /// Open and lock an existing container.
    pub fn open(&self, id: &str) -> Result<Entry> {
        validate_id(id)?;
        let dir = self.root.join(id);
        if !dir.is_dir() {
            return Err(Error::NotFound(id.to_string()));
        }
        let lock = lock_dir(&dir).map_err(|_| Error::NotFound(id.to_string()))?;
        // It may have been deleted while we waited for the lock.
        if !dir.join(STATE_FILE).exists() && !dir.join(LOCK_FILE).exists() {
            return Err(Error::NotFound(id.to_string()));
        }
        Ok(Entry {
            id: id.to_string(),
            dir,
            _lock: lock,
        })
    }

    /// Every container id with a directory under the root, sorted.
    pub fn ids(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let rd = std::fs::read_dir(&self.root).step(|| format!("read {}", self.root.display()))?;
        for ent in rd.flatten() {
            if ent.path().join(STATE_FILE).is_file() {
                if let Some(name) = ent.file_name().to_str() {
                    ids.push(name.to_string());
                }
            }
        }
        ids.sort();
        Ok(ids)
    }
}

fn lock_dir(dir: &Path) -> Result<Flock<File>> {
    let path = dir.join(LOCK_FILE);
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)
        .step(|| format!("open lock {}", path.display()))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::sys(format!("lock {}", path.display()), e))
}

impl Entry {
    pub fn fifo_path(&self) -> PathBuf {
        self.dir.join(EXEC_FIFO)
    }

    pub fn load(&self) -> Result<Record> {
        let path = self.dir.join(STATE_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(self.id.clone()))
            }
            Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| Error::Config {
            file: path,
            msg: format!("corrupt container state: {e}"),
        })
    }

    /// Write the record atomically (temp file + rename).
    pub fn save(&self, rec: &Record) -> Result<()> {
        let path = self.dir.join(STATE_FILE);
        let bytes =
            serde_json::to_vec(rec).map_err(|e| Error::Usage(format!("encode state: {e}")))?;
        write_atomic(&path, &bytes)
    }

    /// The derived lifecycle status.
    pub fn status(&self, rec: &Record) -> Status {
        if rec.pid <= 0 {
            return Status::Creating;
        }
        if !rec.init_alive() {
            return Status::Stopped;
        }
        if self.fifo_path().exists() {
            return Status::Created;
        }
        match crate::cgroups::ContainerCgroup::load(&rec.cgroup_path).and_then(|c| c.is_frozen()) {
            Ok(true) => Status::Paused,
            _ => Status::Running,
        }
    }

    /// Remove the container directory (the lock goes with it).
    pub fn remove(self) -> Result<()> {
        std::fs::remove_dir_all(&self.dir).step(|| format!("remove {}", self.dir.display()))
    }
}

/// Write a file so readers see the old or the new content, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = File::create(&tmp).step(|| format!("create {}", tmp.display()))?;
    f.write_all(bytes)
        .step(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).step(|| format!("rename {} to {}", tmp.display(), path.display()))
}

/// Container ids: what runc accepts, so they are safe as path components.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::BadId(id.to_string()))
    }
}

/// Current time as RFC 3339 with nanoseconds, UTC.
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_nanos())
}

fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["a", "abc-1_2.3+4", "x".repeat(1024).as_str()] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", "é"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(rfc3339(1_795_564_800, 0), "2026-11-25T00:00:00.000000000Z");
    }

    #[test]
    fn create_refuses_reused_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path()).unwrap();
        let e = store.create("c1").unwrap();
        drop(e);
        assert!(matches!(store.create("c1"), Err(Error::Exists(_))));
        assert!(matches!(store.open("nope"), Err(Error::NotFound(_))));
    }
}
