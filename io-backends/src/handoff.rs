//! Several workers on one node: each frame is processed by the worker that owns its flow
//! (`switch_core::pipeline::owner`), whichever worker received it. Every ordered pair of
//! workers has a ring of frames (with what stage 1 learned about each, so the owner does not
//! parse again) and a ring back of free buffers: a worker pays for each frame it takes with a
//! free buffer of its own, so every worker's pool keeps its size and nothing allocates. With
//! AF_XDP all workers share one UMEM, so a frame changes hands as a descriptor, never copied.
//!
//! A worker that found nothing to do sleeps in poll(2) on its sockets and its doorbell (an
//! eventfd); a worker that hands it frames rings the doorbell, which costs a system call only
//! when the owner is asleep.

use crate::spsc::{ring, Consumer, Producer};
use crate::{sys, Backend, Batch};
use std::io;
use std::ops::Deref;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;
use switch_core::drop::DropReason;
use switch_core::packet::PacketBuf;
use switch_core::pipeline::{Received, Verdict, Worker, BATCH};
use switch_core::snapshot::Tables;

/// A frame on its way to the worker that owns its flow, with what stage 1 learned about it.
#[derive(Debug)]
pub struct Handed<T> {
    pub buf: T,
    pub rx: Received,
}

/// Wakes a sleeping worker.
#[derive(Debug)]
pub struct Doorbell {
    fd: OwnedFd,
    sleeping: AtomicBool,
}

impl Doorbell {
    pub fn new() -> io::Result<Doorbell> {
        Ok(Doorbell { fd: sys::eventfd()?, sleeping: AtomicBool::new(false) })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn ring(&self) {
        // Pairs with the fence in `Dispatch::may_sleep`: either the sleeper sees our frames, or
        // we see that it sleeps.
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) {
            sys::eventfd_signal(&self.fd);
        }
    }
}

/// One worker's ends of the rings to and from every other worker.
pub struct Links<T> {
    me: usize,
    to: Vec<Option<Producer<Handed<T>>>>,
    from: Vec<Option<Consumer<Handed<T>>>>,
    pay: Vec<Option<Producer<T>>>,
    paid: Vec<Option<Consumer<T>>>,
    bells: Vec<Arc<Doorbell>>,
}

impl<T> std::fmt::Debug for Links<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Links").field("me", &self.me).field("workers", &self.bells.len()).finish()
    }
}

impl<T> Links<T> {
    /// This worker's doorbell, to add to what its backend waits on.
    pub fn doorbell(&self) -> RawFd {
        self.bells[self.me].fd()
    }
}

/// The links of `workers` workers, with `depth` frames per ring.
pub fn mesh<T>(workers: usize, depth: usize) -> io::Result<Vec<Links<T>>> {
    let bells: Vec<Arc<Doorbell>> = (0..workers).map(|_| Doorbell::new().map(Arc::new)).collect::<io::Result<_>>()?;
    let mut links: Vec<Links<T>> = (0..workers)
        .map(|me| Links {
            me,
            to: none(workers),
            from: none(workers),
            pay: none(workers),
            paid: none(workers),
            bells: bells.clone(),
        })
        .collect();
    for i in 0..workers {
        for j in (0..workers).filter(|j| *j != i) {
            let (p, c) = ring(depth);
            links[i].to[j] = Some(p);
            links[j].from[i] = Some(c);
            // Buffers j pays i with for frames taken from i.
            let (p, c) = ring(depth);
            links[j].pay[i] = Some(p);
            links[i].paid[j] = Some(c);
        }
    }
    Ok(links)
}

/// Starts loading the cache lines of a frame handed over from another core that the pipeline
/// will write (its first bytes, and the headroom line an encapsulation header goes to), so
/// the misses overlap instead of stalling the stages one frame at a time.
#[inline]
fn prefetch_headers(data: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = data.as_ptr().cast::<i8>();
        // SAFETY: prefetching is a hint that never faults, whatever the address; the second
        // address may lie before the buffer (only when it has less headroom than a line).
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p);
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_sub(64));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

fn none<X>(n: usize) -> Vec<Option<X>> {
    (0..n).map(|_| None).collect()
}

/// The loop body of one worker: take frames handed over, receive, keep the frames of its own
/// flows and hand the others over, run the pipeline, transmit.
pub struct Dispatch<B: Backend> {
    links: Option<Links<B::Buf>>,
    keep: Batch<B::Buf>,
    verdicts: [Verdict; BATCH],
}

