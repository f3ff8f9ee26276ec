//! Bridge networking of `corral-net` on the real kernel: namespaces attached to a
//! test bridge reach each other, the IPAM survives re-opening, detach removes what
//! attach made, and published ports answer on the host's loopback and gateway.
//! Network numbers 1-19 (bridge crltest<N>, 10.213.<N>.0/24) belong to this file.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use corral_net::{Network, PortMapping};
use corral_tests::host::{is_root, which};
use corral_tests::net::{
    host_link_exists, nft_table, ns_exec, tcp_fetch, udp_ask, TcpServer, TestNet, UdpServer,
};
use corral_tests::skip;

fn usable(test: &str) -> bool {
    if !is_root() {
        eprintln!("SKIPPED [{test}]: network tests need root");
        return false;
    }
    if which("nft").is_none() {
        eprintln!("SKIPPED [{test}]: nft (nftables) is not installed");
        return false;
    }
    true
}

fn ports(specs: &[&str]) -> Vec<PortMapping> {
    specs
        .iter()
        .map(|s| s.parse().unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

fn addr(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

#[test]
fn two_namespaces_reach_each_other_by_ip() {
    if !usable("two_namespaces_reach_each_other_by_ip") {
        return;
    }
    let mut t = TestNet::new(1).expect("test network");
    let (a, b) = (t.netns("a").unwrap(), t.netns("b").unwrap());
    let net = t.network();
    let started = std::time::Instant::now();
    let att_a = net.attach("owner-a", &a, &[]).expect("attach a");
    eprintln!("attach without ports took {:?}", started.elapsed());
    let started = std::time::Instant::now();
    let att_b = net
        .attach("owner-b", &b, &ports(&["40100:80"]))
        .expect("attach b");
    eprintln!("attach with a port took {:?}", started.elapsed());
    assert_ne!(att_a.ip, att_b.ip);
    for att in [&att_a, &att_b] {
        assert!(net.cidr().contains(att.ip), "{att:?}");
        assert_eq!(att.gateway, Ipv4Addr::new(10, 213, 1, 1));
        assert_eq!(att.prefix, 24);
        assert!(host_link_exists(&att.veth_host), "{att:?}");
    }

    let (ok, out) = ns_exec(&a, &["ip", "-4", "addr", "show", "dev", "eth0"]);
    assert!(ok && out.contains(&format!("{}/24", att_a.ip)), "{out}");
    let (ok, out) = ns_exec(&a, &["ip", "-4", "route", "show", "default"]);
    assert!(ok && out.contains("via 10.213.1.1 dev eth0"), "{out}");
    let (ok, out) = ns_exec(&a, &["ip", "link", "show", "lo"]);
    assert!(ok && out.contains(",UP"), "{out}");

    let _server = TcpServer::start(&a, 7000, "from-a").unwrap();
    let got = tcp_fetch(Some(&b), addr(att_a.ip, 7000)).expect("b connects to a");
    assert_eq!(got, "from-a");

    if which("busybox").is_some() {
        let ip = att_b.ip.to_string();
        let (ok, out) = ns_exec(&a, &["busybox", "ping", "-c1", "-W2", &ip]);
        assert!(ok, "ping from a to b: {out}");
    }
}

#[test]
fn ipam_never_reuses_an_address_held_across_reopen() {
    if !usable("ipam_never_reuses_an_address_held_across_reopen") {
        return;
    }
    let mut t = TestNet::new(2).expect("test network");
    let namespaces: Vec<_> = (0..6).map(|i| t.netns(&format!("n{i}")).unwrap()).collect();
    let first = t
        .network()
        .attach("held", &namespaces[0], &[])
        .expect("attach");

    // Another process's view: a fresh open of the same state directory.
    let reopened = Network::open(t.config()).expect("re-open");
    let second = reopened
        .attach("other", &namespaces[1], &[])
        .expect("attach");
    assert_ne!(first.ip, second.ip);

    // Concurrent attaches through separately opened handles never collide.
    let config = t.config();
    let ips: Vec<Ipv4Addr> = std::thread::scope(|s| {
        let handles: Vec<_> = namespaces[2..]
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                let config = config.clone();
                s.spawn(move || {
                    let net = Network::open(config).expect("open in thread");
                    net.attach(&format!("par{i}"), ns, &[]).expect("attach").ip
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<Ipv4Addr> = ips.clone();
    all.extend([first.ip, second.ip]);
    all.sort();
    all.dedup();
    assert_eq!(
        all.len(),
        6,
        "duplicate address in {ips:?} + {first:?} + {second:?}"
    );

    let listed = Network::open(t.config()).unwrap().attachments().unwrap();
    assert_eq!(listed.len(), 6);
    assert!(listed.iter().any(|(o, a)| o == "held" && a.ip == first.ip));

    // Re-attaching an owner keeps its address.
    let again = t
        .network()
        .attach("held", &namespaces[0], &[])
        .expect("re-attach");
    assert_eq!(again.ip, first.ip);
}

#[test]
fn detach_removes_veth_rules_and_lease() {
    if !usable("detach_removes_veth_rules_and_lease") {
        return;
    }
    let mut t = TestNet::new(3).expect("test network");
    let (a, b) = (t.netns("a").unwrap(), t.netns("b").unwrap());
    let net = t.network();
    let att = net
        .attach("gone", &a, &ports(&["40310:80", "40311:53/udp"]))
        .expect("attach");
    let kept = net
        .attach("kept", &b, &ports(&["40312:80"]))
        .expect("attach");
    let table = nft_table(net.table());
    assert!(table.contains("tcp . 40310 : jump o-"), "{table}");
    assert!(table.contains(&format!("dnat to {}:80", att.ip)), "{table}");

    net.detach("gone").expect("detach");
    assert!(!host_link_exists(&att.veth_host));
    let (_, out) = ns_exec(&a, &["ip", "link", "show"]);
    assert!(!out.contains("eth0"), "{out}");
    let table = nft_table(net.table());
    assert!(
        !table.contains("40310") && !table.contains("40311"),
        "{table}"
    );
    assert!(!table.contains(&att.ip.to_string()), "{table}");
    assert!(table.contains("tcp . 40312 : jump o-"), "{table}");
    let owners: Vec<String> = net
        .attachments()
        .unwrap()
        .into_iter()
        .map(|(o, _)| o)
        .collect();
    assert_eq!(owners, vec!["kept".to_string()]);
    assert!(host_link_exists(&kept.veth_host));

    net.detach("gone").expect("second detach is a no-op");
    net.detach("never-attached").expect("unknown owner");

    // A port held by one owner is refused to another, naming the holder.
    let err = net
        .attach("thief", &a, &ports(&["40312:8080"]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("40312/tcp") && err.contains("kept"), "{err}");
    assert!(!net.attachments().unwrap().iter().any(|(o, _)| o == "thief"));

    // A failed attach (no such namespace) names the path and leaves nothing behind.
    let missing = Path::new("/nonexistent/corral-netns");
    let err = net.attach("lost", missing, &[]).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/corral-netns"), "{err}");
    assert!(!net.attachments().unwrap().iter().any(|(o, _)| o == "lost"));

    // Detach still works when the rules are already gone (e.g. a flushed ruleset).
    let (ok, out) = corral_tests::host::sh(&format!("nft delete table ip {}", net.table()));
    assert!(ok, "{out}");
    net.detach("kept").expect("detach without a table");
    assert!(!host_link_exists(&kept.veth_host));
    assert!(net.attachments().unwrap().is_empty());
}

#[test]
fn published_ports_answer_on_loopback_gateway_and_hairpin() {
    if !usable("published_ports_answer_on_loopback_gateway_and_hairpin") {
        return;
    }
    let mut t = TestNet::new(4).expect("test network");
    let (a, b) = (t.netns("a").unwrap(), t.netns("b").unwrap());
    let net = t.network();
    let gw = net.gateway();
    let _tcp = TcpServer::start(&a, 80, "hello-80").unwrap();
    let _tcp2 = TcpServer::start(&a, 81, "hello-81").unwrap();
    let _udp = UdpServer::start(&a, 53, "udp-53").unwrap();
    net.attach(
        "web",
        &a,
        &ports(&["40410:80", "127.0.0.1:40411:81", "40412:53/udp"]),
    )
    .expect("attach with ports");
    net.attach("client", &b, &[]).expect("attach client");

    let lo = Ipv4Addr::LOCALHOST;
    assert_eq!(
        tcp_fetch(None, addr(lo, 40410)).expect("loopback"),
        "hello-80"
    );
    assert_eq!(
        tcp_fetch(None, addr(gw, 40410)).expect("gateway"),
        "hello-80"
    );
    assert_eq!(
        tcp_fetch(None, addr(lo, 40411)).expect("127.0.0.1 only"),
        "hello-81"
    );
    assert!(
        tcp_fetch(None, addr(gw, 40411)).is_err(),
        "a port published on 127.0.0.1 must not answer on the gateway"
    );
    assert_eq!(
        udp_ask(addr(lo, 40412)).expect("udp via loopback"),
        "udp-53"
    );
    // Another namespace on the bridge through the host address (hairpin NAT).
    assert_eq!(
        tcp_fetch(Some(&b), addr(gw, 40410)).expect("hairpin"),
        "hello-80"
    );

    net.detach("web").unwrap();
    assert!(tcp_fetch(None, addr(lo, 40410)).is_err());
}

#[test]
fn netns_files_come_and_go() {
    if !is_root() {
        skip!("netns tests need root");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ns").join("x");
    corral_net::create_netns(&path).unwrap();
    let inside = corral_net::in_netns(&path, || std::fs::read_link("/proc/thread-self/ns/net"))
        .unwrap()
        .unwrap();
    assert_ne!(
        inside,
        std::fs::read_link("/proc/thread-self/ns/net").unwrap()
    );
    corral_net::delete_netns(&path).unwrap();
    corral_net::delete_netns(&path).unwrap();
    assert!(!path.exists());
    let _ = nix::mount::umount2(&dir.path().join("ns"), nix::mount::MntFlags::MNT_DETACH);
    assert!(!Path::new(&path).exists());
}

/// `route_localnet` on the bridge must not open the host's loopback services to a
/// namespace that routes 127.0.0.0/8 to the gateway (CVE-2020-8558): a datagram
/// needs no answer, so one reaching a loopback-only socket is the exploit.
#[test]
fn host_loopback_is_closed_to_the_bridge() {
    if !usable("host_loopback_is_closed_to_the_bridge") {
        return;
    }
    let mut t = TestNet::new(5).expect("test network");
    let b = t.netns("b").unwrap();
    let net = t.network();
    net.attach("attacker", &b, &[]).expect("attach");
    let host_only = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    host_only
        .set_read_timeout(Some(std::time::Duration::from_millis(800)))
        .unwrap();
    let port = host_only.local_addr().unwrap().port();
    let gw = net.gateway().to_string();
    for cmd in [
        &[
            "ip",
            "route",
            "del",
            "local",
            "127.0.0.1",
            "dev",
            "lo",
            "table",
            "local",
        ][..],
        &[
            "ip",
            "route",
            "del",
            "local",
            "127.0.0.0/8",
            "dev",
            "lo",
            "table",
            "local",
        ],
        &[
            "ip",
            "route",
            "add",
            "127.0.0.0/8",
            "via",
            &gw,
            "dev",
            "eth0",
        ],
        &["sysctl", "-w", "net.ipv4.conf.eth0.route_localnet=1"],
    ] {
        let (ok, out) = ns_exec(&b, cmd);
        assert!(ok, "{cmd:?}: {out}");
    }
    let sent = corral_net::in_netns(&b, || -> std::io::Result<()> {
        let sock = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        for _ in 0..3 {
            sock.send_to(b"intrusion", addr(Ipv4Addr::LOCALHOST, port))?;
        }
        Ok(())
    })
    .unwrap();
    sent.expect("the namespace sends towards 127.0.0.1 via the gateway");
    let mut buf = [0u8; 64];
    let got = host_only.recv_from(&mut buf);
    assert!(
        got.is_err(),
        "a namespace on the bridge reached the host's 127.0.0.1:{port}: {got:?}"
    );
}

#[test]
fn reopen_skips_nft_only_while_the_table_is_there() {
    if !usable("reopen_skips_nft_only_while_the_table_is_there") {
        return;
    }
    let t = TestNet::new(6).expect("test network");
    let table = t.network().table().to_string();
    let recorded = t.config().state_dir.join("base-ruleset.nft");
    assert!(recorded.exists(), "open records the ruleset it applied");

    // Someone flushes the ruleset (or the host rebooted): the next open must
    // notice the missing table and apply the ruleset again.
    let (ok, out) = corral_tests::host::sh(&format!("nft delete table ip {table}"));
    assert!(ok, "{out}");
    assert!(nft_table(&table).contains("No such file"), "table gone");
    Network::open(t.config()).expect("reopen");
    let listed = nft_table(&table);
    assert!(
        listed.contains("chain prerouting") && listed.contains("masquerade"),
        "{listed}"
    );

    // A changed ruleset (here: the record no longer matches) is applied again too.
    std::fs::write(&recorded, "stale").unwrap();
    Network::open(t.config()).expect("reopen with a stale record");
    assert_ne!(std::fs::read_to_string(&recorded).unwrap(), "stale");
}
