//! The lifecycle verbs: create, start, state, kill, delete, pause, resume,
//! run, list, ps. Each takes the container's lock for its whole duration.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use serde::Serialize;

use crate::cgroups::{self, ContainerCgroup};
use crate::error::{Context, Error, Result};
use crate::hooks::{self, HookKind};
use crate::init::InitArgs;
use crate::namespaces::{self, Plan};
use crate::spec::Bundle;
use crate::state::{self, Entry, Record, Status, Store};
use crate::sync::{self, Channel, Msg};

/// Options of `create` and `run`.
#[derive(Debug, Clone, Default)]
pub struct CreateOpts {
    pub bundle: PathBuf,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
}

/// The runtime as the CLI sees it: a state root and global flags.
pub struct Runtime {
    pub store: Store,
    pub systemd_cgroup: bool,
}

/// One line of `list`, and the body of `state` (runc's fields).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
}

impl Runtime {
    pub fn new(root: &Path, systemd_cgroup: bool) -> Result<Runtime> {
        Ok(Runtime {
            store: Store::new(root)?,
            systemd_cgroup,
        })
    }

    /// Create the container and leave its init waiting for `start`.
    /// Returns the init's host pid.
    pub fn create(&self, id: &str, opts: &CreateOpts) -> Result<i32> {
        let bundle = Bundle::load(&opts.bundle)?;
        let entry = self.store.create(id)?;
        let mut undo = Undo::new(&entry);
        let pid = self.create_in(&entry, &bundle, opts, &mut undo)?;
        undo.disarm();
        Ok(pid)
    }

    fn create_in(
        &self,
        entry: &Entry,
        bundle: &Bundle,
        opts: &CreateOpts,
        undo: &mut Undo,
    ) -> Result<i32> {
        let spec = &bundle.spec;
        let linux = spec.linux().clone().unwrap_or_default();
        let plan = Plan::from_spec(spec);
        let cgroup_path = cgroups::resolve_path(
            linux.cgroups_path().as_deref(),
            &entry.id,
            self.systemd_cgroup,
        )?;
        make_fifo(&entry.fifo_path())?;
        let console = opts
            .console_socket
            .as_deref()
            .map(crate::console::connect)
            .transpose()?;
        // Init is forked below and inherits what this learns (no mount table
        // reads of its own for the cgroup mount).
        cgroups::prime();
        let (parent, child) = sync::pair()?;
        let args = InitArgs {
            id: &entry.id,
            bundle,
            plan: &plan,
            chan: &child,
            fifo: &entry.fifo_path(),
            cgroup_path: &cgroup_path,
            console: console.as_ref(),
            no_pivot: opts.no_pivot,
            new_keyring: !opts.no_new_keyring,
            preserve_fds: opts.preserve_fds,
        };
        let pid = spawn_init(&args, &parent)?;
        drop(child);
        drop(console);
        undo.pid = Some(pid);
        if plan.new_user() {
            write_id_maps(pid, &linux)?;
        }
        undo.cgroup = Some(ContainerCgroup::create_empty(
            &cgroup_path,
            linux.resources().as_ref(),
        )?);
        // First go-ahead: ids are mapped and the cgroup exists; init builds
        // its rootfs while we move it into the cgroup (the first cgroup
        // migration waits for an RCU grace period, ~10 ms on v1).
        parent.send(&Msg::Pid(pid))?;
        if let Some(cg) = undo.cgroup.as_mut() {
            if let Err(e) = cg.add_pid(pid) {
                // Init may have failed meanwhile (then the join fails with
                // ESRCH): its own report names the real cause.
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
                return Err(match parent.recv() {
                    Ok(Some(Msg::Fail(m))) => Error::Init(m),
                    _ => Error::Cgroup(e),
                });
            }
        }
        // EPIPE here means init already failed; its report is waiting.
        let go = parent.send(&Msg::Go);
        self.await_ready(&parent, entry, bundle, pid)?;
        go?;
        let record = Record {
            id: entry.id.clone(),
            pid,
            pid_start_time: crate::sys::process_start_time(pid).unwrap_or(0),
            bundle: bundle.dir.clone(),
            rootfs: bundle.rootfs.clone(),
            created: state::now_rfc3339(),
            owner: owner_name(),
            cgroup_path,
            spec: spec.clone(),
        };
        entry.save(&record)?;
        if let Some(pf) = &opts.pid_file {
            write_pid_file(pf, pid)?;
        }
        Ok(pid)
    }

