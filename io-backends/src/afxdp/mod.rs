//! The AF_XDP backend (kernel bypass): one UMEM shared by every port and every worker, so a
//! frame received on one port is transmitted on another, or handed to another worker, without
//! a copy in user space. Per port: an AF_XDP socket per receive queue with RX and TX rings and
//! its own fill and completion rings (each worker serves its share of the queues), and the
//! redirect program of `bpf.rs` attached natively (falling back to generic mode). Zero-copy
//! binding is tried first and falls back to copy mode (veth refuses zero-copy); the modes
//! chosen are logged and reported. Rings are refilled and reaped in batches, and the kernel is
//! woken only when it asks to be (need_wakeup).

mod area;

pub use area::{XdpBuf, FRAME_SIZE};

use crate::bpf::{XdpMode, XdpProgram};
use crate::{sys, Backend, Batch, TxReport};
use area::Area;
use std::io;
use std::num::NonZeroU32;
use std::sync::Arc;
use switch_core::packet::PortId;
use switch_core::pipeline::Verdict;
use xdpilone::xdp::XdpDesc;
use xdpilone::{DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig, User};

/// UMEM frames per worker (64 MiB each).
const FRAMES: usize = 16384;
const RING: u32 = 2048;
/// Frames each port's fill rings are kept stocked with (shared among its queues); the rest of
/// the UMEM is for frames in flight (in a batch or a TX ring). Refilling only up to this level
/// keeps idle ports from hoarding frames a busy port needs.
const FILL_TARGET: usize = 1024;
/// The least a queue's fill ring is stocked with.
const FILL_MIN: usize = 256;
/// Queues served per port at most.
const MAX_QUEUES: usize = 64;

/// Receive queues of `ifname`, from sysfs (1 when it cannot be read).
pub fn rx_queues(ifname: &str) -> usize {
    std::fs::read_dir(format!("/sys/class/net/{ifname}/queues"))
        .map(|d| d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().starts_with("rx-")).count())
        .unwrap_or(1)
        .clamp(1, MAX_QUEUES)
}

/// How a port was set up, for logs and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMode {
    pub interface: String,
    pub xdp: XdpMode,
    pub zero_copy: bool,
    /// Receive queues, one socket each.
    pub queues: usize,
}

/// One AF_XDP socket: a queue of a port, with its rings.
struct XdpQueue {
    rx: RingRx,
    tx: RingTx,
    fq: DeviceQueue,
    user: User,
    /// Frames in this queue's fill ring (given, not yet received back).
    in_fill: usize,
}

/// A port as one worker sees it: the sockets of the receive queues it serves (the XDP program
/// redirects each queue's frames to that queue's socket); transmission uses the first.
struct XdpPort {
    port: PortId,
    queues: Vec<XdpQueue>,
    pending: Vec<XdpDesc>,
    zero_copy: bool,
    fill_target: usize,
}

/// Keeps the UMEM registration alive.
struct UmemHold(#[allow(dead_code)] Umem);

// SAFETY: the UMEM handle is only held, never used after setup: no method is called on it
// from any thread once the sockets are bound, and dropping it just closes descriptors.
unsafe impl Send for UmemHold {}
// SAFETY: as above; no `&self` method is ever called through a shared reference.
unsafe impl Sync for UmemHold {}

/// What the workers of a node share: the XDP programs, the UMEM registration and its memory.
/// Dropped when the last worker's backend is, in this order: programs detached, UMEM
/// unregistered, memory unmapped.
struct XdpShared {
    _progs: Vec<XdpProgram>,
    _umem: UmemHold,
    area: Area,
}

/// The AF_XDP backend of one worker.
pub struct AfXdpBackend {
    // Drop order: this worker's rings and sockets, then (with the last worker) what is shared.
    ports: Vec<Option<XdpPort>>,
    order: Vec<usize>,
    free: Vec<u64>,
    shared: Arc<XdpShared>,
    pub modes: Vec<PortMode>,
    next: usize,
    /// Every socket (and doorbell), for blocking when idle.
    fds: Vec<i32>,
}

impl std::fmt::Debug for AfXdpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfXdpBackend").field("modes", &self.modes).field("free", &self.free.len()).finish()
    }
}

fn errno(e: xdpilone::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.get_raw())
}

