//! A loop to run under a profiler: `perf record cargo run --release -p podswitch-benches
//! --example profile -- established|new [seconds]`. Small tables, so set-up is short and the
//! profile shows the pipeline's own cost.

use podswitch_benches::*;
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "established".into());
    let secs: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    // Small Maglev tables keep set-up short; the per-packet path is the same.
    let t = scaled(251);
    let mut w = worker();
    let mut now = 10 * SEC;
    prefill(&mut w, &t, now);
    let mut ring = if which == "new" { new_flow_ring() } else { established_ring() };
    let end = Instant::now() + Duration::from_secs(secs);
    let mut n = 0u64;
    let start = Instant::now();
    while Instant::now() < end {
        for _ in 0..1000 {
            let wraps = ring.wraps;
            ring.load();
            if ring.wraps != wraps && which == "new" {
                now += NEW_FLOW_WRAP_NS;
            }
            w.process(&t, now, &mut ring.bufs, &mut ring.verdicts);
            n += ring.bufs.len() as u64;
        }
    }
    assert_forwarded(&ring);
    println!("{which}: {:.1} ns/pkt", start.elapsed().as_nanos() as f64 / n as f64);
}
