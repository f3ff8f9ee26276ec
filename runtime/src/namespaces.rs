//! Which namespaces a container creates and which it joins, and in what
//! order: a pure plan computed from the spec, carried out by `init`.

use std::path::PathBuf;

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// The namespace work for one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Namespaces created by the clone that makes init (cgroup excluded: see
    /// `unshare_cgroup`).
    pub clone_flags: CloneFlags,
    /// A new cgroup namespace is unshared by init only after the parent moved
    /// it into the container cgroup, so that cgroup becomes its root.
    pub unshare_cgroup: bool,
    /// A new time namespace (only `unshare` can make one; children enter it).
    pub new_time: bool,
    /// Namespaces joined by path, in the order `setns` must run: user first
    /// (it decides the privileges for the rest), mount last.
    pub joins: Vec<(LinuxNamespaceType, PathBuf)>,
}

impl Default for Plan {
    fn default() -> Plan {
        Plan {
            clone_flags: CloneFlags::empty(),
            unshare_cgroup: false,
            new_time: false,
            joins: Vec::new(),
        }
    }
}

impl Plan {
    pub fn from_spec(spec: &Spec) -> Plan {
        let nss = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default();
        let mut plan = Plan::default();
        for ns in &nss {
            match ns.path() {
                Some(p) => plan.joins.push((ns.typ(), p.clone())),
                None => match ns.typ() {
                    LinuxNamespaceType::Cgroup => plan.unshare_cgroup = true,
                    LinuxNamespaceType::Time => plan.new_time = true,
                    t => plan.clone_flags |= flag(t),
                },
            }
        }
        plan.joins.sort_by_key(|(t, _)| join_order(*t));
        plan
    }

    /// A direct clone from the CLI is enough unless something must happen
    /// between fork and the namespace-creating clone (joins, a time ns).
    pub fn needs_intermediate(&self) -> bool {
        !self.joins.is_empty() || self.new_time
    }

    pub fn new_user(&self) -> bool {
        self.clone_flags.contains(CloneFlags::CLONE_NEWUSER)
    }

    /// Whether init ends up in a user namespace other than the host's.
    pub fn in_user_ns(&self) -> bool {
        self.new_user()
            || self
                .joins
                .iter()
                .any(|(t, _)| *t == LinuxNamespaceType::User)
    }

    pub fn new_net(&self) -> bool {
        self.clone_flags.contains(CloneFlags::CLONE_NEWNET)
    }

    pub fn has(&self, t: LinuxNamespaceType) -> bool {
        self.joins.iter().any(|(j, _)| *j == t)
            || match t {
                LinuxNamespaceType::Cgroup => self.unshare_cgroup,
                LinuxNamespaceType::Time => self.new_time,
                t => self.clone_flags.contains(flag(t)),
            }
    }
}

pub fn flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// The name of the namespace under /proc/PID/ns.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

fn join_order(t: LinuxNamespaceType) -> u8 {
    match t {
        LinuxNamespaceType::User => 0,
        LinuxNamespaceType::Ipc => 1,
        LinuxNamespaceType::Uts => 2,
        LinuxNamespaceType::Network => 3,
        LinuxNamespaceType::Pid => 4,
        LinuxNamespaceType::Time => 5,
        LinuxNamespaceType::Cgroup => 6,
        LinuxNamespaceType::Mount => 7,
    }
}

/// Order for `exec` joining a running container's namespaces.
pub const EXEC_ORDER: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::User,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Time,
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Mount,
];

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn new_namespaces_become_clone_flags() {
        let p = Plan::from_spec(&spec(
            r#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"pid"},{"type":"mount"},{"type":"network"},{"type":"cgroup"}]}}"#,
        ));
        assert_eq!(
            p.clone_flags,
            CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWNET
        );
        assert!(p.unshare_cgroup);
        assert!(!p.needs_intermediate());
        assert!(p.has(LinuxNamespaceType::Cgroup));
        assert!(!p.has(LinuxNamespaceType::Uts));
    }

    #[test]
    fn joins_are_ordered_user_first_mount_last() {
        let p = Plan::from_spec(&spec(
            r#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"mount","path":"/m"},{"type":"network","path":"/n"},{"type":"user","path":"/u"}]}}"#,
        ));
        let order: Vec<_> = p.joins.iter().map(|(t, _)| *t).collect();
        assert_eq!(
            order,
            vec![
                LinuxNamespaceType::User,
                LinuxNamespaceType::Network,
                LinuxNamespaceType::Mount
            ]
        );
        assert!(p.needs_intermediate());
        assert!(p.in_user_ns());
        assert!(!p.new_user());
    }
}
