//! Maglev consistent hashing (Eisenbud et al., NSDI 2016), with integer weights: a backend of
//! weight w takes w turns per round while filling the lookup table.

use crate::hash::{hash_words, mix64};
use std::collections::HashMap;
use std::sync::Arc;

/// Default lookup table size (prime), as in Cilium.
pub const DEFAULT_TABLE_SIZE: usize = 16381;

/// A Maglev lookup table: slot -> backend index. Shared (reference counted) so that a new
/// snapshot reuses the tables of every service whose backends did not change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maglev {
    table: Arc<[u16]>,
}

/// Table sizes used below the configured maximum: primes near powers of two.
const SIZES: [usize; 10] = [251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071];

/// The table size for `backends` usable backends: the smallest listed prime with at least 100
/// slots per backend (Maglev's balance stays within about 1%), at most `max` (the configured
/// size). Small services get small tables: 10,000 services of 5 backends take 10 MB, not 330.
/// Every node computes the same size from the same backends, so the choice stays consistent
/// across nodes; a service crossing a size step reshuffles its new flows once (tracked flows
/// keep their backend through conntrack).
pub fn table_size_for(backends: usize, max: usize) -> usize {
    let want = backends.saturating_mul(100);
    SIZES.iter().copied().find(|&s| s >= want).unwrap_or(max).min(max)
}

/// Backends as a Maglev table sees them: (stable key, weight), weight 0 for unused ones.
pub type MaglevInput = Vec<(u64, u32)>;

/// Tables built for the previous snapshot, reused by the next when their input is the same
/// (a control-plane structure; it holds what the last build used and nothing else).
#[derive(Debug, Default)]
pub struct MaglevCache {
    prev: HashMap<(MaglevInput, usize), Option<Maglev>>,
    next: HashMap<(MaglevInput, usize), Option<Maglev>>,
    pub hits: u64,
    pub misses: u64,
}

impl MaglevCache {
    /// The table for `backends`, from the cache or newly built.
    pub fn get(&mut self, backends: MaglevInput, max_size: usize) -> Option<Maglev> {
        let size = table_size_for(backends.iter().filter(|b| b.1 > 0).count(), max_size);
        let key = (backends, size);
        if let Some(m) = self.next.get(&key) {
            self.hits += 1;
            return m.clone();
        }
        let m = match self.prev.remove(&key) {
            Some(m) => {
                self.hits += 1;
                m
            }
            None => {
                self.misses += 1;
                Maglev::build(&key.0, size)
            }
        };
        self.next.insert(key, m.clone());
        m
    }

    /// Ends a build: what it used is kept for the next one, the rest is freed.
    pub fn finish(&mut self) {
        self.prev = std::mem::take(&mut self.next);
    }

    /// Ends a build of only some services (an incremental change): what it used is added to
    /// what the earlier builds kept, and tables no snapshot uses any more are freed (only the
    /// cache holds them). Unlike [`MaglevCache::finish`], the tables of the services this
    /// build did not touch stay, so the next full build finds them.
    pub fn finish_incremental(&mut self) {
        let next = std::mem::take(&mut self.next);
        self.prev.retain(|_, m| m.as_ref().is_some_and(|m| Arc::strong_count(&m.table) > 1));
        self.prev.extend(next);
    }

