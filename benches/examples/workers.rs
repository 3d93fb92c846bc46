//! Forwarding throughput of one worker against two workers that hand frames to each other,
//! on this machine's cores with no traffic generator competing for them (the netns benchmark
//! on two cores cannot show this: its generator needs one of them). Each worker replays
//! established flows (conntrack hit, DNAT to one of 10,000 services, VXLAN encapsulation) from
//! its own in-memory receive queue; flows are dealt to the queues without regard to who owns
//! them, as a multi-queue veth or a NIC without symmetric RSS does, so about half of what a
//! worker receives belongs to the other one and goes through the handoff rings.
//!
//!   cargo run --release -p podswitch-benches --example workers [-- SECONDS]

use io_backends::handoff::{mesh, Dispatch};
use io_backends::memory::MemoryBackend;
use io_backends::Batch;
use podswitch_benches::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switch_core::packet::{OwnedBuf, PacketBuf};
use switch_core::pipeline::{Verdict, Worker, WorkerConfig, BATCH};
use switch_core::snapshot::Tables;
use switch_core::testbed::UPLINK;
use switch_core::wire::build::{IpFrame, L4Repr};
use switch_core::wire::l4::tcp_flags::ACK;

/// Established flows replayed (spread over all services).
const REPLAYED: usize = 65_536;

/// Flow `i`: pod a to service `i % SERVICES` from its own source port (as a client's
/// connections have), established.
fn replayed_frame(i: usize) -> Vec<u8> {
    let vip = switch_core::testbed::synthetic_vip(i % SERVICES).to_ip();
    let src = switch_core::testbed::POD_A_IP.parse().expect("pod a");
    let l4 = L4Repr::Tcp { sport: 1024 + (i % 60_000) as u16, dport: 80, seq: 1, ack: 1, flags: ACK };
    IpFrame::new(switch_core::testbed::POD_A_MAC, switch_core::testbed::ROUTER_MAC, src, vip, l4).build()
}

/// The worker of `n` that owns flow `i`.
fn owner(t: &Tables, i: usize, n: usize) -> usize {
    let f = replayed_frame(i);
    let m = switch_core::parse::parse(&f, switch_core::parse::ParseOptions::default()).expect("frame parses");
    let x = switch_core::conntrack::Tuple { src: m.src, dst: m.dst, sport: m.sport, dport: m.dport };
    usize::from(switch_core::pipeline::owner::owner_of(t, x, m.proto, n as u16))
}

/// Frames out per second with `n` workers over `secs` (after one pass that creates every
/// flow's conntrack entry at its owner), and the share of frames handed over.
fn run(t: &Arc<Tables>, n: usize, secs: f64, presteered: bool) -> (f64, f64) {
    let links: Vec<_> = if n > 1 { mesh(n, 512).unwrap().into_iter().map(Some).collect() } else { vec![None] };
    let stop = Arc::new(AtomicBool::new(false));
    let go = Arc::new(std::sync::Barrier::new(n + 1));
    let threads: Vec<_> = links
        .into_iter()
        .enumerate()
        .map(|(k, l)| {
            let (t, stop, go) = (Arc::clone(t), Arc::clone(&stop), Arc::clone(&go));
            std::thread::spawn(move || {
                let _ = io_backends::sys::pin_to_cpu(k % io_backends::sys::cpus());
                // Flows dealt round robin, or (presteered) each to its owner's queue, as a NIC
                // with symmetric RSS matching the owner function would: the scaling ceiling.
                let mine = |i: &usize| if presteered { owner(&t, *i, n) == k } else { i % n == k };
                let mut be = MemoryBackend::new(8, 1024);
                be.replay = true;
                be.record_tx = false;
                for i in (0..REPLAYED).filter(mine) {
                    be.inject(IN_PORT, &replayed_frame(i));
                }
                let cfg = WorkerConfig {
                    index: k as u16,
                    count: n as u16,
                    conntrack_flows: 1 << 18,
                    ..WorkerConfig::default()
                };
                let mut w = Worker::new(cfg);
                let mut d = Dispatch::new(&mut be, l);
                let mut batch = Batch::with_capacity(BATCH);
                // Every flow once (and the others' frames taken in), then measure.
                let warm = Instant::now();
                while warm.elapsed() < Duration::from_millis(300) {
                    d.step(&mut be, &mut w, &mut batch, || (&*t, 10 * SEC));
                }
                go.wait();
                let (sent0, handed0) = (be.sent(UPLINK), w.stats().events.handed_off);
                let rx0 = w.stats().ports.iter().map(|p| p.rx_packets).sum::<u64>();
                while !stop.load(Ordering::Relaxed) {
                    d.step(&mut be, &mut w, &mut batch, || (&*t, 10 * SEC));
                }
                let rx = w.stats().ports.iter().map(|p| p.rx_packets).sum::<u64>() - rx0;
                // Drain what others handed over before they stopped, so no thread waits.
                for _ in 0..64 {
                    d.step(&mut be, &mut w, &mut batch, || (&*t, 10 * SEC));
                }
                (be.sent(UPLINK) - sent0, w.stats().events.handed_off - handed0, rx)
            })
        })
        .collect();
    go.wait();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    let (mut sent, mut handed, mut rx) = (0, 0, 0);
    for th in threads {
        let (s, h, r) = th.join().unwrap();
        sent += s;
        handed += h;
        rx += r;
    }
    (sent as f64 / elapsed, handed as f64 / rx.max(1) as f64)
}

fn main() {
    let secs: f64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let t = Arc::new(tables());
    // Check the frames are forwarded, so the figures never measure drops.
    {
        let mut w = Worker::new(WorkerConfig::default());
        let mut bufs = [OwnedBuf::from_frame(&replayed_frame(7), IN_PORT)];
        let mut v = [Verdict::Drop(switch_core::drop::DropReason::NoRoute)];
        w.process(&t, 10 * SEC, &mut bufs, &mut v);
        assert_eq!(v[0], Verdict::Tx(UPLINK), "{:?}", bufs[0].data().len());
    }
    let cpus = io_backends::sys::cpus();
    println!(
        "== workers: established flows (ct hit + DNAT + VXLAN), {REPLAYED} flows over {SERVICES} services, {cpus} CPUs, {secs}s each =="
    );
    let runs = 3;
    let mut results = Vec::new();
    for (n, presteered, what) in [
        (1usize, false, "1 worker"),
        (2, false, "2 workers, flows dealt to queues at random"),
        (2, true, "2 workers, flows on their owner's queue"),
    ] {
        // PODSWITCH_WORKERS_ONLY=N runs only the N-th case (for profiling).
        if std::env::var("PODSWITCH_WORKERS_ONLY").is_ok_and(|v| v != results.len().to_string()) {
            results.push(f64::NAN);
            continue;
        }
        let mut v: Vec<(f64, f64)> = (0..runs).map(|_| run(&t, n, secs, presteered)).collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (min, med, max) = (v[0].0, v[runs / 2].0, v[runs - 1].0);
        println!(
            "{what:<44} {:>6.2} / {:>6.2} / {:>6.2} Mpps (min/median/max); {:.0}% handed over",
            min / 1e6,
            med / 1e6,
            max / 1e6,
            v[runs / 2].1 * 100.0
        );
        results.push(med);
    }
    println!(
        "ratios: handoff {:.2}, presteered {:.2} (2 workers / 1 worker)",
        results[1] / results[0],
        results[2] / results[0]
    );
}
