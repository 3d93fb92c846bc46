//! A node programmed through the control plane exactly as the daemon is (manifests ->
//! [`Controller`] -> published snapshot), with packets sent through the real pipeline: the
//! upstream network-policy test model (namespaces x, y, z; pods a, b, c) plus a remote node,
//! an uplink and a host port for service tests.

use control::api::pb;
use control::controller::Controller;
use std::net::IpAddr;
use std::sync::Arc;
use switch_core::drop::DropReason;
use switch_core::packet::{OwnedBuf, PacketBuf, PortId};
use switch_core::pipeline::{Verdict, Worker, WorkerConfig};
use switch_core::wire::build::{IpFrame, L4Repr};
use switch_core::wire::l4::tcp_flags;
use switch_core::wire::MacAddr;

pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
pub const PODS: [&str; 3] = ["a", "b", "c"];
pub const ROUTER_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
pub const UPLINK_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 0x10]);
pub const NODE_IP: &str = "192.168.77.10";

/// One of the nine model pods.
#[derive(Debug, Clone)]
pub struct ModelPod {
    pub namespace: &'static str,
    pub name: &'static str,
    pub ip: IpAddr,
    pub mac: MacAddr,
    pub port: PortId,
}

impl ModelPod {
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The node and its controller.
#[derive(Debug)]
pub struct Model {
    pub c: Arc<Controller>,
    pub pods: Vec<ModelPod>,
    pub uplink: PortId,
}

fn base_toml() -> String {
    let mut s = format!(
        "[node]\nname = \"node-1\"\nipv4 = \"{NODE_IP}\"\nipv6 = \"fd00:77::10\"\npod_cidrs = [\"10.244.1.0/24\", \"fd00:244:1::/64\"]\nrouter_mac = \"{ROUTER_MAC}\"\nuplink_mac = \"{UPLINK_MAC}\"\ngateway_mac = \"02:00:00:00:0f:01\"\n\n[[nodes]]\nname = \"node-2\"\nip = \"192.168.77.20\"\nmac = \"02:00:00:00:01:20\"\npod_cidrs = [\"10.244.2.0/24\"]\n\n"
    );
    for ns in NAMESPACES {
        for p in PODS {
            s.push_str(&format!("[[ports]]\nname = \"{ns}-{p}\"\nkind = \"pod\"\n\n"));
        }
    }
    s.push_str("[[ports]]\nname = \"uplink\"\nkind = \"uplink\"\n");
    s
}

/// The model's Namespace and Pod manifests (pods serve 80 and 81 over TCP, UDP and SCTP,
/// with upstream's port names such as `serve-80-tcp`).
pub fn model_yaml() -> String {
    let mut y = String::new();
    for ns in NAMESPACES {
        y.push_str(&format!("---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{ns: {ns}}}}}\n"));
    }
    for (i, ns) in NAMESPACES.iter().enumerate() {
        for (j, p) in PODS.iter().enumerate() {
            let n = i * 3 + j + 1;
            let mut ports = String::new();
            for port in [80, 81] {
                for proto in ["TCP", "UDP", "SCTP"] {
                    ports.push_str(&format!(
                        "    - {{name: serve-{port}-{}, containerPort: {port}, protocol: {proto}}}\n",
                        proto.to_lowercase()
                    ));
                }
            }
            y.push_str(&format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {p}\n  namespace: {ns}\n  labels: {{pod: {p}}}\n  annotations: {{podswitch.io/port: {ns}-{p}, podswitch.io/mac: \"02:00:00:00:02:{n:02x}\"}}\nspec:\n  nodeName: node-1\n  containers:\n  - name: c\n    ports:\n{ports}status:\n  podIPs: [{{ip: 10.244.1.{n}}}, {{ip: \"fd00:244:1::{n:x}\"}}]\n"
            ));
        }
    }
    y
}

/// YAML as a gRPC request carries it.
pub fn manifest(yaml: &str) -> pb::Manifest {
    pb::Manifest { format: "yaml".into(), source: "test".into(), content: yaml.into() }
}

/// YAML as the controller takes it.
pub fn doc(yaml: &str) -> control::controller::Manifest {
    control::controller::Manifest { format: "yaml".into(), source: "test".into(), content: yaml.into() }
}

impl Model {
    /// The node with the nine pods applied through the controller.
    pub fn new() -> Model {
        Model::build(None, "")
    }

    /// As [`Model::new`] with more TOML after the base config (a `[datapath]` section).
    pub fn with_toml(extra: &str) -> Model {
        Model::build(None, extra)
    }

    /// As [`Model::new`] for a daemon running `n` workers, whose first service change is
    /// already incremental (as the daemon's is).
    pub fn with_workers(n: u16) -> Model {
        Model::build(Some(n), "")
    }

    fn build(workers: Option<u16>, extra: &str) -> Model {
        let text = format!("{}\n{extra}", base_toml());
        let dir = std::env::temp_dir();
        let built = control::build::build_text(&text, std::path::Path::new("model.toml"), &dir, 1).expect("base");
        let cfg: control::config::Config = toml::from_str(&text).expect("base parses");
        let cell = Arc::new(control::publish::SnapshotCell::new(built.tables));
        let c = Controller::new(cfg, built.ports, cell, dir, None).with_ids(built.ids);
        let c = Arc::new(match workers {
            Some(n) => c.with_workers(n).with_services(built.services),
            None => c,
        });
        let m = Model { c, pods: Vec::new(), uplink: PortId(9) };
        m.apply(&model_yaml());
        let mut pods = Vec::new();
        for (i, ns) in NAMESPACES.iter().enumerate() {
            for (j, p) in PODS.iter().enumerate() {
                let n = i * 3 + j + 1;
                pods.push(ModelPod {
                    namespace: ns,
                    name: p,
                    ip: format!("10.244.1.{n}").parse().expect("ip"),
                    mac: MacAddr([2, 0, 0, 0, 2, n as u8]),
                    port: PortId((i * 3 + j) as u16),
                });
            }
        }
        Model { pods, ..m }
    }

    /// Applies YAML; panics with the daemon's message when refused.
    pub fn apply(&self, yaml: &str) -> u64 {
        match self.c.apply(&[doc(yaml)], false) {
            Ok(o) => o.generation,
            Err(e) => panic!("apply refused: {e}"),
        }
    }

    /// Applies YAML expecting a refusal; returns its message.
    pub fn refuse(&self, yaml: &str) -> String {
        match self.c.apply(&[doc(yaml)], false) {
            Ok(_) => panic!("apply accepted, expected a refusal:\n{yaml}"),
            Err(e) => e.to_string(),
        }
    }

    pub fn delete(&self, kind: &str, namespace: &str, name: &str) {
        let r = control::controller::ObjectRef { kind: kind.into(), namespace: namespace.into(), name: name.into() };
        if let Err(e) = self.c.delete(&[r], &[], false) {
            panic!("delete refused: {e}");
        }
    }

    pub fn pod(&self, id: &str) -> &ModelPod {
        self.pods.iter().find(|p| p.id() == id).unwrap_or_else(|| panic!("no pod {id}"))
    }

    /// Sends one packet through `w` on the current snapshot; returns the verdict and the
    /// frame after it.
    pub fn send(&self, w: &mut Worker, frame: Vec<u8>, port: PortId) -> (Verdict, Vec<u8>) {
        self.send_at(w, frame, port, 1_000_000)
    }

    /// [`Model::send`] at time `now` (nanoseconds).
    pub fn send_at(&self, w: &mut Worker, frame: Vec<u8>, port: PortId, now: u64) -> (Verdict, Vec<u8>) {
        let t = self.c.cell().load_full();
        let mut pkts = [OwnedBuf::from_frame(&frame, port)];
        let mut v = [Verdict::Drop(DropReason::NoRoute)];
        w.process(&t, now, &mut pkts, &mut v);
        (v[0], pkts[0].data().to_vec())
    }

    pub fn worker(&self) -> Worker {
        self.worker_with(WorkerConfig::default())
    }

    /// A worker with `cfg`'s sizes and timeouts, for the model's ports.
    pub fn worker_with(&self, cfg: WorkerConfig) -> Worker {
        Worker::new(WorkerConfig { max_ports: 16, ..cfg })
    }

    /// A new-flow packet from a model pod to `dst`.
    pub fn frame_from(&self, from: &ModelPod, dst: IpAddr, port: u16, proto: &str, sport: u16) -> Vec<u8> {
        IpFrame::new(from.mac, ROUTER_MAC, from.ip, dst, l4(proto, sport, port)).build()
    }
}

impl Default for Model {
    fn default() -> Self {
        Model::new()
    }
}

pub fn l4(proto: &str, sport: u16, dport: u16) -> L4Repr {
    match proto {
        "TCP" => L4Repr::Tcp { sport, dport, seq: 1, ack: 0, flags: tcp_flags::SYN },
        "UDP" => L4Repr::Udp { sport, dport },
        "SCTP" => L4Repr::Sctp { sport, dport },
        p => panic!("protocol {p}"),
    }
}

/// Expected reachability between the nine pods, as the upstream tests write it: everything
/// allowed, then pairs switched off or on by namespace and pod patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reachability {
    pub m: [[bool; 9]; 9],
}

fn matches(pattern: &str, i: usize) -> bool {
    let (ns, p) = pattern.split_once('/').unwrap_or((pattern, "*"));
    (ns == "*" || ns == NAMESPACES[i / 3]) && (p == "*" || p == PODS[i % 3])
}

impl Reachability {
    pub fn all(v: bool) -> Reachability {
        Reachability { m: [[v; 9]; 9] }
    }

