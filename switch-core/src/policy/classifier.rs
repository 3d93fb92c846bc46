//! The compiled classifier: identity peers in a hash map, CIDR peers in a map of disjoint
//! address intervals (binary search), rules without peers in one list. Each leads to a short
//! list of port ranges. Lookup cost does not grow with the number of rules naming other peers.
//!
//! The CIDR intervals come from one sweep over the sorted range boundaries, keeping the
//! (rule, port match) pairs active there as counts: an interval starts only where that set
//! changes, so overlapping ipBlocks that admit the same rules (`0.0.0.0/0 except` a different
//! /32 in each of thousands of peers) collapse to a few intervals, and equal sets anywhere in
//! the space share one list. Compile time is O(b log b) in the b range boundaries plus the
//! size of what is built, which [`MAX_CIDR_ENTRIES`] bounds.

use super::model::{DirectionRules, PeerMatch, PortMatch, RuleId};
use crate::addr::{Addr, Prefix};
use crate::endpoint::Identity;
use crate::hash::FastMap;
use std::collections::BTreeMap;
use std::fmt;

/// At most this many (rule, port match) entries over all CIDR intervals of one classifier:
/// the sum, over the disjoint address intervals the ipBlocks (and their excepts) of the rules
/// cut the address space into, of the distinct (rule, port match) pairs that apply in each.
/// Neighbouring intervals with the same pairs count once. It bounds the compile time and
/// memory of one classifier (an entry is 12 bytes and an interval 24, so at most about 3 MiB
/// of entries and 12 MiB of intervals, as intervals with no entry cannot be neighbours).
/// ipBlocks that overlap but admit the same rules and ports count little (4,000 peers
/// `0.0.0.0/0 except` a distinct /32, all in one rule, count 1), while rules that differ in
/// ports and are cut by different excepts count the product (4,000 such rules, one port each:
/// about 32 million, refused).
pub const MAX_CIDR_ENTRIES: usize = 1 << 18;

/// Why a classifier was not built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompileError {
    /// The CIDR intervals would hold more than [`MAX_CIDR_ENTRIES`] entries.
    TooManyCidrEntries { limit: usize },
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompileError::TooManyCidrEntries { limit } => write!(
                f,
                "the ipBlocks cut the address space into intervals needing more than {limit} \
                 (rule, port) entries in total (the classifier limit MAX_CIDR_ENTRIES); \
                 use fewer overlapping ipBlocks with different excepts or ports"
            ),
        }
    }
}

impl std::error::Error for CompileError {}

/// Index of a classifier in the policy table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClassifierId(pub u32);

/// One compiled entry; lists are sorted by rule so that the first match is the lowest rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct PortEntry {
    rule: RuleId,
    m: PortMatch,
}

/// A run of entries in the arena.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Span {
    start: u32,
    len: u32,
}

/// The compiled form of one endpoint set's rules for one direction.
#[derive(Debug, Clone, Default)]
pub struct Classifier {
    arena: Vec<PortEntry>,
    any_peer: Span,
    by_identity: FastMap<Identity, Span>,
    /// Interval starts, ascending, the first is 0; interval `i` runs to `starts[i + 1] - 1`.
    /// Neighbouring intervals never have equal entry sets.
    starts: Vec<u128>,
    spans: Vec<Span>,
    rules: usize,
}

const V4_MAPPED: (u128, u128) = (0xffff_0000_0000, 0xffff_ffff_ffff);

/// `prefix` minus `except` (and, for IPv6 prefixes, minus the IPv4-mapped block) as sorted,
/// disjoint inclusive ranges. O(e log e) in the number of excepts.
fn ranges(prefix: &Prefix, except: &[Prefix]) -> Vec<(u128, u128)> {
    let (lo, hi) = prefix.range();
    let mut holes: Vec<(u128, u128)> =
        except.iter().filter(|e| e.is_v4() == prefix.is_v4()).map(Prefix::range).collect();
    if !prefix.is_v4() {
        holes.push(V4_MAPPED);
    }
    holes.sort_unstable();
    let mut out = Vec::new();
    // `next` is the first address not yet either emitted or inside a hole; None past the top.
    let mut next = Some(lo);
    for (h0, h1) in holes {
        let Some(n) = next else { break };
        if h1 < n {
            continue;
        }
        if h0 > hi {
            break;
        }
        if h0 > n {
            out.push((n, h0 - 1));
        }
        next = h1.checked_add(1);
    }
    if let Some(n) = next {
        if n <= hi {
            out.push((n, hi));
        }
    }
    out
}

