//! The compiled classifier: identity peers in a hash map, CIDR peers in a map of disjoint
//! address intervals (binary search), rules without peers in one list. Each leads to a short
//! list of port ranges. Lookup cost does not grow with the number of rules naming other peers.

use super::model::{DirectionRules, PeerMatch, PortMatch, RuleId};
use crate::addr::{Addr, Prefix};
use crate::endpoint::Identity;
use crate::hash::FastMap;

/// Index of a classifier in the policy table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClassifierId(pub u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PortEntry {
    m: PortMatch,
    rule: RuleId,
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
    starts: Vec<u128>,
    spans: Vec<Span>,
    rules: usize,
}

const V4_MAPPED: (u128, u128) = (0xffff_0000_0000, 0xffff_ffff_ffff);

/// `prefix` minus `except` (and, for IPv6 prefixes, minus the IPv4-mapped block) as sorted,
/// disjoint inclusive ranges.
fn ranges(prefix: &Prefix, except: &[Prefix]) -> Vec<(u128, u128)> {
    let mut out = vec![prefix.range()];
    let mut cut = |hole: (u128, u128)| {
        let mut next = Vec::with_capacity(out.len() + 1);
        for &(lo, hi) in &out {
            if hole.1 < lo || hole.0 > hi {
                next.push((lo, hi));
                continue;
            }
            if hole.0 > lo {
                next.push((lo, hole.0 - 1));
            }
            if hole.1 < hi {
                next.push((hole.1 + 1, hi));
            }
        }
        out = next;
    };
    if !prefix.is_v4() {
        cut(V4_MAPPED);
    }
    for e in except {
        if e.is_v4() == prefix.is_v4() {
            cut(e.range());
        }
    }
    out
}

impl Classifier {
    /// Compiles the rules of one direction.
    pub fn compile(rules: &DirectionRules) -> Classifier {
        let ports_of = |ports: &[PortMatch], id: RuleId| -> Vec<PortEntry> {
            if ports.is_empty() {
                vec![PortEntry { m: PortMatch::ANY, rule: id }]
            } else {
                ports.iter().map(|m| PortEntry { m: *m, rule: id }).collect()
            }
        };
        let mut any_peer: Vec<PortEntry> = Vec::new();
        let mut by_identity: FastMap<Identity, Vec<PortEntry>> = FastMap::default();
        let mut cidr_ranges: Vec<((u128, u128), Vec<PortEntry>)> = Vec::new();
        for r in &rules.rules {
            let entries = ports_of(&r.ports, r.id);
            if r.peers.is_empty() {
                any_peer.extend_from_slice(&entries);
            }
            for p in &r.peers {
                match p {
                    PeerMatch::Identity(i) => by_identity.entry(*i).or_default().extend_from_slice(&entries),
                    PeerMatch::Cidr { prefix, except } => {
                        for rg in ranges(prefix, except) {
                            cidr_ranges.push((rg, entries.clone()));
                        }
                    }
                }
            }
        }
        // Interval boundaries.
        let mut starts: Vec<u128> = vec![0];
        for ((lo, hi), _) in &cidr_ranges {
            starts.push(*lo);
            if let Some(n) = hi.checked_add(1) {
                starts.push(n);
            }
        }
        starts.sort_unstable();
        starts.dedup();
        let mut per_interval: Vec<Vec<PortEntry>> = vec![Vec::new(); starts.len()];
        for ((lo, hi), entries) in &cidr_ranges {
            let first = starts.partition_point(|s| s < lo);
            let last = starts.partition_point(|s| s <= hi);
            for slot in &mut per_interval[first..last] {
                slot.extend_from_slice(entries);
            }
        }
        let mut arena: Vec<PortEntry> = Vec::new();
        let mut push = |v: &[PortEntry]| {
            let s = Span { start: arena.len() as u32, len: v.len() as u32 };
            arena.extend_from_slice(v);
            s
        };
        let any_peer = push(&any_peer);
        let by_identity = by_identity.iter().map(|(k, v)| (*k, push(v))).collect();
        let spans = per_interval.iter().map(|v| push(v)).collect();
        Classifier { arena, any_peer, by_identity, starts, spans, rules: rules.rules.len() }
    }

    #[inline]
    fn scan(&self, s: Span, proto: u8, port: Option<u16>) -> Option<RuleId> {
        let slice = &self.arena[s.start as usize..(s.start + s.len) as usize];
        slice.iter().filter(|e| e.m.matches(proto, port)).map(|e| e.rule).min()
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
        if self.starts.len() > 1 {
            let i = self.starts.partition_point(|s| *s <= addr.bits()) - 1;
            best = min_opt(best, self.scan(self.spans[i], proto, port));
        }
        best
    }

    /// Number of source rules.
    pub fn rule_count(&self) -> usize {
        self.rules
    }
}

fn min_opt(a: Option<RuleId>, b: Option<RuleId>) -> Option<RuleId> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// All classifiers of a snapshot, and the text behind each rule id.
#[derive(Debug, Clone, Default)]
pub struct PolicyTable {
    classifiers: Vec<Classifier>,
    rule_names: Vec<String>,
}

