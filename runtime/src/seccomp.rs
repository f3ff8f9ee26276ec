//! Seccomp: check an OCI `linux.seccomp` profile when the config is loaded,
//! and compile it with libseccomp and load it in the container init right
//! before execve.
//!
//! Compatibility with runc: syscall names this libseccomp does not know are
//! skipped (the profile may name syscalls of newer kernels); rules whose
//! action equals the default action are skipped (libseccomp refuses them);
//! conditions sharing an argument index become separate rules (OR), others
//! one rule (AND); for `SCMP_CMP_MASKED_EQ`, `value` is the mask and
//! `valueTwo` the value compared.

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use nix::errno::Errno;
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The profile is inconsistent (`field` is relative to `linux.seccomp`).
    #[error("{field}: {msg}")]
    Invalid { field: String, msg: String },

    #[error(
        "{field}: SCMP_ACT_NOTIFY (seccomp user notification) is not supported by corral-runtime"
    )]
    NotifyUnsupported { field: String },

    /// libseccomp refused a step of building the filter.
    #[error("seccomp: {step}: {source}")]
    Lib {
        step: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },

    #[error("seccomp: {step}: {source}")]
    Io {
        step: &'static str,
        source: std::io::Error,
    },

    /// The kernel refused the compiled filter.
    #[error("seccomp: loading the filter: {errno}{hint}")]
    Load { errno: Errno, hint: &'static str },
}

fn invalid(field: impl Into<String>, msg: impl Into<String>) -> SeccompError {
    SeccompError::Invalid {
        field: field.into(),
        msg: msg.into(),
    }
}

fn lib(step: impl Into<String>) -> impl FnOnce(libseccomp::error::SeccompError) -> SeccompError {
    let step = step.into();
    move |source| SeccompError::Lib { step, source }
}

/// The syscall argument count of every Linux ABI.
const MAX_ARGS: usize = 6;

/// Every architecture of the OCI spec, for `supported_archs`.
#[rustfmt::skip]
const ARCHS: &[Arch] = &[
    Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32, Arch::ScmpArchAarch64,
    Arch::ScmpArchArm, Arch::ScmpArchMips, Arch::ScmpArchMips64, Arch::ScmpArchMips64n32,
    Arch::ScmpArchMipsel, Arch::ScmpArchMipsel64, Arch::ScmpArchMipsel64n32, Arch::ScmpArchPpc,
    Arch::ScmpArchPpc64, Arch::ScmpArchPpc64le, Arch::ScmpArchS390, Arch::ScmpArchS390x,
    Arch::ScmpArchParisc, Arch::ScmpArchParisc64, Arch::ScmpArchRiscv64,
    Arch::ScmpArchLoongarch64, Arch::ScmpArchM68k, Arch::ScmpArchSh, Arch::ScmpArchSheb,
];

const FLAGS: &[LinuxSeccompFilterFlag] = &[
    LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
    LinuxSeccompFilterFlag::SeccompFilterFlagLog,
    LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
    LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
];

fn arch_entry(a: Arch) -> (&'static str, ScmpArch) {
    use Arch as A;
    match a {
        A::ScmpArchNative => ("SCMP_ARCH_NATIVE", ScmpArch::Native),
        A::ScmpArchX86 => ("SCMP_ARCH_X86", ScmpArch::X86),
        A::ScmpArchX86_64 => ("SCMP_ARCH_X86_64", ScmpArch::X8664),
        A::ScmpArchX32 => ("SCMP_ARCH_X32", ScmpArch::X32),
        A::ScmpArchArm => ("SCMP_ARCH_ARM", ScmpArch::Arm),
        A::ScmpArchAarch64 => ("SCMP_ARCH_AARCH64", ScmpArch::Aarch64),
        A::ScmpArchMips => ("SCMP_ARCH_MIPS", ScmpArch::Mips),
        A::ScmpArchMips64 => ("SCMP_ARCH_MIPS64", ScmpArch::Mips64),
        A::ScmpArchMips64n32 => ("SCMP_ARCH_MIPS64N32", ScmpArch::Mips64N32),
        A::ScmpArchMipsel => ("SCMP_ARCH_MIPSEL", ScmpArch::Mipsel),
        A::ScmpArchMipsel64 => ("SCMP_ARCH_MIPSEL64", ScmpArch::Mipsel64),
        A::ScmpArchMipsel64n32 => ("SCMP_ARCH_MIPSEL64N32", ScmpArch::Mipsel64N32),
        A::ScmpArchPpc => ("SCMP_ARCH_PPC", ScmpArch::Ppc),
        A::ScmpArchPpc64 => ("SCMP_ARCH_PPC64", ScmpArch::Ppc64),
        A::ScmpArchPpc64le => ("SCMP_ARCH_PPC64LE", ScmpArch::Ppc64Le),
        A::ScmpArchS390 => ("SCMP_ARCH_S390", ScmpArch::S390),
        A::ScmpArchS390x => ("SCMP_ARCH_S390X", ScmpArch::S390X),
        A::ScmpArchParisc => ("SCMP_ARCH_PARISC", ScmpArch::Parisc),
        A::ScmpArchParisc64 => ("SCMP_ARCH_PARISC64", ScmpArch::Parisc64),
        A::ScmpArchRiscv64 => ("SCMP_ARCH_RISCV64", ScmpArch::Riscv64),
        A::ScmpArchLoongarch64 => ("SCMP_ARCH_LOONGARCH64", ScmpArch::Loongarch64),
        A::ScmpArchM68k => ("SCMP_ARCH_M68K", ScmpArch::M68k),
        A::ScmpArchSh => ("SCMP_ARCH_SH", ScmpArch::Sh),
        A::ScmpArchSheb => ("SCMP_ARCH_SHEB", ScmpArch::Sheb),
    }
}