    /// Sets `from -> to` for every pair the patterns (`x/a`, `x/*`, `*/b`, `*`) select.
    pub fn set(mut self, from: &str, to: &str, v: bool) -> Reachability {
        for i in 0..9 {
            for j in 0..9 {
                if matches(from, i) && matches(to, j) {
                    self.m[i][j] = v;
                }
            }
        }
        self
    }

    /// The truth table, upstream's way: rows are sources, columns destinations, "." for
    /// allowed, "X" for denied, "-" for a pod to itself (never through the switch).
    pub fn render(&self) -> String {
        let name = |i: usize| format!("{}/{}", NAMESPACES[i / 3], PODS[i % 3]);
        let mut s = String::from("      ");
        for j in 0..9 {
            s.push_str(&format!("{} ", name(j)));
        }
        s.push('\n');
        for i in 0..9 {
            s.push_str(&format!("{}   ", name(i)));
            for j in 0..9 {
                let c = if i == j {
                    '-'
                } else if self.m[i][j] {
                    '.'
                } else {
                    'X'
                };
                s.push_str(&format!(" {c}  "));
            }
            s.push('\n');
        }
        s
    }
}

impl Model {
    /// Probes all 72 pairs (a pod to itself never crosses the switch) on one port and
    /// protocol, each as a new flow in a fresh worker. A drop for any reason other than policy
    /// fails the test.
    pub fn probe(&self, port: u16, proto: &str) -> Reachability {
        let mut r = Reachability::all(true);
        for (i, from) in self.pods.iter().enumerate() {
            for (j, to) in self.pods.iter().enumerate() {
                if i == j {
                    continue;
                }
                let mut w = self.worker();
                let (v, _) = self.send(&mut w, self.frame_from(from, to.ip, port, proto, 40000), from.port);
                r.m[i][j] = match v {
                    Verdict::Tx(p) if p == to.port => true,
                    Verdict::Drop(DropReason::PolicyDeniedEgress | DropReason::PolicyDeniedIngress) => false,
                    other => panic!("{} -> {} {proto}/{port}: unexpected {other:?}", from.id(), to.id()),
                };
            }
        }
        for (i, row) in r.m.iter_mut().enumerate() {
            row[i] = true;
        }
        r
    }

