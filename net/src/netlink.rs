//! A small synchronous rtnetlink client: just the link, address and route requests
//! the network needs, each one round trip on a socket of the caller's network
//! namespace (a socket stays bound to the namespace it was created in).

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    bind, recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
    SockType,
};

use crate::error::{Error, Result};

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;

const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
const IFLA_PROTINFO: u16 = 12;
const IFLA_LINKINFO: u16 = 18;
const IFLA_BRPORT_MODE: u16 = 4;
const NLA_F_NESTED: u16 = 1 << 15;
const AF_BRIDGE: u8 = 7;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_OIF: u16 = 4;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_GETTABLE: u16 = 1;
const NFTA_TABLE_NAME: u16 = 1;
const NFPROTO_IPV4: u8 = 2;

const IFF_UP: u32 = 0x1;
const AF_INET: u8 = libc::AF_INET as u8;
const AF_UNSPEC: u8 = libc::AF_UNSPEC as u8;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;
const NLMSG_HDRLEN: usize = 16;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// A link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub kind: Option<String>,
    pub up: bool,
}

pub struct Socket {
    fd: OwnedFd,
    seq: u32,
}

impl Socket {
    /// A route netlink socket in the calling thread's network namespace.
    pub fn open() -> Result<Socket> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )
        .map_err(|e| Error::sys("socket(AF_NETLINK, NETLINK_ROUTE)", e))?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))
            .map_err(|e| Error::sys("bind netlink socket", e))?;
        Ok(Socket { fd, seq: 0 })
    }

    /// An nfnetlink socket: only for [`Socket::nft_table_exists`].
    pub fn open_netfilter() -> Result<Socket> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkNetFilter,
        )
        .map_err(|e| Error::sys("socket(AF_NETLINK, NETLINK_NETFILTER)", e))?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))
            .map_err(|e| Error::sys("bind netfilter netlink socket", e))?;
        Ok(Socket { fd, seq: 0 })
    }

    /// Whether nftables has an `ip` family table called `name`: one round trip,
    /// where `nft list table` would cost a process and a full ruleset dump.
    pub fn nft_table_exists(&mut self, name: &str) -> Result<bool> {
        let mut m = Msg::new((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE, 0);
        // struct nfgenmsg: family, version (NFNETLINK_V0), res_id (big endian)
        m.buf.extend_from_slice(&[NFPROTO_IPV4, 0, 0, 0]);
        m.attr_str(NFTA_TABLE_NAME, name);
        match self.request(m, &format!("get nftables table ip {name}")) {
            Ok(_) => Ok(true),
            Err(Error::Netlink {
                errno: Errno::ENOENT,
                ..
            }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Hairpin mode on bridge port `index`: a frame may leave by the port it
    /// came in on, which a pod reaching itself through a Service needs when
    /// br_netfilter bridges the DNATed packet back to it.
    pub fn set_hairpin(&mut self, index: u32, name: &str) -> Result<()> {
        let mut m = Msg::new(RTM_SETLINK, 0);
        m.buf.extend_from_slice(&[AF_BRIDGE, 0, 0, 0]);
        m.buf.extend_from_slice(&(index as i32).to_ne_bytes());
        m.buf.extend_from_slice(&[0; 8]);
        let p = m.nest(IFLA_PROTINFO | NLA_F_NESTED);
        m.attr(IFLA_BRPORT_MODE, &[1]);
        m.end(p);
        self.request(m, &format!("set hairpin mode on {name}"))
            .map(drop)
    }

    /// The link called `name`, or None when there is none.
    pub fn link(&mut self, name: &str) -> Result<Option<Link>> {
        let mut m = Msg::new(RTM_GETLINK, 0);
        m.ifinfo(0, 0, 0);
        m.attr_str(IFLA_IFNAME, name);
        match self.request(m, &format!("get link {name}")) {
            Ok(replies) => replies
                .iter()
                .find(|(ty, _)| *ty == RTM_NEWLINK)
                .map(|(_, body)| parse_link(body, name))
                .transpose(),
            Err(Error::Netlink {
                errno: Errno::ENODEV,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a link of `kind` (e.g. "bridge"); `Ok(false)` when it already exists.
    pub fn create_link(&mut self, name: &str, kind: &str) -> Result<bool> {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
        m.ifinfo(0, 0, 0);
        m.attr_str(IFLA_IFNAME, name);
        let info = m.nest(IFLA_LINKINFO);
        m.attr(IFLA_INFO_KIND, kind.as_bytes());
        m.end(info);
        match self.request(m, &format!("create {kind} {name}")) {
            Ok(_) => Ok(true),
            Err(Error::Netlink {
                errno: Errno::EEXIST,
                ..
            }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates a veth pair, the host end up and enslaved to `master`, the peer
    /// created directly inside the namespace `netns` under `peer`, still down.
    pub fn create_veth(&mut self, host: &str, master: u32, peer: &str, netns: RawFd) -> Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
        m.ifinfo(0, IFF_UP, IFF_UP);
        m.attr_str(IFLA_IFNAME, host);
        m.attr(IFLA_MASTER, &master.to_ne_bytes());
        let info = m.nest(IFLA_LINKINFO);
        m.attr(IFLA_INFO_KIND, b"veth");
        let data = m.nest(IFLA_INFO_DATA);
        let p = m.nest(VETH_INFO_PEER);
        m.ifinfo(0, 0, 0);
        m.attr_str(IFLA_IFNAME, peer);
        m.attr(IFLA_NET_NS_FD, &(netns as u32).to_ne_bytes());
        m.end(p);
        m.end(data);
        m.end(info);
        self.request(m, &format!("create veth {host} (peer {peer})"))
            .map(drop)
    }

    /// Deletes the link `name`; `Ok(false)` when there was none.
    pub fn delete_link(&mut self, name: &str) -> Result<bool> {
        let mut m = Msg::new(RTM_DELLINK, 0);
        m.ifinfo(0, 0, 0);
        m.attr_str(IFLA_IFNAME, name);
        match self.request(m, &format!("delete link {name}")) {
            Ok(_) => Ok(true),
            Err(Error::Netlink {
                errno: Errno::ENODEV,
                ..
            }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn set_up(&mut self, name: &str) -> Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, 0);
        m.ifinfo(0, IFF_UP, IFF_UP);
        m.attr_str(IFLA_IFNAME, name);
        self.request(m, &format!("set {name} up")).map(drop)
    }

    /// Adds `ip/prefix` to the link; an address already there is fine.
    pub fn add_address(
        &mut self,
        index: u32,
        ip: Ipv4Addr,
        prefix: u8,
        brd: Ipv4Addr,
    ) -> Result<()> {
        let mut m = Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
        m.buf
            .extend_from_slice(&[AF_INET, prefix, 0, RT_SCOPE_UNIVERSE]);
        m.buf.extend_from_slice(&index.to_ne_bytes());
        m.attr(IFA_LOCAL, &ip.octets());
        m.attr(IFA_ADDRESS, &ip.octets());
        m.attr(IFA_BROADCAST, &brd.octets());
        match self.request(m, &format!("add address {ip}/{prefix} to link {index}")) {
            Ok(_)
            | Err(Error::Netlink {
                errno: Errno::EEXIST,
                ..
            }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub fn add_default_route(&mut self, gateway: Ipv4Addr, oif: u32) -> Result<()> {
        let mut m = Msg::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
        m.buf.extend_from_slice(&[
            AF_INET,
            0,
            0,
            0,
            RT_TABLE_MAIN,
            RTPROT_BOOT,
            RT_SCOPE_UNIVERSE,
            RTN_UNICAST,
        ]);
        m.buf.extend_from_slice(&0u32.to_ne_bytes());
        m.attr(RTA_GATEWAY, &gateway.octets());
        m.attr(RTA_OIF, &oif.to_ne_bytes());
        self.request(m, &format!("add default route via {gateway}"))
            .map(drop)
    }

    /// Sends one request and collects the answers up to its acknowledgement.
    fn request(&mut self, mut m: Msg, op: &str) -> Result<Vec<(u16, Vec<u8>)>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        m.finish(seq);
        sendto(
            self.fd.as_raw_fd(),
            &m.buf,
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )
        .map_err(|errno| Error::Netlink {
            op: format!("{op}: send"),
            errno,
        })?;
        let mut replies = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(|errno| {
                Error::Netlink {
                    op: format!("{op}: receive"),
                    errno,
                }
            })?;
            for (ty, msg_seq, body) in split_messages(&buf[..n], op)? {
                if msg_seq != seq {
                    continue;
                }
                match ty {
                    NLMSG_ERROR => return ack_result(body, op).map(|()| replies),
                    NLMSG_DONE => return Ok(replies),
                    _ => replies.push((ty, body.to_vec())),
                }
            }
        }
    }
}

fn protocol_error(op: &str, msg: &str) -> Error {
    Error::NetlinkProtocol {
        op: op.to_string(),
        msg: msg.to_string(),
    }
}

fn read_u16(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// Splits a datagram into (type, seq, payload) messages.
fn split_messages<'a>(mut buf: &'a [u8], op: &str) -> Result<Vec<(u16, u32, &'a [u8])>> {
    let mut out = Vec::new();
    while buf.len() >= NLMSG_HDRLEN {
        let len = read_u32(buf, 0) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            return Err(protocol_error(op, "message length out of bounds"));
        }
        out.push((read_u16(buf, 4), read_u32(buf, 8), &buf[NLMSG_HDRLEN..len]));
        buf = &buf[align(len).min(buf.len())..];
    }
    Ok(out)
}

/// An NLMSG_ERROR payload: errno 0 is the acknowledgement.
fn ack_result(body: &[u8], op: &str) -> Result<()> {
    if body.len() < 4 {
        return Err(protocol_error(op, "short error message"));
    }
    let code = i32::from_ne_bytes([body[0], body[1], body[2], body[3]]);
    if code == 0 {
        Ok(())
    } else {
        Err(Error::Netlink {
            op: op.to_string(),
            errno: Errno::from_raw(-code),
        })
    }
}

/// Iterates the (type, payload) attributes of a buffer.
fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = read_u16(buf, 0) as usize;
        if len < 4 || len > buf.len() {
            return None;
        }
        let item = (read_u16(buf, 2) & NLA_TYPE_MASK, &buf[4..len]);
        buf = &buf[align(len).min(buf.len())..];
        Some(item)
    })
}

fn parse_link(body: &[u8], name: &str) -> Result<Link> {
    let op = format!("get link {name}");
    if body.len() < 16 {
        return Err(protocol_error(&op, "short ifinfomsg"));
    }
    let index = read_u32(body, 4);
    let flags = read_u32(body, 8);
    let kind = attrs(&body[16..])
        .find(|(ty, _)| *ty == IFLA_LINKINFO)
        .and_then(|(_, info)| attrs(info).find(|(ty, _)| *ty == IFLA_INFO_KIND))
        .map(|(_, k)| {
            String::from_utf8_lossy(k)
                .trim_end_matches('\0')
                .to_string()
        });
    Ok(Link {
        index,
        kind,
        up: flags & IFF_UP != 0,
    })
}

/// A request under construction: header, fixed part, then attributes.
struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    fn new(ty: u16, flags: u16) -> Msg {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        buf.extend_from_slice(&[0; 8]);
        Msg { buf }
    }

    fn ifinfo(&mut self, index: i32, flags: u32, change: u32) {
        self.buf.extend_from_slice(&[AF_UNSPEC, 0, 0, 0]);
        self.buf.extend_from_slice(&index.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&change.to_ne_bytes());
    }

    fn attr(&mut self, ty: u16, data: &[u8]) {
        let len = (4 + data.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn attr_str(&mut self, ty: u16, s: &str) {
        let mut data = Vec::with_capacity(s.len() + 1);
        data.extend_from_slice(s.as_bytes());
        data.push(0);
        self.attr(ty, &data);
    }

    /// Opens a nested attribute; `end` fills in its length.
    fn nest(&mut self, ty: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        at
    }

    fn end(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn pad(&mut self) {
        self.buf.resize(align(self.buf.len()), 0);
    }

    fn finish(&mut self, seq: u32) {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_nested_attributes_with_lengths_and_padding() {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE);
        m.ifinfo(0, IFF_UP, IFF_UP);
        let info = m.nest(IFLA_LINKINFO);
        m.attr(IFLA_INFO_KIND, b"veth");
        m.attr_str(IFLA_IFNAME, "ab");
        m.end(info);
        m.finish(7);
        let b = &m.buf;
        assert_eq!(read_u32(b, 0) as usize, b.len());
        assert_eq!(read_u32(b, 8), 7);
        assert_eq!(read_u16(b, 6), NLM_F_CREATE | NLM_F_REQUEST | NLM_F_ACK);
        let body = &b[NLMSG_HDRLEN + 16..];
        let (ty, nested) = attrs(body).next().unwrap();
        assert_eq!(ty, IFLA_LINKINFO);
        let inner: Vec<_> = attrs(nested).collect();
        assert_eq!(
            inner,
            vec![(IFLA_INFO_KIND, &b"veth"[..]), (IFLA_IFNAME, &b"ab\0"[..])]
        );
        assert_eq!(b.len() % 4, 0);
    }

    #[test]
    fn error_payload_maps_to_errno() {
        let eexist = (-(libc::EEXIST)).to_ne_bytes();
        let err = ack_result(&eexist, "op").unwrap_err();
        assert!(matches!(
            err,
            Error::Netlink {
                errno: Errno::EEXIST,
                ..
            }
        ));
        ack_result(&0i32.to_ne_bytes(), "op").unwrap();
        assert!(ack_result(&[0, 0], "op").is_err());
    }

    #[test]
    fn rejects_truncated_messages() {
        let mut raw = vec![0u8; 20];
        raw[0..4].copy_from_slice(&40u32.to_ne_bytes());
        assert!(split_messages(&raw, "op").is_err());
    }

    #[test]
    fn finds_loopback_in_own_namespace() {
        let mut s = match Socket::open() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("SKIPPED: no netlink socket here: {e}");
                return;
            }
        };
        let lo = s.link("lo").unwrap().expect("lo exists");
        assert!(lo.index > 0);
        assert_eq!(s.link("crlnoexist0").unwrap(), None);
    }
}
