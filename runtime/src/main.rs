//! `corral-runtime`: the runc-compatible command line over the
//! `corral_runtime` library. Single-threaded by design (see lib.rs).

mod cli;
mod log;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use corral_runtime::container::{CreateOpts, Runtime, Summary};
use corral_runtime::exec::ExecOpts;
use nix::sys::signal::Signal;
use oci_spec::runtime::Process;

use cli::{Cli, CreateArgs, ExecArgs, ListFormat, Verb};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logger = log::Logger::new(cli.log.as_deref(), cli.log_format, cli.debug);
    logger.debug(&format!("{:?}", cli.verb));
    match dispatch(&cli) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            let msg = format!("{e:#}");
            logger.error(&msg);
            eprintln!("corral-runtime: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: &Cli) -> Result<i32> {
    if let Verb::Features = cli.verb {
        println!(
            "{}",
            serde_json::to_string_pretty(&corral_runtime::features::document())?
        );
        return Ok(0);
    }
    if let Verb::Spec { bundle, .. } = &cli.verb {
        write_default_spec(bundle)?;
        return Ok(0);
    }
    let rt = Runtime::new(&cli.root, cli.systemd_cgroup)?;
    match &cli.verb {
        Verb::Create(c) => {
            rt.create(&c.id, &create_opts(c))?;
        }
        Verb::Start { id } => rt.start(id)?,
        Verb::State { id } => println!("{}", serde_json::to_string_pretty(&rt.state(id)?)?),
        Verb::Kill { id, signal, all } => rt.kill(id, parse_signal(signal)?, *all)?,
        Verb::Delete { id, force } => rt.delete(id, *force)?,
        Verb::Run {
            create,
            detach,
            keep,
        } => return run(&rt, create, *detach, *keep),
        Verb::Exec(e) => return exec(&rt, e),
        Verb::List { format, quiet } => list(&rt.list()?, *format, *quiet)?,
        Verb::Ps {
            format,
            id,
            ps_args,
        } => ps(&rt, id, *format, ps_args)?,
        Verb::Pause { id } => rt.pause(id)?,
        Verb::Resume { id } => rt.resume(id)?,
        Verb::Features | Verb::Spec { .. } => unreachable!("handled above"),
    }
    Ok(0)
}

fn create_opts(c: &CreateArgs) -> CreateOpts {
    CreateOpts {
        bundle: c.bundle.clone(),
        console_socket: c.console_socket.clone(),
        pid_file: c.pid_file.clone(),
        no_pivot: c.no_pivot,
        no_new_keyring: c.no_new_keyring,
        preserve_fds: c.preserve_fds,
    }
}

/// `run`: create + start; in the foreground, forward signals, wait, and
/// pass the container's exit code through.
fn run(rt: &Runtime, c: &CreateArgs, detach: bool, keep: bool) -> Result<i32> {
    let pid = rt.create(&c.id, &create_opts(c))?;
    if detach {
        rt.start(&c.id)?;
        return Ok(0);
    }
    let sigs = corral_runtime::signals::block()?;
    if let Err(e) = rt.start(&c.id) {
        let _ = rt.delete(&c.id, true);
        return Err(e.into());
    }
    let code = corral_runtime::signals::wait_forwarding(nix::unistd::Pid::from_raw(pid), &sigs);
    corral_runtime::signals::unblock(&sigs);
    if !keep {
        rt.delete(&c.id, true)
            .with_context(|| format!("delete container {:?} after it exited", c.id))?;
    }
    Ok(code?)
}

fn exec(rt: &Runtime, e: &ExecArgs) -> Result<i32> {
    let process = exec_process(rt, e)?;
    let opts = ExecOpts {
        console_socket: e.console_socket.clone(),
        detach: e.detach,
        pid_file: e.pid_file.clone(),
        preserve_fds: e.preserve_fds,
    };
    Ok(corral_runtime::exec::exec(rt, &e.id, &process, &opts)?)
}

