//! Tests of the cluster DNS: the name table against the Kubernetes DNS specification's record
//! shapes, answers checked field by field, and the stage in the pipeline (answers written in
//! place with valid checksums, the resolver port, the counters and the trace records).

use super::answer::{answer, answer_owned, Outcome, Pass};
use super::table::{dashed, reverse_name, Found, ZoneBuilder};
use super::{DnsTable, ResolverPort};
use crate::addr::Addr;
use crate::drop::DropReason;
use crate::packet::{OwnedBuf, PacketBuf, PortId};
use crate::parse::{parse, ParseOptions};
use crate::pipeline::{Out, TraceRecord, Verdict, Worker, WorkerConfig};
use crate::testbed::{self as tb, Scale};
use crate::wire::build::{IpFrame, L4Repr};
use crate::wire::dns::{encode_name, rtype, EDNS_DO};
use crate::wire::MacAddr;
use core::net::IpAddr;

const ZONE: &str = "cluster.local";
const DNS_IP: &str = "10.96.0.53";
const DNS_IP6: &str = "fd00:96::53";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// The names of a small cluster: a ClusterIP Service with a named port, a headless one with
/// two ready endpoints (one with a hostname), an ExternalName, a pod.
fn names() -> super::NameTable {
    let mut z = ZoneBuilder::new(ZONE, 5).expect("zone");
    let svc = "my-service.default.svc.cluster.local";
    z.address(svc, ip("10.96.0.10")).unwrap();
    z.address(svc, ip("fd00:96::10")).unwrap();
    z.srv("_http._tcp.my-service.default.svc.cluster.local", 0, 100, 80, svc).unwrap();
    z.ptr(ip("10.96.0.10"), svc).unwrap();
    let hl = "db.default.svc.cluster.local";
    z.address(hl, ip("10.244.1.2")).unwrap();
    z.address(hl, ip("10.244.1.3")).unwrap();
    z.address("db-0.db.default.svc.cluster.local", ip("10.244.1.2")).unwrap();
    z.address(&format!("{}.db.default.svc.cluster.local", dashed(ip("10.244.1.3"))), ip("10.244.1.3")).unwrap();
    z.cname("my-service.prod.svc.cluster.local", "my.database.example.com").unwrap();
    z.address("10-244-1-2.default.pod.cluster.local", ip("10.244.1.2")).unwrap();
    z.txt("dns-version.cluster.local", "1.1.0").unwrap();
    z.build(7, &[ip(DNS_IP)])
}

fn wire(name: &str) -> Vec<u8> {
    let mut v = Vec::new();
    encode_name(name, &mut v).expect("name");
    v
}

use crate::wire::build::dns_query as query;

/// An answer read back field by field (an independent reader, not the code under test).
#[derive(Debug)]
struct Reply {
    id: u16,
    flags: u16,
    rcode: u8,
    counts: [u16; 4],
    question: Vec<u8>,
    /// (owner offset or name, type, ttl, rdata) of each record after the question.
    records: Vec<(u16, u16, u32, Vec<u8>)>,
}

fn read(m: &[u8]) -> Reply {
    let be = |i: usize| u16::from_be_bytes([m[i], m[i + 1]]);
    let counts = [be(4), be(6), be(8), be(10)];
    let mut at = 12;
    while m[at] != 0 {
        at += 1 + usize::from(m[at]);
    }
    at += 1 + 4;
    let question = m[12..at].to_vec();
    let mut records = Vec::new();
    let total = usize::from(counts[1] + counts[2] + counts[3]);
    for _ in 0..total {
        let owner = if m[at] & 0xc0 == 0xc0 {
            let o = be(at) & 0x3fff;
            at += 2;
            o
        } else {
            assert_eq!(m[at], 0, "only the root owner is written uncompressed (OPT)");
            at += 1;
            0
        };
        let t = be(at);
        let ttl = u32::from_be_bytes([m[at + 4], m[at + 5], m[at + 6], m[at + 7]]);
        let len = usize::from(be(at + 8));
        records.push((owner, t, ttl, m[at + 10..at + 10 + len].to_vec()));
        at += 10 + len;
    }
    assert_eq!(at, m.len(), "no bytes after the last record");
    Reply { id: be(0), flags: be(2), rcode: (be(2) & 0xf) as u8, counts, question, records }
}

