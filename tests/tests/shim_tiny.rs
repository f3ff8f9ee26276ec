//! corral-shim hands a detached, terminal-less container to its tiny
//! supervisor: the shim's pid runs the embedded no_std binary from a memfd
//! at well under 1 MiB of RSS, the log is the same CRI log (partial lines,
//! rotation), forwarded signals reach the container, and `corral-shim
//! --finish` writes the exit record and removes the runtime's state.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use corral_shim::{cri, ExitRecord, Report, ShimArgs};
use corral_tests::bundle::Bundle;
use corral_tests::corral::workspace_binary;
use corral_tests::host::{self, CGROUP_PARENT};

/// Kills what a failed test leaves: the shim (tiny or not), the
/// container's processes and cgroups, the runtime's state.
struct Cleanup {
    id: String,
    shim_pid: Option<i32>,
    root: PathBuf,
    /// Mounts under it (the small tmpfs) are detached.
    dir: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(pid) = self.shim_pid.filter(|&p| host::pid_alive(p)) {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for pid in host::marked_processes(&self.id) {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for dir in host::existing_test_cgroups(&self.id) {
            host::remove_cgroup(&dir);
        }
        if let Ok(rt) = workspace_binary("corral-runtime") {
            let _ = Command::new(rt)
                .arg("--root")
                .arg(&self.root)
                .args(["delete", "--force", &self.id])
                .output();
        }
        host::unmount_under(&self.dir);
    }
}

fn status_kib(pid: i32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    host::status_field(&text, key)?
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// All entries of the log (rotated files first), pieces joined into lines:
/// (stream, line).
fn log_lines(log: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    for file in cri::log_files(log) {
        let text = std::fs::read(&file).unwrap_or_default();
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let e = cri::parse_line(line)
                .unwrap_or_else(|| panic!("not CRI: {:?}", String::from_utf8_lossy(line)));
            assert_eq!(e.time.len(), 30, "{}", e.time);
            assert!(e.time.ends_with('Z'), "{}", e.time);
            pending.extend_from_slice(e.content);
            if !e.partial {
                let text = String::from_utf8_lossy(&pending).into_owned();
                out.push((e.stream.as_str().to_string(), text));
                pending.clear();
            }
        }
    }
    out
}

fn has_line(log: &Path, stream: &str, text: &str) -> bool {
    log_lines(log).iter().any(|(s, t)| s == stream && t == text)
}

/// Whether some log file holds a P entry (a line whose end came later).
fn has_partial(log: &Path) -> bool {
    cri::log_files(log).iter().any(|f| {
        std::fs::read(f)
            .unwrap_or_default()
            .split(|&b| b == b'\n')
            .any(|l| cri::parse_line(l).is_some_and(|e| e.partial))
    })
}

/// Our fds above stdio without close-on-exec (e.g. cargo's jobserver
/// pipe): every child inherits them, the shim included.
fn inherited_fds() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fdinfo") else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) > Some(2))
        .filter(|e| {
            let info = std::fs::read_to_string(e.path()).unwrap_or_default();
            let flags = info
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|f| u32::from_str_radix(f.trim(), 8).ok());
            flags.is_some_and(|f| f & libc::O_CLOEXEC as u32 == 0)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

const SCRIPT: &str = r#"
trap 'echo "got TERM"; exit 7' TERM
printf 'half'
sleep 0.3
echo ' and half'
echo 'to stderr' >&2
i=0
while [ $i -lt 40 ]; do echo "filler line $i"; i=$((i+1)); done
echo ready
while true; do sleep 0.1; done
"#;

/// One container under a detached corral-shim, in a temp dir.
struct Setup {
    shim: PathBuf,
    args: ShimArgs,
    shim_err: PathBuf,
    cleanup: Cleanup,
    _bundle: Bundle,
    dir: tempfile::TempDir,
}

impl Setup {
    /// None (after saying why) when the test cannot run here.
    fn new(name: &str, script: &str) -> Option<Setup> {
        if !host::is_root() {
            eprintln!("SKIPPED [{name}]: needs root");
            return None;
        }
        let shim = match (
            workspace_binary("corral-shim"),
            workspace_binary("corral-runtime"),
        ) {
            (Ok(s), Ok(_)) => s,
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("SKIPPED [{name}]: {e}");
                return None;
            }
        };
        let id = format!("{name}-{}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix("corral-test-shim-tiny-")
            .tempdir()
            .expect("tempdir");
        let cleanup = Cleanup {
            id: id.clone(),
            shim_pid: None,
            root: dir.path().join("root"),
            dir: dir.path().to_path_buf(),
        };
        let mut bundle = Bundle::new();
        bundle.sh(script);
        bundle.write_for(&id, &format!("/{CGROUP_PARENT}/{id}"));
        let args = ShimArgs {
            id,
            bundle: bundle.path().to_path_buf(),
            runtime_root: cleanup.root.clone(),
            log: dir.path().join("ctr.log"),
            log_max_files: 1,
            exit_file: dir.path().join("exit.json"),
            ..ShimArgs::default()
        };
        Some(Setup {
            shim,
            args,
            shim_err: dir.path().join("shim.err"),
            cleanup,
            _bundle: bundle,
            dir,
        })
    }

    /// Run the detached shim, wait for its report: (init pid, shim pid).
    fn start(&mut self) -> (i32, i32) {
        let (rd, wr): (OwnedFd, OwnedFd) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe2");
        let mut cmd = Command::new(&self.shim);
        let with_sync = ShimArgs {
            sync_fd: Some(std::os::fd::AsRawFd::as_raw_fd(&wr)),
            ..self.args.clone()
        };
        cmd.args(with_sync.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&self.shim_err).expect("create shim.err"));
        corral_shim::sync::pass_fd(&mut cmd, &wr);
        let status = cmd.status().expect("run corral-shim");
        drop(wr);
        assert!(status.success(), "detaching shim: {status}");
        let report = corral_shim::sync::receive(rd).expect("sync report");
        let Some(Report::Started { pid, shim_pid }) = report else {
            panic!("shim report {report:?}; shim stderr: {}", self.stderr());
        };
        self.cleanup.shim_pid = Some(shim_pid);
        (pid, shim_pid)
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.shim_err).unwrap_or_default()
    }