impl AfXdpBackend {
    /// One backend per worker, trying zero-copy first and copy mode after. Worker `w` serves receive queues `q` with `q % workers == w` of
    /// every port, so every port needs at least `workers` queues; all sockets share one UMEM,
    /// so frames move between workers without a copy, and each worker starts with its own
    /// share of the frames.
    pub fn open_workers(
        interfaces: &[(PortId, String)],
        ports: usize,
        workers: usize,
    ) -> io::Result<Vec<AfXdpBackend>> {
        match Self::open_mode(interfaces, ports, workers, true) {
            Ok(b) => Ok(b),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) | Some(libc::EPROTONOSUPPORT)
                ) =>
            {
                eprintln!("podswitchd: afxdp: zero-copy refused ({e}); using copy mode");
                Self::open_mode(interfaces, ports, workers, false)
            }
            Err(e) => Err(e),
        }
    }

    fn open_mode(
        interfaces: &[(PortId, String)],
        ports: usize,
        workers: usize,
        zero_copy: bool,
    ) -> io::Result<Vec<AfXdpBackend>> {
        let workers = workers.max(1);
        for (_, name) in interfaces {
            let nq = rx_queues(name);
            if nq < workers {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{name} has {nq} receive queue(s); {workers} workers need one each"),
                ));
            }
        }
        let area = Area::new(FRAMES * workers)?;
        let cfg =
            UmemConfig { fill_size: RING, complete_size: RING, frame_size: FRAME_SIZE as u32, headroom: 0, flags: 0 };
        // SAFETY: the area is page-aligned and as long as it says, and outlives the UMEM: both
        // end up in `XdpShared`, the UMEM declared (and so dropped) first.
        let umem = unsafe { Umem::new(cfg, area.as_slice_ptr()) }.map_err(errno)?;
        let mut per_worker: Vec<Vec<Option<XdpPort>>> =
            (0..workers).map(|_| (0..ports).map(|_| None).collect()).collect();
        let mut modes: Vec<Vec<PortMode>> = vec![Vec::new(); workers];
        let mut progs = Vec::new();
        let mut first = true;
        for (port, name) in interfaces {
            let ifindex = sys::ifindex(name)?;
            let nq = rx_queues(name);
            let mut queues: Vec<Vec<XdpQueue>> = (0..workers).map(|_| Vec::new()).collect();
            let mut fds = Vec::with_capacity(nq);
            for q in 0..nq {
                let mut info = IfInfo::invalid();
                info.from_ifindex(ifindex).map_err(errno)?;
                info.set_queue(q as u32);
                let sock = if first { Socket::with_shared(&info, &umem) } else { Socket::new(&info) }.map_err(errno)?;
                let fq = umem.fq_cq(&sock).map_err(errno)?;
                // The UMEM owner picks copy or zero-copy and need_wakeup; sockets sharing the
                // UMEM bind with no flags (the kernel refuses them there).
                let bind_flags = if first {
                    SocketConfig::XDP_BIND_NEED_WAKEUP
                        | if zero_copy { SocketConfig::XDP_BIND_ZEROCOPY } else { SocketConfig::XDP_BIND_COPY }
                } else {
                    0
                };
                first = false;
                let scfg = SocketConfig { rx_size: NonZeroU32::new(RING), tx_size: NonZeroU32::new(RING), bind_flags };
                let user = umem.rx_tx(&sock, &scfg).map_err(errno)?;
                let rx = user.map_rx().map_err(errno)?;
                let tx = user.map_tx().map_err(errno)?;
                umem.bind(&user).map_err(errno)?;
                fds.push(user.as_raw_fd());
                queues[q % workers].push(XdpQueue { rx, tx, fq, user, in_fill: 0 });
            }
            let prog = match XdpProgram::attach(ifindex, nq as u32, XdpMode::Native) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("podswitchd: afxdp: {name}: native XDP refused ({e}); using generic mode");
                    XdpProgram::attach(ifindex, nq as u32, XdpMode::Generic)?
                }
            };
            for (q, fd) in fds.iter().enumerate() {
                prog.set_socket(q as u32, *fd)?;
            }
            for (w, qs) in queues.into_iter().enumerate() {
                modes[w].push(PortMode { interface: name.clone(), xdp: prog.mode, zero_copy, queues: nq });
                let fill_target = (FILL_TARGET / qs.len().max(1)).max(FILL_MIN);
                if let Some(slot) = per_worker[w].get_mut(port.index()) {
                    *slot = Some(XdpPort {
                        port: *port,
                        queues: qs,
                        pending: Vec::with_capacity(switch_core::pipeline::BATCH),
                        zero_copy,
                        fill_target,
                    });
                }
            }
            progs.push(prog);
        }
        let shared = Arc::new(XdpShared { _progs: progs, _umem: UmemHold(umem), area });
        let mut out = Vec::with_capacity(workers);
        for (w, (mut v, modes)) in per_worker.into_iter().zip(modes).enumerate() {
            let order: Vec<usize> = (0..ports).filter(|i| v[*i].is_some()).collect();
            let frames = (w * FRAMES) as u64..((w + 1) * FRAMES) as u64;
            let mut free: Vec<u64> = frames.map(|f| f * FRAME_SIZE as u64).collect();
            for &i in &order {
                if let Some(p) = v[i].as_mut() {
                    for q in &mut p.queues {
                        q.in_fill += fill(&mut q.fq, &mut free, p.fill_target);
                    }
                }
            }
            let fds = v.iter().flatten().flat_map(|p| p.queues.iter().map(|q| q.user.as_raw_fd())).collect();
            out.push(AfXdpBackend { ports: v, order, free, shared: Arc::clone(&shared), modes, next: 0, fds });
        }
        Ok(out)
    }

    fn reap_completions(&mut self) {
        for p in self.ports.iter_mut().flatten() {
            // Only the first queue transmits, so only its completion ring has frames.
            let mut c = p.queues[0].fq.complete(RING);
            while let Some(addr) = c.read() {
                self.free.push(addr & !(FRAME_SIZE as u64 - 1));
            }
            c.release();
        }
    }
}

