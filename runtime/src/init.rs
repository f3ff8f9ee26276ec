//! The container init: the code that runs in the process the CLI forked into
//! the new namespaces. It builds the container's world (ids, hostname,
//! rootfs, console, limits, credentials), reports `Ready`, blocks on the
//! exec fifo until `start`, then execs the user's process.
//!
//! It runs after a plain fork of the single-threaded CLI, so ordinary Rust
//! (allocation included) is safe here. Nothing here returns to the CLI's
//! code: `run` always ends in `execve` or `_exit`.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{LinuxCapabilities, LinuxNamespaceType, Process, Spec};

use crate::error::{Context, Error, Result};
use crate::hooks::{self, HookKind};
use crate::namespaces::Plan;
use crate::rootfs::{self, RootfsContext};
use crate::spec::Bundle;
use crate::sync::{Channel, Msg};

/// Default search path when the process environment has no PATH.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything init needs; built by `container::create` before the fork.
pub struct InitArgs<'a> {
    pub id: &'a str,
    pub bundle: &'a Bundle,
    pub plan: &'a Plan,
    pub chan: &'a Channel,
    pub fifo: &'a Path,
    pub cgroup_path: &'a str,
    pub console: Option<&'a OwnedFd>,
    pub no_pivot: bool,
    pub new_keyring: bool,
    pub preserve_fds: u32,
}

/// Run init to the user's `execve`. Never returns.
pub fn run(a: &InitArgs) -> ! {
    let mut ready = false;
    let err = match setup_and_exec(a, &mut ready) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    if ready {
        // The CLI that created us is gone; stderr is the only witness.
        eprintln!("corral-runtime init: {err}");
    } else {
        let _ = a.chan.send(&Msg::Fail(err.to_string()));
    }
    // SAFETY: _exit skips the parent's atexit handlers and buffered state,
    // which belong to the CLI process we were forked from.
    unsafe { libc::_exit(127) }
}

fn setup_and_exec(a: &InitArgs, ready: &mut bool) -> Result<Infallible> {
    let spec = &a.bundle.spec;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::Usage("process missing".into()))?;
    let host_pid = match a.chan.recv()? {
        Some(Msg::Pid(p)) => p,
        Some(Msg::Fail(m)) => return Err(Error::Init(m)),
        other => return Err(Error::Init(format!("expected go-ahead, got {other:?}"))),
    };
    if a.plan.in_user_ns() {
        become_root_in_userns()?;
    }
    if a.new_keyring {
        join_keyring(a.id)?;
    }
    set_names(spec, a.plan)?;
    // A cgroup2 mount in a new cgroup namespace must see the container's
    // cgroup as root: then the rootfs waits for the cgroup join. Otherwise
    // it is built while the parent moves us into the cgroup.
    let v2_cgroupns =
        a.plan.unshare_cgroup && crate::cgroups::version() == crate::cgroups::CgroupVersion::V2;
    if v2_cgroupns {
        enter_cgroup(a)?;
    }
    let ctx = rootfs_context(a)?;
    rootfs::prepare(spec, &ctx)?;
    create_cwd(&a.bundle.rootfs, process.cwd())?;
    if !v2_cgroupns {
        enter_cgroup(a)?;
    }
    run_creation_hooks(a, host_pid)?;
    let fifo = open_owned(a.fifo, OFlag::O_PATH | OFlag::O_CLOEXEC)
        .step(|| format!("open exec fifo {}", a.fifo.display()))?;
    if a.no_pivot {
        rootfs::move_root(&a.bundle.rootfs)?;
    } else {
        rootfs::pivot(&a.bundle.rootfs)?;
    }
    // The console needs a writable /dev/pts; finalize may make /dev read-only.
    nix::unistd::setsid().step(|| "setsid")?;
    if process.terminal() == Some(true) {
        let sock = a.console.ok_or_else(|| {
            Error::Usage("process.terminal is true but no --console-socket was given".into())
        })?;
        crate::console::setup(sock, console_size(process))?;
    }
    rootfs::finalize(spec)?;
    let exe = prepare_process(process, spec, a.preserve_fds)?;
    let late_filter = compile_late_seccomp(process, spec)?;
    a.chan.send(&Msg::Ready)?;
    *ready = true;
    wait_for_start(fifo)?;
    if let Some(h) = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.start_container().clone())
    {
        hooks::run(
            HookKind::StartContainer,
            &h,
            &hook_state(a, host_pid, "running"),
        )?;
    }
    if let Some(f) = late_filter {
        f.load()?;
    }
    exec(&exe, process)
}

