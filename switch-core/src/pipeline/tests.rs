//! Pipeline tests on the reference node (`testbed`): every stage, both directions, and a
//! test that reaches each drop reason the pipeline can give for crafted input.

use super::*;
use crate::addr::Addr;
use crate::packet::{OwnedBuf, PortId};
use crate::parse::{IcmpKind, L3};
use crate::testbed::{self as tb, Scale};
use crate::wire::build::{self, IpFrame, L4Repr, TunnelKind};
use crate::wire::l4::tcp_flags::*;
use crate::wire::{arp, proto, MacAddr};
use core::net::IpAddr;

pub(super) const STRICT: ParseOptions = ParseOptions { verify_l4_checksum: true };

pub(super) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub(super) fn addr(s: &str) -> Addr {
    Addr::from(ip(s))
}

pub(super) struct Bed {
    pub(super) t: Tables,
    pub(super) w: Worker,
    pub(super) now: u64,
}

impl Bed {
    pub(super) fn new() -> Bed {
        Bed::with(Scale::default())
    }
    pub(super) fn with(s: Scale) -> Bed {
        Bed { t: tb::tables(s), w: Worker::new(WorkerConfig::default()), now: 1_000_000_000 }
    }
    /// Runs one frame; returns the verdict and the frame as it leaves.
    pub(super) fn run(&mut self, port: PortId, frame: &[u8]) -> (Verdict, Vec<u8>) {
        let mut bufs = [OwnedBuf::from_frame(frame, port)];
        let mut v = [Verdict::Drop(DropReason::NoRoute)];
        self.w.process(&self.t, self.now, &mut bufs, &mut v);
        self.now += 1000;
        (v[0], bufs[0].data().to_vec())
    }
    pub(super) fn drops(&self, r: DropReason) -> u64 {
        self.w.stats().drops(r)
    }
}

pub(super) fn tcp(src_mac: MacAddr, src: &str, sport: u16, dst: &str, dport: u16, flags: u8) -> Vec<u8> {
    IpFrame::new(src_mac, tb::ROUTER_MAC, ip(src), ip(dst), L4Repr::Tcp { sport, dport, seq: 1000, ack: 0, flags })
        .build()
}

pub(super) fn udp(src_mac: MacAddr, src: &str, sport: u16, dst: &str, dport: u16) -> Vec<u8> {
    IpFrame::new(src_mac, tb::ROUTER_MAC, ip(src), ip(dst), L4Repr::Udp { sport, dport }).with_payload(b"query").build()
}

pub(super) fn meta(f: &[u8]) -> crate::parse::PacketMeta {
    parse(f, STRICT).expect("output parses with valid checksums")
}

#[test]
fn pod_to_clusterip_and_reply() {
    let mut b = Bed::new();
    let (v, out) = b.run(tb::POD_A, &tcp(tb::POD_A_MAC, tb::POD_A_IP, 40000, tb::WEB_VIP, 80, SYN));
    let m = meta(&out);
    let backend = m.dst;
    assert!(backend == addr(tb::POD_B_IP) || backend == addr(tb::POD_C_IP), "DNAT to a backend, got {backend}");
    assert_eq!(m.dport, 8080);
    assert_eq!(m.ttl, 63);
    let (port, mac) =
        if backend == addr(tb::POD_B_IP) { (tb::POD_B, tb::POD_B_MAC) } else { (tb::POD_C, tb::POD_C_MAC) };
    assert_eq!(v, Verdict::Tx(port));
    assert_eq!((m.dst_mac, m.src_mac), (mac, tb::ROUTER_MAC));
    // The reply is rewritten back to the VIP.
    let reply = IpFrame::new(
        mac,
        tb::ROUTER_MAC,
        backend.to_ip(),
        ip(tb::POD_A_IP),
        L4Repr::Tcp { sport: 8080, dport: 40000, seq: 5, ack: 1001, flags: SYN | ACK },
    )
    .build();
    let (v, out) = b.run(port, &reply);
    assert_eq!(v, Verdict::Tx(tb::POD_A));
    let m = meta(&out);
    assert_eq!((m.src, m.sport, m.dst, m.dport), (addr(tb::WEB_VIP), 80, addr(tb::POD_A_IP), 40000));
    assert_eq!(m.dst_mac, tb::POD_A_MAC);
    assert_eq!(b.w.conntrack().entries(), 2);
}

#[test]
fn clusterip_spreads_new_connections_and_keeps_flows_sticky() {
    let mut b = Bed::new();
    let mut seen = std::collections::HashMap::new();
    for sport in 40000..40064 {
        let (_, out) = b.run(tb::POD_A, &tcp(tb::POD_A_MAC, tb::POD_A_IP, sport, tb::WEB_VIP, 80, SYN));
        let d1 = meta(&out).dst;
        let (_, out) = b.run(tb::POD_A, &tcp(tb::POD_A_MAC, tb::POD_A_IP, sport, tb::WEB_VIP, 80, ACK));
        assert_eq!(meta(&out).dst, d1, "same flow, same backend");
        *seen.entry(d1).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2);
    assert!(seen.values().all(|n| *n >= 16), "{seen:?}");
}

#[test]
fn ipv6_clusterip() {
    let mut b = Bed::new();
    let (v, out) = b.run(tb::POD_A, &tcp(tb::POD_A_MAC, tb::POD_A_IP6, 40000, tb::WEB_VIP6, 80, SYN));
    assert!(matches!(v, Verdict::Tx(tb::POD_B) | Verdict::Tx(tb::POD_C)));
    let m = meta(&out);
    assert_eq!(m.l3, L3::V6);
    assert_eq!(m.dport, 8080);
    assert_eq!(m.ttl, 63);
}

#[test]
fn udp_service() {
    let mut b = Bed::new();
    let (v, out) = b.run(tb::POD_A, &udp(tb::POD_A_MAC, tb::POD_A_IP, 5000, tb::WEB_VIP, 53));
    assert_eq!(v, Verdict::Tx(tb::POD_B));
    let m = meta(&out);
    assert_eq!((m.dst, m.dport), (addr(tb::POD_B_IP), 5353));
}

#[test]
fn arp_for_gateway_is_answered() {
    let mut b = Bed::new();
    let req = build::arp_request(tb::POD_A_MAC, tb::POD_A_IP.parse().unwrap(), "10.244.1.1".parse().unwrap());
    let (v, out) = b.run(tb::POD_A, &req);
    assert_eq!(v, Verdict::Tx(tb::POD_A));
    let a = arp::ArpPacket::new_checked(&out[14..]).unwrap();
    assert_eq!(a.operation(), arp::OP_REPLY);
    assert_eq!(a.sender_mac(), tb::ROUTER_MAC);
    assert_eq!(a.sender_ip(), "10.244.1.1".parse::<core::net::Ipv4Addr>().unwrap());
    assert_eq!(&out[0..6], &tb::POD_A_MAC.0);
    // A pod asking with someone else's address is refused.
    let bad = build::arp_request(tb::POD_A_MAC, tb::POD_B_IP.parse().unwrap(), "10.244.1.1".parse().unwrap());
    assert_eq!(b.run(tb::POD_A, &bad).0, Verdict::Drop(DropReason::SpoofedIp));
    // On the uplink, only the node's own address is answered.
    let up = build::arp_request(tb::GATEWAY_MAC, "192.168.50.1".parse().unwrap(), tb::NODE_IP.parse().unwrap());
    let (v, out) = b.run(tb::UPLINK, &up);
    assert_eq!(v, Verdict::Tx(tb::UPLINK));
    assert_eq!(arp::ArpPacket::new_checked(&out[14..]).unwrap().sender_mac(), tb::UPLINK_MAC);
    let other = build::arp_request(tb::GATEWAY_MAC, "192.168.50.1".parse().unwrap(), "192.168.50.99".parse().unwrap());
    assert_eq!(b.run(tb::UPLINK, &other).0, Verdict::Drop(DropReason::ArpNotAnswered));
}

