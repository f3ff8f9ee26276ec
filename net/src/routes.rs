//! Routes to other hosts' pod networks: `CIDR via GATEWAY` in the main table,
//! tagged with Corral's own route protocol number so that the routes Corral
//! made can be listed (and stale ones removed) without touching any other
//! route of the host. One rtnetlink round trip per request, in the calling
//! thread's network namespace.
//!
//! The messages are encoded here rather than through `netlink::Socket`
//! because its request builder is private to that module; the wire format
//! is the same (struct nlmsghdr + struct rtmsg + attributes).

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    bind, recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
    SockType,
};

use crate::cidr::Ipv4Cidr;
use crate::error::{Error, Result};

/// `rtm_protocol` of the routes Corral makes (unassigned in
/// /etc/iproute2/rt_protos; `ip route show proto 77` lists them).
pub const PROTO_CORRAL: u8 = 77;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_CREATE: u16 = 0x400;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_GETROUTE: u16 = 26;
const RTA_DST: u16 = 1;
const RTA_GATEWAY: u16 = 5;
const RTA_TABLE: u16 = 15;
const RT_TABLE_MAIN: u8 = 254;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;
const HDR: usize = 16;
const RTMSG: usize = 12;

/// A route Corral made: traffic to `dst` goes to `gateway`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    pub dst: Ipv4Cidr,
    pub gateway: Ipv4Addr,
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} via {}", self.dst, self.gateway)
    }
}

/// Adds the route, or replaces the main table's route to the same
/// destination (a node that changed address keeps one route).
pub fn replace(route: &Route) -> Result<()> {
    let mut m = rtmsg(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, route.dst);
    attr(&mut m, RTA_GATEWAY, &route.gateway.octets());
    request(&m, &format!("replace route {route}")).map(drop)
}

/// Deletes Corral's route to `dst`; `Ok(false)` when there is none.
pub fn delete(dst: Ipv4Cidr) -> Result<bool> {
    let m = rtmsg(RTM_DELROUTE, 0, dst);
    match request(&m, &format!("delete route {dst}")) {
        Ok(_) => Ok(true),
        Err(Error::Netlink {
            errno: Errno::ESRCH,
            ..
        }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The main table's routes with Corral's protocol number.
pub fn list() -> Result<Vec<Route>> {
    let mut m = header(RTM_GETROUTE, NLM_F_DUMP);
    m.extend_from_slice(&[libc::AF_INET as u8, 0, 0, 0, 0, 0, 0, 0]);
    m.extend_from_slice(&0u32.to_ne_bytes());
    let replies = request(&m, "list routes")?;
    let mut out: Vec<Route> = replies
        .iter()
        .filter(|(ty, _)| *ty == RTM_NEWROUTE)
        .filter_map(|(_, body)| parse_route(body))
        .collect();
    out.sort_by_key(|r| (r.dst.addr(), r.dst.prefix(), r.gateway));
    Ok(out)
}

/// A route of the dump, if it is one of Corral's in the main table.
fn parse_route(body: &[u8]) -> Option<Route> {
    if body.len() < RTMSG {
        return None;
    }
    let (dst_len, mut table, protocol) = (body[1], u32::from(body[4]), body[5]);
    let (mut dst, mut gateway) = (None, None);
    for (ty, data) in attrs(&body[RTMSG..]) {
        match (ty, data.len()) {
            (RTA_DST, 4) => dst = Some(Ipv4Addr::new(data[0], data[1], data[2], data[3])),
            (RTA_GATEWAY, 4) => gateway = Some(Ipv4Addr::new(data[0], data[1], data[2], data[3])),
            (RTA_TABLE, 4) => table = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]),
            _ => {}
        }
    }
    if protocol != PROTO_CORRAL || table != u32::from(RT_TABLE_MAIN) {
        return None;
    }
    Some(Route {
        dst: Ipv4Cidr::new(dst?, dst_len).ok()?,
        gateway: gateway?,
    })
}

fn header(ty: u16, flags: u16) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m.extend_from_slice(&[0; 8]);
    m
}

/// Header + rtmsg for Corral's unicast route to `dst` in the main table.
fn rtmsg(ty: u16, flags: u16, dst: Ipv4Cidr) -> Vec<u8> {
    let mut m = header(ty, flags);
    m.extend_from_slice(&[
        libc::AF_INET as u8,
        dst.prefix(),
        0,
        0,
        RT_TABLE_MAIN,
        PROTO_CORRAL,
        RT_SCOPE_UNIVERSE,
        RTN_UNICAST,
    ]);
    m.extend_from_slice(&0u32.to_ne_bytes());
    attr(&mut m, RTA_DST, &dst.addr().octets());
    m
}

fn attr(m: &mut Vec<u8>, ty: u16, data: &[u8]) {
    m.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(data);
    m.resize(align(m.len()), 0);
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

fn read_u16(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = read_u16(buf, 0) as usize;
        if len < 4 || len > buf.len() {
            return None;
        }
        let item = (read_u16(buf, 2) & 0x3fff, &buf[4..len]);
        buf = &buf[align(len).min(buf.len())..];
        Some(item)
    })
}

