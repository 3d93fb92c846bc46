//! The one header walker: parses a frame once into [`PacketMeta`], which every later stage reads.

use crate::addr::Addr;
use crate::drop::DropReason;
use crate::wire::arp::ArpPacket;
use crate::wire::checksum::pseudo_header_sum;
use crate::wire::ethernet::{ethertype, EthernetFrame};
use crate::wire::icmp::{self, IcmpPacket};
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::ipv6::{self, Ipv6Packet};
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
            if ip.header_len() != crate::wire::ipv4::HEADER_LEN {
                return Err(DropReason::IpOptions);
            }
            if ip.is_fragment() {
                return Err(DropReason::IpFragment);
            }
            m.l3 = L3::V4;
            m.src = ip.src().into();
            m.dst = ip.dst().into();
            m.proto = ip.protocol();
            m.ttl = ip.ttl();
            m.l4_off = m.l3_off + ip.header_len() as u16;
            m.ip_end = m.l3_off + ip.total_len();
            parse_l4(frame, &mut m, opts)?;
            Ok(m)
        }
        ethertype::IPV6 => {
            let ip = Ipv6Packet::new_checked(l3).map_err(v6_err)?;
            m.l3 = L3::V6;
            m.src = ip.src().into();
            m.dst = ip.dst().into();
            m.proto = ip.next_header();
            m.ttl = ip.hop_limit();
            m.l4_off = m.l3_off + ipv6::HEADER_LEN as u16;
            m.ip_end = m.l4_off + ip.payload_len();
            match m.proto {
                ipv6::ext::FRAGMENT => return Err(DropReason::IpFragment),
                ipv6::ext::HOP_BY_HOP | ipv6::ext::ROUTING | ipv6::ext::DEST_OPTS => {
                    return Err(DropReason::Ipv6ExtensionHeader)
                }
                _ => {}
            }
            parse_l4(frame, &mut m, opts)?;
            Ok(m)
        }
        _ => Err(DropReason::UnsupportedEthertype),
    }
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

fn parse_l4(frame: &[u8], m: &mut PacketMeta, opts: ParseOptions) -> Result<(), DropReason> {
    let l4 = &frame[usize::from(m.l4_off)..usize::from(m.ip_end)];
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
            m.icmp = match p.msg_type() {
                icmp::v4::ECHO_REQUEST => IcmpKind::EchoRequest,
                icmp::v4::ECHO_REPLY => IcmpKind::EchoReply,
                icmp::v4::DEST_UNREACHABLE | icmp::v4::TIME_EXCEEDED => IcmpKind::Error,
                _ => return Err(DropReason::IcmpUnsupported),
            };
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
            m.icmp = match p.msg_type() {
                icmp::v6::ECHO_REQUEST => IcmpKind::EchoRequest,
                icmp::v6::ECHO_REPLY => IcmpKind::EchoReply,
                icmp::v6::DEST_UNREACHABLE | icmp::v6::TIME_EXCEEDED | 2 => IcmpKind::Error,
                icmp::v6::NEIGHBOR_SOLICIT => IcmpKind::NeighborSolicit,
                icmp::v6::ROUTER_SOLICIT..=137 => IcmpKind::NeighborOther,
                _ => return Err(DropReason::IcmpUnsupported),
            };
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
