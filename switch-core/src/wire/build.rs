//! Owned packet representations that emit complete frames with valid checksums. For tests, the
//! demo and tools; they allocate and never run on the packet path.

use super::checksum::pseudo_header_sum;
use super::ethernet::{self, ethertype};
use super::l4::{self, transport_checksum};
use super::{arp, geneve, icmp, ipv4, ipv6, proto, vxlan, MacAddr};
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A transport header to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4Repr {
    Tcp { sport: u16, dport: u16, seq: u32, ack: u32, flags: u8 },
    Udp { sport: u16, dport: u16 },
    Sctp { sport: u16, dport: u16 },
    IcmpEcho { request: bool, ident: u16, seq: u16 },
}

/// An Ethernet + IP + transport frame to emit.
#[derive(Debug, Clone)]
pub struct IpFrame {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub vlan: Option<u16>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    pub l4: L4Repr,
    pub payload: Vec<u8>,
}

impl IpFrame {
    /// A frame with TTL 64, no VLAN and no payload.
    pub fn new(src_mac: MacAddr, dst_mac: MacAddr, src: IpAddr, dst: IpAddr, l4: L4Repr) -> IpFrame {
        IpFrame { src_mac, dst_mac, vlan: None, src, dst, ttl: 64, l4, payload: Vec::new() }
    }

    pub fn with_payload(mut self, p: &[u8]) -> IpFrame {
        self.payload = p.to_vec();
        self
    }

    fn l4_bytes(&self) -> (u8, Vec<u8>) {
        let v4 = self.src.is_ipv4();
        let (protocol, mut b) = match self.l4 {
            L4Repr::Tcp { sport, dport, seq, ack, flags } => {
                let mut b = vec![0u8; l4::TCP_MIN_LEN];
                l4::write_tcp(&mut b, sport, dport, seq, ack, flags, 64240);
                (proto::TCP, b)
            }
            L4Repr::Udp { sport, dport } => {
                let mut b = vec![0u8; l4::UDP_LEN];
                l4::write_udp(&mut b, sport, dport, self.payload.len());
                (proto::UDP, b)
            }
            L4Repr::Sctp { sport, dport } => {
                let mut b = vec![0u8; l4::SCTP_COMMON_LEN];
                b[0..2].copy_from_slice(&sport.to_be_bytes());
                b[2..4].copy_from_slice(&dport.to_be_bytes());
                (proto::SCTP, b)
            }
            L4Repr::IcmpEcho { request, ident, seq } => {
                let ty = match (v4, request) {
                    (true, true) => icmp::v4::ECHO_REQUEST,
                    (true, false) => icmp::v4::ECHO_REPLY,
                    (false, true) => icmp::v6::ECHO_REQUEST,
                    (false, false) => icmp::v6::ECHO_REPLY,
                };
                let mut b = vec![0u8; icmp::HEADER_LEN];
                let i = ident.to_be_bytes();
                let s = seq.to_be_bytes();
                icmp::write_header(&mut b, ty, 0, [i[0], i[1], s[0], s[1]]);
                (if v4 { proto::ICMP } else { proto::ICMPV6 }, b)
            }
        };
        b.extend_from_slice(&self.payload);
        let pseudo = self.pseudo(protocol, b.len());
        match self.l4 {
            L4Repr::Tcp { .. } => {
                let c = transport_checksum(pseudo, &b);
                b[l4::TCP_CHECKSUM..l4::TCP_CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
            }
            L4Repr::Udp { .. } => {
                let mut c = transport_checksum(pseudo, &b);
                if c == 0 {
                    c = 0xffff;
                }
                b[l4::UDP_CHECKSUM..l4::UDP_CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
            }
            L4Repr::Sctp { .. } => l4::fill_sctp_crc(&mut b),
            L4Repr::IcmpEcho { .. } => {
                let c = transport_checksum(if v4 { 0 } else { pseudo }, &b);
                icmp::set_checksum(&mut b, c);
            }
        }
        (protocol, b)
    }

    fn pseudo(&self, protocol: u8, len: usize) -> u32 {
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => pseudo_header_sum(&s.octets(), &d.octets(), protocol, len as u32),
            (IpAddr::V6(s), IpAddr::V6(d)) => pseudo_header_sum(&s.octets(), &d.octets(), protocol, len as u32),
            _ => 0,
        }
    }

    /// Emits the frame. Source and destination must be of one family.
    pub fn build(&self) -> Vec<u8> {
        let (protocol, l4b) = self.l4_bytes();
        let mut out = Vec::with_capacity(18 + 40 + l4b.len());
        let et = if self.src.is_ipv4() { ethertype::IPV4 } else { ethertype::IPV6 };
        out.extend_from_slice(&self.dst_mac.0);
        out.extend_from_slice(&self.src_mac.0);
        if let Some(v) = self.vlan {
            out.extend_from_slice(&ethertype::VLAN.to_be_bytes());
            out.extend_from_slice(&(v & 0x0fff).to_be_bytes());
        }
        out.extend_from_slice(&et.to_be_bytes());
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut h = [0u8; ipv4::HEADER_LEN];
                ipv4::write_header(&mut h, s, d, protocol, l4b.len(), self.ttl);
                out.extend_from_slice(&h);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut h = [0u8; ipv6::HEADER_LEN];
                ipv6::write_header(&mut h, s, d, protocol, l4b.len(), self.ttl, 0);
                out.extend_from_slice(&h);
            }
            _ => panic!("IpFrame::build: source and destination are of different families"),
        }
        out.extend_from_slice(&l4b);
        out
    }
}

