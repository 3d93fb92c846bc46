//! A bounded, set-associative hash table for per-worker flow state (conntrack, session
//! affinity). Sized once at start; an insert into a full set evicts the entry that expires
//! soonest, so the table never allocates and never refuses. Expiry is lazy, by a time passed
//! in, plus a budgeted sweep that reclaims expired slots and keeps the live count exact.

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

#[inline]
fn tag_of(hash: u64) -> u32 {
    ((hash >> 32) as u32) | 1
}

impl<K: Copy + Eq + Default + WarmWord, V: Copy + Default + WarmWord> FlowTable<K, V> {
    /// A table of at least `capacity` slots (rounded up to a power-of-two number of sets).
    pub fn with_capacity(capacity: usize) -> FlowTable<K, V> {
        let sets = capacity.div_ceil(WAYS).max(1).next_power_of_two();
        let n = sets * WAYS;
        FlowTable {
            tags: vec![0; n],
            expires: vec![0; n],
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

    /// Inserts (or replaces) `key`. Returns the slot and what was displaced.
    pub fn insert(&mut self, hash: u64, key: K, val: V, expires: u64, now: u64) -> (usize, Displaced) {
        let base = self.set_of(hash);
        let tag = tag_of(hash);
        let mut victim = base;
        let mut victim_exp = u64::MAX;
        for i in base..base + WAYS {
            if self.tags[i] == tag && self.expires[i] > now && self.slots[i].0 == key {
                victim = i;
                break;
            }
            if self.expires[i] < victim_exp {
                victim = i;
                victim_exp = self.expires[i];
            }
        }
        let old = self.expires[victim];
        let displaced = if self.tags[victim] == 0 {
            self.live += 1;
            Displaced::Nothing
        } else if old <= now {
            Displaced::Expired
        } else if self.slots[victim].0 == key {
            Displaced::Nothing
        } else {
            Displaced::Evicted
        };
        self.tags[victim] = tag;
        self.expires[victim] = expires.max(1);
        self.slots[victim] = (key, val);
        (victim, displaced)
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
        self.slots
            .iter()
            .enumerate()
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
