//! ICMP errors about a translated flow ("related" traffic, as the kernel's conntrack calls it):
//! a destination unreachable, packet too big or time exceeded quotes the packet that caused
//! it, as that packet looked after translation. To reach the sender with meaning, the quoted
//! header is translated back, and so is the error's own destination when it was the
//! translated address (source NAT). Path MTU discovery through a service depends on this.

use crate::addr::Addr;
use crate::conntrack::Tuple;
use crate::parse::PacketMeta;
use crate::wire::checksum::{checksum, pseudo_header_sum, update_bytes};
use crate::wire::icmp::HEADER_LEN;
use crate::wire::ipv4::{self, Ipv4Packet};
use crate::wire::ipv6::{self, Ipv6Packet};
use crate::wire::l4::transport_checksum;
use crate::wire::proto;

/// The packet quoted inside an ICMP error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quoted {
    /// Offset of the quoted IP header in the frame.
    pub l3_off: u16,
    pub proto: u8,
    pub tuple: Tuple,
}

/// Finds the quoted packet of an ICMP error (same family as the error; TCP, UDP or SCTP with
/// at least its ports quoted).
pub fn quoted(frame: &[u8], m: &PacketMeta) -> Option<Quoted> {
    let at = usize::from(m.l4_off) + HEADER_LEN;
    let q = frame.get(at..usize::from(m.ip_end))?;
    let (proto, src, dst, l4) = if m.is_v4() {
        if q.len() < ipv4::HEADER_LEN || q[0] >> 4 != 4 {
            return None;
        }
        // A later fragment quoted has no transport header to take ports from.
        if u16::from_be_bytes([q[6], q[7]]) & 0x1fff != 0 {
            return None;
        }
        let hl = usize::from(q[0] & 0x0f) * 4;
        if hl < ipv4::HEADER_LEN {
            return None;
        }
        let src = Addr::from(core::net::Ipv4Addr::new(q[12], q[13], q[14], q[15]));
        let dst = Addr::from(core::net::Ipv4Addr::new(q[16], q[17], q[18], q[19]));
        (q[9], src, dst, hl)
    } else {
        if q.len() < ipv6::HEADER_LEN || q[0] >> 4 != 6 {
            return None;
        }
        let mut s = [0u8; 16];
        let mut d = [0u8; 16];
        s.copy_from_slice(&q[8..24]);
        d.copy_from_slice(&q[24..40]);
        (q[6], Addr::from(core::net::Ipv6Addr::from(s)), Addr::from(core::net::Ipv6Addr::from(d)), ipv6::HEADER_LEN)
    };
    if !matches!(proto, proto::TCP | proto::UDP | proto::SCTP) || q.len() < l4 + 4 {
        return None;
    }
    let sport = u16::from_be_bytes([q[l4], q[l4 + 1]]);
    let dport = u16::from_be_bytes([q[l4 + 2], q[l4 + 3]]);
    Some(Quoted { l3_off: at as u16, proto, tuple: Tuple { src, dst, sport, dport } })
}

fn addr_bytes(a: Addr, v4: bool) -> ([u8; 16], usize) {
    let mut b = [0u8; 16];
    if v4 {
        b[..4].copy_from_slice(&a.low32().to_be_bytes());
        (b, 4)
    } else {
        b.copy_from_slice(&a.bits().to_be_bytes());
        (b, 16)
    }
}

/// Rewrites the quoted packet to `quoted` and the error's addresses to `outer`, then
/// recomputes the ICMP checksum. The quoted IPv4 header checksum is updated incrementally; the
/// quoted transport checksum is left alone (it is usually cut off, and a receiver matching an
/// error to a socket does not check it).
pub fn rewrite(frame: &mut [u8], m: &mut PacketMeta, q: &Quoted, quoted: &Tuple, outer: (Addr, Addr)) {
    let (outer_src, outer_dst) = outer;
    let v4 = m.is_v4();
    let at = usize::from(q.l3_off);
    let end = usize::from(m.ip_end);
    let (src_at, dst_at, l4) = if v4 {
        (at + 12, at + 16, at + usize::from(frame[at] & 0x0f) * 4)
    } else {
        (at + 8, at + 24, at + ipv6::HEADER_LEN)
    };
    for (field, new) in [(src_at, quoted.src), (dst_at, quoted.dst)] {
        let (nb, n) = addr_bytes(new, v4);
        if v4 {
            let mut old = [0u8; 4];
            old.copy_from_slice(&frame[field..field + 4]);
            let c = u16::from_be_bytes([frame[at + 10], frame[at + 11]]);
            let c = update_bytes(c, &old, &nb[..4]);
            frame[at + 10..at + 12].copy_from_slice(&c.to_be_bytes());
        }
        frame[field..field + n].copy_from_slice(&nb[..n]);
    }
    frame[l4..l4 + 2].copy_from_slice(&quoted.sport.to_be_bytes());
    frame[l4 + 2..l4 + 4].copy_from_slice(&quoted.dport.to_be_bytes());
    let l3 = usize::from(m.l3_off);
    for (is_src, new) in [(true, outer_src), (false, outer_dst)] {
        if (if is_src { m.src } else { m.dst }) == new {
            continue;
        }
        if v4 {
            if let Ok(mut ip) = Ipv4Packet::new_checked(&mut frame[l3..end]) {
                let a = core::net::Ipv4Addr::from(new.low32());
                if is_src {
                    ip.set_src(a)
                } else {
                    ip.set_dst(a)
                }
            }
        } else if let Ok(mut ip) = Ipv6Packet::new_checked(&mut frame[l3..end]) {
            let a = core::net::Ipv6Addr::from(new.bits());
            if is_src {
                ip.set_src(a)
            } else {
                ip.set_dst(a)
            }
        }
        if is_src {
            m.src = new;
        } else {
            m.dst = new;
        }
    }
    let icmp = usize::from(m.l4_off);
    frame[icmp + 2] = 0;
    frame[icmp + 3] = 0;
    let c = if v4 {
        checksum(&frame[icmp..end])
    } else {
        let (s, _) = addr_bytes(m.src, false);
        let (d, _) = addr_bytes(m.dst, false);
        transport_checksum(pseudo_header_sum(&s, &d, proto::ICMPV6, (end - icmp) as u32), &frame[icmp..end])
    };
    frame[icmp + 2..icmp + 4].copy_from_slice(&c.to_be_bytes());
}
