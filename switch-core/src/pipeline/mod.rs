//! The per-worker pipeline. A batch of frames goes through each stage in turn (VPP style: one
//! loop per stage over the batch), carrying a [`PacketCtx`] per frame. Stage 1 (receive) is
//! here, because with several workers it runs before a frame is handed to its flow's owner;
//! the others are called in order from the list in `pipeline/stage.rs`, each owned by its
//! feature's directory:
//!
//! 1. receive: count, parse (and on the uplink, decapsulate tunnel packets and parse the inner
//!    frame), give later IP fragments their first fragment's ports — `pipeline/mod.rs`,
//!    `parse.rs`, `overlay/decap.rs`, `fragment/stage.rs`;
//! 2. link layer: answer ARP and neighbour solicitations — `pipeline/l2.rs`;
//! 3. martians (impossible addresses, TCP flag combinations) — `pipeline/martian.rs`, then
//!    anti-spoofing — `pipeline/antispoof.rs`;
//! 4. cluster DNS: queries to the cluster DNS addresses answered in place, or sent to the
//!    daemon's resolver — `dns/stage.rs`;
//! 5. conntrack lookup: established flows and replies get their NAT — `conntrack/stage.rs`; a
//!    later IP fragment must find its flow here, or after step 11 when its first fragment
//!    committed the flow in the same batch — `fragment/stage.rs`;
//! 6. service: backend choice and source NAT for new flows, or a refusal — `service/stage.rs`;
//!    then the conntrack slots of the new flows' replies are prefetched;
//! 7. egress policy of the source pod — `policy/stage.rs`;
//! 8. route — `route/stage.rs`;
//! 9. ingress policy of the destination pod — `policy/stage.rs`;
//! 10. path MTU: a packet too big for the tunnel is answered with an ICMP error from the
//!     node, routed back to its sender — `pipeline/mtu.rs`; then conntrack commit of allowed
//!     new flows — `conntrack/stage.rs`;
//! 11. later fragments whose flow was committed in this batch — `fragment/stage.rs`;
//! 12. rewrite, TTL, MACs, encapsulation — `pipeline/egress.rs`;
//!
//! and the caller moves each frame to the TX queue of its verdict's port. Nothing here
//! allocates after [`Worker::new`]; tables are read from an immutable [`Tables`] snapshot.
//! A tracing worker ([`Worker::with_trace`]) also keeps what each stage decided
//! ([`TraceRecord`]).

mod antispoof;
mod ctx;
mod egress;
mod l2;
mod martian;
mod mtu;
pub mod owner;
pub(crate) mod stage;
mod stats;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fragments;
#[cfg(test)]
mod tests_martian;
#[cfg(test)]
mod tests_mtu;
pub mod trace;

pub use ctx::{CtHit, Out, PacketCtx, Received, Verdict};
pub use stats::{EventStats, PortStats, Stats};
pub use trace::{PolicyVerdict, RouteRecord, ServiceRecord, TraceLog, TraceRecord};

use stage::Lanes;

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

/// The names of stages 2 to 12, in the order they run (`pipeline/stage.rs`).
pub fn stage_names() -> Vec<&'static str> {
    stage::list::<crate::packet::OwnedBuf>().iter().map(|s| s.name).collect()
}

/// What a worker owns besides its batch: its conntrack, affinity and fragment shards, its
/// counters and which share of the flows it serves.
#[derive(Debug)]
pub(crate) struct WorkerState {
    pub ct: Conntrack,
    pub affinity: AffinityTable,
    pub frags: FragmentTable,
    pub stats: Stats,
    pub shard: Shard,
}

/// One worker's state: its conntrack and affinity shards, counters and batch scratch space.
#[derive(Debug)]
pub struct Worker {
    st: WorkerState,
    ctx: Box<[PacketCtx; BATCH]>,
    /// One record log per packet of the batch when the worker traces (`trace.rs`).
    trace: Option<Box<[TraceLog; BATCH]>>,
}

impl Worker {
    pub fn new(cfg: WorkerConfig) -> Worker {
        Worker {
            st: WorkerState {
                ct: Conntrack::new(cfg.conntrack_flows, cfg.hash_key, cfg.timeouts),
                affinity: AffinityTable::with_capacity(cfg.affinity_entries, cfg.hash_key.rotate_left(17)),
                frags: FragmentTable::new(cfg.fragment_entries, cfg.hash_key.rotate_left(31), cfg.fragment_timeout_ns),
                stats: Stats::new(cfg.max_ports),
                shard: Shard { index: cfg.index, count: cfg.count },
            },
            ctx: Box::new([PacketCtx::default(); BATCH]),
            trace: None,
        }
    }

