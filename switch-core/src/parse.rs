//! The one header walker: parses a frame once into [`PacketMeta`], which every later stage reads.

use crate::addr::Addr;
use crate::drop::DropReason;
use crate::wire::arp::ArpPacket;
use crate::wire::checksum::pseudo_header_sum;
use crate::wire::ethernet::{ethertype, EthernetFrame};
use crate::wire::icmp::{self, IcmpPacket};
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::ipv6::{self, ExtHeader, Ipv6Packet};
use crate::wire::l4::{self, tcp_flags, SctpPacket, TcpSegment, UdpDatagram};
use crate::wire::{proto, MacAddr, WireError};

/// The network layer of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum L3 {
    #[default]
    None,
    Arp,
    V4,
    V6,
}

/// What the ICMP message is, for the stages that care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IcmpKind {
    #[default]
    NotIcmp,
    EchoRequest,
    EchoReply,
    /// Destination unreachable, time exceeded and the like: carries another packet's header.
    Error,
    NeighborSolicit,
    /// Other neighbour discovery: advertisements, router solicitations and the like.
    NeighborOther,
}

/// Which piece of a datagram a packet is (RFC 791 fragments, RFC 8200 Fragment header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FragKind {
    /// Not fragmented (an IPv6 "atomic" fragment, offset 0 and no more, counts as whole).
    #[default]
    Whole,
    /// Offset 0: carries the transport header, so the ports were parsed.
    First,
    /// Any later piece: no transport header, ports unknown until the fragment stage fills them.
    Later,
}

/// A packet's place in a fragmented datagram (8 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Frag {
    /// IPv4 identification (16 bits) or IPv6 Fragment header identification (32 bits).
    pub id: u32,
    pub kind: FragKind,
    /// More fragments follow.
    pub more: bool,
}

/// Most extension headers walked in one IPv6 packet: real chains have one to three, and the
/// bound keeps a crafted chain from costing more than a few cache lines.
pub const MAX_EXT_HEADERS: usize = 8;

/// Compact per-packet metadata: offsets are from the start of the frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketMeta {
    pub l3: L3,
    pub vlan: Option<u16>,
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub l3_off: u16,
    pub l4_off: u16,
    /// End of the IP packet (frames may carry Ethernet padding after it).
    pub ip_end: u16,
    pub proto: u8,
    pub src: Addr,
    pub dst: Addr,
    /// Source port; for ICMP echo, the identifier.
    pub sport: u16,
    /// Destination port; for ICMP echo, the identifier.
    pub dport: u16,
    pub tcp_flags: u8,
    pub icmp: IcmpKind,
    pub ttl: u8,
    pub frag: Frag,
}

impl PacketMeta {
    pub fn is_v4(&self) -> bool {
        self.l3 == L3::V4
    }
    /// Bytes of transport header and payload.
    pub fn l4_len(&self) -> usize {
        usize::from(self.ip_end - self.l4_off)
    }
    /// Whether the transport protocol has ports the NAT and policy stages look at.
    pub fn has_ports(&self) -> bool {
        matches!(self.proto, proto::TCP | proto::UDP | proto::SCTP)
    }
    /// Any piece of a fragmented datagram.
    pub fn is_fragment(&self) -> bool {
        self.frag.kind != FragKind::Whole
    }
    /// A fragment without the transport header: bytes at `l4_off` are payload, not ports.
    pub fn is_later_fragment(&self) -> bool {
        self.frag.kind == FragKind::Later
    }
    pub fn is_tcp_syn_only(&self) -> bool {
        self.proto == proto::TCP && self.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN
    }
}

/// Parse options.
#[derive(Debug, Clone, Copy, Default)]
pub struct ParseOptions {
    /// Verify TCP, UDP, ICMP and SCTP checksums. Off by default: frames from a local stack on a
    /// veth carry partial checksums that only offload would complete.
    pub verify_l4_checksum: bool,
}

fn v4_err(e: WireError) -> DropReason {
    match e {
        WireError::Truncated => DropReason::Ipv4Truncated,
        WireError::Malformed => DropReason::Ipv4Malformed,
    }
}

fn v6_err(e: WireError) -> DropReason {
    match e {
        WireError::Truncated => DropReason::Ipv6Truncated,
        WireError::Malformed => DropReason::Ipv6Malformed,
    }
}

