//! Link-layer and IPv4 addresses as written in `/etc/kdump.toml` and `/sys`.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

/// A text that is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// Not six `:`-separated hex bytes.
    #[error("{0:?} is not a MAC address: write six hex bytes separated by colons, e.g. \"52:54:00:12:34:56\"")]
    Mac(String),
    /// Not `a.b.c.d/len`.
    #[error("{0:?} is not an IPv4 address with a prefix length: write e.g. \"10.0.2.15/24\"")]
    Net(String),
}

impl MacAddr {
    /// True for the all-zero address (what a device without one reports).
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
}

impl FromStr for MacAddr {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, AddrError> {
        let text = s.trim();
        let mut out = [0u8; 6];
        let mut parts = text.split([':', '-']);
        for byte in &mut out {
            let part = parts.next().ok_or_else(|| AddrError::Mac(s.into()))?;
            if part.len() != 2 {
                return Err(AddrError::Mac(s.into()));
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| AddrError::Mac(s.into()))?;
        }
        if parts.next().is_some() {
            return Err(AddrError::Mac(s.into()));
        }
        Ok(MacAddr(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// An IPv4 address with the prefix length of its subnet (`10.0.2.15/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Net {
    /// The interface's address.
    pub address: Ipv4Addr,
    /// The subnet's prefix length, 0 to 32.
    pub prefix_len: u8,
}

impl Ipv4Net {
    /// The subnet mask of the prefix length.
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask_bits(self.prefix_len))
    }

    /// The subnet itself: the address with its host bits cleared (`10.0.2.0/24`).
    pub fn subnet(&self) -> Ipv4Net {
        Ipv4Net {
            address: Ipv4Addr::from(u32::from(self.address) & mask_bits(self.prefix_len)),
            prefix_len: self.prefix_len,
        }
    }

    /// True when `other` is on this subnet (reachable without a gateway).
    pub fn contains(&self, other: Ipv4Addr) -> bool {
        let m = mask_bits(self.prefix_len);
        u32::from(self.address) & m == u32::from(other) & m
    }
}

fn mask_bits(prefix_len: u8) -> u32 {
    match prefix_len {
        0 => 0,
        n => u32::MAX << (32 - u32::from(n.min(32))),
    }
}

/// The prefix length of a subnet mask, or `None` when its ones are not contiguous.
pub fn prefix_of_mask(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

impl FromStr for Ipv4Net {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, AddrError> {
        let bad = || AddrError::Net(s.into());
        let (addr, len) = s.trim().split_once('/').ok_or_else(bad)?;
        let address: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix_len: u8 = len.parse().map_err(|_| bad())?;
        if prefix_len > 32 {
            return Err(bad());
        }
        Ok(Ipv4Net { address, prefix_len })
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip_and_refusals() {
        let m: MacAddr = "52:54:00:AB:cd:0f".parse().unwrap();
        assert_eq!(m.0, [0x52, 0x54, 0, 0xab, 0xcd, 0x0f]);
        assert_eq!(m.to_string(), "52:54:00:ab:cd:0f");
        assert_eq!("52:54:00:ab:cd:0f\n".parse::<MacAddr>().unwrap(), m);
        for bad in ["", "52:54:00:ab:cd", "52:54:00:ab:cd:0f:11", "5:54:00:ab:cd:0f", "zz:54:00:ab:cd:0f"] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        assert!(MacAddr([0; 6]).is_zero());
    }

    #[test]
    fn prefixes_and_masks() {
        let n: Ipv4Net = "10.0.2.15/24".parse().unwrap();
        assert_eq!(n.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert!(n.contains(Ipv4Addr::new(10, 0, 2, 2)));
        assert!(!n.contains(Ipv4Addr::new(10, 0, 3, 2)));
        assert_eq!(n.subnet().to_string(), "10.0.2.0/24");
        assert_eq!("0.0.0.0/0".parse::<Ipv4Net>().unwrap().netmask(), Ipv4Addr::UNSPECIFIED);
        assert_eq!("1.2.3.4/32".parse::<Ipv4Net>().unwrap().netmask(), Ipv4Addr::BROADCAST);
        for bad in ["10.0.2.15", "10.0.2.15/33", "10.0.2/24", "x/1"] {
            assert!(bad.parse::<Ipv4Net>().is_err(), "{bad}");
        }
        assert_eq!(prefix_of_mask(Ipv4Addr::new(255, 255, 255, 0)), Some(24));
        assert_eq!(prefix_of_mask(Ipv4Addr::new(255, 255, 255, 255)), Some(32));
        assert_eq!(prefix_of_mask(Ipv4Addr::new(0, 0, 0, 0)), Some(0));
        assert_eq!(prefix_of_mask(Ipv4Addr::new(255, 0, 255, 0)), None);
    }
}
