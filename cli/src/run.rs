//! `corral run`: image (pulled if missing) -> layers -> snapshot -> network
//! -> bundle -> shim. The shim creates and starts the container and stays
//! with it; in the foreground we wait for the shim and pass the exit code on.

use std::io::IsTerminal;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{anyhow, bail, Context as _, Result};
use corral_images::{BindMount, ImageRecord, NetNs, Reference, RunConfig, Snapshot, Store};
use corral_net::PortMapping;
use corral_shim::{Report, ShimArgs};

use crate::cli::{Global, NetworkMode, RunArgs};
use crate::containers::{
    absolute, new_id, short, Container, Containers, Lifecycle, EXIT, LOG, SHIM_LOG,
};
use crate::ExitCodeError;

/// Options checked before anything is created.
struct Checked {
    env: Vec<String>,
    binds: Vec<BindMount>,
    ports: Vec<PortMapping>,
    memory: Option<i64>,
    log_max_size: u64,
    entrypoint: Option<Vec<String>>,
}

pub fn run(g: &Global, a: &RunArgs) -> Result<i32> {
    let checked = check(a)?;
    let store = Store::open(&g.images_root)
        .with_context(|| format!("open image store {}", g.images_root.display()))?;
    let img = find_or_pull(&store, a)?;
    let cs = Containers::new(g);
    let id = new_id()?;
    let name = match &a.name {
        Some(n) => n.clone(),
        None => cs.generate_name(),
    };
    cs.claim_name(&name, &id)?;
    let mut c = Container {
        id: id.clone(),
        name,
        image: image_name(a, &img),
        image_id: img.id().to_string(),
        command: Vec::new(),
        created: corral_runtime::state::now_rfc3339(),
        state: Lifecycle::Created,
        network: network_word(a.network).into(),
        ip: None,
        ports: checked.ports.iter().map(|p| p.to_string()).collect(),
        netns: None,
        stop_signal: None,
        tty: a.tty,
        interactive: a.interactive,
        auto_remove: a.rm,
        pid: 0,
        shim_pid: 0,
        started: None,
    };
    let prepared = cs
        .create_dir(&id)
        .and_then(|_| prepare(g, &cs, &store, &img, a, &checked, &mut c));
    if let Err(e) = prepared {
        undo(g, &cs, &c);
        return Err(e);
    }
    start(g, &cs, a, &checked, c)
}

fn check(a: &RunArgs) -> Result<Checked> {
    let mut env = Vec::new();
    for f in &a.env_file {
        env.extend(read_env_file(f)?);
    }
    for kv in &a.env {
        env.push(crate::exec::expand_env(kv)?);
    }
    let binds = a
        .volume
        .iter()
        .map(|v| parse_volume(v))
        .collect::<Result<Vec<_>>>()?;
    let ports = a
        .publish
        .iter()
        .map(|p| {
            p.parse::<PortMapping>()
                .with_context(|| format!("-p {p:?}"))
        })
        .collect::<Result<Vec<_>>>()?;
    if !ports.is_empty() && a.network != NetworkMode::Bridge {
        bail!(
            "-p publishes ports of the bridge network; it cannot be used with --network {}",
            network_word(a.network)
        );
    }
    let memory = a
        .memory
        .as_deref()
        .map(|m| {
            let bytes =
                corral_shim::args::parse_size(m).with_context(|| format!("--memory {m:?}"))?;
            i64::try_from(bytes).map_err(|_| anyhow!("--memory {m:?}: too large"))
        })
        .transpose()?;
    if let Some(c) = a.cpus {
        if !(c > 0.0 && c.is_finite()) {
            bail!("--cpus {c}: must be a positive number of CPUs");
        }
    }
    if let Some(w) = &a.workdir {
        if !w.starts_with('/') {
            bail!("--workdir {w:?}: must be an absolute path");
        }
    }
    let log_max_size = corral_shim::args::parse_size(&a.log_max_size)
        .with_context(|| format!("--log-max-size {:?}", a.log_max_size))?;
    let entrypoint = a.entrypoint.as_ref().map(|e| {
        if e.is_empty() {
            Vec::new()
        } else {
            vec![e.clone()]
        }
    });
    Ok(Checked {
        env,
        binds,
        ports,
        memory,
        log_max_size,
        entrypoint,
    })
}

