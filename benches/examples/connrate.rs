//! New TCP connections per second to an address: `connrate ADDR:PORT SECONDS THREADS`.
//! Each connection completes the handshake and is closed with a reset (SO_LINGER 0), so no
//! TIME_WAIT limits the rate. Prints `connections=N seconds=S rate=R failed=F`.

use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let mut a = std::env::args().skip(1);
    let addr: SocketAddr = a.next().and_then(|s| s.parse().ok()).expect("usage: connrate ADDR:PORT SECONDS THREADS");
    let secs: u64 = a.next().and_then(|s| s.parse().ok()).unwrap_or(3);
    let threads: usize = a.next().and_then(|s| s.parse().ok()).unwrap_or(2);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (stop, ok, failed) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                        Ok(s) => {
                            let _ = io_backends::sys::set_linger_zero(s.as_raw_fd());
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    let t = start.elapsed().as_secs_f64();
    let n = ok.load(Ordering::Relaxed);
    println!("connections={n} seconds={t:.2} rate={:.0} failed={}", n as f64 / t, failed.load(Ordering::Relaxed));
}
