//! `stop`, `kill`, `rm`, and the teardown `rm` and `run --rm` share.

use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use nix::sys::signal::Signal;

use crate::cli::{Global, KillArgs, RmArgs, StopArgs};
use crate::containers::{short, wait_exit, Container, Containers};

/// How long `rm -f` and `stop` wait for the shim to record the exit after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);

pub fn stop(g: &Global, a: &StopArgs) -> Result<()> {
    let cs = Containers::new(g);
    let rt = cs.runtime()?;
    for key in &a.containers {
        let c = cs.resolve(key)?;
        if cs.status(&c, &rt)?.is_running() {
            let sig = match &c.stop_signal {
                Some(s) => {
                    parse_signal(s).with_context(|| format!("the image's StopSignal {s:?}"))?
                }
                None => Signal::SIGTERM,
            };
            // It may end between our look and the signal: only the wait decides.
            let _ = rt.kill(&c.id, sig, false);
            if !wait_exit(&cs, &c.id, Duration::from_secs(a.time))? {
                kill_all(&cs, &c)?;
            }
        }
        println!("{key}");
    }
    Ok(())
}

pub fn kill(g: &Global, a: &KillArgs) -> Result<()> {
    let sig = parse_signal(&a.signal)?;
    let cs = Containers::new(g);
    let rt = cs.runtime()?;
    for key in &a.containers {
        let c = cs.resolve(key)?;
        let st = cs.status(&c, &rt)?;
        if !st.is_running() {
            bail!(
                "container {key} is {}: it must be running to be signalled",
                st.word()
            );
        }
        rt.kill(&c.id, sig, false)
            .with_context(|| format!("send {sig} to container {key}"))?;
        println!("{key}");
    }
    Ok(())
}

pub fn rm(g: &Global, a: &RmArgs) -> Result<()> {
    let cs = Containers::new(g);
    let rt = cs.runtime()?;
    let mut failed = Vec::new();
    for key in &a.containers {
        let result = cs.resolve(key).and_then(|c| {
            let st = cs.status(&c, &rt)?;
            if st.is_running() {
                if !a.force {
                    bail!(
                        "container {key} is {}: stop it first, or use rm -f",
                        st.word()
                    );
                }
                kill_all(&cs, &c)?;
            }
            remove(g, &cs, &c)?;
            Ok(c.id)
        });
        match result {
            Ok(id) => println!("{id}"),
            Err(e) => {
                eprintln!("Error: {e:#}");
                failed.push(key.clone());
            }
        }
    }
    if !failed.is_empty() {
        bail!("could not remove {}", failed.join(", "));
    }
    Ok(())
}

/// SIGKILL every process of the container and wait for its shim to record it.
fn kill_all(cs: &Containers, c: &Container) -> Result<()> {
    let rt = cs.runtime()?;
    match rt.kill(&c.id, Signal::SIGKILL, true) {
        Ok(()) | Err(corral_runtime::Error::NotFound(_)) => {}
        Err(e) => return Err(e).with_context(|| format!("kill container {}", short(&c.id))),
    }
    if c.shim_pid > 0 && !wait_exit(cs, &c.id, KILL_WAIT)? {
        bail!(
            "container {} did not exit within {} s of SIGKILL",
            short(&c.id),
            KILL_WAIT.as_secs()
        );
    }
    Ok(())
}

/// Remove everything of a container that is not running: the runtime's
/// state, network (address, veth, port rules, netns), snapshot, name and
/// directory. Every step runs even if one fails; pieces already gone are
/// fine (a concurrent `--rm` may be removing it too).
pub fn remove(g: &Global, cs: &Containers, c: &Container) -> Result<()> {
    let mut errors: Vec<String> = Vec::new();
    let mut note = |what: &str, r: Result<()>| {
        if let Err(e) = r {
            errors.push(format!("{what}: {e:#}"));
        }
    };
    note(
        "runtime state",
        cs.runtime().and_then(|rt| match rt.delete(&c.id, true) {
            Ok(()) | Err(corral_runtime::Error::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }),
    );
    note("network", teardown_network(g, c));
    note("snapshot", remove_snapshot(g, &c.id));
    cs.release_name(&c.name);
    let dir = cs.dir(&c.id);
    note(
        "state directory",
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("remove {}", dir.display())),
        },
    );
    if errors.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(
            "removing container {}: {}",
            short(&c.id),
            errors.join("; ")
        ))
    }
}

pub fn teardown_network(g: &Global, c: &Container) -> Result<()> {
    if c.network == "bridge" && c.ip.is_some() {
        let net = crate::net::open(g)?;
        net.detach(&c.id)
            .with_context(|| format!("detach from bridge {}", g.bridge))?;
    }
    if let Some(ns) = &c.netns {
        corral_net::delete_netns(ns)
            .with_context(|| format!("delete network namespace {}", ns.display()))?;
    }
    Ok(())
}

pub fn remove_snapshot(g: &Global, id: &str) -> Result<()> {
    let store = corral_images::Store::open(&g.images_root)
        .with_context(|| format!("open image store {}", g.images_root.display()))?;
    corral_images::Snapshot::remove(&store, id)
        .with_context(|| format!("remove snapshot {}", short(id)))
}

/// Signal by name (`TERM`, `SIGTERM`, any case) or number.
pub fn parse_signal(s: &str) -> Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| anyhow!("signal {s:?}: no such signal number"));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<Signal>()
        .map_err(|_| anyhow!("signal {s:?}: unknown signal name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(parse_signal("TERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("sigkill").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("15").unwrap(), Signal::SIGTERM);
        assert!(parse_signal("NOPE")
            .unwrap_err()
            .to_string()
            .contains("NOPE"));
        assert!(parse_signal("999").is_err());
    }
}
