//! IPv4 CIDR blocks: enough for the node pod-CIDR and service-IP allocators.
//! The master may not use the net crate (it depends on api and client only),
//! so this is its own twenty-line copy of the arithmetic.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid IPv4 CIDR {input:?}: {reason}")]
pub struct CidrError {
    pub input: String,
    pub reason: &'static str,
}

/// An IPv4 network: the address with its host bits cleared, and the prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    base: u32,
    prefix: u8,
}

impl Cidr {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Cidr> {
        (prefix <= 32).then(|| Cidr {
            base: u32::from(addr) & mask(prefix),
            prefix,
        })
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base)
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// How many addresses the block holds (2^(32-prefix)).
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == self.base
    }

    /// The `index`th address of the block, None past its end.
    pub fn nth(&self, index: u64) -> Option<Ipv4Addr> {
        (index < self.size()).then(|| Ipv4Addr::from(self.base.wrapping_add(index as u32)))
    }

    /// The offset of `ip` in the block, None when outside.
    pub fn offset(&self, ip: Ipv4Addr) -> Option<u64> {
        self.contains(ip)
            .then(|| u64::from(u32::from(ip).wrapping_sub(self.base)))
    }

    /// The `index`th sub-block of length `prefix` (for node pod CIDRs).
    pub fn subnet(&self, prefix: u8, index: u64) -> Option<Cidr> {
        if prefix < self.prefix || prefix > 32 {
            return None;
        }
        let count = 1u64 << u32::from(prefix - self.prefix);
        if index >= count {
            return None;
        }
        let step = 1u64 << (32 - u32::from(prefix));
        Some(Cidr {
            base: self.base.wrapping_add((index * step) as u32),
            prefix,
        })
    }

    /// How many sub-blocks of length `prefix` fit (0 when `prefix` is shorter).
    pub fn subnet_count(&self, prefix: u8) -> u64 {
        if prefix < self.prefix || prefix > 32 {
            return 0;
        }
        1u64 << u32::from(prefix - self.prefix)
    }

    /// Which sub-block of length `prefix` `other` is, when it is exactly one.
    pub fn subnet_index(&self, other: &Cidr) -> Option<u64> {
        if other.prefix < self.prefix || !self.contains(other.network()) {
            return None;
        }
        let step = 1u64 << (32 - u32::from(other.prefix));
        Some(u64::from(other.base.wrapping_sub(self.base)) / step)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let err = |reason| CidrError {
            input: s.to_string(),
            reason,
        };
        let (addr, prefix) = s.split_once('/').ok_or_else(|| err("no /prefix"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| err("not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| err("the prefix is not a number"))?;
        let cidr = Cidr::new(addr, prefix).ok_or_else(|| err("the prefix is above 32"))?;
        if cidr.network() != addr {
            return Err(err("host bits are set"));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_arithmetic() {
        let c: Cidr = "10.244.0.0/16".parse().unwrap();
        assert_eq!(c.to_string(), "10.244.0.0/16");
        assert_eq!(c.size(), 65536);
        assert!(c.contains("10.244.255.255".parse().unwrap()));
        assert!(!c.contains("10.245.0.0".parse().unwrap()));
        assert_eq!(c.nth(1), Some("10.244.0.1".parse().unwrap()));
        assert_eq!(c.nth(65536), None);
        assert_eq!(c.offset("10.244.1.2".parse().unwrap()), Some(258));
        assert_eq!(c.subnet_count(24), 256);
        let s = c.subnet(24, 3).unwrap();
        assert_eq!(s.to_string(), "10.244.3.0/24");
        assert_eq!(c.subnet_index(&s), Some(3));
        assert_eq!(c.subnet(24, 256), None);
        assert_eq!(c.subnet(8, 0), None);
        assert_eq!(c.subnet_index(&"10.245.0.0/24".parse().unwrap()), None);
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
    }

    #[test]
    fn bad_input() {
        for bad in [
            "10.0.0.0",
            "10.0.0.1/24",
            "10.0.0.0/33",
            "x/8",
            "10.0.0.0/x",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        let e = "10.0.0.1/24".parse::<Cidr>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid IPv4 CIDR \"10.0.0.1/24\": host bits are set"
        );
    }
}
