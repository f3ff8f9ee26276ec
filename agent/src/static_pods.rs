//! Static pods: every Pod in the manifests directory (YAML or JSON, several
//! per file) runs on this node, like kubelet's staticPodPath. An inotify
//! watch on the directory wakes the scan as soon as a file is written (a
//! full rescan also runs every few seconds, and every second where inotify is
//! unavailable); files are parsed again only when their inode, size or mtime
//! changed. A file's pods get a uid derived from the file and its content,
//! so a changed file replaces its pods and an unchanged one keeps them
//! across agent restarts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use corral_api::core::Pod;
use corral_api::Object;
use sha2::{Digest, Sha256};

use crate::Agent;

/// Rescan period without inotify, and the longest wait with it.
const POLL: Duration = Duration::from_secs(1);
const RESCAN: Duration = Duration::from_secs(5);
/// After the first event, wait this long for the rest of a burst (an editor's
/// save, or many files copied at once) so they are applied in one pass.
const SETTLE: Duration = Duration::from_millis(10);

/// The pods of one manifest file, or why the file cannot be used.
pub fn read_file(path: &Path, node_name: &str) -> Result<Vec<Pod>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("read: {e}"))?;
    let objects = corral_api::manifest::parse(&text).map_err(|e| e.to_string())?;
    let mut pods = Vec::new();
    for (i, obj) in objects.into_iter().enumerate() {
        let mut pod = match obj {
            Object::Pod(p) => *p,
            other => {
                return Err(format!(
                    "document {}: kind {} is not supported as a static pod (only Pod)",
                    i + 1,
                    other.kind()
                ))
            }
        };
        if pod.metadata.namespace.is_empty() {
            pod.metadata.namespace = "default".into();
        }
        pod.apply_defaults();
        let errs = pod.validate();
        if !errs.is_empty() {
            let msg = corral_api::validation::join_errors(&errs);
            return Err(format!(
                "document {} (pod {:?}): {msg}",
                i + 1,
                pod.metadata.name
            ));
        }
        pod.spec.node_name = node_name.to_string();
        pod.metadata.uid = uid(path, &pod);
        pod.api_version = "v1".into();
        pod.kind = "Pod".into();
        pods.push(pod);
    }
    Ok(pods)
}

/// A UUID-shaped hash of the file path and the pod as parsed.
fn uid(path: &Path, pod: &Pod) -> String {
    let mut h = Sha256::new();
    h.update(path.as_os_str().as_encoded_bytes());
    h.update([0]);
    h.update(serde_json::to_vec(pod).unwrap_or_default());
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn is_manifest(p: &Path) -> bool {
    p.is_file()
        && !p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'))
        && matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        )
}

/// The watcher's memory: the last good pods of each file, so a file that
/// turns malformed keeps its running pods until it is fixed or removed.
#[derive(Default)]
pub struct Watcher {
    good: BTreeMap<PathBuf, Vec<Pod>>,
    /// What each file looked like when last read, and what reading it gave.
    seen: BTreeMap<PathBuf, (Stamp, Result<Vec<Pod>, String>)>,
    reported: BTreeMap<PathBuf, String>,
}

impl Watcher {
    /// One pass over the directory: what should run, and the errors by file.
    pub fn scan(
        &mut self,
        dir: &Path,
        node_name: &str,
    ) -> (Vec<(Pod, PathBuf)>, BTreeMap<PathBuf, String>) {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| is_manifest(p))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        self.good.retain(|p, _| files.contains(p));
        self.seen.retain(|p, _| files.contains(p));
        let mut errors = BTreeMap::new();
        let mut desired: Vec<(Pod, PathBuf)> = Vec::new();
        for f in files {
            match self.read_if_changed(&f, node_name) {
                Ok(pods) => {
                    self.good.insert(f.clone(), pods);
                }
                Err(e) => {
                    errors.insert(f.clone(), e);
                }
            }
            for pod in self.good.get(&f).into_iter().flatten() {
                let taken = desired.iter().any(|(p, _)| {
                    p.metadata.namespace == pod.metadata.namespace
                        && p.metadata.name == pod.metadata.name
                });
                if taken {
                    errors.insert(
                        f.clone(),
                        format!(
                            "pod {}/{} is already defined by another manifest; ignored here",
                            pod.metadata.namespace, pod.metadata.name
                        ),
                    );
                } else {
                    desired.push((pod.clone(), f.clone()));
                }
            }
        }
        for (f, e) in &errors {
            if self.reported.get(f) != Some(e) {
                eprintln!("corral-agent: manifest {}: {e}", f.display());
            }
        }
        self.reported = errors.clone();
        (desired, errors)
    }
}

/// Identity of a file's content as the directory shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        ino: m.ino(),
        size: m.size(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    })
}

