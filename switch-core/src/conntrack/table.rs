//! The conntrack table: two entries per flow, one per direction, each keyed by the tuple its
//! packets carry on arrival and holding the tuple to rewrite them to.

use super::state::{CtTimeouts, TcpState};
use crate::addr::Addr;
use crate::flowtable::{Displaced, Evictable, FlowTable, WarmWord, NO_SLOT};
use crate::hash::{hash_words, SecretHash};
use crate::policy::RuleId;
use crate::service::ServicePortId;

/// Addresses and ports of one direction of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Tuple {
    pub src: Addr,
    pub dst: Addr,
    pub sport: u16,
    pub dport: u16,
}

impl Tuple {
    pub fn reversed(self) -> Tuple {
        Tuple { src: self.dst, dst: self.src, sport: self.dport, dport: self.sport }
    }
}

/// A tuple with its protocol: the conntrack key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct FlowKey {
    pub t: Tuple,
    pub proto: u8,
}

impl FlowKey {
    pub fn reversed(self) -> FlowKey {
        FlowKey { t: self.t.reversed(), proto: self.proto }
    }
    /// The fast hash with a seed every node shares (flow owners, Maglev, tunnel ports).
    #[inline]
    pub fn hash(&self, seed: u64) -> u64 {
        hash_words(seed, &self.words())
    }

    /// The hash under a secret key, for the conntrack table's sets.
    #[inline]
    pub fn secret_hash(&self, h: &SecretHash) -> u64 {
        h.hash(&self.words())
    }

    #[inline]
    fn words(&self) -> [u64; 5] {
        let ports = (u64::from(self.t.sport) << 32) | (u64::from(self.t.dport) << 16) | u64::from(self.proto);
        [self.t.src.hi(), self.t.src.lo(), self.t.dst.hi(), self.t.dst.lo(), ports]
    }
}

impl WarmWord for FlowKey {
    fn warm_word(&self) -> u64 {
        self.t.src.lo()
    }
}

impl WarmWord for CtEntry {
    fn warm_word(&self) -> u64 {
        self.packets
    }
}

impl Evictable for CtEntry {
    /// Assured flows are never evicted for new ones; the kernel's `early_drop` likewise only
    /// takes entries that are not assured.
    fn evictable(&self) -> bool {
        !self.assured()
    }
}

impl CtEntry {
    /// The kernel's `IPS_ASSURED`: the flow was answered and, for TCP, its handshake finished.
    /// A SYN answered by a SYN-ACK whose ACK never comes (a SYN flood from spoofed sources at
    /// a listening port) is not assured: pinning it would let a flood fill the table and
    /// refuse every new connection for the SYN timeout.
    pub fn assured(&self) -> bool {
        self.replied && !matches!(self.state, TcpState::SynSent | TcpState::SynReceived | TcpState::Closed)
    }
}

/// Which way a packet travels relative to the packet that created the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    Original,
    Reply,
}

/// One direction of a tracked flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CtEntry {
    pub dir: Direction,
    /// The tuple packets of this direction are rewritten to (equal to the key's when no NAT).
    pub xlate: Tuple,
    pub state: TcpState,
    /// A packet of the reply direction has been seen (the kernel's `IPS_SEEN_REPLY`). Until
    /// then the flow lives at most [`CtTimeouts::unreplied`] and is checked again after a
    /// table change; until it is also [`assured`](CtEntry::assured) it may be evicted by a
    /// new flow.
    pub replied: bool,
    pub(super) fins: u8,
    /// Identifies the flow; the peer slot is trusted only while its flow id matches.
    pub(super) flow_id: u32,
    pub(super) peer: u32,
    pub service: Option<ServicePortId>,
    /// The policy rules that admitted the flow (egress at the source, ingress at the
    /// destination), for traces and listings.
    pub egress_rule: Option<RuleId>,
    pub ingress_rule: Option<RuleId>,
    pub packets: u64,
    pub bytes: u64,
    pub created: u64,
    /// Low bits of the table generation the entry was last checked against (service flows are
    /// re-checked once after every table change).
    pub generation: u32,
    /// The expiry last written into the peer entry; the peer is refreshed only when this falls
    /// behind by an eighth of the timeout (or the state changes), which saves a random memory
    /// access on most packets.
    pub(super) peer_refreshed: u64,
}

