//! Parse-time checks of the filesystem parts of config.json, so a bad config fails
//! before anything is created. Every problem names its field path.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, LinuxNamespaceType, Mount, Spec};

use super::options::{known_data_word, parse_options, propagation_option};

/// Mount points under /proc that runc accepts (lxcfs emulates these files).
pub const PROC_MOUNT_ALLOWED: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
    "/proc/sys/crypto/fips_enabled",
];

/// Largest major/minor numbers the kernel's dev_t holds.
const MAX_MAJOR: i64 = (1 << 12) - 1;
const MAX_MINOR: i64 = (1 << 20) - 1;

pub fn validate(spec: &Spec) -> crate::Result<()> {
    let mut problems = Vec::new();
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        check_mount(i, m, &mut problems);
    }
    if let Some(linux) = spec.linux() {
        if let Some(p) = linux.rootfs_propagation() {
            if propagation_option(p).is_none() {
                problems.push(format!(
                    "linux.rootfsPropagation: unknown value {p:?} (use private, rprivate, shared, \
                     rshared, slave, rslave, unbindable or runbindable)"
                ));
            }
        }
        check_abs_paths("linux.maskedPaths", linux.masked_paths(), &mut problems);
        check_abs_paths("linux.readonlyPaths", linux.readonly_paths(), &mut problems);
        check_devices(
            linux.devices().as_deref().unwrap_or_default(),
            &mut problems,
        );
        check_sysctls(spec, &mut problems);
    }
    // Usage, not Config: the caller (spec.rs) prefixes the file it loaded.
    if problems.is_empty() {
        Ok(())
    } else {
        Err(crate::Error::Usage(problems.join("; ")))
    }
}

/// Lexically clean an absolute path ("/a/./b/../c" -> "/a/c"), `..` stopping at "/".
pub fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// The type a mount is handled as: "bind" for bind mounts whatever `type` says.
pub fn effective_type(m: &Mount, is_bind: bool) -> &str {
    match m.typ().as_deref() {
        _ if is_bind => "bind",
        Some("bind") => "bind",
        Some(t) if !t.is_empty() && t != "none" => t,
        _ => "",
    }
}

fn check_mount(i: usize, m: &Mount, problems: &mut Vec<String>) {
    let at = format!("mounts[{i}]");
    let dest = m.destination();
    if !dest.is_absolute() {
        problems.push(format!(
            "{at}.destination: {dest:?} is not an absolute path"
        ));
    }
    if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
        problems.push(format!(
            "{at}.uidMappings: id-mapped mounts are not supported"
        ));
    }
    let opts = parse_options(m.options().as_deref().unwrap_or_default());
    if let Some(o) = &opts.idmap {
        problems.push(format!(
            "{at}.options: {o:?}: id-mapped mounts are not supported"
        ));
    }
    let typ = effective_type(m, opts.is_bind());
    for w in &opts.unknown {
        if known_data_word(typ, w) == Some(false) {
            problems.push(format!("{at}.options: unknown option {w:?}"));
        }
    }
    if opts.copyup && typ != "tmpfs" {
        problems.push(format!(
            "{at}.options: \"tmpcopyup\" only applies to tmpfs mounts, not {typ:?}"
        ));
    }
    if typ.is_empty() && !opts.flags.contains(nix::mount::MsFlags::MS_REMOUNT) {
        problems.push(format!(
            "{at}.type: missing (only bind mounts and remounts may leave it out)"
        ));
    }
    if typ == "bind" && m.source().as_ref().is_none_or(|s| s.as_os_str().is_empty()) {
        problems.push(format!("{at}.source: required for a bind mount"));
    }
    if dest.is_absolute() {
        if let Err(e) = check_proc_destination(&clean(dest), typ) {
            problems.push(format!("{at}.destination: {e}"));
        }
    }
}

