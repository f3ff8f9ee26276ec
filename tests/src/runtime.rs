//! Running the runtime binary under test, with per-test state and cleanup.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::bundle::Bundle;
use crate::host::{self, CGROUP_PARENT, MARK_VAR};

/// Timeout of one runtime verb (create, start, kill, ...).
pub const VERB_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of a foreground `run` or `exec`.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// Which runtime implementation is under test (by binary name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Corral,
    Runc,
    Crun,
    Other,
}

/// The binary chosen by `CORRAL_TEST_RUNTIME`, or the workspace's
/// `target/<profile>/corral-runtime` next to this test executable.
pub fn runtime_binary() -> Result<PathBuf, String> {
    if let Some(v) = std::env::var_os("CORRAL_TEST_RUNTIME").filter(|v| !v.is_empty()) {
        let name = v.to_string_lossy().into_owned();
        return host::which(&name).ok_or_else(|| {
            format!("CORRAL_TEST_RUNTIME={name}: not a file and not found on PATH")
        });
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut dir = exe
        .parent()
        .ok_or("test executable has no parent directory")?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent().ok_or("deps directory has no parent")?;
    }
    let bin = dir.join("corral-runtime");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "{} does not exist: build it with `cargo build -p corral-runtime` \
             (or set CORRAL_TEST_RUNTIME=runc to test another runtime)",
            bin.display()
        ))
    }
}

fn kind_of(bin: &Path) -> Kind {
    let name = bin
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.as_str() {
        "corral-runtime" => Kind::Corral,
        "runc" => Kind::Runc,
        "crun" => Kind::Crun,
        _ => Kind::Other,
    }
}

/// crun refuses to run on a hybrid host whose cgroup2 mount has controllers
/// (hugetlb is attached there on this kernel). Run it in its own mount
/// namespace (propagation unchanged, so shared mounts stay shared) without that
/// mount, made private first so the unmount stays in the new namespace.
fn crun_hybrid_wrapper() -> Option<Vec<OsString>> {
    let controllers = fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers").ok()?;
    if controllers.trim().is_empty() {
        return None;
    }
    Some(
        [
            "unshare",
            "--mount",
            "--propagation",
            "unchanged",
            "/bin/sh",
            "-c",
            "mount --make-private /sys/fs/cgroup/unified && umount /sys/fs/cgroup/unified; exec \"$0\" \"$@\"",
        ]
        .iter()
        .map(OsString::from)
        .collect(),
    )
}