/// `HOST:CONTAINER[:ro|rw]`: the host path must exist (no named volumes).
fn parse_volume(v: &str) -> Result<BindMount> {
    let parts: Vec<&str> = v.split(':').collect();
    let (src, dst, ro) = match parts.as_slice() {
        [s, d] => (*s, *d, false),
        [s, d, "ro"] => (*s, *d, true),
        [s, d, "rw"] => (*s, *d, false),
        [_, _, o] => bail!("-v {v:?}: unknown option {o:?} (use ro or rw)"),
        _ => bail!("-v {v:?}: expected HOST_PATH:CONTAINER_PATH[:ro|rw]"),
    };
    if !src.starts_with('/') && !src.starts_with('.') {
        bail!(
            "-v {v:?}: named volumes are not supported; give a host path (absolute or ./relative)"
        );
    }
    if !dst.starts_with('/') {
        bail!("-v {v:?}: the container path must be absolute");
    }
    let source = absolute(Path::new(src))?;
    if !source.exists() {
        bail!("-v {v:?}: {} does not exist", source.display());
    }
    Ok(BindMount {
        source,
        destination: dst.to_string(),
        readonly: ro,
    })
}

fn read_env_file(path: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("--env-file {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(
            crate::exec::expand_env(line)
                .with_context(|| format!("{} line {}", path.display(), n + 1))?,
        );
    }
    Ok(out)
}

fn network_word(n: NetworkMode) -> &'static str {
    match n {
        NetworkMode::Bridge => "bridge",
        NetworkMode::Host => "host",
        NetworkMode::None => "none",
    }
}

fn find_or_pull(store: &Store, a: &RunArgs) -> Result<ImageRecord> {
    if let Some(img) = store
        .find_str(&a.image)
        .with_context(|| format!("look up image {:?}", a.image))?
    {
        return Ok(img);
    }
    let r: Reference = a.image.parse().with_context(|| {
        format!(
            "image {:?} is not in the store and not a valid reference",
            a.image
        )
    })?;
    eprintln!("Trying to pull {r}...");
    let opts = crate::images::pull_options(&a.registry, false)?;
    corral_images::pull(store, &r, &opts).with_context(|| format!("pull {r}"))
}

/// The name the user asked for, normalized; else the image's first name, else its id.
fn image_name(a: &RunArgs, img: &ImageRecord) -> String {
    a.image
        .parse::<Reference>()
        .ok()
        .map(|r| r.to_string())
        .filter(|n| img.names.contains(n))
        .or_else(|| img.names.first().cloned())
        .unwrap_or_else(|| img.id().to_string())
}

