//! Classifier tests: examples, the bound on CIDR entries, and the differential property test
//! of the compiled classifier against the naive rule list.

use super::*;
use crate::addr::{Addr, Prefix};
use crate::endpoint::Identity;
use crate::wire::proto;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use proptest::prelude::*;

fn a(s: &str) -> Addr {
    Addr::from(s.parse::<IpAddr>().unwrap())
}

fn compile(rules: &DirectionRules) -> Classifier {
    Classifier::compile(rules).expect("within the limit")
}

fn cidr(prefix: &str, except: &[&str]) -> PeerMatch {
    PeerMatch::Cidr { prefix: prefix.parse().unwrap(), except: except.iter().map(|e| e.parse().unwrap()).collect() }
}

fn host(i: u32) -> Prefix {
    Prefix::new(IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i * 7)), 32).unwrap()
}

#[test]
fn ipblock_with_except() {
    let rules = DirectionRules {
        rules: vec![PolicyRule {
            id: RuleId(0),
            peers: vec![cidr("10.0.0.0/8", &["10.1.0.0/16"])],
            ports: vec![PortMatch { proto: Some(proto::TCP), lo: 80, hi: 81 }],
        }],
    };
    let c = compile(&rules);
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
    let rules =
        DirectionRules { rules: vec![PolicyRule { id: RuleId(3), peers: vec![cidr("::/0", &[])], ports: vec![] }] };
    let c = compile(&rules);
    assert_eq!(c.lookup(a("fd00::1"), Identity::WORLD, proto::ICMPV6, None), Some(RuleId(3)));
    assert_eq!(c.lookup(a("10.0.0.1"), Identity::WORLD, proto::ICMP, None), None);
}

#[test]
fn isolated_with_no_rules_denies() {
    let c = compile(&DirectionRules::default());
    assert_eq!(c.lookup(a("10.0.0.1"), Identity(300), proto::TCP, Some(80)), None);
    assert_eq!(c.cidr_intervals(), 0);
}

/// Issue 9 item 18: 4,000 peers `0.0.0.0/0 except <a distinct /32>` (plus, here, a /16 every
/// peer excepts) compile to a handful of intervals. Peers are ORed, so a /32 one peer excepts
/// is admitted by the others; the /16 they all except is not.
#[test]
fn four_thousand_overlapping_peers_with_excepts_compile_small() {
    let peers: Vec<PeerMatch> = (0..4000)
        .map(|i| PeerMatch::Cidr {
            prefix: "0.0.0.0/0".parse().unwrap(),
            except: vec![host(i), "192.168.0.0/16".parse().unwrap()],
        })
        .collect();
    let tcp80 = PortMatch { proto: Some(proto::TCP), lo: 80, hi: 80 };
    let rules = DirectionRules { rules: vec![PolicyRule { id: RuleId(0), peers, ports: vec![tcp80] }] };
    let c = compile(&rules);
    // Below the v4-mapped block, the IPv4 space before and after 192.168/16, the /16, above.
    assert_eq!(c.cidr_intervals(), 5);
    assert!(c.table_bytes() < 1024, "{} bytes", c.table_bytes());
    let w = Identity::WORLD;
    for probe in [
        host(0).addr(),
        host(1234).addr(),
        host(3999).addr(),
        a("11.0.0.8"),
        a("8.8.8.8"),
        a("0.0.0.0"),
        a("255.255.255.255"),
    ] {
        assert_eq!(c.lookup(probe, w, proto::TCP, Some(80)), Some(RuleId(0)), "{probe}");
        assert_eq!(c.lookup(probe, w, proto::TCP, Some(80)), rules.first_match(probe, w, proto::TCP, Some(80)));
        assert_eq!(c.lookup(probe, w, proto::TCP, Some(81)), None, "{probe}");
    }
    for probe in [a("192.168.0.0"), a("192.168.7.9"), a("192.168.255.255"), a("fd00::1"), a("::1")] {
        let want = if probe.is_v4() { None } else { rules.first_match(probe, w, proto::TCP, Some(80)) };
        assert_eq!(c.lookup(probe, w, proto::TCP, Some(80)), want, "{probe}");
        assert_eq!(c.lookup(probe, w, proto::TCP, Some(80)), rules.first_match(probe, w, proto::TCP, Some(80)));
    }
    assert_eq!(c.lookup(a("192.168.1.1"), w, proto::TCP, Some(80)), None);
}

