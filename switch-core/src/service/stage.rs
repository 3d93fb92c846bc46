//! The service stage: for a new flow to a frontend, pick a backend (session affinity, then
//! Maglev), decide source NAT (external traffic with the Cluster policy, and hairpin), or
//! refuse when there is no backend.

use super::affinity::{AffinityEntry, AffinityKey, AffinityTable};
use super::reject;
use super::FrontendKind;
use crate::conntrack::{Conntrack, Tuple};
use crate::drop::DropReason;
use crate::hash::mix64;
use crate::packet::PacketBuf;
use crate::parse::{parse, ParseOptions};
use crate::pipeline::ServiceRecord;
use crate::pipeline::{EventStats, PacketCtx, Stats};
use crate::snapshot::Tables;
use crate::wire::proto;

const SEC: u64 = 1_000_000_000;
/// Source ports for SNAT: Linux's default ephemeral range.
const SNAT_LO: u32 = 32768;
const SNAT_HI: u32 = 60999;
const SNAT_TRIES: u32 = 64;

/// Which worker of how many: SNAT ports are partitioned so workers never collide.
#[derive(Debug, Clone, Copy)]
pub struct Shard {
    pub index: u16,
    pub count: u16,
}

/// SNAT ports per worker of `count`: worker i owns ports `SNAT_LO + k * count + i` for `k`
/// below this.
fn snat_slots(count: u32) -> u32 {
    (SNAT_HI - SNAT_LO + 1) / count
}

/// The worker whose share of SNAT ports `port` belongs to (`None` outside the SNAT range, or
/// in its remainder that no worker allocates from).
pub fn snat_port_owner(port: u16, count: u16) -> Option<u16> {
    let count = u32::from(count.max(1));
    let slots = snat_slots(count);
    let p = u32::from(port);
    if p < SNAT_LO || p >= SNAT_LO + slots * count {
        return None;
    }
    Some(((p - SNAT_LO) % count) as u16)
}

fn alloc_snat_port(ct: &Conntrack, proto: u8, mut x: Tuple, hash: u64, shard: Shard, now: u64) -> Option<u16> {
    let count = u32::from(shard.count.max(1));
    let slots = snat_slots(count);
    let start = (mix64(hash) % u64::from(slots)) as u32;
    for k in 0..SNAT_TRIES {
        let p = SNAT_LO + ((start + k) % slots) * count + u32::from(shard.index);
        x.sport = p as u16;
        if !ct.reply_taken(&x, proto, now) {
            return Some(x.sport);
        }
    }
    None
}

/// A pass before `select` over the batch: find the frontend and read its Maglev slot, so that
/// the slots of many packets load from memory at once.
/// The service stage over a batch: frontends warmed for the whole batch, then each new flow's
/// backend chosen (or the flow refused). Packets the DNS stage sent to the resolver are not
/// Service traffic.
pub(crate) fn stage<B: PacketBuf>(l: &mut crate::pipeline::stage::Lanes<'_, B>) {
    for c in l.ctx.iter_mut().filter(|c| !c.is_done() && !c.dns) {
        warm(l.t, c);
    }
    for i in 0..l.ctx.len() {
        let c = &mut l.ctx[i];
        if c.is_done() || c.dns {
            continue;
        }
        let new = c.is_new_flow();
        let st = &mut *l.st;
        select(l.t, &st.ct, &mut st.affinity, st.shard, &mut l.pkts[i], c, l.now, &mut st.stats);
        if new && l.tracing() {
            let c = l.ctx[i];
            let r = match c.service {
                Some((id, kind)) => Some(ServiceRecord::Selected {
                    id,
                    kind,
                    to: c.tuple,
                    backends: l.t.services.port(id).backends().len() as u16,
                }),
                None if c.generated => {
                    l.t.services
                        .lookup(c.orig.dst, c.orig.dport, c.meta.proto)
                        .map(|f| ServiceRecord::Refused { id: f.target })
                }
                None => Some(ServiceRecord::NotAService),
            };
            if let Some(r) = r {
                l.record(i, crate::pipeline::TraceRecord::Service(r));
            }
        }
    }
}

pub(crate) fn warm(t: &Tables, c: &mut PacketCtx) {
    if !c.is_new_flow() || !c.meta.has_ports() || c.from_tunnel.is_some() {
        return;
    }
    if let Some(fe) = t.services.lookup(c.tuple.dst, c.tuple.dport, c.meta.proto) {
        let sp = t.services.port(fe.target);
        c.warm ^= sp.warm(policy_kind(t, fe.kind, sp, c), c.flow_hash);
    }
}

