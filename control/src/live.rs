//! The daemon on live interfaces: a pinned worker thread runs the pipeline over the AF_XDP or
//! AF_PACKET backend (`auto`: AF_XDP, falling back to AF_PACKET with the reason logged),
//! busy-polling while traffic flows and blocking in poll(2) when idle; the main
//! thread handles signals (SIGINT/SIGTERM stop, SIGHUP reloads the config with the atomic
//! snapshot rule) and writes the counters to a stats file.

use crate::build::Built;
use crate::config::Config;
use crate::controller::{serve_worker_cmd, Controller, WorkerCmd};
use crate::daemon::worker_config;
use crate::publish::SnapshotCell;
use crate::report::Report;
use io_backends::afpacket::AfPacketBackend;
use io_backends::afxdp::AfXdpBackend;
use io_backends::{Backend, Batch};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switch_core::drop::DropReason;
use switch_core::packet::PacketBuf;
use switch_core::pipeline::{Verdict, Worker, BATCH};

/// Options of a live run.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    pub config: PathBuf,
    pub stats_file: Option<PathBuf>,
    /// Empty polls before the worker blocks in poll(2).
    pub busy_polls: u32,
    /// How long a blocked worker waits before polling again.
    pub idle_wait_ms: i32,
    /// Pin the worker to this CPU.
    pub cpu: Option<usize>,
    /// Serve Prometheus metrics on this loopback address.
    pub metrics: Option<std::net::SocketAddr>,
    /// Benchmark baseline: send every frame out of the paired port (0<->1, 2<->3, ...) with no
    /// pipeline at all, to measure the I/O alone.
    pub bare_forward: bool,
    /// Serve the gRPC control API on this Unix socket.
    pub socket: Option<PathBuf>,
    /// Group that owns the socket (its members may call the API).
    pub socket_group: Option<String>,
    /// Directory relative pcap paths in the config are taken from.
    pub base_dir: PathBuf,
}

/// Why the live daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("opening ports: {0}")]
    Ports(std::io::Error),
    #[error("signals: {0}")]
    Signals(std::io::Error),
    #[error("worker thread failed")]
    Worker,
    #[error("control socket: {0}")]
    Socket(std::io::Error),
}

fn log(msg: &str) {
    tracing::info!("{msg}");
}

/// Runs until SIGINT or SIGTERM. Returns the final counters.
pub fn run(
    base: Config,
    built: Built,
    opts: &LiveOptions,
) -> Result<(Report, switch_core::snapshot::Tables), LiveError> {
    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(LiveError::Signals)?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload)).map_err(LiveError::Signals)?;

    let interfaces: Vec<_> = built.ports.iter().map(|p| (p.id, p.interface.clone().unwrap_or_default())).collect();
    let kind = built.ports.first().map(|p| p.backend.clone()).unwrap_or_default();
    let nports = built.ports.len();
    if built.workers > 1 {
        log("one worker for now: conntrack is per worker and needs symmetric flow steering first");
    }
    let wcfg = worker_config(&built, 0);
    let cell = Arc::new(SnapshotCell::new(built.tables));
    let shared: Arc<Mutex<Option<Report>>> = Arc::new(Mutex::new(None));
    let controller = Arc::new(
        Controller::new(base, built.ports.clone(), Arc::clone(&cell), opts.base_dir.clone(), Some(opts.config.clone()))
            .with_reports(vec![Arc::clone(&shared)])
            .with_services(built.services),
    );
    let (cmd_tx, cmd_rx) = std::sync::mpsc::channel::<WorkerCmd>();
    controller.add_worker(cmd_tx);
    // Bind before the worker starts, so a second daemon fails before touching any interface.
    let listener = match &opts.socket {
        Some(p) => {
            let l = crate::api::server::bind(p).map_err(LiveError::Socket)?;
            if let Some(g) = &opts.socket_group {
                crate::api::server::set_group(p, g).map_err(LiveError::Socket)?;
            }
            Some(l)
        }
        None => None,
    };
    // The worker opens its own backend, so rings and UMEM are allocated by the thread that
    // uses them; it reports back whether that worked.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), std::io::Error>>();
    let worker = {
        let (cell, shared, stop) = (Arc::clone(&cell), Arc::clone(&shared), Arc::clone(&stop));
        let opts = opts.clone();
        std::thread::Builder::new()
            .name("psw-worker-0".into())
            .spawn(move || {
                if let Some(cpu) = opts.cpu {
                    if let Err(e) = io_backends::sys::pin_to_cpu(cpu) {
                        log(&format!("cannot pin worker to CPU {cpu}: {e}"));
                    }
                }
                let mut w = Worker::new(wcfg);
                let shared_loop = Loop { cell: &cell, stop: &stop, shared: &shared, opts: &opts, cmds: &cmd_rx };
                let xdp = if kind == "afxdp" || kind == "auto" {
                    match AfXdpBackend::open(&interfaces, nports) {
                        Ok(b) => Some(b),
                        Err(e) if kind == "auto" => {
                            log(&format!("afxdp unavailable ({e}); falling back to afpacket"));
                            None
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    }
                } else {
                    None
                };
                match xdp {
                    Some(mut be) => {
                        let mut modes = vec![String::new(); nports];
                        for (m, (p, _)) in be.modes.iter().zip(&interfaces) {
                            let copy = if m.zero_copy { "zero-copy" } else { "copy" };
                            log(&format!(
                                "{}: afxdp, {} XDP, {copy} mode, {} queue(s)",
                                m.interface,
                                m.xdp.name(),
                                m.queues
                            ));
                            if let Some(slot) = modes.get_mut(p.index()) {
                                *slot = format!("afxdp {} {copy} queues={}", m.xdp.name(), m.queues);
                            }
                        }
                        let _ = ready_tx.send(Ok(()));
                        worker_loop(&mut be, &mut w, &shared_loop, &modes);
                    }
                    None => match AfPacketBackend::open(&interfaces, nports, BATCH * 4) {
                        Ok(mut be) => {
                            for (_, i) in &interfaces {
                                log(&format!("{i}: afpacket (TPACKET_V2 rings)"));
                            }
                            let modes = vec!["afpacket tpacket_v2".to_string(); nports];
                            let _ = ready_tx.send(Ok(()));
                            worker_loop(&mut be, &mut w, &shared_loop, &modes);
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    },
                }
            })
            .map_err(|_| LiveError::Worker)?
    };
    match ready_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let _ = worker.join();
            return Err(LiveError::Ports(e));
        }
        Err(_) => {
            let _ = worker.join();
            return Err(LiveError::Worker);
        }
    }

    let apply_ns = Arc::clone(&controller.apply_ns);
    let api = match (listener, &opts.socket) {
        (Some(l), Some(p)) => {
            log(&format!("control API on {}", p.display()));
            Some(
                crate::api::server::spawn(Arc::clone(&controller), l, p.clone(), Arc::clone(&stop))
                    .map_err(LiveError::Socket)?,
            )
        }
        _ => None,
    };
    let metrics = match opts.metrics {
        Some(addr) => {
            let src = crate::metrics::Sources {
                report: Arc::clone(&shared),
                cell: Arc::clone(&cell),
                apply_ns: Arc::clone(&apply_ns),
                stop: Arc::clone(&stop),
            };
            match crate::metrics::serve(addr, src) {
                Ok(h) => {
                    log(&format!("metrics on http://{addr}/metrics"));
                    Some(h)
                }
                Err(e) => {
                    log(&format!("metrics not served on {addr}: {e}"));
                    None
                }
            }
        }
        None => None,
    };
    let mut last_stats = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if reload.swap(false, Ordering::Relaxed) {
            match controller.reload() {
                Ok(o) => log(&format!(
                    "reloaded {}: generation {} in {:.1} ms",
                    opts.config.display(),
                    o.generation,
                    o.build_micros as f64 / 1e3
                )),
                Err(e) => tracing::warn!("reload rejected, running tables kept: {e}"),
            }
        }
        if last_stats.elapsed() >= Duration::from_millis(500) {
            last_stats = Instant::now();
            write_stats(opts.stats_file.as_deref(), &shared, &cell);
        }
    }
    worker.join().map_err(|_| LiveError::Worker)?;
    if let Some(m) = metrics {
        let _ = m.join();
    }
    if let Some(a) = api {
        let _ = a.join();
    }
    write_stats(opts.stats_file.as_deref(), &shared, &cell);
    let report = shared.lock().map_err(|_| LiveError::Worker)?.clone().ok_or(LiveError::Worker)?;
    let tables = (**cell.load()).clone();
    log("stopped; sockets closed");
    Ok((report, tables))
}

