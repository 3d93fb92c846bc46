//! The per-worker pipeline. A batch of frames goes through each stage in turn (VPP style: one
//! loop per stage over the batch), carrying a [`PacketCtx`] per frame:
//!
//! 1. receive: count, parse (and on the uplink, decapsulate tunnel packets and parse the inner
//!    frame), give later IP fragments their first fragment's ports — `pipeline/mod.rs`,
//!    `parse.rs`, `overlay/decap.rs`, `fragment/stage.rs`;
//! 2. link layer: answer ARP and neighbour solicitations — `pipeline/l2.rs`;
//! 3. martians (impossible addresses, TCP flag combinations) — `pipeline/martian.rs`, then
//!    anti-spoofing — `pipeline/antispoof.rs`;
//! 4. conntrack lookup: established flows and replies get their NAT — `conntrack/stage.rs`; a
//!    later IP fragment must find its flow here, or after step 9 when its first fragment
//!    committed the flow in the same batch — `fragment/stage.rs`;
//! 5. service: backend choice and source NAT for new flows, or a refusal — `service/stage.rs`;
//! 6. egress policy of the source pod — `policy/stage.rs`;
//! 7. route — `route/stage.rs`;
//! 8. ingress policy of the destination pod — `policy/stage.rs`;
//! 9. path MTU: a packet too big for the tunnel is answered with an ICMP error from the
//!    node, routed back to its sender — `pipeline/mtu.rs`; then conntrack commit of allowed
//!    new flows — `conntrack/stage.rs`;
//! 10. rewrite, TTL, MACs, encapsulation — `pipeline/egress.rs`;
//!
//! and the caller moves each frame to the TX queue of its verdict's port. Nothing here
//! allocates after [`Worker::new`]; tables are read from an immutable [`Tables`] snapshot.

mod antispoof;
mod ctx;
mod egress;
mod l2;
mod martian;
mod mtu;
pub mod owner;
mod stats;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fragments;
#[cfg(test)]
mod tests_martian;
#[cfg(test)]
mod tests_mtu;

pub use ctx::{CtHit, Out, PacketCtx, Received, Verdict};
pub use stats::{EventStats, PortStats, Stats};

use crate::conntrack::{Conntrack, CtTimeouts, FlowKey, Tuple};
use crate::drop::DropReason;
use crate::fragment::FragmentTable;
use crate::overlay::{decapsulate_len, Decap};
use crate::packet::PacketBuf;
use crate::parse::{parse, ParseOptions};
use crate::service::{AffinityTable, Shard};
use crate::snapshot::{PortKind, Tables};

/// Frames per batch.
pub const BATCH: usize = 64;
/// Conntrack slots swept per batch.
const SWEEP_PER_BATCH: usize = 64;

/// Sizes and identity of a worker.
#[derive(Debug, Clone, Copy)]
pub struct WorkerConfig {
    pub index: u16,
    pub count: u16,
    /// Flows (each takes two entries).
    pub conntrack_flows: usize,
    pub affinity_entries: usize,
    pub max_ports: usize,
    pub timeouts: CtTimeouts,
    /// Secret key of the conntrack, session-affinity and fragment hashes. The daemon draws it
    /// at random per process, so that no sender can compute which tuples share a set with
    /// someone else's flow; tests pass a fixed one. (The config's `hash_seed` is for what
    /// nodes and workers must agree on: Maglev and flow owners.)
    pub hash_key: u64,
    /// Datagrams whose fragments are tracked at once (`fragment/table.rs`).
    pub fragment_entries: usize,
    /// How long after its first fragment a datagram's later fragments are accepted (ns).
    pub fragment_timeout_ns: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            index: 0,
            count: 1,
            conntrack_flows: 1 << 16,
            affinity_entries: 1 << 14,
            max_ports: 256,
            timeouts: CtTimeouts::default(),
            hash_key: 0x0070_7377_6974_6368,
            fragment_entries: crate::fragment::table::DEFAULT_ENTRIES,
            fragment_timeout_ns: crate::fragment::table::DEFAULT_TIMEOUT_NS,
        }
    }
}

/// One worker's state: its conntrack and affinity shards, counters and batch scratch space.
#[derive(Debug)]
pub struct Worker {
    ct: Conntrack,
    affinity: AffinityTable,
    frags: FragmentTable,
    stats: Stats,
    shard: Shard,
    ctx: Box<[PacketCtx; BATCH]>,
}

