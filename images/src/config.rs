//! Image config + run options -> OCI runtime spec, with podman-like defaults.
//!
//! Entrypoint, Cmd, Env, WorkingDir and User come from the image unless the run
//! options override them; user and group names are resolved through the image's
//! own /etc/passwd and /etc/group, opened inside the rootfs so a symlink in the
//! image cannot make us read a host file. StopSignal, ExposedPorts and Labels
//! become annotations for the caller.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::Spec;
use serde_json::{json, Value};

use crate::error::Error;

pub const ANNOTATION_STOP_SIGNAL: &str = "org.opencontainers.image.stopSignal";
/// Comma-separated, sorted: `443/tcp,80/tcp`.
pub const ANNOTATION_EXPOSED_PORTS: &str = "org.opencontainers.image.exposedPorts";
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Podman's default capability set.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/fs/selinux",
    "/sys/dev/block",
];

const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Largest /etc/passwd or /etc/group we read from an image.
const MAX_ACCOUNT_FILE: u64 = 4 << 20;
const CPU_PERIOD: u64 = 100_000;

/// How the container is run; `None` fields fall back to the image config.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunConfig {
    /// The mounted snapshot (`Snapshot::merged`); also where /etc/passwd is read.
    pub rootfs: PathBuf,
    /// Replaces the image's Cmd.
    pub args: Option<Vec<String>>,
    /// Replaces the image's Entrypoint (and, as with Docker, drops its Cmd).
    pub entrypoint: Option<Vec<String>>,
    /// `K=V`, overriding the image's variables of the same name.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    /// `name`, `uid`, `name:group`, `uid:gid` (names from the image's files).
    pub user: Option<String>,
    pub hostname: String,
    pub terminal: bool,
    /// Read-only rootfs (the runtime remounts it read-only after its mounts).
    pub readonly: bool,
    pub binds: Vec<BindMount>,
    /// Memory limit in bytes.
    pub memory: Option<i64>,
    /// CPUs, as CFS quota over a 100 ms period.
    pub cpus: Option<f64>,
    pub pids: Option<i64>,
    pub netns: NetNs,
    /// Host files bind-mounted at /etc/resolv.conf and /etc/hosts.
    pub resolv_conf: Option<PathBuf>,
    pub hosts: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: String,
    pub readonly: bool,
}

/// The container's network namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum NetNs {
    /// A new namespace with only loopback (`--network none`).
    #[default]
    New,
    /// The host's namespace (`--network host`): no network namespace entry.
    Host,
    /// Join an existing namespace (`--network bridge`, prepared by the caller).
    Path(PathBuf),
}

/// A user resolved against the image: what goes into `process.user`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// From /etc/passwd, for HOME.
    pub home: Option<String>,
}

/// The runtime spec for running `cfg` with `run`.
pub fn runtime_spec(cfg: &ImageConfiguration, run: &RunConfig) -> Result<Spec, Error> {
    let image = cfg.config().clone().unwrap_or_default();
    let args = command(image.entrypoint(), image.cmd(), run)?;
    let user_spec = run
        .user
        .clone()
        .or_else(|| image.user().clone())
        .unwrap_or_default();
    let user = resolve_user(&run.rootfs, &user_spec)?;
    let env = environment(image.env().as_deref().unwrap_or_default(), run, &user)?;
    let cwd = match run.workdir.as_deref().or(image.working_dir().as_deref()) {
        None | Some("") => "/".to_string(),
        Some(d) if d.starts_with('/') => d.to_string(),
        Some(d) => format!("/{d}"),
    };
    let caps: Vec<&str> = DEFAULT_CAPABILITIES.to_vec();
    // As Docker and podman: a non-root user keeps the bounding set only.
    let effective = if user.uid == 0 {
        caps.clone()
    } else {
        Vec::new()
    };
    let spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": run.terminal,
            "user": {
                "uid": user.uid,
                "gid": user.gid,
                "additionalGids": user.additional_gids,
            },
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {
                "bounding": caps,
                "effective": effective,
                "permitted": effective,
            },
            "noNewPrivileges": false,
        },
        "root": { "path": run.rootfs, "readonly": run.readonly },
        "hostname": run.hostname,
        "mounts": mounts(run)?,
        "annotations": annotations(&image),
        "linux": {
            "namespaces": namespaces(&run.netns),
            "resources": resources(run)?,
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        },
    });
    serde_json::from_value(spec).map_err(|e| Error::json("generated runtime spec", e))
}

