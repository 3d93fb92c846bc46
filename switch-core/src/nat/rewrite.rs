//! In-place rewrite of a packet's addresses and ports.

use crate::conntrack::Tuple;
use crate::parse::PacketMeta;
use crate::wire::checksum::{update16, update_bytes};
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::ipv6::Ipv6Packet;
use crate::wire::l4::{fill_sctp_crc, TCP_CHECKSUM, UDP_CHECKSUM};
use crate::wire::proto;

/// Why a rewrite could not be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewriteError {
    /// The new tuple is of the other address family.
    FamilyMismatch,
}

fn addr_bytes(a: crate::addr::Addr, v4: bool) -> ([u8; 16], usize) {
    let mut b = [0u8; 16];
    if v4 {
        b[..4].copy_from_slice(&(a.low32()).to_be_bytes());
        (b, 4)
    } else {
        b.copy_from_slice(&a.bits().to_be_bytes());
        (b, 16)
    }
}

/// Rewrites `frame` (described by `m`) from `m`'s tuple to `new`, fixing the IPv4 header
/// checksum and the transport checksum, and updates `m`.
///
/// A first fragment holds the transport header and its checksum, which covers the whole
/// datagram: the incremental update (RFC 1624) stays right for the reassembled datagram. A
/// later fragment has no transport header: only its addresses (and the IPv4 header
/// checksum) are written, nothing at `l4_off`.
pub fn rewrite_tuple(frame: &mut [u8], m: &mut PacketMeta, new: &Tuple) -> Result<(), RewriteError> {
    let v4 = m.is_v4();
    if new.src.is_v4() != v4 || new.dst.is_v4() != v4 {
        return Err(RewriteError::FamilyMismatch);
    }
    let l3 = usize::from(m.l3_off);
    let l4 = usize::from(m.l4_off);
    let end = usize::from(m.ip_end);
    let has_l4 = !m.is_later_fragment();
    let csum_at = match m.proto {
        proto::TCP if has_l4 => Some(l4 + TCP_CHECKSUM),
        proto::UDP if has_l4 => Some(l4 + UDP_CHECKSUM),
        _ => None,
    };
    let mut csum = csum_at.map(|at| u16::from_be_bytes([frame[at], frame[at + 1]]));
    // A zero UDP checksum over IPv4 means "none": leave it so.
    let udp_none = m.proto == proto::UDP && csum == Some(0) && v4;
    let pairs = [(m.src, new.src), (m.dst, new.dst)];
    for (i, (old, newa)) in pairs.iter().enumerate() {
        if old == newa {
            continue;
        }
        let (ob, n) = addr_bytes(*old, v4);
        let (nb, _) = addr_bytes(*newa, v4);
        if let Some(c) = csum.as_mut() {
            *c = update_bytes(*c, &ob[..n], &nb[..n]);
        }
        if v4 {
            let mut ip = Ipv4Packet::new_checked(&mut frame[l3..end]).map_err(|_| RewriteError::FamilyMismatch)?;
            let a = core::net::Ipv4Addr::from(newa.low32());
            if i == 0 {
                ip.set_src(a)
            } else {
                ip.set_dst(a)
            }
        } else {
            let mut ip = Ipv6Packet::new_checked(&mut frame[l3..end]).map_err(|_| RewriteError::FamilyMismatch)?;
            let a = core::net::Ipv6Addr::from(newa.bits());
            if i == 0 {
                ip.set_src(a)
            } else {
                ip.set_dst(a)
            }
        }
    }
    let mut ports_changed = false;
    if m.has_ports() && has_l4 {
        for (at, old, newp) in [(l4, m.sport, new.sport), (l4 + 2, m.dport, new.dport)] {
            if old != newp {
                ports_changed = true;
                frame[at..at + 2].copy_from_slice(&newp.to_be_bytes());
                if let Some(c) = csum.as_mut() {
                    *c = update16(*c, old, newp);
                }
            }
        }
    }
    if let (Some(at), Some(mut c)) = (csum_at, csum) {
        if !udp_none {
            if m.proto == proto::UDP && c == 0 {
                c = 0xffff;
            }
            frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }
    }
    if m.proto == proto::SCTP && ports_changed {
        // SCTP's CRC32c covers the ports but not the addresses: recompute it.
        fill_sctp_crc(&mut frame[l4..end]);
    }
    m.src = new.src;
    m.dst = new.dst;
    if m.has_ports() {
        m.sport = new.sport;
        m.dport = new.dport;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Addr;
    use crate::parse::{parse, ParseOptions};
    use crate::wire::build::{IpFrame, L4Repr};
    use crate::wire::MacAddr;
    use proptest::prelude::*;

    const STRICT: ParseOptions = ParseOptions { verify_l4_checksum: true };

    fn frame(v4: bool, l4: L4Repr, payload: &[u8]) -> Vec<u8> {
        let (s, d) = if v4 { ("10.0.0.1", "10.96.0.10") } else { ("fd00::1", "fd00:96::10") };
        IpFrame::new(MacAddr::ZERO, MacAddr::ZERO, s.parse().unwrap(), d.parse().unwrap(), l4)
            .with_payload(payload)
            .build()
    }

    fn arb_l4() -> impl Strategy<Value = L4Repr> {
        prop_oneof![
            (any::<u16>(), any::<u16>(), any::<u32>(), any::<u8>())
                .prop_map(|(s, d, q, f)| { L4Repr::Tcp { sport: s, dport: d, seq: q, ack: 0, flags: f & 0x3f } }),
            (any::<u16>(), any::<u16>()).prop_map(|(s, d)| L4Repr::Udp { sport: s, dport: d }),
            (any::<u16>(), any::<u16>()).prop_map(|(s, d)| L4Repr::Sctp { sport: s, dport: d }),
        ]
    }

    proptest! {
        /// DNAT then reverse NAT: every checksum stays valid (incremental == full) and the
        /// packet returns to its original bytes.
        #[test]
        fn nat_round_trip_keeps_checksums(v4 in any::<bool>(), l4 in arb_l4(), payload in proptest::collection::vec(any::<u8>(), 0..64),
                                          na in any::<u32>(), nb in any::<u128>(), np in any::<u16>(), sp in any::<u16>()) {
            let orig = frame(v4, l4, &payload);
            let mut f = orig.clone();
            let mut m = parse(&f, STRICT).unwrap();
            let before = Tuple { src: m.src, dst: m.dst, sport: m.sport, dport: m.dport };
            let new_dst = if v4 { Addr::from(core::net::Ipv4Addr::from(na)) } else { Addr::from_bits(nb & !(0xffff_ffffu128 << 96) | (0xfd00u128 << 112)) };
            let new_src = if v4 { Addr::from(core::net::Ipv4Addr::from(na ^ 0x5a5a)) } else { Addr::from_bits(new_dst.bits() ^ 0x1234) };
            let new = Tuple { src: new_src, dst: new_dst, sport: sp, dport: np };
            rewrite_tuple(&mut f, &mut m, &new).unwrap();
            let m2 = parse(&f, STRICT).expect("checksums valid after DNAT+SNAT");
            prop_assert_eq!((m2.src, m2.dst, m2.sport, m2.dport), (new.src, new.dst, new.sport, new.dport));
            let mut m2 = m2;
            rewrite_tuple(&mut f, &mut m2, &before).unwrap();
            prop_assert_eq!(f, orig);
        }
    }

    #[test]
    fn udp_zero_checksum_stays_zero_on_v4() {
        let mut f = frame(true, L4Repr::Udp { sport: 1, dport: 53 }, b"x");
        let at = 14 + 20 + 6;
        f[at] = 0;
        f[at + 1] = 0;
        let mut m = parse(&f, STRICT).unwrap();
        let new = Tuple {
            dst: Addr::from(core::net::Ipv4Addr::new(10, 0, 0, 9)),
            dport: 5353,
            ..Tuple { src: m.src, dst: m.dst, sport: m.sport, dport: m.dport }
        };
        rewrite_tuple(&mut f, &mut m, &new).unwrap();
        assert_eq!(&f[at..at + 2], &[0, 0]);
        assert!(parse(&f, STRICT).is_ok());
    }

    #[test]
    fn family_mismatch_is_refused() {
        let mut f = frame(true, L4Repr::Udp { sport: 1, dport: 53 }, b"");
        let mut m = parse(&f, STRICT).unwrap();
        let new =
            Tuple { src: m.src, dst: Addr::from("fd00::1".parse::<core::net::IpAddr>().unwrap()), sport: 1, dport: 2 };
        assert_eq!(rewrite_tuple(&mut f, &mut m, &new), Err(RewriteError::FamilyMismatch));
    }
}
