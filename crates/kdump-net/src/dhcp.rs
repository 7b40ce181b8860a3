//! A DHCPv4 client (RFC 2131/2132) as a state machine without I/O.
//!
//! The caller sends [`DhcpClient::message`] as a UDP broadcast from port 68 to
//! port 67, feeds every datagram that arrives on port 68 to
//! [`DhcpClient::handle`], and resends the message when no answer comes in
//! time. Replies are untrusted bytes: anything malformed, or meant for
//! another client or exchange, is ignored with a reason, never a panic.
//!
//! DISCOVER → OFFER → REQUEST → ACK; a NAK starts over with a DISCOVER.

use std::net::Ipv4Addr;

use crate::addr::{MacAddr, prefix_of_mask};

/// The UDP port servers listen on.
pub const SERVER_PORT: u16 = 67;
/// The UDP port clients listen on.
pub const CLIENT_PORT: u16 = 68;

/// BOOTP fixed header fields (RFC 2131 figure 1), byte offsets.
mod at {
    pub const OP: usize = 0;
    pub const HTYPE: usize = 1;
    pub const HLEN: usize = 2;
    pub const XID: usize = 4;
    pub const FLAGS: usize = 10;
    pub const YIADDR: usize = 16;
    pub const CHADDR: usize = 28;
    pub const COOKIE: usize = 236;
    pub const OPTIONS: usize = 240;
}

const OP_REQUEST: u8 = 1;
const OP_REPLY: u8 = 2;
const HTYPE_ETHERNET: u8 = 1;
/// The broadcast bit of `flags`: we have no address yet, so the reply cannot be unicast to us.
const FLAG_BROADCAST: u16 = 0x8000;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Every request is padded to the 300 bytes of a BOOTP message: some servers drop shorter ones.
const MIN_MESSAGE: usize = 300;

/// Option codes (RFC 2132).
mod opt {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMETER_LIST: u8 = 55;
    pub const MAX_MESSAGE_SIZE: u8 = 57;
    pub const CLIENT_ID: u8 = 61;
    pub const END: u8 = 255;
}

/// DHCP message types (option 53).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// 1: a client looks for servers.
    Discover,
    /// 2: a server offers an address.
    Offer,
    /// 3: a client asks for the offered address.
    Request,
    /// 4: a client refuses an address.
    Decline,
    /// 5: a server confirms the lease.
    Ack,
    /// 6: a server refuses the request.
    Nak,
    /// 7: a client gives the address back.
    Release,
    /// 8: a client asks for parameters only.
    Inform,
}

impl MessageType {
    fn code(self) -> u8 {
        match self {
            MessageType::Discover => 1,
            MessageType::Offer => 2,
            MessageType::Request => 3,
            MessageType::Decline => 4,
            MessageType::Ack => 5,
            MessageType::Nak => 6,
            MessageType::Release => 7,
            MessageType::Inform => 8,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            1 => MessageType::Discover,
            2 => MessageType::Offer,
            3 => MessageType::Request,
            4 => MessageType::Decline,
            5 => MessageType::Ack,
            6 => MessageType::Nak,
            7 => MessageType::Release,
            8 => MessageType::Inform,
            _ => return None,
        })
    }
}

/// Why a datagram was not a usable reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// Shorter than the fixed header and cookie.
    #[error("{0} bytes is too short for a DHCP message")]
    Short(usize),
    /// Not a BOOTP reply (op 2) for Ethernet.
    #[error("not a BOOTP reply for Ethernet")]
    NotReply,
    /// No DHCP magic cookie.
    #[error("no DHCP magic cookie (a plain BOOTP reply)")]
    NoCookie,
    /// An option runs past the end.
    #[error("option {0} runs past the end of the message")]
    Truncated(u8),
    /// An option has a length its meaning does not allow.
    #[error("option {code} has {len} bytes")]
    BadOption {
        /// The option code.
        code: u8,
        /// Its length.
        len: usize,
    },
    /// No option 53, or an unknown type.
    #[error("no DHCP message type")]
    NoType,
}

/// A parsed DHCP reply (a server's message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Option 53.
    pub kind: MessageType,
    /// The transaction id.
    pub xid: u32,
    /// The client hardware address it is meant for.
    pub chaddr: MacAddr,
    /// `yiaddr`: the address offered or acknowledged.
    pub your_address: Ipv4Addr,
    /// Option 1.
    pub subnet_mask: Option<Ipv4Addr>,
    /// Option 3 (the first router).
    pub router: Option<Ipv4Addr>,
    /// Option 51, seconds.
    pub lease_seconds: Option<u32>,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
}

