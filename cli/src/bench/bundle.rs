//! The one OCI bundle that corral-runtime, runc and crun all run: a busybox
//! rootfs made from the host's static busybox and a config.json like
//! `scripts/make-bundle`'s (read-only root, no terminal). Only
//! `linux.cgroupsPath` changes between runs, so no two containers ever
//! share a cgroup.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::args::Workload;

pub struct Bundle {
    pub dir: PathBuf,
    config: Value,
    /// First component of every container's cgroup path.
    pub cgroup_parent: String,
}

/// The host's busybox, which must be static to run in an empty rootfs.
pub fn host_busybox() -> Result<PathBuf> {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        let p = Path::new(p);
        if p.is_file() {
            let dynamic = Command::new("ldd")
                .arg(p)
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if dynamic {
                bail!(
                    "{} is dynamically linked: install busybox-static",
                    p.display()
                );
            }
            return Ok(p.to_path_buf());
        }
    }
    bail!("busybox not found in /bin or /usr/bin: install busybox-static")
}

/// The container's command for a workload.
pub fn workload_args(w: Workload, port: u16) -> Vec<String> {
    match w {
        Workload::True => vec!["/bin/true".into()],
        // By busybox's own path: images link the applet in different places.
        Workload::Httpd => [
            "/bin/busybox",
            "httpd",
            "-f",
            "-p",
            &format!("127.0.0.1:{port}"),
            "-h",
            "/etc",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    }
}

impl Bundle {
    pub fn create(dir: &Path, w: Workload, port: u16) -> Result<Bundle> {
        let rootfs = dir.join("rootfs");
        for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root"] {
            std::fs::create_dir_all(rootfs.join(d))
                .with_context(|| format!("mkdir {}", rootfs.join(d).display()))?;
        }
        let busybox = host_busybox()?;
        std::fs::copy(&busybox, rootfs.join("bin/busybox"))
            .with_context(|| format!("copy {} into the bundle", busybox.display()))?;
        for applet in ["true", "sh"] {
            let link = rootfs.join("bin").join(applet);
            symlink("busybox", &link).with_context(|| format!("symlink {}", link.display()))?;
        }
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .context("write the bundle's /etc/passwd")?;
        Ok(Bundle {
            dir: dir.to_path_buf(),
            config: config(w, port),
            cgroup_parent: format!("corral-bench-{}", std::process::id()),
        })
    }

    /// Rewrite config.json for the container `id`.
    pub fn prepare(&mut self, id: &str) -> Result<()> {
        self.config["linux"]["cgroupsPath"] = json!(format!("/{}/{id}", self.cgroup_parent));
        let path = self.dir.join("config.json");
        let text = serde_json::to_vec_pretty(&self.config).context("encode config.json")?;
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))
    }

    /// Remove the cgroups of every container (all hierarchies), best effort.
    pub fn remove_cgroups(&self) {
        let Ok(hiers) = std::fs::read_dir("/sys/fs/cgroup") else {
            return;
        };
        for h in hiers.flatten() {
            rmdir_tree(&h.path().join(&self.cgroup_parent));
        }
    }
}

fn rmdir_tree(path: &Path) {
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&e.path());
            }
        }
        let _ = std::fs::remove_dir(path);
    }
}

/// make-bundle's config; the httpd workload shares the host's network
/// namespace so the bench can ask it for a page on 127.0.0.1.
fn config(w: Workload, port: u16) -> Value {
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    if w == Workload::True {
        namespaces.push(json!({"type": "network"}));
    }
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
      "ociVersion": "1.0.2",
      "process": {
        "terminal": false,
        "user": {"uid": 0, "gid": 0},
        "args": workload_args(w, port),
        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
        "cwd": "/",
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": true
      },
      "root": {"path": "rootfs", "readonly": true},
      "hostname": "corral-bench",
      "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "mode=1777"]}
      ],
      "linux": {
        "resources": {"devices": [{"allow": false, "access": "rwm"}]},
        "namespaces": namespaces,
        "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
      }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_per_workload() {
        let t = config(Workload::True, 1);
        assert_eq!(t["process"]["args"], json!(["/bin/true"]));
        assert!(t["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .contains(&json!({"type": "network"})));
        let h = config(Workload::Httpd, 8123);
        assert_eq!(h["process"]["args"][4], json!("127.0.0.1:8123"));
        assert!(!h["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .contains(&json!({"type": "network"})));
    }
}
