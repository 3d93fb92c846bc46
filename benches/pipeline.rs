//! Whole-pipeline cost per packet on one core with in-memory frames, at scale (10,000
//! services x 10 backends, 10,000 policy rules, 1,000,000 tracked flows):
//! (a) established flows: conntrack hit, DNAT, VXLAN encapsulation;
//! (b) new flows: Maglev choice, egress policy over 10,000 rules, conntrack insert, encap.
//! Each includes reloading the 64 frames into their buffers (a memcpy a NIC would do), which
//! is measured alone as the in-run floor. Targets (issue): (a) 20 Mpps, (b) 5 Mpps per core.
//! Also: what deciding each frame's flow owner adds when a node runs two workers.

use criterion::{criterion_group, Criterion, Throughput};
use podswitch_benches::*;
use std::time::{Duration, Instant};
use switch_core::pipeline::BATCH;

fn bench(c: &mut Criterion) {
    let t0 = Instant::now();
    let t = tables();
    let mut w = worker();
    let mut now = 10 * SEC;
    prefill(&mut w, &t, now);
    eprintln!(
        "set-up: {} service ports, {} policy rules, {} conntrack entries, in {:.1}s",
        t.services.ports().len(),
        t.policy.rule_count(),
        w.conntrack().entries(),
        t0.elapsed().as_secs_f64()
    );
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(30);

    let mut reload = established_ring();
    g.bench_function("reload_only_64", |b| b.iter(|| reload.load()));

    let mut est = established_ring();
    est.load();
    w.process(&t, now, &mut est.bufs, &mut est.verdicts);
    assert_forwarded(&est);
    g.bench_function("established_ct_hit_nat_vxlan_64", |b| {
        b.iter(|| {
            est.load();
            w.process(&t, now, &mut est.bufs, &mut est.verdicts);
        })
    });

    let mut newf = new_flow_ring();
    g.bench_function("new_flow_maglev_policy_ct_insert_64", |b| {
        b.iter(|| {
            let wraps = newf.wraps;
            newf.load();
            if newf.wraps != wraps {
                now += NEW_FLOW_WRAP_NS;
            }
            w.process(&t, now, &mut newf.bufs, &mut newf.verdicts);
        })
    });
    assert_forwarded(&newf);

    // The handoff decision of a node with two workers: stage 1 alone, then stage 1 and the
    // flow owner; the difference is what several workers add per packet before handing over.
    let mut w2 = switch_core::pipeline::Worker::new(switch_core::pipeline::WorkerConfig {
        count: 2,
        ..switch_core::pipeline::WorkerConfig::default()
    });
    let mut rx = established_ring();
    g.bench_function("receive_only_64", |b| {
        b.iter(|| {
            rx.load();
            w2.receive(&t, 1, &mut rx.bufs[..BATCH], 0);
        })
    });
    g.bench_function("receive_and_flow_owner_64", |b| {
        b.iter(|| {
            rx.load();
            w2.receive(&t, 1, &mut rx.bufs[..BATCH], 0);
            owners(&t, &w2, &rx)
        })
    });
    g.finish();
    summary(&t, &mut w, now);
}

/// The owner of each frame of the batch, folded so the work is not optimised away.
fn owners(t: &switch_core::snapshot::Tables, w: &switch_core::pipeline::Worker, r: &Ring) -> u32 {
    use switch_core::packet::PacketBuf;
    r.bufs[..BATCH].iter().enumerate().map(|(i, b)| u32::from(w.owner(t, b.data(), i))).sum()
}

/// The figures the README quotes, timed directly: median of 5 runs of 20,000 batches.
fn summary(t: &switch_core::snapshot::Tables, w: &mut switch_core::pipeline::Worker, mut now: u64) {
    let runs = 5;
    let batches = 20_000;
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let mut reload = established_ring();
    let floor = median(
        (0..runs)
            .map(|_| {
                let s = Instant::now();
                for _ in 0..batches {
                    reload.load();
                }
                s.elapsed().as_nanos() as f64 / (batches * BATCH) as f64
            })
            .collect(),
    );
    let mut est = established_ring();
    let a = median(
        (0..runs)
            .map(|_| {
                let s = Instant::now();
                for _ in 0..batches {
                    est.load();
                    w.process(t, now, &mut est.bufs, &mut est.verdicts);
                }
                s.elapsed().as_nanos() as f64 / (batches * BATCH) as f64
            })
            .collect(),
    );
    let mut newf = new_flow_ring();
    let b = median(
        (0..runs)
            .map(|_| {
                let s = Instant::now();
                for _ in 0..batches {
                    let wraps = newf.wraps;
                    newf.load();
                    if newf.wraps != wraps {
                        now += NEW_FLOW_WRAP_NS;
                    }
                    w.process(t, now, &mut newf.bufs, &mut newf.verdicts);
                }
                s.elapsed().as_nanos() as f64 / (batches * BATCH) as f64
            })
            .collect(),
    );
    let mut w2 = switch_core::pipeline::Worker::new(switch_core::pipeline::WorkerConfig {
        count: 2,
        ..switch_core::pipeline::WorkerConfig::default()
    });
    let mut rx = established_ring();
    let mut spread = 0u32;
    let mut time_rx = |with_owner: bool| {
        median(
            (0..runs)
                .map(|_| {
                    let s = Instant::now();
                    for _ in 0..batches {
                        rx.load();
                        w2.receive(t, 1, &mut rx.bufs[..BATCH], 0);
                        if with_owner {
                            spread += owners(t, &w2, &rx);
                        }
                    }
                    s.elapsed().as_nanos() as f64 / (batches * BATCH) as f64
                })
                .collect(),
        )
    };
    let recv = time_rx(false);
    let owner = time_rx(true) - recv;
    println!("\n== podswitch pipeline, one core, {SERVICES} services x {BACKENDS} backends, {RULES} rules, {} tracked flows ==", w.conntrack().entries() / 2);
    println!("{:<44} {:>9} {:>10} {:>12}", "case", "ns/pkt", "Mpps", "vs target");
    println!("{:<44} {:>9.1} {:>10.2} {:>12}", "frame reload alone (floor)", floor, 1e3 / floor, "-");
    println!(
        "{:<44} {:>9.1} {:>10.2} {:>11.2}x",
        "(a) established: ct hit + NAT + VXLAN",
        a,
        1e3 / a,
        (1e3 / a) / 20.0
    );
    println!(
        "{:<44} {:>9.1} {:>10.2} {:>11.2}x",
        "(b) new flow: Maglev + policy + ct insert",
        b,
        1e3 / b,
        (1e3 / b) / 5.0
    );
    println!("{:<44} {:>9.1} {:>10} {:>12}", "flow owner for a 2-worker handoff (added)", owner, "-", "-");
    let share = f64::from(spread) / (runs * batches * BATCH) as f64;
    println!("  ({:.0}% of these flows belong to the second worker)", share * 100.0);
    println!(
        "targets: (a) 20 Mpps, (b) 5 Mpps per core; published: Katran ~5 Mpps/core, VPP LB >3 Mpps/core at 1M flows"
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