/// Layers, snapshot, network, /etc files and the bundle. Every piece made
/// is recorded in `c` (saved as we go) so `undo`/`rm` can take it back.
fn prepare(
    g: &Global,
    cs: &Containers,
    store: &Store,
    img: &ImageRecord,
    a: &RunArgs,
    checked: &Checked,
    c: &mut Container,
) -> Result<()> {
    cs.save(c)?;
    let dir = cs.dir(&c.id);
    let cfg = store
        .config(img)
        .with_context(|| format!("read the config of image {}", c.image))?;
    let layers = corral_images::unpack_layers(store, img, &corral_images::Limits::default())
        .with_context(|| format!("unpack the layers of image {}", c.image))?;
    let snap = Snapshot::create(store, &c.id, img, &layers, false)
        .with_context(|| format!("create the snapshot of container {}", short(&c.id)))?;
    let netns = attach_network(g, cs, a, checked, c)?;
    let hostname = a
        .hostname
        .clone()
        .unwrap_or_else(|| short(&c.id).to_string());
    let (resolv, hosts) = write_etc_files(&dir, a.network, c, &hostname)?;
    let run = RunConfig {
        rootfs: snap.merged.clone(),
        args: (!a.command.is_empty()).then(|| a.command.clone()),
        entrypoint: checked.entrypoint.clone(),
        env: checked.env.clone(),
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        hostname,
        terminal: a.tty,
        readonly: a.read_only,
        binds: checked.binds.clone(),
        memory: checked.memory,
        cpus: a.cpus,
        pids: a.pids_limit,
        netns,
        resolv_conf: Some(resolv),
        hosts: Some(hosts),
    };
    let spec = corral_images::runtime_spec(&cfg, &run).context("make the runtime spec")?;
    c.command = spec
        .process()
        .as_ref()
        .and_then(|p| p.args().clone())
        .unwrap_or_default();
    c.stop_signal = cfg.config().as_ref().and_then(|x| x.stop_signal().clone());
    let path = dir.join("config.json");
    let bytes = serde_json::to_vec_pretty(&spec).context("encode config.json")?;
    std::fs::write(&path, bytes).with_context(|| format!("write {}", path.display()))?;
    cs.save(c)
}

fn attach_network(
    g: &Global,
    cs: &Containers,
    a: &RunArgs,
    checked: &Checked,
    c: &mut Container,
) -> Result<NetNs> {
    match a.network {
        NetworkMode::None => Ok(NetNs::New),
        NetworkMode::Host => Ok(NetNs::Host),
        NetworkMode::Bridge => {
            let path = absolute(&g.netns_dir.join(&c.id))?;
            corral_net::create_netns(&path)
                .with_context(|| format!("create network namespace {}", path.display()))?;
            c.netns = Some(path.clone());
            cs.save(c)?;
            let net = crate::net::open(g)?;
            // Recorded before attaching: a half-done attach is undone by detach.
            c.ip = Some(String::new());
            let att = net.attach(&c.id, &path, &checked.ports).with_context(|| {
                format!("connect container {} to bridge {}", short(&c.id), g.bridge)
            })?;
            c.ip = Some(att.ip.to_string());
            cs.save(c)?;
            Ok(NetNs::Path(path))
        }
    }
}

/// The container's own /etc/resolv.conf and /etc/hosts (copies: a bind of
/// the host's files would let the container write them).
fn write_etc_files(
    dir: &Path,
    net: NetworkMode,
    c: &Container,
    hostname: &str,
) -> Result<(PathBuf, PathBuf)> {
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let resolv: String = host_resolv
        .lines()
        // A loopback resolver of the host is unreachable from another netns.
        .filter(|l| net == NetworkMode::Host || !is_loopback_nameserver(l))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut hosts =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    match (&c.ip, net) {
        (Some(ip), _) if !ip.is_empty() => {
            hosts.push_str(&format!("{ip}\t{hostname} {}\n", c.name))
        }
        (_, NetworkMode::Host) => {}
        _ => hosts.push_str(&format!("127.0.1.1\t{hostname} {}\n", c.name)),
    }
    let (rp, hp) = (dir.join("resolv.conf"), dir.join("hosts"));
    std::fs::write(&rp, resolv).with_context(|| format!("write {}", rp.display()))?;
    std::fs::write(&hp, hosts).with_context(|| format!("write {}", hp.display()))?;
    Ok((rp, hp))
}

fn is_loopback_nameserver(line: &str) -> bool {
    let mut w = line.split_whitespace();
    w.next() == Some("nameserver")
        && w.next()
            .is_some_and(|ip| ip.starts_with("127.") || ip == "::1")
}

/// Take back what a failed run made (best effort; the error that made us
/// stop is the one reported).
fn undo(g: &Global, cs: &Containers, c: &Container) {
    if let Err(e) = crate::lifecycle::remove(g, cs, c) {
        eprintln!("warning: cleaning up after the failed run: {e:#}");
    }
}

