//! The daemon's run loop: receive a batch, load the current snapshot, run the pipeline,
//! transmit. With pcap ports it runs until every input is consumed.

use crate::build::{Built, PortSpec};
use crate::publish::SnapshotCell;
use crate::report::Report;
use io_backends::pcap_backend::{PcapBackend, PcapPort};
use io_backends::{Backend, Batch};
use switch_core::drop::DropReason;
use switch_core::pipeline::{Verdict, Worker, WorkerConfig, BATCH};

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Backend(String),
    #[error("reading captures: {0}")]
    Capture(String),
}

/// The worker configuration a built config asks for.
pub fn worker_config(b: &Built, index: u16) -> WorkerConfig {
    WorkerConfig {
        index,
        count: b.workers,
        conntrack_flows: b.conntrack_flows / usize::from(b.workers.max(1)),
        max_ports: b.max_ports,
        hash_key: process_hash_key(),
        ..WorkerConfig::default()
    }
}

/// This process's secret key for the conntrack and affinity hashes, drawn once from the
/// operating system's randomness (std's `RandomState` is seeded from it) and never shown.
fn process_hash_key() -> u64 {
    use std::hash::BuildHasher;
    static KEY: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *KEY.get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(0x006b_6579_u64))
}

/// Runs a worker over a backend until it is exhausted.
pub fn run_backend<B: Backend>(be: &mut B, worker: &mut Worker, cell: &SnapshotCell) {
    let mut batch: Batch<B::Buf> = Batch::with_capacity(BATCH);
    let mut verdicts = [Verdict::Drop(DropReason::NoRoute); BATCH];
    let mut now = 0u64;
    loop {
        let n = be.rx_burst(&mut batch, &mut now);
        if n == 0 {
            if be.exhausted() {
                break;
            }
            continue;
        }
        let tables = cell.load();
        worker.process(&tables, now, batch.as_mut_slice(), &mut verdicts[..n]);
        be.tx_burst(&mut batch, &verdicts[..n], &mut |port, len| worker.count_tx_drop(port, len));
    }
}

/// Runs the pipeline over the configured pcap ports and reports the counters.
pub fn run_pcap(built: Built) -> Result<(Report, switch_core::snapshot::Tables), DaemonError> {
    let files: Vec<PcapPort> = built
        .ports
        .iter()
        .map(|p: &PortSpec| PcapPort { port: p.id, input: p.pcap_in.clone(), output: p.pcap_out.clone() })
        .collect();
    let built_ports = built.ports.len();
    let mut be =
        PcapBackend::open(&files, built.ports.len(), BATCH * 2).map_err(|e| DaemonError::Backend(e.to_string()))?;
    // Captures are one queue: one worker processes them in order.
    let mut worker = Worker::new(WorkerConfig { count: 1, ..worker_config(&built, 0) });
    let cell = SnapshotCell::new(built.tables.clone());
    run_backend(&mut be, &mut worker, &cell);
    be.finish().map_err(|e| DaemonError::Backend(e.to_string()))?;
    if let Some(e) = &be.error {
        return Err(DaemonError::Capture(e.clone()));
    }
    let report = Report::of_worker(&worker, cell.generation(), vec!["pcap".to_string(); built_ports]);
    Ok((report, built.tables))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 9 item 5: the daemon's workers hash conntrack with a key of this process, not the
    /// public default that tests use (with which colliding tuples can be found offline).
    #[test]
    fn workers_get_a_secret_per_process_hash_key() {
        let k = process_hash_key();
        assert_ne!(k, WorkerConfig::default().hash_key);
        assert_eq!(k, process_hash_key(), "one key for every worker of the process");
    }
}
