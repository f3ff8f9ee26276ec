//! The scheduler: a pure function from a snapshot of nodes and pods to
//! placements (`batch`, with `filter` and `score`), and the task that feeds
//! it from the API server and binds what it decides (`runner`).
//!
//! Filters, in Kubernetes' order: node Ready, not cordoned (unless the pod
//! tolerates `node.kubernetes.io/unschedulable`), NoSchedule/NoExecute taints
//! tolerated, nodeSelector and required node affinity, host ports free,
//! requests (cpu, memory, ephemeral-storage, extended resources, pod count)
//! within allocatable minus what is placed. Scores: least allocated (1),
//! spread of one owner's replicas (2), preferred node affinity (2),
//! untolerated PreferNoSchedule taints (3). Like Kubernetes'
//! percentageOfNodesToScore, large clusters are sampled: a search stops after
//! enough feasible nodes and the next one starts where it stopped.
//!
//! The master starts it with
//! `tokio::spawn(scheduler::run(client, SchedulerConfig::default()))`.

mod batch;
mod filter;
mod ports;
mod resources;
mod runner;
mod score;
mod snapshot;
pub mod synth;

pub use batch::{queue_order, schedule, Options, Placement, Unschedulable};
pub use runner::{run, SchedulerConfig, DEFAULT_SCHEDULER};
pub use snapshot::Snapshot;