/// The corral-shim binary: --shim, else next to us, else on PATH.
fn shim_binary(g: &Global) -> PathBuf {
    if let Some(p) = &g.shim {
        return p.clone();
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        let p = dir.join("corral-shim");
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from("corral-shim")
}

/// Spawn the shim and act on its report: print the id (detached) or wait
/// and pass the exit code on (foreground).
fn start(
    g: &Global,
    cs: &Containers,
    a: &RunArgs,
    checked: &Checked,
    mut c: Container,
) -> Result<i32> {
    let dir = cs.dir(&c.id);
    let (sync_rd, sync_wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe2")?;
    let shim_args = ShimArgs {
        id: c.id.clone(),
        bundle: absolute(&dir)?,
        runtime_root: absolute(&g.runtime_root)?,
        log: absolute(&dir.join(LOG))?,
        log_max_size: checked.log_max_size,
        log_max_files: a.log_max_files.max(1),
        exit_file: absolute(&dir.join(EXIT))?,
        sync_fd: Some(sync_wr.as_raw_fd()),
        tty: a.tty,
        stdin: a.interactive,
        foreground: !a.detach,
        keep: false,
        exit_command: None,
        exit_command_args: Vec::new(),
    };
    let shim_args = if a.detach && a.rm {
        with_exit_command(g, shim_args, &c.id)?
    } else {
        shim_args
    };
    let terminal = a.tty.then(SavedTerminal::save).flatten();
    let mut cmd = Command::new(shim_binary(g));
    cmd.args(shim_args.to_args());
    corral_shim::sync::pass_fd(&mut cmd, &sync_wr);
    if a.detach {
        let log = std::fs::File::create(dir.join(SHIM_LOG))
            .with_context(|| format!("create {}", dir.join(SHIM_LOG).display()))?;
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
    }
    let mut child = match cmd.spawn() {
        Ok(ch) => ch,
        Err(e) => {
            undo(g, cs, &c);
            return Err(e).with_context(|| format!("start {}", shim_binary(g).display()));
        }
    };
    drop(sync_wr);
    if !a.detach {
        forward_signals_to(child.id() as i32);
    }
    let report = receive_report(sync_rd, &mut child, a.detach);
    let (pid, shim_pid) = match report {
        Ok(Report::Started { pid, shim_pid }) => (pid, shim_pid),
        Ok(Report::Failed { error }) => {
            let _ = child.wait();
            drop(terminal);
            undo(g, cs, &c);
            return Err(start_failure(error));
        }
        Err(e) => {
            let _ = child.wait();
            drop(terminal);
            let detail = cs.shim_log(&c.id);
            undo(g, cs, &c);
            return Err(if detail.is_empty() {
                e
            } else {
                e.context(detail)
            });
        }
    };
    c.state = Lifecycle::Started;
    c.pid = pid;
    c.shim_pid = shim_pid;
    c.started = Some(corral_runtime::state::now_rfc3339());
    // A detached --rm container may be gone already: nothing to record then.
    if let Err(e) = cs.save(&c) {
        if dir.exists() {
            return Err(e);
        }
    }
    if a.detach {
        println!("{}", c.id);
        return Ok(0);
    }
    let status = child.wait().context("wait for corral-shim")?;
    drop(terminal);
    let code = match cs.exit_record(&c.id)? {
        Some(rec) => rec.exit_code,
        None => {
            let detail = cs.shim_log(&c.id);
            bail!(
                "corral-shim ended ({status}) without recording the container's exit{}{detail}",
                if detail.is_empty() { "" } else { ": " }
            );
        }
    };
    if a.rm {
        crate::lifecycle::remove(g, cs, &c)?;
    }
    Ok(code)
}

/// Detached `--rm`: the shim runs `corral rm -f ID` (with our paths) after the exit.
fn with_exit_command(g: &Global, mut s: ShimArgs, id: &str) -> Result<ShimArgs> {
    let exe = std::env::current_exe().context("find the corral binary for --rm")?;
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    let mut flag = |k: &str, v: &std::ffi::OsStr| {
        args.push(k.into());
        args.push(v.to_os_string());
    };
    flag("--images-root", absolute(&g.images_root)?.as_os_str());
    flag("--state-dir", absolute(&g.state_dir)?.as_os_str());
    flag("--runtime-root", absolute(&g.runtime_root)?.as_os_str());
    flag("--net-state-dir", absolute(&g.net_state_dir)?.as_os_str());
    flag("--netns-dir", absolute(&g.netns_dir)?.as_os_str());
    flag("--bridge", g.bridge.as_ref());
    flag("--subnet", g.subnet.as_ref());
    args.extend(["rm".into(), "-f".into(), id.into()]);
    s.exit_command = Some(exe);
    s.exit_command_args = args;
    Ok(s)
}

fn receive_report(rd: OwnedFd, child: &mut std::process::Child, detach: bool) -> Result<Report> {
    if detach {
        // The shim's first process exits at once after forking the real one.
        let _ = child.wait();
    }
    match corral_shim::sync::receive(rd)? {
        Some(r) => Ok(r),
        None => {
            let status = child.try_wait().ok().flatten();
            Err(anyhow!(
                "corral-shim exited without reporting whether the container started{}",
                status.map(|s| format!(" ({s})")).unwrap_or_default()
            ))
        }
    }
}

/// The runtime's message, with podman's exit codes: 127 when the command
/// does not exist, 126 when it cannot be executed, else 125.
fn start_failure(error: String) -> anyhow::Error {
    let lower = error.to_ascii_lowercase();
    let code = if lower.contains("not found") || lower.contains("no such file") {
        127
    } else if lower.contains("permission denied") {
        126
    } else {
        125
    };
    ExitCodeError {
        code,
        message: error,
    }
    .into()
}

static SHIM_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = SHIM_PID.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// In the foreground the shim sits in its own session: signals meant for
/// the container reach us, and we pass them to the shim, which passes them on.
fn forward_signals_to(shim: i32) {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    SHIM_PID.store(shim, Ordering::SeqCst);
    let action = SigAction::new(
        SigHandler::Handler(forward),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
    ] {
        // SAFETY: the handler only loads an atomic and calls kill, both
        // async-signal-safe.
        let _ = unsafe { sigaction(sig, &action) };
    }
}

/// Our terminal's settings, put back when dropped (the shim restores them
/// itself; this covers a shim that died).
struct SavedTerminal(nix::sys::termios::Termios);

impl SavedTerminal {
    fn save() -> Option<SavedTerminal> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        nix::sys::termios::tcgetattr(&stdin).ok().map(SavedTerminal)
    }
}

impl Drop for SavedTerminal {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.0,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let b = parse_volume(&format!("{d}:/data:ro")).unwrap();
        assert_eq!((b.destination.as_str(), b.readonly), ("/data", true));
        assert!(!parse_volume(&format!("{d}:/data")).unwrap().readonly);
        for bad in [
            "vol:/data",
            &format!("{d}:data"),
            &format!("{d}:/x:zz"),
            "/nonexistent-corral:/x",
            "/a",
        ] {
            assert!(parse_volume(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_files_and_resolvers() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), "# comment\n\nA=1\n B=x y \n").unwrap();
        assert_eq!(read_env_file(f.path()).unwrap(), ["A=1", "B=x y"]);
        assert!(is_loopback_nameserver("nameserver 127.0.0.53"));
        assert!(!is_loopback_nameserver("nameserver 10.0.0.2"));
        assert!(!is_loopback_nameserver("search lan"));
    }

    #[test]
    fn failure_codes() {
        let code = |m: &str| {
            start_failure(m.into())
                .downcast::<ExitCodeError>()
                .unwrap()
                .code
        };
        assert_eq!(
            code("container init: exec: \"nope\": executable file not found in $PATH"),
            127
        );
        assert_eq!(code("container init: exec /etc: permission denied"), 126);
        assert_eq!(code("cgroup: invalid argument"), 125);
    }
}