/// An ARP request (broadcast) asking who has `target`.
/// A DNS query as a stub resolver sends it (RFC 1035 section 4.1): ID `id`, RD set, one
/// question for `name` (dotted, its letter case kept; labels are not checked) of type `qtype`,
/// class IN, and with `edns` (UDP payload size, OPT TTL) an OPT record (RFC 6891 section
/// 6.1.2).
pub fn dns_query(id: u16, name: &str, qtype: u16, edns: Option<(u16, u32)>) -> Vec<u8> {
    use super::dns::{rtype, CLASS_IN};
    let mut m = id.to_be_bytes().to_vec();
    m.extend([0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
    for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        m.push(label.len() as u8);
        m.extend(label.bytes());
    }
    m.push(0);
    m.extend(qtype.to_be_bytes());
    m.extend(CLASS_IN.to_be_bytes());
    if let Some((size, ttl)) = edns {
        m.push(0);
        m.extend(rtype::OPT.to_be_bytes());
        m.extend(size.to_be_bytes());
        m.extend(ttl.to_be_bytes());
        m.extend(0u16.to_be_bytes());
    }
    m
}

pub fn arp_request(src_mac: MacAddr, src_ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut out = vec![0u8; ethernet::HEADER_LEN + arp::PACKET_LEN];
    ethernet::write_header(&mut out, MacAddr::BROADCAST, src_mac, ethertype::ARP);
    arp::write(&mut out[ethernet::HEADER_LEN..], arp::OP_REQUEST, src_mac, src_ip, MacAddr::ZERO, target);
    out
}

/// The solicited-node multicast address of `a` (RFC 4291).
pub fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00 | u16::from(o[13]), u16::from_be_bytes([o[14], o[15]]))
}

/// A neighbour solicitation from `src` for `target`.
pub fn neighbor_solicit(src_mac: MacAddr, src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let dst = solicited_node(target);
    let o = dst.octets();
    let dst_mac = MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]]);
    let mut nd = [0u8; icmp::ND_LEN_WITH_LLA];
    icmp::write_neighbor_solicit(&mut nd, target, src_mac);
    let c = transport_checksum(pseudo_header_sum(&src.octets(), &dst.octets(), proto::ICMPV6, nd.len() as u32), &nd);
    icmp::set_checksum(&mut nd, c);
    let mut out = vec![0u8; ethernet::HEADER_LEN + ipv6::HEADER_LEN];
    ethernet::write_header(&mut out, dst_mac, src_mac, ethertype::IPV6);
    ipv6::write_header(&mut out[ethernet::HEADER_LEN..], src, dst, proto::ICMPV6, nd.len(), 255, 0);
    out.extend_from_slice(&nd);
    out
}

/// Which overlay header to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelKind {
    Vxlan,
    Geneve,
}

