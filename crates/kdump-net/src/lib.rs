//! The capture kernel's network, without I/O.
//!
//! - [`addr`]: MAC addresses and IPv4 prefixes as the config writes them.
//! - [`dhcp`]: a DHCPv4 client as a state machine: it makes the datagrams to
//!   send and judges the (untrusted) replies; the caller owns the socket and
//!   the clock.
//! - [`rtnetlink`]: the few `NETLINK_ROUTE` requests that bring a link up and
//!   give it an address and a route, and the parsing of the kernel's acks.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod addr;
pub mod dhcp;
pub mod rtnetlink;

pub use addr::{Ipv4Net, MacAddr};