/// Result of one runtime invocation.
#[derive(Debug, Clone)]
pub struct Out {
    pub cmdline: String,
    pub status: Option<ExitStatus>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Out {
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }
    pub fn signal(&self) -> Option<i32> {
        self.status.and_then(|s| s.signal())
    }
    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert!(self.ok(), "expected success:\n{self}");
        self
    }
    /// Fails with a non-zero exit code (not a crash, not a timeout).
    #[track_caller]
    pub fn assert_fail(&self) -> &Self {
        assert!(
            !self.timed_out && self.code().is_some_and(|c| c != 0),
            "expected a clean failure (non-zero exit, no signal, no timeout):\n{self}"
        );
        self
    }
    /// stdout and stderr together.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match (self.timed_out, self.status) {
            (true, _) => "TIMED OUT (killed)".to_string(),
            (_, Some(s)) => format!("{s}"),
            (_, None) => "not run".to_string(),
        };
        write!(
            f,
            "  $ {}\n  status: {status} after {:?}\n  stdout: {:?}\n  stderr: {:?}",
            self.cmdline, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// A runtime invocation still running (see [`Runtime::spawn_for`]).
pub struct Spawned {
    pub child: Child,
    cmdline: String,
    out: PathBuf,
    err: PathBuf,
    started: Instant,
}

impl Spawned {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Current contents of its stdout file.
    pub fn stdout_so_far(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Wait for exit; on timeout kill its whole process group.
    pub fn wait(mut self, timeout: Duration) -> Out {
        let deadline = self.started + timeout;
        let mut timed_out = false;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() >= deadline => {
                    timed_out = true;
                    // SAFETY: kill has no memory-safety preconditions; the child
                    // leads its own process group (process_group(0)).
                    unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
                    break self.child.wait().ok();
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(_) => break None,
            }
        };
        Out {
            cmdline: self.cmdline,
            status,
            timed_out,
            stdout: fs::read_to_string(&self.out).unwrap_or_default(),
            stderr: fs::read_to_string(&self.err).unwrap_or_default(),
            elapsed: self.started.elapsed(),
        }
    }
}

/// Run any command with stdio in files under `io_dir` (named `tag`), killing its
/// process group after `timeout`.
pub fn run_command(mut c: Command, io_dir: &Path, tag: &str, timeout: Duration) -> Out {
    let (out, err) = (
        io_dir.join(format!("{tag}.out")),
        io_dir.join(format!("{tag}.err")),
    );
    let cmdline = format!(
        "{:?} {:?}",
        c.get_program(),
        c.get_args().collect::<Vec<_>>()
    );
    let fout = File::create(&out).unwrap_or_else(|e| panic!("create {}: {e}", out.display()));
    let ferr = File::create(&err).unwrap_or_else(|e| panic!("create {}: {e}", err.display()));
    c.stdin(Stdio::null())
        .stdout(fout)
        .stderr(ferr)
        .process_group(0);
    let child = c.spawn().unwrap_or_else(|e| panic!("spawn {cmdline}: {e}"));
    Spawned {
        child,
        cmdline,
        out,
        err,
        started: Instant::now(),
    }
    .wait(timeout)
}

/// The command prefix that runs crun on this host (see `crun_hybrid_wrapper`),
/// for tests that make another program (podman) call the runtime.
pub fn hybrid_wrapper_for(kind: Kind) -> Vec<OsString> {
    if kind == Kind::Crun {
        crun_hybrid_wrapper().unwrap_or_default()
    } else {
        Vec::new()
    }
}

/// The runtime under test, with its own `--root` and `--log` for one test.
/// Dropping it kills and force-deletes every container it made an id for.
pub struct Runtime {
    bin: PathBuf,
    kind: Kind,
    wrapper: Vec<OsString>,
    dir: TempDir,
    test: String,
    counter: AtomicUsize,
    ids: Mutex<Vec<String>>,
    outputs: Mutex<HashMap<String, (PathBuf, PathBuf)>>,
}

static ANNOUNCE: Once = Once::new();

impl Runtime {
    /// Panics if the runtime binary cannot be found: that is a setup failure,
    /// not a reason to skip.
    pub fn new(test: &str) -> Runtime {
        let bin = runtime_binary().unwrap_or_else(|e| panic!("runtime under test: {e}"));
        let kind = kind_of(&bin);
        let wrapper = if kind == Kind::Crun {
            crun_hybrid_wrapper().unwrap_or_default()
        } else {
            Vec::new()
        };
        ANNOUNCE.call_once(|| {
            eprintln!("runtime under test: {} ({kind:?})", bin.display());
            if !wrapper.is_empty() {
                eprintln!("crun: running it in a mount namespace without /sys/fs/cgroup/unified (hybrid host)");
            }
        });
        let dir = tempfile::Builder::new()
            .prefix("corral-test-rt-")
            .tempdir()
            .unwrap_or_else(|e| panic!("create runtime tempdir: {e}"));
        fs::create_dir(dir.path().join("root")).unwrap_or_else(|e| panic!("mkdir root: {e}"));
        fs::create_dir(dir.path().join("io")).unwrap_or_else(|e| panic!("mkdir io: {e}"));
        let test = test
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(24)
            .collect();
        Runtime {
            bin,
            kind,
            wrapper,
            dir,
            test,
            counter: AtomicUsize::new(0),
            ids: Mutex::new(Vec::new()),
            outputs: Mutex::new(HashMap::new()),
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn is_corral(&self) -> bool {
        self.kind == Kind::Corral
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The `--root` state directory.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("runtime.log")
    }

    /// Everything the runtime wrote to its `--log` so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// A scratch directory owned by this test.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join("scratch").join(name);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        p
    }

    /// A container id unique across tests and test processes; cleaned up on drop.
    pub fn id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}-{}-{n}", self.test, std::process::id());
        self.ids.lock().expect("ids lock").push(id.clone());
        id
    }

    /// The command line: wrapper, binary, global options, then `args`.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut all: Vec<OsString> = self.wrapper.clone();
        all.push(self.bin.clone().into());
        all.extend([
            "--root".into(),
            self.root().into(),
            "--log".into(),
            self.log_path().into(),
        ]);
        all.extend(args.iter().map(|a| a.as_ref().to_os_string()));
        let mut c = Command::new(&all[0]);
        c.args(&all[1..]);
        c
    }

    /// Start the runtime with `args`; stdio go to files (never pipes: a container
    /// started by `create` or `run -d` inherits them and may outlive the runtime).
    /// `id` marks the processes for leftover detection and records its stdio files.
    pub fn spawn_for<S: AsRef<std::ffi::OsStr>>(&self, id: Option<&str>, args: &[S]) -> Spawned {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let io = self.dir.path().join("io");
        let (out, err) = (io.join(format!("{n}.out")), io.join(format!("{n}.err")));
        let mut c = self.command(args);
        let cmdline = format!(
            "{:?} {:?}",
            c.get_program(),
            c.get_args().collect::<Vec<_>>()
        );
        let fout = File::create(&out).unwrap_or_else(|e| panic!("create {}: {e}", out.display()));
        let ferr = File::create(&err).unwrap_or_else(|e| panic!("create {}: {e}", err.display()));
        c.stdin(Stdio::null())
            .stdout(fout)
            .stderr(ferr)
            .process_group(0);
        if let Some(id) = id {
            c.env(MARK_VAR, id);
            let verb = args
                .first()
                .map(|a| a.as_ref().to_string_lossy().into_owned());
            if matches!(verb.as_deref(), Some("create" | "run")) {
                self.outputs
                    .lock()
                    .expect("outputs lock")
                    .insert(id.to_string(), (out.clone(), err.clone()));
            }
        }
        let child = c.spawn().unwrap_or_else(|e| panic!("spawn {cmdline}: {e}"));
        Spawned {
            child,
            cmdline,
            out,
            err,
            started: Instant::now(),
        }
    }

    /// Run the runtime with these arguments (after the global options).
    pub fn cmd<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Out {
        self.spawn_for(None, args).wait(VERB_TIMEOUT)
    }

    /// Like [`cmd`](Self::cmd), for commands that concern container `id`.
    pub fn cmd_for<S: AsRef<std::ffi::OsStr>>(&self, id: &str, args: &[S]) -> Out {
        self.spawn_for(Some(id), args).wait(VERB_TIMEOUT)
    }

    /// Write the bundle's config for container `id`: the cgroup path defaults to
    /// `/corral-test/<id>` and the process env carries the leftover marker.
    pub fn prepare(&self, id: &str, bundle: &Bundle) {
        bundle.write_for(id, &format!("/{CGROUP_PARENT}/{id}"));
    }

    pub fn create(&self, id: &str, bundle: &Bundle) -> Out {
        self.prepare(id, bundle);
        let b = bundle.path().to_string_lossy().into_owned();
        self.cmd_for(id, &["create", "--bundle", &b, id])
    }

    /// Create with extra create options (e.g. `--pid-file`, `--console-socket`).
    pub fn create_with(&self, id: &str, bundle: &Bundle, opts: &[&str]) -> Out {
        self.prepare(id, bundle);
        let b = bundle.path().to_string_lossy().into_owned();
        let mut args = vec!["create", "--bundle", &b];
        args.extend_from_slice(opts);
        args.push(id);
        self.cmd_for(id, &args)
    }

    pub fn start(&self, id: &str) -> Out {
        self.cmd_for(id, &["start", id])
    }

    pub fn state(&self, id: &str) -> Out {
        self.cmd_for(id, &["state", id])
    }

    /// The parsed state; panics (with the output) if `state` fails or is not JSON.
    #[track_caller]
    pub fn state_json(&self, id: &str) -> Value {
        let out = self.state(id);
        out.assert_ok();
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("state is not JSON ({e}):\n{out}"))
    }

    /// The status string, or None if `state` fails.
    pub fn status(&self, id: &str) -> Option<String> {
        let out = self.state(id);
        if !out.ok() {
            return None;
        }
        serde_json::from_str::<Value>(&out.stdout).ok()?["status"]
            .as_str()
            .map(String::from)
    }

    /// Poll `state` until the status is `want`.
    pub fn wait_status(&self, id: &str, want: &str, timeout: Duration) -> bool {
        host::wait_until(timeout, || self.status(id).as_deref() == Some(want))
    }

    pub fn kill(&self, id: &str, signal: &str) -> Out {
        self.cmd_for(id, &["kill", id, signal])
    }

    pub fn delete(&self, id: &str) -> Out {
        self.cmd_for(id, &["delete", id])
    }

    pub fn delete_force(&self, id: &str) -> Out {
        self.cmd_for(id, &["delete", "--force", id])
    }

    /// Foreground `run`: returns when the container exits.
    pub fn run(&self, id: &str, bundle: &Bundle) -> Out {
        self.prepare(id, bundle);
        let b = bundle.path().to_string_lossy().into_owned();
        self.spawn_for(Some(id), &["run", "--bundle", &b, id])
            .wait(RUN_TIMEOUT)
    }

    pub fn run_detached(&self, id: &str, bundle: &Bundle) -> Out {
        self.prepare(id, bundle);
        let b = bundle.path().to_string_lossy().into_owned();
        self.cmd_for(id, &["run", "-d", "--bundle", &b, id])
    }

    /// Run a shell script in a fresh container from `bundle` (foreground) and
    /// return the runtime's result, which carries the container's output and
    /// exit code.
    pub fn run_sh(&self, bundle: &mut Bundle, script: &str) -> Out {
        bundle.sh(script);
        let id = self.id();
        let out = self.run(&id, bundle);
        // Foreground run leaves a stopped container on some runtimes only on error.
        let _ = self.cmd_for(&id, &["delete", "--force", &id]);
        out
    }

    /// Create and start a container from `bundle` as it is, waiting for "running".
    #[track_caller]
    pub fn start_container(&self, bundle: &Bundle) -> String {
        let id = self.id();
        self.create(&id, bundle).assert_ok();
        self.start(&id).assert_ok();
        assert!(
            self.wait_status(&id, "running", VERB_TIMEOUT),
            "container {id} never reached running"
        );
        id
    }

    /// Create and start a container whose process is `sleep 120`.
    #[track_caller]
    pub fn start_sleeper(&self, bundle: &mut Bundle) -> String {
        bundle.args(&["sleep", "120"]);
        self.start_container(bundle)
    }

    pub fn exec(&self, id: &str, opts_and_args: &[&str]) -> Out {
        let mut args = vec!["exec"];
        let split = opts_and_args.iter().position(|a| *a == "--").unwrap_or(0);
        // "--" separates exec options from the command: options, id, command.
        if split > 0 {
            args.extend_from_slice(&opts_and_args[..split]);
            args.push(id);
            args.extend_from_slice(&opts_and_args[split + 1..]);
        } else {
            args.push(id);
            args.extend_from_slice(opts_and_args);
        }
        self.spawn_for(Some(id), &args).wait(RUN_TIMEOUT)
    }

    pub fn pause(&self, id: &str) -> Out {
        self.cmd_for(id, &["pause", id])
    }

    pub fn resume(&self, id: &str) -> Out {
        self.cmd_for(id, &["resume", id])
    }

    pub fn list(&self, json_format: bool) -> Out {
        if json_format {
            self.cmd(&["list", "--format", "json"])
        } else {
            self.cmd(&["list"])
        }
    }

    pub fn ps_json(&self, id: &str) -> Out {
        self.cmd_for(id, &["ps", "--format", "json", id])
    }

    /// What the container (made by `create` or `run`) wrote to stdout so far.
    pub fn output(&self, id: &str) -> String {
        let map = self.outputs.lock().expect("outputs lock");
        map.get(id)
            .and_then(|(o, _)| fs::read_to_string(o).ok())
            .unwrap_or_default()
    }

    /// What the container wrote to stderr so far (runtime errors included).
    pub fn output_err(&self, id: &str) -> String {
        let map = self.outputs.lock().expect("outputs lock");
        map.get(id)
            .and_then(|(_, e)| fs::read_to_string(e).ok())
            .unwrap_or_default()
    }

    /// Wait until the container's stdout contains `needle`.
    pub fn wait_output(&self, id: &str, needle: &str, timeout: Duration) -> bool {
        host::wait_until(timeout, || self.output(id).contains(needle))
    }

    /// Check that a failed create left nothing: no state (the `state` verb fails
    /// and no entry named after the id exists under `--root`), no cgroup, no process.
    /// Returns the list of problems found.
    pub fn leftovers(&self, id: &str) -> Vec<String> {
        let mut problems = Vec::new();
        let st = self.state(id);
        if st.ok() {
            problems.push(format!("`state {id}` still succeeds: {}", st.stdout.trim()));
        }
        if let Ok(entries) = fs::read_dir(self.root()) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().contains(id) {
                    problems.push(format!("state entry left: {}", e.path().display()));
                }
            }
        }
        for d in host::existing_test_cgroups(id) {
            problems.push(format!("cgroup left: {}", d.display()));
        }
        // The runtime may still be tearing down; give processes a moment to go.
        host::wait_until(Duration::from_secs(3), || {
            host::marked_processes(id).is_empty()
        });
        for pid in host::marked_processes(id) {
            let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            problems.push(format!("process left: pid {pid} ({cmd})"));
        }
        problems
    }

    fn cleanup(&self, id: &str) {
        let quiet = |args: &[&str]| {
            let _ = self.spawn_for(None, args).wait(Duration::from_secs(10));
        };
        if self.root().exists() {
            quiet(&["resume", id]);
            quiet(&["kill", id, "KILL"]);
            quiet(&["delete", "--force", id]);
        }
        for pid in host::marked_processes(id) {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for d in host::existing_test_cgroups(id) {
            host::remove_cgroup(&d);
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let ids = std::mem::take(&mut *self.ids.lock().unwrap_or_else(|p| p.into_inner()));
        for id in ids {
            self.cleanup(&id);
        }
        host::unmount_under(self.dir.path());
    }
}

/// Remove the empty `corral-test` parents in every cgroup hierarchy (at exit,
/// when no test of this process can be creating children).
pub fn remove_cgroup_parents() {
    // Children first: a relative parent may sit below an absolute one.
    let mut bases = host::cgroup_bases();
    bases.sort_by_key(|b| std::cmp::Reverse(b.as_os_str().len()));
    for b in bases {
        let _ = fs::remove_dir(b.join(CGROUP_PARENT));
    }
}
