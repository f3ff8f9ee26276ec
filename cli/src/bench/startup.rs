//! `corral bench startup`: set up every contender that is installed (a
//! missing one is reported with its reason), run rounds A B C A B C with
//! the first `--warmup` rounds uncounted, sample supervisor memory in one
//! extra untimed run, clean up, report.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use super::args::{Accel, StartupArgs, Workload};
use super::bundle::Bundle;
use super::contenders::{find_program, Contender, Ctx, Missing, Mode, RuntimeCase};
use super::host::Host;
use super::images::{unmount_under, Engine, ImageCase};
use super::memory::Sampler;
use super::report::{Report, SeriesData};
use super::vm::{self, Guest, VmAccel, VmCase};
use super::{plot, proc};
use crate::cli::Global;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C ends the rounds early, but the cleanup still runs.
fn catch_interrupts() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let _ = unsafe { sigaction(sig, &action) };
    }
}

/// Everything set up, torn down on drop (also on an error half-way).
struct Setup {
    cases: Vec<Box<dyn Contender>>,
    missing: Vec<Missing>,
    bundle: Option<Rc<RefCell<Bundle>>>,
    vm_command: Option<String>,
    tmp: tempfile::TempDir,
}

impl Drop for Setup {
    fn drop(&mut self) {
        for c in &mut self.cases {
            c.cleanup();
        }
        if let Some(b) = &self.bundle {
            b.borrow().remove_cgroups();
        }
        proc::drain_orphans(Duration::from_secs(2));
        unmount_under(self.tmp.path());
    }
}

pub fn startup(_g: &Global, a: &StartupArgs, runs: usize) -> Result<i32> {
    if !nix::unistd::geteuid().is_root() {
        bail!("corral bench startup needs root (it creates containers and cgroups)");
    }
    if runs == 0 {
        bail!("-n must be at least 1");
    }
    if let Some(p) = &a.plot {
        plot::check_path(p)?;
    }
    proc::become_subreaper()?;
    catch_interrupts();
    let mut host = Host::probe();
    let mut setup = set_up(a, &mut host)?;
    let mut data = series_of(&setup.cases);
    let interrupted = rounds(a, runs, &mut setup.cases, &mut data);
    if !a.no_memory && !interrupted {
        sample_memory(&mut setup.cases, &mut data);
    }
    let report = Report {
        host,
        workload: a.workload,
        runs,
        warmup: a.warmup,
        series: data.into_iter().flatten().collect(),
        missing: std::mem::take(&mut setup.missing),
        vm_command: setup.vm_command.take(),
        interrupted,
    };
    drop(setup);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report.json())?);
    } else {
        report.print_table(&mut std::io::stdout())?;
    }
    if let Some(p) = &a.plot {
        plot::draw(&report, p)?;
        eprintln!("plot written to {}", p.display());
    }
    Ok(if interrupted { 130 } else { 0 })
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    Ok(l.local_addr().context("local_addr")?.port())
}

fn wanted(a: &StartupArgs, name: &str) -> bool {
    a.only.is_empty()
        || a.only
            .iter()
            .any(|o| o == name || (o == "vm" && name.starts_with("vm")))
}

fn set_up(a: &StartupArgs, host: &mut Host) -> Result<Setup> {
    for o in &a.only {
        if ![
            "corral-runtime",
            "runc",
            "crun",
            "corral-run",
            "podman",
            "vm",
        ]
        .contains(&o.as_str())
        {
            bail!("--only {o}: unknown contender (corral-runtime, runc, crun, corral-run, podman, vm)");
        }
    }
    let tmp = tempfile::Builder::new()
        .prefix("corral-bench-")
        .tempdir()
        .context("create a temporary directory")?;
    let ctx = Rc::new(Ctx {
        workload: a.workload,
        timeout: Duration::from_secs(a.timeout.max(1)),
        port: free_port()?,
        tmp: tmp.path().to_path_buf(),
    });
    let mut s = Setup {
        cases: Vec::new(),
        missing: Vec::new(),
        bundle: None,
        vm_command: None,
        tmp,
    };
    add_runtimes(a, host, &ctx, &mut s)?;
    add_engines(a, &ctx, &mut s);
    if wanted(a, "vm") {
        add_vm(a, host, &ctx, &mut s);
    }
    if s.cases.is_empty() {
        let why: Vec<String> = s
            .missing
            .iter()
            .map(|m| format!("{}: {}", m.name, m.reason))
            .collect();
        bail!("no contender can run here ({})", why.join("; "));
    }
    Ok(s)
}