    /// Checks `want` on port `port` over `protos`, printing both tables on a mismatch.
    pub fn expect(&self, what: &str, port: u16, protos: &[&str], want: &Reachability) {
        let mut want = want.clone();
        for (i, row) in want.m.iter_mut().enumerate() {
            row[i] = true;
        }
        for proto in protos {
            let got = self.probe(port, proto);
            assert!(
                got == want,
                "{what}: {proto}/{port} reachability differs\nexpected:\n{}\ngot:\n{}",
                want.render(),
                got.render()
            );
        }
    }
}

/// How a probe reaches its destination pod: directly, or through one of the addresses of a
/// Service that selects just that pod (see [`Model::expose_each_pod`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    ClusterIp,
    NodePort,
    LoadBalancer,
    ExternalIp,
}

impl Path {
    pub const ALL: [Path; 4] = [Path::ClusterIp, Path::NodePort, Path::LoadBalancer, Path::ExternalIp];

    /// The address and port that reach model pod `n` (0..9) this way.
    pub fn frontend(self, n: usize, port: u16) -> (IpAddr, u16) {
        let ip = |s: String| s.parse::<IpAddr>().expect("frontend address");
        match self {
            Path::ClusterIp => (ip(format!("10.96.1.{}", n + 1)), port),
            Path::NodePort => (ip(NODE_IP.to_string()), node_port(n, port)),
            Path::LoadBalancer => (ip(format!("192.168.99.{}", n + 1)), port),
            Path::ExternalIp => (ip(format!("192.168.98.{}", n + 1)), port),
        }
    }
}

fn node_port(n: usize, port: u16) -> u16 {
    30000 + (n as u16) * 10 + port - 80
}

/// An address outside the cluster (documentation range, never routed anywhere).
pub const OUTSIDE_CLIENT: &str = "192.0.2.7";

