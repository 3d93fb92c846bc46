//! Shared set-up for the benchmarks: the reference node scaled up (10,000 services with 10
//! backends each, 10,000 policy rules, 1,000,000 tracked flows), and rings of frames that
//! exercise (a) established flows and (b) new flows.

use switch_core::drop::DropReason;
use switch_core::packet::{OwnedBuf, PortId, DEFAULT_HEADROOM};
use switch_core::pipeline::{Verdict, Worker, WorkerConfig, BATCH};
use switch_core::snapshot::Tables;
use switch_core::testbed::{self as tb, synthetic_vip, Scale};
use switch_core::wire::build::{IpFrame, L4Repr};
use switch_core::wire::l4::tcp_flags::{ACK, SYN};

pub const SERVICES: usize = 10_000;
pub const BACKENDS: usize = 10;
pub const RULES: usize = 10_000;
pub const FLOWS: usize = 1_000_000;

/// Tracked flows to prefill: `FLOWS`, or `PODSWITCH_BENCH_FLOWS` to see how the figures move
/// with table size (cache and TLB effects).
pub fn flows() -> usize {
    std::env::var("PODSWITCH_BENCH_FLOWS").ok().and_then(|v| v.parse().ok()).unwrap_or(FLOWS)
}
pub const SEC: u64 = 1_000_000_000;

/// The scaled node, with transport checksums not verified on receipt (the daemon's default;
/// the testbed turns verification on for tests).
pub fn tables() -> Tables {
    scaled(16381)
}

/// The scaled node with Maglev tables of `maglev_size` slots.
pub fn scaled(maglev_size: usize) -> Tables {
    let mut t = tb::tables(Scale {
        services: SERVICES,
        backends: BACKENDS,
        policy_rules: RULES,
        maglev_size,
        ..Scale::default()
    });
    t.verify_l4_checksum = false;
    t
}

/// A worker with room for `FLOWS` plus the new-flow ring.
pub fn worker() -> Worker {
    Worker::new(WorkerConfig { conntrack_flows: flows() + (1 << 18), ..WorkerConfig::default() })
}

/// Flow `i` of the established set: pod a to synthetic service `i % SERVICES` from a distinct
/// source port. Its backends are on the remote node, so the path is conntrack hit, DNAT and
/// VXLAN encapsulation.
pub fn flow_frame(i: usize, flags: u8) -> Vec<u8> {
    let vip = synthetic_vip(i % SERVICES).to_ip();
    let sport = 1024 + (i / SERVICES) as u16;
    let src = tb::POD_A_IP.parse().expect("pod a");
    IpFrame::new(tb::POD_A_MAC, tb::ROUTER_MAC, src, vip, L4Repr::Tcp { sport, dport: 80, seq: 1, ack: 1, flags })
        .build()
}

/// A ring of frames reloaded into buffers before each batch (the pipeline rewrites in place).
pub struct Ring {
    frames: Vec<Vec<u8>>,
    pub bufs: Vec<OwnedBuf>,
    pub verdicts: Vec<Verdict>,
    at: usize,
    pub wraps: u64,
}

impl Ring {
    pub fn new(frames: Vec<Vec<u8>>) -> Ring {
        let bufs = (0..BATCH).map(|_| OwnedBuf::new(2048, DEFAULT_HEADROOM)).collect();
        Ring { frames, bufs, verdicts: vec![Verdict::Drop(DropReason::NoRoute); BATCH], at: 0, wraps: 0 }
    }

    /// Loads the next batch of frames.
    #[inline]
    pub fn load(&mut self) {
        for b in self.bufs.iter_mut() {
            if self.at == self.frames.len() {
                self.at = 0;
                self.wraps += 1;
            }
            b.load(&self.frames[self.at], tb::POD_A, DEFAULT_HEADROOM);
            self.at += 1;
        }
    }
}

