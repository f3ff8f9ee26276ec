//! One thread per pod: sandbox, init containers in order, app containers
//! with restarts and back-off, probes, status, and the teardown.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use corral_api::core::{Container, ContainerStateTerminated, RestartPolicy};
use corral_api::Time;
use corral_images::{ImageRecord, Store};
use corral_net::Network;

use super::container::{self, StartContext, StartError};
use super::gate::{Permit, StartGate};
use super::probe::{ProbeKind, Prober};
use super::spec::{self, PodContext};
use super::status::{self, Observed, PodFacts};
use super::{lock, sandbox, trace, ContainerView, PodHandle};
use crate::config::Config;
use crate::state::{self, Attempt, ContainerRecord, Phase, PodRecord};

/// How often the worker looks at its containers (exits are seen this fast).
const TICK: Duration = Duration::from_millis(100);
/// After an agent restart, how long a `Creating` attempt may take to show up
/// in the runtime before it is taken as never started.
const ADOPT_GRACE: Duration = Duration::from_secs(3);
/// How long a dead container's shim may take to write the exit record.
const EXIT_GRACE: Duration = Duration::from_secs(5);

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

struct Slot {
    spec: Container,
    init: bool,
    field: String,
    cdir: PathBuf,
    rec: ContainerRecord,
    image: Option<ImageRecord>,
    prober: Prober,
    /// When the running attempt was first seen dead without an exit record.
    dead_since: Option<Instant>,
}

pub(crate) struct Worker {
    cfg: Config,
    handle: Arc<PodHandle>,
    store: Option<Store>,
    shared_net: Arc<sandbox::SharedNetwork>,
    net: Option<Arc<Network>>,
    gate: Arc<StartGate>,
    /// Held from before the sandbox is made until the first pass over the
    /// containers has started them.
    permit: Option<Permit>,
    /// pod.json is on disk (the worker writes it first for a new pod).
    recorded: bool,
    /// hosts and resolv.conf were checked (or written) by this worker.
    etc_checked: bool,
    dir: PathBuf,
    record: PodRecord,
    slots: Vec<Slot>,
    started: Instant,
    init_failed: bool,
    last_status: Vec<u8>,
}