/// Splits an untagged Ethernet + IPv4 or IPv6 frame (as [`IpFrame::build`] makes, without
/// extension headers) into fragments carrying at most `max_data` bytes of the IP payload each
/// (rounded down to a multiple of 8), as a sending host would: IPv4 fragments with
/// identification `id` (its low 16 bits), IPv6 fragments with a Fragment header.
pub fn fragment(frame: &[u8], id: u32, max_data: usize) -> Vec<Vec<u8>> {
    let chunk = (max_data / 8).max(1) * 8;
    let v4 = u16::from_be_bytes([frame[12], frame[13]]) == ethertype::IPV4;
    let hdr_end = if v4 { 14 + usize::from(frame[14] & 0x0f) * 4 } else { 14 + ipv6::HEADER_LEN };
    let data = &frame[hdr_end..];
    let mut out = Vec::new();
    for (k, piece) in data.chunks(chunk).enumerate() {
        let off = k * chunk;
        let more = off + piece.len() < data.len();
        let mut f = frame[..hdr_end].to_vec();
        if v4 {
            let total = (hdr_end - 14 + piece.len()) as u16;
            f[16..18].copy_from_slice(&total.to_be_bytes());
            f[18..20].copy_from_slice(&(id as u16).to_be_bytes());
            let flags = (off / 8) as u16 | if more { 0x2000 } else { 0 };
            f[20..22].copy_from_slice(&flags.to_be_bytes());
            f[24..26].copy_from_slice(&[0, 0]);
            let c = super::checksum::checksum(&f[14..hdr_end]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
        } else {
            let next = f[20];
            f[20] = ipv6::ext::FRAGMENT;
            f[18..20].copy_from_slice(&((ipv6::EXT_MIN_LEN + piece.len()) as u16).to_be_bytes());
            let offflags = ((off / 8) as u16) << 3 | u16::from(more);
            f.extend_from_slice(&[next, 0]);
            f.extend_from_slice(&offflags.to_be_bytes());
            f.extend_from_slice(&id.to_be_bytes());
        }
        f.extend_from_slice(piece);
        out.push(f);
    }
    out
}

/// Wraps an inner Ethernet frame in Ethernet/IP/UDP/VXLAN or Geneve, as a remote node would.
#[allow(clippy::too_many_arguments)]
pub fn tunnel_wrap(
    inner: &[u8],
    kind: TunnelKind,
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    vni: u32,
) -> Vec<u8> {
    let (dport, hdr) = match kind {
        TunnelKind::Vxlan => {
            let mut h = vec![0u8; vxlan::HEADER_LEN];
            vxlan::write_header(&mut h, vni);
            (vxlan::UDP_PORT, h)
        }
        TunnelKind::Geneve => {
            let mut h = vec![0u8; geneve::HEADER_LEN];
            geneve::write_header(&mut h, vni);
            (geneve::UDP_PORT, h)
        }
    };
    let mut udp_payload = hdr;
    udp_payload.extend_from_slice(inner);
    let mut f = IpFrame::new(src_mac, dst_mac, src, dst, L4Repr::Udp { sport, dport }).with_payload(&udp_payload);
    f.ttl = 64;
    let mut out = f.build();
    if src.is_ipv4() {
        // Tunnels over IPv4 send a zero UDP checksum (RFC 7348 section 5).
        let at = ethernet::HEADER_LEN + ipv4::HEADER_LEN + l4::UDP_CHECKSUM;
        out[at] = 0;
        out[at + 1] = 0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse, IcmpKind, ParseOptions, L3};

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
    const STRICT: ParseOptions = ParseOptions { verify_l4_checksum: true };

    #[test]
    fn built_frames_parse_with_valid_checksums() {
        let v4 = |l4| IpFrame::new(A, B, "10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), l4);
        let v6 = |l4| IpFrame::new(A, B, "fd00::1".parse().unwrap(), "fd00::2".parse().unwrap(), l4);
        let l4s = [
            L4Repr::Tcp { sport: 1, dport: 80, seq: 1, ack: 0, flags: 2 },
            L4Repr::Udp { sport: 2, dport: 53 },
            L4Repr::Sctp { sport: 3, dport: 9 },
            L4Repr::IcmpEcho { request: true, ident: 7, seq: 1 },
        ];
        for l4 in l4s {
            for f in [v4(l4), v6(l4)] {
                let bytes = f.with_payload(b"hello").build();
                let m = parse(&bytes, STRICT).unwrap_or_else(|e| panic!("{l4:?}: {e}"));
                assert!(matches!(m.l3, L3::V4 | L3::V6));
                if let L4Repr::IcmpEcho { .. } = l4 {
                    assert_eq!(m.icmp, IcmpKind::EchoRequest);
                    assert_eq!(m.sport, 7);
                }
            }
        }
    }

    #[test]
    fn arp_and_nd_parse() {
        let a = arp_request(A, "10.0.0.5".parse().unwrap(), "10.0.0.1".parse().unwrap());
        assert_eq!(parse(&a, STRICT).unwrap().l3, L3::Arp);
        let n = neighbor_solicit(A, "fd00::5".parse().unwrap(), "fe80::1".parse().unwrap());
        assert_eq!(parse(&n, STRICT).unwrap().icmp, IcmpKind::NeighborSolicit);
    }

    #[test]
    fn tunnel_frames_parse() {
        let inner = IpFrame::new(
            A,
            B,
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            L4Repr::Udp { sport: 1, dport: 2 },
        )
        .build();
        for kind in [TunnelKind::Vxlan, TunnelKind::Geneve] {
            let t = tunnel_wrap(
                &inner,
                kind,
                A,
                B,
                "192.168.0.1".parse().unwrap(),
                "192.168.0.2".parse().unwrap(),
                50000,
                1,
            );
            let m = parse(&t, STRICT).unwrap();
            assert_eq!(m.proto, proto::UDP);
            let t6 = tunnel_wrap(&inner, kind, A, B, "fd01::1".parse().unwrap(), "fd01::2".parse().unwrap(), 50000, 1);
            assert_eq!(parse(&t6, STRICT).unwrap().l3, L3::V6);
        }
    }
}
