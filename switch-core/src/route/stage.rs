//! The route stage: local pod, this node's host, a remote node's tunnel, or the uplink.

use super::RouteTarget;
use crate::conntrack::Direction;
use crate::drop::DropReason;
use crate::pipeline::{CtHit, Out, PacketCtx, RouteRecord, TraceRecord};
use crate::snapshot::Tables;

fn to_host(t: &Tables, c: &mut PacketCtx) {
    match t.host {
        Some(port) => c.out = Out::Port { port, dst_mac: t.node.host_mac, src_mac: t.node.router_mac },
        None => c.drop(DropReason::NoHostPort),
    }
}

/// The route stage over a batch. A packet whose port an earlier stage chose (the DNS stage's
/// resolver) keeps it.
pub(crate) fn stage<B>(l: &mut crate::pipeline::stage::Lanes<'_, B>) {
    for i in 0..l.ctx.len() {
        let c = &mut l.ctx[i];
        if c.is_done() {
            continue;
        }
        if c.dns && c.out != Out::Unrouted {
            let (dst, out) = (c.tuple.dst, c.out);
            l.record(i, TraceRecord::Route { dst, record: RouteRecord::Chosen(out) });
            continue;
        }
        route(l.t, c);
        if l.tracing() {
            let c = l.ctx[i];
            let dst = c.tuple.dst;
            let record = if let Some(ep) = c.dst_ep {
                RouteRecord::LocalPod(ep)
            } else if l.t.endpoints.is_node_ip(dst) {
                RouteRecord::Node
            } else {
                match l.t.routes.lookup(dst) {
                    Some((len, target)) => RouteRecord::Prefix { len, target },
                    None => RouteRecord::NoRoute,
                }
            };
            l.record(i, TraceRecord::Route { dst, record });
        }
    }
}

pub(crate) fn route(t: &Tables, c: &mut PacketCtx) {
    let dst = c.tuple.dst;
    if let Some(id) = t.endpoints.by_ip(dst) {
        let ep = t.endpoints.get(id);
        if let Some(port) = ep.port {
            c.dst_ep = Some(id);
            c.out = Out::Port { port, dst_mac: ep.mac, src_mac: t.node.router_mac };
            return;
        }
    }
    if t.endpoints.is_node_ip(dst) {
        return to_host(t, c);
    }
    // A node is no transit for other nodes' tunnel traffic, except for the replies of flows it
    // translated itself: a NodePort or load-balancer connection it source-NATed to a backend
    // on another node comes back through the tunnel and leaves by the uplink.
    let reply = matches!(c.ct, CtHit::Hit { dir: Direction::Reply, .. });
    let from_tunnel = c.from_tunnel.is_some() && !reply;
    match t.routes.lookup(dst).map(|(_, r)| r) {
        Some(RouteTarget::Local) => c.drop(DropReason::NoLocalEndpoint),
        Some(RouteTarget::Tunnel(_) | RouteTarget::Uplink(_)) if from_tunnel => c.drop(DropReason::NoLocalEndpoint),
        Some(RouteTarget::Tunnel(n)) => c.out = Out::Tunnel(n),
        Some(RouteTarget::Uplink(mac)) => match t.uplink {
            Some(port) => c.out = Out::Port { port, dst_mac: mac, src_mac: t.node.uplink_mac },
            None => c.drop(DropReason::NoRoute),
        },
        Some(RouteTarget::Host) => to_host(t, c),
        Some(RouteTarget::Blackhole) => c.drop(DropReason::RouteBlackhole),
        None => c.drop(DropReason::NoRoute),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Verdict;
    use crate::route::NodeId;
    use crate::testbed::{self as tb, Scale};

    /// What the route stage does with a decapsulated packet for an outside address.
    fn from_tunnel_to_outside(ct: CtHit) -> PacketCtx {
        let t = tb::tables(Scale::default());
        let mut c = PacketCtx::default();
        c.tuple.dst = "203.0.113.7".parse::<std::net::IpAddr>().expect("address").into();
        c.from_tunnel = Some(NodeId(0));
        c.ct = ct;
        route(&t, &mut c);
        c
    }

    #[test]
    fn tunnel_traffic_leaves_by_the_uplink_only_as_the_reply_of_a_flow_of_this_node() {
        // A new flow, or the original direction of one: the node is no transit.
        for ct in [CtHit::Miss, CtHit::Hit { slot: 0, dir: Direction::Original }] {
            assert_eq!(from_tunnel_to_outside(ct).done, Some(Verdict::Drop(DropReason::NoLocalEndpoint)), "{ct:?}");
        }
        // The reply of a flow this node translated (a NodePort client's connection to a
        // backend on another node) goes back to the client.
        let c = from_tunnel_to_outside(CtHit::Hit { slot: 0, dir: Direction::Reply });
        assert_eq!(c.done, None);
        assert!(
            matches!(c.out, Out::Port { port, dst_mac, .. } if port == tb::UPLINK && dst_mac == tb::GATEWAY_MAC),
            "{:?}",
            c.out
        );
    }
}
