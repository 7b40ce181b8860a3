//! The `NETLINK_ROUTE` requests that configure an IPv4 interface, and the
//! parsing of the kernel's answers.
//!
//! Layouts from the kernel's uapi headers: `linux/netlink.h` (`nlmsghdr`,
//! `nlmsgerr`), `linux/rtnetlink.h` (`rtmsg`, `rtattr`, `RTM_*`, `RTA_*`),
//! `linux/if_link.h`/`linux/if.h` (`ifinfomsg`, `IFF_UP`) and
//! `linux/if_addr.h` (`ifaddrmsg`, `IFA_*`). Netlink integers are in the
//! host's byte order; addresses inside attributes are in network order.

use std::net::Ipv4Addr;

/// `NETLINK_ROUTE`, the protocol of the socket.
pub const NETLINK_ROUTE: i32 = 0;

/// `nlmsg_type` values.
pub const NLMSG_ERROR: u16 = 2;
/// End of a multipart answer.
pub const NLMSG_DONE: u16 = 3;
/// `RTM_NEWLINK`: also changes a link's flags.
pub const RTM_NEWLINK: u16 = 16;
/// `RTM_NEWADDR`.
pub const RTM_NEWADDR: u16 = 20;
/// `RTM_NEWROUTE`.
pub const RTM_NEWROUTE: u16 = 24;

/// `nlmsg_flags`: a request.
pub const NLM_F_REQUEST: u16 = 0x1;
/// Ask for an ack (an `NLMSG_ERROR` with error 0).
pub const NLM_F_ACK: u16 = 0x4;
/// Replace an existing object.
pub const NLM_F_REPLACE: u16 = 0x100;
/// Create it when it does not exist.
pub const NLM_F_CREATE: u16 = 0x400;

/// `AF_INET`.
pub const AF_INET: u8 = 2;
/// `AF_UNSPEC`.
pub const AF_UNSPEC: u8 = 0;
/// `IFF_UP` in `ifi_flags`.
pub const IFF_UP: u32 = 0x1;

/// `IFA_ADDRESS`: the prefix address (the peer's on point-to-point links).
pub const IFA_ADDRESS: u16 = 1;
/// `IFA_LOCAL`: the interface's own address.
pub const IFA_LOCAL: u16 = 2;
/// `IFA_BROADCAST`.
pub const IFA_BROADCAST: u16 = 4;

/// `RTA_DST`.
pub const RTA_DST: u16 = 1;
/// `RTA_OIF`: the output interface index.
pub const RTA_OIF: u16 = 4;
/// `RTA_GATEWAY`.
pub const RTA_GATEWAY: u16 = 5;
/// `RTA_PREFSRC`: the source address to prefer.
pub const RTA_PREFSRC: u16 = 7;

/// `RT_TABLE_MAIN`.
pub const RT_TABLE_MAIN: u8 = 254;
/// `RTPROT_BOOT`: a route set up at boot (what `ip route add` uses).
pub const RTPROT_BOOT: u8 = 3;
/// `RT_SCOPE_UNIVERSE`: a route through a gateway.
pub const RT_SCOPE_UNIVERSE: u8 = 0;
/// `RT_SCOPE_LINK`: a destination on the link.
pub const RT_SCOPE_LINK: u8 = 253;
/// `RTN_UNICAST`.
pub const RTN_UNICAST: u8 = 1;

/// `sizeof(struct nlmsghdr)`: len u32, type u16, flags u16, seq u32, pid u32.
pub const NLMSG_HDRLEN: usize = 16;
/// `sizeof(struct ifinfomsg)`: family u8, pad u8, type u16, index i32, flags u32, change u32.
pub const IFINFOMSG_LEN: usize = 16;
/// `sizeof(struct ifaddrmsg)`: family, prefixlen, flags, scope (u8 each), index u32.
pub const IFADDRMSG_LEN: usize = 8;
/// `sizeof(struct rtmsg)`: family, dst_len, src_len, tos, table, protocol, scope, type (u8 each), flags u32.
pub const RTMSG_LEN: usize = 12;
/// `sizeof(struct rtattr)`: len u16, type u16.
pub const RTA_HDRLEN: usize = 4;

/// `NLMSG_ALIGN`/`RTA_ALIGN`: four bytes.
fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// A request being built: the header is filled in by [`Message::finish`].
struct Message(Vec<u8>);

impl Message {
    fn new() -> Self {
        Message(vec![0; NLMSG_HDRLEN])
    }

    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }

    fn u16(mut self, v: u16) -> Self {
        self.0.extend(v.to_ne_bytes());
        self
    }

    fn u32(mut self, v: u32) -> Self {
        self.0.extend(v.to_ne_bytes());
        self
    }

    fn attr(mut self, kind: u16, data: &[u8]) -> Self {
        let len = RTA_HDRLEN + data.len();
        self.0.extend((len as u16).to_ne_bytes());
        self.0.extend(kind.to_ne_bytes());
        self.0.extend(data);
        self.0.resize(align(self.0.len()), 0);
        self
    }

    fn finish(mut self, kind: u16, flags: u16, seq: u32) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[0..4].copy_from_slice(&len.to_ne_bytes());
        self.0[4..6].copy_from_slice(&kind.to_ne_bytes());
        self.0[6..8].copy_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        self.0[8..12].copy_from_slice(&seq.to_ne_bytes());
        // nlmsg_pid 0: the kernel fills in the sender.
        self.0
    }
}

