//! Pipeline tests of IP fragments on the reference node (`testbed`): a later fragment takes
//! its first fragment's ports in stage 1 and follows the flow (same NAT, same owner worker);
//! it never starts a flow of its own.

use super::*;
use crate::addr::Addr;
use crate::conntrack::Tuple;
use crate::packet::{OwnedBuf, PortId};
use crate::parse::{FragKind, PacketMeta};
use crate::testbed::{self as tb, Scale};
use crate::wire::build::{fragment, IpFrame, L4Repr, TunnelKind};
use crate::wire::checksum::pseudo_header_sum;
use crate::wire::l4::{tcp_flags, transport_checksum_ok};
use crate::wire::{proto, MacAddr};
use core::net::IpAddr;

const SEC: u64 = 1_000_000_000;
const STRICT: ParseOptions = ParseOptions { verify_l4_checksum: true };
/// Room for 1480 bytes of IP payload: a 1500-byte MTU's first fragment.
const MTU_DATA: usize = 1480;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn addr(s: &str) -> Addr {
    Addr::from(ip(s))
}

struct Bed {
    t: Tables,
    w: Worker,
    now: u64,
}

impl Bed {
    fn new() -> Bed {
        Bed::with_config(WorkerConfig::default())
    }
    fn with_config(cfg: WorkerConfig) -> Bed {
        Bed { t: tb::tables(Scale::default()), w: Worker::new(cfg), now: SEC }
    }
    /// Runs `frames` as one batch; returns each verdict with the frame as it leaves.
    fn batch(&mut self, frames: &[(PortId, Vec<u8>)]) -> Vec<(Verdict, Vec<u8>)> {
        let mut bufs: Vec<OwnedBuf> = frames.iter().map(|(p, f)| OwnedBuf::from_frame(f, *p)).collect();
        let mut v = vec![Verdict::Drop(DropReason::NoRoute); bufs.len()];
        self.w.process(&self.t, self.now, &mut bufs, &mut v);
        self.now += 1000;
        v.into_iter().zip(bufs.iter().map(|b| b.data().to_vec())).collect()
    }
    /// Runs each frame in a batch of its own.
    fn each(&mut self, port: PortId, frames: &[Vec<u8>]) -> Vec<(Verdict, Vec<u8>)> {
        frames.iter().map(|f| self.batch(&[(port, f.clone())]).remove(0)).collect()
    }
    fn drops(&self, r: DropReason) -> u64 {
        self.w.stats().drops(r)
    }
}

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

/// A UDP datagram of `len` bytes of payload.
fn udp(src_mac: MacAddr, src: &str, sport: u16, dst: &str, dport: u16, len: usize) -> Vec<u8> {
    IpFrame::new(src_mac, tb::ROUTER_MAC, ip(src), ip(dst), L4Repr::Udp { sport, dport })
        .with_payload(&payload(len))
        .build()
}

fn tcp(src_mac: MacAddr, src: &str, sport: u16, dst: &str, dport: u16, flags: u8, len: usize) -> Vec<u8> {
    IpFrame::new(src_mac, tb::ROUTER_MAC, ip(src), ip(dst), L4Repr::Tcp { sport, dport, seq: 1, ack: 1, flags })
        .with_payload(&payload(len))
        .build()
}

fn meta(f: &[u8]) -> PacketMeta {
    parse(f, STRICT).expect("output parses")
}