/// What a worker loop shares with the main thread.
struct Loop<'a> {
    cell: &'a SnapshotCell,
    stop: &'a AtomicBool,
    shared: &'a Mutex<Option<Report>>,
    opts: &'a LiveOptions,
    cmds: &'a std::sync::mpsc::Receiver<WorkerCmd>,
}

fn worker_loop<B: Backend>(be: &mut B, w: &mut Worker, l: &Loop<'_>, modes: &[String]) {
    let Loop { cell, stop, shared, opts, cmds } = *l;
    let mut batch: Batch<B::Buf> = Batch::with_capacity(BATCH);
    let mut verdicts = [Verdict::Drop(DropReason::NoRoute); BATCH];
    let start = Instant::now();
    let mut idle = 0u32;
    let mut last_publish = Instant::now();
    let mut unused = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let n = be.rx_burst(&mut batch, &mut unused);
        if n == 0 {
            idle += 1;
            if idle >= opts.busy_polls {
                be.wait(opts.idle_wait_ms);
            }
        } else {
            idle = 0;
            if opts.bare_forward {
                for (v, b) in verdicts.iter_mut().zip(batch.as_slice()) {
                    *v = Verdict::Tx(switch_core::packet::PortId(b.in_port().0 ^ 1));
                }
            } else {
                let now = start.elapsed().as_nanos() as u64;
                let tables = cell.load();
                w.process(&tables, now, batch.as_mut_slice(), &mut verdicts[..n]);
            }
            be.tx_burst(&mut batch, &verdicts[..n], &mut |port, len| w.count_tx_drop(port, len));
        }
        // Control requests (conntrack list/flush) between batches: one non-blocking check.
        if let Ok(cmd) = cmds.try_recv() {
            let now = start.elapsed().as_nanos() as u64;
            serve_worker_cmd(cmd, w, &cell.load(), now, 0);
        }
        if last_publish.elapsed() >= Duration::from_millis(200) {
            last_publish = Instant::now();
            publish(w, shared, cell, modes);
        }
    }
    publish(w, shared, cell, modes);
}

fn publish(w: &Worker, shared: &Mutex<Option<Report>>, cell: &SnapshotCell, modes: &[String]) {
    let r = Report::of_worker(w, cell.generation(), modes.to_vec());
    if let Ok(mut g) = shared.lock() {
        *g = Some(r);
    }
}

fn write_stats(path: Option<&Path>, shared: &Mutex<Option<Report>>, cell: &SnapshotCell) {
    let Some(path) = path else { return };
    let text = match shared.lock() {
        Ok(g) => match g.as_ref() {
            Some(r) => r.render(&cell.load()),
            None => return,
        },
        Err(_) => return,
    };
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, path)).is_err() {
        log(&format!("cannot write stats to {}", path.display()));
    }
}
