//! ICMPv4 (RFC 792) and ICMPv6 (RFC 4443) headers, with the neighbour discovery messages the
//! switch answers for pod gateways (RFC 4861).

use super::{be16, put16, MacAddr, WireError};
use core::net::Ipv6Addr;

pub const HEADER_LEN: usize = 8;

/// ICMPv4 types.
pub mod v4 {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACHABLE: u8 = 3;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const CODE_PORT_UNREACHABLE: u8 = 3;
    /// Communication administratively prohibited (RFC 1812, 5.2.7.1).
    pub const CODE_ADMIN_PROHIBITED: u8 = 13;
    /// Fragmentation needed and DF set; the next-hop MTU is in bytes 6-7 (RFC 1191).
    pub const CODE_FRAG_NEEDED: u8 = 4;
}

/// ICMPv6 types.
pub mod v6 {
    pub const DEST_UNREACHABLE: u8 = 1;
    /// Packet too big; the MTU is in bytes 4-7 (RFC 4443 section 3.2).
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    pub const ROUTER_SOLICIT: u8 = 133;
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    pub const NEIGHBOR_ADVERT: u8 = 136;
    pub const CODE_PORT_UNREACHABLE: u8 = 4;
    /// Communication with the destination administratively prohibited (RFC 4443).
    pub const CODE_ADMIN_PROHIBITED: u8 = 1;
}

/// Length of a neighbour solicitation or advertisement body with one link-layer option.
pub const ND_LEN_WITH_LLA: usize = 32;
const ND_TARGET: usize = 8;
const ND_OPTIONS: usize = 24;
const OPT_SOURCE_LLA: u8 = 1;
const OPT_TARGET_LLA: u8 = 2;

/// A view of an ICMP (v4 or v6) message header.
#[derive(Debug)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(IcmpPacket { buffer })
    }
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[0]
    }
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[1]
    }
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }
    /// Identifier of an echo request or reply.
    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), 4)
    }
    pub fn echo_seq(&self) -> u16 {
        be16(self.buffer.as_ref(), 6)
    }
    /// Target of a neighbour solicitation, if the message is long enough to hold one.
    pub fn nd_target(&self) -> Option<Ipv6Addr> {
        let b = self.buffer.as_ref();
        if b.len() < ND_OPTIONS {
            return None;
        }
        let mut o = [0u8; 16];
        o.copy_from_slice(&b[ND_TARGET..ND_TARGET + 16]);
        Some(Ipv6Addr::from(o))
    }
    /// The source link-layer address option of a solicitation, when it is the first option.
    pub fn nd_source_lla(&self) -> Option<MacAddr> {
        let b = self.buffer.as_ref();
        if b.len() >= ND_LEN_WITH_LLA && b[ND_OPTIONS] == OPT_SOURCE_LLA && b[ND_OPTIONS + 1] == 1 {
            Some(MacAddr::from_slice(&b[ND_OPTIONS + 2..]))
        } else {
            None
        }
    }
}

/// Writes an ICMP header with a zero checksum; `rest` is the 4 bytes after the checksum.
pub fn write_header(b: &mut [u8], ty: u8, code: u8, rest: [u8; 4]) {
    b[0] = ty;
    b[1] = code;
    put16(b, 2, 0);
    b[4..8].copy_from_slice(&rest);
}

/// Writes a neighbour advertisement for `target` owned by `mac` (router and solicited flags
/// set, override set) with a target link-layer option. `b` must be `ND_LEN_WITH_LLA` long.
/// The checksum is left zero for the caller, who knows the addresses.
pub fn write_neighbor_advert(b: &mut [u8], target: Ipv6Addr, mac: MacAddr) {
    write_header(b, v6::NEIGHBOR_ADVERT, 0, [0xe0, 0, 0, 0]);
    b[ND_TARGET..ND_TARGET + 16].copy_from_slice(&target.octets());
    b[ND_OPTIONS] = OPT_TARGET_LLA;
    b[ND_OPTIONS + 1] = 1;
    b[ND_OPTIONS + 2..ND_OPTIONS + 8].copy_from_slice(&mac.0);
}

/// Writes a neighbour solicitation for `target` from `mac` (for tests and tools).
pub fn write_neighbor_solicit(b: &mut [u8], target: Ipv6Addr, mac: MacAddr) {
    write_header(b, v6::NEIGHBOR_SOLICIT, 0, [0; 4]);
    b[ND_TARGET..ND_TARGET + 16].copy_from_slice(&target.octets());
    b[ND_OPTIONS] = OPT_SOURCE_LLA;
    b[ND_OPTIONS + 1] = 1;
    b[ND_OPTIONS + 2..ND_OPTIONS + 8].copy_from_slice(&mac.0);
}

/// Stores a computed checksum into an ICMP header.
pub fn set_checksum(b: &mut [u8], c: u16) {
    put16(b, 2, c);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_fields() {
        let mut b = [0u8; 8];
        write_header(&mut b, v4::ECHO_REQUEST, 0, [0x12, 0x34, 0, 7]);
        let p = IcmpPacket::new_checked(&b[..]).unwrap();
        assert_eq!((p.msg_type(), p.code(), p.echo_ident(), p.echo_seq()), (8, 0, 0x1234, 7));
        assert_eq!(IcmpPacket::new_checked(&b[..7]).unwrap_err(), WireError::Truncated);
    }

    #[test]
    fn neighbor_messages() {
        let mut b = [0u8; ND_LEN_WITH_LLA];
        let t: Ipv6Addr = "fe80::1".parse().unwrap();
        let m = MacAddr([2, 0, 0, 0, 0, 9]);
        write_neighbor_solicit(&mut b, t, m);
        let p = IcmpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(p.nd_target(), Some(t));
        assert_eq!(p.nd_source_lla(), Some(m));
        write_neighbor_advert(&mut b, t, m);
        let p = IcmpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(p.msg_type(), v6::NEIGHBOR_ADVERT);
        assert_eq!(p.nd_source_lla(), None);
        assert_eq!(&b[24..32], &[2, 1, 2, 0, 0, 0, 0, 9]);
    }
}
