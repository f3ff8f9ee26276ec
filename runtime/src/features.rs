//! `corral-runtime features`: what this build supports, in the JSON shape
//! of the runtime-spec "features" document (as runc prints it), so engines
//! can probe capabilities instead of guessing from a version string.

use serde_json::{json, Value};

pub fn document() -> Value {
    let v2 = matches!(crate::cgroups::version(), crate::cgroups::CgroupVersion::V2);
    json!({
        "ociVersionMin": crate::spec::OCI_VERSION_MIN,
        "ociVersionMax": crate::spec::OCI_VERSION_MAX,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": crate::rootfs::MOUNT_OPTIONS,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": crate::capabilities::supported(),
            "cgroup": { "v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false },
            "seccomp": {
                "enabled": true,
                "actions": crate::seccomp::supported_actions(),
                "operators": crate::seccomp::supported_operators(),
                "archs": crate::seccomp::supported_archs(),
                "knownFlags": crate::seccomp::supported_flags(),
                "supportedFlags": crate::seccomp::supported_flags(),
            },
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false },
            "intelRdt": { "enabled": false },
            "mountExtensions": { "idmap": { "enabled": false } },
        },
        "annotations": {
            "io.github.corral.runtime.version": env!("CARGO_PKG_VERSION"),
            "io.github.corral.runtime.cgroup.host": if v2 { "v2" } else { "v1" },
            "io.github.seccomp.libseccomp.version": libseccomp_version(),
        },
    })
}

fn libseccomp_version() -> String {
    match libseccomp::ScmpVersion::current() {
        Ok(v) => format!("{}.{}.{}", v.major, v.minor, v.micro),
        Err(_) => "unknown".into(),
    }
}