/// The kind of frontend whose traffic policy governs the flow. `externalTrafficPolicy: Local`
/// is for external clients only: a pod of this node (or the node itself) reaching the
/// service's node port, load-balancer or external IP is sent to any endpoint, as through the
/// cluster IP, and keeps its own address (kube-proxy short-circuits such traffic the same way).
fn policy_kind(t: &Tables, kind: FrontendKind, sp: &super::ServicePort, c: &PacketCtx) -> FrontendKind {
    let from_node = c.in_kind == crate::snapshot::PortKind::Host && t.endpoints.is_node_ip(c.orig.src);
    let in_cluster = c.src_ep.is_some() || from_node;
    if kind.is_external() && sp.spec.external_local && in_cluster {
        FrontendKind::ClusterIp
    } else {
        kind
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn select<B: PacketBuf>(
    t: &Tables,
    ct: &Conntrack,
    affinity: &mut AffinityTable,
    shard: Shard,
    pkt: &mut B,
    c: &mut PacketCtx,
    now: u64,
    stats: &mut Stats,
) {
    if !c.is_new_flow() {
        return;
    }
    let fe = if c.meta.has_ports() && c.from_tunnel.is_none() {
        t.services.lookup(c.tuple.dst, c.tuple.dport, c.meta.proto)
    } else {
        None
    };
    let Some(fe) = fe else {
        // An address of the service ranges that no Service has (or a port, or a protocol, it
        // does not serve, or a packet whose sender should have translated it) goes nowhere:
        // routed, it would leave by the default route.
        if t.service_cidrs.iter().any(|p| p.contains(c.tuple.dst)) {
            c.drop(DropReason::ServiceNoFrontend);
        }
        return;
    };
    let fe = *fe;
    let sp = t.services.port(fe.target);
    if fe.kind == FrontendKind::LoadBalancer
        && !sp.spec.source_ranges.is_empty()
        && !sp.spec.source_ranges.iter().any(|p| p.contains(c.tuple.src))
    {
        return c.drop(DropReason::LoadBalancerSourceDenied);
    }
    let kind = policy_kind(t, fe.kind, sp, c);
    let ev: &mut EventStats = &mut stats.events;
    let mut chosen = None;
    let akey = AffinityKey { group: sp.spec.affinity_group, client: c.tuple.src };
    if sp.spec.affinity_timeout_s.is_some() {
        if let Some(b) = affinity.get(&akey, now).and_then(|e| sp.usable_at(kind, e.addr)) {
            chosen = Some((b.addr, b.port));
            ev.affinity_hits += 1;
        }
    }
    let (addr, port) = match chosen {
        Some(x) => x,
        None => match sp.select(kind, c.flow_hash) {
            Ok(b) => (b.addr, b.port),
            Err(DropReason::ServiceNoBackends) => return refuse(pkt, c, t, stats),
            Err(r) => return c.drop(r),
        },
    };
    if addr.is_v4() != c.tuple.dst.is_v4() {
        return c.drop(DropReason::ServiceNoBackends);
    }
    if let Some(secs) = sp.spec.affinity_timeout_s {
        affinity.put(akey, AffinityEntry { addr }, u64::from(secs) * SEC, now);
    }
    let frontend = c.tuple.dst;
    c.tuple.dst = addr;
    c.tuple.dport = port;
    c.service = Some((fe.target, fe.kind));
    ev.service_new_flows += 1;
    let external_snat = fe.kind.is_external() && !sp.spec.external_local;
    let hairpin = addr == c.tuple.src;
    if external_snat || hairpin {
        // Hairpin: the pod is its own backend; make the packet come from the frontend so the
        // reply returns through the switch. External with Cluster policy: masquerade to the node.
        let new_src = if hairpin { Some(frontend) } else { t.node.addr_like(c.tuple.src) };
        let Some(new_src) = new_src else {
            return c.drop(DropReason::SnatPortsExhausted);
        };
        let x = Tuple { src: new_src, ..c.tuple };
        match alloc_snat_port(ct, c.meta.proto, x, c.flow_hash, shard, now) {
            Some(p) => {
                c.tuple.src = new_src;
                c.tuple.sport = p;
                stats.events.snat_new_flows += 1;
            }
            None => c.drop(DropReason::SnatPortsExhausted),
        }
    }
}

/// Refuses a flow to a service without backends: the drop is counted and a reply replaces
/// the packet, routed back to the sender.
fn refuse<B: PacketBuf>(pkt: &mut B, c: &mut PacketCtx, t: &Tables, stats: &mut Stats) {
    answer(pkt, c, t, stats, DropReason::ServiceNoBackends, reject::Unreachable::Port);
}

/// Writes the refusal of a packet in its place (counted under `reason`): a TCP reset, or an
/// ICMP unreachable of `kind`; the reply then goes through the rest of the pipeline back to
/// the sender.
pub(crate) fn answer<B: PacketBuf>(
    pkt: &mut B,
    c: &mut PacketCtx,
    t: &Tables,
    stats: &mut Stats,
    reason: DropReason,
    kind: reject::Unreachable,
) {
    stats.port(c.in_port).drops[reason.index()] += 1;
    let m = c.meta;
    let made = if m.proto == proto::TCP {
        reject::tcp_reset(pkt, &m).map(|_| stats.events.tcp_resets_sent += 1)
    } else {
        reject::unreachable(pkt, &m, kind).map(|_| stats.events.icmp_unreachables_sent += 1)
    };
    if let Err(r) = made {
        return c.drop(r);
    }
    match parse(pkt.data(), ParseOptions { verify_l4_checksum: t.verify_l4_checksum }) {
        Ok(nm) => {
            c.meta = nm;
            c.orig = Tuple { src: nm.src, dst: nm.dst, sport: nm.sport, dport: nm.dport };
            c.tuple = c.orig;
            c.generated = true;
            c.src_ep = None;
        }
        Err(r) => c.drop(r),
    }
}