fn flag_name(f: LinuxSeccompFilterFlag) -> &'static str {
    use LinuxSeccompFilterFlag as F;
    match f {
        F::SeccompFilterFlagTsync => "SECCOMP_FILTER_FLAG_TSYNC",
        F::SeccompFilterFlagLog => "SECCOMP_FILTER_FLAG_LOG",
        F::SeccompFilterFlagSpecAllow => "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        F::SeccompFilterFlagWaitKillableRecv => "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
    }
}

/// Check the profile at config load: everything `load` would reject for
/// reasons other than the kernel refusing the finished filter.
pub fn validate(s: &LinuxSeccomp) -> Result<(), SeccompError> {
    let notify = uses_notify(s);
    if notify && s.listener_path().is_none() {
        return Err(invalid(
            "listenerPath",
            "SCMP_ACT_NOTIFY is used, so listenerPath must name the seccomp agent's socket",
        ));
    }
    action(s.default_action(), s.default_errno_ret(), "defaultAction")?;
    let mut probe = ScmpFilterContext::new(ScmpAction::Allow).map_err(lib("creating a filter"))?;
    for (i, a) in s.architectures().iter().flatten().enumerate() {
        add_arch(&mut probe, *a).map_err(|e| with_field(e, format!("architectures[{i}]")))?;
    }
    for (i, f) in s.flags().iter().flatten().enumerate() {
        set_flag(&mut probe, *f).map_err(|e| with_field(e, format!("flags[{i}]")))?;
    }
    for (i, sc) in s.syscalls().iter().flatten().enumerate() {
        validate_syscall(sc, &format!("syscalls[{i}]"))?;
    }
    Ok(())
}

fn with_field(e: SeccompError, field: String) -> SeccompError {
    match e {
        SeccompError::Lib { step, source } => invalid(field, format!("{step}: {source}")),
        other => other,
    }
}

fn uses_notify(s: &LinuxSeccomp) -> bool {
    s.default_action() == LinuxSeccompAction::ScmpActNotify
        || s.syscalls()
            .iter()
            .flatten()
            .any(|sc| sc.action() == LinuxSeccompAction::ScmpActNotify)
}

fn validate_syscall(sc: &LinuxSyscall, field: &str) -> Result<(), SeccompError> {
    if sc.names().is_empty() {
        return Err(invalid(
            format!("{field}.names"),
            "must name at least one syscall",
        ));
    }
    action(sc.action(), sc.errno_ret(), &format!("{field}.action"))?;
    for (j, a) in sc.args().iter().flatten().enumerate() {
        if a.index() >= MAX_ARGS {
            return Err(invalid(
                format!("{field}.args[{j}].index"),
                format!(
                    "{} is out of range: syscalls have arguments 0 to {}",
                    a.index(),
                    MAX_ARGS - 1
                ),
            ));
        }
    }
    Ok(())
}

