//! What every contender does for one run, and the OCI runtimes
//! (corral-runtime, runc, crun) running the shared bundle, in two modes:
//! `run` (one foreground command) and `create`+`start`+`delete`.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::args::Workload;
use super::bundle::Bundle;
use super::proc;

/// The text the httpd workload must serve (its /etc/passwd's first line).
pub const HTTP_EXPECT: &str = "root:x:0:0:root";

/// Settings every contender shares.
pub struct Ctx {
    pub workload: Workload,
    pub timeout: Duration,
    /// Port the httpd workload listens on (127.0.0.1).
    pub port: u16,
    pub tmp: PathBuf,
}

/// One series of the report: a contender in one mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub name: String,
    pub mode: String,
}

/// What one run measured: one time per series (the VM has two: to first
/// output and to exit), or why it failed.
pub struct Outcome {
    pub times_ms: Vec<f64>,
    pub error: Option<String>,
}

impl Outcome {
    pub fn failed(error: String) -> Outcome {
        Outcome {
            times_ms: Vec::new(),
            error: Some(error),
        }
    }
}

pub trait Contender {
    fn series(&self) -> Vec<Series>;
    /// One run; `n` makes container ids unique.
    fn run(&mut self, n: usize) -> Outcome;
    /// The per-container supervisor to sample memory of: its process name
    /// and a string its command line holds (our temporary directory).
    fn supervisor(&self) -> Option<(&'static str, String)> {
        None
    }
    /// Remove anything left behind (containers, state, mounts).
    fn cleanup(&mut self) {}
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Ask the httpd workload for its page until it answers as expected, the
/// process `alive` dies, or `deadline` passes. Ok(()) once answered.
pub fn await_http(
    port: u16,
    deadline: Instant,
    alive: &mut dyn FnMut() -> bool,
) -> Result<(), String> {
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        match get_page(port) {
            Ok(body) if good_answer(&body) => return Ok(()),
            Ok(body) => {
                let head: String = body.chars().take(80).collect();
                return Err(format!("unexpected HTTP answer: {head:?}"));
            }
            Err(e) => last = e,
        }
        if !alive() {
            return Err(format!("the server exited before answering ({last})"));
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    Err(format!(
        "no HTTP answer on 127.0.0.1:{port} in time ({last})"
    ))
}

fn get_page(port: u16) -> Result<String, String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200))
        .map_err(|e| format!("connect 127.0.0.1:{port}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| format!("set_read_timeout: {e}"))?;
    s.write_all(b"GET /passwd HTTP/1.0\r\n\r\n")
        .map_err(|e| format!("send request: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .map_err(|e| format!("read answer: {e}"))?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// A 200 answer carrying the expected page.
fn good_answer(text: &str) -> bool {
    text.lines()
        .next()
        .is_some_and(|l| l.starts_with("HTTP/1.") && l.contains(" 200"))
        && text.contains(HTTP_EXPECT)
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Run,
    Lifecycle,
}

/// corral-runtime, runc or crun on the shared bundle.
pub struct RuntimeCase {
    name: String,
    bin: PathBuf,
    root: PathBuf,
    mode: Mode,
    bundle: Rc<RefCell<Bundle>>,
    ctx: Rc<Ctx>,
    leftovers: Vec<String>,
}

impl RuntimeCase {
    pub fn new(
        name: &str,
        bin: &Path,
        mode: Mode,
        bundle: Rc<RefCell<Bundle>>,
        ctx: Rc<Ctx>,
    ) -> Result<RuntimeCase> {
        let tag = if mode == Mode::Run { "run" } else { "lc" };
        let root = ctx.tmp.join(format!("root-{name}-{tag}"));
        std::fs::create_dir_all(&root).with_context(|| format!("mkdir {}", root.display()))?;
        Ok(RuntimeCase {
            name: name.to_string(),
            bin: bin.to_path_buf(),
            root,
            mode,
            bundle,
            ctx,
            leftovers: Vec::new(),
        })
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(&self.root).args(args);
        c
    }

    fn step(&self, args: &[&str]) -> Result<proc::Finished, String> {
        proc::run(&mut self.cmd(args), self.ctx.timeout).map_err(|e| format!("{e:#}"))
    }

    fn force_delete(&mut self, id: &str) {
        let _ = self.step(&["kill", id, "KILL"]);
        match self.step(&["delete", "--force", id]) {
            Ok(f) if f.ok() => {}
            _ => self.leftovers.push(id.to_string()),
        }
        proc::drain_orphans(Duration::from_secs(2));
    }

    fn bundle_path(&self) -> String {
        self.bundle.borrow().dir.to_string_lossy().into_owned()
    }

    fn run_mode(&mut self, id: &str) -> Result<f64, String> {
        let pid_file = self.ctx.tmp.join(format!("{id}.pid"));
        let pf = pid_file.to_string_lossy().into_owned();
        let b = self.bundle_path();
        let args = ["run", "--bundle", &b, "--pid-file", &pf, id];
        let result = match self.ctx.workload {
            Workload::True => {
                let f = proc::run(&mut self.cmd(&args), self.ctx.timeout)
                    .map_err(|e| format!("{e:#}"))?;
                check_true(&f, "run")?;
                Ok(ms(f.elapsed))
            }
            Workload::Httpd => self.run_httpd(&args, id),
        };
        proc::drain_orphans(Duration::from_secs(2));
        // The pid file proves the runtime made a container: a program that
        // merely exits 0 does not pass.
        let made = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .is_some();
        let _ = std::fs::remove_file(&pid_file);
        match result {
            Ok(_) if !made => Err(format!("run exited 0 but wrote no pid file {pf}")),
            r => r,
        }
    }

    fn run_httpd(&mut self, args: &[&str], id: &str) -> Result<f64, String> {
        let running = proc::spawn(&mut self.cmd(args)).map_err(|e| format!("{e:#}"))?;
        let deadline = running.started + self.ctx.timeout;
        let answered = await_http(self.ctx.port, deadline, &mut || !running.exited());
        let t = ms(running.started.elapsed());
        let _ = self.step(&["kill", id, "KILL"]);
        let f = running
            .finish(self.ctx.timeout)
            .map_err(|e| format!("{e:#}"))?;
        answered.map_err(|e| format!("{e}; {}", f.describe("run")))?;
        Ok(t)
    }

    fn lifecycle(&mut self, id: &str) -> Result<f64, String> {
        let pid_file = self.ctx.tmp.join(format!("{id}.pid"));
        let pf = pid_file.to_string_lossy().into_owned();
        let b = self.bundle_path();
        let create = self.step(&["create", "--bundle", &b, "--pid-file", &pf, id])?;
        if !create.ok() {
            return Err(create.describe("create"));
        }
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .map_err(|e| format!("read pid file {pf}: {e}"))?
            .trim()
            .parse()
            .map_err(|e| format!("pid file {pf}: {e}"))?;
        let _ = std::fs::remove_file(&pid_file);
        // Opened before `start`, so the init cannot exit and be reaped
        // before we hold it.
        let pidfd = proc::pidfd_open(pid).map_err(|e| format!("{e:#}"))?;
        let t = Instant::now();
        let start = self.step(&["start", id])?;
        if !start.ok() {
            return Err(start.describe("start"));
        }
        let waited = match self.ctx.workload {
            Workload::True => {
                let exited =
                    proc::wait_readable(&pidfd, self.ctx.timeout).map_err(|e| format!("{e:#}"))?;
                if !exited {
                    return Err(format!(
                        "container pid {pid} still running after the timeout"
                    ));
                }
                let (status, _) = proc::wait4(pid).map_err(|e| format!("{e:#}"))?;
                let code = proc::exit_code(status);
                if code != 0 {
                    return Err(format!("container process exit {code}"));
                }
                ms(t.elapsed())
            }
            Workload::Httpd => {
                let deadline = t + self.ctx.timeout;
                let r = await_http(self.ctx.port, deadline, &mut || {
                    !proc::wait_readable(&pidfd, Duration::ZERO).unwrap_or(true)
                });
                let waited = ms(t.elapsed());
                let _ = self.step(&["kill", id, "KILL"]);
                let _ = proc::wait_readable(&pidfd, self.ctx.timeout);
                let _ = proc::wait4(pid);
                r?;
                waited
            }
        };
        let delete = self.step(&["delete", id])?;
        if !delete.ok() {
            return Err(delete.describe("delete"));
        }
        // httpd is measured to its answer; its kill and delete are not timed.
        let delete_ms = if self.ctx.workload == Workload::True {
            ms(delete.elapsed)
        } else {
            0.0
        };
        let total = ms(create.elapsed) + waited + delete_ms;
        Ok(total)
    }
}

/// /bin/true's run: exit 0 and nothing printed.
fn check_true(f: &proc::Finished, what: &str) -> Result<(), String> {
    if !f.ok() {
        return Err(f.describe(what));
    }
    if !f.stdout.trim().is_empty() {
        let out: String = f.stdout.chars().take(120).collect();
        return Err(format!("{what}: /bin/true printed {out:?}"));
    }
    Ok(())
}

impl Contender for RuntimeCase {
    fn series(&self) -> Vec<Series> {
        let mode = match (self.mode, self.ctx.workload) {
            (Mode::Run, _) => "run",
            (Mode::Lifecycle, Workload::True) => "create+start+delete",
            (Mode::Lifecycle, Workload::Httpd) => "create+start",
        };
        vec![Series {
            name: self.name.clone(),
            mode: mode.to_string(),
        }]
    }

    fn run(&mut self, n: usize) -> Outcome {
        let id = format!("cb{}-{}-{n}", std::process::id(), self.name);
        if let Err(e) = self.bundle.borrow_mut().prepare(&id) {
            return Outcome::failed(format!("{e:#}"));
        }
        let r = match self.mode {
            Mode::Run => self.run_mode(&id),
            Mode::Lifecycle => self.lifecycle(&id),
        };
        match r {
            Ok(t) => Outcome {
                times_ms: vec![t],
                error: None,
            },
            Err(e) => {
                self.force_delete(&id);
                Outcome::failed(e)
            }
        }
    }

    fn cleanup(&mut self) {
        for id in std::mem::take(&mut self.leftovers) {
            let _ = self.step(&["delete", "--force", &id]);
        }
        proc::drain_orphans(Duration::from_secs(2));
    }
}

/// A contender that could not take part, and why.
#[derive(Debug, Clone)]
pub struct Missing {
    pub name: String,
    pub reason: String,
}

/// Resolve a program given as a path or a name on PATH.
pub fn find_program(p: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |c: &Path| {
        c.is_file() && std::fs::metadata(c).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
    };
    if p.components().count() > 1 || p.is_absolute() {
        return executable(p).then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(p))
        .find(|c| executable(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_program_on_path_and_by_path() {
        assert!(find_program(Path::new("sh")).is_some());
        assert!(find_program(Path::new("/bin/sh")).is_some());
        assert!(find_program(Path::new("/nonexistent/runc")).is_none());
        assert!(find_program(Path::new("no-such-program-corral")).is_none());
    }

    #[test]
    fn http_probe_gives_up_on_a_closed_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let r = await_http(
            port,
            Instant::now() + Duration::from_millis(50),
            &mut || true,
        );
        assert!(r.unwrap_err().contains("no HTTP answer"));
        let r = await_http(port, Instant::now() + Duration::from_secs(5), &mut || false);
        assert!(r.unwrap_err().contains("exited before answering"));
    }

    #[test]
    fn true_must_be_silent_and_succeed() {
        let f = |code, out: &str| proc::Finished {
            code,
            elapsed: Duration::ZERO,
            stdout: out.into(),
            stderr: String::new(),
        };
        assert!(check_true(&f(Some(0), ""), "run").is_ok());
        assert!(check_true(&f(Some(1), ""), "run").is_err());
        assert!(check_true(&f(None, ""), "run")
            .unwrap_err()
            .contains("timed out"));
        assert!(check_true(&f(Some(0), "hello"), "run")
            .unwrap_err()
            .contains("hello"));
    }
}