/// With no_new_privs set, a seccomp filter needs no privilege: it is loaded
/// as late as possible so it confines only the user's process. Compiling it
/// (the slow part) happens before `Ready`, off the `start` path.
pub fn compile_late_seccomp(
    process: &Process,
    spec: &Spec,
) -> Result<Option<crate::seccomp::CompiledFilter>> {
    if process.no_new_privileges() != Some(true) {
        return Ok(None);
    }
    match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(sc) => Ok(Some(crate::seccomp::compile(sc)?)),
        None => Ok(None),
    }
}

/// runc creates a missing working directory; do it inside the rootfs
/// (symlinks resolved within it) before the root may become read-only.
fn create_cwd(rootfs: &Path, cwd: &Path) -> Result<()> {
    let target = rootfs::resolve_in_root(rootfs, cwd)
        .step(|| format!("process.cwd: resolve {} in the rootfs", cwd.display()))?;
    if target.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(&target).step(|| format!("process.cwd: create {}", cwd.display()))
}

/// Everything from rlimits to credentials, in runc's order; returns the
/// resolved executable.
pub fn prepare_process(process: &Process, spec: &Spec, preserve_fds: u32) -> Result<CString> {
    if let Some(adj) = process.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .step(|| format!("process.oomScoreAdj: write {adj} to /proc/self/oom_score_adj"))?;
    }
    if let Some(rl) = process.rlimits() {
        crate::rlimits::apply(rl)?;
    }
    let cwd_done = nix::unistd::chdir(process.cwd()).is_ok();
    let env = process.env().clone().unwrap_or_default();
    let exe = resolve_executable(
        &process.args().clone().unwrap_or_default()[0],
        &env,
        process.cwd(),
    )?;
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    let nnp = process.no_new_privileges() == Some(true);
    if let (Some(sc), false) = (seccomp, nnp) {
        // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: do it
        // before the capabilities go.
        crate::seccomp::load(sc)?;
    }
    let caps = process
        .capabilities()
        .clone()
        .unwrap_or_else(no_capabilities);
    crate::capabilities::drop_bounding(&caps)?;
    crate::sys::set_keep_caps(true).step(|| "prctl(PR_SET_KEEPCAPS)")?;
    set_user(process)?;
    crate::sys::set_keep_caps(false).step(|| "prctl(PR_SET_KEEPCAPS, 0)")?;
    crate::capabilities::apply(&caps)?;
    if !cwd_done {
        nix::unistd::chdir(process.cwd())
            .step(|| format!("process.cwd: chdir to {}", process.cwd().display()))?;
    }
    if let Some(mask) = process.user().umask() {
        nix::sys::stat::umask(Mode::from_bits_truncate(mask as libc::mode_t));
    }
    if nnp {
        crate::sys::set_no_new_privs().step(|| "prctl(PR_SET_NO_NEW_PRIVS)")?;
    }
    crate::sys::cloexec_from(3 + preserve_fds)
        .step(|| "close_range(CLOEXEC) above preserved fds")?;
    Ok(exe)
}

fn no_capabilities() -> LinuxCapabilities {
    let none = std::collections::HashSet::new();
    let mut c = LinuxCapabilities::default();
    c.set_bounding(Some(none.clone()))
        .set_effective(Some(none.clone()))
        .set_inheritable(Some(none.clone()))
        .set_permitted(Some(none.clone()))
        .set_ambient(Some(none));
    c
}