/// Reassembles the IP payload of fragments (IPv4, or IPv6 with the Fragment header right
/// after the fixed header, as `build::fragment` makes them), in any order, and checks the
/// transport checksum of the whole datagram against the addresses the fragments carry.
/// Returns the reassembled transport header and payload.
fn reassemble_and_check(frags: &[Vec<u8>]) -> Vec<u8> {
    let mut pieces: Vec<(usize, Vec<u8>)> = Vec::new();
    let m0 = meta(&frags[0]);
    let mut upper = m0.proto;
    for f in frags {
        let m = meta(f);
        assert_eq!((m.src, m.dst, m.frag.id), (m0.src, m0.dst, m0.frag.id), "one datagram");
        let (off, data_at) = if m.is_v4() {
            let flags = u16::from_be_bytes([f[20], f[21]]);
            (usize::from(flags & 0x1fff) * 8, usize::from(m.l3_off) + usize::from(f[14] & 0xf) * 4)
        } else {
            assert_eq!(f[20], crate::wire::ipv6::ext::FRAGMENT);
            upper = f[54];
            (usize::from(u16::from_be_bytes([f[56], f[57]]) >> 3) * 8, 62)
        };
        pieces.push((off, f[data_at..usize::from(m.ip_end)].to_vec()));
    }
    pieces.sort();
    let mut whole = Vec::new();
    for (off, d) in pieces {
        assert_eq!(off, whole.len(), "contiguous fragments");
        whole.extend_from_slice(&d);
    }
    let (s, d) = (m0.src.to_ip(), m0.dst.to_ip());
    let pseudo = match (s, d) {
        (IpAddr::V4(s), IpAddr::V4(d)) => pseudo_header_sum(&s.octets(), &d.octets(), upper, whole.len() as u32),
        (IpAddr::V6(s), IpAddr::V6(d)) => pseudo_header_sum(&s.octets(), &d.octets(), upper, whole.len() as u32),
        _ => unreachable!(),
    };
    assert!(transport_checksum_ok(pseudo, &whole), "checksum of the reassembled datagram");
    whole
}

/// The tuple the reassembled transport header carries.
fn ports(whole: &[u8]) -> (u16, u16) {
    (u16::from_be_bytes([whole[0], whole[1]]), u16::from_be_bytes([whole[2], whole[3]]))
}

#[test]
fn udp_reply_from_a_clusterip_backend_in_two_fragments_gets_reverse_nat() {
    let mut b = Bed::new();
    // The client's query goes to the one backend of default/web:dns.
    let (v, out) = b.batch(&[(tb::POD_A, udp(tb::POD_A_MAC, tb::POD_A_IP, 40000, tb::WEB_VIP, 53, 32))]).remove(0);
    assert_eq!(v, Verdict::Tx(tb::POD_B));
    assert_eq!((meta(&out).dst, meta(&out).dport), (addr(tb::POD_B_IP), 5353));
    // A 2000-byte answer, fragmented by the backend's stack.
    let answer = udp(tb::POD_B_MAC, tb::POD_B_IP, 5353, tb::POD_A_IP, 40000, 2000 - 8);
    let frags = fragment(&answer, 0x1234, MTU_DATA);
    assert_eq!(frags.len(), 2);
    for together in [false, true] {
        let res = if together {
            b.batch(&[(tb::POD_B, frags[0].clone()), (tb::POD_B, frags[1].clone())])
        } else {
            b.each(tb::POD_B, &frags)
        };
        let mut outs = Vec::new();
        for (i, (v, out)) in res.into_iter().enumerate() {
            assert_eq!(v, Verdict::Tx(tb::POD_A), "fragment {i} (one batch: {together})");
            let m = meta(&out);
            assert_eq!((m.src, m.dst), (addr(tb::WEB_VIP), addr(tb::POD_A_IP)), "fragment {i}: reverse NAT");
            assert_eq!((m.ttl, m.dst_mac, m.src_mac), (63, tb::POD_A_MAC, tb::ROUTER_MAC));
            outs.push(out);
        }
        // The later fragment's bytes past its IP header are the payload, untouched.
        assert_eq!(&outs[1][34..], &frags[1][34..]);
        let whole = reassemble_and_check(&outs);
        assert_eq!(ports(&whole), (53, 40000), "the service port, in the first fragment");
        assert_eq!(&whole[8..], &payload(1992)[..]);
    }
    assert_eq!(b.w.stats().events.fragments_first, 2);
    assert_eq!(b.w.stats().events.fragments_later, 2);
    assert_eq!(b.w.conntrack().entries(), 2, "the fragments created no flow of their own");
}