    /// Tables the cache holds for the next build.
    pub fn len(&self) -> usize {
        self.prev.len() + self.next.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets what the current build used (it was rejected), keeping the previous build's.
    pub fn abandon(&mut self) {
        let next = std::mem::take(&mut self.next);
        for (k, v) in next {
            self.prev.entry(k).or_insert(v);
        }
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl Maglev {
    /// Fills a table of `size` slots (a prime) from `(stable key, weight)` per backend; the
    /// returned indices refer to positions in `backends`. Backends of weight 0 get no slot.
    /// Returns `None` if no backend has a weight.
    pub fn build(backends: &[(u64, u32)], size: usize) -> Option<Maglev> {
        let live: Vec<usize> = (0..backends.len()).filter(|&i| backends[i].1 > 0).collect();
        if live.is_empty() || size < 2 {
            return None;
        }
        let g = live.iter().fold(0, |g, &i| gcd(g, backends[i].1));
        let weights: Vec<u32> = live.iter().map(|&i| backends[i].1 / g).collect();
        let max_w = *weights.iter().max().unwrap_or(&1);
        let m = size as u64;
        let perm: Vec<(u64, u64)> = live
            .iter()
            .map(|&i| {
                let k = backends[i].0;
                (hash_words(0x6d61_676c, &[k]) % m, hash_words(0x6576_3031, &[k]) % (m - 1) + 1)
            })
            .collect();
        let mut next = vec![0u64; live.len()];
        let mut table = vec![u16::MAX; size];
        let mut filled = 0;
        let mut round: u32 = 0;
        'fill: loop {
            for (j, &i) in live.iter().enumerate() {
                if round % max_w >= weights[j] {
                    continue;
                }
                let (offset, skip) = perm[j];
                let mut c = (offset + next[j] * skip) % m;
                while table[c as usize] != u16::MAX {
                    next[j] += 1;
                    c = (offset + next[j] * skip) % m;
                }
                table[c as usize] = i as u16;
                next[j] += 1;
                filled += 1;
                if filled == size {
                    break 'fill;
                }
            }
            round = round.wrapping_add(1);
        }
        Some(Maglev { table: table.into() })
    }

    /// The backend index for a flow hash.
    #[inline]
    pub fn pick(&self, flow_hash: u64) -> u16 {
        self.table[(mix64(flow_hash) % self.table.len() as u64) as usize]
    }

    pub fn size(&self) -> usize {
        self.table.len()
    }

    /// Slots owned by each backend index.
    pub fn shares(&self, backends: usize) -> Vec<usize> {
        let mut c = vec![0; backends];
        for &b in self.table.iter() {
            c[usize::from(b)] += 1;
        }
        c
    }

    #[cfg(test)]
    fn slots(&self) -> &[u16] {
        &self.table
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_sizes_keep_a_hundred_slots_per_backend_up_to_the_configured_size() {
        assert_eq!(table_size_for(1, DEFAULT_TABLE_SIZE), 251);
        // An incremental build keeps the tables of untouched services and frees only those
        // nothing holds any more.
        let mut c = MaglevCache::default();
        let a = c.get(vec![(1, 1), (2, 1)], 251);
        let b = c.get(vec![(3, 1)], 251);
        c.finish();
        drop(b);
        let _new = c.get(vec![(4, 1)], 251);
        c.finish_incremental();
        assert_eq!(c.len(), 2, "a (still held) and the new table stay; b (held by nobody) goes");
        let misses = c.misses;
        assert_eq!(c.get(vec![(1, 1), (2, 1)], 251), a);
        assert_eq!(c.misses, misses, "a is found");
        assert_eq!(table_size_for(5, DEFAULT_TABLE_SIZE), 509);
        assert_eq!(table_size_for(100, DEFAULT_TABLE_SIZE), 16381);
        assert_eq!(table_size_for(1000, DEFAULT_TABLE_SIZE), 16381, "capped at the configured size");
        assert_eq!(table_size_for(1000, 65521), 65521, "capped at a larger configured size too");
        assert_eq!(table_size_for(3, 7), 7);
    }

    #[test]
    fn the_cache_reuses_tables_of_unchanged_backends_and_frees_the_rest() {
        let mut c = MaglevCache::default();
        let a = vec![(1, 1), (2, 1)];
        let b = vec![(1, 1), (3, 1)];
        let t1 = c.get(a.clone(), 251).expect("table");
        c.get(b.clone(), 251);
        c.finish();
        let t2 = c.get(a.clone(), 251).expect("table");
        assert!(Arc::ptr_eq(&t1.table, &t2.table), "same backends: the same table");
        assert_eq!((c.hits, c.misses), (1, 2));
        c.finish();
        c.get(b, 251);
        assert_eq!(c.misses, 3, "b was not used by the last build and was freed");
        assert_eq!(Maglev::build(&a, 251), Some(t2));
    }

    use super::*;
    use proptest::prelude::*;

    const M: usize = 4099;

    #[test]
    fn balanced_and_complete() {
        let b: Vec<(u64, u32)> = (0..10).map(|i| (1000 + i, 1)).collect();
        let t = Maglev::build(&b, M).unwrap();
        let s = t.shares(10);
        assert_eq!(s.iter().sum::<usize>(), M);
        for n in s {
            assert!((M / 10 - 2..=M / 10 + 2).contains(&n), "share {n}");
        }
    }

    #[test]
    fn weights_scale_shares() {
        let b = vec![(1, 1), (2, 3), (3, 0)];
        let t = Maglev::build(&b, M).unwrap();
        let s = t.shares(3);
        assert_eq!(s[2], 0);
        let ratio = s[1] as f64 / s[0] as f64;
        assert!((2.8..3.2).contains(&ratio), "ratio {ratio}");
        assert!(Maglev::build(&[(1, 0)], M).is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn removing_one_backend_moves_little(n in 3usize..40, gone in 0usize..40, seed in any::<u64>()) {
            let gone = gone % n;
            let keys: Vec<u64> = (0..n as u64).map(|i| seed.wrapping_add(i * 7919)).collect();
            let before: Vec<(u64, u32)> = keys.iter().map(|k| (*k, 1)).collect();
            let after: Vec<(u64, u32)> = keys.iter().enumerate().filter(|(i, _)| *i != gone).map(|(_, k)| (*k, 1)).collect();
            let tb = Maglev::build(&before, M).unwrap();
            let ta = Maglev::build(&after, M).unwrap();
            // Map indices of `after` back to keys, and compare slot owners by key.
            let after_keys: Vec<u64> = after.iter().map(|(k, _)| *k).collect();
            let mut moved = 0;
            for (x, y) in tb.slots().iter().zip(ta.slots()) {
                let kb = keys[usize::from(*x)];
                if kb != keys[gone] && kb != after_keys[usize::from(*y)] {
                    moved += 1;
                }
            }
            // Slots of surviving backends that changed owner: Maglev keeps this small.
            let bound = M * 15 / 100 + M / n;
            prop_assert!(moved <= bound, "moved {} of {} with n={}", moved, M, n);
        }
    }
}