/// Parses a datagram received on port 68. Never panics.
pub fn parse_reply(bytes: &[u8]) -> Result<Reply, ReplyError> {
    if bytes.len() < at::OPTIONS {
        return Err(ReplyError::Short(bytes.len()));
    }
    if bytes[at::OP] != OP_REPLY || bytes[at::HTYPE] != HTYPE_ETHERNET || bytes[at::HLEN] != 6 {
        return Err(ReplyError::NotReply);
    }
    if bytes[at::COOKIE..at::OPTIONS] != MAGIC_COOKIE {
        return Err(ReplyError::NoCookie);
    }
    let u32_at = |o: usize| u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
    let mut chaddr = [0u8; 6];
    chaddr.copy_from_slice(&bytes[at::CHADDR..at::CHADDR + 6]);
    let mut reply = Reply {
        kind: MessageType::Discover,
        xid: u32_at(at::XID),
        chaddr: MacAddr(chaddr),
        your_address: Ipv4Addr::from(u32_at(at::YIADDR)),
        subnet_mask: None,
        router: None,
        lease_seconds: None,
        server_id: None,
    };
    let mut kind = None;
    for option in Options(&bytes[at::OPTIONS..]) {
        let (code, data) = option?;
        let addr = |len_ok: bool| -> Result<Ipv4Addr, ReplyError> {
            if !len_ok {
                return Err(ReplyError::BadOption { code, len: data.len() });
            }
            Ok(Ipv4Addr::new(data[0], data[1], data[2], data[3]))
        };
        match code {
            opt::MESSAGE_TYPE => {
                if data.len() != 1 {
                    return Err(ReplyError::BadOption { code, len: data.len() });
                }
                kind = MessageType::from_code(data[0]);
            }
            opt::SUBNET_MASK => reply.subnet_mask = Some(addr(data.len() == 4)?),
            // A list of routers, in order of preference.
            opt::ROUTER => reply.router = Some(addr(data.len() >= 4 && data.len() % 4 == 0)?),
            opt::SERVER_ID => reply.server_id = Some(addr(data.len() == 4)?),
            opt::LEASE_TIME => reply.lease_seconds = Some(u32::from(addr(data.len() == 4)?)),
            _ => {}
        }
    }
    reply.kind = kind.ok_or(ReplyError::NoType)?;
    Ok(reply)
}

/// Iterates `(code, data)` over an options field; stops at END.
struct Options<'a>(&'a [u8]);

impl<'a> Iterator for Options<'a> {
    type Item = Result<(u8, &'a [u8]), ReplyError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (&code, rest) = self.0.split_first()?;
            match code {
                opt::PAD => self.0 = rest,
                opt::END => {
                    self.0 = &[];
                    return None;
                }
                _ => {
                    let Some((&len, rest)) = rest.split_first() else {
                        self.0 = &[];
                        return Some(Err(ReplyError::Truncated(code)));
                    };
                    let len = usize::from(len);
                    if rest.len() < len {
                        self.0 = &[];
                        return Some(Err(ReplyError::Truncated(code)));
                    }
                    let (data, rest) = rest.split_at(len);
                    self.0 = rest;
                    return Some(Ok((code, data)));
                }
            }
        }
    }
}

/// What the client got: the address and what the server said about the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The interface's address.
    pub address: Ipv4Addr,
    /// The subnet's prefix length (from option 1; 32 without one, see `Lease::from_reply`).
    pub prefix_len: u8,
    /// The default gateway, when the server named one.
    pub router: Option<Ipv4Addr>,
    /// The lease in seconds, when given.
    pub lease_seconds: Option<u32>,
    /// The server that granted it.
    pub server: Ipv4Addr,
}

impl Lease {
    /// The lease a reply describes. A server must send a subnet mask for us to know the
    /// subnet: without one (or with a non-contiguous one) the address is taken as a /32
    /// and every destination goes through the router, which works on any subnet.
    fn from_reply(r: &Reply, server: Ipv4Addr) -> Self {
        Lease {
            address: r.your_address,
            prefix_len: r.subnet_mask.and_then(prefix_of_mask).unwrap_or(32),
            router: r.router.filter(|a| !a.is_unspecified()),
            lease_seconds: r.lease_seconds,
            server,
        }
    }
}

/// Where the exchange is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// DISCOVER sent, waiting for an OFFER.
    Selecting,
    /// REQUEST sent for this offer, waiting for the ACK.
    Requesting(Lease),
    /// Done.
    Bound(Lease),
}