/// Mounts over /proc or inside it could hide what the kernel shows there (runc's
/// checkProcMount): only procfs on /proc itself, and a few lxcfs-style files inside.
/// A bind on /proc is allowed here; `prepare` checks that its source is a procfs.
pub fn check_proc_destination(dest: &Path, typ: &str) -> Result<(), String> {
    if !dest.starts_with("/proc") {
        return Ok(());
    }
    if dest == Path::new("/proc") {
        return match typ {
            "proc" | "bind" => Ok(()),
            _ => Err(format!(
                "{dest:?} cannot be mounted because it is not of type proc"
            )),
        };
    }
    if PROC_MOUNT_ALLOWED.iter().any(|a| dest == Path::new(a)) {
        return Ok(());
    }
    Err(format!(
        "{dest:?} cannot be mounted because it is inside /proc"
    ))
}

fn check_abs_paths(field: &str, paths: &Option<Vec<String>>, problems: &mut Vec<String>) {
    for (i, p) in paths.iter().flatten().enumerate() {
        if !Path::new(p).is_absolute() {
            problems.push(format!("{field}[{i}]: {p:?} is not an absolute path"));
        }
    }
}

fn check_devices(devices: &[LinuxDevice], problems: &mut Vec<String>) {
    let mut seen: HashMap<PathBuf, usize> = HashMap::new();
    for (i, d) in devices.iter().enumerate() {
        let at = format!("linux.devices[{i}]");
        if let Err(e) = check_device(d) {
            problems.push(format!("{at}.{e}"));
        }
        let path = clean(d.path());
        if let Some(first) = seen.insert(path.clone(), i) {
            problems.push(format!(
                "{at}.path: {path:?} is already linux.devices[{first}]"
            ));
        }
    }
}

fn check_device(d: &LinuxDevice) -> Result<(), String> {
    let path = d.path();
    if !path.is_absolute() {
        return Err(format!("path: {path:?} is not an absolute path"));
    }
    if clean(path) == Path::new("/") {
        return Err(format!("path: {path:?} is not a device path"));
    }
    if d.typ() == LinuxDeviceType::A {
        return Err("type: \"a\" is not a device node type (use c, b, u or p)".into());
    }
    if d.typ() != LinuxDeviceType::P {
        if !(0..=MAX_MAJOR).contains(&d.major()) {
            return Err(format!(
                "major: {} is out of range 0..={MAX_MAJOR}",
                d.major()
            ));
        }
        if !(0..=MAX_MINOR).contains(&d.minor()) {
            return Err(format!(
                "minor: {} is out of range 0..={MAX_MINOR}",
                d.minor()
            ));
        }
    }
    if let Some(mode) = d.file_mode() {
        if mode & !(libc::S_IFMT | 0o7777) != 0 {
            return Err(format!(
                "fileMode: {mode:#o} has bits beyond the file type and permissions"
            ));
        }
    }
    Ok(())
}

fn check_sysctls(spec: &Spec, problems: &mut Vec<String>) {
    let Some(linux) = spec.linux() else { return };
    let mut names: Vec<&String> = linux.sysctl().iter().flatten().map(|(k, _)| k).collect();
    names.sort();
    let ns = |t: LinuxNamespaceType| {
        linux
            .namespaces()
            .iter()
            .flatten()
            .find(|n| n.typ() == t)
            .map(|n| n.path().clone())
    };
    for name in names {
        if let Err(e) = check_sysctl_name(name).and_then(|()| check_sysctl_ns(name, &ns)) {
            problems.push(format!("linux.sysctl[{name:?}]: {e}"));
        }
    }
}

fn check_sysctl_name(name: &str) -> Result<(), String> {
    let bad_part = name.split('.').any(|p| p.is_empty() || p == "..");
    if name.is_empty() || name.contains('/') || name.contains('\0') || bad_part {
        return Err("invalid name: use dot-separated names like \"net.ipv4.ip_forward\"".into());
    }
    Ok(())
}

