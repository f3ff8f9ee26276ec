//! One attempt of one container: image, snapshot, bundle, shim; its exit;
//! signals; removal. The container runs under a `corral-shim` process that
//! outlives the agent; the agent talks to the runtime only through the
//! `corral-runtime` binary (it forks without exec, which a threaded agent
//! must not do in-process).

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use corral_api::core::{Container, ContainerStateTerminated, PullPolicy};
use corral_api::Time;
use corral_images::{ImageRecord, Reference, Snapshot, Store};
use corral_shim::{ExitRecord, Report, ShimArgs};

use super::spec::{self, PodContext};
use crate::config::Config;
use crate::state::{Attempt, Phase};

/// Why an attempt could not start: Kubernetes' waiting reason and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartError {
    pub reason: &'static str,
    pub message: String,
}

impl StartError {
    fn new(reason: &'static str, message: impl Into<String>) -> StartError {
        StartError {
            reason,
            message: message.into(),
        }
    }
}

/// Runtime ids: the uid's first 12 hex digits, the container, the attempt.
pub fn runtime_id(uid: &str, container: &str, number: i32) -> String {
    let hex: String = uid.chars().filter(|c| *c != '-').take(12).collect();
    format!("{hex}-{container}-{number}")
}

pub fn log_path(cdir: &Path, number: i32) -> PathBuf {
    cdir.join(format!("{number}.log"))
}

pub fn exit_path(cdir: &Path, number: i32) -> PathBuf {
    cdir.join(format!("{number}.exit.json"))
}

fn bundle_dir(cdir: &Path, number: i32) -> PathBuf {
    cdir.join(number.to_string())
}

/// The image of `c` per its imagePullPolicy.
pub fn image(store: &Store, c: &Container) -> Result<ImageRecord, StartError> {
    let policy = c
        .image_pull_policy
        .unwrap_or_else(|| corral_api::core::default_pull_policy(&c.image));
    let local = store
        .find_str(&c.image)
        .map_err(|e| StartError::new("ErrImagePull", format!("look up {}: {e}", c.image)))?;
    match (policy, local) {
        (PullPolicy::IfNotPresent, Some(img)) => Ok(img),
        (PullPolicy::Never, Some(img)) => Ok(img),
        (PullPolicy::Never, None) => Err(StartError::new(
            "ErrImageNeverPull",
            format!(
                "container image {:?} is not present with pull policy of Never",
                c.image
            ),
        )),
        (_, local) => {
            let pulled = c
                .image
                .parse::<Reference>()
                .map_err(|e| e.to_string())
                .and_then(|r| {
                    corral_images::pull(store, &r, &corral_images::PullOptions::default())
                        .map_err(|e| e.to_string())
                });
            match (pulled, local) {
                (Ok(img), _) => Ok(img),
                // Always with an unreachable registry: run what we have, as
                // an agent without network must keep pods running.
                (Err(e), Some(img)) => {
                    eprintln!(
                        "corral-agent: pull {} failed ({e}); using the local image",
                        c.image
                    );
                    Ok(img)
                }
                (Err(e), None) => Err(StartError::new(
                    "ErrImagePull",
                    format!("pull {}: {e}", c.image),
                )),
            }
        }
    }
}

/// What `start` needs besides the container itself.
pub struct StartContext<'a> {
    pub cfg: &'a Config,
    pub store: &'a Store,
    pub pod: &'a PodContext<'a>,
    /// The container's directory `<pod dir>/<name>`.
    pub cdir: &'a Path,
    /// `spec.containers[i]`, for errors.
    pub field: &'a str,
}

/// Make and start attempt `number`. `record` is called with the attempt
/// before the shim is spawned (intent) and once it runs.
pub fn start(
    sc: &StartContext,
    c: &Container,
    img: &ImageRecord,
    number: i32,
    record: &mut dyn FnMut(&Attempt),
) -> Result<Attempt, StartError> {
    let uid = &sc.pod.pod.metadata.uid;
    let mut a = Attempt {
        number,
        runtime_id: runtime_id(uid, &c.name, number),
        phase: Phase::Creating,
        pid: None,
        shim_pid: None,
        pid_start: None,
        started_at: None,
        image: c.image.clone(),
        image_id: img.id().to_string(),
        stop_signal: None,
    };
    record(&a);
    let made = prepare(sc, c, img, &mut a).and_then(|_| spawn(sc, &a));
    match made {
        Ok((pid, shim_pid)) => {
            a.phase = Phase::Running;
            a.pid = Some(pid);
            a.shim_pid = Some(shim_pid);
            a.pid_start = process_start(pid);
            a.started_at = Some(Time::now().to_string());
            record(&a);
            Ok(a)
        }
        Err(e) => {
            remove(sc.cfg, sc.store, sc.cdir, &a);
            Err(e)
        }
    }
}

