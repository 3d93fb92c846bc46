//! Hashing for flow tables and hash maps. Two kinds:
//! - [`hash_words`]: fast and seedable, for what every node and worker must compute alike
//!   (Maglev choice, flow owners, tunnel source ports) from the config's `hash_seed`; not for
//!   adversaries, who can read the seed.
//! - [`SecretHash`]: SipHash-1-3 (Aumasson and Bernstein, as the kernel's conntrack uses
//!   siphash) under a secret key, for per-worker tables that a sender must not be able to
//!   crowd (conntrack, session affinity, fragments): without the key nobody can compute which
//!   tuples share a set.
//!
//! Keys and seeds are passed in by the caller, so tests are deterministic.

use core::hash::{BuildHasher, Hasher};

const K1: u64 = 0x9e37_79b9_7f4a_7c15;
const K2: u64 = 0xbf58_476d_1ce4_e5b9;
const K3: u64 = 0x94d0_49bb_1331_11eb;

/// Final avalanche (splitmix64).
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(K2);
    z = (z ^ (z >> 27)).wrapping_mul(K3);
    z ^ (z >> 31)
}

/// Hashes a few words with a seed.
#[inline]
pub fn hash_words(seed: u64, words: &[u64]) -> u64 {
    let mut h = seed ^ K1;
    for &w in words {
        h = (h ^ w).wrapping_mul(K1).rotate_left(29);
    }
    mix64(h)
}

/// A keyed pseudo-random function over a few 64-bit words: SipHash-1-3 with a 128-bit key
/// (one compression round per word, three finalisation rounds), the message being the words
/// in little-endian byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretHash {
    k0: u64,
    k1: u64,
}

#[inline(always)]
fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

impl SecretHash {
    /// A hash keyed by 64 secret bits (stretched to SipHash's 128-bit key).
    pub fn new(key: u64) -> SecretHash {
        SecretHash { k0: key, k1: mix64(key ^ K1) }
    }

    /// SipHash-`C`-`D` of `words`.
    #[inline]
    fn sip<const C: usize, const D: usize>(&self, words: &[u64]) -> u64 {
        let mut v = [
            self.k0 ^ 0x736f_6d65_7073_6575,
            self.k1 ^ 0x646f_7261_6e64_6f6d,
            self.k0 ^ 0x6c79_6765_6e65_7261,
            self.k1 ^ 0x7465_6462_7974_6573,
        ];
        for &m in words {
            v[3] ^= m;
            for _ in 0..C {
                sip_round(&mut v);
            }
            v[0] ^= m;
        }
        // The last block: the message length in bytes in the top byte (no tail bytes).
        let b = ((words.len() as u64 * 8) & 0xff) << 56;
        v[3] ^= b;
        for _ in 0..C {
            sip_round(&mut v);
        }
        v[0] ^= b;
        v[2] ^= 0xff;
        for _ in 0..D {
            sip_round(&mut v);
        }
        v[0] ^ v[1] ^ v[2] ^ v[3]
    }

    /// The hash of `words`.
    #[inline]
    pub fn hash(&self, words: &[u64]) -> u64 {
        self.sip::<1, 3>(words)
    }
}

/// A small, fast hasher for `std::collections::HashMap` in tables (FxHash-like with a final mix).
#[derive(Debug, Default, Clone, Copy)]
pub struct FastHasher {
    h: u64,
}

impl Hasher for FastHasher {
    #[inline]
    fn finish(&self) -> u64 {
        mix64(self.h)
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            self.write_u64(w);
        }
        for &b in chunks.remainder() {
            self.write_u64(u64::from(b));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.h = (self.h.rotate_left(5) ^ i).wrapping_mul(K1);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
}

/// Builds `FastHasher`s.
#[derive(Debug, Default, Clone, Copy)]
pub struct FastBuild;

impl BuildHasher for FastBuild {
    type Hasher = FastHasher;
    fn build_hasher(&self) -> FastHasher {
        FastHasher::default()
    }
}

/// A `HashMap` with the fast hasher, for tables built off the packet path.
pub type FastMap<K, V> = std::collections::HashMap<K, V, FastBuild>;

#[cfg(test)]
mod tests {
    use super::*;

    /// The rounds are SipHash's: with two compression and four finalisation rounds the same
    /// code must give the standard library's SipHash-2-4 (the reference implementation).
    #[test]
    #[allow(deprecated)]
    fn sip_rounds_match_the_reference_siphash_2_4() {
        use core::hash::Hasher;
        for key in [0u64, 1, 0x0706_0504_0302_0100, u64::MAX] {
            let h = SecretHash::new(key);
            for n in 0..6usize {
                let words: Vec<u64> = (0..n as u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ key).collect();
                let mut r = std::hash::SipHasher::new_with_keys(h.k0, h.k1);
                for w in &words {
                    r.write(&w.to_le_bytes());
                }
                assert_eq!(h.sip::<2, 4>(&words), r.finish(), "key {key:#x}, {n} words");
            }
        }
    }

    #[test]
    fn keys_change_everything() {
        let (a, b) = (SecretHash::new(1), SecretHash::new(2));
        let w = [1u64, 2, 3, 4, 5];
        assert_ne!(a.hash(&w), b.hash(&w));
        assert_eq!(a.hash(&w), SecretHash::new(1).hash(&w));
        // The differential that makes `hash_words` collide whatever its seed (bit 63 of one
        // word and bit 28 of the next) does not collide here.
        let mut x = w;
        x[1] ^= 1 << 63;
        x[2] ^= 1 << 28;
        assert_eq!(hash_words(7, &w), hash_words(7, &x));
        assert_eq!(hash_words(99, &w), hash_words(99, &x));
        assert_ne!(a.hash(&w), a.hash(&x));
    }
}
