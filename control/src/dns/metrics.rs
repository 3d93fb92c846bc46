//! Counters of the daemon's resolver, kept in atomics (any serving task may count) and written
//! in the Prometheus text exposition format (version 0.0.4) under `podswitch_dns_*` with the
//! label `path="daemon"`. The dataplane's own DNS answers are counted elsewhere under the same
//! names with `path="dataplane"`.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Query types counted apart; everything else is `other`.
pub const QTYPES: [&str; 7] = ["A", "AAAA", "SRV", "PTR", "CNAME", "TXT", "other"];

/// Response outcomes counted apart. `NODATA` is NOERROR with an empty answer section
/// (RFC 2308 section 2.2).
pub const RCODES: [&str; 8] = ["NOERROR", "NXDOMAIN", "NODATA", "SERVFAIL", "FORMERR", "REFUSED", "NOTIMP", "other"];

/// Upper bounds of the upstream latency histogram buckets, in milliseconds; the last bucket
/// (`+Inf`) is implicit.
pub const LATENCY_BUCKETS_MS: [u64; 10] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000];

/// The resolver's counters. All relaxed atomics: each is a monotonic count read on its own.
#[derive(Debug, Default)]
pub struct DnsMetrics {
    queries: [AtomicU64; QTYPES.len()],
    responses: [AtomicU64; RCODES.len()],
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    upstream_queries: AtomicU64,
    upstream_failures: AtomicU64,
    /// Per bucket (not cumulative), the last one `+Inf`.
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
    latency_sum_us: AtomicU64,
    tcp_refused: AtomicU64,
    udp_dropped: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl DnsMetrics {
    /// Counts a query by its QTYPE.
    pub fn query(&self, qtype: RecordType) {
        let i = match qtype {
            RecordType::A => 0,
            RecordType::AAAA => 1,
            RecordType::SRV => 2,
            RecordType::PTR => 3,
            RecordType::CNAME => 4,
            RecordType::TXT => 5,
            _ => 6,
        };
        bump(&self.queries[i]);
    }

    /// Counts a response sent by its RCODE; `answers` is its answer count, to tell NODATA.
    pub fn response(&self, rcode: ResponseCode, answers: usize) {
        let i = match rcode {
            ResponseCode::NoError if answers == 0 => 2,
            ResponseCode::NoError => 0,
            ResponseCode::NXDomain => 1,
            ResponseCode::ServFail => 3,
            ResponseCode::FormErr => 4,
            ResponseCode::Refused => 5,
            ResponseCode::NotImp => 6,
            _ => 7,
        };
        bump(&self.responses[i]);
    }

    /// Counts an answer found in the cache.
    pub fn cache_hit(&self) {
        bump(&self.cache_hits);
    }

    /// Counts a question the cache could not answer.
    pub fn cache_miss(&self) {
        bump(&self.cache_misses);
    }

    /// Counts a query sent to one upstream (UDP, and again for a TCP retry).
    pub fn upstream_query(&self) {
        bump(&self.upstream_queries);
    }

    /// Counts an upstream query that got no usable answer (timeout, refused, bad reply).
    pub fn upstream_failure(&self) {
        bump(&self.upstream_failures);
    }

    /// Records how long an upstream took to give a usable answer.
    pub fn upstream_latency(&self, took: Duration) {
        let us = took.as_micros();
        let i = LATENCY_BUCKETS_MS.iter().position(|&b| us <= u128::from(b) * 1000).unwrap_or(LATENCY_BUCKETS_MS.len());
        bump(&self.latency_buckets[i]);
        self.latency_sum_us.fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Counts a TCP connection closed at once because the server already had its maximum.
    pub fn tcp_refused(&self) {
        bump(&self.tcp_refused);
    }

    /// Counts a UDP query dropped unanswered because too many were already being answered.
    pub fn udp_dropped(&self) {
        bump(&self.udp_dropped);
    }

    /// UDP queries dropped so far.
    pub fn udp_queries_dropped(&self) -> u64 {
        self.udp_dropped.load(Ordering::Relaxed)
    }

    /// Queries counted under `qtype` (one of [`QTYPES`]); 0 for an unknown name.
    pub fn queries(&self, qtype: &str) -> u64 {
        QTYPES.iter().position(|q| *q == qtype).map_or(0, |i| self.queries[i].load(Ordering::Relaxed))
    }

    /// Responses counted under `rcode` (one of [`RCODES`]); 0 for an unknown name.
    pub fn responses(&self, rcode: &str) -> u64 {
        RCODES.iter().position(|r| *r == rcode).map_or(0, |i| self.responses[i].load(Ordering::Relaxed))
    }

    /// Cache hits so far.
    pub fn cache_hits(&self) -> u64 {
        self.cache_hits.load(Ordering::Relaxed)
    }

    /// Cache misses so far.
    pub fn cache_misses(&self) -> u64 {
        self.cache_misses.load(Ordering::Relaxed)
    }

    /// Upstream queries so far.
    pub fn upstream_queries(&self) -> u64 {
        self.upstream_queries.load(Ordering::Relaxed)
    }

    /// Upstream failures so far.
    pub fn upstream_failures(&self) -> u64 {
        self.upstream_failures.load(Ordering::Relaxed)
    }

    /// TCP connections refused so far.
    pub fn tcp_connections_refused(&self) -> u64 {
        self.tcp_refused.load(Ordering::Relaxed)
    }

    /// Appends every series, with `# HELP` and `# TYPE` lines, to `out`. Latency is in seconds
    /// (Prometheus base unit), the bucket bounds being [`LATENCY_BUCKETS_MS`].
    pub fn render(&self, out: &mut String) {
        self.render_merged(out, "", "");
    }

    /// As [`DnsMetrics::render`], with other sample lines of the query and response families
    /// (the dataplane's, `path="dataplane"`) written under the same HELP and TYPE lines, as the
    /// exposition format wants each family once.
    pub fn render_merged(&self, out: &mut String, queries_extra: &str, responses_extra: &str) {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let family = |out: &mut String, name: &str, help: &str, kind: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        family(out, "podswitch_dns_queries_total", "DNS queries received, per query type.", "counter");
        out.push_str(queries_extra);
        for (q, c) in QTYPES.iter().zip(&self.queries) {
            let _ = writeln!(out, "podswitch_dns_queries_total{{path=\"daemon\",qtype=\"{q}\"}} {}", load(c));
        }
        family(
            out,
            "podswitch_dns_responses_total",
            "DNS responses sent, per rcode (NODATA: NOERROR without answers).",
            "counter",
        );
        out.push_str(responses_extra);
        for (r, c) in RCODES.iter().zip(&self.responses) {
            let _ = writeln!(out, "podswitch_dns_responses_total{{path=\"daemon\",rcode=\"{r}\"}} {}", load(c));
        }
        for (name, help, c) in [
            ("podswitch_dns_cache_hits_total", "Forwarded questions answered from the cache.", &self.cache_hits),
            ("podswitch_dns_cache_misses_total", "Forwarded questions the cache could not answer.", &self.cache_misses),
            ("podswitch_dns_upstream_queries_total", "Queries sent to upstream nameservers.", &self.upstream_queries),
            (
                "podswitch_dns_upstream_failures_total",
                "Upstream queries without a usable answer (timeout, refused, mismatched reply).",
                &self.upstream_failures,
            ),
            (
                "podswitch_dns_tcp_connections_refused_total",
                "DNS TCP connections closed at once because the server was at its connection limit.",
                &self.tcp_refused,
            ),
            (
                "podswitch_dns_udp_queries_dropped_total",
                "DNS UDP queries dropped unanswered because too many were being answered already.",
                &self.udp_dropped,
            ),
        ] {
            family(out, name, help, "counter");
            let _ = writeln!(out, "{name}{{path=\"daemon\"}} {}", load(c));
        }
        let name = "podswitch_dns_upstream_duration_seconds";
        family(out, name, "Time for an upstream nameserver to answer.", "histogram");
        let mut cumulative = 0;
        for (i, c) in self.latency_buckets.iter().enumerate() {
            cumulative += load(c);
            let le = LATENCY_BUCKETS_MS.get(i).map_or("+Inf".to_string(), |ms| (*ms as f64 / 1000.0).to_string());
            let _ = writeln!(out, "{name}_bucket{{path=\"daemon\",le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_sum{{path=\"daemon\"}} {}", load(&self.latency_sum_us) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{{path=\"daemon\"}} {cumulative}");
    }
}
