//! Prometheus metrics over HTTP on a loopback address: packets and bytes per port, drops per
//! port and reason, conntrack entries, table sizes, the snapshot generation and how long the
//! last apply took, and per worker what it received, handed over and holds. A small blocking server on its own thread; it reads only the counters the
//! worker publishes, never the worker's state.

use crate::publish::SnapshotCell;
use crate::report::Report;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switch_core::drop::DropReason;
use switch_core::snapshot::Tables;

/// A per-worker series: name, help, type and how to read it from a worker's report.
type Series = (&'static str, &'static str, &'static str, fn(&Report) -> u64);

/// Per-worker series (label `worker`), so that an operator sees how the load spreads: frames
/// received, frames handed to another worker, conntrack entries held.
pub fn render_workers(reports: &[Option<Report>]) -> String {
    let mut s = String::new();
    let series: [Series; 3] = [
        ("podswitch_worker_rx_packets_total", "Frames a worker received from its queues.", "counter", |r| {
            // Ports removed at run time included: a counter must not go back.
            r.stats.ports.iter().map(|p| p.rx_packets).sum::<u64>() + r.stats.removed.rx_packets
        }),
        (
            "podswitch_worker_handed_off_total",
            "Frames a worker handed to the worker owning their flow.",
            "counter",
            |r| r.stats.events.handed_off,
        ),
        ("podswitch_worker_conntrack_entries", "Conntrack entries a worker holds.", "gauge", |r| {
            r.conntrack_entries as u64
        }),
    ];
    for (metric, help, kind, get) in series {
        let _ = writeln!(s, "# HELP {metric} {help}\n# TYPE {metric} {kind}");
        for (i, r) in reports.iter().enumerate() {
            if let Some(r) = r {
                let _ = writeln!(s, "{metric}{{worker=\"{i}\"}} {}", get(r));
            }
        }
    }
    s
}

/// Renders the counters in the Prometheus text exposition format (version 0.0.4).
pub fn render(r: &Report, t: &Tables, apply_ns: u64) -> String {
    let mut s = String::new();
    let name = |i: usize| t.ports.get(i).map(|p| p.name.as_str()).unwrap_or("?");
    // Ids not in use (a pod port detached at run time) have no name: no series.
    let ports = r.stats.ports.iter().enumerate().take(t.ports.len()).filter(|(i, _)| !name(*i).is_empty());
    for (metric, help, get) in [
        (
            "podswitch_port_rx_packets_total",
            "Frames received per port.",
            (|p| p.rx_packets) as fn(&switch_core::pipeline::PortStats) -> u64,
        ),
        ("podswitch_port_rx_bytes_total", "Bytes received per port.", |p| p.rx_bytes),
        ("podswitch_port_tx_packets_total", "Frames transmitted per port.", |p| p.tx_packets),
        ("podswitch_port_tx_bytes_total", "Bytes transmitted per port.", |p| p.tx_bytes),
    ] {
        let _ = writeln!(s, "# HELP {metric} {help}\n# TYPE {metric} counter");
        for (i, p) in ports.clone() {
            let _ = writeln!(s, "{metric}{{port=\"{}\"}} {}", name(i), get(p));
        }
    }
    let _ = writeln!(
        s,
        "# HELP podswitch_drops_total Frames dropped, per port and reason.\n# TYPE podswitch_drops_total counter"
    );
    for (i, p) in ports {
        for reason in DropReason::ALL {
            let n = p.drops[reason.index()];
            if n > 0 {
                let _ = writeln!(s, "podswitch_drops_total{{port=\"{}\",reason=\"{}\"}} {n}", name(i), reason.name());
            }
        }
    }
    let gauges: [(&str, &str, f64); 9] = [
        ("podswitch_conntrack_entries", "Conntrack entries in use (two per flow).", r.conntrack_entries as f64),
        ("podswitch_conntrack_capacity", "Conntrack entries available.", r.conntrack_capacity as f64),
        ("podswitch_tables_generation", "Generation of the table snapshot in use.", r.generation as f64),
        ("podswitch_endpoints", "Endpoints in the snapshot.", t.endpoints.len() as f64),
        ("podswitch_routes", "Routes in the snapshot.", t.routes.len() as f64),
        ("podswitch_service_ports", "Service ports in the snapshot.", t.services.port_count() as f64),
        ("podswitch_service_frontends", "Service frontends in the snapshot.", t.services.frontend_count() as f64),
        ("podswitch_policy_rules", "Compiled policy rules in the snapshot.", t.policy.rule_count() as f64),
        (
            "podswitch_snapshot_apply_seconds",
            "Time the last snapshot took to build and publish.",
            apply_ns as f64 / 1e9,
        ),
    ];
    for (metric, help, v) in gauges {
        let _ = writeln!(s, "# HELP {metric} {help}\n# TYPE {metric} gauge\n{metric} {v}");
    }
    let _ = writeln!(s, "# HELP podswitch_conntrack_evicted_total Live entries evicted to make room.\n# TYPE podswitch_conntrack_evicted_total counter\npodswitch_conntrack_evicted_total {}", r.conntrack_evicted);
    s
}

/// The DNS counters: the stage's (`path="dataplane"`) and, when the daemon runs its
/// resolver, the resolver's (`path="daemon"`), each family once.
fn render_dns(s: &mut String, d: &switch_core::dns::DnsStats, daemon: Option<&crate::dns::DnsMetrics>) {
    use switch_core::dns::{Outcome, QTYPES};
    let mut queries = String::new();
    let types = QTYPES.iter().map(|(_, n)| *n).chain(["other"]);
    for (ty, n) in types.zip(d.answered_by_qtype) {
        let _ = writeln!(queries, "podswitch_dns_queries_total{{path=\"dataplane\",qtype=\"{ty}\"}} {n}");
    }
    let mut responses = String::new();
    for o in Outcome::ALL {
        let n = d.answered_by_outcome[o.index()];
        let _ = writeln!(responses, "podswitch_dns_responses_total{{path=\"dataplane\",rcode=\"{}\"}} {n}", o.name());
    }
    match daemon {
        Some(m) => m.render_merged(s, &queries, &responses),
        None => {
            let _ = writeln!(s, "# HELP podswitch_dns_queries_total DNS queries received, per query type.\n# TYPE podswitch_dns_queries_total counter");
            s.push_str(&queries);
            let _ = writeln!(s, "# HELP podswitch_dns_responses_total DNS responses sent, per rcode (NODATA: NOERROR without answers).\n# TYPE podswitch_dns_responses_total counter");
            s.push_str(&responses);
        }
    }
    let _ = writeln!(
        s,
        "# HELP podswitch_dns_truncated_total DNS answers the dataplane truncated (TC) for the client to retry over TCP.\n# TYPE podswitch_dns_truncated_total counter\npodswitch_dns_truncated_total{{path=\"dataplane\"}} {}",
        d.truncated
    );
    let _ = writeln!(
        s,
        "# HELP podswitch_dns_to_resolver_total DNS packets the dataplane sent to the daemon's resolver.\n# TYPE podswitch_dns_to_resolver_total counter\npodswitch_dns_to_resolver_total {}",
        d.to_resolver
    );
}

/// What the metrics thread reads.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Each worker's published counters.
    pub reports: Vec<Arc<Mutex<Option<Report>>>>,
    pub cell: Arc<SnapshotCell>,
    pub apply_ns: Arc<AtomicU64>,
    pub stop: Arc<AtomicBool>,
    /// The daemon's resolver's counters, when it runs.
    pub dns: Option<Arc<crate::dns::DnsMetrics>>,
}

