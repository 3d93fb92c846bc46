//! Service semantics from real manifests (Service, EndpointSlice, Endpoints, Pod), applied
//! through the controller and checked with packets through the pipeline: one test per
//! Kubernetes behaviour kube-proxy users rely on.

use podswitch_tests::model::{Model, ModelPod, UPLINK_MAC};
use std::collections::BTreeSet;
use std::net::IpAddr;
use switch_core::addr::Addr;
use switch_core::drop::DropReason;
use switch_core::parse::{parse, PacketMeta, ParseOptions};
use switch_core::pipeline::Verdict;
use switch_core::wire::build::IpFrame;
use switch_core::wire::MacAddr;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn meta(frame: &[u8]) -> PacketMeta {
    parse(frame, ParseOptions::default()).expect("output frame parses")
}

fn svc(name: &str, spec: &str) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: x}}\nspec:\n{spec}")
}

/// Sends a new flow from a pod; returns the verdict and the frame as it left.
fn from_pod(m: &Model, from: &str, dst: &str, port: u16, proto: &str, sport: u16) -> (Verdict, Vec<u8>) {
    let p: ModelPod = m.pod(from).clone();
    let mut w = m.worker();
    m.send(&mut w, m.frame_from(&p, ip(dst), port, proto, sport), p.port)
}

/// Sends a new flow arriving on the uplink from an outside client.
fn from_outside(m: &Model, src: &str, dst: &str, port: u16, proto: &str) -> (Verdict, Vec<u8>) {
    let f = IpFrame::new(
        MacAddr([2, 0, 0, 0, 0x0f, 1]),
        UPLINK_MAC,
        ip(src),
        ip(dst),
        podswitch_tests::model::l4(proto, 50000, port),
    )
    .build();
    let mut w = m.worker();
    m.send(&mut w, f, m.uplink)
}

fn backends_seen(m: &Model, from: &str, dst: &str, port: u16, proto: &str) -> BTreeSet<(Addr, u16)> {
    (0..64)
        .map(|i| {
            let (v, f) = from_pod(m, from, dst, port, proto, 20000 + i * 7);
            assert!(matches!(v, Verdict::Tx(_)), "{dst}:{port} from {from}: {v:?}");
            let mm = meta(&f);
            (mm.dst, mm.dport)
        })
        .collect()
}

fn a(s: &str) -> Addr {
    Addr::from(ip(s))
}

#[test]
fn cluster_ip_dual_stack_with_selector() {
    let m = Model::new();
    m.apply(&svc("web", "  clusterIPs: [10.96.0.10, \"fd00:96::10\"]\n  ipFamilies: [IPv4, IPv6]\n  selector: {pod: a}\n  ports: [{port: 80, targetPort: serve-81-tcp}]\n"));
    let got = backends_seen(&m, "y/b", "10.96.0.10", 80, "TCP");
    assert_eq!(got, [(a("10.244.1.1"), 81)].into(), "x/a only, on its named port");
    // IPv6: the same service through its second cluster IP.
    let p = m.pod("y/b").clone();
    let f = IpFrame::new(
        p.mac,
        podswitch_tests::model::ROUTER_MAC,
        ip("fd00:244:1::5"),
        ip("fd00:96::10"),
        podswitch_tests::model::l4("TCP", 4000, 80),
    )
    .build();
    let mut w = m.worker();
    let (v, out) = m.send(&mut w, f, p.port);
    assert_eq!(v, Verdict::Tx(m.pod("x/a").port));
    assert_eq!((meta(&out).dst, meta(&out).dport), (a("fd00:244:1::1"), 81));
}

#[test]
fn named_target_ports_resolve_per_endpoint_and_several_ports_and_protocols() {
    let m = Model::new();
    // x/b serves "web" on 8081, x/a on 8080: one service port, two target numbers.
    let mut pods = String::new();
    for (name, n, port) in [("a", 1, 8080), ("b", 2, 8081)] {
        pods.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: x, labels: {{pod: {name}, app: web}}, annotations: {{podswitch.io/port: x-{name}, podswitch.io/mac: \"02:00:00:00:02:{n:02x}\"}}}}\nspec:\n  nodeName: node-1\n  containers: [{{name: c, ports: [{{name: web, containerPort: {port}}}, {{name: dns, containerPort: 5353, protocol: UDP}}]}}]\nstatus: {{podIP: 10.244.1.{n}}}\n"
        ));
    }
    m.apply(&pods);
    m.apply(&svc("web", "  clusterIP: 10.96.0.11\n  selector: {app: web}\n  ports:\n  - {name: http, port: 80, targetPort: web}\n  - {name: dns, port: 53, protocol: UDP, targetPort: dns}\n"));
    assert_eq!(
        backends_seen(&m, "z/c", "10.96.0.11", 80, "TCP"),
        [(a("10.244.1.1"), 8080), (a("10.244.1.2"), 8081)].into()
    );
    assert_eq!(
        backends_seen(&m, "z/c", "10.96.0.11", 53, "UDP"),
        [(a("10.244.1.1"), 5353), (a("10.244.1.2"), 5353)].into()
    );
    let (v, _) = from_pod(&m, "z/c", "10.96.0.11", 53, "TCP", 1);
    assert_ne!(v, Verdict::Tx(m.pod("x/a").port), "TCP 53 is not a port of the service");
}