/// What a received datagram did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Not for us or not usable now; keep waiting. The text says why (for a debug log).
    Ignored(String),
    /// An offer was taken: send [`DhcpClient::message`] (now a REQUEST) at once.
    Offered(Lease),
    /// The server acknowledged: configure the lease.
    Bound(Lease),
    /// The server refused the request: the client starts over; send the DISCOVER.
    Refused(Ipv4Addr),
}

/// A DHCPv4 client for one interface and one exchange.
#[derive(Debug, Clone)]
pub struct DhcpClient {
    mac: MacAddr,
    xid: u32,
    state: State,
}

impl DhcpClient {
    /// A client for the interface with this hardware address; `xid` should be random
    /// (it tells our replies from other exchanges on the link).
    pub fn new(mac: MacAddr, xid: u32) -> Self {
        Self { mac, xid, state: State::Selecting }
    }

    /// The transaction id.
    pub fn xid(&self) -> u32 {
        self.xid
    }

    /// The lease, once bound.
    pub fn lease(&self) -> Option<Lease> {
        match self.state {
            State::Bound(l) => Some(l),
            _ => None,
        }
    }

    /// Gives up the offer being requested (its server stopped answering) and discovers again.
    pub fn restart(&mut self) {
        if let State::Requesting(_) = self.state {
            self.state = State::Selecting;
        }
    }

    /// True while a REQUEST awaits its ACK.
    pub fn is_requesting(&self) -> bool {
        matches!(self.state, State::Requesting(_))
    }

    /// The datagram to send (again) now: a DISCOVER, or the REQUEST of the offer taken.
    /// `None` once bound.
    pub fn message(&self) -> Option<Vec<u8>> {
        match self.state {
            State::Selecting => Some(self.encode(MessageType::Discover, None)),
            State::Requesting(offer) => Some(self.encode(MessageType::Request, Some(offer))),
            State::Bound(_) => None,
        }
    }

    /// Takes a datagram received on port 68.
    pub fn handle(&mut self, datagram: &[u8]) -> Step {
        let reply = match parse_reply(datagram) {
            Ok(r) => r,
            Err(e) => return Step::Ignored(e.to_string()),
        };
        if reply.xid != self.xid || reply.chaddr != self.mac {
            return Step::Ignored(format!("a reply for another exchange (xid {:#010x}, {})", reply.xid, reply.chaddr));
        }
        match (self.state, reply.kind) {
            (State::Selecting, MessageType::Offer) => {
                let Some(server) = reply.server_id else {
                    return Step::Ignored("an offer without a server identifier".into());
                };
                if !usable_address(reply.your_address) {
                    return Step::Ignored(format!("an offer of {}", reply.your_address));
                }
                let offer = Lease::from_reply(&reply, server);
                self.state = State::Requesting(offer);
                Step::Offered(offer)
            }
            (State::Requesting(offer), MessageType::Ack | MessageType::Nak)
                if reply.server_id.is_some_and(|s| s != offer.server) =>
            {
                Step::Ignored(format!(
                    "an answer from {} (we asked {})",
                    reply.server_id.unwrap_or(offer.server),
                    offer.server
                ))
            }
            (State::Requesting(offer), MessageType::Ack) => {
                if !usable_address(reply.your_address) {
                    return Step::Ignored(format!("an ACK of {}", reply.your_address));
                }
                // The ACK's parameters are the ones that count (RFC 2131 4.3.1).
                let lease = Lease::from_reply(&reply, offer.server);
                self.state = State::Bound(lease);
                Step::Bound(lease)
            }
            (State::Requesting(offer), MessageType::Nak) => {
                self.state = State::Selecting;
                Step::Refused(offer.server)
            }
            (_, kind) => Step::Ignored(format!("a {kind:?} now")),
        }
    }

