//! Small safe wrappers over the system calls the live backends and the daemon share. Every
//! `unsafe` block here is a single libc call whose arguments are checked or owned locally.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The kernel's index of interface `name`.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name has a NUL"))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(io::Error::new(io::ErrorKind::NotFound, format!("no interface named '{name}'")))
    } else {
        Ok(i)
    }
}

/// A checked `setsockopt` with a plain-data value.
pub fn setsockopt<T: Copy>(fd: &OwnedFd, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to `size_of::<T>()` readable bytes for the duration of the call,
    // and `T: Copy` is plain data as every caller passes a C struct or integer.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Creates a socket owned by the returned fd.
pub fn socket(domain: i32, ty: i32, protocol: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain system call; the result is checked before it is wrapped.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Waits up to `timeout_ms` for any of `fds` to become readable.
pub fn poll_readable(fds: &[RawFd], timeout_ms: i32) -> io::Result<usize> {
    poll_readable_errors(fds, timeout_ms, &mut |_| {})
}

/// Like [`poll_readable`], and calls `on_error` with each descriptor poll(2) flagged POLLERR.
pub fn poll_readable_errors(fds: &[RawFd], timeout_ms: i32, on_error: &mut dyn FnMut(RawFd)) -> io::Result<usize> {
    let mut p: Vec<libc::pollfd> =
        fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
    // SAFETY: `p` is a valid array of `p.len()` pollfd structs for the duration of the call.
    let r = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    for q in p.iter().filter(|q| q.revents & libc::POLLERR != 0) {
        on_error(q.fd);
    }
    Ok(r as usize)
}

/// Pins the calling thread to CPU `cpu`.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "cpu index too large"));
    }
    // SAFETY: cpu_set_t is plain data; zeroed is its empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes inside `set`; `cpu` was checked against the set size above.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t; 0 means the calling thread.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Number of CPUs this process may run on.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Makes `close` on a TCP socket send a reset instead of a FIN (SO_LINGER with a zero
/// timeout), so that load generators opening many connections leave no TIME_WAIT behind.
pub fn set_linger_zero(fd: RawFd) -> io::Result<()> {
    let l = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: `l` is a valid linger struct passed with its exact size; `fd` is only used for
    // this call and the caller owns it.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A non-blocking eventfd, for waking a worker that sleeps in poll(2).
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain system call; the result is checked before it is wrapped.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by eventfd(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes an eventfd readable (adds one to its counter).
pub fn eventfd_signal(fd: &OwnedFd) {
    let one = 1u64;
    // SAFETY: writes the 8 bytes of `one`, which lives across the call, to our own eventfd.
    unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
}

/// Resets an eventfd's counter (non-blocking).
pub fn eventfd_clear(fd: &OwnedFd) {
    let mut v = 0u64;
    // SAFETY: reads at most 8 bytes into `v`, which lives across the call.
    unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
}

/// A checked `getsockopt` of an integer option.
pub fn getsockopt_int(fd: &OwnedFd, level: i32, name: i32) -> io::Result<i32> {
    let mut v = 0i32;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid for writes for the duration of the call and `len` says
    // how big `v` is.
    let r = unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, (&mut v as *mut i32).cast(), &mut len) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(v)
    }
}

/// Sends whole Ethernet frames out of interface `name` through a raw packet socket (for the
/// control plane's rare frames, such as gratuitous ARP when this node takes over an address;
/// never the packet path). The kernel sends them as given; frames the switch's own XDP or
/// packet rings receive are not affected.
pub fn send_frames(name: &str, frames: &[Vec<u8>]) -> io::Result<()> {
    let index = ifindex(name)?;
    let fd = socket(libc::AF_PACKET, libc::SOCK_RAW, 0)?;
    for f in frames {
        if f.len() < 14 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "frame shorter than an Ethernet header"));
        }
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid value that is filled below.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = index as i32;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&f[..6]);
        // SAFETY: `f` is readable for `f.len()` bytes and `addr` is a valid sockaddr_ll of the
        // size given, both for the duration of the call.
        let r = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                f.as_ptr().cast(),
                f.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Nanoseconds since boot, suspend included (`CLOCK_BOOTTIME`): a clock that two processes of
/// one boot share and that no one sets (for ages that must survive a restart).
pub fn boot_time_ns() -> io::Result<u64> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).map_err(io::Error::from)?;
    Ok(t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`, a random UUID drawn at boot): tells
/// state written before the last reboot from state of this boot.
pub fn boot_id() -> io::Result<[u8; 36]> {
    let s = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?;
    let b = s.trim().as_bytes();
    b.try_into().map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("boot_id {s:?} is not a UUID")))
}