/// Entrypoint + Cmd, with Docker's override rules.
fn command(
    entrypoint: &Option<Vec<String>>,
    cmd: &Option<Vec<String>>,
    run: &RunConfig,
) -> Result<Vec<String>, Error> {
    let entry = run.entrypoint.clone().or_else(|| entrypoint.clone());
    let cmd = match (&run.args, &run.entrypoint) {
        (Some(args), _) => Some(args.clone()),
        (None, Some(_)) => None,
        (None, None) => cmd.clone(),
    };
    let args: Vec<String> = entry
        .into_iter()
        .flatten()
        .chain(cmd.into_iter().flatten())
        .collect();
    if args.is_empty() {
        return Err(Error::invalid(
            "container command",
            "the image has no Entrypoint or Cmd and no command was given",
        ));
    }
    Ok(args)
}

/// Image Env, then defaults for what is missing, then the run's `-e` values.
fn environment(
    image: &[String],
    run: &RunConfig,
    user: &ResolvedUser,
) -> Result<Vec<String>, Error> {
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str, overwrite: bool| match vars.iter_mut().find(|(n, _)| n == k) {
        Some(existing) if overwrite => existing.1 = v.to_string(),
        Some(_) => {}
        None => vars.push((k.to_string(), v.to_string())),
    };
    for kv in image {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        set(k, v, true);
    }
    set("PATH", DEFAULT_PATH, false);
    if run.terminal {
        set("TERM", "xterm", false);
    }
    set("HOSTNAME", &run.hostname, true);
    let home = user
        .home
        .clone()
        .unwrap_or_else(|| if user.uid == 0 { "/root" } else { "/" }.to_string());
    set("HOME", &home, false);
    for kv in &run.env {
        let (k, v) = kv.split_once('=').ok_or_else(|| {
            Error::invalid(
                format!("environment variable {kv:?}"),
                "expected NAME=VALUE",
            )
        })?;
        if k.is_empty() {
            return Err(Error::invalid(
                format!("environment variable {kv:?}"),
                "empty name",
            ));
        }
        set(k, v, true);
    }
    Ok(vars.into_iter().map(|(k, v)| format!("{k}={v}")).collect())
}

fn mount(dest: &str, kind: &str, source: &str, options: &[&str]) -> Value {
    json!({ "destination": dest, "type": kind, "source": source, "options": options })
}

fn bind(dest: &str, source: &Path, readonly: bool) -> Value {
    let mut options = vec!["rbind", "rprivate"];
    if readonly {
        options.push("ro");
    }
    json!({ "destination": dest, "type": "bind", "source": source, "options": options })
}

fn mounts(run: &RunConfig) -> Result<Vec<Value>, Error> {
    let sys = if run.netns == NetNs::Host {
        // sysfs can only be mounted by the owner of the network namespace.
        json!({ "destination": "/sys", "type": "bind", "source": "/sys",
                "options": ["rbind", "nosuid", "noexec", "nodev", "ro"] })
    } else {
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )
    };
    let mut out = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        sys,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
    ];
    for (dest, file) in [
        ("/etc/resolv.conf", &run.resolv_conf),
        ("/etc/hosts", &run.hosts),
    ] {
        if let Some(file) = file {
            out.push(bind(dest, file, false));
        }
    }
    for (i, b) in run.binds.iter().enumerate() {
        let what = || {
            format!(
                "bind mount {i} ({} -> {})",
                b.source.display(),
                b.destination
            )
        };
        if !b.destination.starts_with('/') || b.destination.split('/').any(|c| c == "..") {
            return Err(Error::invalid(
                what(),
                "the destination must be an absolute path without '..'",
            ));
        }
        if !b.source.is_absolute() {
            return Err(Error::invalid(
                what(),
                "the source must be an absolute path",
            ));
        }
        // A bind over a default mount replaces it, as with Docker.
        let dest = b.destination.trim_end_matches('/');
        out.retain(|m| m["destination"] != dest);
        out.push(bind(dest, &b.source, b.readonly));
    }
    Ok(out)
}

