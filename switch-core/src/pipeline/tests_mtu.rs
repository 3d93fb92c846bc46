//! Path MTU through the overlay (`pipeline/mtu.rs`): uplink MTU 1500, VXLAN (50 bytes of outer
//! headers, so 1450 for the inner packet), a NodePort 30090 and a ClusterIP whose only backend
//! is on node-2. Each test checks the whole ICMP message: type, code, MTU field, checksums,
//! addresses, and the quoted packet byte for byte.

use super::tests::{ip, meta, Bed, OUTSIDE_CLIENT, STRICT};
use super::*;
use crate::addr::Addr;
use crate::packet::{OwnedBuf, PacketBuf};
use crate::service::{Backend, BackendState, Frontend, FrontendKind, ServicePort, ServicePortId, ServicePortSpec};
use crate::testbed::{self as tb, Scale};
use crate::wire::build::{IpFrame, L4Repr};
use crate::wire::checksum::checksum;
use crate::wire::l4::tcp_flags::*;
use crate::wire::{proto, MacAddr};

const NODE_PORT: u16 = 30090;
const REMOTE_VIP: &str = "10.96.0.90";
const REMOTE_POD_IP6: &str = "fd00:244:2::5";
/// What fits in the tunnel: 1500 - (20 + 8 + 8 + 14).
const TUNNEL_MTU: u16 = 1450;

fn a(s: &str) -> Addr {
    Addr::from(ip(s))
}

/// The reference node plus a service whose only backend (10.244.2.5:8080) is on node-2, as
/// NodePort 30090 and ClusterIP 10.96.0.90:80.
fn bed() -> Bed {
    let t = tb::tables(Scale::default());
    let be = Backend { addr: a(tb::REMOTE_POD_IP), port: 8080, weight: 1, state: BackendState::Ready, local: false };
    let sp = ServicePort::new(ServicePortSpec::simple("default/far:http", proto::TCP, vec![be]), 251);
    let fe =
        |addr: &str, port, kind| Frontend { addr: a(addr), port, proto: proto::TCP, kind, target: ServicePortId(0) };
    let services = crate::service::ServiceTable::build(
        vec![sp],
        vec![fe(tb::NODE_IP, NODE_PORT, FrontendKind::NodePort), fe(REMOTE_VIP, 80, FrontendKind::ClusterIp)],
    )
    .unwrap();
    Bed { t: t.with_services(services, 2), w: Worker::new(WorkerConfig::default()), now: 1_000_000_000 }
}

/// A TCP segment whose IP packet is `ip_len` bytes long (DF set, as `IpFrame` builds it).
#[allow(clippy::too_many_arguments)]
fn segment(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: &str,
    sport: u16,
    dst: &str,
    dport: u16,
    flags: u8,
    ip_len: usize,
) -> Vec<u8> {
    let hdr = if ip(src).is_ipv4() { 20 } else { 40 } + 20;
    let l4 = L4Repr::Tcp { sport, dport, seq: 7, ack: 1, flags };
    IpFrame::new(src_mac, dst_mac, ip(src), ip(dst), l4).with_payload(&vec![0x5a; ip_len - hdr]).build()
}

fn from_client(flags: u8, ip_len: usize) -> Vec<u8> {
    segment(tb::GATEWAY_MAC, tb::UPLINK_MAC, OUTSIDE_CLIENT, 55555, tb::NODE_IP, NODE_PORT, flags, ip_len)
}

fn from_pod_a(dst: &str, dport: u16, flags: u8, ip_len: usize) -> Vec<u8> {
    let src = if ip(dst).is_ipv4() { tb::POD_A_IP } else { tb::POD_A_IP6 };
    segment(tb::POD_A_MAC, tb::ROUTER_MAC, src, 40000, dst, dport, flags, ip_len)
}

