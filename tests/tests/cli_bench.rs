//! `corral bench startup` checks its own honesty on a tiny N: every
//! contender's work is verified (a peer that exits non-zero, one that exits
//! 0 without making a container, one that prints the wrong thing are all
//! counted as failed, with the reason), the JSON carries every counted run,
//! a peer that is not installed is reported missing, the VM contender boots
//! a real guest, and the plot is a real SVG.

use corral_tests::bench::{
    bench, contender, fake_program, image_layout, report, test_dir, vm_guest,
};
use corral_tests::host::{is_root, which};
use corral_tests::skip;

fn runs(c: &serde_json::Value) -> usize {
    c["runs_ms"].as_array().map_or(0, |v| v.len())
}

#[test]
fn runtimes_do_verified_work_and_every_run_is_reported() {
    if !is_root() {
        skip!("corral bench needs root");
    }
    let dir = test_dir("runtimes");
    let out = bench(
        &dir,
        "runtimes",
        &[
            "startup",
            "-n",
            "3",
            "--warmup",
            "1",
            "--json",
            "--no-memory",
            "--only",
            "corral-runtime,runc,crun",
        ],
    );
    let r = report(&out);
    assert_eq!(r["runs"], 3);
    assert_eq!(r["workload"], "true");
    assert!(r["host"]["cpus"].as_u64().unwrap_or(0) >= 1, "{r:#}");
    for name in ["corral-runtime", "runc", "crun"] {
        if which(name).is_none() && name != "corral-runtime" {
            assert!(contender(&r, name, None)["missing"].is_string(), "{r:#}");
            continue;
        }
        for mode in ["run", "create+start+delete"] {
            let c = contender(&r, name, Some(mode));
            assert_eq!(c["failed"], 0, "{name} {mode} failed: {c:#}\n{out}");
            assert_eq!(runs(c), 3, "{c:#}");
            let median = c["median_ms"].as_f64().expect("median of successful runs");
            assert!(median > 0.0 && median < 30_000.0, "{c:#}");
        }
    }
}

#[test]
fn broken_and_missing_peers_are_reported_not_hidden() {
    if !is_root() {
        skip!("corral bench needs root");
    }
    let dir = test_dir("broken");
    // Exits 0 and does nothing: no container, no pid file.
    let idle = fake_program(&dir, "idle-runtime", "exit 0");
    // Exits 0 and prints what /bin/true never prints.
    let chatty = fake_program(&dir, "chatty-runtime", "echo hello from a fake; exit 0");
    let out = bench(
        &dir,
        "broken",
        &[
            "startup",
            "-n",
            "2",
            "--warmup",
            "1",
            "--json",
            "--no-memory",
            "--only",
            "runc,crun,corral-runtime,podman",
            "--runc",
            "/bin/false",
            "--crun",
            &idle.to_string_lossy(),
            "--corral-runtime",
            &chatty.to_string_lossy(),
            "--podman",
            "/nonexistent/podman",
        ],
    );
    let r = report(&out);
    for (name, why) in [
        ("runc", "exit 1"),
        ("crun", "pid file"),
        ("corral-runtime", "printed"),
    ] {
        for mode in ["run", "create+start+delete"] {
            let c = contender(&r, name, Some(mode));
            assert_eq!(c["failed"], 2, "{name} {mode}: {c:#}");
            assert_eq!(runs(c), 0, "{c:#}");
            assert!(c["median_ms"].is_null(), "{c:#}");
            let errors = c["errors"].to_string();
            assert!(!c["errors"].as_array().unwrap().is_empty(), "{c:#}");
            if mode == "run" {
                assert!(
                    errors.contains(why),
                    "{name} {mode} should fail with {why:?}: {c:#}"
                );
            }
        }
    }
    let podman = contender(&r, "podman", None);
    assert!(
        podman["missing"]
            .as_str()
            .is_some_and(|m| m.contains("/nonexistent/podman")),
        "{podman:#}"
    );
    // The table says the same to a person.
    let out = bench(
        &dir,
        "broken-table",
        &[
            "startup",
            "-n",
            "1",
            "--warmup",
            "0",
            "--no-memory",
            "--only",
            "runc,podman",
            "--runc",
            "/bin/false",
            "--podman",
            "/nonexistent/podman",
        ],
    );
    out.assert_ok();
    assert!(out.stdout.contains("host: kernel"), "{out}");
    assert!(
        out.stdout.contains("missing podman: /nonexistent/podman"),
        "{out}"
    );
    assert!(out.stdout.contains("failures of runc run"), "{out}");
}