#[test]
fn pod_to_pod_datagram_in_two_fragments_is_forwarded() {
    let mut b = Bed::new();
    let d = udp(tb::POD_A_MAC, tb::POD_A_IP, 40000, tb::POD_B_IP, 9999, 2000 - 8);
    for (id, together) in [(1u32, true), (2, false)] {
        let frags = fragment(&d, id, MTU_DATA);
        let res = if together {
            b.batch(&[(tb::POD_A, frags[0].clone()), (tb::POD_A, frags[1].clone())])
        } else {
            b.each(tb::POD_A, &frags)
        };
        let outs: Vec<Vec<u8>> = res
            .into_iter()
            .map(|(v, out)| {
                assert_eq!(v, Verdict::Tx(tb::POD_B), "one batch: {together}");
                out
            })
            .collect();
        let m = meta(&outs[1]);
        assert_eq!((m.frag.kind, m.src, m.dst), (FragKind::Later, addr(tb::POD_A_IP), addr(tb::POD_B_IP)));
        let whole = reassemble_and_check(&outs);
        assert_eq!(ports(&whole), (40000, 9999));
    }
    assert_eq!(b.w.conntrack().entries(), 2, "one flow, created by the first fragment");
}

#[test]
fn ipv6_fragments_through_a_clusterip_both_ways() {
    let mut b = Bed::new();
    let syn = tcp(tb::POD_A_MAC, tb::POD_A_IP6, 40000, tb::WEB_VIP6, 80, tcp_flags::SYN, 0);
    let (v, out) = b.batch(&[(tb::POD_A, syn)]).remove(0);
    let backend = meta(&out).dst;
    let (bport, bmac) = match v {
        Verdict::Tx(tb::POD_B) => (tb::POD_B, tb::POD_B_MAC),
        Verdict::Tx(tb::POD_C) => (tb::POD_C, tb::POD_C_MAC),
        v => panic!("SYN to the IPv6 ClusterIP: {v:?}"),
    };
    let backend_ip = backend.to_ip().to_string();
    // The client's 2000-byte segment, fragmented: DNAT on both fragments.
    let data = tcp(tb::POD_A_MAC, tb::POD_A_IP6, 40000, tb::WEB_VIP6, 80, tcp_flags::ACK, 2000 - 20);
    let frags = fragment(&data, 0xdead_beef, 1448);
    assert_eq!(frags.len(), 2);
    let outs: Vec<Vec<u8>> = b
        .batch(&[(tb::POD_A, frags[0].clone()), (tb::POD_A, frags[1].clone())])
        .into_iter()
        .map(|(v, out)| {
            assert_eq!(v, Verdict::Tx(bport));
            out
        })
        .collect();
    for o in &outs {
        assert_eq!((meta(o).src, meta(o).dst), (addr(tb::POD_A_IP6), backend));
    }
    assert_eq!(ports(&reassemble_and_check(&outs)), (40000, 8080));
    // The backend's 2000-byte answer, fragmented: reverse NAT on both fragments.
    let answer = tcp(bmac, &backend_ip, 8080, tb::POD_A_IP6, 40000, tcp_flags::ACK, 2000 - 20);
    let frags = fragment(&answer, 7, 1448);
    let outs: Vec<Vec<u8>> = b
        .each(bport, &frags)
        .into_iter()
        .map(|(v, out)| {
            assert_eq!(v, Verdict::Tx(tb::POD_A));
            out
        })
        .collect();
    for o in &outs {
        assert_eq!((meta(o).src, meta(o).dst), (addr(tb::WEB_VIP6), addr(tb::POD_A_IP6)));
    }
    assert_eq!(ports(&reassemble_and_check(&outs)), (80, 40000));
}

