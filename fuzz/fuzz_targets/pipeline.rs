//! The whole pipeline on arbitrary frames arriving on any port of the reference node. Input:
//! a mode byte, then a sequence of [port byte, length byte, frame bytes...]; every frame must
//! get a verdict and nothing may panic (NAT, encapsulation, fragments, refusals and ARP/ND
//! replies included). Mode bit 0: policy reject mode; bit 1: a worker of two, which also
//! decides each frame's flow owner between stage 1 and the rest (the handoff path); bit 2:
//! lengths are 3 bytes, little-endian, up to 70,000 (jumbo and oversized frames).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use switch_core::drop::DropReason;
use switch_core::packet::PacketBuf;
use switch_core::packet::{OwnedBuf, PortId};
use switch_core::pipeline::{Verdict, Worker, WorkerConfig, BATCH};
use switch_core::snapshot::Tables;
use switch_core::testbed::{tables, Scale};

fn t(reject: bool) -> &'static Tables {
    static T: OnceLock<[Tables; 2]> = OnceLock::new();
    let both = T.get_or_init(|| {
        let drop = tables(Scale { services: 4, backends: 3, policy_rules: 8, ..Scale::default() });
        let mut reject = drop.clone();
        reject.policy_reject = true;
        [drop, reject]
    });
    &both[usize::from(reject)]
}

fuzz_target!(|data: &[u8]| {
    // The first byte's low bit: policy denials dropped or answered (reject mode).
    let Some((&mode, mut rest)) = data.split_first() else { return };
    let t = t(mode & 1 == 1);
    let mut bufs = Vec::new();
    let long = mode & 4 != 0;
    let head = if long { 4 } else { 2 };
    while rest.len() >= head {
        let port = PortId(u16::from(rest[0] % 6));
        let len = if long {
            (usize::from(rest[1]) | usize::from(rest[2]) << 8 | usize::from(rest[3]) << 16).min(70_000)
        } else {
            usize::from(rest[1]) * 8 + usize::from(rest[1] & 7)
        };
        let end = (head + len).min(rest.len());
        bufs.push(OwnedBuf::from_frame(&rest[head..end], port));
        rest = &rest[end..];
    }
    let small = WorkerConfig { conntrack_flows: 256, affinity_entries: 64, max_ports: 8, ..WorkerConfig::default() };
    if mode & 2 != 0 {
        let mut w = Worker::new(WorkerConfig { count: 2, ..small });
        let mut v = [Verdict::Drop(DropReason::NoRoute); BATCH];
        for chunk in bufs.chunks_mut(BATCH) {
            w.receive(t, 1, chunk, 0);
            for (i, b) in chunk.iter().enumerate() {
                assert!(w.owner(t, b.data(), i) < 2);
            }
            w.process_received(t, 1, chunk, &mut v[..chunk.len()]);
        }
        return;
    }
    let mut w = Worker::new(small);
    let mut v = vec![Verdict::Drop(DropReason::NoRoute); bufs.len()];
    w.process(t, 1, &mut bufs, &mut v);
    // Run the same frames again: now some hit conntrack.
    w.process(t, 2, &mut bufs, &mut v);
});
