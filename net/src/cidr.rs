//! IPv4 networks in CIDR notation (`10.88.0.0/16`).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// An IPv4 network: a base address with no host bits set and a prefix length.
///
/// Prefixes longer than /30 are refused: a network needs its gateway plus at least
/// one address to hand out besides the network and broadcast addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Cidr {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Ipv4Cidr, Error> {
        let input = format!("{addr}/{prefix}");
        let bad = |reason: String| Error::Cidr {
            input: input.clone(),
            reason,
        };
        if prefix > 30 {
            return Err(bad(format!(
                "prefix /{prefix} is too long: at most /30 leaves room for a gateway and one address"
            )));
        }
        let net = Ipv4Cidr { addr, prefix };
        if u32::from(addr) & !net.mask() != 0 {
            let base = Ipv4Addr::from(u32::from(addr) & net.mask());
            return Err(bad(format!(
                "host bits are set (did you mean {base}/{prefix}?)"
            )));
        }
        Ok(net)
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// The first host address, given to the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) + 1)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }

    /// The addresses handed to containers: every host address but the gateway.
    pub(crate) fn assignable(&self) -> std::ops::RangeInclusive<u32> {
        (u32::from(self.addr) + 2)..=(u32::from(self.broadcast()) - 1)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Ipv4Cidr, Error> {
        let bad = |reason: &str| Error::Cidr {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| bad("expected ADDRESS/PREFIX, e.g. 10.88.0.0/16"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| bad("the address is not a dotted IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| bad("the prefix is not a number from 0 to 32"))?;
        if prefix > 32 {
            return Err(bad("the prefix is not a number from 0 to 32"));
        }
        Ipv4Cidr::new(addr, prefix).map_err(|e| match e {
            Error::Cidr { reason, .. } => Error::Cidr {
                input: s.to_string(),
                reason,
            },
            other => other,
        })
    }
}

impl Serialize for Ipv4Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Ipv4Cidr, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_derives_addresses() {
        let n: Ipv4Cidr = "10.88.0.0/16".parse().unwrap();
        assert_eq!(n.to_string(), "10.88.0.0/16");
        assert_eq!(n.gateway(), Ipv4Addr::new(10, 88, 0, 1));
        assert_eq!(n.broadcast(), Ipv4Addr::new(10, 88, 255, 255));
        assert!(n.contains(Ipv4Addr::new(10, 88, 3, 4)));
        assert!(!n.contains(Ipv4Addr::new(10, 89, 0, 1)));
        let r = n.assignable();
        assert_eq!(Ipv4Addr::from(*r.start()), Ipv4Addr::new(10, 88, 0, 2));
        assert_eq!(Ipv4Addr::from(*r.end()), Ipv4Addr::new(10, 88, 255, 254));
    }

    #[test]
    fn rejects_bad_input_with_reason() {
        for (input, needle) in [
            ("10.88.0.1/16", "did you mean 10.88.0.0/16"),
            ("10.88.0.0", "expected ADDRESS/PREFIX"),
            ("10.88.0/16", "dotted IPv4"),
            ("10.88.0.0/33", "0 to 32"),
            ("10.88.0.0/31", "too long"),
        ] {
            let err = input.parse::<Ipv4Cidr>().unwrap_err().to_string();
            assert!(err.contains(needle), "{input}: {err}");
            assert!(err.contains(input), "{input}: {err}");
        }
    }

    #[test]
    fn smallest_network_has_one_assignable_address() {
        let n: Ipv4Cidr = "192.168.7.4/30".parse().unwrap();
        assert_eq!(n.gateway(), Ipv4Addr::new(192, 168, 7, 5));
        assert_eq!(n.assignable().count(), 1);
    }
}
