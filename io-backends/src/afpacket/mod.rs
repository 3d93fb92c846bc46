//! The AF_PACKET backend: a TPACKET_V2 RX ring and TX ring per port, mmap'd, for interfaces
//! where AF_XDP is unavailable. Frames are copied from the RX ring into the worker's buffers
//! (with headroom for encapsulation) and from there into the TX ring of the output port; one
//! `sendto` per port and batch kicks transmission.

mod ring;

use crate::sys;
use crate::{Backend, Batch, PortShare, TxReport};
use ring::{Mapping, Ring, RxFrame, TP_STATUS_KERNEL, TP_STATUS_SEND_REQUEST, TP_STATUS_USER};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use switch_core::packet::{OwnedBuf, PacketBuf, PortId, DEFAULT_BUF_SIZE, DEFAULT_HEADROOM};
use switch_core::pipeline::Verdict;

const SOL_PACKET: i32 = 263;
const PACKET_RX_RING: i32 = 5;
const PACKET_VERSION: i32 = 10;
const PACKET_TX_RING: i32 = 13;
const PACKET_QDISC_BYPASS: i32 = 20;
const PACKET_IGNORE_OUTGOING: i32 = 23;
const PACKET_FANOUT: i32 = 18;
const PACKET_FANOUT_HASH: i32 = 0;
const PACKET_FANOUT_FLAG_UNIQUEID: i32 = 0x2000;
const TPACKET_V2: i32 = 1;
const ETH_P_ALL: u16 = 0x0003;

/// Ring geometry: 2 KiB slots fit a 1500-byte MTU frame with the kernel's header.
const FRAME_SIZE: usize = 2048;
const BLOCK_SIZE: usize = 1 << 16;

/// How large a port's rings are. Ports opened at start (uplink, host, configured pods) get
/// deep rings; ports attached at run time (pods' veths, up to a few hundred per node) get
/// shallow ones, so that 250 pod ports cost 250 * 2 * 256 KiB of ring memory per worker
/// rather than 250 * 2 * 4 MiB. Frame buffers are not per port: every port of a worker draws
/// from the worker's one pool, so an idle port holds none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingSize {
    /// 64 blocks of 64 KiB per ring: 2,048 frames each way (a third of a second of a
    /// 6,000-frame/s stream while the worker is descheduled).
    Deep,
    /// 4 blocks of 64 KiB per ring: 128 frames each way.
    Shallow,
}

impl RingSize {
    fn blocks(self) -> usize {
        match self {
            RingSize::Deep => 64,
            RingSize::Shallow => 4,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy)]
struct TpacketReq {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
}

/// One interface's socket and rings.
#[derive(Debug)]
pub struct AfPacketPort {
    pub port: PortId,
    pub interface: String,
    // Field order matters: the rings point into the mapping and are dropped first.
    rx: Ring,
    tx: Ring,
    _map: Mapping,
    fd: OwnedFd,
    tx_pending: usize,
}

impl AfPacketPort {
    /// Opens a packet socket on `interface` with deep RX and TX rings.
    pub fn open(port: PortId, interface: &str) -> io::Result<AfPacketPort> {
        Self::open_sized(port, interface, RingSize::Deep)
    }

