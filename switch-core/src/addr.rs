//! Addresses in the forms the tables use: IPv4 and IPv6 share one 128-bit space (IPv4 as
//! IPv4-mapped IPv6), so flow keys and interval maps have one shape for both families.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::str::FromStr;

const V4_MAPPED: u128 = 0xffff_0000_0000;

/// An IPv4 or IPv6 address as a 128-bit number, stored as two 64-bit halves so that keys
/// holding addresses stay 8-byte aligned and compact (a `u128` would align them to 16).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Addr {
    hi: u64,
    lo: u64,
}

impl Addr {
    pub const UNSPECIFIED: Addr = Addr { hi: 0, lo: 0 };

    #[inline]
    pub const fn from_bits(b: u128) -> Addr {
        Addr { hi: (b >> 64) as u64, lo: b as u64 }
    }
    #[inline]
    pub const fn bits(self) -> u128 {
        ((self.hi as u128) << 64) | self.lo as u128
    }
    #[inline]
    pub fn is_v4(self) -> bool {
        self.hi == 0 && self.lo >> 32 == 0xffff
    }
    pub fn to_ip(self) -> IpAddr {
        if self.is_v4() {
            IpAddr::V4(Ipv4Addr::from(self.lo as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(self.bits()))
        }
    }
    pub fn v4(self) -> Option<Ipv4Addr> {
        self.is_v4().then(|| Ipv4Addr::from(self.lo as u32))
    }
    /// The low 32 bits (the IPv4 address of an IPv4-mapped address).
    #[inline]
    pub fn low32(self) -> u32 {
        self.lo as u32
    }
    #[inline]
    pub fn hi(self) -> u64 {
        self.hi
    }
    #[inline]
    pub fn lo(self) -> u64 {
        self.lo
    }
}

impl From<IpAddr> for Addr {
    fn from(ip: IpAddr) -> Addr {
        match ip {
            IpAddr::V4(a) => a.into(),
            IpAddr::V6(a) => a.into(),
        }
    }
}

impl From<Ipv4Addr> for Addr {
    fn from(a: Ipv4Addr) -> Addr {
        Addr::from_bits(V4_MAPPED | u128::from(u32::from(a)))
    }
}

impl From<Ipv6Addr> for Addr {
    fn from(a: Ipv6Addr) -> Addr {
        Addr::from_bits(u128::from(a))
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_ip().fmt(f)
    }
}

impl fmt::Debug for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_ip().fmt(f)
    }
}

/// An IP prefix (CIDR) in the shared 128-bit space; `len` counts bits of the original family.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Prefix {
    addr: Addr,
    /// Prefix length in the shared 128-bit space (IPv4 lengths are offset by 96).
    len128: u8,
}

/// Why a prefix was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixError {
    BadAddress,
    BadLength,
    HostBitsSet,
}

impl fmt::Display for PrefixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PrefixError::BadAddress => "expected an address/length such as 10.244.0.0/16 or fd00::/64",
            PrefixError::BadLength => "prefix length out of range (0-32 for IPv4, 0-128 for IPv6)",
            PrefixError::HostBitsSet => "address has bits set beyond the prefix length",
        })
    }
}