/// Translate an OCI action; `errno_ret` is only meaningful for ERRNO (the
/// errno returned, EPERM when absent) and TRACE (the tracer's message).
fn action(
    act: LinuxSeccompAction,
    errno_ret: Option<u32>,
    field: &str,
) -> Result<ScmpAction, SeccompError> {
    use LinuxSeccompAction as A;
    let ret = match errno_ret {
        None => libc::EPERM as u16,
        Some(v) => u16::try_from(v).map_err(|_| {
            invalid(
                field,
                format!("errnoRet {v} does not fit the 16-bit seccomp return data"),
            )
        })?,
    };
    if errno_ret.is_some() && !matches!(act, A::ScmpActErrno | A::ScmpActTrace) {
        return Err(invalid(
            field,
            format!("errnoRet is set but {act} takes no errno (only SCMP_ACT_ERRNO and SCMP_ACT_TRACE do)"),
        ));
    }
    Ok(match act {
        A::ScmpActKill | A::ScmpActKillThread => ScmpAction::KillThread,
        A::ScmpActKillProcess => ScmpAction::KillProcess,
        A::ScmpActTrap => ScmpAction::Trap,
        A::ScmpActErrno => ScmpAction::Errno(i32::from(ret)),
        A::ScmpActTrace => ScmpAction::Trace(ret),
        A::ScmpActLog => ScmpAction::Log,
        A::ScmpActAllow => ScmpAction::Allow,
        A::ScmpActNotify => {
            return Err(SeccompError::NotifyUnsupported {
                field: field.to_string(),
            })
        }
    })
}

fn add_arch(ctx: &mut ScmpFilterContext, a: Arch) -> Result<(), SeccompError> {
    let (name, scmp) = arch_entry(a);
    ctx.add_arch(scmp).map_err(lib(format!(
        "architecture {name} (unknown to this libseccomp, or of another byte order than this host)"
    )))?;
    Ok(())
}

fn set_flag(ctx: &mut ScmpFilterContext, f: LinuxSeccompFilterFlag) -> Result<(), SeccompError> {
    use LinuxSeccompFilterFlag as F;
    let step = format!(
        "flag {} (not supported by this libseccomp or kernel)",
        flag_name(f)
    );
    match f {
        F::SeccompFilterFlagTsync => ctx.set_ctl_tsync(true),
        F::SeccompFilterFlagLog => ctx.set_ctl_log(true),
        F::SeccompFilterFlagSpecAllow => ctx.set_ctl_ssb(true),
        F::SeccompFilterFlagWaitKillableRecv => ctx.set_ctl_waitkill(true),
    }
    .map_err(lib(step))?;
    Ok(())
}

/// Build the filter for `s` and load it into the calling process.
///
/// The filter does not set no_new_privs (libseccomp would by default): the
/// caller applies `process.noNewPrivileges` itself. Without no_new_privs the
/// kernel only accepts a filter from a process holding CAP_SYS_ADMIN, so the
/// caller must then load before dropping capabilities.
pub fn load(s: &LinuxSeccomp) -> Result<(), SeccompError> {
    compile(s)?.load()
}

/// A profile compiled to BPF. Compiling a large profile takes milliseconds
/// (libseccomp); loading the result is one seccomp(2) call, so a caller can
/// compile before forking the container init, or keep the result for the
/// next container with the same profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledFilter {
    /// `struct sock_filter` instructions in host byte order, 8 bytes each.
    bpf: Vec<u8>,
    /// SECCOMP_FILTER_FLAG_* for seccomp(2).
    flags: libc::c_ulong,
}

/// Compile `s` to BPF without loading it.
pub fn compile(s: &LinuxSeccomp) -> Result<CompiledFilter, SeccompError> {
    let ctx = build(s)?;
    let io = |step: &'static str| move |source: std::io::Error| SeccompError::Io { step, source };
    let fd = memfd_create(c"corral-seccomp-bpf", MemFdCreateFlag::MFD_CLOEXEC)
        .map_err(|e| io("creating a memfd for the BPF program")(e.into()))?;
    ctx.export_bpf(&fd)
        .map_err(lib("exporting the filter as BPF"))?;
    let mut f = File::from(fd);
    let mut bpf = Vec::new();
    f.seek(SeekFrom::Start(0))
        .and_then(|_| f.read_to_end(&mut bpf))
        .map_err(io("reading the BPF program back"))?;
    let flags = s
        .flags()
        .iter()
        .flatten()
        .fold(0, |acc, f| acc | kernel_flag(*f));
    Ok(CompiledFilter { bpf, flags })
}

fn kernel_flag(f: LinuxSeccompFilterFlag) -> libc::c_ulong {
    use LinuxSeccompFilterFlag as F;
    match f {
        F::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
        F::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
        F::SeccompFilterFlagSpecAllow => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
        F::SeccompFilterFlagWaitKillableRecv => libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
    }
}

