//! Connection tracking as users meet it through Services and NetworkPolicies (issue 9, items
//! 2 and 3): a tuple reused after its connection closed is a new connection, an unanswered
//! flow is judged again after a policy change, and a full table keeps answered flows.

use podswitch_tests::model::{Model, ModelPod, ROUTER_MAC};
use std::net::IpAddr;
use switch_core::drop::DropReason;
use switch_core::parse::{parse, PacketMeta, ParseOptions};
use switch_core::pipeline::{Verdict, Worker, WorkerConfig};
use switch_core::wire::build::{IpFrame, L4Repr};
use switch_core::wire::l4::tcp_flags::{ACK, FIN, RST, SYN};

const SEC: u64 = 1_000_000_000;
const VIP: &str = "10.96.0.91";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn meta(frame: &[u8]) -> PacketMeta {
    parse(frame, ParseOptions::default()).expect("output frame parses")
}

fn tcp(from: &ModelPod, dst: &str, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let l4 = L4Repr::Tcp { sport, dport, seq: 1, ack: 1, flags };
    IpFrame::new(from.mac, ROUTER_MAC, from.ip, ip(dst), l4).build()
}

/// Service web (x) on 10.96.0.91:80 -> 8080 with one EndpointSlice whose only endpoint is
/// `backend`.
fn web(m: &Model, backend: &str) {
    m.apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: x}}\nspec:\n  clusterIP: {VIP}\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n"
    ));
    slice(m, backend);
}

fn slice(m: &Model, backend: &str) {
    m.apply(&format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: web-1, namespace: x, labels: {{kubernetes.io/service-name: web}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints: [{{addresses: [{backend}]}}]\n"
    ));
}

const DENY_X: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-all, namespace: x}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n";

struct Conn<'a> {
    m: &'a Model,
    w: Worker,
    client: ModelPod,
    now: u64,
}

impl Conn<'_> {
    fn send(&mut self, frame: Vec<u8>, from: &ModelPod) -> (Verdict, Vec<u8>) {
        self.now += SEC;
        self.m.send_at(&mut self.w, frame, from.port, self.now)
    }

    /// The client's SYN to the VIP from port 45000: where it went.
    fn syn(&mut self) -> (Verdict, Vec<u8>) {
        let c = self.client.clone();
        self.send(tcp(&c, VIP, 45000, 80, SYN), &c)
    }

    /// A whole connection from the client's port 45000 to the backend `be`, then closed by a
    /// reset (`fin` false) or by FINs both ways.
    fn connect_and_close(&mut self, be: &str, fin: bool) {
        let (v, out) = self.syn();
        let backend = self.m.pod(be).clone();
        assert_eq!(v, Verdict::Tx(backend.port), "SYN reaches {be}");
        assert_eq!(meta(&out).dport, 8080);
        let c = self.client.clone();
        let from_be = |flags| tcp(&backend, &c.ip.to_string(), 8080, 45000, flags);
        assert_eq!(self.send(from_be(SYN | ACK), &backend).0, Verdict::Tx(c.port));
        assert_eq!(self.send(tcp(&c, VIP, 45000, 80, ACK), &c).0, Verdict::Tx(backend.port));
        if fin {
            assert_eq!(self.send(tcp(&c, VIP, 45000, 80, FIN | ACK), &c).0, Verdict::Tx(backend.port));
            assert_eq!(self.send(from_be(FIN | ACK), &backend).0, Verdict::Tx(c.port));
            assert_eq!(self.send(tcp(&c, VIP, 45000, 80, ACK), &c).0, Verdict::Tx(backend.port));
        } else {
            assert_eq!(self.send(tcp(&c, VIP, 45000, 80, RST), &c).0, Verdict::Tx(backend.port));
        }
    }
}

fn conn(m: &Model) -> Conn<'_> {
    Conn { m, w: m.worker(), client: m.pod("z/c").clone(), now: SEC }
}

/// The setting of item 2 (a) and (b): a connection from port 45000 to web1 (x/a), closed by
/// RST or FINs, then the EndpointSlice replaced by web2 (x/b).
fn closed_then_replaced(m: &Model, fin: bool) -> Conn<'_> {
    web(m, "10.244.1.1");
    let mut c = conn(m);
    c.connect_and_close("x/a", fin);
    slice(m, "10.244.1.2");
    c
}

/// Item 2 (a): after a close, the same client port reaches the service's current endpoint,
/// not the one that left (closed by RST, and in a second round by FINs).
#[test]
fn a_reused_tuple_after_close_reaches_the_current_endpoint() {
    for fin in [false, true] {
        let m = Model::new();
        let mut c = closed_then_replaced(&m, fin);
        let (v, out) = c.syn();
        assert_eq!(v, Verdict::Tx(m.pod("x/b").port), "fin={fin}: the new connection goes to web2 (x/b)");
        assert_eq!(meta(&out).dst, switch_core::addr::Addr::from(ip("10.244.1.2")));
    }
}

