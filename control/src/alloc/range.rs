//! Address blocks and the configured ranges the allocators take from.

use super::{start_of, Held, InUse};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An inclusive range of addresses of one family, as integers (IPv4 in the low 32 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub v4: bool,
    pub first: u128,
    pub last: u128,
}

fn to_int(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn to_ip(v4: bool, n: u128) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(n as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(n))
    }
}

impl Block {
    /// A CIDR's addresses. With `hosts_only`, the network address is left out, and for IPv4
    /// the broadcast address too, as the API server's service IP allocator does (for blocks of
    /// more than two addresses).
    pub fn cidr(s: &str, hosts_only: bool) -> Result<Block, String> {
        let (ip, len) = s.split_once('/').ok_or_else(|| format!("'{s}' is not a CIDR like 10.96.0.0/12"))?;
        let ip: IpAddr = ip.parse().map_err(|_| format!("'{s}': '{ip}' is not an IP address"))?;
        let bits: u32 = if ip.is_ipv4() { 32 } else { 128 };
        let len: u32 = len.parse().ok().filter(|l| *l <= bits).ok_or_else(|| format!("'{s}': bad prefix length"))?;
        let host_bits = bits - len;
        let size_mask: u128 = if host_bits == 128 { u128::MAX } else { (1u128 << host_bits) - 1 };
        let n = to_int(ip);
        if n & size_mask != 0 {
            return Err(format!("'{s}' has host bits set"));
        }
        let (mut first, mut last) = (n, n | size_mask);
        if hosts_only && host_bits >= 2 {
            first += 1;
            if ip.is_ipv4() {
                last -= 1;
            }
        }
        Ok(Block { v4: ip.is_ipv4(), first, last })
    }

    /// A pool entry: a CIDR (every address of it; IPv4 network and broadcast left out) or an
    /// inclusive range `first-last` of one family.
    pub fn pool(s: &str) -> Result<Block, String> {
        if s.contains('/') {
            return Block::cidr(s, true);
        }
        let (a, b) =
            s.split_once('-').ok_or_else(|| format!("'{s}' is not a CIDR or a range like 192.0.2.10-192.0.2.20"))?;
        let a: IpAddr = a.trim().parse().map_err(|_| format!("'{s}': '{a}' is not an IP address"))?;
        let b: IpAddr = b.trim().parse().map_err(|_| format!("'{s}': '{b}' is not an IP address"))?;
        if a.is_ipv4() != b.is_ipv4() || to_int(a) > to_int(b) {
            return Err(format!("'{s}': the range must go up within one family"));
        }
        Ok(Block { v4: a.is_ipv4(), first: to_int(a), last: to_int(b) })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.v4 && (self.first..=self.last).contains(&to_int(ip))
    }

    /// A free address for `owner`: probing from a start that hashes the owner, the first that
    /// `make` turns into a value nobody else holds. Bounded by the block's size and by
    /// 1,048,576 probes (a block fuller than that is treated as full).
    pub fn pick(&self, owner: &str, what: &str, used: &InUse, make: impl Fn(IpAddr) -> Held) -> Option<IpAddr> {
        // Saturating: the whole IPv6 space would overflow; it is never that big in practice.
        let size = (self.last - self.first).saturating_add(1);
        let start = u128::from(start_of(owner, what)) % size;
        let probes = size.min(1 << 20);
        (0..probes).map(|i| to_ip(self.v4, self.first + (start + i) % size)).find(|ip| !used.taken(&make(*ip), owner))
    }
}

/// What the allocators take from, read from the config.
#[derive(Debug, Clone)]
pub struct Ranges {
    /// The service CIDRs (`datapath.service_cidrs`), as written and as blocks of hosts.
    pub service_cidrs: Vec<(String, Block)>,
    /// The node port range (`datapath.nodeport_range`), inclusive.
    pub node_ports: (u16, u16),
    /// LoadBalancer address pools (`datapath.load_balancer_pools`); none means addresses
    /// are managed outside podswitch (the status a manifest gives is kept).
    pub pools: Vec<(String, Block)>,
}

impl Ranges {
    /// From the datapath config; errors name the field.
    pub fn from_config(dp: &crate::config::DatapathConfig) -> Result<Ranges, String> {
        let service_cidrs = dp
            .service_cidrs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                Block::cidr(c, true).map(|b| (c.clone(), b)).map_err(|e| format!("datapath.service_cidrs[{i}]: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let bad = || format!("datapath.nodeport_range: '{}' is not a range like 30000-32767", dp.nodeport_range);
        let (lo, hi) = dp.nodeport_range.split_once('-').ok_or_else(bad)?;
        let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
        let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
        if lo == 0 || lo > hi {
            return Err(bad());
        }
        let pools = dp
            .load_balancer_pools
            .iter()
            .enumerate()
            .map(|(i, c)| {
                Block::pool(c).map(|b| (c.clone(), b)).map_err(|e| format!("datapath.load_balancer_pools[{i}]: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Ranges { service_cidrs, node_ports: (lo, hi), pools })
    }

    /// The service CIDR of a family.
    pub fn service_block(&self, v4: bool) -> Option<&(String, Block)> {
        self.service_cidrs.iter().find(|(_, b)| b.v4 == v4)
    }

    /// The service CIDRs as a list for messages.
    pub fn service_list(&self) -> String {
        self.service_cidrs.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// A free node port for `owner` (probing from a hash of `owner` and `what`), not one of
    /// `except` (the owner's own ports already placed in this allocation).
    pub fn pick_node_port(&self, owner: &str, what: &str, used: &InUse, except: &[u16]) -> Option<u16> {
        let (lo, hi) = self.node_ports;
        let size = u32::from(hi - lo) + 1;
        let start = (start_of(owner, what) % u64::from(size)) as u32;
        (0..size)
            .map(|i| lo + ((start + i) % size) as u16)
            .find(|p| !except.contains(p) && !used.taken(&Held::NodePort(*p), owner))
    }
}