fn ask(name: &str, qtype: u16) -> Reply {
    let t = names();
    let q = query(0xbeef, name, qtype, None);
    read(&answer_owned(&t, &q, 512).expect("answered"))
}

#[test]
fn a_and_aaaa_of_a_cluster_ip_service_keep_the_question_case() {
    let r = ask("My-Service.Default.svc.Cluster.Local", rtype::A);
    assert_eq!(r.id, 0xbeef);
    assert_eq!(r.rcode, 0);
    assert_ne!(r.flags & 0x8000, 0, "QR");
    assert_ne!(r.flags & 0x0400, 0, "AA");
    assert_ne!(r.flags & 0x0100, 0, "RD copied");
    assert_eq!(r.counts, [1, 1, 0, 0]);
    assert_eq!(&r.question[1..11], b"My-Service", "the question's case is kept");
    assert_eq!(r.records, vec![(12, rtype::A, 5, vec![10, 96, 0, 10])]);
    let r6 = ask("my-service.default.svc.cluster.local", rtype::AAAA);
    assert_eq!(r6.records[0].1, rtype::AAAA);
    assert_eq!(r6.records[0].3, ip("fd00:96::10").to_string().parse::<core::net::Ipv6Addr>().unwrap().octets());
}

#[test]
fn srv_ptr_txt_and_cname_have_their_specified_shapes() {
    let srv = ask("_http._tcp.my-service.default.svc.cluster.local", rtype::SRV);
    let mut want = vec![0, 0, 0, 100, 0, 80];
    want.extend(wire("my-service.default.svc.cluster.local"));
    assert_eq!(srv.records, vec![(12, rtype::SRV, 5, want)]);
    let ptr = ask(&reverse_name(ip("10.96.0.10")), rtype::PTR);
    assert_eq!(ptr.records[0].3, wire("my-service.default.svc.cluster.local"));
    assert_eq!(reverse_name(ip("fd00::1")).len(), 72, "32 nibbles and ip6.arpa");
    assert!(reverse_name(ip("fd00::1")).starts_with("1.0.0.0."));
    let txt = ask("dns-version.cluster.local", rtype::TXT);
    assert_eq!(txt.records[0].3, b"\x051.1.0");
    // ExternalName: a CNAME whatever the type asked.
    for t in [rtype::A, rtype::AAAA, rtype::CNAME, rtype::TXT] {
        let c = ask("my-service.prod.svc.cluster.local", t);
        assert_eq!(c.records, vec![(12, rtype::CNAME, 5, wire("my.database.example.com"))], "type {t}");
    }
}

#[test]
fn headless_services_list_their_endpoints_and_name_each() {
    let r = ask("db.default.svc.cluster.local", rtype::A);
    assert_eq!(r.counts[1], 2);
    let addrs: Vec<_> = r.records.iter().map(|x| x.3.clone()).collect();
    assert!(addrs.contains(&vec![10, 244, 1, 2]) && addrs.contains(&vec![10, 244, 1, 3]));
    assert_eq!(ask("db-0.db.default.svc.cluster.local", rtype::A).records[0].3, vec![10, 244, 1, 2]);
    assert_eq!(ask("10-244-1-3.db.default.svc.cluster.local", rtype::A).records[0].3, vec![10, 244, 1, 3]);
    assert_eq!(ask("10-244-1-2.default.pod.cluster.local", rtype::A).records[0].3, vec![10, 244, 1, 2]);
}

