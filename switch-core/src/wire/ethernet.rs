//! Ethernet II header with an optional 802.1Q tag.

use super::{be16, put16, MacAddr, WireError};

pub const HEADER_LEN: usize = 14;
pub const VLAN_TAG_LEN: usize = 4;

/// EtherType values.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const VLAN: u16 = 0x8100;
    pub const IPV6: u16 = 0x86dd;
    pub const TEB: u16 = 0x6558;
}

mod field {
    pub const DST: usize = 0;
    pub const SRC: usize = 6;
    pub const ETHERTYPE: usize = 12;
    pub const VLAN_TCI: usize = 14;
    pub const VLAN_INNER_TYPE: usize = 16;
}

/// A view of an Ethernet frame.
#[derive(Debug)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Checks that the untagged header, and the 802.1Q tag if present, fit in the buffer.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let len = buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let f = EthernetFrame { buffer };
        if f.outer_ethertype() == ethertype::VLAN && len < HEADER_LEN + VLAN_TAG_LEN {
            return Err(WireError::Truncated);
        }
        Ok(f)
    }

    pub fn dst(&self) -> MacAddr {
        MacAddr::from_slice(&self.buffer.as_ref()[field::DST..])
    }

    pub fn src(&self) -> MacAddr {
        MacAddr::from_slice(&self.buffer.as_ref()[field::SRC..])
    }

    fn outer_ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    /// The 802.1Q VLAN id, if the frame is tagged.
    pub fn vlan(&self) -> Option<u16> {
        (self.outer_ethertype() == ethertype::VLAN).then(|| be16(self.buffer.as_ref(), field::VLAN_TCI) & 0x0fff)
    }

    /// The EtherType of the payload (after the tag, if any).
    pub fn ethertype(&self) -> u16 {
        if self.vlan().is_some() {
            be16(self.buffer.as_ref(), field::VLAN_INNER_TYPE)
        } else {
            self.outer_ethertype()
        }
    }

    /// Length of the Ethernet header including the tag.
    pub fn header_len(&self) -> usize {
        if self.vlan().is_some() {
            HEADER_LEN + VLAN_TAG_LEN
        } else {
            HEADER_LEN
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    pub fn set_dst(&mut self, m: MacAddr) {
        self.buffer.as_mut()[field::DST..field::DST + 6].copy_from_slice(&m.0);
    }

    pub fn set_src(&mut self, m: MacAddr) {
        self.buffer.as_mut()[field::SRC..field::SRC + 6].copy_from_slice(&m.0);
    }
}

/// Writes an untagged Ethernet header into the first 14 bytes of `b` (which must be long enough).
pub fn write_header(b: &mut [u8], dst: MacAddr, src: MacAddr, ethertype: u16) {
    b[field::DST..field::DST + 6].copy_from_slice(&dst.0);
    b[field::SRC..field::SRC + 6].copy_from_slice(&src.0);
    put16(b, field::ETHERTYPE, ethertype);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untagged_and_tagged() {
        let mut f = [0u8; 18];
        f[12] = 0x08;
        let e = EthernetFrame::new_checked(&f[..14]).unwrap();
        assert_eq!(e.ethertype(), ethertype::IPV4);
        assert_eq!(e.vlan(), None);
        assert_eq!(e.header_len(), 14);
        f[12] = 0x81;
        f[13] = 0x00;
        f[14] = 0x20;
        f[15] = 0x07;
        f[16] = 0x86;
        f[17] = 0xdd;
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(e.vlan(), Some(7));
        assert_eq!(e.ethertype(), ethertype::IPV6);
        assert_eq!(e.header_len(), 18);
        assert_eq!(EthernetFrame::new_checked(&f[..16]).unwrap_err(), WireError::Truncated);
        assert_eq!(EthernetFrame::new_checked(&f[..13]).unwrap_err(), WireError::Truncated);
    }

    #[test]
    fn setters() {
        let mut f = [0u8; 14];
        let mut e = EthernetFrame::new_checked(&mut f[..]).unwrap();
        e.set_dst(MacAddr([1, 2, 3, 4, 5, 6]));
        e.set_src(MacAddr([7, 8, 9, 10, 11, 12]));
        assert_eq!(e.dst(), MacAddr([1, 2, 3, 4, 5, 6]));
        assert_eq!(e.src(), MacAddr([7, 8, 9, 10, 11, 12]));
    }
}