impl CompiledFilter {
    pub fn instructions(&self) -> usize {
        self.bpf.len() / 8
    }

    /// Install the filter on the calling process (see `load` about
    /// no_new_privs).
    pub fn load(&self) -> Result<(), SeccompError> {
        let mut insns: Vec<libc::sock_filter> = self
            .bpf
            .chunks_exact(8)
            .map(|c| libc::sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        let len = u16::try_from(insns.len()).map_err(|_| SeccompError::Load {
            errno: Errno::EINVAL,
            hint: " (more BPF instructions than one filter can hold)",
        })?;
        let prog = libc::sock_fprog {
            len,
            filter: insns.as_mut_ptr(),
        };
        // SAFETY: `prog` points at `len` initialized instructions that live
        // until the call returns; the kernel copies them.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        match r {
            0 => Ok(()),
            // With TSYNC, a positive result is a thread that could not sync.
            tid if tid > 0 => Err(SeccompError::Load {
                errno: Errno::ESRCH,
                hint: " (SECCOMP_FILTER_FLAG_TSYNC: another thread could not be synchronized)",
            }),
            _ => Err(load_error(Errno::last())),
        }
    }
}

fn load_error(errno: Errno) -> SeccompError {
    let hint = if errno == Errno::EACCES {
        " (without no_new_privs, loading a filter needs CAP_SYS_ADMIN)"
    } else {
        ""
    };
    SeccompError::Load { errno, hint }
}

/// Compile the profile into a libseccomp filter context.
fn build(s: &LinuxSeccomp) -> Result<ScmpFilterContext, SeccompError> {
    let default = action(s.default_action(), s.default_errno_ret(), "defaultAction")?;
    let mut ctx = ScmpFilterContext::new(default).map_err(lib("creating the filter"))?;
    for a in s.architectures().iter().flatten() {
        add_arch(&mut ctx, *a)?;
    }
    for f in s.flags().iter().flatten() {
        set_flag(&mut ctx, *f)?;
    }
    for (i, sc) in s.syscalls().iter().flatten().enumerate() {
        add_syscall_rules(&mut ctx, sc, default, &format!("syscalls[{i}]"))?;
    }
    Ok(ctx)
}

fn add_syscall_rules(
    ctx: &mut ScmpFilterContext,
    sc: &LinuxSyscall,
    default: ScmpAction,
    field: &str,
) -> Result<(), SeccompError> {
    validate_syscall(sc, field)?;
    let act = action(sc.action(), sc.errno_ret(), &format!("{field}.action"))?;
    if act == default {
        return Ok(());
    }
    let args = sc.args().as_deref().unwrap_or_default();
    let conds: Vec<ScmpArgCompare> = args.iter().map(condition).collect();
    for name in sc.names() {
        // Unknown here means unknown to this libseccomp: probably a newer
        // kernel's syscall, which then cannot be reached anyway.
        let Ok(nr) = ScmpSyscall::from_name(name) else {
            continue;
        };
        let rule_err = |e| rule_error(field, name, e);
        if conds.is_empty() {
            ctx.add_rule(act, nr).map_err(rule_err)?;
        } else if shares_an_index(args) {
            for c in &conds {
                ctx.add_rule_conditional(act, nr, std::slice::from_ref(c))
                    .map_err(rule_err)?;
            }
        } else {
            ctx.add_rule_conditional(act, nr, &conds)
                .map_err(rule_err)?;
        }
    }
    Ok(())
}

fn rule_error(field: &str, name: &str, e: libseccomp::error::SeccompError) -> SeccompError {
    if e.errno() == Some(libseccomp::error::SeccompErrno::EEXIST) {
        return invalid(
            field,
            format!(
                "syscall {name} already has a rule with the same conditions and another action"
            ),
        );
    }
    lib(format!("{field}: adding the rule for syscall {name}"))(e)
}

fn shares_an_index(args: &[LinuxSeccompArg]) -> bool {
    let mut seen = [false; MAX_ARGS];
    args.iter().any(|a| {
        let i = a.index().min(MAX_ARGS - 1);
        std::mem::replace(&mut seen[i], true)
    })
}

