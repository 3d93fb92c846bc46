//! Counters as text: one `key=value` line per port, per drop reason and per event, stable so
//! that scripts and tests can read them.

use std::fmt::Write;
use switch_core::drop::DropReason;
use switch_core::pipeline::Stats;
use switch_core::snapshot::Tables;

/// What a run leaves to report.
#[derive(Debug, Clone)]
pub struct Report {
    pub stats: Stats,
    pub conntrack_entries: usize,
    pub conntrack_capacity: usize,
    pub conntrack_evicted: u64,
    pub generation: u64,
    /// How each port's I/O was set up, e.g. `afxdp native copy`, by port index.
    pub port_modes: Vec<String>,
    /// Frame buffers in the worker's pool (see `io_backends::Backend::free_buffers`).
    pub pool_free: usize,
}

impl Report {
    /// A worker's counters as they stand, with the snapshot generation and the ports' I/O modes.
    pub fn of_worker(w: &switch_core::pipeline::Worker, generation: u64, port_modes: Vec<String>) -> Report {
        let ct = w.conntrack();
        Report {
            stats: w.stats().clone(),
            conntrack_entries: ct.entries(),
            conntrack_capacity: ct.capacity(),
            conntrack_evicted: ct.stats.evicted,
            generation,
            port_modes,
            pool_free: 0,
        }
    }

    /// The workers' published reports added up (ports' I/O modes from the first); `None`
    /// until some worker has published.
    pub fn sum(reports: &[std::sync::Arc<std::sync::Mutex<Option<Report>>>]) -> Option<Report> {
        let mut total: Option<Report> = None;
        for r in reports {
            let Ok(g) = r.lock() else { continue };
            let Some(r) = g.as_ref() else { continue };
            match total.as_mut() {
                None => total = Some(r.clone()),
                Some(t) => {
                    t.stats.add(&r.stats);
                    t.conntrack_entries += r.conntrack_entries;
                    t.conntrack_capacity += r.conntrack_capacity;
                    t.conntrack_evicted += r.conntrack_evicted;
                    t.pool_free += r.pool_free;
                    t.generation = t.generation.min(r.generation);
                }
            }
        }
        total
    }

    /// The event counters by name.
    pub fn events(&self) -> Vec<(&'static str, u64)> {
        let e = &self.stats.events;
        vec![
            ("arp_replies", e.arp_replies),
            ("nd_replies", e.nd_replies),
            ("tcp_resets_sent", e.tcp_resets_sent),
            ("icmp_unreachables_sent", e.icmp_unreachables_sent),
            ("icmp_too_big_sent", e.icmp_too_big_sent),
            ("encapsulated", e.encapsulated),
            ("decapsulated", e.decapsulated),
            ("service_new_flows", e.service_new_flows),
            ("affinity_hits", e.affinity_hits),
            ("snat_new_flows", e.snat_new_flows),
            ("conntrack_hits", e.ct_hits),
            ("conntrack_misses", e.ct_misses),
            ("conntrack_renewed", e.ct_renewed),
            ("batches", e.batches),
            ("handed_off", e.handed_off),
            ("fragments_first", e.fragments_first),
            ("fragments_later", e.fragments_later),
            ("neighbors_learned", e.neighbors_learned),
            ("dns_answered", self.stats.dns.answered()),
            ("dns_truncated", self.stats.dns.truncated),
            ("dns_to_resolver", self.stats.dns.to_resolver),
        ]
    }

    /// Formats the counters; ports are named from the snapshot.
    pub fn render(&self, t: &Tables) -> String {
        let mut s = String::new();
        let name = |i: usize| t.ports.get(i).map(|p| p.name.as_str()).unwrap_or("?");
        for (i, p) in self.stats.ports.iter().enumerate().take(t.ports.len()).filter(|(i, _)| !name(*i).is_empty()) {
            let _ = writeln!(
                s,
                "port {} rx_packets={} rx_bytes={} tx_packets={} tx_bytes={} dropped={}",
                name(i),
                p.rx_packets,
                p.rx_bytes,
                p.tx_packets,
                p.tx_bytes,
                p.dropped()
            );
            if let Some(m) = self.port_modes.get(i) {
                let _ = writeln!(s, "io {} {m}", name(i));
            }
        }
        // Ports removed at run time, summed (see `Stats::removed`).
        let removed = &self.stats.removed;
        if removed.rx_packets + removed.tx_packets + removed.dropped() > 0 {
            let _ = writeln!(
                s,
                "port {} rx_packets={} rx_bytes={} tx_packets={} tx_bytes={} dropped={}",
                crate::controller::REMOVED_PORTS,
                removed.rx_packets,
                removed.rx_bytes,
                removed.tx_packets,
                removed.tx_bytes,
                removed.dropped()
            );
        }
        for r in DropReason::ALL {
            for (i, p) in self.stats.ports.iter().enumerate() {
                let n = p.drops[r.index()];
                if n > 0 {
                    let _ = writeln!(s, "drop {} port={} count={}", r.name(), name(i), n);
                }
            }
            let n = removed.drops[r.index()];
            if n > 0 {
                let _ = writeln!(s, "drop {} port={} count={}", r.name(), crate::controller::REMOVED_PORTS, n);
            }
        }
        let events = self.events();
        for (k, v) in events {
            let _ = writeln!(s, "event {k}={v}");
        }
        let _ = writeln!(
            s,
            "conntrack entries={} capacity={} evicted={}\npool free={}",
            self.conntrack_entries, self.conntrack_capacity, self.conntrack_evicted, self.pool_free
        );
        let _ = writeln!(
            s,
            "tables generation={} endpoints={} routes={} service_ports={} frontends={} policy_classifiers={} policy_rules={}",
            self.generation,
            t.endpoints.len(),
            t.routes.len(),
            t.services.port_count(),
            t.services.frontend_count(),
            t.policy.len(),
            t.policy.rule_count()
        );
        s
    }
}
