//! Replies written in place of a refused packet: for a service with no backends, as
//! kube-proxy gives them (TCP gets a reset, UDP and SCTP an ICMP port unreachable from the
//! service address), and for a policy denial in reject mode (a reset, or ICMP
//! administratively prohibited).

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

fn write_ip(b: &mut [u8], m: &PacketMeta, protocol: u8, payload: usize) {
    if m.is_v4() {
        ipv4::write_header(b, Ipv4Addr::from(m.dst.low32()), Ipv4Addr::from(m.src.low32()), protocol, payload, 64);
    } else {
        ipv6::write_header(b, Ipv6Addr::from(m.dst.bits()), Ipv6Addr::from(m.src.bits()), protocol, payload, 64, 0);
    }
}

fn pseudo(m: &PacketMeta, protocol: u8, len: usize) -> u32 {
    // The reply goes from the packet's destination back to its source.
    if m.is_v4() {
        pseudo_header_sum(&(m.dst.low32()).to_be_bytes(), &(m.src.low32()).to_be_bytes(), protocol, len as u32)
    } else {
        pseudo_header_sum(&m.dst.bits().to_be_bytes(), &m.src.bits().to_be_bytes(), protocol, len as u32)
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
    write_ip(&mut b[l3..], m, proto::TCP, l4::TCP_MIN_LEN);
    let seg = &mut b[l4..l4 + l4::TCP_MIN_LEN];
    l4::write_tcp(seg, m.dport, m.sport, rseq, rack, rflags, 0);
    let c = transport_checksum(pseudo(m, proto::TCP, l4::TCP_MIN_LEN), seg);
    seg[l4::TCP_CHECKSUM..l4::TCP_CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// Which ICMP destination-unreachable to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unreachable {
    Port,
    AdminProhibited,
}

/// Replaces a datagram with an ICMP destination unreachable of `kind` that quotes it.
pub(crate) fn unreachable<B: PacketBuf>(pkt: &mut B, m: &PacketMeta, kind: Unreachable) -> Result<(), DropReason> {
    let l3 = usize::from(m.l3_off);
    if l3 != ethernet::HEADER_LEN {
        return Err(DropReason::VlanNotAllowed);
    }
    let v4 = m.is_v4();
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
    if !pkt.push_head(grow) {
        return Err(DropReason::NoHeadroom);
    }
    if !pkt.set_len(ethernet::HEADER_LEN + grow + quote) {
        return Err(DropReason::NoHeadroom);
    }
    let b = pkt.data_mut();
    b[0..6].copy_from_slice(&src_mac);
    b[6..12].copy_from_slice(&dst_mac);
    b[12..14].copy_from_slice(&(if v4 { ethertype::IPV4 } else { ethertype::IPV6 }).to_be_bytes());
    let icmp_len = icmp::HEADER_LEN + quote;
    let protocol = if v4 { proto::ICMP } else { proto::ICMPV6 };
    write_ip(&mut b[l3..], m, protocol, icmp_len);
    let body = &mut b[l3 + ip_len..l3 + ip_len + icmp_len];
    if v4 {
        let code = match kind {
            Unreachable::Port => icmp::v4::CODE_PORT_UNREACHABLE,
            Unreachable::AdminProhibited => icmp::v4::CODE_ADMIN_PROHIBITED,
        };
        icmp::write_header(body, icmp::v4::DEST_UNREACHABLE, code, [0; 4]);
        let c = transport_checksum(0, body);
        icmp::set_checksum(body, c);
    } else {
        let code = match kind {
            Unreachable::Port => icmp::v6::CODE_PORT_UNREACHABLE,
            Unreachable::AdminProhibited => icmp::v6::CODE_ADMIN_PROHIBITED,
        };
        icmp::write_header(body, icmp::v6::DEST_UNREACHABLE, code, [0; 4]);
        let c = transport_checksum(pseudo(m, proto::ICMPV6, icmp_len), body);
        icmp::set_checksum(body, c);
    }
    Ok(())
}

fn swap_macs(b: &mut [u8]) {
    for i in 0..6 {
        b.swap(i, i + 6);
    }
}