impl Worker {
    pub(crate) fn new(
        cfg: Config,
        shared_net: Arc<sandbox::SharedNetwork>,
        gate: Arc<StartGate>,
        handle: Arc<PodHandle>,
        (record, recorded): (PodRecord, bool),
        dir: PathBuf,
    ) -> Worker {
        let pod = &record.pod;
        let mut slots = Vec::new();
        let all = pod
            .spec
            .init_containers
            .iter()
            .enumerate()
            .map(|(i, c)| (true, i, c))
            .chain(
                pod.spec
                    .containers
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (false, i, c)),
            );
        for (init, i, c) in all {
            let cdir = dir.join(&c.name);
            let rec = match state::load::<ContainerRecord>(&cdir.join("state.json")) {
                Ok(Some(r)) => r,
                Ok(None) => ContainerRecord {
                    name: c.name.clone(),
                    ..Default::default()
                },
                Err(e) => {
                    eprintln!("corral-agent: {e}; starting the container's record afresh");
                    ContainerRecord {
                        name: c.name.clone(),
                        ..Default::default()
                    }
                }
            };
            slots.push(Slot {
                prober: Prober::new(c),
                spec: c.clone(),
                init,
                field: spec::field(init, i),
                cdir,
                rec,
                image: None,
                dead_since: None,
            });
        }
        Worker {
            cfg,
            handle,
            store: None,
            shared_net,
            net: None,
            gate,
            permit: None,
            recorded,
            etc_checked: false,
            dir,
            record,
            slots,
            started: Instant::now(),
            init_failed: false,
            last_status: Vec::new(),
        }
    }

    fn key(&self) -> String {
        let m = &self.record.pod.metadata;
        format!("{}/{}", m.namespace, m.name)
    }

    fn trace(&self, step: &str, since: Instant) {
        trace(&self.record.pod.metadata.name, step, since);
    }

    fn log(&self, msg: impl std::fmt::Display) {
        eprintln!("corral-agent: pod {}: {msg}", self.key());
    }

    pub(crate) fn run(mut self) {
        loop {
            if self.handle.stop.load(Ordering::SeqCst) {
                self.terminate();
                return;
            }
            if let Err(e) = self.open() {
                self.permit = None;
                self.log(&e);
                self.publish(Some(e));
            } else {
                self.sync();
                self.permit = None;
                self.publish(None);
            }
            self.sleep(TICK);
        }
    }

    fn sleep(&self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end && !self.handle.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The pod's record, image store, network and sandbox, each made once.
    fn open(&mut self) -> Result<(), String> {
        let t = Instant::now();
        if !self.recorded {
            self.save_pod()?;
            self.recorded = true;
            self.trace("admit.save", t);
        }
        let t = Instant::now();
        if self.store.is_none() {
            let s = Store::open(&self.cfg.images_root)
                .map_err(|e| format!("open image store {}: {e}", self.cfg.images_root.display()))?;
            self.store = Some(s);
            self.trace("store.open", t);
        }
        if self.net.is_none() {
            let t = Instant::now();
            let net = self.shared_net.get(&self.cfg);
            self.net = Some(net.map_err(|e| e.to_string())?);
            self.trace("net.open", t);
        }
        if self.record.sandbox.is_none() {
            if self.permit.is_none() {
                let t = Instant::now();
                let stop = &self.handle.stop;
                self.permit = self.gate.enter(|| stop.load(Ordering::SeqCst));
                self.trace("start.turn", t);
                if stop.load(Ordering::SeqCst) {
                    // Removed while it waited: nothing to make (the run
                    // loop tears down what exists).
                    return Ok(());
                }
            }
            let net = self.net.as_ref().ok_or("no network")?;
            let uid = self.record.pod.metadata.uid.clone();
            let t = Instant::now();
            let sb = sandbox::create(&self.cfg, net, &uid, &spec::hostname(&self.record.pod))
                .map_err(|e| format!("create the pod sandbox: {e}"))?;
            self.trace("sandbox.create", t);
            let t = Instant::now();
            self.write_etc_files(&sb.ip)?;
            self.trace("etc.files", t);
            let t = Instant::now();
            self.record.sandbox = Some(sb);
            self.save_pod()?;
            self.trace("pod.save", t);
        } else if !self.etc_checked {
            // Written without fsync: a host crash may have lost them.
            let lost = ["hosts", "resolv.conf"]
                .iter()
                .any(|n| std::fs::metadata(self.dir.join(n)).map_or(true, |m| m.len() == 0));
            if let (true, Some(sb)) = (lost, self.record.sandbox.as_ref()) {
                self.write_etc_files(&sb.ip)?;
            }
        }
        self.etc_checked = true;
        Ok(())
    }

    fn save_pod(&self) -> Result<(), String> {
        state::save(&self.dir.join("pod.json"), &self.record).map_err(|e| e.to_string())
    }

    fn write_etc_files(&self, ip: &str) -> Result<(), String> {
        let host = spec::hostname(&self.record.pod);
        let hosts = format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{ip}\t{host}\n"
        );
        let resolv: String = std::fs::read_to_string("/etc/resolv.conf")
            .unwrap_or_default()
            .lines()
            // A loopback resolver of the host is unreachable from the pod.
            .filter(|l| !l.trim_start().starts_with("nameserver 127."))
            .map(|l| format!("{l}\n"))
            .collect();
        for (name, text) in [("hosts", hosts), ("resolv.conf", resolv)] {
            state::write_replace(&self.dir.join(name), text.as_bytes())
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn policy(&self) -> RestartPolicy {
        self.record
            .pod
            .spec
            .restart_policy
            .unwrap_or(RestartPolicy::Always)
    }

    fn sync(&mut self) {
        for i in 0..self.slots.len() {
            self.observe(i);
        }
        if self.init_failed {
            return;
        }
        let mut initialized = true;
        for i in 0..self.slots.len() {
            if !self.slots[i].init {
                continue;
            }
            let s = &self.slots[i];
            let phase = s.rec.attempt.as_ref().map(|a| a.phase);
            let ok = phase == Some(Phase::Exited)
                && s.rec.terminated.as_ref().is_some_and(|t| t.exit_code == 0);
            if ok {
                continue;
            }
            initialized = false;
            match phase {
                Some(Phase::Running) | Some(Phase::Creating) => {}
                Some(Phase::Exited) if self.policy() == RestartPolicy::Never => {
                    self.init_failed = true;
                }
                _ => self.maybe_start(i),
            }
            break;
        }
        if !initialized {
            return;
        }
        for i in 0..self.slots.len() {
            if self.slots[i].init {
                continue;
            }
            let phase = self.slots[i].rec.attempt.as_ref().map(|a| a.phase);
            match phase {
                Some(Phase::Running) => self.probe(i),
                Some(Phase::Creating) => {}
                Some(Phase::Exited) => {
                    let t = self.slots[i].rec.terminated.clone();
                    let again = match (self.policy(), t) {
                        (RestartPolicy::Always, _) => true,
                        (RestartPolicy::OnFailure, Some(t)) => t.exit_code != 0,
                        _ => false,
                    };
                    if again {
                        self.maybe_start(i);
                    }
                }
                None => self.maybe_start(i),
            }
        }
    }

    /// Start slot `i` unless it is backing off.
    fn maybe_start(&mut self, i: usize) {
        if self.slots[i]
            .rec
            .backoff_until
            .is_some_and(|t| now_unix() < t)
        {
            return;
        }
        self.start(i);
    }

    fn save_slot(&self, i: usize) {
        let s = &self.slots[i];
        if let Err(e) = state::save(&s.cdir.join("state.json"), &s.rec) {
            self.log(format!("container {}: {e}", s.spec.name));
        }
    }

    fn start(&mut self, i: usize) {
        let (Some(store), Some(sb)) = (self.store.as_ref(), self.record.sandbox.clone()) else {
            return;
        };
        let t = Instant::now();
        if self.slots[i].image.is_none() {
            match container::image(store, &self.slots[i].spec) {
                Ok(img) => self.slots[i].image = Some(img),
                Err(e) => {
                    self.start_failed(i, e, false);
                    return;
                }
            }
        }
        self.trace("image", t);
        let number = match &self.slots[i].rec.attempt {
            Some(_) => self.slots[i].rec.restart_count + 1,
            None => 0,
        };
        let host_ip = self.cfg.node_ip.to_string();
        let ctx = PodContext {
            pod: &self.record.pod,
            sandbox: &sb,
            pod_dir: &self.dir,
            node_name: &self.cfg.node_name,
            host_ip: &host_ip,
            hosts: self.dir.join("hosts"),
            resolv_conf: self.dir.join("resolv.conf"),
        };
        if let Err(e) = std::fs::create_dir_all(&self.slots[i].cdir) {
            self.log(format!("create {}: {e}", self.slots[i].cdir.display()));
            return;
        }
        let slot = &mut self.slots[i];
        let sc = StartContext {
            cfg: &self.cfg,
            store,
            pod: &ctx,
            cdir: &slot.cdir,
            field: &slot.field,
        };
        let img = slot.image.clone();
        let Some(img) = img else { return };
        // The intent is on disk before the shim exists: a restarted agent
        // looks for this attempt instead of starting another.
        if slot.rec.attempt.is_some() {
            slot.rec.restart_count = number;
            slot.rec.last_terminated = slot
                .rec
                .terminated
                .take()
                .or(slot.rec.last_terminated.take());
        }
        let cdir = slot.cdir.clone();
        let mut rec = slot.rec.clone();
        let name = self.record.pod.metadata.name.clone();
        let mut save = |a: &Attempt| {
            let t = Instant::now();
            rec.attempt = Some(a.clone());
            rec.error = None;
            rec.backoff_until = None;
            if let Err(e) = state::save(&cdir.join("state.json"), &rec) {
                eprintln!("corral-agent: {e}");
            }
            trace(&name, "state.save", t);
        };
        let t = Instant::now();
        let result = container::start(&sc, &slot.spec, &img, number, &mut save);
        trace(&name, "container.start", t);
        match result {
            Ok(a) => {
                slot.rec.attempt = Some(a);
                slot.rec.error = None;
                slot.rec.backoff_until = None;
                slot.prober.reset();
                slot.dead_since = None;
                // Already saved as it is now by the start's second record.
            }
            Err(e) => {
                // The attempt exists on disk as made (and removed) but not run.
                let a = rec.attempt.clone();
                self.slots[i].rec.attempt = a;
                self.start_failed(i, e, true);
            }
        }
    }

    /// A failed start counts as a crash for the back-off; `attempted` tells
    /// whether an attempt (restart) was used up.
    fn start_failed(&mut self, i: usize, e: StartError, attempted: bool) {
        self.log(format!(
            "container {}: {}: {}",
            self.slots[i].spec.name, e.reason, e.message
        ));
        let slot = &mut self.slots[i];
        if attempted {
            if let Some(a) = slot.rec.attempt.as_mut() {
                a.phase = Phase::Exited;
                slot.rec.terminated = Some(container::unknown_exit(a, e.reason, e.message.clone()));
                if let Some(t) = slot.rec.terminated.as_mut() {
                    t.exit_code = 128;
                }
            }
        }
        slot.rec.error = Some((e.reason.to_string(), e.message));
        self.back_off(i, Duration::ZERO);
        self.save_slot(i);
    }

    fn back_off(&mut self, i: usize, ran: Duration) {
        let (base, max, reset) = (
            self.cfg.backoff_base.as_secs_f64(),
            self.cfg.backoff_max.as_secs_f64(),
            self.cfg.backoff_reset,
        );
        let rec = &mut self.slots[i].rec;
        if ran >= reset || rec.next_backoff <= 0.0 {
            rec.next_backoff = base;
        }
        rec.current_backoff = rec.next_backoff;
        rec.backoff_until = Some(now_unix() + rec.next_backoff);
        rec.next_backoff = (rec.next_backoff * 2.0).min(max);
    }

    /// Notice how a Creating or Running attempt of slot `i` stands now.
    fn observe(&mut self, i: usize) {
        let slot = &self.slots[i];
        let Some(a) = slot.rec.attempt.clone() else {
            return;
        };
        if a.phase == Phase::Exited {
            return;
        }
        if let Some(t) = container::exit_of(&slot.cdir, &a) {
            self.exited(i, a, t);
            return;
        }
        match a.phase {
            Phase::Creating => self.adopt(i, a),
            Phase::Running if !container::alive(&a) => {
                let since = *self.slots[i].dead_since.get_or_insert_with(Instant::now);
                if since.elapsed() > EXIT_GRACE {
                    let t = container::unknown_exit(
                        &a,
                        "ContainerStatusUnknown",
                        "the container ended and its supervisor recorded no exit".into(),
                    );
                    self.exited(i, a, t);
                }
            }
            _ => {}
        }
    }

    /// An attempt the agent was starting when it died: running now (the
    /// shim got it going), failed, or never begun.
    fn adopt(&mut self, i: usize, mut a: Attempt) {
        let out = container::runtime(
            &self.cfg,
            &["state", &a.runtime_id],
            Duration::from_secs(10),
        );
        let st: Option<serde_json::Value> = out
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| serde_json::from_slice(&o.stdout).ok());
        match st {
            Some(v) if v["status"] == "running" => {
                let pid = v["pid"].as_i64().map(|p| p as i32);
                a.phase = Phase::Running;
                a.pid = pid;
                a.pid_start = pid.and_then(container::process_start);
                a.started_at = Some(Time::now().to_string());
                self.slots[i].rec.attempt = Some(a);
                self.save_slot(i);
            }
            Some(_) if self.started.elapsed() > ADOPT_GRACE => {
                let t = container::unknown_exit(
                    &a,
                    "StartError",
                    "the agent stopped while the container was being created".into(),
                );
                self.exited(i, a, t);
            }
            None if self.started.elapsed() > ADOPT_GRACE => {
                let t = container::unknown_exit(
                    &a,
                    "StartError",
                    "the agent stopped before the container was created".into(),
                );
                self.exited(i, a, t);
            }
            _ => {}
        }
    }

    fn exited(&mut self, i: usize, mut a: Attempt, t: ContainerStateTerminated) {
        self.log(format!(
            "container {} attempt {} exited: code {} ({})",
            self.slots[i].spec.name, a.number, t.exit_code, t.reason
        ));
        let ran = a
            .started_at
            .as_deref()
            .and_then(|s| s.parse::<Time>().ok())
            .map(|s| {
                Duration::from_secs((Time::now().unix_seconds() - s.unix_seconds()).max(0) as u64)
            })
            .unwrap_or_default();
        if let Some(store) = self.store.as_ref() {
            container::remove(&self.cfg, store, &self.slots[i].cdir, &a);
        }
        a.phase = Phase::Exited;
        let slot = &mut self.slots[i];
        slot.rec.attempt = Some(a);
        let failed = t.exit_code != 0;
        slot.rec.terminated = Some(t);
        slot.dead_since = None;
        slot.prober.reset();
        let restarts = match self.policy() {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => failed,
            RestartPolicy::Never => false,
        };
        if restarts {
            self.back_off(i, ran);
        }
        self.save_slot(i);
    }

    fn probe(&mut self, i: usize) {
        let Some(ip) = self.record.sandbox.as_ref().map(|s| s.ip.clone()) else {
            return;
        };
        let slot = &mut self.slots[i];
        let Some(a) = slot.rec.attempt.clone() else {
            return;
        };
        if let Some(kind) = slot.prober.run(&self.cfg, &a, &ip) {
            if kind == ProbeKind::Liveness || kind == ProbeKind::Startup {
                let name = slot.spec.name.clone();
                self.log(format!(
                    "container {name} failed its {kind:?} probe; restarting it"
                ));
                self.stop_container(i);
            }
        }
    }

    fn grace(&self) -> Duration {
        Duration::from_secs(
            self.record
                .pod
                .spec
                .termination_grace_period_seconds
                .unwrap_or(30)
                .max(0) as u64,
        )
    }

    /// preStop, the stop signal, SIGKILL after the grace period.
    fn stop_container(&mut self, i: usize) {
        let Some(a) = self.slots[i].rec.attempt.clone() else {
            return;
        };
        if a.phase != Phase::Running {
            return;
        }
        let deadline = Instant::now() + self.grace();
        stop_attempt(
            &self.cfg,
            &self.slots[i].spec,
            &self.slots[i].cdir,
            &a,
            deadline,
        );
        self.observe(i);
    }

    /// Stop every container (in parallel), then remove the sandbox and the
    /// pod's files.
    fn terminate(mut self) {
        self.log("stopping");
        let deadline = Instant::now() + self.grace();
        std::thread::scope(|s| {
            for slot in &self.slots {
                if let Some(a) = slot
                    .rec
                    .attempt
                    .as_ref()
                    .filter(|a| a.phase != Phase::Exited)
                {
                    let cfg = &self.cfg;
                    s.spawn(move || stop_attempt(cfg, &slot.spec, &slot.cdir, a, deadline));
                }
            }
        });
        let store = self
            .store
            .take()
            .or_else(|| Store::open(&self.cfg.images_root).ok());
        for slot in &self.slots {
            if let (Some(store), Some(a)) = (store.as_ref(), slot.rec.attempt.as_ref()) {
                container::remove(&self.cfg, store, &slot.cdir, a);
            }
        }
        let net = self
            .net
            .take()
            .or_else(|| self.shared_net.get(&self.cfg).ok());
        if let Some(net) = net {
            if let Err(e) = sandbox::destroy(&self.cfg, &net, &self.record.pod.metadata.uid) {
                self.log(format!("remove the sandbox: {e}"));
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            self.log(format!("remove {}: {e}", self.dir.display()));
        }
        if self.handle.remove_status.load(Ordering::SeqCst) {
            let _ = std::fs::remove_file(self.status_file());
        }
        self.log("removed");
    }

    fn status_file(&self) -> PathBuf {
        let m = &self.record.pod.metadata;
        self.cfg
            .status_dir()
            .join(format!("{}_{}.json", m.namespace, m.name))
    }

    /// Update the in-memory view and the status file.
    fn publish(&mut self, problem: Option<String>) {
        let now = now_unix();
        let statuses: Vec<_> = self
            .slots
            .iter()
            .map(|s| {
                let running = s
                    .rec
                    .attempt
                    .as_ref()
                    .is_some_and(|a| a.phase == Phase::Running);
                let backing_off = !running && s.rec.backoff_until.is_some_and(|t| now < t);
                status::container_status(&Observed {
                    name: &s.spec.name,
                    image: &s.spec.image,
                    init: s.init,
                    rec: &s.rec,
                    ready: s.prober.ready(),
                    started: s.prober.started(),
                    backing_off,
                })
            })
            .collect();
        let (mut init, mut apps) = (Vec::new(), Vec::new());
        for (s, st) in self.slots.iter().zip(statuses) {
            if s.init {
                init.push(st)
            } else {
                apps.push(st)
            }
        }
        let app_recs: Vec<&ContainerRecord> = self
            .slots
            .iter()
            .filter(|s| !s.init)
            .map(|s| &s.rec)
            .collect();
        let facts = PodFacts {
            policy: self.policy(),
            ip: self.record.sandbox.as_ref().map(|s| s.ip.as_str()),
            host_ip: &self.cfg.node_ip.to_string(),
            start_time: self.record.start_time.parse().ok(),
            init_failed: self.init_failed,
        };
        let mut st = status::pod_status(&facts, init, apps, &app_recs);
        if let Some(p) = problem {
            st.message = p;
        }
        let mut pod = self.record.pod.clone();
        pod.status = Some(st);
        let views = self.slots.iter().map(view).collect();
        {
            let mut v = lock(&self.handle.view);
            v.pod = pod.clone();
            v.containers = views;
        }
        if let Ok(bytes) = serde_json::to_vec_pretty(&pod) {
            if bytes != self.last_status {
                let t = Instant::now();
                if let Err(e) = state::write_replace(&self.status_file(), &bytes) {
                    self.log(e);
                }
                self.trace("status.write", t);
                self.last_status = bytes;
            }
        }
    }
}

fn view(s: &Slot) -> ContainerView {
    let a = s.rec.attempt.as_ref();
    let running = a.is_some_and(|a| a.phase == Phase::Running);
    ContainerView {
        name: s.spec.name.clone(),
        init: s.init,
        runtime_id: a.map(|a| a.runtime_id.clone()),
        log_path: container::log_path(&s.cdir, a.map(|a| a.number).unwrap_or(0)),
        previous_log_path: a
            .filter(|a| a.number > 0)
            .map(|a| container::log_path(&s.cdir, a.number - 1)),
        pid: a.filter(|_| running).and_then(|a| a.pid),
        running,
    }
}

/// preStop hook (bounded by the deadline), the image's StopSignal or
/// SIGTERM, then SIGKILL of every process once the deadline passes; waits
/// for the shim's exit record (at most 10 s after SIGKILL).
fn stop_attempt(
    cfg: &Config,
    c: &Container,
    cdir: &std::path::Path,
    a: &Attempt,
    deadline: Instant,
) {
    if !container::alive(a) && container::exit_of(cdir, a).is_some() {
        return;
    }
    if let Some(cmd) = c
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        .and_then(|h| h.exec.as_ref())
    {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut args = vec!["exec", a.runtime_id.as_str()];
        args.extend(cmd.command.iter().map(String::as_str));
        if let Err(e) = container::runtime(cfg, &args, left) {
            eprintln!("corral-agent: preStop of {}: {e}", a.runtime_id);
        }
    }
    let sig = c
        .lifecycle
        .as_ref()
        .and_then(|l| l.stop_signal.clone())
        .or_else(|| a.stop_signal.clone())
        .unwrap_or_else(|| "SIGTERM".into());
    let _ = container::signal(cfg, a, &sig, false);
    let gone = |until: Instant| {
        while Instant::now() < until {
            if container::exit_of(cdir, a).is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    };
    if !gone(deadline) {
        let _ = container::signal(cfg, a, "SIGKILL", true);
        gone(Instant::now() + Duration::from_secs(10));
    }
}
