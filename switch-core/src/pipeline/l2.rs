//! Answers for the link layer: ARP and IPv6 neighbour solicitations for the pods' gateway, the
//! host port, and on the uplink the node's own addresses and the LoadBalancer addresses this
//! node announces (`ServiceTable::announces`). Replies are written in place and sent back out
//! of the port they came in on.

use super::ctx::{PacketCtx, Verdict};
use super::stats::EventStats;
use crate::addr::Addr;
use crate::drop::DropReason;
use crate::packet::PacketBuf;
use crate::parse::{IcmpKind, L3};
use crate::snapshot::{PortKind, Tables};
use crate::wire::arp::{self, ArpPacket};
use crate::wire::checksum::pseudo_header_sum;
use crate::wire::ethernet::EthernetFrame;
use crate::wire::icmp::{self, IcmpPacket};
use crate::wire::l4::transport_checksum;
use crate::wire::{ipv6, proto};

/// The link-layer stage over a batch.
pub(crate) fn stage<B: PacketBuf>(l: &mut super::stage::Lanes<'_, B>) {
    for i in 0..l.ctx.len() {
        if l.ctx[i].is_done() {
            continue;
        }
        let ev = &mut l.st.stats.events;
        let before = ev.arp_replies + ev.nd_replies;
        answer(l.t, &mut l.pkts[i], &mut l.ctx[i], ev);
        if ev.arp_replies + ev.nd_replies != before {
            l.record(i, super::TraceRecord::LinkAnswered);
        }
    }
}

/// Handles ARP and neighbour solicitations; leaves every other packet alone.
pub(crate) fn answer<B: PacketBuf>(t: &Tables, pkt: &mut B, c: &mut PacketCtx, ev: &mut EventStats) {
    if c.meta.l3 == L3::Arp {
        learn(t, pkt, c, ev);
        match arp_reply(t, pkt, c) {
            Ok(()) => {
                ev.arp_replies += 1;
                c.done = Some(Verdict::Tx(c.in_port));
            }
            Err(r) => c.drop(r),
        }
    } else if c.meta.icmp == IcmpKind::NeighborOther {
        c.drop(DropReason::NdNotAnswered);
    } else if c.meta.icmp == IcmpKind::NeighborSolicit {
        match nd_reply(t, pkt, c) {
            Ok(()) => {
                ev.nd_replies += 1;
                c.done = Some(Verdict::Tx(c.in_port));
            }
            Err(r) => c.drop(r),
        }
    }
}

/// A remote node's ARP on the uplink (a request, a reply to ours, a gratuitous one) gives the
/// MAC its underlay address is at (`neighbor/`).
fn learn<B: PacketBuf>(t: &Tables, pkt: &B, c: &PacketCtx, ev: &mut EventStats) {
    if c.in_kind != PortKind::Uplink || c.from_tunnel.is_some() {
        return;
    }
    let l3 = usize::from(c.meta.l3_off);
    let Ok(a) = ArpPacket::new_checked(&pkt.data()[l3..]) else { return };
    let (mac, ip) = (a.sender_mac(), a.sender_ip());
    // The Ethernet source must be the MAC the packet claims (a proxy would differ: not learned).
    if mac != c.meta.src_mac {
        return;
    }
    if let Some(n) = t.node_by_underlay(Addr::from(ip)) {
        if t.neighbors.learn(usize::from(n.0), mac) {
            ev.neighbors_learned += 1;
        }
    }
}

