//! The packet path allocates nothing after start-up: a counting global allocator watches
//! `Worker::process` over new flows, established flows, service NAT, policy, encapsulation,
//! decapsulation, ARP and refusals, and two workers handing frames to each other.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use switch_core::drop::DropReason;
use switch_core::packet::{OwnedBuf, PortId};
use switch_core::pipeline::{Verdict, Worker, WorkerConfig};
use switch_core::testbed::{self as tb, Scale};
use switch_core::wire::build::{self, IpFrame, L4Repr, TunnelKind};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a side
// effect that does not touch the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract for `alloc` is passed through.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from `System.alloc` with layout `l`, per the caller's contract.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract for `realloc` is passed through.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The count is process-wide: one test at a time.
static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

#[test]
fn pipeline_does_not_allocate_per_packet() {
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let t = tb::tables(Scale { services: 100, backends: 4, policy_rules: 200, ..Scale::default() });
    let mut w = Worker::new(WorkerConfig::default());
    let mut frames: Vec<(PortId, Vec<u8>)> = Vec::new();
    for i in 0..64u16 {
        let syn = IpFrame::new(
            tb::POD_A_MAC,
            tb::ROUTER_MAC,
            ip(tb::POD_A_IP),
            ip(tb::WEB_VIP),
            L4Repr::Tcp { sport: 1000 + i, dport: 80, seq: 1, ack: 0, flags: 2 },
        )
        .build();
        frames.push((tb::POD_A, syn));
        let vip = tb::synthetic_vip(usize::from(i)).to_ip();
        frames.push((
            tb::POD_A,
            IpFrame::new(
                tb::POD_A_MAC,
                tb::ROUTER_MAC,
                ip(tb::POD_A_IP),
                vip,
                L4Repr::Tcp { sport: 2000 + i, dport: 80, seq: 1, ack: 0, flags: 2 },
            )
            .build(),
        ));
    }
    frames.push((
        tb::POD_A,
        build::arp_request(tb::POD_A_MAC, tb::POD_A_IP.parse().unwrap(), "10.244.1.1".parse().unwrap()),
    ));
    frames.push((
        tb::POD_A,
        IpFrame::new(
            tb::POD_A_MAC,
            tb::ROUTER_MAC,
            ip(tb::POD_A_IP),
            ip(tb::EMPTY_VIP),
            L4Repr::Udp { sport: 9, dport: 53 },
        )
        .build(),
    ));
    let inner = IpFrame::new(
        tb::NODE2_VTEP_MAC,
        tb::VTEP_MAC,
        ip(tb::REMOTE_POD_IP),
        ip(tb::POD_B_IP),
        L4Repr::Udp { sport: 7, dport: 8 },
    )
    .build();
    frames.push((tb::UPLINK, tb::from_node2(&inner, TunnelKind::Vxlan, tb::VNI)));
    let mut bufs: Vec<OwnedBuf> = frames.iter().map(|(p, f)| OwnedBuf::from_frame(f, *p)).collect();
    let mut verdicts = vec![Verdict::Drop(DropReason::NoRoute); bufs.len()];
    // Warm-up outside the count (first touches of lazily built state, if any).
    w.process(&t, 1, &mut bufs, &mut verdicts);
    let tx = verdicts.iter().filter(|v| matches!(v, Verdict::Tx(_))).count();
    assert!(tx >= bufs.len() - 2, "most frames are forwarded: {verdicts:?}");
    ALLOCS.store(0, Ordering::SeqCst);
    for round in 0..50u64 {
        for (b, (p, f)) in bufs.iter_mut().zip(&frames) {
            b.load(f, *p, switch_core::packet::DEFAULT_HEADROOM);
        }
        COUNTING.store(true, Ordering::SeqCst);
        w.process(&t, 2 + round, &mut bufs, &mut verdicts);
        COUNTING.store(false, Ordering::SeqCst);
    }
    assert_eq!(ALLOCS.load(Ordering::SeqCst), 0, "allocations on the packet path");
}

/// Two workers handing frames to each other (the handoff rings, the buffer exchange, the
/// context copy) allocate nothing either.
#[test]
fn handoff_between_workers_does_not_allocate() {
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    use io_backends::handoff::{mesh, Dispatch};
    use io_backends::memory::MemoryBackend;
    use io_backends::Batch;
    use switch_core::pipeline::BATCH;
    let t = tb::tables(Scale::default());
    let mut be: Vec<MemoryBackend> = (0..2).map(|_| MemoryBackend::new(5, 256)).collect();
    for b in &mut be {
        b.record_tx = false;
    }
    let links = mesh(2, 128).unwrap();
    let mut d: Vec<Dispatch<MemoryBackend>> =
        be.iter_mut().zip(links).map(|(b, l)| Dispatch::new(b, Some(l))).collect();
    let mut w: Vec<Worker> =
        (0..2).map(|index| Worker::new(WorkerConfig { index, count: 2, ..WorkerConfig::default() })).collect();
    let mut batches: Vec<Batch<OwnedBuf>> = (0..2).map(|_| Batch::with_capacity(BATCH)).collect();
    // Flows from pod a to pod b (owned by a hash of both ends) and to the ClusterIP (owned by
    // pod a's address), arriving at both workers.
    let frames: Vec<Vec<u8>> = (0..64u16)
        .map(|i| {
            let dst = if i % 2 == 0 { tb::POD_B_IP } else { tb::WEB_VIP };
            let dport = if i % 2 == 0 { 9000 } else { 80 };
            IpFrame::new(
                tb::POD_A_MAC,
                tb::ROUTER_MAC,
                ip(tb::POD_A_IP),
                ip(dst),
                L4Repr::Tcp { sport: 3000 + i, dport, seq: 1, ack: 0, flags: 2 },
            )
            .build()
        })
        .collect();
    let mut round = |count: bool, now: u64| {
        for (i, f) in frames.iter().enumerate() {
            be[i % 2].inject(tb::POD_A, f);
        }
        COUNTING.store(count, Ordering::SeqCst);
        for _ in 0..8 {
            for k in 0..2 {
                d[k].step(&mut be[k], &mut w[k], &mut batches[k], || (&t, now));
            }
        }
        COUNTING.store(false, Ordering::SeqCst);
    };
    round(false, 1);
    ALLOCS.store(0, Ordering::SeqCst);
    for r in 0..20 {
        round(true, 2 + r);
    }
    assert_eq!(ALLOCS.load(Ordering::SeqCst), 0, "allocations while handing frames over");
    let handed: u64 = w.iter().map(|w| w.stats().events.handed_off).sum();
    assert!(handed >= 20 * 16, "frames changed worker: {handed}");
    let sent: u64 = be.iter().map(|b| b.sent(tb::POD_B) + b.sent(tb::POD_C)).sum();
    assert_eq!(sent, 21 * 64, "every frame was forwarded");
}