#[test]
fn endpoint_slices_conditions_and_terminating_fallback() {
    let m = Model::new();
    m.apply(&svc("web", "  clusterIP: 10.96.0.12\n  ports: [{name: http, port: 80}]\n"));
    let slice = |eps: &str| {
        format!("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: web-1, namespace: x, labels: {{kubernetes.io/service-name: web}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n{eps}")
    };
    m.apply(&slice("- {addresses: [10.244.1.1], conditions: {ready: true}, targetRef: {kind: Pod, name: a}}\n- {addresses: [10.244.1.2], conditions: {ready: false, serving: true, terminating: true}}\n"));
    assert_eq!(backends_seen(&m, "y/a", "10.96.0.12", 80, "TCP"), [(a("10.244.1.1"), 8080)].into(), "ready ones only");
    m.apply(&slice("- {addresses: [10.244.1.2], conditions: {ready: false, serving: true, terminating: true}}\n- {addresses: [10.244.1.3], conditions: {ready: false, serving: false}}\n"));
    assert_eq!(
        backends_seen(&m, "y/a", "10.96.0.12", 80, "TCP"),
        [(a("10.244.1.2"), 8080)].into(),
        "serving terminating when none is ready"
    );
    m.apply(&slice("- {addresses: [10.244.1.3], conditions: {ready: false, serving: false}}\n"));
    let (v, out) = from_pod(&m, "y/a", "10.96.0.12", 80, "TCP", 1);
    assert_eq!(v, Verdict::Tx(m.pod("y/a").port), "refused at once: a reset back to the client");
    assert_ne!(meta(&out).tcp_flags & switch_core::wire::l4::tcp_flags::RST, 0);
    // A second slice adds endpoints; deleting it takes them away.
    m.apply("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-2, namespace: x, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{name: http, port: 9090}]\nendpoints: [{addresses: [10.244.1.4]}]\n");
    assert_eq!(backends_seen(&m, "y/a", "10.96.0.12", 80, "TCP"), [(a("10.244.1.4"), 9090)].into());
    m.delete("endpointslice", "x", "web-2");
    let (v, _) = from_pod(&m, "y/a", "10.96.0.12", 80, "TCP", 1);
    assert_eq!(v, Verdict::Tx(m.pod("y/a").port), "refused again");
}

/// Issue 9 item 9: an endpoint serves only the ports its own slice lists, by name; an address
/// in two slices with different ports serves each slice's ports.
#[test]
fn endpoint_slice_ports_belong_to_their_slice() {
    let m = Model::new();
    m.apply(&svc("two", "  clusterIP: 10.96.0.18\n  ports: [{name: http, port: 80, targetPort: 8080}, {name: admin, port: 81, targetPort: 9000}]\n"));
    let slice = |name: &str, ports: &str, addr: &str| {
        format!("---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}, namespace: x, labels: {{kubernetes.io/service-name: two}}}}\naddressType: IPv4\nports: {ports}\nendpoints: [{{addresses: [{addr}]}}]\n")
    };
    // .1 in a slice listing http only; .2 in two slices, one for http (8081), one for admin.
    m.apply(&format!(
        "{}{}{}",
        slice("two-http", "[{name: http, port: 8080}]", "10.244.1.1"),
        slice("two-b-http", "[{name: http, port: 8081}]", "10.244.1.2"),
        slice("two-b-admin", "[{name: admin, port: 9001}]", "10.244.1.2"),
    ));
    assert_eq!(
        backends_seen(&m, "y/a", "10.96.0.18", 80, "TCP"),
        [(a("10.244.1.1"), 8080), (a("10.244.1.2"), 8081)].into(),
        "http: both, each on its own slice's number"
    );
    assert_eq!(
        backends_seen(&m, "y/a", "10.96.0.18", 81, "TCP"),
        [(a("10.244.1.2"), 9001)].into(),
        "admin: only the address whose slice lists it (not .1 on the service's targetPort 9000)"
    );
}

