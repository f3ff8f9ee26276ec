//! `corral image ...` and pull-on-run against a real registry on 127.0.0.1.

use corral_tests::corral::Corral;
use corral_tests::registry::{missing_tools, Auth, Registry};

fn setup(n: u8) -> Option<Corral> {
    if let Some(why) = missing_tools() {
        eprintln!("SKIPPED: {why}");
        return None;
    }
    match Corral::new(n) {
        Ok(c) => Some(c),
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            None
        }
    }
}

#[test]
fn pull_ls_inspect_and_run_pulls_what_is_missing() {
    let Some(c) = setup(60) else { return };
    let reg = Registry::start(Auth::None);
    reg.push(&c.layout("busybox"), "tools/busybox", "v1", &[]);
    reg.push(&c.layout("layered"), "layered", "latest", &[]);
    let name = format!("{}/tools/busybox:v1", reg.host());
    let out = c.ok(&["image", "pull", "-q", "--insecure", &name]);
    let id = out.stdout.trim().to_string();
    assert_eq!(id.len(), 64, "{out}");
    let unpacked = std::fs::read_dir(c.images_root().join("layers"))
        .map(|d| {
            d.flatten()
                .any(|e| e.path().join("diff/bin/busybox").exists())
        })
        .unwrap_or(false);
    assert!(unpacked, "pull leaves the layers unpacked, ready to run");
    let ls = c.ok(&["image", "ls"]);
    let row = ls
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("{}/tools/busybox ", reg.host())))
        .unwrap_or_else(|| panic!("no row for the pulled image:\n{ls}"));
    assert!(row.contains(" v1 ") && row.contains(&id[..12]), "{row}");
    assert!(ls.stdout.starts_with("REPOSITORY"), "{ls}");
    let v: serde_json::Value =
        serde_json::from_str(&c.ok(&["image", "inspect", &name]).stdout).unwrap();
    assert_eq!(v[0]["id"], id);
    assert_eq!(v[0]["config"]["os"], "linux");
    // `run` pulls an image it does not have (with the registry flags).
    let layered = format!("{}/layered", reg.host());
    let out = c.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--insecure",
        &layered,
        "cat",
        "/opt/app/new.txt",
    ]);
    assert!(out.stderr.contains("Trying to pull"), "{out}");
    assert!(!out.stdout.is_empty(), "{out}");
    let ls = c.ok(&["image", "ls"]);
    assert!(
        ls.stdout.contains(&format!("{}/layered ", reg.host())),
        "{ls}"
    );
    // A second run uses the stored image: no pull.
    let out = c.ok(&["run", "--rm", "--network", "none", &layered, "true"]);
    assert!(!out.stderr.contains("Trying to pull"), "{out}");
}

#[test]
fn image_rm_refuses_images_in_use_and_prune_frees_blobs() {
    let Some(c) = setup(61) else { return };
    let layered = c.layout("layered").display().to_string();
    c.ok(&["image", "import", "--tag", "layered", &layered]);
    c.ok(&[
        "run",
        "--name",
        "user",
        "--network",
        "none",
        "layered",
        "true",
    ]);
    let out = c.run(&["image", "rm", "layered"]);
    out.assert_fail();
    assert!(out.stderr.contains("in use"), "{out}");
    c.ok(&["rm", "user"]);
    let out = c.ok(&["image", "rm", "layered"]);
    assert!(
        out.stdout
            .contains("Untagged: docker.io/library/layered:latest"),
        "{out}"
    );
    let out = c.ok(&["image", "prune"]);
    assert!(
        out.stdout.contains("deleted blob") && out.stdout.contains("Total reclaimed space"),
        "{out}"
    );
    let ls = c.ok(&["image", "ls"]).stdout;
    assert!(!ls.contains("layered"), "{ls}");
    // busybox is still there and still runs.
    assert_eq!(
        c.ok(&["run", "--rm", "--network", "none", "busybox", "echo", "ok"])
            .stdout,
        "ok\n"
    );
}
