//! Builder tests: Kubernetes semantics of services and policies as compiled into tables.

use super::build_text;
use std::path::Path;
use switch_core::addr::Addr;
use switch_core::endpoint::Identity;
use switch_core::service::{BackendState, FrontendKind};
use switch_core::wire::proto;

const NODE: &str = r#"
[node]
name = "n1"
ipv4 = "192.168.0.1"
ipv6 = "fd00::1"
pod_cidrs = ["10.0.1.0/24"]
router_mac = "02:00:00:00:00:01"
uplink_mac = "02:00:00:00:00:02"

[[ports]]
name = "p1"
kind = "pod"
[[ports]]
name = "p2"
kind = "pod"
[[ports]]
name = "up"
kind = "uplink"

[[nodes]]
name = "n2"
ip = "192.168.0.2"
mac = "02:00:00:00:00:03"
pod_cidrs = ["10.0.2.0/24"]

[[namespaces]]
name = "prod"
labels = { env = "prod" }

[[pods]]
name = "a"
namespace = "prod"
port = "p1"
mac = "02:00:00:00:01:01"
ips = ["10.0.1.2", "fd00:1::2"]
labels = { app = "web" }
container_ports = [{ name = "http", port = 8080 }]

[[pods]]
name = "b"
namespace = "prod"
port = "p2"
mac = "02:00:00:00:01:02"
ips = ["10.0.1.3"]
labels = { app = "web" }
container_ports = [{ name = "http", port = 9090 }]

[[pods]]
name = "r"
namespace = "dev"
node = "n2"
ips = ["10.0.2.9"]
labels = { app = "tool" }
"#;

fn build(extra: &str) -> Result<super::Built, crate::error::ConfigError> {
    build_text(&format!("{NODE}{extra}"), Path::new("t.toml"), Path::new("."), 1)
}

fn a(s: &str) -> Addr {
    Addr::from(s.parse::<std::net::IpAddr>().unwrap())
}

#[test]
fn named_target_ports_resolve_per_endpoint_and_dual_stack_splits_by_family() {
    let b = build(
        r#"
[[services]]
name = "web"
namespace = "prod"
cluster_ips = ["10.96.0.1", "fd00:96::1"]
ports = [{ name = "http", port = 80, target_port = "http" }]
endpoints = [{ pod = "a" }, { pod = "b", ready = false, serving = true, terminating = true }]
"#,
    )
    .unwrap();
    let s = &b.tables.services;
    let v4 = s.port(s.lookup(a("10.96.0.1"), 80, proto::TCP).unwrap().target);
    let got: Vec<_> = v4.backends().iter().map(|x| (x.addr, x.port, x.state)).collect();
    assert_eq!(got, vec![(a("10.0.1.2"), 8080, BackendState::Ready), (a("10.0.1.3"), 9090, BackendState::Terminating)]);
    let v6 = s.port(s.lookup(a("fd00:96::1"), 80, proto::TCP).unwrap().target);
    assert_eq!(v6.backends().len(), 1, "b has no IPv6 address");
    assert_eq!(v6.backends()[0].addr, a("fd00:1::2"));
    assert!(s.lookup(a("10.96.0.1"), 80, proto::UDP).is_none());
}

#[test]
fn nodeport_and_loadbalancer_frontends() {
    let b = build(
        r#"
[[services]]
name = "lb"
namespace = "prod"
type = "LoadBalancer"
cluster_ips = ["10.96.0.2"]
load_balancer_ips = ["203.0.113.10"]
load_balancer_source_ranges = ["198.51.100.0/24"]
external_traffic_policy = "Local"
ports = [{ port = 443, target_port = 8443, node_port = 31443 }]
endpoints = [{ pod = "a" }, { ip = "10.0.2.9", node = "n2" }]
"#,
    )
    .unwrap();
    let s = &b.tables.services;
    let kinds: Vec<_> = [
        s.lookup(a("10.96.0.2"), 443, proto::TCP),
        s.lookup(a("192.168.0.1"), 31443, proto::TCP),
        s.lookup(a("fd00::1"), 31443, proto::TCP),
        s.lookup(a("203.0.113.10"), 443, proto::TCP),
    ]
    .iter()
    .map(|f| f.map(|f| f.kind))
    .collect();
    assert_eq!(
        kinds,
        vec![Some(FrontendKind::ClusterIp), Some(FrontendKind::NodePort), None, Some(FrontendKind::LoadBalancer)],
        "no IPv4-only service port on the IPv6 node address"
    );
    let sp = s.port(s.lookup(a("203.0.113.10"), 443, proto::TCP).unwrap().target);
    assert!(sp.spec.external_local);
    assert_eq!(sp.spec.source_ranges.len(), 1);
    let locals: Vec<_> = sp.backends().iter().map(|x| x.local).collect();
    assert_eq!(locals, vec![true, false]);
    for h in 0..100 {
        assert_eq!(
            sp.select(FrontendKind::LoadBalancer, h).unwrap().addr,
            a("10.0.1.2"),
            "Local: only the local endpoint"
        );
    }
}