#[test]
fn legacy_endpoints_object() {
    let m = Model::new();
    m.apply(&svc("old", "  clusterIP: 10.96.0.13\n  ports: [{port: 80, targetPort: 8080}]\n"));
    m.apply("apiVersion: v1\nkind: Endpoints\nmetadata: {name: old, namespace: x}\nsubsets:\n- addresses: [{ip: 10.244.1.5}]\n  notReadyAddresses: [{ip: 10.244.1.6}]\n  ports: [{port: 8080}]\n");
    assert_eq!(backends_seen(&m, "x/a", "10.96.0.13", 80, "TCP"), [(a("10.244.1.5"), 8080)].into());
}

#[test]
fn node_port_with_external_traffic_policy_cluster_and_local() {
    let m = Model::new();
    m.apply(&svc("np", "  type: NodePort\n  clusterIP: 10.96.0.14\n  selector: {pod: b}\n  ports: [{port: 80, targetPort: 80, nodePort: 30080}]\n"));
    let (v, out) = from_outside(&m, "203.0.113.5", podswitch_tests::model::NODE_IP, 30080, "TCP");
    assert_eq!(v, Verdict::Tx(m.pod("x/b").port), "the selector picks pods of the service's namespace only");
    assert_eq!(meta(&out).dport, 80);
    assert_eq!(meta(&out).src, a(podswitch_tests::model::NODE_IP), "Cluster: source NAT to the node");
    // Local: the client address is kept.
    m.apply(&svc("np", "  type: NodePort\n  clusterIP: 10.96.0.14\n  externalTrafficPolicy: Local\n  selector: {pod: b}\n  ports: [{port: 80, targetPort: 80, nodePort: 30080}]\n"));
    let (v, out) = from_outside(&m, "203.0.113.5", podswitch_tests::model::NODE_IP, 30080, "TCP");
    assert!(matches!(v, Verdict::Tx(_)), "{v:?}");
    assert_eq!(meta(&out).src, a("203.0.113.5"), "Local keeps the client IP");
    // Local with endpoints only on another node: dropped, as kube-proxy does.
    m.apply(&svc("np", "  type: NodePort\n  clusterIP: 10.96.0.14\n  externalTrafficPolicy: Local\n  ports: [{name: http, port: 80, nodePort: 30080}]\n"));
    m.apply("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: np-1, namespace: x, labels: {kubernetes.io/service-name: np}}\naddressType: IPv4\nports: [{name: http, port: 80}]\nendpoints: [{addresses: [10.244.2.7], nodeName: node-2}]\n");
    let (v, _) = from_outside(&m, "203.0.113.5", podswitch_tests::model::NODE_IP, 30080, "TCP");
    assert_eq!(v, Verdict::Drop(DropReason::ServiceNoLocalBackend));
    // ...while the ClusterIP still reaches the remote endpoint through the tunnel.
    let (v, _) = from_pod(&m, "y/a", "10.96.0.14", 80, "TCP", 9);
    assert_eq!(v, Verdict::Tx(m.uplink));
    // A node port outside the range is refused with the range in the message.
    let e = m.refuse(&svc("bad", "  type: NodePort\n  clusterIP: 10.96.0.15\n  ports: [{port: 80, nodePort: 8080}]\n"));
    assert!(e.contains("30000-32767") && e.contains("Service x/bad"), "{e}");
}

/// Issue 9 item 8: `externalTrafficPolicy: Local` governs external traffic only. A pod of a
/// node without a local endpoint reaching the service's node port, load-balancer IP or
/// external IP gets a remote endpoint and keeps its own address, as with kube-proxy.
#[test]
fn external_traffic_policy_local_does_not_apply_to_pods_of_the_cluster() {
    let m = Model::new();
    m.apply(&format!(
        "{}status:\n  loadBalancer:\n    ingress: [{{ip: 198.51.100.20}}]\n",
        svc("lbl", "  type: LoadBalancer\n  clusterIP: 10.96.0.17\n  externalIPs: [198.51.100.21]\n  externalTrafficPolicy: Local\n  ports: [{name: http, port: 80, nodePort: 30090}]\n")
    ));
    m.apply("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: lbl-1, namespace: x, labels: {kubernetes.io/service-name: lbl}}\naddressType: IPv4\nports: [{name: http, port: 8080}]\nendpoints: [{addresses: [10.244.2.7], nodeName: node-2}]\n");
    for (dst, port) in [(podswitch_tests::model::NODE_IP, 30090), ("198.51.100.20", 80), ("198.51.100.21", 80)] {
        let (v, out) = from_pod(&m, "y/a", dst, port, "TCP", 4242);
        assert_eq!(v, Verdict::Tx(m.uplink), "{dst}:{port} from a pod: to node-2");
        let inner = meta(&out[50..]);
        assert_eq!((inner.dst, inner.dport), (a("10.244.2.7"), 8080), "{dst}:{port}");
        assert_eq!((inner.src, inner.sport), (a("10.244.1.4"), 4242), "{dst}:{port}: the pod keeps its address");
        let (v, _) = from_outside(&m, "203.0.113.5", dst, port, "TCP");
        assert_eq!(v, Verdict::Drop(DropReason::ServiceNoLocalBackend), "{dst}:{port} from outside");
    }
}

