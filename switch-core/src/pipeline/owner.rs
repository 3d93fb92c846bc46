//! Which worker owns a flow. Conntrack, session affinity and SNAT ports are per worker, but a
//! multi-queue NIC or veth spreads frames by the sender's queue or by a hash that is not
//! symmetric, and with NAT the two directions of a flow do not even share a tuple. So the
//! worker that receives a frame computes the owner of its flow, the same worker for both
//! directions, and hands the frame over when the owner is another worker (VPP's handoff).
//!
//! The owner follows the client end of the flow. In order, a packet
//! 1. from a SNAT address (a node address or a frontend address) with a port in the SNAT
//!    range, which is the node's own connection: the worker whose share that port is in;
//! 2. to a frontend: its source (the client's address and port);
//! 3. to a SNAT address with a port in the SNAT range (a reply to a source-NAT'd flow, or to
//!    the node's own connection): that port's worker, which is the worker that chose it;
//! 4. to a service backend's address and port: its source;
//! 5. from a service backend (a reply of a service flow, DNAT'd or direct): its destination;
//! 6. anything else: a hash symmetric in the two ends.
//!
//! Cluster DNS comes first: a packet to a cluster DNS address on port 53 goes by its source
//! (as rule 2 would), and an answer from the daemon's resolver (its address, source port 53)
//! by its destination, so that the resolver's answer meets the conntrack entry of the query
//! the DNS stage translated to it.
//!
//! Connections of one client spread over the workers (one busy client, such as an ingress
//! proxy, is not stuck on one core), except for services with ClientIP affinity: their flows
//! go by the client's address alone, so all of a client's connections meet its affinity entry
//! (a per-worker table) on one worker. Every service sharing a backend with such a service
//! does the same, so a backend's replies follow one rule (`service/steering.rs`). An ICMP
//! error is owned by the flow whose packet it quotes. A fragment goes to the worker chosen
//! for its datagram's first fragment, which stage 1 recorded (`fragment/stage.rs`). Frames without a flow (ARP, neighbour
//! discovery, frames already dropped by the receive stage) stay where they arrived.
//!
//! What this cannot tell apart, documented rather than hidden: a client whose own source port
//! is also a backend's port on its address (rule 4 and 5 both match; in practice a listening
//! socket keeps the kernel from picking that port), and a frontend port inside the SNAT range
//! on an address that also source-NATs (the allocator's range starts above the NodePort range).

use super::PacketCtx;
use crate::addr::Addr;
use crate::conntrack::Tuple;
use crate::hash::hash_words;
use crate::parse::{IcmpKind, L3};
use crate::service::stage::snat_port_owner;
use crate::service::Shard;
use crate::snapshot::Tables;

/// The worker (of `shard.count`) that owns the flow of the received packet `c` (whose frame,
/// after decapsulation, is `frame`); `shard.index` for frames without a flow.
pub fn flow_owner(t: &Tables, frame: &[u8], c: &PacketCtx, shard: Shard) -> u16 {
    if shard.count <= 1 || c.is_done() || !matches!(c.meta.l3, L3::V4 | L3::V6) {
        return shard.index;
    }
    let m = &c.meta;
    let (tuple, proto) = match m.icmp {
        IcmpKind::NotIcmp | IcmpKind::EchoRequest | IcmpKind::EchoReply => (c.orig, m.proto),
        IcmpKind::Error => match crate::nat::related::quoted(frame, m) {
            // The quoted packet went the other way: its reverse is a packet of the flow.
            Some(q) => (q.tuple.reversed(), q.proto),
            None => return shard.index,
        },
        IcmpKind::NeighborSolicit | IcmpKind::NeighborOther => return shard.index,
    };
    owner_of(t, tuple, proto, shard.count)
}

/// Which of the module's rules gave a flow's owner (for traces).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerRule {
    /// 1: from a SNAT address and port: the port's share.
    SnatSource,
    /// 2: to a frontend: the client; `sticky` by its address alone.
    Frontend { sticky: bool },
    /// 3: to a SNAT address and port: the port's share.
    SnatReply,
    /// 4: to a service backend: the client.
    ToBackend { sticky: bool },
    /// 5: from a service backend: the destination.
    FromBackend { sticky: bool },
    /// 6: a hash of both ends.
    Symmetric,
    /// Cluster DNS: to a DNS address by the client's address and port (`to`), from the
    /// resolver by the destination's.
    Dns { to: bool },
}