impl Watcher {
    /// `read_file`, or its remembered result when the file did not change.
    fn read_if_changed(&mut self, f: &Path, node_name: &str) -> Result<Vec<Pod>, String> {
        let now = stamp(f);
        if let (Some(now), Some((then, result))) = (&now, self.seen.get(f)) {
            if now == then {
                return result.clone();
            }
        }
        let result = read_file(f, node_name);
        if let Some(now) = now {
            self.seen.insert(f.to_path_buf(), (now, result.clone()));
        }
        result
    }
}

/// Wakes the scan loop: on a change in the directory when inotify works,
/// else after the poll period.
struct Wakeup {
    inotify: Option<nix::sys::inotify::Inotify>,
}

impl Wakeup {
    fn new(dir: &Path) -> Wakeup {
        use nix::sys::inotify::{AddWatchFlags as F, InitFlags, Inotify};
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).and_then(|i| {
            let mask = F::IN_CLOSE_WRITE
                | F::IN_MOVED_TO
                | F::IN_MOVED_FROM
                | F::IN_DELETE
                | F::IN_CREATE
                | F::IN_ATTRIB;
            i.add_watch(dir, mask).map(|_| i)
        });
        match inotify {
            Ok(i) => Wakeup { inotify: Some(i) },
            Err(e) => {
                eprintln!(
                    "corral-agent: no inotify watch on {} ({e}); polling every {}s",
                    dir.display(),
                    POLL.as_secs()
                );
                Wakeup { inotify: None }
            }
        }
    }

    fn wait(&self) {
        use std::os::fd::AsFd;
        let Some(i) = &self.inotify else {
            std::thread::sleep(POLL);
            return;
        };
        let mut fds = [nix::poll::PollFd::new(
            i.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let timeout = nix::poll::PollTimeout::try_from(RESCAN.as_millis() as i32)
            .unwrap_or(nix::poll::PollTimeout::MAX);
        if matches!(nix::poll::poll(&mut fds, timeout), Ok(n) if n > 0) {
            std::thread::sleep(SETTLE);
            // Drain: the events only say "look again"; the scan reads the truth.
            while matches!(i.read_events(), Ok(ev) if !ev.is_empty()) {}
        }
    }
}

/// Watch the manifests directory forever, applying it to the agent and
/// writing `<data>/status/manifest-errors.json`.
pub fn watch(agent: Agent) {
    let mut w = Watcher::default();
    let cfg = agent.config().clone();
    let wakeup = Wakeup::new(&cfg.manifests);
    loop {
        let (desired, errors) = w.scan(&cfg.manifests, &cfg.node_name);
        agent.apply(desired);
        let listed: BTreeMap<String, String> = errors
            .iter()
            .map(|(p, e)| (p.display().to_string(), e.clone()))
            .collect();
        if let Ok(bytes) = serde_json::to_vec_pretty(&listed) {
            let path = cfg.status_dir().join("manifest-errors.json");
            if std::fs::read(&path).ok().as_deref() != Some(bytes.as_slice()) {
                let _ = crate::state::write_atomic(&path, &bytes);
            }
        }
        agent.set_manifest_errors(errors);
        wakeup.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_to_pods_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        std::fs::write(
            &a,
            "apiVersion: v1\nkind: Pod\nmetadata: {name: one}\nspec:\n  containers: [{name: c, image: busybox:1}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: two, namespace: x}\nspec:\n  containers: [{name: c, image: busybox:1}]\n",
        )
        .unwrap();
        let b = dir.path().join("b.json");
        std::fs::write(&b, r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"bad"},"spec":{"containers":[{"name":"c","image":"i","bogus":1}]}}"#).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let mut w = Watcher::default();
        let (pods, errs) = w.scan(dir.path(), "node1");
        let names: Vec<_> = pods
            .iter()
            .map(|(p, _)| format!("{}/{}", p.metadata.namespace, p.metadata.name))
            .collect();
        assert_eq!(names, ["default/one", "x/two"]);
        assert_eq!(pods[0].0.spec.node_name, "node1");
        let e = &errs[&b];
        assert!(e.contains("bogus"), "{e}");
        let uid1 = pods[0].0.metadata.uid.clone();
        let (again, _) = w.scan(dir.path(), "node1");
        assert_eq!(again[0].0.metadata.uid, uid1, "same content, same uid");
        // Turning malformed keeps the last good pods of the file.
        std::fs::write(&a, "kind: Pod\napiVersion: v1\nmetadata: {name: one}\nspec: {containers: [{name: c, image: i, nope: 2}]}\n").unwrap();
        let (kept, errs) = w.scan(dir.path(), "node1");
        assert_eq!(kept.len(), 2);
        assert!(errs[&a].contains("nope"), "{}", errs[&a]);
        std::fs::remove_file(&a).unwrap();
        assert!(w.scan(dir.path(), "node1").0.is_empty());
    }
}