#[test]
fn a_later_fragment_before_its_first_is_unmatched() {
    let mut b = Bed::new();
    let d = udp(tb::POD_A_MAC, tb::POD_A_IP, 40000, tb::POD_B_IP, 9999, 2000 - 8);
    let frags = fragment(&d, 3, MTU_DATA);
    let res = b.batch(&[(tb::POD_A, frags[1].clone()), (tb::POD_A, frags[0].clone())]);
    assert_eq!(res[0].0, Verdict::Drop(DropReason::FragmentUnmatched));
    assert_eq!(res[1].0, Verdict::Tx(tb::POD_B), "the first fragment itself passes");
    assert_eq!(b.drops(DropReason::FragmentUnmatched), 1);
    // Another datagram's id, or another protocol, does not match either.
    let other = fragment(&d, 4, MTU_DATA);
    assert_eq!(b.batch(&[(tb::POD_A, other[1].clone())])[0].0, Verdict::Drop(DropReason::FragmentUnmatched));
    let mut tcp_like = frags[1].clone();
    tcp_like[23] = proto::TCP;
    tcp_like[24..26].copy_from_slice(&[0, 0]);
    let c = crate::wire::checksum::checksum(&tcp_like[14..34]);
    tcp_like[24..26].copy_from_slice(&c.to_be_bytes());
    assert_eq!(b.batch(&[(tb::POD_A, tcp_like)])[0].0, Verdict::Drop(DropReason::FragmentUnmatched));
    assert_eq!(b.w.conntrack().entries(), 2);
}

#[test]
fn the_fragment_entry_times_out() {
    let cfg = WorkerConfig { fragment_timeout_ns: SEC / 2, ..WorkerConfig::default() };
    let mut b = Bed::with_config(cfg);
    let d = udp(tb::POD_A_MAC, tb::POD_A_IP, 40000, tb::POD_B_IP, 9999, 3000);
    let frags = fragment(&d, 5, MTU_DATA);
    assert_eq!(frags.len(), 3);
    assert_eq!(b.batch(&[(tb::POD_A, frags[0].clone())])[0].0, Verdict::Tx(tb::POD_B));
    b.now += SEC / 4;
    assert_eq!(b.batch(&[(tb::POD_A, frags[1].clone())])[0].0, Verdict::Tx(tb::POD_B), "within the timeout");
    b.now += SEC / 4;
    assert_eq!(b.batch(&[(tb::POD_A, frags[2].clone())])[0].0, Verdict::Drop(DropReason::FragmentUnmatched));
    // The default is 2 s.
    let mut b = Bed::new();
    assert_eq!(b.batch(&[(tb::POD_A, frags[0].clone())])[0].0, Verdict::Tx(tb::POD_B));
    b.now += 3 * SEC / 2;
    assert_eq!(b.batch(&[(tb::POD_A, frags[1].clone())])[0].0, Verdict::Tx(tb::POD_B));
    b.now += SEC;
    assert_eq!(b.batch(&[(tb::POD_A, frags[2].clone())])[0].0, Verdict::Drop(DropReason::FragmentUnmatched));
}

#[test]
fn later_fragments_of_a_refused_first_start_no_flow() {
    let mut b = Bed::new();
    // Pod c takes TCP 8080 from clients only: a UDP datagram to it is refused by policy.
    let d = udp(tb::POD_A_MAC, tb::POD_A_IP, 40000, tb::POD_C_IP, 8080, 2000 - 8);
    let frags = fragment(&d, 6, MTU_DATA);
    let res = b.batch(&[(tb::POD_A, frags[0].clone()), (tb::POD_A, frags[1].clone())]);
    assert_ne!(res[0].0, Verdict::Tx(tb::POD_C), "first fragment refused");
    assert_eq!(res[1].0, Verdict::Drop(DropReason::FragmentNoFlow));
    assert_eq!(b.each(tb::POD_A, &frags[1..])[0].0, Verdict::Drop(DropReason::FragmentNoFlow));
    // A datagram to a service without endpoints: the first fragment is answered, the later
    // one is not selected for the service as a new flow.
    let d = udp(tb::POD_A_MAC, tb::POD_A_IP, 40000, tb::EMPTY_VIP, 53, 2000 - 8);
    let frags = fragment(&d, 7, MTU_DATA);
    let res = b.batch(&[(tb::POD_A, frags[0].clone()), (tb::POD_A, frags[1].clone())]);
    assert_eq!(res[1].0, Verdict::Drop(DropReason::FragmentNoFlow));
    assert_eq!(b.w.conntrack().entries(), 0);
    assert_eq!(b.drops(DropReason::FragmentNoFlow), 3);
}