    /// Serve init until it is ready: it may ask us to run the hooks that
    /// belong to the runtime's namespaces on the way.
    fn await_ready(&self, chan: &Channel, entry: &Entry, bundle: &Bundle, pid: i32) -> Result<()> {
        loop {
            match chan.recv()? {
                Some(Msg::Ready) => return Ok(()),
                Some(Msg::RunHooks) => {
                    let st = oci_state(
                        &entry.id,
                        "creating",
                        pid,
                        &bundle.dir,
                        bundle.spec.annotations().clone(),
                    );
                    if let Some(h) = bundle.spec.hooks() {
                        if let Some(v) = h.prestart() {
                            hooks::run(HookKind::Prestart, v, &st)?;
                        }
                        if let Some(v) = h.create_runtime() {
                            hooks::run(HookKind::CreateRuntime, v, &st)?;
                        }
                    }
                    chan.send(&Msg::Go)?;
                }
                Some(Msg::Fail(m)) => return Err(Error::Init(m)),
                Some(other) => {
                    return Err(Error::Init(format!("unexpected {other:?} during setup")))
                }
                None => return Err(Error::Init("exited during setup without a word".into())),
            }
        }
    }

    /// Release a created container's init to exec the user's process.
    pub fn start(&self, id: &str) -> Result<()> {
        let entry = self.store.open(id)?;
        let rec = entry.load()?;
        let status = entry.status(&rec);
        if status != Status::Created {
            return Err(bad_state(id, status, "start", "created"));
        }
        release_init(&entry, &rec)?;
        let _ = std::fs::remove_file(entry.fifo_path());
        if let Some(h) = rec
            .spec
            .hooks()
            .as_ref()
            .and_then(|h| h.poststart().clone())
        {
            let st = oci_state(
                id,
                "running",
                rec.pid,
                &rec.bundle,
                rec.spec.annotations().clone(),
            );
            // The spec makes poststart failures warnings, not errors.
            if let Err(e) = hooks::run(HookKind::Poststart, &h, &st) {
                eprintln!("warning: {e}");
            }
        }
        Ok(())
    }

    pub fn state(&self, id: &str) -> Result<Summary> {
        let entry = self.store.open(id)?;
        let rec = entry.load()?;
        Ok(summary(&entry, &rec))
    }

    pub fn list(&self) -> Result<Vec<Summary>> {
        let mut out = Vec::new();
        for id in self.store.ids()? {
            // A container deleted while we listed is simply not listed.
            if let Ok(entry) = self.store.open(&id) {
                if let Ok(rec) = entry.load() {
                    out.push(summary(&entry, &rec));
                }
            }
        }
        Ok(out)
    }