impl Model {
    /// One LoadBalancer Service per model pod (`<ns>/to-<pod>`, selecting just that pod,
    /// ports 80 and 81 for TCP, UDP and SCTP, externalTrafficPolicy Cluster) with a cluster
    /// IP, node ports, a load-balancer IP and an external IP ([`Path::frontend`]).
    pub fn expose_each_pod(&self) {
        let mut y = String::new();
        for (n, p) in self.pods.iter().enumerate() {
            let (cip, _) = Path::ClusterIp.frontend(n, 80);
            let (lb, _) = Path::LoadBalancer.frontend(n, 80);
            let (ext, _) = Path::ExternalIp.frontend(n, 80);
            let mut ports = String::new();
            for port in [80u16, 81] {
                for proto in ["TCP", "UDP", "SCTP"] {
                    ports.push_str(&format!(
                        "  - {{name: p{port}-{}, port: {port}, targetPort: {port}, protocol: {proto}, nodePort: {}}}\n",
                        proto.to_lowercase(),
                        node_port(n, port)
                    ));
                }
            }
            y.push_str(&format!(
                "---\napiVersion: v1\nkind: Service\nmetadata: {{name: to-{}, namespace: {}}}\nspec:\n  type: LoadBalancer\n  clusterIP: {cip}\n  externalIPs: [{ext}]\n  selector: {{pod: {}}}\n  ports:\n{ports}status: {{loadBalancer: {{ingress: [{{ip: {lb}}}]}}}}\n",
                p.name, p.namespace, p.name
            ));
        }
        self.apply(&y);
    }

    /// Probes every pod pair through `path` (a pod reaching itself is hairpin traffic and is
    /// judged like any other), plus an outside client on the uplink for the external paths.
    /// Returns the matrix and the outside client's row.
    pub fn probe_via(&self, path: Path, port: u16, proto: &str) -> (Reachability, [bool; 9]) {
        let mut r = Reachability::all(true);
        let judge = |v: Verdict, to: &ModelPod, what: &str| match v {
            Verdict::Tx(p) if p == to.port => true,
            Verdict::Drop(DropReason::PolicyDeniedEgress | DropReason::PolicyDeniedIngress) => false,
            other => panic!("{what} -> {} {proto}/{port} via {path:?}: unexpected {other:?}", to.id()),
        };
        for (i, from) in self.pods.iter().enumerate() {
            for (j, to) in self.pods.iter().enumerate() {
                let (dst, dport) = path.frontend(j, port);
                let mut w = self.worker();
                let (v, _) = self.send(&mut w, self.frame_from(from, dst, dport, proto, 40000), from.port);
                r.m[i][j] = judge(v, to, &from.id());
            }
        }
        let mut outside = [true; 9];
        if path != Path::ClusterIp {
            for (j, to) in self.pods.iter().enumerate() {
                let (dst, dport) = path.frontend(j, port);
                let src: IpAddr = OUTSIDE_CLIENT.parse().expect("ip");
                let f =
                    IpFrame::new(MacAddr([2, 0, 0, 0, 0x0f, 1]), UPLINK_MAC, src, dst, l4(proto, 50000, dport)).build();
                let mut w = self.worker();
                let (v, _) = self.send(&mut w, f, self.uplink);
                outside[j] = judge(v, to, "outside client");
            }
        }
        (r, outside)
    }

    /// Checks `want` (hairpin included, on the diagonal) and the outside client's row through
    /// every service path, printing both tables on a mismatch.
    pub fn expect_via(&self, what: &str, port: u16, protos: &[&str], want: &Reachability, outside: [bool; 9]) {
        for path in Path::ALL {
            for proto in protos {
                let (got, got_out) = self.probe_via(path, port, proto);
                assert!(
                    got == *want,
                    "{what}: {proto}/{port} via {path:?} reachability differs (diagonal: hairpin)\nexpected:\n{}\ngot:\n{}",
                    want.render_with_diagonal(),
                    got.render_with_diagonal()
                );
                if path != Path::ClusterIp {
                    assert_eq!(
                        got_out, outside,
                        "{what}: {proto}/{port} via {path:?}: outside client per destination pod"
                    );
                }
            }
        }
    }
}

impl Reachability {
    /// [`Reachability::render`] with the diagonal shown (hairpin through a service).
    pub fn render_with_diagonal(&self) -> String {
        let mut s = self.render();
        for i in 0..9 {
            s.push_str(&format!("hairpin {}/{}: {}\n", NAMESPACES[i / 3], PODS[i % 3], self.m[i][i]));
        }
        s
    }
}