/// Wait until the parent put us in the container cgroup, then make that
/// cgroup the root of a new cgroup namespace if asked.
fn enter_cgroup(a: &InitArgs) -> Result<()> {
    a.chan
        .expect(&Msg::Go, "the runtime moved init into its cgroup")?;
    if a.plan.unshare_cgroup {
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP).step(|| "unshare cgroup namespace")?;
    }
    Ok(())
}

/// In a user namespace the clone child starts as the overflow uid; once the
/// parent wrote the maps, switch to the namespace's root.
fn become_root_in_userns() -> Result<()> {
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .step(|| "setresgid(0) in the user namespace (is gid 0 mapped?)")?;
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .step(|| "setresuid(0) in the user namespace (is uid 0 mapped?)")
}

fn join_keyring(id: &str) -> Result<()> {
    match crate::sys::join_session_keyring(&format!("_ses.{id}")) {
        // Kernels without keyrings, or a seccomp-confined caller: runc
        // carries on too, the container just shares the caller's keyring.
        Ok(()) | Err(nix::errno::Errno::ENOSYS) | Err(nix::errno::Errno::EPERM) => Ok(()),
        Err(e) => Err(Error::sys("join a new session keyring", e)),
    }
}

fn set_names(spec: &Spec, plan: &Plan) -> Result<()> {
    if !plan.has(LinuxNamespaceType::Uts) {
        return Ok(());
    }
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(h).step(|| format!("hostname: sethostname({h:?})"))?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        crate::sys::set_domainname(d).step(|| format!("domainname: setdomainname({d:?})"))?;
    }
    Ok(())
}

fn rootfs_context(a: &InitArgs) -> Result<RootfsContext> {
    let wants_cgroup_mount = a
        .bundle
        .spec
        .mounts()
        .as_ref()
        .is_some_and(|ms| ms.iter().any(|m| m.typ().as_deref() == Some("cgroup")));
    let cgroup_paths = if wants_cgroup_mount {
        crate::cgroups::ContainerCgroup::load(a.cgroup_path)?.paths()
    } else {
        Vec::new()
    };
    Ok(RootfsContext {
        rootfs: a.bundle.rootfs.clone(),
        bundle: a.bundle.dir.clone(),
        in_user_ns: a.plan.in_user_ns(),
        cgroup_ns: a.plan.has(LinuxNamespaceType::Cgroup),
        cgroup_paths,
    })
}

/// prestart and createRuntime run in the runtime's namespaces (the parent
/// runs them while we wait); createContainer runs here, in ours.
fn run_creation_hooks(a: &InitArgs, host_pid: i32) -> Result<()> {
    let hooks = match a.bundle.spec.hooks() {
        Some(h) => h,
        None => return Ok(()),
    };
    let runtime_side = hooks.prestart().as_ref().is_some_and(|v| !v.is_empty())
        || hooks
            .create_runtime()
            .as_ref()
            .is_some_and(|v| !v.is_empty());
    if runtime_side {
        a.chan.send(&Msg::RunHooks)?;
        a.chan
            .expect(&Msg::Go, "the runtime ran prestart/createRuntime hooks")?;
    }
    if let Some(h) = hooks.create_container() {
        hooks::run(
            HookKind::CreateContainer,
            h,
            &hook_state(a, host_pid, "created"),
        )?;
    }
    Ok(())
}

fn hook_state(a: &InitArgs, pid: i32, status: &str) -> oci_spec::runtime::State {
    crate::container::oci_state(
        a.id,
        status,
        pid,
        &a.bundle.dir,
        a.bundle.spec.annotations().clone(),
    )
}

fn console_size(p: &Process) -> Option<(u16, u16)> {
    p.console_size()
        .map(|b| (b.height() as u16, b.width() as u16))
}

