//! `corral exec`: another process in a running container, through the
//! runtime library in this process (which must stay single-threaded: the
//! runtime forks without exec). With `-t` the process gets a pty whose
//! master comes back over a console socket, and we proxy our terminal.
//! A cluster pod (see [`crate::logs::target`]) goes to the master instead,
//! decided before anything starts a thread.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use corral_runtime::exec::ExecOpts;
use oci_spec::runtime::{Process, User};

use crate::cli::{ExecArgs, Global};
use crate::cluster::args::ClusterGlobal;
use crate::containers::{short, Containers};

pub fn exec(g: &Global, cg: &ClusterGlobal, a: &ExecArgs) -> Result<i32> {
    let cs = Containers::new(g);
    let cluster_flags = a.pod_container.is_some() || cg.namespace.is_some();
    let dest = match crate::logs::target(&cs, &a.container, cluster_flags) {
        Ok(d) => d,
        Err(e) => return Ok(crate::cluster::report(Err(e))),
    };
    if dest == crate::logs::Dest::Local {
        return local_exec(&cs, a);
    }
    Ok(dest.in_cluster(|pod| cluster_exec(cg, pod, a)))
}

fn cluster_exec(
    cg: &ClusterGlobal,
    pod: &str,
    a: &ExecArgs,
) -> std::result::Result<i32, crate::cluster::Error> {
    let local_only = [
        ("-e/--env", !a.env.is_empty()),
        ("-w/--workdir", a.workdir.is_some()),
        ("-u/--user", a.user.is_some()),
    ];
    if let Some((flag, _)) = local_only.iter().find(|(_, set)| *set) {
        return Err(crate::cluster::Error::msg(format!(
            "{flag} is for local containers only, not for pod {pod}"
        )));
    }
    let req = crate::cluster::exec::ExecRequest {
        pod,
        container: a.pod_container.as_deref(),
        command: &a.command,
        stdin: a.interactive,
        tty: a.tty,
    };
    crate::cluster::exec::run(cg, &req)
}

fn local_exec(cs: &Containers, a: &ExecArgs) -> Result<i32> {
    let c = cs.resolve(&a.container)?;
    let rt = cs.runtime()?;
    let st = cs.status(&c, &rt)?;
    if st != crate::containers::Status::Running {
        bail!(
            "container {} is {}: exec needs it running",
            a.container,
            st.word()
        );
    }
    let (process, rootfs) = {
        // The record's lock is held while `entry` lives: release it before
        // exec takes it again.
        let (_entry, rec) = rt
            .running_record(&c.id)
            .with_context(|| format!("container {}", a.container))?;
        (rec.spec.process().clone().unwrap_or_default(), rec.rootfs)
    };
    let process = build_process(process, a, &rootfs)?;
    if !a.tty {
        if !a.interactive {
            stdin_from_null()?;
        }
        return corral_runtime::exec::exec(&rt, &c.id, &process, &ExecOpts::default())
            .with_context(|| format!("exec in container {}", short(&c.id)));
    }
    exec_tty(&rt, &c.id, &process, a.interactive)
}

fn exec_tty(
    rt: &corral_runtime::container::Runtime,
    id: &str,
    process: &Process,
    interactive: bool,
) -> Result<i32> {
    let sock = corral_shim::term::ConsoleSocket::bind()?;
    let pid_dir = tempfile::Builder::new()
        .prefix("corral-exec-")
        .tempdir()
        .context("create a temporary directory")?;
    let pid_file = pid_dir.path().join("pid");
    let opts = ExecOpts {
        console_socket: Some(sock.path().to_path_buf()),
        // Returns once the process runs; it is our child and we wait for it
        // while proxying its terminal.
        detach: true,
        pid_file: Some(pid_file.clone()),
        preserve_fds: 0,
    };
    corral_runtime::exec::exec(rt, id, process, &opts)
        .with_context(|| format!("exec in container {}", short(id)))?;
    let master = sock.receive_master()?;
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .with_context(|| format!("read {}", pid_file.display()))?
        .trim()
        .parse()
        .context("the exec'd process's pid file holds no pid")?;
    Ok(corral_shim::term::proxy(
        master,
        nix::unistd::Pid::from_raw(pid),
        interactive,
    )?)
}

/// The container's process with the command line's overrides, as podman
/// builds it: new args, terminal, extra env, cwd, user.
fn build_process(mut p: Process, a: &ExecArgs, rootfs: &Path) -> Result<Process> {
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    p.set_console_size(None);
    if a.tty {
        if let Some((rows, cols)) = corral_shim::term::winsize(std::io::stdin().as_fd()) {
            let size = oci_spec::runtime::BoxBuilder::default()
                .height(rows as u64)
                .width(cols as u64)
                .build()
                .context("console size")?;
            p.set_console_size(Some(size));
        }
    }
    if let Some(w) = &a.workdir {
        if !w.starts_with('/') {
            bail!("--workdir {w:?}: must be an absolute path");
        }
        p.set_cwd(w.into());
    }
    let mut env = p.env().clone().unwrap_or_default();
    for kv in &a.env {
        let kv = expand_env(kv)?;
        let name = kv.split('=').next().unwrap_or_default();
        env.retain(|old| old.split('=').next() != Some(name));
        env.push(kv);
    }
    p.set_env(Some(env));
    if let Some(u) = &a.user {
        p.set_user(resolve_user(u, rootfs)?);
    }
    Ok(p)
}

/// `KEY=VALUE` as is; a bare `KEY` takes our value (dropped if unset).
pub fn expand_env(kv: &str) -> Result<String> {
    if kv.starts_with('=') || kv.is_empty() {
        bail!("-e {kv:?}: expected KEY=VALUE or KEY");
    }
    if kv.contains('=') {
        return Ok(kv.to_string());
    }
    let v = std::env::var(kv).unwrap_or_default();
    Ok(format!("{kv}={v}"))
}

/// Our stdin becomes /dev/null (the process inherits it).
fn stdin_from_null() -> Result<()> {
    let null = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .context("open /dev/null")?;
    // SAFETY: `null` was just opened and is owned by nobody else.
    let null = unsafe { OwnedFd::from_raw_fd(null) };
    nix::unistd::dup2(null.as_raw_fd(), 0).context("dup2 /dev/null onto stdin")?;
    Ok(())
}

/// `user[:group]` resolved against the container's /etc/passwd and
/// /etc/group (read inside its root, as for `run -u`).
fn resolve_user(spec: &str, rootfs: &Path) -> Result<User> {
    let r = corral_images::config::resolve_user(rootfs, spec)
        .with_context(|| format!("--user {spec:?}"))?;
    let mut u = User::default();
    u.set_uid(r.uid);
    u.set_gid(r.gid);
    u.set_additional_gids(Some(r.additional_gids));
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_expansion() {
        assert_eq!(expand_env("A=b=c").unwrap(), "A=b=c");
        std::env::set_var("CORRAL_TEST_EXPAND", "v");
        assert_eq!(
            expand_env("CORRAL_TEST_EXPAND").unwrap(),
            "CORRAL_TEST_EXPAND=v"
        );
        assert!(expand_env("=x").is_err());
    }
}
