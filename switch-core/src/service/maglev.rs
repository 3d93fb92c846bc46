//! Maglev consistent hashing (Eisenbud et al., NSDI 2016), with integer weights: a backend of
//! weight w takes w turns per round while filling the lookup table.

use crate::hash::{hash_words, mix64};

/// Default lookup table size (prime), as in Cilium.
pub const DEFAULT_TABLE_SIZE: usize = 16381;

/// A Maglev lookup table: slot -> backend index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maglev {
    table: Box<[u16]>,
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
        Some(Maglev { table: table.into_boxed_slice() })
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
