//! Longest-prefix match over the shared 128-bit address space: one exact-match hash table per
//! prefix length in use, probed from the longest length down. Kubernetes route tables use a
//! handful of distinct lengths (pod CIDRs, node /32s, a default), so a lookup is a few probes
//! whatever the number of routes.

use crate::addr::{mask, Addr, Prefix};
use crate::hash::FastMap;

/// A longest-prefix-match table, built once and then read-only.
#[derive(Debug, Clone)]
pub struct Lpm<V> {
    /// Distinct prefix lengths (128-bit space), longest first, with the table for each.
    levels: Vec<(u8, FastMap<u128, V>)>,
    len: usize,
}

impl<V> Default for Lpm<V> {
    fn default() -> Self {
        Lpm { levels: Vec::new(), len: 0 }
    }
}

impl<V: Clone> Lpm<V> {
    /// Builds the table; a later entry for the same prefix replaces an earlier one.
    pub fn build(entries: impl IntoIterator<Item = (Prefix, V)>) -> Lpm<V> {
        let mut levels: Vec<(u8, FastMap<u128, V>)> = Vec::new();
        for (p, v) in entries {
            let l = p.len128();
            let i = match levels.iter().position(|(len, _)| *len == l) {
                Some(i) => i,
                None => {
                    levels.push((l, FastMap::default()));
                    levels.len() - 1
                }
            };
            levels[i].1.insert(p.addr().bits(), v);
        }
        levels.sort_by_key(|l| core::cmp::Reverse(l.0));
        let len = levels.iter().map(|(_, m)| m.len()).sum();
        Lpm { levels, len }
    }

    /// The value of the longest prefix that contains `a`, with that prefix's 128-bit length.
    #[inline]
    pub fn lookup(&self, a: Addr) -> Option<(u8, &V)> {
        for (len, map) in &self.levels {
            if let Some(v) = map.get(&(a.bits() & mask(*len))) {
                return Some((*len, v));
            }
        }
        None
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The oracle: scan every prefix, keep the longest that matches.
    fn linear<V: Clone>(entries: &[(Prefix, V)], a: Addr) -> Option<(u8, V)> {
        let mut best: Option<(u8, V)> = None;
        for (p, v) in entries {
            if p.contains(a) && best.as_ref().is_none_or(|(l, _)| p.len128() >= *l) {
                best = Some((p.len128(), v.clone()));
            }
        }
        best
    }

    fn v4(a: u32) -> Addr {
        Addr::from(core::net::Ipv4Addr::from(a))
    }

    #[test]
    fn picks_the_longest() {
        let e: Vec<(Prefix, u32)> = vec![
            ("0.0.0.0/0".parse().unwrap(), 0),
            ("10.0.0.0/8".parse().unwrap(), 1),
            ("10.244.0.0/16".parse().unwrap(), 2),
            ("10.244.1.0/24".parse().unwrap(), 3),
        ];
        let t = Lpm::build(e);
        let get = |s: &str| t.lookup(Addr::from(s.parse::<core::net::IpAddr>().unwrap())).map(|(_, v)| *v);
        assert_eq!(get("10.244.1.9"), Some(3));
        assert_eq!(get("10.244.2.9"), Some(2));
        assert_eq!(get("10.1.2.9"), Some(1));
        assert_eq!(get("192.168.1.1"), Some(0));
        assert_eq!(t.len(), 4);
    }

    proptest! {
        #[test]
        fn matches_linear_scan(raw in proptest::collection::vec((any::<u32>(), 0u8..=32, any::<u16>()), 1..200),
                               probes in proptest::collection::vec(any::<u32>(), 1..200)) {
            // Dedup by prefix, last one wins, as in build().
            let mut entries: Vec<(Prefix, u16)> = Vec::new();
            for (a, len, v) in raw {
                let m = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
                let p = Prefix::new(core::net::IpAddr::V4((a & m).into()), len).unwrap();
                entries.retain(|(q, _)| *q != p);
                entries.push((p, v));
            }
            let t = Lpm::build(entries.clone());
            for probe in probes.iter().copied().chain(entries.iter().map(|(p, _)| p.addr().low32())) {
                let got = t.lookup(v4(probe)).map(|(l, v)| (l, *v));
                prop_assert_eq!(got, linear(&entries, v4(probe)));
            }
        }

        #[test]
        fn matches_linear_scan_v6(raw in proptest::collection::vec((any::<u128>(), 0u8..=128, any::<u16>()), 1..100),
                                  probes in proptest::collection::vec(any::<u128>(), 1..100)) {
            let mut entries: Vec<(Prefix, u16)> = Vec::new();
            for (a, len, v) in raw {
                let a = a & mask(len);
                // Keep clear of the IPv4-mapped block so the family is unambiguous.
                if Addr::from_bits(a).is_v4() { continue; }
                let p = Prefix::new(core::net::IpAddr::V6(a.into()), len).unwrap();
                entries.retain(|(q, _)| *q != p);
                entries.push((p, v));
            }
            let t = Lpm::build(entries.clone());
            for probe in probes {
                let got = t.lookup(Addr::from_bits(probe)).map(|(l, v)| (l, *v));
                prop_assert_eq!(got, linear(&entries, Addr::from_bits(probe)));
            }
        }
    }
}
