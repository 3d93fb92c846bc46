//! A TPACKET_V2 ring shared with the kernel through mmap. The only unsafe code of the
//! AF_PACKET backend lives here: the mapping, and the status word each frame slot carries,
//! which the kernel and we hand back and forth with acquire/release ordering.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

/// `struct tpacket2_hdr` field offsets (linux/if_packet.h).
const TP_STATUS: usize = 0;
const TP_LEN: usize = 4;
const TP_SNAPLEN: usize = 8;
const TP_MAC: usize = 12;
const TP_VLAN_TCI: usize = 28;
/// Where transmit data starts: TPACKET_ALIGN(sizeof(tpacket2_hdr)).
pub const TX_DATA_OFFSET: usize = 32;

pub const TP_STATUS_KERNEL: u32 = 0;
pub const TP_STATUS_USER: u32 = 1;
/// The frame did not fit the slot: the kernel copied `tp_snaplen` of its `tp_len` bytes.
pub const TP_STATUS_COPY: u32 = 0x2;
pub const TP_STATUS_SEND_REQUEST: u32 = 1;
pub const TP_STATUS_VLAN_VALID: u32 = 0x10;

/// An mmap'd region holding the RX ring followed by the TX ring.
#[derive(Debug)]
pub struct Mapping {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value; moving it to another
// thread moves the only handle to it.
unsafe impl Send for Mapping {}

impl Mapping {
    /// Maps `len` bytes of the rings of packet socket `fd`.
    pub fn new(fd: &OwnedFd, len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh shared mapping of the socket's rings; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { base: p.cast(), len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base` and `len` are exactly what mmap returned and was given.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// A frame in an RX slot.
#[derive(Debug)]
pub struct RxFrame<'a> {
    pub data: &'a [u8],
    pub vlan: Option<u16>,
    /// The frame's length on the wire when the slot holds only its first `data.len()` bytes.
    pub cut_from: Option<usize>,
}

/// The wire length of a frame larger than its ring slot: the kernel then sets
/// `TP_STATUS_COPY` and copies `tp_snaplen` of the `tp_len` bytes (tpacket_rcv).
pub fn cut_from(status: u32, tp_len: u32, tp_snaplen: u32) -> Option<usize> {
    (status & TP_STATUS_COPY != 0 || tp_len > tp_snaplen).then_some(tp_len.max(tp_snaplen) as usize)
}

/// One ring of equally sized frame slots inside a [`Mapping`].
#[derive(Debug)]
pub struct Ring {
    base: *mut u8,
    frame_size: usize,
    frames: usize,
    pub head: usize,
}

// SAFETY: see `Mapping`; a ring is used by the one worker that owns its socket.
unsafe impl Send for Ring {}

impl Ring {
    /// A ring of `frames` slots of `frame_size` bytes at `offset` in `m`.
    ///
    /// # Safety
    /// `offset + frames * frame_size` must not exceed the mapping's length, and the ring must
    /// not outlive `m` (the backend keeps both in one struct and drops the ring first).
    pub unsafe fn new(m: &Mapping, offset: usize, frame_size: usize, frames: usize) -> Ring {
        debug_assert!(offset + frames * frame_size <= m.len);
        // SAFETY: in bounds of the mapping per this function's contract.
        Ring { base: unsafe { m.base.add(offset) }, frame_size, frames, head: 0 }
    }

    fn slot(&self, i: usize) -> *mut u8 {
        // SAFETY: `i < frames` (callers index modulo `frames`), so the slot is in the ring.
        unsafe { self.base.add((i % self.frames) * self.frame_size) }
    }

    fn status_word(&self, i: usize) -> &AtomicU32 {
        // SAFETY: the status word is the first, 4-byte aligned field of each slot (slots are
        // page-aligned multiples of 16 bytes); the kernel writes it concurrently, which is why
        // it is only accessed atomically.
        unsafe { &*(self.slot(i).add(TP_STATUS) as *const AtomicU32) }
    }

    /// The slot's status, with acquire ordering (the frame's bytes are visible after it).
    pub fn status(&self, i: usize) -> u32 {
        self.status_word(i).load(Ordering::Acquire)
    }

    /// Hands the slot over with release ordering (our writes are visible before it).
    pub fn set_status(&self, i: usize, v: u32) {
        self.status_word(i).store(v, Ordering::Release)
    }

    fn read_u32(&self, i: usize, off: usize) -> u32 {
        // SAFETY: `off + 4` lies within the 32-byte header at the start of the slot.
        unsafe { (self.slot(i).add(off) as *const u32).read_unaligned() }
    }

    fn read_u16(&self, i: usize, off: usize) -> u16 {
        // SAFETY: `off + 2` lies within the 32-byte header at the start of the slot.
        unsafe { (self.slot(i).add(off) as *const u16).read_unaligned() }
    }

    /// A received frame's bytes, its VLAN tag (when the kernel stripped one) and, when the
    /// slot held only part of it, its length on the wire; for a slot whose status is
    /// `TP_STATUS_USER`. Returns `None` if the kernel's offsets are inconsistent.
    pub fn rx_frame(&self, i: usize) -> Option<RxFrame<'_>> {
        let mac = usize::from(self.read_u16(i, TP_MAC));
        let len = self.read_u32(i, TP_SNAPLEN) as usize;
        if mac + len > self.frame_size {
            return None;
        }
        let status = self.status(i);
        let vlan = (status & TP_STATUS_VLAN_VALID != 0).then(|| self.read_u16(i, TP_VLAN_TCI));
        let cut_from = cut_from(status, self.read_u32(i, TP_LEN), len as u32);
        // SAFETY: `mac + len` is within the slot (checked above) and the slot belongs to us
        // until its status is handed back to the kernel.
        let data = unsafe { std::slice::from_raw_parts(self.slot(i).add(mac), len) };
        Some(RxFrame { data, vlan, cut_from })
    }

    /// Writes `data` into TX slot `i` (whose status must be available) and sets its length.
    /// Returns false if it does not fit.
    pub fn tx_write(&self, i: usize, data: &[u8]) -> bool {
        if TX_DATA_OFFSET + data.len() > self.frame_size {
            return false;
        }
        // SAFETY: the destination range is inside slot `i` (checked above); the slot is ours
        // while its status is available, and `data` cannot overlap the mapping's slot.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.slot(i).add(TX_DATA_OFFSET), data.len());
            (self.slot(i).add(TP_LEN) as *mut u32).write_unaligned(data.len() as u32);
        }
        true
    }

    pub fn frames(&self) -> usize {
        self.frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_larger_than_the_slot_are_recognised() {
        assert_eq!(cut_from(TP_STATUS_USER, 1514, 1514), None);
        // A 9000-byte frame in a 2 KiB slot: the kernel kept 1970 bytes.
        assert_eq!(cut_from(TP_STATUS_USER | TP_STATUS_COPY, 9000, 1970), Some(9000));
        assert_eq!(cut_from(TP_STATUS_USER, 9000, 1970), Some(9000));
        assert_eq!(cut_from(TP_STATUS_USER | TP_STATUS_VLAN_VALID, 60, 60), None);
    }
}
