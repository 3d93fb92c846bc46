//! The buffer a frame lives in, as the pipeline sees it: frame bytes with headroom in front for
//! encapsulation and room at the back for replies the switch writes in place.
//!
//! Backends implement [`PacketBuf`] over their own memory (UMEM frames, mmap ring slots, owned
//! buffers); the pipeline never allocates one.

/// Index of a switch port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PortId(pub u16);

impl PortId {
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// One frame in a buffer with headroom.
pub trait PacketBuf {
    /// The frame's bytes.
    fn data(&self) -> &[u8];
    /// The frame's bytes, writable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Bytes free in front of the frame.
    fn headroom(&self) -> usize;
    /// Bytes free after the frame.
    fn tailroom(&self) -> usize;
    /// Moves the start of the frame `n` bytes earlier (the new bytes are unspecified); false if
    /// there is not that much headroom.
    fn push_head(&mut self, n: usize) -> bool;
    /// Moves the start of the frame `n` bytes later; false if the frame is shorter than `n`.
    fn pull_head(&mut self, n: usize) -> bool;
    /// Sets the frame length; false if it does not fit in the buffer.
    fn set_len(&mut self, len: usize) -> bool;
    /// The port the frame arrived on.
    fn in_port(&self) -> PortId;
    /// The frame's length on the wire when the receive buffer could hold only part of it (the
    /// bytes present are then a prefix of the frame, possibly empty); `None` for a whole frame.
    /// The pipeline drops such frames as `frame_exceeds_buffer`.
    fn truncated_from(&self) -> Option<usize> {
        None
    }
}

/// An owned buffer for tests, tools and the in-memory and pcap backends.
#[derive(Debug, Clone)]
pub struct OwnedBuf {
    storage: Box<[u8]>,
    head: usize,
    len: usize,
    port: PortId,
    truncated_from: Option<usize>,
}

/// Default headroom: enough for an IPv6 Geneve outer header with options.
pub const DEFAULT_HEADROOM: usize = 256;
/// Default buffer size, like an AF_XDP frame.
pub const DEFAULT_BUF_SIZE: usize = 4096;

impl OwnedBuf {
    pub fn new(size: usize, headroom: usize) -> OwnedBuf {
        OwnedBuf {
            storage: vec![0u8; size].into_boxed_slice(),
            head: headroom,
            len: 0,
            port: PortId(0),
            truncated_from: None,
        }
    }

    /// Copies `frame` in after the default headroom; returns false (and leaves the buffer empty)
    /// if it does not fit.
    pub fn load(&mut self, frame: &[u8], port: PortId, headroom: usize) -> bool {
        self.port = port;
        self.truncated_from = None;
        self.head = headroom.min(self.storage.len());
        if frame.len() > self.storage.len() - self.head {
            self.len = 0;
            return false;
        }
        self.storage[self.head..self.head + frame.len()].copy_from_slice(frame);
        self.len = frame.len();
        true
    }

    /// Copies in as much of `frame` as fits after `headroom`; if that is less than `wire_len`
    /// (the frame's length on the wire, which a capture or ring may already have cut to
    /// `frame`), the buffer is marked truncated (see [`PacketBuf::truncated_from`]).
    pub fn load_cut(&mut self, frame: &[u8], wire_len: usize, port: PortId, headroom: usize) {
        self.port = port;
        self.head = headroom.min(self.storage.len());
        let n = frame.len().min(self.storage.len() - self.head);
        self.storage[self.head..self.head + n].copy_from_slice(&frame[..n]);
        self.len = n;
        self.truncated_from = (wire_len.max(frame.len()) > n).then_some(wire_len.max(frame.len()));
    }

    /// A buffer holding a copy of `frame`.
    pub fn from_frame(frame: &[u8], port: PortId) -> OwnedBuf {
        let mut b = OwnedBuf::new(DEFAULT_BUF_SIZE.max(frame.len() + DEFAULT_HEADROOM), DEFAULT_HEADROOM);
        b.load(frame, port, DEFAULT_HEADROOM);
        b
    }
}

impl PacketBuf for OwnedBuf {
    fn data(&self) -> &[u8] {
        &self.storage[self.head..self.head + self.len]
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.head..self.head + self.len]
    }
    fn headroom(&self) -> usize {
        self.head
    }
    fn tailroom(&self) -> usize {
        self.storage.len() - self.head - self.len
    }
    fn push_head(&mut self, n: usize) -> bool {
        if n > self.head {
            return false;
        }
        self.head -= n;
        self.len += n;
        true
    }
    fn pull_head(&mut self, n: usize) -> bool {
        if n > self.len {
            return false;
        }
        self.head += n;
        self.len -= n;
        true
    }
    fn set_len(&mut self, len: usize) -> bool {
        if self.head + len > self.storage.len() {
            return false;
        }
        self.len = len;
        true
    }
    fn in_port(&self) -> PortId {
        self.port
    }
    fn truncated_from(&self) -> Option<usize> {
        self.truncated_from
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_and_tail_moves() {
        let mut b = OwnedBuf::new(64, 16);
        assert!(b.load(&[1, 2, 3, 4], PortId(3), 16));
        assert_eq!(b.data(), &[1, 2, 3, 4]);
        assert!(b.push_head(2));
        assert_eq!(b.data().len(), 6);
        assert!(!b.push_head(15));
        assert!(b.pull_head(2));
        assert_eq!(b.data(), &[1, 2, 3, 4]);
        assert!(!b.pull_head(5));
        assert!(b.set_len(48));
        assert!(!b.set_len(49));
        assert_eq!(b.in_port(), PortId(3));
        assert!(!b.load(&[0; 60], PortId(0), 16));
        assert_eq!(b.truncated_from(), None);
    }

    #[test]
    fn a_frame_larger_than_the_buffer_is_kept_cut_and_marked() {
        let mut b = OwnedBuf::new(64, 16);
        b.load_cut(&[7; 60], 60, PortId(2), 16);
        assert_eq!((b.data().len(), b.truncated_from(), b.in_port()), (48, Some(60), PortId(2)));
        // A ring that already cut the frame to 40 of its 9000 bytes.
        b.load_cut(&[7; 40], 9000, PortId(2), 16);
        assert_eq!((b.data().len(), b.truncated_from()), (40, Some(9000)));
        b.load_cut(&[7; 40], 40, PortId(2), 16);
        assert_eq!(b.truncated_from(), None);
        assert!(b.load(&[1, 2], PortId(2), 16));
        assert_eq!(b.truncated_from(), None);
    }
}
