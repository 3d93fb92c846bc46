//! The conntrack stages: lookup early (established flows and replies take the fast path and
//! skip service selection and policy), commit late (after policy allowed a new flow).

use super::{Conntrack, CtEntry, Direction, FlowKey, NewFlow, TcpState};
use crate::parse::IcmpKind;
use crate::pipeline::{CtHit, EventStats, PacketCtx};
use crate::snapshot::Tables;
use crate::wire::proto;

/// First warming pass over a batch: hash each key and load its set's tags.
/// The lookup stage, in three passes: loads of independent sets and entries overlap in memory
/// (the CPU keeps many misses in flight), so the lookups then hit the cache. ICMP errors then
/// look for the flow they quote.
pub(crate) fn lookup_stage<B: crate::packet::PacketBuf>(l: &mut crate::pipeline::stage::Lanes<'_, B>) {
    for c in l.ctx.iter_mut().filter(|c| !c.is_done()) {
        warm(&l.st.ct, c);
    }
    for c in l.ctx.iter_mut().filter(|c| !c.is_done()) {
        warm_entry(&l.st.ct, c);
    }
    let mut later = false;
    for i in 0..l.ctx.len() {
        let c = &mut l.ctx[i];
        if c.is_done() {
            continue;
        }
        lookup(&mut l.st.ct, l.t, c, l.now, &mut l.st.stats.events);
        crate::fragment::stage::require_flow(c);
        later |= c.meta.is_later_fragment();
        let hit = c.ct;
        l.record(i, crate::pipeline::TraceRecord::Conntrack(hit));
    }
    l.later_fragments = later;
    for (p, c) in l.pkts.iter().zip(l.ctx.iter_mut()) {
        if !c.is_done() && c.meta.icmp == crate::parse::IcmpKind::Error {
            related(&l.st.ct, p.data(), c, l.now);
        }
    }
}

/// Prefetches the slots the new flows' replies will take at the commit.
pub(crate) fn prefetch_reply_stage<B>(l: &mut crate::pipeline::stage::Lanes<'_, B>) {
    for c in l.ctx.iter_mut().filter(|c| !c.is_done()) {
        warm_reply(&l.st.ct, c);
    }
    for c in l.ctx.iter_mut().filter(|c| !c.is_done()) {
        warm_reply_victim(&l.st.ct, c);
    }
}

pub(crate) fn warm(ct: &Conntrack, c: &mut PacketCtx) {
    c.ct_hash = ct.hash(&FlowKey { t: c.orig, proto: c.meta.proto });
    c.warm = ct.warm(c.ct_hash);
}

/// Second warming pass: load the entry the tags point at.
pub(crate) fn warm_entry(ct: &Conntrack, c: &mut PacketCtx) {
    c.warm ^= ct.warm_entry(c.ct_hash);
}

/// An ICMP error quoting a packet of a tracked flow is "related": it passes like the flow's
/// replies, with the quoted packet (and, after source NAT, the error's destination) translated
/// back to what the flow's sender knows.
pub(crate) fn related(ct: &Conntrack, frame: &[u8], c: &mut PacketCtx, now: u64) {
    let Some(q) = crate::nat::related::quoted(frame, &c.meta) else { return };
    // The quoted packet went out translated; the entry keyed by its reverse is the other
    // direction, whose translation gives back the original addresses.
    let key = FlowKey { t: q.tuple.reversed(), proto: q.proto };
    let Some(slot) = ct.lookup(&key, now) else { return };
    let e = ct.entry(slot);
    let original = e.xlate.reversed();
    if original == q.tuple {
        return;
    }
    // The error goes to whoever sent the quoted packet, by its original address; an error
    // from the quoted packet's destination itself comes from the address the sender used.
    if c.tuple.dst == q.tuple.src {
        c.tuple.dst = original.src;
    }
    if c.tuple.src == q.tuple.dst {
        c.tuple.src = original.dst;
    }
    c.ct = CtHit::Hit { slot, dir: e.dir };
    c.related = Some((q, original));
}

/// After a table change, a UDP flow whose backend left the service is forgotten, so its next
/// datagram picks a live backend (kube-proxy deletes such conntrack entries; TCP flows are
/// left to end on their own). Checked once per entry and table generation.
fn backend_gone(t: &Tables, e: &CtEntry, key: &FlowKey) -> bool {
    if key.proto != proto::UDP {
        return false;
    }
    // The frontend and the backend, seen from either direction of the flow.
    let (frontend, backend) = match e.dir {
        Direction::Original => ((key.t.dst, key.t.dport), (e.xlate.dst, e.xlate.dport)),
        Direction::Reply => ((e.xlate.src, e.xlate.sport), (key.t.src, key.t.sport)),
    };
    match t.services.lookup(frontend.0, frontend.1, key.proto) {
        Some(fe) => !t.services.port(fe.target).backends().iter().any(|b| (b.addr, b.port) == backend),
        None => true,
    }
}

