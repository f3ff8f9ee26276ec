//! Address management persisted in the network's state directory.
//!
//! The state is one small JSON file (`state.json`), read and rewritten under an
//! exclusive flock on `lock` and replaced atomically (tmp + fsync + rename + fsync of
//! the directory), so a crash leaves either the old or the new state, and a lease is
//! on disk before its address is configured anywhere: an address in use is never
//! handed out again, also after a restart.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::cidr::Ipv4Cidr;
use crate::error::{Error, Result};
use crate::port::PortMapping;

const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "lock";

/// What one owner holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lease {
    pub ip: Ipv4Addr,
    pub veth: String,
    pub ports: Vec<PortMapping>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub cidr: Ipv4Cidr,
    /// The address handed out last: allocation goes on after it, so a released
    /// address is not reused at once (stale ARP entries, conntrack).
    pub last: Option<Ipv4Addr>,
    pub leases: BTreeMap<String, Lease>,
}

impl State {
    pub fn new(cidr: Ipv4Cidr) -> State {
        State {
            cidr,
            last: None,
            leases: BTreeMap::new(),
        }
    }

    /// The next free address after `last`, wrapping around the range.
    pub fn next_free(&self) -> Result<Ipv4Addr> {
        let used: HashSet<u32> = self.leases.values().map(|l| u32::from(l.ip)).collect();
        let range = self.cidr.assignable();
        let (lo, hi) = (*range.start(), *range.end());
        let start = match self.last.map(u32::from) {
            Some(last) if (lo..hi).contains(&last) => last + 1,
            _ => lo,
        };
        (start..=hi)
            .chain(lo..start)
            .find(|ip| !used.contains(ip))
            .map(Ipv4Addr::from)
            .ok_or_else(|| Error::Exhausted {
                cidr: self.cidr.to_string(),
                leases: self.leases.len(),
            })
    }

    /// Records a lease for `owner` on a fresh address, or returns the address the
    /// owner already holds.
    pub fn allocate(&mut self, owner: &str, veth: &str) -> Result<Ipv4Addr> {
        if let Some(lease) = self.leases.get(owner) {
            return Ok(lease.ip);
        }
        if let Some((other, _)) = self.leases.iter().find(|(_, l)| l.veth == veth) {
            return Err(Error::VethCollision {
                veth: veth.to_string(),
                owner: owner.to_string(),
                other: other.clone(),
            });
        }
        let ip = self.next_free()?;
        self.last = Some(ip);
        self.leases.insert(
            owner.to_string(),
            Lease {
                ip,
                veth: veth.to_string(),
                ports: Vec::new(),
            },
        );
        Ok(ip)
    }

    pub fn release(&mut self, owner: &str) -> Option<Lease> {
        self.leases.remove(owner)
    }

    /// Fails with the holder when another owner already publishes one of `ports`.
    pub fn check_ports(&self, owner: &str, ports: &[PortMapping]) -> Result<()> {
        for p in ports {
            let holder = self.leases.iter().find(|(o, l)| {
                o.as_str() != owner
                    && l.ports
                        .iter()
                        .any(|q| q.proto == p.proto && q.host_port == p.host_port)
            });
            if let Some((other, _)) = holder {
                return Err(Error::PortInUse {
                    port: p.host_port,
                    proto: p.proto,
                    owner: other.clone(),
                });
            }
        }
        let mut seen = HashSet::new();
        for p in ports {
            if !seen.insert((p.proto, p.host_port)) {
                return Err(Error::PortInUse {
                    port: p.host_port,
                    proto: p.proto,
                    owner: owner.to_string(),
                });
            }
        }
        Ok(())
    }
}

/// The state directory of one network, locked for as long as this value lives.
pub struct Locked {
    dir: PathBuf,
    _lock: Flock<File>,
}