fn l4_err(e: WireError) -> DropReason {
    match e {
        WireError::Truncated => DropReason::L4Truncated,
        WireError::Malformed => DropReason::L4Malformed,
    }
}

/// The longest frame [`parse`] takes: [`PacketMeta`] offsets are `u16`.
pub const MAX_FRAME_LEN: usize = u16::MAX as usize;

/// Parses a frame. Never panics, whatever the bytes (or however many).
pub fn parse(frame: &[u8], opts: ParseOptions) -> Result<PacketMeta, DropReason> {
    if frame.len() > MAX_FRAME_LEN {
        return Err(DropReason::FrameTooLong);
    }
    let eth = EthernetFrame::new_checked(frame).map_err(|_| DropReason::FrameTooShort)?;
    let mut m = PacketMeta {
        vlan: eth.vlan(),
        src_mac: eth.src(),
        dst_mac: eth.dst(),
        l3_off: eth.header_len() as u16,
        ..PacketMeta::default()
    };
    let l3 = &frame[eth.header_len()..];
    match eth.ethertype() {
        ethertype::ARP => {
            ArpPacket::new_checked(l3).map_err(|_| DropReason::ArpMalformed)?;
            m.l3 = L3::Arp;
            Ok(m)
        }
        ethertype::IPV4 => {
            let ip = Ipv4Packet::new_checked(l3).map_err(v4_err)?;
            if !ip.verify_checksum() {
                return Err(DropReason::Ipv4BadChecksum);
            }
            // Options are forwarded as they are; only their framing is checked.
            if !ipv4_options_ok(ip.options()) {
                return Err(DropReason::IpOptions);
            }
            m.l3 = L3::V4;
            m.src = ip.src().into();
            m.dst = ip.dst().into();
            m.proto = ip.protocol();
            m.ttl = ip.ttl();
            m.l4_off = m.l3_off + ip.header_len() as u16;
            m.ip_end = offset16(usize::from(m.l3_off) + usize::from(ip.total_len()), DropReason::Ipv4Truncated)?;
            if ip.is_fragment() {
                // RFC 1858: a TCP fragment at offset 8 could rewrite the flags of the first.
                if m.proto == proto::TCP && ip.frag_offset() == 1 {
                    return Err(DropReason::IpFragment);
                }
                let kind = if ip.frag_offset() == 0 { FragKind::First } else { FragKind::Later };
                m.frag = Frag { id: u32::from(ip.ident()), kind, more: ip.more_fragments() };
            }
            parse_l4(frame, &mut m, opts)?;
            Ok(m)
        }
        ethertype::IPV6 => {
            let ip = Ipv6Packet::new_checked(l3).map_err(v6_err)?;
            m.l3 = L3::V6;
            m.src = ip.src().into();
            m.dst = ip.dst().into();
            m.ttl = ip.hop_limit();
            let fixed_end = usize::from(m.l3_off) + ipv6::HEADER_LEN;
            m.ip_end = offset16(fixed_end + usize::from(ip.payload_len()), DropReason::Ipv6Truncated)?;
            let (next, l4_off) = walk_ipv6_ext(frame, &mut m, ip.next_header(), fixed_end)?;
            m.proto = next;
            m.l4_off = offset16(l4_off, DropReason::Ipv6ExtensionHeader)?;
            parse_l4(frame, &mut m, opts)?;
            Ok(m)
        }
        _ => Err(DropReason::UnsupportedEthertype),
    }
}

/// An offset within the frame as the `u16` metadata keeps (frames are far shorter; a length
/// field claiming more is refused rather than wrapped).
fn offset16(off: usize, too_long: DropReason) -> Result<u16, DropReason> {
    u16::try_from(off).map_err(|_| too_long)
}

/// Whether IPv4 options are well framed (RFC 791): end-of-list and no-operation are one byte,
/// every other option has a length byte of at least 2 that stays within the options.
fn ipv4_options_ok(opts: &[u8]) -> bool {
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => return true,
            1 => i += 1,
            _ => {
                let Some(&len) = opts.get(i + 1) else { return false };
                let len = usize::from(len);
                if len < 2 || i + len > opts.len() {
                    return false;
                }
                i += len;
            }
        }
    }
    true
}

