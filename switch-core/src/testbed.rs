//! A reference node for tests, benchmarks and tools: one node with three pods, a host port, an
//! uplink and a remote node, a few services and a policy; optionally scaled up with synthetic
//! services and policy rules. It builds tables the way the control plane does, without a
//! config file, so that switch-core can be exercised on its own.

use crate::addr::{Addr, Prefix};
use crate::endpoint::{Endpoint, EndpointTable, Identity};
use crate::packet::PortId;
use crate::policy::{Classifier, ClassifierId, DirectionRules, PeerMatch, PolicyRule, PolicyTable, PortMatch, RuleId};
use crate::route::{NodeId, RemoteNode, RouteTable, RouteTarget};
use crate::service::{
    Backend, BackendState, Frontend, FrontendKind, ServicePort, ServicePortId, ServicePortSpec, ServiceTable,
};
use crate::snapshot::{NodeInfo, PortInfo, PortKind, Tables};
use crate::wire::build::TunnelKind;
use crate::wire::{proto, MacAddr};
use core::net::IpAddr;

pub const ROUTER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
pub const UPLINK_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x01, 0x10]);
pub const HOST_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x02, 0x10]);
pub const VTEP_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x03, 0x10]);
pub const GATEWAY_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x09, 0x09]);
pub const NODE2_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x01, 0x11]);
pub const NODE2_VTEP_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x03, 0x11]);
pub const POD_A_MAC: MacAddr = MacAddr([0x02, 0, 0, 0x0a, 0, 0x02]);
pub const POD_B_MAC: MacAddr = MacAddr([0x02, 0, 0, 0x0a, 0, 0x03]);
pub const POD_C_MAC: MacAddr = MacAddr([0x02, 0, 0, 0x0a, 0, 0x04]);

pub const UPLINK: PortId = PortId(0);
pub const POD_A: PortId = PortId(1);
pub const POD_B: PortId = PortId(2);
pub const POD_C: PortId = PortId(3);
pub const HOST: PortId = PortId(4);

pub const NODE_IP: &str = "192.168.50.10";
pub const NODE_IP6: &str = "fd00:50::10";
pub const NODE2_IP: &str = "192.168.50.11";
pub const POD_A_IP: &str = "10.244.1.2";
pub const POD_B_IP: &str = "10.244.1.3";
pub const POD_C_IP: &str = "10.244.1.4";
pub const POD_A_IP6: &str = "fd00:244:1::2";
pub const POD_B_IP6: &str = "fd00:244:1::3";
pub const POD_C_IP6: &str = "fd00:244:1::4";
pub const REMOTE_POD_IP: &str = "10.244.2.5";
pub const WEB_VIP: &str = "10.96.0.10";
pub const WEB_VIP6: &str = "fd00:96::10";
pub const EMPTY_VIP: &str = "10.96.0.20";
pub const NODE_PORT: u16 = 30080;
pub const VNI: u32 = 1;

pub const ID_CLIENT: Identity = Identity(256);
pub const ID_WEB: Identity = Identity(257);
pub const ID_SECURE: Identity = Identity(258);

/// How big to make the tables.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    /// Extra ClusterIP services (10.100.0.0/16), each with `backends` remote backends.
    pub services: usize,
    pub backends: usize,
    /// Extra egress rules on pod a (identity and CIDR peers that do not match test traffic).
    pub policy_rules: usize,
    pub maglev_size: usize,
    pub tunnel: TunnelKind,
}

impl Default for Scale {
    fn default() -> Self {
        Scale { services: 0, backends: 0, policy_rules: 0, maglev_size: 251, tunnel: TunnelKind::Vxlan }
    }
}

fn a(s: &str) -> Addr {
    Addr::from(s.parse::<IpAddr>().expect("testbed address"))
}

fn p(s: &str) -> Prefix {
    s.parse().expect("testbed prefix")
}

/// The name of the `i`-th synthetic service's VIP.
pub fn synthetic_vip(i: usize) -> Addr {
    Addr::from(core::net::Ipv4Addr::new(10, 100, (i >> 8) as u8, i as u8))
}

