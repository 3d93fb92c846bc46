//! The in-memory backend: frames are injected by the caller and transmitted frames are kept
//! per port for inspection. For tests and tools; the buffer pool is allocated once.

use crate::{Backend, Batch, PortShare, TxReport};
use std::collections::VecDeque;
use switch_core::packet::{OwnedBuf, PacketBuf, PortId, DEFAULT_BUF_SIZE, DEFAULT_HEADROOM};
use switch_core::pipeline::Verdict;

/// Frames in, frames out, all in memory.
#[derive(Debug)]
pub struct MemoryBackend {
    pool: Vec<OwnedBuf>,
    rx: VecDeque<(PortId, Vec<u8>)>,
    tx: Vec<Vec<Vec<u8>>>,
    /// Frames sent per port.
    sent: Vec<u64>,
    /// Scratch: frames queued per port in the current burst.
    burst: Vec<usize>,
    /// Frames accepted per port per burst before the "ring" is full (None: unlimited).
    pub tx_ring: Option<usize>,
    /// Keep a copy of every transmitted frame for `take_tx` (on by default); off, frames are
    /// only counted and transmitting allocates nothing.
    pub record_tx: bool,
    /// Put every received frame back at the end of the queue, so the injected frames are
    /// received again and again (a load generator for benchmarks).
    pub replay: bool,
    /// Descriptors `wait` blocks on (a worker's doorbell); without any it returns at once.
    fds: Vec<std::os::fd::RawFd>,
    /// Ports attached at run time, by id: their interface names.
    attached: Vec<Option<String>>,
}

impl MemoryBackend {
    /// A backend for `ports` ports with `buffers` frame buffers.
    pub fn new(ports: usize, buffers: usize) -> MemoryBackend {
        MemoryBackend {
            pool: (0..buffers).map(|_| OwnedBuf::new(DEFAULT_BUF_SIZE, DEFAULT_HEADROOM)).collect(),
            rx: VecDeque::new(),
            tx: vec![Vec::new(); ports],
            sent: vec![0; ports],
            burst: vec![0; ports],
            tx_ring: None,
            record_tx: true,
            replay: false,
            fds: Vec::new(),
            attached: vec![None; ports],
        }
    }

    /// The interface attached at run time as `port`, if any.
    pub fn attached(&self, port: PortId) -> Option<&str> {
        self.attached.get(port.index()).and_then(|a| a.as_deref())
    }

    /// Queues a frame as if it arrived on `port`.
    pub fn inject(&mut self, port: PortId, frame: &[u8]) {
        self.rx.push_back((port, frame.to_vec()));
    }

    /// Takes the frames transmitted on `port` so far.
    pub fn take_tx(&mut self, port: PortId) -> Vec<Vec<u8>> {
        self.tx.get_mut(port.index()).map(std::mem::take).unwrap_or_default()
    }

    pub fn pending(&self) -> usize {
        self.rx.len()
    }

    /// Frames sent on `port` so far.
    pub fn sent(&self, port: PortId) -> u64 {
        self.sent.get(port.index()).copied().unwrap_or(0)
    }

    /// Free buffers in the pool.
    pub fn free_buffers(&self) -> usize {
        self.pool.len()
    }
}

impl Backend for MemoryBackend {
    type Buf = OwnedBuf;

    fn rx_burst(&mut self, batch: &mut Batch<OwnedBuf>, _now: &mut u64) -> usize {
        let mut n = 0;
        while !batch.is_full() {
            let Some(mut buf) = self.pool.pop() else { break };
            let Some((port, frame)) = self.rx.pop_front() else {
                self.pool.push(buf);
                break;
            };
            // A frame longer than a buffer goes in cut and marked: the pipeline counts it as
            // `frame_exceeds_buffer`, as it does for the live backends' ring slots.
            buf.load_cut(&frame, frame.len(), port, DEFAULT_HEADROOM);
            if self.replay {
                self.rx.push_back((port, frame));
            }
            if let Err(b) = batch.push(buf) {
                self.pool.push(b);
                break;
            }
            n += 1;
        }
        n
    }

    fn tx_burst(
        &mut self,
        batch: &mut Batch<OwnedBuf>,
        verdicts: &[Verdict],
        on_fail: &mut dyn FnMut(PortId, usize),
    ) -> TxReport {
        let mut rep = TxReport::default();
        self.burst.fill(0);
        let (tx, pool, ring, record) = (&mut self.tx, &mut self.pool, self.tx_ring, self.record_tx);
        let (burst, sent) = (&mut self.burst, &mut self.sent);
        batch.drain_into(|i, buf| {
            if let Some(Verdict::Tx(p)) = verdicts.get(i) {
                let q = p.index();
                if q < tx.len() && ring.is_none_or(|r| burst[q] < r) {
                    burst[q] += 1;
                    sent[q] += 1;
                    if record {
                        tx[q].push(buf.data().to_vec());
                    }
                    rep.sent += 1;
                } else {
                    on_fail(*p, buf.data().len());
                    rep.failed += 1;
                }
            }
            pool.push(buf);
        });
        rep
    }

