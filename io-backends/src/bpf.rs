//! The XDP program podswitch attaches to each AF_XDP port, loaded with the bpf(2) system call
//! and no C toolchain: six instructions that redirect a frame to the AF_XDP socket of the queue
//! it arrived on (through an XSKMAP) and pass it to the kernel stack when there is none.
//! Attachment is a BPF link: closing it (or the process exiting) detaches the program.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const BPF_MAP_CREATE: i64 = 0;
const BPF_MAP_UPDATE_ELEM: i64 = 2;
const BPF_PROG_LOAD: i64 = 5;
const BPF_LINK_CREATE: i64 = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
const XDP_PASS: i32 = 2;
/// Offset of `rx_queue_index` in `struct xdp_md`.
const XDP_MD_RX_QUEUE_INDEX: i16 = 16;

/// XDP attach modes (linux/if_link.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver (native).
    Native,
    /// Generic, on the skb path.
    Generic,
}

impl XdpMode {
    fn flags(self) -> u32 {
        match self {
            XdpMode::Native => 1 << 2,
            XdpMode::Generic => 1 << 1,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        }
    }
}

/// `union bpf_attr`, as bytes: each command fills the fields it uses; the rest stays zero.
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }
    fn u32(&mut self, at: usize, v: u32) -> &mut Attr {
        self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, at: usize, v: u64) -> &mut Attr {
        self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
}

fn bpf(cmd: i64, attr: &mut Attr) -> io::Result<i64> {
    // SAFETY: `attr` is a 128-byte buffer laid out as `union bpf_attr` for `cmd`; every pointer
    // stored in it refers to memory the caller keeps alive for the duration of the call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.0.as_mut_ptr(), attr.0.len() as u32) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn owned(fd: i64) -> OwnedFd {
    // SAFETY: `fd` was just returned by bpf(2) and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// One BPF instruction: opcode, registers, offset, immediate.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = code;
    b[1] = (src << 4) | (dst & 0x0f);
    b[2..4].copy_from_slice(&off.to_ne_bytes());
    b[4..8].copy_from_slice(&imm.to_ne_bytes());
    b
}

/// The redirect program, referring to XSKMAP `map_fd`.
fn program(map_fd: i32) -> Vec<u8> {
    const BPF_PSEUDO_MAP_FD: u8 = 1;
    [
        insn(0x61, 2, 1, XDP_MD_RX_QUEUE_INDEX, 0),  // r2 = ctx->rx_queue_index
        insn(0x18, 1, BPF_PSEUDO_MAP_FD, 0, map_fd), // r1 = xskmap (64-bit load, 2 slots)
        insn(0x00, 0, 0, 0, 0),
        insn(0xb7, 3, 0, 0, XDP_PASS),              // r3 = XDP_PASS when the slot is empty
        insn(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP), // r0 = bpf_redirect_map(r1, r2, r3)
        insn(0x95, 0, 0, 0, 0),                     // return r0
    ]
    .concat()
}

/// An XSKMAP, the program using it, and its attachment to one interface.
#[derive(Debug)]
pub struct XdpProgram {
    map: OwnedFd,
    _prog: OwnedFd,
    _link: OwnedFd,
    pub mode: XdpMode,
}

impl XdpProgram {
    /// Loads the program with a map of `queues` slots and attaches it to `ifindex` in `mode`.
    pub fn attach(ifindex: u32, queues: u32, mode: XdpMode) -> io::Result<XdpProgram> {
        let map = owned(bpf(
            BPF_MAP_CREATE,
            Attr::new().u32(0, BPF_MAP_TYPE_XSKMAP).u32(4, 4).u32(8, 4).u32(12, queues.max(1)),
        )?);
        let code = program(map.as_raw_fd());
        let license = b"GPL\0";
        let mut a = Attr::new();
        a.u32(0, BPF_PROG_TYPE_XDP)
            .u32(4, (code.len() / 8) as u32)
            .u64(8, code.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .u32(68, BPF_XDP);
        a.0[48..48 + 13].copy_from_slice(b"podswitch_xsk");
        let prog = owned(bpf(BPF_PROG_LOAD, &mut a)?);
        let link = owned(bpf(
            BPF_LINK_CREATE,
            Attr::new().u32(0, prog.as_raw_fd() as u32).u32(4, ifindex).u32(8, BPF_XDP).u32(12, mode.flags()),
        )?);
        Ok(XdpProgram { map, _prog: prog, _link: link, mode })
    }

    /// Points queue `queue` at AF_XDP socket `xsk_fd`.
    pub fn set_socket(&self, queue: u32, xsk_fd: i32) -> io::Result<()> {
        let key = queue;
        let value = xsk_fd as u32;
        let mut a = Attr::new();
        a.u32(0, self.map.as_raw_fd() as u32).u64(8, &key as *const u32 as u64).u64(16, &value as *const u32 as u64);
        bpf(BPF_MAP_UPDATE_ELEM, &mut a).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_is_six_slots() {
        let p = program(7);
        assert_eq!(p.len(), 6 * 8);
        assert_eq!(&p[0..4], &[0x61, 0x12, 16, 0]);
        assert_eq!(p[8], 0x18);
        assert_eq!(p[9], 0x11, "dst r1, src pseudo map fd");
        assert_eq!(i32::from_ne_bytes([p[12], p[13], p[14], p[15]]), 7);
        assert_eq!(p[40], 0x95);
    }
}