/// Counters of one conntrack table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CtStats {
    pub created: u64,
    /// Unanswered flows evicted to make room for new ones.
    pub evicted: u64,
    pub expired_reused: u64,
    /// New flows refused because every way of their sets held an answered flow.
    pub refused: u64,
}

/// A per-worker conntrack table.
#[derive(Debug, Clone)]
pub struct Conntrack {
    table: FlowTable<FlowKey, CtEntry>,
    /// The keyed hash that places entries in sets: its key is random per process in the
    /// daemon (tests pass a fixed one), so that nobody can compute which tuples share a set
    /// with a victim's flow and crowd it out.
    key: SecretHash,
    next_flow: u32,
    pub timeouts: CtTimeouts,
    pub stats: CtStats,
}

/// What `commit` needs to know about a new flow.
#[derive(Debug, Clone, Copy)]
pub struct NewFlow {
    pub generation: u32,
    pub key: FlowKey,
    pub xlate: Tuple,
    pub tcp_flags: u8,
    pub len: u64,
    pub service: Option<ServicePortId>,
    pub egress_rule: Option<RuleId>,
    pub ingress_rule: Option<RuleId>,
}

/// How long an entry in `state` lives without traffic.
pub(super) fn lifetime(state: TcpState, protocol: u8, replied: bool, t: &CtTimeouts) -> u64 {
    let base = state.timeout(protocol, t);
    if replied {
        base
    } else {
        base.min(t.unreplied)
    }
}

impl Conntrack {
    /// A table for `capacity` flows (two entries each) whose hash is keyed with `key`.
    pub fn new(capacity: usize, key: u64, timeouts: CtTimeouts) -> Conntrack {
        Conntrack {
            table: FlowTable::with_capacity(capacity * 2),
            key: SecretHash::new(key),
            next_flow: 1,
            timeouts,
            stats: CtStats::default(),
        }
    }

    /// The slot of the live entry for `key`.
    #[inline]
    pub fn lookup(&self, key: &FlowKey, now: u64) -> Option<usize> {
        self.table.find(key.secret_hash(&self.key), key, now)
    }

    /// This table's hash of `key`.
    #[inline]
    pub fn hash(&self, key: &FlowKey) -> u64 {
        key.secret_hash(&self.key)
    }

    /// `lookup` with the hash already computed.
    #[inline]
    pub fn lookup_hashed(&self, hash: u64, key: &FlowKey, now: u64) -> Option<usize> {
        self.table.find(hash, key, now)
    }

    /// Batch warming, first step: load the set's tags (see [`FlowTable::warm`]).
    #[inline]
    pub fn warm(&self, hash: u64) -> u64 {
        self.table.warm(hash)
    }

    /// Warming for an insert: load the slot a new entry of `hash` would take.
    #[inline]
    pub fn warm_victim(&self, hash: u64) -> u64 {
        self.table.warm_victim(hash)
    }

    /// Batch warming, second step: load the matching entry.
    #[inline]
    pub fn warm_entry(&self, hash: u64) -> u64 {
        self.table.warm_entry(hash)
    }

    #[inline]
    pub fn entry(&self, slot: usize) -> &CtEntry {
        self.table.get(slot).1
    }

    /// Marks an entry as checked against table generation `g`.
    pub fn set_generation(&mut self, slot: usize, g: u32) {
        self.table.val_mut(slot).generation = g;
    }

