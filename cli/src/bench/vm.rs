//! The virtual machine contender: QEMU's `microvm` machine (no PCI, no
//! ACPI, no option ROMs, no firmware tables to walk) loading an
//! uncompressed kernel and an uncompressed initramfs straight into memory
//! (scripts/build-vm-guest), whose /init does the workload, prints
//! CORRAL-BENCH-OK on the serial console and reboots, which with
//! `reboot=t` and `-no-reboot` makes QEMU exit at once. Timed twice per
//! boot: to the marker on the serial console, and to QEMU's exit.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::args::Workload;
use super::contenders::{Contender, Ctx, Outcome, Series};
use super::proc;

pub const MARKER: &str = "CORRAL-BENCH-OK";
/// How long a KVM boot may take before KVM is judged not to boot guests.
pub const KVM_PROBE: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum VmAccel {
    Kvm,
    Tcg,
}

impl VmAccel {
    pub fn contender(self) -> &'static str {
        match self {
            VmAccel::Kvm => "vm-kvm",
            VmAccel::Tcg => "vm-tcg",
        }
    }
}

/// The guest's kernel command line. Each knob removes boot work that the
/// workload does not need: `quiet` (a serial console under emulation costs
/// per character), no CPU-bug mitigations to patch in, a preset delay-loop
/// calibration, no LSMs, no crypto self-tests, no APIC timer check (it
/// fails under TCG after a 300 ms wait and falls back to the PIT anyway).
pub fn kernel_cmdline(w: Workload) -> String {
    let workload = match w {
        Workload::True => "true",
        Workload::Httpd => "httpd",
    };
    format!(
        "console=ttyS0 quiet panic=-1 reboot=t mitigations=off lpj=65152 noapictimer \
         lsm= security=none cryptomgr.notests workload={workload}"
    )
}

pub struct Guest {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
}

impl Guest {
    pub fn find(dir: &Path) -> Result<Guest> {
        let g = Guest {
            kernel: dir.join("vmlinux"),
            initramfs: dir.join("initramfs.cpio"),
        };
        for f in [&g.kernel, &g.initramfs] {
            if !f.is_file() {
                bail!(
                    "{} is missing: run scripts/build-vm-guest {}",
                    f.display(),
                    dir.display()
                );
            }
        }
        Ok(g)
    }
}