/// Builds the reference tables.
pub fn tables(scale: Scale) -> Tables {
    let node = NodeInfo {
        name: "node-1".into(),
        router_mac: ROUTER_MAC,
        uplink_mac: UPLINK_MAC,
        host_mac: HOST_MAC,
        vtep_mac: VTEP_MAC,
        ipv4: NODE_IP.parse().ok(),
        ipv6: NODE_IP6.parse().ok(),
        tunnel: scale.tunnel,
        vni: VNI,
        uplink_mtu: 1500,
    };
    let ports = vec![
        PortInfo { name: "uplink".into(), kind: PortKind::Uplink },
        PortInfo { name: "pod-a".into(), kind: PortKind::Pod },
        PortInfo { name: "pod-b".into(), kind: PortKind::Pod },
        PortInfo { name: "pod-c".into(), kind: PortKind::Pod },
        PortInfo { name: "host".into(), kind: PortKind::Host },
    ];
    // Policy: pod c (app=web, tier=secure) takes TCP 8080 from clients only; pod a has an
    // egress policy with `policy_rules` rules that do not match plus one that allows the
    // cluster.
    let ingress_c = DirectionRules {
        rules: vec![PolicyRule {
            id: RuleId(0),
            peers: vec![PeerMatch::Identity(ID_CLIENT)],
            ports: vec![PortMatch { proto: Some(proto::TCP), lo: 8080, hi: 8080 }],
        }],
    };
    let mut names = vec!["default/secure-web ingress[0]".to_string()];
    let mut egress_a = DirectionRules::default();
    for i in 0..scale.policy_rules {
        let id = RuleId(names.len() as u32);
        names.push(format!("default/bulk egress[{i}]"));
        let peer = if i % 2 == 0 {
            PeerMatch::Identity(Identity(100_000 + i as u32))
        } else {
            let o = (i / 2) as u32;
            PeerMatch::Cidr {
                prefix: Prefix::new(IpAddr::V4(core::net::Ipv4Addr::from(0xac10_0000 + (o << 8))), 24)
                    .expect("bulk prefix"),
                except: vec![],
            }
        };
        egress_a.rules.push(PolicyRule {
            id,
            peers: vec![peer],
            ports: vec![PortMatch { proto: Some(proto::TCP), lo: 1 + (i % 1000) as u16, hi: 1 + (i % 1000) as u16 }],
        });
    }
    let has_egress = scale.policy_rules > 0;
    if has_egress {
        let id = RuleId(names.len() as u32);
        names.push("default/bulk egress[cluster]".into());
        egress_a.rules.push(PolicyRule {
            id,
            peers: vec![
                PeerMatch::Cidr { prefix: p("10.0.0.0/8"), except: vec![] },
                PeerMatch::Cidr { prefix: p("192.168.0.0/16"), except: vec![] },
                PeerMatch::Cidr { prefix: p("fd00::/16"), except: vec![] },
            ],
            ports: vec![],
        });
    }
    let compile = |r: &DirectionRules| Classifier::compile(r).expect("testbed rules are within the limits");
    let policy = PolicyTable::new(
        vec![std::sync::Arc::new(compile(&ingress_c)), std::sync::Arc::new(compile(&egress_a))],
        names,
    );
    let ep = |name: &str, port: Option<PortId>, mac, ips: &[&str], identity, ingress, egress| Endpoint {
        name: name.into(),
        namespace: "default".into(),
        port,
        mac,
        ips: ips.iter().map(|s| a(s)).collect(),
        identity,
        ingress,
        egress,
    };
    let endpoints = vec![
        ep("a", Some(POD_A), POD_A_MAC, &[POD_A_IP, POD_A_IP6], ID_CLIENT, None, has_egress.then_some(ClassifierId(1))),
        ep("b", Some(POD_B), POD_B_MAC, &[POD_B_IP, POD_B_IP6], ID_WEB, None, None),
        ep("c", Some(POD_C), POD_C_MAC, &[POD_C_IP, POD_C_IP6], ID_SECURE, Some(ClassifierId(0)), None),
        ep("d", None, MacAddr::ZERO, &[REMOTE_POD_IP], ID_CLIENT, None, None),
    ];
    let endpoints =
        EndpointTable::build(endpoints, vec![a(NODE_IP), a(NODE_IP6)], vec![a(NODE2_IP)]).expect("testbed endpoints");
    let routes = RouteTable::build(vec![
        (p("10.244.1.0/24"), RouteTarget::Local),
        (p("fd00:244:1::/64"), RouteTarget::Local),
        (p("10.244.2.0/24"), RouteTarget::Tunnel(NodeId(0))),
        (p("fd00:244:2::/64"), RouteTarget::Tunnel(NodeId(0))),
        (p("0.0.0.0/0"), RouteTarget::Uplink(GATEWAY_MAC)),
        (p("::/0"), RouteTarget::Uplink(GATEWAY_MAC)),
    ]);
    let nodes = vec![RemoteNode {
        name: "node-2".into(),
        underlay_ip: a(NODE2_IP),
        vtep_mac: NODE2_VTEP_MAC,
        next_hop_mac: NODE2_MAC,
    }];
    let be = |ip: &str, port| Backend { addr: a(ip), port, weight: 1, state: BackendState::Ready, local: true };
    let m = scale.maglev_size;
    let mut sports = vec![
        ServicePort::new(
            ServicePortSpec::simple("default/web:http", proto::TCP, vec![be(POD_B_IP, 8080), be(POD_C_IP, 8080)]),
            m,
        ),
        ServicePort::new(ServicePortSpec::simple("default/web:dns", proto::UDP, vec![be(POD_B_IP, 5353)]), m),
        ServicePort::new(ServicePortSpec::simple("default/empty:http", proto::TCP, vec![]), m),
        ServicePort::new(ServicePortSpec::simple("default/empty:dns", proto::UDP, vec![]), m),
        ServicePort::new(
            ServicePortSpec::simple("default/web6:http", proto::TCP, vec![be(POD_B_IP6, 8080), be(POD_C_IP6, 8080)]),
            m,
        ),
    ];
    let fe = |addr: &str, port, proto, kind, t| Frontend { addr: a(addr), port, proto, kind, target: ServicePortId(t) };
    let mut fes = vec![
        fe(WEB_VIP, 80, proto::TCP, FrontendKind::ClusterIp, 0),
        fe(NODE_IP, NODE_PORT, proto::TCP, FrontendKind::NodePort, 0),
        fe(WEB_VIP, 53, proto::UDP, FrontendKind::ClusterIp, 1),
        fe(EMPTY_VIP, 80, proto::TCP, FrontendKind::ClusterIp, 2),
        fe(EMPTY_VIP, 53, proto::UDP, FrontendKind::ClusterIp, 3),
        fe(WEB_VIP6, 80, proto::TCP, FrontendKind::ClusterIp, 4),
    ];
    for i in 0..scale.services {
        let backends = (0..scale.backends)
            .map(|j| {
                let n = (i * scale.backends + j) as u32;
                Backend {
                    addr: Addr::from(core::net::Ipv4Addr::from(0x0af4_0200 + (n % 250) + 2)),
                    port: 8000 + (n / 250) as u16,
                    weight: 1,
                    state: BackendState::Ready,
                    local: false,
                }
            })
            .collect();
        let id = sports.len() as u32;
        sports.push(ServicePort::new(ServicePortSpec::simple(format!("bulk/svc-{i}:http"), proto::TCP, backends), m));
        fes.push(Frontend {
            addr: synthetic_vip(i),
            port: 80,
            proto: proto::TCP,
            kind: FrontendKind::ClusterIp,
            target: ServicePortId(id),
        });
    }
    let services = ServiceTable::build(sports, fes).expect("testbed services");
    Tables::new(1, node, ports, endpoints, routes, nodes, services, policy, 0x5eed, true)
}

