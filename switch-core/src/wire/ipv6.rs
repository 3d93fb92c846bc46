//! IPv6 fixed header (RFC 8200).

use super::{be16, be32, put16, WireError};
use core::net::Ipv6Addr;

pub const HEADER_LEN: usize = 40;

/// Next-header values of the extension headers the parser walks (RFC 8200 4.3-4.6).
pub mod ext {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const DEST_OPTS: u8 = 60;
}

mod field {
    pub const VER_TC_FLOW: usize = 0;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: usize = 8;
    pub const DST: usize = 24;
}

/// A view of an IPv6 packet.
#[derive(Debug)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

fn addr_at(b: &[u8], at: usize) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(o)
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Checks the version and that the payload length fits in the buffer.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if b[field::VER_TC_FLOW] >> 4 != 6 {
            return Err(WireError::Malformed);
        }
        if b.len() < HEADER_LEN + usize::from(be16(b, field::PAYLOAD_LEN)) {
            return Err(WireError::Truncated);
        }
        Ok(Ipv6Packet { buffer })
    }

    pub fn payload_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::PAYLOAD_LEN)
    }
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }
    pub fn src(&self) -> Ipv6Addr {
        addr_at(self.buffer.as_ref(), field::SRC)
    }
    pub fn dst(&self) -> Ipv6Addr {
        addr_at(self.buffer.as_ref(), field::DST)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    pub fn set_src(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC..field::SRC + 16].copy_from_slice(&a.octets());
    }
    pub fn set_dst(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::DST..field::DST + 16].copy_from_slice(&a.octets());
    }
    pub fn decrement_hop_limit(&mut self) {
        let b = self.buffer.as_mut();
        b[field::HOP_LIMIT] = b[field::HOP_LIMIT].wrapping_sub(1);
    }
}

/// Length of a Fragment header, and the smallest length of any extension header.
pub const EXT_MIN_LEN: usize = 8;

/// A view of one extension header: Hop-by-Hop, Routing or Destination Options (a next-header
/// byte, then a length in 8-octet units not counting the first 8) or Fragment (always 8
/// octets). `new_checked` checks that the whole header is in the buffer.
#[derive(Debug)]
pub struct ExtHeader<T: AsRef<[u8]>> {
    buffer: T,
    kind: u8,
}

impl<T: AsRef<[u8]>> ExtHeader<T> {
    /// `kind` is the next-header value that announced this header.
    pub fn new_checked(buffer: T, kind: u8) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < EXT_MIN_LEN {
            return Err(WireError::Truncated);
        }
        let h = ExtHeader { buffer, kind };
        if h.buffer.as_ref().len() < h.header_len() {
            return Err(WireError::Truncated);
        }
        Ok(h)
    }
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[0]
    }
    pub fn header_len(&self) -> usize {
        if self.kind == ext::FRAGMENT {
            EXT_MIN_LEN
        } else {
            (usize::from(self.buffer.as_ref()[1]) + 1) * 8
        }
    }
    /// Routing header: segments left (the fourth octet of every routing type).
    pub fn segments_left(&self) -> u8 {
        self.buffer.as_ref()[3]
    }
    /// Fragment header: the offset of the data, in 8-octet units.
    pub fn frag_offset(&self) -> u16 {
        be16(self.buffer.as_ref(), 2) >> 3
    }
    /// Fragment header: more fragments follow.
    pub fn more_fragments(&self) -> bool {
        be16(self.buffer.as_ref(), 2) & 1 != 0
    }
    /// Fragment header: the identification.
    pub fn frag_ident(&self) -> u32 {
        be32(self.buffer.as_ref(), 4)
    }
}

/// Writes a 40-byte header into `b`; `flow` is the 20-bit flow label.
pub fn write_header(b: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload_len: usize, hop: u8, flow: u32) {
    let w = 0x6000_0000u32 | (flow & 0x000f_ffff);
    b[0..4].copy_from_slice(&w.to_be_bytes());
    put16(b, field::PAYLOAD_LEN, payload_len as u16);
    b[field::NEXT_HEADER] = next;
    b[field::HOP_LIMIT] = hop;
    b[field::SRC..field::SRC + 16].copy_from_slice(&src.octets());
    b[field::DST..field::DST + 16].copy_from_slice(&dst.octets());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_lengths() {
        let mut b = [0u8; 48];
        let s: Ipv6Addr = "fd00::1".parse().unwrap();
        let d: Ipv6Addr = "fd00::2".parse().unwrap();
        write_header(&mut b, s, d, 17, 8, 64, 0xabcde);
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!((p.src(), p.dst(), p.next_header(), p.hop_limit(), p.payload_len()), (s, d, 17, 64, 8));
        assert_eq!(Ipv6Packet::new_checked(&b[..47]).unwrap_err(), WireError::Truncated);
        assert_eq!(Ipv6Packet::new_checked(&b[..39]).unwrap_err(), WireError::Truncated);
        b[0] = 0x40;
        assert_eq!(Ipv6Packet::new_checked(&b[..]).unwrap_err(), WireError::Malformed);
    }

    #[test]
    fn setters() {
        let mut b = [0u8; 40];
        write_header(&mut b, Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST, 6, 0, 2, 0);
        let mut p = Ipv6Packet::new_checked(&mut b[..]).unwrap();
        let n: Ipv6Addr = "fd00:96::a".parse().unwrap();
        p.set_dst(n);
        p.set_src(n);
        p.decrement_hop_limit();
        assert_eq!((p.dst(), p.src(), p.hop_limit()), (n, n, 1));
    }
}