fn sibling_or_path(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(name)))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

fn add_runtimes(a: &StartupArgs, host: &mut Host, ctx: &Rc<Ctx>, s: &mut Setup) -> Result<()> {
    let corral = a
        .corral_runtime
        .clone()
        .unwrap_or_else(|| sibling_or_path("corral-runtime"));
    let peers = [
        ("corral-runtime", corral),
        ("runc", a.runc.clone()),
        ("crun", a.crun.clone()),
    ];
    for (name, path) in peers {
        if !wanted(a, name) {
            continue;
        }
        let Some(bin) = find_program(&path) else {
            s.missing.push(Missing {
                name: name.to_string(),
                reason: format!("{} not found (not installed?)", path.display()),
            });
            continue;
        };
        if name == "crun" {
            give_hugetlb_to_v1(host);
        }
        let bundle = match &s.bundle {
            Some(b) => b.clone(),
            None => {
                let b = Bundle::create(&ctx.tmp.join("bundle"), a.workload, ctx.port)?;
                let b = Rc::new(RefCell::new(b));
                s.bundle = Some(b.clone());
                b
            }
        };
        for mode in [Mode::Run, Mode::Lifecycle] {
            let case = RuntimeCase::new(name, &bin, mode, bundle.clone(), ctx.clone())?;
            s.cases.push(Box::new(case));
        }
    }
    Ok(())
}

fn add_engines(a: &StartupArgs, ctx: &Rc<Ctx>, s: &mut Setup) {
    for (name, engine) in [("corral-run", Engine::Corral), ("podman", Engine::Podman)] {
        if !wanted(a, name) {
            continue;
        }
        let bin = match engine {
            Engine::Corral => std::env::current_exe().ok(),
            Engine::Podman => find_program(&a.podman),
        };
        let made = match (bin, &a.image_layout) {
            (None, _) => Err(format!("{} not found (not installed?)", a.podman.display())),
            (Some(_), None) => Err(
                "no image: pass --image-layout DIR (CORRAL_BENCH_IMAGE), an OCI layout \
                 such as OUT/busybox from scripts/build-test-images"
                    .to_string(),
            ),
            (Some(bin), Some(layout)) => ImageCase::new(engine, &bin, layout, ctx.clone())
                .map_err(|e| format!("setup: {e:#}")),
        };
        match made {
            Ok(c) => s.cases.push(Box::new(c)),
            Err(reason) => s.missing.push(Missing {
                name: name.to_string(),
                reason,
            }),
        }
    }
}

fn add_vm(a: &StartupArgs, host: &mut Host, ctx: &Rc<Ctx>, s: &mut Setup) {
    let name = match a.vm_accel {
        Accel::Kvm => "vm-kvm",
        _ => "vm-tcg",
    };
    let missing = |reason: String| Missing {
        name: name.to_string(),
        reason,
    };
    let Some(qemu) = find_program(&a.qemu) else {
        s.missing.push(missing(format!(
            "{} not found (not installed?)",
            a.qemu.display()
        )));
        return;
    };
    let Some(dir) = &a.vm_guest else {
        s.missing.push(missing(
            "no guest: run scripts/build-vm-guest DIR and pass --vm-guest DIR (CORRAL_BENCH_VM_GUEST)"
                .to_string(),
        ));
        return;
    };
    let guest = match Guest::find(dir) {
        Ok(g) => g,
        Err(e) => {
            s.missing.push(missing(format!("{e:#}")));
            return;
        }
    };
    let accel = choose_accel(a.vm_accel, &qemu, &guest, a.workload, host);
    let case = VmCase::new(&qemu, &guest, accel, ctx.clone());
    s.vm_command = Some(case.describe());
    s.cases.push(Box::new(case));
}

fn choose_accel(want: Accel, qemu: &Path, guest: &Guest, w: Workload, host: &mut Host) -> VmAccel {
    match want {
        Accel::Kvm => {
            host.kvm = "KVM forced by --vm-accel kvm".to_string();
            VmAccel::Kvm
        }
        Accel::Tcg => {
            host.kvm = format!("{}; TCG forced by --vm-accel tcg", host.kvm);
            VmAccel::Tcg
        }
        Accel::Auto => match vm::kvm_boots(qemu, guest, w) {
            Ok(()) => {
                host.kvm = "yes: a guest booted under /dev/kvm".to_string();
                VmAccel::Kvm
            }
            Err(e) => {
                let e: String = e.chars().take(120).collect();
                host.kvm = format!(
                    "no: a guest did not boot under /dev/kvm within {:?} ({e}); the VM uses TCG emulation",
                    vm::KVM_PROBE
                );
                VmAccel::Tcg
            }
        },
    }
}

