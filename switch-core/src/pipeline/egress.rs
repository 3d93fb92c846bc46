//! The last stage: write the NAT decided earlier, decrement the TTL, set the MACs of the next
//! hop, and encapsulate frames for remote nodes.

use super::ctx::{Out, PacketCtx, Verdict};
use super::stats::EventStats;
use crate::drop::DropReason;
use crate::nat::rewrite_tuple;
use crate::overlay::{encapsulate, tunnel_source_port};
use crate::packet::PacketBuf;
use crate::snapshot::Tables;
use crate::wire::ethernet::EthernetFrame;
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::ipv6::Ipv6Packet;

/// The egress stage over a batch.
pub(crate) fn stage<B: PacketBuf>(l: &mut super::stage::Lanes<'_, B>) {
    for (p, c) in l.pkts.iter_mut().zip(l.ctx.iter_mut()) {
        if !c.is_done() {
            transmit(l.t, p, c, &mut l.st.stats.events);
        }
    }
}

pub(crate) fn transmit<B: PacketBuf>(t: &Tables, pkt: &mut B, c: &mut PacketCtx, ev: &mut EventStats) {
    if let Err(r) = prepare(t, pkt, c, ev) {
        c.drop(r);
    }
}

fn prepare<B: PacketBuf>(t: &Tables, pkt: &mut B, c: &mut PacketCtx, ev: &mut EventStats) -> Result<(), DropReason> {
    let cur = crate::conntrack::Tuple { src: c.meta.src, dst: c.meta.dst, sport: c.meta.sport, dport: c.meta.dport };
    let l3 = usize::from(c.meta.l3_off);
    let end = usize::from(c.meta.ip_end);
    {
        let frame = pkt.data_mut();
        if let Some((q, original)) = c.related {
            crate::nat::related::rewrite(frame, &mut c.meta, &q, &original, (c.tuple.src, c.tuple.dst));
        } else if cur != c.tuple {
            rewrite_tuple(frame, &mut c.meta, &c.tuple).map_err(|_| DropReason::ConntrackInvalid)?;
        }
        if !c.generated {
            if c.meta.ttl <= 1 {
                return Err(DropReason::TtlExceeded);
            }
            if c.meta.is_v4() {
                Ipv4Packet::new_checked(&mut frame[l3..end]).map_err(|_| DropReason::Ipv4Malformed)?.decrement_ttl();
            } else {
                Ipv6Packet::new_checked(&mut frame[l3..end])
                    .map_err(|_| DropReason::Ipv6Malformed)?
                    .decrement_hop_limit();
            }
        }
    }
    match c.out {
        Out::Port { port, dst_mac, src_mac } => {
            let mut eth = EthernetFrame::new_checked(pkt.data_mut()).map_err(|_| DropReason::FrameTooShort)?;
            eth.set_dst(dst_mac);
            eth.set_src(src_mac);
            c.done = Some(Verdict::Tx(port));
        }
        Out::Tunnel(n) => {
            let remote = t.remote(n);
            {
                let mut eth = EthernetFrame::new_checked(pkt.data_mut()).map_err(|_| DropReason::FrameTooShort)?;
                eth.set_dst(remote.vtep_mac);
                eth.set_src(t.node.vtep_mac);
            }
            // Trailing Ethernet padding is not part of the inner packet.
            if !pkt.set_len(end) {
                return Err(DropReason::FrameTooShort);
            }
            let next_hop = t.next_hop(n)?;
            encapsulate(pkt, &t.node, remote, next_hop, tunnel_source_port(c.flow_hash))?;
            ev.encapsulated += 1;
            let port = t.uplink.ok_or(DropReason::NoRoute)?;
            c.done = Some(Verdict::Tx(port));
        }
        Out::Unrouted => return Err(DropReason::NoRoute),
    }
    Ok(())
}