#[test]
fn image_path_and_httpd_answer_are_verified() {
    if !is_root() {
        skip!("corral bench needs root");
    }
    let layout = match image_layout() {
        Ok(l) => l,
        Err(e) => panic!("test image: {e}"),
    };
    let dir = test_dir("httpd");
    let layout = layout.to_string_lossy().into_owned();
    let out = bench(
        &dir,
        "httpd",
        &[
            "startup",
            "-n",
            "2",
            "--warmup",
            "1",
            "--json",
            "--workload",
            "httpd",
            "--only",
            "corral-runtime,corral-run,podman",
            "--image-layout",
            &layout,
        ],
    );
    let r = report(&out);
    assert_eq!(r["workload"], "httpd");
    let mut names = vec![
        ("corral-runtime", Some("run")),
        ("corral-runtime", Some("create+start")),
        ("corral-run", None),
    ];
    if which("podman").is_some() {
        names.push(("podman", None));
    }
    for (name, mode) in names {
        let c = contender(&r, name, mode);
        assert_eq!(c["failed"], 0, "{name}: {c:#}\n{out}");
        assert_eq!(runs(c), 2, "{c:#}");
    }
    // The memory run saw corral's shim.
    let mem = contender(&r, "corral-run", None)["peak_rss_kib"].to_string();
    assert!(mem.contains("corral-shim"), "{mem}");
    // A server that never serves the page fails every run.
    let out = bench(
        &dir,
        "httpd-broken",
        &[
            "startup",
            "-n",
            "1",
            "--warmup",
            "0",
            "--json",
            "--workload",
            "httpd",
            "--timeout",
            "3",
            "--no-memory",
            "--only",
            "runc",
            "--runc",
            "/bin/true",
        ],
    );
    let c = contender(&report(&out), "runc", Some("run")).clone();
    assert_eq!((c["failed"].as_u64(), runs(&c)), (Some(1), 0), "{c:#}");
}

#[test]
fn vm_contender_boots_a_real_guest() {
    if !is_root() {
        skip!("corral bench needs root");
    }
    let guest = match vm_guest() {
        Ok(g) => g,
        Err(e) => skip!("no VM guest: {e}"),
    };
    let dir = test_dir("vm");
    let out = bench(
        &dir,
        "vm",
        &[
            "startup",
            "-n",
            "1",
            "--warmup",
            "0",
            "--json",
            "--only",
            "vm",
            "--vm-accel",
            "tcg",
            "--vm-guest",
            &guest.to_string_lossy(),
        ],
    );
    let r = report(&out);
    let first = contender(&r, "vm-tcg", Some("to first output"));
    let exit = contender(&r, "vm-tcg", Some("to exit"));
    assert_eq!(
        (first["failed"].as_u64(), runs(first)),
        (Some(0), 1),
        "{first:#}\n{out}"
    );
    let (f, e) = (
        first["runs_ms"][0].as_f64().unwrap(),
        exit["runs_ms"][0].as_f64().unwrap(),
    );
    assert!(f > 0.0 && f <= e, "first output {f} ms, exit {e} ms");
    assert!(
        r["host"]["kvm"].as_str().unwrap_or("").contains("TCG"),
        "{r:#}"
    );
    assert!(
        r["vm_command"].as_str().unwrap_or("").contains("microvm"),
        "{r:#}"
    );
    assert!(
        first["peak_rss_kib"].to_string().contains("qemu"),
        "{first:#}"
    );
    // A guest directory without the guest is reported, not run.
    let out = bench(
        &dir,
        "vm-missing",
        &[
            "startup",
            "-n",
            "1",
            "--warmup",
            "0",
            "--json",
            "--only",
            "vm,corral-runtime",
            "--no-memory",
            "--vm-accel",
            "tcg",
            "--vm-guest",
            &dir.join("empty").to_string_lossy(),
        ],
    );
    let m = contender(&report(&out), "vm-tcg", None).clone();
    assert!(
        m["missing"]
            .as_str()
            .is_some_and(|s| s.contains("build-vm-guest")),
        "{m:#}"
    );
}

#[test]
fn plot_is_a_valid_svg_of_the_runs() {
    if !is_root() {
        skip!("corral bench needs root");
    }
    let dir = test_dir("plot");
    let svg = dir.join("startup.svg");
    let out = bench(
        &dir,
        "plot",
        &[
            "startup",
            "-n",
            "2",
            "--warmup",
            "0",
            "--no-memory",
            "--only",
            "corral-runtime",
            "--plot",
            &svg.to_string_lossy(),
        ],
    );
    out.assert_ok();
    let text =
        std::fs::read_to_string(&svg).unwrap_or_else(|e| panic!("{}: {e}\n{out}", svg.display()));
    assert!(
        text.trim_start().starts_with("<svg"),
        "{}",
        &text[..text.len().min(200)]
    );
    assert!(text.trim_end().ends_with("</svg>"));
    assert!(text.contains("corral-runtime run"), "label missing");
    // Four dots: two runs of each mode.
    assert_eq!(text.matches("<circle").count(), 4, "{text}");
    let png = dir.join("startup.png");
    let out = bench(
        &dir,
        "plot-png",
        &["startup", "-n", "1", "--plot", &png.to_string_lossy()],
    );
    assert!(!out.ok() && out.stderr.contains("PNG"), "{out}");
}
