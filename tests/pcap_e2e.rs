//! End to end through the real `podswitchd` on captures, for the node of
//! `configs/node-pcap.toml` (and its Geneve twin). Inputs are made with switch-core's packet
//! builders; outputs are decoded and checksum-verified by tshark.

use control::build::{build_text, Built};
use control::demo::{expected_backend, pod_of};
use podswitch_tests::{run_daemon, tshark_fields, tshark_ready, Run, Scratch};
use std::net::IpAddr;
use std::path::Path;
use switch_core::wire::build::{self, IpFrame, L4Repr, TunnelKind};
use switch_core::wire::l4::tcp_flags::{ACK, SYN};
use switch_core::wire::{proto, MacAddr};

const VXLAN_CFG: &str = "configs/node-pcap.toml";
const GENEVE_CFG: &str = "configs/node-pcap-geneve.toml";
const SEC: u64 = 1_000_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}
fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}
fn gw() -> MacAddr {
    mac("02:00:00:00:00:01")
}
fn a_mac() -> MacAddr {
    mac("02:00:00:0a:00:02")
}
fn b_mac() -> MacAddr {
    mac("02:00:00:0a:00:03")
}
const GOOD: &str = "1";

fn tcp(src_mac: MacAddr, s: &str, sp: u16, d: &str, dp: u16, flags: u8) -> Vec<u8> {
    IpFrame::new(src_mac, gw(), ip(s), ip(d), L4Repr::Tcp { sport: sp, dport: dp, seq: 1000, ack: 0, flags }).build()
}

/// A frame from a client outside the cluster (203.0.113.7) to the node's address, as the
/// uplink gateway delivers it.
fn from_outside(l4: L4Repr) -> IpFrame {
    IpFrame::new(mac("02:00:00:00:09:09"), mac("02:00:00:00:01:10"), ip("203.0.113.7"), ip("192.168.50.10"), l4)
}

/// A run of podswitchd on `frames` (port, round, frame) with config `cfg`.
struct Case {
    dir: Scratch,
    built: Built,
    run: Run,
}

impl Case {
    fn out(&self, port: &str) -> std::path::PathBuf {
        self.dir.path(&format!("{port}.out.pcap"))
    }
}

fn load(cfg: &str, dir: &Path) -> Built {
    let path = podswitch_tests::root().join(cfg);
    let text = std::fs::read_to_string(&path).unwrap();
    build_text(&text, &path, dir, 1).unwrap()
}