#[test]
fn load_balancer_ingress_ips_and_source_ranges() {
    let m = Model::new();
    m.apply(&format!(
        "{}status:\n  loadBalancer:\n    ingress: [{{ip: 198.51.100.10}}]\n",
        svc("lb", "  type: LoadBalancer\n  clusterIP: 10.96.0.16\n  selector: {pod: c}\n  loadBalancerSourceRanges: [203.0.113.0/24]\n  ports: [{port: 443, targetPort: 81, nodePort: 30443}]\n")
    ));
    let (v, out) = from_outside(&m, "203.0.113.9", "198.51.100.10", 443, "TCP");
    assert!(matches!(v, Verdict::Tx(_)), "{v:?}");
    assert_eq!(meta(&out).dport, 81);
    let (v, _) = from_outside(&m, "192.0.2.9", "198.51.100.10", 443, "TCP");
    assert_eq!(v, Verdict::Drop(DropReason::LoadBalancerSourceDenied));
}

#[test]
fn client_ip_affinity_keeps_a_client_on_one_backend() {
    let m = Model::new();
    let three = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: sticky-1, namespace: x, labels: {kubernetes.io/service-name: sticky}}\naddressType: IPv4\nports: [{port: 80}]\nendpoints: [{addresses: [10.244.1.1]}, {addresses: [10.244.1.2]}, {addresses: [10.244.1.3]}]\n";
    m.apply(&svc("sticky", "  clusterIP: 10.96.0.17\n  ports: [{port: 80}]\n"));
    m.apply(three);
    assert_eq!(backends_seen(&m, "z/c", "10.96.0.17", 80, "TCP").len(), 3, "without affinity flows spread");
    m.apply(&svc("sticky", "  clusterIP: 10.96.0.17\n  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 30}}\n  ports: [{port: 80}]\n"));
    let p = m.pod("z/c").clone();
    let mut w = m.worker();
    let mut seen = BTreeSet::new();
    for i in 0..32 {
        let (v, out) = m.send(&mut w, m.frame_from(&p, ip("10.96.0.17"), 80, "TCP", 30000 + i), p.port);
        assert!(matches!(v, Verdict::Tx(_)));
        seen.insert(meta(&out).dst);
    }
    assert_eq!(seen.len(), 1, "one backend for one client: {seen:?}");
}

#[test]
fn internal_traffic_policy_local() {
    let m = Model::new();
    m.apply(&svc("itp", "  clusterIP: 10.96.0.18\n  internalTrafficPolicy: Local\n  ports: [{name: p, port: 80}]\n"));
    m.apply("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: itp-1, namespace: x, labels: {kubernetes.io/service-name: itp}}\naddressType: IPv4\nports: [{name: p, port: 80}]\nendpoints: [{addresses: [10.244.2.7], nodeName: node-2}, {addresses: [10.244.1.3], nodeName: node-1}]\n");
    assert_eq!(
        backends_seen(&m, "y/a", "10.96.0.18", 80, "TCP"),
        [(a("10.244.1.3"), 80)].into(),
        "the local endpoint only"
    );
}

#[test]
fn external_name_and_headless_services_get_no_nat() {
    let m = Model::new();
    let before = m.c.cell().load().services.port_count();
    m.apply("apiVersion: v1\nkind: Service\nmetadata: {name: ext, namespace: x}\nspec: {type: ExternalName, externalName: db.example.com}\n");
    m.apply(&svc("headless", "  clusterIP: None\n  selector: {pod: a}\n  ports: [{port: 80}]\n"));
    assert_eq!(m.c.cell().load().services.port_count(), before, "no service ports for either");
    let l = m.c.list("svc", "x", "ext").expect("listed");
    assert!(l.objects[0].json.contains("db.example.com"));
    // Headless: clients talk to the pods directly.
    let (v, _) = from_pod(&m, "y/a", "10.244.1.1", 80, "TCP", 1);
    assert_eq!(v, Verdict::Tx(m.pod("x/a").port));
}