/// Rules that each except a different /32 on their own port: each /32 is refused on its own
/// rule's port only. At 4,000 such rules the intervals would hold about 32 million entries,
/// past [`MAX_CIDR_ENTRIES`], and compiling is refused.
#[test]
fn distinct_excepts_on_distinct_ports_are_bounded() {
    let shape = |n: u32| DirectionRules {
        rules: (0..n)
            .map(|i| PolicyRule {
                id: RuleId(i),
                peers: vec![PeerMatch::Cidr { prefix: "0.0.0.0/0".parse().unwrap(), except: vec![host(i)] }],
                ports: vec![PortMatch { proto: Some(proto::TCP), lo: 1000 + i as u16, hi: 1000 + i as u16 }],
            })
            .collect(),
    };
    let rules = shape(100);
    let c = compile(&rules);
    let w = Identity::WORLD;
    assert_eq!(c.lookup(host(7).addr(), w, proto::TCP, Some(1007)), None, "excepted on its own port");
    assert_eq!(c.lookup(host(7).addr(), w, proto::TCP, Some(1008)), Some(RuleId(8)));
    assert_eq!(c.lookup(host(8).addr(), w, proto::TCP, Some(1007)), Some(RuleId(7)));
    assert_eq!(c.lookup(a("8.8.8.8"), w, proto::TCP, Some(1099)), Some(RuleId(99)));
    assert_eq!(c.lookup(a("8.8.8.8"), w, proto::TCP, Some(1100)), None);

    let e = Classifier::compile(&shape(4000)).unwrap_err();
    assert_eq!(e, CompileError::TooManyCidrEntries { limit: MAX_CIDR_ENTRIES });
    assert!(e.to_string().contains(&MAX_CIDR_ENTRIES.to_string()), "{e}");
}

/// Equal entry sets in separate parts of the space share one list in the arena.
#[test]
fn equal_sets_share_a_list() {
    let peers = (0..1000u32).map(|i| PeerMatch::Cidr {
        prefix: Prefix::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i << 9))), 24).unwrap(),
        except: vec![],
    });
    let ports = (0..50).map(|p| PortMatch { proto: Some(proto::UDP), lo: p, hi: p }).collect();
    let c = compile(&DirectionRules { rules: vec![PolicyRule { id: RuleId(0), peers: peers.collect(), ports }] });
    assert_eq!(c.cidr_intervals(), 2001);
    // 2,001 intervals of 16 + 8 bytes; one list of 50 entries, not 1,000.
    assert!(c.table_bytes() < 2001 * 24 + 60 * 12, "{} bytes", c.table_bytes());
}

/// A prefix of the test space: IPv4 `10.n.x.y/len` or its image `fd00::10.n.x.y/(96 + len)`,
/// now and then a whole family or a wide block.
fn arb_prefix() -> impl Strategy<Value = Prefix> {
    let narrow = (any::<bool>(), 0u8..=3, any::<u16>(), 8u8..=32).prop_map(|(v6, net, low, len)| {
        let bits = u32::from_be_bytes([10, net, (low >> 8) as u8, low as u8]) & (u32::MAX << (32 - u32::from(len)));
        if v6 {
            let a = Ipv6Addr::from((0xfd00u128 << 112) | u128::from(bits));
            Prefix::new(IpAddr::V6(a), 96 + len).unwrap()
        } else {
            Prefix::new(IpAddr::V4(bits.into()), len).unwrap()
        }
    });
    prop_oneof![
        8 => narrow,
        1 => prop_oneof![Just("0.0.0.0/0"), Just("::/0"), Just("10.0.0.0/8"), Just("fd00::/8"), Just("10.1.0.0/16")]
            .prop_map(|s| s.parse::<Prefix>().unwrap()),
    ]
}

/// A prefix inside `p`: `extra` bits longer (at most a host), at its first or last address
/// or anywhere, so that excepts touch the edges of the block and of each other.
fn inside(p: &Prefix, extra: u8, place: u8, bits: u128) -> Prefix {
    let (lo, hi) = p.range();
    let max = if p.is_v4() { 32 } else { 128 };
    let len = p.len().saturating_add(extra).min(max);
    let at = match place {
        0 => lo,
        1 => hi,
        _ => lo | (bits & (hi - lo)),
    };
    let ip = Addr::from_bits(at).to_ip();
    let keep = if p.is_v4() { 96 + len } else { len };
    let net = Addr::from_bits(at & crate::addr::mask(keep)).to_ip();
    Prefix::new(net, len).unwrap_or_else(|_| Prefix::host(ip))
}