    /// Accounts a packet to a flow, advances TCP state in both directions and refreshes both
    /// expiries. Returns the new state.
    #[inline]
    pub fn touch(&mut self, slot: usize, tcp_flags: u8, len: u64, now: u64) -> TcpState {
        let (key, e, _) = self.table.get(slot);
        let proto = key.proto;
        let mut e = *e;
        let reply = e.dir == Direction::Reply;
        let (old_state, old_fins, old_replied, old_assured) = (e.state, e.fins, e.replied, e.assured());
        let state = e.state.next(tcp_flags, reply, &mut e.fins);
        e.state = state;
        e.replied |= reply;
        e.packets += 1;
        e.bytes += len;
        let timeout = lifetime(state, proto, e.replied, &self.timeouts);
        let expires = now + timeout;
        let refresh_peer = state != old_state
            || e.fins != old_fins
            || e.replied != old_replied
            || expires.saturating_sub(e.peer_refreshed) > timeout / 8;
        if refresh_peer {
            e.peer_refreshed = expires;
        }
        *self.table.val_mut(slot) = e;
        self.table.set_expiry(slot, expires);
        let assured = e.assured();
        if assured != old_assured {
            self.table.pin(slot, assured);
        }
        let peer = e.peer as usize;
        if refresh_peer && peer < self.table.capacity() {
            let (_, pe, pexp) = self.table.get(peer);
            if pe.flow_id == e.flow_id && pexp > now {
                let p = self.table.val_mut(peer);
                p.state = state;
                p.fins = e.fins;
                p.replied = e.replied;
                if assured != old_assured {
                    self.table.pin(peer, assured);
                }
                self.table.set_expiry(peer, expires);
            }
        }
        state
    }

    /// Whether the reply of a translated tuple would collide with a live flow (SNAT port
    /// allocation asks this).
    pub fn reply_taken(&self, xlate: &Tuple, proto: u8, now: u64) -> bool {
        let k = FlowKey { t: xlate.reversed(), proto };
        self.lookup(&k, now).is_some()
    }

    /// Tracks a new flow: the original entry (key -> xlate) and the reply entry (reverse of
    /// xlate -> reverse of key). Returns the original entry's slot, or `None` when the table
    /// has no room: the flow is then not tracked and `stats.refused` counts it.
    pub fn commit(&mut self, f: &NewFlow, now: u64) -> Option<usize> {
        let rkey = FlowKey { t: f.xlate.reversed(), proto: f.key.proto };
        self.commit_hashed(f, f.key.secret_hash(&self.key), rkey.secret_hash(&self.key), now)
    }

    /// `commit` with both keys' hashes already computed (the reply key is the reverse of
    /// `xlate`). Both slots are chosen before either is written, the reply's never being the
    /// original's, so a flow never evicts its own entry; only unanswered flows give way.
    pub fn commit_hashed(&mut self, f: &NewFlow, hash: u64, reply_hash: u64, now: u64) -> Option<usize> {
        let state = TcpState::initial(f.key.proto, f.tcp_flags);
        let fins = u8::from(f.tcp_flags & crate::wire::l4::tcp_flags::FIN != 0);
        let expires = now + lifetime(state, f.key.proto, false, &self.timeouts);
        let base = CtEntry {
            dir: Direction::Original,
            xlate: f.xlate,
            state,
            service: f.service,
            egress_rule: f.egress_rule,
            ingress_rule: f.ingress_rule,
            packets: 1,
            bytes: f.len,
            created: now,
            generation: f.generation,
            ..CtEntry::default()
        };
        let reply = CtEntry { dir: Direction::Reply, xlate: f.key.t.reversed(), packets: 0, bytes: 0, ..base };
        let o = self.place_flow(f.key, hash, reply_hash, base, reply, fins, expires, now);
        if o.is_none() {
            self.stats.refused += 1;
        }
        o
    }

