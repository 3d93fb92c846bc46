//! # podswitch io-backends
//!
//! Where frames come from and go to. A [`Backend`] serves one worker: it receives batches of
//! frames from all of that worker's port queues into buffers it owns, and transmits each frame
//! to the port its verdict names (or recycles it). Buffers are allocated once, at start.
//!
//! Implementations: [`memory`] (tests and benchmarks), [`pcap_backend`] (files in, files out)
//! and [`afpacket`] (TPACKET_V2 rings on live interfaces). AF_XDP implements the same trait.
//! All `unsafe` code of podswitch is in this crate: `sys.rs`, `spsc.rs`, `afpacket/ring.rs`,
//! `afxdp/` and the ethtool call of `netlink.rs` (veth pairs, addresses and routes over
//! rtnetlink, for the CNI plugin and the daemon's resolver port). Several workers on a node hand frames to each other through [`handoff`].

pub mod afpacket;
pub mod afxdp;
pub mod batch;
pub mod bpf;
pub mod handoff;
pub mod memory;
pub mod netlink;
pub mod pcap;
pub mod pcap_backend;
pub mod spsc;
pub mod sys;

pub use batch::Batch;

use switch_core::packet::{PacketBuf, PortId};
use switch_core::pipeline::Verdict;

/// What a transmit call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxReport {
    pub sent: usize,
    /// Frames that could not be queued (ring full); the caller counts them per port.
    pub failed: usize,
}

/// The frame I/O of one worker.
pub trait Backend {
    type Buf: PacketBuf;

    /// Fills `batch` (up to its capacity) with received frames; returns how many. Each frame
    /// carries its input port. Also returns, through `now`, the time the backend wants the
    /// pipeline to use when it has one (pcap timestamps); live backends leave it alone.
    fn rx_burst(&mut self, batch: &mut Batch<Self::Buf>, now: &mut u64) -> usize;

    /// Sends every frame whose verdict is `Tx` to its port and recycles the rest; leaves the
    /// batch empty. `on_fail` is called with the port and length of each frame that could not
    /// be queued.
    fn tx_burst(
        &mut self,
        batch: &mut Batch<Self::Buf>,
        verdicts: &[Verdict],
        on_fail: &mut dyn FnMut(PortId, usize),
    ) -> TxReport;

    /// Sends what earlier [`Backend::tx_burst`] calls held back because a TX ring was full
    /// (back-pressure), reporting frames finally dropped through `on_fail`; returns how many
    /// frames are still held. A worker with frames held does not sleep. Backends that never
    /// hold frames keep the default.
    fn flush(&mut self, on_fail: &mut dyn FnMut(PortId, usize)) -> usize {
        let _ = on_fail;
        0
    }

    /// True when no more frames will ever arrive (finite sources such as pcap files).
    fn exhausted(&self) -> bool {
        false
    }

    /// Blocks until a frame may be waiting or `timeout_ms` passes (idle back-off).
    fn wait(&mut self, timeout_ms: i32) {
        let _ = timeout_ms;
    }

    /// Makes [`Backend::wait`] also return when `fd` becomes readable (a worker's doorbell).
    fn watch_fd(&mut self, fd: std::os::fd::RawFd) {
        let _ = fd;
    }

    /// Takes a free buffer out of the backend's pool, or `None` when it has none to spare. A
    /// worker pays with one for each frame another worker hands it (see [`handoff`]), so
    /// every pool keeps its size. Backends that never serve several workers keep the default.
    fn take_free(&mut self) -> Option<Self::Buf> {
        None
    }

    /// Puts a buffer back into the pool without sending it.
    fn put_free(&mut self, buf: Self::Buf) {
        drop(buf);
    }

    /// Starts serving `interface` as switch port `port` while running (a pod's veth attached
    /// by the CNI plugin, say). `share` carries what the workers of one port have in common:
    /// the first worker to attach fills it in, the next ones join it (AF_PACKET's fanout
    /// group). Errors: the interface does not exist or cannot be opened, the port id is out of
    /// range or in use, or the backend cannot add ports at run time (`Unsupported`).
    fn attach_port(&mut self, port: PortId, interface: &str, share: &mut PortShare) -> std::io::Result<()> {
        let _ = (port, interface, share);
        Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "this backend cannot add ports at run time"))
    }

    /// Frame buffers in the worker's pool now (not in a ring, a batch or another worker's
    /// hands), for the counters: a pool that shrinks while ports come and go leaks.
    fn free_buffers(&self) -> usize {
        0
    }

    /// Stops serving `port` and closes its sockets; frames still queued for it are dropped.
    /// Returns false when the port was not attached.
    fn detach_port(&mut self, port: PortId) -> bool {
        let _ = port;
        false
    }
}

/// What the workers attaching one port share (see [`Backend::attach_port`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortShare {
    /// AF_PACKET fanout group of the port's sockets (PACKET_FANOUT_HASH).
    pub fanout: Option<u16>,
    /// How many workers serve the port (a group is needed only with several).
    pub workers: usize,
}
