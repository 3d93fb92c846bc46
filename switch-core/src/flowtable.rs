//! A bounded, set-associative hash table for per-worker flow state (conntrack, session
//! affinity). Sized once at start, it never allocates. An insert takes a free or expired way
//! first; in a full set it evicts the evictable entry that expires soonest ([`Evictable`]:
//! conntrack protects flows that have been answered, as the kernel's `early_drop` spares
//! assured entries), and when nothing may give way the insert is refused. Expiry is lazy, by
//! a time passed in, plus a budgeted sweep that reclaims expired slots and keeps the live
//! count exact.

/// Entries per set: eight 4-byte tags fill half a cache line.
pub const WAYS: usize = 8;

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

/// The table. Tags (a slice of the hash), expiries and entries live in separate arrays, so a
/// lookup reads one line of tags and then only the entry whose tag matches.
#[derive(Debug, Clone)]
pub struct FlowTable<K, V> {
    /// Per slot: 0 free, else the tag of its key's hash.
    tags: Vec<u32>,
    /// Per slot: expiry in nanoseconds (0 when free).
    expires: Vec<u64>,
    /// Per slot: the live entry may not be evicted. Kept beside the tags (and set from
    /// [`Evictable`] when a value is written, or by [`FlowTable::pin`]) so that choosing a
    /// victim never reads the entries themselves.
    pinned: Vec<bool>,
    slots: Vec<(K, V)>,
    set_mask: usize,
    live: usize,
    sweep_at: usize,
}

/// A word of a key or value that warming reads, so the load is not optimised away.
pub trait WarmWord {
    fn warm_word(&self) -> u64;
}

impl WarmWord for u32 {
    fn warm_word(&self) -> u64 {
        u64::from(*self)
    }
}

/// Whether a live value may be evicted to make room for a new key in a full set.
pub trait Evictable {
    fn evictable(&self) -> bool;
}

impl Evictable for u32 {
    /// Test values: odd ones are protected.
    fn evictable(&self) -> bool {
        self.is_multiple_of(2)
    }
}

/// A slot index that no table has, for [`FlowTable::victim`]'s `exclude`.
pub const NO_SLOT: usize = usize::MAX;

#[inline]
fn tag_of(hash: u64) -> u32 {
    ((hash >> 32) as u32) | 1
}

impl<K: Copy + Eq + Default + WarmWord, V: Copy + Default + WarmWord + Evictable> FlowTable<K, V> {
    /// A table of at least `capacity` slots (rounded up to a power-of-two number of sets).
    pub fn with_capacity(capacity: usize) -> FlowTable<K, V> {
        let sets = capacity.div_ceil(WAYS).max(1).next_power_of_two();
        let n = sets * WAYS;
        FlowTable {
            tags: vec![0; n],
            expires: vec![0; n],
            pinned: vec![false; n],
            slots: vec![(K::default(), V::default()); n],
            set_mask: sets - 1,
            live: 0,
            sweep_at: 0,
        }
    }

    #[inline]
    fn set_of(&self, hash: u64) -> usize {
        ((hash as usize) & self.set_mask) * WAYS
    }

    /// Loads the tags of `hash`'s set and returns a value derived from them. Called for a whole
    /// batch before the lookups, it lets the CPU fetch many sets from memory at once.
    #[inline]
    pub fn warm(&self, hash: u64) -> u64 {
        let base = self.set_of(hash);
        u64::from(self.tags[base] ^ self.tags[base + WAYS - 1]) ^ self.expires[base] ^ self.expires[base + WAYS - 1]
    }

    /// Loads the expiry, key and value whose tag matches `hash` (if any): the second step of
    /// warming.
    #[inline]
    pub fn warm_entry(&self, hash: u64) -> u64 {
        let base = self.set_of(hash);
        let tag = tag_of(hash);
        match (base..base + WAYS).find(|&i| self.tags[i] == tag) {
            Some(i) => self.expires[i] ^ self.slots[i].0.warm_word() ^ self.slots[i].1.warm_word(),
            None => 0,
        }
    }

    /// Reads the slot an insert of a new key with `hash` would take at `now` (the free or
    /// soonest-expiring way), so the insert's stores do not wait on memory.
    #[inline]
    pub fn warm_victim(&self, hash: u64) -> u64 {
        let base = self.set_of(hash);
        let mut v = base;
        for i in base + 1..base + WAYS {
            if self.expires[i] < self.expires[v] {
                v = i;
            }
        }
        self.slots[v].0.warm_word() ^ self.slots[v].1.warm_word()
    }

