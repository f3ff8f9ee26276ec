//! Published ports: `[HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]`.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// One host port forwarded to a container port.
///
/// `host_ip: None` publishes on every local address of the host; `Some(ip)` only on
/// that one. A host port and protocol are published by at most one owner of a
/// network, whatever the host address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ip) = self.host_ip {
            write!(f, "{ip}:")?;
        }
        write!(
            f,
            "{}:{}/{}",
            self.host_port, self.container_port, self.proto
        )
    }
}

impl FromStr for PortMapping {
    type Err = Error;

    fn from_str(s: &str) -> Result<PortMapping, Error> {
        let bad = |reason: String| Error::PortMapping {
            input: s.to_string(),
            reason,
        };
        let (spec, proto) = match s.rsplit_once('/') {
            Some((spec, "tcp")) => (spec, Proto::Tcp),
            Some((spec, "udp")) => (spec, Proto::Udp),
            Some((_, other)) => {
                return Err(bad(format!("unknown protocol {other:?}: use tcp or udp")))
            }
            None => (s, Proto::Tcp),
        };
        let parts: Vec<&str> = spec.split(':').collect();
        let (host_ip, host_port, container_port) = match parts.as_slice() {
            [h, c] => (None, *h, *c),
            [ip, h, c] => (parse_host_ip(ip).map_err(bad)?, *h, *c),
            [_] => {
                return Err(bad(
                    "expected HOST_PORT:CONTAINER_PORT (publishing on a random host port is not supported)"
                        .to_string(),
                ))
            }
            _ => {
                return Err(bad(
                    "expected [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]".to_string(),
                ))
            }
        };
        Ok(PortMapping {
            host_ip,
            host_port: parse_port("host port", host_port).map_err(bad)?,
            container_port: parse_port("container port", container_port).map_err(bad)?,
            proto,
        })
    }
}

fn parse_host_ip(s: &str) -> Result<Option<Ipv4Addr>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let ip: Ipv4Addr = s
        .parse()
        .map_err(|_| format!("host address {s:?} is not an IPv4 address"))?;
    Ok((!ip.is_unspecified()).then_some(ip))
}

fn parse_port(what: &str, s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{what} {s:?} is not a number from 1 to 65535")),
        Ok(p) => Ok(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pm(host_ip: Option<Ipv4Addr>, h: u16, c: u16, proto: Proto) -> PortMapping {
        PortMapping {
            host_ip,
            host_port: h,
            container_port: c,
            proto,
        }
    }

    #[test]
    fn parses_the_accepted_forms() {
        let lo = Some(Ipv4Addr::LOCALHOST);
        for (input, want) in [
            ("8080:80", pm(None, 8080, 80, Proto::Tcp)),
            ("8080:80/tcp", pm(None, 8080, 80, Proto::Tcp)),
            ("8080:80/udp", pm(None, 8080, 80, Proto::Udp)),
            ("127.0.0.1:8080:80", pm(lo, 8080, 80, Proto::Tcp)),
            ("127.0.0.1:53:5353/udp", pm(lo, 53, 5353, Proto::Udp)),
            ("0.0.0.0:1:65535", pm(None, 1, 65535, Proto::Tcp)),
            (":8080:80", pm(None, 8080, 80, Proto::Tcp)),
        ] {
            assert_eq!(input.parse::<PortMapping>().unwrap(), want, "{input}");
        }
    }

    #[test]
    fn display_round_trips() {
        for input in ["8080:80/tcp", "127.0.0.1:8080:80/udp"] {
            let p: PortMapping = input.parse().unwrap();
            assert_eq!(p.to_string(), input);
            assert_eq!(p.to_string().parse::<PortMapping>().unwrap(), p);
        }
    }

    #[test]
    fn rejects_bad_input_with_reason() {
        for (input, needle) in [
            ("80", "random host port"),
            ("8080:80/sctp", "unknown protocol \"sctp\""),
            ("0:80", "host port \"0\""),
            ("8080:70000", "container port \"70000\""),
            ("8080:http", "container port \"http\""),
            ("localhost:8080:80", "host address \"localhost\""),
            ("::1:8080:80", "expected [HOST_IP:]"),
            ("", "random host port"),
        ] {
            let err = input.parse::<PortMapping>().unwrap_err().to_string();
            assert!(err.contains(needle), "{input}: {err}");
        }
    }
}
