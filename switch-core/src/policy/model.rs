//! Rules as the control plane hands them over, and the naive matcher that is the oracle for
//! the compiled classifier.

use crate::addr::{Addr, Prefix};
use crate::endpoint::Identity;

/// Names a rule for counters and traces (the control plane keeps the text behind it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(pub u32);

/// A protocol and port range; `proto == None` matches every packet (a rule with no `ports`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortMatch {
    pub proto: Option<u8>,
    pub lo: u16,
    pub hi: u16,
}

impl PortMatch {
    pub const ANY: PortMatch = PortMatch { proto: None, lo: 0, hi: u16::MAX };

    /// Whether a packet of `proto` to `port` matches; port-less protocols match only `ANY`.
    #[inline]
    pub fn matches(&self, proto: u8, port: Option<u16>) -> bool {
        match self.proto {
            None => true,
            Some(p) => p == proto && port.is_some_and(|x| self.lo <= x && x <= self.hi),
        }
    }
}

/// Who a rule admits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerMatch {
    Identity(Identity),
    Cidr { prefix: Prefix, except: Vec<Prefix> },
}

impl PeerMatch {
    pub fn matches(&self, addr: Addr, id: Identity) -> bool {
        match self {
            PeerMatch::Identity(i) => *i == id,
            PeerMatch::Cidr { prefix, except } => {
                family_contains(prefix, addr) && !except.iter().any(|e| family_contains(e, addr))
            }
        }
    }
}

/// `contains`, but an IPv6 prefix never matches an IPv4 address.
pub(crate) fn family_contains(p: &Prefix, a: Addr) -> bool {
    p.is_v4() == a.is_v4() && p.contains(a)
}

/// One rule: any of `peers` (all peers when empty) on any of `ports` (all when empty).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PolicyRule {
    pub id: RuleId,
    pub peers: Vec<PeerMatch>,
    pub ports: Vec<PortMatch>,
}

/// The union of the rules of every policy that selects an endpoint, for one direction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct DirectionRules {
    pub rules: Vec<PolicyRule>,
}

impl DirectionRules {
    /// The naive matcher: the first rule (in order) that admits the packet.
    pub fn first_match(&self, addr: Addr, id: Identity, proto: u8, port: Option<u16>) -> Option<RuleId> {
        self.rules
            .iter()
            .find(|r| {
                (r.peers.is_empty() || r.peers.iter().any(|p| p.matches(addr, id)))
                    && (r.ports.is_empty() || r.ports.iter().any(|m| m.matches(proto, port)))
            })
            .map(|r| r.id)
    }
}