/// The process to exec: process.json as given, or the container's own
/// process with the command line's overrides (as runc builds it).
fn exec_process(rt: &Runtime, e: &ExecArgs) -> Result<Process> {
    if let Some(path) = &e.process {
        let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        let p: Process = serde_path_to_error::deserialize(de).map_err(|err| {
            anyhow::anyhow!("{}: {}: {}", path.display(), err.path(), err.inner())
        })?;
        return Ok(p);
    }
    if e.command.is_empty() {
        bail!("exec: give a command after the container id, or -p process.json");
    }
    let (_entry, rec) = rt.running_record(&e.id)?;
    let mut p = rec.spec.process().clone().unwrap_or_default();
    p.set_args(Some(e.command.clone()));
    p.set_terminal(Some(e.tty));
    p.set_console_size(None);
    if let Some(cwd) = &e.cwd {
        p.set_cwd(cwd.clone());
    }
    let mut env = p.env().clone().unwrap_or_default();
    for kv in &e.env {
        let name = kv.split('=').next().unwrap_or(kv);
        env.retain(|old| old.split('=').next() != Some(name));
        env.push(kv.clone());
    }
    p.set_env(Some(env));
    if let Some(u) = &e.user {
        let (uid, gid) = parse_user(u)?;
        let mut user = p.user().clone();
        user.set_uid(uid);
        user.set_gid(gid);
        p.set_user(user);
    }
    if !e.additional_gids.is_empty() {
        let mut user = p.user().clone();
        user.set_additional_gids(Some(e.additional_gids.clone()));
        p.set_user(user);
    }
    if !e.cap.is_empty() {
        add_caps(&mut p, &e.cap)?;
    }
    if e.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    Ok(p)
}

fn parse_user(u: &str) -> Result<(u32, u32)> {
    let mut it = u.splitn(2, ':');
    let uid = it.next().unwrap_or_default();
    let uid: u32 = uid
        .parse()
        .with_context(|| format!("--user {u:?}: uid must be a number (uid[:gid])"))?;
    let gid = match it.next() {
        Some(g) => g
            .parse()
            .with_context(|| format!("--user {u:?}: gid must be a number (uid[:gid])"))?,
        None => 0,
    };
    Ok((uid, gid))
}

fn add_caps(p: &mut Process, names: &[String]) -> Result<()> {
    let mut caps = p.capabilities().clone().unwrap_or_default();
    for name in names {
        let full = if name.starts_with("CAP_") {
            name.clone()
        } else {
            format!("CAP_{name}")
        };
        let cap: oci_spec::runtime::Capability = serde_json::from_value(serde_json::json!(full))
            .with_context(|| format!("--cap {name:?}: unknown capability"))?;
        let add = |s: &Option<oci_spec::runtime::Capabilities>| {
            let mut s = s.clone().unwrap_or_default();
            s.insert(cap);
            Some(s)
        };
        let (b, e, pm, i) = (
            add(caps.bounding()),
            add(caps.effective()),
            add(caps.permitted()),
            add(caps.inheritable()),
        );
        caps.set_bounding(b)
            .set_effective(e)
            .set_permitted(pm)
            .set_inheritable(i);
    }
    p.set_capabilities(Some(caps));
    Ok(())
}

fn parse_signal(s: &str) -> Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).with_context(|| format!("signal {s:?}: no such signal number"));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<Signal>()
        .with_context(|| format!("signal {s:?}: unknown signal name"))
}

fn list(items: &[Summary], format: ListFormat, quiet: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if quiet {
        for s in items {
            writeln!(out, "{}", s.id)?;
        }
        return Ok(());
    }
    match format {
        ListFormat::Json => writeln!(out, "{}", serde_json::to_string(items)?)?,
        ListFormat::Table => {
            let rows: Vec<[String; 6]> = items
                .iter()
                .map(|s| {
                    [
                        s.id.clone(),
                        s.pid.to_string(),
                        s.status.clone(),
                        s.bundle.display().to_string(),
                        s.created.clone(),
                        s.owner.clone(),
                    ]
                })
                .collect();
            print_table(
                &mut out,
                ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"],
                &rows,
            )?;
        }
    }
    Ok(())
}

fn print_table(out: &mut impl Write, head: [&str; 6], rows: &[[String; 6]]) -> Result<()> {
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect::<Vec<_>>()
            .join("   ")
            .trim_end()
            .to_string()
    };
    writeln!(out, "{}", line(head.to_vec()))?;
    for r in rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

/// `ps`: pids as JSON, or ps(1)'s table filtered to the container's pids.
fn ps(rt: &Runtime, id: &str, format: ListFormat, args: &[String]) -> Result<()> {
    let pids = rt.pids(id)?;
    if format == ListFormat::Json {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(());
    }
    let args: Vec<String> = if args.is_empty() {
        vec!["-ef".into()]
    } else {
        args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("run ps(1)")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let pid_col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .context("ps output has no PID column")?;
    println!("{header}");
    for l in lines {
        let pid = l
            .split_whitespace()
            .nth(pid_col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            println!("{l}");
        }
    }
    Ok(())
}

fn write_default_spec(bundle: &Path) -> Result<()> {
    let path = bundle.join("config.json");
    if path.exists() {
        bail!("{} already exists: remove it first", path.display());
    }
    let spec = serde_json::to_string_pretty(&corral_runtime::spec::default_spec())?;
    std::fs::write(&path, spec).with_context(|| format!("write {}", path.display()))?;
    Ok(())
}
