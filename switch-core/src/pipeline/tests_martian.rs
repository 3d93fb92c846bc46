//! Martians (`pipeline/martian.rs`) on every port kind: each reason from a pod, the host, the
//! uplink and a remote node's pod through the tunnel.

use super::tests::{ip, Bed, OUTSIDE_CLIENT};
use super::*;
use crate::packet::PortId;
use crate::testbed as tb;
use crate::wire::build::{IpFrame, L4Repr, TunnelKind};
use crate::wire::l4::tcp_flags::*;
use crate::wire::MacAddr;

/// Where a frame comes from: its port, MACs, a legitimate source address of that kind, and
/// whether it arrives through the tunnel from node-2.
struct Kind {
    name: &'static str,
    port: PortId,
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: &'static str,
    src6: &'static str,
    tunnel: bool,
}

const KINDS: [Kind; 4] = [
    Kind {
        name: "pod",
        port: tb::POD_A,
        src_mac: tb::POD_A_MAC,
        dst_mac: tb::ROUTER_MAC,
        src: tb::POD_A_IP,
        src6: tb::POD_A_IP6,
        tunnel: false,
    },
    Kind {
        name: "host",
        port: tb::HOST,
        src_mac: tb::HOST_MAC,
        dst_mac: tb::ROUTER_MAC,
        src: tb::NODE_IP,
        src6: tb::NODE_IP6,
        tunnel: false,
    },
    Kind {
        name: "uplink",
        port: tb::UPLINK,
        src_mac: tb::GATEWAY_MAC,
        dst_mac: tb::UPLINK_MAC,
        src: OUTSIDE_CLIENT,
        src6: "2001:db8::7",
        tunnel: false,
    },
    Kind {
        name: "tunnel",
        port: tb::UPLINK,
        src_mac: tb::NODE2_VTEP_MAC,
        dst_mac: tb::ROUTER_MAC,
        src: tb::REMOTE_POD_IP,
        src6: "fd00:244:2::5",
        tunnel: true,
    },
];

impl Kind {
    fn frame(&self, src: &str, dst: &str, l4: L4Repr) -> Vec<u8> {
        let f = IpFrame::new(self.src_mac, self.dst_mac, ip(src), ip(dst), l4).with_payload(b"x").build();
        if self.tunnel {
            tb::from_node2(&f, TunnelKind::Vxlan, tb::VNI)
        } else {
            f
        }
    }
}

fn tcp(flags: u8) -> L4Repr {
    L4Repr::Tcp { sport: 40000, dport: 80, seq: 1, ack: 0, flags }
}

fn udp(dport: u16) -> L4Repr {
    L4Repr::Udp { sport: 40000, dport }
}

/// Every case for one kind of port: a frame and the reason it must be dropped with.
fn cases(k: &Kind) -> Vec<(&'static str, Vec<u8>, DropReason)> {
    use DropReason as R;
    vec![
        ("tcp to 127.0.0.1", k.frame(k.src, "127.0.0.1", tcp(SYN)), R::MartianDestination),
        ("udp to 0.0.0.0", k.frame(k.src, "0.0.0.0", udp(53)), R::MartianDestination),
        ("tcp to ::1", k.frame(k.src6, "::1", tcp(SYN)), R::MartianDestination),
        ("udp to ::", k.frame(k.src6, "::", udp(53)), R::MartianDestination),
        ("udp to ::ffff:10.244.1.3", k.frame(k.src6, "::ffff:10.244.1.3", udp(53)), R::MartianDestination),
        ("from 127.0.0.1", k.frame("127.0.0.1", tb::POD_B_IP, tcp(SYN)), R::MartianSource),
        ("from 0.0.0.0 (DHCP discover)", k.frame("0.0.0.0", "255.255.255.255", udp(67)), R::MartianSource),
        ("from 255.255.255.255", k.frame("255.255.255.255", tb::POD_B_IP, udp(53)), R::MartianSource),
        ("from 224.0.0.5", k.frame("224.0.0.5", tb::POD_B_IP, udp(53)), R::MartianSource),
        ("from ff02::1", k.frame("ff02::1", tb::POD_B_IP6, udp(53)), R::MartianSource),
        ("from ::1", k.frame("::1", tb::POD_B_IP6, udp(53)), R::MartianSource),
        ("udp to 224.0.0.251 (mDNS)", k.frame(k.src, "224.0.0.251", udp(5353)), R::MulticastDestination),
        ("udp to 239.1.2.3", k.frame(k.src, "239.1.2.3", udp(9999)), R::MulticastDestination),
        ("udp to ff02::fb", k.frame(k.src6, "ff02::fb", udp(5353)), R::MulticastDestination),
        ("udp to 255.255.255.255", k.frame(k.src, "255.255.255.255", udp(67)), R::BroadcastDestination),
        ("SYN+FIN", k.frame(k.src, tb::POD_B_IP, tcp(SYN | FIN)), R::TcpInvalidFlags),
        ("SYN+RST", k.frame(k.src, tb::POD_B_IP, tcp(SYN | RST)), R::TcpInvalidFlags),
        ("no flags", k.frame(k.src, tb::POD_B_IP, tcp(0)), R::TcpInvalidFlags),
        ("FIN without ACK", k.frame(k.src, tb::POD_B_IP, tcp(FIN)), R::TcpInvalidFlags),
        ("FIN+PSH+URG (xmas)", k.frame(k.src, tb::POD_B_IP, tcp(FIN | PSH | 0x20)), R::TcpInvalidFlags),
        ("SYN+FIN over IPv6", k.frame(k.src6, tb::POD_B_IP6, tcp(SYN | FIN)), R::TcpInvalidFlags),
    ]
}