fn arp_reply<B: PacketBuf>(t: &Tables, pkt: &mut B, c: &PacketCtx) -> Result<(), DropReason> {
    if c.from_tunnel.is_some() {
        return Err(DropReason::ArpNotAnswered);
    }
    let l3 = usize::from(c.meta.l3_off);
    let frame = pkt.data_mut();
    let (op, sender_mac, sender_ip, target) = {
        let a = ArpPacket::new_checked(&frame[l3..]).map_err(|_| DropReason::ArpMalformed)?;
        (a.operation(), a.sender_mac(), a.sender_ip(), a.target_ip())
    };
    if op != arp::OP_REQUEST || sender_ip.is_unspecified() || sender_ip == target {
        // Replies, probes and gratuitous announcements need no answer: MACs are configured.
        return Err(DropReason::ArpNotAnswered);
    }
    let mac = match c.in_kind {
        PortKind::Pod => {
            let ep = t.endpoints.on_port(c.in_port).ok_or(DropReason::UnknownEndpoint)?;
            let ep = t.endpoints.get(ep);
            if sender_mac != ep.mac || c.meta.src_mac != ep.mac {
                return Err(DropReason::SpoofedMac);
            }
            if !ep.ips.contains(&Addr::from(sender_ip)) {
                return Err(DropReason::SpoofedIp);
            }
            t.node.router_mac
        }
        PortKind::Host | PortKind::Resolver => t.node.router_mac,
        PortKind::Uplink => {
            if t.node.ipv4 != Some(target) && !t.services.announces(Addr::from(target)) {
                return Err(DropReason::ArpNotAnswered);
            }
            t.node.uplink_mac
        }
    };
    ArpPacket::new_checked(&mut frame[l3..]).map_err(|_| DropReason::ArpMalformed)?.make_reply(mac);
    let mut eth = EthernetFrame::new_checked(&mut frame[..]).map_err(|_| DropReason::FrameTooShort)?;
    eth.set_dst(sender_mac);
    eth.set_src(mac);
    let end = l3 + arp::PACKET_LEN;
    // Keep Ethernet's 60-byte minimum if the request was padded; otherwise trim to the reply.
    let keep = end.max(pkt.data().len().min(60));
    pkt.set_len(keep);
    Ok(())
}

fn nd_reply<B: PacketBuf>(t: &Tables, pkt: &mut B, c: &PacketCtx) -> Result<(), DropReason> {
    if c.from_tunnel.is_some() {
        return Err(DropReason::NdNotAnswered);
    }
    let l3 = usize::from(c.meta.l3_off);
    let l4 = usize::from(c.meta.l4_off);
    let (target, lla) = {
        let frame = pkt.data();
        let p = IcmpPacket::new_checked(&frame[l4..usize::from(c.meta.ip_end)]).map_err(|_| DropReason::L4Truncated)?;
        (p.nd_target(), p.nd_source_lla())
    };
    let (Some(target), Some(lla)) = (target, lla) else {
        // Duplicate address detection (no source address) and solicitations without a
        // link-layer option need no answer from us.
        return Err(DropReason::NdNotAnswered);
    };
    let src_ip = c.meta.src;
    if src_ip == Addr::UNSPECIFIED {
        return Err(DropReason::NdNotAnswered);
    }
    let mac = match c.in_kind {
        PortKind::Pod => {
            let ep = t.endpoints.on_port(c.in_port).ok_or(DropReason::UnknownEndpoint)?;
            let ep = t.endpoints.get(ep);
            if lla != ep.mac || c.meta.src_mac != ep.mac {
                return Err(DropReason::SpoofedMac);
            }
            if ep.ips.contains(&Addr::from(target)) {
                return Err(DropReason::NdNotAnswered);
            }
            t.node.router_mac
        }
        PortKind::Host | PortKind::Resolver => t.node.router_mac,
        PortKind::Uplink => {
            if t.node.ipv6 != Some(target) && !t.services.announces(Addr::from(target)) {
                return Err(DropReason::NdNotAnswered);
            }
            t.node.uplink_mac
        }
    };
    let src_mac = c.meta.src_mac;
    if !pkt.set_len(l4 + icmp::ND_LEN_WITH_LLA) {
        return Err(DropReason::L4Truncated);
    }
    let frame = pkt.data_mut();
    let dst6 = core::net::Ipv6Addr::from(src_ip.bits());
    ipv6::write_header(&mut frame[l3..], target, dst6, proto::ICMPV6, icmp::ND_LEN_WITH_LLA, 255, 0);
    let body = &mut frame[l4..l4 + icmp::ND_LEN_WITH_LLA];
    icmp::write_neighbor_advert(body, target, mac);
    let sum = pseudo_header_sum(&target.octets(), &dst6.octets(), proto::ICMPV6, icmp::ND_LEN_WITH_LLA as u32);
    let csum = transport_checksum(sum, body);
    icmp::set_checksum(body, csum);
    let mut eth = EthernetFrame::new_checked(&mut frame[..]).map_err(|_| DropReason::FrameTooShort)?;
    eth.set_dst(src_mac);
    eth.set_src(mac);
    Ok(())
}
