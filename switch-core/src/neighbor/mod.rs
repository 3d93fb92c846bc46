//! Underlay neighbours learned on the uplink: the MAC of each remote node's underlay address,
//! taken from the ARP packets it sends (requests and replies, RFC 826; gratuitous ones too),
//! so that tunnel packets go to where the node really is rather than to a MAC configured per
//! peer. The table holds one slot per remote node of the snapshot, written by whichever worker
//! sees the node's ARP (a relaxed atomic store: a MAC is one 48-bit value, and a packet that
//! reads the old one a moment longer goes where it went before), read by every worker's
//! egress stage (one relaxed atomic load per tunnel packet). The control plane carries the
//! table from one snapshot to the next for the nodes that stay, and asks for the nodes whose
//! MAC it does not know (an ARP request out of the uplink, `control/src/announce.rs`).
//!
//! Files: this table; learning is in the link-layer stage (`pipeline/l2.rs`), the lookup in
//! the egress stage (`pipeline/egress.rs`); counters: `event neighbors_learned`, drop
//! `neighbor_unresolved`; tests in `pipeline/tests.rs` (`underlay_neighbors_*`).

use crate::addr::Addr;
use crate::wire::MacAddr;
use core::sync::atomic::{AtomicU64, Ordering};

/// A valid entry has this bit set above the 48 bits of its MAC.
const VALID: u64 = 1 << 48;

fn pack(m: MacAddr) -> u64 {
    let b = m.0;
    VALID | u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
}

fn unpack(v: u64) -> Option<MacAddr> {
    if v & VALID == 0 {
        return None;
    }
    let b = v.to_be_bytes();
    Some(MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]]))
}

/// Learned MACs of the remote nodes' underlay addresses, one slot per node (by `NodeId`).
#[derive(Debug, Default)]
pub struct Neighbors {
    addrs: Vec<Addr>,
    macs: Vec<AtomicU64>,
}

impl Neighbors {
    /// An empty slot for each of `addrs` (the snapshot's remote nodes, in `NodeId` order).
    pub fn new(addrs: Vec<Addr>) -> Neighbors {
        let macs = addrs.iter().map(|_| AtomicU64::new(0)).collect();
        Neighbors { addrs, macs }
    }

    /// For the nodes of `addrs`, the entries `old` has for the same addresses.
    pub fn carried(old: &Neighbors, addrs: Vec<Addr>) -> Neighbors {
        let n = Neighbors::new(addrs);
        for (i, a) in n.addrs.iter().enumerate() {
            if let Some(m) = old.addrs.iter().position(|b| b == a).and_then(|j| old.get(j)) {
                n.macs[i].store(pack(m), Ordering::Relaxed);
            }
        }
        n
    }

    /// The addresses, in node order.
    pub fn addrs(&self) -> &[Addr] {
        &self.addrs
    }

    /// The learned MAC of node `i`.
    #[inline]
    pub fn get(&self, i: usize) -> Option<MacAddr> {
        self.macs.get(i).and_then(|m| unpack(m.load(Ordering::Relaxed)))
    }

    /// Records `mac` for node `i`; true when it was unknown or different.
    #[inline]
    pub fn learn(&self, i: usize, mac: MacAddr) -> bool {
        let Some(slot) = self.macs.get(i) else { return false };
        if mac.is_multicast() || mac == MacAddr::ZERO {
            return false;
        }
        slot.swap(pack(mac), Ordering::Relaxed) != pack(mac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_learned_replaced_and_carried() {
        let a: Addr = Addr::from(core::net::Ipv4Addr::new(192, 168, 1, 2));
        let b: Addr = Addr::from(core::net::Ipv4Addr::new(192, 168, 1, 3));
        let n = Neighbors::new(vec![a, b]);
        assert_eq!(n.get(0), None);
        assert!(n.learn(0, MacAddr([2, 0, 0, 0, 0, 1])));
        assert!(!n.learn(0, MacAddr([2, 0, 0, 0, 0, 1])), "the same MAC again is no change");
        assert!(!n.learn(1, MacAddr([0xff; 6])), "broadcast is never a neighbour");
        assert!(!n.learn(9, MacAddr([2, 0, 0, 0, 0, 9])), "no such node");
        assert_eq!(n.get(0), Some(MacAddr([2, 0, 0, 0, 0, 1])));
        let m = Neighbors::carried(&n, vec![b, a]);
        assert_eq!(m.get(1), Some(MacAddr([2, 0, 0, 0, 0, 1])), "kept for the same address");
        assert_eq!(m.get(0), None);
    }
}