    fn encode(&self, kind: MessageType, offer: Option<Lease>) -> Vec<u8> {
        let mut m = vec![0u8; at::OPTIONS];
        m[at::OP] = OP_REQUEST;
        m[at::HTYPE] = HTYPE_ETHERNET;
        m[at::HLEN] = 6;
        m[at::XID..at::XID + 4].copy_from_slice(&self.xid.to_be_bytes());
        m[at::FLAGS..at::FLAGS + 2].copy_from_slice(&FLAG_BROADCAST.to_be_bytes());
        m[at::CHADDR..at::CHADDR + 6].copy_from_slice(&self.mac.0);
        m[at::COOKIE..at::OPTIONS].copy_from_slice(&MAGIC_COOKIE);
        m.extend([opt::MESSAGE_TYPE, 1, kind.code()]);
        // Client identifier: hardware type 1 and the MAC (RFC 2132 9.14).
        m.extend([opt::CLIENT_ID, 7, HTYPE_ETHERNET]);
        m.extend(self.mac.0);
        m.extend([opt::MAX_MESSAGE_SIZE, 2]);
        m.extend(576u16.to_be_bytes());
        if let Some(offer) = offer {
            m.extend([opt::REQUESTED_IP, 4]);
            m.extend(offer.address.octets());
            m.extend([opt::SERVER_ID, 4]);
            m.extend(offer.server.octets());
        }
        m.extend([opt::PARAMETER_LIST, 3, opt::SUBNET_MASK, opt::ROUTER, opt::LEASE_TIME]);
        m.push(opt::END);
        if m.len() < MIN_MESSAGE {
            m.resize(MIN_MESSAGE, opt::PAD);
        }
        m
    }
}