#[test]
fn fragments_through_the_overlay() {
    let mut b = Bed::new();
    // From a remote pod over VXLAN and Geneve: the inner fragments are parsed and tracked.
    for (id, kind) in [(8u32, TunnelKind::Vxlan), (9, TunnelKind::Geneve)] {
        let inner = IpFrame::new(
            tb::NODE2_VTEP_MAC,
            tb::VTEP_MAC,
            ip(tb::REMOTE_POD_IP),
            ip(tb::POD_B_IP),
            L4Repr::Udp { sport: 40000, dport: 9999 },
        )
        .with_payload(&payload(1992))
        .build();
        let wrapped: Vec<Vec<u8>> =
            fragment(&inner, id, 1400).iter().map(|f| tb::from_node2(f, kind, tb::VNI)).collect();
        let outs: Vec<Vec<u8>> = b
            .each(tb::UPLINK, &wrapped)
            .into_iter()
            .map(|(v, out)| {
                assert_eq!(v, Verdict::Tx(tb::POD_B), "{kind:?}");
                out
            })
            .collect();
        assert_eq!(ports(&reassemble_and_check(&outs)), (40000, 9999));
    }
    // To a remote pod: each fragment is encapsulated like any frame.
    let d = udp(tb::POD_A_MAC, tb::POD_A_IP, 40000, tb::REMOTE_POD_IP, 9999, 1992);
    let frags = fragment(&d, 10, 1400);
    for (v, out) in b.each(tb::POD_A, &frags) {
        assert_eq!(v, Verdict::Tx(tb::UPLINK));
        let outer = meta(&out);
        assert_eq!(outer.dst, addr(tb::NODE2_IP));
        assert_eq!(outer.frag.kind, FragKind::Whole, "the outer packet is whole");
    }
    // A tunnel packet fragmented in the underlay is not reassembled.
    let inner = udp(tb::POD_A_MAC, tb::REMOTE_POD_IP, 1, tb::POD_B_IP, 2, 1000);
    let outer = fragment(&tb::from_node2(&inner, TunnelKind::Vxlan, tb::VNI), 11, 512);
    assert_eq!(b.batch(&[(tb::UPLINK, outer[0].clone())])[0].0, Verdict::Drop(DropReason::IpFragment));
    assert_eq!(b.batch(&[(tb::UPLINK, outer[1].clone())])[0].0, Verdict::Drop(DropReason::FragmentUnmatched));
}

