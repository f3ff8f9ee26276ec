//! `corral bench` flags. Every program a contender runs is a flag with an
//! environment twin, so a user can point at another build and the tests can
//! point at a missing or deliberately broken one.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

#[derive(Subcommand, Debug)]
pub enum BenchVerb {
    /// Start the same workload N times with each contender (interleaved,
    /// after uncounted warm-ups) and report the distribution of start times.
    Startup(StartupArgs),
    /// Start N static pods through a temporary corral-agent and report the
    /// latency from manifest written to pod Ready.
    Pods(PodsArgs),
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Run /bin/true: measured to its exit.
    True,
    /// Start `busybox httpd`: measured to its first HTTP answer.
    Httpd,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// KVM when a guest really boots under /dev/kvm, else TCG.
    Auto,
    Kvm,
    Tcg,
}

#[derive(Args, Debug)]
pub struct StartupArgs {
    /// Counted runs per contender (default 20). `-n RUNS` works too: it is
    /// the cluster verbs' global `-n`, which `corral bench` reads as a count.
    #[arg(long = "runs")]
    pub runs: Option<usize>,
    /// Uncounted warm-up rounds before the counted ones.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// The workload every contender runs.
    #[arg(long, value_enum, default_value_t = Workload::True)]
    pub workload: Workload,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Draw the distributions side by side into this SVG file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Only these contenders (corral-runtime, runc, crun, corral-run, podman, vm).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Seconds one run may take before it is killed and counted as failed.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// corral-runtime binary (default: next to corral, else on PATH).
    #[arg(long, env = "CORRAL_BENCH_RUNTIME")]
    pub corral_runtime: Option<PathBuf>,
    /// runc binary (a path, or a name looked up on PATH).
    #[arg(long, env = "CORRAL_BENCH_RUNC", default_value = "runc")]
    pub runc: PathBuf,
    /// crun binary.
    #[arg(long, env = "CORRAL_BENCH_CRUN", default_value = "crun")]
    pub crun: PathBuf,
    /// podman binary.
    #[arg(long, env = "CORRAL_BENCH_PODMAN", default_value = "podman")]
    pub podman: PathBuf,
    /// OCI image layout (a directory) that corral-run and podman both import
    /// into fresh stores, e.g. OUT/busybox from scripts/build-test-images.
    #[arg(long, env = "CORRAL_BENCH_IMAGE")]
    pub image_layout: Option<PathBuf>,
    /// QEMU binary for the VM contender.
    #[arg(long, env = "CORRAL_BENCH_QEMU", default_value = "qemu-system-x86_64")]
    pub qemu: PathBuf,
    /// Directory with vmlinux and initramfs.cpio made by scripts/build-vm-guest.
    #[arg(long, env = "CORRAL_BENCH_VM_GUEST")]
    pub vm_guest: Option<PathBuf>,
    /// Accelerator of the VM contender.
    #[arg(long, value_enum, default_value_t = Accel::Auto)]
    pub vm_accel: Accel,
    /// Skip the extra untimed run per contender that samples the peak RSS
    /// of its processes.
    #[arg(long)]
    pub no_memory: bool,
}

#[derive(Args, Debug)]
pub struct PodsArgs {
    /// Number of pods (default 100; `-n PODS` works too, as for startup).
    #[arg(long = "pods")]
    pub pods: Option<usize>,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// corral-agent binary (default: next to corral, else on PATH).
    #[arg(long, env = "CORRAL_BENCH_AGENT")]
    pub agent: Option<PathBuf>,
    /// OCI image layout the pods run (imported into the agent's fresh store).
    #[arg(long, env = "CORRAL_BENCH_IMAGE")]
    pub image_layout: PathBuf,
    /// Bridge of the agent's temporary pod network.
    #[arg(long, default_value = "cbench0")]
    pub bridge: String,
    /// Pod CIDR of the temporary agent (must hold N addresses).
    #[arg(long, default_value = "10.217.0.0/22")]
    pub pod_cidr: String,
    /// Seconds to wait for all pods to be Ready.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}
