//! Control-plane benchmark through the real socket: apply 10,000 services with 50,000
//! endpoints (EndpointSlices) and 10,000 NetworkPolicy rules in one request, then stream
//! single-service changes and report their latency, while a worker thread forwards
//! established flows of an unaffected service and counts any it loses. In the same run, as
//! root with iptables-nft-restore present, the kernel baseline: kube-proxy's iptables layout
//! for the same services and endpoints loaded with iptables-restore in a scratch namespace.
//!
//!   cargo run --release -p benches --example apply [-- SERVICES ENDPOINTS_PER_SERVICE POLICIES]
//!
//! `PODSWITCH_APPLY_WORKERS=2` measures a node with two workers, whose snapshots also carry
//! the flow-owner index.

use control::api::pb;
use control::controller::Controller;
use podswitch_benches::manifests::{ep_ip, percentile, vip};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switch_core::packet::{OwnedBuf, PortId};
use switch_core::pipeline::{Verdict, Worker, WorkerConfig};
use switch_core::wire::build::{IpFrame, L4Repr};
use switch_core::wire::MacAddr;

const LOCAL_PODS: usize = 20;

fn base() -> String {
    let mut s = String::from(
        "[node]\nname = \"node-1\"\nipv4 = \"192.168.77.10\"\npod_cidrs = [\"10.244.1.0/24\"]\nrouter_mac = \"02:00:00:00:00:01\"\nuplink_mac = \"02:00:00:00:01:10\"\n\n[datapath]\nconntrack_flows = 65536\n\n[[nodes]]\nname = \"node-2\"\nip = \"192.168.77.20\"\nmac = \"02:00:00:00:01:20\"\npod_cidrs = [\"10.128.0.0/9\"]\n\n",
    );
    for i in 0..LOCAL_PODS {
        let _ = write!(s, "[[ports]]\nname = \"p{i}\"\nkind = \"pod\"\n\n");
    }
    s.push_str("[[ports]]\nname = \"uplink\"\nkind = \"uplink\"\n");
    s
}

