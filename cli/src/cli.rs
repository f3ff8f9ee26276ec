//! The command line: global paths (each with an environment twin, so tests
//! run side by side in temporary directories), then a verb.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "corral",
    version,
    about = "Run OCI images on this host: no daemon, no Docker"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(flatten)]
    pub cluster: crate::cluster::args::ClusterGlobal,
    #[command(subcommand)]
    pub verb: Verb,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Image store (blobs, index, unpacked layers, snapshots).
    #[arg(
        long,
        global = true,
        env = "CORRAL_IMAGES_ROOT",
        default_value = "/var/lib/corral/images"
    )]
    pub images_root: PathBuf,
    /// Per-container state: <state-dir>/<id>/{container.json,config.json,ctr.log,exit.json}.
    #[arg(
        long,
        global = true,
        env = "CORRAL_STATE_DIR",
        default_value = "/var/lib/corral/containers"
    )]
    pub state_dir: PathBuf,
    /// The runtime's state root (as `corral-runtime --root`).
    #[arg(
        long,
        global = true,
        env = "CORRAL_RUNTIME_ROOT",
        default_value = "/run/corral/runtime"
    )]
    pub runtime_root: PathBuf,
    /// Network state (IPAM leases, lock); one subdirectory per bridge.
    #[arg(
        long,
        global = true,
        env = "CORRAL_NET_STATE_DIR",
        default_value = "/var/lib/corral/net"
    )]
    pub net_state_dir: PathBuf,
    /// Persistent network namespaces of bridge-networked containers (<dir>/<id>).
    #[arg(
        long,
        global = true,
        env = "CORRAL_NETNS_DIR",
        default_value = "/run/corral/netns"
    )]
    pub netns_dir: PathBuf,
    /// Bridge of the default network.
    #[arg(long, global = true, env = "CORRAL_BRIDGE", default_value = "corral0")]
    pub bridge: String,
    /// Subnet of the default network (the gateway is its first address).
    #[arg(
        long,
        global = true,
        env = "CORRAL_SUBNET",
        default_value = "10.88.0.0/16"
    )]
    pub subnet: String,
    /// The corral-shim binary (default: next to corral, else on PATH).
    #[arg(long, global = true, env = "CORRAL_SHIM")]
    pub shim: Option<PathBuf>,
}

/// `corral logs --help`: how a local container and a cluster pod are told apart.
const LOGS_ABOUT: &str =
    "Print a local container's output, or a cluster pod's (through corral-master).

Which one: `pod/NAME` (or `po/NAME`) is always a pod in the cluster; a bare NAME \
is the local container (`corral run`) with that name or id (prefix) when there is \
one, else a pod in the cluster. The cluster-only flags (-c/--container, --previous, \
-n/--namespace) always mean the cluster; -t/--timestamps works for both. The cluster \
is the one of --kubeconfig, $KUBECONFIG, ~/.kube/config or \
/var/lib/corral/master/admin.kubeconfig, as for the other cluster verbs.";

/// `corral exec --help`: the same rule.
const EXEC_ABOUT: &str =
    "Run a command in a running local container, or in a cluster pod (through corral-master).

Which one: `pod/NAME` (or `po/NAME`) is always a pod in the cluster; a bare NAME \
is the local container (`corral run`) with that name or id (prefix) when there is \
one, else a pod in the cluster. The cluster-only flags (-c/--container, \
-n/--namespace) always mean the cluster; -e, -w and -u are for local containers \
only. In a pod, -i forwards stdin, -t makes this terminal raw and sends its size \
(again on every resize), and corral exits with the command's exit code. The \
cluster is the one of --kubeconfig, $KUBECONFIG, ~/.kube/config or \
/var/lib/corral/master/admin.kubeconfig, as for the other cluster verbs.";

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Run a command in a new container.
    Run(Box<RunArgs>),
    /// Manage images.
    #[command(subcommand)]
    Image(ImageVerb),
    /// List containers.
    Ps(PsArgs),
    /// Print a container's output, or a cluster pod's.
    #[command(long_about = LOGS_ABOUT)]
    Logs(LogsArgs),
    /// Stop running containers (stop signal, then SIGKILL after a timeout).
    Stop(StopArgs),
    /// Send a signal to running containers.
    Kill(KillArgs),
    /// Remove containers.
    Rm(RmArgs),
    /// Run a command in a running container, or in a cluster pod.
    #[command(long_about = EXEC_ABOUT)]
    Exec(ExecArgs),
    /// Show containers' configuration and state as JSON.
    Inspect {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Measure container start against peer runtimes, podman and a VM; pods through the agent.
    #[command(subcommand)]
    Bench(crate::bench::BenchVerb),
    #[command(flatten)]
    Cluster(crate::cluster::args::ClusterVerb),
}

