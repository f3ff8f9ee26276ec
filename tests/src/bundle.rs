//! OCI bundles for tests: a busybox rootfs plus a `config.json` built as JSON.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tempfile::TempDir;

use crate::host;
use crate::rootfs::busybox_rootfs;

/// What `runc spec` writes, except: no terminal, a writable root (tests write
/// files into it) and hostname "corral". Tests change fields through the methods.
pub fn default_config() -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "corral",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

/// A bundle directory (mode 0755 so user-namespaced containers can reach it) with a
/// busybox rootfs and a config held as JSON until [`Bundle::write`].
pub struct Bundle {
    dir: TempDir,
    pub config: Value,
    raw: Option<String>,
}

impl Bundle {
    /// A busybox bundle with the default config. Panics if busybox is unusable:
    /// every test needs it and `.ci/run` installs it.
    pub fn new() -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("corral-test-bundle-")
            .tempdir()
            .unwrap_or_else(|e| panic!("create bundle tempdir: {e}"));
        let _ = fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755));
        busybox_rootfs(&dir.path().join("rootfs"))
            .unwrap_or_else(|e| panic!("busybox rootfs: {e}"));
        Bundle {
            dir,
            config: default_config(),
            raw: None,
        }
    }

    /// A bundle with an empty directory and no rootfs (for error tests).
    pub fn without_rootfs() -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("corral-test-bundle-")
            .tempdir()
            .unwrap_or_else(|e| panic!("create bundle tempdir: {e}"));
        Bundle {
            dir,
            config: default_config(),
            raw: None,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.json")
    }

    /// Write config.json (the raw text if one was set, else the JSON value).
    pub fn write(&self) {
        let text = match &self.raw {
            Some(r) => r.clone(),
            None => serde_json::to_string_pretty(&self.config).expect("serialize config"),
        };
        let p = self.config_path();
        fs::write(&p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }

    /// Write config.json for container `id`: unless set, `linux.cgroupsPath` is
    /// `cgroups_path`, and the process env gets the harness's leftover marker.
    pub fn write_for(&self, id: &str, cgroups_path: &str) {
        if self.raw.is_some() {
            return self.write();
        }
        let mut c = self.config.clone();
        if c.pointer("/linux/cgroupsPath").is_none() {
            if let Some(linux) = c.get_mut("linux").and_then(Value::as_object_mut) {
                linux.insert("cgroupsPath".into(), json!(cgroups_path));
            }
        }
        if let Some(Value::Array(env)) = c.pointer_mut("/process/env") {
            env.push(json!(format!("{}={id}", host::MARK_VAR)));
        }
        let p = self.config_path();
        let text = serde_json::to_string_pretty(&c).expect("serialize config");
        fs::write(&p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }

    /// Use this exact text as config.json (e.g. malformed JSON).
    pub fn raw_config(&mut self, text: &str) -> &mut Self {
        self.raw = Some(text.to_string());
        self
    }

    pub fn get(&self, pointer: &str) -> Option<&Value> {
        self.config.pointer(pointer)
    }

    /// Set a field by JSON pointer ("/process/cwd"), creating objects on the way.
    pub fn set(&mut self, pointer: &str, value: Value) -> &mut Self {
        let mut cur = &mut self.config;
        let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            if !cur.is_object() {
                *cur = json!({});
            }
            let obj = cur.as_object_mut().expect("object");
            if i == parts.len() - 1 {
                obj.insert(part.to_string(), value);
                return self;
            }
            cur = obj.entry(part.to_string()).or_insert_with(|| json!({}));
        }
        self
    }

    /// Remove a field by JSON pointer.
    pub fn remove(&mut self, pointer: &str) -> &mut Self {
        if let Some((parent, key)) = pointer.rsplit_once('/') {
            let parent = if parent.is_empty() {
                self.config.as_object_mut()
            } else {
                self.config
                    .pointer_mut(parent)
                    .and_then(Value::as_object_mut)
            };
            if let Some(o) = parent {
                o.remove(key);
            }
        }
        self
    }

    fn push(&mut self, pointer: &str, value: Value) -> &mut Self {
        match self.config.pointer_mut(pointer) {
            Some(Value::Array(a)) => a.push(value),
            _ => {
                self.set(pointer, json!([value]));
            }
        }
        self
    }

    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.set("/process/args", json!(args))
    }

    /// Run a busybox shell script as the container process.
    pub fn sh(&mut self, script: &str) -> &mut Self {
        self.args(&["sh", "-c", script])
    }

    pub fn env(&mut self, kv: &str) -> &mut Self {
        self.push("/process/env", json!(kv))
    }

    pub fn cwd(&mut self, cwd: &str) -> &mut Self {
        self.set("/process/cwd", json!(cwd))
    }

    pub fn hostname(&mut self, h: &str) -> &mut Self {
        self.set("/hostname", json!(h))
    }

    pub fn domainname(&mut self, d: &str) -> &mut Self {
        self.set("/domainname", json!(d))
    }

    pub fn user(&mut self, uid: u32, gid: u32) -> &mut Self {
        self.set("/process/user/uid", json!(uid))
            .set("/process/user/gid", json!(gid))
    }

    pub fn additional_gids(&mut self, gids: &[u32]) -> &mut Self {
        self.set("/process/user/additionalGids", json!(gids))
    }

    pub fn umask(&mut self, umask: u32) -> &mut Self {
        self.set("/process/user/umask", json!(umask))
    }

    pub fn terminal(&mut self, on: bool) -> &mut Self {
        self.set("/process/terminal", json!(on))
    }

    /// Set all five capability sets to the same list.
    pub fn caps_all(&mut self, caps: &[&str]) -> &mut Self {
        for set in [
            "bounding",
            "effective",
            "permitted",
            "inheritable",
            "ambient",
        ] {
            self.caps_set(set, caps);
        }
        self
    }

    pub fn caps_set(&mut self, set: &str, caps: &[&str]) -> &mut Self {
        self.set(&format!("/process/capabilities/{set}"), json!(caps))
    }

    pub fn no_new_privileges(&mut self, on: bool) -> &mut Self {
        self.set("/process/noNewPrivileges", json!(on))
    }

    /// Replace any rlimit of that type.
    pub fn rlimit(&mut self, kind: &str, soft: u64, hard: u64) -> &mut Self {
        let mut list: Vec<Value> = self
            .get("/process/rlimits")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        list.retain(|r| r["type"] != kind);
        list.push(json!({"type": kind, "soft": soft, "hard": hard}));
        self.set("/process/rlimits", json!(list))
    }

    pub fn oom_score_adj(&mut self, adj: i32) -> &mut Self {
        self.set("/process/oomScoreAdj", json!(adj))
    }

    pub fn root_readonly(&mut self, ro: bool) -> &mut Self {
        self.set("/root/readonly", json!(ro))
    }

    pub fn mount(&mut self, m: Value) -> &mut Self {
        self.push("/mounts", m)
    }

    /// Replace the namespace list with fresh namespaces of these types.
    pub fn namespaces(&mut self, kinds: &[&str]) -> &mut Self {
        let list: Vec<Value> = kinds.iter().map(|k| json!({"type": k})).collect();
        self.set("/linux/namespaces", json!(list))
    }

    pub fn remove_namespace(&mut self, kind: &str) -> &mut Self {
        if let Some(Value::Array(a)) = self.config.pointer_mut("/linux/namespaces") {
            a.retain(|n| n["type"] != kind);
        }
        self
    }

    /// Add (or replace) a namespace, joined by path when `path` is given.
    pub fn namespace(&mut self, kind: &str, path: Option<&Path>) -> &mut Self {
        self.remove_namespace(kind);
        let mut ns = json!({"type": kind});
        if let Some(p) = path {
            ns["path"] = json!(p.to_string_lossy());
        }
        self.push("/linux/namespaces", ns)
    }

    pub fn uid_mapping(&mut self, container: u32, host: u32, size: u32) -> &mut Self {
        self.push(
            "/linux/uidMappings",
            json!({"containerID": container, "hostID": host, "size": size}),
        )
    }

    pub fn gid_mapping(&mut self, container: u32, host: u32, size: u32) -> &mut Self {
        self.push(
            "/linux/gidMappings",
            json!({"containerID": container, "hostID": host, "size": size}),
        )
    }

    /// Set one resource section, e.g. `resource("memory", json!({"limit": 1<<25}))`.
    pub fn resource(&mut self, section: &str, value: Value) -> &mut Self {
        self.set(&format!("/linux/resources/{section}"), value)
    }

    pub fn cgroups_path(&mut self, p: &str) -> &mut Self {
        self.set("/linux/cgroupsPath", json!(p))
    }

    pub fn sysctl(&mut self, key: &str, value: &str) -> &mut Self {
        self.set(&format!("/linux/sysctl/{key}"), json!(value))
    }

    pub fn seccomp(&mut self, profile: Value) -> &mut Self {
        self.set("/linux/seccomp", profile)
    }

    /// Append a hook of a kind ("prestart", "createRuntime", "poststop", ...).
    pub fn hook(&mut self, kind: &str, hook: Value) -> &mut Self {
        self.push(&format!("/hooks/{kind}"), hook)
    }

    pub fn masked_path(&mut self, p: &str) -> &mut Self {
        self.push("/linux/maskedPaths", json!(p))
    }

    pub fn readonly_path(&mut self, p: &str) -> &mut Self {
        self.push("/linux/readonlyPaths", json!(p))
    }

    pub fn device(&mut self, d: Value) -> &mut Self {
        self.push("/linux/devices", d)
    }

    pub fn device_rule(&mut self, rule: Value) -> &mut Self {
        self.push("/linux/resources/devices", rule)
    }

    pub fn oci_version(&mut self, v: &str) -> &mut Self {
        self.set("/ociVersion", json!(v))
    }

    pub fn annotation(&mut self, k: &str, v: &str) -> &mut Self {
        // Keys may contain '/', so no JSON pointer here.
        if !self.config["annotations"].is_object() {
            self.config["annotations"] = json!({});
        }
        self.config["annotations"][k] = json!(v);
        self
    }

    /// Write a file into the rootfs (path relative to the rootfs root).
    pub fn write_rootfs_file(&self, rel: &str, contents: &str) {
        let p = self.rootfs().join(rel.trim_start_matches('/'));
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
        }
        fs::write(&p, contents).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }

    /// Read a file the container wrote into its rootfs.
    pub fn read_rootfs_file(&self, rel: &str) -> Option<String> {
        fs::read_to_string(self.rootfs().join(rel.trim_start_matches('/'))).ok()
    }
}

impl Default for Bundle {
    fn default() -> Self {
        Bundle::new()
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        // A runtime that leaked a mount into our namespace must not make the
        // tempdir removal walk into (and delete) host files.
        host::unmount_under(self.dir.path());
    }
}