    /// The slot holding a live entry for `key`.
    #[inline]
    pub fn find(&self, hash: u64, key: &K, now: u64) -> Option<usize> {
        let base = self.set_of(hash);
        let tag = tag_of(hash);
        (base..base + WAYS).find(|&i| self.tags[i] == tag && self.expires[i] > now && self.slots[i].0 == *key)
    }

    #[inline]
    pub fn get(&self, slot: usize) -> (&K, &V, u64) {
        let s = &self.slots[slot];
        (&s.0, &s.1, self.expires[slot])
    }

    #[inline]
    pub fn val_mut(&mut self, slot: usize) -> &mut V {
        &mut self.slots[slot].1
    }

    /// Sets the expiry of a live slot.
    #[inline]
    pub fn set_expiry(&mut self, slot: usize, expires: u64) {
        if self.tags[slot] != 0 {
            self.expires[slot] = expires.max(1);
        }
    }

    /// The slot an insert of `key` would take at `now`, never `exclude`: the live entry of
    /// the same key, else a free or expired way (the one that expired first), else the
    /// evictable live entry that expires soonest. `None` when every other way holds a
    /// protected live entry.
    pub fn victim(&self, hash: u64, key: &K, now: u64, exclude: usize) -> Option<usize> {
        let base = self.set_of(hash);
        let tag = tag_of(hash);
        let mut free: Option<usize> = None;
        let mut evict: Option<usize> = None;
        for i in base..base + WAYS {
            if i == exclude {
                continue;
            }
            let exp = self.expires[i];
            if exp <= now {
                if free.is_none_or(|f| exp < self.expires[f]) {
                    free = Some(i);
                }
            } else if self.tags[i] == tag && self.slots[i].0 == *key {
                return Some(i);
            } else if !self.pinned[i] && evict.is_none_or(|e| exp < self.expires[e]) {
                evict = Some(i);
            }
        }
        free.or(evict)
    }

    /// Writes `key` into `slot` (from [`FlowTable::victim`]) and says what was displaced.
    pub fn place(&mut self, slot: usize, hash: u64, key: K, val: V, expires: u64, now: u64) -> Displaced {
        let displaced = if self.tags[slot] == 0 {
            self.live += 1;
            Displaced::Nothing
        } else if self.expires[slot] <= now {
            Displaced::Expired
        } else if self.slots[slot].0 == key {
            Displaced::Nothing
        } else {
            Displaced::Evicted
        };
        self.tags[slot] = tag_of(hash);
        self.expires[slot] = expires.max(1);
        self.pinned[slot] = !val.evictable();
        self.slots[slot] = (key, val);
        displaced
    }

    /// Inserts (or replaces) `key`. Returns the slot and what was displaced, or `None` when
    /// the set is full of protected live entries.
    pub fn insert(&mut self, hash: u64, key: K, val: V, expires: u64, now: u64) -> Option<(usize, Displaced)> {
        let slot = self.victim(hash, &key, now, NO_SLOT)?;
        Some((slot, self.place(slot, hash, key, val, expires, now)))
    }

    /// Protects a live slot from eviction (or not), after its value changed in place.
    #[inline]
    pub fn pin(&mut self, slot: usize, pinned: bool) {
        self.pinned[slot] = pinned;
    }

    /// Frees a slot.
    pub fn remove(&mut self, slot: usize) {
        if self.tags[slot] != 0 {
            self.tags[slot] = 0;
            self.expires[slot] = 0;
            self.live -= 1;
        }
    }

    /// Reclaims expired slots among the next `budget` slots; returns how many it freed.
    pub fn sweep(&mut self, now: u64, budget: usize) -> usize {
        let mut freed = 0;
        for _ in 0..budget.min(self.slots.len()) {
            let i = self.sweep_at;
            self.sweep_at = (self.sweep_at + 1) % self.slots.len();
            if self.tags[i] != 0 && self.expires[i] <= now {
                self.tags[i] = 0;
                self.expires[i] = 0;
                self.live -= 1;
                freed += 1;
            }
        }
        freed
    }

    /// Frees every slot.
    pub fn clear(&mut self) {
        self.tags.fill(0);
        self.expires.fill(0);
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
        self.iter_live_in(now, 0..self.slots.len())
    }

