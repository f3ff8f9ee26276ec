//! The full path from an image: `corral run --rm IMAGE` against
//! `podman run --rm IMAGE`. Both import the same OCI layout into fresh
//! stores under the bench's temporary directory (layers unpacked before the
//! clock starts, overlayfs for both), and both run without a network
//! namespace of their own to wire up (`--network none`, or `host` for the
//! httpd workload, which the bench must reach on 127.0.0.1).

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::args::Workload;
use super::bundle::workload_args;
use super::contenders::{await_http, Contender, Ctx, Outcome, Series};
use super::proc;

const TAG: &str = "localhost/corral-bench:latest";
/// podman asks for 1048576 open files by default, which needs
/// CAP_SYS_RESOURCE; corral's default is 1024 too.
const PODMAN_ULIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

/// Which engine: they differ only in their command lines.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Corral,
    Podman,
}

pub struct ImageCase {
    engine: Engine,
    bin: PathBuf,
    globals: Vec<OsString>,
    image: String,
    dir: PathBuf,
    ctx: Rc<Ctx>,
}

impl ImageCase {
    /// Make the engine's stores and import the layout (not timed).
    pub fn new(engine: Engine, bin: &Path, layout: &Path, ctx: Rc<Ctx>) -> Result<ImageCase> {
        let name = match engine {
            Engine::Corral => "corral",
            Engine::Podman => "podman",
        };
        let dir = ctx.tmp.join(name);
        let d = |s: &str| -> OsString { dir.join(s).into_os_string() };
        let globals: Vec<OsString> = match engine {
            Engine::Corral => vec![
                "--images-root".into(),
                d("images"),
                "--state-dir".into(),
                d("state"),
                "--runtime-root".into(),
                d("rt"),
                "--net-state-dir".into(),
                d("net"),
                "--netns-dir".into(),
                d("netns"),
            ],
            Engine::Podman => vec![
                "--root".into(),
                d("root"),
                "--runroot".into(),
                d("run"),
                "--tmpdir".into(),
                d("tmp"),
                "--storage-driver".into(),
                "overlay".into(),
                "--cgroup-manager".into(),
                "cgroupfs".into(),
                "--events-backend".into(),
                "file".into(),
            ],
        };
        let mut case = ImageCase {
            engine,
            bin: bin.to_path_buf(),
            globals,
            image: TAG.to_string(),
            dir,
            ctx,
        };
        case.image = case.import(layout)?;
        Ok(case)
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(&self.globals);
        c
    }

    fn import(&self, layout: &Path) -> Result<String> {
        let mut c = self.cmd();
        match self.engine {
            Engine::Corral => c.args(["image", "import"]).arg(layout).args(["--tag", TAG]),
            Engine::Podman => c
                .args(["pull", "-q"])
                .arg(format!("oci:{}", layout.display())),
        };
        let f = proc::run(&mut c, Duration::from_secs(300))?;
        if !f.ok() {
            bail!("{}", f.describe(&format!("import {}", layout.display())));
        }
        Ok(match self.engine {
            Engine::Corral => TAG.to_string(),
            // podman names an oci: pull after its path; run it by image id.
            Engine::Podman => f
                .stdout
                .lines()
                .last()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .context("podman pull printed no image id")?
                .to_string(),
        })
    }

    fn run_cmd(&self, name: &str) -> Command {
        let network = match self.ctx.workload {
            Workload::True => "none",
            Workload::Httpd => "host",
        };
        let mut c = self.cmd();
        c.args(["run", "--rm", "--network", network, "--name", name]);
        if self.engine == Engine::Podman {
            c.args(PODMAN_ULIMITS);
        }
        c.arg(&self.image)
            .args(workload_args(self.ctx.workload, self.ctx.port));
        c
    }

    fn kill(&self, name: &str) {
        let mut c = self.cmd();
        c.args(["kill", name]);
        let _ = proc::run(&mut c, self.ctx.timeout);
    }

    fn once(&self, name: &str) -> Result<f64, String> {
        let running = proc::spawn(&mut self.run_cmd(name)).map_err(|e| format!("{e:#}"))?;
        match self.ctx.workload {
            Workload::True => {
                let f = running
                    .finish(self.ctx.timeout)
                    .map_err(|e| format!("{e:#}"))?;
                if !f.ok() {
                    return Err(f.describe("run"));
                }
                if !f.stdout.trim().is_empty() {
                    let out: String = f.stdout.chars().take(120).collect();
                    return Err(format!("run: /bin/true printed {out:?}"));
                }
                Ok(f.elapsed.as_secs_f64() * 1000.0)
            }
            Workload::Httpd => {
                let deadline = running.started + self.ctx.timeout;
                let answered = await_http(self.ctx.port, deadline, &mut || !running.exited());
                let t = running.started.elapsed().as_secs_f64() * 1000.0;
                self.kill(name);
                let f = running
                    .finish(self.ctx.timeout)
                    .map_err(|e| format!("{e:#}"))?;
                answered.map_err(|e| format!("{e}; {}", f.describe("run")))?;
                Ok(t)
            }
        }
    }
}

impl Contender for ImageCase {
    fn series(&self) -> Vec<Series> {
        let name = match self.engine {
            Engine::Corral => "corral-run",
            Engine::Podman => "podman",
        };
        vec![Series {
            name: name.to_string(),
            mode: "run --rm IMAGE".to_string(),
        }]
    }

    fn run(&mut self, n: usize) -> Outcome {
        let name = format!("cb{}-{n}", std::process::id());
        let r = self.once(&name);
        // conmon (podman) or a late exit record may still be finishing.
        proc::drain_orphans(Duration::from_secs(5));
        match r {
            Ok(t) => Outcome {
                times_ms: vec![t],
                error: None,
            },
            Err(e) => {
                let mut c = self.cmd();
                c.args(["rm", "-f", &name]);
                let _ = proc::run(&mut c, self.ctx.timeout);
                Outcome::failed(e)
            }
        }
    }

    fn supervisor(&self) -> Option<(&'static str, String)> {
        let comm = match self.engine {
            Engine::Corral => "corral-shim",
            Engine::Podman => "conmon",
        };
        Some((comm, self.dir.to_string_lossy().into_owned()))
    }

    fn cleanup(&mut self) {
        if self.engine == Engine::Podman {
            for args in [&["rm", "-a", "-f"][..], &["rmi", "-a", "-f"][..]] {
                let mut c = self.cmd();
                c.args(args);
                let _ = proc::run(&mut c, Duration::from_secs(60));
            }
        }
        proc::drain_orphans(Duration::from_secs(2));
        unmount_under(&self.dir);
    }
}

/// Detach every mount at or below `dir` (deepest first): overlay snapshots,
/// podman's storage and shm mounts, namespace bind mounts.
pub fn unmount_under(dir: &Path) {
    let Ok(canon) = dir.canonicalize() else {
        return;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(&canon))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for p in points {
        let Ok(c) = CString::new(p.as_os_str().as_bytes()) else {
            continue;
        };
        // SAFETY: c is a valid NUL-terminated path that outlives the call.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// mountinfo writes space, tab, newline and backslash as \ooo.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"/a\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/x\04"), r"/x\04");
    }
}