fn prepare(
    sc: &StartContext,
    c: &Container,
    img: &ImageRecord,
    a: &mut Attempt,
) -> Result<(), StartError> {
    let fail = |e: String| StartError::new("CreateContainerError", e);
    let name = &sc.pod.pod.metadata.name;
    let t = Instant::now();
    let cfg = sc
        .store
        .config(img)
        .map_err(|e| fail(format!("read the config of image {}: {e}", c.image)))?;
    a.stop_signal = cfg.config().as_ref().and_then(|x| x.stop_signal().clone());
    super::trace(name, "image.config", t);
    let t = Instant::now();
    let layers = corral_images::unpack_layers(sc.store, img, &corral_images::Limits::default())
        .map_err(|e| fail(format!("unpack the layers of {}: {e}", c.image)))?;
    super::trace(name, "unpack", t);
    let t = Instant::now();
    // A snapshot left by an attempt the agent crashed in is not reused.
    let _ = Snapshot::remove(sc.store, &a.runtime_id);
    let snap = Snapshot::create(sc.store, &a.runtime_id, img, &layers, false)
        .map_err(|e| fail(format!("snapshot for {}: {e}", a.runtime_id)))?;
    super::trace(name, "snapshot", t);
    let t = Instant::now();
    let run = spec::run_config(sc.pod, c, sc.field, snap.merged.clone())
        .map_err(|e| fail(format!("{}: {e}", sc.field)))?;
    let generated =
        corral_images::runtime_spec(&cfg, &run).map_err(|e| fail(format!("{}: {e}", sc.field)))?;
    let value = serde_json::to_value(&generated).map_err(|e| fail(e.to_string()))?;
    let value = spec::finish(sc.pod, c, value).map_err(|e| fail(format!("{}: {e}", sc.field)))?;
    let bundle = bundle_dir(sc.cdir, a.number);
    let _ = std::fs::remove_dir_all(&bundle);
    std::fs::create_dir_all(&bundle)
        .map_err(|e| fail(format!("create {}: {e}", bundle.display())))?;
    let bytes = serde_json::to_vec_pretty(&value).map_err(|e| fail(e.to_string()))?;
    let r = crate::state::write_replace(&bundle.join("config.json"), &bytes)
        .map_err(|e| fail(e.to_string()));
    super::trace(name, "spec+bundle", t);
    r
}

/// Spawn the detached shim and wait for its report: (container pid, shim pid).
fn spawn(sc: &StartContext, a: &Attempt) -> Result<(i32, i32), StartError> {
    let fail = |e: String| StartError::new("RunContainerError", e);
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| fail(format!("pipe2: {e}")))?;
    let _ = std::fs::remove_file(exit_path(sc.cdir, a.number));
    let args = ShimArgs {
        id: a.runtime_id.clone(),
        bundle: bundle_dir(sc.cdir, a.number),
        runtime_root: sc.cfg.runtime_root.clone(),
        log: log_path(sc.cdir, a.number),
        log_max_size: 10 << 20,
        log_max_files: 2,
        exit_file: exit_path(sc.cdir, a.number),
        sync_fd: Some(wr.as_raw_fd()),
        tty: false,
        stdin: false,
        foreground: false,
        keep: false,
        exit_command: None,
        exit_command_args: Vec::new(),
    };
    let shim_log = sc.cdir.join(format!("{}.shim.log", a.number));
    let err_out = std::fs::File::create(&shim_log)
        .map_err(|e| fail(format!("create {}: {e}", shim_log.display())))?;
    let t = Instant::now();
    let child = super::spawn::spawn(&sc.cfg.shim, &args.to_args(), &err_out, wr.as_raw_fd())
        .map_err(|e| fail(format!("start {}: {e}", sc.cfg.shim.display())))?;
    drop(wr);
    drop(err_out);
    // The detached shim's first process exits once it has forked the real one.
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child), None);
    let r = corral_shim::sync::receive(rd);
    super::trace(&sc.pod.pod.metadata.name, "shim", t);
    match r {
        Ok(Some(Report::Started { pid, shim_pid })) => Ok((pid, shim_pid)),
        Ok(Some(Report::Failed { error })) => Err(fail(error)),
        Ok(None) => {
            let detail = std::fs::read_to_string(&shim_log).unwrap_or_default();
            Err(fail(format!(
                "corral-shim exited without reporting whether the container started: {}",
                detail.trim()
            )))
        }
        Err(e) => Err(fail(e.to_string())),
    }
}