pub fn qemu_args(guest: &Guest, accel: VmAccel, w: Workload) -> Vec<String> {
    let (accel, cpu) = match accel {
        VmAccel::Kvm => ("kvm", "host"),
        VmAccel::Tcg => ("tcg", "qemu64"),
    };
    let mut a: Vec<String> = [
        "-M",
        "microvm,acpi=off,x-option-roms=off,rtc=off,pcie=off",
        "-accel",
        accel,
        "-cpu",
        cpu,
        "-smp",
        "1",
        "-m",
        "256",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push("-kernel".into());
    a.push(guest.kernel.to_string_lossy().into_owned());
    a.push("-initrd".into());
    a.push(guest.initramfs.to_string_lossy().into_owned());
    a.push("-append".into());
    a.push(kernel_cmdline(w));
    a
}

/// One boot's times (ms).
pub struct Boot {
    pub first_output_ms: f64,
    pub exit_ms: f64,
}

pub fn boot(qemu: &Path, args: &[String], timeout: Duration) -> Result<Boot, String> {
    let mut cmd = Command::new(qemu);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", qemu.display()))?;
    let pidfd = proc::pidfd_open(child.id() as i32).map_err(|e| format!("{e:#}"))?;
    proc::watch(child.id() as i32);
    let deadline = started + timeout;
    let mut serial = Vec::new();
    let mut first = None;
    if let Some(mut out) = child.stdout.take() {
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if !proc::wait_readable(&out.as_fd(), left).unwrap_or(false) {
                break;
            }
            match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => serial.extend_from_slice(&buf[..n]),
            }
            if first.is_none() && contains(&serial, MARKER.as_bytes()) {
                first = Some(started.elapsed());
            }
        }
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let exited = proc::wait_readable(&pidfd, left).unwrap_or(false);
    if !exited {
        let _ = child.kill();
    }
    let (status, _) = proc::wait4(child.id() as i32).map_err(|e| format!("{e:#}"))?;
    let exit = started.elapsed();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let tail = |b: &[u8]| -> String {
        let s = String::from_utf8_lossy(b);
        let s = s.trim();
        s[s.len().saturating_sub(200)..].replace('\n', " | ")
    };
    if !exited {
        return Err(format!(
            "qemu killed after {timeout:?}; serial: {}",
            tail(&serial)
        ));
    }
    let code = proc::exit_code(status);
    match first {
        Some(f) if code == 0 => Ok(Boot {
            first_output_ms: f.as_secs_f64() * 1000.0,
            exit_ms: exit.as_secs_f64() * 1000.0,
        }),
        Some(_) => Err(format!("qemu exit {code}: {}", err.trim())),
        None => Err(format!(
            "no {MARKER} on the serial console (qemu exit {code}: {}); serial: {}",
            err.trim(),
            tail(&serial)
        )),
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Does a guest really boot under KVM here? One boot, bounded by
/// KVM_PROBE: some nested hypervisors accept KVM_CREATE_VM and then never
/// run a stock kernel.
pub fn kvm_boots(qemu: &Path, guest: &Guest, w: Workload) -> Result<(), String> {
    if !Path::new("/dev/kvm").exists() {
        return Err("no /dev/kvm".to_string());
    }
    boot(qemu, &qemu_args(guest, VmAccel::Kvm, w), KVM_PROBE).map(|_| ())
}

pub struct VmCase {
    qemu: PathBuf,
    args: Vec<String>,
    accel: VmAccel,
    ctx: Rc<Ctx>,
}

impl VmCase {
    pub fn new(qemu: &Path, guest: &Guest, accel: VmAccel, ctx: Rc<Ctx>) -> VmCase {
        VmCase {
            qemu: qemu.to_path_buf(),
            args: qemu_args(guest, accel, ctx.workload),
            accel,
            ctx,
        }
    }

    /// The command line, for the report.
    pub fn describe(&self) -> String {
        format!("{} {}", self.qemu.display(), self.args.join(" "))
    }
}

impl Contender for VmCase {
    fn series(&self) -> Vec<Series> {
        let name = self.accel.contender().to_string();
        vec![
            Series {
                name: name.clone(),
                mode: "to first output".to_string(),
            },
            Series {
                name,
                mode: "to exit".to_string(),
            },
        ]
    }

    fn run(&mut self, _n: usize) -> Outcome {
        match boot(&self.qemu, &self.args, self.ctx.timeout) {
            Ok(b) => Outcome {
                times_ms: vec![b.first_output_ms, b.exit_ms],
                error: None,
            },
            Err(e) => Outcome::failed(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_names_the_workload() {
        assert!(kernel_cmdline(Workload::True).ends_with("workload=true"));
        assert!(kernel_cmdline(Workload::Httpd).contains("workload=httpd"));
        assert!(kernel_cmdline(Workload::True).contains("console=ttyS0"));
    }

    #[test]
    fn args_pick_the_accelerator() {
        let g = Guest {
            kernel: "/k".into(),
            initramfs: "/i".into(),
        };
        let a = qemu_args(&g, VmAccel::Tcg, Workload::True);
        assert!(a.windows(2).any(|w| w == ["-accel", "tcg"]));
        let a = qemu_args(&g, VmAccel::Kvm, Workload::True);
        assert!(a.windows(2).any(|w| w == ["-cpu", "host"]));
        assert!(a.windows(2).any(|w| w == ["-kernel", "/k"]));
    }

    #[test]
    fn missing_guest_names_the_script() {
        let d = tempfile::tempdir().unwrap();
        let e = Guest::find(d.path()).err().unwrap().to_string();
        assert!(e.contains("build-vm-guest"), "{e}");
    }

    #[test]
    fn boot_fails_without_marker() {
        // /bin/echo stands in for a qemu that prints something else and exits 0.
        let e = boot(
            Path::new("/bin/echo"),
            &["hello".into()],
            Duration::from_secs(5),
        )
        .err()
        .unwrap();
        assert!(
            e.contains("no CORRAL-BENCH-OK") && e.contains("hello"),
            "{e}"
        );
        let b = boot(
            Path::new("/bin/echo"),
            &[MARKER.into()],
            Duration::from_secs(5),
        )
        .unwrap();
        assert!(b.first_output_ms <= b.exit_ms);
    }
}
