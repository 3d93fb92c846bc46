//! Replies written in place of a refused packet: for a service with no backends, as
//! kube-proxy gives them (TCP gets a reset, UDP and SCTP an ICMP port unreachable from the
//! service address), for a policy denial in reject mode (a reset, or ICMP
//! administratively prohibited), and for a packet too big for the tunnel (ICMP fragmentation
//! needed or packet too big, from the node: `pipeline/mtu.rs`).

use crate::addr::Addr;
use crate::drop::DropReason;
use crate::packet::PacketBuf;
use crate::parse::PacketMeta;
use crate::wire::checksum::pseudo_header_sum;
use crate::wire::ethernet::{self, ethertype};
use crate::wire::icmp;
use crate::wire::l4::{self, tcp_flags, transport_checksum, TcpSegment};
use crate::wire::{ipv4, ipv6, proto};
use core::net::{Ipv4Addr, Ipv6Addr};

/// Largest ICMP error we build: IPv4's 576 and IPv6's 1280 minimum MTUs.
const V4_ERROR_MAX: usize = 576;
const V6_ERROR_MAX: usize = 1280;

/// Writes the IP header of a reply from `from` to the packet's source.
fn write_ip(b: &mut [u8], m: &PacketMeta, from: Addr, protocol: u8, payload: usize) {
    if m.is_v4() {
        ipv4::write_header(b, Ipv4Addr::from(from.low32()), Ipv4Addr::from(m.src.low32()), protocol, payload, 64);
    } else {
        ipv6::write_header(b, Ipv6Addr::from(from.bits()), Ipv6Addr::from(m.src.bits()), protocol, payload, 64, 0);
    }
}

/// The pseudo-header sum of a reply from `from` back to the packet's source.
fn pseudo(m: &PacketMeta, from: Addr, protocol: u8, len: usize) -> u32 {
    if m.is_v4() {
        pseudo_header_sum(&from.low32().to_be_bytes(), &m.src.low32().to_be_bytes(), protocol, len as u32)
    } else {
        pseudo_header_sum(&from.bits().to_be_bytes(), &m.src.bits().to_be_bytes(), protocol, len as u32)
    }
}

/// Replaces a TCP segment with the reset that refuses it (RFC 9293 section 3.10.7.1).
pub(crate) fn tcp_reset<B: PacketBuf>(pkt: &mut B, m: &PacketMeta) -> Result<(), DropReason> {
    let l3 = usize::from(m.l3_off);
    let l4 = usize::from(m.l4_off);
    let (seq, ack, flags, seg_len) = {
        let t = TcpSegment::new_checked(&pkt.data()[l4..usize::from(m.ip_end)]).map_err(|_| DropReason::L4Truncated)?;
        let data = m.l4_len() - t.header_len();
        let ctl = usize::from(t.flags() & tcp_flags::SYN != 0) + usize::from(t.flags() & tcp_flags::FIN != 0);
        (t.seq(), t.ack(), t.flags(), (data + ctl) as u32)
    };
    if flags & tcp_flags::RST != 0 {
        return Err(DropReason::ServiceNoBackends);
    }
    let (rseq, rack, rflags) = if flags & tcp_flags::ACK != 0 {
        (ack, 0, tcp_flags::RST)
    } else {
        (0, seq.wrapping_add(seg_len), tcp_flags::RST | tcp_flags::ACK)
    };
    if !pkt.set_len(l4 + l4::TCP_MIN_LEN) {
        return Err(DropReason::L4Truncated);
    }
    let b = pkt.data_mut();
    swap_macs(b);
    write_ip(&mut b[l3..], m, m.dst, proto::TCP, l4::TCP_MIN_LEN);
    let seg = &mut b[l4..l4 + l4::TCP_MIN_LEN];
    l4::write_tcp(seg, m.dport, m.sport, rseq, rack, rflags, 0);
    let c = transport_checksum(pseudo(m, m.dst, proto::TCP, l4::TCP_MIN_LEN), seg);
    seg[l4::TCP_CHECKSUM..l4::TCP_CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// Which ICMP destination-unreachable to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unreachable {
    Port,
    AdminProhibited,
}

/// What an ICMP error written in place of a packet says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IcmpError {
    Unreachable(Unreachable),
    /// IPv4 fragmentation needed (type 3 code 4, RFC 1191) or IPv6 packet too big (type 2,
    /// RFC 4443), with the MTU the packet must fit.
    TooBig {
        mtu: u16,
    },
}