/// crun 1.8 refuses a hybrid host whose cgroup2 mount has controllers; it
/// accepts it once hugetlb has a v1 hierarchy (scripts/bench-runtime did
/// the same). Said in the report's notes.
fn give_hugetlb_to_v1(host: &mut Host) {
    let ctl =
        std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers").unwrap_or_default();
    if ctl.trim().is_empty() || is_mount_point("/sys/fs/cgroup/hugetlb") {
        return;
    }
    let target = Path::new("/sys/fs/cgroup/hugetlb");
    let done = std::fs::create_dir_all(target)
        .map_err(|e| format!("mkdir {}: {e}", target.display()))
        .and_then(|_| {
            nix::mount::mount(
                Some("cgroup"),
                target,
                Some("cgroup"),
                nix::mount::MsFlags::empty(),
                Some("hugetlb"),
            )
            .map_err(|e| format!("mount -t cgroup -o hugetlb {}: {e}", target.display()))
        });
    host.notes.push(match done {
        Ok(()) => format!(
            "mounted a v1 hugetlb hierarchy at {} so that crun 1.8 accepts this hybrid host",
            target.display()
        ),
        Err(e) => format!("crun may refuse this hybrid host: {e}"),
    });
}

fn is_mount_point(path: &str) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| m.lines().any(|l| l.split(' ').nth(4) == Some(path)))
        .unwrap_or(false)
}

fn series_of(cases: &[Box<dyn Contender>]) -> Vec<Vec<SeriesData>> {
    cases
        .iter()
        .map(|c| c.series().into_iter().map(SeriesData::new).collect())
        .collect()
}

/// The timed rounds. Returns true when interrupted.
fn rounds(
    a: &StartupArgs,
    runs: usize,
    cases: &mut [Box<dyn Contender>],
    data: &mut [Vec<SeriesData>],
) -> bool {
    let total = (a.warmup + runs) * cases.len();
    let pb = ProgressBar::new(total as u64);
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} runs  {elapsed}  {msg}") {
        pb.set_style(style);
    }
    let mut n = 0;
    for round in 0..a.warmup + runs {
        let warm = round < a.warmup;
        for (case, series) in cases.iter_mut().zip(data.iter_mut()) {
            if INTERRUPTED.load(Ordering::SeqCst) {
                pb.abandon_with_message("interrupted: cleaning up");
                return true;
            }
            pb.set_message(format!(
                "{}{}",
                series[0].series.name,
                if warm { " (warm-up)" } else { "" }
            ));
            n += 1;
            let out = case.run(n);
            pb.inc(1);
            if let Some(e) = &out.error {
                pb.println(format!(
                    "{} {}{}: FAILED: {e}",
                    series[0].series.name,
                    series[0].series.mode,
                    if warm { " (warm-up, not counted)" } else { "" }
                ));
            }
            if !warm {
                for (i, s) in series.iter_mut().enumerate() {
                    s.record(&out, i);
                }
            }
        }
    }
    pb.finish_and_clear();
    false
}

/// One extra untimed run per contender, its processes' memory watched.
fn sample_memory(cases: &mut [Box<dyn Contender>], data: &mut [Vec<SeriesData>]) {
    for (i, (case, series)) in cases.iter_mut().zip(data.iter_mut()).enumerate() {
        let sampler = case
            .supervisor()
            .map(|(comm, needle)| (comm, Sampler::start(comm, needle)));
        proc::set_watching(true);
        let out = case.run(1_000_000 + i);
        proc::set_watching(false);
        let mut memory: Vec<(String, Option<u64>)> = Vec::new();
        for (name, kib) in proc::take_watched() {
            match memory.iter_mut().find(|(n, _)| *n == name) {
                Some((_, k)) => *k = (*k).max(Some(kib)),
                None => memory.push((name, Some(kib))),
            }
        }
        if let Some((comm, s)) = sampler {
            memory.push((comm.to_string(), s.finish()));
        }
        for s in series.iter_mut() {
            s.memory = memory.clone();
            s.memory_error = out.error.clone();
        }
    }
}
