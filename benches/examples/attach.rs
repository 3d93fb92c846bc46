//! Pod attach benchmark (issue 10): on a node with 10,000 services (50,000 endpoints), 1,000
//! pods and 10,000 NetworkPolicy rules, pods are attached through the control socket as the
//! CNI plugin attaches them (CniAdd) and detached again (CniDel), in a row. Measured:
//!
//! - attach latency, from the CniAdd call to the first packet forwarded to the new pod with
//!   its policy in force (an allowed probe forwarded out of its new port, a probe from a peer
//!   the policy does not admit dropped), p50 and p99;
//! - churn: pods attached and detached per second, while a worker thread forwards established
//!   flows of other pods and counts every packet it loses;
//! - in the same run, for comparison, one full rebuild of the node's tables at that scale.
//!
//!   cargo run --release -p podswitch-benches --example attach [-- ATTACHES SERVICES POLICIES]
//!
//! The worker runs the real pipeline over the in-memory backend, which opens and closes ports
//! on the same worker commands as AF_PACKET (this measures the control path and the pipeline,
//! not a veth's setup).

use control::api::pb;
use control::controller::{Controller, WorkerCmd, WorkerLink};
use io_backends::memory::MemoryBackend;
use io_backends::Backend;
use podswitch_benches::manifests::{ep_ip, percentile, vip};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use switch_core::drop::DropReason;
use switch_core::packet::{OwnedBuf, PortId};
use switch_core::pipeline::{Verdict, Worker, WorkerConfig};
use switch_core::wire::build::{IpFrame, L4Repr};
use switch_core::wire::MacAddr;

const LOCAL_PODS: usize = 20;
const REMOTE_PODS: usize = 980;
const ROUTER: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);

fn local_ip(i: usize) -> String {
    format!("10.244.0.{}", i + 10)
}

fn base() -> String {
    let mut s = String::from(
        "[node]\nname = \"node-1\"\nipv4 = \"192.168.77.10\"\npod_cidrs = [\"10.244.0.0/16\"]\nrouter_mac = \"02:00:00:00:00:01\"\nuplink_mac = \"02:00:00:00:01:10\"\n\n[datapath]\nconntrack_flows = 65536\nmax_ports = 1024\n\n[[nodes]]\nname = \"node-2\"\nip = \"192.168.77.20\"\nmac = \"02:00:00:00:01:20\"\npod_cidrs = [\"10.128.0.0/9\"]\n\n",
    );
    for i in 0..LOCAL_PODS {
        let _ = write!(s, "[[ports]]\nname = \"p{i}\"\nkind = \"pod\"\n\n");
    }
    s.push_str("[[ports]]\nname = \"uplink\"\nkind = \"uplink\"\n");
    s
}

fn manifests(services: usize, per: usize, policies: usize) -> String {
    let mut y = String::with_capacity(services * 600);
    y.push_str("apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}\n");
    for i in 0..LOCAL_PODS {
        let _ = write!(
            y,
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}, namespace: bench, labels: {{app: p{i}}}, annotations: {{podswitch.io/port: p{i}, podswitch.io/mac: \"02:00:00:00:02:{i:02x}\"}}}}\nspec: {{nodeName: node-1}}\nstatus: {{podIP: {}}}\n",
            local_ip(i)
        );
    }
    for i in 0..REMOTE_PODS {
        let _ = write!(
            y,
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: r{i}, namespace: bench, labels: {{app: r{}}}}}\nspec: {{nodeName: node-2}}\nstatus: {{podIP: {}}}\n",
            i % 50,
            ep_ip(services * per + i)
        );
    }
    for i in 0..services {
        let _ = write!(
            y,
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: bench}}\nspec: {{clusterIP: {}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: s{i}-1, namespace: bench, labels: {{kubernetes.io/service-name: s{i}}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n",
            vip(i + 1)
        );
        for k in 0..per {
            let _ = writeln!(y, "- {{addresses: [{}], nodeName: node-2}}", ep_ip(i * per + k));
        }
    }
    podswitch_benches::manifests::policies(&mut y, policies, LOCAL_PODS);
    // The attached pods' own policy: ingress on 8080 from p0 only.
    y.push_str("---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: attached, namespace: bench}\nspec:\n  podSelector: {matchLabels: {app: attached}}\n  ingress: [{from: [{podSelector: {matchLabels: {app: p0}}}], ports: [{port: 8080}]}]\n");
    y
}

