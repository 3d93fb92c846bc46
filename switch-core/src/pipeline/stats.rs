//! Per-worker counters, summed on read by the control plane.

use crate::drop::DropReason;
use crate::packet::PortId;

/// Counters of one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub drops: [u64; DropReason::COUNT],
}

impl Default for PortStats {
    fn default() -> Self {
        PortStats { rx_packets: 0, rx_bytes: 0, tx_packets: 0, tx_bytes: 0, drops: [0; DropReason::COUNT] }
    }
}

impl PortStats {
    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum()
    }
    pub fn add(&mut self, o: &PortStats) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        for (a, b) in self.drops.iter_mut().zip(o.drops.iter()) {
            *a += b;
        }
    }
}

/// Events counted by the pipeline besides per-port traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventStats {
    pub arp_replies: u64,
    pub nd_replies: u64,
    pub tcp_resets_sent: u64,
    pub icmp_unreachables_sent: u64,
    /// ICMP fragmentation needed / packet too big sent for packets too big for the tunnel.
    pub icmp_too_big_sent: u64,
    pub encapsulated: u64,
    pub decapsulated: u64,
    pub service_new_flows: u64,
    pub affinity_hits: u64,
    pub snat_new_flows: u64,
    pub ct_hits: u64,
    pub ct_misses: u64,
    /// Tracked tuples judged again as new connections: a SYN on a closed, closing or
    /// unanswered flow, or an unanswered flow after a table change.
    pub ct_renewed: u64,
    pub batches: u64,
    /// Frames handed to the worker that owns their flow.
    pub handed_off: u64,
    /// First fragments recorded in the fragment table.
    pub fragments_first: u64,
    /// Later fragments that took their ports from the table.
    pub fragments_later: u64,
    /// Underlay neighbours learned or changed from ARP on the uplink.
    pub neighbors_learned: u64,
}

impl EventStats {
    pub fn add(&mut self, o: &EventStats) {
        self.arp_replies += o.arp_replies;
        self.nd_replies += o.nd_replies;
        self.tcp_resets_sent += o.tcp_resets_sent;
        self.icmp_unreachables_sent += o.icmp_unreachables_sent;
        self.icmp_too_big_sent += o.icmp_too_big_sent;
        self.encapsulated += o.encapsulated;
        self.decapsulated += o.decapsulated;
        self.service_new_flows += o.service_new_flows;
        self.affinity_hits += o.affinity_hits;
        self.snat_new_flows += o.snat_new_flows;
        self.ct_hits += o.ct_hits;
        self.ct_misses += o.ct_misses;
        self.ct_renewed += o.ct_renewed;
        self.batches += o.batches;
        self.handed_off += o.handed_off;
        self.fragments_first += o.fragments_first;
        self.fragments_later += o.fragments_later;
        self.neighbors_learned += o.neighbors_learned;
    }
}

/// All counters of a worker; port counters are sized once at start.
#[derive(Debug, Clone)]
pub struct Stats {
    pub ports: Vec<PortStats>,
    /// What ports removed at run time counted (a pod detached), summed: a port given a freed
    /// id starts from zero, and totals over ports stay whole (every frame received was
    /// forwarded, dropped or handed off).
    pub removed: PortStats,
    pub events: EventStats,
    pub dns: crate::dns::DnsStats,
}

impl Stats {
    pub fn new(max_ports: usize) -> Stats {
        Stats {
            ports: vec![PortStats::default(); max_ports.max(1)],
            removed: PortStats::default(),
            events: EventStats::default(),
            dns: crate::dns::DnsStats::default(),
        }
    }

    #[inline]
    pub fn port(&mut self, p: PortId) -> &mut PortStats {
        let last = self.ports.len() - 1;
        &mut self.ports[p.index().min(last)]
    }

    /// Total drops for a reason over all ports.
    pub fn drops(&self, r: DropReason) -> u64 {
        self.ports.iter().map(|p| p.drops[r.index()]).sum()
    }

    pub fn add(&mut self, o: &Stats) {
        if self.ports.len() < o.ports.len() {
            self.ports.resize(o.ports.len(), PortStats::default());
        }
        for (a, b) in self.ports.iter_mut().zip(o.ports.iter()) {
            a.add(b);
        }
        self.removed.add(&o.removed);
        self.events.add(&o.events);
        self.dns.add(&o.dns);
    }
}
