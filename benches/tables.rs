//! Each table's lookup alone, against the naive structure it replaces, in the same run:
//! LPM vs a linear scan of the routes, the policy classifier vs the rule list it was compiled
//! from, the service frontend hash vs a scan, plus Maglev choice and conntrack lookup at
//! 1,000,000 flows; and compiling a classifier from 4,000 overlapping ipBlock peers
//! (`0.0.0.0/0 except` a distinct /32), against building the rule list it compiles from.

use criterion::{black_box, criterion_group, Criterion};
use podswitch_benches::*;
use std::time::{Duration, Instant};
use switch_core::addr::{Addr, Prefix};
use switch_core::conntrack::{FlowKey, Tuple};
use switch_core::endpoint::Identity;
use switch_core::policy::{Classifier, DirectionRules, PeerMatch, PolicyRule, PortMatch, RuleId};
use switch_core::route::{NodeId, RouteTable, RouteTarget};
use switch_core::service::FrontendKind;
use switch_core::testbed::{self as tb, synthetic_vip};
use switch_core::wire::proto;

fn routes() -> (RouteTable, Vec<(Prefix, RouteTarget)>) {
    let mut e: Vec<(Prefix, RouteTarget)> = (0..10_000u32)
        .map(|i| {
            let a = std::net::Ipv4Addr::from(0x0a00_0000 + (i << 8));
            (Prefix::new(a.into(), 24).expect("prefix"), RouteTarget::Tunnel(NodeId((i % 100) as u16)))
        })
        .collect();
    e.push(("0.0.0.0/0".parse().expect("default"), RouteTarget::Host));
    e.push(("10.0.0.0/8".parse().expect("cluster"), RouteTarget::Blackhole));
    (RouteTable::build(e.clone()), e)
}

fn rules() -> DirectionRules {
    let mut rules: Vec<PolicyRule> = (0..RULES as u32)
        .map(|i| PolicyRule {
            id: RuleId(i),
            peers: vec![if i % 2 == 0 {
                PeerMatch::Identity(Identity(100_000 + i))
            } else {
                PeerMatch::Cidr {
                    prefix: Prefix::new(std::net::Ipv4Addr::from(0xac10_0000 + ((i / 2) << 8)).into(), 24).expect("p"),
                    except: vec![],
                }
            }],
            ports: vec![PortMatch { proto: Some(proto::TCP), lo: 1 + (i % 1000) as u16, hi: 1 + (i % 1000) as u16 }],
        })
        .collect();
    rules.push(PolicyRule {
        id: RuleId(RULES as u32),
        peers: vec![PeerMatch::Cidr { prefix: "10.0.0.0/8".parse().expect("p"), except: vec![] }],
        ports: vec![],
    });
    DirectionRules { rules }
}

/// Issue 9 item 18: one rule with `n` peers `0.0.0.0/0 except <a distinct /32>`.
fn overlapping_peers(n: u32) -> DirectionRules {
    let peers = (0..n)
        .map(|i| PeerMatch::Cidr {
            prefix: "0.0.0.0/0".parse().expect("p"),
            except: vec![Prefix::new(std::net::Ipv4Addr::from(0x0b00_0000 + i * 7).into(), 32).expect("p")],
        })
        .collect();
    let ports = vec![PortMatch { proto: Some(proto::TCP), lo: 443, hi: 443 }];
    DirectionRules { rules: vec![PolicyRule { id: RuleId(0), peers, ports }] }
}