impl Locked {
    /// Creates the directory if needed and waits for the exclusive lock.
    pub fn acquire(dir: &Path) -> Result<Locked> {
        fs::create_dir_all(dir).map_err(|e| Error::io("create state directory", dir, e))?;
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("open lock file", &path, e))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| Error::sys(format!("flock {}", path.display()), errno))?;
        Ok(Locked {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// The saved state, or a fresh one for `cidr`. A state made for another CIDR is
    /// an error while it holds leases (their addresses would be lost), and is
    /// replaced when it holds none.
    pub fn load(&self, cidr: Ipv4Cidr) -> Result<State> {
        let path = self.state_path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(State::new(cidr)),
            Err(e) => return Err(Error::io("read network state", &path, e)),
        };
        let state: State = serde_json::from_slice(&bytes).map_err(|source| Error::State {
            path: path.clone(),
            source,
        })?;
        if state.cidr == cidr {
            Ok(state)
        } else if state.leases.is_empty() {
            Ok(State::new(cidr))
        } else {
            Err(Error::CidrMismatch {
                path,
                state: state.cidr.to_string(),
                config: cidr.to_string(),
                leases: state.leases.len(),
            })
        }
    }

    pub fn save(&self, state: &State) -> Result<()> {
        let path = self.state_path();
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let mut bytes = serde_json::to_vec_pretty(state).map_err(|source| Error::State {
            path: path.clone(),
            source,
        })?;
        bytes.push(b'\n');
        let mut f = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io("write", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| Error::io("rename into place", &path, e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io("fsync directory", &self.dir, e))
    }
}

/// One change queued for a group commit: applied to the state by whichever
/// thread saves next, then told how the save went.
trait Pending: Send {
    /// Apply the change; on failure the state is left as it was.
    fn apply(&mut self, state: &mut State);
    /// The save holding the change (or the load before it) failed.
    fn failed(&mut self, error: &Error);
}

/// A queued change and the slot its caller waits on.
struct Request<T, F> {
    op: Option<F>,
    slot: Arc<Mutex<Option<Result<T>>>>,
}

impl<T: Send, F: FnOnce(&mut State) -> Result<T> + Send> Pending for Request<T, F> {
    fn apply(&mut self, state: &mut State) {
        let Some(op) = self.op.take() else { return };
        // On a copy: a change that fails half-way must not reach the disk.
        let mut trial = state.clone();
        let r = op(&mut trial);
        if r.is_ok() {
            *state = trial;
        }
        *lock(&self.slot) = Some(r);
    }

    fn failed(&mut self, error: &Error) {
        let mut slot = lock(&self.slot);
        if matches!(*slot, None | Some(Ok(_))) {
            *slot = Some(Err(shared_error(error)));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking caller must not wedge every later attach.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The same failure for every change of a batch (io::Error is not Clone).
fn shared_error(e: &Error) -> Error {
    let kind = match e {
        Error::Io { source, .. } => source.kind(),
        _ => ErrorKind::Other,
    };
    Error::Io {
        step: "save the network state (a batch of changes)",
        path: PathBuf::from(STATE_FILE),
        source: std::io::Error::new(kind, e.to_string()),
    }
}

#[derive(Default)]
struct Queue {
    pending: Vec<Box<dyn Pending>>,
    /// A thread is loading, applying and saving a batch now.
    saving: bool,
}

/// Group commit of the state: changes made by threads of this process at
/// the same time are applied and saved together, one load, one fsync'd
/// write under the directory's flock for all of them. A caller returns
/// only once a state holding its change is on disk (or with the error
/// that kept it off), so an address it got is never lost by a crash.
///
/// Saved one by one, 100 pods attaching at once queued for seconds behind
/// each other's fsyncs; and each replaced state file is a just-deleted
/// inode the filesystem skips over when it allocates the next one.
pub struct GroupCommit {
    dir: PathBuf,
    cidr: Ipv4Cidr,
    queue: Mutex<Queue>,
    saved: Condvar,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("dir", &self.dir)
            .field("cidr", &self.cidr)
            .finish_non_exhaustive()
    }
}

impl GroupCommit {
    pub fn new(dir: &Path, cidr: Ipv4Cidr) -> GroupCommit {
        GroupCommit {
            dir: dir.to_path_buf(),
            cidr,
            queue: Mutex::new(Queue::default()),
            saved: Condvar::new(),
        }
    }

    /// Apply `op` to the saved state and save it. The first caller to find
    /// no save running does the saving, for its own change and every one
    /// queued meanwhile; the others wait for a save that holds theirs.
    pub fn update<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut State) -> Result<T> + Send + 'static,
    {
        let slot = Arc::new(Mutex::new(None));
        let mut q = lock(&self.queue);
        q.pending.push(Box::new(Request {
            op: Some(op),
            slot: slot.clone(),
        }));
        loop {
            if let Some(r) = lock(&slot).take() {
                return r;
            }
            if q.saving {
                q = self.saved.wait(q).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            q.saving = true;
            let mut batch = std::mem::take(&mut q.pending);
            drop(q);
            let result = self.commit(&mut batch);
            q = lock(&self.queue);
            q.saving = false;
            if let Err(e) = &result {
                for p in batch.iter_mut() {
                    p.failed(e);
                }
            }
            // Results are in the slots only now, after the save: nobody
            // returns an address before it is on disk.
            self.saved.notify_all();
        }
    }

    fn commit(&self, batch: &mut [Box<dyn Pending>]) -> Result<()> {
        let lock = Locked::acquire(&self.dir)?;
        let mut state = lock.load(self.cidr)?;
        let before = state.clone();
        for p in batch.iter_mut() {
            p.apply(&mut state);
        }
        if state != before {
            lock.save(&state)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::Proto;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn allocates_in_order_skipping_gateway_and_network() {
        let mut s = State::new(cidr("10.1.0.0/24"));
        assert_eq!(s.allocate("a", "va").unwrap(), Ipv4Addr::new(10, 1, 0, 2));
        assert_eq!(s.allocate("b", "vb").unwrap(), Ipv4Addr::new(10, 1, 0, 3));
        assert_eq!(s.allocate("a", "va").unwrap(), Ipv4Addr::new(10, 1, 0, 2));
    }

    #[test]
    fn released_address_is_reused_only_after_wrapping() {
        let mut s = State::new(cidr("10.1.0.0/29"));
        let a = s.allocate("a", "va").unwrap();
        s.allocate("b", "vb").unwrap();
        assert_eq!(s.release("a").map(|l| l.ip), Some(a));
        assert_eq!(s.release("a"), None);
        // .4 .5 .6 are next; .2 comes back after the range wraps.
        let next: Vec<_> = ["c", "d", "e", "f"]
            .iter()
            .map(|o| s.allocate(o, &format!("v{o}")).unwrap().octets()[3])
            .collect();
        assert_eq!(next, vec![4, 5, 6, 2]);
    }

    #[test]
    fn exhaustion_is_a_clear_error_and_never_hands_out_broadcast() {
        let mut s = State::new(cidr("10.1.0.0/29"));
        let ips: Vec<_> = (0..5)
            .map(|i| s.allocate(&format!("o{i}"), &format!("v{i}")).unwrap())
            .collect();
        assert!(!ips.contains(&Ipv4Addr::new(10, 1, 0, 7)));
        assert!(!ips.contains(&Ipv4Addr::new(10, 1, 0, 1)));
        let err = s.allocate("o5", "v5").unwrap_err();
        assert!(matches!(err, Error::Exhausted { leases: 5, .. }), "{err}");
        assert!(err.to_string().contains("10.1.0.0/29"));
        s.release("o3");
        assert_eq!(s.allocate("o5", "v5").unwrap(), ips[3]);
    }

    #[test]
    fn veth_collision_is_refused() {
        let mut s = State::new(cidr("10.1.0.0/24"));
        s.allocate("a", "vx").unwrap();
        let err = s.allocate("b", "vx").unwrap_err();
        assert!(matches!(err, Error::VethCollision { .. }), "{err}");
    }

    #[test]
    fn ports_published_by_another_owner_are_refused() {
        let mut s = State::new(cidr("10.1.0.0/24"));
        s.allocate("a", "va").unwrap();
        let p: PortMapping = "8080:80".parse().unwrap();
        s.leases.get_mut("a").unwrap().ports.push(p);
        let err = s.check_ports("b", &[p]).unwrap_err();
        assert!(err.to_string().contains("8080/tcp"), "{err}");
        assert!(err.to_string().contains("\"a\""), "{err}");
        s.check_ports("a", &[p]).unwrap();
        let udp = PortMapping {
            proto: Proto::Udp,
            ..p
        };
        s.check_ports("b", &[udp]).unwrap();
        assert!(s.check_ports("b", &[udp, udp]).is_err());
    }

    #[test]
    fn state_persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let c = cidr("10.1.0.0/24");
        {
            let l = Locked::acquire(dir.path()).unwrap();
            let mut s = l.load(c).unwrap();
            s.allocate("a", "va").unwrap();
            s.allocate("b", "vb").unwrap();
            l.save(&s).unwrap();
        }
        let l = Locked::acquire(dir.path()).unwrap();
        let mut s = l.load(c).unwrap();
        assert_eq!(s.leases.len(), 2);
        assert_eq!(s.allocate("c", "vc").unwrap(), Ipv4Addr::new(10, 1, 0, 4));
        assert!(!dir.path().join("state.json.tmp").exists());
    }

    #[test]
    fn a_state_for_another_cidr_with_leases_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let l = Locked::acquire(dir.path()).unwrap();
        let mut s = l.load(cidr("10.1.0.0/24")).unwrap();
        l.save(&s).unwrap();
        assert_eq!(
            l.load(cidr("10.2.0.0/24")).unwrap().cidr,
            cidr("10.2.0.0/24")
        );
        s.allocate("a", "va").unwrap();
        l.save(&s).unwrap();
        let err = l.load(cidr("10.2.0.0/24")).unwrap_err();
        assert!(
            matches!(err, Error::CidrMismatch { leases: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn corrupt_state_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(STATE_FILE), b"{\"cidr\": 3").unwrap();
        let l = Locked::acquire(dir.path()).unwrap();
        let err = l.load(cidr("10.1.0.0/24")).unwrap_err().to_string();
        assert!(err.contains("state.json"), "{err}");
    }

    #[test]
    fn group_commit_saves_every_change_before_returning() {
        let dir = tempfile::tempdir().unwrap();
        let c = cidr("10.1.0.0/24");
        let gc = Arc::new(GroupCommit::new(dir.path(), c));
        let threads: Vec<_> = (0..40)
            .map(|i| {
                let (gc, dir) = (gc.clone(), dir.path().to_path_buf());
                std::thread::spawn(move || {
                    let owner = format!("o{i}");
                    let who = owner.clone();
                    let ip = gc
                        .update(move |s| s.allocate(&who, &format!("v{i}")))
                        .unwrap();
                    // Returned only once it is on disk.
                    let on_disk = Locked::acquire(&dir).unwrap().load(c).unwrap();
                    assert_eq!(on_disk.leases[&owner].ip, ip);
                    ip
                })
            })
            .collect();
        let ips: HashSet<Ipv4Addr> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(ips.len(), 40, "every owner got its own address");
        let s = Locked::acquire(dir.path()).unwrap().load(c).unwrap();
        assert_eq!(s.leases.len(), 40);
    }

    #[test]
    fn a_failed_change_in_a_batch_leaves_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let c = cidr("10.1.0.0/29");
        let gc = GroupCommit::new(dir.path(), c);
        for o in ["a", "b", "c", "d", "e"] {
            gc.update(move |s| s.allocate(o, &format!("v{o}"))).unwrap();
        }
        // Half-made changes of a failing op are dropped with it.
        let err = gc
            .update(|s| {
                s.release("a");
                s.allocate("f", "vf")?;
                s.allocate("g", "vg")
            })
            .unwrap_err();
        assert!(matches!(err, Error::Exhausted { .. }), "{err}");
        let s = Locked::acquire(dir.path()).unwrap().load(c).unwrap();
        assert!(s.leases.contains_key("a") && !s.leases.contains_key("f"));
        gc.update(|s| Ok(s.release("a"))).unwrap();
        let s = Locked::acquire(dir.path()).unwrap().load(c).unwrap();
        assert!(!s.leases.contains_key("a"));
    }

    #[test]
    fn a_failed_save_reaches_every_caller_of_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let c = cidr("10.1.0.0/24");
        // A directory where the state file goes: the load fails.
        fs::create_dir_all(dir.path().join(STATE_FILE)).unwrap();
        let gc = GroupCommit::new(dir.path(), c);
        let err = gc.update(|s| s.allocate("a", "va")).unwrap_err();
        assert!(err.to_string().contains("state.json"), "{err}");
    }

    #[test]
    fn lock_excludes_a_second_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = Locked::acquire(dir.path()).unwrap();
        let path = dir.path().join(LOCK_FILE);
        let f = File::open(&path).unwrap();
        assert!(Flock::lock(f, FlockArg::LockExclusiveNonblock).is_err());
        drop(first);
        let f = File::open(&path).unwrap();
        assert!(Flock::lock(f, FlockArg::LockExclusiveNonblock).is_ok());
    }
}
