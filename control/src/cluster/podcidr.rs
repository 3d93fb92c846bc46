//! Pod CIDR blocks: cutting a cluster CIDR into per-node blocks (what kube-controller-manager
//! does with `--cluster-cidr` and `--node-cidr-mask-size-ipv4/ipv6`) and claiming them in etcd
//! under `{prefix}/ipam/podcidr/{block with '/' as '_'}`, one owner per block.
//!
//! The arithmetic is plain integers: an address is a `u128` (IPv4 in its low 32 bits).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::etcd::{Claim, Cluster, Commit, CommitOutcome};
use super::{check_node_name, ClusterError};

/// Directory of block claims, relative to the prefix.
pub(super) const PODCIDR: &str = "ipam/podcidr/";

/// Shortest IPv6 block: a node gets at most a /64 (kube's default node mask for IPv6).
const V6_MASK_MIN: u8 = 64;
/// Longest IPv6 block that still holds more than one address.
const V6_MASK_MAX: u8 = 127;
/// Releases per transaction, well under etcd's default `--max-txn-ops` of 128.
const RELEASES_PER_TXN: usize = 100;

/// An IPv4 or IPv6 network: an address with no bits set after the prefix, and the prefix
/// length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Cidr {
    v6: bool,
    addr: u128,
    len: u8,
}

impl Cidr {
    fn bits(self) -> u8 {
        if self.v6 {
            128
        } else {
            32
        }
    }

    /// Parses `a.b.c.d/n` or `x::/n`, refusing host bits (`10.0.0.1/8`), as Kubernetes does for
    /// `--cluster-cidr`.
    pub(super) fn parse(s: &str) -> Result<Cidr, ClusterError> {
        let bad = |reason: String| ClusterError::BadCidr { cidr: s.to_string(), reason };
        let (a, l) = s.split_once('/').ok_or_else(|| bad("needs a prefix length, e.g. 10.244.0.0/16".into()))?;
        let ip: IpAddr = a.parse().map_err(|_| bad(format!("{a:?} is not an IPv4 or IPv6 address")))?;
        let (v6, addr, bits) = match ip {
            IpAddr::V4(v4) => (false, u128::from(u32::from(v4)), 32),
            IpAddr::V6(v6) => (true, u128::from(v6), 128),
        };
        let len: u8 = l.parse().map_err(|_| bad(format!("prefix length {l:?} is not a number")))?;
        if len > bits {
            return Err(bad(format!("prefix length {len} is longer than {bits}")));
        }
        let c = Cidr { v6, addr, len };
        if addr & c.host_mask() != 0 {
            let net = Cidr { addr: addr & !c.host_mask(), ..c };
            return Err(bad(format!("has host bits set; the network is {net}")));
        }
        Ok(c)
    }

    /// The bits after the prefix.
    fn host_mask(self) -> u128 {
        let host = u32::from(self.bits() - self.len);
        if host >= 128 {
            u128::MAX
        } else {
            (1u128 << host) - 1
        }
    }

    fn first(self) -> u128 {
        self.addr
    }

    fn last(self) -> u128 {
        self.addr | self.host_mask()
    }

    /// Whether `inner` lies wholly inside `self`.
    pub(super) fn contains(self, inner: Cidr) -> bool {
        self.v6 == inner.v6 && inner.len >= self.len && inner.first() >= self.first() && inner.last() <= self.last()
    }

    /// Whether the two share an address.
    pub(super) fn overlaps(self, o: Cidr) -> bool {
        self.v6 == o.v6 && self.first() <= o.last() && o.first() <= self.last()
    }

    /// The last part of its claim key: `10.244.1.0_24`, `fd00:10:244:1::_64`.
    pub(super) fn key_part(self) -> String {
        self.to_string().replace('/', "_")
    }