fn is_ext_header(next: u8) -> bool {
    matches!(next, ipv6::ext::HOP_BY_HOP | ipv6::ext::ROUTING | ipv6::ext::DEST_OPTS | ipv6::ext::FRAGMENT)
}

/// Walks the IPv6 extension headers from `off` (the end of the fixed header), at most
/// [`MAX_EXT_HEADERS`], each length checked against the packet; records a Fragment header in
/// `m.frag`. Returns the upper-layer protocol and its offset; for a later fragment, what
/// follows the Fragment header is payload and the walk stops there.
fn walk_ipv6_ext(frame: &[u8], m: &mut PacketMeta, mut next: u8, mut off: usize) -> Result<(u8, usize), DropReason> {
    let end = usize::from(m.ip_end);
    let mut seen_fragment = false;
    for n in 0..MAX_EXT_HEADERS {
        if !is_ext_header(next) {
            return Ok((next, off));
        }
        // Hop-by-Hop options may only come first (RFC 8200 4.1).
        if next == ipv6::ext::HOP_BY_HOP && n != 0 {
            return Err(DropReason::Ipv6ExtensionHeader);
        }
        let bytes = frame.get(off..end).unwrap_or(&[]);
        let h = ExtHeader::new_checked(bytes, next).map_err(|_| DropReason::Ipv6ExtensionHeader)?;
        match next {
            // Segments left: the packet is addressed to the next segment, which the switch
            // is not; it does not act as a source-routing hop.
            ipv6::ext::ROUTING if h.segments_left() != 0 => return Err(DropReason::Ipv6RoutingHeader),
            ipv6::ext::FRAGMENT => {
                if seen_fragment {
                    return Err(DropReason::Ipv6ExtensionHeader);
                }
                seen_fragment = true;
                if h.frag_offset() != 0 || h.more_fragments() {
                    let kind = if h.frag_offset() == 0 { FragKind::First } else { FragKind::Later };
                    m.frag = Frag { id: h.frag_ident(), kind, more: h.more_fragments() };
                }
                if m.frag.kind == FragKind::Later {
                    return Ok((h.next_header(), off + h.header_len()));
                }
            }
            _ => {}
        }
        off += h.header_len();
        next = h.next_header();
    }
    if is_ext_header(next) {
        return Err(DropReason::Ipv6ExtensionHeader);
    }
    Ok((next, off))
}

fn pseudo(frame: &[u8], m: &PacketMeta) -> u32 {
    let l3 = usize::from(m.l3_off);
    let len = m.l4_len() as u32;
    if m.is_v4() {
        pseudo_header_sum(&frame[l3 + 12..l3 + 16], &frame[l3 + 16..l3 + 20], m.proto, len)
    } else {
        pseudo_header_sum(&frame[l3 + 8..l3 + 24], &frame[l3 + 24..l3 + 40], m.proto, len)
    }
}

fn icmp_kind(v4: bool, msg_type: u8) -> Option<IcmpKind> {
    let k = if v4 {
        match msg_type {
            icmp::v4::ECHO_REQUEST => IcmpKind::EchoRequest,
            icmp::v4::ECHO_REPLY => IcmpKind::EchoReply,
            icmp::v4::DEST_UNREACHABLE | icmp::v4::TIME_EXCEEDED => IcmpKind::Error,
            _ => return None,
        }
    } else {
        match msg_type {
            icmp::v6::ECHO_REQUEST => IcmpKind::EchoRequest,
            icmp::v6::ECHO_REPLY => IcmpKind::EchoReply,
            icmp::v6::DEST_UNREACHABLE | icmp::v6::TIME_EXCEEDED | 2 => IcmpKind::Error,
            icmp::v6::NEIGHBOR_SOLICIT => IcmpKind::NeighborSolicit,
            icmp::v6::ROUTER_SOLICIT..=137 => IcmpKind::NeighborOther,
            _ => return None,
        }
    };
    Some(k)
}

