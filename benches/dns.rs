//! Cluster DNS answered in the dataplane, on one core, at the scale of 10,000 Services (each
//! with A, AAAA, SRV and PTR records, 1,000 headless ones with 3 endpoints, 10,000 pods): the
//! stage rewriting a batch of 64 UDP queries into their answers (names spread over all
//! Services, a fifth of them NXDOMAIN search-path misses), against the baseline of the same
//! batch of UDP packets going to a ClusterIP the way kube-proxy's path takes them (service
//! choice, conntrack, DNAT, VXLAN to the backend's node): the cost of answering versus the
//! cost of only forwarding the query to a DNS pod. Target (issue 12): over 1,000,000 answers
//! per second, i.e. under 1 µs each. Also the answer function alone on a query buffer.

use criterion::{criterion_group, Criterion, Throughput};
use podswitch_benches::*;
use std::time::{Duration, Instant};
use switch_core::addr::Addr;
use switch_core::dns::table::dashed;
use switch_core::dns::{DnsTable, ZoneBuilder};
use switch_core::packet::PacketBuf;
use switch_core::pipeline::{Verdict, BATCH};
use switch_core::testbed::{self as tb, synthetic_vip};
use switch_core::wire::build::{IpFrame, L4Repr};

const DNS_IP: &str = "10.96.255.10";

fn zone() -> DnsTable {
    let mut z = ZoneBuilder::new("cluster.local", 5).expect("zone");
    for i in 0..SERVICES {
        let base = format!("svc-{i}.ns-{}.svc.cluster.local", i % 100);
        let v4 = std::net::IpAddr::from([10, 96, (i >> 8) as u8, i as u8]);
        let v6: std::net::IpAddr = format!("fd00:96::{i:x}").parse().expect("v6");
        z.address(&base, v4).expect("a");
        z.address(&base, v6).expect("aaaa");
        z.ptr(v4, &base).expect("ptr");
        z.srv(&format!("_http._tcp.{base}"), 0, 100, 80, &base).expect("srv");
        if i < 1000 {
            let hl = format!("hl-{i}.ns-{}.svc.cluster.local", i % 100);
            for e in 0..3u8 {
                let ip = std::net::IpAddr::from([10, 245, (i >> 8) as u8, i as u8 ^ e]);
                z.address(&hl, ip).expect("headless");
                z.address(&format!("{}.{hl}", dashed(ip)), ip).expect("endpoint");
            }
        }
        let pod = std::net::IpAddr::from([10, 244, (i >> 8) as u8, i as u8]);
        z.address(&format!("{}.ns-{}.pod.cluster.local", dashed(pod), i % 100), pod).expect("pod");
    }
    let names = z.build(1, &[DNS_IP.parse().expect("dns ip")]);
    DnsTable {
        names,
        addresses: vec![Addr::from(DNS_IP.parse::<std::net::IpAddr>().expect("ip"))],
        resolver: None,
        mtu: 1450,
    }
}

/// A stub resolver's query: RD, one question, an OPT record with 1232 octets.
fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    switch_core::wire::build::dns_query(id, name, qtype, Some((1232, 0)))
}