    /// The inverse of [`Cidr::key_part`].
    pub(super) fn from_key_part(s: &str) -> Result<Cidr, ClusterError> {
        let (a, l) = s
            .rsplit_once('_')
            .ok_or_else(|| ClusterError::BadCidr { cidr: s.into(), reason: "no '_' before the length".into() })?;
        Cidr::parse(&format!("{a}/{l}"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.v6 {
            write!(f, "{}/{}", Ipv6Addr::from(self.addr), self.len)
        } else {
            // Cannot truncate: an IPv4 `Cidr` only ever holds 32-bit addresses.
            write!(f, "{}/{}", Ipv4Addr::from(self.addr as u32), self.len)
        }
    }
}

/// A cluster CIDR and the size of the blocks it is cut into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Plan {
    pub(super) cidr: Cidr,
    pub(super) mask: u8,
}

impl Plan {
    /// Checks `cidr` and picks its node mask: `v4_mask` for IPv4 (from the CIDR's length to
    /// 32), `v6_mask` for IPv6 (64 to 127, and not shorter than the CIDR).
    pub(super) fn new(cidr: &str, v4_mask: u8, v6_mask: u8) -> Result<Plan, ClusterError> {
        let c = Cidr::parse(cidr)?;
        let bad = |reason: String| Err(ClusterError::BadCidr { cidr: cidr.to_string(), reason });
        let mask = if c.v6 { v6_mask } else { v4_mask };
        if mask < c.len {
            return bad(format!("node mask /{mask} is shorter than the cluster CIDR's /{}", c.len));
        }
        if c.v6 && !(V6_MASK_MIN..=V6_MASK_MAX).contains(&mask) {
            return bad(format!("IPv6 node mask /{mask} is outside /{V6_MASK_MIN}../{V6_MASK_MAX}"));
        }
        if !c.v6 && mask > 32 {
            return bad(format!("IPv4 node mask /{mask} is longer than /32"));
        }
        Ok(Plan { cidr: c, mask })
    }

    fn block_size(&self) -> u128 {
        // mask >= 64 for IPv6 and <= 32 bits of host for IPv4: the shift is below 128.
        1u128 << u32::from(self.cidr.bits() - self.mask)
    }

    /// How many blocks the cluster CIDR holds, at most 2^127 (a ::/0 cut into /127s). Leasing
    /// never enumerates blocks; the tests do.
    #[cfg(test)]
    pub(super) fn block_count(&self) -> u128 {
        1u128 << u32::from(self.mask - self.cidr.len)
    }

    /// Block number `i` (from 0, in address order), if there is one.
    #[cfg(test)]
    pub(super) fn nth(&self, i: u128) -> Option<Cidr> {
        // i * size < 2^(bits - len): no overflow.
        (i < self.block_count()).then(|| Cidr {
            v6: self.cidr.v6,
            addr: self.cidr.first() + i * self.block_size(),
            len: self.mask,
        })
    }

    /// The lowest block that overlaps none of `held` (any family, any length: those of other
    /// families or outside the cluster CIDR are ignored); `None` when every block is taken.
    pub(super) fn lowest_free(&self, held: &[Cidr]) -> Option<Cidr> {
        let mut ranges: Vec<(u128, u128)> =
            held.iter().filter(|h| h.overlaps(self.cidr)).map(|h| (h.first(), h.last())).collect();
        ranges.sort_unstable();
        let size = self.block_size();
        let end = self.cidr.last();
        let mut cursor = self.cidr.first();
        for (first, last) in ranges {
            // The candidate is [cursor, cursor + size - 1], inside the cluster CIDR.
            if last < cursor {
                continue;
            }
            if first > cursor + (size - 1) {
                break;
            }
            // Overlap: the next candidate starts at the first block boundary after `last`.
            let after = last.checked_add(1)?;
            cursor = after.checked_add(size - 1)? & !(size - 1);
            if cursor > end {
                return None;
            }
        }
        Some(Cidr { v6: self.cidr.v6, addr: cursor, len: self.mask })
    }
}

impl Cluster {
    /// Gives `node` one pod CIDR block of each cluster CIDR (IPv4 blocks of `/v4_mask`, IPv6
    /// blocks of `/v6_mask`, as kube-controller-manager's `--node-cidr-mask-size-ipv4/ipv6`),
    /// in the order of `cluster_cidrs`: the block it already holds (after a restart), else
    /// the lowest free one, claimed in an etcd transaction that succeeds only if the claim
    /// key does not exist yet, and retried from a fresh listing when another node took it
    /// first. Claims are not leased: a node keeps its blocks until
    /// [`Cluster::release_pod_cidrs`].
    ///
    /// A held block of another length that overlaps a candidate (after a change of node
    /// mask) keeps the candidate taken. All nodes must use the same masks: claims of
    /// different lengths are separate keys, and two nodes claiming overlapping blocks of
    /// different lengths at the same moment would both succeed.
    ///
    /// Errors: [`ClusterError::BadCidr`] for a CIDR with host bits or a mask out of range,
    /// [`ClusterError::Exhausted`] when every block is held, [`ClusterError::Etcd`].
    pub async fn lease_pod_cidrs(
        &self,
        node: &str,
        cluster_cidrs: &[String],
        v4_mask: u8,
        v6_mask: u8,
    ) -> Result<Vec<String>, ClusterError> {
        check_node_name(node)?;
        let plans = cluster_cidrs.iter().map(|c| Plan::new(c, v4_mask, v6_mask)).collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::with_capacity(plans.len());
        for plan in plans {
            out.push(self.lease_one(node, &plan).await?.to_string());
        }
        Ok(out)
    }

