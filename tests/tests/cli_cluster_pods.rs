//! `corral logs`, `exec` and `top` on a cluster pod: a master and one real
//! agent (tests/src/cluster.rs), a pod that prints lines, and the `corral`
//! binary told the master's admin.kubeconfig. Also that a local
//! `corral run` container keeps its node-local `logs`, with the same
//! kubeconfig in reach.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use corral_tests::cluster::ClusterHarness;
use corral_tests::corral::{workspace_binary, Corral};
use corral_tests::skip;
use serde_json::{json, Value};

/// Prints two known lines, holds some memory (so `top` has some to show),
/// then ticks every 200 ms.
const SCRIPT: &str = "echo hello-from-pod; echo second-line; \
    x=$(head -c 3000000 /dev/zero | tr '\\0' a); \
    i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done";

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// `corral --kubeconfig K ARGS` with the local test's paths (so a bare
/// name is looked up among its containers), bounded by `timeout`.
struct Cli<'a> {
    local: &'a Corral,
    kubeconfig: PathBuf,
    bin: PathBuf,
}

impl Cli<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("timeout");
        c.arg("60")
            .arg(&self.bin)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env_remove("KUBECONFIG")
            .env("CORRAL_IMAGES_ROOT", self.local.images_root())
            .env("CORRAL_STATE_DIR", self.local.state_dir())
            .env("CORRAL_RUNTIME_ROOT", self.local.runtime_root())
            .env("CORRAL_NET_STATE_DIR", self.local.path("net"))
            .env("CORRAL_NETNS_DIR", self.local.netns_dir())
            .env("CORRAL_BRIDGE", self.local.bridge())
            .env("CORRAL_SUBNET", self.local.subnet());
        c
    }

    fn run_with_input(&self, args: &[&str], input: Option<&[u8]>) -> Out {
        let mut child = self
            .command(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn corral");
        if let Some(data) = input {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(data).expect("write stdin");
        }
        let out = child.wait_with_output().expect("wait for corral");
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn run(&self, args: &[&str]) -> Out {
        self.run_with_input(args, None)
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert_eq!(o.code, 0, "corral {args:?}:\n{o}");
        o.stdout
    }

    /// Exit 1 and one `error: ` line; that line.
    fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert_eq!(o.code, 1, "corral {args:?}: expected exit 1:\n{o}");
        assert_eq!(o.stderr.lines().count(), 1, "one line expected:\n{o}");
        assert!(o.stderr.starts_with("error: "), "{o}");
        o.stderr.trim_end().to_string()
    }
}

fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "talk", "namespace": "default"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "c",
                "image": "localhost/busybox:latest",
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", SCRIPT]
            }]
        }
    })
}

/// `corral logs -f`: the first `n` lines with "tick", and how long they took;
/// the follower is killed after (it never ends by itself).
fn follow_ticks(cli: &Cli, n: usize) -> (Vec<String>, Duration) {
    let mut child = cli
        .command(&["logs", "-f", "--tail", "1", "pod/talk"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn corral logs -f");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let began = Instant::now();
    let mut lines = Vec::new();
    while lines
        .iter()
        .filter(|l: &&String| l.contains("tick"))
        .count()
        < n
    {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => lines.push(l),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("logs -f stopped delivering lines: {lines:?}");
            }
        }
    }
    let took = began.elapsed();
    // Still running: a follow does not end while the container runs.
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "logs -f ended by itself"
    );
    let _ = child.kill();
    let _ = child.wait();
    (lines, took)
}

/// The row of `name` in a `top` table (columns split on whitespace).
fn row<'a>(table: &'a str, name: &str) -> Option<Vec<&'a str>> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cols| cols.first() == Some(&name))
}

/// Bytes of a `top` memory cell (`12Mi`, `300Ki`).
fn memory_bytes(cell: &str) -> Option<u64> {
    if let Some(n) = cell.strip_suffix("Mi") {
        return n.parse::<u64>().ok().map(|n| n << 20);
    }
    cell.strip_suffix("Ki")?
        .parse::<u64>()
        .ok()
        .map(|n| n << 10)
}