fn names() -> Vec<String> {
    (0..4096)
        .map(|i: usize| {
            let s = i * 7919 % SERVICES;
            if i % 5 == 4 {
                // ndots:5 search-path miss: NXDOMAIN.
                format!("svc-{s}.ns-{}.svc.cluster.local.default.svc.cluster.local", s % 100)
            } else {
                format!("svc-{s}.ns-{}.svc.cluster.local", s % 100)
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let t0 = Instant::now();
    let base = tables();
    let t = base.with_dns(zone());
    eprintln!(
        "set-up: {} names, {} service ports, in {:.1}s",
        t.dns.names.len(),
        t.services.ports().len(),
        t0.elapsed().as_secs_f64()
    );
    let src = tb::POD_A_IP.parse().expect("pod a");
    let dns_ip = DNS_IP.parse().expect("dns");
    let frames: Vec<Vec<u8>> = names()
        .iter()
        .enumerate()
        .map(|(i, n)| {
            IpFrame::new(tb::POD_A_MAC, tb::ROUTER_MAC, src, dns_ip, L4Repr::Udp { sport: 30000 + i as u16, dport: 53 })
                .with_payload(&query(i as u16, n, 1))
                .build()
        })
        .collect();
    // The baseline: the same UDP packets to a ClusterIP (service 0), DNAT and conntrack.
    let vip = synthetic_vip(0).to_ip();
    let forwarded: Vec<Vec<u8>> = names()
        .iter()
        .enumerate()
        .map(|(i, n)| {
            IpFrame::new(
                tb::POD_A_MAC,
                tb::ROUTER_MAC,
                src,
                vip,
                L4Repr::Tcp {
                    sport: 20000 + i as u16,
                    dport: 80,
                    seq: 1,
                    ack: 1,
                    flags: switch_core::wire::l4::tcp_flags::ACK,
                },
            )
            .with_payload(&query(i as u16, n, 1))
            .build()
        })
        .collect();
    let mut w = worker();
    let mut g = c.benchmark_group("dns");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(30);

    let mut reload = Ring::new(frames.clone());
    g.bench_function("reload_only_64", |b| b.iter(|| reload.load()));
    let mut ans = Ring::new(frames.clone());
    ans.load();
    w.process(&t, SEC, &mut ans.bufs, &mut ans.verdicts);
    for v in &ans.verdicts {
        assert_eq!(*v, Verdict::Tx(tb::POD_A), "every query is answered back to the pod");
    }
    g.bench_function("dataplane_answer_10k_services_64", |b| {
        b.iter(|| {
            ans.load();
            w.process(&t, SEC, &mut ans.bufs, &mut ans.verdicts);
        })
    });
    let mut fwd = Ring::new(forwarded);
    fwd.load();
    w.process(&t, SEC, &mut fwd.bufs, &mut fwd.verdicts);
    g.bench_function("baseline_forward_to_clusterip_64", |b| {
        b.iter(|| {
            fwd.load();
            w.process(&t, SEC, &mut fwd.bufs, &mut fwd.verdicts);
        })
    });
    let q = query(1, "svc-4242.ns-42.svc.cluster.local", 1);
    let mut buf = vec![0u8; 1500];
    g.throughput(Throughput::Elements(1));
    g.bench_function("answer_function_one_query", |b| {
        b.iter(|| {
            buf[..q.len()].copy_from_slice(&q);
            switch_core::dns::answer::answer(&t.dns.names, &mut buf, q.len(), None, false).map(|a| a.len)
        })
    });
    g.finish();

    // The figures the README quotes: median of 5 runs of 20,000 batches, per query.
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let per =
        |ring: &mut Ring, w: &mut switch_core::pipeline::Worker, t: &switch_core::snapshot::Tables, process: bool| {
            median(
                (0..5)
                    .map(|_| {
                        let s = Instant::now();
                        for _ in 0..20_000 {
                            ring.load();
                            if process {
                                w.process(t, SEC, &mut ring.bufs, &mut ring.verdicts);
                            }
                        }
                        s.elapsed().as_nanos() as f64 / (20_000 * BATCH) as f64
                    })
                    .collect(),
            )
        };
    let floor = per(&mut reload, &mut w, &t, false);
    let a = per(&mut ans, &mut w, &t, true);
    let f = per(&mut fwd, &mut w, &t, true);
    let first = ans.bufs[0].data().len();
    eprintln!(
        "dns summary: reload floor {floor:.1} ns/frame; answered in the dataplane {a:.1} ns/query ({:.2} M answers/s, target > 1 M); \
         forwarded to a ClusterIP (baseline) {f:.1} ns/packet ({:.2} Mpps); answer/forward cost {:.2}x; first answer {first} bytes",
        1e3 / a,
        1e3 / f,
        a / f
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