/// Start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat).
pub fn process_start(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The attempt's process still exists and is the one we started.
pub fn alive(a: &Attempt) -> bool {
    match (a.pid, a.pid_start) {
        (Some(pid), Some(start)) => process_start(pid) == Some(start),
        (Some(pid), None) => process_start(pid).is_some(),
        _ => false,
    }
}

/// How the attempt ended, from the shim's exit record (None: not yet).
pub fn exit_of(cdir: &Path, a: &Attempt) -> Option<ContainerStateTerminated> {
    let rec = ExitRecord::read(&exit_path(cdir, a.number))
        .ok()
        .flatten()?;
    let reason = if rec.oom_killed {
        "OOMKilled"
    } else if rec.exit_code == 0 {
        "Completed"
    } else {
        "Error"
    };
    Some(ContainerStateTerminated {
        exit_code: rec.exit_code,
        signal: rec.signal.unwrap_or(0),
        reason: reason.into(),
        message: String::new(),
        started_at: rec.started_at.parse().ok(),
        finished_at: rec.finished_at.parse().ok(),
        container_id: format!("corral://{}", a.runtime_id),
    })
}

/// A terminated state for an attempt whose end nobody recorded.
pub fn unknown_exit(a: &Attempt, reason: &str, message: String) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: 137,
        signal: 0,
        reason: reason.into(),
        message,
        started_at: a.started_at.as_deref().and_then(|s| s.parse().ok()),
        finished_at: Some(Time::now()),
        container_id: format!("corral://{}", a.runtime_id),
    }
}

/// `corral-runtime --root R ARGS...`, bounded in time.
pub fn runtime(
    cfg: &Config,
    args: &[&str],
    timeout: Duration,
) -> Result<std::process::Output, String> {
    let mut cmd = Command::new(&cfg.runtime);
    cmd.arg("--root").arg(&cfg.runtime_root).args(args);
    run_bounded(cmd, timeout).map_err(|e| format!("corral-runtime {}: {e}", args.join(" ")))
}

/// Run `cmd` with piped output, killed after `timeout`.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> Result<std::process::Output, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().map_err(|e| e.to_string()),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {:?}", timeout));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Send `signal` (a name like `SIGTERM` or a number) to the container's
/// init; `all` sends it to every process of the container.
pub fn signal(cfg: &Config, a: &Attempt, signal: &str, all: bool) -> Result<(), String> {
    let mut args = vec!["kill"];
    if all {
        args.push("--all");
    }
    args.extend([a.runtime_id.as_str(), signal]);
    let out = runtime(cfg, &args, Duration::from_secs(10))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Remove what the attempt left besides its log and exit record: runtime
/// state (when the shim did not), snapshot, bundle.
pub fn remove(cfg: &Config, store: &Store, cdir: &Path, a: &Attempt) {
    if cfg.runtime_root.join(&a.runtime_id).exists() {
        let _ = runtime(
            cfg,
            &["delete", "--force", &a.runtime_id],
            Duration::from_secs(10),
        );
    }
    if let Err(e) = Snapshot::remove(store, &a.runtime_id) {
        eprintln!("corral-agent: remove snapshot {}: {e}", a.runtime_id);
    }
    let _ = std::fs::remove_dir_all(bundle_dir(cdir, a.number));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_paths() {
        assert_eq!(
            runtime_id("0123abcd-4567-89ef-0123-456789abcdef", "web", 3),
            "0123abcd4567-web-3"
        );
        let d = Path::new("/d/web");
        assert_eq!(log_path(d, 2), PathBuf::from("/d/web/2.log"));
        assert_eq!(exit_path(d, 2), PathBuf::from("/d/web/2.exit.json"));
    }

    #[test]
    fn own_start_time() {
        let me = std::process::id() as i32;
        assert!(process_start(me).is_some());
        assert!(process_start(i32::MAX).is_none());
    }
}
