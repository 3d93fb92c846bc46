//! The fragment stages: `track` in stage 1 (receive) gives later fragments the first one's
//! ports; `retry` after the conntrack commit lets a later fragment follow a flow that its
//! first fragment created earlier in the same batch.

use super::table::{FragEntry, FragKey, FragmentTable};
use crate::conntrack::{FlowKey, Tuple};
use crate::drop::DropReason;
use crate::parse::FragKind;
use crate::pipeline::{CtHit, EventStats, PacketCtx};
use crate::snapshot::Tables;

fn key_of(c: &PacketCtx) -> FragKey {
    let m = &c.meta;
    // IPv6 identifies a datagram without the protocol, and a later fragment's next header
    // may be an extension header rather than the upper-layer protocol.
    let proto = if m.is_v4() { m.proto } else { 0 };
    FragKey { src: m.src, dst: m.dst, id: m.frag.id, proto }
}

/// Stage 1, after parsing and decapsulation, before the flow owner: a first fragment records
/// its ports and `owner` (the worker its flow belongs to); a later fragment takes them, or is
/// dropped as `fragment_unmatched`. Whole packets pass untouched.
pub(crate) fn track(
    frags: &mut FragmentTable,
    t: &Tables,
    c: &mut PacketCtx,
    owner: impl FnOnce(&PacketCtx) -> u16,
    now: u64,
    ev: &mut EventStats,
) {
    match c.meta.frag.kind {
        FragKind::Whole => {}
        FragKind::First => {
            let owner = owner(c);
            let m = &c.meta;
            let e = FragEntry { sport: m.sport, dport: m.dport, proto: m.proto, icmp: m.icmp, owner };
            frags.record(&key_of(c), e, now);
            c.frag_owner = Some(owner);
            ev.fragments_first += 1;
        }
        FragKind::Later => {
            let Some(e) = frags.lookup(&key_of(c), now) else {
                return c.drop(DropReason::FragmentUnmatched);
            };
            let m = &mut c.meta;
            m.sport = e.sport;
            m.dport = e.dport;
            m.proto = e.proto;
            m.icmp = e.icmp;
            c.orig = Tuple { src: m.src, dst: m.dst, sport: m.sport, dport: m.dport };
            c.tuple = c.orig;
            c.flow_hash = FlowKey { t: c.orig, proto: m.proto }.hash(t.hash_seed);
            c.frag_owner = Some(e.owner);
            ev.fragments_later += 1;
        }
    }
}

/// After the conntrack lookup: a later fragment must follow a tracked flow (only the first
/// fragment may be selected for a service, checked by policy and committed). Until its flow
/// turns up it is marked `fragment_no_flow`, which is final unless `retry` finds the flow.
pub(crate) fn require_flow(c: &mut PacketCtx) {
    if c.meta.is_later_fragment() && c.ct == CtHit::Miss {
        c.drop(DropReason::FragmentNoFlow);
    }
}

/// The retry stage: only when the conntrack lookup saw later fragments waiting for their flow.
pub(crate) fn retry_stage<B>(l: &mut crate::pipeline::stage::Lanes<'_, B>) {
    if !l.later_fragments {
        return;
    }
    for c in l.ctx.iter_mut() {
        retry(&mut l.st.ct, l.t, c, l.now, &mut l.st.stats.events);
    }
}

/// After the conntrack commit: a later fragment marked by `require_flow` whose first fragment
/// committed the flow earlier in this batch looks it up again and, found, is routed like any
/// packet of an established flow; otherwise it stays dropped.
pub(crate) fn retry(
    ct: &mut crate::conntrack::Conntrack,
    t: &Tables,
    c: &mut PacketCtx,
    now: u64,
    ev: &mut EventStats,
) {
    if c.done != Some(crate::pipeline::Verdict::Drop(DropReason::FragmentNoFlow)) {
        return;
    }
    c.done = None;
    crate::conntrack::stage::warm(ct, c);
    crate::conntrack::stage::lookup(ct, t, c, now, ev);
    if c.ct == CtHit::Miss {
        return c.drop(DropReason::FragmentNoFlow);
    }
    if c.dns && c.out != crate::pipeline::Out::Unrouted {
        // The DNS stage chose the resolver's port for it.
        return;
    }
    crate::route::stage::route(t, c);
}