fn fix_ipv4_checksum(f: &mut [u8]) {
    let hl = usize::from(f[14] & 0xf) * 4;
    f[24] = 0;
    f[25] = 0;
    let c = crate::wire::checksum::checksum(&f[14..14 + hl]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

/// Broken variants of a well-formed untagged IPv4 TCP frame, each with the drop reason the
/// pipeline must give it (transport checksums verified). Shared by the pipeline tests, the
/// end-to-end tests and the fuzz seeds.
pub fn malformed_ipv4_tcp(good: &[u8]) -> Vec<(Vec<u8>, crate::drop::DropReason)> {
    use crate::drop::DropReason as R;
    let edit = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = good.to_vec();
        f(&mut v);
        v
    };
    vec![
        (good[..12].to_vec(), R::FrameTooShort),
        (good[..30].to_vec(), R::Ipv4Truncated),
        (
            edit(&|f| {
                f[16..18].copy_from_slice(&200u16.to_be_bytes());
                fix_ipv4_checksum(f);
            }),
            R::Ipv4Truncated,
        ),
        (edit(&|f| f[14] = 0x44), R::Ipv4Malformed),
        (edit(&|f| f[24] ^= 0x55), R::Ipv4BadChecksum),
        (edit(&|f| f[50] ^= 0x55), R::L4BadChecksum),
        // A TCP fragment at offset 8, which could overwrite the first one's flags (RFC 1858).
        (
            edit(&|f| {
                f[21] = 0x01;
                fix_ipv4_checksum(f);
            }),
            R::IpFragment,
        ),
        // An option whose length runs past the header.
        (
            edit(&|f| {
                f[14] = 0x46;
                f.splice(34..34, [7, 8, 4, 0]);
                let l = (f.len() - 14) as u16;
                f[16..18].copy_from_slice(&l.to_be_bytes());
                fix_ipv4_checksum(f);
            }),
            R::IpOptions,
        ),
        (
            edit(&|f| {
                f.truncate(44);
                let l = (f.len() - 14) as u16;
                f[16..18].copy_from_slice(&l.to_be_bytes());
                fix_ipv4_checksum(f);
            }),
            R::L4Truncated,
        ),
        (edit(&|f| f[46] = 0x40), R::L4Malformed),
        (
            edit(&|f| {
                f[23] = 47;
                fix_ipv4_checksum(f);
            }),
            R::UnsupportedProtocol,
        ),
        (edit(&|f| f[12..14].copy_from_slice(&[0x88, 0xcc])), R::UnsupportedEthertype),
        (
            edit(&|f| {
                f.splice(12..12, [0x81, 0, 0, 5]);
            }),
            R::VlanNotAllowed,
        ),
    ]
}

/// `inner` as node-2 sends it to this node over the overlay (`kind`, `vni`).
pub fn from_node2(inner: &[u8], kind: TunnelKind, vni: u32) -> Vec<u8> {
    let (src, dst) = (a(NODE2_IP).to_ip(), a(NODE_IP).to_ip());
    crate::wire::build::tunnel_wrap(inner, kind, NODE2_MAC, UPLINK_MAC, src, dst, 50000, vni)
}