#[test]
fn deleting_a_service_removes_its_frontend() {
    let m = Model::new();
    m.apply(&svc("gone", "  clusterIP: 10.96.0.19\n  selector: {pod: a}\n  ports: [{port: 80}]\n"));
    assert!(matches!(from_pod(&m, "y/a", "10.96.0.19", 80, "TCP", 1).0, Verdict::Tx(p) if p == m.pod("x/a").port));
    m.delete("service", "x", "gone");
    let (v, _) = from_pod(&m, "y/a", "10.96.0.19", 80, "TCP", 1);
    assert_eq!(
        v,
        Verdict::Drop(DropReason::ServiceNoFrontend),
        "no longer a service: dropped, not routed out by the default route"
    );
    assert!(m.c.list("svc", "x", "gone").is_err());
}

/// A canonical description of a service table: every frontend with its port's spec and the
/// backend Maglev picks for a spread of flow hashes.
fn describe(t: &switch_core::service::ServiceTable) -> Vec<String> {
    let mut out: Vec<String> = t
        .frontends()
        .map(|f| {
            let sp = t.port(f.target);
            let picks: Vec<String> = (0..64u64)
                .map(|h| match sp.select(f.kind, h.wrapping_mul(0x9e37_79b9_7f4a_7c15)) {
                    Ok(b) => format!("{}:{}", b.addr, b.port),
                    Err(r) => r.name().to_string(),
                })
                .collect();
            let mut spec = sp.spec.clone();
            spec.backends.sort_by_key(|b| (b.addr, b.port));
            // What several workers decide flow owners with (nothing when there is one).
            let steering: Vec<String> =
                spec.backends.iter().map(|b| format!("{:?}", t.backend_sticky(b.addr, b.port, spec.proto))).collect();
            format!(
                "{}:{}/{} {:?} -> {spec:?} {} sticky={} {steering:?} fe_addr={}",
                f.addr,
                f.port,
                f.proto,
                f.kind,
                picks.join(","),
                t.sticky(f.target),
                t.is_frontend_addr(f.addr)
            )
        })
        .collect();
    out.push(format!("steered={} index sizes={:?}", t.steered(), t.steering_sizes()));
    out.sort();
    out
}

/// Service-only changes rebuild just the touched services; after every step the live table
/// must equal a full rebuild of the same objects, and a refused step must leave it as it was.
#[test]
fn incremental_service_rebuilds_match_a_full_rebuild() {
    incremental_matches_full(Model::new(), 1);
}

/// The same with two workers: every snapshot, incremental or full, carries the data the flow
/// owners are decided with, equal to a full rebuild's.
#[test]
fn incremental_service_rebuilds_keep_the_steering_data_of_two_workers() {
    incremental_matches_full(Model::with_workers(2), 2);
}

fn incremental_matches_full(m: Model, workers: u16) {
    let check = |step: &str| {
        let mut cfg = m.c.config().expect("config");
        cfg.datapath.workers = workers;
        let full = control::build::build(&cfg, &std::env::temp_dir(), 0).expect("full build");
        let live = &m.c.cell().load().services;
        assert_eq!(live.steered(), workers > 1, "after {step}");
        assert_eq!(describe(live), describe(&full.tables.services), "after {step}");
    };
    let slice = |name: &str, svc: &str, ips: &[&str]| {
        let eps: Vec<String> = ips.iter().map(|i| format!("{{addresses: [{i}]}}")).collect();
        format!("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}, namespace: x, labels: {{kubernetes.io/service-name: {svc}}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints: [{}]\n", eps.join(", "))
    };
    m.apply(&svc(
        "one",
        "  clusterIP: 10.96.3.1\n  selector: {pod: a}\n  ports: [{name: http, port: 80, targetPort: serve-80-tcp}]\n",
    ));
    check("a selector service");
    m.apply(&svc("two", "  type: NodePort\n  clusterIP: 10.96.3.2\n  sessionAffinity: ClientIP\n  ports: [{name: http, port: 80, nodePort: 30002}]\n"));
    check("a service without endpoints");
    m.apply(&slice("two-a", "two", &["10.244.1.1", "10.244.1.2"]));
    check("its first slice");
    m.apply(&slice("two-b", "two", &["10.244.1.3", "10.244.2.9"]));
    check("a second slice");
    m.apply(&slice("two-a", "two", &["10.244.1.4"]));
    check("a slice changed");
    let gen = m.c.cell().generation();
    let e = m.refuse(&svc(
        "three",
        "  type: NodePort\n  clusterIP: 10.96.3.3\n  ports: [{name: http, port: 80, nodePort: 30002}]\n",
    ));
    assert!(e.contains("30002"), "{e}");
    assert_eq!(m.c.cell().generation(), gen, "a clashing node port is refused");
    check("a refused service");
    m.apply(&slice("moved", "one", &["10.244.1.5"]));
    check("slices taking over from a selector");
    m.delete("endpointslice", "x", "moved");
    check("back to the selector");
    m.delete("service", "x", "two");
    check("a service deleted, its slices left");
    m.apply(&svc("two", "  clusterIP: 10.96.3.2\n  ports: [{name: http, port: 80}]\n"));
    check("the service back, finding its slices");
    // A pod change is not service-only: a full rebuild, after which increments go on.
    m.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: {ns: x, extra: y}}\n");
    m.apply(&slice("two-b", "two", &["10.244.1.6"]));
    check("an increment after a full rebuild");
}