impl PolicyTable {
    pub fn new(classifiers: Vec<Classifier>, rule_names: Vec<String>) -> PolicyTable {
        PolicyTable { classifiers, rule_names }
    }

    #[inline]
    pub fn get(&self, id: ClassifierId) -> &Classifier {
        &self.classifiers[id.0 as usize]
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
        self.classifiers.iter().map(Classifier::rule_count).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::PolicyRule;
    use super::*;
    use crate::wire::proto;
    use proptest::prelude::*;

    fn a(s: &str) -> Addr {
        Addr::from(s.parse::<core::net::IpAddr>().unwrap())
    }

    #[test]
    fn ipblock_with_except() {
        let rules = DirectionRules {
            rules: vec![PolicyRule {
                id: RuleId(0),
                peers: vec![PeerMatch::Cidr {
                    prefix: "10.0.0.0/8".parse().unwrap(),
                    except: vec!["10.1.0.0/16".parse().unwrap()],
                }],
                ports: vec![PortMatch { proto: Some(proto::TCP), lo: 80, hi: 81 }],
            }],
        };
        let c = Classifier::compile(&rules);
        let w = Identity::WORLD;
        assert_eq!(c.lookup(a("10.2.3.4"), w, proto::TCP, Some(80)), Some(RuleId(0)));
        assert_eq!(c.lookup(a("10.2.3.4"), w, proto::TCP, Some(81)), Some(RuleId(0)));
        assert_eq!(c.lookup(a("10.2.3.4"), w, proto::TCP, Some(82)), None);
        assert_eq!(c.lookup(a("10.2.3.4"), w, proto::UDP, Some(80)), None);
        assert_eq!(c.lookup(a("10.1.3.4"), w, proto::TCP, Some(80)), None);
        assert_eq!(c.lookup(a("11.0.0.1"), w, proto::TCP, Some(80)), None);
        assert_eq!(c.lookup(a("10.2.3.4"), w, proto::ICMP, None), None);
    }

    #[test]
    fn v6_prefix_does_not_match_v4() {
        let rules = DirectionRules {
            rules: vec![PolicyRule {
                id: RuleId(3),
                peers: vec![PeerMatch::Cidr { prefix: "::/0".parse().unwrap(), except: vec![] }],
                ports: vec![],
            }],
        };
        let c = Classifier::compile(&rules);
        assert_eq!(c.lookup(a("fd00::1"), Identity::WORLD, proto::ICMPV6, None), Some(RuleId(3)));
        assert_eq!(c.lookup(a("10.0.0.1"), Identity::WORLD, proto::ICMP, None), None);
    }

    #[test]
    fn isolated_with_no_rules_denies() {
        let c = Classifier::compile(&DirectionRules::default());
        assert_eq!(c.lookup(a("10.0.0.1"), Identity(300), proto::TCP, Some(80)), None);
    }

    fn arb_prefix() -> impl Strategy<Value = Prefix> {
        (0u8..=3, 8u8..=32).prop_map(|(net, len)| {
            let base = u32::from_be_bytes([10, net, 0, 0]);
            let m = u32::MAX << (32 - u32::from(len));
            Prefix::new(core::net::IpAddr::V4((base & m).into()), len).unwrap()
        })
    }

    fn arb_rule(id: u32) -> impl Strategy<Value = PolicyRule> {
        let peer = prop_oneof![
            (256u32..262).prop_map(|i| PeerMatch::Identity(Identity(i))),
            (arb_prefix(), proptest::collection::vec(arb_prefix(), 0..2))
                .prop_map(|(prefix, except)| PeerMatch::Cidr { prefix, except }),
        ];
        let port = prop_oneof![
            Just(PortMatch::ANY),
            (prop_oneof![Just(proto::TCP), Just(proto::UDP), Just(proto::SCTP)], 0u16..100, 0u16..20)
                .prop_map(|(p, lo, w)| PortMatch { proto: Some(p), lo, hi: lo + w }),
        ];
        (proptest::collection::vec(peer, 0..3), proptest::collection::vec(port, 0..3))
            .prop_map(move |(peers, ports)| PolicyRule { id: RuleId(id), peers, ports })
    }

    fn arb_rules() -> impl Strategy<Value = DirectionRules> {
        (0usize..12).prop_flat_map(|n| {
            let v: Vec<_> = (0..n as u32).map(arb_rule).collect();
            v.prop_map(|rules| DirectionRules { rules })
        })
    }

    proptest! {
        #[test]
        fn classifier_matches_naive_rule_list(rules in arb_rules(),
                                              probes in proptest::collection::vec((0u8..=3, any::<u16>(), 255u32..263, 0usize..4, 0u16..130), 1..64)) {
            let c = Classifier::compile(&rules);
            for (net, low, ident, p, port) in probes {
                let addr = Addr::from(core::net::Ipv4Addr::from(u32::from_be_bytes([10, net, (low >> 8) as u8, low as u8])));
                let (pr, port) = [(proto::TCP, Some(port)), (proto::UDP, Some(port)), (proto::SCTP, Some(port)), (proto::ICMP, None)][p];
                let id = Identity(ident);
                prop_assert_eq!(c.lookup(addr, id, pr, port), rules.first_match(addr, id, pr, port));
            }
        }
    }
}