/// A frame from local pod `i` to `dst:dport`.
fn from_local(i: usize, dst: &str, dport: u16, sport: u16, flags: u8) -> (Vec<u8>, PortId) {
    let f = IpFrame::new(
        MacAddr([2, 0, 0, 0, 2, i as u8]),
        ROUTER,
        local_ip(i).parse().expect("ip"),
        dst.parse().expect("ip"),
        L4Repr::Tcp { sport, dport, seq: 1, ack: if flags == 0x02 { 0 } else { 1 }, flags },
    )
    .build();
    (f, PortId(i as u16))
}

/// What the worker thread is asked besides its commands: run one frame, say its verdict.
type Probe = (Vec<u8>, PortId, mpsc::Sender<Verdict>);

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let attaches = args.first().copied().unwrap_or(100);
    let services = args.get(1).copied().unwrap_or(10_000);
    let policies = args.get(2).copied().unwrap_or(2_000);
    let per = 5;
    let text = base();
    let dir = std::env::temp_dir().join(format!("psw-attach-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let built = control::build::build_text(&text, std::path::Path::new("bench.toml"), &dir, 1).expect("base");
    let cfg: control::config::Config = toml::from_str(&text).expect("base");
    let cell = Arc::new(control::publish::SnapshotCell::new(built.tables));
    let c = Arc::new(Controller::new(cfg, built.ports, Arc::clone(&cell), dir.clone(), None).with_ids(built.ids));
    let (cmd_tx, cmd_rx) = mpsc::channel::<WorkerCmd>();
    c.add_worker(WorkerLink { tx: cmd_tx, bell: None });
    let (probe_tx, probe_rx) = mpsc::channel::<Probe>();
    let socket = dir.join("podswitch.sock");
    let stop = Arc::new(AtomicBool::new(false));
    let l = control::api::server::bind(&socket).expect("bind");
    let server = control::api::server::spawn(Arc::clone(&c), l, socket.clone(), Arc::clone(&stop)).expect("serve");
    let yaml = manifests(services, per, policies);
    println!(
        "podswitch attach benchmark: {services} services x {per} endpoints, {} pods ({LOCAL_PODS} local), {} policy rules, {attaches} attaches",
        LOCAL_PODS + REMOTE_PODS,
        policies * 5 + 1
    );
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let mut client = control::api::client::connect(socket.clone()).await.expect("connect");
        let t0 = Instant::now();
        client
            .apply(pb::ApplyRequest {
                manifests: vec![pb::Manifest { format: "yaml".into(), source: "bench".into(), content: yaml }],
                ..Default::default()
            })
            .await
            .expect("bulk apply");
        println!("node state applied in {:.0} ms", t0.elapsed().as_secs_f64() * 1e3);
    });
    // The baseline of the same run: one full rebuild of this node's tables.
    let merged = c.config().expect("config");
    let mut full = Vec::new();
    for g in 0..3 {
        let t0 = Instant::now();
        control::build::build(&merged, &dir, 100 + g).expect("full build");
        full.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "full rebuild at this scale: {:.0} ms (best of 3: {:.0} ms)",
        full[0],
        full.iter().copied().fold(f64::MAX, f64::min)
    );

    // The worker: established flows of local pod 1 to service 1 forwarded continuously,
    // commands and probes served between batches.
    let lost = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let running = Arc::new(AtomicBool::new(true));
    let worker = {
        let (cell, lost, sent, running) =
            (Arc::clone(&cell), Arc::clone(&lost), Arc::clone(&sent), Arc::clone(&running));
        std::thread::spawn(move || {
            let mut w = Worker::new(WorkerConfig { max_ports: 1024, ..WorkerConfig::default() });
            let mut be = MemoryBackend::new(1024, 64);
            let frames: Vec<(Vec<u8>, PortId)> = (0..64).map(|i| from_local(1, &vip(1), 80, 20000 + i, 0x10)).collect();
            let mut pkts: Vec<OwnedBuf> = frames.iter().map(|(f, p)| OwnedBuf::from_frame(f, *p)).collect();
            let mut v = vec![Verdict::Drop(DropReason::NoRoute); 64];
            let start = Instant::now();
            while running.load(Ordering::Relaxed) {
                for (p, (f, port)) in pkts.iter_mut().zip(&frames) {
                    p.load(f, *port, 128);
                }
                let t = cell.load();
                w.process(&t, start.elapsed().as_nanos() as u64, &mut pkts, &mut v);
                sent.fetch_add(64, Ordering::Relaxed);
                lost.fetch_add(v.iter().filter(|v| !matches!(v, Verdict::Tx(_))).count() as u64, Ordering::Relaxed);
                while let Ok(cmd) = cmd_rx.try_recv() {
                    match cmd {
                        WorkerCmd::AttachPort { port, interface, mut share, reply } => {
                            let r = be.attach_port(port, &interface, &mut share).map(|()| share);
                            let _ = reply.send(r.map_err(|e| e.to_string()));
                        }
                        WorkerCmd::DetachPort { port, reply } => {
                            w.forget_port(port);
                            let _ = reply.send(be.detach_port(port));
                        }
                        other => control::controller::serve_worker_cmd(other, &mut w, &t, 0, 0),
                    }
                }
                while let Ok((f, port, reply)) = probe_rx.try_recv() {
                    let mut p = [OwnedBuf::from_frame(&f, port)];
                    let mut pv = [Verdict::Drop(DropReason::NoRoute)];
                    w.process(&cell.load(), start.elapsed().as_nanos() as u64, &mut p, &mut pv);
                    let _ = reply.send(pv[0]);
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    let probe = |f: (Vec<u8>, PortId)| -> Verdict {
        let (tx, rx) = mpsc::channel();
        probe_tx.send((f.0, f.1, tx)).expect("worker");
        rx.recv_timeout(Duration::from_secs(10)).expect("probe answered")
    };
    let (sent0, lost0) = (sent.load(Ordering::Relaxed), lost.load(Ordering::Relaxed));
    let mut attach_ms = Vec::new();
    let mut rpc_ms = Vec::new();
    let mut detach_ms = Vec::new();
    let t_churn = Instant::now();
    rt.block_on(async {
        let mut client = control::api::client::connect(socket.clone()).await.expect("connect");
        for n in 0..attaches {
            let cid = format!("bench{n:08}");
            let t0 = Instant::now();
            let a = client
                .cni_add(pb::CniAddRequest {
                    r#ref: Some(pb::CniRef { container_id: cid.clone(), ifname: "eth0".into() }),
                    netns: format!("/run/netns/{cid}"),
                    host_interface: format!("psw{n:08}"),
                    mac: format!("02:00:00:01:{:02x}:{:02x}", (n >> 8) & 0xff, n & 0xff),
                    pod_namespace: "bench".into(),
                    pod_name: format!("att{n}"),
                    annotations: [("podswitch.io/labels".to_string(), "app=attached".to_string())].into(),
                })
                .await
                .expect("attach")
                .into_inner();
            let rpc = t0.elapsed();
            let ip = a.ips[0].address.split('/').next().expect("address").to_string();
            let ok = probe(from_local(0, &ip, 8080, 30000 + n as u16, 0x02));
            assert_eq!(ok, Verdict::Tx(PortId(a.port_id as u16)), "p0 reaches the new pod through its new port");
            let denied = probe(from_local(2, &ip, 8080, 30000 + n as u16, 0x02));
            assert!(matches!(denied, Verdict::Drop(r) if r.name().starts_with("policy")), "p2 is denied: {denied:?}");
            attach_ms.push(t0.elapsed().as_secs_f64() * 1e3);
            rpc_ms.push(rpc.as_secs_f64() * 1e3);
            let t1 = Instant::now();
            client.cni_del(pb::CniRef { container_id: cid, ifname: "eth0".into() }).await.expect("detach");
            detach_ms.push(t1.elapsed().as_secs_f64() * 1e3);
        }
    });
    let churn = t_churn.elapsed();
    running.store(false, Ordering::Relaxed);
    let _ = worker.join();
    let (sent, lost) = (sent.load(Ordering::Relaxed) - sent0, lost.load(Ordering::Relaxed) - lost0);
    println!(
        "attach, CniAdd to first packet forwarded with policy in force: p50 {:.1} ms, p99 {:.1} ms (target p99 20 ms); CniAdd RPC alone p50 {:.1} ms",
        percentile(&mut attach_ms, 0.5),
        percentile(&mut attach_ms, 0.99),
        percentile(&mut rpc_ms, 0.5)
    );
    println!(
        "detach (CniDel): p50 {:.1} ms, p99 {:.1} ms",
        percentile(&mut detach_ms, 0.5),
        percentile(&mut detach_ms, 0.99)
    );
    println!(
        "churn: {:.1} pods attached and detached per second; established flows of other pods: {sent} packets forwarded, {lost} lost (target 0)",
        attaches as f64 / churn.as_secs_f64()
    );
    stop.store(true, Ordering::Relaxed);
    let _ = server.join();
    let _ = std::fs::remove_dir_all(&dir);
}