    async fn lease_one(&self, node: &str, plan: &Plan) -> Result<Cidr, ClusterError> {
        loop {
            let claims = self.block_claims().await?;
            let mine = claims
                .iter()
                .filter(|(b, owner)| owner == node && b.len == plan.mask && plan.cidr.contains(*b))
                .map(|(b, _)| *b)
                .min();
            if let Some(b) = mine {
                return Ok(b);
            }
            let held: Vec<Cidr> = claims.iter().map(|(b, _)| *b).collect();
            let Some(block) = plan.lowest_free(&held) else {
                return Err(ClusterError::Exhausted { cidr: plan.cidr.to_string(), mask: plan.mask });
            };
            let key = format!("{PODCIDR}{}", block.key_part());
            let claim = Claim::New { key: key.clone(), owner: node.to_string() };
            match self.commit(Commit { claims: vec![claim], ..Commit::default() }).await? {
                CommitOutcome::Committed { .. } => {
                    tracing::info!(node, block = %block, "cluster: pod CIDR block claimed");
                    return Ok(block);
                }
                CommitOutcome::Conflict { holder, .. } => {
                    tracing::debug!(node, block = %block, holder = ?holder, "cluster: pod CIDR block taken meanwhile, retrying");
                }
            }
        }
    }

    /// Every block claim: block and owner. Keys that are not blocks are logged and skipped;
    /// an owner that is not UTF-8 still holds its block.
    async fn block_claims(&self) -> Result<Vec<(Cidr, String)>, ClusterError> {
        let (_, items) = self.list(PODCIDR).await?;
        let mut out = Vec::with_capacity(items.len());
        for (key, value) in items {
            let part = key.strip_prefix(PODCIDR).unwrap_or(&key);
            match Cidr::from_key_part(part) {
                Ok(b) => out.push((b, String::from_utf8_lossy(&value).into_owned())),
                Err(e) => tracing::warn!(key = %self.key(&key), error = %e, "cluster: ignoring a pod CIDR claim key"),
            }
        }
        Ok(out)
    }