/// Checks `out` is the ICMPv4 fragmentation-needed a router sends from `src` to the sender of
/// `sent`, over Ethernet `eth_dst` <- `eth_src`.
fn assert_frag_needed(out: &[u8], sent: &[u8], src: &str, eth_dst: MacAddr, eth_src: MacAddr) {
    // Ethernet.
    assert_eq!((&out[0..6], &out[6..12], &out[12..14]), (&eth_dst.0[..], &eth_src.0[..], &[8u8, 0][..]));
    // IPv4: 576 bytes in all (RFC 1812 4.3.2.3), ICMP, TTL 64, from the node to the sender.
    let h = &out[14..34];
    assert_eq!(h[0], 0x45);
    assert_eq!(u16::from_be_bytes([h[2], h[3]]), 576);
    assert_eq!(out.len(), 14 + 576);
    assert_eq!((h[8], h[9]), (64, proto::ICMP));
    assert_eq!(&h[12..16], &ip_bytes(src)[..]);
    assert_eq!(&h[16..20], &sent[26..30], "back to the sender's address");
    assert_eq!(checksum(h), 0, "IP header checksum");
    // ICMP: type 3 code 4, unused 16 bits, next-hop MTU (RFC 1191), checksum over the message.
    let icmp = &out[34..];
    assert_eq!((icmp[0], icmp[1]), (3, 4));
    assert_eq!(&icmp[4..6], &[0, 0]);
    assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), TUNNEL_MTU);
    assert_eq!(checksum(icmp), 0, "ICMP checksum");
    // The quote: the packet exactly as the sender sent it (TTL, addresses, ports), cut at 548.
    assert_eq!(&icmp[8..], &sent[14..14 + 548]);
    let m = meta(out);
    assert_eq!((m.src, m.icmp), (a(src), crate::parse::IcmpKind::Error));
}

fn ip_bytes(s: &str) -> Vec<u8> {
    match ip(s) {
        core::net::IpAddr::V4(v) => v.octets().to_vec(),
        core::net::IpAddr::V6(v) => v.octets().to_vec(),
    }
}

#[test]
fn nodeport_client_gets_frag_needed_from_the_address_it_used_quoting_the_nodeport() {
    let mut b = bed();
    // The handshake's SYN fits and goes to node-2.
    assert_eq!(b.run(tb::UPLINK, &from_client(SYN, 60)).0, Verdict::Tx(tb::UPLINK));
    assert_eq!(b.w.stats().events.encapsulated, 1);
    // A full-sized segment of the flow does not fit once encapsulated.
    let sent = from_client(ACK | PSH, 1480);
    let (v, out) = b.run(tb::UPLINK, &sent);
    assert_eq!(v, Verdict::Tx(tb::UPLINK), "the error goes back out of the uplink");
    assert_frag_needed(&out, &sent, tb::NODE_IP, tb::GATEWAY_MAC, tb::UPLINK_MAC);
    let q = &out[42..];
    assert_eq!((&q[16..20], u16::from_be_bytes([q[22], q[23]])), (&[192u8, 168, 50, 10][..], NODE_PORT));
    assert_eq!(u16::from_be_bytes([q[20], q[21]]), 55555);
    assert_eq!(meta(&out).dst, a(OUTSIDE_CLIENT));
    assert_eq!(b.drops(DropReason::MtuExceeded), 1, "still counted");
    assert_eq!(b.w.stats().events.icmp_too_big_sent, 1);
    assert_eq!(b.w.stats().events.encapsulated, 1);
}

#[test]
fn a_first_segment_too_big_is_answered_and_leaves_no_flow() {
    let mut b = bed();
    let sent = from_client(SYN, 1480);
    let (v, out) = b.run(tb::UPLINK, &sent);
    assert_eq!(v, Verdict::Tx(tb::UPLINK));
    assert_frag_needed(&out, &sent, tb::NODE_IP, tb::GATEWAY_MAC, tb::UPLINK_MAC);
    assert_eq!(b.w.conntrack().entries(), 0, "a packet not forwarded commits no flow");
}

#[test]
fn pod_to_remote_pod_gets_frag_needed_from_the_node() {
    let mut b = bed();
    let sent = from_pod_a(tb::REMOTE_POD_IP, 80, ACK, 1480);
    let (v, out) = b.run(tb::POD_A, &sent);
    assert_eq!(v, Verdict::Tx(tb::POD_A));
    assert_frag_needed(&out, &sent, tb::NODE_IP, tb::POD_A_MAC, tb::ROUTER_MAC);
    assert_eq!(&out[42 + 16..42 + 20], &[10, 244, 2, 5], "quotes the remote pod as destination");
}

#[test]
fn pod_to_clusterip_gets_frag_needed_quoting_the_clusterip_not_the_backend() {
    let mut b = bed();
    let sent = from_pod_a(REMOTE_VIP, 80, SYN, 1480);
    let (v, out) = b.run(tb::POD_A, &sent);
    assert_eq!(v, Verdict::Tx(tb::POD_A));
    assert_frag_needed(&out, &sent, tb::NODE_IP, tb::POD_A_MAC, tb::ROUTER_MAC);
    let q = &out[42..];
    assert_eq!((&q[16..20], u16::from_be_bytes([q[22], q[23]])), (&[10u8, 96, 0, 90][..], 80));
    assert_eq!(b.w.conntrack().entries(), 0);
}