/// Where a pair enters (`add`) or leaves the active set.
struct Event {
    at: u128,
    add: bool,
    entry: PortEntry,
}

impl Classifier {
    /// Compiles the rules of one direction, or refuses when the CIDR part would exceed
    /// [`MAX_CIDR_ENTRIES`].
    pub fn compile(rules: &DirectionRules) -> Result<Classifier, CompileError> {
        let ports_of = |ports: &[PortMatch], id: RuleId| -> Vec<PortEntry> {
            if ports.is_empty() {
                vec![PortEntry { rule: id, m: PortMatch::ANY }]
            } else {
                ports.iter().map(|m| PortEntry { rule: id, m: *m }).collect()
            }
        };
        let mut any_peer: Vec<PortEntry> = Vec::new();
        let mut by_identity: FastMap<Identity, Vec<PortEntry>> = FastMap::default();
        let mut events: Vec<Event> = Vec::new();
        for r in &rules.rules {
            let entries = ports_of(&r.ports, r.id);
            if r.peers.is_empty() {
                any_peer.extend_from_slice(&entries);
            }
            for p in &r.peers {
                match p {
                    PeerMatch::Identity(i) => by_identity.entry(*i).or_default().extend_from_slice(&entries),
                    PeerMatch::Cidr { prefix, except } => {
                        for (lo, hi) in ranges(prefix, except) {
                            for &entry in &entries {
                                events.push(Event { at: lo, add: true, entry });
                                if let Some(end) = hi.checked_add(1) {
                                    events.push(Event { at: end, add: false, entry });
                                }
                            }
                        }
                    }
                }
            }
        }
        let mut arena: Vec<PortEntry> = Vec::new();
        let push = |v: &mut Vec<PortEntry>, arena: &mut Vec<PortEntry>| {
            v.sort_unstable();
            v.dedup();
            let s = Span { start: arena.len() as u32, len: v.len() as u32 };
            arena.extend_from_slice(v);
            s
        };
        let any_peer = push(&mut any_peer, &mut arena);
        let by_identity = by_identity.iter_mut().map(|(k, v)| (*k, push(v, &mut arena))).collect();
        let (starts, spans) = sweep(events, &mut arena)?;
        Ok(Classifier { arena, any_peer, by_identity, starts, spans, rules: rules.rules.len() })
    }

    #[inline]
    fn scan(&self, s: Span, proto: u8, port: Option<u16>) -> Option<RuleId> {
        let slice = &self.arena[s.start as usize..(s.start + s.len) as usize];
        slice.iter().find(|e| e.m.matches(proto, port)).map(|e| e.rule)
    }

    /// The rule that admits a packet from (or to) peer `addr` with identity `id`, or `None`
    /// when no rule does. Among several, the lowest rule id is reported, which is the rule
    /// the naive matcher finds first when ids follow rule order.
    #[inline]
    pub fn lookup(&self, addr: Addr, id: Identity, proto: u8, port: Option<u16>) -> Option<RuleId> {
        let mut best = self.scan(self.any_peer, proto, port);
        if let Some(s) = self.by_identity.get(&id) {
            best = min_opt(best, self.scan(*s, proto, port));
        }
        if !self.starts.is_empty() {
            // starts[0] == 0, so the partition point is at least 1.
            let i = self.starts.partition_point(|s| *s <= addr.bits()) - 1;
            best = min_opt(best, self.scan(self.spans[i], proto, port));
        }
        best
    }

    /// Number of source rules.
    pub fn rule_count(&self) -> usize {
        self.rules
    }

    /// Number of disjoint address intervals of the CIDR part (0 without CIDR peers).
    pub fn cidr_intervals(&self) -> usize {
        self.starts.len()
    }

