//! The whole pipeline on arbitrary frames arriving on any port of the reference node. Input:
//! a mode byte, then a sequence of [port byte, length byte, frame bytes...]; every frame must
//! get a verdict and nothing may panic (NAT, encapsulation, fragments, refusals and ARP/ND
//! replies included). Mode bit 0: policy reject mode; bit 1: a worker of two, which also
//! decides each frame's flow owner between stage 1 and the rest (the handoff path); bit 2:
//! lengths are 3 bytes, little-endian, up to 70,000 (jumbo and oversized frames). The node
//! serves cluster DNS on 10.96.0.53 (a few names, the host port standing in for the resolver
//! port), so queries are answered in place or sent on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use switch_core::drop::DropReason;
use switch_core::packet::PacketBuf;
use switch_core::packet::{OwnedBuf, PortId};
use switch_core::pipeline::{Verdict, Worker, WorkerConfig, BATCH};
use switch_core::snapshot::Tables;
use switch_core::testbed::{tables, Scale};

fn t(reject: bool) -> &'static Tables {
    static T: OnceLock<[Tables; 2]> = OnceLock::new();
    let both = T.get_or_init(|| {
        let drop = tables(Scale { services: 4, backends: 3, policy_rules: 8, ..Scale::default() }).with_dns(dns());
        let mut reject = drop.clone();
        reject.policy_reject = true;
        [drop, reject]
    });
    &both[usize::from(reject)]
}

fn dns() -> switch_core::dns::DnsTable {
    let mut z = switch_core::dns::ZoneBuilder::new("cluster.local", 5).expect("zone");
    let svc = "web.default.svc.cluster.local";
    z.address(svc, "10.96.0.10".parse().expect("ip")).expect("a");
    z.srv("_http._tcp.web.default.svc.cluster.local", 0, 100, 80, svc).expect("srv");
    z.cname("db.prod.svc.cluster.local", "db.example.com").expect("cname");
    for i in 0..40u8 {
        z.address("big.default.svc.cluster.local", [10, 244, 9, i].into()).expect("a");
    }
    let dns_ip: std::net::IpAddr = "10.96.0.53".parse().expect("ip");
    switch_core::dns::DnsTable {
        names: z.build(1, &[dns_ip]),
        addresses: vec![dns_ip.into()],
        resolver: Some(switch_core::dns::ResolverPort {
            port: switch_core::testbed::HOST,
            mac: switch_core::testbed::HOST_MAC,
            ipv4: Some("169.254.20.10".parse::<std::net::IpAddr>().expect("ip").into()),
            ipv6: None,
        }),
        mtu: 1450,
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte's low bit: policy denials dropped or answered (reject mode).
    let Some((&mode, mut rest)) = data.split_first() else { return };
    let t = t(mode & 1 == 1);
    let mut bufs = Vec::new();
    let long = mode & 4 != 0;
    let head = if long { 4 } else { 2 };
    while rest.len() >= head {
        let port = PortId(u16::from(rest[0] % 6));
        let len = if long {
            (usize::from(rest[1]) | usize::from(rest[2]) << 8 | usize::from(rest[3]) << 16).min(70_000)
        } else {
            usize::from(rest[1]) * 8 + usize::from(rest[1] & 7)
        };
        let end = (head + len).min(rest.len());
        bufs.push(OwnedBuf::from_frame(&rest[head..end], port));
        rest = &rest[end..];
    }
    let small = WorkerConfig { conntrack_flows: 256, affinity_entries: 64, max_ports: 8, ..WorkerConfig::default() };
    if mode & 2 != 0 {
        let mut w = Worker::new(WorkerConfig { count: 2, ..small });
        let mut v = [Verdict::Drop(DropReason::NoRoute); BATCH];
        for chunk in bufs.chunks_mut(BATCH) {
            w.receive(t, 1, chunk, 0);
            for (i, b) in chunk.iter().enumerate() {
                assert!(w.owner(t, b.data(), i) < 2);
            }
            w.process_received(t, 1, chunk, &mut v[..chunk.len()]);
        }
        return;
    }
    let mut w = Worker::new(small);
    let mut v = vec![Verdict::Drop(DropReason::NoRoute); bufs.len()];
    w.process(t, 1, &mut bufs, &mut v);
    // Run the same frames again: now some hit conntrack.
    w.process(t, 2, &mut bufs, &mut v);
});