impl Worker {
    pub fn new(cfg: WorkerConfig) -> Worker {
        Worker {
            ct: Conntrack::new(cfg.conntrack_flows, cfg.hash_key, cfg.timeouts),
            affinity: AffinityTable::with_capacity(cfg.affinity_entries, cfg.hash_key.rotate_left(17)),
            frags: FragmentTable::new(cfg.fragment_entries, cfg.hash_key.rotate_left(31), cfg.fragment_timeout_ns),
            stats: Stats::new(cfg.max_ports),
            shard: Shard { index: cfg.index, count: cfg.count },
            ctx: Box::new([PacketCtx::default(); BATCH]),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn conntrack(&self) -> &Conntrack {
        &self.ct
    }

    pub fn conntrack_mut(&mut self) -> &mut Conntrack {
        &mut self.ct
    }

    /// The state packet `i` of the last batch left the pipeline with (for traces).
    pub fn ctx(&self, i: usize) -> Option<&PacketCtx> {
        self.ctx.get(i)
    }

    pub fn affinity(&self) -> &AffinityTable {
        &self.affinity
    }

    pub fn fragments(&self) -> &FragmentTable {
        &self.frags
    }

    /// Forgets the counters of a port that was removed, so that a port given its id later
    /// starts from zero.
    pub fn forget_port(&mut self, port: crate::packet::PortId) {
        if let Some(p) = self.stats.ports.get_mut(port.index()) {
            *p = stats::PortStats::default();
        }
    }

    /// Counts a frame the backend could not transmit.
    pub fn count_tx_drop(&mut self, port: crate::packet::PortId, len: usize) {
        let p = self.stats.port(port);
        p.tx_packets = p.tx_packets.saturating_sub(1);
        p.tx_bytes = p.tx_bytes.saturating_sub(len as u64);
        p.drops[DropReason::TxQueueFull.index()] += 1;
    }

    /// Counts a frame handed to the worker that owns its flow, or (`delivered` false) dropped
    /// because that worker's handoff queue was full.
    pub fn count_handoff(&mut self, port: crate::packet::PortId, delivered: bool) {
        if delivered {
            self.stats.events.handed_off += 1;
        } else {
            self.stats.port(port).drops[DropReason::HandoffQueueFull.index()] += 1;
        }
    }

    /// Runs the pipeline over `pkts` at time `now` (nanoseconds, any epoch, monotonic);
    /// `verdicts[i]` says what to do with `pkts[i]`. `verdicts` must be at least as long.
    pub fn process<B: PacketBuf>(&mut self, t: &Tables, now: u64, pkts: &mut [B], verdicts: &mut [Verdict]) {
        for (p, v) in pkts.chunks_mut(BATCH).zip(verdicts.chunks_mut(BATCH)) {
            self.process_batch(t, now, p, v);
        }
    }

    fn process_batch<B: PacketBuf>(&mut self, t: &Tables, now: u64, pkts: &mut [B], verdicts: &mut [Verdict]) {
        self.receive(t, now, pkts, 0);
        self.process_received(t, now, pkts, verdicts);
    }

    /// Stage 1 alone (count, parse, decapsulate, fragment tracking) at time `now` for `pkts`,
    /// into the packet contexts from `at` on (`at + pkts.len()` is at most [`BATCH`]). With
    /// several workers, the caller then asks [`Worker::owner`] which worker each frame's flow
    /// belongs to, hands the others' frames over with their contexts, and runs
    /// [`Worker::process_received`] (with the same `now`).
    pub fn receive<B: PacketBuf>(&mut self, t: &Tables, now: u64, pkts: &mut [B], at: usize) {
        let end = (at + pkts.len()).min(BATCH);
        let shard = self.shard;
        for (p, c) in pkts.iter_mut().zip(self.ctx[at..end].iter_mut()) {
            receive(t, p, c, &mut self.stats);
            if !c.is_done() && c.meta.is_fragment() {
                let frame = p.data();
                let owner = |c: &PacketCtx| owner::flow_owner(t, frame, c, shard);
                crate::fragment::stage::track(&mut self.frags, t, c, owner, now, &mut self.stats.events);
            }
        }
        self.frags.sweep(now, SWEEP_PER_BATCH / 8);
    }

    /// The worker that owns the flow of packet `i` of the batch (see `pipeline/owner.rs`; a
    /// fragment goes where its datagram's first fragment went).
    pub fn owner(&self, t: &Tables, frame: &[u8], i: usize) -> u16 {
        self.ctx.get(i).map_or(self.shard.index, |c| match c.frag_owner {
            Some(o) if !c.is_done() => o,
            _ => owner::flow_owner(t, frame, c, self.shard),
        })
    }

    /// What stage 1 learned about packet `i` of the batch, to move it with its frame.
    pub fn received(&self, i: usize) -> Option<Received> {
        self.ctx.get(i).map(PacketCtx::received)
    }

    /// Makes packet `i` of the batch being assembled one that arrived on `in_port` and that
    /// stage 1 (here or on another worker) described as `r`.
    pub fn take_over(&mut self, i: usize, r: &Received, in_port: crate::packet::PortId) {
        if let Some(c) = self.ctx.get_mut(i) {
            *c = PacketCtx::from_received(r, in_port);
        }
    }

    /// Moves the context of packet `from` to position `to` (compacting a batch).
    pub fn move_ctx(&mut self, from: usize, to: usize) {
        if from != to && from < BATCH && to < BATCH {
            self.ctx[to] = self.ctx[from];
        }
    }

    /// Stages 2 to 10 for `pkts` (at most [`BATCH`]), whose contexts stage 1 filled, on this
    /// worker or on the one that received them.
    pub fn process_received<B: PacketBuf>(&mut self, t: &Tables, now: u64, pkts: &mut [B], verdicts: &mut [Verdict]) {
        let n = pkts.len().min(BATCH);
        let pkts = &mut pkts[..n];
        let ctx = &mut self.ctx[..n];
        let stats = &mut self.stats;
        stats.events.batches += 1;
        for (p, c) in pkts.iter_mut().zip(ctx.iter_mut()) {
            if !c.is_done() {
                l2::answer(t, p, c, &mut stats.events);
            }
        }
        // Martians, then anti-spoofing, in one pass (both read only the packet's metadata).
        for c in ctx.iter_mut().filter(|c| !c.is_done()) {
            martian::check(c);
            if !c.is_done() {
                antispoof::check(t, c);
            }
        }
        // Conntrack in three passes: loads of independent sets and entries overlap in memory
        // (the CPU keeps many misses in flight), so the lookups then hit the cache.
        for c in ctx.iter_mut().filter(|c| !c.is_done()) {
            crate::conntrack::stage::warm(&self.ct, c);
        }
        for c in ctx.iter_mut().filter(|c| !c.is_done()) {
            crate::conntrack::stage::warm_entry(&self.ct, c);
        }
        let mut later_fragments = false;
        for c in ctx.iter_mut().filter(|c| !c.is_done()) {
            crate::conntrack::stage::lookup(&mut self.ct, t, c, now, &mut stats.events);
            crate::fragment::stage::require_flow(c);
            later_fragments |= c.meta.is_later_fragment();
        }
        for (p, c) in pkts.iter().zip(ctx.iter_mut()) {
            if !c.is_done() && c.meta.icmp == crate::parse::IcmpKind::Error {
                crate::conntrack::stage::related(&self.ct, p.data(), c, now);
            }
        }
        for c in ctx.iter_mut().filter(|c| !c.is_done()) {
            crate::service::stage::warm(t, c);
        }
        for (p, c) in pkts.iter_mut().zip(ctx.iter_mut()) {
            if !c.is_done() {
                crate::service::stage::select(t, &self.ct, &mut self.affinity, self.shard, p, c, now, stats);
            }
        }
        for c in ctx.iter_mut().filter(|c| !c.is_done()) {
            crate::conntrack::stage::warm_reply(&self.ct, c);
        }
        for c in ctx.iter_mut().filter(|c| !c.is_done()) {
            crate::conntrack::stage::warm_reply_victim(&self.ct, c);
        }
        for c in ctx.iter_mut().filter(|c| !c.is_done()) {
            crate::policy::stage::egress(t, c);
        }
        if t.policy_reject {
            for (p, c) in pkts.iter_mut().zip(ctx.iter_mut()) {
                crate::policy::stage::reject(t, p, c, stats, DropReason::PolicyDeniedEgress);
            }
        }
        for c in ctx.iter_mut().filter(|c| !c.is_done()) {
            crate::route::stage::route(t, c);
        }
        for c in ctx.iter_mut().filter(|c| !c.is_done()) {
            crate::policy::stage::ingress(t, c);
        }
        if t.policy_reject {
            for (p, c) in pkts.iter_mut().zip(ctx.iter_mut()) {
                if c.done == Some(Verdict::Drop(DropReason::PolicyDeniedIngress)) {
                    crate::policy::stage::reject(t, p, c, stats, DropReason::PolicyDeniedIngress);
                    if !c.is_done() {
                        // The answer goes back towards the sender: route it again.
                        c.out = Out::Unrouted;
                        crate::route::stage::route(t, c);
                    }
                }
            }
        }
        // Path MTU before the commit (a new flow answered with an ICMP error is not tracked).
        for (p, c) in pkts.iter_mut().zip(ctx.iter_mut()) {
            if !c.is_done() {
                mtu::check(t, p, c, stats);
            }
            if !c.is_done() {
                crate::conntrack::stage::commit(&mut self.ct, t, c, now);
            }
        }
        if later_fragments {
            for c in ctx.iter_mut() {
                crate::fragment::stage::retry(&mut self.ct, t, c, now, &mut stats.events);
            }
        }
        for (p, c) in pkts.iter_mut().zip(ctx.iter_mut()) {
            if !c.is_done() {
                egress::transmit(t, p, c, &mut stats.events);
            }
        }
        for ((p, c), v) in pkts.iter().zip(ctx.iter()).zip(verdicts.iter_mut()) {
            *v = c.done.unwrap_or(Verdict::Drop(DropReason::NoRoute));
            match *v {
                Verdict::Tx(port) => {
                    let s = stats.port(port);
                    s.tx_packets += 1;
                    s.tx_bytes += p.data().len() as u64;
                }
                Verdict::Drop(r) => stats.port(c.in_port).drops[r.index()] += 1,
            }
        }
        self.ct.sweep(now, SWEEP_PER_BATCH);
        self.affinity.sweep(now, SWEEP_PER_BATCH / 8);
    }
}

/// Stage 1: count, parse, decapsulate.
fn receive<B: PacketBuf>(t: &Tables, p: &mut B, c: &mut PacketCtx, stats: &mut Stats) {
    *c = PacketCtx { in_port: p.in_port(), rx_len: p.data().len() as u32, ..PacketCtx::default() };
    let ps = stats.port(c.in_port);
    ps.rx_packets += 1;
    if let Some(wire) = p.truncated_from() {
        // The backend's buffer (a ring slot, a pcap buffer) held only part of the frame.
        ps.rx_bytes += wire as u64;
        return c.drop(DropReason::FrameExceedsBuffer);
    }
    ps.rx_bytes += u64::from(c.rx_len);
    let Some(info) = t.port(c.in_port) else {
        return c.drop(DropReason::UnknownPort);
    };
    c.in_kind = info.kind;
    let opts = ParseOptions { verify_l4_checksum: t.verify_l4_checksum };
    let mut meta = match parse(p.data(), opts) {
        Ok(m) => m,
        Err(r) => return c.drop(r),
    };
    if meta.vlan.is_some() {
        return c.drop(DropReason::VlanNotAllowed);
    }
    if c.in_kind == PortKind::Uplink && meta.l3 != crate::parse::L3::Arp {
        match decapsulate_len(p.data(), &meta, t) {
            Ok(Decap::NotTunnel) => {}
            Ok(Decap::Inner { outer_len, peer }) => {
                if meta.dst_mac != t.node.uplink_mac {
                    return c.drop(DropReason::NotForRouter);
                }
                // Drop the outer headers and any Ethernet padding after the outer packet.
                let outer_end = usize::from(meta.ip_end);
                if !p.set_len(outer_end) || !p.pull_head(outer_len) {
                    return c.drop(DropReason::TunnelMalformed);
                }
                meta = match parse(p.data(), opts) {
                    Ok(m) => m,
                    Err(r) => return c.drop(r),
                };
                if meta.vlan.is_some() {
                    return c.drop(DropReason::VlanNotAllowed);
                }
                if meta.l3 == crate::parse::L3::Arp {
                    return c.drop(DropReason::ArpNotAnswered);
                }
                c.from_tunnel = Some(peer);
                stats.events.decapsulated += 1;
            }
            Err(r) => return c.drop(r),
        }
    }
    c.meta = meta;
    c.orig = Tuple { src: meta.src, dst: meta.dst, sport: meta.sport, dport: meta.dport };
    c.tuple = c.orig;
    c.flow_hash = FlowKey { t: c.orig, proto: meta.proto }.hash(t.hash_seed);
}