/// Issue 9 item 14: cluster IPs lie in the service CIDRs (a cluster IP equal to a pod address
/// would take that pod's traffic), and a packet to an address or port of the service ranges
/// that no Service serves is dropped with a reason, never routed out.
#[test]
fn cluster_ips_come_from_the_service_cidrs_and_unknown_ones_go_nowhere() {
    let m = Model::new();
    let e = m.refuse(&svc("hijack", "  clusterIP: 10.244.1.1\n  ports: [{port: 80}]\n"));
    assert!(
        e.contains("Service x/hijack")
            && e.contains("10.244.1.1: provided IP is not in the valid range; the service CIDRs are [10.96.0.0/12, fd00:96::/108]"),
        "{e}"
    );
    let e = m.refuse(&svc(
        "v6",
        "  clusterIPs: [10.96.0.40, \"fd00:97::1\"]\n  ipFamilies: [IPv4, IPv6]\n  ports: [{port: 80}]\n",
    ));
    assert!(e.contains("fd00:97::1: provided IP is not in the valid range"), "{e}");
    // x/a still gets its own traffic.
    let (v, _) = from_pod(&m, "y/a", "10.244.1.1", 80, "TCP", 1);
    assert_eq!(v, Verdict::Tx(m.pod("x/a").port));
    m.apply(&svc("web", "  clusterIP: 10.96.0.41\n  selector: {pod: a}\n  ports: [{port: 80}]\n"));
    for (dst, port, proto) in
        [("10.96.7.7", 80, "TCP"), ("10.96.0.41", 81, "TCP"), ("10.96.0.41", 80, "UDP"), ("fd00:96::77", 80, "TCP")]
    {
        let p = m.pod("y/a").clone();
        let src = if dst.contains(':') { ip("fd00:244:1::4") } else { p.ip };
        let f = IpFrame::new(
            p.mac,
            podswitch_tests::model::ROUTER_MAC,
            src,
            ip(dst),
            podswitch_tests::model::l4(proto, 4000, port),
        )
        .build();
        let mut w = m.worker();
        let (v, _) = m.send(&mut w, f, p.port);
        assert_eq!(v, Verdict::Drop(DropReason::ServiceNoFrontend), "{dst}:{port}/{proto}");
    }
    let (v, _) = from_pod(&m, "y/a", "10.96.0.41", 80, "TCP", 1);
    assert_eq!(v, Verdict::Tx(m.pod("x/a").port), "the service itself works");
    // Nor may an external or load-balancer IP take a pod's or a service's address.
    let e = m.refuse(&svc("ext", "  clusterIP: 10.96.0.42\n  externalIPs: [10.244.1.2]\n  ports: [{port: 80}]\n"));
    assert!(e.contains("10.244.1.2 is inside the cluster range 10.244.1.0/24"), "{e}");
    let e = m.refuse(&format!(
        "{}status: {{loadBalancer: {{ingress: [{{ip: 10.96.0.41}}]}}}}\n",
        svc("lb", "  type: LoadBalancer\n  clusterIP: 10.96.0.43\n  ports: [{port: 80, nodePort: 30100}]\n")
    ));
    assert!(e.contains("10.96.0.41 is inside the cluster range 10.96.0.0/12"), "{e}");
}