#[derive(Subcommand, Debug)]
pub enum ImageVerb {
    /// Pull an image from a registry and unpack its layers.
    Pull(PullArgs),
    /// Import an OCI image layout (directory or tar) or a `docker save` archive, and
    /// unpack its layers.
    Import {
        path: PathBuf,
        /// Tag the (single) imported image with this name.
        #[arg(long, short)]
        tag: Option<String>,
    },
    /// List images.
    #[command(alias = "list")]
    Ls {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Print image ids only.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show images' records and configuration as JSON.
    Inspect {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove images (names, and blobs nothing else uses).
    Rm {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove blobs and layers that no image or container uses.
    Prune,
}

#[derive(Args, Debug, Clone)]
pub struct PullArgs {
    pub reference: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// No progress output.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug, Clone)]
pub struct RegistryArgs {
    /// os/arch[/variant] to pick from a multi-platform image.
    #[arg(long, default_value = "linux/amd64")]
    pub platform: String,
    /// Allow plain HTTP and unverified TLS for the registry.
    #[arg(long)]
    pub insecure: bool,
    /// Registry credentials (Docker config.json format).
    #[arg(long, env = "CORRAL_AUTH_FILE")]
    pub auth_file: Option<PathBuf>,
    /// Extra CA certificate (PEM) for the registry.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetworkMode {
    /// A bridge network with a veth and an address (the default).
    Bridge,
    /// The host's network namespace.
    Host,
    /// A new network namespace with only loopback.
    None,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Remove the container (and its snapshot, netns, address, rules) when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Run in the background and print the container id.
    #[arg(short, long)]
    pub detach: bool,
    /// Name of the container (default: generated).
    #[arg(long)]
    pub name: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to copy ours).
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Read KEY=VALUE lines from a file.
    #[arg(long)]
    pub env_file: Vec<PathBuf>,
    /// Bind mount HOST:CONTAINER[:ro|rw].
    #[arg(short, long = "volume")]
    pub volume: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// user[:group] (names or ids) to run as.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Override the image's entrypoint.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Container host name (default: the short id).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Memory limit (e.g. 64m, 1g).
    #[arg(short, long)]
    pub memory: Option<String>,
    /// CPU limit in cores (e.g. 0.5).
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Maximum number of processes.
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// Mount the root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,
    #[arg(long, value_enum, default_value_t = NetworkMode::Bridge)]
    pub network: NetworkMode,
    /// Publish a port: [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp].
    #[arg(short, long = "publish")]
    pub publish: Vec<String>,
    /// Allocate a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Keep stdin open (attach it in the foreground).
    #[arg(short, long)]
    pub interactive: bool,
    /// Rotate the container log at this size (0: never).
    #[arg(long, default_value = "0")]
    pub log_max_size: String,
    /// Log files kept when rotating, the live one included.
    #[arg(long, default_value_t = 2)]
    pub log_max_files: u32,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Image name, or id (prefix).
    pub image: String,
    /// Command and arguments (default: the image's).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show all containers (default: running only).
    #[arg(short, long)]
    pub all: bool,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Print container ids only.
    #[arg(short, long)]
    pub quiet: bool,
    /// Full ids and commands.
    #[arg(long)]
    pub no_trunc: bool,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Keep printing new output until the container exits.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<usize>,
    /// Prefix each line with its time.
    #[arg(short, long)]
    pub timestamps: bool,
    /// The pod's container (cluster only; default: the pod's only one).
    #[arg(short = 'c', long = "container", value_name = "CONTAINER")]
    pub pod_container: Option<String>,
    /// The previous, terminated instance of the pod's container (cluster only).
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// A local container (name or id), pod/NAME, or a pod's NAME.
    #[arg(value_name = "CONTAINER|pod/NAME")]
    pub container: String,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait after the stop signal before SIGKILL.
    #[arg(short, long, default_value_t = 10)]
    pub time: u64,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal name or number.
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Kill running containers first.
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Keep stdin open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Set an environment variable (KEY=VALUE).
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// user[:group] (names or ids).
    #[arg(short, long)]
    pub user: Option<String>,
    /// The pod's container (cluster only; default: the pod's only one).
    #[arg(short = 'c', long = "container", value_name = "CONTAINER")]
    pub pod_container: Option<String>,
    /// A local container (name or id), pod/NAME, or a pod's NAME.
    #[arg(value_name = "CONTAINER|pod/NAME")]
    pub container: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}