#[test]
fn headless_and_externalname_make_no_frontends() {
    let b = build(
        r#"
[[services]]
name = "h"
namespace = "prod"
cluster_ips = ["None"]
ports = [{ port = 80 }]
endpoints = [{ pod = "a" }]

[[services]]
name = "ext"
namespace = "prod"
type = "ExternalName"
external_name = "db.example.org"
"#,
    )
    .unwrap();
    assert_eq!(b.tables.services.frontend_count(), 0);
    assert_eq!(b.external_names, vec![("prod/ext".to_string(), "db.example.org".to_string())]);
}

#[test]
fn identities_are_shared_by_equal_labels() {
    let b = build("").unwrap();
    let t = &b.tables.endpoints;
    let ida = t.identity_of(a("10.0.1.2"));
    assert_eq!(ida, t.identity_of(a("10.0.1.3")), "same namespace and labels, same identity");
    assert_ne!(ida, t.identity_of(a("10.0.2.9")));
    assert!(ida.0 >= Identity::FIRST_POD);
    assert_eq!(t.identity_of(a("192.168.0.2")), Identity::REMOTE_NODE);
}

#[test]
fn policy_namespace_selector_and_named_ports() {
    let b = build(
        r#"
[[policies]]
name = "from-dev-tools"
namespace = "prod"
pod_selector = { match_labels = { app = "web" } }

[[policies.ingress]]
from = [{ namespace_selector = { match_labels = { "kubernetes.io/metadata.name" = "dev" } }, pod_selector = { match_labels = { app = "tool" } } }]
ports = [{ port = "http" }]
"#,
    )
    .unwrap();
    let t = &b.tables;
    let tool = t.endpoints.identity_of(a("10.0.2.9"));
    let ea = t.endpoints.get(t.endpoints.by_ip(a("10.0.1.2")).unwrap());
    let eb = t.endpoints.get(t.endpoints.by_ip(a("10.0.1.3")).unwrap());
    let (ca, cb) = (t.policy.get(ea.ingress.unwrap()), t.policy.get(eb.ingress.unwrap()));
    assert!(ea.egress.is_none(), "Egress not in the defaulted policy types");
    assert!(ca.lookup(a("10.0.2.9"), tool, proto::TCP, Some(8080)).is_some());
    assert!(ca.lookup(a("10.0.2.9"), tool, proto::TCP, Some(9090)).is_none());
    assert!(cb.lookup(a("10.0.2.9"), tool, proto::TCP, Some(9090)).is_some(), "b's http is 9090");
    assert!(ca.lookup(a("10.0.1.3"), ea.identity, proto::TCP, Some(8080)).is_none());
}

#[test]
fn a_peer_that_selects_nobody_admits_nobody() {
    let b = build(
        r#"
[[policies]]
name = "nobody"
namespace = "prod"
[[policies.ingress]]
from = [{ pod_selector = { match_labels = { app = "ghost" } } }]
"#,
    )
    .unwrap();
    let t = &b.tables;
    let ea = t.endpoints.get(t.endpoints.by_ip(a("10.0.1.2")).unwrap());
    let c = t.policy.get(ea.ingress.unwrap());
    assert!(c.lookup(a("10.0.2.9"), t.endpoints.identity_of(a("10.0.2.9")), proto::TCP, Some(80)).is_none());
    assert!(c.lookup(a("1.2.3.4"), Identity::WORLD, proto::UDP, Some(53)).is_none());
}

#[test]
fn errors_name_file_line_and_field() {
    let e = build("\n[[services]]\nname = \"s\"\ncluster_ips = [\"10.96.0.300\"]\n").unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("t.toml:"), "{msg}");
    assert_eq!(e.field(), Some("services[0].cluster_ips[0]"));
    assert!(msg.contains("not an IPv4 or IPv6 address"), "{msg}");
}

#[test]
fn remote_node_addresses_route_through_their_tunnels() {
    use switch_core::route::{NodeId, RouteTarget};
    let b = build("").unwrap();
    // Replies to a connection n2 source-NATed to its own address go back to n2.
    assert_eq!(b.tables.routes.lookup(a("192.168.0.2")), Some((32, RouteTarget::Tunnel(NodeId(0)))));
    // A route the config gives for that address wins.
    let b = build("\n[[routes]]\nprefix = \"192.168.0.2/32\"\nvia = \"blackhole\"\n").unwrap();
    assert_eq!(b.tables.routes.lookup(a("192.168.0.2")), Some((32, RouteTarget::Blackhole)));
}

#[test]
fn in_cluster_mode_a_pod_may_name_a_node_not_registered() {
    let pod = "\n[[pods]]\nname = \"g\"\nnode = \"gone\"\nips = [\"10.0.9.9\"]\n";
    let e = build(pod).expect_err("an unknown node is an error in a node's own config");
    assert!(e.to_string().contains("no node named 'gone'"), "{e}");
    // In cluster mode the Pod names the node it was scheduled on, registered or not.
    let b = build(&format!("{pod}\n[cluster]\n")).expect("builds in cluster mode");
    assert!(b.tables.routes.lookup(a("10.0.9.9")).is_none());
}