/// Moves up to `n` frames from `free` into a fill ring (never more than it has room for);
/// returns how many.
fn fill(fq: &mut DeviceQueue, free: &mut Vec<u64>, n: usize) -> usize {
    let n = n.min(free.len()) as u32;
    if n == 0 {
        return 0;
    }
    let mut w = fq.fill(n);
    let room = w.capacity() as usize;
    let from = free.len() - room.min(free.len());
    let done = w.insert(free[from..].iter().copied()) as usize;
    w.commit();
    drop(w);
    free.truncate(free.len() - done);
    if fq.needs_wakeup() {
        fq.wake();
    }
    done
}

impl Backend for AfXdpBackend {
    type Buf = XdpBuf;

    fn rx_burst(&mut self, batch: &mut Batch<XdpBuf>, _now: &mut u64) -> usize {
        self.reap_completions();
        let mut n = 0;
        let count = self.order.len();
        for k in 0..count {
            let idx = self.order[(self.next + k) % count];
            let Some(p) = self.ports[idx].as_mut() else { continue };
            for q in &mut p.queues {
                let want = p.fill_target.saturating_sub(q.in_fill);
                q.in_fill += fill(&mut q.fq, &mut self.free, want);
                let room = (batch.capacity() - batch.len()) as u32;
                if room == 0 {
                    break;
                }
                let mut r = q.rx.receive(room);
                while let Some(d) = r.read() {
                    q.in_fill = q.in_fill.saturating_sub(1);
                    // SAFETY: the kernel handed this frame to us through the RX ring; it is in
                    // no other ring until we put it on a TX or fill ring, and RX data never
                    // crosses its frame.
                    let buf = unsafe { self.shared.area.frame(d.addr, d.len, p.port) };
                    if let Err(b) = batch.push(buf) {
                        self.free.push(b.frame_addr());
                    } else {
                        n += 1;
                    }
                }
                r.release();
            }
        }
        if count > 0 {
            self.next = (self.next + 1) % count;
        }
        n
    }

    fn tx_burst(
        &mut self,
        batch: &mut Batch<XdpBuf>,
        verdicts: &[Verdict],
        on_fail: &mut dyn FnMut(PortId, usize),
    ) -> TxReport {
        let mut rep = TxReport::default();
        let (ports, free) = (&mut self.ports, &mut self.free);
        batch.drain_into(|i, buf| match verdicts.get(i) {
            Some(Verdict::Tx(p)) => match ports.get_mut(p.index()).and_then(Option::as_mut) {
                Some(port) => {
                    let (addr, len) = buf.desc();
                    port.pending.push(XdpDesc { addr, len, options: 0 });
                }
                None => {
                    on_fail(*p, buf.data_len());
                    rep.failed += 1;
                    free.push(buf.frame_addr());
                }
            },
            _ => free.push(buf.frame_addr()),
        });
        for p in self.ports.iter_mut().flatten() {
            if p.pending.is_empty() {
                continue;
            }
            let tx = &mut p.queues[0].tx;
            let mut w = tx.transmit(p.pending.len() as u32);
            let room = (w.capacity() as usize).min(p.pending.len());
            let sent = w.insert(p.pending[..room].iter().copied()) as usize;
            w.commit();
            drop(w);
            for d in &p.pending[sent..] {
                on_fail(p.port, d.len as usize);
                rep.failed += 1;
                self.free.push(d.addr & !(FRAME_SIZE as u64 - 1));
            }
            rep.sent += sent;
            p.pending.clear();
            // Copy mode transmits inside sendto, a bounded number of frames per call: kick
            // until the ring drains (a few calls per batch). Zero-copy needs a kick only when
            // the kernel asks for one.
            for _ in 0..8 {
                if tx.pending() == 0 || (p.zero_copy && !tx.needs_wakeup()) {
                    break;
                }
                tx.wake();
            }
        }
        self.reap_completions();
        rep
    }

    fn wait(&mut self, timeout_ms: i32) {
        let _ = sys::poll_readable(&self.fds, timeout_ms);
    }

    fn watch_fd(&mut self, fd: i32) {
        self.fds.push(fd);
    }

    fn take_free(&mut self) -> Option<XdpBuf> {
        let addr = self.free.pop()?;
        // SAFETY: a frame on the free list is in no ring and no handle; the handle made here
        // becomes its only owner.
        Some(unsafe { self.shared.area.frame(addr, 0, PortId(0)) })
    }

    fn put_free(&mut self, buf: XdpBuf) {
        self.free.push(buf.frame_addr());
    }
}

impl XdpBuf {
    fn data_len(&self) -> usize {
        self.desc().1 as usize
    }
}
