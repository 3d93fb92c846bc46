//! The UMEM area: anonymous, page-aligned memory shared with the kernel, and the frame
//! handles the pipeline works on. The frame handle is the one place where raw UMEM pointers
//! become slices, and it is only ever held for a frame no kernel ring owns.

use std::io;
use std::ptr::NonNull;
use switch_core::packet::{PacketBuf, PortId};

/// Size of a UMEM frame (aligned mode: a power of two, one page).
pub const FRAME_SIZE: usize = 4096;

/// An anonymous mapping holding `frames` frames.
#[derive(Debug)]
pub struct Area {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; frames are handed between the
// worker and the kernel through the rings, never aliased by two owners in user space.
unsafe impl Send for Area {}
// SAFETY: `&Area` only computes frame pointers; which frame a thread may touch is decided by
// who holds its handle, and handles are unique (see `Area::frame`).
unsafe impl Sync for Area {}

impl Area {
    pub fn new(frames: usize) -> io::Result<Area> {
        let len = frames * FRAME_SIZE;
        // SAFETY: a fresh private anonymous mapping; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Area { base, len })
    }

    /// The whole area, for registering it as a UMEM.
    pub fn as_slice_ptr(&self) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(self.base, self.len)
    }

    /// A handle for the frame at UMEM offset `addr` holding `len` bytes from `addr`.
    ///
    /// # Safety
    /// The frame containing `addr` must be owned by the caller (in no kernel ring and in no
    /// other handle) until the handle is given back, and `addr + len` must not cross the
    /// frame's end.
    pub unsafe fn frame(&self, addr: u64, len: u32, port: PortId) -> XdpBuf {
        let frame = addr & !(FRAME_SIZE as u64 - 1);
        XdpBuf { area: self.base, frame, head: (addr - frame) as u32, len, port }
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: `base` and `len` are exactly what mmap returned and was given.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// A frame in UMEM, owned by the worker between receive and transmit.
#[derive(Debug)]
pub struct XdpBuf {
    area: NonNull<u8>,
    frame: u64,
    head: u32,
    len: u32,
    port: PortId,
}

// SAFETY: an XdpBuf is the unique owner of its frame (see `Area::frame`).
unsafe impl Send for XdpBuf {}

impl XdpBuf {
    /// UMEM offset of the frame's first data byte and its length: a TX descriptor.
    pub fn desc(&self) -> (u64, u32) {
        (self.frame + u64::from(self.head), self.len)
    }

    /// UMEM offset of the frame itself (for the fill queue).
    pub fn frame_addr(&self) -> u64 {
        self.frame
    }

    fn ptr(&self) -> *mut u8 {
        // SAFETY: `frame + head` is inside the area: the frame is one of the area's frames and
        // `head < FRAME_SIZE` is kept by every method that moves it.
        unsafe { self.area.as_ptr().add((self.frame + u64::from(self.head)) as usize) }
    }
}

impl PacketBuf for XdpBuf {
    fn data(&self) -> &[u8] {
        // SAFETY: `head + len <= FRAME_SIZE` (kept by every method), so the range lies in this
        // frame, which this handle owns exclusively.
        unsafe { std::slice::from_raw_parts(self.ptr(), self.len as usize) }
    }
    fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr(), self.len as usize) }
    }
    fn headroom(&self) -> usize {
        self.head as usize
    }
    fn tailroom(&self) -> usize {
        FRAME_SIZE - self.head as usize - self.len as usize
    }
    fn push_head(&mut self, n: usize) -> bool {
        if n > self.head as usize {
            return false;
        }
        self.head -= n as u32;
        self.len += n as u32;
        true
    }
    fn pull_head(&mut self, n: usize) -> bool {
        if n > self.len as usize {
            return false;
        }
        self.head += n as u32;
        self.len -= n as u32;
        true
    }
    fn set_len(&mut self, len: usize) -> bool {
        if self.head as usize + len > FRAME_SIZE {
            return false;
        }
        self.len = len as u32;
        true
    }
    fn in_port(&self) -> PortId {
        self.port
    }
}