/// A sysctl is only allowed when the container has its own copy of it (runc's rules):
/// writing any other one would change the host.
fn check_sysctl_ns(
    name: &str,
    ns: &dyn Fn(LinuxNamespaceType) -> Option<Option<PathBuf>>,
) -> Result<(), String> {
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if IPC.contains(&name) || name.starts_with("fs.mqueue.") {
        return match ns(LinuxNamespaceType::Ipc) {
            Some(_) => Ok(()),
            None => Err("not allowed in the host's IPC namespace".into()),
        };
    }
    if name.starts_with("net.") {
        return match ns(LinuxNamespaceType::Network) {
            Some(Some(path)) if is_current_netns(&path) => {
                Err("not allowed in the host's network namespace".into())
            }
            Some(_) => Ok(()),
            None => Err("not allowed in the host's network namespace".into()),
        };
    }
    match (name, ns(LinuxNamespaceType::Uts)) {
        ("kernel.domainname", Some(_)) => Ok(()),
        ("kernel.hostname", Some(_)) => {
            Err("conflicts with the \"hostname\" field: set that instead".into())
        }
        _ => Err("not in a namespace the container owns: it would change the host".into()),
    }
}

fn is_current_netns(path: &Path) -> bool {
    let (Ok(a), Ok(b)) = (
        std::fs::metadata(path),
        std::fs::metadata("/proc/self/ns/net"),
    ) else {
        return false;
    };
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Spec {
        serde_json::from_value(json).expect("test spec")
    }

    fn problems(json: serde_json::Value) -> String {
        match validate(&spec(json)) {
            Ok(()) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    fn mounts(m: serde_json::Value) -> String {
        problems(serde_json::json!({"ociVersion": "1.0.2", "mounts": m}))
    }

    #[test]
    fn podman_style_config_is_valid() {
        let m = serde_json::json!([
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid","noexec","nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid","strictatime","mode=755","size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid","noexec","newinstance","ptmxmode=0666","mode=0620","gid=5"]},
            {"destination": "/data", "type": "tmpfs", "source": "tmpfs", "options": ["rw","rprivate","nosuid","nodev","tmpcopyup"]},
            {"destination": "/hostv", "type": "bind", "source": "/tmp", "options": ["ro","rprivate","rbind"]},
            {"destination": "/etc/hosts", "source": "hosts", "options": ["bind"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["rprivate","nosuid","noexec","nodev","relatime","ro"]},
            {"destination": "/mnt/o", "type": "overlay", "source": "overlay", "options": ["lowerdir=/a", "userxattr"]},
            {"destination": "/proc/cpuinfo", "type": "bind", "source": "/var/lib/lxcfs/proc/cpuinfo", "options": ["rbind"]},
            {"destination": "/x", "options": ["remount", "ro"]}
        ]);
        assert_eq!(mounts(m), "");
    }

    #[test]
    fn unknown_option_names_the_mount() {
        let m = serde_json::json!([
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/a", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/b", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/c", "type": "bind", "source": "/tmp", "options": ["rbindd"]}
        ]);
        assert_eq!(mounts(m), "mounts[3].options: unknown option \"rbindd\"");
        let m = serde_json::json!([{"destination": "/t", "type": "tmpfs", "options": ["nosiud"]}]);
        assert!(mounts(m).contains("mounts[0].options: unknown option \"nosiud\""));
    }

    #[test]
    fn mount_shape_errors() {
        let m = serde_json::json!([
            {"destination": "rel", "type": "tmpfs"},
            {"destination": "/i", "type": "bind", "source": "/x", "options": ["bind", "idmap"]},
            {"destination": "/c", "type": "bind", "source": "/x", "options": ["bind", "tmpcopyup"]},
            {"destination": "/n", "source": "/x"},
            {"destination": "/s", "options": ["rbind"]},
            {"destination": "/proc/sys", "type": "tmpfs"},
            {"destination": "/proc", "type": "tmpfs"},
            {"destination": "/m", "type": "bind", "source": "/x", "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}], "gidMappings": []}
        ]);
        let out = mounts(m);
        for want in [
            "mounts[0].destination: \"rel\" is not an absolute path",
            "mounts[1].options: \"idmap\": id-mapped mounts are not supported",
            "mounts[2].options: \"tmpcopyup\" only applies to tmpfs mounts",
            "mounts[3].type: missing",
            "mounts[4].source: required for a bind mount",
            "mounts[5].destination: \"/proc/sys\" cannot be mounted because it is inside /proc",
            "mounts[6].destination: \"/proc\" cannot be mounted because it is not of type proc",
            "mounts[7].uidMappings: id-mapped mounts are not supported",
        ] {
            assert!(out.contains(want), "missing {want:?} in {out}");
        }
    }

    fn linux(l: serde_json::Value) -> String {
        problems(serde_json::json!({"ociVersion": "1.0.2", "linux": l}))
    }

    #[test]
    fn propagation_values() {
        assert_eq!(
            linux(serde_json::json!({"rootfsPropagation": "rshared"})),
            ""
        );
        let out = linux(serde_json::json!({"rootfsPropagation": "rslaves"}));
        assert!(
            out.contains("linux.rootfsPropagation: unknown value \"rslaves\""),
            "{out}"
        );
    }

    #[test]
    fn masked_and_readonly_paths_are_absolute() {
        let out = linux(
            serde_json::json!({"maskedPaths": ["/proc/kcore", "proc/keys"], "readonlyPaths": ["sys"]}),
        );
        assert!(
            out.contains("linux.maskedPaths[1]: \"proc/keys\" is not an absolute path"),
            "{out}"
        );
        assert!(out.contains("linux.readonlyPaths[0]"), "{out}");
    }

    #[test]
    fn devices() {
        let out = linux(serde_json::json!({"devices": [
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438},
            {"path": "/dev/fifo", "type": "p"},
            {"path": "/dev/all", "type": "a", "major": 1, "minor": 1},
            {"path": "/dev/big", "type": "b", "major": 5000, "minor": 1},
            {"path": "/dev/neg", "type": "c", "major": 1, "minor": -1},
            {"path": "dev/rel", "type": "c", "major": 1, "minor": 3},
            {"path": "/dev/./fuse", "type": "c", "major": 10, "minor": 229},
            {"path": "/dev/mode", "type": "c", "major": 1, "minor": 3, "fileMode": 0o1_000_000}
        ]}));
        for want in [
            "linux.devices[2].type: \"a\" is not a device node type",
            "linux.devices[3].major: 5000 is out of range",
            "linux.devices[4].minor: -1 is out of range",
            "linux.devices[5].path: \"dev/rel\" is not an absolute path",
            "linux.devices[6].path: \"/dev/fuse\" is already linux.devices[0]",
            "linux.devices[7].fileMode",
        ] {
            assert!(out.contains(want), "missing {want:?} in {out}");
        }
        assert!(!out.contains("devices[0]."), "{out}");
        assert!(!out.contains("devices[1]."), "{out}");
    }

    #[test]
    fn sysctl_names_and_namespaces() {
        let ok = linux(serde_json::json!({
            "namespaces": [{"type": "ipc"}, {"type": "network"}, {"type": "uts"}],
            "sysctl": {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1", "fs.mqueue.msg_max": "10", "kernel.domainname": "x"}
        }));
        assert_eq!(ok, "");
        let out = linux(serde_json::json!({
            "namespaces": [{"type": "uts"}],
            "sysctl": {"net.ipv4.ip_forward": "1", "vm.swappiness": "1", "kernel.hostname": "h",
                       "net/ipv4/x": "1", "net..x": "1", "kernel.sem": "1"}
        }));
        for want in [
            "linux.sysctl[\"net.ipv4.ip_forward\"]: not allowed in the host's network namespace",
            "linux.sysctl[\"vm.swappiness\"]: not in a namespace the container owns",
            "linux.sysctl[\"kernel.hostname\"]: conflicts",
            "linux.sysctl[\"net/ipv4/x\"]: invalid name",
            "linux.sysctl[\"net..x\"]: invalid name",
            "linux.sysctl[\"kernel.sem\"]: not allowed in the host's IPC namespace",
        ] {
            assert!(out.contains(want), "missing {want:?} in {out}");
        }
        let out = linux(serde_json::json!({
            "namespaces": [{"type": "network", "path": "/proc/self/ns/net"}],
            "sysctl": {"net.core.somaxconn": "1"}
        }));
        assert!(out.contains("host's network namespace"), "{out}");
    }

    #[test]
    fn clean_paths() {
        assert_eq!(clean(Path::new("/a/./b/../c/")), Path::new("/a/c"));
        assert_eq!(clean(Path::new("/../..")), Path::new("/"));
    }
}