    /// Releases every pod CIDR block `node` holds (for `delete node`): each claim key is
    /// deleted only if it still names `node`.
    pub async fn release_pod_cidrs(&self, node: &str) -> Result<(), ClusterError> {
        check_node_name(node)?;
        let mine: Vec<(String, String)> = self
            .block_claims()
            .await?
            .into_iter()
            .filter(|(_, owner)| owner == node)
            .map(|(b, owner)| (format!("{PODCIDR}{}", b.key_part()), owner))
            .collect();
        for chunk in mine.chunks(RELEASES_PER_TXN) {
            self.commit(Commit { releases: chunk.to_vec(), ..Commit::default() }).await?;
            for (key, _) in chunk {
                tracing::info!(node, key = %key, "cluster: pod CIDR block released");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        Cidr::parse(s).expect(s)
    }

    #[test]
    fn parse_refuses_host_bits_and_junk() {
        assert_eq!(c("10.244.0.0/16").to_string(), "10.244.0.0/16");
        assert_eq!(c("fd00:10:244::/56").to_string(), "fd00:10:244::/56");
        assert_eq!(c("0.0.0.0/0").host_mask(), u128::from(u32::MAX));
        assert_eq!(c("::/0").host_mask(), u128::MAX);
        let e = Cidr::parse("10.244.1.1/16").expect_err("host bits");
        assert!(e.to_string().contains("10.244.0.0/16"), "{e}");
        for bad in ["10.244.0.0", "10.244.0.0/33", "fd00::/129", "x/8", "10.0.0.0/a", "10.0.0.0/-1", ""] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mask_validation() {
        assert!(Plan::new("10.244.0.0/16", 24, 64).is_ok());
        assert!(Plan::new("10.244.0.0/16", 16, 64).is_ok(), "one block is the whole CIDR");
        assert!(Plan::new("10.244.0.0/16", 15, 64).is_err(), "shorter than the CIDR");
        assert!(Plan::new("10.244.0.0/16", 33, 64).is_err());
        assert!(Plan::new("fd00::/48", 24, 64).is_ok());
        assert!(Plan::new("fd00::/48", 24, 63).is_err(), "v6 blocks are /64 or longer");
        assert!(Plan::new("fd00::/48", 24, 128).is_err());
        assert!(Plan::new("fd00::/80", 24, 64).is_err(), "shorter than the CIDR");
        assert!(Plan::new("fd00::/80", 24, 96).is_ok());
        assert!(Plan::new("10.244.0.1/16", 24, 64).is_err(), "host bits");
    }

    #[test]
    fn ipv4_enumeration() {
        let p = Plan::new("10.244.0.0/20", 24, 64).expect("plan");
        assert_eq!(p.block_count(), 16);
        let all: Vec<String> = (0..16).map(|i| p.nth(i).expect("block").to_string()).collect();
        assert_eq!(all[0], "10.244.0.0/24");
        assert_eq!(all[1], "10.244.1.0/24");
        assert_eq!(all[15], "10.244.15.0/24");
        assert_eq!(p.nth(16), None);
        let whole = Plan::new("0.0.0.0/0", 32, 64).expect("plan");
        assert_eq!(whole.block_count(), 1 << 32);
        assert_eq!(whole.nth((1 << 32) - 1).expect("last").to_string(), "255.255.255.255/32");
    }

    #[test]
    fn ipv6_enumeration() {
        let p = Plan::new("fd00:10:244::/56", 24, 64).expect("plan");
        assert_eq!(p.block_count(), 256);
        assert_eq!(p.nth(0).expect("0").to_string(), "fd00:10:244::/64");
        assert_eq!(p.nth(1).expect("1").to_string(), "fd00:10:244:1::/64");
        assert_eq!(p.nth(255).expect("255").to_string(), "fd00:10:244:ff::/64");
        let huge = Plan::new("::/0", 24, 127).expect("plan");
        assert_eq!(huge.block_count(), 1 << 127);
        assert_eq!(huge.nth((1 << 127) - 1).expect("last").to_string(), "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127");
        assert_eq!(huge.lowest_free(&[c("::/1")]).expect("free").to_string(), "8000::/127");
        assert_eq!(huge.lowest_free(&[c("::/0")]), None);
    }

    #[test]
    fn lowest_free_skips_held_and_overlapping_blocks() {
        let p = Plan::new("10.244.0.0/20", 24, 64).expect("plan");
        assert_eq!(p.lowest_free(&[]), p.nth(0));
        assert_eq!(p.lowest_free(&[c("10.244.0.0/24"), c("10.244.2.0/24")]), p.nth(1));
        // A /23 from an older mask holds two /24 slots; a /25 holds one.
        assert_eq!(p.lowest_free(&[c("10.244.0.0/23"), c("10.244.2.128/25")]), p.nth(3));
        // Other families and networks outside the cluster CIDR do not count.
        assert_eq!(p.lowest_free(&[c("10.245.0.0/24"), c("fd00::/64"), c("10.0.0.0/16")]), p.nth(0));
        // A supernet holds everything.
        assert_eq!(p.lowest_free(&[c("10.0.0.0/8")]), None);
        let all: Vec<Cidr> = (0..16).map(|i| p.nth(i).expect("block")).collect();
        assert_eq!(p.lowest_free(&all), None);
        assert_eq!(p.lowest_free(&all[..15]), p.nth(15));
        let last_edge = Plan::new("255.255.255.0/24", 26, 64).expect("plan");
        assert_eq!(last_edge.lowest_free(&[c("255.255.255.0/25")]).expect("free").to_string(), "255.255.255.128/26");
        assert_eq!(last_edge.lowest_free(&[c("255.255.255.0/24")]), None);
    }

    /// The sweep agrees with a naive scan of every block against every held network.
    #[test]
    fn lowest_free_matches_a_linear_scan() {
        let p = Plan::new("10.1.0.0/22", 26, 64).expect("plan");
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..500 {
            let mut held = Vec::new();
            for _ in 0..(seed % 12) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let len = 22 + (seed % 9) as u8;
                let off = (seed >> 8) as u32 & 0x3ff;
                let c = Cidr { v6: false, addr: u128::from(0x0a01_0000u32 | off), len };
                held.push(Cidr { addr: c.addr & !c.host_mask(), ..c });
            }
            let naive = (0..p.block_count()).filter_map(|i| p.nth(i)).find(|b| !held.iter().any(|h| h.overlaps(*b)));
            assert_eq!(p.lowest_free(&held), naive, "{held:?}");
            seed = seed.wrapping_add(1);
        }
    }

    #[test]
    fn key_parts_round_trip() {
        for s in ["10.244.1.0/24", "fd00:10:244:1::/64", "0.0.0.0/0"] {
            let k = c(s).key_part();
            assert!(!k.contains('/'), "{k}");
            assert_eq!(Cidr::from_key_part(&k).expect("back"), c(s));
        }
        assert_eq!(c("10.244.1.0/24").key_part(), "10.244.1.0_24");
        assert!(Cidr::from_key_part("10.244.1.0-24").is_err());
    }
}
