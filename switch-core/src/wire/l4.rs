//! Transport headers: TCP (RFC 9293), UDP (RFC 768) and the SCTP common header (RFC 9260).
//! The pipeline needs ports, TCP flags and checksum positions; payloads are not interpreted.

use super::checksum;
use super::{be16, be32, put16, put32, WireError};

pub const TCP_MIN_LEN: usize = 20;
pub const UDP_LEN: usize = 8;
pub const SCTP_COMMON_LEN: usize = 12;

/// Offsets of the checksum field within each transport header.
pub const TCP_CHECKSUM: usize = 16;
pub const UDP_CHECKSUM: usize = 6;
pub const SCTP_CHECKSUM: usize = 8;

/// TCP flag bits.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

mod tcp_field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const URGENT: usize = 18;
}

/// A view of a TCP segment.
#[derive(Debug)]
pub struct TcpSegment<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpSegment<T> {
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < TCP_MIN_LEN {
            return Err(WireError::Truncated);
        }
        let doff = usize::from(b[tcp_field::DATA_OFF] >> 4) * 4;
        if doff < TCP_MIN_LEN {
            return Err(WireError::Malformed);
        }
        if doff > b.len() {
            return Err(WireError::Truncated);
        }
        Ok(TcpSegment { buffer })
    }
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), tcp_field::SRC_PORT)
    }
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), tcp_field::DST_PORT)
    }
    pub fn seq(&self) -> u32 {
        be32(self.buffer.as_ref(), tcp_field::SEQ)
    }
    pub fn ack(&self) -> u32 {
        be32(self.buffer.as_ref(), tcp_field::ACK)
    }
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[tcp_field::FLAGS] & 0x3f
    }
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[tcp_field::DATA_OFF] >> 4) * 4
    }
}

/// Writes a 20-byte TCP header with a zero checksum.
#[allow(clippy::too_many_arguments)]
pub fn write_tcp(b: &mut [u8], sport: u16, dport: u16, seq: u32, ack: u32, flags: u8, window: u16) {
    put16(b, tcp_field::SRC_PORT, sport);
    put16(b, tcp_field::DST_PORT, dport);
    put32(b, tcp_field::SEQ, seq);
    put32(b, tcp_field::ACK, ack);
    b[tcp_field::DATA_OFF] = 5 << 4;
    b[tcp_field::FLAGS] = flags;
    put16(b, tcp_field::WINDOW, window);
    put16(b, TCP_CHECKSUM, 0);
    put16(b, tcp_field::URGENT, 0);
}

/// A view of a UDP datagram.
#[derive(Debug)]
pub struct UdpDatagram<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpDatagram<T> {
    /// Checks that the length field covers the header and fits in the buffer.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < UDP_LEN {
            return Err(WireError::Truncated);
        }
        let len = usize::from(be16(b, 4));
        if len < UDP_LEN {
            return Err(WireError::Malformed);
        }
        if len > b.len() {
            return Err(WireError::Truncated);
        }
        Ok(UdpDatagram { buffer })
    }
    /// Checks only that the 8-byte header is present: for the first fragment of a datagram,
    /// whose length field covers all the fragments.
    pub fn new_header_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < UDP_LEN {
            return Err(WireError::Truncated);
        }
        Ok(UdpDatagram { buffer })
    }
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 0)
    }
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }
    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), 4)
    }
    pub fn is_empty(&self) -> bool {
        self.len() as usize == UDP_LEN
    }
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), UDP_CHECKSUM)
    }
}

/// Writes a UDP header with a zero checksum.
pub fn write_udp(b: &mut [u8], sport: u16, dport: u16, payload_len: usize) {
    put16(b, 0, sport);
    put16(b, 2, dport);
    put16(b, 4, (UDP_LEN + payload_len) as u16);
    put16(b, UDP_CHECKSUM, 0);
}

/// A view of the SCTP common header.
#[derive(Debug)]
pub struct SctpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> SctpPacket<T> {
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < SCTP_COMMON_LEN {
            return Err(WireError::Truncated);
        }
        Ok(SctpPacket { buffer })
    }
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 0)
    }
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }
    pub fn verify_crc(&self) -> bool {
        let b = self.buffer.as_ref();
        let stored = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        sctp_crc(b) == stored
    }
}

/// The SCTP CRC32c of a packet, computed with its checksum field taken as zero.
pub fn sctp_crc(b: &[u8]) -> u32 {
    // Hash the header with a zeroed checksum, then the rest, without copying the packet.
    let mut head = [0u8; SCTP_COMMON_LEN];
    head.copy_from_slice(&b[..SCTP_COMMON_LEN]);
    head[8..12].fill(0);
    checksum::crc32c_parts(&head, &b[SCTP_COMMON_LEN..])
}

/// Recomputes the SCTP checksum in place.
pub fn fill_sctp_crc(b: &mut [u8]) {
    let c = sctp_crc(b);
    b[8..12].copy_from_slice(&c.to_le_bytes());
}

/// Full checksum over a TCP, UDP or ICMPv6 message including its pseudo-header; for ICMPv4 pass
/// an empty pseudo-header sum (0).
pub fn transport_checksum(pseudo: u32, l4: &[u8]) -> u16 {
    !checksum::fold(checksum::sum_words(pseudo, l4))
}

/// True when the transport checksum of `l4` (with the pseudo-header sum `pseudo`) verifies.
pub fn transport_checksum_ok(pseudo: u32, l4: &[u8]) -> bool {
    checksum::fold(checksum::sum_words(pseudo, l4)) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_fields() {
        let mut b = [0u8; 24];
        write_tcp(&mut b, 40000, 80, 7, 9, tcp_flags::SYN, 1000);
        let t = TcpSegment::new_checked(&b[..]).unwrap();
        assert_eq!((t.src_port(), t.dst_port(), t.seq(), t.ack(), t.flags()), (40000, 80, 7, 9, tcp_flags::SYN));
        assert_eq!(t.header_len(), 20);
        b[12] = 0x40;
        assert_eq!(TcpSegment::new_checked(&b[..]).unwrap_err(), WireError::Malformed);
        b[12] = 0x70;
        assert_eq!(TcpSegment::new_checked(&b[..]).unwrap_err(), WireError::Truncated);
        assert_eq!(TcpSegment::new_checked(&b[..19]).unwrap_err(), WireError::Truncated);
    }

    #[test]
    fn udp_fields() {
        let mut b = [0u8; 12];
        write_udp(&mut b, 53, 5353, 4);
        let u = UdpDatagram::new_checked(&b[..]).unwrap();
        assert_eq!((u.src_port(), u.dst_port(), u.len()), (53, 5353, 12));
        assert_eq!(UdpDatagram::new_checked(&b[..11]).unwrap_err(), WireError::Truncated);
        b[5] = 4;
        assert_eq!(UdpDatagram::new_checked(&b[..]).unwrap_err(), WireError::Malformed);
    }

    #[test]
    fn sctp_crc_round_trip() {
        let mut b = [0u8; 28];
        b[0..2].copy_from_slice(&5000u16.to_be_bytes());
        b[2..4].copy_from_slice(&80u16.to_be_bytes());
        b[12] = 1; // INIT chunk type
        fill_sctp_crc(&mut b);
        let s = SctpPacket::new_checked(&b[..]).unwrap();
        assert!(s.verify_crc());
        assert_eq!((s.src_port(), s.dst_port()), (5000, 80));
        b[20] ^= 1;
        assert!(!SctpPacket::new_checked(&b[..]).unwrap().verify_crc());
    }
}
