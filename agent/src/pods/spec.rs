//! A pod's container as a runtime `config.json`: the images crate turns the
//! image config and a `RunConfig` into a spec (Docker's rules), then the
//! pod-only parts are added (shared uts/ipc namespaces, cpu shares,
//! privileged, capabilities, noNewPrivileges).

use std::path::{Path, PathBuf};

use corral_api::core::{Container, Pod};
use corral_images::{BindMount, NetNs, RunConfig};
use serde_json::{json, Value};

use crate::state::Sandbox;

/// All capabilities a privileged container gets.
const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{field}: {msg}")]
    Field { field: String, msg: String },
    #[error("runtime spec: {0}")]
    Image(#[from] corral_images::Error),
    #[error("runtime spec: {0}")]
    Json(#[from] serde_json::Error),
}

/// Everything about the pod a container's spec depends on.
pub struct PodContext<'a> {
    pub pod: &'a Pod,
    pub sandbox: &'a Sandbox,
    pub pod_dir: &'a Path,
    pub node_name: &'a str,
    pub host_ip: &'a str,
    /// `/etc/hosts` and `/etc/resolv.conf` of the pod.
    pub hosts: PathBuf,
    pub resolv_conf: PathBuf,
}

/// The container's field path in the pod (`spec.containers[1]`), for errors.
pub fn field(init: bool, index: usize) -> String {
    let list = if init { "initContainers" } else { "containers" };
    format!("spec.{list}[{index}]")
}

pub fn hostname(pod: &Pod) -> String {
    if pod.spec.hostname.is_empty() {
        pod.metadata.name.clone()
    } else {
        pod.spec.hostname.clone()
    }
}

/// The RunConfig of container `c` (field path `path`) on `rootfs`.
pub fn run_config(
    ctx: &PodContext,
    c: &Container,
    path: &str,
    rootfs: PathBuf,
) -> Result<RunConfig, SpecError> {
    let sc = c.security_context.clone().unwrap_or_default();
    let psc = ctx.pod.spec.security_context.clone().unwrap_or_default();
    let uid = sc.run_as_user.or(psc.run_as_user);
    let gid = sc.run_as_group.or(psc.run_as_group);
    let user = match (uid, gid) {
        (Some(u), Some(g)) => Some(format!("{u}:{g}")),
        (Some(u), None) => Some(u.to_string()),
        // A group alone keeps the image's user (uid 0 when it names none).
        (None, Some(g)) => Some(format!("0:{g}")),
        (None, None) => None,
    };
    let limits = c.resources.as_ref();
    let memory = limits.and_then(|r| r.limit("memory")).map(|q| q.value());
    let cpus = limits
        .and_then(|r| r.limit("cpu"))
        .map(|q| q.milli_value() as f64 / 1000.0)
        .filter(|c| *c > 0.0);
    Ok(RunConfig {
        rootfs,
        args: (!c.args.is_empty()).then(|| c.args.clone()),
        entrypoint: (!c.command.is_empty()).then(|| c.command.clone()),
        env: environment(ctx, c, path)?,
        workdir: (!c.working_dir.is_empty()).then(|| c.working_dir.clone()),
        user,
        hostname: hostname(ctx.pod),
        terminal: c.tty,
        readonly: sc.read_only_root_filesystem.unwrap_or(false),
        binds: binds(ctx, c, path)?,
        memory,
        cpus,
        pids: None,
        netns: NetNs::Path(ctx.sandbox.netns.clone()),
        resolv_conf: Some(ctx.resolv_conf.clone()),
        hosts: Some(ctx.hosts.clone()),
    })
}

/// env values, with `valueFrom.fieldRef` resolved against the pod.
fn environment(ctx: &PodContext, c: &Container, path: &str) -> Result<Vec<String>, SpecError> {
    let mut out = Vec::new();
    for (i, e) in c.env.iter().enumerate() {
        let value = match (&e.value, &e.value_from) {
            (_, Some(src)) => {
                let f = src.field_ref.as_ref().ok_or_else(|| SpecError::Field {
                    field: format!("{path}.env[{i}].valueFrom"),
                    msg: "only fieldRef is supported by this agent".into(),
                })?;
                field_value(ctx, &f.field_path).ok_or_else(|| SpecError::Field {
                    field: format!("{path}.env[{i}].valueFrom.fieldRef.fieldPath"),
                    msg: format!("unsupported field {:?}", f.field_path),
                })?
            }
            (Some(v), None) => v.clone(),
            (None, None) => String::new(),
        };
        out.push(format!("{}={value}", e.name));
    }
    Ok(out)
}

fn field_value(ctx: &PodContext, field: &str) -> Option<String> {
    let m = &ctx.pod.metadata;
    Some(match field {
        "metadata.name" => m.name.clone(),
        "metadata.namespace" => m.namespace.clone(),
        "metadata.uid" => m.uid.clone(),
        "status.podIP" => ctx.sandbox.ip.clone(),
        "status.hostIP" => ctx.host_ip.into(),
        "spec.nodeName" => ctx.node_name.into(),
        "spec.serviceAccountName" => ctx.pod.spec.service_account_name.clone(),
        _ => {
            let key = field
                .strip_prefix("metadata.labels['")
                .or_else(|| field.strip_prefix("metadata.annotations['"))?
                .strip_suffix("']")?;
            let map = if field.starts_with("metadata.labels") {
                &m.labels
            } else {
                &m.annotations
            };
            map.get(key).cloned().unwrap_or_default()
        }
    })
}