#[test]
fn ipv6_gets_packet_too_big() {
    let mut b = bed();
    let sent = from_pod_a(REMOTE_POD_IP6, 80, ACK, 1480);
    let (v, out) = b.run(tb::POD_A, &sent);
    assert_eq!(v, Verdict::Tx(tb::POD_A));
    assert_eq!(
        (&out[0..6], &out[6..12], &out[12..14]),
        (&tb::POD_A_MAC.0[..], &tb::ROUTER_MAC.0[..], &[0x86u8, 0xdd][..])
    );
    // IPv6: 1280 bytes in all (RFC 4443 2.4), ICMPv6, hop limit 64, node -> pod a.
    let h = &out[14..54];
    assert_eq!(h[0] >> 4, 6);
    assert_eq!(out.len(), 14 + 1280);
    assert_eq!(u16::from_be_bytes([h[4], h[5]]), 1240);
    assert_eq!((h[6], h[7]), (proto::ICMPV6, 64));
    assert_eq!(&h[8..24], &ip_bytes(tb::NODE_IP6)[..]);
    assert_eq!(&h[24..40], &ip_bytes(tb::POD_A_IP6)[..]);
    // ICMPv6 packet too big: type 2 code 0, MTU in 32 bits, checksum over the pseudo-header.
    let icmp = &out[54..];
    assert_eq!((icmp[0], icmp[1]), (2, 0));
    assert_eq!(u32::from_be_bytes([icmp[4], icmp[5], icmp[6], icmp[7]]), u32::from(TUNNEL_MTU));
    let sum = crate::wire::checksum::pseudo_header_sum(&h[8..24], &h[24..40], proto::ICMPV6, icmp.len() as u32);
    assert!(crate::wire::l4::transport_checksum_ok(sum, icmp), "ICMPv6 checksum");
    assert_eq!(&icmp[8..], &sent[14..14 + 1232], "the packet as sent, cut at 1232 bytes");
    assert!(parse(&out, STRICT).is_ok());
    assert_eq!(b.w.stats().events.icmp_too_big_sent, 1);
}

#[test]
fn without_df_the_packet_is_dropped_silently_as_before() {
    let mut b = bed();
    let mut sent = from_pod_a(tb::REMOTE_POD_IP, 80, ACK, 1480);
    sent[20] &= !0x40;
    sent[24..26].copy_from_slice(&[0, 0]);
    let c = checksum(&sent[14..34]);
    sent[24..26].copy_from_slice(&c.to_be_bytes());
    assert_eq!(b.run(tb::POD_A, &sent).0, Verdict::Drop(DropReason::MtuExceeded));
    assert_eq!(b.w.stats().events.icmp_too_big_sent, 0);
    assert_eq!(b.drops(DropReason::MtuExceeded), 1);
}

#[test]
fn the_limit_is_the_uplink_mtu_less_the_overhead() {
    let mut b = bed();
    let (v, out) = b.run(tb::POD_A, &from_pod_a(tb::REMOTE_POD_IP, 80, ACK, usize::from(TUNNEL_MTU)));
    assert_eq!(v, Verdict::Tx(tb::UPLINK));
    assert_eq!(out.len(), 14 + 1500, "exactly the uplink MTU");
    let (v, out) = b.run(tb::POD_A, &from_pod_a(tb::REMOTE_POD_IP, 80, ACK, usize::from(TUNNEL_MTU) + 1));
    assert_eq!(v, Verdict::Tx(tb::POD_A));
    assert_eq!(u16::from_be_bytes([out[40], out[41]]), TUNNEL_MTU);
}

#[test]
fn the_error_is_written_even_without_headroom() {
    let mut b = bed();
    let sent = from_pod_a(tb::REMOTE_POD_IP, 80, ACK, 1480);
    let mut buf = OwnedBuf::new(2048, 0);
    assert!(buf.load(&sent, tb::POD_A, 0));
    let mut v = [Verdict::Drop(DropReason::NoRoute)];
    b.w.process(&b.t, 5, std::slice::from_mut(&mut buf), &mut v);
    assert_eq!(v[0], Verdict::Tx(tb::POD_A));
    assert_frag_needed(buf.data(), &sent, tb::NODE_IP, tb::POD_A_MAC, tb::ROUTER_MAC);
}

