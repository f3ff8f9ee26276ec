//! What a startup bench found: per series every counted run, the failures
//! (counted, with their reasons), memory; printed as a table with the host
//! or as one JSON object.

use std::io::Write;

use serde_json::{json, Value};

use super::args::Workload;
use super::contenders::{Missing, Outcome, Series};
use super::host::Host;
use super::stats::{summarize, Summary};

/// Distinct failure reasons kept per series (all failures are counted).
const KEEP_ERRORS: usize = 5;

pub struct SeriesData {
    pub series: Series,
    pub runs_ms: Vec<f64>,
    pub failed: usize,
    pub errors: Vec<String>,
    /// Peak RSS (KiB) per process name from the memory run: the processes
    /// the bench started and the supervisor (None: never seen).
    pub memory: Vec<(String, Option<u64>)>,
    pub memory_error: Option<String>,
}

impl SeriesData {
    pub fn new(series: Series) -> SeriesData {
        SeriesData {
            series,
            runs_ms: Vec::new(),
            failed: 0,
            errors: Vec::new(),
            memory: Vec::new(),
            memory_error: None,
        }
    }

    /// Count one run: its `i`th time, or a failure.
    pub fn record(&mut self, out: &Outcome, i: usize) {
        match (&out.error, out.times_ms.get(i)) {
            (None, Some(t)) => self.runs_ms.push(*t),
            (err, _) => {
                self.failed += 1;
                let e = err
                    .clone()
                    .unwrap_or_else(|| "no time measured".to_string());
                if self.errors.len() < KEEP_ERRORS && !self.errors.contains(&e) {
                    self.errors.push(e);
                }
            }
        }
    }

    pub fn summary(&self) -> Option<Summary> {
        summarize(&self.runs_ms)
    }

    fn memory_text(&self) -> String {
        let parts: Vec<String> = self
            .memory
            .iter()
            .map(|(name, kib)| match kib {
                Some(k) => format!("{name} {:.1} MiB", *k as f64 / 1024.0),
                None => format!("{name} not seen"),
            })
            .collect();
        if parts.is_empty() {
            "-".to_string()
        } else {
            parts.join(" + ")
        }
    }
}

pub struct Report {
    pub host: Host,
    pub workload: Workload,
    pub runs: usize,
    pub warmup: usize,
    pub series: Vec<SeriesData>,
    pub missing: Vec<Missing>,
    pub vm_command: Option<String>,
    pub interrupted: bool,
}

fn workload_name(w: Workload) -> &'static str {
    match w {
        Workload::True => "true",
        Workload::Httpd => "httpd",
    }
}

impl Report {
    /// The series a row is compared with: corral's figure for the same
    /// kind of start (runtime mode, or the image path; VMs against
    /// corral-runtime run, else corral-run).
    fn reference(&self, s: &Series) -> Option<&SeriesData> {
        let find = |name: &str, mode: &str| {
            self.series
                .iter()
                .find(|d| d.series.name == name && d.series.mode == mode && !d.runs_ms.is_empty())
        };
        match s.name.as_str() {
            "corral-runtime" | "runc" | "crun" => find("corral-runtime", &s.mode),
            "corral-run" | "podman" => find("corral-run", &s.mode),
            _ => find("corral-runtime", "run").or_else(|| find("corral-run", "run --rm IMAGE")),
        }
    }

    fn ratio(&self, d: &SeriesData) -> Option<f64> {
        let r = self.reference(&d.series)?.summary()?.median;
        Some(d.summary()?.median / r)
    }

    pub fn json(&self) -> Value {
        let mut contenders: Vec<Value> = self
            .series
            .iter()
            .map(|d| {
                let s = d.summary();
                json!({
                    "name": d.series.name,
                    "mode": d.series.mode,
                    "runs_ms": d.runs_ms,
                    "median_ms": s.map(|s| s.median),
                    "min_ms": s.map(|s| s.min),
                    "p90_ms": s.map(|s| s.p90),
                    "max_ms": s.map(|s| s.max),
                    "failed": d.failed,
                    "errors": d.errors,
                    "ratio_to_corral": self.ratio(d),
                    "peak_rss_kib": d.memory.iter().map(|(n, k)| json!({"process": n, "kib": k})).collect::<Vec<_>>(),
                    "memory_run_error": d.memory_error,
                })
            })
            .collect();
        for m in &self.missing {
            contenders.push(json!({
                "name": m.name, "missing": m.reason, "runs_ms": [], "median_ms": null, "failed": 0,
            }));
        }
        json!({
            "host": self.host,
            "workload": workload_name(self.workload),
            "runs": self.runs,
            "warmup": self.warmup,
            "interrupted": self.interrupted,
            "vm_command": self.vm_command,
            "contenders": contenders,
        })
    }

