//! Wire formats: checked zero-copy views over frame bytes.
//!
//! Every view wraps `T: AsRef<[u8]>` (setters need `AsMut<[u8]>`), keeps its field offsets in a
//! private `field` module, and promises that no accessor panics once `new_checked` has succeeded.
//! The pipeline works on these views; `build` holds owned representations used by tests, tools
//! and the demo to make packets (they allocate and never run on the packet path).

pub mod arp;
pub mod build;
pub mod checksum;
pub mod dns;
pub mod ethernet;
pub mod geneve;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
pub mod l4;
pub mod mac;
pub mod vxlan;

pub use mac::MacAddr;

/// Why a view could not be made over some bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Fewer bytes than the header needs.
    Truncated,
    /// A length or version field disagrees with the bytes.
    Malformed,
}

/// IP protocol numbers the switch understands.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
    pub const SCTP: u8 = 132;
}

#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
