//! Liveness, readiness and startup probes: exec (through `corral-runtime
//! exec`), httpGet and tcpSocket (to the pod's address, which the host
//! reaches over the bridge), with Kubernetes' timing and thresholds.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use corral_api::core::{Container, Probe};
use corral_api::IntOrString;

use super::container;
use crate::config::Config;
use crate::state::Attempt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

struct Tracker {
    kind: ProbeKind,
    probe: Probe,
    next: Option<Instant>,
    successes: i32,
    failures: i32,
    /// The probe's verdict once a threshold was crossed.
    passing: bool,
}

impl Tracker {
    fn new(kind: ProbeKind, probe: Probe) -> Tracker {
        Tracker {
            kind,
            probe,
            next: None,
            successes: 0,
            failures: 0,
            passing: false,
        }
    }

    fn period(&self) -> Duration {
        Duration::from_secs(self.probe.period_seconds.unwrap_or(10).max(1) as u64)
    }
}

/// The probes of one container's current attempt.
pub struct Prober {
    trackers: Vec<Tracker>,
    started_at: Instant,
}

impl Prober {
    pub fn new(c: &Container) -> Prober {
        let trackers = [
            (ProbeKind::Startup, &c.startup_probe),
            (ProbeKind::Liveness, &c.liveness_probe),
            (ProbeKind::Readiness, &c.readiness_probe),
        ]
        .into_iter()
        .filter_map(|(k, p)| p.clone().map(|p| Tracker::new(k, p)))
        .collect();
        Prober {
            trackers,
            started_at: Instant::now(),
        }
    }

    /// A new attempt: probes start over after their initial delay.
    pub fn reset(&mut self) {
        self.started_at = Instant::now();
        for t in &mut self.trackers {
            t.next = None;
            t.successes = 0;
            t.failures = 0;
            t.passing = false;
        }
    }

    fn tracker(&self, kind: ProbeKind) -> Option<&Tracker> {
        self.trackers.iter().find(|t| t.kind == kind)
    }

    /// Started: no startup probe, or it has passed.
    pub fn started(&self) -> bool {
        self.tracker(ProbeKind::Startup).is_none_or(|t| t.passing)
    }

    /// Ready: started, and no readiness probe or it passes.
    pub fn ready(&self) -> bool {
        self.started() && self.tracker(ProbeKind::Readiness).is_none_or(|t| t.passing)
    }

    /// Run the probes that are due; returns the kind whose failure means
    /// the container must be restarted (liveness or startup).
    pub fn run(&mut self, cfg: &Config, a: &Attempt, ip: &str) -> Option<ProbeKind> {
        let started = self.started();
        let now = Instant::now();
        for t in &mut self.trackers {
            // Liveness and readiness wait for the startup probe.
            if t.kind != ProbeKind::Startup && !started {
                continue;
            }
            if t.kind == ProbeKind::Startup && t.passing {
                continue;
            }
            let due = *t.next.get_or_insert_with(|| {
                self.started_at
                    + Duration::from_secs(t.probe.initial_delay_seconds.unwrap_or(0).max(0) as u64)
            });
            if now < due {
                continue;
            }
            t.next = Some(now + t.period());
            let ok = check(cfg, a, ip, &t.probe);
            if ok {
                t.successes += 1;
                t.failures = 0;
                if t.successes >= t.probe.success_threshold.unwrap_or(1).max(1) {
                    t.passing = true;
                }
            } else {
                t.failures += 1;
                t.successes = 0;
                if t.failures >= t.probe.failure_threshold.unwrap_or(3).max(1) {
                    t.passing = false;
                    if t.kind != ProbeKind::Readiness {
                        return Some(t.kind);
                    }
                }
            }
        }
        None
    }
}

/// One probe run: success or failure (a timeout is a failure).
pub fn check(cfg: &Config, a: &Attempt, ip: &str, p: &Probe) -> bool {
    let timeout = Duration::from_secs(p.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(e) = &p.exec {
        let mut args = vec!["exec", a.runtime_id.as_str()];
        args.extend(e.command.iter().map(String::as_str));
        return container::runtime(cfg, &args, timeout).is_ok_and(|o| o.status.success());
    }
    if let Some(h) = &p.http_get {
        let host = if h.host.is_empty() { ip } else { &h.host };
        let Some(addr) = address(host, &h.port) else {
            return false;
        };
        let path = if h.path.is_empty() { "/" } else { &h.path };
        return http_get(addr, host, path, &h.http_headers, timeout)
            .is_some_and(|c| (200..400).contains(&c));
    }
    if let Some(t) = &p.tcp_socket {
        let host = if t.host.is_empty() { ip } else { &t.host };
        return address(host, &t.port)
            .is_some_and(|addr| TcpStream::connect_timeout(&addr, timeout).is_ok());
    }
    false
}

/// Named ports are not resolved (they need the container's ports list).
fn address(host: &str, port: &IntOrString) -> Option<SocketAddr> {
    let port = u16::try_from(port.as_int()?).ok()?;
    format!("{host}:{port}").parse().ok()
}

/// The status code of `GET path`, None when the exchange failed.
fn http_get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[corral_api::core::HttpHeader],
    timeout: Duration,
) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: corral-probe/1.0\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(&format!("{}: {}\r\n", h.name, h.value));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut head = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        let got = s.read(&mut head[n..]).ok()?;
        if got == 0 {
            break;
        }
        n += got;
    }
    let line = std::str::from_utf8(&head[..n]).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn http_and_tcp_against_a_local_server() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            for code in ["200 OK", "500 Internal Server Error"] {
                let (mut c, _) = l.accept().unwrap();
                let mut buf = [0u8; 512];
                let _ = c.read(&mut buf).unwrap();
                c.write_all(format!("HTTP/1.1 {code}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .unwrap();
            }
        });
        let t = Duration::from_secs(2);
        assert_eq!(http_get(addr, "127.0.0.1", "/", &[], t), Some(200));
        assert_eq!(http_get(addr, "127.0.0.1", "/", &[], t), Some(500));
        server.join().unwrap();
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert_eq!(http_get(closed, "127.0.0.1", "/", &[], t), None);
        assert!(address("10.0.0.1", &IntOrString::Int(80)).is_some());
        assert!(address("10.0.0.1", &IntOrString::String("http".into())).is_none());
    }
}
