//! Scheduler throughput on synthetic clusters: the pure batch scheduler
//! (snapshot building included) placing 10,000 pending replicas of five
//! Deployments on 1,000 and 5,000 nodes. Run from the release build:
//!
//!   cargo build --release -p corral-master --bin corral-bench-scheduler
//!   target/release/corral-bench-scheduler [--nodes 1000,5000] [--percentage 0,100] [--json FILE]
//!
//! Prints pods/s, total ms, the pods-per-node histogram and, per Deployment,
//! the most replicas any node got (the spread).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use corral_api::core::{Node, Pod};
use corral_master::scheduler::{self, synth, Options, Placement, Snapshot};

#[derive(Parser)]
#[command(about = "Scheduler throughput on synthetic clusters")]
struct Args {
    /// Node counts to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
    nodes: Vec<usize>,
    /// percentageOfNodesToScore values (0 = Kubernetes' adaptive default).
    #[arg(long, value_delimiter = ',', default_value = "0,100")]
    percentage: Vec<u32>,
    /// Runs per setting; the best and median are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

struct Run {
    snapshot_ms: f64,
    schedule_ms: f64,
    placed: usize,
    unschedulable: BTreeMap<String, usize>,
    per_node: BTreeMap<usize, usize>,
    max_replicas_per_node: BTreeMap<String, usize>,
}

fn run_once(nodes: &[Node], pods: &[Pod], pct: u32) -> Run {
    let opts = Options {
        percentage_of_nodes_to_score: pct,
    };
    let t0 = Instant::now();
    let mut pending: Vec<&Pod> = pods.iter().collect();
    pending.sort_by(|a, b| scheduler::queue_order(a, b));
    let mut snap = Snapshot::new(nodes);
    for p in pods {
        snap.add_pod(p);
    }
    let t1 = Instant::now();
    let out = snap.schedule(&pending, &opts);
    let t2 = Instant::now();

    let mut unschedulable = BTreeMap::new();
    let mut owner_node: HashMap<(&str, &str), usize> = HashMap::new();
    let mut placed = 0;
    for (p, pl) in pending.iter().zip(&out) {
        match pl {
            Placement::Node(n) => {
                placed += 1;
                let app = p.metadata.labels.get("app").map_or("", String::as_str);
                *owner_node.entry((app, n)).or_default() += 1;
            }
            Placement::Unschedulable(u) => *unschedulable.entry(u.to_string()).or_default() += 1,
        }
    }
    let mut per_node = BTreeMap::new();
    for (_, count) in snap.pods_per_node() {
        *per_node.entry(count).or_default() += 1;
    }
    let mut max_replicas_per_node: BTreeMap<String, usize> = BTreeMap::new();
    for ((app, _), c) in owner_node {
        let m = max_replicas_per_node.entry(app.to_string()).or_default();
        *m = (*m).max(c);
    }
    Run {
        snapshot_ms: (t1 - t0).as_secs_f64() * 1e3,
        schedule_ms: (t2 - t1).as_secs_f64() * 1e3,
        placed,
        unschedulable,
        per_node,
        max_replicas_per_node,
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let pods = synth::pending_pods(&synth::BENCH_WORKLOADS);
    let mut results = Vec::new();
    for &n in &args.nodes {
        let nodes = synth::nodes(n);
        for &pct in &args.percentage {
            let mut runs: Vec<Run> = (0..args.runs.max(1))
                .map(|_| run_once(&nodes, &pods, pct))
                .collect();
            runs.sort_by(|a, b| total(a).total_cmp(&total(b)));
            let best = &runs[0];
            let median = total(&runs[runs.len() / 2]);
            let rate = pods.len() as f64 / (total(best) / 1e3);
            print_run(n, pct, pods.len(), best, median, rate);
            results.push(serde_json::json!({
                "nodes": n,
                "pods": pods.len(),
                "percentage_of_nodes_to_score": pct,
                "nodes_scored_per_pod": Options { percentage_of_nodes_to_score: pct }.nodes_to_find(n),
                "best_total_ms": total(best),
                "median_total_ms": median,
                "snapshot_ms": best.snapshot_ms,
                "schedule_ms": best.schedule_ms,
                "pods_per_second": rate,
                "placed": best.placed,
                "unschedulable": best.unschedulable,
                "nodes_by_pod_count": best.per_node,
                "max_replicas_per_node": best.max_replicas_per_node,
            }));
        }
    }
    if let Some(path) = args.json {
        let text = serde_json::Value::Array(results).to_string();
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("corral-bench-scheduler: writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn total(r: &Run) -> f64 {
    r.snapshot_ms + r.schedule_ms
}

fn print_run(nodes: usize, pct: u32, pods: usize, r: &Run, median: f64, rate: f64) {
    let scored = Options {
        percentage_of_nodes_to_score: pct,
    }
    .nodes_to_find(nodes);
    println!(
        "{nodes} nodes, {pods} pods, percentageOfNodesToScore {pct} (up to {scored} feasible nodes per pod):"
    );
    println!(
        "  {rate:.0} pods/s; total {:.1} ms (snapshot {:.1} ms + scheduling {:.1} ms), median total {median:.1} ms",
        total(r),
        r.snapshot_ms,
        r.schedule_ms
    );
    println!("  placed {}, unschedulable {}", r.placed, pods - r.placed);
    for (msg, n) in &r.unschedulable {
        println!("    {n} x {msg}");
    }
    let hist: Vec<String> = r
        .per_node
        .iter()
        .map(|(pods, nodes)| format!("{pods}:{nodes}"))
        .collect();
    println!("  nodes by pods placed (pods:nodes): {}", hist.join(" "));
    let spread: Vec<String> = r
        .max_replicas_per_node
        .iter()
        .map(|(app, m)| format!("{app} {m}"))
        .collect();
    println!(
        "  most replicas of one Deployment on a node: {}",
        spread.join(", ")
    );
}