/// The transport header of a first fragment: ports, flags and ICMP type from the bytes
/// present. Lengths and checksums cover the whole datagram, so they are not checked here.
/// A first fragment too short for its transport header (RFC 1858, RFC 7112), an SCTP fragment
/// (its CRC covers the whole packet, which a port rewrite would have to recompute) and a
/// fragmented ICMP error or neighbour discovery message are refused as `ip_fragment`.
fn parse_first_fragment_l4(l4: &[u8], m: &mut PacketMeta) -> Result<(), DropReason> {
    let short = |e: WireError| match e {
        WireError::Truncated => DropReason::IpFragment,
        WireError::Malformed => DropReason::L4Malformed,
    };
    match m.proto {
        proto::TCP => {
            let t = TcpSegment::new_checked(l4).map_err(short)?;
            m.sport = t.src_port();
            m.dport = t.dst_port();
            m.tcp_flags = t.flags();
        }
        proto::UDP => {
            let u = UdpDatagram::new_header_checked(l4).map_err(short)?;
            m.sport = u.src_port();
            m.dport = u.dst_port();
        }
        proto::ICMP | proto::ICMPV6 if (m.proto == proto::ICMP) == m.is_v4() => {
            let p = IcmpPacket::new_checked(l4).map_err(short)?;
            m.icmp = icmp_kind(m.is_v4(), p.msg_type()).ok_or(DropReason::IcmpUnsupported)?;
            if !matches!(m.icmp, IcmpKind::EchoRequest | IcmpKind::EchoReply) {
                return Err(DropReason::IpFragment);
            }
            m.sport = p.echo_ident();
            m.dport = p.echo_ident();
        }
        proto::SCTP => return Err(DropReason::IpFragment),
        _ => return Err(DropReason::UnsupportedProtocol),
    }
    Ok(())
}

