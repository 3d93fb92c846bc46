//! ARP for IPv4 over Ethernet (RFC 826).

use super::{be16, put16, MacAddr, WireError};
use core::net::Ipv4Addr;

pub const PACKET_LEN: usize = 28;
pub const OP_REQUEST: u16 = 1;
pub const OP_REPLY: u16 = 2;

mod field {
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: usize = 8;
    pub const SPA: usize = 14;
    pub const THA: usize = 18;
    pub const TPA: usize = 24;
}

/// A view of an Ethernet/IPv4 ARP packet.
#[derive(Debug)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Accepts only hardware type Ethernet with IPv4 protocol addresses.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < PACKET_LEN {
            return Err(WireError::Truncated);
        }
        if be16(b, field::HTYPE) != 1 || be16(b, field::PTYPE) != 0x0800 || b[field::HLEN] != 6 || b[field::PLEN] != 4 {
            return Err(WireError::Malformed);
        }
        Ok(ArpPacket { buffer })
    }

    pub fn operation(&self) -> u16 {
        be16(self.buffer.as_ref(), field::OPER)
    }
    pub fn sender_mac(&self) -> MacAddr {
        MacAddr::from_slice(&self.buffer.as_ref()[field::SHA..])
    }
    pub fn sender_ip(&self) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[field::SPA], b[field::SPA + 1], b[field::SPA + 2], b[field::SPA + 3])
    }
    pub fn target_ip(&self) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[field::TPA], b[field::TPA + 1], b[field::TPA + 2], b[field::TPA + 3])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Turns a request into the reply that says `mac` has the requested address, in place.
    pub fn make_reply(&mut self, mac: MacAddr) {
        let b = self.buffer.as_mut();
        let mut sha = [0u8; 6];
        let mut spa = [0u8; 4];
        let mut tpa = [0u8; 4];
        sha.copy_from_slice(&b[field::SHA..field::SHA + 6]);
        spa.copy_from_slice(&b[field::SPA..field::SPA + 4]);
        tpa.copy_from_slice(&b[field::TPA..field::TPA + 4]);
        put16(b, field::OPER, OP_REPLY);
        b[field::SHA..field::SHA + 6].copy_from_slice(&mac.0);
        b[field::SPA..field::SPA + 4].copy_from_slice(&tpa);
        b[field::THA..field::THA + 6].copy_from_slice(&sha);
        b[field::TPA..field::TPA + 4].copy_from_slice(&spa);
    }
}

/// A broadcast Ethernet frame (60 bytes, padded) carrying an ARP packet from `sha`/`spa` about
/// `tpa` (the target hardware address zero): a request, a gratuitous ARP (`spa == tpa`), or a
/// reply for tests.
pub fn frame(op: u16, sha: MacAddr, spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&sha.0);
    f[12..14].copy_from_slice(&super::ethernet::ethertype::ARP.to_be_bytes());
    write(&mut f[14..], op, sha, spa, MacAddr([0; 6]), tpa);
    f
}

/// Writes an ARP packet (28 bytes) into `b`.
pub fn write(b: &mut [u8], op: u16, sha: MacAddr, spa: Ipv4Addr, tha: MacAddr, tpa: Ipv4Addr) {
    put16(b, field::HTYPE, 1);
    put16(b, field::PTYPE, 0x0800);
    b[field::HLEN] = 6;
    b[field::PLEN] = 4;
    put16(b, field::OPER, op);
    b[field::SHA..field::SHA + 6].copy_from_slice(&sha.0);
    b[field::SPA..field::SPA + 4].copy_from_slice(&spa.octets());
    b[field::THA..field::THA + 6].copy_from_slice(&tha.0);
    b[field::TPA..field::TPA + 4].copy_from_slice(&tpa.octets());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_to_reply() {
        let mut b = [0u8; 28];
        let pod = MacAddr([2, 0, 0, 0, 0, 0xa]);
        write(&mut b, OP_REQUEST, pod, Ipv4Addr::new(10, 0, 0, 5), MacAddr::ZERO, Ipv4Addr::new(10, 0, 0, 1));
        let mut p = ArpPacket::new_checked(&mut b[..]).unwrap();
        assert_eq!(p.operation(), OP_REQUEST);
        assert_eq!(p.target_ip(), Ipv4Addr::new(10, 0, 0, 1));
        let gw = MacAddr([2, 0, 0, 0, 0, 1]);
        p.make_reply(gw);
        assert_eq!(p.operation(), OP_REPLY);
        assert_eq!(p.sender_mac(), gw);
        assert_eq!(p.sender_ip(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.target_ip(), Ipv4Addr::new(10, 0, 0, 5));
        assert_eq!(&b[18..24], &pod.0);
    }

    #[test]
    fn rejects_other_hardware() {
        let mut b = [0u8; 28];
        write(&mut b, 1, MacAddr::ZERO, Ipv4Addr::UNSPECIFIED, MacAddr::ZERO, Ipv4Addr::UNSPECIFIED);
        b[1] = 6;
        assert_eq!(ArpPacket::new_checked(&b[..]).unwrap_err(), WireError::Malformed);
        assert_eq!(ArpPacket::new_checked(&b[..27]).unwrap_err(), WireError::Truncated);
    }
}
