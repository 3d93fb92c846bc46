//! The API server's allocators on the node's own store: cluster IPs per `ipFamilyPolicy`,
//! node ports, health check node ports and LoadBalancer addresses from pools, written into
//! the stored Service, kept across re-applies, released on delete; and the seed's manifests
//! applied unchanged and forwarding.

use podswitch_tests::model::{Model, UPLINK_MAC};
use serde_json::Value;
use std::net::IpAddr;
use switch_core::pipeline::Verdict;
use switch_core::wire::build::IpFrame;
use switch_core::wire::MacAddr;

/// The model's node with the docs' service range (the seed's LoadBalancer asks for
/// 10.0.171.239) and a LoadBalancer pool.
fn node(extra: &str) -> Model {
    Model::with_toml(&format!(
        "[datapath]\nservice_cidrs = [\"10.0.0.0/16\", \"fd00:96::/108\"]\nload_balancer_pools = [\"192.0.2.0/28\", \"2001:db8:5::/124\"]\n{extra}"
    ))
}

fn seed(name: &str) -> String {
    let p = format!("{}/../configs/k8s/seed/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// The stored Kubernetes form of Service `ns/name`.
fn stored(m: &Model, ns: &str, name: &str) -> Value {
    let l = m.c.list("svc", ns, name).expect("listed");
    let k = l.objects[0].kubernetes.as_deref().expect("a Kubernetes form");
    serde_json::from_str(k).expect("json")
}

fn cluster_ips(v: &Value) -> Vec<IpAddr> {
    v["spec"]["clusterIPs"]
        .as_array()
        .expect("clusterIPs")
        .iter()
        .map(|s| s.as_str().unwrap().parse().unwrap())
        .collect()
}

fn node_ports(v: &Value) -> Vec<u16> {
    v["spec"]["ports"].as_array().unwrap().iter().filter_map(|p| p["nodePort"].as_u64()).map(|n| n as u16).collect()
}

fn lb_ips(v: &Value) -> Vec<IpAddr> {
    v["status"]["loadBalancer"]["ingress"]
        .as_array()
        .map(|a| a.iter().map(|i| i["ip"].as_str().unwrap().parse().unwrap()).collect())
        .unwrap_or_default()
}

fn svc(name: &str, spec: &str) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: x}}\nspec:\n{spec}")
}

fn in_range(ip: IpAddr, cidr: &str) -> bool {
    let (net, len) = cidr.split_once('/').unwrap();
    let len: u32 = len.parse().unwrap();
    match (ip, net.parse::<IpAddr>().unwrap()) {
        (IpAddr::V4(a), IpAddr::V4(n)) => (u32::from(a) ^ u32::from(n)).checked_shr(32 - len).unwrap_or(0) == 0,
        (IpAddr::V6(a), IpAddr::V6(n)) => (u128::from(a) ^ u128::from(n)).checked_shr(128 - len).unwrap_or(0) == 0,
        _ => false,
    }
}

