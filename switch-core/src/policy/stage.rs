//! The policy stages: egress of the source pod, then (after routing) ingress of the
//! destination pod. Only new flows reach them; conntrack carries the verdict for the rest.

use crate::drop::DropReason;
use crate::endpoint::Identity;
use crate::packet::PacketBuf;
use crate::pipeline::stage::Lanes;
use crate::pipeline::{Out, PacketCtx, PolicyVerdict, TraceRecord, Verdict};
use crate::snapshot::{PortKind, Tables};

#[inline]
fn port_of(c: &PacketCtx) -> Option<u16> {
    c.meta.has_ports().then_some(c.tuple.dport)
}

/// What a policy stage decided for packet `c`, for the trace.
fn verdict(c: &PacketCtx, egress: bool, selected: bool) -> PolicyVerdict {
    let (rule, deny) = if egress {
        (c.egress_rule, DropReason::PolicyDeniedEgress)
    } else {
        (c.ingress_rule, DropReason::PolicyDeniedIngress)
    };
    if let Some(r) = rule {
        PolicyVerdict::Allowed(r)
    } else if c.done == Some(crate::pipeline::Verdict::Drop(deny)) {
        PolicyVerdict::Denied
    } else if !selected {
        PolicyVerdict::NotSelected
    } else {
        PolicyVerdict::NotEvaluated
    }
}

fn record<B>(l: &mut Lanes<'_, B>, i: usize, egress: bool) {
    if !l.tracing() {
        return;
    }
    let c = l.ctx[i];
    let Some(ep) = (if egress { c.src_ep } else { c.dst_ep }) else { return };
    let e = l.t.endpoints.get(ep);
    let selected = if egress { e.egress.is_some() } else { e.ingress.is_some() };
    let verdict = verdict(&c, egress, selected);
    l.record(i, TraceRecord::Policy { egress, endpoint: ep, verdict });
}

/// The egress policy stage over a batch; in reject mode a denial is answered. The cluster's
/// DNS (sent to the resolver by the DNS stage) is not subject to it.
pub(crate) fn egress_stage<B: PacketBuf>(l: &mut Lanes<'_, B>) {
    for i in 0..l.ctx.len() {
        if l.ctx[i].is_done() || l.ctx[i].dns {
            continue;
        }
        egress(l.t, &mut l.ctx[i]);
        record(l, i, true);
    }
    if l.t.policy_reject {
        for (p, c) in l.pkts.iter_mut().zip(l.ctx.iter_mut()) {
            reject(l.t, p, c, &mut l.st.stats, DropReason::PolicyDeniedEgress);
        }
    }
}

/// The ingress policy stage over a batch; in reject mode a denial is answered and the answer
/// routed back to the sender.
pub(crate) fn ingress_stage<B: PacketBuf>(l: &mut Lanes<'_, B>) {
    for i in 0..l.ctx.len() {
        if l.ctx[i].is_done() {
            continue;
        }
        ingress(l.t, &mut l.ctx[i]);
        record(l, i, false);
    }
    if l.t.policy_reject {
        for (p, c) in l.pkts.iter_mut().zip(l.ctx.iter_mut()) {
            if c.done == Some(Verdict::Drop(DropReason::PolicyDeniedIngress)) {
                reject(l.t, p, c, &mut l.st.stats, DropReason::PolicyDeniedIngress);
                if !c.is_done() {
                    // The answer goes back towards the sender: route it again.
                    c.out = Out::Unrouted;
                    crate::route::stage::route(l.t, c);
                }
            }
        }
    }
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