fn slice(i: usize, per: usize, shift: usize) -> String {
    let mut s = format!(
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: s{i}-1, namespace: bench, labels: {{kubernetes.io/service-name: s{i}}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n"
    );
    for k in 0..per {
        let _ = writeln!(s, "- {{addresses: [{}], nodeName: node-2}}", ep_ip(i * per + (k + shift) % (per + 1)));
    }
    s
}

fn manifests(services: usize, per: usize, policies: usize) -> String {
    let mut y = String::with_capacity(services * 600);
    y.push_str("apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}\n");
    for i in 0..LOCAL_PODS {
        let _ = write!(
            y,
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}, namespace: bench, labels: {{app: p{i}}}, annotations: {{podswitch.io/port: p{i}, podswitch.io/mac: \"02:00:00:00:02:{i:02x}\"}}}}\nspec: {{nodeName: node-1}}\nstatus: {{podIP: 10.244.1.{}}}\n",
            i + 10
        );
    }
    for i in 0..services {
        let _ = write!(
            y,
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: bench}}\nspec: {{clusterIP: {}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}\n",
            vip(i + 1)
        );
        y.push_str(&slice(i, per, 0));
    }
    podswitch_benches::manifests::policies(&mut y, policies, LOCAL_PODS);
    y
}

/// kube-proxy's iptables layout (KUBE-SERVICES -> KUBE-SVC -> statistic -> KUBE-SEP DNAT)
/// loaded with iptables-nft-restore into a scratch namespace; seconds, or why not measured.
fn iptables_baseline(services: usize, per: usize) -> Result<f64, String> {
    let euid = std::process::Command::new("id").arg("-u").output().map_err(|e| e.to_string())?;
    if !euid.stdout.starts_with(b"0") {
        return Err("not root".into());
    }
    let ns = format!("psw-apply-{}", std::process::id());
    let ok = std::process::Command::new("ip").args(["netns", "add", &ns]).status().map_err(|e| e.to_string())?;
    if !ok.success() {
        return Err("ip netns add failed".into());
    }
    let mut r = String::with_capacity(services * per * 200);
    r.push_str("*nat\n:KUBE-SERVICES - [0:0]\n");
    for i in 0..services {
        let _ = writeln!(r, ":KUBE-SVC-{i} - [0:0]");
        for k in 0..per {
            let _ = writeln!(r, ":KUBE-SEP-{i}-{k} - [0:0]");
        }
    }
    r.push_str("-A PREROUTING -j KUBE-SERVICES\n");
    for i in 0..services {
        let _ = writeln!(r, "-A KUBE-SERVICES -d {}/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-{i}", vip(i + 1));
        for k in 0..per {
            let left = per - k;
            if left > 1 {
                let _ = writeln!(
                    r,
                    "-A KUBE-SVC-{i} -m statistic --mode random --probability {:.5} -j KUBE-SEP-{i}-{k}",
                    1.0 / left as f64
                );
            } else {
                let _ = writeln!(r, "-A KUBE-SVC-{i} -j KUBE-SEP-{i}-{k}");
            }
            let _ =
                writeln!(r, "-A KUBE-SEP-{i}-{k} -p tcp -m tcp -j DNAT --to-destination {}:8080", ep_ip(i * per + k));
        }
    }
    r.push_str("COMMIT\n");
    let t0 = Instant::now();
    let res = (|| {
        use std::io::Write;
        let mut c = std::process::Command::new("ip")
            .args(["netns", "exec", &ns, "iptables-nft-restore"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        c.stdin.take().ok_or("stdin")?.write_all(r.as_bytes()).map_err(|e| e.to_string())?;
        let st = c.wait().map_err(|e| e.to_string())?;
        if st.success() {
            Ok(t0.elapsed().as_secs_f64())
        } else {
            Err("iptables-nft-restore failed".into())
        }
    })();
    let _ = std::process::Command::new("ip").args(["netns", "delete", &ns]).status();
    res
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let services = args.first().copied().unwrap_or(10_000);
    let per = args.get(1).copied().unwrap_or(5);
    let policies = args.get(2).copied().unwrap_or(2_000);
    let text = base();
    let dir = std::env::temp_dir().join(format!("psw-apply-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let built = control::build::build_text(&text, std::path::Path::new("bench.toml"), &dir, 1).expect("base");
    let cfg: control::config::Config = toml::from_str(&text).expect("base");
    let cell = Arc::new(control::publish::SnapshotCell::new(built.tables));
    // PODSWITCH_APPLY_WORKERS=N: a node with N workers, whose snapshots also carry the
    // flow-owner index (built whole in bulk, patched on single changes).
    let workers: u16 = std::env::var("PODSWITCH_APPLY_WORKERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let c = Arc::new(Controller::new(cfg, built.ports, Arc::clone(&cell), dir.clone(), None).with_workers(workers));
    let socket = dir.join("podswitch.sock");
    let stop = Arc::new(AtomicBool::new(false));
    let l = control::api::server::bind(&socket).expect("bind");
    let server = control::api::server::spawn(Arc::clone(&c), l, socket.clone(), Arc::clone(&stop)).expect("serve");
    let yaml = manifests(services, per, policies);
    println!(
        "podswitch apply benchmark: {services} services x {per} endpoints ({} endpoints), {policies} policies x 5 rules ({} rules), {:.1} MB of YAML, {workers} worker(s)",
        services * per,
        policies * 5,
        yaml.len() as f64 / 1e6
    );
    // Where a bulk apply's time goes, phase by phase, outside the server.
    {
        let t0 = Instant::now();
        let parsed =
            control::k8s::parse(control::k8s::Format::Yaml, "bench", &yaml, "node-1", control::k8s::Validation::Strict)
                .expect("parse");
        let t_parse = t0.elapsed();
        let mut store = control::store::Store::new(toml::from_str(&text).expect("base"));
        store.apply(parsed.objects).expect("store");
        let t_store = t0.elapsed() - t_parse;
        let (cfg, _) = store.config();
        let t_merge = t0.elapsed() - t_parse - t_store;
        let t1 = Instant::now();
        control::build::build(&cfg, &dir, 2).expect("build");
        println!(
            "bulk phases, in-process, YAML: parse {:.0} ms, store {:.0} ms, merge {:.0} ms, build {:.0} ms",
            t_parse.as_secs_f64() * 1e3,
            t_store.as_secs_f64() * 1e3,
            t_merge.as_secs_f64() * 1e3,
            t1.elapsed().as_secs_f64() * 1e3
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    // The same objects as one JSON List (what `kubectl get -o json` writes, and what the
    // Kubernetes API serves), applied to a fresh controller behind its own socket.
    {
        let items: Vec<serde_json::Value> = serde_yaml_ng::Deserializer::from_str(&yaml)
            .map(|d| serde::Deserialize::deserialize(d).expect("yaml document"))
            .collect();
        let json = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string();
        let t0 = Instant::now();
        let n =
            control::k8s::parse(control::k8s::Format::Json, "bench", &json, "node-1", control::k8s::Validation::Strict)
                .expect("parse")
                .objects
                .len();
        println!("bulk phases, in-process, JSON: parse {:.0} ms ({n} objects)", t0.elapsed().as_secs_f64() * 1e3);
        let jdir = dir.join("json");
        std::fs::create_dir_all(&jdir).expect("dir");
        let built = control::build::build_text(&text, std::path::Path::new("bench.toml"), &jdir, 1).expect("base");
        let cfg: control::config::Config = toml::from_str(&text).expect("base");
        let jcell = Arc::new(control::publish::SnapshotCell::new(built.tables));
        let jc = Arc::new(Controller::new(cfg, built.ports, Arc::clone(&jcell), jdir.clone(), None));
        let jsock = jdir.join("podswitch.sock");
        let jstop = Arc::new(AtomicBool::new(false));
        let l = control::api::server::bind(&jsock).expect("bind");
        let js = control::api::server::spawn(jc, l, jsock.clone(), Arc::clone(&jstop)).expect("serve");
        rt.block_on(async {
            let mut client = control::api::client::connect(jsock.clone()).await.expect("connect");
            let t0 = Instant::now();
            let r = client
                .apply(pb::ApplyRequest {
                    manifests: vec![pb::Manifest {
                        format: "json".into(),
                        source: "bench".into(),
                        content: json.clone(),
                    }],
                    dry_run: false,
                    ..Default::default()
                })
                .await
                .expect("bulk apply")
                .into_inner();
            println!(
                "bulk apply as JSON ({:.1} MB) through the socket: {:.0} ms to a live snapshot (build {:.0} ms)",
                json.len() as f64 / 1e6,
                t0.elapsed().as_secs_f64() * 1e3,
                r.build_micros as f64 / 1e3
            );
        });
        jstop.store(true, Ordering::Relaxed);
        let _ = js.join();
    }
    rt.block_on(async {
        let mut client = control::api::client::connect(socket.clone()).await.expect("connect");
        let t0 = Instant::now();
        let r = client
            .apply(pb::ApplyRequest {
                manifests: vec![pb::Manifest { format: "yaml".into(), source: "bench".into(), content: yaml }],
                dry_run: false,
                ..Default::default()
            })
            .await
            .expect("bulk apply")
            .into_inner();
        let bulk = t0.elapsed();
        let t = cell.load();
        println!(
            "bulk apply through the socket: {:.0} ms to a live snapshot (generation {}; build {:.0} ms; parse, store and RPC the rest); {} service ports, {} policy rules compiled",
            bulk.as_secs_f64() * 1e3,
            r.generation,
            r.build_micros as f64 / 1e3,
            t.services.ports().len(),
            t.policy.rule_count()
        );

        // Established flows of service 1 forwarded continuously while service 2..N change.
        let lost = Arc::new(AtomicU64::new(0));
        let sent = Arc::new(AtomicU64::new(0));
        let running = Arc::new(AtomicBool::new(true));
        let fwd = {
            let (cell, lost, sent, running) = (Arc::clone(&cell), Arc::clone(&lost), Arc::clone(&sent), Arc::clone(&running));
            std::thread::spawn(move || {
                let mut w = Worker::new(WorkerConfig { max_ports: 32, ..WorkerConfig::default() });
                let frames: Vec<Vec<u8>> = (0..64)
                    .map(|i| {
                        IpFrame::new(
                            MacAddr([2, 0, 0, 0, 2, 0]),
                            MacAddr([2, 0, 0, 0, 0, 1]),
                            "10.244.1.10".parse().expect("ip"),
                            vip(1).parse().expect("ip"),
                            L4Repr::Tcp { sport: 20000 + i, dport: 80, seq: 1, ack: 1, flags: switch_core::wire::l4::tcp_flags::ACK },
                        )
                        .build()
                    })
                    .collect();
                let mut pkts: Vec<OwnedBuf> = frames.iter().map(|f| OwnedBuf::from_frame(f, PortId(0))).collect();
                let mut v = vec![Verdict::Drop(switch_core::drop::DropReason::NoRoute); 64];
                let start = Instant::now();
                let mut first = true;
                while running.load(Ordering::Relaxed) {
                    for (p, f) in pkts.iter_mut().zip(&frames) {
                        p.load(f, PortId(0), 128);
                    }
                    let t = cell.load();
                    w.process(&t, start.elapsed().as_nanos() as u64, &mut pkts, &mut v);
                    sent.fetch_add(64, Ordering::Relaxed);
                    if first {
                        first = false;
                        if let Some(bad) = v.iter().find(|v| !matches!(v, Verdict::Tx(_))) {
                            eprintln!("forwarding thread: {bad:?}");
                        }
                    }
                    lost.fetch_add(v.iter().filter(|v| !matches!(v, Verdict::Tx(_))).count() as u64, Ordering::Relaxed);
                }
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        let mut rpc = Vec::new();
        let mut builds = Vec::new();
        for n in 0..200usize {
            let i = 1 + n % (services - 1);
            let t0 = Instant::now();
            let r = client
                .apply(pb::ApplyRequest {
                    manifests: vec![pb::Manifest { format: "yaml".into(), source: "one".into(), content: slice(i, per, 1 + n % per) }],
                    dry_run: false,
                    ..Default::default()
                })
                .await
                .expect("single change")
                .into_inner();
            rpc.push(t0.elapsed().as_secs_f64() * 1e3);
            builds.push(r.build_micros as f64 / 1e3);
        }
        running.store(false, Ordering::Relaxed);
        let _ = fwd.join();
        println!(
            "single EndpointSlice change, 200 in a row: RPC to live p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (snapshot build p50 {:.1} ms, p99 {:.1} ms)",
            percentile(&mut rpc, 0.5),
            percentile(&mut rpc, 0.99),
            percentile(&mut rpc, 1.0),
            percentile(&mut builds, 0.5),
            percentile(&mut builds, 0.99)
        );
        println!(
            "unaffected established flows while changes streamed: {} packets forwarded, {} lost",
            sent.load(Ordering::Relaxed),
            lost.load(Ordering::Relaxed)
        );
        match iptables_baseline(services, per) {
            Ok(s) => println!(
                "kernel baseline in this run: iptables-nft-restore of kube-proxy's layout for the same {services} services x {per} endpoints: {:.0} ms (ratio iptables/podswitch {:.2}; kube-proxy's iptables mode rewrote it on every sync)",
                s * 1e3,
                s / bulk.as_secs_f64()
            ),
            Err(e) => println!("kernel baseline not measured: {e}"),
        }
    });
    stop.store(true, Ordering::Relaxed);
    let _ = server.join();
    let _ = std::fs::remove_dir_all(&dir);
}