/// Issue 10: identities, service ports and policy rules keep their ids while they live,
/// whatever is applied or deleted around them (ids from sort position renamed the flows of
/// `conntrack list` after an unrelated apply).
#[test]
fn ids_stay_when_unrelated_objects_come_and_go() {
    let m = Model::new();
    m.apply(&svc("web", "  clusterIP: 10.96.0.10\n  selector: {pod: a}\n  ports: [{port: 80}]\n"));
    m.apply("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, namespace: x}\nspec: {podSelector: {}, ingress: [{}], egress: [{}]}\n");
    let snapshot = |m: &Model| {
        let t = m.c.cell().load_full();
        let svc = t.services.lookup(Addr::from(ip("10.96.0.10")), 80, 6).expect("frontend").target;
        let ident = t.endpoints.identity_of(Addr::from(ip("10.244.1.1")));
        let rules: Vec<(u32, String)> = (0..64u32)
            .map(|i| (i, t.policy.rule_name(switch_core::policy::RuleId(i)).to_string()))
            .filter(|(_, n)| n.starts_with("x/web "))
            .collect();
        (svc, ident, rules)
    };
    let before = snapshot(&m);
    assert_eq!(before.2.len(), 2, "{:?}", before.2);
    // Objects that sort before them in every order the builder used: a service, a policy and
    // pods with new labels in a namespace named first.
    m.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: aaa, namespace: a}\nspec: {clusterIP: 10.96.0.5, ports: [{port: 80, name: a}]}\n");
    m.apply("apiVersion: v1\nkind: Service\nmetadata: {name: aaa, namespace: a}\nspec: {clusterIP: 10.96.0.5, ports: [{port: 80, name: a}, {port: 81, name: b}]}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: aaa, namespace: a}\nspec: {podSelector: {}, ingress: [{}, {}], egress: [{}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p0, namespace: a, labels: {aaa: first}}\nspec: {nodeName: node-2}\nstatus: {podIP: 10.244.2.50}\n");
    assert_eq!(snapshot(&m), before, "nothing of x/web was renumbered");
    m.apply("apiVersion: v1\nkind: Service\nmetadata: {name: web2, namespace: x}\nspec: {clusterIP: 10.96.0.11, ports: [{port: 80}]}\n");
    let k = |kind: &str, ns: &str, name: &str| control::controller::ObjectRef {
        kind: kind.into(),
        namespace: ns.into(),
        name: name.into(),
    };
    m.c.delete(&[k("Service", "a", "aaa"), k("NetworkPolicy", "a", "aaa"), k("Pod", "a", "p0")], &[], false)
        .expect("delete");
    assert_eq!(snapshot(&m), before, "deleting them renumbers nothing either");
}

/// Issue 10: a change of pods, attachments, namespaces or policies rebuilds everything but
/// the service table and recompiles only the services whose selectors or EndpointSlices name
/// a changed pod; after every step the live snapshot must equal a full rebuild of the same
/// objects (services, endpoints with their policy, and the rule count).
#[test]
fn incremental_pod_and_policy_rebuilds_match_a_full_rebuild() {
    for workers in [1, 2] {
        pods_incremental_matches_full(Model::with_workers(workers), workers);
    }
}