#[test]
fn negative_answers_carry_the_zone_soa() {
    // NXDOMAIN: a missing name in the zone (a search-path miss too).
    let nx = ask("google.com.default.svc.cluster.local", rtype::A);
    assert_eq!(nx.rcode, 3);
    assert_eq!(nx.counts, [1, 0, 1, 0]);
    let (owner, t, ttl, rdata) = &nx.records[0];
    assert_eq!(*t, rtype::SOA);
    assert_eq!(*ttl, 5);
    // The SOA's owner points at the zone's labels inside the question name.
    let q = query(0, "google.com.default.svc.cluster.local", rtype::A, None);
    assert_eq!(&q[usize::from(*owner)..usize::from(*owner) + wire(ZONE).len()], wire(ZONE).as_slice());
    let mut soa = wire("ns.dns.cluster.local");
    soa.extend(wire("hostmaster.cluster.local"));
    for v in [7u32, 7200, 1800, 86400, 5] {
        soa.extend(v.to_be_bytes());
    }
    assert_eq!(*rdata, soa);
    // NODATA: the name exists, not with that type; and for empty non-terminals.
    for (name, t) in [
        ("my-service.default.svc.cluster.local", rtype::TXT),
        ("default.svc.cluster.local", rtype::A),
        ("svc.cluster.local", rtype::A),
        ("_tcp.my-service.default.svc.cluster.local", rtype::SRV),
    ] {
        let r = ask(name, t);
        assert_eq!((r.rcode, r.counts), (0, [1, 0, 1, 0]), "{name}");
        assert_eq!(r.records[0].1, rtype::SOA);
    }
    // The apex has its SOA and NS; ns.dns has the DNS address.
    assert_eq!(ask("cluster.local", rtype::SOA).counts, [1, 1, 0, 0]);
    assert_eq!(ask("ns.dns.cluster.local", rtype::A).records[0].3, vec![10, 96, 0, 53]);
    // A name that only ends like the zone is not in it.
    let t = names();
    assert_eq!(t.lookup(&wire("xcluster.local"), rtype::A), Found::Outside);
    assert_eq!(t.lookup(&wire("example.com"), rtype::A), Found::Outside);
    // Outside names without the type asked (a reverse name's A) are the resolver's.
    assert_eq!(t.lookup(&wire(&reverse_name(ip("10.96.0.10"))), rtype::A), Found::Outside);
}

#[test]
fn edns_is_echoed_and_truncation_sets_tc() {
    let mut z = ZoneBuilder::new(ZONE, 5).unwrap();
    for i in 0..100u8 {
        z.address("big.default.svc.cluster.local", IpAddr::from([10, 244, 3, i])).unwrap();
    }
    let t = z.build(1, &[]);
    // 100 A records (16 octets each) exceed 512: TC, empty sections.
    let q = query(1, "big.default.svc.cluster.local", rtype::A, None);
    let r = read(&answer_owned_udp(&t, &q));
    assert_ne!(r.flags & 0x0200, 0, "TC");
    assert_eq!(r.counts, [1, 0, 0, 0]);
    // With EDNS(0) and room for them: all of them, our OPT with DO copied.
    let q = query(2, "big.default.svc.cluster.local", rtype::A, Some((4096, EDNS_DO)));
    let r = read(&answer_owned_udp(&t, &q));
    assert_eq!(r.flags & 0x0200, 0);
    assert_eq!(r.counts, [1, 100, 0, 1]);
    let opt = r.records.last().unwrap();
    assert_eq!((opt.1, opt.2), (rtype::OPT, EDNS_DO));
    // EDNS version 1: BADVERS (extended RCODE 1 in the OPT TTL, 0 in the header).
    let q = query(3, "big.default.svc.cluster.local", rtype::A, Some((4096, 1 << 16)));
    let r = read(&answer_owned_udp(&t, &q));
    assert_eq!((r.rcode, r.counts), (0, [1, 0, 0, 1]));
    assert_eq!(r.records[0].2 >> 24, 1);
    // Over TCP (limit 65535) the same query needs no truncation.
    let q = query(4, "big.default.svc.cluster.local", rtype::A, None);
    assert_eq!(read(&answer_owned(&t, &q, 65535).unwrap()).counts, [1, 100, 0, 0]);
}