#[test]
fn a_jumbo_frame_from_a_pod_is_answered_with_a_bounded_error() {
    let mut b = bed();
    let sent = from_pod_a(tb::REMOTE_POD_IP, 80, ACK, 8986);
    let (v, out) = b.run(tb::POD_A, &sent);
    assert_eq!(v, Verdict::Tx(tb::POD_A));
    assert_frag_needed(&out, &sent, tb::NODE_IP, tb::POD_A_MAC, tb::ROUTER_MAC);
}

#[test]
fn icmp_errors_too_big_for_the_tunnel_are_not_answered() {
    let mut b = bed();
    // Pod a sends node-2's pod a port unreachable quoting a whole 1480-byte packet, so that
    // the error itself does not fit the tunnel: no error about an error (RFC 1122 3.2.2).
    let quoted = from_pod_a(tb::REMOTE_POD_IP, 80, ACK, 1480);
    let mut body = vec![3u8, 3, 0, 0, 0, 0, 0, 0];
    body.extend_from_slice(&quoted[14..]);
    let c = checksum(&body);
    body[2..4].copy_from_slice(&c.to_be_bytes());
    let mut err = vec![0u8; 34];
    crate::wire::ethernet::write_header(
        &mut err,
        tb::ROUTER_MAC,
        tb::POD_A_MAC,
        crate::wire::ethernet::ethertype::IPV4,
    );
    let (src, dst) = (tb::POD_A_IP.parse().unwrap(), tb::REMOTE_POD_IP.parse().unwrap());
    crate::wire::ipv4::write_header(&mut err[14..], src, dst, proto::ICMP, body.len(), 64);
    err.extend_from_slice(&body);
    assert_eq!(b.run(tb::POD_A, &err).0, Verdict::Drop(DropReason::MtuExceeded));
    assert_eq!(b.w.stats().events.icmp_too_big_sent, 0);
}

#[test]
fn the_node_itself_is_answered_from_the_address_it_sent_to() {
    let mut b = bed();
    let sent = segment(tb::HOST_MAC, tb::ROUTER_MAC, tb::NODE_IP, 40000, tb::REMOTE_POD_IP, 80, ACK, 1480);
    let (v, out) = b.run(tb::HOST, &sent);
    assert_eq!(v, Verdict::Tx(tb::HOST));
    assert_frag_needed(&out, &sent, tb::REMOTE_POD_IP, tb::HOST_MAC, tb::ROUTER_MAC);
}

#[test]
fn no_mtu_below_the_ipv6_minimum_is_announced() {
    let mut b = bed();
    b.t.node.uplink_mtu = 1300;
    let sent = from_pod_a(REMOTE_POD_IP6, 80, ACK, 1300);
    assert_eq!(b.run(tb::POD_A, &sent).0, Verdict::Drop(DropReason::MtuExceeded));
    // IPv4 over the same tunnel is told 1250.
    let (v, out) = b.run(tb::POD_A, &from_pod_a(tb::REMOTE_POD_IP, 80, ACK, 1300));
    assert_eq!(v, Verdict::Tx(tb::POD_A));
    assert_eq!(u16::from_be_bytes([out[40], out[41]]), 1250);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// Any packet too big for the tunnel, of either family, gets a well-formed error within
    /// the family's size limit that quotes the start of the packet exactly.
    #[test]
    fn every_too_big_packet_gets_a_bounded_valid_error(ip_len in 1451usize..9000, v6: bool) {
        let mut b = bed();
        let dst = if v6 { REMOTE_POD_IP6 } else { tb::REMOTE_POD_IP };
        let sent = from_pod_a(dst, 80, ACK, ip_len);
        let (v, out) = b.run(tb::POD_A, &sent);
        proptest::prop_assert_eq!(v, Verdict::Tx(tb::POD_A));
        let (ip_hdr, max) = if v6 { (40, 1280) } else { (20, 576) };
        let quote = (ip_len).min(max - ip_hdr - 8);
        proptest::prop_assert_eq!(out.len(), 14 + ip_hdr + 8 + quote);
        proptest::prop_assert_eq!(&out[14 + ip_hdr + 8..], &sent[14..14 + quote]);
        let m = parse(&out, STRICT).expect("valid checksums");
        proptest::prop_assert_eq!((m.dst, m.icmp), (a(if v6 { tb::POD_A_IP6 } else { tb::POD_A_IP }), crate::parse::IcmpKind::Error));
    }
}
