//! Bridge networking through `corral run`: containers reach each other by
//! IP, `-p` publishes a port on the host's 127.0.0.1, and removal takes the
//! address, veth, rules and namespace away. Traffic stays on 127.0.0.1 and
//! the test's own bridge.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use corral_tests::corral::Corral;

fn setup(n: u8) -> Option<Corral> {
    match Corral::new(n) {
        Ok(c) => Some(c),
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            None
        }
    }
}

const HTTPD: &str = "mkdir -p /www && echo \"hello from $(hostname)\" > /www/index.html && exec httpd -f -p 80 -h /www";

fn http_get(port: u16) -> Result<String, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut body = String::new();
    s.read_to_string(&mut body)
        .map_err(|e| format!("read: {e}"))?;
    Ok(body)
}

#[test]
fn two_containers_reach_each_other_by_ip() {
    let Some(c) = setup(40) else { return };
    c.ok(&[
        "run",
        "-d",
        "--name",
        "server",
        "--hostname",
        "srv",
        "busybox",
        "sh",
        "-c",
        HTTPD,
    ]);
    let ip = c.inspect("server")["ip"].as_str().unwrap().to_string();
    assert!(ip.starts_with(&format!("10.214.{}.", c.n)), "{ip}");
    let script = format!("for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://{ip}/ && exit 0; sleep 0.2; done; exit 1");
    let out = c.ok(&["run", "--rm", "busybox", "sh", "-c", &script]);
    assert_eq!(out.stdout, "hello from srv\n", "{out}");
    // The client got an address of its own on the same bridge.
    let out = c.ok(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "ip -4 -o addr show eth0",
    ]);
    assert!(
        out.stdout.contains(&format!("10.214.{}.", c.n)) && !out.stdout.contains(&format!("{ip}/")),
        "{out}"
    );
}

#[test]
fn published_port_reaches_httpd_from_the_host() {
    let Some(c) = setup(41) else { return };
    let port = corral_tests::registry::free_port();
    c.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--hostname",
        "webhost",
        "-p",
        &format!("127.0.0.1:{port}:80"),
        "busybox",
        "sh",
        "-c",
        HTTPD,
    ]);
    let mut last = Err(String::new());
    for _ in 0..50 {
        last = http_get(port);
        if last
            .as_ref()
            .is_ok_and(|b| b.contains("hello from webhost"))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let body = last.unwrap_or_else(|e| panic!("GET 127.0.0.1:{port}: {e}"));
    assert!(body.contains("hello from webhost"), "{body}");
    let ps = c.ok(&["ps"]);
    assert!(
        ps.stdout.contains(&format!("127.0.0.1:{port}->80/tcp")),
        "{ps}"
    );
    // Removing the container removes the forwarding: nothing answers any more.
    c.ok(&["rm", "-f", "web"]);
    assert!(http_get(port).is_err());
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

#[test]
fn removal_releases_address_veth_and_namespace() {
    let Some(c) = setup(42) else { return };
    let id = c
        .ok(&["run", "-d", "--name", "n1", "busybox", "sleep", "1000"])
        .stdout
        .trim()
        .to_string();
    let netns = c.netns_dir().join(&id);
    assert!(netns.exists());
    let leases = c.leases();
    let veth = match leases.as_slice() {
        [(owner, veth)] if *owner == id => veth.clone(),
        other => panic!("expected one lease for {id}, got {other:?}"),
    };
    assert!(std::path::Path::new("/sys/class/net").join(&veth).exists());
    c.ok(&["rm", "-f", "n1"]);
    assert!(!netns.exists());
    assert!(!std::path::Path::new("/sys/class/net").join(&veth).exists());
    assert_eq!(c.leases(), Vec::<(String, String)>::new());
    // --rm in the foreground cleans up the same way.
    c.ok(&["run", "--rm", "busybox", "true"]);
    assert_eq!(c.leases(), Vec::<(String, String)>::new());
    assert_eq!(c.leftovers(), Vec::<String>::new());
}

#[test]
fn host_network_shares_the_host_namespace() {
    let Some(c) = setup(43) else { return };
    let out = c.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        "busybox",
        "readlink",
        "/proc/self/ns/net",
    ]);
    assert_eq!(
        out.stdout.trim(),
        corral_tests::host::host_ns("net"),
        "{out}"
    );
    let out = c.ok(&["run", "--rm", "busybox", "readlink", "/proc/self/ns/net"]);
    assert_ne!(
        out.stdout.trim(),
        corral_tests::host::host_ns("net"),
        "{out}"
    );
}