    /// The two slots a new flow takes (see [`Conntrack::commit_hashed`]), after removing
    /// whole any live flow that gives way; `None` when a set holds answered flows only.
    fn claim(&mut self, hash: u64, key: &FlowKey, rhash: u64, rkey: &FlowKey, now: u64) -> Option<(usize, usize)> {
        let o = self.table.victim(hash, key, now, NO_SLOT)?;
        let r = self.table.victim(rhash, rkey, now, o)?;
        // A flow that gives way goes whole (the kernel's early_drop deletes the conntrack,
        // not one direction): its other entry would keep translating one way only.
        for v in [o, r] {
            let (k, e, exp) = self.table.get(v);
            let evicted = exp > now && k != key && k != rkey;
            let peer = e.peer as usize;
            if evicted && peer != o && peer != r && peer < self.table.capacity() {
                let id = e.flow_id;
                if self.table.get(peer).1.flow_id == id {
                    self.table.remove(peer);
                }
            }
        }
        Some((o, r))
    }

    fn take_flow_id(&mut self) -> u32 {
        let id = self.next_flow;
        self.next_flow = self.next_flow.wrapping_add(1).max(1);
        id
    }

    /// Tracks a flow: both entries (the reply's key the reverse of `base.xlate`, `hash` and
    /// `rhash` the two keys' hashes), linked, in the slots [`Conntrack::claim`] gives, with
    /// `fins` and `expires`. Returns the original entry's slot; `None` when there is no room.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(super) fn place_flow(
        &mut self,
        key: FlowKey,
        hash: u64,
        rhash: u64,
        base: CtEntry,
        reply: CtEntry,
        fins: u8,
        expires: u64,
        now: u64,
    ) -> Option<usize> {
        let rkey = FlowKey { t: base.xlate.reversed(), proto: key.proto };
        let (o, r) = self.claim(hash, &key, rhash, &rkey, now)?;
        let flow_id = self.take_flow_id();
        let link = |e: CtEntry, peer: usize| CtEntry { flow_id, peer: peer as u32, fins, peer_refreshed: expires, ..e };
        let d1 = self.table.place(o, hash, key, link(base, r), expires, now);
        let d2 = self.table.place(r, rhash, rkey, link(reply, o), expires, now);
        self.stats.created += 1;
        for d in [d1, d2] {
            match d {
                Displaced::Evicted => self.stats.evicted += 1,
                Displaced::Expired => self.stats.expired_reused += 1,
                Displaced::Nothing => {}
            }
        }
        Some(o)
    }

    /// Live entries of slots `range` with their slot and expiry.
    pub(super) fn iter_slots(
        &self,
        now: u64,
        range: core::ops::Range<usize>,
    ) -> impl Iterator<Item = (usize, &FlowKey, &CtEntry, u64)> {
        self.table.iter_live_in(now, range)
    }

    /// The live peer (other direction) of the entry in `slot`, with its expiry.
    pub(super) fn peer_of(&self, slot: usize) -> Option<(&CtEntry, u64)> {
        let e = self.table.get(slot).1;
        let peer = e.peer as usize;
        if peer >= self.table.capacity() {
            return None;
        }
        let (_, p, exp) = self.table.get(peer);
        (p.flow_id == e.flow_id && exp > 0).then_some((p, exp))
    }

    /// Forgets the flow of the entry in `slot` (both directions): its tuple is free for a new
    /// connection that service selection and policy judge afresh.
    pub fn remove_flow(&mut self, slot: usize) {
        let (_, e, _) = self.table.get(slot);
        let (peer, id) = (e.peer as usize, e.flow_id);
        if peer < self.table.capacity() && self.table.get(peer).1.flow_id == id {
            self.table.remove(peer);
        }
        self.table.remove(slot);
    }

    /// Reclaims expired entries among the next `budget` slots.
    pub fn sweep(&mut self, now: u64, budget: usize) -> usize {
        self.table.sweep(now, budget)
    }

    /// Drops every entry.
    pub fn flush(&mut self) {
        self.table.clear();
    }

    /// Drops the flows (both entries) whose original entry `pick` selects; returns how many.
    /// Control-plane use (`conntrack flush` with a filter): it allocates.
    pub fn flush_matching(&mut self, now: u64, pick: impl FnMut(&FlowKey, &CtEntry) -> bool) -> usize {
        self.flush_matching_in(now, 0..usize::MAX, pick)
    }

    /// As [`Conntrack::flush_matching`], over the flows whose original entry lies in slots
    /// `range` (a flow goes whole, its reply entry wherever it lies).
    pub fn flush_matching_in(
        &mut self,
        now: u64,
        range: core::ops::Range<usize>,
        mut pick: impl FnMut(&FlowKey, &CtEntry) -> bool,
    ) -> usize {
        let mut slots = Vec::new();
        for (slot, k, e, _) in self.table.iter_live_in(now, range) {
            if e.dir == Direction::Original && pick(k, e) {
                slots.push(slot);
            }
        }
        for &slot in &slots {
            self.remove_flow(slot);
        }
        slots.len()
    }

    /// Entries in use (two per flow).
    pub fn entries(&self) -> usize {
        self.table.occupied()
    }

    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }

    /// Live original-direction entries, for listings.
    pub fn flows(&self, now: u64) -> impl Iterator<Item = (&FlowKey, &CtEntry, u64)> {
        self.flows_in(now, 0..usize::MAX)
    }

    /// As [`Conntrack::flows`], over the slots of `range` (see [`Conntrack::capacity`]).
    pub fn flows_in(
        &self,
        now: u64,
        range: core::ops::Range<usize>,
    ) -> impl Iterator<Item = (&FlowKey, &CtEntry, u64)> {
        self.table
            .iter_live_in(now, range)
            .filter(|(_, _, e, _)| e.dir == Direction::Original)
            .map(|(_, k, e, x)| (k, e, x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::l4::tcp_flags::*;
    use crate::wire::proto;

    fn a(s: &str) -> Addr {
        Addr::from(s.parse::<core::net::IpAddr>().unwrap())
    }

    fn flow() -> NewFlow {
        let key = FlowKey {
            t: Tuple { src: a("10.0.0.2"), dst: a("10.96.0.10"), sport: 40000, dport: 80 },
            proto: proto::TCP,
        };
        let xlate = Tuple { dst: a("10.0.1.7"), dport: 8080, ..key.t };
        NewFlow {
            generation: 1,
            key,
            xlate,
            tcp_flags: SYN,
            len: 60,
            service: Some(ServicePortId(3)),
            egress_rule: None,
            ingress_rule: None,
        }
    }

    #[test]
    fn flush_matching_removes_both_entries_of_picked_flows_only() {
        let mut ct = Conntrack::new(1024, 7, CtTimeouts::default());
        let f = flow();
        let mut g = flow();
        g.key.t.sport = 40001;
        g.xlate.sport = 40001;
        ct.commit(&f, 0);
        ct.commit(&g, 0);
        assert_eq!(ct.entries(), 4);
        assert_eq!(ct.flush_matching(1, |k, _| k.t.sport == 40001), 1);
        assert_eq!(ct.entries(), 2);
        assert!(ct.lookup(&g.key, 1).is_none());
        assert!(ct.lookup(&FlowKey { t: g.xlate.reversed(), proto: proto::TCP }, 1).is_none());
        assert!(ct.lookup(&f.key, 1).is_some());
        assert_eq!(ct.flush_matching(1, |_, _| false), 0);
    }

    #[test]
    fn both_directions_and_reverse_nat() {
        let mut ct = Conntrack::new(1024, 7, CtTimeouts::default());
        let f = flow();
        let o = ct.commit(&f, 0).unwrap();
        assert_eq!(ct.lookup(&f.key, 1), Some(o));
        let reply_key = FlowKey { t: f.xlate.reversed(), proto: proto::TCP };
        let r = ct.lookup(&reply_key, 1).expect("reply entry");
        let e = ct.entry(r);
        assert_eq!(e.dir, Direction::Reply);
        assert_eq!(e.xlate, f.key.t.reversed(), "replies are rewritten back to the VIP");
        assert_eq!(ct.touch(r, SYN | ACK, 60, 2), TcpState::SynReceived);
        assert_eq!(ct.touch(o, ACK, 60, 3), TcpState::Established);
        assert_eq!(ct.entry(r).state, TcpState::Established, "state is shared by both directions");
        assert_eq!(ct.entries(), 2);
        assert_eq!(ct.flows(4).count(), 1);
    }

    #[test]
    fn expiry_follows_state_and_time() {
        let t = CtTimeouts { tcp_syn: 100, tcp_close: 10, ..CtTimeouts::default() };
        let mut ct = Conntrack::new(64, 7, t);
        let f = flow();
        ct.commit(&f, 0);
        assert!(ct.lookup(&f.key, 99).is_some());
        assert!(ct.lookup(&f.key, 100).is_none(), "unanswered SYN expires");
        let o2 = ct.commit(&f, 200).unwrap();
        ct.touch(o2, RST, 40, 201);
        assert!(ct.lookup(&f.key, 210).is_some());
        assert!(ct.lookup(&f.key, 211).is_none());
        assert_eq!(ct.sweep(1000, 1 << 20), 4, "both flows, both directions");
        assert_eq!(ct.entries(), 0);
    }

    fn nth(i: u16) -> NewFlow {
        let mut f = flow();
        f.key.t.sport = i;
        f.xlate.sport = i;
        f
    }

    /// Issue 9 item 3: one-way flows filling the table evict each other, never an answered
    /// flow; when only answered flows are left, the new flow is refused and counted.
    #[test]
    fn answered_flows_survive_a_flood_of_unanswered_ones() {
        let mut ct = Conntrack::new(64, 7, CtTimeouts::default());
        let live = nth(60000);
        let o = ct.commit(&live, 0).unwrap();
        let r = ct.lookup(&FlowKey { t: live.xlate.reversed(), proto: proto::TCP }, 1).unwrap();
        ct.touch(r, SYN | ACK, 60, 1);
        ct.touch(o, ACK, 60, 2);
        assert!(ct.entry(o).replied && ct.entry(r).replied, "both entries know the flow was answered");
        for i in 0..4000 {
            let _ = ct.commit(&nth(i), 10);
        }
        assert!(ct.stats.evicted > 0);
        assert!(ct.lookup(&live.key, 20).is_some(), "the answered flow is kept");
        // Flows that gave way went whole: none is left translating one direction only.
        let halves = (0..4000)
            .filter(|&i| {
                let f = nth(i);
                let r = FlowKey { t: f.xlate.reversed(), proto: proto::TCP };
                ct.lookup(&f.key, 20).is_some() != ct.lookup(&r, 20).is_some()
            })
            .count();
        assert_eq!(halves, 0, "half-evicted flows");
        assert!(ct.lookup(&FlowKey { t: live.xlate.reversed(), proto: proto::TCP }, 20).is_some());
        // Complete the handshake of every flow that is left: nothing may give way any more.
        for i in 0..4000 {
            let k = FlowKey { t: nth(i).xlate.reversed(), proto: proto::TCP };
            if let Some(s) = ct.lookup(&k, 30) {
                ct.touch(s, SYN | ACK, 60, 30);
                let o = ct.lookup(&nth(i).key, 30).expect("original entry");
                ct.touch(o, ACK, 60, 30);
            }
        }
        let before = ct.stats.refused;
        let refused = (5000..5400).filter(|&i| ct.commit(&nth(i), 40).is_none()).count();
        assert!(refused > 0 && ct.stats.refused == before + refused as u64);
        assert!(ct.lookup(&live.key, 50).is_some());
    }

    /// Issue 9 item 4, the case that evicted a flow's own entry: every way holds an
    /// evictable entry that expires later than the new flow, so the reply entry's soonest
    /// victim is the original entry just written.
    #[test]
    fn the_reply_entry_never_takes_the_original_entrys_slot() {
        let t = CtTimeouts { tcp_syn: 10, udp: 100, unreplied: 1000, ..CtTimeouts::default() };
        let mut ct = Conntrack::new(4, 7, t);
        for i in 0..4 {
            let mut g = nth(i);
            g.key.proto = proto::UDP;
            g.tcp_flags = 0;
            ct.commit(&g, 0).unwrap();
        }
        let f = nth(10);
        let o = ct.commit(&f, 1).unwrap();
        assert_eq!(ct.lookup(&f.key, 2), Some(o), "the original entry survives its own commit");
        assert!(ct.lookup(&FlowKey { t: f.xlate.reversed(), proto: proto::TCP }, 2).is_some());
        // The flows that gave way went whole: no half flow is left to translate one way.
        let halves = (0..4)
            .filter(|&i| {
                let mut g = nth(i);
                g.key.proto = proto::UDP;
                let r = FlowKey { t: g.xlate.reversed(), proto: proto::UDP };
                ct.lookup(&g.key, 2).is_some() != ct.lookup(&r, 2).is_some()
            })
            .count();
        assert_eq!(halves, 0);
    }

    /// Issue 13: a SYN flood at a listening port from spoofed sources: every SYN is answered
    /// by a SYN-ACK whose ACK never comes. Those flows are answered but not assured, so they
    /// give way to new flows (a connection made during the flood gets its slot) and never to
    /// established ones; a UDP flow is assured by its first reply.
    #[test]
    fn syn_received_flows_give_way_to_new_flows() {
        let mut ct = Conntrack::new(64, 7, CtTimeouts::default());
        let live = nth(60000);
        ct.commit(&live, 0).unwrap();
        answer(&mut ct, &live, 1);
        let mut udp = nth(60001);
        udp.key.proto = proto::UDP;
        udp.tcp_flags = 0;
        let u = ct.commit(&udp, 1).unwrap();
        let ur = ct.lookup(&FlowKey { t: udp.xlate.reversed(), proto: proto::UDP }, 1).unwrap();
        ct.touch(ur, 0, 60, 1);
        assert!(ct.entry(u).assured(), "a UDP flow is assured by its reply");
        for i in 0..4000 {
            if let Some(o) = ct.commit(&nth(i), 10) {
                let r = ct.lookup(&FlowKey { t: nth(i).xlate.reversed(), proto: proto::TCP }, 10).unwrap();
                ct.touch(r, SYN | ACK, 60, 10);
                assert!(ct.entry(o).replied && !ct.entry(o).assured(), "SYN_RECV is answered, not assured");
            }
        }
        assert_eq!(ct.stats.refused, 0, "half-open flows gave way to every new flow");
        assert!(ct.stats.evicted > 0);
        assert!(ct.lookup(&live.key, 20).is_some(), "the established flow is kept");
        assert!(ct.lookup(&udp.key, 20).is_some(), "the answered UDP flow is kept");
        // A connection made during the flood: its slot is taken from a half-open flow, and
        // once its handshake is done the flood cannot take it back.
        let fresh = nth(50000);
        assert!(ct.commit(&fresh, 20).is_some());
        answer(&mut ct, &fresh, 21);
        for i in 10000..14000 {
            let _ = ct.commit(&nth(i), 22);
        }
        assert!(ct.lookup(&fresh.key, 23).is_some() && ct.lookup(&live.key, 23).is_some());
    }

    fn answer(ct: &mut Conntrack, f: &NewFlow, now: u64) {
        let o = ct.lookup(&f.key, now).expect("original entry");
        let r = ct.lookup(&FlowKey { t: f.xlate.reversed(), proto: f.key.proto }, now).expect("reply entry");
        ct.touch(r, SYN | ACK, 60, now);
        ct.touch(o, ACK, 60, now);
    }

    /// Issue 9 item 4: when both keys of a new flow fall into one full set, the reply entry
    /// never takes the original entry's slot (the flow would be translated again on its next
    /// packet).
    #[test]
    fn a_flow_never_evicts_its_own_entry() {
        // One set of eight ways: every key shares it.
        let mut ct = Conntrack::new(4, 7, CtTimeouts::default());
        assert_eq!(ct.capacity(), crate::flowtable::WAYS);
        for i in 0..3 {
            ct.commit(&nth(i), 0).unwrap();
            answer(&mut ct, &nth(i), 1);
        }
        // Two ways left: the new flow takes both.
        let f = nth(10);
        let o = ct.commit(&f, 2).unwrap();
        assert_eq!(ct.lookup(&f.key, 3), Some(o), "the original entry is where commit said");
        assert!(ct.lookup(&FlowKey { t: f.xlate.reversed(), proto: proto::TCP }, 3).is_some());
        answer(&mut ct, &f, 3);
        // Full of answered flows: a new flow is refused, it does not evict itself or others.
        let g = nth(11);
        assert_eq!(ct.commit(&g, 4), None);
        assert!(
            ct.lookup(&g.key, 5).is_none()
                && ct.lookup(&FlowKey { t: g.xlate.reversed(), proto: proto::TCP }, 5).is_none()
        );
        for i in [0, 1, 2, 10] {
            assert!(ct.lookup(&nth(i).key, 5).is_some(), "flow {i} kept");
        }
    }

    #[test]
    fn unanswered_flows_expire_sooner() {
        let t = CtTimeouts { unreplied: 30, udp: 120, ..CtTimeouts::default() };
        let mut ct = Conntrack::new(64, 7, t);
        let mut f = flow();
        f.key.proto = proto::UDP;
        f.tcp_flags = 0;
        let o = ct.commit(&f, 0).unwrap();
        ct.touch(o, 0, 10, 10);
        assert!(ct.lookup(&f.key, 39).is_some());
        assert!(ct.lookup(&f.key, 40).is_none(), "one-way UDP lives 30");
        let o = ct.commit(&f, 100).unwrap();
        let r = ct.lookup(&FlowKey { t: f.xlate.reversed(), proto: proto::UDP }, 101).unwrap();
        ct.touch(r, 0, 10, 101);
        assert!(ct.lookup(&f.key, 220).is_some(), "answered UDP lives the UDP timeout");
        assert!(ct.entry(o).replied);
        // A TCP flow picked up mid-stream is short-lived until the other side speaks.
        let mut g = flow();
        g.tcp_flags = ACK;
        ct.commit(&g, 1000).unwrap();
        assert_eq!(ct.entry(ct.lookup(&g.key, 1001).unwrap()).state, TcpState::Established);
        assert!(ct.lookup(&g.key, 1030).is_none());
    }

    #[test]
    fn remove_flow_frees_both_entries() {
        let mut ct = Conntrack::new(64, 7, CtTimeouts::default());
        let f = flow();
        let o = ct.commit(&f, 0).unwrap();
        ct.remove_flow(o);
        assert_eq!(ct.entries(), 0);
        assert!(ct.lookup(&FlowKey { t: f.xlate.reversed(), proto: proto::TCP }, 1).is_none());
    }

    #[test]
    fn bounded_with_eviction() {
        let mut ct = Conntrack::new(64, 7, CtTimeouts::default());
        for i in 0..1000u16 {
            let mut f = flow();
            f.key.t.sport = i;
            f.xlate.sport = i;
            ct.commit(&f, 0);
        }
        assert!(ct.entries() <= ct.capacity());
        assert!(ct.stats.evicted > 0);
        assert_eq!(ct.stats.created, 1000);
    }
}
