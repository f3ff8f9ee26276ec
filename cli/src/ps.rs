//! `corral ps` and `corral inspect`.

use std::io::Write;

use anyhow::{Context as _, Result};
use corral_net::PortMapping;
use serde_json::{json, Value};

use crate::cli::{Format, Global, PsArgs};
use crate::containers::{short, Container, Containers, Status, LOG};
use crate::time::{ago, human, since};

pub fn ps(g: &Global, a: &PsArgs) -> Result<()> {
    let cs = Containers::new(g);
    let rt = cs.runtime()?;
    let mut shown = Vec::new();
    for c in cs.list()? {
        let st = cs.status(&c, &rt)?;
        if a.all || st.is_running() {
            shown.push((c, st));
        }
    }
    // Newest first, as podman lists them.
    shown.reverse();
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for (c, _) in &shown {
            let id = if a.no_trunc { &c.id } else { short(&c.id) };
            writeln!(out, "{id}")?;
        }
        return Ok(());
    }
    if a.format == Format::Json {
        let v: Vec<Value> = shown.iter().map(|(c, st)| ps_json(c, st)).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = shown
        .iter()
        .map(|(c, st)| {
            let command = c.command.join(" ");
            vec![
                if a.no_trunc {
                    c.id.clone()
                } else {
                    short(&c.id).to_string()
                },
                c.image.clone(),
                if a.no_trunc {
                    command
                } else {
                    truncate(&command, 20)
                },
                ago(&c.created),
                status_text(c, st),
                ports_text(&c.ports),
                c.name.clone(),
            ]
        })
        .collect();
    crate::table::print(
        &mut out,
        &[
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES",
        ],
        &rows,
    )?;
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut t: String = s.chars().take(n - 3).collect();
    t.push_str("...");
    t
}

/// "Up 5 seconds", "Exited (7) 2 minutes ago", "Created".
pub fn status_text(c: &Container, st: &Status) -> String {
    let up = || human(since(c.started.as_deref().unwrap_or(&c.created)));
    match st {
        Status::Created => "Created".into(),
        Status::Running => format!("Up {}", up()),
        Status::Paused => format!("Up {} (Paused)", up()),
        Status::Exited(rec) => format!("Exited ({}) {}", rec.exit_code, ago(&rec.finished_at)),
        Status::Unknown => "Unknown (its shim is gone)".into(),
    }
}

/// "127.0.0.1:8080->80/tcp, 0.0.0.0:53->53/udp".
fn ports_text(ports: &[String]) -> String {
    ports
        .iter()
        .map(|p| match p.parse::<PortMapping>() {
            Ok(m) => format!(
                "{}:{}->{}/{}",
                m.host_ip.map_or("0.0.0.0".to_string(), |ip| ip.to_string()),
                m.host_port,
                m.container_port,
                m.proto
            ),
            Err(_) => p.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn ps_json(c: &Container, st: &Status) -> Value {
    let (exit_code, exited) = match st {
        Status::Exited(r) => (r.exit_code, true),
        _ => (0, false),
    };
    json!({
        "Id": c.id,
        "Names": [c.name],
        "Image": c.image,
        "ImageID": c.image_id,
        "Command": c.command,
        "Created": c.created,
        "StartedAt": c.started,
        "State": st.word(),
        "Status": status_text(c, st),
        "Exited": exited,
        "ExitCode": exit_code,
        "Pid": if st.is_running() { c.pid } else { 0 },
        "Ports": c.ports,
        "Network": c.network,
        "IP": c.ip,
    })
}

pub fn inspect(g: &Global, keys: &[String]) -> Result<()> {
    let cs = Containers::new(g);
    let rt = cs.runtime()?;
    let mut out = Vec::new();
    for key in keys {
        let c = cs.resolve(key)?;
        let st = cs.status(&c, &rt)?;
        out.push(inspect_one(&cs, &c, &st)?);
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn inspect_one(cs: &Containers, c: &Container, st: &Status) -> Result<Value> {
    let dir = cs.dir(&c.id);
    let spec_path = dir.join("config.json");
    let spec: Value = match std::fs::read(&spec_path) {
        Ok(b) => {
            serde_json::from_slice(&b).with_context(|| format!("parse {}", spec_path.display()))?
        }
        Err(_) => Value::Null,
    };
    let exit = match st {
        Status::Exited(r) => Some(r),
        _ => None,
    };
    let mut v = serde_json::to_value(c)?;
    v["state"] = json!({
        "status": st.word(),
        "running": st.is_running(),
        "paused": *st == Status::Paused,
        "pid": if st.is_running() { c.pid } else { 0 },
        "exitCode": exit.map(|r| r.exit_code),
        "signal": exit.and_then(|r| r.signal),
        "oomKilled": exit.is_some_and(|r| r.oom_killed),
        "startedAt": exit.map(|r| r.started_at.clone()).or(c.started.clone()),
        "finishedAt": exit.map(|r| r.finished_at.clone()),
    });
    v["bundle"] = json!(dir);
    v["logPath"] = json!(dir.join(LOG));
    v["spec"] = spec;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_and_command_text() {
        assert_eq!(
            ports_text(&["127.0.0.1:8080:80/tcp".into(), "53:53/udp".into()]),
            "127.0.0.1:8080->80/tcp, 0.0.0.0:53->53/udp"
        );
        assert_eq!(truncate("echo hi", 20), "echo hi");
        assert_eq!(
            truncate("sh -c while true; do sleep 1; done", 20),
            "sh -c while true;..."
        );
    }
}
