//! `config.json` at the edge: parsed once into `oci_spec` types, validated
//! before anything is created, so a bad bundle changes nothing on the host.

use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Error, Result};

/// The oldest and newest runtime-spec minor versions this runtime speaks.
pub const OCI_VERSION_MIN: &str = "1.0.0";
pub const OCI_VERSION_MAX: &str = "1.3.0";

/// A loaded, validated bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Absolute bundle directory.
    pub dir: PathBuf,
    pub spec: Spec,
    /// Absolute path of the root filesystem.
    pub rootfs: PathBuf,
}

impl Bundle {
    /// Read and validate `<dir>/config.json`.
    pub fn load(dir: &Path) -> Result<Bundle> {
        let dir = std::fs::canonicalize(dir)
            .map_err(|e| Error::io(format!("bundle directory {}", dir.display()), e))?;
        let file = dir.join("config.json");
        let bytes =
            std::fs::read(&file).map_err(|e| Error::io(format!("read {}", file.display()), e))?;
        let spec = parse(&bytes, &file)?;
        let rootfs = validate(&spec, &dir, &file)?;
        Ok(Bundle { dir, spec, rootfs })
    }
}

/// Parse JSON into a spec; errors carry the JSON path of the bad field.
pub fn parse(bytes: &[u8], file: &Path) -> Result<Spec> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = if path == "." || path.is_empty() {
            format!("invalid JSON: {inner}")
        } else {
            format!("{path}: {inner}")
        };
        config_err(file, msg)
    })
}

fn config_err(file: &Path, msg: impl Into<String>) -> Error {
    Error::Config {
        file: file.to_path_buf(),
        msg: msg.into(),
    }
}

/// Check everything that can be checked without touching the system and
/// return the absolute rootfs path.
pub fn validate(spec: &Spec, bundle: &Path, file: &Path) -> Result<PathBuf> {
    let err = |m: String| config_err(file, m);
    check_version(spec.version()).map_err(err)?;
    let rootfs = resolve_root(spec, bundle).map_err(err)?;
    check_process(spec).map_err(err)?;
    check_namespaces(spec).map_err(err)?;
    if let Some(linux) = spec.linux() {
        if let Some(res) = linux.resources() {
            crate::cgroups::validate(res).map_err(|e| err(e.to_string()))?;
        }
        if let Some(sc) = linux.seccomp() {
            crate::seccomp::validate(sc).map_err(|e| err(format!("linux.seccomp: {e}")))?;
        }
    }
    if let Some(rl) = spec.process().as_ref().and_then(|p| p.rlimits().as_ref()) {
        crate::rlimits::validate(rl).map_err(|e| err(e.to_string()))?;
    }
    crate::rootfs::validate(spec).map_err(|e| err(e.to_string()))?;
    Ok(rootfs)
}

/// Accept every 1.0.x to 1.3.x version (and their -rc/-dev suffixes).
fn check_version(v: &str) -> std::result::Result<(), String> {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let mut parts = core.split('.').map(str::parse::<u32>);
    match (parts.next(), parts.next()) {
        (Some(Ok(1)), Some(Ok(minor))) if minor <= 3 => Ok(()),
        _ => Err(format!(
            "ociVersion {v:?} is not supported (this runtime speaks {OCI_VERSION_MIN} to 1.3.x)"
        )),
    }
}

fn resolve_root(spec: &Spec, bundle: &Path) -> std::result::Result<PathBuf, String> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| "root: missing (the bundle must name its root filesystem)".to_string())?;
    let path = root.path();
    if path.as_os_str().is_empty() {
        return Err("root.path: empty".into());
    }
    let joined = if path.is_absolute() {
        path.clone()
    } else {
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(format!(
                "root.path: {:?} leaves the bundle directory (relative paths may not use \"..\")",
                path
            ));
        }
        bundle.join(path)
    };
    let meta =
        std::fs::metadata(&joined).map_err(|e| format!("root.path: {}: {e}", joined.display()))?;
    if !meta.is_dir() {
        return Err(format!(
            "root.path: {} is not a directory",
            joined.display()
        ));
    }
    std::fs::canonicalize(&joined).map_err(|e| format!("root.path: {}: {e}", joined.display()))
}

fn check_process(spec: &Spec) -> std::result::Result<(), String> {
    let p = spec
        .process()
        .as_ref()
        .ok_or_else(|| "process: missing (required to create a container)".to_string())?;
    check_process_fields(p, "process")
}

/// Shared by config.json and `exec -p process.json`.
pub fn check_process_fields(
    p: &oci_spec::runtime::Process,
    field: &str,
) -> std::result::Result<(), String> {
    match p.args() {
        Some(args) if !args.is_empty() && !args[0].is_empty() => {}
        _ => return Err(format!("{field}.args is empty: nothing to run")),
    }
    if !p.cwd().is_absolute() {
        return Err(format!(
            "{field}.cwd: {:?} must be an absolute path",
            p.cwd()
        ));
    }
    if let Some(env) = p.env() {
        for (i, e) in env.iter().enumerate() {
            if !e.contains('=') {
                return Err(format!("{field}.env[{i}]: {e:?} is not NAME=VALUE"));
            }
        }
    }
    Ok(())
}