#[test]
fn cluster_ips_follow_ip_family_policy_and_survive_reapply() {
    let m = node("");
    m.apply(&svc("single", "  selector: {pod: a}\n  ports: [{port: 80}]\n"));
    let v = stored(&m, "x", "single");
    let ips = cluster_ips(&v);
    assert_eq!(ips.len(), 1);
    assert!(in_range(ips[0], "10.0.0.0/16"), "{ips:?}");
    assert_eq!(v["spec"]["clusterIP"].as_str().unwrap(), ips[0].to_string());
    assert_eq!(v["spec"]["ipFamilies"], serde_json::json!(["IPv4"]));
    assert_eq!(v["spec"]["ipFamilyPolicy"], "SingleStack");
    // The same manifest again keeps the address and changes nothing.
    let o = m
        .c
        .apply(&[podswitch_tests::model::doc(&svc("single", "  selector: {pod: a}\n  ports: [{port: 80}]\n"))], false)
        .unwrap();
    assert_eq!(o.changes[0].1.name(), "unchanged", "{:?}", o.changes);
    assert_eq!(cluster_ips(&stored(&m, "x", "single")), ips);

    m.apply(&svc("dual", "  ipFamilyPolicy: PreferDualStack\n  selector: {pod: a}\n  ports: [{port: 80}]\n"));
    let d = cluster_ips(&stored(&m, "x", "dual"));
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(d[0].is_ipv4() && in_range(d[1], "fd00:96::/108"), "{d:?}");
    assert!(!d.contains(&ips[0]), "two Services never share a cluster IP");

    m.apply(&svc("six", "  ipFamilies: [IPv6]\n  selector: {pod: a}\n  ports: [{port: 80}]\n"));
    let six = cluster_ips(&stored(&m, "x", "six"));
    assert!(six.len() == 1 && six[0].is_ipv6(), "{six:?}");

    // The allocated address forwards to the selected pod.
    let (v, _) = {
        let p = m.pod("y/b").clone();
        let mut w = m.worker();
        m.send(&mut w, m.frame_from(&p, ips[0], 80, "TCP", 40000), p.port)
    };
    assert!(matches!(v, Verdict::Tx(_)), "{v:?}");

    // Given addresses: outside the range, or another Service's, are refused by field.
    let e = m.refuse(&svc("out", "  clusterIP: 10.96.0.10\n  ports: [{port: 80}]\n"));
    assert!(e.contains("spec.clusterIPs[0]: 10.96.0.10: provided IP is not in the valid range"), "{e}");
    let e = m.refuse(&svc("dup", &format!("  clusterIP: {}\n  ports: [{{port: 80}}]\n", ips[0])));
    assert!(e.contains("provided IP is already allocated (to Service x/single)"), "{e}");
    // Deleting frees it for anyone who asks.
    m.delete("svc", "x", "single");
    m.apply(&svc("dup", &format!("  clusterIP: {}\n  ports: [{{port: 80}}]\n", ips[0])));
    assert_eq!(cluster_ips(&stored(&m, "x", "dup")), ips);
}

#[test]
fn dual_stack_required_on_a_single_stack_cluster_is_refused() {
    let m = Model::with_toml("[datapath]\nservice_cidrs = [\"10.96.0.0/12\"]\n");
    let e = m.refuse(&svc("d", "  ipFamilyPolicy: RequireDualStack\n  ports: [{port: 80}]\n"));
    assert!(e.contains("spec.ipFamilyPolicy: RequireDualStack needs service CIDRs of both families"), "{e}");
    let e = m.refuse(&svc("d", "  ipFamilies: [IPv6]\n  ports: [{port: 80}]\n"));
    assert!(e.contains("spec.ipFamilies: IPv6 is not configured"), "{e}");
    // PreferDualStack settles for the one family there is.
    m.apply(&svc("p", "  ipFamilyPolicy: PreferDualStack\n  ports: [{port: 80}]\n"));
    let l = m.c.list("svc", "x", "p").unwrap();
    let v: Value = serde_json::from_str(l.objects[0].kubernetes.as_deref().unwrap()).unwrap();
    assert_eq!(cluster_ips(&v).len(), 1);
}

