//! The cluster verbs' command line: kubectl's names and flags, so its users
//! can type what they know.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

/// Which master and namespace the cluster verbs talk to.
#[derive(Args, Debug, Clone)]
pub struct ClusterGlobal {
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then
    /// /var/lib/corral/master/admin.kubeconfig).
    #[arg(long, global = true, env = "KUBECONFIG")]
    pub kubeconfig: Option<String>,
    /// The kubeconfig context to use (default: its current-context).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Namespace (default: the context's, else "default").
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ClusterVerb {
    /// Create or update objects from manifests (YAML or JSON; FILE, DIR or -).
    Apply(ApplyArgs),
    /// List objects as a table, or print them as JSON/YAML.
    Get(GetArgs),
    /// Show an object's key fields and its events.
    Describe(DescribeArgs),
    /// Delete objects by name, manifest or label selector.
    Delete(DeleteArgs),
    /// Set the replicas of a Deployment or ReplicaSet.
    Scale(ScaleArgs),
    /// Watch, restart or undo a Deployment's rollout.
    #[command(subcommand)]
    Rollout(RolloutVerb),
    /// Mark a node unschedulable.
    Cordon { node: String },
    /// Mark a node schedulable again.
    Uncordon { node: String },
    /// Cordon a node and delete its pods.
    Drain(DrainArgs),
    /// Show or change the kubeconfig.
    #[command(subcommand)]
    Config(ConfigVerb),
    /// CPU and memory in use by nodes or pods (from the agents' summary API).
    #[command(subcommand)]
    Top(TopVerb),
}

#[derive(Subcommand, Debug)]
pub enum TopVerb {
    /// NAME CPU(cores) CPU% MEMORY(bytes) MEMORY% of every node (or one).
    #[command(alias = "node", alias = "no")]
    Nodes { name: Option<String> },
    /// NAME CPU(cores) MEMORY(bytes) of the namespace's running pods (or one).
    #[command(alias = "pod", alias = "po")]
    Pods {
        name: Option<String>,
        /// All namespaces (adds a NAMESPACE column).
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// Manifest file, directory (its .yaml/.yml/.json files) or - for stdin.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Json,
    Yaml,
    Wide,
    Name,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// Kind (`pods`, `po`, `deploy`, `deployments.apps`), or KIND/NAME.
    pub kind: String,
    pub names: Vec<String>,
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Output>,
    /// Label selector (`app=web,tier!=db`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// All namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// After listing, watch for changes (until interrupted).
    #[arg(short = 'w', long)]
    pub watch: bool,
}

#[derive(Args, Debug)]
pub struct DescribeArgs {
    pub kind: String,
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Kind, or KIND/NAME (not with -f).
    pub kind: Option<String>,
    pub names: Vec<String>,
    /// Delete the objects these manifests name.
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<String>,
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// A missing object is not an error.
    #[arg(long)]
    pub ignore_not_found: bool,
}

#[derive(Args, Debug)]
pub struct ScaleArgs {
    /// KIND/NAME, or KIND NAME.
    pub target: Vec<String>,
    #[arg(long, required = true, allow_negative_numbers = true)]
    pub replicas: i32,
}

#[derive(Subcommand, Debug)]
pub enum RolloutVerb {
    /// Wait until the Deployment's new pods are all updated and available.
    Status {
        /// deploy/NAME
        target: String,
        /// Give up after this many seconds (0: wait forever).
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Restart the pods by changing the pod template's restartedAt annotation.
    Restart { target: String },
    /// Go back to the previous (or given) revision's pod template.
    Undo {
        target: String,
        #[arg(long)]
        to_revision: Option<i64>,
    },
}

#[derive(Args, Debug)]
pub struct DrainArgs {
    pub node: String,
    /// Give up waiting for the pods to be gone after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

#[derive(Subcommand, Debug)]
pub enum ConfigVerb {
    /// Print the kubeconfig (tokens and keys redacted unless --raw).
    View {
        #[arg(long)]
        raw: bool,
    },
    /// Set the current-context.
    #[command(alias = "use")]
    UseContext { name: String },
    /// Print the current-context.
    CurrentContext,
}

/// The files of `-f` arguments: `-` is stdin, a directory gives its
/// manifest files in name order.
pub fn manifest_sources(files: &[String]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for f in files {
        let p = PathBuf::from(f);
        if f != "-" && p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&p)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|e| {
                    e.extension()
                        .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
                })
                .collect();
            entries.sort();
            out.extend(entries);
        } else {
            out.push(p);
        }
    }
    Ok(out)
}