/// Answers as the UDP path does: the client's own limit, ample buffer.
fn answer_owned_udp(t: &super::NameTable, q: &[u8]) -> Vec<u8> {
    let mut buf = q.to_vec();
    buf.resize(8192, 0);
    let a = answer(t, &mut buf, q.len(), None, false).expect("answered");
    buf.truncate(a.len);
    buf
}

#[test]
fn what_is_not_answered_says_why_and_leaves_the_buffer_alone() {
    let t = names();
    let q = query(1, "example.com", rtype::A, None);
    let mut buf = q.clone();
    buf.resize(600, 0);
    assert_eq!(answer(&t, &mut buf, q.len(), None, false), Err(Pass::Resolver));
    assert_eq!(&buf[..q.len()], q.as_slice());
    // Too large for the buffer but within the client's limit.
    let q = query(1, "db.default.svc.cluster.local", rtype::A, Some((4096, 0)));
    let mut buf = q.clone();
    buf.resize(q.len() + 10, 0);
    assert_eq!(answer(&t, &mut buf, q.len(), None, false), Err(Pass::TooLarge));
    assert_eq!(&buf[..q.len()], q.as_slice());
    // A response is never answered; an unknown opcode is NOTIMP; a broken name FORMERR.
    let mut resp = query(1, "a.cluster.local", rtype::A, None);
    resp[2] |= 0x80;
    assert_eq!(answer(&t, &mut resp.clone(), resp.len(), None, false), Err(Pass::NotAQuery));
    let mut status = query(9, "a.cluster.local", rtype::A, None);
    status[2] = 2 << 3; // STATUS
    let n = status.len();
    let a = answer(&t, &mut status, n, None, false).unwrap();
    assert_eq!((a.outcome, a.len), (Outcome::NotImp, 12));
    assert_eq!(status[3] & 0xf, 4);
    let mut broken = query(9, "a.cluster.local", rtype::A, None);
    broken[12] = 60;
    let n = broken.len();
    assert_eq!(answer(&t, &mut broken, n, None, false).unwrap().outcome, Outcome::FormErr);
}

/// Every prefix, and every single-byte change, of real queries: an answer or a reason, never
/// a panic, and an answer always reads back.
#[test]
fn mangled_queries_never_panic() {
    let t = names();
    for q in [
        query(1, "my-service.default.svc.cluster.local", rtype::A, Some((1232, 0))),
        query(2, "_http._tcp.my-service.default.svc.cluster.local", rtype::SRV, None),
        query(3, "nope.cluster.local", rtype::ANY, None),
    ] {
        for cut in 0..=q.len() {
            let mut b = q[..cut].to_vec();
            b.resize(1500, 0);
            if let Ok(a) = answer(&t, &mut b, cut, None, false) {
                assert!(a.len <= 1500);
            }
        }
        for i in 0..q.len() {
            for v in [0u8, 1, 0x3f, 0x40, 0xc0, 0xff] {
                let mut b = q.clone();
                b[i] = v;
                let n = b.len();
                b.resize(1500, 0);
                if let Ok(a) = answer(&t, &mut b, n, None, false) {
                    if a.len > 12 {
                        read(&b[..a.len]);
                    }
                }
            }
        }
    }
}

// The stage in the pipeline.

fn tables() -> crate::snapshot::Tables {
    let t = tb::tables(Scale::default());
    let resolver = ResolverPort {
        port: tb::HOST,
        mac: MacAddr([2, 0, 0, 0, 0x53, 0x53]),
        ipv4: Some(Addr::from(ip("169.254.20.10"))),
        ipv6: None,
    };
    t.with_dns(DnsTable {
        names: names(),
        addresses: vec![Addr::from(ip(DNS_IP)), Addr::from(ip(DNS_IP6))],
        resolver: Some(resolver),
        mtu: 1450,
    })
}