#[test]
fn node_ports_are_unique_kept_and_released() {
    let m = node("nodeport_range = \"30000-30004\"\n");
    m.apply(&svc(
        "a",
        "  type: NodePort\n  selector: {pod: a}\n  ports: [{name: h, port: 80}, {name: d, port: 53, protocol: UDP}]\n",
    ));
    let a = node_ports(&stored(&m, "x", "a"));
    assert_eq!(a.len(), 2);
    assert!(a.iter().all(|p| (30000..=30004).contains(p)) && a[0] != a[1], "{a:?}");
    // Re-applied without nodePort: the same ports (the API server keeps them on update).
    m.apply(&svc(
        "a",
        "  type: NodePort\n  selector: {pod: a}\n  ports: [{name: h, port: 80}, {name: d, port: 53, protocol: UDP}]\n",
    ));
    assert_eq!(node_ports(&stored(&m, "x", "a")), a);
    let e = m.refuse(&svc("b", &format!("  type: NodePort\n  ports: [{{port: 80, nodePort: {}}}]\n", a[0])));
    assert!(e.contains(&format!("spec.ports[0].nodePort: {} is already allocated (to Service x/a)", a[0])), "{e}");
    let e = m.refuse(&svc("b", "  type: NodePort\n  ports: [{port: 80, nodePort: 31000}]\n"));
    assert!(e.contains("31000 is not in the node port range 30000-30004"), "{e}");
    let e = m.refuse(&svc("b", "  ports: [{port: 80, nodePort: 30001}]\n"));
    assert!(e.contains("may not be used when type is 'ClusterIP'"), "{e}");
    // Three more fit, the fourth does not; a refused request takes nothing.
    m.apply(&svc("c", "  type: NodePort\n  ports: [{name: a, port: 1}, {name: b, port: 2}, {name: c, port: 3}]\n"));
    let e = m.refuse(&svc("d", "  type: NodePort\n  ports: [{port: 80}]\n"));
    assert!(e.contains("no free node port in 30000-30004"), "{e}");
    // Going back to ClusterIP releases them.
    m.apply(&svc("a", "  selector: {pod: a}\n  ports: [{name: h, port: 80}, {name: d, port: 53, protocol: UDP}]\n"));
    assert!(node_ports(&stored(&m, "x", "a")).is_empty());
    m.apply(&svc("d", "  type: NodePort\n  ports: [{port: 80}]\n"));
}

#[test]
fn load_balancers_get_pool_addresses_node_ports_and_health_check_ports() {
    let m = node("");
    m.apply(&svc(
        "lb",
        "  type: LoadBalancer\n  ipFamilyPolicy: PreferDualStack\n  selector: {pod: a}\n  ports: [{port: 80}]\n",
    ));
    let v = stored(&m, "x", "lb");
    let lb = lb_ips(&v);
    assert_eq!(lb.len(), 2, "one per family: {v}");
    assert!(in_range(lb[0], "192.0.2.0/28") && in_range(lb[1], "2001:db8:5::/124"), "{lb:?}");
    assert_eq!(v["status"]["loadBalancer"]["ingress"][0]["ipMode"], "VIP");
    assert_eq!(node_ports(&v).len(), 1);
    assert!(v["spec"].get("healthCheckNodePort").is_none());

    // From outside, the address reaches the pod.
    let f = IpFrame::new(
        MacAddr([2, 0, 0, 0, 0x0f, 1]),
        UPLINK_MAC,
        "203.0.113.9".parse().unwrap(),
        lb[0],
        podswitch_tests::model::l4("TCP", 50000, 80),
    )
    .build();
    let mut w = m.worker();
    let (verdict, _) = m.send(&mut w, f, m.uplink);
    assert!(matches!(verdict, Verdict::Tx(_)), "{verdict:?}");

    m.apply(&svc("local", "  type: LoadBalancer\n  externalTrafficPolicy: Local\n  allocateLoadBalancerNodePorts: false\n  ports: [{port: 80}]\n"));
    let v = stored(&m, "x", "local");
    assert!(node_ports(&v).is_empty(), "allocateLoadBalancerNodePorts: false: {v}");
    let h = v["spec"]["healthCheckNodePort"].as_u64().expect("a health check node port") as u16;
    assert!((30000..=32767).contains(&h));
    assert!(!lb_ips(&v).contains(&lb[0]));

    // Asking for an address: in a pool and free, else refused.
    let e =
        m.refuse(&svc("ask", &format!("  type: LoadBalancer\n  loadBalancerIP: {}\n  ports: [{{port: 80}}]\n", lb[0])));
    assert!(e.contains("spec.loadBalancerIP") && e.contains("already allocated (to Service x/lb)"), "{e}");
    let e = m.refuse("apiVersion: v1\nkind: Service\nmetadata: {name: ask, namespace: x, annotations: {metallb.universe.tf/loadBalancerIPs: 198.51.100.1}}\nspec: {type: LoadBalancer, ports: [{port: 80}]}\n");
    assert!(e.contains("198.51.100.1 is not in a load balancer pool"), "{e}");
    // Another class's Service is left to its controller.
    m.apply(&svc("other", "  type: LoadBalancer\n  loadBalancerClass: example.com/lb\n  ports: [{port: 80}]\n"));
    assert!(lb_ips(&stored(&m, "x", "other")).is_empty());
    // The pool runs dry: the Service is accepted and stays pending, with a warning.
    let mut pending = 0;
    for i in 0..20 {
        let o =
            m.c.apply(
                &[podswitch_tests::model::doc(&svc(
                    &format!("many{i}"),
                    "  type: LoadBalancer\n  ports: [{port: 80}]\n",
                ))],
                false,
            )
            .unwrap();
        if o.warnings.iter().any(|w| w.contains("stays pending")) {
            pending += 1;
            assert!(lb_ips(&stored(&m, "x", &format!("many{i}"))).is_empty());
        }
    }
    // A /28 has 14 hosts; two are taken.
    assert_eq!(pending, 20 - 12);
    // Deleting one frees its address for the next.
    m.delete("svc", "x", "lb");
    m.apply(&svc("again", "  type: LoadBalancer\n  ports: [{port: 80}]\n"));
    assert_eq!(lb_ips(&stored(&m, "x", "again")), vec![lb[0]]);
}