fn set_user(p: &Process) -> Result<()> {
    let u = p.user();
    let gids: Vec<Gid> = u
        .additional_gids()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(Gid::from_raw)
        .collect();
    // setgroups is refused in a user namespace whose setgroups file says
    // "deny"; an empty list is then the only possible state anyway.
    if let Err(e) = nix::unistd::setgroups(&gids) {
        if !(gids.is_empty() && e == nix::errno::Errno::EPERM) {
            return Err(Error::sys(
                format!(
                    "process.user.additionalGids: setgroups({:?})",
                    u.additional_gids()
                ),
                e,
            ));
        }
    }
    let gid = Gid::from_raw(u.gid());
    nix::unistd::setresgid(gid, gid, gid)
        .step(|| format!("process.user.gid: setresgid({})", u.gid()))?;
    let uid = Uid::from_raw(u.uid());
    nix::unistd::setresuid(uid, uid, uid)
        .step(|| format!("process.user.uid: setresuid({})", u.uid()))
}

/// Find `arg0` the way execvp would, but now, so a typo fails `create`
/// instead of a container that dies right after `start`.
pub fn resolve_executable(arg0: &str, env: &[String], cwd: &Path) -> Result<CString> {
    let not_found = || {
        Error::Usage(format!(
            "exec: {arg0:?}: executable file not found in $PATH"
        ))
    };
    let candidates: Vec<PathBuf> = if arg0.contains('/') {
        vec![cwd.join(arg0)]
    } else {
        let path = env
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        path.split(':')
            .map(|d| {
                if d.is_empty() {
                    Path::new(".")
                } else {
                    Path::new(d)
                }
            })
            .map(|d| d.join(arg0))
            .collect()
    };
    for c in &candidates {
        if let Ok(meta) = std::fs::metadata(c) {
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                let p = if arg0.contains('/') {
                    PathBuf::from(arg0)
                } else {
                    c.clone()
                };
                return CString::new(p.as_os_str().as_bytes()).map_err(|_| not_found());
            }
            if arg0.contains('/') {
                return Err(Error::Usage(format!(
                    "exec: {arg0:?}: not an executable file"
                )));
            }
        }
    }
    Err(not_found())
}

/// `open(2)` into an owned descriptor.
pub fn open_owned<P: ?Sized + nix::NixPath>(path: &P, flags: OFlag) -> nix::Result<OwnedFd> {
    let fd = nix::fcntl::open(path, flags, Mode::empty())?;
    // SAFETY: the descriptor was just returned by open and is owned by no one else.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// Block until `start` opens the fifo for reading, then tell it we go.
fn wait_for_start(fifo: OwnedFd) -> Result<()> {
    let path = format!("/proc/self/fd/{}", fifo.as_raw_fd());
    let fd = open_owned(path.as_str(), OFlag::O_WRONLY | OFlag::O_CLOEXEC)
        .step(|| "open exec fifo to wait for start")?;
    nix::unistd::write(&fd, b"0").step(|| "write exec fifo")?;
    Ok(())
}

pub fn exec(exe: &CString, p: &Process) -> Result<Infallible> {
    let args: Vec<CString> = p
        .args()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|a| CString::new(a).map_err(|_| Error::Usage("process.args: NUL byte".into())))
        .collect::<Result<_>>()?;
    let env: Vec<CString> = p
        .env()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| CString::new(e).map_err(|_| Error::Usage("process.env: NUL byte".into())))
        .collect::<Result<_>>()?;
    let e = nix::unistd::execve(exe, &args, &env).unwrap_err();
    Err(Error::sys(format!("exec {:?}", exe), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_through_path() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        let exe = resolve_executable("sh", &env, Path::new("/")).unwrap();
        assert!(exe.to_str().unwrap().ends_with("/sh"));
    }

    #[test]
    fn missing_executable_is_named() {
        let e = resolve_executable("no-such-binary-xyz", &[], Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"no-such-binary-xyz\": executable file not found"),
            "{e}"
        );
    }

    #[test]
    fn non_executable_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("data");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = resolve_executable(f.to_str().unwrap(), &[], Path::new("/"));
        assert!(e.unwrap_err().to_string().contains("not an executable"));
    }
}