    fn exhausted(&self) -> bool {
        self.rx.is_empty()
    }

    fn wait(&mut self, timeout_ms: i32) {
        if !self.fds.is_empty() && self.rx.is_empty() {
            let _ = crate::sys::poll_readable(&self.fds, timeout_ms);
        }
    }

    fn watch_fd(&mut self, fd: std::os::fd::RawFd) {
        self.fds.push(fd);
    }

    fn take_free(&mut self) -> Option<OwnedBuf> {
        self.pool.pop()
    }

    fn put_free(&mut self, buf: OwnedBuf) {
        self.pool.push(buf);
    }

    fn attach_port(&mut self, port: PortId, interface: &str, _share: &mut PortShare) -> std::io::Result<()> {
        match self.attached.get_mut(port.index()) {
            None => {
                Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("port id {} out of range", port.0)))
            }
            Some(Some(_)) => {
                Err(std::io::Error::new(std::io::ErrorKind::AlreadyExists, format!("port id {} is in use", port.0)))
            }
            Some(slot) => {
                *slot = Some(interface.to_string());
                Ok(())
            }
        }
    }

    fn free_buffers(&self) -> usize {
        self.pool.len()
    }

    fn detach_port(&mut self, port: PortId) -> bool {
        let was = self.attached.get_mut(port.index()).and_then(Option::take).is_some();
        // Frames still queued from the port are gone with it.
        self.rx.retain(|(p, _)| *p != port);
        was
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switch_core::drop::DropReason;

    #[test]
    fn inject_receive_transmit() {
        let mut m = MemoryBackend::new(3, 8);
        for i in 0..5u8 {
            m.inject(PortId(1), &[i; 60]);
        }
        let mut b = Batch::with_capacity(4);
        let mut now = 0;
        assert_eq!(m.rx_burst(&mut b, &mut now), 4);
        assert_eq!(b.as_slice()[0].in_port(), PortId(1));
        let v = [
            Verdict::Tx(PortId(2)),
            Verdict::Drop(DropReason::NoRoute),
            Verdict::Tx(PortId(2)),
            Verdict::Tx(PortId(9)),
        ];
        let mut failed = vec![];
        let r = m.tx_burst(&mut b, &v, &mut |p, _| failed.push(p));
        assert_eq!((r.sent, r.failed), (2, 1));
        assert_eq!(failed, vec![PortId(9)]);
        assert_eq!(m.take_tx(PortId(2)).len(), 2);
        assert_eq!(m.rx_burst(&mut b, &mut now), 1);
        assert!(m.exhausted());
    }

    #[test]
    fn replay_receives_the_frames_again() {
        let mut m = MemoryBackend::new(2, 8);
        m.replay = true;
        m.record_tx = false;
        m.inject(PortId(0), &[1; 60]);
        m.inject(PortId(0), &[2; 60]);
        let mut b = Batch::with_capacity(5);
        assert_eq!(m.rx_burst(&mut b, &mut 0), 5);
        let firsts: Vec<u8> = b.as_slice().iter().map(|f| f.data()[0]).collect();
        assert_eq!(firsts, vec![1, 2, 1, 2, 1]);
        let v = [Verdict::Tx(PortId(1)); 5];
        m.tx_burst(&mut b, &v, &mut |_, _| {});
        assert_eq!((m.sent(PortId(1)), m.take_tx(PortId(1)).len()), (5, 0));
        assert!(!m.exhausted());
    }

    #[test]
    fn a_frame_longer_than_a_buffer_is_delivered_marked() {
        let mut m = MemoryBackend::new(2, 8);
        m.inject(PortId(0), &[7; 9000]);
        let mut b = Batch::with_capacity(8);
        assert_eq!(m.rx_burst(&mut b, &mut 0), 1);
        assert_eq!(b.as_slice()[0].truncated_from(), Some(9000));
    }

    #[test]
    fn ring_limit_fails_the_rest() {
        let mut m = MemoryBackend::new(2, 8);
        m.tx_ring = Some(1);
        for _ in 0..3 {
            m.inject(PortId(0), &[0; 60]);
        }
        let mut b = Batch::with_capacity(8);
        m.rx_burst(&mut b, &mut 0);
        let v = [Verdict::Tx(PortId(1)); 3];
        let r = m.tx_burst(&mut b, &v, &mut |_, _| {});
        assert_eq!((r.sent, r.failed), (1, 2));
    }
}