    pub fn kill(&self, id: &str, sig: Signal, all: bool) -> Result<()> {
        let entry = self.store.open(id)?;
        let rec = entry.load()?;
        let status = entry.status(&rec);
        if all {
            if status == Status::Stopped && ContainerCgroup::load(&rec.cgroup_path).is_err() {
                return Ok(());
            }
            return Ok(cgroups::kill_all(&rec.cgroup_path, sig)?);
        }
        if !matches!(status, Status::Created | Status::Running | Status::Paused) {
            return Err(bad_state(id, status, "kill", "created, running or paused"));
        }
        nix::sys::signal::kill(Pid::from_raw(rec.pid), sig)
            .step(|| format!("kill pid {} with {sig}", rec.pid))
    }

    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let entry = match self.store.open(id) {
            Ok(e) => e,
            Err(Error::NotFound(_)) if force => return Ok(()),
            Err(e) => return Err(e),
        };
        let rec = match entry.load() {
            Ok(r) => r,
            // A create that died before writing its record: nothing runs.
            Err(Error::NotFound(_)) => return entry.remove(),
            Err(e) => return Err(e),
        };
        let status = entry.status(&rec);
        match status {
            Status::Stopped | Status::Creating => {}
            Status::Created => stop_all(&rec)?,
            Status::Running | Status::Paused if force => stop_all(&rec)?,
            _ => return Err(bad_state(id, status, "delete", "stopped (or use --force)")),
        }
        if let Ok(cg) = ContainerCgroup::load(&rec.cgroup_path) {
            cg.destroy()?;
        }
        if let Some(h) = rec.spec.hooks().as_ref().and_then(|h| h.poststop().clone()) {
            let st = oci_state(
                id,
                "stopped",
                rec.pid,
                &rec.bundle,
                rec.spec.annotations().clone(),
            );
            if let Err(e) = hooks::run(HookKind::Poststop, &h, &st) {
                eprintln!("warning: {e}");
            }
        }
        entry.remove()
    }

    pub fn pause(&self, id: &str) -> Result<()> {
        let entry = self.store.open(id)?;
        let rec = entry.load()?;
        let status = entry.status(&rec);
        if status != Status::Running {
            return Err(bad_state(id, status, "pause", "running"));
        }
        Ok(ContainerCgroup::load(&rec.cgroup_path)?.freeze()?)
    }

    pub fn resume(&self, id: &str) -> Result<()> {
        let entry = self.store.open(id)?;
        let rec = entry.load()?;
        let status = entry.status(&rec);
        if status != Status::Paused {
            return Err(bad_state(id, status, "resume", "paused"));
        }
        Ok(ContainerCgroup::load(&rec.cgroup_path)?.thaw()?)
    }

    /// Host pids of every process in the container.
    pub fn pids(&self, id: &str) -> Result<Vec<i32>> {
        let entry = self.store.open(id)?;
        let rec = entry.load()?;
        match ContainerCgroup::load(&rec.cgroup_path) {
            Ok(cg) => Ok(cg.pids()?),
            Err(_) if entry.status(&rec) == Status::Stopped => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// Record and open entry for `exec`.
    pub fn running_record(&self, id: &str) -> Result<(Entry, Record)> {
        let entry = self.store.open(id)?;
        let rec = entry.load()?;
        let status = entry.status(&rec);
        if !matches!(status, Status::Created | Status::Running) {
            return Err(bad_state(id, status, "exec", "created or running"));
        }
        Ok((entry, rec))
    }
}

/// Undo a half-made container: kill its init, remove its cgroup and its
/// directory. Disarmed once create succeeded.
struct Undo {
    dir: Option<PathBuf>,
    pid: Option<i32>,
    cgroup: Option<ContainerCgroup>,
}

impl Undo {
    fn new(entry: &Entry) -> Undo {
        Undo {
            dir: Some(entry.dir.clone()),
            pid: None,
            cgroup: None,
        }
    }

    fn disarm(&mut self) {
        self.dir = None;
        self.pid = None;
        self.cgroup = None;
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        if let Some(pid) = self.pid {
            let pid = Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
        if let Some(cg) = self.cgroup.take() {
            if let Err(e) = cg.destroy() {
                eprintln!("warning: cleaning up after failed create: {e}");
            }
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Fork the container init, directly into its new namespaces when nothing
/// must be joined first (one clone: the fast path), or through a short-lived
/// intermediate that joins namespaces by path and then clones init as our
/// sibling-turned-child (CLONE_PARENT).
fn spawn_init(args: &InitArgs, parent_end: &Channel) -> Result<i32> {
    let plan = args.plan;
    if !plan.needs_intermediate() {
        // SAFETY: the CLI is single-threaded (see lib.rs), so the child may
        // run ordinary code; it never returns from init::run.
        return match unsafe { crate::sys::clone_fork(plan.clone_flags) } {
            Ok(Some(pid)) => Ok(pid.as_raw()),
            Ok(None) => child_init(args, parent_end),
            Err(e) => Err(Error::sys(format!("clone({:?})", plan.clone_flags), e)),
        };
    }
    // SAFETY: as above; the intermediate ends in _exit.
    match unsafe { crate::sys::clone_fork(nix::sched::CloneFlags::empty()) } {
        Ok(Some(mid)) => {
            let status = nix::sys::wait::waitpid(mid, None);
            match parent_end.recv()? {
                Some(Msg::Pid(p)) => Ok(p),
                Some(Msg::Fail(m)) => Err(Error::Init(m)),
                other => Err(Error::Init(format!(
                    "namespace joiner ended with {status:?} and {other:?}"
                ))),
            }
        }
        Ok(None) => intermediate(args, parent_end),
        Err(e) => Err(Error::sys("fork the namespace joiner", e)),
    }
}

fn child_init(args: &InitArgs, parent_end: &Channel) -> ! {
    // Our copy of the parent's end would keep the channel open after the
    // parent dies; drop it so init sees EOF then.
    // SAFETY: closing a descriptor we own a copy of after fork.
    unsafe { libc::close(parent_end.raw_fd()) };
    crate::init::run(args)
}

fn intermediate(args: &InitArgs, parent_end: &Channel) -> ! {
    // SAFETY: as in child_init.
    unsafe { libc::close(parent_end.raw_fd()) };
    let result = join_namespaces(args.plan).and_then(|_| {
        // SAFETY: this process is a single-threaded fork of the CLI.
        unsafe {
            crate::sys::clone_fork(args.plan.clone_flags | nix::sched::CloneFlags::CLONE_PARENT)
        }
        .map_err(|e| Error::sys(format!("clone({:?})", args.plan.clone_flags), e))
    });
    match result {
        Ok(None) => crate::init::run(args),
        Ok(Some(pid)) => {
            let _ = args.chan.send(&Msg::Pid(pid.as_raw()));
        }
        Err(e) => {
            let _ = args.chan.send(&Msg::Fail(e.to_string()));
        }
    }
    // SAFETY: leave without running the CLI's exit path in this copy.
    unsafe { libc::_exit(0) }
}

fn join_namespaces(plan: &Plan) -> Result<()> {
    for (typ, path) in &plan.joins {
        let fd = crate::init::open_owned(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC).step(|| {
            format!(
                "open {} namespace {}",
                namespaces::proc_name(*typ),
                path.display()
            )
        })?;
        nix::sched::setns(&fd, namespaces::flag(*typ)).step(|| {
            format!(
                "join {} namespace {}",
                namespaces::proc_name(*typ),
                path.display()
            )
        })?;
    }
    if plan.new_time {
        nix::sched::unshare(namespaces::flag(
            oci_spec::runtime::LinuxNamespaceType::Time,
        ))
        .step(|| "unshare time namespace")?;
    }
    Ok(())
}

fn write_id_maps(pid: i32, linux: &oci_spec::runtime::Linux) -> Result<()> {
    let fmt = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| -> String {
        maps.iter()
            .flatten()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect()
    };
    for (file, field, body) in [
        ("uid_map", "linux.uidMappings", fmt(linux.uid_mappings())),
        ("gid_map", "linux.gidMappings", fmt(linux.gid_mappings())),
    ] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, &body).step(|| format!("{field}: write {body:?} to {path}"))?;
    }
    Ok(())
}

fn make_fifo(path: &Path) -> Result<()> {
    nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o622))
        .step(|| format!("mkfifo {}", path.display()))?;
    // The umask may have eaten the write bits a non-root container user
    // needs; set them explicitly.
    nix::sys::stat::fchmodat(
        None,
        path,
        Mode::from_bits_truncate(0o622),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .step(|| format!("chmod {}", path.display()))
}

/// Open the fifo's read end: init's blocked open for writing completes, it
/// writes a byte and execs. Fails if init died instead.
fn release_init(entry: &Entry, rec: &Record) -> Result<()> {
    let path = entry.fifo_path();
    let fd = crate::init::open_owned(
        &path,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
    )
    .step(|| format!("open exec fifo {}", path.display()))?;
    let mut buf = [0u8; 1];
    loop {
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, 50) };
        if n > 0 {
            match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
                Ok(1) => return Ok(()),
                Ok(_) | Err(nix::errno::Errno::EAGAIN) => {}
                Err(e) => return Err(Error::sys("read exec fifo", e)),
            }
        }
        if !rec.init_alive() {
            return Err(Error::Init(format!(
                "container {:?} exited before it was started",
                rec.id
            )));
        }
    }
}

