//! Publication of table snapshots to workers, RCU style: the control plane builds and
//! validates a complete new [`Tables`], then swaps it in with one atomic pointer store.
//! Workers load the current snapshot once per batch without locks; the old snapshot is freed
//! when the last worker drops its reference.

use arc_swap::ArcSwap;
use std::sync::Arc;
use switch_core::snapshot::Tables;

/// The current snapshot, shared by the control plane and every worker.
#[derive(Debug)]
pub struct SnapshotCell {
    inner: ArcSwap<Tables>,
}

impl SnapshotCell {
    pub fn new(t: Tables) -> SnapshotCell {
        SnapshotCell { inner: ArcSwap::from_pointee(t) }
    }

    /// The snapshot to use for one batch.
    #[inline]
    pub fn load(&self) -> arc_swap::Guard<Arc<Tables>> {
        self.inner.load()
    }

    /// The current snapshot as a handle that dereferences to the tables.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot(self.inner.load())
    }

    /// Publishes `t` with the next generation number; returns that number.
    pub fn publish(&self, t: Tables) -> u64 {
        let prev = self.inner.load();
        let generation = prev.generation + 1;
        // Underlay neighbours learned on the old snapshot stay learned.
        let mut t = t.with_neighbors_of(&prev);
        t.generation = generation;
        self.inner.store(Arc::new(t));
        generation
    }

    /// The current snapshot, kept alive as long as the caller holds it (control-plane use).
    pub fn load_full(&self) -> Arc<Tables> {
        self.inner.load_full()
    }

    pub fn generation(&self) -> u64 {
        self.inner.load().generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switch_core::testbed::{tables, Scale};

    #[test]
    fn readers_keep_their_snapshot_until_they_drop_it() {
        let cell = SnapshotCell::new(tables(Scale::default()));
        let old = cell.load_full();
        assert_eq!(cell.publish(tables(Scale { services: 3, backends: 2, ..Scale::default() })), 2);
        assert_eq!(old.generation, 1);
        assert_eq!(old.services.ports().len(), 5);
        assert_eq!(cell.load().services.ports().len(), 8);
        assert_eq!(cell.generation(), 2);
    }
}

/// A loaded snapshot (a cheap guard, held for one batch).
#[derive(Debug)]
pub struct Snapshot(arc_swap::Guard<Arc<Tables>>);

impl std::ops::Deref for Snapshot {
    type Target = Tables;
    fn deref(&self) -> &Tables {
        &self.0
    }
}