fn check_namespaces(spec: &Spec) -> std::result::Result<(), String> {
    let linux = match spec.linux() {
        Some(l) => l,
        None => return Ok(()),
    };
    let nss = linux.namespaces().as_deref().unwrap_or(&[]);
    let mut seen = Vec::new();
    for (i, ns) in nss.iter().enumerate() {
        if seen.contains(&ns.typ()) {
            return Err(format!(
                "linux.namespaces[{i}]: namespace {:?} listed twice",
                ns.typ()
            ));
        }
        seen.push(ns.typ());
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                return Err(format!(
                    "linux.namespaces[{i}].path: {:?} must be absolute",
                    p
                ));
            }
            if let Err(e) = std::fs::metadata(p) {
                return Err(format!("linux.namespaces[{i}].path: {}: {e}", p.display()));
            }
        }
    }
    let has = |t: LinuxNamespaceType| seen.contains(&t);
    let new_userns = nss
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
    let maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        && linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if new_userns && !maps {
        return Err(
            "linux.uidMappings/gidMappings: a new user namespace needs both mappings".into(),
        );
    }
    let any_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if !has(LinuxNamespaceType::User) && any_maps {
        return Err("linux.uidMappings: set, but there is no user namespace".into());
    }
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return Err("hostname: setting a hostname needs a uts namespace".into());
    }
    if spec.domainname().as_ref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return Err("domainname: setting a domainname needs a uts namespace".into());
    }
    if !has(LinuxNamespaceType::Mount) {
        return Err("linux.namespaces: a mount namespace is required".into());
    }
    Ok(())
}

/// The config.json `spec` writes: runc's default (a shell on a terminal,
/// the usual mounts, masked paths and capabilities), at version 1.0.2 so
/// every peer runtime accepts it too.
pub fn default_spec() -> serde_json::Value {
    let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": true,
            "user": { "uid": 0, "gid": 0 },
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps, "ambient": caps
            },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": true },
        "hostname": "corral",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
              "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
              "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
              "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs",
              "options": ["nosuid", "noexec", "nodev", "ro"] },
            { "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
              "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] }
        ],
        "linux": {
            "resources": { "devices": [{ "allow": false, "access": "rwm" }] },
            "namespaces": [
                { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
                { "type": "uts" }, { "type": "mount" }, { "type": "cgroup" }
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Spec> {
        parse(s.as_bytes(), Path::new("config.json"))
    }

    #[test]
    fn default_spec_parses() {
        let bytes = serde_json::to_vec(&default_spec()).unwrap();
        let spec = parse(&bytes, Path::new("config.json")).unwrap();
        check_process(&spec).unwrap();
        check_namespaces(&spec).unwrap();
    }

    #[test]
    fn versions() {
        for ok in [
            "1.0.0",
            "1.0.2",
            "1.1.0",
            "1.2.0",
            "1.2.1",
            "1.3.0",
            "1.0.2-dev",
            "1.3.0-rc.1",
        ] {
            assert!(check_version(ok).is_ok(), "{ok}");
        }
        for bad in ["", "2.0.0", "0.9", "1.4.0", "one"] {
            assert!(check_version(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_json_names_the_problem() {
        let e = parse_str("{ \"ociVersion\": ").unwrap_err().to_string();
        assert!(e.starts_with("config.json: "), "{e}");
        assert!(e.contains("EOF while parsing"), "{e}");
    }

    #[test]
    fn unknown_namespace_names_the_field() {
        let e = parse_str(
            r#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"pid"},{"type":"bogus"}]}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("linux.namespaces[1].type"), "{e}");
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn empty_args_rejected() {
        let spec = parse_str(
            r#"{"ociVersion":"1.0.2","process":{"user":{"uid":0,"gid":0},"cwd":"/","args":[]}}"#,
        )
        .unwrap();
        let e = check_process(&spec).unwrap_err();
        assert!(e.contains("process.args is empty"), "{e}");
    }

    #[test]
    fn relative_root_outside_bundle_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let spec = parse_str(r#"{"ociVersion":"1.0.2","root":{"path":"../../etc"}}"#).unwrap();
        let e = resolve_root(&spec, dir.path()).unwrap_err();
        assert!(e.contains("leaves the bundle"), "{e}");
    }

    #[test]
    fn missing_rootfs_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let spec = parse_str(r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"}}"#).unwrap();
        let e = resolve_root(&spec, dir.path()).unwrap_err();
        assert!(e.starts_with("root.path:"), "{e}");
    }

    #[test]
    fn duplicate_namespace_rejected() {
        let spec = parse_str(
            r#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"mount"},{"type":"mount"}]}}"#,
        )
        .unwrap();
        assert!(check_namespaces(&spec)
            .unwrap_err()
            .contains("listed twice"));
    }

    #[test]
    fn hostname_needs_uts() {
        let spec = parse_str(
            r#"{"ociVersion":"1.0.2","hostname":"x","linux":{"namespaces":[{"type":"mount"}]}}"#,
        )
        .unwrap();
        assert!(check_namespaces(&spec).unwrap_err().contains("uts"));
    }
}
