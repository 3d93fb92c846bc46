//! The classic pcap file format (libpcap 2.4): reader and writer for Ethernet captures, with
//! microsecond or nanosecond timestamps in either byte order.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

const MAGIC_US: u32 = 0xa1b2_c3d4;
const MAGIC_NS: u32 = 0xa1b2_3c4d;
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Largest frame we read; longer records are an error, not a truncation.
pub const MAX_SNAPLEN: u32 = 262_144;

/// Why a capture could not be read.
#[derive(Debug)]
pub enum PcapError {
    Io(io::Error),
    BadMagic(u32),
    NotEthernet(u32),
    RecordTooLong(u32),
    Truncated,
}

impl std::fmt::Display for PcapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PcapError::Io(e) => write!(f, "{e}"),
            PcapError::BadMagic(m) => write!(f, "not a pcap file (magic {m:#010x}); pcapng is not supported"),
            PcapError::NotEthernet(l) => write!(f, "link type {l} is not Ethernet (1)"),
            PcapError::RecordTooLong(l) => write!(f, "record of {l} bytes exceeds {MAX_SNAPLEN}"),
            PcapError::Truncated => f.write_str("file ends inside a record"),
        }
    }
}

impl std::error::Error for PcapError {}

impl From<io::Error> for PcapError {
    fn from(e: io::Error) -> Self {
        PcapError::Io(e)
    }
}

/// Reads records one at a time.
#[derive(Debug)]
pub struct PcapReader<R: Read> {
    r: R,
    swap: bool,
    nanos: bool,
}

impl PcapReader<BufReader<File>> {
    pub fn open(path: &Path) -> Result<Self, PcapError> {
        PcapReader::new(BufReader::new(File::open(path)?))
    }
}

impl<R: Read> PcapReader<R> {
    pub fn new(mut r: R) -> Result<Self, PcapError> {
        let mut h = [0u8; 24];
        r.read_exact(&mut h).map_err(|_| PcapError::Truncated)?;
        let m = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let (swap, nanos) = match m {
            MAGIC_US => (false, false),
            MAGIC_NS => (false, true),
            _ if m.swap_bytes() == MAGIC_US => (true, false),
            _ if m.swap_bytes() == MAGIC_NS => (true, true),
            _ => return Err(PcapError::BadMagic(m)),
        };
        let rd = |b: &[u8]| {
            let v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            if swap {
                v.swap_bytes()
            } else {
                v
            }
        };
        let link = rd(&h[20..24]);
        if link != LINKTYPE_ETHERNET {
            return Err(PcapError::NotEthernet(link));
        }
        Ok(PcapReader { r, swap, nanos })
    }

    fn u32(&self, b: &[u8]) -> u32 {
        let v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if self.swap {
            v.swap_bytes()
        } else {
            v
        }
    }

    /// Reads the next record into `buf` (cleared first); returns its timestamp in nanoseconds,
    /// or `None` at the end of the file.
    pub fn next_into(&mut self, buf: &mut Vec<u8>) -> Result<Option<u64>, PcapError> {
        let mut h = [0u8; 16];
        match self.r.read(&mut h[..1])? {
            0 => return Ok(None),
            _ => self.r.read_exact(&mut h[1..]).map_err(|_| PcapError::Truncated)?,
        }
        let sec = u64::from(self.u32(&h[0..4]));
        let frac = u64::from(self.u32(&h[4..8]));
        let incl = self.u32(&h[8..12]);
        if incl > MAX_SNAPLEN {
            return Err(PcapError::RecordTooLong(incl));
        }
        buf.clear();
        buf.resize(incl as usize, 0);
        self.r.read_exact(buf).map_err(|_| PcapError::Truncated)?;
        let ns = sec * 1_000_000_000 + if self.nanos { frac } else { frac * 1000 };
        Ok(Some(ns))
    }
}

/// Writes records with nanosecond timestamps.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    w: W,
}