#[test]
fn martians_are_dropped_with_their_reason_on_every_port_kind() {
    for k in &KINDS {
        let mut b = Bed::new();
        for (what, frame, want) in cases(k) {
            let before = b.w.stats().ports[k.port.index()].drops[want.index()];
            assert_eq!(b.run(k.port, &frame).0, Verdict::Drop(want), "{} {what}", k.name);
            let after = b.w.stats().ports[k.port.index()].drops[want.index()];
            assert_eq!(after, before + 1, "{} {what}: counted on the port", k.name);
        }
        if k.tunnel {
            assert!(b.w.stats().events.decapsulated > 0, "the tunnel cases were decapsulated first");
        }
    }
}

#[test]
fn each_martian_reason_is_reached_from_each_port_kind() {
    let reasons = [
        DropReason::MartianSource,
        DropReason::MartianDestination,
        DropReason::MulticastDestination,
        DropReason::BroadcastDestination,
        DropReason::TcpInvalidFlags,
    ];
    for k in &KINDS {
        let mut b = Bed::new();
        for (_, frame, _) in cases(k) {
            b.run(k.port, &frame);
        }
        for r in reasons {
            assert!(b.drops(r) > 0, "{} never gave {r}", k.name);
        }
    }
}

#[test]
fn legitimate_traffic_of_every_kind_still_passes() {
    for k in &KINDS {
        let mut b = Bed::new();
        let want = Verdict::Tx(tb::POD_B);
        for l4 in [tcp(SYN), tcp(ACK | PSH), tcp(FIN | ACK), tcp(RST), tcp(SYN | 0x20), tcp(ACK | 0x20), udp(53)] {
            assert_eq!(b.run(k.port, &k.frame(k.src, tb::POD_B_IP, l4)).0, want, "{}", k.name);
        }
    }
}

#[test]
fn invalid_flags_on_an_established_flow_are_dropped_too() {
    let mut b = Bed::new();
    let f = |flags| super::tests::tcp(tb::POD_A_MAC, tb::POD_A_IP, 40000, tb::POD_B_IP, 80, flags);
    assert_eq!(b.run(tb::POD_A, &f(SYN)).0, Verdict::Tx(tb::POD_B));
    assert_eq!(b.run(tb::POD_A, &f(ACK)).0, Verdict::Tx(tb::POD_B));
    assert_eq!(b.run(tb::POD_A, &f(SYN | FIN)).0, Verdict::Drop(DropReason::TcpInvalidFlags));
    assert_eq!(b.run(tb::POD_A, &f(FIN | ACK)).0, Verdict::Tx(tb::POD_B));
    assert_eq!(b.w.stats().ports[tb::POD_A.index()].drops[DropReason::TcpInvalidFlags.index()], 1);
}