fn namespaces(netns: &NetNs) -> Vec<Value> {
    let mut out: Vec<Value> = ["pid", "ipc", "uts", "mount"]
        .iter()
        .map(|t| json!({ "type": t }))
        .collect();
    match netns {
        NetNs::New => out.push(json!({ "type": "network" })),
        NetNs::Path(p) => out.push(json!({ "type": "network", "path": p })),
        NetNs::Host => {}
    }
    out
}

fn resources(run: &RunConfig) -> Result<Value, Error> {
    let mut res = json!({ "devices": [{ "allow": false, "access": "rwm" }] });
    if let Some(m) = run.memory {
        if m <= 0 {
            return Err(Error::invalid(
                format!("memory limit {m}"),
                "must be positive",
            ));
        }
        res["memory"] = json!({ "limit": m });
    }
    if let Some(c) = run.cpus {
        let quota = (c * CPU_PERIOD as f64).round();
        if !c.is_finite() || quota < 1000.0 {
            return Err(Error::invalid(format!("cpus {c}"), "must be at least 0.01"));
        }
        res["cpu"] = json!({ "quota": quota as i64, "period": CPU_PERIOD });
    }
    if let Some(p) = run.pids {
        if p <= 0 {
            return Err(Error::invalid(
                format!("pids limit {p}"),
                "must be positive",
            ));
        }
        res["pids"] = json!({ "limit": p });
    }
    Ok(res)
}

fn annotations(image: &oci_spec::image::Config) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = image
        .labels()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    if let Some(sig) = image.stop_signal() {
        out.insert(ANNOTATION_STOP_SIGNAL.to_string(), sig.clone());
    }
    if let Some(ports) = image.exposed_ports().as_ref().filter(|p| !p.is_empty()) {
        let mut ports = ports.clone();
        ports.sort();
        out.insert(ANNOTATION_EXPOSED_PORTS.to_string(), ports.join(","));
    }
    out
}

/// Resolves `spec` (`""` = root) against the image's /etc/passwd and
/// /etc/group under `rootfs`.
pub fn resolve_user(rootfs: &Path, spec: &str) -> Result<ResolvedUser, Error> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let passwd = read_image_file(rootfs, "etc/passwd")?;
    let groups = read_image_file(rootfs, "etc/group")?;
    let bad = |reason: String| Error::invalid(format!("user {spec:?}"), reason);
    let entry = match user.parse::<u32>() {
        Ok(uid) => passwd
            .as_deref()
            .and_then(|p| find_passwd(p, |e| e.uid == uid)),
        Err(_) => {
            let found = passwd
                .as_deref()
                .and_then(|p| find_passwd(p, |e| e.name == user));
            Some(found.ok_or_else(|| bad(format!("no user {user:?} in the image's /etc/passwd")))?)
        }
    };
    let uid = match &entry {
        Some(e) => e.uid,
        None => user.parse().map_err(|_| bad("invalid uid".into()))?,
    };
    let gid = match group {
        None => entry.as_ref().map_or(0, |e| e.gid),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .as_deref()
                .and_then(|f| parse_groups(f).find(|e| e.name == g))
                .map(|e| e.gid)
                .ok_or_else(|| bad(format!("no group {g:?} in the image's /etc/group")))?,
        },
    };
    let mut additional_gids: Vec<u32> = match (&entry, groups.as_deref()) {
        (Some(e), Some(f)) => parse_groups(f)
            .filter(|g| g.members.iter().any(|m| *m == e.name) && g.gid != gid)
            .map(|g| g.gid)
            .collect(),
        _ => Vec::new(),
    };
    additional_gids.sort_unstable();
    additional_gids.dedup();
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home: entry.map(|e| e.home).filter(|h| !h.is_empty()),
    })
}

#[derive(Debug, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

#[derive(Debug, PartialEq, Eq)]
struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

/// Lines that do not parse are skipped, as libc's getpwent does.
fn find_passwd(text: &str, pred: impl Fn(&PasswdEntry) -> bool) -> Option<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 7 || line.starts_with('#') {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_string(),
            })
        })
        .find(|e| pred(e))
}

