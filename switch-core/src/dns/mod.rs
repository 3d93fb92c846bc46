//! Cluster DNS answered in the dataplane (the Kubernetes DNS-based service discovery
//! specification, schema 1.1.0).
//!
//! A UDP query to a cluster DNS address (the `kube-system/kube-dns` Service's cluster IPs) on
//! port 53 is answered by rewriting its frame into the answer, from the name table compiled
//! into the snapshot: no conntrack entry, no allocation, no system call. What the dataplane
//! does not answer (TCP, names outside the cluster zone, queries it does not parse, answers
//! larger than the frame) goes to the daemon's resolver port, translated to the resolver's
//! address; without a resolver port it continues as traffic to the Service.
//!
//! - [`table`]: the name table and its builder;
//! - [`answer`]: a query turned into its answer in the same buffer (also used by the daemon);
//! - [`stage`]: the pipeline stage;
//! - [`DnsStats`]: counters per query type and outcome; [`TraceRecord`]: what the stage did.

pub mod answer;
pub mod stage;
pub mod table;
#[cfg(test)]
mod tests;

pub use answer::{Answer, Outcome, Pass};
pub use table::{NameTable, ZoneBuilder};

use crate::addr::Addr;
use crate::packet::PortId;
use crate::wire::dns::rtype;
use crate::wire::MacAddr;

/// The port DNS is served on (RFC 1035 section 4.2).
pub const DNS_PORT: u16 = 53;

/// The daemon's resolver as a switch port: queries the dataplane does not answer are sent
/// there, their destination translated to the resolver's address of their family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolverPort {
    pub port: PortId,
    /// The MAC of the resolver's interface.
    pub mac: MacAddr,
    pub ipv4: Option<Addr>,
    pub ipv6: Option<Addr>,
}

impl ResolverPort {
    /// The resolver's address of the family of `a`.
    pub fn addr_like(&self, a: Addr) -> Option<Addr> {
        if a.is_v4() {
            self.ipv4
        } else {
            self.ipv6
        }
    }
}

/// What the DNS stage serves, part of the snapshot.
#[derive(Debug, Clone, Default)]
pub struct DnsTable {
    pub names: NameTable,
    /// The cluster DNS addresses (port 53): empty serves nothing.
    pub addresses: Vec<Addr>,
    pub resolver: Option<ResolverPort>,
    /// The pods' interface MTU: an answer is at most this less the IP and UDP headers, or it
    /// goes to the resolver (which the kernel may fragment).
    pub mtu: u16,
}

impl DnsTable {
    /// Whether `dst` is a cluster DNS address.
    #[inline]
    pub fn serves(&self, dst: Addr) -> bool {
        self.addresses.contains(&dst)
    }
}

/// Query types counted apart.
pub const QTYPES: [(u16, &str); 9] = [
    (rtype::A, "A"),
    (rtype::AAAA, "AAAA"),
    (rtype::SRV, "SRV"),
    (rtype::PTR, "PTR"),
    (rtype::CNAME, "CNAME"),
    (rtype::TXT, "TXT"),
    (rtype::SOA, "SOA"),
    (rtype::NS, "NS"),
    (rtype::ANY, "ANY"),
];

/// The counter slot of a query type (the last one is "other").
pub fn qtype_index(t: u16) -> usize {
    QTYPES.iter().position(|(q, _)| *q == t).unwrap_or(QTYPES.len())
}

/// Counters of the DNS stage (per worker, summed on read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DnsStats {
    /// Answers written in the dataplane, by query type ([`QTYPES`] then other).
    pub answered_by_qtype: [u64; QTYPES.len() + 1],
    /// Answers written in the dataplane, by outcome ([`Outcome::ALL`]).
    pub answered_by_outcome: [u64; Outcome::COUNT],
    /// Of those, answers truncated (TC) for the client to retry over TCP.
    pub truncated: u64,
    /// Queries sent to the daemon's resolver (UDP and TCP packets).
    pub to_resolver: u64,
}

impl DnsStats {
    pub fn add(&mut self, o: &DnsStats) {
        for (a, b) in self.answered_by_qtype.iter_mut().zip(o.answered_by_qtype) {
            *a += b;
        }
        for (a, b) in self.answered_by_outcome.iter_mut().zip(o.answered_by_outcome) {
            *a += b;
        }
        self.truncated += o.truncated;
        self.to_resolver += o.to_resolver;
    }

    /// Answers written in the dataplane.
    pub fn answered(&self) -> u64 {
        self.answered_by_outcome.iter().sum()
    }
}

/// What the DNS stage did with a packet, for `trace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceRecord {
    /// Answered in place.
    Answered { qtype: u16, outcome: Outcome, answers: u16, truncated: bool },
    /// Sent to the daemon's resolver, for the reason given.
    ToResolver { reason: Pass },
    /// Not answered and no resolver port: the packet goes on as traffic to the Service.
    ToService,
}