/// Item 2 (b): a policy applied after the close refuses the reused tuple's new SYN.
#[test]
fn a_reused_tuple_after_close_is_judged_by_the_current_policy() {
    for fin in [false, true] {
        let m = Model::new();
        let mut c = closed_then_replaced(&m, fin);
        m.apply(DENY_X);
        assert_eq!(c.syn().0, Verdict::Drop(DropReason::PolicyDeniedIngress), "fin={fin}");
    }
}

/// Item 2 (c): a SYN nobody answered, then a policy that denies it: the retransmitted SYN is
/// denied at once, not forwarded until the entry times out.
#[test]
fn an_unanswered_syn_is_judged_again_after_a_policy_change() {
    let m = Model::new();
    web(&m, "10.244.1.1");
    let mut c = conn(&m);
    assert_eq!(c.syn().0, Verdict::Tx(m.pod("x/a").port));
    m.apply(DENY_X);
    assert_eq!(c.syn().0, Verdict::Drop(DropReason::PolicyDeniedIngress));
    // The same for a one-way UDP flow: its next datagram meets the policy.
    let m = Model::new();
    let a = m.pod("z/a").clone();
    let udp = |m: &Model| m.frame_from(&a, ip("10.244.1.1"), 80, "UDP", 7000);
    let mut w = m.worker();
    assert_eq!(m.send_at(&mut w, udp(&m), a.port, SEC).0, Verdict::Tx(m.pod("x/a").port));
    m.apply(DENY_X);
    assert_eq!(m.send_at(&mut w, udp(&m), a.port, 2 * SEC).0, Verdict::Drop(DropReason::PolicyDeniedIngress));
}

/// An answered connection is not cut by a policy change (Kubernetes leaves established
/// connections to the implementation; Cilium and Calico keep them, and so does podswitch).
#[test]
fn an_answered_connection_survives_a_policy_change() {
    let m = Model::new();
    web(&m, "10.244.1.1");
    let mut c = conn(&m);
    let (v, _) = c.syn();
    let be = m.pod("x/a").clone();
    assert_eq!(v, Verdict::Tx(be.port));
    let client = c.client.clone();
    assert_eq!(c.send(tcp(&be, &client.ip.to_string(), 8080, 45000, SYN | ACK), &be).0, Verdict::Tx(client.port));
    m.apply(DENY_X);
    assert_eq!(c.send(tcp(&client, VIP, 45000, 80, ACK), &client).0, Verdict::Tx(be.port));
}

/// Item 3: with `conntrack_flows = 64`, pod a's DNS exchange with a ClusterIP survives pod c
/// flooding the table with 400 one-way datagrams; the late answer is still translated back.
#[test]
fn a_full_table_keeps_answered_flows() {
    let m = Model::new();
    m.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: dns, namespace: x}\nspec:\n  clusterIP: 10.96.0.53\n  ports: [{name: dns, port: 53, protocol: UDP, targetPort: 5353}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: dns-1, namespace: x, labels: {kubernetes.io/service-name: dns}}\naddressType: IPv4\nports: [{name: dns, port: 5353, protocol: UDP}]\nendpoints: [{addresses: [10.244.1.3]}]\n"
    );
    let mut w = m.worker_with(WorkerConfig { conntrack_flows: 64, ..WorkerConfig::default() });
    let (a, dns, b, c) = (m.pod("x/a").clone(), m.pod("x/c").clone(), m.pod("x/b").clone(), m.pod("y/c").clone());
    let query = |m: &Model| m.frame_from(&a, ip("10.96.0.53"), 53, "UDP", 33000);
    let answer = IpFrame::new(dns.mac, ROUTER_MAC, dns.ip, a.ip, L4Repr::Udp { sport: 5353, dport: 33000 }).build();
    for t in [1, 30] {
        let (v, out) = m.send_at(&mut w, query(&m), a.port, t * SEC);
        assert_eq!(v, Verdict::Tx(dns.port));
        assert_eq!(meta(&out).dport, 5353);
        let (v, out) = m.send_at(&mut w, answer.clone(), dns.port, t * SEC + 1000);
        assert_eq!(v, Verdict::Tx(a.port));
        assert_eq!((meta(&out).src, meta(&out).sport), (ip("10.96.0.53").into(), 53));
    }
    for i in 0..400u16 {
        let f = m.frame_from(&c, b.ip, 9, "UDP", 10000 + i);
        let now = 31 * SEC + u64::from(i) * 20_000_000;
        let (v, _) = m.send_at(&mut w, f, c.port, now);
        assert!(matches!(v, Verdict::Tx(_) | Verdict::Drop(DropReason::ConntrackFull)), "{v:?}");
    }
    let (v, out) = m.send_at(&mut w, answer, dns.port, 40 * SEC);
    assert_eq!(v, Verdict::Tx(a.port));
    assert_eq!(
        (meta(&out).src, meta(&out).sport),
        (ip("10.96.0.53").into(), 53),
        "the answer is translated back: its flow was not evicted"
    );
    assert!(w.conntrack().stats.evicted > 0, "the one-way flows gave way to each other");
}