/// volumeMounts as binds: emptyDir under the pod's directory, hostPath as is.
fn binds(ctx: &PodContext, c: &Container, path: &str) -> Result<Vec<BindMount>, SpecError> {
    let mut out = Vec::new();
    for (i, m) in c.volume_mounts.iter().enumerate() {
        let at = format!("{path}.volumeMounts[{i}]");
        let v = ctx
            .pod
            .spec
            .volumes
            .iter()
            .find(|v| v.name == m.name)
            .ok_or_else(|| SpecError::Field {
                field: format!("{at}.name"),
                msg: format!("no volume {:?} in spec.volumes", m.name),
            })?;
        let source = if v.empty_dir.is_some() {
            let d = ctx.pod_dir.join("volumes").join(&v.name);
            std::fs::create_dir_all(&d).map_err(|e| SpecError::Field {
                field: format!("{at}.name"),
                msg: format!("create emptyDir {}: {e}", d.display()),
            })?;
            d
        } else if let Some(h) = &v.host_path {
            host_path(&h.path, h.type_.as_deref().unwrap_or(""), &at)?
        } else {
            return Err(SpecError::Field {
                field: format!("{at}.name"),
                msg: format!(
                    "volume {:?}: only emptyDir and hostPath volumes are supported by this agent",
                    v.name
                ),
            });
        };
        let source = if m.sub_path.is_empty() {
            source
        } else {
            source.join(&m.sub_path)
        };
        out.push(BindMount {
            source,
            destination: m.mount_path.clone(),
            readonly: m.read_only,
        });
    }
    Ok(out)
}

fn host_path(p: &str, kind: &str, at: &str) -> Result<PathBuf, SpecError> {
    let path = PathBuf::from(p);
    let err = |msg: String| SpecError::Field {
        field: format!("{at}: hostPath {p:?}"),
        msg,
    };
    match kind {
        "DirectoryOrCreate" => {
            std::fs::create_dir_all(&path).map_err(|e| err(format!("create: {e}")))?
        }
        "FileOrCreate" if !path.exists() => {
            std::fs::File::create(&path).map_err(|e| err(format!("create: {e}")))?;
        }
        "Directory" if !path.is_dir() => return Err(err("is not a directory".into())),
        "File" if !path.is_file() => return Err(err("is not a file".into())),
        _ => {}
    }
    if !path.exists() {
        return Err(err("does not exist".into()));
    }
    Ok(path)
}

/// The pod-level additions to the spec the images crate made.
pub fn finish(ctx: &PodContext, c: &Container, spec: Value) -> Result<Value, SpecError> {
    let mut spec = spec;
    let ns = &mut spec["linux"]["namespaces"];
    let list = ns.as_array_mut().ok_or_else(|| SpecError::Field {
        field: "linux.namespaces".into(),
        msg: "missing from the generated spec".into(),
    })?;
    list.retain(|n| !matches!(n["type"].as_str(), Some("uts" | "ipc")));
    list.push(json!({"type": "uts", "path": ctx.sandbox.uts}));
    list.push(json!({"type": "ipc", "path": ctx.sandbox.ipc}));
    if let Some(req) = c.resources.as_ref().and_then(|r| r.request("cpu")) {
        // Kubernetes' rule: 1 CPU = 1024 shares, at least 2.
        let shares = (req.milli_value() * 1024 / 1000).max(2);
        spec["linux"]["resources"]["cpu"]["shares"] = json!(shares);
    }
    let sc = c.security_context.clone().unwrap_or_default();
    if sc.privileged == Some(true) {
        privileged(&mut spec);
    }
    if let Some(caps) = &sc.capabilities {
        // As the images crate: a non-root user keeps the bounding set only.
        let root = spec["process"]["user"]["uid"].as_u64() == Some(0);
        let p = &mut spec["process"]["capabilities"];
        for set in ["bounding", "effective", "permitted"] {
            let mut have: Vec<String> = p[set]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            for d in &caps.drop {
                if d.eq_ignore_ascii_case("ALL") {
                    have.clear();
                } else {
                    let d = cap_name(d);
                    have.retain(|h| *h != d);
                }
            }
            let effective_too = set == "bounding" || root;
            for a in &caps.add {
                let a = cap_name(a);
                if effective_too && !have.contains(&a) {
                    have.push(a);
                }
            }
            p[set] = json!(have);
        }
    }
    if sc.allow_privilege_escalation == Some(false) {
        spec["process"]["noNewPrivileges"] = json!(true);
    }
    Ok(spec)
}

fn cap_name(c: &str) -> String {
    let up = c.to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// All capabilities, no masked or read-only paths, the host's devices.
fn privileged(spec: &mut Value) {
    let p = &mut spec["process"]["capabilities"];
    for set in ["bounding", "effective", "permitted"] {
        p[set] = json!(ALL_CAPS);
    }
    spec["linux"]["maskedPaths"] = json!([]);
    spec["linux"]["readonlyPaths"] = json!([]);
    spec["linux"]["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
    if let Some(mounts) = spec["mounts"].as_array_mut() {
        for m in mounts.iter_mut() {
            match m["destination"].as_str() {
                Some("/dev") => {
                    *m = json!({"destination": "/dev", "type": "bind", "source": "/dev",
                                "options": ["rbind", "nosuid"]});
                }
                Some("/sys") | Some("/sys/fs/cgroup") => {
                    if let Some(o) = m["options"].as_array_mut() {
                        o.retain(|x| x != "ro");
                    }
                }
                _ => {}
            }
        }
        // The host's /dev already has pts, shm and mqueue.
        mounts.retain(|m| {
            !matches!(
                m["destination"].as_str(),
                Some("/dev/pts") | Some("/dev/shm") | Some("/dev/mqueue")
            )
        });
    }
}
