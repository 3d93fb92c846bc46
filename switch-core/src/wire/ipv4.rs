//! IPv4 header (RFC 791).

use super::checksum;
use super::{be16, put16, WireError};
use core::net::Ipv4Addr;

pub const HEADER_LEN: usize = 20;

mod field {
    pub const VER_IHL: usize = 0;
    pub const TOTAL_LEN: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
}

const FLAG_MF: u16 = 0x2000;
const FLAG_DF: u16 = 0x4000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet.
#[derive(Debug)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Checks version, header length and total length against the buffer. Trailing bytes past the
    /// total length (Ethernet padding) are allowed.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let p = Ipv4Packet { buffer };
        if p.version() != 4 || p.header_len() < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        let total = usize::from(p.total_len());
        if total < p.header_len() {
            return Err(WireError::Malformed);
        }
        if p.buffer.as_ref().len() < total {
            return Err(WireError::Truncated);
        }
        Ok(p)
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }
    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::TOTAL_LEN)
    }
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT)
    }
    pub fn dont_frag(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLAGS_FRAG) & FLAG_DF != 0
    }
    /// True for any piece of a fragmented datagram (more-fragments set or a non-zero offset).
    pub fn is_fragment(&self) -> bool {
        let v = be16(self.buffer.as_ref(), field::FLAGS_FRAG);
        v & FLAG_MF != 0 || v & FRAG_OFFSET_MASK != 0
    }
    /// More fragments follow.
    pub fn more_fragments(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLAGS_FRAG) & FLAG_MF != 0
    }
    /// The offset of this fragment's data, in 8-octet units.
    pub fn frag_offset(&self) -> u16 {
        be16(self.buffer.as_ref(), field::FLAGS_FRAG) & FRAG_OFFSET_MASK
    }
    /// The options, between the fixed header and `header_len` (empty without options).
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }
    pub fn src(&self) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[field::SRC], b[field::SRC + 1], b[field::SRC + 2], b[field::SRC + 3])
    }
    pub fn dst(&self) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[field::DST], b[field::DST + 1], b[field::DST + 2], b[field::DST + 3])
    }
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum_words(0, &self.buffer.as_ref()[..self.header_len()])) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Rewrites the source address, updating the header checksum incrementally.
    pub fn set_src(&mut self, a: Ipv4Addr) {
        self.set_addr(field::SRC, a);
    }
    /// Rewrites the destination address, updating the header checksum incrementally.
    pub fn set_dst(&mut self, a: Ipv4Addr) {
        self.set_addr(field::DST, a);
    }
    fn set_addr(&mut self, at: usize, a: Ipv4Addr) {
        let b = self.buffer.as_mut();
        let old = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        let new = a.octets();
        let c = checksum::update_bytes(be16(b, field::CHECKSUM), &old, &new);
        b[at..at + 4].copy_from_slice(&new);
        put16(b, field::CHECKSUM, c);
    }
    /// Decrements the TTL by one, updating the checksum incrementally.
    pub fn decrement_ttl(&mut self) {
        let b = self.buffer.as_mut();
        let old = be16(b, field::TTL);
        b[field::TTL] = b[field::TTL].wrapping_sub(1);
        let new = be16(b, field::TTL);
        let c = checksum::update16(be16(b, field::CHECKSUM), old, new);
        put16(b, field::CHECKSUM, c);
    }
    /// Recomputes the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        let hl = self.header_len();
        let b = self.buffer.as_mut();
        put16(b, field::CHECKSUM, 0);
        let c = checksum::checksum(&b[..hl]);
        put16(b, field::CHECKSUM, c);
    }
}

/// Writes a 20-byte header (no options, DF set) into `b`, with its checksum.
pub fn write_header(b: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, payload_len: usize, ttl: u8) {
    b[field::VER_IHL] = 0x45;
    b[1] = 0;
    put16(b, field::TOTAL_LEN, (HEADER_LEN + payload_len) as u16);
    put16(b, field::IDENT, 0);
    put16(b, field::FLAGS_FRAG, FLAG_DF);
    b[field::TTL] = ttl;
    b[field::PROTOCOL] = protocol;
    put16(b, field::CHECKSUM, 0);
    b[field::SRC..field::SRC + 4].copy_from_slice(&src.octets());
    b[field::DST..field::DST + 4].copy_from_slice(&dst.octets());
    let c = checksum::checksum(&b[..HEADER_LEN]);
    put16(b, field::CHECKSUM, c);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> [u8; 28] {
        let mut b = [0u8; 28];
        write_header(&mut b, Ipv4Addr::new(10, 244, 1, 5), Ipv4Addr::new(10, 96, 0, 10), 17, 8, 64);
        b
    }

    #[test]
    fn fields_and_checksum() {
        let b = sample();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 28);
        assert_eq!(p.protocol(), 17);
        assert_eq!(p.ttl(), 64);
        assert!(p.dont_frag());
        assert!(!p.is_fragment());
        assert!(p.verify_checksum());
        assert_eq!(p.src(), Ipv4Addr::new(10, 244, 1, 5));
    }

    #[test]
    fn bad_lengths() {
        let mut b = sample();
        assert_eq!(Ipv4Packet::new_checked(&b[..19]).unwrap_err(), WireError::Truncated);
        assert_eq!(Ipv4Packet::new_checked(&b[..27]).unwrap_err(), WireError::Truncated);
        b[0] = 0x44;
        assert_eq!(Ipv4Packet::new_checked(&b[..]).unwrap_err(), WireError::Malformed);
        b[0] = 0x65;
        assert_eq!(Ipv4Packet::new_checked(&b[..]).unwrap_err(), WireError::Malformed);
        let mut b = sample();
        b[3] = 10; // total length 10 < header length
        assert_eq!(Ipv4Packet::new_checked(&b[..]).unwrap_err(), WireError::Malformed);
    }

    #[test]
    fn rewrites_keep_checksum_valid() {
        let mut b = sample();
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        p.set_dst(Ipv4Addr::new(10, 244, 2, 7));
        assert!(p.verify_checksum());
        p.set_src(Ipv4Addr::new(192, 168, 0, 1));
        p.decrement_ttl();
        assert_eq!(p.ttl(), 63);
        assert!(p.verify_checksum());
        let inc = p.checksum();
        p.fill_checksum();
        assert_eq!(p.checksum(), inc);
    }

    #[test]
    fn fragments() {
        let mut b = sample();
        b[6] = 0x20; // MF
        assert!(Ipv4Packet::new_checked(&b[..]).unwrap().is_fragment());
        b[6] = 0x00;
        b[7] = 0x01; // offset 8
        assert!(Ipv4Packet::new_checked(&b[..]).unwrap().is_fragment());
    }
}