fn parse_groups(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 || line.starts_with('#') {
            return None;
        }
        Some(GroupEntry {
            name: f[0],
            gid: f[2].parse().ok()?,
            members: f[3]
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .collect(),
        })
    })
}

/// Reads `rel` inside `rootfs` with every symlink resolved inside it
/// (RESOLVE_IN_ROOT); None when it does not exist.
fn read_image_file(rootfs: &Path, rel: &str) -> Result<Option<String>, Error> {
    let path = rootfs.join(rel);
    let what = || format!("reading the image's {}", path.display());
    let root = nix::fcntl::open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io(format!("opening the rootfs {}", rootfs.display()), e.into()))?;
    // SAFETY: `root` was just returned by a successful open and is owned here only.
    let root = unsafe { OwnedFd::from_raw_fd(root) };
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = match openat2(root.as_raw_fd(), rel, how) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(Error::io(what(), e.into())),
    };
    // SAFETY: `fd` was just returned by a successful openat2 and is owned here only.
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let meta = file.metadata().map_err(|e| Error::io(what(), e))?;
    if !meta.is_file() {
        return Err(Error::invalid(what(), "not a regular file"));
    }
    let mut text = String::new();
    file.take(MAX_ACCOUNT_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| Error::io(what(), e))?;
    if text.len() as u64 > MAX_ACCOUNT_FILE {
        return Err(Error::invalid(
            what(),
            format!("larger than {MAX_ACCOUNT_FILE} bytes"),
        ));
    }
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
# comment:x:1:1:::\n\
broken line\n\
app:x:1000:1000:App:/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\napp:x:1000:\nextra:x:2000:app,other\nwheel:x:10: app \n";

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        fs::write(dir.path().join("etc/passwd"), PASSWD).unwrap();
        fs::write(dir.path().join("etc/group"), GROUP).unwrap();
        dir
    }

    fn image(config: Value) -> ImageConfiguration {
        serde_json::from_value(json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": config,
        }))
        .unwrap()
    }

    fn run_in(root: &Path) -> RunConfig {
        RunConfig {
            rootfs: root.to_path_buf(),
            hostname: "box".into(),
            ..RunConfig::default()
        }
    }

    fn spec_json(cfg: &ImageConfiguration, run: &RunConfig) -> Value {
        serde_json::to_value(runtime_spec(cfg, run).unwrap()).unwrap()
    }

    #[test]
    fn users_resolve_through_the_image_files() {
        let root = rootfs();
        let r = |s: &str| resolve_user(root.path(), s);
        let app = r("app").unwrap();
        assert_eq!((app.uid, app.gid), (1000, 1000));
        assert_eq!(app.additional_gids, vec![10, 2000]);
        assert_eq!(app.home.as_deref(), Some("/home/app"));
        assert_eq!(r("1000").unwrap(), app, "a uid finds its passwd entry");
        let root_user = r("").unwrap();
        assert_eq!((root_user.uid, root_user.gid), (0, 0));
        assert_eq!(root_user.home.as_deref(), Some("/root"));
        assert_eq!(r("app:extra").unwrap().gid, 2000);
        assert_eq!(r("app:extra").unwrap().additional_gids, vec![10]);
        let numeric = r("4242:77").unwrap();
        assert_eq!((numeric.uid, numeric.gid, numeric.home), (4242, 77, None));
        assert_eq!(r("4242").unwrap().gid, 0, "unknown uid gets gid 0");
        for (bad, why) in [
            ("nobody", "no user \"nobody\""),
            ("app:staff", "no group \"staff\""),
        ] {
            let err = r(bad).unwrap_err().to_string();
            assert!(
                err.contains(why) && err.contains(&format!("{bad:?}")),
                "{err}"
            );
        }
    }

    #[test]
    fn account_files_are_read_inside_the_rootfs() {
        let root = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        fs::write(host.path().join("passwd"), "evil:x:0:0::/:/bin/sh\n").unwrap();
        fs::create_dir(root.path().join("etc")).unwrap();
        // An absolute symlink resolves inside the rootfs, where it points nowhere.
        std::os::unix::fs::symlink(host.path().join("passwd"), root.path().join("etc/passwd"))
            .unwrap();
        let err = resolve_user(root.path(), "evil").unwrap_err().to_string();
        assert!(err.contains("no user \"evil\""), "{err}");
        fs::remove_file(root.path().join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("../../../../../etc/passwd", root.path().join("etc/passwd"))
            .unwrap();
        fs::write(root.path().join("etc/group"), "").unwrap();
        // `..` stops at the rootfs: the link finds the rootfs's own etc/passwd: itself.
        assert!(resolve_user(root.path(), "root").is_err());
        assert!(
            resolve_user(root.path(), "0").is_err(),
            "a symlink loop is an error"
        );
        assert_eq!(
            resolve_user(tempfile::tempdir().unwrap().path(), "7")
                .unwrap()
                .uid,
            7
        );
    }

    #[test]
    fn command_env_cwd_and_user_from_image_and_overrides() {
        let root = rootfs();
        let cfg = image(json!({
            "Entrypoint": ["/entry"], "Cmd": ["serve"], "Env": ["A=1", "TERM=dumb"],
            "WorkingDir": "srv", "User": "app",
        }));
        let mut run = run_in(root.path());
        let s = spec_json(&cfg, &run);
        assert_eq!(s["process"]["args"], json!(["/entry", "serve"]));
        assert_eq!(s["process"]["cwd"], "/srv");
        assert_eq!(
            s["process"]["user"],
            json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 2000]})
        );
        let env: Vec<String> = serde_json::from_value(s["process"]["env"].clone()).unwrap();
        assert!(env.contains(&format!("PATH={DEFAULT_PATH}")), "{env:?}");
        assert!(
            env.contains(&"HOSTNAME=box".to_string())
                && env.contains(&"HOME=/home/app".to_string())
        );
        assert!(env.contains(&"TERM=dumb".to_string()));
        assert_eq!(
            s["process"]["capabilities"]["effective"],
            json!([]),
            "non-root"
        );

        run.args = Some(vec!["other".into()]);
        run.env = vec!["A=2".into(), "B=x=y".into()];
        run.user = Some("0".into());
        run.workdir = Some("/w".into());
        let s = spec_json(&cfg, &run);
        assert_eq!(s["process"]["args"], json!(["/entry", "other"]));
        let env: Vec<String> = serde_json::from_value(s["process"]["env"].clone()).unwrap();
        assert!(
            env.contains(&"A=2".to_string()) && env.contains(&"B=x=y".to_string()),
            "{env:?}"
        );
        assert!(!env.contains(&"A=1".to_string()));
        assert_eq!(s["process"]["cwd"], "/w");
        assert_eq!(
            s["process"]["capabilities"]["effective"]
                .as_array()
                .unwrap()
                .len(),
            11
        );

        run.args = None;
        run.entrypoint = Some(vec!["sh".into()]);
        assert_eq!(
            spec_json(&cfg, &run)["process"]["args"],
            json!(["sh"]),
            "entrypoint drops Cmd"
        );

        let none = image(json!({}));
        let err = runtime_spec(&none, &run_in(root.path()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no Entrypoint or Cmd"), "{err}");
        run.env = vec!["NOVALUE".into()];
        let err = runtime_spec(&cfg, &run).unwrap_err().to_string();
        assert!(err.contains("NOVALUE"), "{err}");
    }

    #[test]
    fn defaults_terminal_and_path() {
        let root = rootfs();
        let cfg = image(json!({"Cmd": ["sh"], "Env": ["PATH=/custom"]}));
        let mut run = run_in(root.path());
        run.terminal = true;
        let s = spec_json(&cfg, &run);
        let env: Vec<String> = serde_json::from_value(s["process"]["env"].clone()).unwrap();
        assert!(
            env.contains(&"PATH=/custom".to_string()) && env.contains(&"TERM=xterm".to_string())
        );
        assert!(env.contains(&"HOME=/root".to_string()), "{env:?}");
        assert_eq!(s["process"]["terminal"], true);
        assert_eq!(s["process"]["cwd"], "/");
        assert_eq!(s["process"]["noNewPrivileges"], false);
        assert!(s["process"].get("rlimits").is_none_or(|r| r.is_null()));
        let mut bounding: Vec<String> =
            serde_json::from_value(s["process"]["capabilities"]["bounding"].clone()).unwrap();
        bounding.sort();
        assert_eq!(bounding, DEFAULT_CAPABILITIES, "a set: order is not kept");
        assert_eq!(s["linux"]["maskedPaths"], json!(MASKED_PATHS));
        assert_eq!(s["linux"]["readonlyPaths"], json!(READONLY_PATHS));
        let dests: Vec<&str> = s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup"
            ]
        );
        let ns: Vec<&str> = s["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["pid", "ipc", "uts", "mount", "network"]);
        assert_eq!(s["root"], json!({"path": root.path(), "readonly": false}));
        assert_eq!(s["hostname"], "box");
    }

    #[test]
    fn mounts_namespaces_resources_and_annotations() {
        let root = rootfs();
        let cfg = image(json!({
            "Cmd": ["sh"], "StopSignal": "SIGQUIT",
            "ExposedPorts": {"80/tcp": {}, "443/tcp": {}}, "Labels": {"team": "a"},
        }));
        let mut run = run_in(root.path());
        run.readonly = true;
        run.resolv_conf = Some("/run/c/resolv.conf".into());
        run.hosts = Some("/run/c/hosts".into());
        run.binds = vec![
            BindMount {
                source: "/data".into(),
                destination: "/data".into(),
                readonly: true,
            },
            BindMount {
                source: "/shm".into(),
                destination: "/dev/shm/".into(),
                readonly: false,
            },
        ];
        run.memory = Some(64 << 20);
        run.cpus = Some(1.5);
        run.pids = Some(100);
        run.netns = NetNs::Path("/run/netns/c".into());
        let s = spec_json(&cfg, &run);
        assert_eq!(s["root"]["readonly"], true);
        let mounts = s["mounts"].as_array().unwrap();
        let find = |d: &str| {
            mounts
                .iter()
                .filter(|m| m["destination"] == d)
                .collect::<Vec<_>>()
        };
        assert_eq!(find("/etc/resolv.conf")[0]["source"], "/run/c/resolv.conf");
        assert_eq!(find("/etc/hosts")[0]["type"], "bind");
        assert_eq!(
            find("/data")[0]["options"],
            json!(["rbind", "rprivate", "ro"])
        );
        let shm = find("/dev/shm");
        assert_eq!(shm.len(), 1, "the bind replaces the default /dev/shm");
        assert_eq!(shm[0]["source"], "/shm");
        let res = &s["linux"]["resources"];
        assert_eq!(res["memory"]["limit"], 64 << 20);
        assert_eq!(res["cpu"], json!({"quota": 150000, "period": 100000}));
        assert_eq!(res["pids"]["limit"], 100);
        let net = s["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(net, json!({"type": "network", "path": "/run/netns/c"}));
        assert_eq!(s["annotations"][ANNOTATION_STOP_SIGNAL], "SIGQUIT");
        assert_eq!(s["annotations"][ANNOTATION_EXPOSED_PORTS], "443/tcp,80/tcp");
        assert_eq!(s["annotations"]["team"], "a");

        run.netns = NetNs::Host;
        let s = spec_json(&cfg, &run);
        assert!(s["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["type"] != "network"));
        let sys = s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/sys")
            .unwrap()
            .clone();
        assert_eq!(
            sys["type"], "bind",
            "sysfs needs its own netns; bind the host's"
        );

        for (field, bad) in [("memory", 0.0), ("cpus", 0.001), ("pids", -1.0)] {
            let mut r = run_in(root.path());
            match field {
                "memory" => r.memory = Some(bad as i64),
                "cpus" => r.cpus = Some(bad),
                _ => r.pids = Some(bad as i64),
            }
            assert!(runtime_spec(&cfg, &r).is_err(), "{field}");
        }
        let mut r = run_in(root.path());
        r.binds = vec![BindMount {
            source: "/x".into(),
            destination: "/a/../../etc".into(),
            readonly: false,
        }];
        assert!(runtime_spec(&cfg, &r)
            .unwrap_err()
            .to_string()
            .contains("bind mount 0"));
    }
}