fn condition(a: &LinuxSeccompArg) -> ScmpArgCompare {
    use LinuxSeccompOperator as O;
    let (op, datum) = match a.op() {
        O::ScmpCmpNe => (ScmpCompareOp::NotEqual, a.value()),
        O::ScmpCmpLt => (ScmpCompareOp::Less, a.value()),
        O::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, a.value()),
        O::ScmpCmpEq => (ScmpCompareOp::Equal, a.value()),
        O::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, a.value()),
        O::ScmpCmpGt => (ScmpCompareOp::Greater, a.value()),
        O::ScmpCmpMaskedEq => (
            ScmpCompareOp::MaskedEqual(a.value()),
            a.value_two().unwrap_or(0),
        ),
    };
    // validate_syscall has bounded the index to 0..6.
    ScmpArgCompare::new(a.index() as u32, op, datum)
}

/// Actions `load` accepts (SCMP_ACT_NOTIFY is not implemented).
pub fn supported_actions() -> Vec<&'static str> {
    vec![
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_LOG",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_TRAP",
    ]
}

pub fn supported_operators() -> Vec<&'static str> {
    vec![
        "SCMP_CMP_EQ",
        "SCMP_CMP_GE",
        "SCMP_CMP_GT",
        "SCMP_CMP_LE",
        "SCMP_CMP_LT",
        "SCMP_CMP_MASKED_EQ",
        "SCMP_CMP_NE",
    ]
}

/// Architectures the linked libseccomp can put in a filter on this host
/// (one filter holds architectures of a single byte order).
pub fn supported_archs() -> Vec<&'static str> {
    let Ok(mut probe) = ScmpFilterContext::new(ScmpAction::Allow) else {
        return Vec::new();
    };
    ARCHS
        .iter()
        .filter(|a| add_arch(&mut probe, **a).is_ok())
        .map(|a| arch_entry(*a).0)
        .collect()
}

