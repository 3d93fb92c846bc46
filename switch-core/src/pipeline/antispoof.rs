//! Source checks: a pod may only send from its own MAC and IPs, and frames must be addressed
//! to the switch (the pods' gateway MAC, or the node's MAC on the uplink).

use super::ctx::PacketCtx;
use crate::drop::DropReason;
use crate::snapshot::{PortKind, Tables};

pub(crate) fn check(t: &Tables, c: &mut PacketCtx) {
    if c.from_tunnel.is_some() {
        // The sending node checked its pod; the tunnel itself was checked on decapsulation.
        return;
    }
    let m = &c.meta;
    match c.in_kind {
        PortKind::Pod => {
            let Some(id) = t.endpoints.on_port(c.in_port) else {
                return c.drop(DropReason::UnknownEndpoint);
            };
            let ep = t.endpoints.get(id);
            if m.src_mac != ep.mac {
                return c.drop(DropReason::SpoofedMac);
            }
            if !ep.ips.contains(&m.src) {
                return c.drop(DropReason::SpoofedIp);
            }
            if m.dst_mac != t.node.router_mac {
                return c.drop(DropReason::NotForRouter);
            }
            c.src_ep = Some(id);
        }
        PortKind::Host => {
            if m.dst_mac != t.node.router_mac {
                c.drop(DropReason::NotForRouter);
            }
        }
        PortKind::Uplink => {
            if m.dst_mac != t.node.uplink_mac {
                c.drop(DropReason::NotForRouter);
            }
        }
        PortKind::Resolver => {
            // Only the resolver's own MAC and addresses: it answers pods, nothing else.
            let Some(r) = t.dns.resolver.filter(|r| r.port == c.in_port) else {
                return c.drop(DropReason::UnknownEndpoint);
            };
            if m.src_mac != r.mac {
                return c.drop(DropReason::SpoofedMac);
            }
            if r.ipv4 != Some(m.src) && r.ipv6 != Some(m.src) {
                return c.drop(DropReason::SpoofedIp);
            }
            if m.dst_mac != t.node.router_mac {
                c.drop(DropReason::NotForRouter);
            }
        }
    }
}
