//! Containers as `corral` keeps them: one directory per container under the
//! state dir (`<state>/<id>/`) holding `container.json` (what was asked
//! for), the bundle's `config.json`, the CRI log `ctr.log` and, once it has
//! ended, the shim's `exit.json`. Names are claimed atomically as symlinks
//! `<state>/.names/<name> -> <id>`.

use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use corral_runtime::container::Runtime;
use corral_shim::ExitRecord;
use serde::{Deserialize, Serialize};

use crate::cli::Global;

pub const RECORD: &str = "container.json";
pub const LOG: &str = "ctr.log";
pub const EXIT: &str = "exit.json";
pub const SHIM_LOG: &str = "shim.log";
const NAMES: &str = ".names";

/// `container.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub id: String,
    pub name: String,
    /// The image as named on the command line, normalized when it was a name.
    pub image: String,
    /// The image id (config digest).
    pub image_id: String,
    /// The process's argv (entrypoint + command).
    pub command: Vec<String>,
    /// RFC 3339.
    pub created: String,
    pub state: Lifecycle,
    /// "bridge", "host" or "none".
    pub network: String,
    pub ip: Option<String>,
    /// Published ports as given ("127.0.0.1:8080:80/tcp").
    pub ports: Vec<String>,
    /// The persistent network namespace (bridge network only).
    pub netns: Option<PathBuf>,
    /// The image's StopSignal, if any.
    pub stop_signal: Option<String>,
    pub tty: bool,
    pub interactive: bool,
    pub auto_remove: bool,
    /// Host pid of the container's init and of its shim (0 until started).
    pub pid: i32,
    pub shim_pid: i32,
    /// RFC 3339, once started.
    pub started: Option<String>,
}

/// What `corral` itself recorded: the shim reports the rest (exit.json).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lifecycle {
    /// Being set up, or set up and never started.
    Created,
    /// Its shim reported it started.
    Started,
}

/// The state shown to users, derived from the facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Paused,
    Exited(ExitRecord),
    /// Started, not running, and no exit recorded (its shim was killed).
    Unknown,
}

impl Status {
    pub fn is_running(&self) -> bool {
        matches!(self, Status::Running | Status::Paused)
    }

    /// One word: created, running, paused, exited, unknown.
    pub fn word(&self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Exited(_) => "exited",
            Status::Unknown => "unknown",
        }
    }
}

/// The containers under one state dir, and the runtime they run in.
pub struct Containers {
    root: PathBuf,
    runtime_root: PathBuf,
}

impl Containers {
    pub fn new(g: &Global) -> Containers {
        Containers {
            root: g.state_dir.clone(),
            runtime_root: g.runtime_root.clone(),
        }
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    pub fn runtime(&self) -> Result<Runtime> {
        Runtime::new(&self.runtime_root, false)
            .with_context(|| format!("open runtime state root {}", self.runtime_root.display()))
    }

    /// Claim `name` for `id` (atomic: the symlink exists or it does not).
    pub fn claim_name(&self, name: &str, id: &str) -> Result<()> {
        check_name(name)?;
        let names = self.root.join(NAMES);
        std::fs::create_dir_all(&names).with_context(|| format!("create {}", names.display()))?;
        match symlink(id, names.join(name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let owner = self.name_owner(name).unwrap_or_default();
                bail!(
                    "the container name {name:?} is already in use by {}: remove that container or choose another name",
                    short(&owner)
                )
            }
            Err(e) => Err(e).with_context(|| format!("claim name {name:?} in {}", names.display())),
        }
    }

    pub fn release_name(&self, name: &str) {
        let link = self.root.join(NAMES).join(name);
        // Only our own claim: a name reused since then belongs to another.
        let _ = std::fs::remove_file(link);
    }

    fn name_owner(&self, name: &str) -> Option<String> {
        let target = std::fs::read_link(self.root.join(NAMES).join(name)).ok()?;
        target.to_str().map(str::to_string)
    }

    /// A free generated name.
    pub fn generate_name(&self) -> String {
        loop {
            let n = crate::names::generate();
            if self.name_owner(&n).is_none() {
                return n;
            }
        }
    }

    /// Make the container's directory (the id is new and random).
    pub fn create_dir(&self, id: &str) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("create state dir {}", self.root.display()))?;
        let dir = self.dir(id);
        std::fs::create_dir(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(dir)
    }

    pub fn save(&self, c: &Container) -> Result<()> {
        let path = self.dir(&c.id).join(RECORD);
        let bytes = serde_json::to_vec_pretty(c).context("encode container.json")?;
        corral_runtime::state::write_atomic(&path, &bytes)
            .with_context(|| format!("write {}", path.display()))
    }

    pub fn load(&self, id: &str) -> Result<Container> {
        let path = self.dir(id).join(RECORD);
        let bytes = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parse {}", path.display()))
    }