impl Prefix {
    /// Makes a prefix; rejects host bits set beyond the length, as Kubernetes does for CIDRs.
    pub fn new(ip: IpAddr, len: u8) -> Result<Prefix, PrefixError> {
        let (len128, max) = match ip {
            IpAddr::V4(_) => (len.wrapping_add(96), 32),
            IpAddr::V6(_) => (len, 128),
        };
        if len > max {
            return Err(PrefixError::BadLength);
        }
        let addr = Addr::from(ip);
        if addr.bits() & !mask(len128) != 0 {
            return Err(PrefixError::HostBitsSet);
        }
        Ok(Prefix { addr, len128 })
    }
    /// The prefix of length `len` that contains `ip`, host bits cleared (Go's `ParseCIDR`,
    /// which the API server accepts `ipBlock.cidr` with).
    pub fn containing(ip: IpAddr, len: u8) -> Result<Prefix, PrefixError> {
        let len128 = if ip.is_ipv4() { len.wrapping_add(96) } else { len };
        let net = Addr::from_bits(Addr::from(ip).bits() & mask(len128));
        Prefix::new(net.to_ip(), len)
    }
    /// A prefix that covers exactly one address.
    pub fn host(ip: IpAddr) -> Prefix {
        let len = if ip.is_ipv4() { 32 } else { 128 };
        Prefix::new(ip, len).unwrap_or(Prefix { addr: Addr::from(ip), len128: 128 })
    }
    pub fn addr(&self) -> Addr {
        self.addr
    }
    pub fn is_v4(&self) -> bool {
        self.addr.is_v4() && self.len128 >= 96
    }
    /// Length in the address's own family.
    pub fn len(&self) -> u8 {
        if self.is_v4() {
            self.len128 - 96
        } else {
            self.len128
        }
    }
    pub fn is_empty(&self) -> bool {
        false
    }
    pub fn len128(&self) -> u8 {
        self.len128
    }
    pub fn contains(&self, a: Addr) -> bool {
        a.bits() & mask(self.len128) == self.addr.bits()
    }
    /// First and last address covered.
    pub fn range(&self) -> (u128, u128) {
        (self.addr.bits(), self.addr.bits() | !mask(self.len128))
    }
}

/// The network mask of a 128-bit prefix length.
pub fn mask(len128: u8) -> u128 {
    if len128 == 0 {
        0
    } else {
        !0u128 << (128 - u32::from(len128.min(128)))
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;
    fn from_str(s: &str) -> Result<Prefix, PrefixError> {
        let (a, l) = s.split_once('/').ok_or(PrefixError::BadAddress)?;
        let ip: IpAddr = a.parse().map_err(|_| PrefixError::BadAddress)?;
        let len: u8 = l.parse().map_err(|_| PrefixError::BadLength)?;
        Prefix::new(ip, len)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_mapping_round_trips() {
        let a: IpAddr = "10.244.1.5".parse().unwrap();
        let m = Addr::from(a);
        assert!(m.is_v4());
        assert_eq!(m.to_ip(), a);
        let b: IpAddr = "fd00::5".parse().unwrap();
        assert!(!Addr::from(b).is_v4());
        assert_eq!(Addr::from(b).to_ip(), b);
    }

    #[test]
    fn prefixes() {
        let p: Prefix = "10.244.0.0/16".parse().unwrap();
        assert_eq!(p.len(), 16);
        assert!(p.is_v4());
        assert!(p.contains(Addr::from("10.244.9.1".parse::<IpAddr>().unwrap())));
        assert!(!p.contains(Addr::from("10.245.0.1".parse::<IpAddr>().unwrap())));
        assert!(!p.contains(Addr::from("fd00::1".parse::<IpAddr>().unwrap())));
        assert_eq!(p.to_string(), "10.244.0.0/16");
        assert_eq!("10.244.0.1/16".parse::<Prefix>(), Err(PrefixError::HostBitsSet));
        assert_eq!("10.244.0.0/33".parse::<Prefix>(), Err(PrefixError::BadLength));
        assert_eq!("10.244.0.0".parse::<Prefix>(), Err(PrefixError::BadAddress));
        let z: Prefix = "0.0.0.0/0".parse().unwrap();
        assert!(z.contains(Addr::from("1.2.3.4".parse::<IpAddr>().unwrap())));
        assert!(!z.contains(Addr::from("::1".parse::<IpAddr>().unwrap())));
        let z6: Prefix = "::/0".parse().unwrap();
        assert!(z6.contains(Addr::from("1.2.3.4".parse::<IpAddr>().unwrap())));
    }
}