#[test]
fn the_seed_manifests_apply_unchanged() {
    let m = node("");
    let apply = |f: &str| {
        let o = m.c.apply(&[podswitch_tests::model::doc(&seed(f))], false).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(!o.changes.is_empty(), "{f}");
    };
    // The ClusterIP, then the NodePort of the same name over it (an update: the cluster IP
    // is kept, the node port 30007 added).
    apply("service-clusterip.yaml");
    let ip = cluster_ips(&stored(&m, "default", "my-service"));
    apply("service-nodeport.yaml");
    let v = stored(&m, "default", "my-service");
    assert_eq!(cluster_ips(&v), ip);
    assert_eq!(node_ports(&v), vec![30007]);
    // The LoadBalancer asks for another cluster IP: over the existing Service the API server
    // refuses it (the cluster IP is immutable), so it is applied after a delete, as with
    // kubectl.
    let e = m.refuse(&seed("service-loadbalancer.yaml"));
    assert!(e.contains("field is immutable"), "{e}");
    m.delete("svc", "default", "my-service");
    apply("service-loadbalancer.yaml");
    apply("service-externalname.yaml");
    apply("networkpolicy.yaml");
    // The LoadBalancer with its requested cluster IP, a node port, and a pool address
    // instead of the manifest's status.
    let v = stored(&m, "default", "my-service");
    assert_eq!(v["spec"]["type"], "LoadBalancer");
    assert_eq!(cluster_ips(&v), vec!["10.0.171.239".parse::<IpAddr>().unwrap()]);
    assert_eq!(node_ports(&v).len(), 1);
    assert!(in_range(lb_ips(&v)[0], "192.0.2.0/28"), "{v}");
    let e = stored(&m, "prod", "my-service");
    assert_eq!(e["spec"]["externalName"], "my.database.example.com");
    assert!(e["spec"].get("clusterIP").is_none());
    // Each applies on its own to a fresh node too.
    for f in ["service-clusterip.yaml", "service-nodeport.yaml", "service-loadbalancer.yaml"] {
        let m = node("");
        m.apply(&seed(f));
        let v = stored(&m, "default", "my-service");
        assert_eq!(cluster_ips(&v).len(), 1, "{f}: {v}");
    }
    // A Pod as `kubectl run web --image=nginx --dry-run=client -o yaml` writes it: kept until
    // a sandbox of that name is attached.
    let o = m.c.apply(&[podswitch_tests::model::doc(&seed("pod.yaml"))], false).expect("the kubectl run Pod applies");
    assert_eq!(o.changes.len(), 1, "{:?}", o.changes);
    assert_eq!(m.c.list("pods", "default", "web").unwrap().objects.len(), 1);
    // Without a pool, the LoadBalancer keeps the address its status gives (managed elsewhere).
    let m = Model::with_toml("[datapath]\nservice_cidrs = [\"10.0.0.0/16\"]\n");
    m.apply(&seed("service-loadbalancer.yaml"));
    assert_eq!(lb_ips(&stored(&m, "default", "my-service")), vec!["192.0.2.127".parse::<IpAddr>().unwrap()]);
}