impl<B: Backend> std::fmt::Debug for Dispatch<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatch").field("links", &self.links).finish()
    }
}

impl<B: Backend> Dispatch<B> {
    /// A dispatcher for a worker with `links` to the others (`None` for a single worker). The
    /// backend is told to wake for the doorbell too.
    pub fn new(be: &mut B, links: Option<Links<B::Buf>>) -> Dispatch<B> {
        if let Some(l) = &links {
            be.watch_fd(l.doorbell());
        }
        Dispatch { links, keep: Batch::with_capacity(BATCH), verdicts: [Verdict::Drop(DropReason::NoRoute); BATCH] }
    }

    /// One round; returns how many frames it took in, received or handed over (0: nothing to
    /// do). `snapshot` gives the tables and the time, and is called only when there are
    /// frames, so an idle round reads neither the snapshot pointer nor the clock.
    pub fn step<G: Deref<Target = Tables>>(
        &mut self,
        be: &mut B,
        w: &mut Worker,
        batch: &mut Batch<B::Buf>,
        snapshot: impl FnOnce() -> (G, u64),
    ) -> usize {
        let handed = self.take_handed(be, w, batch);
        let mut unused = 0;
        be.rx_burst(batch, &mut unused);
        if batch.is_empty() {
            return 0;
        }
        let (t, now) = snapshot();
        let t: &Tables = &t;
        let received = batch.len() - handed;
        w.receive(t, now, &mut batch.as_mut_slice()[handed..], handed);
        if received > 0 {
            self.hand_over(be, w, t, batch, handed);
        }
        let n = batch.len();
        if n > 0 {
            w.process_received(t, now, batch.as_mut_slice(), &mut self.verdicts[..n]);
            be.tx_burst(batch, &self.verdicts[..n], &mut |port, len| w.count_tx_drop(port, len));
        }
        handed + received
    }

    /// Moves frames other workers handed to this one into `batch`, with their contexts;
    /// returns how many.
    fn take_handed(&mut self, be: &mut B, w: &mut Worker, batch: &mut Batch<B::Buf>) -> usize {
        let Some(l) = self.links.as_mut() else { return 0 };
        for c in l.paid.iter_mut().flatten() {
            let mut any = false;
            while let Some(b) = c.pop() {
                be.put_free(b);
                any = true;
            }
            if any {
                c.release();
            }
        }
        let mut n = 0;
        for (from, pay) in l.from.iter_mut().zip(l.pay.iter_mut()) {
            let (Some(from), Some(pay)) = (from, pay) else { continue };
            let before = n;
            while !batch.is_full() && !from.is_empty() && !pay.is_full() {
                let Some(free) = be.take_free() else { break };
                if let Err(b) = pay.push(free) {
                    be.put_free(b);
                    break;
                }
                let Some(h) = from.pop() else { break };
                let i = batch.len();
                w.take_over(i, &h.rx, h.buf.in_port());
                prefetch_headers(h.buf.data());
                if let Err(b) = batch.push(h.buf) {
                    be.put_free(b);
                    break;
                }
                n += 1;
            }
            if n > before {
                from.release();
                pay.publish();
            }
        }
        n
    }

    /// Hands the received frames (from `first` on) whose flows other workers own to them, and
    /// compacts the batch (and the contexts) to the frames this worker keeps, in order.
    fn hand_over(&mut self, be: &mut B, w: &mut Worker, t: &Tables, batch: &mut Batch<B::Buf>, first: usize) {
        let Some(l) = self.links.as_mut() else { return };
        let me = l.me as u16;
        let mut owners = [me; BATCH];
        let mut foreign = false;
        for (i, b) in batch.as_slice().iter().enumerate().skip(first) {
            owners[i] = w.owner(t, b.data(), i);
            foreign |= owners[i] != me;
        }
        if !foreign {
            return;
        }
        let keep = &mut self.keep;
        // Owners that got frames (a bit set, workers are at most 64), to publish and ring after.
        let mut rung = 0u64;
        let mut k = 0;
        batch.drain_into(|i, buf| {
            let owner = usize::from(owners[i]);
            if owner == l.me {
                w.move_ctx(i, k);
                k += 1;
                if let Err(b) = keep.push(buf) {
                    be.put_free(b);
                }
                return;
            }
            let Some(rx) = w.received(i) else { return be.put_free(buf) };
            let port = buf.in_port();
            // Owners come from `Worker::owner`, which names only workers of its shard count,
            // and the mesh has a ring to each; anything else is dropped like a full ring.
            let Some(to) = l.to.get_mut(owner).and_then(Option::as_mut) else {
                w.count_handoff(port, false);
                return be.put_free(buf);
            };
            match to.push(Handed { buf, rx }) {
                Ok(()) => {
                    w.count_handoff(port, true);
                    rung |= 1 << (owner % 64);
                }
                Err(h) => {
                    w.count_handoff(port, false);
                    be.put_free(h.buf);
                }
            }
        });
        std::mem::swap(batch, &mut self.keep);
        for (j, (to, bell)) in l.to.iter_mut().zip(&l.bells).enumerate() {
            if rung & (1 << (j % 64)) != 0 {
                if let Some(to) = to {
                    to.publish();
                }
                bell.ring();
            }
        }
    }

