//! Geneve header (RFC 8926).

use super::{be16, put16, put32, WireError};

pub const HEADER_LEN: usize = 8;
pub const UDP_PORT: u16 = 6081;
/// Protocol type for an Ethernet payload (Transparent Ethernet Bridging).
pub const PROTO_ETHERNET: u16 = 0x6558;

/// A view of a Geneve header with its options.
#[derive(Debug)]
pub struct GeneveHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> GeneveHeader<T> {
    /// Requires version 0 and that the options fit in the buffer.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let h = GeneveHeader { buffer };
        if h.version() != 0 {
            return Err(WireError::Malformed);
        }
        if h.buffer.as_ref().len() < h.header_len() {
            return Err(WireError::Truncated);
        }
        Ok(h)
    }
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 6
    }
    /// Header length including options.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + usize::from(self.buffer.as_ref()[0] & 0x3f) * 4
    }
    /// The control (OAM) flag: such packets are for the tunnel endpoint, not to be forwarded.
    pub fn is_oam(&self) -> bool {
        self.buffer.as_ref()[1] & 0x80 != 0
    }
    /// The critical-options flag: a receiver that does not understand them must drop.
    pub fn has_critical_options(&self) -> bool {
        self.buffer.as_ref()[1] & 0x40 != 0
    }
    pub fn protocol(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }
    pub fn vni(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([0, b[4], b[5], b[6]])
    }
}

/// Writes an option-less Geneve header carrying Ethernet for `vni`.
pub fn write_header(b: &mut [u8], vni: u32) {
    b[0] = 0;
    b[1] = 0;
    put16(b, 2, PROTO_ETHERNET);
    put32(b, 4, (vni & 0x00ff_ffff) << 8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_with_options() {
        let mut b = [0u8; 16];
        write_header(&mut b, 42);
        let h = GeneveHeader::new_checked(&b[..]).unwrap();
        assert_eq!((h.vni(), h.protocol(), h.header_len(), h.is_oam()), (42, PROTO_ETHERNET, 8, false));
        b[0] = 2; // two 4-byte words of options
        b[1] = 0x40;
        let h = GeneveHeader::new_checked(&b[..]).unwrap();
        assert_eq!(h.header_len(), 16);
        assert!(h.has_critical_options());
        b[0] = 3;
        assert_eq!(GeneveHeader::new_checked(&b[..]).unwrap_err(), WireError::Truncated);
        b[0] = 0x40;
        assert_eq!(GeneveHeader::new_checked(&b[..]).unwrap_err(), WireError::Malformed);
    }
}