#[test]
fn services_of_another_proxy_are_stored_but_not_programmed() {
    let m = node("");
    m.apply("apiVersion: v1\nkind: Service\nmetadata: {name: theirs, namespace: x, labels: {service.kubernetes.io/service-proxy-name: other}}\nspec: {clusterIP: 10.0.0.50, selector: {pod: a}, ports: [{port: 80}]}\n");
    assert_eq!(cluster_ips(&stored(&m, "x", "theirs")).len(), 1);
    let p = m.pod("y/b").clone();
    let mut w = m.worker();
    let (v, _) = m.send(&mut w, m.frame_from(&p, "10.0.0.50".parse().unwrap(), 80, "TCP", 40001), p.port);
    assert!(matches!(v, Verdict::Drop(switch_core::drop::DropReason::ServiceNoFrontend)), "{v:?}");
}

/// An ARP request for `ip` from an outside host, on the uplink: whether the node answers.
fn answers_arp(m: &Model, ip: std::net::Ipv4Addr) -> bool {
    let f = control::announce::arp_request(ip, "192.168.77.99".parse().unwrap(), MacAddr([2, 0, 0, 0, 0x0f, 9]));
    let mut w = m.worker();
    let (v, out) = m.send(&mut w, f, m.uplink);
    match v {
        Verdict::Tx(p) if p == m.uplink => {
            let a = switch_core::wire::arp::ArpPacket::new_checked(&out[14..]).unwrap();
            assert_eq!(a.sender_ip(), ip);
            assert_eq!(a.sender_mac(), UPLINK_MAC);
            true
        }
        _ => false,
    }
}

#[test]
fn a_single_node_announces_every_load_balancer_address() {
    let m = node("");
    m.apply(&svc("lb", "  type: LoadBalancer\n  ports: [{port: 80}]\n"));
    let ip = match lb_ips(&stored(&m, "x", "lb"))[0] {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => unreachable!(),
    };
    assert!(answers_arp(&m, ip), "the LoadBalancer address");
    assert!(!answers_arp(&m, "192.0.2.14".parse().unwrap()), "a pool address nobody has");
    m.delete("svc", "x", "lb");
    assert!(!answers_arp(&m, ip), "no longer after the Service is deleted");
}