fn time_ns(n: usize, mut f: impl FnMut(usize)) -> f64 {
    let mut v: Vec<f64> = (0..5)
        .map(|_| {
            let s = Instant::now();
            for i in 0..n {
                f(i);
            }
            s.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[2]
}

fn bench(c: &mut Criterion) {
    let (rt, entries) = routes();
    let probes: Vec<Addr> = (0..4096u32).map(|i| Addr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i * 617))).collect();
    let dr = rules();
    let cls = Classifier::compile(&dr).expect("within the limits");
    let wide = overlapping_peers(4000);
    let peer = Addr::from(std::net::Ipv4Addr::new(10, 244, 2, 5));
    let t = tables();
    let mut w = worker();
    prefill(&mut w, &t, 10 * SEC);
    let ct = w.conntrack();
    let keys: Vec<FlowKey> = (0..4096usize)
        .map(|i| {
            let i = i * 241 % flows();
            FlowKey {
                t: Tuple {
                    src: tb::POD_A_IP.parse::<std::net::IpAddr>().expect("a").into(),
                    dst: synthetic_vip(i % SERVICES),
                    sport: 1024 + (i / SERVICES) as u16,
                    dport: 80,
                },
                proto: proto::TCP,
            }
        })
        .collect();
    let frontends: Vec<(Addr, u16, u8)> = t.services.frontends().map(|f| (f.addr, f.port, f.proto)).collect();
    let svc = t.services.port(t.services.lookup(synthetic_vip(77), 80, proto::TCP).expect("svc").target);

    let mut g = c.benchmark_group("tables");
    g.measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500)).sample_size(30);
    g.bench_function("route_lpm_10k", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(rt.lookup(probes[i]))
        })
    });
    g.bench_function("policy_classifier_10k_rules", |b| {
        b.iter(|| black_box(cls.lookup(peer, Identity(300), proto::TCP, Some(8080))))
    });
    g.bench_function("policy_compile_4000_overlapping_peers", |b| {
        b.iter(|| black_box(Classifier::compile(black_box(&wide)).expect("within the limits")))
    });
    g.bench_function("service_frontend_lookup_10k", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % SERVICES;
            black_box(t.services.lookup(synthetic_vip(i), 80, proto::TCP))
        })
    });
    g.bench_function("maglev_pick", |b| {
        let mut h = 0u64;
        b.iter(|| {
            h = h.wrapping_add(0x9e37_79b9);
            black_box(svc.select(FrontendKind::ClusterIp, h).is_ok())
        })
    });
    g.bench_function("conntrack_lookup_1m", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(ct.lookup(&keys[i], 11 * SEC))
        })
    });
    g.finish();

    // Same-run comparison with the naive structures.
    let lpm = time_ns(1 << 16, |i| {
        black_box(rt.lookup(probes[i & 4095]));
    });
    let scan = time_ns(1 << 10, |i| {
        let a = probes[i & 4095];
        black_box(entries.iter().filter(|(p, _)| p.is_v4() && p.contains(a)).max_by_key(|(p, _)| p.len()));
    });
    let cl = time_ns(1 << 16, |_| {
        black_box(cls.lookup(peer, Identity(300), proto::TCP, Some(8080)));
    });
    let naive = time_ns(1 << 10, |_| {
        black_box(dr.first_match(peer, Identity(300), proto::TCP, Some(8080)));
    });
    // Compiling 4,000 overlapping peers against only building the rule list (the input).
    let compile = time_ns(16, |_| {
        black_box(Classifier::compile(&wide).expect("within the limits"));
    });
    let build = time_ns(16, |_| {
        black_box(overlapping_peers(4000));
    });
    let wide_cls = Classifier::compile(&wide).expect("within the limits");
    // An IPv6 peer no ipBlock admits: the rule list tries all 4,000 before saying no.
    let v6_peer = Addr::from("fd00::5".parse::<std::net::IpAddr>().expect("v6"));
    let wl = time_ns(1 << 16, |_| {
        black_box(wide_cls.lookup(v6_peer, Identity::WORLD, proto::TCP, Some(443)));
    });
    let wl_naive = time_ns(1 << 10, |_| {
        black_box(wide.first_match(v6_peer, Identity::WORLD, proto::TCP, Some(443)));
    });
    let fe = time_ns(1 << 16, |i| {
        black_box(t.services.lookup(synthetic_vip(i % SERVICES), 80, proto::TCP));
    });
    let fe_scan = time_ns(1 << 10, |i| {
        let v = synthetic_vip(i % SERVICES);
        black_box(frontends.iter().find(|f| **f == (v, 80, proto::TCP)));
    });
    let ctl = time_ns(1 << 16, |i| {
        black_box(ct.lookup(&keys[i & 4095], 11 * SEC));
    });
    println!("\n== table lookups, one core, against the naive structure in the same run ==");
    println!("{:<42} {:>10} {:>12} {:>9}", "lookup", "ns", "naive ns", "speedup");
    println!("{:<42} {:>10.1} {:>12.1} {:>8.0}x", "route LPM, 10,002 prefixes", lpm, scan, scan / lpm);
    println!("{:<42} {:>10.1} {:>12.1} {:>8.0}x", "policy classifier, 10,001 rules", cl, naive, naive / cl);
    println!(
        "{:<42} {:>10.1} {:>12.1} {:>8.0}x",
        "policy classifier, 4,000 ipBlocks, denied",
        wl,
        wl_naive,
        wl_naive / wl
    );
    println!("{:<42} {:>10.1} {:>12.1} {:>8.0}x", "service frontend, 10,006 frontends", fe, fe_scan, fe_scan / fe);
    println!("{:<42} {:>10.1} {:>12} {:>9}", "conntrack lookup, 1,000,000 flows", ctl, "-", "-");
    println!("\n== compiling 4,000 peers `0.0.0.0/0 except <distinct /32>`, against building their rule list ==");
    println!("{:<42} {:>10} {:>12} {:>9}", "", "compile us", "rule list us", "ratio");
    println!("{:<42} {:>10.1} {:>12.1} {:>8.1}x", "Classifier::compile", compile / 1e3, build / 1e3, compile / build);
    println!(
        "{:<42} {:>10} intervals, {} bytes ({:.3} bytes/peer)",
        "compiled",
        wide_cls.cidr_intervals(),
        wide_cls.table_bytes(),
        wide_cls.table_bytes() as f64 / 4000.0
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