/// Runs the shell line `inner` under a pseudo-terminal (util-linux
/// `script`); what it printed, without carriage returns.
fn in_pty(inner: &str) -> String {
    let out = Command::new("timeout")
        .args(["60", "script", "-qec", inner, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("run script");
    String::from_utf8_lossy(&out.stdout).replace('\r', "")
}

/// `exec -it` under a pseudo-terminal of a known size: the remote terminal
/// gets that size and later resizes, the exit code comes back, and our
/// terminal is out of raw mode afterwards. The remote commands wait a
/// little before `stty size`: the agent starts the process as soon as the
/// session opens, so the first size may land just after it started.
fn tty_exec(cli: &Cli) {
    let mut env = String::new();
    for (k, v) in cli.command(&[]).get_envs() {
        if let (Some(v), Ok(k)) = (v, k.to_os_string().into_string()) {
            env.push_str(&format!("{k}='{}' ", v.to_string_lossy()));
        }
    }
    let corral = format!(
        "{env}{} --kubeconfig '{}'",
        cli.bin.display(),
        cli.kubeconfig.display()
    );
    let text = in_pty(&format!(
        "stty cols 123 rows 45; \
         {corral} exec -it pod/talk -- sh -c 'sleep 0.5; stty size; exit 5'; \
         echo code=$?; stty -a | grep -o -- '-*icanon' | head -1"
    ));
    assert!(
        text.contains("45 123\n"),
        "the remote terminal size: {text:?}"
    );
    assert!(
        text.contains("code=5\n"),
        "the exit code through a tty: {text:?}"
    );
    // `-icanon` would mean the terminal was left raw.
    assert!(
        text.lines().any(|l| l == "icanon"),
        "terminal not restored: {text:?}"
    );

    // A resize while it runs (SIGWINCH to the foreground group) reaches the
    // pod; stdin named, as a background job's would be /dev/null.
    let text = in_pty(&format!(
        "stty cols 123 rows 45; \
         {corral} exec -it pod/talk -- sh -c 'sleep 0.5; stty size; sleep 2; stty size' </dev/tty & \
         sleep 1.5; stty cols 77 rows 22; wait"
    ));
    assert!(
        text.contains("45 123\n22 77\n"),
        "resize not passed on: {text:?}"
    );
}

/// SIGINT to `corral exec` ends the session and with it the remote
/// process; corral exits 130 like a shell.
fn interrupted_exec(cli: &Cli) {
    let child = cli
        .command(&["exec", "pod/talk", "--", "sleep", "37"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn corral exec");
    let ps = || cli.ok(&["exec", "pod/talk", "--", "ps", "-o", "args"]);
    wait_for(
        Duration::from_secs(20),
        "sleep 37 running in the pod",
        || ps().contains("sleep 37").then_some(()),
    );
    // `timeout` passes SIGINT on to corral.
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(kill.success());
    let out = child.wait_with_output().expect("wait for corral exec");
    assert_eq!(out.status.code(), Some(130), "{out:?}");
    wait_for(
        Duration::from_secs(20),
        "sleep 37 gone from the pod",
        || (!ps().contains("sleep 37")).then_some(()),
    );
}

/// The master's node proxy: the summary for the admin, 403 with the join
/// token, 404 for any other path.
fn node_proxy(h: &ClusterHarness) {
    let ca = std::fs::read(h.master_dir().join("pki/ca.crt")).expect("read the CA");
    let http = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA"))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTPS client");
    let kubeconfig = std::fs::read_to_string(h.kubeconfig()).expect("read the kubeconfig");
    let admin = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("token:"))
        .map(|t| t.trim().trim_matches('"').to_string())
        .expect("admin token in the kubeconfig");
    let join = std::fs::read_to_string(h.master_dir().join("join-token")).expect("join token");
    let get = |path: &str, token: &str| {
        let r = http
            .get(format!("{}{path}", h.master_url()))
            .bearer_auth(token)
            .send()
            .expect("GET through the node proxy");
        let code = r.status().as_u16();
        (code, r.json::<Value>().unwrap_or(Value::Null))
    };
    let summary = "/api/v1/nodes/host1/proxy/stats/summary";
    let (code, v) = get(summary, &admin);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["node"]["nodeName"], "host1", "{v}");
    assert!(
        v["node"]["memory"]["workingSetBytes"].as_u64().unwrap_or(0) > 0,
        "{v}"
    );
    let talk = v["pods"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["podRef"]["name"] == "talk");
    assert!(talk.is_some(), "pod talk not in the summary: {v}");
    let (code, v) = get(summary, join.trim());
    assert_eq!(code, 403, "{v}");
    let (code, v) = get("/api/v1/nodes/host1/proxy/pods", &admin);
    assert_eq!(code, 404, "{v}");
    let (code, v) = get("/api/v1/nodes/nosuch/proxy/stats/summary", &admin);
    assert_eq!(
        (code, v["message"].as_str()),
        (404, Some("nodes \"nosuch\" not found")),
        "{v}"
    );
}

#[test]
fn logs_exec_and_top_of_a_cluster_pod() {
    let mut h = match ClusterHarness::new(61, 1) {
        Ok(h) => h,
        Err(e) => skip!("{e}"),
    };
    let local = match Corral::new(96) {
        Ok(c) => c,
        Err(e) => skip!("{e}"),
    };
    h.start_master();
    h.start_agent(0);
    let cli = Cli {
        local: &local,
        kubeconfig: h.kubeconfig(),
        bin: workspace_binary("corral").expect("corral binary"),
    };
    let manifest = h.path("talk.json");
    std::fs::write(&manifest, pod().to_string()).expect("write the manifest");
    wait_for(Duration::from_secs(60), "node host1 Ready", || {
        let o = cli.run(&["get", "nodes", "-o", "json"]);
        let v: Value = serde_json::from_str(&o.stdout).ok()?;
        let ready = v["items"].as_array()?.iter().any(|n| {
            n["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        });
        ready.then_some(())
    });
    cli.ok(&["apply", "-f", &manifest.to_string_lossy()]);
    wait_for(Duration::from_secs(60), "pod talk Running", || {
        let o = cli.run(&["get", "pod/talk", "-o", "json"]);
        let v: Value = serde_json::from_str(&o.stdout).ok()?;
        (v["status"]["phase"] == "Running").then_some(())
    });

    // logs: all of it, by pod/NAME and by the bare name (no local "talk").
    let all = wait_for(Duration::from_secs(20), "the pod's first lines", || {
        let out = cli.ok(&["logs", "pod/talk"]);
        out.contains("tick 0").then_some(out)
    });
    assert!(all.starts_with("hello-from-pod\nsecond-line\n"), "{all}");
    let bare = cli.ok(&["logs", "talk"]);
    assert!(bare.starts_with("hello-from-pod\nsecond-line\n"), "{bare}");
    let tail = cli.ok(&["logs", "--tail", "1", "po/talk"]);
    assert_eq!(tail.lines().count(), 1, "{tail}");
    assert!(tail.starts_with("tick "), "{tail}");
    let (ticks, took) = follow_ticks(&cli, 5);
    assert!(
        took >= Duration::from_millis(500),
        "5 ticks 200 ms apart came at once ({took:?}): {ticks:?}"
    );
    let numbers: Vec<u64> = ticks
        .iter()
        .filter_map(|l| l.strip_prefix("tick ")?.parse().ok())
        .collect();
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "followed lines out of order: {ticks:?}"
    );
    let e = cli.fails(&["logs", "-c", "nope", "talk"]);
    assert_eq!(e, "error: container nope is not valid for pod talk");
    let e = cli.fails(&["logs", "pod/absent"]);
    assert_eq!(e, "error: pods \"absent\" not found");
    let e = cli.fails(&["logs", "absent"]);
    assert_eq!(
        e,
        "error: no local container named \"absent\", and in the cluster: pods \"absent\" not found"
    );

    // exec: exit code, stdout and stderr apart, stdin to EOF.
    let o = cli.run(&[
        "exec",
        "pod/talk",
        "--",
        "sh",
        "-c",
        "echo out-$((6*7)); echo err >&2; exit 3",
    ]);
    assert_eq!(o.code, 3, "{o}");
    assert_eq!(o.stdout, "out-42\n", "{o}");
    assert_eq!(o.stderr, "err\n", "{o}");
    let o = cli.run_with_input(&["exec", "-i", "pod/talk", "--", "cat"], Some(b"hi\n"));
    assert_eq!((o.code, o.stdout.as_str()), (0, "hi\n"), "{o}");
    let o = cli.run(&["exec", "-c", "c", "talk", "--", "true"]);
    assert_eq!(o.code, 0, "{o}");
    let e = cli.fails(&["exec", "-c", "nope", "talk", "--", "true"]);
    assert_eq!(e, "error: container nope is not valid for pod talk");
    let e = cli.fails(&["exec", "pod/absent", "--", "true"]);
    assert_eq!(e, "error: pods \"absent\" not found");
    let e = cli.fails(&["exec", "-e", "A=1", "pod/talk", "--", "true"]);
    assert_eq!(
        e,
        "error: -e/--env is for local containers only, not for pod talk"
    );

    tty_exec(&cli);
    interrupted_exec(&cli);

    node_proxy(&h);

    // top: the pod's memory (it holds about 2.9 MiB) and the node's row.
    let pods = wait_for(Duration::from_secs(30), "top pods with the pod", || {
        let out = cli.run(&["top", "pods"]).stdout;
        let r = row(&out, "talk")?;
        (memory_bytes(r.get(2)?)? > 0).then_some(out)
    });
    let head: Vec<&str> = pods
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(head, ["NAME", "CPU(cores)", "MEMORY(bytes)"], "{pods}");
    let r = row(&pods, "talk").expect("talk row");
    assert!(r[1].ends_with('m') && r[1] != "<unknown>", "{pods}");
    assert!(memory_bytes(r[2]).unwrap_or(0) >= 2 << 20, "{pods}");
    let all = cli.ok(&["top", "pods", "-A"]);
    assert!(all.starts_with("NAMESPACE"), "{all}");
    assert!(
        all.lines()
            .any(|l| l.starts_with("default") && l.contains("talk")),
        "{all}"
    );
    let o = cli.run(&["top", "pods", "-n", "kube-public"]);
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(
        o.stderr, "No resources found in kube-public namespace.\n",
        "{o}"
    );
    let e = cli.fails(&["top", "pods", "absent"]);
    assert_eq!(e, "error: Metrics not available for pod default/absent");
    let nodes = cli.ok(&["top", "nodes"]);
    eprintln!("corral top pods -A:\n{all}corral top nodes:\n{nodes}");
    let head: Vec<&str> = nodes
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        head,
        ["NAME", "CPU(cores)", "CPU%", "MEMORY(bytes)", "MEMORY%"],
        "{nodes}"
    );
    let r = row(&nodes, "host1").expect("host1 row");
    assert!(r[1].ends_with('m') && r[2].ends_with('%'), "{nodes}");
    assert!(
        memory_bytes(r[3]).unwrap_or(0) > 0 && r[4].ends_with('%'),
        "{nodes}"
    );

    // A local container keeps its node-local verbs; pod/NAME still means the cluster.
    let id = local.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "x",
        "busybox",
        "sh",
        "-c",
        "echo local-hello; sleep 100",
    ]);
    assert!(!id.stdout.trim().is_empty(), "{id}");
    let out = wait_for(Duration::from_secs(10), "the local container's log", || {
        let out = cli.ok(&["logs", "x"]);
        out.contains("local-hello").then_some(out)
    });
    assert_eq!(out, "local-hello\n");
    let o = cli.run(&["exec", "x", "--", "echo", "in-local"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "in-local\n"), "{o}");
    let e = cli.fails(&["logs", "pod/x"]);
    assert!(e.contains("\"x\" not found"), "{e}");
    local.ok(&["rm", "-f", "x"]);
}