fn run_case(name: &str, cfg: &str, frames: impl Fn(&Built) -> Vec<(&'static str, u64, Vec<u8>)>) -> Case {
    let dir = Scratch::new(name);
    let built = load(cfg, &dir.0);
    let frames = frames(&built);
    for p in &built.ports {
        let mine: Vec<(u64, Vec<u8>)> =
            frames.iter().filter(|(n, _, _)| *n == p.name).map(|(_, r, f)| (r * SEC, f.clone())).collect();
        io_backends::pcap::write_file(p.pcap_in.as_ref().unwrap(), &mine).unwrap();
    }
    let cfg_path = podswitch_tests::root().join(cfg);
    let run = run_daemon(&["--config", cfg_path.to_str().unwrap(), "--pcap-dir", dir.0.to_str().unwrap()]);
    assert_eq!(run.code, 0, "podswitchd failed: {}\n{}", run.stderr, run.stdout);
    Case { dir, built, run }
}

#[test]
fn pod_to_clusterip_is_dnated_and_the_reply_reverse_nated() {
    if !tshark_ready("pod_to_clusterip") {
        return;
    }
    for (src, vip, sport) in [("10.244.1.2", "10.96.0.10", 40000u16), ("fd00:244:1::2", "fd00:96::10", 40001)] {
        let c = run_case("clusterip", VXLAN_CFG, |b| {
            let (baddr, bport) = expected_backend(&b.tables, src, sport, vip, 80, proto::TCP).unwrap();
            let (bmac, bname) = pod_of(&b.tables, baddr).unwrap();
            let bname: &'static str = if bname == "pod-b" { "pod-b" } else { "pod-c" };
            let reply = IpFrame::new(
                bmac,
                gw(),
                baddr.to_ip(),
                ip(src),
                L4Repr::Tcp { sport: bport, dport: sport, seq: 5, ack: 1001, flags: SYN | ACK },
            )
            .build();
            vec![("pod-a", 1, tcp(a_mac(), src, sport, vip, 80, SYN)), (bname, 2, reply)]
        });
        let (baddr, _) = expected_backend(&c.built.tables, src, sport, vip, 80, proto::TCP).unwrap();
        let (bmac, bname) = pod_of(&c.built.tables, baddr).unwrap();
        let v4 = !vip.contains(':');
        let (src_f, dst_f, ttl_f) =
            if v4 { ("ip.src", "ip.dst", "ip.ttl") } else { ("ipv6.src", "ipv6.dst", "ipv6.hlim") };
        let fields = [src_f, dst_f, "tcp.srcport", "tcp.dstport", "tcp.checksum.status", ttl_f, "eth.dst", "eth.src"];
        let to_backend = tshark_fields(&c.out(&bname), &fields);
        assert_eq!(to_backend.len(), 1, "{}", c.run.stdout);
        let r = &to_backend[0];
        assert_eq!((r[0].as_str(), r[1].as_str()), (src, baddr.to_string().as_str()));
        assert_eq!(
            (r[2].as_str(), r[3].as_str(), r[4].as_str(), r[5].as_str()),
            (&*sport.to_string(), "8080", GOOD, "63")
        );
        assert_eq!((r[6].as_str(), r[7].as_str()), (bmac.to_string().as_str(), "02:00:00:00:00:01"));
        let to_client = tshark_fields(&c.out("pod-a"), &fields);
        assert_eq!(to_client.len(), 1);
        let r = &to_client[0];
        assert_eq!(
            (r[0].as_str(), r[1].as_str(), r[2].as_str(), r[3].as_str(), r[4].as_str()),
            (vip, src, "80", &*sport.to_string(), GOOD)
        );
        if v4 {
            let ipsum = tshark_fields(&c.out("pod-a"), &["ip.checksum.status"]);
            assert_eq!(ipsum[0][0], GOOD);
        }
    }
}

#[test]
fn nodeport_from_outside_is_dnated_and_masqueraded() {
    if !tshark_ready("nodeport") {
        return;
    }
    let c = run_case("nodeport", VXLAN_CFG, |_| {
        let syn = from_outside(L4Repr::Tcp { sport: 55555, dport: 30080, seq: 1, ack: 0, flags: SYN }).build();
        let dns = from_outside(L4Repr::Udp { sport: 5000, dport: 30053 }).with_payload(b"q").build();
        vec![("uplink", 1, syn), ("uplink", 1, dns)]
    });
    let mut rows = tshark_fields(
        &c.out("pod-b"),
        &[
            "ip.src",
            "ip.dst",
            "tcp.dstport",
            "udp.dstport",
            "ip.checksum.status",
            "tcp.checksum.status",
            "udp.checksum.status",
        ],
    );
    rows.extend(tshark_fields(
        &c.out("pod-c"),
        &[
            "ip.src",
            "ip.dst",
            "tcp.dstport",
            "udp.dstport",
            "ip.checksum.status",
            "tcp.checksum.status",
            "udp.checksum.status",
        ],
    ));
    assert_eq!(rows.len(), 2, "{}", c.run.stdout);
    for r in &rows {
        assert_eq!(r[0], "192.168.50.10", "externalTrafficPolicy Cluster masquerades to the node");
        assert_eq!(r[4], GOOD);
        if r[2] == "8080" {
            assert_eq!(r[5], GOOD);
        } else {
            assert_eq!(
                (r[1].as_str(), r[3].as_str(), r[6].as_str()),
                ("10.244.1.3", "5353", GOOD),
                "only b has the named dns port"
            );
        }
    }
    assert_eq!(c.run.event("snat_new_flows"), 2);
}

#[test]
fn network_policy_allows_clients_and_denies_others() {
    if !tshark_ready("policy") {
        return;
    }
    let c = run_case("policy", VXLAN_CFG, |_| {
        vec![
            ("pod-b", 1, tcp(b_mac(), "10.244.1.3", 1111, "10.244.1.4", 8080, SYN)),
            ("pod-a", 1, tcp(a_mac(), "10.244.1.2", 2222, "10.244.1.4", 8080, SYN)),
            ("pod-a", 1, tcp(a_mac(), "10.244.1.2", 2223, "10.244.1.4", 9090, SYN)),
            (
                "pod-c",
                2,
                IpFrame::new(
                    mac("02:00:00:0a:00:04"),
                    gw(),
                    ip("10.244.1.4"),
                    ip("10.244.1.2"),
                    L4Repr::Tcp { sport: 8080, dport: 2222, seq: 1, ack: 1001, flags: SYN | ACK },
                )
                .build(),
            ),
        ]
    });
    assert_eq!(c.run.drops("policy_denied_ingress", "pod-b"), 1);
    assert_eq!(c.run.drops("policy_denied_ingress", "pod-a"), 1);
    let to_c = tshark_fields(&c.out("pod-c"), &["ip.src", "tcp.srcport", "tcp.dstport"]);
    assert_eq!(to_c, vec![vec!["10.244.1.2".to_string(), "2222".into(), "8080".into()]]);
    let to_a = tshark_fields(&c.out("pod-a"), &["ip.src", "tcp.flags.syn", "tcp.flags.ack"]);
    assert_eq!(to_a.len(), 1, "the reply passes through conntrack");
}

fn tunnel_case(cfg: &str, kind: TunnelKind) {
    let (vni_f, port) = match kind {
        TunnelKind::Vxlan => ("vxlan.vni", "4789"),
        TunnelKind::Geneve => ("geneve.vni", "6081"),
    };
    let c = run_case("tunnel", cfg, |_| {
        let inner = IpFrame::new(
            mac("02:00:00:00:03:11"),
            mac("02:00:00:00:03:10"),
            ip("10.244.2.5"),
            ip("10.244.1.3"),
            L4Repr::Tcp { sport: 999, dport: 8080, seq: 1, ack: 0, flags: SYN },
        )
        .build();
        let wrapped = build::tunnel_wrap(
            &inner,
            kind,
            mac("02:00:00:00:01:11"),
            mac("02:00:00:00:01:10"),
            ip("192.168.50.11"),
            ip("192.168.50.10"),
            50000,
            1,
        );
        vec![("pod-a", 1, tcp(a_mac(), "10.244.1.2", 40000, "10.244.2.5", 80, SYN)), ("uplink", 1, wrapped)]
    });
    let out = tshark_fields(
        &c.out("uplink"),
        &[
            "eth.src",
            "eth.dst",
            "ip.src",
            "ip.dst",
            "udp.dstport",
            vni_f,
            "tcp.dstport",
            "tcp.checksum.status",
            "ip.checksum.status",
        ],
    );
    assert_eq!(out.len(), 1, "{}", c.run.stdout);
    let r = &out[0];
    // Outer then inner values, joined by '|'.
    assert_eq!(r[0], "02:00:00:00:01:10|02:00:00:00:03:10");
    assert_eq!(r[1], "02:00:00:00:01:11|02:00:00:00:03:11");
    assert_eq!(r[2], "192.168.50.10|10.244.1.2");
    assert_eq!(r[3], "192.168.50.11|10.244.2.5");
    // tshark prints the Geneve VNI in hex.
    let vni = if r[5].starts_with("0x") { u32::from_str_radix(&r[5][2..], 16).unwrap() } else { r[5].parse().unwrap() };
    assert_eq!((r[4].as_str(), vni, r[6].as_str(), r[7].as_str()), (port, 1, "80", GOOD));
    assert_eq!(r[8], "1|1", "outer and inner IPv4 checksums");
    let udp = tshark_fields(&c.out("uplink"), &["udp.checksum", "udp.srcport"]);
    assert_eq!(udp[0][0], "0x0000", "zero UDP checksum over IPv4");
    let sport: u16 = udp[0][1].parse().unwrap();
    assert!(sport >= 49152, "entropy source port {sport}");
    let dec = tshark_fields(&c.out("pod-b"), &["ip.src", "ip.dst", "ip.ttl", "tcp.checksum.status", "eth.dst"]);
    assert_eq!(
        dec,
        vec![vec!["10.244.2.5".to_string(), "10.244.1.3".into(), "63".into(), GOOD.into(), "02:00:00:0a:00:03".into()]]
    );
    assert_eq!((c.run.event("encapsulated"), c.run.event("decapsulated")), (1, 1));
}

#[test]
fn vxlan_encapsulation_and_decapsulation() {
    if tshark_ready("vxlan") {
        tunnel_case(VXLAN_CFG, TunnelKind::Vxlan);
    }
}

#[test]
fn geneve_encapsulation_and_decapsulation() {
    if tshark_ready("geneve") {
        tunnel_case(GENEVE_CFG, TunnelKind::Geneve);
    }
}

#[test]
fn service_without_endpoints_refuses_at_once() {
    if !tshark_ready("refuse") {
        return;
    }
    let c = run_case("refuse", VXLAN_CFG, |_| {
        let udp =
            IpFrame::new(a_mac(), gw(), ip("10.244.1.2"), ip("10.96.0.20"), L4Repr::Udp { sport: 5300, dport: 53 })
                .with_payload(b"query")
                .build();
        vec![("pod-a", 1, tcp(a_mac(), "10.244.1.2", 40000, "10.96.0.20", 80, SYN)), ("pod-a", 1, udp)]
    });
    let rows = tshark_fields(
        &c.out("pod-a"),
        &[
            "ip.src",
            "tcp.flags.reset",
            "tcp.ack",
            "tcp.checksum.status",
            "icmp.type",
            "icmp.code",
            "icmp.checksum.status",
            "udp.dstport",
        ],
    );
    assert_eq!(rows.len(), 2, "{}", c.run.stdout);
    assert_eq!(rows[0][0], "10.96.0.20");
    assert_eq!((rows[0][1].as_str(), rows[0][3].as_str()), ("1", GOOD));
    assert_eq!(rows[1][0], "10.96.0.20|10.244.1.2", "ICMP from the VIP quoting the datagram");
    assert_eq!(
        (rows[1][4].as_str(), rows[1][5].as_str(), rows[1][6].as_str(), rows[1][7].as_str()),
        ("3", "3", GOOD, "53")
    );
    assert_eq!(c.run.drops("service_no_backends", "pod-a"), 2);
}

#[test]
fn arp_and_neighbor_discovery_are_answered() {
    if !tshark_ready("arp") {
        return;
    }
    let c = run_case("arp", VXLAN_CFG, |_| {
        vec![
            ("pod-a", 1, build::arp_request(a_mac(), "10.244.1.2".parse().unwrap(), "10.244.1.1".parse().unwrap())),
            (
                "pod-a",
                1,
                build::neighbor_solicit(a_mac(), "fd00:244:1::2".parse().unwrap(), "fe80::1".parse().unwrap()),
            ),
        ]
    });
    let rows = tshark_fields(
        &c.out("pod-a"),
        &[
            "arp.opcode",
            "arp.src.hw_mac",
            "icmpv6.type",
            "icmpv6.nd.na.target_address",
            "icmpv6.opt.linkaddr",
            "icmpv6.checksum.status",
        ],
    );
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0][0].as_str(), rows[0][1].as_str()), ("2", "02:00:00:00:00:01"));
    assert_eq!(
        (rows[1][2].as_str(), rows[1][3].as_str(), rows[1][4].as_str(), rows[1][5].as_str()),
        ("136", "fe80::1", "02:00:00:00:00:01", GOOD)
    );
}