fn open() -> Result<OwnedFd> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .map_err(|e| Error::sys("socket(AF_NETLINK, NETLINK_ROUTE)", e))?;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))
        .map_err(|e| Error::sys("bind netlink socket", e))?;
    Ok(fd)
}

/// Sends one request on a fresh socket and collects the answers up to its
/// acknowledgement (or the end of a dump).
fn request(m: &[u8], op: &str) -> Result<Vec<(u16, Vec<u8>)>> {
    let fd = open()?;
    let mut m = m.to_vec();
    let len = m.len() as u32;
    m[0..4].copy_from_slice(&len.to_ne_bytes());
    m[8..12].copy_from_slice(&1u32.to_ne_bytes());
    let nl_err = |what: &str| {
        let op = format!("{op}: {what}");
        move |errno| Error::Netlink { op, errno }
    };
    sendto(
        fd.as_raw_fd(),
        &m,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .map_err(nl_err("send"))?;
    let mut replies = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(nl_err("receive"))?;
        let mut rest = &buf[..n];
        while rest.len() >= HDR {
            let len = read_u32(rest, 0) as usize;
            if len < HDR || len > rest.len() {
                return Err(Error::NetlinkProtocol {
                    op: op.to_string(),
                    msg: "message length out of bounds".into(),
                });
            }
            let (ty, body) = (read_u16(rest, 4), &rest[HDR..len]);
            match ty {
                NLMSG_ERROR => return ack(body, op).map(|()| replies),
                NLMSG_DONE => return Ok(replies),
                _ => replies.push((ty, body.to_vec())),
            }
            rest = &rest[align(len).min(rest.len())..];
        }
    }
}

fn ack(body: &[u8], op: &str) -> Result<()> {
    if body.len() < 4 {
        return Err(Error::NetlinkProtocol {
            op: op.to_string(),
            msg: "short error message".into(),
        });
    }
    match i32::from_ne_bytes([body[0], body[1], body[2], body[3]]) {
        0 => Ok(()),
        code => Err(Error::Netlink {
            op: op.to_string(),
            errno: Errno::from_raw(-code),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_route_with_destination_and_gateway() {
        let dst: Ipv4Cidr = "10.9.8.0/24".parse().unwrap();
        let mut m = rtmsg(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, dst);
        attr(&mut m, RTA_GATEWAY, &[192, 168, 1, 2]);
        let body = &m[HDR..];
        assert_eq!(body[1], 24);
        assert_eq!(body[5], PROTO_CORRAL);
        let got: Vec<_> = attrs(&body[RTMSG..]).collect();
        assert_eq!(
            got,
            vec![
                (RTA_DST, &[10, 9, 8, 0][..]),
                (RTA_GATEWAY, &[192, 168, 1, 2][..])
            ]
        );
        // The dump parser reads back what the request wrote.
        let r = parse_route(body).unwrap();
        assert_eq!(r.to_string(), "10.9.8.0/24 via 192.168.1.2");
        let mut other = body.to_vec();
        other[5] = 4; // RTPROT_STATIC: not ours
        assert_eq!(parse_route(&other), None);
    }

    /// Real kernel round trips in a namespace of the test's own, on a bridge
    /// link, so no host route is touched.
    #[test]
    fn replace_list_delete_in_a_private_namespace() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("SKIPPED: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        // create_netns makes the namespace's directory a mount of its own:
        // a subdirectory, unmounted below, so the temporary directory goes.
        let ns_dir = dir.path().join("netns");
        let ns = ns_dir.join("ns");
        crate::create_netns(&ns).unwrap();
        let result = crate::in_netns(&ns, || -> Result<()> {
            let mut s = crate::netlink::Socket::open()?;
            s.create_link("crlroute0", "bridge")?;
            let link = s.link("crlroute0")?.expect("the bridge was just made");
            s.add_address(
                link.index,
                Ipv4Addr::new(192, 168, 77, 1),
                24,
                Ipv4Addr::new(192, 168, 77, 255),
            )?;
            s.set_up("crlroute0")?;
            let r = Route {
                dst: "10.9.8.0/24".parse()?,
                gateway: Ipv4Addr::new(192, 168, 77, 2),
            };
            replace(&r)?;
            assert_eq!(list()?, vec![r]);
            let moved = Route {
                gateway: Ipv4Addr::new(192, 168, 77, 3),
                ..r
            };
            replace(&moved)?;
            assert_eq!(list()?, vec![moved], "replaced, not added");
            assert!(delete(r.dst)?);
            assert!(!delete(r.dst)?);
            assert!(list()?.is_empty());
            Ok(())
        });
        crate::delete_netns(&ns).unwrap();
        let _ = nix::mount::umount2(&ns_dir, nix::mount::MntFlags::MNT_DETACH);
        result.unwrap().unwrap();
    }
}