/// SIGKILL everything in the container and wait for init to go.
fn stop_all(rec: &Record) -> Result<()> {
    let pidfd = crate::sys::pidfd_open(Pid::from_raw(rec.pid)).ok();
    if let Ok(cg) = ContainerCgroup::load(&rec.cgroup_path) {
        cgroups::kill_all(&rec.cgroup_path, Signal::SIGKILL)?;
        if cg.is_frozen().unwrap_or(false) {
            cg.thaw()?;
        }
    } else {
        let _ = nix::sys::signal::kill(Pid::from_raw(rec.pid), Signal::SIGKILL);
    }
    if let Some(fd) = pidfd {
        if !crate::sys::pidfd_wait(&fd, 10_000).step(|| "wait for the container init to exit")? {
            return Err(Error::Init(format!(
                "pid {} did not exit within 10 s of SIGKILL",
                rec.pid
            )));
        }
    }
    Ok(())
}

fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .step(|| "current directory")?
            .join(path)
    };
    state::write_atomic(&abs, pid.to_string().as_bytes())
}

fn bad_state(id: &str, status: Status, verb: &'static str, needed: &'static str) -> Error {
    Error::State {
        id: id.to_string(),
        status: status.to_string(),
        verb,
        needed,
    }
}

fn summary(entry: &Entry, rec: &Record) -> Summary {
    let status = entry.status(rec);
    Summary {
        oci_version: crate::spec::OCI_VERSION_MAX.to_string(),
        id: rec.id.clone(),
        pid: if status == Status::Stopped {
            0
        } else {
            rec.pid
        },
        status: status.to_string(),
        bundle: rec.bundle.clone(),
        rootfs: rec.rootfs.clone(),
        created: rec.created.clone(),
        owner: rec.owner.clone(),
        annotations: rec.annotations(),
    }
}

fn owner_name() -> String {
    let uid = nix::unistd::geteuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(u)) => u.name,
        _ => uid.to_string(),
    }
}

/// The state object hooks receive on stdin.
pub fn oci_state(
    id: &str,
    status: &str,
    pid: i32,
    bundle: &Path,
    annotations: Option<HashMap<String, String>>,
) -> oci_spec::runtime::State {
    let v = serde_json::json!({
        "ociVersion": crate::spec::OCI_VERSION_MAX,
        "id": id,
        "status": status,
        "pid": pid,
        "bundle": bundle,
        "annotations": annotations.unwrap_or_default(),
    });
    serde_json::from_value(v).unwrap_or_default()
}