/// Filter flags both the linked libseccomp and the running kernel support.
pub fn supported_flags() -> Vec<&'static str> {
    let Ok(mut probe) = ScmpFilterContext::new(ScmpAction::Allow) else {
        return Vec::new();
    };
    FLAGS
        .iter()
        .filter(|f| set_flag(&mut probe, **f).is_ok())
        .map(|f| flag_name(*f))
        .collect()
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Run a check in a forked child so that process-wide state (seccomp
    //! filters, capabilities, rlimits) never leaks into the test harness.

    use std::io::{Read, Write};

    /// Fork, run `f` in the child, and return its error message if it
    /// failed (or panicked, or died from a signal).
    pub fn in_child(f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
        let (rd, wr) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
        // SAFETY: the child only runs `f` and then `_exit`s, never returning
        // into the (multi-threaded) test harness; glibc keeps malloc usable
        // after fork.
        match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
            nix::unistd::ForkResult::Child => {
                drop(rd);
                let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                    .unwrap_or_else(|_| Err("child panicked".into()));
                let code = match res {
                    Ok(()) => 0,
                    Err(msg) => {
                        let _ = std::fs::File::from(wr).write_all(msg.as_bytes());
                        1
                    }
                };
                // SAFETY: _exit skips atexit handlers and destructors that
                // belong to the parent's copy of the process state.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(wr);
                let mut msg = String::new();
                let _ = std::fs::File::from(rd).read_to_string(&mut msg);
                let status =
                    nix::sys::wait::waitpid(child, None).map_err(|e| format!("waitpid: {e}"))?;
                match status {
                    nix::sys::wait::WaitStatus::Exited(_, 0) => Ok(()),
                    nix::sys::wait::WaitStatus::Exited(_, _) => Err(msg),
                    other => Err(format!("child ended with {other:?}: {msg}")),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::in_child;
    use super::*;

    fn profile(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).expect("test profile parses")
    }

    #[test]
    fn arch_names_match_the_spec_and_the_list_is_complete() {
        let all: Vec<Arch> = serde_json::from_str(
            r#"["SCMP_ARCH_NATIVE","SCMP_ARCH_X86","SCMP_ARCH_X86_64","SCMP_ARCH_X32",
            "SCMP_ARCH_ARM","SCMP_ARCH_AARCH64","SCMP_ARCH_MIPS","SCMP_ARCH_MIPS64",
            "SCMP_ARCH_MIPS64N32","SCMP_ARCH_MIPSEL","SCMP_ARCH_MIPSEL64","SCMP_ARCH_MIPSEL64N32",
            "SCMP_ARCH_PPC","SCMP_ARCH_PPC64","SCMP_ARCH_PPC64LE","SCMP_ARCH_S390",
            "SCMP_ARCH_S390X","SCMP_ARCH_PARISC","SCMP_ARCH_PARISC64","SCMP_ARCH_RISCV64",
            "SCMP_ARCH_LOONGARCH64","SCMP_ARCH_M68K","SCMP_ARCH_SH","SCMP_ARCH_SHEB"]"#,
        )
        .expect("arch names parse");
        for a in &all {
            let json = serde_json::to_string(a).expect("serializes");
            let (name, _) = arch_entry(*a);
            assert_eq!(json, format!("\"{name}\""));
            assert!(
                *a == Arch::ScmpArchNative || ARCHS.contains(a),
                "{name} missing"
            );
        }
    }

    #[test]
    fn validate_accepts_a_plain_profile_and_skips_unknown_syscalls() {
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,
            "architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86"],
            "syscalls":[{"names":["read","no_such_syscall_xyz"],"action":"SCMP_ACT_ALLOW"},
            {"names":["socket"],"action":"SCMP_ACT_ERRNO","errnoRet":22,
             "args":[{"index":0,"value":16,"op":"SCMP_CMP_EQ"}]}]}"#,
        );
        validate(&p).expect("valid profile");
        build(&p).expect("profile builds");
    }

    #[test]
    fn validate_rejects_errno_ret_on_non_errno_action() {
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW",
            "syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_KILL","errnoRet":1}]}"#,
        );
        let e = validate(&p).expect_err("errnoRet on KILL").to_string();
        assert!(
            e.contains("syscalls[0].action") && e.contains("errnoRet"),
            "{e}"
        );
        let p = profile(r#"{"defaultAction":"SCMP_ACT_ALLOW","defaultErrnoRet":1}"#);
        let e = validate(&p)
            .expect_err("defaultErrnoRet on ALLOW")
            .to_string();
        assert!(e.contains("defaultAction"), "{e}");
    }

    #[test]
    fn validate_rejects_notify_bad_index_empty_names_big_errno() {
        let p = profile(r#"{"defaultAction":"SCMP_ACT_NOTIFY"}"#);
        let e = validate(&p)
            .expect_err("notify without listener")
            .to_string();
        assert!(e.contains("listenerPath"), "{e}");
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/run/agent.sock",
            "syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]}"#,
        );
        let e = validate(&p).expect_err("notify").to_string();
        assert!(
            e.contains("not supported") && e.contains("syscalls[0]"),
            "{e}"
        );
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],
            "action":"SCMP_ACT_ERRNO","args":[{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#,
        );
        let e = validate(&p).expect_err("index 6").to_string();
        assert!(e.contains("syscalls[0].args[0].index"), "{e}");
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":[],"action":"SCMP_ACT_ERRNO"}]}"#,
        );
        assert!(validate(&p).is_err());
        let p = profile(r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":70000}"#);
        assert!(validate(&p).is_err());
    }

    #[test]
    fn conflicting_rules_are_named() {
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["mkdir"],"action":"SCMP_ACT_ERRNO","args":[{"index":1,"value":1,"op":"SCMP_CMP_EQ"}]},
            {"names":["mkdir"],"action":"SCMP_ACT_KILL","args":[{"index":1,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#,
        );
        let e = build(&p).map(drop).expect_err("conflict").to_string();
        assert!(
            e.contains("syscalls[1]") && e.contains("mkdir") && e.contains("another action"),
            "{e}"
        );
    }

    #[test]
    fn feature_lists_cover_this_host() {
        assert!(supported_archs().contains(&"SCMP_ARCH_X86_64"));
        assert!(supported_archs().contains(&"SCMP_ARCH_X32"));
        assert!(supported_flags().contains(&"SECCOMP_FILTER_FLAG_TSYNC"));
        assert!(supported_flags().contains(&"SECCOMP_FILTER_FLAG_LOG"));
        assert_eq!(supported_operators().len(), 7);
        assert!(!supported_actions().contains(&"SCMP_ACT_NOTIFY"));
    }

    fn errno_of(ret: libc::c_long) -> i32 {
        if ret == -1 {
            Errno::last_raw()
        } else {
            0
        }
    }

    #[test]
    fn loaded_filter_denies_mkdir_with_errno() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("denied");
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"},
            {"names":["rmdir"],"action":"SCMP_ACT_ERRNO","errnoRet":122}]}"#,
        );
        in_child(|| {
            nix::sys::prctl::set_no_new_privs().map_err(|e| format!("nnp: {e}"))?;
            load(&p).map_err(|e| e.to_string())?;
            let path = std::ffi::CString::new(target.as_os_str().as_encoded_bytes())
                .map_err(|e| e.to_string())?;
            // SAFETY: plain syscalls on a valid NUL-terminated path.
            let mk = errno_of(unsafe { libc::syscall(libc::SYS_mkdir, path.as_ptr(), 0o755) });
            let rm = errno_of(unsafe { libc::syscall(libc::SYS_rmdir, path.as_ptr()) });
            if mk != libc::EPERM || rm != 122 {
                return Err(format!(
                    "mkdir errno {mk} (want EPERM), rmdir errno {rm} (want 122)"
                ));
            }
            Ok(())
        })
        .expect("child checks");
        assert!(!target.exists());
    }

    #[test]
    fn loaded_filter_honours_arg_conditions() {
        // personality(0xffffffff) only queries; socket type masked with 0xf
        // leaves SOCK_DGRAM out of SOCK_DGRAM|SOCK_CLOEXEC.
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["personality"],"action":"SCMP_ACT_ERRNO","errnoRet":13,
             "args":[{"index":0,"value":4294967295,"op":"SCMP_CMP_EQ"}]},
            {"names":["socket"],"action":"SCMP_ACT_ERRNO","errnoRet":97,
             "args":[{"index":0,"value":1,"op":"SCMP_CMP_EQ"},
                     {"index":1,"value":15,"valueTwo":2,"op":"SCMP_CMP_MASKED_EQ"}]},
            {"names":["getpriority"],"action":"SCMP_ACT_ERRNO","errnoRet":5,
             "args":[{"index":1,"value":7,"op":"SCMP_CMP_EQ"},
                     {"index":1,"value":8,"op":"SCMP_CMP_EQ"}]}]}"#,
        );
        in_child(|| {
            nix::sys::prctl::set_no_new_privs().map_err(|e| format!("nnp: {e}"))?;
            load(&p).map_err(|e| e.to_string())?;
            // SAFETY: syscalls with scalar arguments only.
            let sys = |nr, a: libc::c_long, b: libc::c_long| unsafe {
                let r = libc::syscall(nr, a, b, 0 as libc::c_long);
                if r >= 0 {
                    libc::close(r as i32);
                }
                errno_of(r)
            };
            // (call, errno it got, errno the filter returns, whether it applies)
            let checks = [
                (
                    "personality(query)",
                    sys(libc::SYS_personality, 0xffff_ffff, 0),
                    13,
                    true,
                ),
                (
                    "personality(0)",
                    sys(libc::SYS_personality, 0, 0),
                    13,
                    false,
                ),
                (
                    "unix dgram",
                    sys(
                        libc::SYS_socket,
                        1,
                        (libc::SOCK_DGRAM | libc::SOCK_CLOEXEC) as _,
                    ),
                    97,
                    true,
                ),
                (
                    "unix stream",
                    sys(libc::SYS_socket, 1, libc::SOCK_STREAM as _),
                    97,
                    false,
                ),
                // 3 & 0xf != 2 but 3 & 2 == 2: catches mask and value swapped.
                ("unix type 3", sys(libc::SYS_socket, 1, 3), 97, false),
                (
                    "inet dgram",
                    sys(libc::SYS_socket, 2, libc::SOCK_DGRAM as _),
                    97,
                    false,
                ),
                (
                    "getpriority who=7",
                    sys(libc::SYS_getpriority, 0, 7),
                    5,
                    true,
                ),
                (
                    "getpriority who=8",
                    sys(libc::SYS_getpriority, 0, 8),
                    5,
                    true,
                ),
                (
                    "getpriority who=0",
                    sys(libc::SYS_getpriority, 0, 0),
                    5,
                    false,
                ),
            ];
            let bad: Vec<String> = checks
                .iter()
                .filter(|(_, got, errno, applies)| (got == errno) != *applies)
                .map(|(what, got, errno, applies)| {
                    format!("{what}: errno {got}, filter errno {errno} should apply: {applies}")
                })
                .collect();
            if bad.is_empty() {
                Ok(())
            } else {
                Err(bad.join("; "))
            }
        })
        .expect("child checks");
    }

    /// The profile podman sends by default, derived the way podman derives
    /// it from containers-common's seccomp.json: x86_64 with its x86 and
    /// x32 sub-architectures, podman's default capabilities.
    fn podman_default_profile() -> Option<LinuxSeccomp> {
        const SRC: &str = "/usr/share/containers/seccomp.json";
        const CAPS: &[&str] = &[
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_FOWNER",
            "CAP_FSETID",
            "CAP_KILL",
            "CAP_NET_BIND_SERVICE",
            "CAP_SETFCAP",
            "CAP_SETGID",
            "CAP_SETPCAP",
            "CAP_SETUID",
            "CAP_SYS_CHROOT",
        ];
        let raw = std::fs::read_to_string(SRC).ok()?;
        let v: serde_json::Value = serde_json::from_str(&raw).expect("seccomp.json parses");
        let list = |x: &serde_json::Value, k: &str| -> Vec<String> {
            x.get(k)
                .and_then(|l| l.as_array())
                .map(|l| {
                    l.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let included = |sc: &serde_json::Value| {
            let (inc, exc) = (&sc["includes"], &sc["excludes"]);
            let inc_arches = list(inc, "arches");
            (inc_arches.is_empty() || inc_arches.iter().any(|a| a == "amd64"))
                && list(inc, "caps").iter().all(|c| CAPS.contains(&c.as_str()))
                && !list(exc, "arches").iter().any(|a| a == "amd64")
                && !list(exc, "caps").iter().any(|c| CAPS.contains(&c.as_str()))
        };
        let syscalls: Vec<serde_json::Value> = v["syscalls"]
            .as_array()
            .expect("syscalls array")
            .iter()
            .filter(|sc| included(sc))
            .map(|sc| {
                let mut o = serde_json::json!({"names": sc["names"], "action": sc["action"]});
                if let Some(e) = sc.get("errnoRet") {
                    o["errnoRet"] = e.clone();
                }
                if let Some(a) = sc.get("args").filter(|a| !a.is_null()) {
                    o["args"] = a.clone();
                }
                o
            })
            .collect();
        let profile = serde_json::json!({
            "defaultAction": v["defaultAction"],
            "defaultErrnoRet": v["defaultErrnoRet"],
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": syscalls,
        });
        Some(serde_json::from_value(profile).expect("converted profile parses"))
    }

    #[test]
    fn podman_default_profile_loads_fast_and_enforces() {
        let Some(p) = podman_default_profile() else {
            eprintln!("skipped: /usr/share/containers/seccomp.json is not installed");
            return;
        };
        validate(&p).expect("podman profile validates");
        let t = std::time::Instant::now();
        let compiled = compile(&p).expect("podman profile compiles");
        let compile_time = t.elapsed();
        let timing = tempfile::NamedTempFile::new().expect("temp file");
        in_child(|| {
            nix::sys::prctl::set_no_new_privs().map_err(|e| format!("nnp: {e}"))?;
            let t = std::time::Instant::now();
            compiled.load().map_err(|e| e.to_string())?;
            let load_time = t.elapsed();
            std::fs::write(timing.path(), format!("{}", load_time.as_micros()))
                .map_err(|e| e.to_string())?;
            // SAFETY: syscalls with scalar arguments only.
            let (unknown, denied, allowed) = unsafe {
                (
                    errno_of(libc::syscall(100_000)),
                    errno_of(libc::syscall(libc::SYS_ustat, 0, 0)),
                    errno_of(libc::syscall(libc::SYS_getppid)),
                )
            };
            if (unknown, denied, allowed) != (libc::ENOSYS, libc::EPERM, 0) {
                return Err(format!(
                    "errno: unknown syscall {unknown} (want ENOSYS), ustat {denied} (want EPERM), getppid {allowed}"
                ));
            }
            Ok(())
        })
        .expect("child checks");
        let load_us = std::fs::read_to_string(timing.path()).unwrap_or_default();
        eprintln!(
            "podman default profile: {} rules, compiled to {} BPF instructions in {} us, loaded in {load_us} us",
            p.syscalls().as_ref().map_or(0, Vec::len),
            compiled.instructions(),
            compile_time.as_micros()
        );
    }

    #[test]
    fn load_without_nnp_or_cap_sys_admin_says_why() {
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#,
        );
        in_child(|| {
            caps::drop(
                None,
                caps::CapSet::Effective,
                caps::Capability::CAP_SYS_ADMIN,
            )
            .map_err(|e| e.to_string())?;
            match load(&p) {
                Err(SeccompError::Load {
                    errno: Errno::EACCES,
                    hint,
                }) if hint.contains("CAP_SYS_ADMIN") => Ok(()),
                other => Err(format!("expected EACCES with a hint, got {other:?}")),
            }
        })
        .expect("child checks");
    }
}