/// An address a host can take: not 0.0.0.0, broadcast, loopback or multicast.
fn usable_address(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_broadcast() || a.is_loopback() || a.is_multicast())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

    /// A server's reply as QEMU's user networking sends it.
    fn reply(kind: u8, xid: u32, mac: MacAddr, yiaddr: [u8; 4], options: &[u8]) -> Vec<u8> {
        let mut m = vec![0u8; 240];
        m[0] = 2;
        m[1] = 1;
        m[2] = 6;
        m[4..8].copy_from_slice(&xid.to_be_bytes());
        m[16..20].copy_from_slice(&yiaddr);
        m[28..34].copy_from_slice(&mac.0);
        m[236..240].copy_from_slice(&[99, 130, 83, 99]);
        m.extend([53, 1, kind]);
        m.extend(options);
        m.push(255);
        m
    }

    fn qemu_options() -> Vec<u8> {
        vec![54, 4, 10, 0, 2, 2, 51, 4, 0, 1, 0x51, 0x80, 1, 4, 255, 255, 255, 0, 3, 4, 10, 0, 2, 2, 6, 4, 10, 0, 2, 3]
    }

    fn option(msg: &[u8], code: u8) -> Option<&[u8]> {
        Options(&msg[240..]).map(Result::unwrap).find(|(c, _)| *c == code).map(|(_, d)| d)
    }

    #[test]
    fn discover_has_the_rfc_2131_layout() {
        let c = DhcpClient::new(MAC, 0xdead_beef);
        let m = c.message().unwrap();
        assert_eq!(m.len(), 300);
        assert_eq!(&m[0..4], &[1, 1, 6, 0]);
        assert_eq!(&m[4..8], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(&m[10..12], &[0x80, 0], "broadcast flag");
        assert_eq!(&m[12..28], &[0; 16], "ciaddr yiaddr siaddr giaddr");
        assert_eq!(&m[28..34], &MAC.0);
        assert_eq!(&m[34..236], &[0; 202][..], "chaddr padding, sname, file");
        assert_eq!(&m[236..240], &[99, 130, 83, 99]);
        assert_eq!(option(&m, 53), Some(&[1][..]));
        assert_eq!(option(&m, 61), Some(&[1, 0x52, 0x54, 0, 0x12, 0x34, 0x56][..]));
        assert_eq!(option(&m, 55), Some(&[1, 3, 51][..]));
        assert_eq!(option(&m, 50), None);
    }

    #[test]
    fn full_exchange_binds_the_acked_lease() {
        let mut c = DhcpClient::new(MAC, 7);
        let offer = reply(2, 7, MAC, [10, 0, 2, 15], &qemu_options());
        let Step::Offered(o) = c.handle(&offer) else { panic!("offer not taken") };
        assert_eq!(o.address, Ipv4Addr::new(10, 0, 2, 15));
        let req = c.message().unwrap();
        assert_eq!(option(&req, 53), Some(&[3][..]));
        assert_eq!(option(&req, 50), Some(&[10, 0, 2, 15][..]));
        assert_eq!(option(&req, 54), Some(&[10, 0, 2, 2][..]));
        // A second offer (another server) while requesting changes nothing.
        assert!(matches!(c.handle(&offer), Step::Ignored(_)));
        let ack = reply(5, 7, MAC, [10, 0, 2, 15], &qemu_options());
        let lease = Lease {
            address: Ipv4Addr::new(10, 0, 2, 15),
            prefix_len: 24,
            router: Some(SERVER),
            lease_seconds: Some(86400),
            server: SERVER,
        };
        assert_eq!(c.handle(&ack), Step::Bound(lease));
        assert_eq!(c.lease(), Some(lease));
        assert_eq!(c.message(), None);
    }

    #[test]
    fn replies_for_others_and_bad_offers_are_ignored() {
        let mut c = DhcpClient::new(MAC, 7);
        let other = MacAddr([2, 0, 0, 0, 0, 1]);
        assert!(matches!(c.handle(&reply(2, 8, MAC, [10, 0, 2, 15], &qemu_options())), Step::Ignored(_)));
        assert!(matches!(c.handle(&reply(2, 7, other, [10, 0, 2, 15], &qemu_options())), Step::Ignored(_)));
        assert!(matches!(c.handle(&reply(2, 7, MAC, [0, 0, 0, 0], &qemu_options())), Step::Ignored(_)));
        assert!(matches!(c.handle(&reply(2, 7, MAC, [10, 0, 2, 15], &[])), Step::Ignored(_)), "no server id");
        assert!(matches!(c.handle(&reply(5, 7, MAC, [10, 0, 2, 15], &qemu_options())), Step::Ignored(_)), "ack first");
        assert_eq!(c.message().unwrap()[242], 1, "still discovering");
    }

    #[test]
    fn nak_starts_over_and_a_foreign_ack_is_ignored() {
        let mut c = DhcpClient::new(MAC, 7);
        c.handle(&reply(2, 7, MAC, [10, 0, 2, 15], &qemu_options()));
        let foreign = reply(5, 7, MAC, [10, 0, 2, 99], &[54, 4, 10, 0, 2, 9]);
        assert!(matches!(c.handle(&foreign), Step::Ignored(_)));
        assert_eq!(c.handle(&reply(6, 7, MAC, [0; 4], &[54, 4, 10, 0, 2, 2])), Step::Refused(SERVER));
        assert_eq!(option(&c.message().unwrap(), 53), Some(&[1][..]));
    }

    #[test]
    fn restart_gives_up_an_unanswered_request() {
        let mut c = DhcpClient::new(MAC, 7);
        c.restart();
        assert!(!c.is_requesting());
        c.handle(&reply(2, 7, MAC, [10, 0, 2, 15], &qemu_options()));
        assert!(c.is_requesting());
        c.restart();
        assert!(!c.is_requesting());
        assert_eq!(option(&c.message().unwrap(), 53), Some(&[1][..]));
        assert!(matches!(c.handle(&reply(2, 7, MAC, [10, 0, 2, 16], &qemu_options())), Step::Offered(_)));
    }

    #[test]
    fn a_lease_without_a_mask_is_a_host_address() {
        let mut c = DhcpClient::new(MAC, 1);
        c.handle(&reply(2, 1, MAC, [192, 168, 1, 5], &[54, 4, 192, 168, 1, 1]));
        let Step::Bound(l) = c.handle(&reply(5, 1, MAC, [192, 168, 1, 5], &[54, 4, 192, 168, 1, 1])) else { panic!() };
        assert_eq!((l.prefix_len, l.router, l.lease_seconds), (32, None, None));
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        let good = reply(2, 7, MAC, [10, 0, 2, 15], &qemu_options());
        assert_eq!(parse_reply(&good[..100]), Err(ReplyError::Short(100)));
        let mut bootp = good.clone();
        bootp[236] = 0;
        assert_eq!(parse_reply(&bootp), Err(ReplyError::NoCookie));
        let mut request = good.clone();
        request[0] = 1;
        assert_eq!(parse_reply(&request), Err(ReplyError::NotReply));
        let truncated = &good[..good.len() - 3];
        assert!(matches!(parse_reply(truncated), Err(ReplyError::Truncated(_))));
        let bad_mask = reply(2, 7, MAC, [10, 0, 2, 15], &[1, 3, 255, 255, 255]);
        assert_eq!(parse_reply(&bad_mask), Err(ReplyError::BadOption { code: 1, len: 3 }));
        let no_type = {
            let mut m = good[..240].to_vec();
            m.push(255);
            m
        };
        assert_eq!(parse_reply(&no_type), Err(ReplyError::NoType));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_parse_without_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = parse_reply(&bytes);
            let mut c = DhcpClient::new(MAC, 7);
            let _ = c.handle(&bytes);
        }

        #[test]
        fn any_options_after_a_valid_header_parse_without_panic(
            opts in proptest::collection::vec(proptest::num::u8::ANY, 0..300)
        ) {
            let mut m = reply(2, 7, MAC, [10, 0, 2, 15], &[]);
            m.truncate(240);
            m.extend(&opts);
            let mut c = DhcpClient::new(MAC, 7);
            let _ = c.handle(&m);
        }
    }
}
