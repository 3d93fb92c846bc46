//! Encapsulating a frame towards a remote node.

use crate::drop::DropReason;
use crate::hash::mix64;
use crate::packet::PacketBuf;
use crate::route::RemoteNode;
use crate::snapshot::NodeInfo;
use crate::wire::build::TunnelKind;
use crate::wire::checksum::pseudo_header_sum;
use crate::wire::ethernet::{self, ethertype};
use crate::wire::l4::{self, transport_checksum};
use crate::wire::{geneve, ipv4, ipv6, proto, vxlan};

/// Bytes added in front of the inner frame.
pub fn outer_len(v4_underlay: bool, kind: TunnelKind) -> usize {
    let ip = if v4_underlay { ipv4::HEADER_LEN } else { ipv6::HEADER_LEN };
    let tun = match kind {
        TunnelKind::Vxlan => vxlan::HEADER_LEN,
        TunnelKind::Geneve => geneve::HEADER_LEN,
    };
    ethernet::HEADER_LEN + ip + l4::UDP_LEN + tun
}

/// The outer UDP source port: a hash of the inner flow in 49152-65535, so that the underlay's
/// ECMP and RSS spread flows (RFC 7348 section 5).
#[inline]
pub fn tunnel_source_port(flow_hash: u64) -> u16 {
    49152 | (mix64(flow_hash) as u16 & 0x3fff)
}

/// Prepends outer Ethernet, IP, UDP and tunnel headers. The inner frame's MACs must already be
/// set. Fails with `MtuExceeded` if the result would not fit the uplink MTU and `NoHeadroom`
/// if the buffer has no room in front.
pub fn encapsulate<B: PacketBuf>(
    pkt: &mut B,
    node: &NodeInfo,
    remote: &RemoteNode,
    next_hop: crate::wire::MacAddr,
    sport: u16,
) -> Result<(), DropReason> {
    let v4 = remote.underlay_ip.is_v4();
    let src = node.addr_like(remote.underlay_ip).ok_or(DropReason::NoRoute)?;
    let inner_len = pkt.data().len();
    let outer = outer_len(v4, node.tunnel);
    // The MTU counts from the outer IP header on.
    if inner_len + outer - ethernet::HEADER_LEN > usize::from(node.uplink_mtu) {
        return Err(DropReason::MtuExceeded);
    }
    if !pkt.push_head(outer) {
        return Err(DropReason::NoHeadroom);
    }
    let b = pkt.data_mut();
    let ip_len = if v4 { ipv4::HEADER_LEN } else { ipv6::HEADER_LEN };
    let udp_at = ethernet::HEADER_LEN + ip_len;
    let udp_len = b.len() - udp_at;
    ethernet::write_header(b, next_hop, node.uplink_mac, if v4 { ethertype::IPV4 } else { ethertype::IPV6 });
    let (dport, tun_at) = (
        match node.tunnel {
            TunnelKind::Vxlan => vxlan::UDP_PORT,
            TunnelKind::Geneve => geneve::UDP_PORT,
        },
        udp_at + l4::UDP_LEN,
    );
    l4::write_udp(&mut b[udp_at..], sport, dport, udp_len - l4::UDP_LEN);
    match node.tunnel {
        TunnelKind::Vxlan => vxlan::write_header(&mut b[tun_at..], node.vni),
        TunnelKind::Geneve => geneve::write_header(&mut b[tun_at..], node.vni),
    }
    match (src.v4(), remote.underlay_ip.v4()) {
        (Some(s), Some(d)) => {
            // Zero UDP checksum over IPv4 (RFC 7348 section 5, RFC 8926 section 3.3).
            ipv4::write_header(&mut b[ethernet::HEADER_LEN..], s, d, proto::UDP, udp_len, 64);
        }
        _ => {
            let (s, d) = (core::net::Ipv6Addr::from(src.bits()), core::net::Ipv6Addr::from(remote.underlay_ip.bits()));
            ipv6::write_header(&mut b[ethernet::HEADER_LEN..], s, d, proto::UDP, udp_len, 64, u32::from(sport));
            // IPv6 requires a UDP checksum (RFC 8200); computed over the whole datagram.
            let c = transport_checksum(
                pseudo_header_sum(&s.octets(), &d.octets(), proto::UDP, udp_len as u32),
                &b[udp_at..],
            );
            let c = if c == 0 { 0xffff } else { c };
            b[udp_at + l4::UDP_CHECKSUM..udp_at + l4::UDP_CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
        }
    }
    Ok(())
}