fn frame(src: &str, dst: &str, payload: &[u8], tcp: bool) -> Vec<u8> {
    let l4 = if tcp {
        L4Repr::Tcp { sport: 40000, dport: 53, seq: 1, ack: 0, flags: crate::wire::l4::tcp_flags::SYN }
    } else {
        L4Repr::Udp { sport: 40000, dport: 53 }
    };
    IpFrame::new(tb::POD_A_MAC, tb::ROUTER_MAC, ip(src), ip(dst), l4).with_payload(payload).build()
}

fn run(t: &crate::snapshot::Tables, w: &mut Worker, f: &[u8], port: PortId) -> (Verdict, Vec<u8>) {
    let mut b = [OwnedBuf::from_frame(f, port)];
    let mut v = [Verdict::Drop(DropReason::NoRoute)];
    w.process(t, 1_000_000, &mut b, &mut v);
    (v[0], b[0].data().to_vec())
}

#[test]
fn a_query_from_a_pod_is_answered_in_place_with_valid_checksums() {
    let t = tables();
    let mut w = Worker::new(WorkerConfig::default()).with_trace();
    for (src, dst) in [(tb::POD_A_IP, DNS_IP), (tb::POD_A_IP6, DNS_IP6)] {
        let q = query(0x4242, "my-service.default.svc.cluster.local", rtype::A, Some((1232, 0)));
        let (v, out) = run(&t, &mut w, &frame(src, dst, &q, false), tb::POD_A);
        assert_eq!(v, Verdict::Tx(tb::POD_A), "back out of the pod's port");
        let m = parse(&out, ParseOptions { verify_l4_checksum: true }).expect("valid IP and UDP checksums");
        assert_eq!((m.src, m.dst, m.sport, m.dport), (Addr::from(ip(dst)), Addr::from(ip(src)), 53, 40000));
        assert_eq!((m.src_mac, m.dst_mac), (tb::ROUTER_MAC, tb::POD_A_MAC));
        let r = read(&out[usize::from(m.l4_off) + 8..]);
        assert_eq!((r.id, r.counts), (0x4242, [1, 1, 0, 1]));
        let log: Vec<_> = w.trace_log(0).unwrap().records().copied().collect();
        assert!(
            matches!(
                log[..],
                [TraceRecord::Dns(super::TraceRecord::Answered { outcome: Outcome::NoError, answers: 1, .. })]
            ),
            "{log:?}"
        );
    }
    assert_eq!(w.conntrack().entries(), 0, "no conntrack entry per query");
    let s = w.stats().dns;
    assert_eq!(s.answered_by_outcome[Outcome::NoError.index()], 2);
    assert_eq!(s.answered_by_qtype[super::qtype_index(rtype::A)], 2);
}

#[test]
fn what_the_dataplane_does_not_answer_goes_to_the_resolver_port() {
    let t = tables();
    let mut w = Worker::new(WorkerConfig::default()).with_trace();
    let outside = query(7, "example.com", rtype::A, None);
    let (v, out) = run(&t, &mut w, &frame(tb::POD_A_IP, DNS_IP, &outside, false), tb::POD_A);
    assert_eq!(v, Verdict::Tx(tb::HOST));
    let m = parse(&out, ParseOptions { verify_l4_checksum: true }).unwrap();
    assert_eq!(m.dst, Addr::from(ip("169.254.20.10")), "translated to the resolver");
    assert_eq!(m.dst_mac, MacAddr([2, 0, 0, 0, 0x53, 0x53]));
    assert_eq!(w.conntrack().entries(), 2, "tracked, so the resolver's reply is translated back");
    let log: Vec<_> = w.trace_log(0).unwrap().records().copied().collect();
    assert!(matches!(log[0], TraceRecord::Dns(super::TraceRecord::ToResolver { reason: Pass::Resolver })));
    // TCP always goes there.
    let (v, _) = run(&t, &mut w, &frame(tb::POD_A_IP, DNS_IP, &[], true), tb::POD_A);
    assert_eq!(v, Verdict::Tx(tb::HOST));
    // Without a resolver address of the family, the packet continues as Service traffic.
    let q = query(7, "example.com", rtype::A, None);
    let (v, _) = run(&t, &mut w, &frame(tb::POD_A_IP6, DNS_IP6, &q, false), tb::POD_A);
    assert_ne!(v, Verdict::Tx(tb::HOST));
    let log: Vec<_> = w.trace_log(0).unwrap().records().copied().collect();
    assert!(matches!(log[0], TraceRecord::Dns(super::TraceRecord::ToService)), "{log:?}");
    assert_eq!(w.stats().dns.to_resolver, 2);
    // A response sent to the DNS address is dropped with its reason.
    let mut resp = query(7, "example.com", rtype::A, None);
    resp[2] |= 0x80;
    let (v, _) = run(&t, &mut w, &frame(tb::POD_A_IP, DNS_IP, &resp, false), tb::POD_A);
    assert_eq!(v, Verdict::Drop(DropReason::DnsNotAQuery));
}