    /// Opens a packet socket on `interface` with RX and TX rings of `size`.
    pub fn open_sized(port: PortId, interface: &str, size: RingSize) -> io::Result<AfPacketPort> {
        let ifindex = sys::ifindex(interface)?;
        let blocks = size.blocks();
        let frames = BLOCK_SIZE / FRAME_SIZE * blocks;
        // Protocol 0 until bind: no frame reaches the ring before it is bound to the interface.
        let fd = sys::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK, 0)?;
        sys::setsockopt(&fd, SOL_PACKET, PACKET_VERSION, &TPACKET_V2)?;
        let req = TpacketReq {
            block_size: BLOCK_SIZE as u32,
            block_nr: blocks as u32,
            frame_size: FRAME_SIZE as u32,
            frame_nr: frames as u32,
        };
        sys::setsockopt(&fd, SOL_PACKET, PACKET_RX_RING, &req)?;
        sys::setsockopt(&fd, SOL_PACKET, PACKET_TX_RING, &req)?;
        // Best effort: skip the qdisc on transmit, and do not see our own transmissions.
        let _ = sys::setsockopt(&fd, SOL_PACKET, PACKET_QDISC_BYPASS, &1i32);
        let _ = sys::setsockopt(&fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &1i32);
        let ring_bytes = BLOCK_SIZE * blocks;
        let map = Mapping::new(&fd, 2 * ring_bytes)?;
        // SAFETY: both rings lie within the 2 * ring_bytes mapping, and they are fields of the
        // same struct as the mapping, declared before it so they are dropped first.
        let (rx, tx) =
            unsafe { (Ring::new(&map, 0, FRAME_SIZE, frames), Ring::new(&map, ring_bytes, FRAME_SIZE, frames)) };
        let sll = libc::sockaddr_ll {
            sll_family: libc::AF_PACKET as u16,
            sll_protocol: ETH_P_ALL.to_be(),
            sll_ifindex: ifindex as i32,
            sll_hatype: 0,
            sll_pkttype: 0,
            sll_halen: 0,
            sll_addr: [0; 8],
        };
        // SAFETY: `sll` is a valid sockaddr_ll and its exact size is passed.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // Bound to an interface that is down (a pod's host end, attached before the CNI
        // plugin sets it up), the socket is left with ENETDOWN pending although bind(2)
        // succeeded: poll(2) would report POLLERR until it is read (a worker that never
        // sleeps), and the first sendto(2) would fail with it. Read it here; the kernel starts
        // delivering once the link is up.
        let _ = sys::getsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_ERROR);
        Ok(AfPacketPort { port, interface: interface.to_string(), rx, tx, _map: map, fd, tx_pending: 0 })
    }

    fn kick(&mut self) {
        if self.tx_pending == 0 {
            return;
        }
        // SAFETY: a zero-length send on our own socket tells the kernel to transmit the slots
        // marked SEND_REQUEST; no user memory is passed.
        let send = || unsafe {
            libc::sendto(self.fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT, std::ptr::null(), 0)
        };
        if send() < 0 {
            // A socket error left pending (ENETDOWN after the link went down and up again) is
            // reported once, by this call, and the slots stay marked: send them now.
            let e = io::Error::last_os_error().raw_os_error();
            if e != Some(libc::EAGAIN) && e != Some(libc::ENOBUFS) {
                send();
            }
        }
        self.tx_pending = 0;
    }

    fn tx_one(&mut self, data: &[u8]) -> bool {
        let i = self.tx.head;
        if self.tx.status(i) & 0x3 != 0 {
            // SEND_REQUEST or SENDING: the ring is full.
            self.kick();
            return false;
        }
        if !self.tx.tx_write(i, data) {
            return false;
        }
        self.tx.set_status(i, TP_STATUS_SEND_REQUEST);
        self.tx.head = (i + 1) % self.tx.frames();
        self.tx_pending += 1;
        true
    }
}

/// The AF_PACKET backend of one worker: every port's socket.
#[derive(Debug)]
pub struct AfPacketBackend {
    ports: Vec<Option<AfPacketPort>>,
    order: Vec<usize>,
    pool: Vec<OwnedBuf>,
    next: usize,
    /// Frames the kernel gave with offsets we could not trust, or too big for a buffer once
    /// a stripped VLAN tag is put back. (Frames larger than a ring slot are counted by the
    /// pipeline as `frame_exceeds_buffer`.)
    pub rx_errors: u64,
    /// Every socket, for blocking when idle.
    fds: Vec<RawFd>,
}

impl AfPacketBackend {
    /// One backend per worker (`ports` is the number of switch ports), each with its own socket and rings on every port. With several
    /// workers the sockets of a port form a fanout group (PACKET_FANOUT_HASH), so the kernel
    /// gives each frame to one of them by flow hash instead of a copy to every socket.
    pub fn open_workers(
        interfaces: &[(PortId, String)],
        ports: usize,
        buffers: usize,
        workers: usize,
    ) -> io::Result<Vec<AfPacketBackend>> {
        let mut per_worker: Vec<Vec<Option<AfPacketPort>>> =
            (0..workers.max(1)).map(|_| (0..ports).map(|_| None).collect()).collect();
        for (p, name) in interfaces {
            let mut group = None;
            for v in per_worker.iter_mut() {
                let ctx = |e: io::Error| io::Error::new(e.kind(), format!("{name}: {e}"));
                let port = AfPacketPort::open(*p, name).map_err(ctx)?;
                if workers > 1 {
                    group = Some(join_fanout(&port.fd, group).map_err(ctx)?);
                }
                if let Some(slot) = v.get_mut(p.index()) {
                    *slot = Some(port);
                }
            }
        }
        Ok(per_worker.into_iter().map(|v| AfPacketBackend::of_ports(v, ports, buffers)).collect())
    }

    fn of_ports(v: Vec<Option<AfPacketPort>>, ports: usize, buffers: usize) -> AfPacketBackend {
        let order = (0..ports).filter(|i| v[*i].is_some()).collect();
        let fds = v.iter().flatten().map(|p| p.fd.as_raw_fd()).collect();
        AfPacketBackend {
            fds,
            ports: v,
            order,
            pool: (0..buffers).map(|_| OwnedBuf::new(DEFAULT_BUF_SIZE, DEFAULT_HEADROOM)).collect(),
            next: 0,
            rx_errors: 0,
        }
    }
}

/// Joins `fd` to the hash fanout group `group`, or creates a group with an id the kernel picks
/// (unique in the namespace) when `group` is `None`; returns the group's id.
fn join_fanout(fd: &OwnedFd, group: Option<u16>) -> io::Result<u16> {
    let arg = match group {
        Some(id) => i32::from(id) | PACKET_FANOUT_HASH << 16,
        None => (PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_UNIQUEID) << 16,
    };
    sys::setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &arg)?;
    match group {
        Some(id) => Ok(id),
        None => Ok((sys::getsockopt_int(fd, SOL_PACKET, PACKET_FANOUT)? & 0xffff) as u16),
    }
}