/// Binds `addr` (loopback only) and serves `/metrics` until `stop` is set.
pub fn serve(addr: SocketAddr, src: Sources) -> io::Result<std::thread::JoinHandle<()>> {
    if !addr.ip().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("metrics listen on loopback only, not {addr}"),
        ));
    }
    let l = TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    std::thread::Builder::new().name("psw-metrics".into()).spawn(move || {
        while !src.stop.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((c, _)) => {
                    let _ = answer(c, &src);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(50)),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    })
}

fn answer(mut c: TcpStream, src: &Sources) -> io::Result<()> {
    c.set_nonblocking(false)?;
    c.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = [0u8; 2048];
    let n = c.read(&mut buf)?;
    let req = String::from_utf8_lossy(&buf[..n]);
    let (status, body) = if req.starts_with("GET /metrics ") || req.starts_with("GET /metrics?") {
        let body = Report::sum(&src.reports).map(|r| {
            let each: Vec<Option<Report>> = src.reports.iter().map(|r| r.lock().ok().and_then(|g| g.clone())).collect();
            let mut m = render(&r, &src.cell.load(), src.apply_ns.load(Ordering::Relaxed));
            render_dns(&mut m, &r.stats.dns, src.dns.as_deref());
            m + &render_workers(&each)
        });
        ("200 OK", body.unwrap_or_default())
    } else {
        ("404 Not Found", "try /metrics\n".to_string())
    };
    write!(c, "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use switch_core::pipeline::Stats;
    use switch_core::testbed::{tables, Scale};

    #[test]
    fn exposition_format() {
        let t = tables(Scale::default());
        let mut stats = Stats::new(8);
        stats.ports[1].rx_packets = 5;
        stats.ports[1].drops[DropReason::SpoofedIp.index()] = 2;
        let r = Report {
            stats,
            conntrack_entries: 4,
            conntrack_capacity: 64,
            conntrack_evicted: 0,
            generation: 3,
            port_modes: vec![],
            pool_free: 0,
        };
        let m = render(&r, &t, 1_500_000);
        assert!(m.contains("podswitch_port_rx_packets_total{port=\"pod-a\"} 5\n"), "{m}");
        assert!(m.contains("podswitch_drops_total{port=\"pod-a\",reason=\"spoofed_ip\"} 2\n"));
        assert!(m.contains("podswitch_tables_generation 3\n"));
        assert!(m.contains("podswitch_snapshot_apply_seconds 0.0015\n"));
        let mut second = r.clone();
        second.stats.events.handed_off = 7;
        let m = m + &render_workers(&[Some(r.clone()), None, Some(second)]);
        assert!(m.contains("podswitch_worker_rx_packets_total{worker=\"0\"} 5\n"), "{m}");
        assert!(m.contains("podswitch_worker_handed_off_total{worker=\"2\"} 7\n"), "{m}");
        assert!(!m.contains("worker=\"1\""), "a worker that has not published yet is left out");
        // Every sample line is `name{labels} value` or `name value`, after HELP and TYPE.
        for line in m.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').expect("sample");
            assert!(value.parse::<f64>().is_ok(), "{line}");
            assert!(name.starts_with("podswitch_"), "{line}");
        }
    }

    #[test]
    fn refuses_non_loopback() {
        let src = Sources {
            reports: vec![Arc::new(Mutex::new(None))],
            cell: Arc::new(SnapshotCell::new(tables(Scale::default()))),
            apply_ns: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(true)),
            dns: None,
        };
        assert!(serve("0.0.0.0:0".parse().unwrap(), src).is_err());
    }
}