#[test]
fn neighbor_solicit_for_gateway_is_answered() {
    let mut b = Bed::new();
    let ns = build::neighbor_solicit(tb::POD_A_MAC, tb::POD_A_IP6.parse().unwrap(), "fe80::1".parse().unwrap());
    let (v, out) = b.run(tb::POD_A, &ns);
    assert_eq!(v, Verdict::Tx(tb::POD_A));
    let m = meta(&out);
    assert_eq!(m.src, addr("fe80::1"));
    assert_eq!(m.dst, addr(tb::POD_A_IP6));
    assert_eq!(m.icmp, IcmpKind::NeighborOther);
    assert_eq!(out[14 + 40], crate::wire::icmp::v6::NEIGHBOR_ADVERT);
    assert_eq!(&out[out.len() - 6..], &tb::ROUTER_MAC.0);
    assert_eq!(b.w.stats().events.nd_replies, 1);
}

#[test]
fn anti_spoofing() {
    let mut b = Bed::new();
    let f = tcp(tb::POD_A_MAC, tb::POD_B_IP, 1, tb::WEB_VIP, 80, SYN);
    assert_eq!(b.run(tb::POD_A, &f).0, Verdict::Drop(DropReason::SpoofedIp));
    let f = tcp(tb::POD_B_MAC, tb::POD_A_IP, 1, tb::WEB_VIP, 80, SYN);
    assert_eq!(b.run(tb::POD_A, &f).0, Verdict::Drop(DropReason::SpoofedMac));
    let mut f = tcp(tb::POD_A_MAC, tb::POD_A_IP, 1, tb::WEB_VIP, 80, SYN);
    f[0..6].copy_from_slice(&[2, 9, 9, 9, 9, 9]);
    assert_eq!(b.run(tb::POD_A, &f).0, Verdict::Drop(DropReason::NotForRouter));
    assert_eq!(b.run(PortId(77), &f).0, Verdict::Drop(DropReason::UnknownPort));
}

#[test]
fn service_without_backends_resets_tcp_and_rejects_udp() {
    let mut b = Bed::new();
    let (v, out) = b.run(tb::POD_A, &tcp(tb::POD_A_MAC, tb::POD_A_IP, 40000, tb::EMPTY_VIP, 80, SYN));
    assert_eq!(v, Verdict::Tx(tb::POD_A));
    let m = meta(&out);
    assert_eq!((m.src, m.sport, m.dst, m.dport), (addr(tb::EMPTY_VIP), 80, addr(tb::POD_A_IP), 40000));
    assert_eq!(m.tcp_flags, RST | ACK);
    let t = crate::wire::l4::TcpSegment::new_checked(&out[34..]).unwrap();
    assert_eq!(t.ack(), 1001, "acknowledges the SYN");
    assert_eq!(m.dst_mac, tb::POD_A_MAC);

    let (v, out) = b.run(tb::POD_A, &udp(tb::POD_A_MAC, tb::POD_A_IP, 5000, tb::EMPTY_VIP, 53));
    assert_eq!(v, Verdict::Tx(tb::POD_A));
    let m = meta(&out);
    assert_eq!(m.proto, proto::ICMP);
    assert_eq!(m.icmp, IcmpKind::Error);
    assert_eq!((m.src, m.dst), (addr(tb::EMPTY_VIP), addr(tb::POD_A_IP)));
    assert_eq!((out[34], out[35]), (3, 3), "port unreachable");
    // The quoted packet is the original datagram.
    assert_eq!(&out[42 + 16..42 + 20], &[10, 96, 0, 20]);
    assert_eq!(b.drops(DropReason::ServiceNoBackends), 2);
    assert_eq!(b.w.stats().events.tcp_resets_sent, 1);
    assert_eq!(b.w.stats().events.icmp_unreachables_sent, 1);
}

#[test]
fn ingress_policy_allows_client_denies_others_and_replies_pass() {
    let mut b = Bed::new();
    // b (app=web) to c: denied by c's ingress policy.
    let f = tcp(tb::POD_B_MAC, tb::POD_B_IP, 1234, tb::POD_C_IP, 8080, SYN);
    assert_eq!(b.run(tb::POD_B, &f).0, Verdict::Drop(DropReason::PolicyDeniedIngress));
    // a (client) to c on 8080: allowed; on 9090: denied.
    let f = tcp(tb::POD_A_MAC, tb::POD_A_IP, 1234, tb::POD_C_IP, 8080, SYN);
    assert_eq!(b.run(tb::POD_A, &f).0, Verdict::Tx(tb::POD_C));
    let f = tcp(tb::POD_A_MAC, tb::POD_A_IP, 1234, tb::POD_C_IP, 9090, SYN);
    assert_eq!(b.run(tb::POD_A, &f).0, Verdict::Drop(DropReason::PolicyDeniedIngress));
    // c's reply to a passes through conntrack.
    let r = tcp(tb::POD_C_MAC, tb::POD_C_IP, 8080, tb::POD_A_IP, 1234, SYN | ACK);
    assert_eq!(b.run(tb::POD_C, &r).0, Verdict::Tx(tb::POD_A));
    // A remote client pod (same identity as a) over the tunnel is allowed too.
    let inner = tcp(tb::NODE2_VTEP_MAC, tb::REMOTE_POD_IP, 999, tb::POD_C_IP, 8080, SYN);
    let t = tb::from_node2(&inner, TunnelKind::Vxlan, tb::VNI);
    assert_eq!(b.run(tb::UPLINK, &t).0, Verdict::Tx(tb::POD_C));
    // The host (kubelet probes) is always allowed.
    let h = IpFrame::new(
        tb::HOST_MAC,
        tb::ROUTER_MAC,
        ip(tb::NODE_IP),
        ip(tb::POD_C_IP),
        L4Repr::Tcp { sport: 5555, dport: 9999, seq: 0, ack: 0, flags: SYN },
    )
    .build();
    assert_eq!(b.run(tb::HOST, &h).0, Verdict::Tx(tb::POD_C));
}

#[test]
fn policy_applies_after_dnat() {
    let mut b = Bed::new();
    // b to the web service: flows DNATed to c are denied by c's ingress policy, to b allowed.
    let mut denied = 0;
    let mut allowed = 0;
    for sport in 1000..1064 {
        match b.run(tb::POD_B, &tcp(tb::POD_B_MAC, tb::POD_B_IP, sport, tb::WEB_VIP, 80, SYN)).0 {
            Verdict::Drop(DropReason::PolicyDeniedIngress) => denied += 1,
            Verdict::Tx(tb::POD_B) => allowed += 1,
            v => panic!("unexpected {v:?}"),
        }
    }
    assert!(denied > 0 && allowed > 0, "denied {denied} allowed {allowed}");
}

