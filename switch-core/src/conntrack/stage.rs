//! The conntrack stages: lookup early (established flows and replies take the fast path and
//! skip service selection and policy), commit late (after policy allowed a new flow).

use super::{Conntrack, FlowKey, NewFlow};
use crate::parse::IcmpKind;
use crate::pipeline::{CtHit, EventStats, PacketCtx};

pub(crate) fn lookup(ct: &mut Conntrack, c: &mut PacketCtx, now: u64, ev: &mut EventStats) {
    if c.meta.icmp == IcmpKind::Error {
        return;
    }
    let key = FlowKey { t: c.orig, proto: c.meta.proto };
    match ct.lookup(&key, now) {
        Some(slot) => {
            let e = ct.entry(slot);
            c.tuple = e.xlate;
            c.ct = CtHit::Hit { slot, dir: e.dir };
            ct.touch(slot, c.meta.tcp_flags, u64::from(c.rx_len), now);
            ev.ct_hits += 1;
        }
        None => ev.ct_misses += 1,
    }
}

pub(crate) fn commit(ct: &mut Conntrack, c: &mut PacketCtx, now: u64) {
    if !c.is_new_flow() || c.meta.icmp == IcmpKind::Error {
        return;
    }
    let f = NewFlow {
        key: FlowKey { t: c.orig, proto: c.meta.proto },
        xlate: c.tuple,
        tcp_flags: c.meta.tcp_flags,
        len: u64::from(c.rx_len),
        service: c.service.map(|(s, _)| s),
        egress_rule: c.egress_rule,
        ingress_rule: c.ingress_rule,
    };
    ct.commit(&f, now);
}
