//! Convergence of a cluster over a real etcd: three nodes' controllers joined by the cluster
//! agent (what `podswitchd --etcd` runs, without ports: the tables are built and published as
//! on a node, nothing forwards). An apply on node a is timed until a answers (committed in
//! etcd and applied there) and until b and c have published it, for one Service at a time and
//! for a bulk of Services in one request. In the same run, the baseline: etcd alone taking the
//! same writes (the same transactions: object, claims) from one client.
//!
//!   cargo run --release -p podswitch-benches --example converge [-- BULK ROUNDS]
//!
//! Needs etcd (`apt-get install etcd-server etcd-client`; installed when missing, as root).

use control::cluster::agent::Agent;
use control::cluster::{Claim, Cluster, Commit, EtcdConfig};
use control::controller::{Controller, Manifest};
use podswitch_benches::manifests::percentile;
use podswitch_tests::{etcd_or_skip, Etcd};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn node(name: &str, octet: u8, etcd: &Etcd) -> (Arc<Controller>, Agent) {
    let text = format!(
        "[node]\nname = \"{name}\"\nipv4 = \"192.168.77.{octet}\"\nrouter_mac = \"02:00:00:00:00:01\"\nuplink_mac = \"02:00:00:00:01:{octet:02x}\"\n\n[cluster]\ncluster_cidrs = [\"10.244.0.0/16\"]\n\n[datapath]\nservice_cidrs = [\"10.96.0.0/12\"]\nconntrack_flows = 4096\n\n[[ports]]\nname = \"uplink\"\nkind = \"uplink\"\n"
    );
    let mut cfg: control::config::Config = toml::from_str(&text).expect("config");
    let agent = Agent::start(&mut cfg, &[etcd.endpoint()]).expect("joins");
    let dir = std::env::temp_dir();
    let built = control::build::build(&cfg, &dir, 1).expect("builds");
    let cell = Arc::new(control::publish::SnapshotCell::new(built.tables));
    let c =
        Arc::new(Controller::new(cfg, built.ports, cell, dir, None).with_ids(built.ids).with_services(built.services));
    agent.attach(&c, &Arc::new(AtomicBool::new(false)));
    (c, agent)
}

fn service(ns: &str, i: usize, ty: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: {ns}}}\nspec: {{type: {ty}, selector: {{app: s{i}}}, ports: [{{port: 80}}]}}\n"
    )
}

fn yaml(content: String) -> Manifest {
    Manifest { format: "yaml".into(), source: "bench".into(), content }
}

/// Frontends a node has published.
fn frontends(c: &Controller) -> usize {
    c.cell().load().services.frontend_count()
}

/// Waits until every node in `nodes` has at least `n` frontends; returns when the last did.
fn until_all(nodes: &[&Arc<Controller>], n: usize, t0: Instant, limit: Duration) -> Option<Duration> {
    let mut done = vec![None; nodes.len()];
    while done.iter().any(Option::is_none) {
        for (i, c) in nodes.iter().enumerate() {
            if done[i].is_none() && frontends(c) >= n {
                done[i] = Some(t0.elapsed());
            }
        }
        if t0.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    done.into_iter().flatten().max()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn report(what: &str, v: &mut [f64]) -> f64 {
    let (p50, p99) = (percentile(v, 0.50), percentile(v, 0.99));
    println!("{what:<44} p50 {p50:8.2} ms   p99 {p99:8.2} ms   (n = {})", v.len());
    p50
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let bulk = args.first().copied().unwrap_or(10_000);
    let rounds = args.get(1).copied().unwrap_or(100);
    if !etcd_or_skip("converge") {
        eprintln!("converge: needs etcd (root installs it)");
        std::process::exit(2);
    }
    let etcd = Etcd::start("converge");
    let (a, _ga) = node("a", 11, &etcd);
    let (b, _gb) = node("b", 12, &etcd);
    let (c, _gc) = node("c", 13, &etcd);
    println!("3 nodes over etcd {} (one machine, 2 cores shared by etcd and the nodes)", etcd.endpoint());

    // One Service per apply.
    let (mut ack, mut all) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let before = frontends(&a);
        let t0 = Instant::now();
        a.apply(&[yaml(service("one", i, "NodePort"))], false).expect("applied");
        ack.push(ms(t0.elapsed()));
        // A NodePort Service on one node address: a cluster IP and a node port frontend.
        let d = until_all(&[&a, &b, &c], before + 2, t0, Duration::from_secs(10)).expect("converged");
        all.push(ms(d));
    }
    println!("\none Service per apply ({rounds} applies):");
    let p_ack = report("applied on a (in etcd, and on a)", &mut ack);
    let p_all = report("published on a, b and c", &mut all);

    // The baseline: etcd alone taking the same transaction (object + two claims).
    let cfg = EtcdConfig { endpoints: vec![etcd.endpoint()], prefix: "/baseline".into(), ..EtcdConfig::default() };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let cl = rt.block_on(Cluster::connect(&cfg)).expect("connects");
    let body = serde_json::to_vec(&serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"clusterIP": "10.96.0.1", "ports": [{"port": 80, "nodePort": 30001}]}})).expect("json");
    let commit = |i: usize| Commit {
        puts: vec![(format!("objects/Service/one/s{i}"), body.clone())],
        claims: vec![
            Claim::New { key: format!("ipam/clusterip/{i}"), owner: format!("one/s{i}") },
            Claim::New { key: format!("ipam/nodeport/{i}"), owner: format!("one/s{i}") },
        ],
        ..Commit::default()
    };
    let mut raw = Vec::new();
    for i in 0..rounds {
        let t0 = Instant::now();
        rt.block_on(cl.commit(commit(i))).expect("etcd commit");
        raw.push(ms(t0.elapsed()));
    }
    let p_raw = report("etcd alone, the same transaction", &mut raw);
    println!("ratio: applied {:.1}x etcd alone; converged on 3 nodes {:.1}x etcd alone", p_ack / p_raw, p_all / p_raw);

    // A bulk in one request (ClusterIP Services: the node port range holds 2,768).
    let mut y = String::new();
    for i in 0..bulk {
        y.push_str(&service("bulk", i, "ClusterIP"));
    }
    let before = frontends(&a);
    let t0 = Instant::now();
    a.apply(&[yaml(y)], false).expect("bulk applied");
    let acked = t0.elapsed();
    let conv = until_all(&[&a, &b, &c], before + bulk, t0, Duration::from_secs(600)).expect("bulk converged");
    println!("\n{bulk} Services in one apply:");
    println!("{:<44} {:8.0} ms", "applied on a (in etcd, and on a)", ms(acked));
    println!("{:<44} {:8.0} ms", "published on a, b and c", ms(conv));
    // etcd alone: the same objects and claims, in transactions of 33 objects (100 operations).
    let t0 = Instant::now();
    for chunk in (0..bulk).collect::<Vec<_>>().chunks(33) {
        let mut c = Commit::default();
        for i in chunk {
            let one = commit(rounds + i);
            c.puts.extend(one.puts);
            c.claims.extend(one.claims);
        }
        rt.block_on(cl.commit(c)).expect("etcd commit");
    }
    let raw_bulk = t0.elapsed();
    println!("{:<44} {:8.0} ms", "etcd alone, the same writes", ms(raw_bulk));
    println!("ratio: converged {:.1}x etcd alone", conv.as_secs_f64() / raw_bulk.as_secs_f64());
}