/// Puts back a VLAN tag the kernel stripped into the frame, so the pipeline sees (and counts)
/// the frame as it was on the wire.
fn reinsert_vlan(buf: &mut OwnedBuf, tci: u16) -> bool {
    if buf.data().len() < 12 || !buf.push_head(4) {
        return false;
    }
    let d = buf.data_mut();
    d.copy_within(4..16, 0);
    d[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
    d[14..16].copy_from_slice(&tci.to_be_bytes());
    true
}

impl Backend for AfPacketBackend {
    type Buf = OwnedBuf;

    fn rx_burst(&mut self, batch: &mut Batch<OwnedBuf>, _now: &mut u64) -> usize {
        let mut n = 0;
        let count = self.order.len();
        for k in 0..count {
            let idx = self.order[(self.next + k) % count];
            let Some(port) = self.ports[idx].as_mut() else { continue };
            while !batch.is_full() {
                let i = port.rx.head;
                if port.rx.status(i) & TP_STATUS_USER == 0 {
                    break;
                }
                let Some(mut buf) = self.pool.pop() else { return n };
                let ok = match port.rx.rx_frame(i) {
                    // Larger than the slot: delivered cut and marked, counted by the pipeline
                    // as `frame_exceeds_buffer` (not as a truncated IP packet).
                    Some(RxFrame { data, cut_from: Some(wire), .. }) => {
                        buf.load_cut(data, wire, port.port, DEFAULT_HEADROOM);
                        true
                    }
                    Some(RxFrame { data, vlan, cut_from: None }) => {
                        buf.load(data, port.port, DEFAULT_HEADROOM) && vlan.is_none_or(|t| reinsert_vlan(&mut buf, t))
                    }
                    None => false,
                };
                port.rx.set_status(i, TP_STATUS_KERNEL);
                port.rx.head = (i + 1) % port.rx.frames();
                if ok {
                    if let Err(b) = batch.push(buf) {
                        self.pool.push(b);
                    } else {
                        n += 1;
                    }
                } else {
                    self.rx_errors += 1;
                    self.pool.push(buf);
                }
            }
        }
        if count > 0 {
            self.next = (self.next + 1) % count;
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
        let (ports, pool) = (&mut self.ports, &mut self.pool);
        batch.drain_into(|i, buf| {
            if let Some(Verdict::Tx(p)) = verdicts.get(i) {
                let sent =
                    ports.get_mut(p.index()).and_then(Option::as_mut).is_some_and(|port| port.tx_one(buf.data()));
                if sent {
                    rep.sent += 1;
                } else {
                    on_fail(*p, buf.data().len());
                    rep.failed += 1;
                }
            }
            pool.push(buf);
        });
        for p in self.ports.iter_mut().flatten() {
            p.kick();
        }
        rep
    }

    fn wait(&mut self, timeout_ms: i32) {
        let ports = &self.ports;
        let _ = sys::poll_readable_errors(&self.fds, timeout_ms, &mut |fd| {
            // A link that went down (and up again) leaves ENETDOWN pending on its sockets,
            // which poll(2) reports at once every time until it is read: read it, so the worker
            // sleeps again.
            if let Some(p) = ports.iter().flatten().find(|p| p.fd.as_raw_fd() == fd) {
                let _ = sys::getsockopt_int(&p.fd, libc::SOL_SOCKET, libc::SO_ERROR);
            }
        });
    }

    fn watch_fd(&mut self, fd: RawFd) {
        self.fds.push(fd);
    }

    fn take_free(&mut self) -> Option<OwnedBuf> {
        self.pool.pop()
    }

    fn put_free(&mut self, buf: OwnedBuf) {
        self.pool.push(buf);
    }

    fn attach_port(&mut self, port: PortId, interface: &str, share: &mut PortShare) -> io::Result<()> {
        let Some(slot) = self.ports.get(port.index()) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("port id {} is beyond the {} ports this backend was opened for", port.0, self.ports.len()),
            ));
        };
        if slot.is_some() {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("port id {} is in use", port.0)));
        }
        let ctx = |e: io::Error| io::Error::new(e.kind(), format!("{interface}: {e}"));
        let p = AfPacketPort::open_sized(port, interface, RingSize::Shallow).map_err(ctx)?;
        if share.workers > 1 {
            share.fanout = Some(join_fanout(&p.fd, share.fanout).map_err(ctx)?);
        }
        self.fds.push(p.fd.as_raw_fd());
        self.ports[port.index()] = Some(p);
        self.order = (0..self.ports.len()).filter(|i| self.ports[*i].is_some()).collect();
        self.next = 0;
        Ok(())
    }

    fn free_buffers(&self) -> usize {
        self.pool.len()
    }

    fn detach_port(&mut self, port: PortId) -> bool {
        let Some(p) = self.ports.get_mut(port.index()).and_then(Option::take) else { return false };
        let fd = p.fd.as_raw_fd();
        self.fds.retain(|f| *f != fd);
        drop(p);
        self.order = (0..self.ports.len()).filter(|i| self.ports[*i].is_some()).collect();
        self.next = 0;
        true
    }
}
