//! Controllers of several nodes sharing one object source (the in-memory source; the etcd
//! one is tested against a real etcd in tests/etcd_cluster.rs): a write on any node is
//! applied on every node, allocations are claimed cluster-wide and released on delete, and a
//! node's own objects (routes) stay its own.

use control::controller::Controller;
use control::source::{Claim, Memory, ObjectSource, Write, WriteError};
use podswitch_tests::model::doc;
use serde_json::Value;
use std::sync::Arc;

fn node(name: &str, cidr: &str) -> Arc<Controller> {
    let text = format!(
        "[node]\nname = \"{name}\"\nipv4 = \"192.168.77.{}\"\npod_cidrs = [\"{cidr}\"]\nrouter_mac = \"02:00:00:00:00:01\"\nuplink_mac = \"02:00:00:00:01:{}\"\n\n[cluster]\n\n[datapath]\nload_balancer_pools = [\"192.0.2.0/28\"]\n\n[[ports]]\nname = \"uplink\"\nkind = \"uplink\"\n",
        if name == "a" { 10 } else { 20 },
        if name == "a" { 10 } else { 20 },
    );
    let dir = std::env::temp_dir();
    let built = control::build::build_text(&text, std::path::Path::new("n.toml"), &dir, 1).expect("base");
    let cfg: control::config::Config = toml::from_str(&text).expect("parses");
    let cell = Arc::new(control::publish::SnapshotCell::new(built.tables));
    Arc::new(Controller::new(cfg, built.ports, cell, dir, None).with_ids(built.ids))
}

fn form(c: &Controller, kind: &str, ns: &str, name: &str) -> Option<Value> {
    let l = c.list(kind, ns, name).ok()?;
    l.objects.first()?.kubernetes.as_deref().map(|k| serde_json::from_str(k).expect("json"))
}