#[test]
fn in_a_cluster_each_address_has_one_announcer_and_moves_when_it_leaves() {
    let m = node("[cluster]\netcd = [\"http://127.0.0.1:1\"]\n");
    for i in 0..12 {
        m.apply(&svc(&format!("lb{i}"), "  type: LoadBalancer\n  ports: [{port: 80}]\n"));
    }
    let ips: Vec<std::net::Ipv4Addr> = (0..12)
        .map(|i| match lb_ips(&stored(&m, "x", &format!("lb{i}")))[0] {
            IpAddr::V4(a) => a,
            IpAddr::V6(_) => unreachable!(),
        })
        .collect();
    let peer = |name: &str| control::config::RemoteNodeConfig {
        name: name.into(),
        ip: "192.168.77.30".into(),
        mac: "02:00:00:00:01:30".into(),
        vtep_mac: None,
        pod_cidrs: vec![],
        registered: true,
    };
    // Before the node map is known, nothing: a starting node must not take every address.
    assert!(ips.iter().all(|ip| !answers_arp(&m, *ip)));
    // Registered, alone in the cluster: every address.
    m.c.set_cluster_nodes(vec![peer("node-1")]).unwrap();
    assert!(ips.iter().all(|ip| answers_arp(&m, *ip)));
    // Known to the others but not (yet) to itself: none (every node computes the same set).
    m.c.set_cluster_nodes(vec![peer("node-2")]).unwrap();
    assert!(ips.iter().all(|ip| !answers_arp(&m, *ip)));
    // With two more nodes: a share of them, and the others are someone else's.
    m.c.set_cluster_nodes(vec![peer("node-1"), peer("node-2"), peer("node-3")]).unwrap();
    let mine: Vec<bool> = ips.iter().map(|ip| answers_arp(&m, *ip)).collect();
    let n = mine.iter().filter(|b| **b).count();
    assert!(n > 0 && n < ips.len(), "a share of 12 addresses: {n}");
    // node-3 leaves: what this node had it keeps; some of node-3's come here.
    m.c.set_cluster_nodes(vec![peer("node-1"), peer("node-2")]).unwrap();
    let after: Vec<bool> = ips.iter().map(|ip| answers_arp(&m, *ip)).collect();
    assert!(mine.iter().zip(&after).all(|(a, b)| !a || *b), "an address never moves away from a node that stays");
    assert!(after.iter().filter(|b| **b).count() > n, "some of node-3's addresses came here");
    // A static (unregistered) node never announces.
    m.c.set_cluster_nodes(vec![
        peer("node-1"),
        control::config::RemoteNodeConfig { registered: false, ..peer("kernel") },
    ])
    .unwrap();
    assert!(ips.iter().all(|ip| answers_arp(&m, *ip)));
}

/// One HTTP GET to the health check server on loopback: status code and body.
fn probe(port: u16) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: node\r\n\r\n").ok()?;
    let mut r = String::new();
    s.read_to_string(&mut r).ok()?;
    let code = r.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, r.split("\r\n\r\n").nth(1)?.to_string()))
}

