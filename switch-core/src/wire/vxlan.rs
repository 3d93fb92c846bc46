//! VXLAN header (RFC 7348).

use super::{put32, WireError};

pub const HEADER_LEN: usize = 8;
pub const UDP_PORT: u16 = 4789;
const FLAG_VNI_VALID: u8 = 0x08;

/// A view of a VXLAN header.
#[derive(Debug)]
pub struct VxlanHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VxlanHeader<T> {
    /// Requires the I flag (VNI valid); other flag bits are reserved and ignored on receipt.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if b[0] & FLAG_VNI_VALID == 0 {
            return Err(WireError::Malformed);
        }
        Ok(VxlanHeader { buffer })
    }
    pub fn vni(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([0, b[4], b[5], b[6]])
    }
}

/// Writes a VXLAN header for `vni` (24 bits).
pub fn write_header(b: &mut [u8], vni: u32) {
    put32(b, 0, u32::from(FLAG_VNI_VALID) << 24);
    put32(b, 4, (vni & 0x00ff_ffff) << 8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vni_round_trip() {
        let mut b = [0u8; 8];
        write_header(&mut b, 0x00ab_cdef);
        assert_eq!(b, [0x08, 0, 0, 0, 0xab, 0xcd, 0xef, 0]);
        assert_eq!(VxlanHeader::new_checked(&b[..]).unwrap().vni(), 0xabcdef);
        b[0] = 0;
        assert_eq!(VxlanHeader::new_checked(&b[..]).unwrap_err(), WireError::Malformed);
        assert_eq!(VxlanHeader::new_checked(&b[..7]).unwrap_err(), WireError::Truncated);
    }
}