    fn wait_ready(&self) {
        let log = &self.args.log;
        let ready = host::wait_until(Duration::from_secs(20), || has_line(log, "stdout", "ready"));
        assert!(ready, "no 'ready' in the log: {:?}", log_lines(log));
    }

    fn exit_record(&self) -> ExitRecord {
        let mut record = None;
        host::wait_until(Duration::from_secs(20), || {
            record = ExitRecord::read(&self.args.exit_file).ok().flatten();
            record.is_some()
        });
        record.unwrap_or_else(|| panic!("no exit record; shim stderr: {}", self.stderr()))
    }

    /// The shim is gone and the runtime's state deleted.
    fn assert_cleaned_up(&self, shim_pid: i32) {
        let state = self.cleanup.root.join(&self.args.id);
        let gone = host::wait_until(Duration::from_secs(10), || {
            !host::pid_alive(shim_pid) && !state.exists()
        });
        assert!(gone, "shim {shim_pid} or state {} left", state.display());
    }
}

fn exe_of(pid: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[test]
fn detached_shim_runs_the_tiny_supervisor() {
    let Some(mut t) = Setup::new("shim-tiny", SCRIPT) else {
        return;
    };
    t.args.log_max_size = 1024;
    t.args.log_max_files = 3;
    let log = t.args.log.clone();
    let (pid, shim_pid) = t.start();
    t.wait_ready();

    // The shim's pid now runs the tiny binary, small.
    let exe = exe_of(shim_pid);
    assert!(
        exe.starts_with("/memfd:corral-shim-tiny"),
        "shim exe: {exe}"
    );
    let rss = status_kib(shim_pid, "VmRSS").expect("shim VmRSS");
    let rollup =
        std::fs::read_to_string(format!("/proc/{shim_pid}/smaps_rollup")).unwrap_or_default();
    let field = |k: &str| host::status_field(&rollup, k).unwrap_or_default();
    eprintln!(
        "shim {shim_pid}: exe {exe}, VmRSS {rss} kB, Pss {}, Private_Dirty {}",
        field("Pss"),
        field("Private_Dirty")
    );
    assert!(rss < 1024, "tiny supervisor RSS {rss} kB");
    let cmdline = std::fs::read(format!("/proc/{shim_pid}/cmdline")).expect("cmdline");
    let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    assert!(
        argv0.ends_with(b"corral-shim"),
        "{:?}",
        String::from_utf8_lossy(argv0)
    );
    let comm = std::fs::read_to_string(format!("/proc/{shim_pid}/comm")).unwrap_or_default();
    assert_eq!(comm.trim(), "corral-shim");
    // It holds stdio, the two pipes, the log, the signalfd and the shim's
    // own executable (to exec --finish): nothing leaked from the std shim.
    let ours = inherited_fds();
    let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{shim_pid}/fd"))
        .expect("shim fds")
        .flatten()
        .filter(|e| !ours.contains(&e.file_name().to_string_lossy().into_owned()))
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|t| t.to_string_lossy().into_owned())
        .collect();
    fds.sort();
    let pipes = fds.iter().filter(|f| f.starts_with("pipe:")).count();
    let others: Vec<&String> = fds.iter().filter(|f| !f.starts_with("pipe:")).collect();
    let mut want = [
        "/dev/null".to_string(),
        "/dev/null".to_string(),
        log.display().to_string(),
        t.shim.display().to_string(),
        t.shim_err.display().to_string(),
        "anon_inode:[signalfd]".to_string(),
    ];
    want.sort();
    let want: Vec<&String> = want.iter().collect();
    assert_eq!((pipes, others), (2, want), "shim fds");
    // The container is still the shim's child.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("init stat");
    let ppid: i32 = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("ppid");
    assert_eq!(ppid, shim_pid, "container init's parent");

    // The CRI log: a line written in two pieces, both streams, rotation.
    let lines = log_lines(&log);
    assert!(
        has_partial(&log),
        "no P entry in {:?}",
        cri::log_files(&log)
    );
    assert!(has_line(&log, "stdout", "half and half"), "{lines:?}");
    assert!(has_line(&log, "stderr", "to stderr"), "{lines:?}");
    assert!(has_line(&log, "stdout", "filler line 39"), "{lines:?}");
    let files = cri::log_files(&log);
    assert_eq!(files.len(), 3, "rotated files: {files:?}");
    for f in &files {
        let len = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
        assert!(len <= 1024, "{} is {len} bytes", f.display());
    }

    // SIGTERM to the shim reaches the container, which exits 7.
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(shim_pid, libc::SIGTERM) }, 0);
    let record = t.exit_record();
    assert_eq!((record.exit_code, record.signal), (7, None), "{record:?}");
    assert!(!record.oom_killed);
    assert!(record.started_at < record.finished_at, "{record:?}");
    assert!(
        has_line(&log, "stdout", "got TERM"),
        "{:?}",
        log_lines(&log)
    );
    t.assert_cleaned_up(shim_pid);
    assert_eq!(t.stderr(), "", "shim stderr");
}