/// Replaces a datagram with an ICMP destination unreachable of `kind` that quotes it, from
/// the address it was sent to.
pub(crate) fn unreachable<B: PacketBuf>(pkt: &mut B, m: &PacketMeta, kind: Unreachable) -> Result<(), DropReason> {
    icmp_error(pkt, m, m.dst, IcmpError::Unreachable(kind))
}

/// Replaces a packet with the ICMP error `what` from `from` (same family) to its source,
/// quoting the packet as it is in the buffer, cut so that the error is at most 576 bytes
/// (IPv4, RFC 1812 section 4.3.2.3) or 1280 bytes (IPv6, RFC 4443 section 2.4).
pub(crate) fn icmp_error<B: PacketBuf>(
    pkt: &mut B,
    m: &PacketMeta,
    from: Addr,
    what: IcmpError,
) -> Result<(), DropReason> {
    let l3 = usize::from(m.l3_off);
    if l3 != ethernet::HEADER_LEN {
        return Err(DropReason::VlanNotAllowed);
    }
    let v4 = m.is_v4();
    if from.is_v4() != v4 {
        return Err(DropReason::NoRoute);
    }
    let ip_len = if v4 { ipv4::HEADER_LEN } else { ipv6::HEADER_LEN };
    let grow = ip_len + icmp::HEADER_LEN;
    let max = if v4 { V4_ERROR_MAX } else { V6_ERROR_MAX };
    let quote = (usize::from(m.ip_end) - l3).min(max - grow);
    let (dst_mac, src_mac) = {
        let d = pkt.data();
        let mut dm = [0u8; 6];
        let mut sm = [0u8; 6];
        dm.copy_from_slice(&d[0..6]);
        sm.copy_from_slice(&d[6..12]);
        (dm, sm)
    };
    let reply_len = ethernet::HEADER_LEN + grow + quote;
    // The quoted packet stays where it is and the new headers go in front of it; without
    // headroom, a packet longer than its error (as a packet too big for the tunnel is) has
    // the part quoted moved back instead.
    if !pkt.push_head(grow) {
        if pkt.data().len() < reply_len {
            return Err(DropReason::NoHeadroom);
        }
        pkt.data_mut().copy_within(l3..l3 + quote, l3 + grow);
    }
    if !pkt.set_len(reply_len) {
        return Err(DropReason::NoHeadroom);
    }
    let b = pkt.data_mut();
    b[0..6].copy_from_slice(&src_mac);
    b[6..12].copy_from_slice(&dst_mac);
    b[12..14].copy_from_slice(&(if v4 { ethertype::IPV4 } else { ethertype::IPV6 }).to_be_bytes());
    let icmp_len = icmp::HEADER_LEN + quote;
    let protocol = if v4 { proto::ICMP } else { proto::ICMPV6 };
    write_ip(&mut b[l3..], m, from, protocol, icmp_len);
    let body = &mut b[l3 + ip_len..l3 + ip_len + icmp_len];
    let (ty, code, rest) = match (what, v4) {
        (IcmpError::Unreachable(Unreachable::Port), true) => {
            (icmp::v4::DEST_UNREACHABLE, icmp::v4::CODE_PORT_UNREACHABLE, [0; 4])
        }
        (IcmpError::Unreachable(Unreachable::AdminProhibited), true) => {
            (icmp::v4::DEST_UNREACHABLE, icmp::v4::CODE_ADMIN_PROHIBITED, [0; 4])
        }
        (IcmpError::Unreachable(Unreachable::Port), false) => {
            (icmp::v6::DEST_UNREACHABLE, icmp::v6::CODE_PORT_UNREACHABLE, [0; 4])
        }
        (IcmpError::Unreachable(Unreachable::AdminProhibited), false) => {
            (icmp::v6::DEST_UNREACHABLE, icmp::v6::CODE_ADMIN_PROHIBITED, [0; 4])
        }
        (IcmpError::TooBig { mtu }, true) => {
            let [hi, lo] = mtu.to_be_bytes();
            (icmp::v4::DEST_UNREACHABLE, icmp::v4::CODE_FRAG_NEEDED, [0, 0, hi, lo])
        }
        (IcmpError::TooBig { mtu }, false) => (icmp::v6::PACKET_TOO_BIG, 0, u32::from(mtu).to_be_bytes()),
    };
    icmp::write_header(body, ty, code, rest);
    let sum = if v4 { 0 } else { pseudo(m, from, proto::ICMPV6, icmp_len) };
    let c = transport_checksum(sum, body);
    icmp::set_checksum(body, c);
    Ok(())
}

fn swap_macs(b: &mut [u8]) {
    for i in 0..6 {
        b.swap(i, i + 6);
    }
}
