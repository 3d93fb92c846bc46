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
use crate::{sys, Backend, Batch, PortShare, TxReport};
use area::Area;
use std::io;
use std::num::NonZeroU32;
use std::sync::Arc;
use switch_core::packet::PortId;
use switch_core::pipeline::Verdict;
use xdpilone::xdp::XdpDesc;
use xdpilone::{DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig, User};

/// UMEM frames per worker (128 MiB each).
const FRAMES: usize = 32768;
const RING: u32 = 4096;
/// Frames each port's fill rings are kept stocked with (shared among its queues); the rest of
/// the UMEM is for frames in flight (in a batch or a TX ring). Refilling only up to this level
/// keeps idle ports from hoarding frames a busy port needs.
const FILL_TARGET: usize = 4096;
/// The least a queue's fill ring is stocked with.
const FILL_MIN: usize = 256;
/// Frames the fill rings of a port attached at run time (a pod's veth) are kept stocked with:
/// 250 such ports hold 16,000 frames at most, and an idle one no more than this.
const RUNTIME_FILL: usize = 64;
/// The least a runtime port's queue is stocked with.
const RUNTIME_FILL_MIN: usize = 16;
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

/// Keeps the UMEM registration alive, and lets ports attached at run time bind to it.
struct UmemHold(Umem);

// SAFETY: the UMEM handle is only reached through the mutex in `XdpShared`, so one thread at a
// time calls it (to create the rings of a socket attached at run time); dropping it just
// closes descriptors.
unsafe impl Send for UmemHold {}

/// A program attached at run time, and how many workers hold sockets it redirects to.
struct RuntimeProgram {
    prog: XdpProgram,
    users: usize,
}

/// What the workers of a node share: the XDP programs, the UMEM registration and its memory.
/// Dropped when the last worker's backend is, in this order: programs detached, UMEM
/// unregistered, memory unmapped.
struct XdpShared {
    _progs: Vec<XdpProgram>,
    /// Programs of ports attached at run time, by port.
    runtime: std::sync::Mutex<std::collections::HashMap<PortId, RuntimeProgram>>,
    umem: std::sync::Mutex<UmemHold>,
    /// Whether the UMEM was bound zero-copy (sockets sharing it follow).
    zero_copy: bool,
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
    /// This worker's index and the number of workers (which receive queues it serves).
    worker: usize,
    workers: usize,
    /// Per UMEM frame: 1 + the port whose fill or TX ring of this worker holds it, 0 when it is
    /// in none. A port closed at run time gives back every frame it holds this way, so
    /// churning pods never drain the pool.
    owner: Vec<u16>,
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
        let shared = Arc::new(XdpShared {
            _progs: progs,
            runtime: std::sync::Mutex::new(std::collections::HashMap::new()),
            umem: std::sync::Mutex::new(UmemHold(umem)),
            zero_copy,
            area,
        });
        let mut out = Vec::with_capacity(workers);
        for (w, (mut v, modes)) in per_worker.into_iter().zip(modes).enumerate() {
            let order: Vec<usize> = (0..ports).filter(|i| v[*i].is_some()).collect();
            let frames = (w * FRAMES) as u64..((w + 1) * FRAMES) as u64;
            let mut free: Vec<u64> = frames.map(|f| f * FRAME_SIZE as u64).collect();
            let mut owner = vec![0u16; FRAMES * workers];
            for &i in &order {
                if let Some(p) = v[i].as_mut() {
                    for q in &mut p.queues {
                        q.in_fill += fill(&mut q.fq, &mut free, p.fill_target, &mut owner, p.port);
                    }
                }
            }
            let fds = v.iter().flatten().flat_map(|p| p.queues.iter().map(|q| q.user.as_raw_fd())).collect();
            out.push(AfXdpBackend {
                ports: v,
                order,
                free,
                shared: Arc::clone(&shared),
                modes,
                next: 0,
                fds,
                worker: w,
                workers,
                owner,
            });
        }
        Ok(out)
    }

    fn reap_completions(&mut self) {
        for p in self.ports.iter_mut().flatten() {
            reap(p, &mut self.free, &mut self.owner);
        }
    }
}

/// Frames a port keeps for the next round when its TX ring stays full (back-pressure: the
/// sender sees delay, not loss); beyond them, frames are dropped as `tx_queue_full`.
pub const TX_BACKLOG: usize = 4 * switch_core::pipeline::BATCH;