fn pods_incremental_matches_full(m: Model, workers: u16) {
    // Every endpoint with its port, and what its classifiers admit from and to every other
    // endpoint on a few ports (by rule name: ids and identities are the tables' own).
    let endpoints = |t: &switch_core::snapshot::Tables| -> Vec<String> {
        let mut all: Vec<Addr> = Vec::new();
        for n in 1..=60u32 {
            for a in [format!("10.244.1.{n}"), format!("10.244.2.{n}")] {
                let a = Addr::from(ip(&a));
                if t.endpoints.by_ip(a).is_some() {
                    all.push(a);
                }
            }
        }
        let mut out = Vec::new();
        for a in &all {
            let e = t.endpoints.get(t.endpoints.by_ip(*a).expect("endpoint"));
            let verdicts = |c: Option<switch_core::policy::ClassifierId>| -> String {
                let Some(c) = c else { return "none".into() };
                let cl = t.policy.get(c);
                let mut v = Vec::new();
                for peer in &all {
                    for port in [80u16, 5432, 8080, 9] {
                        let r = cl.lookup(*peer, t.endpoints.identity_of(*peer), 6, Some(port));
                        v.push(r.map(|r| t.policy.rule_name(r).to_string()).unwrap_or_else(|| "-".into()));
                    }
                }
                v.join(",")
            };
            out.push(format!(
                "{a} {}/{} port={:?} in=[{}] out=[{}]",
                e.namespace,
                e.name,
                e.port,
                verdicts(e.ingress),
                verdicts(e.egress)
            ));
        }
        out
    };
    let check = |step: &str| {
        let mut cfg = m.c.config().expect("config");
        cfg.datapath.workers = workers;
        let full = control::build::build(&cfg, &std::env::temp_dir(), 0).expect("full build");
        let live = m.c.cell().load_full();
        assert_eq!(describe(&live.services), describe(&full.tables.services), "services after {step}");
        assert_eq!(endpoints(&live), endpoints(&full.tables), "endpoints after {step}");
        assert_eq!(live.policy.rule_count(), full.tables.policy.rule_count(), "rules after {step}");
    };
    m.apply(&svc(
        "sel",
        "  clusterIP: 10.96.4.1\n  selector: {app: web}\n  ports: [{name: http, port: 80, targetPort: web}]\n",
    ));
    m.apply(&svc("other", "  clusterIP: 10.96.4.2\n  selector: {app: db}\n  ports: [{port: 5432}]\n"));
    m.apply(&svc(
        "numbered",
        "  clusterIP: 10.96.4.3\n  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080}]\n",
    ));
    m.apply("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: named, namespace: x, labels: {kubernetes.io/service-name: other}}\naddressType: IPv4\nports: [{name: '', port: 5432}]\nendpoints: [{addresses: [10.244.2.30], targetRef: {kind: Pod, name: r30, namespace: x}}]\n");
    check("services");
    let remote = |name: &str, ip: &str, labels: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: x, labels: {labels}}}\nspec: {{nodeName: node-2, containers: [{{name: c, image: i, ports: [{{name: web, containerPort: 8080}}]}}]}}\nstatus: {{podIP: {ip}}}\n")
    };
    let scope = |yaml: &str| m.c.apply(&[podswitch_tests::model::doc(yaml)], false).expect("apply").scope;
    assert_eq!(scope(&remote("r1", "10.244.2.21", "{app: web}")), "pods", "a pod change does not rebuild services");
    check("a remote pod the selector picks");
    m.apply(&remote("r2", "10.244.2.22", "{app: web, tier: x}"));
    check("a second one, a new identity");
    m.apply(&remote("r1", "10.244.2.21", "{app: db}"));
    check("r1 relabelled out of one selector into another");
    m.apply(&remote("r30", "10.244.2.30", "{app: none}"));
    check("a pod an EndpointSlice names");
    let np = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, namespace: x}\nspec: {podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: web}]}]}\n";
    assert_eq!(scope(np), "pods");
    check("a policy naming the pods");
    // A pod attached by the CNI plugin, bound to a Pod object applied later.
    let add = control::attach::AddRequest {
        cni: control::attach::CniRef { container_id: "c1".into(), ifname: "eth0".into() },
        netns: "/run/netns/c1".into(),
        host_interface: "psw1".into(),
        mac: "02:00:00:00:aa:01".into(),
        pod_namespace: "x".into(),
        pod_name: "att".into(),
        annotations: [("podswitch.io/labels".to_string(), "app=web".to_string())].into(),
    };
    m.apply("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: from-db, namespace: y}\nspec: {podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: x}}, podSelector: {matchLabels: {app: db}}}]}], egress: [{ports: [{port: web}]}]}\n");
    check("a policy in another namespace with a namespace selector");
    m.apply(&remote("r2", "10.244.2.22", "{app: db}"));
    check("a remote pod relabelled into that policy's peers");
    m.c.cni_add(add).expect("attach");
    check("a pod attached");
    m.apply("apiVersion: v1\nkind: Pod\nmetadata: {name: att, namespace: x, labels: {app: db}}\nspec: {containers: [{name: c, image: i}]}\n");
    check("its Pod object relabelling it");
    assert_eq!(scope("apiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: {ns: x, extra: z}}\n"), "pods");
    check("a namespace relabelled");
    m.delete("pod", "x", "r2");
    check("a pod deleted");
    m.c.cni_del(&control::attach::CniRef { container_id: "c1".into(), ifname: "eth0".into() }).expect("detach");
    check("the attached pod detached");
    m.delete("networkpolicy", "x", "web");
    check("the policy deleted");
    // A Pod kept without an address (not running yet) that an EndpointSlice names: the slice
    // keeps no pod name for it, in the pods path and in a full rebuild alike.
    m.apply("apiVersion: v1\nkind: Pod\nmetadata: {name: pend, namespace: x, labels: {app: p}}\nspec: {containers: [{name: c, image: i}]}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: pend, namespace: x, labels: {kubernetes.io/service-name: other}}\naddressType: IPv4\nports: [{name: '', port: 5432}]\nendpoints: [{addresses: [10.244.2.40], targetRef: {kind: Pod, name: pend, namespace: x}}]\n");
    check("a slice naming a pod kept without an address");
    let route = "[[routes]]\nprefix = \"10.99.0.0/16\"\nvia = \"blackhole\"\n";
    let full = m.c.apply(
        &[control::controller::Manifest { format: "toml".into(), source: "r".into(), content: route.into() }],
        false,
    );
    assert_eq!(full.expect("a full rebuild takes what the pods path took").scope, "full");
    check("a full rebuild after it");
    let gen = m.c.cell().generation();
    m.refuse(&remote("dup", "10.244.2.21", "{app: web}"));
    assert_eq!(m.c.cell().generation(), gen, "a pod with another's address is refused");
    check("a refused pod");
}