fn arb_peer() -> impl Strategy<Value = PeerMatch> {
    let sub = (0u8..=32, 0u8..4, any::<u128>());
    prop_oneof![
        1 => (256u32..262).prop_map(|i| PeerMatch::Identity(Identity(i))),
        3 => (arb_prefix(), proptest::collection::vec(arb_prefix(), 0..3), proptest::collection::vec(sub, 0..4))
            .prop_map(|(prefix, mut except, subs)| {
                except.extend(subs.iter().map(|&(extra, place, bits)| inside(&prefix, extra, place, bits)));
                PeerMatch::Cidr { prefix, except }
            }),
    ]
}

fn arb_rule(id: u32) -> impl Strategy<Value = PolicyRule> {
    let port = prop_oneof![
        Just(PortMatch::ANY),
        (prop_oneof![Just(proto::TCP), Just(proto::UDP), Just(proto::SCTP)], 0u16..100, 0u16..20)
            .prop_map(|(p, lo, w)| PortMatch { proto: Some(p), lo, hi: lo + w }),
    ];
    // Ids may repeat and go down, as the control plane's egress named ports make them.
    (proptest::collection::vec(arb_peer(), 0..6), proptest::collection::vec(port, 0..3), 0u32..3)
        .prop_map(move |(peers, ports, dup)| PolicyRule { id: RuleId(id.saturating_sub(dup)), peers, ports })
}

fn arb_rules() -> impl Strategy<Value = DirectionRules> {
    (0usize..12).prop_flat_map(|n| {
        let v: Vec<_> = (0..n as u32).map(arb_rule).collect();
        v.prop_map(|rules| DirectionRules { rules })
    })
}

/// A probe address: in the test space of either family, or just outside it.
fn arb_addr() -> impl Strategy<Value = Addr> {
    (0u8..=5, any::<u16>(), 0u8..4).prop_map(|(net, low, kind)| {
        let v4 = u32::from_be_bytes([10, net, (low >> 8) as u8, low as u8]);
        match kind {
            0 | 1 => Addr::from(Ipv4Addr::from(v4)),
            2 => Addr::from(Ipv6Addr::from((0xfd00u128 << 112) | u128::from(v4))),
            _ => Addr::from(Ipv6Addr::from((0xfe80u128 << 112) | u128::from(v4))),
        }
    })
}

/// The lowest id among the rules that admit the packet, which is what the classifier reports
/// (equal to the first match when ids follow rule order).
fn lowest_match(rules: &DirectionRules, addr: Addr, id: Identity, pr: u8, port: Option<u16>) -> Option<RuleId> {
    rules
        .rules
        .iter()
        .filter(|r| {
            let one = DirectionRules { rules: vec![(*r).clone()] };
            one.first_match(addr, id, pr, port).is_some()
        })
        .map(|r| r.id)
        .min()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
    #[test]
    fn classifier_matches_naive_rule_list(rules in arb_rules(),
                                          probes in proptest::collection::vec((arb_addr(), 255u32..263, 0usize..5, 0u16..130), 1..64)) {
        let c = compile(&rules);
        let ordered = rules.rules.windows(2).all(|w| w[0].id < w[1].id);
        for (addr, ident, p, port) in probes {
            let (pr, port) = [(proto::TCP, Some(port)), (proto::UDP, Some(port)), (proto::SCTP, Some(port)), (proto::ICMP, None), (proto::ICMPV6, None)][p];
            let id = Identity(ident);
            let got = c.lookup(addr, id, pr, port);
            prop_assert_eq!(got, lowest_match(&rules, addr, id, pr, port), "{} {:?}", addr, rules);
            if ordered {
                prop_assert_eq!(got, rules.first_match(addr, id, pr, port));
            }
        }
    }

    /// Probes at every range boundary and its neighbours, where an off-by-one would show.
    #[test]
    fn classifier_matches_at_boundaries(rules in arb_rules()) {
        let c = compile(&rules);
        let mut edges = Vec::new();
        for r in &rules.rules {
            for p in &r.peers {
                if let PeerMatch::Cidr { prefix, except } = p {
                    for q in core::iter::once(prefix).chain(except) {
                        let (lo, hi) = q.range();
                        edges.extend([lo.wrapping_sub(1), lo, lo.wrapping_add(1), hi.wrapping_sub(1), hi, hi.wrapping_add(1)]);
                    }
                }
            }
        }
        for bits in edges {
            let addr = Addr::from_bits(bits);
            let want = lowest_match(&rules, addr, Identity::WORLD, proto::TCP, Some(50));
            prop_assert_eq!(c.lookup(addr, Identity::WORLD, proto::TCP, Some(50)), want, "{}", addr);
        }
    }
}