    /// Before sleeping: announces it, and says whether sleeping is safe (no frame was handed
    /// over in the meantime).
    pub fn may_sleep(&mut self) -> bool {
        let Some(l) = self.links.as_mut() else { return true };
        l.bells[l.me].sleeping.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if l.from.iter_mut().flatten().any(|c| !c.is_empty()) {
            l.bells[l.me].sleeping.store(false, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// After sleeping.
    pub fn woke(&mut self) {
        if let Some(l) = &self.links {
            let bell = &l.bells[l.me];
            bell.sleeping.store(false, Ordering::Relaxed);
            sys::eventfd_clear(&bell.fd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryBackend;
    use switch_core::conntrack::Tuple;
    use switch_core::parse::{parse, ParseOptions};
    use switch_core::pipeline::owner::owner_of;
    use switch_core::pipeline::WorkerConfig;
    use switch_core::testbed::{self as tb, Scale};
    use switch_core::wire::build::{IpFrame, L4Repr};
    use switch_core::wire::l4::tcp_flags::{ACK, SYN};
    use switch_core::wire::proto;

    const BUFS: usize = 128;

    struct Node {
        t: Tables,
        be: Vec<MemoryBackend>,
        w: Vec<Worker>,
        d: Vec<Dispatch<MemoryBackend>>,
        batch: Vec<Batch<switch_core::packet::OwnedBuf>>,
    }

    impl Node {
        fn new(n: u16) -> Node {
            let t = tb::tables(Scale::default());
            let mut be: Vec<MemoryBackend> = (0..n).map(|_| MemoryBackend::new(5, BUFS)).collect();
            let links = mesh(usize::from(n), 64).unwrap();
            let d = be.iter_mut().zip(links).map(|(b, l)| Dispatch::new(b, Some(l))).collect();
            let w =
                (0..n).map(|index| Worker::new(WorkerConfig { index, count: n, ..WorkerConfig::default() })).collect();
            let batch = (0..n).map(|_| Batch::with_capacity(BATCH)).collect();
            Node { t, be, w, d, batch }
        }

        /// Rounds of every worker in turn until none has anything to do.
        fn settle(&mut self) {
            for _ in 0..16 {
                let mut busy = 0;
                for i in 0..self.w.len() {
                    let t = &self.t;
                    busy += self.d[i].step(&mut self.be[i], &mut self.w[i], &mut self.batch[i], || (t, 1_000));
                }
                if busy == 0 {
                    return;
                }
            }
            panic!("workers never went idle");
        }

        fn take_tx(&mut self, port: switch_core::packet::PortId) -> Vec<Vec<u8>> {
            self.be.iter_mut().flat_map(|b| b.take_tx(port)).collect()
        }
    }

    fn tcp(src_mac: switch_core::wire::MacAddr, src: &str, sport: u16, dst: &str, dport: u16, flags: u8) -> Vec<u8> {
        let l4 = L4Repr::Tcp { sport, dport, seq: 1, ack: 0, flags };
        IpFrame::new(src_mac, tb::ROUTER_MAC, src.parse().unwrap(), dst.parse().unwrap(), l4).build()
    }

    #[test]
    fn a_reply_received_by_another_worker_is_translated_by_the_flow_owner() {
        let mut node = Node::new(2);
        let t = tb::tables(Scale::default());
        let x = Tuple {
            src: tb::POD_A_IP.parse::<std::net::IpAddr>().unwrap().into(),
            dst: tb::WEB_VIP.parse::<std::net::IpAddr>().unwrap().into(),
            sport: 40000,
            dport: 80,
        };
        let owner = usize::from(owner_of(&t, x, proto::TCP, 2));
        let other = 1 - owner;
        // The SYN arrives at the other worker, which hands it to the owner.
        node.be[other].inject(tb::POD_A, &tcp(tb::POD_A_MAC, tb::POD_A_IP, 40000, tb::WEB_VIP, 80, SYN));
        node.settle();
        let out: Vec<Vec<u8>> = [tb::POD_B, tb::POD_C].into_iter().flat_map(|p| node.take_tx(p)).collect();
        assert_eq!(out.len(), 1, "the SYN went out once");
        let m = parse(&out[0], ParseOptions::default()).unwrap();
        assert_eq!(m.dport, 8080);
        let (mac, backend) = if m.dst.to_ip().to_string() == tb::POD_B_IP {
            (tb::POD_B_MAC, tb::POD_B_IP)
        } else {
            (tb::POD_C_MAC, tb::POD_C_IP)
        };
        assert_eq!(node.w[other].stats().events.handed_off, 1);
        assert_eq!(node.w[owner].stats().events.service_new_flows, 1);
        // The reply arrives at the other worker too: without the owner's conntrack it would
        // leave from the backend's address.
        let reply = tcp(mac, backend, 8080, tb::POD_A_IP, 40000, SYN | ACK);
        let port = if backend == tb::POD_B_IP { tb::POD_B } else { tb::POD_C };
        node.be[other].inject(port, &reply);
        node.settle();
        let back = node.take_tx(tb::POD_A);
        assert_eq!(back.len(), 1);
        let m = parse(&back[0], ParseOptions::default()).unwrap();
        assert_eq!((m.src.to_ip().to_string().as_str(), m.sport), (tb::WEB_VIP, 80), "reverse NAT");
        assert_eq!(node.w[other].stats().events.handed_off, 2);
        assert_eq!(node.w[owner].stats().events.ct_hits, 1);
        // Every buffer is back in some pool, and each worker has as many as it started with.
        for b in &node.be {
            assert_eq!(b.free_buffers(), BUFS);
        }
    }

    /// A fragmented answer received by the worker that does not own its flow: stage 1 there
    /// gives the later fragment the first one's ports, so both are handed to the owner, which
    /// translates both.
    #[test]
    fn fragments_received_by_another_worker_all_reach_the_flow_owner() {
        let mut node = Node::new(2);
        let udp = |mac, src: &str, sport, dst: &str, dport, len: usize| {
            let l4 = L4Repr::Udp { sport, dport };
            IpFrame::new(mac, tb::ROUTER_MAC, src.parse().unwrap(), dst.parse().unwrap(), l4)
                .with_payload(&vec![7u8; len])
                .build()
        };
        let mut handed = 0;
        for sport in 40000u16..40008 {
            let x = Tuple {
                src: tb::POD_A_IP.parse::<std::net::IpAddr>().unwrap().into(),
                dst: tb::WEB_VIP.parse::<std::net::IpAddr>().unwrap().into(),
                sport,
                dport: 53,
            };
            let owner = usize::from(owner_of(&node.t, x, proto::UDP, 2));
            let other = 1 - owner;
            node.be[owner].inject(tb::POD_A, &udp(tb::POD_A_MAC, tb::POD_A_IP, sport, tb::WEB_VIP, 53, 16));
            node.settle();
            assert_eq!(node.take_tx(tb::POD_B).len(), 1);
            let answer = udp(tb::POD_B_MAC, tb::POD_B_IP, 5353, tb::POD_A_IP, sport, 1992);
            for f in switch_core::wire::build::fragment(&answer, u32::from(sport), 1480) {
                node.be[other].inject(tb::POD_B, &f);
            }
            node.settle();
            let back = node.take_tx(tb::POD_A);
            assert_eq!(back.len(), 2, "sport {sport}: both fragments");
            for f in &back {
                let m = parse(f, ParseOptions::default()).unwrap();
                assert_eq!(m.src.to_ip().to_string(), tb::WEB_VIP, "reverse NAT");
            }
            handed += 2;
            let total: u64 = node.w.iter().map(|w| w.stats().events.handed_off).sum();
            assert_eq!(total, handed, "sport {sport}: the fragments were handed over");
        }
        for b in &node.be {
            assert_eq!(b.free_buffers(), BUFS);
        }
    }

    #[test]
    fn many_flows_over_three_workers_keep_order_and_pools() {
        let mut node = Node::new(3);
        // 40 connections from pod a to pod b's port 9999, 5 segments each, arriving at
        // whichever worker; each flow's segments must leave in the order they came.
        for round in 0..5u32 {
            for c in 0..40u16 {
                let f = IpFrame::new(
                    tb::POD_A_MAC,
                    tb::ROUTER_MAC,
                    tb::POD_A_IP.parse().unwrap(),
                    tb::POD_B_IP.parse().unwrap(),
                    L4Repr::Tcp {
                        sport: 41000 + c,
                        dport: 9999,
                        seq: round,
                        ack: 0,
                        flags: if round == 0 { SYN } else { ACK },
                    },
                )
                .build();
                node.be[usize::from(c) % 3].inject(tb::POD_A, &f);
            }
        }
        node.settle();
        let out = node.take_tx(tb::POD_B);
        assert_eq!(out.len(), 200);
        let mut last = std::collections::HashMap::new();
        for f in &out {
            let m = parse(f, ParseOptions::default()).unwrap();
            let seq = u32::from_be_bytes(f[usize::from(m.l4_off) + 4..usize::from(m.l4_off) + 8].try_into().unwrap());
            let prev = last.insert(m.sport, seq);
            assert!(prev.is_none_or(|p| p + 1 == seq), "flow {} out of order: {prev:?} then {seq}", m.sport);
        }
        let handed: u64 = node.w.iter().map(|w| w.stats().events.handed_off).sum();
        assert!(handed > 0);
        for b in &node.be {
            assert_eq!(b.free_buffers(), BUFS);
        }
    }

    /// A worker asleep in poll(2) wakes when another hands it a frame (the doorbell), long
    /// before its poll would time out.
    #[test]
    fn a_sleeping_owner_is_woken_by_the_doorbell() {
        let t = std::sync::Arc::new(tb::tables(Scale::default()));
        let mut links = mesh::<switch_core::packet::OwnedBuf>(2, 64).unwrap();
        let (l1, l0) = (links.pop(), links.pop());
        // A flow worker 1 owns, to arrive at worker 0.
        let sport = (40000u16..)
            .find(|p| {
                let x = Tuple {
                    src: tb::POD_A_IP.parse::<std::net::IpAddr>().unwrap().into(),
                    dst: tb::POD_B_IP.parse::<std::net::IpAddr>().unwrap().into(),
                    sport: *p,
                    dport: 9999,
                };
                owner_of(&t, x, proto::TCP, 2) == 1
            })
            .unwrap();
        let (asleep_tx, asleep_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let t1 = std::sync::Arc::clone(&t);
        let owner = std::thread::spawn(move || {
            let mut be = MemoryBackend::new(5, BUFS);
            let mut d = Dispatch::new(&mut be, l1);
            let mut w = Worker::new(WorkerConfig { index: 1, count: 2, ..WorkerConfig::default() });
            let mut batch = Batch::with_capacity(BATCH);
            let start = std::time::Instant::now();
            while start.elapsed() < std::time::Duration::from_secs(30) {
                if d.step(&mut be, &mut w, &mut batch, || (&*t1, 1_000)) == 0 && d.may_sleep() {
                    let _ = asleep_tx.send(());
                    be.wait(60_000);
                    d.woke();
                }
                if be.sent(tb::POD_B) > 0 {
                    let _ = done_tx.send(start.elapsed());
                    return;
                }
            }
        });
        asleep_rx.recv().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut be = MemoryBackend::new(5, BUFS);
        let mut d = Dispatch::new(&mut be, l0);
        let mut w = Worker::new(WorkerConfig { index: 0, count: 2, ..WorkerConfig::default() });
        let mut batch = Batch::with_capacity(BATCH);
        be.inject(tb::POD_A, &tcp(tb::POD_A_MAC, tb::POD_A_IP, sport, tb::POD_B_IP, 9999, SYN));
        assert_eq!(d.step(&mut be, &mut w, &mut batch, || (&*t, 1_000)), 1);
        assert_eq!(w.stats().events.handed_off, 1);
        let woke = done_rx.recv_timeout(std::time::Duration::from_secs(20));
        assert!(woke.is_ok(), "the owner was not woken (its poll waits 60 s)");
        owner.join().unwrap();
    }
}