#[test]
fn writes_on_any_node_reach_every_node_with_cluster_wide_allocations() {
    let store = Arc::new(Memory::default());
    let (a, b) = (node("a", "10.244.1.0/24"), node("b", "10.244.2.0/24"));
    store.join(&a);
    store.join(&b);
    a.apply(&[doc("apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec: {type: LoadBalancer, selector: {app: web}, ports: [{port: 80}]}\n")], false).expect("applied on a");
    let on_a = form(&a, "svc", "default", "web").expect("on a");
    let on_b = form(&b, "svc", "default", "web").expect("delivered to b");
    assert_eq!(on_a, on_b);
    let ip = on_a["spec"]["clusterIP"].as_str().unwrap().to_string();
    let np = on_a["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    let lb = on_a["status"]["loadBalancer"]["ingress"][0]["ip"].as_str().unwrap().to_string();
    assert_eq!(store.holder(&format!("clusterip/{ip}")).as_deref(), Some("default/web"));
    assert_eq!(store.holder(&format!("nodeport/{np}")).as_deref(), Some("default/web"));
    assert_eq!(store.holder(&format!("lbip/{lb}")).as_deref(), Some("default/web"));

    // b knows a's allocations: asking for them is refused there.
    let e = b
        .apply(&[doc(&format!("apiVersion: v1\nkind: Service\nmetadata: {{name: other}}\nspec: {{clusterIP: {ip}, ports: [{{port: 80}}]}}\n"))], false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("already allocated (to Service default/web)"), "{e}");
    // The source refuses a claim someone else holds, whatever the writer believed.
    let w = Write {
        claims: vec![Claim { key: format!("clusterip/{ip}"), owner: "default/other".into(), held: false }],
        ..Write::default()
    };
    assert!(matches!(store.write(w), Err(WriteError::Conflict { holder, .. }) if holder == "default/web"));

    // Deleted on b: gone on a, values released.
    b.delete(
        &[control::controller::ObjectRef { kind: "svc".into(), namespace: String::new(), name: "web".into() }],
        &[],
        false,
    )
    .expect("deleted on b");
    assert!(form(&a, "svc", "default", "web").is_none());
    assert_eq!(store.holder(&format!("clusterip/{ip}")), None);
    assert_eq!(store.holder(&format!("nodeport/{np}")), None);

    // Objects of the node itself are not cluster-wide; TOML objects are not Kubernetes ones.
    let e = a
        .apply(
            &[control::controller::Manifest {
                format: "toml".into(),
                source: "t".into(),
                content: "[[services]]\nname = \"t\"\ncluster_ips = [\"10.96.0.9\"]\nports = [{ port = 80 }]\n".into(),
            }],
            false,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("stored in the cluster store as Kubernetes objects"), "{e}");
    a.add_route(control::config::RouteConfig { prefix: "10.250.0.0/16".into(), via: "blackhole".into(), mac: None })
        .expect("route");
    assert_eq!(a.list("routes", "", "").unwrap().objects.len(), 1);
    assert!(b.list("routes", "", "").unwrap().objects.is_empty());

    // A refused apply writes nothing.
    let e = a.apply(&[doc("apiVersion: v1\nkind: Service\nmetadata: {name: bad}\nspec: {type: NodePort, ports: [{port: 80, nodePort: 80}]}\n")], false).unwrap_err();
    assert!(e.to_string().contains("not in the node port range"), "{e}");
    assert!(form(&b, "svc", "default", "bad").is_none());
}

#[test]
fn a_node_that_joins_later_gets_everything_and_remote_nodes_route() {
    let store = Arc::new(Memory::default());
    let a = node("a", "10.244.1.0/24");
    store.join(&a);
    a.apply(&[doc("apiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: {team: t}}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: x}\nspec: {podSelector: {}, policyTypes: [Ingress]}\n")], false).expect("applied");
    let b = node("b", "10.244.2.0/24");
    store.join(&b);
    assert_eq!(b.list("netpol", "x", "deny").unwrap().objects.len(), 1);
    assert_eq!(b.list("ns", "", "x").unwrap().objects.len(), 1);
    // The cluster's nodes: b routes a's pod CIDR through the tunnel to a.
    let o = b
        .set_cluster_nodes(vec![control::config::RemoteNodeConfig {
            name: "a".into(),
            ip: "192.168.77.10".into(),
            mac: "02:00:00:00:01:10".into(),
            vtep_mac: None,
            pod_cidrs: vec!["10.244.1.0/24".into()],
            registered: true,
        }])
        .expect("nodes");
    assert_eq!(o.scope, "full");
    let cfg = b.config().unwrap();
    assert_eq!(cfg.nodes.len(), 1);
    let t = b.cell().load();
    assert!(t.nodes.iter().any(|n| n.name == "a"), "the snapshot has node a");
    // The same set again changes nothing; an empty one removes it.
    let g = b.cell().generation();
    b.set_cluster_nodes(b.cluster_nodes()).unwrap();
    assert_eq!(b.cell().generation(), g);
    b.set_cluster_nodes(Vec::new()).unwrap();
    assert!(b.cell().load().nodes.is_empty());
}

#[test]
fn a_pod_reapplied_without_status_keeps_its_node_and_addresses() {
    let store = Arc::new(Memory::default());
    let (a, b) = (node("a", "10.244.1.0/24"), node("b", "10.244.2.0/24"));
    store.join(&a);
    store.join(&b);
    // As the CNI plugin on b publishes it: scheduled on b, with its address.
    a.apply(&[doc("apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: default, labels: {app: web}}\nspec: {nodeName: b, containers: [{name: c, image: x}]}\nstatus: {podIP: 10.244.2.7, podIPs: [{ip: 10.244.2.7}]}\n")], false)
        .expect("published");
    // The user re-applies the Pod as written (no node, no status), with a new label.
    a.apply(&[doc("apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: default, labels: {app: web, tier: front}}\nspec: {containers: [{name: c, image: x}]}\n")], false)
        .expect("re-applied");
    for c in [&a, &b] {
        let f = form(c, "pod", "default", "web").expect("stored");
        assert_eq!(f["spec"]["nodeName"], "b", "{f}");
        assert_eq!(f["status"]["podIP"], "10.244.2.7", "{f}");
        assert_eq!(f["metadata"]["labels"]["tier"], "front", "{f}");
    }
}

#[test]
fn pods_of_sandboxes_gone_from_their_node_are_cleaned_up() {
    let store = Arc::new(Memory::default());
    let (a, b) = (node("a", "10.244.1.0/24"), node("b", "10.244.2.0/24"));
    store.join(&a);
    store.join(&b);
    // Two pods on a with addresses but no attachment there (their DEL never reached the
    // store): one the CNI plugin made, one of the user's.
    b.apply(&[doc("apiVersion: v1\nkind: Pod\nmetadata: {name: made, namespace: default, annotations: {podswitch.io/created-by: podswitch-cni}}\nspec: {nodeName: a, containers: [{name: c, image: x}]}\nstatus: {podIP: 10.244.1.7}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: mine, namespace: default}\nspec: {nodeName: a, containers: [{name: c, image: x}]}\nstatus: {podIP: 10.244.1.8}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: other, namespace: default}\nspec: {nodeName: b, containers: [{name: c, image: x}]}\nstatus: {podIP: 10.244.2.9}\n")], false)
        .expect("applied");
    // Each node cleans up its own: a the two, b its one (none has a sandbox attached).
    assert_eq!(a.reconcile_pods().unwrap(), 2);
    assert!(form(&b, "pod", "default", "made").is_none());
    let mine = form(&b, "pod", "default", "mine").expect("the user's pod stays");
    assert!(mine["status"].get("podIP").is_none(), "{mine}");
    let on_a = form(&a, "pod", "default", "mine").expect("on a");
    assert!(on_a["status"].get("podIP").is_none(), "{on_a}");
    assert_eq!(form(&a, "pod", "default", "other").unwrap()["status"]["podIP"], "10.244.2.9", "a leaves b's pod alone");
    assert_eq!(b.reconcile_pods().unwrap(), 1);
    assert_eq!(a.reconcile_pods().unwrap(), 0);
}

#[test]
fn endpoints_on_a_node_that_left_are_not_ready() {
    let store = Arc::new(Memory::default());
    let a = node("a", "10.244.1.0/24");
    store.join(&a);
    let peer = |name: &str, cidr: &str| control::config::RemoteNodeConfig {
        name: name.into(),
        ip: "192.168.77.30".into(),
        mac: "02:00:00:00:01:30".into(),
        vtep_mac: None,
        pod_cidrs: vec![cidr.into()],
        registered: true,
    };
    a.set_cluster_nodes(vec![peer("b", "10.244.2.0/24")]).unwrap();
    a.apply(&[doc("apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: default, labels: {app: web}}\nspec: {nodeName: b, containers: [{name: c, image: x}]}\nstatus: {podIP: 10.244.2.7}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {selector: {app: web}, ports: [{port: 80}]}\n")], false)
        .expect("applied");
    let ready = |c: &Controller| {
        let t = c.cell().load();
        t.services
            .ports()
            .iter()
            .filter(|p| p.spec.name.starts_with("default/web:"))
            .flat_map(|p| p.backends().iter())
            .filter(|b| b.state == switch_core::service::BackendState::Ready)
            .count()
    };
    assert_eq!(ready(&a), 1);
    // b's lease expires: the registry no longer has it.
    a.set_cluster_nodes(Vec::new()).unwrap();
    assert_eq!(ready(&a), 0, "an endpoint on a node that left is not ready");
    a.set_cluster_nodes(vec![peer("b", "10.244.2.0/24")]).unwrap();
    assert_eq!(ready(&a), 1, "ready again when it is back");
}