/// `RTM_NEWLINK` setting `IFF_UP` on the link `index` (`ip link set dev X up`).
pub fn set_link_up(seq: u32, index: u32) -> Vec<u8> {
    Message::new()
        .u8(AF_UNSPEC)
        .u8(0)
        .u16(0)
        .u32(index)
        .u32(IFF_UP) // ifi_flags
        .u32(IFF_UP) // ifi_change: only this bit
        .finish(RTM_NEWLINK, 0, seq)
}

/// `RTM_NEWADDR`: `address/prefix_len` on the link `index`, with its broadcast address
/// (`ip addr replace A/N brd + dev X`).
pub fn add_address(seq: u32, index: u32, address: Ipv4Addr, prefix_len: u8) -> Vec<u8> {
    let host_bits = if prefix_len >= 32 { 0 } else { u32::MAX >> prefix_len };
    let broadcast = Ipv4Addr::from(u32::from(address) | host_bits);
    Message::new()
        .u8(AF_INET)
        .u8(prefix_len)
        .u8(0) // ifa_flags
        .u8(RT_SCOPE_UNIVERSE)
        .u32(index)
        .attr(IFA_LOCAL, &address.octets())
        .attr(IFA_ADDRESS, &address.octets())
        .attr(IFA_BROADCAST, &broadcast.octets())
        .finish(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, seq)
}

/// A route to ask for with [`add_route`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Destination and prefix length; `0.0.0.0/0` is the default route.
    pub destination: Ipv4Addr,
    /// Prefix length of the destination.
    pub prefix_len: u8,
    /// The next hop; `None` for a destination on the link.
    pub gateway: Option<Ipv4Addr>,
    /// The output link.
    pub index: u32,
}

/// `RTM_NEWROUTE` in the main table (`ip route replace DST/N [via GW] dev X`).
pub fn add_route(seq: u32, route: &Route) -> Vec<u8> {
    let scope = if route.gateway.is_some() { RT_SCOPE_UNIVERSE } else { RT_SCOPE_LINK };
    let mut m = Message::new()
        .u8(AF_INET)
        .u8(route.prefix_len)
        .u8(0) // src_len
        .u8(0) // tos
        .u8(RT_TABLE_MAIN)
        .u8(RTPROT_BOOT)
        .u8(scope)
        .u8(RTN_UNICAST)
        .u32(0); // rtm_flags
    if route.prefix_len > 0 {
        m = m.attr(RTA_DST, &route.destination.octets());
    }
    if let Some(gw) = route.gateway {
        m = m.attr(RTA_GATEWAY, &gw.octets());
    }
    m.attr(RTA_OIF, &route.index.to_ne_bytes()).finish(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, seq)
}

/// What the kernel answered to the request with sequence number `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Done.
    Ok,
    /// Refused with this errno (positive, e.g. 19 ENODEV).
    Errno(i32),
}

/// Why a datagram from the kernel made no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetlinkError {
    /// A message header claims more (or fewer) bytes than there are.
    #[error("a netlink message of {claimed} bytes in a datagram with {left} left")]
    BadLength {
        /// `nlmsg_len`.
        claimed: usize,
        /// Bytes left in the datagram.
        left: usize,
    },
    /// An `NLMSG_ERROR` shorter than its error number.
    #[error("a truncated netlink error message")]
    ShortError,
}

/// Finds the ack of request `seq` in a datagram from the kernel: `Ok(None)` when the
/// datagram holds no answer to it (e.g. the ack of an earlier request).
pub fn find_ack(datagram: &[u8], seq: u32) -> Result<Option<Ack>, NetlinkError> {
    let mut rest = datagram;
    while rest.len() >= NLMSG_HDRLEN {
        let ne32 = |b: &[u8], o: usize| u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let len = ne32(rest, 0) as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Err(NetlinkError::BadLength { claimed: len, left: rest.len() });
        }
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        let msg_seq = ne32(rest, 8);
        if kind == NLMSG_ERROR && msg_seq == seq {
            // struct nlmsgerr: int error, then the request's header.
            if len < NLMSG_HDRLEN + 4 {
                return Err(NetlinkError::ShortError);
            }
            let error = ne32(rest, NLMSG_HDRLEN) as i32;
            return Ok(Some(if error == 0 { Ack::Ok } else { Ack::Errno(error.saturating_neg()) }));
        }
        rest = &rest[align(len).min(rest.len())..];
    }
    Ok(None)
}