    /// As [`FlowTable::iter_live`], over the slots of `range` only (clamped to the table), so
    /// that a walk of a large table can be split between batches.
    pub fn iter_live_in(&self, now: u64, range: core::ops::Range<usize>) -> impl Iterator<Item = (usize, &K, &V, u64)> {
        let end = range.end.min(self.slots.len());
        let start = range.start.min(end);
        self.slots[start..end]
            .iter()
            .enumerate()
            .map(move |(i, s)| (start + i, s))
            .filter(move |(i, _)| self.tags[*i] != 0 && self.expires[*i] > now)
            .map(|(i, s)| (i, &s.0, &s.1, self.expires[i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_find_expire() {
        let mut t: FlowTable<u32, u32> = FlowTable::with_capacity(64);
        let (s, d) = t.insert(5, 5, 50, 100, 0).unwrap();
        assert_eq!(d, Displaced::Nothing);
        assert_eq!(t.find(5, &5, 10), Some(s));
        assert_eq!(t.find(5, &5, 100), None, "expired at its expiry time");
        assert_eq!(t.occupied(), 1);
        assert_eq!(t.sweep(100, 1000), 1);
        assert_eq!(t.occupied(), 0);
    }

    /// A walk in chunks (listings and flushes, between batches) sees every live entry once.
    #[test]
    fn chunked_walks_see_every_entry_once() {
        let mut t: FlowTable<u32, u32> = FlowTable::with_capacity(256);
        for k in 0..100u32 {
            t.insert(u64::from(k).wrapping_mul(0x9e37_79b9_7f4a_7c15), k, k, 1000, 0);
        }
        let whole: Vec<usize> = t.iter_live(1).map(|e| e.0).collect();
        let mut chunked = Vec::new();
        let mut from = 0;
        while from < t.capacity() {
            chunked.extend(t.iter_live_in(1, from..from + 7).map(|e| e.0));
            from += 7;
        }
        assert_eq!(whole.len(), 100);
        assert_eq!(chunked, whole);
        assert_eq!(t.iter_live_in(1, 300..400).count(), 0, "a range past the end is empty");
    }

    #[test]
    fn full_set_evicts_soonest_expiry() {
        let mut t: FlowTable<u32, u32> = FlowTable::with_capacity(WAYS);
        for k in 0..WAYS as u32 {
            t.insert(0, k, 2 * k, 1000 + u64::from(k), 0);
        }
        let (_, d) = t.insert(0, 99, 98, 5000, 0).unwrap();
        assert_eq!(d, Displaced::Evicted);
        assert_eq!(t.find(0, &0, 1), None, "key 0 had the soonest expiry");
        assert!(t.find(0, &99, 1).is_some());
        assert_eq!(t.occupied(), WAYS);
        let (_, d) = t.insert(0, 98, 98, 5000, 1003).unwrap();
        assert_eq!(d, Displaced::Expired);
    }

    #[test]
    fn protected_entries_are_never_evicted_and_a_full_set_refuses() {
        let mut t: FlowTable<u32, u32> = FlowTable::with_capacity(WAYS);
        // Ways 0..4 protected (odd values), 4..8 evictable, the protected ones expiring first.
        for k in 0..WAYS as u32 {
            let v = if k < 4 { 1 } else { 2 };
            t.insert(0, k, v, 1000 + u64::from(k), 0).unwrap();
        }
        let (s, d) = t.insert(0, 50, 1, 9000, 0).unwrap();
        assert_eq!(d, Displaced::Evicted);
        assert_eq!(t.find(0, &4, 1), None, "the soonest-expiring evictable entry gave way");
        for k in 0..4 {
            assert!(t.find(0, &k, 1).is_some(), "protected key {k} kept");
        }
        assert_ne!(t.victim(0, &51, 1, s), Some(s), "an excluded slot is never chosen");
        for k in 51..54 {
            t.insert(0, k, 1, 9000, 0).unwrap();
        }
        assert_eq!(t.insert(0, 60, 2, 9000, 0), None, "nothing may give way: refused");
        assert!(t.find(0, &50, 1).is_some());
        // Once entries expire, their ways are free again.
        assert!(t.insert(0, 60, 2, 9000, 1001).is_some());
    }

    #[test]
    fn reinsert_same_key_replaces() {
        let mut t: FlowTable<u32, u32> = FlowTable::with_capacity(16);
        let (a, _) = t.insert(1, 7, 1, 100, 0).unwrap();
        let (b, d) = t.insert(1, 7, 2, 200, 0).unwrap();
        assert_eq!((a, d), (b, Displaced::Nothing));
        assert_eq!(*t.get(b).1, 2);
        assert_eq!(t.occupied(), 1);
    }
}
