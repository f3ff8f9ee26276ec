//! Resource amounts as plain integers, so the batch loop adds and compares
//! without touching `Quantity` or a map.

use corral_api::core::{Container, Pod, ResourceList};
use corral_api::quantity::Quantity;

pub const CPU: &str = "cpu";
pub const MEMORY: &str = "memory";
pub const EPHEMERAL: &str = "ephemeral-storage";
pub const PODS: &str = "pods";

/// Kubernetes' non-zero defaults: a pod with no request still weighs this much
/// when nodes are scored (never when they are filtered), so "free" pods do not
/// all pile onto one node.
pub const DEFAULT_CPU_MILLI: i64 = 100;
pub const DEFAULT_MEMORY: i64 = 200 << 20;

/// cpu in millicores, the rest in whole units (bytes, pods, devices).
/// `repr(C)` keeps the four amounts every filter reads together, first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Resources {
    pub cpu_milli: i64,
    pub memory: i64,
    pub ephemeral: i64,
    pub pods: i64,
    /// Every other name (extended resources such as `example.com/gpu`, hugepages).
    pub extended: Vec<(String, i64)>,
}

impl Resources {
    /// A node's allocatable (or any list of amounts).
    pub fn from_list(list: &ResourceList) -> Resources {
        let mut r = Resources::default();
        for (name, q) in list {
            r.set(name, amount(name, q));
        }
        r
    }

    fn set(&mut self, name: &str, v: i64) {
        match name {
            CPU => self.cpu_milli = v,
            MEMORY => self.memory = v,
            EPHEMERAL => self.ephemeral = v,
            PODS => self.pods = v,
            _ => match self.extended.iter_mut().find(|(n, _)| n == name) {
                Some(e) => e.1 = v,
                None => self.extended.push((name.to_string(), v)),
            },
        }
    }

    pub fn extended(&self, name: &str) -> i64 {
        self.extended
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |e| e.1)
    }

    pub fn add(&mut self, other: &Resources) {
        self.cpu_milli = self.cpu_milli.saturating_add(other.cpu_milli);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral = self.ephemeral.saturating_add(other.ephemeral);
        self.pods = self.pods.saturating_add(other.pods);
        for (name, v) in &other.extended {
            let sum = self.extended(name).saturating_add(*v);
            self.set(name, sum);
        }
    }

    fn max_with(&mut self, other: &Resources) {
        self.cpu_milli = self.cpu_milli.max(other.cpu_milli);
        self.memory = self.memory.max(other.memory);
        self.ephemeral = self.ephemeral.max(other.ephemeral);
        self.pods = self.pods.max(other.pods);
        for (name, v) in &other.extended {
            if *v > self.extended(name) {
                self.set(name, *v);
            }
        }
    }

    /// One container's requests; a resource with a limit and no request
    /// requests its limit (the API server's defaulting in Kubernetes).
    fn of_container(c: &Container) -> Resources {
        let mut r = Resources::default();
        let Some(res) = c.resources.as_ref() else {
            return r;
        };
        for (name, q) in &res.limits {
            if !res.requests.contains_key(name) {
                r.set(name, amount(name, q));
            }
        }
        for (name, q) in &res.requests {
            r.set(name, amount(name, q));
        }
        r
    }

    /// What a pod asks of its node: the sum of its containers, or the largest
    /// init container if that is more (sidecar init containers, restartPolicy
    /// Always, run beside everything after them and add up), plus one pod slot.
    pub fn of_pod(pod: &Pod) -> Resources {
        let mut sum = Resources::default();
        for c in &pod.spec.containers {
            sum.add(&Resources::of_container(c));
        }
        let mut sidecars = Resources::default();
        let mut init_peak = Resources::default();
        for c in &pod.spec.init_containers {
            let own = Resources::of_container(c);
            let during = if c.restart_policy.as_deref() == Some("Always") {
                sum.add(&own);
                sidecars.add(&own);
                sidecars.clone()
            } else {
                let mut during = own;
                during.add(&sidecars);
                during
            };
            init_peak.max_with(&during);
        }
        sum.max_with(&init_peak);
        sum.pods = 1;
        sum
    }

    /// cpu and memory as used for scoring (requests of 0 count as the defaults).
    pub fn non_zero(&self) -> (i64, i64) {
        let cpu = if self.cpu_milli == 0 {
            DEFAULT_CPU_MILLI
        } else {
            self.cpu_milli
        };
        let mem = if self.memory == 0 {
            DEFAULT_MEMORY
        } else {
            self.memory
        };
        (cpu, mem)
    }
}

fn amount(name: &str, q: &Quantity) -> i64 {
    if name == CPU {
        q.milli_value()
    } else {
        q.value()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_api::core::ResourceRequirements;

    fn list(pairs: &[(&str, &str)]) -> ResourceList {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Quantity::parse(v).unwrap()))
            .collect()
    }

    fn container(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: list(requests),
                limits: list(limits),
                claims: vec![],
            }),
            ..Container::default()
        }
    }

    #[test]
    fn allocatable_units() {
        let r = Resources::from_list(&list(&[
            ("cpu", "3500m"),
            ("memory", "2Gi"),
            ("pods", "110"),
            ("ephemeral-storage", "10G"),
            ("example.com/gpu", "2"),
        ]));
        assert_eq!(r.cpu_milli, 3500);
        assert_eq!(r.memory, 2 << 30);
        assert_eq!(r.pods, 110);
        assert_eq!(r.ephemeral, 10_000_000_000);
        assert_eq!(r.extended("example.com/gpu"), 2);
        assert_eq!(r.extended("other"), 0);
    }

    #[test]
    fn pod_sums_containers_and_takes_init_peak() {
        let mut pod = Pod::default();
        pod.spec.containers = vec![
            container(&[("cpu", "100m"), ("memory", "64Mi")], &[]),
            // No request: the limit is the request.
            container(&[], &[("cpu", "200m"), ("example.com/gpu", "1")]),
        ];
        let r = Resources::of_pod(&pod);
        assert_eq!((r.cpu_milli, r.memory, r.pods), (300, 64 << 20, 1));
        assert_eq!(r.extended("example.com/gpu"), 1);

        // An ordinary init container larger than the sum wins for that resource.
        pod.spec.init_containers = vec![container(&[("cpu", "1")], &[])];
        let r = Resources::of_pod(&pod);
        assert_eq!((r.cpu_milli, r.memory), (1000, 64 << 20));
    }

    #[test]
    fn sidecars_add_to_everything_after_them() {
        let mut pod = Pod::default();
        pod.spec.containers = vec![container(&[("cpu", "100m")], &[])];
        let mut sidecar = container(&[("cpu", "50m")], &[]);
        sidecar.restart_policy = Some("Always".into());
        // The sidecar runs beside the later init container (400m + 50m) and
        // beside the app containers (100m + 50m).
        pod.spec.init_containers = vec![sidecar, container(&[("cpu", "400m")], &[])];
        assert_eq!(Resources::of_pod(&pod).cpu_milli, 450);
        pod.spec.init_containers.truncate(1);
        assert_eq!(Resources::of_pod(&pod).cpu_milli, 150);
    }

    #[test]
    fn non_zero_defaults_only_for_missing_requests() {
        let r = Resources {
            cpu_milli: 0,
            memory: 5,
            ..Resources::default()
        };
        assert_eq!(r.non_zero(), (DEFAULT_CPU_MILLI, 5));
    }
}
