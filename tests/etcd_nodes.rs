//! Two nodes' controllers joined through a real etcd by the cluster agent (what
//! `podswitchd --etcd` runs): pod CIDRs leased apart, objects written on one node applied on
//! the other with their allocations claimed in etcd and released on delete, each node the
//! other's remote node, and a node whose agent stops dropped by the other when its lease
//! expires.

use control::cluster::agent::Agent;
use control::controller::{Controller, ObjectRef};
use podswitch_tests::model::doc;
use podswitch_tests::{etcd_or_skip, Etcd};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Node {
    c: Arc<Controller>,
    agent: Agent,
}

fn node(name: &str, ip: &str, etcd: &Etcd) -> Node {
    let text = format!(
        "[node]\nname = \"{name}\"\nipv4 = \"{ip}\"\nrouter_mac = \"02:00:00:00:00:01\"\nuplink_mac = \"02:00:00:00:01:{}\"\n\n[cluster]\nlease_ttl_s = 2\ncluster_cidrs = [\"10.244.0.0/16\"]\n\n[datapath]\nload_balancer_pools = [\"192.0.2.0/28\"]\n\n[[ports]]\nname = \"uplink\"\nkind = \"uplink\"\n",
        &ip[ip.len() - 2..]
    );
    let mut cfg: control::config::Config = toml::from_str(&text).expect("parses");
    let agent = Agent::start(&mut cfg, &[etcd.endpoint()]).expect("joins");
    let dir = std::env::temp_dir();
    let built = control::build::build(&cfg, &dir, 1).expect("builds");
    let cell = Arc::new(control::publish::SnapshotCell::new(built.tables));
    let c = Arc::new(Controller::new(cfg, built.ports, cell, dir, None).with_ids(built.ids));
    agent.attach(&c, &Arc::new(AtomicBool::new(false)));
    Node { c, agent }
}

fn until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn cluster_ip(c: &Controller, name: &str) -> Option<String> {
    let l = c.list("svc", "default", name).ok()?;
    let v: serde_json::Value = serde_json::from_str(l.objects.first()?.kubernetes.as_deref()?).ok()?;
    v["spec"]["clusterIP"].as_str().map(str::to_string)
}

#[test]
fn two_nodes_share_objects_allocations_and_each_other() {
    if !etcd_or_skip("two_nodes_share_objects_allocations_and_each_other") {
        return;
    }
    let etcd = Etcd::start("etcd-nodes");
    let a = node("a", "192.168.77.10", &etcd);
    let b = node("b", "192.168.77.20", &etcd);
    let cidr = |n: &Node| n.c.config().unwrap().node.pod_cidrs.clone();
    assert_eq!(cidr(&a).len(), 1);
    assert_ne!(cidr(&a), cidr(&b), "leased apart");

    // Each is the other's remote node, with its leased CIDR.
    until("b sees a", Duration::from_secs(5), || {
        b.c.cluster_nodes().iter().any(|n| n.name == "a" && n.pod_cidrs == cidr(&a))
    });
    until("a sees b", Duration::from_secs(5), || a.c.cluster_nodes().iter().any(|n| n.name == "b"));

    // Written on a (acknowledged once a has it back), seen on b with the same allocation.
    a.c.apply(&[doc("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {type: NodePort, selector: {app: web}, ports: [{port: 80}]}\n")], false)
        .expect("applied");
    let ip = cluster_ip(&a.c, "web").expect("on a at once");
    until("b has web", Duration::from_secs(5), || cluster_ip(&b.c, "web").as_deref() == Some(ip.as_str()));
    let claims = etcd.etcdctl(&["get", "--prefix", "/podswitch/ipam/clusterip/"]);
    let claims = String::from_utf8_lossy(&claims.stdout).to_string();
    assert!(claims.contains(&ip) && claims.contains("default/web"), "{claims}");
    // b refuses what a took.
    let e = b.c.apply(&[doc(&format!("apiVersion: v1\nkind: Service\nmetadata: {{name: x}}\nspec: {{clusterIP: {ip}, ports: [{{port: 1}}]}}\n"))], false).unwrap_err();
    assert!(e.to_string().contains("already allocated"), "{e}");

    // Deleted on b: gone on a, claims released.
    b.c.delete(&[ObjectRef { kind: "svc".into(), namespace: "default".into(), name: "web".into() }], &[], false)
        .expect("deleted");
    until("a drops web", Duration::from_secs(5), || cluster_ip(&a.c, "web").is_none());
    let claims = etcd.etcdctl(&["get", "--prefix", "/podswitch/ipam/"]);
    let claims = String::from_utf8_lossy(&claims.stdout).to_string();
    assert!(!claims.contains("default/web"), "{claims}");

    // a stops renewing its lease: b drops it within the TTL (2 s), not before it expires.
    a.agent.stop();
    let t = Instant::now();
    until("b drops a", Duration::from_secs(6), || b.c.cluster_nodes().iter().all(|n| n.name != "a"));
    assert!(t.elapsed() >= Duration::from_millis(500), "dropped at once: the lease had not expired");
    drop(a);
    b.agent.stop();
}