/// Whether a hit on `e` must give way to a new connection that service selection and policy
/// judge on the current snapshot, as the kernel's conntrack does: a SYN on a tuple whose
/// connection closed, is closing or never got an answer opens a new connection (the old entry
/// would carry it to a backend that may have left the service, past a policy that may now deny
/// it); and an unanswered flow is judged again once after every table change (a policy that
/// now denies it takes effect on its next packet, not when it times out).
fn renewed(c: &PacketCtx, e: &CtEntry, generation: u32) -> bool {
    if e.dir != Direction::Original {
        return false;
    }
    let reopened = c.meta.is_tcp_syn_only()
        && matches!(e.state, TcpState::SynSent | TcpState::FinWait | TcpState::Closing | TcpState::Closed);
    reopened || (!e.replied && e.generation != generation)
}

pub(crate) fn lookup(ct: &mut Conntrack, t: &Tables, c: &mut PacketCtx, now: u64, ev: &mut EventStats) {
    if c.meta.icmp == IcmpKind::Error {
        return;
    }
    let key = FlowKey { t: c.orig, proto: c.meta.proto };
    let generation = t.generation as u32;
    match ct.lookup_hashed(c.ct_hash, &key, now) {
        Some(slot) if renewed(c, ct.entry(slot), generation) => {
            ct.remove_flow(slot);
            ev.ct_renewed += 1;
            miss(ct, c, ev);
        }
        Some(slot) if ct.entry(slot).service.is_some() && ct.entry(slot).generation != generation => {
            if backend_gone(t, ct.entry(slot), &key) {
                ct.remove_flow(slot);
                miss(ct, c, ev);
            } else {
                ct.set_generation(slot, generation);
                hit(ct, c, slot, now, ev);
            }
        }
        Some(slot) => hit(ct, c, slot, now, ev),
        None => miss(ct, c, ev),
    }
}

fn miss(ct: &Conntrack, c: &mut PacketCtx, ev: &mut EventStats) {
    ev.ct_misses += 1;
    c.warm ^= ct.warm_victim(c.ct_hash);
}

fn hit(ct: &mut Conntrack, c: &mut PacketCtx, slot: usize, now: u64, ev: &mut EventStats) {
    let e = ct.entry(slot);
    c.tuple = e.xlate;
    c.ct = CtHit::Hit { slot, dir: e.dir };
    ct.touch(slot, c.meta.tcp_flags, u64::from(c.rx_len), now);
    ev.ct_hits += 1;
}

/// For new flows, once their translation is known: hash the reply key and load its set, so
/// that the commit that follows the policy and route stages does not wait on memory.
pub(crate) fn warm_reply(ct: &Conntrack, c: &mut PacketCtx) {
    if !c.is_new_flow() || c.meta.icmp == IcmpKind::Error {
        return;
    }
    c.reply_hash = ct.hash(&FlowKey { t: c.tuple.reversed(), proto: c.meta.proto });
    c.warm ^= ct.warm(c.reply_hash);
}

/// Second step for the reply key: load the slot its entry will take.
pub(crate) fn warm_reply_victim(ct: &Conntrack, c: &mut PacketCtx) {
    if c.reply_hash != 0 {
        c.warm ^= ct.warm_victim(c.reply_hash);
    }
}

pub(crate) fn commit(ct: &mut Conntrack, t: &Tables, c: &mut PacketCtx, now: u64) {
    if !c.is_new_flow() || c.meta.icmp == IcmpKind::Error {
        return;
    }
    let f = NewFlow {
        generation: t.generation as u32,
        key: FlowKey { t: c.orig, proto: c.meta.proto },
        xlate: c.tuple,
        tcp_flags: c.meta.tcp_flags,
        len: u64::from(c.rx_len),
        service: c.service.map(|(s, _)| s),
        egress_rule: c.egress_rule,
        ingress_rule: c.ingress_rule,
    };
    if ct.commit_hashed(&f, c.ct_hash, c.reply_hash, now).is_none() {
        // No room without evicting an answered flow: the new flow waits (its sender retries)
        // rather than an established one being cut.
        c.drop(crate::drop::DropReason::ConntrackFull);
    }
}