/// Fills the worker's conntrack with `FLOWS` established flows (ACK packets are taken up as
/// established), in batches at time `now`.
pub fn prefill(w: &mut Worker, t: &Tables, now: u64) {
    let n = flows();
    let mut ring = Ring::new((0..n).map(|i| flow_frame(i, ACK)).collect());
    for _ in 0..n.div_ceil(BATCH) {
        ring.load();
        w.process(t, now, &mut ring.bufs, &mut ring.verdicts);
    }
}

/// Frames of established flows (a subset of the prefilled ones, spread over all services).
pub fn established_ring() -> Ring {
    Ring::new((0..4096).map(|i| flow_frame(i * 241 % flows(), ACK)).collect())
}

/// Frames that each open a new flow: SYNs from ports not used by the prefill. Advance time by
/// `NEW_FLOW_WRAP_NS` on each wrap so their earlier entries have expired.
pub fn new_flow_ring() -> Ring {
    let frames = (0..(1 << 17))
        .map(|i: usize| {
            let vip = synthetic_vip(i % SERVICES).to_ip();
            let sport = 40000 + (i / SERVICES) as u16;
            let src = tb::POD_A_IP.parse().expect("pod a");
            IpFrame::new(
                tb::POD_A_MAC,
                tb::ROUTER_MAC,
                src,
                vip,
                L4Repr::Tcp { sport, dport: 80, seq: 1, ack: 0, flags: SYN },
            )
            .build()
        })
        .collect();
    Ring::new(frames)
}

/// Longer than the default SYN timeout (60 s), far shorter than the established one (6 h).
pub const NEW_FLOW_WRAP_NS: u64 = 61 * SEC;

/// Checks that a batch went where it should (so a benchmark never measures drops).
pub fn assert_forwarded(r: &Ring) {
    for v in &r.verdicts {
        assert_eq!(*v, Verdict::Tx(tb::UPLINK), "benchmark traffic must be forwarded");
    }
}

/// The port the frames enter on.
pub const IN_PORT: PortId = tb::POD_A;

/// Manifests of the control-plane examples (`examples/apply.rs`, `examples/attach.rs`).
pub mod manifests {
    use std::fmt::Write as _;

    /// ClusterIP of service `i` (10.96.0.0/16).
    pub fn vip(i: usize) -> String {
        format!("10.96.{}.{}", (i >> 8) & 0xff, i & 0xff)
    }

    /// Address of endpoint `e` (10.128.0.0/9, on node-2).
    pub fn ep_ip(e: usize) -> String {
        format!("10.{}.{}.{}", 128 + (e >> 16), (e >> 8) & 0xff, e & 0xff)
    }

    /// `policies` NetworkPolicies in namespace `bench` of five rules each, policy i selecting
    /// pod `p{i % pods}` and admitting, per rule, a /24 ipBlock and pod `p{(i + k) % pods}` on
    /// one port: 5 * `policies` rules over `pods` local pods.
    pub fn policies(y: &mut String, policies: usize, pods: usize) {
        for i in 0..policies {
            let _ = write!(
                y,
                "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: np{i}, namespace: bench}}\nspec:\n  podSelector: {{matchLabels: {{app: p{}}}}}\n  ingress:\n",
                i % pods
            );
            for k in 0..5 {
                let _ = writeln!(
                    y,
                    "  - from: [{{ipBlock: {{cidr: 172.{}.{}.0/24}}}}, {{podSelector: {{matchLabels: {{app: p{}}}}}}}]\n    ports: [{{port: {}}}]",
                    16 + (i * 5 + k) / 65536 % 16,
                    (i * 5 + k) / 256 % 256,
                    (i + k) % pods,
                    1000 + (i * 5 + k) % 30000
                );
            }
        }
    }

    /// The `p`-quantile (0..=1) of `v` (sorted in place).
    pub fn percentile(v: &mut [f64], p: f64) -> f64 {
        v.sort_by(|a, b| a.total_cmp(b));
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    }
}