/// Puts a port's pending frames on its TX ring, oldest first: as many as fit, then a kick
/// (copy mode transmits inside sendto and frees ring slots), a few rounds while frames remain
/// and the ring takes some. What is left stays pending, up to [`TX_BACKLOG`]; the excess is
/// reported through `on_fail` and its frames go back to the pool.
fn flush(
    p: &mut XdpPort,
    owner: &mut [u16],
    free: &mut Vec<u64>,
    on_fail: &mut dyn FnMut(PortId, usize),
    rep: &mut TxReport,
) {
    let tx = &mut p.queues[0].tx;
    for _ in 0..4 {
        if p.pending.is_empty() {
            break;
        }
        let mut w = tx.transmit(p.pending.len() as u32);
        let room = (w.capacity() as usize).min(p.pending.len());
        let sent = w.insert(p.pending[..room].iter().copied()) as usize;
        w.commit();
        drop(w);
        for d in p.pending.drain(..sent) {
            set_owner(owner, d.addr & !(FRAME_SIZE as u64 - 1), Some(p.port));
        }
        rep.sent += sent;
        // Copy mode transmits inside sendto, a bounded number of frames per call: kick until
        // the ring drains (a few calls per batch). Zero-copy needs a kick only when the kernel
        // asks for one.
        for _ in 0..8 {
            if tx.pending() == 0 || (p.zero_copy && !tx.needs_wakeup()) {
                break;
            }
            tx.wake();
        }
        if sent == 0 {
            break;
        }
    }
    if p.pending.len() > TX_BACKLOG {
        for d in p.pending.drain(TX_BACKLOG..) {
            on_fail(p.port, d.len as usize);
            rep.failed += 1;
            free.push(d.addr & !(FRAME_SIZE as u64 - 1));
        }
    }
}

/// Takes the frames a port's TX ring has sent back to `free`.
fn reap(p: &mut XdpPort, free: &mut Vec<u64>, owner: &mut [u16]) {
    // Only the first queue transmits, so only its completion ring has frames.
    let mut c = p.queues[0].fq.complete(RING);
    while let Some(addr) = c.read() {
        let frame = addr & !(FRAME_SIZE as u64 - 1);
        set_owner(owner, frame, None);
        free.push(frame);
    }
    c.release();
}

/// Records which port's ring holds the frame at `frame` (`None`: none).
#[inline]
fn set_owner(owner: &mut [u16], frame: u64, port: Option<PortId>) {
    if let Some(o) = owner.get_mut((frame / FRAME_SIZE as u64) as usize) {
        *o = port.map_or(0, |p| p.0.wrapping_add(1));
    }
}

/// Moves up to `n` frames from `free` into a fill ring of `port` (never more than it has
/// room for); returns how many.
fn fill(fq: &mut DeviceQueue, free: &mut Vec<u64>, n: usize, owner: &mut [u16], port: PortId) -> usize {
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
    for &f in &free[from..from + done] {
        set_owner(owner, f, Some(port));
    }
    free.drain(from..from + done);
    if fq.needs_wakeup() {
        fq.wake();
    }
    done
}

impl Backend for AfXdpBackend {
    type Buf = XdpBuf;

