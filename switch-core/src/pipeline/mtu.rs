//! Path MTU for the overlay: a packet routed to a remote node that would not fit the uplink
//! MTU once encapsulated is answered, as a router answers it, instead of vanishing.
//!
//! Runs after routing and policy, before the conntrack commit, so the frame is still the
//! packet as the sender sent it: no NAT written, TTL not decremented. That is what the error
//! quotes, so the sender's stack finds its socket by the address it used (a NodePort on the
//! node's address, a ClusterIP), not by the backend the switch chose. A new flow that is
//! refused this way is not committed, as the kernel does not confirm the conntrack entry of a
//! packet it did not forward.
//!
//! - IPv4 with DF set: ICMP fragmentation needed (type 3 code 4) with the next-hop MTU, the
//!   uplink MTU minus the encapsulation's overhead (RFC 1191). IPv6: packet too big (type 2)
//!   with that MTU (RFC 8201, RFC 4443). The error quotes at most 548 bytes of the packet
//!   (576 in all, RFC 1812 section 4.3.2.3) over IPv4, 1232 over IPv6 (1280 in all).
//! - Source address: the node address the sender used when it sent to one (a NodePort
//!   client, through the uplink), otherwise the node's address of the sender's family. Pods
//!   route through a gateway that has no address of its own in the switch (ARP and ND are
//!   answered for any address with the router MAC), and the remote pod's address would be
//!   wrong for a router's error; a router answers from one of its own addresses, which is
//!   what the node's address is. One exception: the node's own packets (from the host port)
//!   are answered from the address they were sent to, as the kernel's tunnels answer bridged
//!   traffic (`iptunnel_pmtud_build_icmp`), since the host drops an ICMP error from its own
//!   address as a martian.
//! - IPv4 without DF (the switch does not fragment), ICMP errors (never an error about an
//!   error, RFC 1122 section 3.2.2), and a tunnel MTU below the family's minimum (68 for
//!   IPv4, 1280 for IPv6): dropped as before.
//!
//! Counting: the packet is a drop under `mtu_exceeded` on its input port in every case; an
//! answer sent is also the event `icmp_too_big_sent`.

use super::ctx::{Out, PacketCtx};
use super::stats::Stats;
use crate::conntrack::Tuple;
use crate::drop::DropReason;
use crate::overlay::outer_len;
use crate::packet::PacketBuf;
use crate::parse::{parse, IcmpKind, ParseOptions};
use crate::service::reject::{icmp_error, IcmpError};
use crate::snapshot::Tables;
use crate::wire::ipv4::Ipv4Packet;

/// No MTU below these is announced: IPv4's minimum (RFC 791) and IPv6's (RFC 8200), which a
/// sender could not go below anyway.
const MIN_MTU_V4: usize = 68;
const MIN_MTU_V6: usize = 1280;

/// The MTU an IP packet to a remote node must fit: the uplink MTU less the outer IP, UDP and
/// tunnel headers and the inner Ethernet header (which `outer_len` counts in the outer
/// Ethernet header's place: 50 bytes for VXLAN over IPv4).
fn tunnel_mtu(t: &Tables, out: Out) -> Option<usize> {
    let Out::Tunnel(n) = out else { return None };
    let v4_underlay = t.remote(n).underlay_ip.is_v4();
    Some(usize::from(t.node.uplink_mtu).saturating_sub(outer_len(v4_underlay, t.node.tunnel)))
}

/// Path MTU, then the conntrack commit of the allowed new flows (a new flow answered with an
/// ICMP error is not tracked).
pub(crate) fn stage<B: PacketBuf>(l: &mut super::stage::Lanes<'_, B>) {
    let (t, now) = (l.t, l.now);
    for (p, c) in l.pkts.iter_mut().zip(l.ctx.iter_mut()) {
        if !c.is_done() {
            check(t, p, c, &mut l.st.stats);
        }
        if !c.is_done() {
            crate::conntrack::stage::commit(&mut l.st.ct, t, c, now);
        }
    }
}

pub(crate) fn check<B: PacketBuf>(t: &Tables, pkt: &mut B, c: &mut PacketCtx, stats: &mut Stats) {
    if c.generated {
        return;
    }
    let Some(mtu) = tunnel_mtu(t, c.out) else { return };
    let m = c.meta;
    let l3 = usize::from(m.l3_off);
    if usize::from(m.ip_end) - l3 <= mtu {
        return;
    }
    let df = !m.is_v4()
        || pkt.data().get(l3..).and_then(|b| Ipv4Packet::new_checked(b).ok()).is_some_and(|ip| ip.dont_frag());
    // The node's own packets (host port) are answered from their destination: the host's
    // kernel takes an ICMP error from one of its own addresses for a martian and drops it.
    let from = if t.endpoints.is_node_ip(m.dst) || t.endpoints.is_node_ip(m.src) {
        Some(m.dst)
    } else {
        t.node.addr_like(m.src)
    };
    let least = if m.is_v4() { MIN_MTU_V4 } else { MIN_MTU_V6 };
    let (true, false, Some(from), true) = (df, m.icmp == IcmpKind::Error, from, mtu >= least) else {
        return c.drop(DropReason::MtuExceeded);
    };
    let mtu = u16::try_from(mtu).unwrap_or(u16::MAX);
    if let Err(r) = icmp_error(pkt, &m, from, IcmpError::TooBig { mtu }) {
        return c.drop(r);
    }
    let nm = match parse(pkt.data(), ParseOptions { verify_l4_checksum: t.verify_l4_checksum }) {
        Ok(nm) => nm,
        Err(r) => return c.drop(r),
    };
    stats.port(c.in_port).drops[DropReason::MtuExceeded.index()] += 1;
    stats.events.icmp_too_big_sent += 1;
    // The error goes back to the sender: route it again.
    c.meta = nm;
    c.orig = Tuple { src: nm.src, dst: nm.dst, sport: nm.sport, dport: nm.dport };
    c.tuple = c.orig;
    c.generated = true;
    c.src_ep = None;
    c.dst_ep = None;
    c.service = None;
    c.related = None;
    c.out = Out::Unrouted;
    crate::route::stage::route(t, c);
}
