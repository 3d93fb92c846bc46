//! A port attached while its interface is down, as a pod's host end is when the CNI plugin asks
//! podswitchd for it (the plugin sets the link up afterwards), and a link that goes down and up
//! again: each time, the worker still sleeps when idle, and the first frame sent to the port
//! leaves at once. Runs in a network namespace of its own (`psw-iob-<pid>`), deleted by name;
//! skipped, with the reason printed, when not root (a failure under CI=true).

use io_backends::afpacket::AfPacketBackend;
use io_backends::{Backend, Batch, PortShare};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};
use switch_core::packet::{OwnedBuf, PacketBuf, PortId, DEFAULT_BUF_SIZE, DEFAULT_HEADROOM};
use switch_core::pipeline::Verdict;

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("run ip");
    assert!(st.success(), "ip {args:?} failed");
}

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Moves the calling thread into namespace `name`.
fn enter(name: &str) {
    let f = std::fs::File::open(format!("/run/netns/{name}")).expect("open netns");
    // SAFETY: setns takes a descriptor we hold open for the call and a namespace type.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
}

#[test]
fn ports_sleep_and_send_after_their_link_comes_up() {
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false);
    if !root {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("cannot run: not root; CI expects it to run");
        }
        eprintln!("SKIPPED: needs root for a network namespace");
        return;
    }
    let ns = Netns(format!("psw-iob-{}", std::process::id()));
    ip(&["netns", "add", &ns.0]);
    ip(&["-n", &ns.0, "link", "add", "va", "type", "veth", "peer", "name", "vb"]);
    let name = ns.0.clone();
    // A thread of its own: setns changes only the calling thread's namespace.
    std::thread::spawn(move || {
        enter(&name);
        let mut be = AfPacketBackend::open_workers(&[], 2, 64, 1).expect("backend").remove(0);
        let mut share = PortShare { fanout: None, workers: 1 };
        be.attach_port(PortId(0), "va", &mut share).expect("attach va while down");
        // No IPv6 on the pair: nothing but the test's frame crosses it.
        for l in ["va", "vb"] {
            let f = format!("/proc/sys/net/ipv6/conf/{l}/disable_ipv6");
            if std::path::Path::new(&f).exists() {
                std::fs::write(&f, "1").expect("disable IPv6");
            }
        }
        ip(&["-n", &name, "link", "set", "va", "up"]);
        ip(&["-n", &name, "link", "set", "vb", "up"]);
        be.attach_port(PortId(1), "vb", &mut share).expect("attach vb");

        // Once up, and again after the link went down and up.
        idle_sleeps(&mut be, "after the link came up");
        frame_crosses(&mut be, "after the link came up");
        ip(&["-n", &name, "link", "set", "va", "down"]);
        ip(&["-n", &name, "link", "set", "va", "up"]);
        idle_sleeps(&mut be, "after the link went down and up");
        frame_crosses(&mut be, "after the link went down and up");
    })
    .join()
    .expect("test thread");
}

/// Idle, the backend's wait blocks for its timeout rather than return at once with an error
/// to report (once, when it reads the error, is allowed).
fn idle_sleeps(be: &mut AfPacketBackend, when: &str) {
    let mut now = 0;
    let t0 = Instant::now();
    for _ in 0..5 {
        be.wait(60);
        let mut rx = Batch::with_capacity(32);
        be.rx_burst(&mut rx, &mut now);
    }
    assert!(t0.elapsed() >= Duration::from_millis(200), "{when}: the worker would spin: {:?}", t0.elapsed());
}

/// A frame sent out of port 0 (va) arrives on port 1 (vb) at once, without another send.
fn frame_crosses(be: &mut AfPacketBackend, when: &str) {
    let mut frame = vec![0xffu8; 6];
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01, 0x88, 0xb5]);
    frame.extend_from_slice(format!("podswitch: first frame {when}").as_bytes());
    frame.resize(80, 0);
    let mut buf = OwnedBuf::new(DEFAULT_BUF_SIZE, DEFAULT_HEADROOM);
    assert!(buf.load(&frame, PortId(1), DEFAULT_HEADROOM));
    let mut batch = Batch::with_capacity(32);
    assert!(batch.push(buf).is_ok());
    let rep = be.tx_burst(&mut batch, &[Verdict::Tx(PortId(0))], &mut |_, _| {});
    assert_eq!(rep.sent, 1);
    let (t0, mut now) = (Instant::now(), 0);
    let got = loop {
        let mut rx = Batch::with_capacity(32);
        be.rx_burst(&mut rx, &mut now);
        let mut found = false;
        rx.drain_into(|_, b| found |= b.data() == frame.as_slice());
        if found {
            break true;
        }
        if t0.elapsed() > Duration::from_secs(2) {
            break false;
        }
        be.wait(10);
    };
    assert!(got, "{when}: the frame sent to the port did not leave within 2 s");
}
