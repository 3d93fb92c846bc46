//! ClientIP session affinity: per worker, (service, client address) -> backend pod address,
//! kept for
//! the service's timeout after the last new connection that used it.

use crate::addr::Addr;
use crate::flowtable::{Evictable, FlowTable, WarmWord};
use crate::hash::SecretHash;

/// Key of an affinity entry: the service (all its ports share one group, so a client reaches
/// the same pod on every port, as Kubernetes describes ClientIP affinity) and the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct AffinityKey {
    pub group: u64,
    pub client: Addr,
}

/// Remembered backend pod address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AffinityEntry {
    pub addr: Addr,
}

impl WarmWord for AffinityKey {
    fn warm_word(&self) -> u64 {
        self.client.lo()
    }
}

impl WarmWord for AffinityEntry {
    fn warm_word(&self) -> u64 {
        self.addr.lo()
    }
}

impl Evictable for AffinityEntry {
    /// Affinity is a preference: a full set forgets the entry that expires soonest.
    fn evictable(&self) -> bool {
        true
    }
}

/// One affinity entry as a plain record, to hand the table to the next process (see
/// `conntrack/image.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AffinityImage {
    pub key: AffinityKey,
    pub entry: AffinityEntry,
    /// Nanoseconds the entry has left.
    pub remaining_ns: u64,
}

/// The per-worker affinity table.
#[derive(Debug, Clone)]
pub struct AffinityTable {
    table: FlowTable<AffinityKey, AffinityEntry>,
    /// Keyed hash (its key secret and per process, like conntrack's), so that no client can
    /// pick addresses that crowd another client's entry out of its set.
    key: SecretHash,
}

impl AffinityTable {
    /// A table of at least `n` entries whose hash is keyed with `key`.
    pub fn with_capacity(n: usize, key: u64) -> AffinityTable {
        AffinityTable { table: FlowTable::with_capacity(n), key: SecretHash::new(key) }
    }

    fn hash(&self, k: &AffinityKey) -> u64 {
        self.key.hash(&[k.group, k.client.hi(), k.client.lo()])
    }

    pub fn get(&self, k: &AffinityKey, now: u64) -> Option<AffinityEntry> {
        self.table.find(self.hash(k), k, now).map(|s| *self.table.get(s).1)
    }

    pub fn put(&mut self, k: AffinityKey, e: AffinityEntry, timeout_ns: u64, now: u64) {
        // Every entry is evictable, so the insert always finds a way.
        let _ = self.table.insert(self.hash(&k), k, e, now + timeout_ns, now);
    }

    /// Appends every live entry to `out`.
    pub fn export(&self, now: u64, out: &mut Vec<AffinityImage>) {
        for (_, k, e, exp) in self.table.iter_live(now) {
            out.push(AffinityImage { key: *k, entry: *e, remaining_ns: exp - now });
        }
    }

    /// Takes an entry from a record (a full set forgets its soonest-expiring entry).
    pub fn import(&mut self, a: &AffinityImage, now: u64) {
        if a.remaining_ns > 0 {
            self.put(a.key, a.entry, a.remaining_ns, now);
        }
    }

    pub fn sweep(&mut self, now: u64, budget: usize) {
        self.table.sweep(now, budget);
    }

    pub fn len(&self) -> usize {
        self.table.occupied()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&mut self) {
        self.table.clear();
    }
}