    /// Bytes held by the compiled tables (the identity map counted by its entries).
    pub fn table_bytes(&self) -> usize {
        use core::mem::size_of;
        self.arena.len() * size_of::<PortEntry>()
            + self.by_identity.len() * (size_of::<Identity>() + size_of::<Span>())
            + self.starts.len() * size_of::<u128>()
            + self.spans.len() * size_of::<Span>()
    }
}

/// The CIDR intervals from the range events: one interval wherever the active set of
/// (rule, port match) pairs changes, its list shared with every other interval of the same set.
fn sweep(mut events: Vec<Event>, arena: &mut Vec<PortEntry>) -> Result<(Vec<u128>, Vec<Span>), CompileError> {
    if events.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    // At one position, adds before removes: the ranges removed there were active just before,
    // so a pair's count touches zero only when it really leaves, and every change of
    // membership is a change of the set (neighbouring intervals differ).
    events.sort_unstable_by_key(|e| (e.at, !e.add));
    let mut active: BTreeMap<PortEntry, u32> = BTreeMap::new();
    let mut interned: FastMap<Vec<PortEntry>, Span> = FastMap::default();
    let mut starts: Vec<u128> = vec![0];
    let mut spans: Vec<Span> = vec![Span::default()];
    let mut total = 0usize;
    let mut list: Vec<PortEntry> = Vec::new();
    let mut i = 0;
    while i < events.len() {
        let at = events[i].at;
        let mut changed = false;
        while let Some(e) = events.get(i).filter(|e| e.at == at) {
            if e.add {
                let c = active.entry(e.entry).or_insert(0);
                *c += 1;
                changed |= *c == 1;
            } else if let Some(c) = active.get_mut(&e.entry) {
                *c -= 1;
                if *c == 0 {
                    active.remove(&e.entry);
                    changed = true;
                }
            }
            i += 1;
        }
        if !changed {
            continue;
        }
        list.clear();
        list.extend(active.keys().copied());
        total += list.len();
        if total > MAX_CIDR_ENTRIES {
            return Err(CompileError::TooManyCidrEntries { limit: MAX_CIDR_ENTRIES });
        }
        let span = match interned.get(&list) {
            Some(s) => *s,
            None => {
                let s = Span { start: arena.len() as u32, len: list.len() as u32 };
                arena.extend_from_slice(&list);
                interned.insert(list.clone(), s);
                s
            }
        };
        if at == 0 {
            spans[0] = span;
        } else {
            starts.push(at);
            spans.push(span);
        }
    }
    Ok((starts, spans))
}

fn min_opt(a: Option<RuleId>, b: Option<RuleId>) -> Option<RuleId> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// All classifiers of a snapshot, and the text behind each rule id. Classifiers are shared
/// (reference counted) with other snapshots and with the builder's memory of them, so a change
/// compiles only the classifiers whose rules it changed.
#[derive(Debug, Clone, Default)]
pub struct PolicyTable {
    classifiers: Vec<std::sync::Arc<Classifier>>,
    rule_names: std::sync::Arc<Vec<String>>,
}

impl PolicyTable {
    pub fn new(classifiers: Vec<std::sync::Arc<Classifier>>, rule_names: Vec<String>) -> PolicyTable {
        PolicyTable { classifiers, rule_names: std::sync::Arc::new(rule_names) }
    }

    /// As [`PolicyTable::new`], with rule names shared with other snapshots.
    pub fn with_shared_names(
        classifiers: Vec<std::sync::Arc<Classifier>>,
        rule_names: std::sync::Arc<Vec<String>>,
    ) -> PolicyTable {
        PolicyTable { classifiers, rule_names }
    }

    #[inline]
    pub fn get(&self, id: ClassifierId) -> &Classifier {
        &self.classifiers[id.0 as usize]
    }

    /// Every rule's name, indexed by [`RuleId`].
    pub fn rule_names(&self) -> &[String] {
        &self.rule_names
    }

    pub fn rule_name(&self, id: RuleId) -> &str {
        self.rule_names.get(id.0 as usize).map(String::as_str).unwrap_or("?")
    }

    pub fn len(&self) -> usize {
        self.classifiers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.classifiers.is_empty()
    }

    pub fn rule_count(&self) -> usize {
        self.classifiers.iter().map(|c| c.rule_count()).sum()
    }
}