    fn rx_burst(&mut self, batch: &mut Batch<XdpBuf>, _now: &mut u64) -> usize {
        self.reap_completions();
        // Back-pressure: while a port holds a full backlog, take no more frames (they wait in
        // the RX rings) until [`Backend::flush`] has sent some.
        if self.ports.iter().flatten().any(|p| p.pending.len() >= TX_BACKLOG) {
            return 0;
        }
        let mut n = 0;
        let count = self.order.len();
        for k in 0..count {
            let idx = self.order[(self.next + k) % count];
            let Some(p) = self.ports[idx].as_mut() else { continue };
            for q in &mut p.queues {
                let want = p.fill_target.saturating_sub(q.in_fill);
                q.in_fill += fill(&mut q.fq, &mut self.free, want, &mut self.owner, p.port);
                let room = (batch.capacity() - batch.len()) as u32;
                if room == 0 {
                    break;
                }
                let mut r = q.rx.receive(room);
                while let Some(d) = r.read() {
                    q.in_fill = q.in_fill.saturating_sub(1);
                    set_owner(&mut self.owner, d.addr & !(FRAME_SIZE as u64 - 1), None);
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
            flush(p, &mut self.owner, &mut self.free, on_fail, &mut rep);
        }
        self.reap_completions();
        rep
    }

    fn wait(&mut self, timeout_ms: i32) {
        let _ = sys::poll_readable(&self.fds, timeout_ms);
    }

    fn flush(&mut self, on_fail: &mut dyn FnMut(PortId, usize)) -> usize {
        if self.ports.iter().flatten().all(|p| p.pending.is_empty()) {
            // The usual case, every round of the worker loop: nothing held, nothing to do.
            return 0;
        }
        let mut rep = TxReport::default();
        self.reap_completions();
        for p in self.ports.iter_mut().flatten() {
            flush(p, &mut self.owner, &mut self.free, on_fail, &mut rep);
        }
        self.ports.iter().flatten().map(|p| p.pending.len()).sum()
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

    fn attach_port(&mut self, port: PortId, interface: &str, share: &mut PortShare) -> io::Result<()> {
        let _ = share;
        match self.ports.get(port.index()) {
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("port id {} is beyond the {} ports this backend was opened for", port.0, self.ports.len()),
                ))
            }
            Some(Some(_)) => {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("port id {} is in use", port.0)))
            }
            Some(None) => {}
        }
        let ctx = |e: io::Error| io::Error::new(e.kind(), format!("{interface}: {e}"));
        let ifindex = sys::ifindex(interface).map_err(ctx)?;
        let nq = rx_queues(interface);
        if nq < self.workers {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{interface} has {nq} receive queue(s); {} workers need one each", self.workers),
            ));
        }
        // This worker's sockets, bound to the shared UMEM (under its lock: one thread at a time
        // creates rings on it). Sockets sharing a UMEM bind with no flags.
        let mut queues = Vec::new();
        {
            let umem = self.shared.umem.lock().map_err(|_| io::Error::other("UMEM lock poisoned"))?;
            for q in (0..nq).filter(|q| q % self.workers == self.worker) {
                let mut info = IfInfo::invalid();
                info.from_ifindex(ifindex).map_err(errno).map_err(ctx)?;
                info.set_queue(q as u32);
                let sock = Socket::new(&info).map_err(errno).map_err(ctx)?;
                let fq = umem.0.fq_cq(&sock).map_err(errno).map_err(ctx)?;
                let scfg =
                    SocketConfig { rx_size: NonZeroU32::new(RING), tx_size: NonZeroU32::new(RING), bind_flags: 0 };
                let user = umem.0.rx_tx(&sock, &scfg).map_err(errno).map_err(ctx)?;
                let rx = user.map_rx().map_err(errno).map_err(ctx)?;
                let tx = user.map_tx().map_err(errno).map_err(ctx)?;
                umem.0.bind(&user).map_err(errno).map_err(ctx)?;
                queues.push((q, XdpQueue { rx, tx, fq, user, in_fill: 0 }));
            }
        }
        // The port's redirect program: attached by the first worker, each worker points its
        // queues at its sockets.
        {
            let mut progs = self.shared.runtime.lock().map_err(|_| io::Error::other("program lock poisoned"))?;
            let rp = match progs.entry(port) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    let prog = match XdpProgram::attach(ifindex, nq as u32, XdpMode::Native) {
                        Ok(p) => p,
                        Err(_) => XdpProgram::attach(ifindex, nq as u32, XdpMode::Generic).map_err(ctx)?,
                    };
                    v.insert(RuntimeProgram { prog, users: 0 })
                }
            };
            let set = queues.iter().try_for_each(|(q, xq)| rp.prog.set_socket(*q as u32, xq.user.as_raw_fd()));
            if let Err(e) = set {
                if rp.users == 0 {
                    // Nobody else uses the program just attached: it goes with this failure.
                    progs.remove(&port);
                }
                return Err(ctx(e));
            }
            rp.users += 1;
        }
        let fill_target = (RUNTIME_FILL / queues.len().max(1)).max(RUNTIME_FILL_MIN);
        let mut p = XdpPort {
            port,
            queues: queues.into_iter().map(|(_, q)| q).collect(),
            pending: Vec::with_capacity(switch_core::pipeline::BATCH),
            zero_copy: self.shared.zero_copy,
            fill_target,
        };
        for q in &mut p.queues {
            q.in_fill += fill(&mut q.fq, &mut self.free, fill_target, &mut self.owner, port);
            self.fds.push(q.user.as_raw_fd());
        }
        self.ports[port.index()] = Some(p);
        self.order = (0..self.ports.len()).filter(|i| self.ports[*i].is_some()).collect();
        self.next = 0;
        Ok(())
    }

    fn detach_port(&mut self, port: PortId) -> bool {
        let Some(mut p) = self.ports.get_mut(port.index()).and_then(Option::take) else { return false };
        reap(&mut p, &mut self.free, &mut self.owner);
        // Frames held for its TX ring go back to the pool unsent.
        for d in p.pending.drain(..) {
            self.free.push(d.addr & !(FRAME_SIZE as u64 - 1));
        }
        let fds: Vec<i32> = p.queues.iter().map(|q| q.user.as_raw_fd()).collect();
        self.fds.retain(|f| !fds.contains(f));
        // Closing the sockets ends the kernel's use of their rings: every frame still in this
        // port's fill, RX or TX rings comes back to the pool.
        drop(p);
        let tag = port.0.wrapping_add(1);
        for (i, o) in self.owner.iter_mut().enumerate() {
            if *o == tag {
                *o = 0;
                self.free.push((i * FRAME_SIZE) as u64);
            }
        }
        if let Ok(mut progs) = self.shared.runtime.lock() {
            let gone = progs.get_mut(&port).is_some_and(|rp| {
                rp.users = rp.users.saturating_sub(1);
                rp.users == 0
            });
            if gone {
                // The last worker's sockets are closed: the program goes (its link detached).
                progs.remove(&port);
            }
        }
        self.order = (0..self.ports.len()).filter(|i| self.ports[*i].is_some()).collect();
        self.next = 0;
        true
    }

    fn free_buffers(&self) -> usize {
        self.free.len()
    }
}

impl XdpBuf {
    fn data_len(&self) -> usize {
        self.desc().1 as usize
    }
}