#[test]
fn egress_policy_with_many_rules() {
    let mut b = Bed::with(Scale { policy_rules: 2000, ..Scale::default() });
    // Allowed by the final "cluster" rule.
    assert_eq!(
        b.run(tb::POD_A, &tcp(tb::POD_A_MAC, tb::POD_A_IP, 1, tb::POD_B_IP, 8080, SYN)).0,
        Verdict::Tx(tb::POD_B)
    );
    // Outside the cluster ranges: no rule matches.
    let f = tcp(tb::POD_A_MAC, tb::POD_A_IP, 1, "8.8.8.8", 443, SYN);
    assert_eq!(b.run(tb::POD_A, &f).0, Verdict::Drop(DropReason::PolicyDeniedEgress));
    // A bulk CIDR rule: 172.16.0.0/24 (rule 1) on TCP port 2.
    let f = tcp(tb::POD_A_MAC, tb::POD_A_IP, 1, "172.16.0.9", 2, SYN);
    assert_eq!(b.run(tb::POD_A, &f).0, Verdict::Tx(tb::UPLINK));
    let f = tcp(tb::POD_A_MAC, tb::POD_A_IP, 1, "172.16.0.9", 3, SYN);
    assert_eq!(b.run(tb::POD_A, &f).0, Verdict::Drop(DropReason::PolicyDeniedEgress));
}

#[test]
fn vxlan_and_geneve_encapsulation_to_remote_node() {
    for kind in [TunnelKind::Vxlan, TunnelKind::Geneve] {
        let mut b = Bed::with(Scale { tunnel: kind, ..Scale::default() });
        let inner_in = tcp(tb::POD_A_MAC, tb::POD_A_IP, 40000, tb::REMOTE_POD_IP, 80, SYN);
        let (v, out) = b.run(tb::POD_A, &inner_in);
        assert_eq!(v, Verdict::Tx(tb::UPLINK), "{kind:?}");
        let m = meta(&out);
        assert_eq!((m.src, m.dst, m.proto), (addr(tb::NODE_IP), addr(tb::NODE2_IP), proto::UDP));
        assert_eq!((m.src_mac, m.dst_mac), (tb::UPLINK_MAC, tb::NODE2_MAC));
        assert_eq!(m.dport, if kind == TunnelKind::Vxlan { 4789 } else { 6081 });
        assert!(m.sport >= 49152);
        let inner = &out[50..];
        let im = meta(inner);
        assert_eq!((im.src, im.dst, im.ttl), (addr(tb::POD_A_IP), addr(tb::REMOTE_POD_IP), 63));
        assert_eq!((im.src_mac, im.dst_mac), (tb::VTEP_MAC, tb::NODE2_VTEP_MAC));
        assert_eq!(b.w.stats().events.encapsulated, 1);
    }
}

#[test]
fn decapsulation_from_remote_node() {
    for kind in [TunnelKind::Vxlan, TunnelKind::Geneve] {
        let mut b = Bed::new();
        let inner = tcp(tb::NODE2_VTEP_MAC, tb::REMOTE_POD_IP, 999, tb::POD_B_IP, 8080, SYN);
        let t = tb::from_node2(&inner, kind, tb::VNI);
        let (v, out) = b.run(tb::UPLINK, &t);
        assert_eq!(v, Verdict::Tx(tb::POD_B));
        let m = meta(&out);
        assert_eq!((m.src, m.dst, m.ttl), (addr(tb::REMOTE_POD_IP), addr(tb::POD_B_IP), 63));
        assert_eq!((m.src_mac, m.dst_mac), (tb::ROUTER_MAC, tb::POD_B_MAC));
        // Wrong VNI, unknown peer.
        let t = tb::from_node2(&inner, kind, 99);
        assert_eq!(b.run(tb::UPLINK, &t).0, Verdict::Drop(DropReason::TunnelWrongVni));
        let t = build::tunnel_wrap(
            &inner,
            kind,
            tb::NODE2_MAC,
            tb::UPLINK_MAC,
            ip("192.168.50.99"),
            ip(tb::NODE_IP),
            50000,
            tb::VNI,
        );
        assert_eq!(b.run(tb::UPLINK, &t).0, Verdict::Drop(DropReason::TunnelUnknownPeer));
    }
}

