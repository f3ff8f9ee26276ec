//! podman as the engine: it runs a local busybox image with `--runtime` set to
//! the runtime under test, with and without `-t`, plus exec/stop/rm.
//! Storage is per test (vfs driver, cgroupfs manager, no network).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use corral_tests::host::{unmount_under, which};
use corral_tests::runtime::{hybrid_wrapper_for, run_command};
use corral_tests::{busybox_rootfs, runtime_for, Out, Runtime};

const T: Duration = Duration::from_secs(90);
const IMAGE: &str = "localhost/corral-test-busybox:latest";

struct Podman {
    dir: tempfile::TempDir,
    runtime: PathBuf,
    wrapper: Vec<OsString>,
    n: std::cell::Cell<usize>,
}

impl Podman {
    /// None (with the reason printed by the caller) if podman or conmon is missing.
    fn new(rt: &Runtime) -> Result<Podman, String> {
        let missing: Vec<&str> = ["podman", "conmon", "tar"]
            .into_iter()
            .filter(|p| which(p).is_none() && !Path::new("/usr/libexec/podman/conmon").exists())
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "missing {missing:?} (apt-get install podman conmon)"
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix("corral-test-podman-")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        let p = Podman {
            dir,
            runtime: rt.bin().to_path_buf(),
            wrapper: hybrid_wrapper_for(rt.kind()),
            n: 0.into(),
        };
        let rootfs = p.dir.path().join("rootfs");
        busybox_rootfs(&rootfs)?;
        let tar = p.dir.path().join("rootfs.tar");
        let o = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .output()
            .map_err(|e| format!("tar: {e}"))?;
        if !o.status.success() {
            return Err(format!("tar: {}", String::from_utf8_lossy(&o.stderr)));
        }
        let out = p.run(&["import", &tar.to_string_lossy(), IMAGE]);
        if !out.ok() {
            panic!("podman import of the busybox rootfs failed:\n{out}");
        }
        Ok(p)
    }

    fn command(&self, args: &[&str]) -> Command {
        let d = self.dir.path();
        let mut all: Vec<OsString> = self.wrapper.clone();
        all.push("podman".into());
        for (k, v) in [
            ("--root", d.join("storage")),
            ("--runroot", d.join("run")),
            ("--tmpdir", d.join("tmp")),
            ("--runtime", self.runtime.clone()),
        ] {
            all.push(k.into());
            all.push(v.into());
        }
        for a in [
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
        ] {
            all.push(a.into());
        }
        all.extend(args.iter().map(OsString::from));
        let mut c = Command::new(&all[0]);
        c.args(&all[1..]);
        c
    }

    fn run(&self, args: &[&str]) -> Out {
        let n = self.n.get();
        self.n.set(n + 1);
        run_command(
            self.command(args),
            self.dir.path(),
            &format!("podman-{n}"),
            T,
        )
    }

    /// `podman run` with limits this host allows without CAP_SYS_RESOURCE (podman
    /// asks for 1048576 open files by default).
    fn run_container(&self, extra: &[&str], cmd: &[&str]) -> Out {
        let mut args = vec![
            "run",
            "--network",
            "none",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ];
        args.extend_from_slice(extra);
        args.push(IMAGE);
        args.extend_from_slice(cmd);
        self.run(&args)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "--all", "--force", "--time", "0"]);
        unmount_under(self.dir.path());
    }
}

fn podman(test: &str) -> Option<(Runtime, Podman)> {
    let rt = runtime_for(test)?;
    match Podman::new(&rt) {
        Ok(p) => Some((rt, p)),
        Err(e) => {
            eprintln!("SKIPPED [{test}]: {e}");
            None
        }
    }
}

#[test]
fn podman_run_without_tty() {
    let Some((_rt, p)) = podman("pm-run") else {
        return;
    };
    let out = p.run_container(
        &["--rm"],
        &["sh", "-c", "echo hi-from-podman-$$; id -u; exit 3"],
    );
    assert_eq!(
        out.code(),
        Some(3),
        "podman run did not pass the exit code through:\n{out}"
    );
    assert!(out.stdout.contains("hi-from-podman-1\n0\n"), "{out}");
}

#[test]
fn podman_run_with_tty() {
    let Some((_rt, p)) = podman("pm-tty") else {
        return;
    };
    let out = p.run_container(&["--rm", "-t"], &["sh", "-c", "tty; echo tty-ok"]);
    out.assert_ok();
    let text = out.stdout.replace('\r', "");
    assert!(
        text.contains("/dev/pts/0\ntty-ok"),
        "podman -t did not give the container a pty:\n{out}"
    );
}

#[test]
fn podman_detached_exec_stop_rm() {
    let Some((_rt, p)) = podman("pm-exec") else {
        return;
    };
    let out = p.run_container(&["-d", "--name", "corral-pm-exec"], &["sleep", "300"]);
    out.assert_ok();
    let ps = p.run(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(
        ps.stdout.contains("corral-pm-exec Up"),
        "container not running:\n{ps}"
    );
    let ex = p.run(&[
        "exec",
        "corral-pm-exec",
        "sh",
        "-c",
        "echo in-exec; cat /proc/1/cmdline",
    ]);
    ex.assert_ok();
    assert!(ex.stdout.contains("in-exec\nsleep"), "{ex}");
    let stop = p.run(&["stop", "--time", "1", "corral-pm-exec"]);
    stop.assert_ok();
    let ps = p.run(&["ps", "--all", "--format", "{{.Names}} {{.Status}}"]);
    assert!(
        ps.stdout.contains("corral-pm-exec Exited"),
        "not exited after stop:\n{ps}"
    );
    p.run(&["rm", "corral-pm-exec"]).assert_ok();
}