#[test]
fn the_stage_is_listed_before_conntrack() {
    let names = crate::pipeline::stage_names();
    let at = |n: &str| names.iter().position(|x| *x == n).expect(n);
    assert!(at("martian+antispoof") < at("dns") && at("dns") < at("conntrack-lookup"));
    assert_eq!(Out::Unrouted, Out::default());
}

#[test]
fn an_external_name_is_followed_by_the_resolver_when_there_is_one() {
    let t = tables();
    let mut w = Worker::new(WorkerConfig::default()).with_trace();
    let q = query(9, "my-service.prod.svc.cluster.local", rtype::A, None);
    let (v, _) = run(&t, &mut w, &frame(tb::POD_A_IP, DNS_IP, &q, false), tb::POD_A);
    assert_eq!(v, Verdict::Tx(tb::HOST), "the resolver appends the target's records");
    // Asked for the CNAME itself, the dataplane answers.
    let q = query(9, "my-service.prod.svc.cluster.local", rtype::CNAME, None);
    let (v, _) = run(&t, &mut w, &frame(tb::POD_A_IP, DNS_IP, &q, false), tb::POD_A);
    assert_eq!(v, Verdict::Tx(tb::POD_A));
    // Without a resolver port, the CNAME alone.
    let mut d = (*t.dns).clone();
    d.resolver = None;
    let t = t.with_dns(d);
    let q = query(9, "my-service.prod.svc.cluster.local", rtype::A, None);
    let (v, out) = run(&t, &mut w, &frame(tb::POD_A_IP, DNS_IP, &q, false), tb::POD_A);
    assert_eq!(v, Verdict::Tx(tb::POD_A));
    let m = parse(&out, ParseOptions { verify_l4_checksum: true }).unwrap();
    assert_eq!(read(&out[usize::from(m.l4_off) + 8..]).records[0].1, rtype::CNAME);
}

#[test]
fn flows_to_the_resolver_and_back_meet_on_one_worker() {
    let t = tables();
    for sport in [1000u16, 40000, 53, 65535] {
        let q = crate::conntrack::Tuple {
            src: Addr::from(ip(tb::POD_A_IP)),
            dst: Addr::from(ip(DNS_IP)),
            sport,
            dport: 53,
        };
        let a = crate::conntrack::Tuple {
            src: Addr::from(ip("169.254.20.10")),
            dst: Addr::from(ip(tb::POD_A_IP)),
            sport: 53,
            dport: sport,
        };
        for n in [2u16, 3, 4] {
            assert_eq!(
                crate::pipeline::owner::owner_of(&t, q, 17, n),
                crate::pipeline::owner::owner_of(&t, a, 17, n),
                "query and the resolver's answer, {n} workers, port {sport}"
            );
        }
    }
}

#[test]
fn several_addresses_are_rotated_by_the_query_id() {
    let t = names();
    let first = |id: u16| {
        let a = read(&answer_owned(&t, &query(id, "db.default.svc.cluster.local", rtype::A, None), 512).unwrap());
        assert_eq!(a.counts[1], 2);
        a.records[0].3.clone()
    };
    assert_ne!(first(0), first(1), "consecutive IDs start with different endpoints");
    assert_eq!(first(0), first(2));
}