    pub fn print_table(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(out, "{}", self.host.line())?;
        for n in &self.host.notes {
            writeln!(out, "note: {n}")?;
        }
        writeln!(out, "{}", self.preamble())?;
        writeln!(out)?;
        let head = [
            "CONTENDER",
            "MODE",
            "RUNS",
            "FAILED",
            "MIN",
            "MEDIAN",
            "P90",
            "MAX",
            "VS CORRAL",
            "PEAK RSS",
        ];
        let mut rows: Vec<Vec<String>> = self.series.iter().map(|d| self.row(d)).collect();
        for m in &self.missing {
            rows.push(vec![m.name.clone(), "MISSING".to_string()]);
        }
        crate::table::print(out, &head, &rows)?;
        writeln!(out)?;
        writeln!(
            out,
            "times in ms; VS CORRAL: median / corral's median for the same kind of start \
             (runtimes: corral-runtime in that mode; podman: corral-run; VM: corral-runtime run)"
        )?;
        writeln!(
            out,
            "PEAK RSS: from one extra untimed run per contender: VmHWM of each process the bench \
             started, re-read until it exits, and of the supervisor (corral-shim, conmon; \
             /proc scanned every 1 ms); the largest per process name"
        )?;
        for m in &self.missing {
            writeln!(out, "missing {}: {}", m.name, m.reason)?;
        }
        for d in self.series.iter().filter(|d| !d.errors.is_empty()) {
            writeln!(
                out,
                "failures of {} {}: {}",
                d.series.name,
                d.series.mode,
                d.errors.join(" | ")
            )?;
        }
        if let Some(c) = &self.vm_command {
            writeln!(out, "vm: {c}")?;
        }
        if self.interrupted {
            writeln!(out, "INTERRUPTED: the rounds stopped early")?;
        }
        Ok(())
    }

    fn preamble(&self) -> String {
        let what = match self.workload {
            Workload::True => "/bin/true, to its exit (VM: to the guest's marker and to QEMU's exit)",
            Workload::Httpd => {
                "busybox httpd, to its first HTTP answer (VM: the guest asks its own httpd over loopback)"
            }
        };
        format!(
            "workload: {what}; {} counted runs per contender after {} warm-up rounds, interleaved",
            self.runs, self.warmup
        )
    }

    fn row(&self, d: &SeriesData) -> Vec<String> {
        let f = |v: f64| format!("{v:.1}");
        let (min, med, p90, max) = match d.summary() {
            Some(s) => (f(s.min), f(s.median), f(s.p90), f(s.max)),
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        let ratio = self
            .ratio(d)
            .map_or("-".to_string(), |r| format!("{r:.2}x"));
        let rss = d.memory_text();
        vec![
            d.series.name.clone(),
            d.series.mode.clone(),
            (d.runs_ms.len() + d.failed).to_string(),
            d.failed.to_string(),
            min,
            med,
            p90,
            max,
            ratio,
            rss,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, mode: &str, times: &[f64], failed: usize) -> SeriesData {
        let mut d = SeriesData::new(Series {
            name: name.into(),
            mode: mode.into(),
        });
        for t in times {
            d.record(
                &Outcome {
                    times_ms: vec![*t],
                    error: None,
                },
                0,
            );
        }
        for _ in 0..failed {
            d.record(&Outcome::failed("boom".into()), 0);
        }
        d
    }

    fn report() -> Report {
        Report {
            host: Host::probe(),
            workload: Workload::True,
            runs: 3,
            warmup: 1,
            series: vec![
                series("corral-runtime", "run", &[2.0, 3.0, 4.0], 0),
                series("crun", "run", &[6.0, 6.0], 1),
                series("vm-tcg", "to first output", &[1500.0, 1500.0, 1500.0], 0),
            ],
            missing: vec![Missing {
                name: "runc".into(),
                reason: "not found".into(),
            }],
            vm_command: None,
            interrupted: false,
        }
    }

    #[test]
    fn failures_are_counted_not_dropped() {
        let r = report();
        let j = r.json();
        let c = j["contenders"].as_array().unwrap();
        assert_eq!(c[1]["runs_ms"].as_array().unwrap().len(), 2);
        assert_eq!(c[1]["failed"], 1);
        assert_eq!(c[1]["errors"][0], "boom");
        assert_eq!(c[1]["ratio_to_corral"], 2.0);
        assert_eq!(c[2]["ratio_to_corral"], 500.0);
        assert_eq!(c[3]["name"], "runc");
        assert_eq!(c[3]["missing"], "not found");
    }

    #[test]
    fn table_shows_missing_and_failures() {
        let mut out = Vec::new();
        report().print_table(&mut out).unwrap();
        let t = String::from_utf8(out).unwrap();
        assert!(
            t.contains("MISSING") && t.contains("missing runc: not found"),
            "{t}"
        );
        assert!(t.contains("failures of crun run: boom"), "{t}");
        assert!(t.contains("host: kernel"), "{t}");
    }
}