/// Two workers: the datagram's fragments are received by one worker, which hands each to
/// the owner of the flow; both fragments end on the same owner, which translates them.
#[test]
fn with_two_workers_all_fragments_go_to_the_flow_owner() {
    let t = tb::tables(Scale::default());
    let count = 2u16;
    let mut w: Vec<Worker> =
        (0..count).map(|index| Worker::new(WorkerConfig { index, count, ..WorkerConfig::default() })).collect();
    let mut now = SEC;
    // Runs `frames` received by worker `rx` through their owners; returns (owner, verdict, out).
    let mut run = |w: &mut Vec<Worker>, rx: usize, port: PortId, frames: &[Vec<u8>]| {
        let mut bufs: Vec<OwnedBuf> = frames.iter().map(|f| OwnedBuf::from_frame(f, port)).collect();
        w[rx].receive(&t, now, &mut bufs, 0);
        let owners: Vec<u16> = (0..bufs.len()).map(|i| w[rx].owner(&t, bufs[i].data(), i)).collect();
        let handed: Vec<_> = (0..bufs.len()).map(|i| w[rx].received(i).unwrap()).collect();
        let mut out = Vec::new();
        for (i, mut buf) in bufs.into_iter().enumerate() {
            let o = usize::from(owners[i]);
            w[o].take_over(0, &handed[i], port);
            let mut v = [Verdict::Drop(DropReason::NoRoute)];
            w[o].process_received(&t, now, core::slice::from_mut(&mut buf), &mut v);
            out.push((owners[i], v[0], buf.data().to_vec()));
        }
        now += 1000;
        out
    };
    let mut moved = 0;
    for sport in 40000u16..40040 {
        let rx = usize::from(sport) % 2;
        // The query, then the fragmented answer received by either worker.
        let q = run(&mut w, rx, tb::POD_A, &[udp(tb::POD_A_MAC, tb::POD_A_IP, sport, tb::WEB_VIP, 53, 32)]);
        assert_eq!(q[0].1, Verdict::Tx(tb::POD_B));
        let owner = q[0].0;
        let answer = udp(tb::POD_B_MAC, tb::POD_B_IP, 5353, tb::POD_A_IP, sport, 1992);
        let frags = fragment(&answer, u32::from(sport), MTU_DATA);
        let res = run(&mut w, 1 - rx, tb::POD_B, &frags);
        for (o, v, out) in &res {
            assert_eq!(*o, owner, "sport {sport}: every fragment on the flow's owner");
            assert_eq!(*v, Verdict::Tx(tb::POD_A));
            assert_eq!(meta(out).src, addr(tb::WEB_VIP));
        }
        let outs: Vec<Vec<u8>> = res.into_iter().map(|r| r.2).collect();
        assert_eq!(ports(&reassemble_and_check(&outs)), (53, sport));
        // Without the table's ports the later fragment would have gone elsewhere.
        let unported = Tuple { src: addr(tb::POD_B_IP), dst: addr(tb::POD_A_IP), sport: 0, dport: 0 };
        moved += usize::from(owner::owner_of(&t, unported, proto::UDP, count) != owner);
    }
    assert!(moved > 5, "the ports decide the owner for some flows: {moved}");
    // Pod to pod (the symmetric rule), the datagram in one batch on the worker receiving it.
    for sport in 40000u16..40020 {
        let d = udp(tb::POD_A_MAC, tb::POD_A_IP, sport, tb::POD_B_IP, 9999, 1992);
        let res = run(&mut w, usize::from(sport) % 2, tb::POD_A, &fragment(&d, u32::from(sport) + 1, MTU_DATA));
        assert_eq!(res[0].0, res[1].0, "sport {sport}: one owner");
        assert!(res.iter().all(|r| r.1 == Verdict::Tx(tb::POD_B)));
    }
    let entries: usize = w.iter().map(|w| w.conntrack().entries()).sum();
    assert_eq!(entries, 2 * 60, "one flow per query and per pod-to-pod datagram");
}

/// An ICMP error quoting a fragment: the first fragment's ports are its flow's; a later
/// fragment has none, so the error is not matched to a flow by payload bytes.
#[test]
fn icmp_errors_quote_only_first_fragments_by_ports() {
    let d = udp(tb::POD_B_MAC, tb::POD_B_IP, 5353, tb::POD_A_IP, 40000, 1992);
    let frags = fragment(&d, 12, MTU_DATA);
    let err =
        |quoted: &[u8]| super::tests::icmp_error(tb::POD_A_MAC, tb::ROUTER_MAC, tb::POD_A_IP, tb::POD_B_IP, quoted);
    let first = err(&frags[0][14..]);
    let q = crate::nat::related::quoted(&first, &meta(&first)).expect("first fragment quoted");
    assert_eq!((q.tuple.sport, q.tuple.dport), (5353, 40000));
    let later = err(&frags[1][14..]);
    assert!(crate::nat::related::quoted(&later, &meta(&later)).is_none());
}