impl PcapWriter<BufWriter<File>> {
    pub fn create(path: &Path) -> io::Result<Self> {
        PcapWriter::new(BufWriter::new(File::create(path)?))
    }
}

impl<W: Write> PcapWriter<W> {
    pub fn new(mut w: W) -> io::Result<Self> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&MAGIC_NS.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&MAX_SNAPLEN.to_le_bytes());
        h.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        w.write_all(&h)?;
        Ok(PcapWriter { w })
    }

    pub fn write(&mut self, ts_ns: u64, frame: &[u8]) -> io::Result<()> {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&((ts_ns / 1_000_000_000) as u32).to_le_bytes());
        h[4..8].copy_from_slice(&((ts_ns % 1_000_000_000) as u32).to_le_bytes());
        h[8..12].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        h[12..16].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        self.w.write_all(&h)?;
        self.w.write_all(frame)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }

    pub fn into_inner(self) -> W {
        self.w
    }
}

/// Writes a whole capture to `path` (for tools and tests).
pub fn write_file(path: &Path, frames: &[(u64, Vec<u8>)]) -> io::Result<()> {
    let mut w = PcapWriter::create(path)?;
    for (ts, f) in frames {
        w.write(*ts, f)?;
    }
    w.flush()
}

/// Reads a whole capture from `path`.
pub fn read_file(path: &Path) -> Result<Vec<(u64, Vec<u8>)>, PcapError> {
    let mut r = PcapReader::open(path)?;
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while let Some(ts) = r.next_into(&mut buf)? {
        out.push((ts, buf.clone()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_memory() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write(1_500_000_001, &[1, 2, 3]).unwrap();
        w.write(2_000_000_000, &[4; 70]).unwrap();
        let bytes = w.into_inner();
        let mut r = PcapReader::new(&bytes[..]).unwrap();
        let mut b = Vec::new();
        assert_eq!(r.next_into(&mut b).unwrap(), Some(1_500_000_001));
        assert_eq!(b, vec![1, 2, 3]);
        assert_eq!(r.next_into(&mut b).unwrap(), Some(2_000_000_000));
        assert_eq!(b.len(), 70);
        assert_eq!(r.next_into(&mut b).unwrap(), None);
    }

    #[test]
    fn microsecond_big_endian_files() {
        let mut f = Vec::new();
        f.extend_from_slice(&MAGIC_US.to_be_bytes());
        f.extend_from_slice(&2u16.to_be_bytes());
        f.extend_from_slice(&4u16.to_be_bytes());
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&65535u32.to_be_bytes());
        f.extend_from_slice(&1u32.to_be_bytes());
        f.extend_from_slice(&3u32.to_be_bytes());
        f.extend_from_slice(&7u32.to_be_bytes());
        f.extend_from_slice(&2u32.to_be_bytes());
        f.extend_from_slice(&2u32.to_be_bytes());
        f.extend_from_slice(&[9, 9]);
        let mut r = PcapReader::new(&f[..]).unwrap();
        let mut b = Vec::new();
        assert_eq!(r.next_into(&mut b).unwrap(), Some(3_000_007_000));
        assert_eq!(b, vec![9, 9]);
    }

    #[test]
    fn bad_files_are_errors() {
        assert!(matches!(PcapReader::new(&[0u8; 24][..]), Err(PcapError::BadMagic(0))));
        assert!(matches!(PcapReader::new(&[0u8; 3][..]), Err(PcapError::Truncated)));
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write(0, &[1, 2, 3, 4]).unwrap();
        let mut bytes = w.into_inner();
        bytes.truncate(bytes.len() - 1);
        let mut r = PcapReader::new(&bytes[..]).unwrap();
        assert!(matches!(r.next_into(&mut Vec::new()), Err(PcapError::Truncated)));
        let mut bytes = PcapWriter::new(Vec::new()).unwrap().into_inner();
        bytes[20] = 113;
        assert!(matches!(PcapReader::new(&bytes[..]), Err(PcapError::NotEthernet(113))));
    }
}