#[cfg(all(test, target_endian = "little"))]
mod tests {
    use super::*;

    #[test]
    fn link_up_is_an_ifinfomsg_changing_only_iff_up() {
        let m = set_link_up(7, 2);
        #[rustfmt::skip]
        let expected: [u8; 32] = [
            32, 0, 0, 0,  16, 0,  5, 0,  7, 0, 0, 0,  0, 0, 0, 0, // nlmsghdr: len, RTM_NEWLINK, REQUEST|ACK, seq, pid
            0, 0, 0, 0,  2, 0, 0, 0,  1, 0, 0, 0,  1, 0, 0, 0,    // ifinfomsg: AF_UNSPEC, index 2, flags, change
        ];
        assert_eq!(m, expected);
    }

    #[test]
    fn address_is_an_ifaddrmsg_with_local_address_and_broadcast() {
        let m = add_address(8, 2, Ipv4Addr::new(10, 0, 2, 15), 24);
        #[rustfmt::skip]
        let expected: [u8; 48] = [
            48, 0, 0, 0,  20, 0,  0x05, 0x05,  8, 0, 0, 0,  0, 0, 0, 0, // REQUEST|ACK|REPLACE|CREATE
            2, 24, 0, 0,  2, 0, 0, 0,                                   // ifaddrmsg
            8, 0, 2, 0,  10, 0, 2, 15,                                  // IFA_LOCAL
            8, 0, 1, 0,  10, 0, 2, 15,                                  // IFA_ADDRESS
            8, 0, 4, 0,  10, 0, 2, 255,                                 // IFA_BROADCAST
        ];
        assert_eq!(m, expected);
        let host = add_address(1, 3, Ipv4Addr::new(192, 168, 1, 5), 32);
        assert_eq!(&host[44..48], &[192, 168, 1, 5]);
    }

    #[test]
    fn default_route_via_a_gateway_and_a_link_route() {
        let r = Route {
            destination: Ipv4Addr::UNSPECIFIED,
            prefix_len: 0,
            gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
            index: 2,
        };
        #[rustfmt::skip]
        let expected: [u8; 44] = [
            44, 0, 0, 0,  24, 0,  0x05, 0x05,  9, 0, 0, 0,  0, 0, 0, 0,
            2, 0, 0, 0,  254, 3, 0, 1,  0, 0, 0, 0, // rtmsg: AF_INET, /0, main table, boot, universe, unicast
            8, 0, 5, 0,  10, 0, 2, 2,               // RTA_GATEWAY
            8, 0, 4, 0,  2, 0, 0, 0,                // RTA_OIF
        ];
        assert_eq!(add_route(9, &r), expected);
        let link = Route { destination: Ipv4Addr::new(10, 0, 2, 2), prefix_len: 32, gateway: None, index: 2 };
        let m = add_route(10, &link);
        assert_eq!(&m[16..28], &[2, 32, 0, 0, 254, 3, 253, 1, 0, 0, 0, 0]);
        assert_eq!(&m[28..36], &[8, 0, 1, 0, 10, 0, 2, 2]);
        assert_eq!(&m[36..44], &[8, 0, 4, 0, 2, 0, 0, 0]);
    }

    fn error_message(seq: u32, errno: i32) -> Vec<u8> {
        let mut m = vec![36, 0, 0, 0, 2, 0, 0, 1];
        m.extend(seq.to_ne_bytes());
        m.extend([0, 0, 0, 0]);
        m.extend((-errno).to_ne_bytes());
        m.extend(&set_link_up(seq, 2)[..16]);
        m
    }

    #[test]
    fn acks_and_errors_are_found_by_sequence_number() {
        assert_eq!(find_ack(&error_message(5, 0), 5), Ok(Some(Ack::Ok)));
        assert_eq!(find_ack(&error_message(5, 19), 5), Ok(Some(Ack::Errno(19))));
        assert_eq!(find_ack(&error_message(4, 0), 5), Ok(None));
        let mut two = error_message(4, 0);
        two.extend(error_message(5, 17));
        assert_eq!(find_ack(&two, 5), Ok(Some(Ack::Errno(17))));
        assert_eq!(find_ack(&[], 5), Ok(None));
    }

    #[test]
    fn bad_lengths_are_errors() {
        let mut m = error_message(5, 0);
        m[0] = 200;
        assert!(matches!(find_ack(&m, 5), Err(NetlinkError::BadLength { claimed: 200, .. })));
        m[0] = 3;
        assert!(find_ack(&m, 5).is_err());
        let mut short = error_message(5, 0);
        short[0] = 18;
        short.truncate(18);
        assert_eq!(find_ack(&short, 5), Err(NetlinkError::ShortError));
    }

    proptest::proptest! {
        #[test]
        fn any_datagram_parses_without_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200), seq in 0u32..4) {
            let _ = find_ack(&bytes, seq);
        }
    }
}
