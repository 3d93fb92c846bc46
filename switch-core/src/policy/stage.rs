//! The policy stages: egress of the source pod, then (after routing) ingress of the
//! destination pod. Only new flows reach them; conntrack carries the verdict for the rest.

use crate::drop::DropReason;
use crate::endpoint::Identity;
use crate::pipeline::PacketCtx;
use crate::snapshot::{PortKind, Tables};

#[inline]
fn port_of(c: &PacketCtx) -> Option<u16> {
    c.meta.has_ports().then_some(c.tuple.dport)
}

pub(crate) fn egress(t: &Tables, c: &mut PacketCtx) {
    if !c.is_new_flow() {
        return;
    }
    let Some(src) = c.src_ep else { return };
    let Some(cid) = t.endpoints.get(src).egress else {
        return;
    };
    let peer = c.tuple.dst;
    let id = t.endpoints.identity_of(peer);
    match t.policy.get(cid).lookup(peer, id, c.meta.proto, port_of(c)) {
        Some(rule) => c.egress_rule = Some(rule),
        None => c.drop(DropReason::PolicyDeniedEgress),
    }
}

pub(crate) fn ingress(t: &Tables, c: &mut PacketCtx) {
    if !c.is_new_flow() {
        return;
    }
    let Some(dst) = c.dst_ep else { return };
    let Some(cid) = t.endpoints.get(dst).ingress else {
        return;
    };
    // The peer is the client as it sent the packet, not the address a translation put in
    // its place: with externalTrafficPolicy Cluster and hairpin, the source is masqueraded to
    // the node or the service, and judging that would admit anyone (Calico and Cilium decide
    // on the original source too).
    let peer = c.orig.src;
    let mut id = t.endpoints.identity_of(peer);
    if id == Identity::HOST {
        if c.in_kind == PortKind::Host && c.from_tunnel.is_none() {
            // The node itself (kubelet probes) may always reach its pods, as in Kubernetes.
            return;
        }
        // The node's address arriving from anywhere but the node's own port is not the node.
        id = Identity::WORLD;
    }
    match t.policy.get(cid).lookup(peer, id, c.meta.proto, port_of(c)) {
        Some(rule) => c.ingress_rule = Some(rule),
        None => c.drop(DropReason::PolicyDeniedIngress),
    }
}

/// Reject mode: a packet `reason` denied is answered instead of dropped (counted under
/// `reason` all the same). ICMP errors are never answered, they are dropped.
pub(crate) fn reject<B: crate::packet::PacketBuf>(
    t: &Tables,
    p: &mut B,
    c: &mut PacketCtx,
    stats: &mut crate::pipeline::Stats,
    reason: DropReason,
) {
    if c.done != Some(crate::pipeline::Verdict::Drop(reason)) || c.meta.icmp == crate::parse::IcmpKind::Error {
        return;
    }
    c.done = None;
    crate::service::stage::answer(p, c, t, stats, reason, crate::service::reject::Unreachable::AdminProhibited);
}