fn parse_l4(frame: &[u8], m: &mut PacketMeta, opts: ParseOptions) -> Result<(), DropReason> {
    let l4 = frame.get(usize::from(m.l4_off)..usize::from(m.ip_end)).ok_or(DropReason::L4Truncated)?;
    match m.frag.kind {
        FragKind::Whole => {}
        FragKind::First => return parse_first_fragment_l4(l4, m),
        // No transport header: the fragment stage fills the ports from the first fragment.
        FragKind::Later => return Ok(()),
    }
    let verify = opts.verify_l4_checksum;
    match m.proto {
        proto::TCP => {
            let t = TcpSegment::new_checked(l4).map_err(l4_err)?;
            m.sport = t.src_port();
            m.dport = t.dst_port();
            m.tcp_flags = t.flags();
            if verify && !l4::transport_checksum_ok(pseudo(frame, m), l4) {
                return Err(DropReason::L4BadChecksum);
            }
        }
        proto::UDP => {
            let u = UdpDatagram::new_checked(l4).map_err(l4_err)?;
            if usize::from(u.len()) != l4.len() {
                return Err(DropReason::L4Malformed);
            }
            m.sport = u.src_port();
            m.dport = u.dst_port();
            // A zero UDP checksum means "none" over IPv4 and is invalid over IPv6 (RFC 8200).
            let zero = u.checksum() == 0;
            if verify && !(zero && m.is_v4()) && (zero || !l4::transport_checksum_ok(pseudo(frame, m), l4)) {
                return Err(DropReason::L4BadChecksum);
            }
        }
        proto::SCTP => {
            let s = SctpPacket::new_checked(l4).map_err(l4_err)?;
            m.sport = s.src_port();
            m.dport = s.dst_port();
            if verify && !s.verify_crc() {
                return Err(DropReason::L4BadChecksum);
            }
        }
        proto::ICMP if m.is_v4() => {
            let p = IcmpPacket::new_checked(l4).map_err(l4_err)?;
            m.icmp = icmp_kind(true, p.msg_type()).ok_or(DropReason::IcmpUnsupported)?;
            if matches!(m.icmp, IcmpKind::EchoRequest | IcmpKind::EchoReply) {
                m.sport = p.echo_ident();
                m.dport = p.echo_ident();
            }
            if verify && !l4::transport_checksum_ok(0, l4) {
                return Err(DropReason::L4BadChecksum);
            }
        }
        proto::ICMPV6 if !m.is_v4() => {
            let p = IcmpPacket::new_checked(l4).map_err(l4_err)?;
            m.icmp = icmp_kind(false, p.msg_type()).ok_or(DropReason::IcmpUnsupported)?;
            if matches!(m.icmp, IcmpKind::EchoRequest | IcmpKind::EchoReply) {
                m.sport = p.echo_ident();
                m.dport = p.echo_ident();
            }
            if verify && !l4::transport_checksum_ok(pseudo(frame, m), l4) {
                return Err(DropReason::L4BadChecksum);
            }
        }
        _ => return Err(DropReason::UnsupportedProtocol),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::build::{fragment, IpFrame, L4Repr};
    use crate::wire::checksum::checksum;
    use crate::wire::ipv6::ext;
    use proptest::prelude::*;

    const STRICT: ParseOptions = ParseOptions { verify_l4_checksum: true };

    fn udp(v4: bool, payload: usize) -> Vec<u8> {
        let (s, d) = if v4 { ("10.244.1.3", "10.244.1.2") } else { ("fd00:244:1::3", "fd00:244:1::2") };
        let body: Vec<u8> = (0..payload).map(|i| i as u8).collect();
        IpFrame::new(
            MacAddr::ZERO,
            MacAddr::ZERO,
            s.parse().unwrap(),
            d.parse().unwrap(),
            L4Repr::Udp { sport: 5353, dport: 40000 },
        )
        .with_payload(&body)
        .build()
    }

    /// `f` (IPv4 without options) with `opts` (a multiple of 4 bytes) after the fixed header.
    fn with_v4_options(f: &[u8], opts: &[u8]) -> Vec<u8> {
        let mut f = f.to_vec();
        f.splice(34..34, opts.iter().copied());
        f[14] = 0x45 + (opts.len() / 4) as u8;
        let total = (f.len() - 14) as u16;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f[24..26].copy_from_slice(&[0, 0]);
        let c = checksum(&f[14..14 + usize::from(f[14] & 0xf) * 4]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f
    }

    /// An extension header of `len` bytes (a multiple of 8) announcing `next`.
    fn ext_header(next: u8, len: usize) -> Vec<u8> {
        let mut h = vec![0u8; len];
        h[0] = next;
        h[1] = (len / 8 - 1) as u8;
        h
    }

    /// `f` (IPv6) with the chain `kinds` between the fixed header and the transport header;
    /// `edit` may change each header's bytes.
    fn with_v6_chain(f: &[u8], kinds: &[u8], edit: impl Fn(usize, &mut Vec<u8>)) -> Vec<u8> {
        let mut f = f.to_vec();
        let upper = f[20];
        let mut chain = Vec::new();
        for (i, _) in kinds.iter().enumerate() {
            let next = kinds.get(i + 1).copied().unwrap_or(upper);
            let mut h = ext_header(next, if i % 2 == 0 { 8 } else { 16 });
            edit(i, &mut h);
            chain.extend_from_slice(&h);
        }
        f[20] = kinds[0];
        f.splice(54..54, chain.iter().copied());
        let pl = (f.len() - 54) as u16;
        f[18..20].copy_from_slice(&pl.to_be_bytes());
        f
    }

    #[test]
    fn ipv4_options_are_walked_and_skipped() {
        let f = udp(true, 10);
        for opts in
            [&[1u8, 1, 1, 0][..], &[7, 7, 4, 0, 0, 0, 0, 0][..], &[0x94, 4, 0, 0][..], &[0, 0x55, 0x55, 0x55][..]]
        {
            let m = parse(&with_v4_options(&f, opts), STRICT).expect("options forwarded");
            assert_eq!(usize::from(m.l4_off), 34 + opts.len());
            assert_eq!((m.sport, m.dport, m.frag.kind), (5353, 40000, FragKind::Whole));
        }
        for bad in [&[7u8, 1, 0, 0][..], &[7, 9, 0, 0, 0, 0, 0, 0][..], &[1, 1, 1, 0x44][..]] {
            assert_eq!(parse(&with_v4_options(&f, bad), STRICT), Err(DropReason::IpOptions), "{bad:?}");
        }
    }

    #[test]
    fn ipv4_fragments_record_their_place() {
        let f = udp(true, 1992);
        let parts = fragment(&f, 0xbeef, 1480);
        assert_eq!(parts.len(), 2);
        let first = parse(&parts[0], STRICT).expect("first fragment: no checksum over a part");
        assert_eq!(first.frag, Frag { id: 0xbeef, kind: FragKind::First, more: true });
        assert_eq!((first.sport, first.dport, first.l4_off, first.proto), (5353, 40000, 34, proto::UDP));
        let later = parse(&parts[1], STRICT).expect("later fragment");
        assert_eq!(later.frag, Frag { id: 0xbeef, kind: FragKind::Later, more: false });
        assert!(later.is_later_fragment() && later.is_fragment());
        assert_eq!((later.sport, later.dport, later.l4_off), (0, 0, 34), "no ports in a later fragment");
        assert_eq!(usize::from(later.ip_end), parts[1].len());
        // Options and fragments together: the transport header is after the options.
        let m = parse(&with_v4_options(&parts[0], &[1, 1, 1, 1]), STRICT).unwrap();
        assert_eq!((m.l4_off, m.sport, m.frag.kind), (38, 5353, FragKind::First));
    }

    #[test]
    fn ipv4_fragments_refused() {
        // RFC 1858: TCP at offset 8.
        let tcp = IpFrame::new(
            MacAddr::ZERO,
            MacAddr::ZERO,
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            L4Repr::Tcp { sport: 1, dport: 2, seq: 0, ack: 0, flags: 2 },
        )
        .with_payload(&[0; 64])
        .build();
        let parts = fragment(&tcp, 9, 8);
        assert_eq!(parse(&parts[1], STRICT), Err(DropReason::IpFragment), "offset 1");
        // A first fragment too short for the TCP header.
        assert_eq!(parse(&parts[0], STRICT), Err(DropReason::IpFragment), "tiny first fragment");
        assert!(parse(&parts[2], STRICT).is_ok(), "offset 2 is an ordinary later fragment");
        // SCTP fragments (its CRC covers the whole packet) and fragmented ICMP errors.
        let mut sctp = udp(true, 64);
        sctp[23] = proto::SCTP;
        let sctp = fragment(&sctp, 1, 32);
        assert_eq!(parse(&sctp[0], STRICT), Err(DropReason::IpFragment));
        let mut err = udp(true, 64);
        err[23] = proto::ICMP;
        err[34] = icmp::v4::DEST_UNREACHABLE;
        assert_eq!(parse(&fragment(&err, 1, 32)[0], STRICT), Err(DropReason::IpFragment));
        let echo = IpFrame::new(
            MacAddr::ZERO,
            MacAddr::ZERO,
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            L4Repr::IcmpEcho { request: true, ident: 77, seq: 1 },
        )
        .with_payload(&[0; 64])
        .build();
        let m = parse(&fragment(&echo, 1, 32)[0], STRICT).expect("echo fragments pass");
        assert_eq!((m.icmp, m.sport), (IcmpKind::EchoRequest, 77));
    }

    #[test]
    fn each_ipv6_extension_header_is_walked() {
        let f = udp(false, 10);
        for kinds in [
            &[ext::HOP_BY_HOP][..],
            &[ext::DEST_OPTS][..],
            &[ext::ROUTING][..],
            &[ext::HOP_BY_HOP, ext::ROUTING, ext::DEST_OPTS][..],
            &[ext::HOP_BY_HOP, ext::DEST_OPTS, ext::ROUTING, ext::DEST_OPTS][..],
        ] {
            let g = with_v6_chain(&f, kinds, |_, _| {});
            let m = parse(&g, STRICT).unwrap_or_else(|e| panic!("{kinds:?}: {e}"));
            let chain: usize = (0..kinds.len()).map(|i| if i % 2 == 0 { 8 } else { 16 }).sum();
            assert_eq!(usize::from(m.l4_off), 54 + chain, "{kinds:?}");
            assert_eq!((m.proto, m.sport, m.dport, m.frag.kind), (proto::UDP, 5353, 40000, FragKind::Whole));
        }
        // An atomic fragment (offset 0, no more) is a whole packet after its Fragment header.
        let atomic = with_v6_chain(&f, &[ext::FRAGMENT], |_, h| h[1] = 0);
        let m = parse(&atomic, STRICT).unwrap();
        assert_eq!((m.l4_off, m.frag.kind, m.sport), (62, FragKind::Whole, 5353));
    }

    #[test]
    fn bad_ipv6_chains_are_dropped_with_reasons() {
        let f = udp(false, 10);
        let e = Err(DropReason::Ipv6ExtensionHeader);
        // Segments left: the switch is not the routing header's destination.
        let rt = with_v6_chain(&f, &[ext::ROUTING], |_, h| h[3] = 1);
        assert_eq!(parse(&rt, STRICT), Err(DropReason::Ipv6RoutingHeader));
        // Hop-by-Hop after another header.
        assert_eq!(parse(&with_v6_chain(&f, &[ext::DEST_OPTS, ext::HOP_BY_HOP], |_, _| {}), STRICT), e);
        // Longer than the walk's bound.
        let long = [ext::DEST_OPTS; MAX_EXT_HEADERS + 1];
        assert_eq!(parse(&with_v6_chain(&f, &long, |_, _| {}), STRICT), e);
        assert!(parse(&with_v6_chain(&f, &long[1..], |_, _| {}), STRICT).is_ok(), "the bound itself passes");
        // A length past the packet.
        assert_eq!(parse(&with_v6_chain(&f, &[ext::DEST_OPTS], |_, h| h[1] = 40), STRICT), e);
        // A chain that ends with the packet (truncated header).
        let mut cut = with_v6_chain(&f, &[ext::DEST_OPTS], |_, _| {});
        cut.truncate(54 + 4);
        cut[18..20].copy_from_slice(&4u16.to_be_bytes());
        assert_eq!(parse(&cut, STRICT), e);
        // Two Fragment headers.
        let two = with_v6_chain(&f, &[ext::FRAGMENT, ext::FRAGMENT], |i, h| {
            h[1] = 0;
            if i == 1 {
                h.truncate(8);
            }
        });
        assert_eq!(parse(&two, STRICT), e);
    }

    #[test]
    fn ipv6_fragments_record_their_place() {
        let f = udp(false, 1992);
        let parts = fragment(&f, 0xdead_beef, 1448);
        assert_eq!(parts.len(), 2);
        let first = parse(&parts[0], STRICT).expect("first");
        assert_eq!(first.frag, Frag { id: 0xdead_beef, kind: FragKind::First, more: true });
        assert_eq!((first.l4_off, first.proto, first.sport, first.dport), (62, proto::UDP, 5353, 40000));
        let later = parse(&parts[1], STRICT).expect("later");
        assert_eq!(later.frag, Frag { id: 0xdead_beef, kind: FragKind::Later, more: false });
        assert_eq!((later.l4_off, later.sport), (62, 0));
        // A Destination Options header before the Fragment header is walked too.
        let mut g = parts[1].clone();
        g[20] = ext::DEST_OPTS;
        g.splice(54..54, [ext::FRAGMENT, 0, 1, 4, 0, 0, 0, 0]);
        let pl = (g.len() - 54) as u16;
        g[18..20].copy_from_slice(&pl.to_be_bytes());
        let m = parse(&g, STRICT).unwrap();
        assert_eq!((m.l4_off, m.frag.kind), (70, FragKind::Later));
        // A first fragment whose transport header is not in it (RFC 7112).
        let tiny = fragment(&f, 1, 8);
        assert!(parse(&tiny[0], STRICT).is_ok(), "8 bytes hold the UDP header");
        let mut t = tiny[0].clone();
        t.truncate(62 + 4);
        t[18..20].copy_from_slice(&12u16.to_be_bytes());
        assert_eq!(parse(&t, STRICT), Err(DropReason::IpFragment));
    }

    #[test]
    fn packet_meta_stays_small() {
        // Copied between workers with every handed frame (`Received`).
        assert!(core::mem::size_of::<PacketMeta>() <= 96, "{}", core::mem::size_of::<PacketMeta>());
    }

    proptest! {
        /// Whatever the bytes after the Ethernet header, parsing returns without panicking.
        #[test]
        fn never_panics(v4 in any::<bool>(), edits in proptest::collection::vec((any::<u16>(), any::<u8>()), 1..12),
                        cut in any::<u16>()) {
            let base = if v4 {
                with_v4_options(&fragment(&udp(true, 200), 5, 64)[0], &[7, 7, 4, 0, 0, 0, 0, 0])
            } else {
                let first = &fragment(&udp(false, 200), 5, 64)[0];
                with_v6_chain(first, &[ext::HOP_BY_HOP, ext::DEST_OPTS], |_, _| {})
            };
            let mut f = base;
            for (at, b) in edits {
                let i = 14 + usize::from(at) % (f.len() - 14);
                f[i] = b;
            }
            f.truncate(14 + usize::from(cut) % (f.len() - 13));
            let _ = parse(&f, STRICT);
            let _ = parse(&f, ParseOptions::default());
        }
    }
}
