//! The DNS stage: a query from a pod (or the node's host port) to a cluster DNS address on
//! UDP port 53 is answered by rewriting its frame in place and sent back out of the port it
//! came in on; what is not answered here goes to the resolver port.
//!
//! The fast path takes IPv4 without options and IPv6 without extension headers, whole
//! datagrams only; anything else is the resolver's.

use super::answer::{answer, Pass};
use super::{DnsStats, TraceRecord, DNS_PORT};
use crate::drop::DropReason;
use crate::packet::PacketBuf;
use crate::pipeline::{Out, PacketCtx, Verdict};
use crate::snapshot::{PortKind, Tables};
use crate::wire::checksum::pseudo_header_sum;
use crate::wire::l4::{transport_checksum, UDP_CHECKSUM, UDP_LEN};
use crate::wire::{ipv4, ipv6, proto};
use core::net::{Ipv4Addr, Ipv6Addr};

/// The DNS stage over a batch.
pub(crate) fn stage<B: PacketBuf>(l: &mut crate::pipeline::stage::Lanes<'_, B>) {
    if l.t.dns.addresses.is_empty() {
        return;
    }
    for i in 0..l.ctx.len() {
        if l.ctx[i].is_done() {
            continue;
        }
        if let Some(r) = run(l.t, &mut l.pkts[i], &mut l.ctx[i], &mut l.st.stats.dns) {
            l.record(i, crate::pipeline::TraceRecord::Dns(r));
        }
    }
}

/// Answers or redirects `c` when it is DNS for the cluster DNS service; returns what it did.
pub(crate) fn run<B: PacketBuf>(t: &Tables, p: &mut B, c: &mut PacketCtx, s: &mut DnsStats) -> Option<TraceRecord> {
    let d = &*t.dns;
    if d.addresses.is_empty()
        || c.orig.dport != DNS_PORT
        || !matches!(c.meta.proto, proto::UDP | proto::TCP)
        || c.from_tunnel.is_some()
        || !matches!(c.in_kind, PortKind::Pod | PortKind::Host)
        || !d.serves(c.orig.dst)
    {
        return None;
    }
    let reason = if c.meta.proto == proto::TCP {
        Pass::Resolver
    } else {
        match udp_answer(t, p, c, s) {
            Ok(r) => return Some(r),
            Err(Pass::NotAQuery) => {
                c.drop(DropReason::DnsNotAQuery);
                return Some(TraceRecord::ToResolver { reason: Pass::NotAQuery });
            }
            Err(r) => r,
        }
    };
    let Some(r) = d.resolver else { return Some(TraceRecord::ToService) };
    let Some(addr) = r.addr_like(c.orig.dst) else { return Some(TraceRecord::ToService) };
    // Translated to the resolver's address (conntrack keeps the translation for the reply) and
    // sent to its port: no Service backend is chosen, and the egress policy of the pod does
    // not apply to the cluster's DNS (as with a node-local DNS cache).
    c.tuple.dst = addr;
    c.out = Out::Port { port: r.port, dst_mac: r.mac, src_mac: t.node.router_mac };
    c.dns = true;
    s.to_resolver += 1;
    Some(TraceRecord::ToResolver { reason })
}

fn udp_answer<B: PacketBuf>(t: &Tables, p: &mut B, c: &mut PacketCtx, s: &mut DnsStats) -> Result<TraceRecord, Pass> {
    let m = c.meta;
    let l3 = usize::from(m.l3_off);
    let l4 = usize::from(m.l4_off);
    let plain = if m.is_v4() { l4 - l3 == ipv4::HEADER_LEN } else { l4 - l3 == ipv6::HEADER_LEN };
    if !plain || m.is_fragment() || m.l4_len() < UDP_LEN {
        return Err(Pass::Resolver);
    }
    let dns_at = l4 + UDP_LEN;
    let qlen = usize::from(m.ip_end) - dns_at;
    let frame_len = p.data().len();
    // Room: the buffer's, and the pods' MTU.
    let ip_room = usize::from(t.dns.mtu.max(576)).saturating_sub(l4 - l3 + UDP_LEN);
    let room = (frame_len + p.tailroom() - dns_at).min(ip_room).min(usize::from(u16::MAX));
    if room < qlen || !p.set_len(dns_at + room) {
        return Err(Pass::TooLarge);
    }
    let chase = t.dns.resolver.is_some();
    let res = answer(&t.dns.names, &mut p.data_mut()[dns_at..dns_at + room], qlen, None, chase);
    let a = match res {
        Ok(a) => a,
        Err(e) => {
            p.set_len(frame_len);
            return Err(e);
        }
    };
    let udp_len = UDP_LEN + a.len;
    p.set_len(dns_at + a.len);
    let frame = p.data_mut();
    // Ethernet: back to the sender, from the gateway.
    frame.copy_within(6..12, 0);
    frame[6..12].copy_from_slice(&t.node.router_mac.0);
    // IP: from the address the query went to, back to its source.
    let ip = &mut frame[l3..l4];
    let pseudo = if m.is_v4() {
        let (src, dst) = (Ipv4Addr::from(m.dst.low32()), Ipv4Addr::from(m.src.low32()));
        ipv4::write_header(ip, src, dst, proto::UDP, udp_len, 64);
        pseudo_header_sum(&src.octets(), &dst.octets(), proto::UDP, udp_len as u32)
    } else {
        let (src, dst) = (Ipv6Addr::from(m.dst.bits()), Ipv6Addr::from(m.src.bits()));
        ipv6::write_header(ip, src, dst, proto::UDP, udp_len, 64, 0);
        pseudo_header_sum(&src.octets(), &dst.octets(), proto::UDP, udp_len as u32)
    };
    let udp = &mut frame[l4..l4 + udp_len];
    udp[0..2].copy_from_slice(&m.dport.to_be_bytes());
    udp[2..4].copy_from_slice(&m.sport.to_be_bytes());
    udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    udp[UDP_CHECKSUM..UDP_CHECKSUM + 2].fill(0);
    let mut sum = transport_checksum(pseudo, udp);
    if sum == 0 {
        sum = 0xffff; // RFC 768: a computed zero is sent as all ones.
    }
    udp[UDP_CHECKSUM..UDP_CHECKSUM + 2].copy_from_slice(&sum.to_be_bytes());
    c.done = Some(Verdict::Tx(c.in_port));
    c.generated = true;
    c.dns = true;
    s.answered_by_qtype[super::qtype_index(a.qtype)] += 1;
    s.answered_by_outcome[a.outcome.index()] += 1;
    s.truncated += u64::from(a.truncated);
    Ok(TraceRecord::Answered { qtype: a.qtype, outcome: a.outcome, answers: a.answers, truncated: a.truncated })
}