#[test]
fn health_check_node_ports_answer_as_kube_proxy_does() {
    let m = node("");
    m.apply(&svc(
        "local",
        "  type: LoadBalancer\n  externalTrafficPolicy: Local\n  selector: {pod: none}\n  ports: [{port: 80}]\n",
    ));
    let port = stored(&m, "x", "local")["spec"]["healthCheckNodePort"].as_u64().unwrap() as u16;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let h = control::health::spawn(m.c.clone(), "127.0.0.1".parse().unwrap(), stop.clone()).unwrap();
    let wait = |want: u16| {
        let t = std::time::Instant::now();
        loop {
            if let Some((code, body)) = probe(port) {
                if code == want {
                    return body;
                }
            }
            assert!(t.elapsed() < std::time::Duration::from_secs(5), "no {want} from port {port}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let body = wait(503);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["localEndpoints"], 0);
    assert_eq!(v["service"]["name"], "local");
    // A ready endpoint on this node: 200 with the count.
    m.apply(&svc(
        "local",
        "  type: LoadBalancer\n  externalTrafficPolicy: Local\n  selector: {pod: a}\n  ports: [{port: 80}]\n",
    ));
    let v: Value = serde_json::from_str(&wait(200)).unwrap();
    assert_eq!(v["localEndpoints"], 1);
    // Deleted: the port closes.
    m.delete("svc", "x", "local");
    let t = std::time::Instant::now();
    while probe(port).is_some() {
        assert!(t.elapsed() < std::time::Duration::from_secs(5), "port {port} still served");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    h.join().unwrap();
}

#[test]
fn updates_follow_the_api_servers_rules() {
    let m = node("");
    // Local -> Cluster: the health check node port goes (it is kept only while needed).
    m.apply(&svc("lb", "  type: LoadBalancer\n  externalTrafficPolicy: Local\n  ports: [{name: http, port: 80}]\n"));
    let v = stored(&m, "x", "lb");
    let np = node_ports(&v);
    assert!(v["spec"]["healthCheckNodePort"].as_u64().is_some());
    // Re-applying the printed form with another policy: accepted, the port released.
    let mut printed = v.clone();
    printed["spec"]["externalTrafficPolicy"] = "Cluster".into();
    m.apply(&serde_json::to_string(&printed).unwrap());
    let v = stored(&m, "x", "lb");
    assert!(v["spec"].get("healthCheckNodePort").is_none(), "{v}");
    // A port renumbered under the same name keeps its node port.
    m.apply(&svc("lb", "  type: LoadBalancer\n  ports: [{name: http, port: 8080}]\n"));
    assert_eq!(node_ports(&stored(&m, "x", "lb")), np);
    // The primary cluster IP is immutable.
    let ip = cluster_ips(&stored(&m, "x", "lb"))[0];
    let other = if ip.to_string() == "10.0.0.77" { "10.0.0.78" } else { "10.0.0.77" };
    let e = m.refuse(&svc(
        "lb",
        &format!("  type: LoadBalancer\n  clusterIP: {other}\n  ports: [{{name: http, port: 8080}}]\n"),
    ));
    assert!(e.contains("spec.clusterIPs[0]: field is immutable"), "{e}");
    // Dual stack downgraded to single: the secondary address is released.
    m.apply(&svc("d", "  ipFamilyPolicy: RequireDualStack\n  ports: [{port: 80}]\n"));
    let two = cluster_ips(&stored(&m, "x", "d"));
    assert_eq!(two.len(), 2);
    m.apply(&svc("d", "  ipFamilyPolicy: SingleStack\n  ports: [{port: 80}]\n"));
    assert_eq!(cluster_ips(&stored(&m, "x", "d")), vec![two[0]]);
    m.apply(&svc("d6", &format!("  clusterIP: \"{}\"\n  ipFamilies: [IPv6]\n  ports: [{{port: 80}}]\n", two[1])));
    // One node port for TCP and UDP of one port number is one value.
    m.apply(&svc("dns", "  type: NodePort\n  ports: [{name: t, port: 53, nodePort: 30053}, {name: u, port: 53, protocol: UDP, nodePort: 30053}]\n"));
    // ExternalName has no node ports.
    let e = m.refuse("apiVersion: v1\nkind: Service\nmetadata: {name: ext, namespace: x}\nspec: {type: ExternalName, externalName: db.example.com, ports: [{port: 80, nodePort: 30099}]}\n");
    assert!(e.contains("may not be used when type is 'ExternalName'"), "{e}");
}

#[test]
fn bad_pools_stop_the_config_and_huge_ones_do_not_panic() {
    let e = control::build::build_text(
        "[node]\nname = \"n\"\nipv4 = \"192.168.77.10\"\nrouter_mac = \"02:00:00:00:00:01\"\nuplink_mac = \"02:00:00:00:01:10\"\n[datapath]\nload_balancer_pools = [\"192.0.2.10-192.0.2.1\"]\n",
        std::path::Path::new("bad.toml"),
        &std::env::temp_dir(),
        1,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("datapath.load_balancer_pools[0]"), "{e}");
    // The whole IPv6 space as a pool: allocation works (no overflow).
    let m = Model::with_toml("[datapath]\nload_balancer_pools = [\"::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff\"]\n");
    m.apply(&svc("v6", "  type: LoadBalancer\n  ipFamilies: [IPv6]\n  ports: [{port: 80}]\n"));
}