#[test]
fn malformed_frames_are_dropped_with_their_reason() {
    let good = tcp(a_mac(), "10.244.1.2", 1, "10.244.1.3", 8080, SYN);
    let cases = switch_core::testbed::malformed_ipv4_tcp(&good);
    let c = run_case("malformed", VXLAN_CFG, |_| cases.iter().map(|(f, _)| ("pod-a", 1, f.clone())).collect());
    let mut want: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for (_, r) in &cases {
        *want.entry(r.name()).or_default() += 1;
    }
    for (reason, n) in want {
        assert_eq!(c.run.drops(reason, "pod-a"), n, "{reason}\n{}", c.run.stdout);
    }
    assert_eq!(c.run.port_counter("pod-a", "dropped"), cases.len() as u64);
    assert_eq!(c.run.port_counter("pod-b", "tx_packets"), 0);
}

#[test]
fn demo_runs_and_reports() {
    let dir = Scratch::new("demo");
    let run = run_daemon(&["--demo", "--demo-dir", dir.0.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("event encapsulated=1"), "{}", run.stdout);
    assert!(run.stdout.contains("drop policy_denied_ingress port=pod-b count=1"));
}

#[test]
fn icmp_error_from_a_backend_is_translated_back() {
    if !tshark_ready("icmp_related") {
        return;
    }
    let c = run_case("related", VXLAN_CFG, |_| {
        let q = IpFrame::new(a_mac(), gw(), ip("10.244.1.2"), ip("10.96.0.10"), L4Repr::Udp { sport: 5300, dport: 53 })
            .with_payload(b"query")
            .build();
        // What b received after DNAT (only b has the named dns port), quoted in its error.
        let mut seen =
            IpFrame::new(gw(), b_mac(), ip("10.244.1.2"), ip("10.244.1.3"), L4Repr::Udp { sport: 5300, dport: 5353 })
                .with_payload(b"query");
        seen.ttl = 63;
        let seen = seen.build();
        let mut body = vec![3u8, 3, 0, 0, 0, 0, 0, 0];
        body.extend_from_slice(&seen[14..14 + 28]);
        let ck = switch_core::wire::checksum::checksum(&body);
        body[2..4].copy_from_slice(&ck.to_be_bytes());
        let mut err = vec![0u8; 34];
        switch_core::wire::ethernet::write_header(&mut err, gw(), b_mac(), 0x0800);
        switch_core::wire::ipv4::write_header(
            &mut err[14..],
            "10.244.1.3".parse().unwrap(),
            "10.244.1.2".parse().unwrap(),
            proto::ICMP,
            body.len(),
            64,
        );
        err.extend_from_slice(&body);
        vec![("pod-a", 1, q), ("pod-b", 2, err)]
    });
    let rows = tshark_fields(
        &c.out("pod-a"),
        &["ip.src", "ip.dst", "icmp.type", "icmp.checksum.status", "udp.srcport", "udp.dstport", "ip.checksum.status"],
    );
    assert_eq!(rows.len(), 1, "{}", c.run.stdout);
    let r = &rows[0];
    assert_eq!(r[0], "10.96.0.10|10.244.1.2", "outer from the VIP, quoted from the client");
    assert_eq!(r[1], "10.244.1.2|10.96.0.10");
    assert_eq!((r[2].as_str(), r[3].as_str(), r[4].as_str(), r[5].as_str()), ("3", GOOD, "5300", "53"));
    assert_eq!(r[6], "1|1", "outer and quoted IPv4 checksums");
}