#[test]
fn geneve_flags_and_options() {
    let mut b = Bed::new();
    let inner = tcp(tb::NODE2_VTEP_MAC, tb::REMOTE_POD_IP, 999, tb::POD_B_IP, 8080, SYN);
    let mk = |opt_words: u8, flags: u8| {
        let mut t = tb::from_node2(&inner, TunnelKind::Geneve, tb::VNI);
        // Insert option words after the 8-byte Geneve header and fix the lengths.
        let at = 14 + 20 + 8 + 8;
        for _ in 0..usize::from(opt_words) * 4 {
            t.insert(at, 0);
        }
        t[42] = opt_words;
        t[43] = flags;
        let ip_len = (t.len() - 14) as u16;
        t[16..18].copy_from_slice(&ip_len.to_be_bytes());
        t[24] = 0;
        t[25] = 0;
        let c = crate::wire::checksum::checksum(&t[14..34]);
        t[24..26].copy_from_slice(&c.to_be_bytes());
        t[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
        t
    };
    assert_eq!(b.run(tb::UPLINK, &mk(2, 0)).0, Verdict::Tx(tb::POD_B), "options are skipped");
    assert_eq!(b.run(tb::UPLINK, &mk(0, 0x80)).0, Verdict::Drop(DropReason::TunnelOam));
    assert_eq!(b.run(tb::UPLINK, &mk(1, 0x40)).0, Verdict::Drop(DropReason::TunnelCriticalOption));
}

pub(super) const OUTSIDE_CLIENT: &str = "203.0.113.7";

/// A SYN from a client outside the cluster (port `sport`) to the node's NodePort, through the
/// pipeline.
fn nodeport_syn(b: &mut Bed, sport: u16) -> (Verdict, Vec<u8>) {
    let src = ip(OUTSIDE_CLIENT);
    let l4 = L4Repr::Tcp { sport, dport: tb::NODE_PORT, seq: 1, ack: 0, flags: SYN };
    b.run(tb::UPLINK, &IpFrame::new(tb::GATEWAY_MAC, tb::UPLINK_MAC, src, ip(tb::NODE_IP), l4).build())
}

/// A SYN from a client outside the cluster to the node's NodePort, whose backends are b and
/// c. Pod c admits only the client identity (its policy sees the outside client, not the
/// node address the SYN is masqueraded to), so this tries client ports from 55555 on until
/// one lands on b; returns the verdict, the frame and the client port.
pub(super) fn nodeport_syn_from_outside(b: &mut Bed) -> (Verdict, Vec<u8>, u16) {
    for sport in 55555..55555 + 64 {
        let (v, out) = nodeport_syn(b, sport);
        if v != Verdict::Drop(DropReason::PolicyDeniedIngress) {
            return (v, out, sport);
        }
    }
    panic!("no client port lands on b")
}

#[test]
fn nodeport_from_outside_with_snat_and_reply() {
    let mut b = Bed::new();
    let client = OUTSIDE_CLIENT;
    // Clients' ports spread over both backends: c's policy denies the outside client.
    let mut seen = std::collections::BTreeSet::new();
    for sport in 40000..40064 {
        match nodeport_syn(&mut b, sport).0 {
            Verdict::Tx(tb::POD_B) => seen.insert("b"),
            Verdict::Drop(DropReason::PolicyDeniedIngress) => seen.insert("denied at c"),
            v => panic!("{v:?}"),
        };
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    let (v, out, sport) = nodeport_syn_from_outside(&mut b);
    let m = meta(&out);
    assert_eq!(v, Verdict::Tx(tb::POD_B));
    assert_eq!(m.src, addr(tb::NODE_IP), "externalTrafficPolicy Cluster masquerades");
    assert!((32768..=60999).contains(&m.sport));
    assert_eq!(m.dport, 8080);
    let (backend_mac, port) =
        if v == Verdict::Tx(tb::POD_B) { (tb::POD_B_MAC, tb::POD_B) } else { (tb::POD_C_MAC, tb::POD_C) };
    let r = IpFrame::new(
        backend_mac,
        tb::ROUTER_MAC,
        m.dst.to_ip(),
        ip(tb::NODE_IP),
        L4Repr::Tcp { sport: 8080, dport: m.sport, seq: 9, ack: 2, flags: SYN | ACK },
    )
    .build();
    let (v, out) = b.run(port, &r);
    assert_eq!(v, Verdict::Tx(tb::UPLINK));
    let m = meta(&out);
    assert_eq!((m.src, m.sport, m.dst, m.dport), (addr(tb::NODE_IP), tb::NODE_PORT, addr(client), sport));
    assert_eq!((m.src_mac, m.dst_mac), (tb::UPLINK_MAC, tb::GATEWAY_MAC));
}

#[test]
fn hairpin_through_own_service() {
    let mut b = Bed::new();
    // b calls the dns service whose only backend is b itself.
    let (v, out) = b.run(tb::POD_B, &udp(tb::POD_B_MAC, tb::POD_B_IP, 7000, tb::WEB_VIP, 53));
    assert_eq!(v, Verdict::Tx(tb::POD_B));
    let m = meta(&out);
    assert_eq!((m.src, m.dst, m.dport), (addr(tb::WEB_VIP), addr(tb::POD_B_IP), 5353));
    let r = IpFrame::new(
        tb::POD_B_MAC,
        tb::ROUTER_MAC,
        ip(tb::POD_B_IP),
        ip(tb::WEB_VIP),
        L4Repr::Udp { sport: 5353, dport: m.sport },
    )
    .build();
    let (v, out) = b.run(tb::POD_B, &r);
    assert_eq!(v, Verdict::Tx(tb::POD_B));
    let m = meta(&out);
    assert_eq!((m.src, m.sport, m.dst, m.dport), (addr(tb::WEB_VIP), 53, addr(tb::POD_B_IP), 7000));
}

#[test]
fn ttl_expiry_and_routes() {
    let mut b = Bed::new();
    let mut f = IpFrame::new(
        tb::POD_A_MAC,
        tb::ROUTER_MAC,
        ip(tb::POD_A_IP),
        ip(tb::POD_B_IP),
        L4Repr::Udp { sport: 1, dport: 2 },
    );
    f.ttl = 1;
    assert_eq!(b.run(tb::POD_A, &f.build()).0, Verdict::Drop(DropReason::TtlExceeded));
    // A pod-CIDR address with no pod.
    assert_eq!(
        b.run(tb::POD_A, &udp(tb::POD_A_MAC, tb::POD_A_IP, 1, "10.244.1.77", 2)).0,
        Verdict::Drop(DropReason::NoLocalEndpoint)
    );
    // The outside world goes to the uplink gateway.
    let (v, out) = b.run(tb::POD_A, &udp(tb::POD_A_MAC, tb::POD_A_IP, 1, "198.51.100.1", 2));
    assert_eq!(v, Verdict::Tx(tb::UPLINK));
    assert_eq!(meta(&out).dst_mac, tb::GATEWAY_MAC);
    // The node's own address goes to the host port.
    assert_eq!(b.run(tb::POD_A, &udp(tb::POD_A_MAC, tb::POD_A_IP, 1, tb::NODE_IP, 2)).0, Verdict::Tx(tb::HOST));
}

#[test]
fn mtu_is_enforced_on_encapsulation() {
    let mut b = Bed::new();
    let big = IpFrame::new(
        tb::POD_A_MAC,
        tb::ROUTER_MAC,
        ip(tb::POD_A_IP),
        ip(tb::REMOTE_POD_IP),
        L4Repr::Udp { sport: 1, dport: 2 },
    )
    .with_payload(&[0u8; 1472])
    .build();
    // DF is set: the sender is told (`tests_mtu.rs` checks the message), the drop counted.
    assert_eq!(b.run(tb::POD_A, &big).0, Verdict::Tx(tb::POD_A));
    assert_eq!(b.drops(DropReason::MtuExceeded), 1);
    let fits = IpFrame::new(
        tb::POD_A_MAC,
        tb::ROUTER_MAC,
        ip(tb::POD_A_IP),
        ip(tb::REMOTE_POD_IP),
        L4Repr::Udp { sport: 1, dport: 2 },
    )
    .with_payload(&[0u8; 1422])
    .build();
    assert_eq!(b.run(tb::POD_A, &fits).0, Verdict::Tx(tb::UPLINK));
}

#[test]
fn malformed_frames_are_dropped_with_reasons() {
    let mut b = Bed::new();
    let good = tcp(tb::POD_A_MAC, tb::POD_A_IP, 1, tb::POD_B_IP, 2, SYN);
    assert_eq!(b.run(tb::POD_A, &good).0, Verdict::Tx(tb::POD_B));
    for (f, want) in tb::malformed_ipv4_tcp(&good) {
        assert_eq!(b.run(tb::POD_A, &f).0, Verdict::Drop(want), "case {want}");
        assert!(b.drops(want) >= 1);
    }
    // UDP length beyond the datagram.
    let mut u = udp(tb::POD_A_MAC, tb::POD_A_IP, 1, tb::POD_B_IP, 2);
    u[38..40].copy_from_slice(&200u16.to_be_bytes());
    assert_eq!(b.run(tb::POD_A, &u).0, Verdict::Drop(DropReason::L4Truncated));
    // A Fragment header announced where the UDP header is: read as one, it is an atomic
    // fragment whose next header is Hop-by-Hop, which may only come first.
    let mut f6 = udp(tb::POD_A_MAC, tb::POD_A_IP6, 1, tb::POD_B_IP6, 2);
    f6[20] = 44;
    assert_eq!(b.run(tb::POD_A, &f6).0, Verdict::Drop(DropReason::Ipv6ExtensionHeader));
    // Hop-by-Hop whose length runs past the packet.
    f6[20] = 0;
    assert_eq!(b.run(tb::POD_A, &f6).0, Verdict::Drop(DropReason::Ipv6ExtensionHeader));
}

#[test]
fn every_frame_gets_a_verdict_in_big_batches() {
    let mut b = Bed::new();
    let frames: Vec<OwnedBuf> = (0..200u16)
        .map(|i| OwnedBuf::from_frame(&tcp(tb::POD_A_MAC, tb::POD_A_IP, 10000 + i, tb::WEB_VIP, 80, SYN), tb::POD_A))
        .collect();
    let mut frames = frames;
    let mut v = vec![Verdict::Drop(DropReason::NoRoute); frames.len()];
    b.w.process(&b.t, 5, &mut frames, &mut v);
    assert!(v.iter().all(|x| matches!(x, Verdict::Tx(tb::POD_B) | Verdict::Tx(tb::POD_C))));
    assert_eq!(b.w.stats().events.batches, 4);
    assert_eq!(b.w.stats().ports[tb::POD_A.index()].rx_packets, 200);
}

/// Issue 13 (soak): a removed port's counters move to `removed`, so totals over ports keep
/// what it counted while a port given its id later starts from zero.
#[test]
fn a_removed_port_keeps_its_counts_in_the_totals() {
    let mut b = Bed::new();
    let mut frames: Vec<OwnedBuf> = (0..10u16)
        .map(|i| OwnedBuf::from_frame(&tcp(tb::POD_A_MAC, tb::POD_A_IP, 10000 + i, tb::WEB_VIP, 80, SYN), tb::POD_A))
        .collect();
    let mut v = vec![Verdict::Drop(DropReason::NoRoute); frames.len()];
    b.w.process(&b.t, 5, &mut frames, &mut v);
    let total = |b: &Bed| b.w.stats().ports.iter().map(|p| p.rx_packets).sum::<u64>() + b.w.stats().removed.rx_packets;
    assert_eq!(total(&b), 10);
    b.w.forget_port(tb::POD_A);
    assert_eq!(b.w.stats().ports[tb::POD_A.index()].rx_packets, 0, "a port given the id starts from zero");
    assert_eq!(b.w.stats().removed.rx_packets, 10);
    assert_eq!(total(&b), 10);
}

#[test]
fn session_affinity_pins_client_to_backend() {
    let mut t = tb::tables(Scale::default());
    // Rebuild the web service with ClientIP affinity.
    let be = |ip: &str| crate::service::Backend {
        addr: addr(ip),
        port: 8080,
        weight: 1,
        state: crate::service::BackendState::Ready,
        local: true,
    };
    let sp = crate::service::ServicePort::new(
        crate::service::ServicePortSpec {
            affinity_timeout_s: Some(10),
            ..crate::service::ServicePortSpec::simple(
                "default/web:http",
                proto::TCP,
                vec![be(tb::POD_B_IP), be(tb::POD_C_IP)],
            )
        },
        251,
    );
    let fe = crate::service::Frontend {
        addr: addr(tb::WEB_VIP),
        port: 80,
        proto: proto::TCP,
        kind: crate::service::FrontendKind::ClusterIp,
        target: crate::service::ServicePortId(0),
    };
    t.services = std::sync::Arc::new(crate::service::ServiceTable::build(vec![sp], vec![fe]).unwrap());
    let mut b = Bed { t, w: Worker::new(WorkerConfig::default()), now: 1 };
    let first = meta(&b.run(tb::POD_A, &tcp(tb::POD_A_MAC, tb::POD_A_IP, 30000, tb::WEB_VIP, 80, SYN)).1).dst;
    for sport in 30001..30040 {
        assert_eq!(
            meta(&b.run(tb::POD_A, &tcp(tb::POD_A_MAC, tb::POD_A_IP, sport, tb::WEB_VIP, 80, SYN)).1).dst,
            first
        );
    }
    assert!(b.w.stats().events.affinity_hits >= 39);
    // After the timeout, Maglev decides again (over many clients ports, both backends appear).
    b.now += 11_000_000_000;
    let seen: std::collections::HashSet<_> = (0..64u16)
        .map(|i| {
            let d = meta(&b.run(tb::POD_A, &tcp(tb::POD_A_MAC, tb::POD_A_IP, 20000 + i, tb::WEB_VIP, 80, SYN)).1).dst;
            b.now += 11_000_000_000;
            d
        })
        .collect();
    assert_eq!(seen.len(), 2);
}

/// An ICMPv4 port unreachable from `src` to `dst` quoting `quoted` (IP header and 8 bytes).
pub(super) fn icmp_error(src_mac: MacAddr, dst_mac: MacAddr, src: &str, dst: &str, quoted: &[u8]) -> Vec<u8> {
    let mut body = vec![3u8, 3, 0, 0, 0, 0, 0, 0];
    body.extend_from_slice(&quoted[..28.min(quoted.len())]);
    let c = crate::wire::checksum::checksum(&body);
    body[2..4].copy_from_slice(&c.to_be_bytes());
    let mut f = vec![0u8; 34];
    crate::wire::ethernet::write_header(&mut f, dst_mac, src_mac, crate::wire::ethernet::ethertype::IPV4);
    crate::wire::ipv4::write_header(
        &mut f[14..],
        src.parse().unwrap(),
        dst.parse().unwrap(),
        proto::ICMP,
        body.len(),
        64,
    );
    f.extend_from_slice(&body);
    f
}

#[test]
fn icmp_errors_about_a_service_flow_are_translated_back() {
    let mut b = Bed::new();
    let (_, out) = b.run(tb::POD_A, &udp(tb::POD_A_MAC, tb::POD_A_IP, 5000, tb::WEB_VIP, 53));
    // The backend refuses: its error quotes the packet as it arrived (a -> b:5353).
    let err = icmp_error(tb::POD_B_MAC, tb::ROUTER_MAC, tb::POD_B_IP, tb::POD_A_IP, &out[14..]);
    let (v, back) = b.run(tb::POD_B, &err);
    assert_eq!(v, Verdict::Tx(tb::POD_A));
    let m = meta(&back);
    assert_eq!(
        (m.src, m.dst, m.icmp),
        (addr(tb::WEB_VIP), addr(tb::POD_A_IP), IcmpKind::Error),
        "from the VIP, as the client knows it"
    );
    let q = &back[42..];
    // The quote is cut after 8 bytes of UDP, so read its header fields directly.
    assert_eq!(
        (&q[12..16], &q[16..20]),
        (&[10u8, 244, 1, 2][..], &[10u8, 96, 0, 10][..]),
        "quoted header translated back"
    );
    assert_eq!(crate::wire::checksum::checksum(&q[..20]), 0, "quoted header checksum still valid");
    assert_eq!(&q[20..24], &[0x13, 0x88, 0, 53], "quoted ports 5000 -> 53");
}

#[test]
fn icmp_errors_about_a_masqueraded_flow_reach_the_outside_client() {
    let mut b = Bed::new();
    let client = OUTSIDE_CLIENT;
    let (v, out, _) = nodeport_syn_from_outside(&mut b);
    let (mac, port) = if v == Verdict::Tx(tb::POD_B) { (tb::POD_B_MAC, tb::POD_B) } else { (tb::POD_C_MAC, tb::POD_C) };
    let backend = meta(&out).dst.to_string();
    let err = icmp_error(mac, tb::ROUTER_MAC, &backend, tb::NODE_IP, &out[14..]);
    let (v, back) = b.run(port, &err);
    assert_eq!(v, Verdict::Tx(tb::UPLINK));
    let m = meta(&back);
    assert_eq!((m.src, m.dst), (addr(tb::NODE_IP), addr(client)));
    let q = &back[42..];
    assert_eq!(&q[12..20], &[203, 0, 113, 7, 192, 168, 50, 10]);
    assert_eq!(u16::from_be_bytes([q[22], q[23]]), tb::NODE_PORT);
    // An error about a flow nobody tracks passes untouched (policy still applies to it).
    let stray = icmp_error(tb::POD_B_MAC, tb::ROUTER_MAC, tb::POD_B_IP, tb::POD_A_IP, &out[14..34]);
    let (v, _) = b.run(tb::POD_B, &stray);
    assert_eq!(v, Verdict::Tx(tb::POD_A));
}

#[test]
fn ipv6_underlay_encapsulation_carries_a_udp_checksum() {
    let mut t = tb::tables(Scale::default());
    // Move node-2 to an IPv6 underlay address.
    let mut nodes = t.nodes.clone();
    nodes[0].underlay_ip = addr("fd00:50::11");
    t = crate::snapshot::Tables::new(
        t.generation,
        t.node.clone(),
        t.ports.clone(),
        (*t.endpoints).clone(),
        (*t.routes).clone(),
        nodes,
        (*t.services).clone(),
        (*t.policy).clone(),
        t.hash_seed,
        true,
    );
    let mut b = Bed { t, w: Worker::new(WorkerConfig::default()), now: 1 };
    let (v, out) = b.run(tb::POD_A, &tcp(tb::POD_A_MAC, tb::POD_A_IP, 40000, tb::REMOTE_POD_IP, 80, SYN));
    assert_eq!(v, Verdict::Tx(tb::UPLINK));
    let m = meta(&out);
    assert_eq!((m.l3, m.src, m.dst, m.dport), (L3::V6, addr(tb::NODE_IP6), addr("fd00:50::11"), 4789));
    assert_ne!(
        &out[14 + 40 + 6..14 + 40 + 8],
        &[0, 0],
        "IPv6 requires the UDP checksum (verified by the strict parse above)"
    );
    let inner = meta(&out[14 + 40 + 8 + 8..]);
    assert_eq!((inner.src, inner.dst), (addr(tb::POD_A_IP), addr(tb::REMOTE_POD_IP)));
    // And back: a tunnel packet from the IPv6 underlay is decapsulated.
    let inner = tcp(tb::NODE2_VTEP_MAC, tb::REMOTE_POD_IP, 80, tb::POD_A_IP, 40000, SYN | ACK);
    let t6 = build::tunnel_wrap(
        &inner,
        TunnelKind::Vxlan,
        tb::NODE2_MAC,
        tb::UPLINK_MAC,
        ip("fd00:50::11"),
        ip(tb::NODE_IP6),
        50000,
        tb::VNI,
    );
    assert_eq!(b.run(tb::UPLINK, &t6).0, Verdict::Tx(tb::POD_A));
}

/// The reference tables with extra services, routes and ports for the rarer drop reasons.
fn tables_for_rare_drops() -> Tables {
    use crate::service::{
        Backend, BackendState, Frontend, FrontendKind, ServicePort, ServicePortId, ServicePortSpec, ServiceTable,
    };
    use crate::snapshot::{PortInfo, PortKind};
    let t = tb::tables(Scale::default());
    let be = Backend { addr: addr(tb::REMOTE_POD_IP), port: 80, weight: 1, state: BackendState::Ready, local: false };
    let lb = ServicePortSpec {
        source_ranges: vec!["198.51.100.0/24".parse().unwrap()],
        external_local: true,
        ..ServicePortSpec::simple("default/lb:http", proto::TCP, vec![be])
    };
    let services = ServiceTable::build(
        vec![ServicePort::new(lb, 251)],
        vec![Frontend {
            addr: addr("203.0.113.50"),
            port: 443,
            proto: proto::TCP,
            kind: FrontendKind::LoadBalancer,
            target: ServicePortId(0),
        }],
    )
    .unwrap();
    let mut routes: Vec<_> = t.routes.entries().to_vec();
    routes.push(("192.0.2.0/24".parse().unwrap(), crate::route::RouteTarget::Blackhole));
    // No host port, and a pod port with no pod on it.
    let mut ports: Vec<PortInfo> = t.ports.iter().filter(|p| p.kind != PortKind::Host).cloned().collect();
    ports.push(PortInfo { name: "empty".into(), kind: PortKind::Pod });
    Tables::new(
        2,
        t.node.clone(),
        ports,
        (*t.endpoints).clone(),
        crate::route::RouteTable::build(routes),
        t.nodes.clone(),
        services,
        (*t.policy).clone(),
        t.hash_seed,
        true,
    )
}

#[test]
fn rarer_drop_reasons() {
    let mut b = Bed { t: tables_for_rare_drops(), w: Worker::new(WorkerConfig::default()), now: 1 };
    let outside = |src: &str, dst: &str, dport| {
        IpFrame::new(
            tb::GATEWAY_MAC,
            tb::UPLINK_MAC,
            ip(src),
            ip(dst),
            L4Repr::Tcp { sport: 1234, dport, seq: 1, ack: 0, flags: SYN },
        )
        .build()
    };
    let cases: Vec<(PortId, Vec<u8>, DropReason)> = vec![
        (tb::UPLINK, outside("203.0.113.9", "203.0.113.50", 443), DropReason::LoadBalancerSourceDenied),
        (tb::UPLINK, outside("198.51.100.9", "203.0.113.50", 443), DropReason::ServiceNoLocalBackend),
        (tb::POD_A, udp(tb::POD_A_MAC, tb::POD_A_IP, 1, "192.0.2.7", 2), DropReason::RouteBlackhole),
        (tb::POD_A, udp(tb::POD_A_MAC, tb::POD_A_IP, 1, tb::NODE_IP, 2), DropReason::NoHostPort),
        (PortId(4), udp(tb::POD_A_MAC, tb::POD_A_IP, 1, tb::POD_B_IP, 2), DropReason::UnknownEndpoint),
        (
            tb::POD_A,
            {
                let mut a =
                    build::arp_request(tb::POD_A_MAC, tb::POD_A_IP.parse().unwrap(), "10.244.1.1".parse().unwrap());
                a[15] = 6;
                a
            },
            DropReason::ArpMalformed,
        ),
        (
            tb::POD_A,
            {
                let mut f = IpFrame::new(
                    tb::POD_A_MAC,
                    tb::ROUTER_MAC,
                    ip(tb::POD_A_IP),
                    ip(tb::POD_B_IP),
                    L4Repr::IcmpEcho { request: true, ident: 1, seq: 1 },
                )
                .build();
                f[34] = 13; // timestamp request
                let c = crate::wire::checksum::update16(u16::from_be_bytes([f[36], f[37]]), 0x0800, 0x0d00);
                f[36..38].copy_from_slice(&c.to_be_bytes());
                f
            },
            DropReason::IcmpUnsupported,
        ),
        (
            tb::POD_A,
            {
                // Duplicate address detection: a solicitation from the unspecified address, no option.
                let mut n =
                    build::neighbor_solicit(tb::POD_A_MAC, "::".parse().unwrap(), tb::POD_A_IP6.parse().unwrap());
                n.truncate(14 + 40 + 24);
                n[18..20].copy_from_slice(&24u16.to_be_bytes());
                n[56] = 0;
                n[57] = 0;
                let sum = crate::wire::checksum::pseudo_header_sum(&n[22..38], &n[38..54], proto::ICMPV6, 24);
                let c = crate::wire::l4::transport_checksum(sum, &n[54..]);
                n[56..58].copy_from_slice(&c.to_be_bytes());
                n
            },
            DropReason::NdNotAnswered,
        ),
        (
            tb::UPLINK,
            {
                let inner = tcp(tb::NODE2_VTEP_MAC, tb::REMOTE_POD_IP, 1, tb::POD_B_IP, 2, SYN);
                let mut t = tb::from_node2(&inner, TunnelKind::Vxlan, tb::VNI);
                t[42] = 0; // VNI-valid flag cleared
                t
            },
            DropReason::TunnelMalformed,
        ),
        (
            tb::UPLINK,
            {
                let inner = tcp(tb::NODE2_VTEP_MAC, tb::REMOTE_POD_IP, 1, tb::POD_B_IP, 2, SYN);
                let mut t = tb::from_node2(&inner, TunnelKind::Geneve, tb::VNI);
                t[44..46].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4 payload, not Ethernet
                t
            },
            DropReason::TunnelNotEthernet,
        ),
    ];
    for (port, frame, want) in cases {
        assert_eq!(b.run(port, &frame).0, Verdict::Drop(want), "case {want}");
    }
    // No headroom left for the outer headers.
    let f = tcp(tb::POD_A_MAC, tb::POD_A_IP, 1, tb::REMOTE_POD_IP, 80, SYN);
    let mut buf = OwnedBuf::new(256, 0);
    assert!(buf.load(&f, tb::POD_A, 0));
    let mut v = [Verdict::Drop(DropReason::NoRoute)];
    b.w.process(&b.t, 5, std::slice::from_mut(&mut buf), &mut v);
    assert_eq!(v[0], Verdict::Drop(DropReason::NoHeadroom));
    // A frame the backend could not queue is moved from the port's TX count to a drop.
    b.w.count_tx_drop(tb::POD_A, 60);
    assert_eq!(b.drops(DropReason::TxQueueFull), 1);
}

#[test]
fn udp_flows_to_a_removed_backend_move_and_tcp_flows_stay() {
    use crate::service::{
        Backend, BackendState, Frontend, FrontendKind, ServicePort, ServicePortId, ServicePortSpec, ServiceTable,
    };
    let mut b = Bed::new();
    // dns (UDP) has only b; web (TCP) has b and c.
    let q = udp(tb::POD_A_MAC, tb::POD_A_IP, 5000, tb::WEB_VIP, 53);
    assert_eq!(b.run(tb::POD_A, &q).0, Verdict::Tx(tb::POD_B));
    let mut tcp_to_b = None;
    for sport in 30000..30100 {
        let (v, out) = b.run(tb::POD_A, &tcp(tb::POD_A_MAC, tb::POD_A_IP, sport, tb::WEB_VIP, 80, SYN));
        if v == Verdict::Tx(tb::POD_B) {
            tcp_to_b = Some((sport, meta(&out).dport));
            break;
        }
    }
    let (tcp_sport, web_port) = tcp_to_b.expect("some flow lands on b");
    // b answers: the connection is established (an unanswered one would be judged again).
    let syn_ack = tcp(tb::POD_B_MAC, tb::POD_B_IP, web_port, tb::POD_A_IP, tcp_sport, SYN | ACK);
    assert_eq!(b.run(tb::POD_B, &syn_ack).0, Verdict::Tx(tb::POD_A));
    // The next snapshot: b has left both services; c serves web, the remote pod d serves dns.
    let be = |ip: &str, port| Backend { addr: addr(ip), port, weight: 1, state: BackendState::Ready, local: true };
    let fe = |port, proto, t| Frontend {
        addr: addr(tb::WEB_VIP),
        port,
        proto,
        kind: FrontendKind::ClusterIp,
        target: ServicePortId(t),
    };
    let services = ServiceTable::build(
        vec![
            ServicePort::new(
                ServicePortSpec::simple("default/web:http", proto::TCP, vec![be(tb::POD_C_IP, 8080)]),
                251,
            ),
            ServicePort::new(
                ServicePortSpec::simple("default/web:dns", proto::UDP, vec![be(tb::REMOTE_POD_IP, 5353)]),
                251,
            ),
        ],
        vec![fe(80, proto::TCP, 0), fe(53, proto::UDP, 1)],
    )
    .unwrap();
    let t = &b.t;
    b.t = Tables::new(
        t.generation + 1,
        t.node.clone(),
        t.ports.clone(),
        (*t.endpoints).clone(),
        (*t.routes).clone(),
        t.nodes.clone(),
        services,
        (*t.policy).clone(),
        t.hash_seed,
        true,
    );
    let (v, out) = b.run(tb::POD_A, &q);
    assert_eq!(v, Verdict::Tx(tb::UPLINK), "the UDP flow picks a live backend");
    let inner = meta(&out[50..]);
    assert_eq!((inner.dst, inner.dport), (addr(tb::REMOTE_POD_IP), 5353));
    let (v, _) = b.run(tb::POD_A, &tcp(tb::POD_A_MAC, tb::POD_A_IP, tcp_sport, tb::WEB_VIP, 80, ACK));
    assert_eq!(v, Verdict::Tx(tb::POD_B), "an established TCP flow ends on its own backend");
}

#[test]
fn reject_mode_answers_policy_denials_and_still_counts_them() {
    let mut b = Bed::new();
    b.t.policy_reject = true;
    // b to c on TCP: c's ingress policy denies; b gets a reset from c.
    let (v, out) = b.run(tb::POD_B, &tcp(tb::POD_B_MAC, tb::POD_B_IP, 1234, tb::POD_C_IP, 8080, SYN));
    assert_eq!(v, Verdict::Tx(tb::POD_B), "the answer goes back to the sender");
    let m = meta(&out);
    assert_eq!((m.src, m.dst, m.sport, m.dport), (addr(tb::POD_C_IP), addr(tb::POD_B_IP), 8080, 1234));
    assert_ne!(m.tcp_flags & RST, 0);
    assert_eq!(b.drops(DropReason::PolicyDeniedIngress), 1);
    // UDP: ICMP destination unreachable, administratively prohibited (type 3, code 13).
    let (v, out) = b.run(tb::POD_B, &udp(tb::POD_B_MAC, tb::POD_B_IP, 1234, tb::POD_C_IP, 8080));
    assert_eq!(v, Verdict::Tx(tb::POD_B));
    let m = meta(&out);
    assert_eq!(m.icmp, IcmpKind::Error);
    assert_eq!((out[34], out[35]), (3, 13));
    assert_eq!(b.drops(DropReason::PolicyDeniedIngress), 2);
    assert_eq!(b.w.stats().events.tcp_resets_sent, 1);
    // Allowed traffic is untouched.
    assert_eq!(
        b.run(tb::POD_A, &tcp(tb::POD_A_MAC, tb::POD_A_IP, 1234, tb::POD_C_IP, 8080, SYN)).0,
        Verdict::Tx(tb::POD_C)
    );
    // Egress denial (a, under 2,000 egress rules, to the outside on 443): answered from the
    // destination address.
    let mut b = Bed::with(Scale { policy_rules: 2000, ..Scale::default() });
    b.t.policy_reject = true;
    let (v, out) = b.run(tb::POD_A, &tcp(tb::POD_A_MAC, tb::POD_A_IP, 1, "8.8.8.8", 443, SYN));
    assert_eq!(v, Verdict::Tx(tb::POD_A));
    assert_eq!(meta(&out).src, addr("8.8.8.8"));
    assert_eq!(b.drops(DropReason::PolicyDeniedEgress), 1);
}

#[test]
fn reject_mode_answers_a_denied_service_flow_from_the_service_address() {
    let mut b = Bed::new();
    b.t.policy_reject = true;
    let mut refused = 0;
    for sport in 1000..1064 {
        let (v, out) = b.run(tb::POD_B, &tcp(tb::POD_B_MAC, tb::POD_B_IP, sport, tb::WEB_VIP, 80, SYN));
        if v == Verdict::Tx(tb::POD_B) {
            let m = meta(&out);
            if m.tcp_flags & RST != 0 {
                assert_eq!((m.src, m.sport), (addr(tb::WEB_VIP), 80), "the client sees the VIP refuse");
                refused += 1;
            }
        }
    }
    assert!(refused > 0 && refused == b.drops(DropReason::PolicyDeniedIngress) as i32);
}

/// An IPv4 (or IPv6) frame of `len` bytes from the outside client to the node whose IP
/// header claims the longest packet its length field can (65,535 bytes), padded to `len`.
fn jumbo_frame(len: usize, v6: bool) -> Vec<u8> {
    use crate::wire::ethernet::{ethertype, write_header};
    let mut f = vec![0u8; len];
    let et = if v6 { ethertype::IPV6 } else { ethertype::IPV4 };
    write_header(&mut f, tb::UPLINK_MAC, tb::GATEWAY_MAC, et);
    if v6 {
        let (s, d) = ("2001:db8::7".parse().unwrap(), tb::NODE_IP6.parse().unwrap());
        crate::wire::ipv6::write_header(&mut f[14..], s, d, proto::UDP, 65535, 64, 0);
    } else {
        let (s, d) = (OUTSIDE_CLIENT.parse().unwrap(), tb::NODE_IP.parse().unwrap());
        crate::wire::ipv4::write_header(&mut f[14..], s, d, proto::UDP, 65535 - 20, 64);
    }
    f
}

#[test]
fn frames_longer_than_the_offsets_can_say_are_dropped_not_panicked_on() {
    for len in [65_550, 70_000] {
        for v6 in [false, true] {
            let f = jumbo_frame(len, v6);
            assert_eq!(parse(&f, STRICT), Err(DropReason::FrameTooLong), "{len} bytes, v6 {v6}");
            let mut b = Bed::new();
            assert_eq!(b.run(tb::UPLINK, &f).0, Verdict::Drop(DropReason::FrameTooLong));
            let up = b.w.stats().ports[tb::UPLINK.index()];
            assert_eq!((up.drops[DropReason::FrameTooLong.index()], up.rx_bytes), (1, len as u64));
        }
    }
    // The longest frame parse takes is still parsed (the IP packet ends before the padding).
    let mut f = jumbo_frame(crate::parse::MAX_FRAME_LEN, false);
    let total = (crate::parse::MAX_FRAME_LEN - 14) as u16;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f[24..26].copy_from_slice(&[0, 0]);
    let c = crate::wire::checksum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    assert_eq!(parse(&f, ParseOptions::default()), Err(DropReason::L4Malformed), "UDP length 0 disagrees");
}

#[test]
fn frames_the_backend_could_only_partly_hold_are_counted() {
    let mut b = Bed::new();
    let mut buf = OwnedBuf::new(2048, 256);
    buf.load_cut(&vec![0xab; 9000], 9000, tb::UPLINK, 256);
    let mut v = [Verdict::Drop(DropReason::NoRoute)];
    b.w.process(&b.t, 1, std::slice::from_mut(&mut buf), &mut v);
    assert_eq!(v[0], Verdict::Drop(DropReason::FrameExceedsBuffer));
    assert_eq!(b.w.stats().ports[tb::UPLINK.index()].rx_bytes, 9000);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// Around the 16-bit boundary, whatever length the IP header claims: a verdict, no panic.
    #[test]
    fn long_frames_never_panic(len in 65_400usize..70_000, claimed in proptest::prelude::any::<u16>(), v6: bool) {
        let mut f = jumbo_frame(len, v6);
        if v6 {
            f[18..20].copy_from_slice(&claimed.to_be_bytes());
        } else {
            f[16..18].copy_from_slice(&claimed.to_be_bytes());
            f[24..26].copy_from_slice(&[0, 0]);
            let c = crate::wire::checksum::checksum(&f[14..34]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
        }
        let _ = parse(&f, STRICT);
        let mut b = Bed::new();
        let (v, _) = b.run(tb::UPLINK, &f);
        if len > crate::parse::MAX_FRAME_LEN {
            proptest::prop_assert_eq!(v, Verdict::Drop(DropReason::FrameTooLong));
        }
    }
}

/// An ARP packet from `mac`/`ip` (Ethernet source `mac`) asking for `target`, on the uplink.
fn arp_from(op: u16, mac: MacAddr, ip: &str, target: &str) -> Vec<u8> {
    arp::frame(op, mac, ip.parse().unwrap(), target.parse().unwrap())
}

#[test]
fn underlay_neighbors_are_learned_from_arp_and_used_for_tunnels() {
    let moved = MacAddr([0x02, 0, 0, 0, 0x07, 0x11]);
    let mut b = Bed::new();
    // Before: the configured MAC.
    let (_, out) = b.run(tb::POD_A, &tcp(tb::POD_A_MAC, tb::POD_A_IP, 40000, tb::REMOTE_POD_IP, 80, SYN));
    assert_eq!(meta(&out).dst_mac, tb::NODE2_MAC);
    // node-2 asks for this node's address from another MAC: answered, and learned.
    let (v, _) = b.run(tb::UPLINK, &arp_from(arp::OP_REQUEST, moved, tb::NODE2_IP, tb::NODE_IP));
    assert_eq!(v, Verdict::Tx(tb::UPLINK));
    assert_eq!(b.w.stats().events.neighbors_learned, 1);
    let (v, out) = b.run(tb::POD_A, &tcp(tb::POD_A_MAC, tb::POD_A_IP, 40001, tb::REMOTE_POD_IP, 80, SYN));
    assert_eq!(v, Verdict::Tx(tb::UPLINK));
    assert_eq!(meta(&out).dst_mac, moved, "tunnel packets follow the learned MAC");
    // A reply (to our own request) teaches as well; one whose Ethernet source differs does not.
    let back = MacAddr([0x02, 0, 0, 0, 0x08, 0x11]);
    let mut spoofed = arp_from(arp::OP_REPLY, back, tb::NODE2_IP, tb::NODE_IP);
    spoofed[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0x09, 0x99]);
    b.run(tb::UPLINK, &spoofed);
    assert_eq!(b.t.next_hop(crate::route::NodeId(0)), Ok(moved));
    b.run(tb::UPLINK, &arp_from(arp::OP_REPLY, back, tb::NODE2_IP, tb::NODE_IP));
    assert_eq!(b.t.next_hop(crate::route::NodeId(0)), Ok(back));
    // ARP from an address that is no node's teaches nothing.
    b.run(tb::UPLINK, &arp_from(arp::OP_REQUEST, moved, "192.168.50.99", tb::NODE_IP));
    assert_eq!(b.w.stats().events.neighbors_learned, 2);
    // Carried to a snapshot with the same nodes.
    let next = tb::tables(Scale::default()).with_neighbors_of(&b.t);
    assert_eq!(next.next_hop(crate::route::NodeId(0)), Ok(back));
}

#[test]
fn a_node_with_no_known_mac_is_neighbor_unresolved_until_it_answers() {
    let mut b = Bed::new();
    b.t.nodes[0].next_hop_mac = MacAddr::ZERO;
    let f = tcp(tb::POD_A_MAC, tb::POD_A_IP, 40000, tb::REMOTE_POD_IP, 80, SYN);
    assert_eq!(b.run(tb::POD_A, &f).0, Verdict::Drop(DropReason::NeighborUnresolved));
    b.run(tb::UPLINK, &arp_from(arp::OP_REPLY, tb::NODE2_MAC, tb::NODE2_IP, tb::NODE_IP));
    let (v, out) = b.run(tb::POD_A, &tcp(tb::POD_A_MAC, tb::POD_A_IP, 40002, tb::REMOTE_POD_IP, 80, SYN));
    assert_eq!(v, Verdict::Tx(tb::UPLINK));
    assert_eq!(meta(&out).dst_mac, tb::NODE2_MAC);
}