    /// A worker whose stages write trace records ([`Worker::trace_log`]); for `trace`, not
    /// for forwarding.
    pub fn with_trace(mut self) -> Worker {
        self.trace = Some(Box::new([TraceLog::default(); BATCH]));
        self
    }

    /// What the stages recorded for packet `i` of the last batch (tracing workers only).
    pub fn trace_log(&self, i: usize) -> Option<&TraceLog> {
        self.trace.as_ref().and_then(|t| t.get(i))
    }

    pub fn stats(&self) -> &Stats {
        &self.st.stats
    }

    pub fn conntrack(&self) -> &Conntrack {
        &self.st.ct
    }

    pub fn conntrack_mut(&mut self) -> &mut Conntrack {
        &mut self.st.ct
    }

    /// The state packet `i` of the last batch left the pipeline with (for traces).
    pub fn ctx(&self, i: usize) -> Option<&PacketCtx> {
        self.ctx.get(i)
    }

    pub fn affinity(&self) -> &AffinityTable {
        &self.st.affinity
    }

    pub fn affinity_mut(&mut self) -> &mut AffinityTable {
        &mut self.st.affinity
    }

    pub fn fragments(&self) -> &FragmentTable {
        &self.st.frags
    }

    /// Moves the counters of a port that was removed into `stats().removed`, so that a port
    /// given its id later starts from zero and the totals keep what it counted.
    pub fn forget_port(&mut self, port: crate::packet::PortId) {
        if let Some(p) = self.st.stats.ports.get_mut(port.index()) {
            let gone = std::mem::take(p);
            self.st.stats.removed.add(&gone);
        }
    }

    /// Counts a frame the backend could not transmit.
    pub fn count_tx_drop(&mut self, port: crate::packet::PortId, len: usize) {
        let p = self.st.stats.port(port);
        p.tx_packets = p.tx_packets.saturating_sub(1);
        p.tx_bytes = p.tx_bytes.saturating_sub(len as u64);
        p.drops[DropReason::TxQueueFull.index()] += 1;
    }

    /// Counts a frame handed to the worker that owns its flow, or (`delivered` false) dropped
    /// because that worker's handoff queue was full.
    pub fn count_handoff(&mut self, port: crate::packet::PortId, delivered: bool) {
        if delivered {
            self.st.stats.events.handed_off += 1;
        } else {
            self.st.stats.port(port).drops[DropReason::HandoffQueueFull.index()] += 1;
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
        let shard = self.st.shard;
        for (p, c) in pkts.iter_mut().zip(self.ctx[at..end].iter_mut()) {
            receive(t, p, c, &mut self.st.stats);
            if !c.is_done() && c.meta.is_fragment() {
                let frame = p.data();
                let owner = |c: &PacketCtx| owner::flow_owner(t, frame, c, shard);
                crate::fragment::stage::track(&mut self.st.frags, t, c, owner, now, &mut self.st.stats.events);
            }
        }
        self.st.frags.sweep(now, SWEEP_PER_BATCH / 8);
    }

    /// The worker that owns the flow of packet `i` of the batch (see `pipeline/owner.rs`; a
    /// fragment goes where its datagram's first fragment went).
    pub fn owner(&self, t: &Tables, frame: &[u8], i: usize) -> u16 {
        self.ctx.get(i).map_or(self.st.shard.index, |c| match c.frag_owner {
            Some(o) if !c.is_done() => o,
            _ => owner::flow_owner(t, frame, c, self.st.shard),
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

    /// Stages 2 to 12 for `pkts` (at most [`BATCH`]), whose contexts stage 1 filled, on this
    /// worker or on the one that received them: the stages of [`stage::list`], in order, then
    /// the verdicts and their counters.
    pub fn process_received<B: PacketBuf>(&mut self, t: &Tables, now: u64, pkts: &mut [B], verdicts: &mut [Verdict]) {
        let n = pkts.len().min(BATCH);
        let pkts = &mut pkts[..n];
        self.st.stats.events.batches += 1;
        let trace = self.trace.as_deref_mut().map(|logs| {
            let logs = &mut logs[..n];
            logs.iter_mut().for_each(TraceLog::clear);
            logs
        });
        let mut lanes =
            Lanes { t, now, pkts, ctx: &mut self.ctx[..n], st: &mut self.st, trace, later_fragments: false };
        for s in stage::list::<B>() {
            (s.run)(&mut lanes);
        }
        let Lanes { pkts, ctx, st, .. } = lanes;
        let stats = &mut st.stats;
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
        st.ct.sweep(now, SWEEP_PER_BATCH);
        st.affinity.sweep(now, SWEEP_PER_BATCH / 8);
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
