//! Builds the tiny supervisor (shim/tiny/main.rs) that corral-shim embeds
//! and execs for the steady state of a detached container (see
//! shim/src/handoff.rs).
//!
//! rustc is run directly rather than as a cargo target: the binary is
//! `no_std` without libc and needs `-C panic=abort`, which cargo only sets
//! per profile for the whole workspace (whose dev profile unwinds).
//! `-C lto` recompiles core with it, so nothing asks for an unwinder.
//! Targets other than x86_64 Linux get no tiny binary (no `corral_tiny`
//! cfg): the shim then supervises in-process as before.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=tiny");
    println!("cargo:rustc-check-cfg=cfg(corral_tiny)");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if arch != "x86_64" || os != "linux" {
        println!("cargo:warning=corral-shim: no tiny supervisor for {arch}-{os}; detached containers are supervised in-process");
        return;
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let bin = out.join("corral-shim-tiny");
    let dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let mut cmd = Command::new(&rustc);
    cmd.args(["--edition", "2021", "--crate-type", "bin"])
        .args(["--crate-name", "corral_shim_tiny", "--target", &target])
        .args(["-C", "panic=abort", "-C", "opt-level=s", "-C", "lto"])
        .args([
            "-C",
            "codegen-units=1",
            "-C",
            "debuginfo=0",
            "-C",
            "strip=symbols",
        ])
        .args(["-C", "relocation-model=static"])
        .args(["-C", "link-arg=-nostartfiles", "-C", "link-arg=-nostdlib"])
        .args(["-C", "link-arg=-static", "-C", "link-arg=-no-pie"])
        .args(["-D", "warnings"])
        .arg("-o")
        .arg(&bin)
        .arg(dir.join("tiny/main.rs"));
    let output = match cmd.output() {
        Ok(o) => o,
        Err(e) => panic!(
            "corral-shim: run {} to build the tiny supervisor: {e}",
            rustc.to_string_lossy()
        ),
    };
    if !output.status.success() {
        panic!(
            "corral-shim: building the tiny supervisor (shim/tiny/main.rs) failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    println!("cargo:rustc-cfg=corral_tiny");
}