impl core::fmt::Display for OwnerRule {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let client = |sticky: bool| if sticky { "address (ClientIP affinity)" } else { "address and port" };
        match *self {
            OwnerRule::SnatSource => write!(f, "the SNAT-port share its source port is in"),
            OwnerRule::Frontend { sticky } => write!(f, "to a frontend: by the client's {}", client(sticky)),
            OwnerRule::SnatReply => write!(f, "to a source-NAT address: the SNAT-port share its port is in"),
            OwnerRule::ToBackend { sticky } => write!(f, "to a service backend: by the client's {}", client(sticky)),
            OwnerRule::FromBackend { sticky } => {
                write!(f, "from a service backend: by the destination's {}", client(sticky))
            }
            OwnerRule::Symmetric => write!(f, "by a hash of both ends"),
            OwnerRule::Dns { to: true } => write!(f, "to the cluster DNS: by the client's address and port"),
            OwnerRule::Dns { to: false } => write!(f, "from the DNS resolver: by the destination's address and port"),
        }
    }
}

/// The owner of the flow a packet with `tuple` belongs to (see the module's rules).
pub fn owner_of(t: &Tables, x: Tuple, proto: u8, count: u16) -> u16 {
    decide(t, x, proto, count).0
}

/// The owner of the flow of a packet with tuple `x`, and the rule that decided it.
pub fn decide(t: &Tables, x: Tuple, proto: u8, count: u16) -> (u16, OwnerRule) {
    let count = count.max(1);
    let svc = &t.services;
    let snat_addr = |a: Addr| t.node.addr_like(a) == Some(a) || svc.is_frontend_addr(a);
    let by_client = |a: Addr, port: u16, sticky: bool| {
        let port = if sticky { 0 } else { u64::from(port) };
        (hash_words(t.hash_seed, &[a.hi(), a.lo(), port]) % u64::from(count)) as u16
    };
    let dns = &t.dns;
    if !dns.addresses.is_empty() {
        if x.dport == crate::dns::DNS_PORT && dns.serves(x.dst) {
            return (by_client(x.src, x.sport, false), OwnerRule::Dns { to: true });
        }
        if x.sport == crate::dns::DNS_PORT && dns.resolver.is_some_and(|r| r.addr_like(x.src) == Some(x.src)) {
            return (by_client(x.dst, x.dport, false), OwnerRule::Dns { to: false });
        }
    }
    if let Some(w) = snat_port_owner(x.sport, count).filter(|_| snat_addr(x.src)) {
        return (w, OwnerRule::SnatSource);
    }
    if let Some(fe) = svc.lookup(x.dst, x.dport, proto) {
        let sticky = svc.sticky(fe.target);
        return (by_client(x.src, x.sport, sticky), OwnerRule::Frontend { sticky });
    }
    if let Some(w) = snat_port_owner(x.dport, count).filter(|_| snat_addr(x.dst)) {
        return (w, OwnerRule::SnatReply);
    }
    if let Some(sticky) = svc.backend_sticky(x.dst, x.dport, proto) {
        return (by_client(x.src, x.sport, sticky), OwnerRule::ToBackend { sticky });
    }
    if let Some(sticky) = svc.backend_sticky(x.src, x.sport, proto) {
        return (by_client(x.dst, x.dport, sticky), OwnerRule::FromBackend { sticky });
    }
    let a = (x.src.hi(), x.src.lo(), x.sport);
    let b = (x.dst.hi(), x.dst.lo(), x.dport);
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let ports = u64::from(lo.2) << 16 | u64::from(hi.2) | u64::from(proto) << 32;
    ((hash_words(t.hash_seed, &[lo.0, lo.1, hi.0, hi.1, ports]) % u64::from(count)) as u16, OwnerRule::Symmetric)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drop::DropReason;
    use crate::packet::{OwnedBuf, PacketBuf, PortId};
    use crate::pipeline::{Verdict, Worker, WorkerConfig};
    use crate::testbed::{self as tb, Scale};
    use crate::wire::build::{IpFrame, L4Repr};
    use crate::wire::l4::tcp_flags::SYN;
    use crate::wire::MacAddr;
    use core::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn frame(src_mac: MacAddr, dst_mac: MacAddr, src: &str, dst: &str, l4: L4Repr) -> Vec<u8> {
        IpFrame::new(src_mac, dst_mac, ip(src), ip(dst), l4).build()
    }

    fn syn(sport: u16, dport: u16) -> L4Repr {
        L4Repr::Tcp { sport, dport, seq: 1, ack: 0, flags: SYN }
    }

    /// One packet of each kind of flow the node sees, from client port `p`.
    fn forward_packets(p: u16) -> Vec<(&'static str, PortId, Vec<u8>)> {
        use tb::*;
        let external = format!("192.168.50.{}", 100 + p % 100);
        let ext = external.as_str();
        vec![
            ("clusterip tcp", POD_A, frame(POD_A_MAC, ROUTER_MAC, POD_A_IP, WEB_VIP, syn(p, 80))),
            (
                "clusterip udp",
                POD_A,
                frame(POD_A_MAC, ROUTER_MAC, POD_A_IP, WEB_VIP, L4Repr::Udp { sport: p, dport: 53 }),
            ),
            ("clusterip v6", POD_A, frame(POD_A_MAC, ROUTER_MAC, POD_A_IP6, WEB_VIP6, syn(p, 80))),
            ("nodeport snat", UPLINK, frame(GATEWAY_MAC, UPLINK_MAC, ext, NODE_IP, syn(p, NODE_PORT))),
            ("hairpin", POD_B, frame(POD_B_MAC, ROUTER_MAC, POD_B_IP, WEB_VIP, syn(p, 80))),
            ("node to pod", HOST, frame(HOST_MAC, ROUTER_MAC, NODE_IP, POD_B_IP, syn(p, 8080))),
            ("node to clusterip", HOST, frame(HOST_MAC, ROUTER_MAC, NODE_IP, WEB_VIP, syn(p, 80))),
            ("pod to backend port", POD_A, frame(POD_A_MAC, ROUTER_MAC, POD_A_IP, POD_B_IP, syn(p, 8080))),
            ("pod to pod", POD_A, frame(POD_A_MAC, ROUTER_MAC, POD_A_IP, POD_B_IP, syn(p, 9999))),
            (
                "ping",
                POD_A,
                frame(POD_A_MAC, ROUTER_MAC, POD_A_IP, POD_B_IP, L4Repr::IcmpEcho { request: true, ident: p, seq: 1 }),
            ),
        ]
    }

    /// The reference tables with ClientIP affinity on `default/web:http` (pods b and c, port
    /// 8080), which makes that port's flows, and flows to its backends, sticky.
    fn sticky_tables() -> crate::snapshot::Tables {
        let t = tb::tables(Scale::default());
        let ports = t
            .services
            .ports()
            .iter()
            .map(|p| {
                let mut spec = p.spec.clone();
                if spec.name == "default/web:http" {
                    spec.affinity_timeout_s = Some(10800);
                }
                crate::service::ServicePort::new(spec, 251)
            })
            .collect();
        let fes = t.services.frontends().copied().collect();
        t.with_services(crate::service::ServiceTable::build(ports, fes).unwrap(), 2)
    }

    /// Every flow, whichever of `count` workers it lands on first, is processed by its owner,
    /// and the reply the owner's translation implies, and an ICMP error about it, are owned by
    /// the same worker; flows spread over the workers, except a sticky client's.
    #[test]
    fn both_directions_of_every_flow_have_one_owner() {
        for (t, single) in [
            (tb::tables(Scale::default()), &[][..]),
            (sticky_tables(), &["clusterip tcp", "hairpin", "pod to backend port"][..]),
        ] {
            for count in [2u16, 3, 4] {
                check_owners(&t, count, single);
            }
        }
    }

    fn check_owners(t: &crate::snapshot::Tables, count: u16, single: &[&str]) {
        let mut workers: Vec<Worker> =
            (0..count).map(|index| Worker::new(WorkerConfig { index, count, ..WorkerConfig::default() })).collect();
        let mut seen = vec![vec![0usize; usize::from(count)]; forward_packets(0).len()];
        let mut hairpins = 0;
        for (n, p) in (32768u16..61000).step_by(97).enumerate() {
            for (k, (what, port, f)) in forward_packets(p).into_iter().enumerate() {
                let mut bufs = [OwnedBuf::from_frame(&f, port)];
                let rx = usize::from(p) % usize::from(count);
                workers[rx].receive(t, 1_000_000 + n as u64, &mut bufs, 0);
                let owner = workers[rx].owner(t, &f, 0);
                assert!(owner < count);
                seen[k][usize::from(owner)] += 1;
                // The owner runs the pipeline (its SNAT ports come from its own share).
                let w = &mut workers[usize::from(owner)];
                let mut v = [Verdict::Drop(DropReason::NoRoute)];
                w.process(t, 1_000_000 + n as u64, &mut bufs, &mut v);
                if matches!(what, "hairpin" | "nodeport snat") && v[0] == Verdict::Drop(DropReason::PolicyDeniedIngress)
                {
                    // Pod c, the other backend, takes clients only (judged on the original
                    // source, not the masqueraded one).
                    continue;
                }
                assert!(matches!(v[0], Verdict::Tx(_)), "{what}: forwarded, got {:?}", v[0]);
                let c = *w.ctx(0).unwrap();
                if what == "hairpin" {
                    hairpins += usize::from(c.tuple.src == c.orig.dst);
                }
                let proto = c.meta.proto;
                let reply = c.tuple.reversed();
                assert_eq!(owner_of(t, reply, proto, count), owner, "{what} ({count} workers): reply {reply:?}");
                // An ICMP error about the packet as it left, from where it went.
                if proto != crate::wire::proto::ICMP && c.tuple.dst.is_v4() {
                    let err = super::super::tests::icmp_error(
                        tb::POD_B_MAC,
                        tb::ROUTER_MAC,
                        &c.tuple.dst.to_ip().to_string(),
                        &c.tuple.src.to_ip().to_string(),
                        &bufs[0].data()[14..],
                    );
                    let mut eb = [OwnedBuf::from_frame(&err, tb::POD_B)];
                    workers[rx].receive(t, 1_000_000 + n as u64, &mut eb, 0);
                    assert_eq!(workers[rx].owner(t, &err, 0), owner, "{what}: ICMP error owner");
                }
            }
        }
        assert!(hairpins > 10, "hairpin flows source-NAT'd to the VIP: {hairpins}");
        for (k, (what, _, _)) in forward_packets(0).iter().enumerate() {
            let used = seen[k].iter().filter(|&&s| s > 0).count();
            if single.contains(what) {
                assert_eq!(used, 1, "{what}: one client address, one worker: {:?}", seen[k]);
            } else {
                assert_eq!(used, usize::from(count), "{what} spreads over {count} workers: {:?}", seen[k]);
            }
        }
    }

    #[test]
    fn each_kind_of_flow_is_decided_by_its_rule() {
        let t = tb::tables(Scale::default());
        let a = |s: &str| Addr::from(ip(s));
        let x = |src: &str, sport, dst: &str, dport| Tuple { src: a(src), dst: a(dst), sport, dport };
        let tcp = crate::wire::proto::TCP;
        let cases = [
            (x(tb::POD_A_IP, 40000, tb::WEB_VIP, 80), OwnerRule::Frontend { sticky: false }),
            (x(tb::POD_B_IP, 8080, tb::POD_A_IP, 40000), OwnerRule::FromBackend { sticky: false }),
            (x(tb::POD_A_IP, 40000, tb::POD_B_IP, 8080), OwnerRule::ToBackend { sticky: false }),
            (x(tb::POD_B_IP, 8080, tb::NODE_IP, 40000), OwnerRule::SnatReply),
            (x(tb::NODE_IP, 40000, tb::POD_B_IP, 8080), OwnerRule::SnatSource),
            (x(tb::POD_A_IP, 40000, tb::POD_B_IP, 9999), OwnerRule::Symmetric),
        ];
        for (tuple, rule) in cases {
            assert_eq!(decide(&t, tuple, tcp, 2).1, rule, "{tuple:?}");
        }
        let st = sticky_tables();
        assert_eq!(decide(&st, cases[0].0, tcp, 2).1, OwnerRule::Frontend { sticky: true });
        assert_eq!(decide(&st, cases[1].0, tcp, 2).1, OwnerRule::FromBackend { sticky: true });
        assert!(OwnerRule::Frontend { sticky: true }.to_string().contains("ClientIP affinity"));
    }

    #[test]
    fn frames_without_a_flow_stay_where_they_arrived() {
        let t = tb::tables(Scale::default());
        let mut w = Worker::new(WorkerConfig { index: 1, count: 4, ..WorkerConfig::default() });
        let arp = crate::wire::build::arp_request(
            tb::POD_A_MAC,
            "10.244.1.2".parse().unwrap(),
            "10.244.1.1".parse().unwrap(),
        );
        let bad = vec![0u8; 20];
        for f in [arp, bad] {
            let mut b = [OwnedBuf::from_frame(&f, tb::POD_A)];
            w.receive(&t, 0, &mut b, 0);
            assert_eq!(w.owner(&t, &f, 0), 1);
        }
    }
}