/// A log that cannot be written costs output, not the supervision: the
/// error is said once, the container is still reaped and recorded.
#[test]
fn full_log_disk_costs_output_not_the_exit_record() {
    let script = r#"
echo ready
sleep 0.3
i=0
while [ $i -lt 3000 ]; do echo "a line that fills the little log disk, number $i"; i=$((i+1)); done
sleep 0.3
exit 3
"#;
    let Some(mut t) = Setup::new("shim-tiny-full", script) else {
        return;
    };
    let small = t.dir.path().join("small");
    std::fs::create_dir(&small).expect("mkdir small");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "corral-test-tmpfs"])
        .arg(&small)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED [shim-tiny-full]: cannot mount a tmpfs");
        return;
    }
    t.args.log = small.join("ctr.log");
    let (_pid, shim_pid) = t.start();
    t.wait_ready();
    assert!(exe_of(shim_pid).starts_with("/memfd:corral-shim-tiny"));
    let record = t.exit_record();
    assert_eq!((record.exit_code, record.signal), (3, None), "{record:?}");
    t.assert_cleaned_up(shim_pid);
    let err = t.stderr();
    let said = err
        .matches("output is lost until writing works again")
        .count();
    assert_eq!(said, 1, "shim stderr: {err}");
    assert!(err.contains("write log") && err.contains("ENOSPC"), "{err}");
    // What fit is in CRI format.
    assert!(log_lines(&t.args.log).len() > 100);
}

/// When the tiny supervisor cannot take over (here: more arguments than it
/// takes), the shim says so and supervises in-process as before.
#[test]
fn too_many_arguments_keep_the_supervision_in_process() {
    let script = "echo ready; sleep 1; exit 5";
    let Some(mut t) = Setup::new("shim-tiny-many", script) else {
        return;
    };
    t.args.exit_command = Some("/bin/true".into());
    t.args.exit_command_args = (0..300).map(|i| format!("arg{i}").into()).collect();
    let (_pid, shim_pid) = t.start();
    t.wait_ready();
    assert_eq!(exe_of(shim_pid), t.shim.display().to_string());
    let record = t.exit_record();
    assert_eq!((record.exit_code, record.signal), (5, None), "{record:?}");
    t.assert_cleaned_up(shim_pid);
    let err = t.stderr();
    assert!(
        err.contains("tiny supervisor not started") && err.contains("supervising in-process"),
        "shim stderr: {err}"
    );
}

/// corral-shim's file clobbered in place while the container runs (so
/// `--finish` cannot be exec'd): the tiny supervisor still records the
/// exit itself.
#[test]
fn clobbered_shim_binary_still_gets_an_exit_record() {
    let Some(mut t) = Setup::new("shim-tiny-clobber", "echo ready; sleep 0.5; exit 4") else {
        return;
    };
    let copy = t.dir.path().join("corral-shim");
    std::fs::copy(&t.shim, &copy).expect("copy corral-shim");
    t.shim = copy.clone();
    let (_pid, shim_pid) = t.start();
    t.wait_ready();
    assert!(exe_of(shim_pid).starts_with("/memfd:corral-shim-tiny"));
    // Nothing runs the copy now: it can be truncated (no ETXTBSY).
    File::create(&copy).expect("truncate the shim copy");
    let record = t.exit_record();
    assert_eq!((record.exit_code, record.signal), (4, None), "{record:?}");
    assert!(!record.oom_killed);
    assert!(record.started_at < record.finished_at, "{record:?}");
    let gone = host::wait_until(Duration::from_secs(10), || !host::pid_alive(shim_pid));
    assert!(gone, "shim {shim_pid} still running");
    let err = t.stderr();
    assert!(
        err.contains("exec corral-shim --finish: ENOEXEC"),
        "shim stderr: {err}"
    );
}
