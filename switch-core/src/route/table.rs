//! The route table: where a destination address goes. Pod CIDRs of this node resolve to local
//! endpoints, remote pod CIDRs to an overlay tunnel to their node, and the rest to the uplink
//! or the host.

use super::Lpm;
use crate::addr::{Addr, Prefix};
use crate::wire::MacAddr;

/// Index of a remote node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeId(pub u16);

/// A remote node reached over the overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteNode {
    pub name: String,
    /// Underlay address the tunnel is sent to.
    pub underlay_ip: Addr,
    /// MAC of the remote tunnel endpoint (inner destination MAC).
    pub vtep_mac: MacAddr,
    /// Next-hop MAC on the underlay for this node (its own MAC on a flat L2 underlay).
    pub next_hop_mac: MacAddr,
}

/// Where a route sends a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteTarget {
    /// A pod CIDR of this node: the endpoint table decides the port.
    Local,
    /// A remote node's pod CIDR: encapsulate towards it.
    Tunnel(NodeId),
    /// Out of the uplink to this next-hop MAC.
    Uplink(MacAddr),
    /// To the host's own stack through the host port.
    Host,
    /// Drop.
    Blackhole,
}

/// The IPv4 and IPv6 route tables.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    v4: Lpm<RouteTarget>,
    v6: Lpm<RouteTarget>,
    entries: Vec<(Prefix, RouteTarget)>,
}

impl RouteTable {
    pub fn build(entries: Vec<(Prefix, RouteTarget)>) -> RouteTable {
        let v4 = Lpm::build(entries.iter().filter(|(p, _)| p.is_v4()).cloned());
        let v6 = Lpm::build(entries.iter().filter(|(p, _)| !p.is_v4()).cloned());
        RouteTable { v4, v6, entries }
    }

    /// The route for `dst`, with the prefix length (in the address's own family) that matched.
    #[inline]
    pub fn lookup(&self, dst: Addr) -> Option<(u8, RouteTarget)> {
        if dst.is_v4() {
            self.v4.lookup(dst).map(|(l, t)| (l - 96, *t))
        } else {
            self.v6.lookup(dst).map(|(l, t)| (l, *t))
        }
    }

    /// All routes as configured.
    pub fn entries(&self) -> &[(Prefix, RouteTarget)] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_separate() {
        let t = RouteTable::build(vec![
            ("::/0".parse().unwrap(), RouteTarget::Host),
            ("10.244.2.0/24".parse().unwrap(), RouteTarget::Tunnel(NodeId(0))),
        ]);
        let a = |s: &str| Addr::from(s.parse::<core::net::IpAddr>().unwrap());
        assert_eq!(t.lookup(a("10.244.2.7")), Some((24, RouteTarget::Tunnel(NodeId(0)))));
        // The IPv6 default must not catch IPv4 destinations.
        assert_eq!(t.lookup(a("8.8.8.8")), None);
        assert_eq!(t.lookup(a("2001:db8::1")), Some((0, RouteTarget::Host)));
    }
}
