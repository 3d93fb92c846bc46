//! A bounded, set-associative hash table for per-worker flow state (conntrack, session
//! affinity). Sized once at start; an insert into a full set evicts the entry that expires
//! soonest, so the table never allocates and never refuses. Expiry is lazy, by a time passed
//! in, plus a budgeted sweep that reclaims expired slots and keeps the live count exact.

/// Entries per set: one cache line of tags would be better; eight keeps probing short.
pub const WAYS: usize = 8;

#[derive(Debug, Clone, Copy)]
struct Slot<K, V> {
    key: K,
    val: V,
    /// Expiry in nanoseconds; 0 marks a free slot.
    expires: u64,
}

/// What an insert displaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Displaced {
    /// A free slot was used.
    Nothing,
    /// An expired entry was overwritten.
    Expired,
    /// A live entry was evicted to make room.
    Evicted,
}

/// The table.
#[derive(Debug, Clone)]
pub struct FlowTable<K, V> {
    slots: Vec<Slot<K, V>>,
    set_mask: usize,
    live: usize,
    sweep_at: usize,
}

impl<K: Copy + Eq + Default, V: Copy + Default> FlowTable<K, V> {
    /// A table of at least `capacity` slots (rounded up to a power-of-two number of sets).
    pub fn with_capacity(capacity: usize) -> FlowTable<K, V> {
        let sets = capacity.div_ceil(WAYS).max(1).next_power_of_two();
        let empty = Slot { key: K::default(), val: V::default(), expires: 0 };
        FlowTable { slots: vec![empty; sets * WAYS], set_mask: sets - 1, live: 0, sweep_at: 0 }
    }

    #[inline]
    fn set_of(&self, hash: u64) -> usize {
        ((hash as usize) & self.set_mask) * WAYS
    }

    /// The slot holding a live entry for `key`.
    #[inline]
    pub fn find(&self, hash: u64, key: &K, now: u64) -> Option<usize> {
        let base = self.set_of(hash);
        (base..base + WAYS).find(|&i| {
            let s = &self.slots[i];
            s.expires > now && s.key == *key
        })
    }

    #[inline]
    pub fn get(&self, slot: usize) -> (&K, &V, u64) {
        let s = &self.slots[slot];
        (&s.key, &s.val, s.expires)
    }

    #[inline]
    pub fn val_mut(&mut self, slot: usize) -> &mut V {
        &mut self.slots[slot].val
    }

    /// Sets the expiry of a live slot.
    #[inline]
    pub fn set_expiry(&mut self, slot: usize, expires: u64) {
        self.slots[slot].expires = expires.max(1);
    }

    /// Inserts (or replaces) `key`. Returns the slot and what was displaced.
    pub fn insert(&mut self, hash: u64, key: K, val: V, expires: u64, now: u64) -> (usize, Displaced) {
        let base = self.set_of(hash);
        let mut victim = base;
        let mut victim_exp = u64::MAX;
        for i in base..base + WAYS {
            let s = &self.slots[i];
            if s.expires > now && s.key == key {
                victim = i;
                break;
            }
            if s.expires < victim_exp {
                victim = i;
                victim_exp = s.expires;
            }
        }
        let old = self.slots[victim].expires;
        let displaced = if old == 0 {
            self.live += 1;
            Displaced::Nothing
        } else if old <= now {
            Displaced::Expired
        } else if self.slots[victim].key == key {
            Displaced::Nothing
        } else {
            Displaced::Evicted
        };
        self.slots[victim] = Slot { key, val, expires: expires.max(1) };
        (victim, displaced)
    }

    /// Frees a slot.
    pub fn remove(&mut self, slot: usize) {
        if self.slots[slot].expires != 0 {
            self.slots[slot].expires = 0;
            self.live -= 1;
        }
    }

    /// Reclaims expired slots among the next `budget` slots; returns how many it freed.
    pub fn sweep(&mut self, now: u64, budget: usize) -> usize {
        let mut freed = 0;
        for _ in 0..budget.min(self.slots.len()) {
            let i = self.sweep_at;
            self.sweep_at = (self.sweep_at + 1) % self.slots.len();
            let e = self.slots[i].expires;
            if e != 0 && e <= now {
                self.slots[i].expires = 0;
                self.live -= 1;
                freed += 1;
            }
        }
        freed
    }

    /// Frees every slot.
    pub fn clear(&mut self) {
        for s in &mut self.slots {
            s.expires = 0;
        }
        self.live = 0;
    }

    /// Slots in use (live, or expired but not yet swept).
    pub fn occupied(&self) -> usize {
        self.live
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Live entries at `now`, in slot order.
    pub fn iter_live(&self, now: u64) -> impl Iterator<Item = (usize, &K, &V, u64)> {
        self.slots.iter().enumerate().filter(move |(_, s)| s.expires > now).map(|(i, s)| (i, &s.key, &s.val, s.expires))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_find_expire() {
        let mut t: FlowTable<u32, u32> = FlowTable::with_capacity(64);
        let (s, d) = t.insert(5, 5, 50, 100, 0);
        assert_eq!(d, Displaced::Nothing);
        assert_eq!(t.find(5, &5, 10), Some(s));
        assert_eq!(t.find(5, &5, 100), None, "expired at its expiry time");
        assert_eq!(t.occupied(), 1);
        assert_eq!(t.sweep(100, 1000), 1);
        assert_eq!(t.occupied(), 0);
    }

    #[test]
    fn full_set_evicts_soonest_expiry() {
        let mut t: FlowTable<u32, u32> = FlowTable::with_capacity(WAYS);
        for k in 0..WAYS as u32 {
            t.insert(0, k, k, 1000 + u64::from(k), 0);
        }
        let (_, d) = t.insert(0, 99, 99, 5000, 0);
        assert_eq!(d, Displaced::Evicted);
        assert_eq!(t.find(0, &0, 1), None, "key 0 had the soonest expiry");
        assert!(t.find(0, &99, 1).is_some());
        assert_eq!(t.occupied(), WAYS);
        let (_, d) = t.insert(0, 98, 98, 5000, 1003);
        assert_eq!(d, Displaced::Expired);
    }

    #[test]
    fn reinsert_same_key_replaces() {
        let mut t: FlowTable<u32, u32> = FlowTable::with_capacity(16);
        let (a, _) = t.insert(1, 7, 1, 100, 0);
        let (b, d) = t.insert(1, 7, 2, 200, 0);
        assert_eq!((a, d), (b, Displaced::Nothing));
        assert_eq!(*t.get(b).1, 2);
        assert_eq!(t.occupied(), 1);
    }
}