    /// Every container with a record, oldest first.
    pub fn list(&self) -> Result<Vec<Container>> {
        let rd = match std::fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("read {}", self.root.display())),
        };
        let mut out = Vec::new();
        for ent in rd.flatten() {
            let Some(id) = ent.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !is_id(&id) {
                continue;
            }
            // A container removed while we list is simply not listed.
            if let Ok(c) = self.load(&id) {
                out.push(c);
            }
        }
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Find a container by name, full id or unique id prefix.
    pub fn resolve(&self, key: &str) -> Result<Container> {
        if let Some(id) = self.name_owner(key) {
            if let Ok(c) = self.load(&id) {
                return Ok(c);
            }
        }
        if is_id(key) {
            if let Ok(c) = self.load(key) {
                return Ok(c);
            }
        }
        let lower = key.to_ascii_lowercase();
        if !key.is_empty() && lower.bytes().all(|b| b.is_ascii_hexdigit()) {
            let matches: Vec<Container> = self
                .list()?
                .into_iter()
                .filter(|c| c.id.starts_with(&lower))
                .collect();
            match matches.len() {
                1 => return Ok(matches.into_iter().next().unwrap_or_else(|| unreachable!())),
                0 => {}
                n => bail!("{n} containers have ids starting with {key:?}: give more of the id"),
            }
        }
        Err(anyhow!("no container named {key:?} (or with that id)"))
    }

    pub fn exit_record(&self, id: &str) -> Result<Option<ExitRecord>> {
        Ok(ExitRecord::read(&self.dir(id).join(EXIT))?)
    }

    /// The container's status from its exit record and the runtime's state.
    pub fn status(&self, c: &Container, rt: &Runtime) -> Result<Status> {
        if let Some(rec) = self.exit_record(&c.id)? {
            return Ok(Status::Exited(rec));
        }
        let live = match rt.state(&c.id) {
            Ok(s) => match s.status.as_str() {
                "running" => Some(Status::Running),
                "paused" => Some(Status::Paused),
                _ => None,
            },
            Err(corral_runtime::Error::NotFound(_)) => None,
            Err(e) => {
                return Err(e).with_context(|| format!("state of container {}", short(&c.id)))
            }
        };
        if let Some(s) = live {
            return Ok(s);
        }
        if c.state == Lifecycle::Created {
            return Ok(Status::Created);
        }
        // The shim may have recorded the exit between our two looks.
        Ok(match self.exit_record(&c.id)? {
            Some(rec) => Status::Exited(rec),
            None => Status::Unknown,
        })
    }

    /// Text of the shim's own log (its errors after detaching).
    pub fn shim_log(&self, id: &str) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir(id).join(SHIM_LOG)) {
            let _ = f.read_to_string(&mut s);
        }
        s.trim().to_string()
    }
}

/// Container ids: 64 lowercase hex digits.
pub fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A new random 64-hex id.
pub fn new_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    let mut f = std::fs::File::open("/dev/urandom").context("open /dev/urandom")?;
    f.read_exact(&mut bytes).context("read /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The 12-digit short id.
pub fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Docker's rule for names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn check_name(name: &str) -> Result<()> {
    let mut bytes = name.bytes();
    let ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        && name.len() <= 128;
    if ok {
        Ok(())
    } else {
        bail!("invalid container name {name:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 128 characters")
    }
}

/// Wait until the shim has recorded the container's exit (or the container
/// was removed meanwhile, by its `--rm`), up to `timeout`. True if it did.
pub fn wait_exit(cs: &Containers, id: &str, timeout: std::time::Duration) -> Result<bool> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if !cs.dir(id).exists() || cs.exit_record(id)?.is_some() {
            return Ok(true);
        }
        if std::time::Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Absolute form of `p`, for paths handed to other processes.
pub fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("resolve path {}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn global(dir: &Path) -> Global {
        Global {
            images_root: dir.join("images"),
            state_dir: dir.join("state"),
            runtime_root: dir.join("rt"),
            net_state_dir: dir.join("net"),
            netns_dir: dir.join("netns"),
            bridge: "x".into(),
            subnet: "10.0.0.0/24".into(),
            shim: None,
        }
    }

    fn record(id: &str, name: &str, created: &str) -> Container {
        Container {
            id: id.into(),
            name: name.into(),
            image: "busybox".into(),
            image_id: "sha256:00".into(),
            command: vec!["true".into()],
            created: created.into(),
            state: Lifecycle::Created,
            network: "none".into(),
            ip: None,
            ports: vec![],
            netns: None,
            stop_signal: None,
            tty: false,
            interactive: false,
            auto_remove: false,
            pid: 0,
            shim_pid: 0,
            started: None,
        }
    }

    #[test]
    fn ids_and_names() {
        let id = new_id().unwrap();
        assert!(is_id(&id));
        assert_ne!(id, new_id().unwrap());
        assert_eq!(short(&id).len(), 12);
        for ok in ["a", "web-1", "A.b_c"] {
            check_name(ok).unwrap();
        }
        for bad in ["", "-a", ".a", "a/b", "a b", &"x".repeat(129)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn claim_resolve_list() {
        let dir = tempfile::tempdir().unwrap();
        let cs = Containers::new(&global(dir.path()));
        let a = format!("ab{}", "0".repeat(62));
        let b = format!("ac{}", "1".repeat(62));
        for (id, name, t) in [(&a, "one", "2026-01-02"), (&b, "two", "2026-01-01")] {
            cs.create_dir(id).unwrap();
            cs.claim_name(name, id).unwrap();
            cs.save(&record(id, name, t)).unwrap();
        }
        let err = cs.claim_name("one", &b).unwrap_err().to_string();
        assert!(err.contains("already in use by ab0000000000"), "{err}");
        assert_eq!(cs.resolve("one").unwrap().id, a);
        assert_eq!(cs.resolve(&b).unwrap().name, "two");
        assert_eq!(cs.resolve("ab").unwrap().id, a);
        assert!(cs
            .resolve("a")
            .unwrap_err()
            .to_string()
            .contains("2 containers"));
        assert!(cs.resolve("nope").is_err());
        let names: Vec<String> = cs.list().unwrap().into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["two", "one"]);
        cs.release_name("one");
        assert!(cs.resolve("one").is_err());
        cs.claim_name("one", &b).unwrap();
    }
}
