//! `/proc/net/route`: the IPv4 routing table, to find how this machine reaches a server (the
//! interface, the gateway) so that `kdump setup` can give the capture kernel the same path.
//!
//! Format: a header line, then one route a line, tab-separated: `Iface Destination Gateway
//! Flags RefCnt Use Metric Mask MTU Window IRTT`, addresses and flags in hex, the addresses in
//! the kernel's (little-endian) byte order.

use std::net::Ipv4Addr;

/// `RTF_UP`: the route is usable.
const RTF_UP: u32 = 0x1;
/// `RTF_GATEWAY`: the destination is reached through `gateway`.
const RTF_GATEWAY: u32 = 0x2;

/// One route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The interface's name.
    pub interface: String,
    /// The destination network.
    pub destination: Ipv4Addr,
    /// Its netmask.
    pub mask: Ipv4Addr,
    /// The next hop, for a route through a gateway.
    pub gateway: Option<Ipv4Addr>,
    /// Lower wins between routes of the same prefix length.
    pub metric: u32,
}

impl Route {
    /// The prefix length of the mask (its leading one bits).
    pub fn prefix_len(&self) -> u8 {
        // At most 32: a u32 has 32 bits.
        u32::from(self.mask).leading_ones().min(32) as u8
    }

    /// Whether `ip` is in this route's destination network.
    pub fn covers(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::from(self.mask);
        u32::from(ip) & mask == u32::from(self.destination) & mask
    }
}

/// A hex address in the kernel's byte order (`0102000A` is 10.0.2.1).
fn address(hex: &str) -> Option<Ipv4Addr> {
    u32::from_str_radix(hex, 16).ok().map(|v| Ipv4Addr::from(v.to_le_bytes()))
}

/// The usable routes of the table; lines that are not routes are skipped.
pub fn parse_routes(text: &str) -> Vec<Route> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (interface, destination, gateway, flags, metric, mask) =
                (f.first()?, address(f.get(1)?)?, address(f.get(2)?)?, f.get(3)?, f.get(6)?, address(f.get(7)?)?);
            let flags = u32::from_str_radix(flags, 16).ok()?;
            (flags & RTF_UP != 0).then(|| Route {
                interface: (*interface).to_string(),
                destination,
                mask,
                gateway: (flags & RTF_GATEWAY != 0).then_some(gateway),
                metric: metric.parse().unwrap_or(u32::MAX),
            })
        })
        .collect()
}

/// The route the kernel takes to `ip`: the longest matching prefix, then the lowest metric.
pub fn route_to(routes: &[Route], ip: Ipv4Addr) -> Option<&Route> {
    routes
        .iter()
        .filter(|r| r.covers(ip))
        .max_by(|a, b| a.prefix_len().cmp(&b.prefix_len()).then(b.metric.cmp(&a.metric)))
}

/// The prefix length of the network `local` (an address of `interface`) is in: its on-link
/// route's, the longest of them.
pub fn on_link_prefix(routes: &[Route], interface: &str, local: Ipv4Addr) -> Option<u8> {
    routes
        .iter()
        .filter(|r| r.interface == interface && r.gateway.is_none() && r.covers(local) && r.prefix_len() > 0)
        .map(Route::prefix_len)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A QEMU guest (10.0.2.15/24 on eth0 with a default route) plus a second network.
    const TABLE: &str = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t0202000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
eth0\t0002000A\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n\
eth1\t0000A8C0\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
eth1\t0001A8C0\t00000000\t0000\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";

    #[test]
    fn the_kernel_s_choice_longest_prefix_then_metric() {
        let routes = parse_routes(TABLE);
        assert_eq!(routes.len(), 3, "the route without RTF_UP is left out");
        assert_eq!(routes[0].gateway, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!((routes[1].destination, routes[1].prefix_len()), (Ipv4Addr::new(10, 0, 2, 0), 24));
        let on_link = route_to(&routes, Ipv4Addr::new(10, 0, 2, 100)).unwrap();
        assert_eq!((on_link.interface.as_str(), on_link.gateway), ("eth0", None));
        let far = route_to(&routes, Ipv4Addr::new(192, 0, 2, 7)).unwrap();
        assert_eq!((far.interface.as_str(), far.gateway), ("eth0", Some(Ipv4Addr::new(10, 0, 2, 2))));
        assert_eq!(route_to(&routes, Ipv4Addr::new(192, 168, 1, 9)).unwrap().interface, "eth1");
        assert_eq!(on_link_prefix(&routes, "eth0", Ipv4Addr::new(10, 0, 2, 15)), Some(24));
        assert_eq!(on_link_prefix(&routes, "eth1", Ipv4Addr::new(10, 0, 2, 15)), None);
        assert!(route_to(&parse_routes("Iface\n"), Ipv4Addr::LOCALHOST).is_none());
        assert!(parse_routes("junk\nnot a\troute\n\u{0}\n").is_empty());
    }
}
