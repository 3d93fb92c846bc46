//! The fragment table: per worker, bounded, short-lived entries keyed by the datagram (source,
//! destination, protocol, identification) and holding what the first fragment's transport
//! header said. Over the set-associative `flowtable.rs`, so it never allocates after start
//! and a full set evicts the entry closest to expiry.

use crate::addr::Addr;
use crate::flowtable::{Evictable, FlowTable, WarmWord};
use crate::hash::SecretHash;
use crate::parse::IcmpKind;

/// Nanoseconds an entry lives after its first fragment (the later ones follow within
/// microseconds; the kernel keeps reassembly queues 30 s, but the switch only needs the ports).
pub const DEFAULT_TIMEOUT_NS: u64 = 2_000_000_000;
/// Default entries per worker.
pub const DEFAULT_ENTRIES: usize = 4096;

/// Identifies one datagram (RFC 791: source, destination, protocol and identification; RFC
/// 8200: source, destination and identification, so `proto` is 0 for IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FragKey {
    pub src: Addr,
    pub dst: Addr,
    pub id: u32,
    pub proto: u8,
}

impl FragKey {
    fn hash(&self, h: &SecretHash) -> u64 {
        let last = u64::from(self.id) << 8 | u64::from(self.proto);
        h.hash(&[self.src.hi(), self.src.lo(), self.dst.hi(), self.dst.lo(), last])
    }
}

impl WarmWord for FragKey {
    fn warm_word(&self) -> u64 {
        u64::from(self.id)
    }
}

/// What the first fragment's transport header gave, for the later ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FragEntry {
    pub sport: u16,
    pub dport: u16,
    /// The upper-layer protocol (for IPv6, a later fragment's header may name another
    /// extension header).
    pub proto: u8,
    pub icmp: IcmpKind,
    /// The worker that owns the datagram's flow, as decided for the first fragment.
    pub owner: u16,
}

impl WarmWord for FragEntry {
    fn warm_word(&self) -> u64 {
        u64::from(self.sport)
    }
}

impl Evictable for FragEntry {
    /// A full set gives way to the newest datagram (its later fragments are coming now).
    fn evictable(&self) -> bool {
        true
    }
}

/// One worker's fragment table.
#[derive(Debug, Clone)]
pub struct FragmentTable {
    table: FlowTable<FragKey, FragEntry>,
    /// Keyed hash (its key secret and per process, as for conntrack).
    key: SecretHash,
    timeout: u64,
}

impl FragmentTable {
    /// A table of at least `entries` slots, hashed with `key`, whose entries live `timeout_ns`.
    pub fn new(entries: usize, key: u64, timeout_ns: u64) -> FragmentTable {
        FragmentTable {
            table: FlowTable::with_capacity(entries),
            key: SecretHash::new(key),
            timeout: timeout_ns.max(1),
        }
    }

    /// Records (or refreshes) the entry of a first fragment at `now`.
    pub fn record(&mut self, key: &FragKey, e: FragEntry, now: u64) {
        // Every entry is evictable, so the insert always finds a way.
        let _ = self.table.insert(key.hash(&self.key), *key, e, now.saturating_add(self.timeout), now);
    }

    /// The entry of a live datagram.
    pub fn lookup(&self, key: &FragKey, now: u64) -> Option<FragEntry> {
        let slot = self.table.find(key.hash(&self.key), key, now)?;
        Some(*self.table.get(slot).1)
    }

    /// Reclaims expired entries among the next `budget` slots.
    pub fn sweep(&mut self, now: u64, budget: usize) {
        self.table.sweep(now, budget);
    }

    /// Slots in use (live, or expired and not yet swept).
    pub fn occupied(&self) -> usize {
        self.table.occupied()
    }

    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u32) -> FragKey {
        let a = |s: &str| Addr::from(s.parse::<core::net::IpAddr>().unwrap());
        FragKey { src: a("10.244.1.3"), dst: a("10.244.1.2"), id, proto: 17 }
    }

    fn entry(sport: u16) -> FragEntry {
        FragEntry { sport, dport: 53, proto: 17, icmp: IcmpKind::NotIcmp, owner: 1 }
    }

    #[test]
    fn later_fragments_find_the_first_until_the_timeout() {
        let mut t = FragmentTable::new(64, 7, 2_000);
        t.record(&key(1), entry(5353), 1_000);
        assert_eq!(t.lookup(&key(1), 1_500), Some(entry(5353)));
        assert_eq!(t.lookup(&key(1), 2_999), Some(entry(5353)));
        assert_eq!(t.lookup(&key(1), 3_000), None, "expired at first + timeout");
        t.sweep(3_000, 1_000);
        assert_eq!(t.occupied(), 0);
    }

    #[test]
    fn every_part_of_the_key_counts() {
        let mut t = FragmentTable::new(64, 7, 2_000);
        t.record(&key(1), entry(1), 0);
        assert_eq!(t.lookup(&key(2), 1), None);
        assert_eq!(t.lookup(&FragKey { proto: 6, ..key(1) }, 1), None);
        assert_eq!(t.lookup(&FragKey { src: key(1).dst, dst: key(1).src, ..key(1) }, 1), None);
        assert!(t.lookup(&key(1), 1).is_some());
    }

    #[test]
    fn it_is_bounded_and_keeps_the_newest() {
        let mut t = FragmentTable::new(16, 7, 2_000);
        let cap = t.capacity();
        for id in 0..1000u32 {
            t.record(&key(id), entry(id as u16), u64::from(id));
        }
        assert_eq!(t.capacity(), cap, "no growth");
        assert!(t.occupied() <= cap);
        assert_eq!(t.lookup(&key(999), 1000), Some(entry(999)));
    }
}
