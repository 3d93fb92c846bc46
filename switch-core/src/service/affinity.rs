//! ClientIP session affinity: per worker, (service, client address) -> backend pod address,
//! kept for
//! the service's timeout after the last new connection that used it.

use crate::addr::Addr;
use crate::flowtable::{FlowTable, WarmWord};
use crate::hash::hash_words;

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

/// The per-worker affinity table.
#[derive(Debug, Clone)]
pub struct AffinityTable {
    table: FlowTable<AffinityKey, AffinityEntry>,
}

fn hash(k: &AffinityKey) -> u64 {
    hash_words(0x0061_6666, &[k.group, k.client.hi(), k.client.lo()])
}

impl AffinityTable {
    pub fn with_capacity(n: usize) -> AffinityTable {
        AffinityTable { table: FlowTable::with_capacity(n) }
    }

    pub fn get(&self, k: &AffinityKey, now: u64) -> Option<AffinityEntry> {
        self.table.find(hash(k), k, now).map(|s| *self.table.get(s).1)
    }

    pub fn put(&mut self, k: AffinityKey, e: AffinityEntry, timeout_ns: u64, now: u64) {
        self.table.insert(hash(&k), k, e, now + timeout_ns, now);
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
