//! The daemon on live interfaces: a pinned worker thread runs the pipeline over the AF_XDP or
//! AF_PACKET backend (`auto`: AF_XDP, falling back to AF_PACKET with the reason logged),
//! busy-polling while traffic flows and blocking in poll(2) when idle; the main
//! thread handles signals (SIGINT/SIGTERM stop, SIGHUP reloads the config with the atomic
//! snapshot rule) and writes the counters to a stats file.

use crate::build::Built;
use crate::config::Config;
use crate::controller::{serve_worker_cmd, Controller, WorkerCmd, WorkerLink};
use crate::daemon::worker_config;
use crate::publish::SnapshotCell;
use crate::report::Report;
use io_backends::afpacket::AfPacketBackend;
use io_backends::afxdp::AfXdpBackend;
use io_backends::handoff::{Dispatch, Links};
use io_backends::{Backend, Batch};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switch_core::drop::DropReason;
use switch_core::packet::{PacketBuf, PortId};
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
    /// Pin worker `i` to `cpu[i % cpu.len()]` (none: not pinned).
    pub cpu: Vec<usize>,
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
    /// Keep applied objects, attached ports and address allocations here (crash-safe), and
    /// restore them at start; `None`: everything applied is lost on exit.
    pub state_dir: Option<PathBuf>,
    /// With a state directory: walk the conntrack and affinity tables into
    /// `DIR/flows.state` this often (`handover.rs`; 0: only at stop). Flows are restored from
    /// it at start.
    pub flow_checkpoint_ms: u64,
    /// The cluster agent, in cluster mode (`--etcd`): etcd becomes the object source before
    /// the workers start.
    pub cluster: Option<Arc<crate::cluster::agent::Agent>>,
    /// The daemon's resolver port (`resolver_port.rs`), whose sockets the resolver takes.
    pub resolver: Option<Arc<Mutex<Option<crate::resolver_port::ResolverPort>>>>,
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
    #[error("state: {0}")]
    State(String),
}

fn log(msg: &str) {
    tracing::info!("{msg}");
}

/// The opened backends, one per worker.
enum Opened {
    Xdp(Vec<AfXdpBackend>),
    Packet(Vec<AfPacketBackend>),
}

/// Opens the ports for `workers` workers with the configured backend kind; AF_XDP serves at
/// most as many workers as the ports have receive queues. Returns the backends and each
/// port's I/O mode for the counters.
fn open_backends(
    kind: &str,
    interfaces: &[(PortId, String)],
    nports: usize,
    workers: usize,
) -> std::io::Result<(Opened, Vec<String>)> {
    if kind == "afxdp" || kind == "auto" {
        let queues = interfaces.iter().map(|(_, i)| io_backends::afxdp::rx_queues(i)).min().unwrap_or(1);
        let n = workers.min(queues);
        if n < workers {
            tracing::warn!("afxdp: {workers} workers asked for, but a port has {queues} receive queue(s); running {n}");
        }
        match AfXdpBackend::open_workers(interfaces, nports, n) {
            Ok(bes) => {
                let mut modes = vec![String::new(); nports];
                if let Some(be) = bes.first() {
                    for (m, (p, _)) in be.modes.iter().zip(interfaces) {
                        let copy = if m.zero_copy { "zero-copy" } else { "copy" };
                        log(&format!(
                            "{}: afxdp, {} XDP, {copy} mode, {} queue(s)",
                            m.interface,
                            m.xdp.name(),
                            m.queues
                        ));
                        if let Some(slot) = modes.get_mut(p.index()) {
                            *slot = format!("afxdp {} {copy} queues={} workers={n}", m.xdp.name(), m.queues);
                        }
                    }
                }
                return Ok((Opened::Xdp(bes), modes));
            }
            Err(e) if kind == "auto" => log(&format!("afxdp unavailable ({e}); falling back to afpacket")),
            Err(e) => return Err(e),
        }
    }
    let bes = AfPacketBackend::open_workers(interfaces, nports, BATCH * 16, workers)?;
    let fanout = if workers > 1 { format!(", fanout over {workers} workers") } else { String::new() };
    for (_, i) in interfaces {
        log(&format!("{i}: afpacket (TPACKET_V2 rings{fanout})"));
    }
    Ok((Opened::Packet(bes), vec![format!("afpacket tpacket_v2 workers={workers}"); nports]))
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
    // Backends have room for every port id, so that ports can be attached at run time.
    let nports = built.max_ports.max(built.ports.iter().map(|p| p.id.index() + 1).max().unwrap_or(0));
    // Read before any port is opened: a state that cannot be read stops the daemon (it must
    // not forward with less policy than it had).
    let state = match &opts.state_dir {
        Some(dir) => {
            let f = crate::state::StateFile::in_dir(dir);
            let s = f.load(&built.tables.node.name).map_err(|e| LiveError::State(e.to_string()))?;
            Some((f, s))
        }
        None => None,
    };
    // Bind before opening any port, so a second daemon fails before touching an interface.
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
    let (opened, modes) =
        open_backends(&kind, &interfaces, nports, usize::from(built.workers.max(1))).map_err(LiveError::Ports)?;
    let workers = match &opened {
        Opened::Xdp(v) => v.len(),
        Opened::Packet(v) => v.len(),
    };
    log(&format!("{workers} worker(s)"));
    let mut built = built;
    built.workers = workers as u16;
    if workers > 1 && !built.tables.services.steered() {
        // Built for fewer workers than run: add what the flow owners are decided with.
        let services = (*built.tables.services).clone().with_steering();
        built.tables = built.tables.with_services(services, built.tables.generation);
    }
    let wcfgs: Vec<_> = (0..workers).map(|i| worker_config(&built, i as u16)).collect();
    let cell = Arc::new(SnapshotCell::new(built.tables));
    let reports: Vec<Arc<Mutex<Option<Report>>>> = (0..workers).map(|_| Arc::new(Mutex::new(None))).collect();
    let mut controller =
        Controller::new(base, built.ports.clone(), Arc::clone(&cell), opts.base_dir.clone(), Some(opts.config.clone()))
            .with_reports(reports.clone())
            .with_workers(workers as u16)
            .with_services(built.services)
            .with_ids(built.ids);
    if let Some((file, saved)) = state {
        controller = controller.with_state_file(file);
        if !saved.objects.is_empty() {
            // Published before any worker runs: the first frame of any port meets the
            // restored policies. Attached ports open once the workers run.
            let n = saved.objects.len();
            let o = controller.restore(saved).map_err(|e| LiveError::State(format!("restoring: {e}")))?;
            log(&format!("restored {n} object(s) from the state file: generation {}", o.generation));
        }
    }
    let controller = Arc::new(controller);
    if let Some(agent) = &opts.cluster {
        // What etcd holds is in the tables before the first frame is forwarded.
        agent.attach(&controller, &stop);
    }
    // Connections of the last process: into the workers that own them under the tables
    // just restored, before any frame is read.
    // Each worker builds its own tables on its own pinned thread (their memory is first
    // touched there) and puts its share of the flows in before its first batch.
    let mut plans: Vec<Option<crate::handover::WorkerPlan>> = vec![None; workers];
    let (image_tx, image_rx) = crate::handover::channel(workers);
    let mut writer = opts.state_dir.as_deref().map(|dir| {
        let file = crate::handover::FlowStateFile::in_dir(dir);
        plans = restore_flows(&file, &cell.load(), workers);
        crate::handover::Writer::new(file, image_rx, workers)
    });
    let checkpoint = (opts.flow_checkpoint_ms > 0).then(|| Duration::from_millis(opts.flow_checkpoint_ms));
    let checkpoints: Vec<Option<crate::handover::Checkpoint>> = (0..workers)
        .map(|i| writer.as_ref().map(|_| crate::handover::Checkpoint::new(image_tx.clone(), i as u16, checkpoint)))
        .collect();
    drop(image_tx);
    let start = Start {
        cell: Arc::clone(&cell),
        reports: reports.clone(),
        stop: Arc::clone(&stop),
        opts: opts.clone(),
        modes,
        controller: Arc::clone(&controller),
    };
    let threads = match opened {
        Opened::Xdp(bes) => start_workers(bes, wcfgs, plans, checkpoints, &start)?,
        Opened::Packet(bes) => start_workers(bes, wcfgs, plans, checkpoints, &start)?,
    };

    controller.reopen_ports();
    // kube-proxy's health check node ports, on the kernel stack of the daemon's namespace.
    let health = crate::health::spawn(
        Arc::clone(&controller),
        std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        Arc::clone(&stop),
    )
    .map_err(LiveError::Socket)?;
    // Remote nodes' underlay MACs, asked for by ARP until the pipeline has learned them.
    let resolver =
        crate::announce::spawn_resolver(Arc::clone(&controller), Arc::clone(&stop)).map_err(LiveError::Socket)?;
    // The daemon's resolver, on the resolver port's sockets.
    let dns = match opts.resolver.as_ref().and_then(|p| p.lock().ok().and_then(|mut g| g.take())) {
        Some(port) => {
            let c = Arc::clone(&controller);
            let source: crate::dns::daemon::ConfigMapSource =
                Box::new(move || c.config_map_data(crate::build::dns::KUBE_DNS.0, crate::build::dns::KUBE_DNS.1));
            let dns_cfg = controller.base_config().dns;
            let (thread, metrics) =
                crate::dns::daemon::spawn(port, Arc::clone(&cell), &dns_cfg, source, Arc::clone(&stop))
                    .map_err(LiveError::Socket)?;
            log("cluster DNS resolver on its port");
            Some((thread, metrics))
        }
        None => None,
    };
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
                reports: reports.clone(),
                cell: Arc::clone(&cell),
                apply_ns: Arc::clone(&apply_ns),
                stop: Arc::clone(&stop),
                dns: dns.as_ref().map(|(_, m)| Arc::clone(m)),
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
    let mut failed = false;
    let mut flows_failing = false;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        // A worker only ends when told to: one that ended by itself (a panic, in a build that
        // unwinds) leaves its queues unserved, so the daemon stops and exits non-zero for its
        // supervisor to restart it.
        if let Some(i) = threads.iter().position(|t| t.is_finished()) {
            // Workers end on their own only after `stop` is set (a signal): then this is the
            // ordinary shutdown, seen before the loop condition.
            if stop.load(Ordering::SeqCst) {
                break;
            }
            tracing::error!("worker {i} stopped unexpectedly; stopping the daemon");
            failed = true;
            stop.store(true, Ordering::Relaxed);
            break;
        }
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
            write_stats(opts.stats_file.as_deref(), &reports, &cell);
        }
        if let Some(w) = writer.as_mut() {
            write_flows(w, &cell, &mut flows_failing);
        }
    }
    let mut finals = Vec::with_capacity(threads.len());
    for t in threads {
        match t.join() {
            Ok(image) => finals.extend(image),
            Err(_) => failed = true,
        }
    }
    // Each worker exported its whole tables after its last batch: the next process starts
    // with every flow this one had. Not after a worker failed: what made it fail may be in
    // its state (the last checkpoint, if any, stays).
    if let Some(w) = writer.as_mut().filter(|_| !failed) {
        match w.finish(finals, &cell.load()) {
            Ok(n) => log(&format!("{n} flow(s) kept for the next start")),
            Err(e) => tracing::warn!("flow state not written at stop: {e}"),
        }
    }
    if let Some(agent) = &opts.cluster {
        agent.stop();
    }
    if failed {
        return Err(LiveError::Worker);
    }
    if let Some(m) = metrics {
        let _ = m.join();
    }
    if let Some(a) = api {
        let _ = a.join();
    }
    let _ = health.join();
    let _ = resolver.join();
    if let Some((t, _)) = dns {
        let _ = t.join();
    }
    write_stats(opts.stats_file.as_deref(), &reports, &cell);
    let report = Report::sum(&reports).ok_or(LiveError::Worker)?;
    let tables = (**cell.load()).clone();
    log("stopped; sockets closed");
    Ok((report, tables))
}

/// What every worker thread is started with.
struct Start {
    cell: Arc<SnapshotCell>,
    reports: Vec<Arc<Mutex<Option<Report>>>>,
    stop: Arc<AtomicBool>,
    opts: LiveOptions,
    modes: Vec<String>,
    controller: Arc<Controller>,
}

/// One pinned thread per backend, linked by handoff rings when there are several; if one
/// cannot be started, the others are stopped before the error is returned.
fn start_workers<B>(
    bes: Vec<B>,
    configs: Vec<switch_core::pipeline::WorkerConfig>,
    plans: Vec<Option<crate::handover::WorkerPlan>>,
    checkpoints: Vec<Option<crate::handover::Checkpoint>>,
    s: &Start,
) -> Result<Vec<std::thread::JoinHandle<Option<crate::handover::WorkerImage>>>, LiveError>
where
    B: Backend + Send + 'static,
    B::Buf: Send + 'static,
{
    let n = bes.len();
    let links: Vec<Option<Links<B::Buf>>> = if n > 1 {
        io_backends::handoff::mesh(n, HANDOFF_DEPTH).map_err(LiveError::Ports)?.into_iter().map(Some).collect()
    } else {
        vec![None]
    };
    let mut threads = Vec::with_capacity(n);
    let per_worker = configs.into_iter().zip(plans).zip(checkpoints);
    for (i, ((be, links), ((wcfg, plan), checkpoint))) in bes.into_iter().zip(links).zip(per_worker).enumerate() {
        let (cmd_tx, cmd_rx) = std::sync::mpsc::channel::<WorkerCmd>();
        // Rung after each command, so a worker asleep in poll(2) answers at once (a pod's
        // port opened within a millisecond, not after the idle timeout).
        let bell = Arc::new(io_backends::sys::eventfd().map_err(LiveError::Ports)?);
        s.controller.add_worker(WorkerLink { tx: cmd_tx, bell: Some(Arc::clone(&bell)) });
        let (cell, shared, stop) = (Arc::clone(&s.cell), Arc::clone(&s.reports[i]), Arc::clone(&s.stop));
        let (opts, modes) = (s.opts.clone(), s.modes.clone());
        let cpu = (!opts.cpu.is_empty()).then(|| opts.cpu[i % opts.cpu.len()]);
        let spawned = std::thread::Builder::new().name(format!("psw-worker-{i}")).spawn(move || {
            // Test hook: the fault suite makes a worker die to check that the daemon does not
            // go on without it (read once at start, never on the packet path).
            if std::env::var_os("PODSWITCH_FAILPOINT").is_some_and(|v| v == "worker-panic") {
                panic!("failpoint worker-panic: worker {i} stops");
            }
            if let Some(cpu) = cpu {
                if let Err(e) = io_backends::sys::pin_to_cpu(cpu) {
                    log(&format!("cannot pin worker {i} to CPU {cpu}: {e}"));
                }
            }
            let l = Loop {
                cell: &cell,
                stop: &stop,
                shared: &shared,
                opts: &opts,
                cmds: &cmd_rx,
                bell: &bell,
                modes: &modes,
                index: i as u16,
            };
            let mut w = Worker::new(wcfg);
            if let Some(plan) = plan {
                let r = plan.apply(&mut w, 0);
                if r.no_room + r.expired > 0 {
                    log(&format!("worker {i}: {} restored flow(s) expired, {} without room", r.expired, r.no_room));
                }
            }
            worker_loop(be, links, w, checkpoint, &l)
        });
        match spawned {
            Ok(t) => threads.push(t),
            Err(_) => {
                s.stop.store(true, Ordering::Relaxed);
                for t in threads {
                    let _ = t.join();
                }
                return Err(LiveError::Worker);
            }
        }
    }
    Ok(threads)
}

/// Frames a handoff ring holds between two workers: as deep as a port's AF_XDP fill rings, so a
/// TCP window handed to the flow's owner waits instead of being dropped (`handoff_queue_full`
/// took every retransmission of one iperf3 stream with two workers at 1,024).
const HANDOFF_DEPTH: usize = 4096;

/// What a worker loop shares with the main thread.
struct Loop<'a> {
    cell: &'a SnapshotCell,
    stop: &'a AtomicBool,
    shared: &'a Mutex<Option<Report>>,
    opts: &'a LiveOptions,
    cmds: &'a std::sync::mpsc::Receiver<WorkerCmd>,
    bell: &'a std::os::fd::OwnedFd,
    modes: &'a [String],
    index: u16,
}

fn worker_loop<B: Backend>(
    mut be: B,
    links: Option<Links<B::Buf>>,
    mut w: Worker,
    mut checkpoint: Option<crate::handover::Checkpoint>,
    l: &Loop<'_>,
) -> Option<crate::handover::WorkerImage> {
    let Loop { cell, stop, shared, opts, cmds, bell, modes, index } = *l;
    let mut d = Dispatch::new(&mut be, links);
    be.watch_fd(std::os::fd::AsRawFd::as_raw_fd(bell));
    let mut batch: Batch<B::Buf> = Batch::with_capacity(BATCH);
    let start = Instant::now();
    let mut idle = 0u32;
    let mut last_publish = Instant::now();
    let mut round = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let n = if opts.bare_forward {
            bare_forward(&mut be, &mut w, &mut batch)
        } else {
            d.step(&mut be, &mut w, &mut batch, || (cell.snapshot(), start.elapsed().as_nanos() as u64))
        };
        // Frames a full TX ring held back go out first; while some are held, no sleep.
        let held = be.flush(&mut |port, len| w.count_tx_drop(port, len));
        if n == 0 && held > 0 {
            idle = 0;
        } else if n == 0 {
            idle += 1;
            if idle >= opts.busy_polls && d.may_sleep() {
                be.wait(opts.idle_wait_ms);
                d.woke();
                // Rung for a command (served below, as after every sleep): cleared here, only
                // after a sleep, so a busy worker never makes the syscall.
                io_backends::sys::eventfd_clear(bell);
            }
        } else {
            idle = 0;
        }
        // Control requests (conntrack list/flush) and counters every 64 rounds (a round is a
        // batch, or one empty poll) and after each sleep, so polling rarely reads the clock.
        round = round.wrapping_add(1);
        if !round.is_multiple_of(64) && idle < opts.busy_polls {
            continue;
        }
        while let Ok(cmd) = cmds.try_recv() {
            match cmd {
                WorkerCmd::AttachPort { port, interface, mut share, reply } => {
                    let r = be.attach_port(port, &interface, &mut share).map(|()| share).map_err(|e| e.to_string());
                    if r.is_ok() {
                        w.forget_port(port);
                        log(&format!("worker {index}: {interface} attached as port {}", port.0));
                    }
                    let _ = reply.send(r);
                }
                WorkerCmd::DetachPort { port, reply } => {
                    let was = be.detach_port(port);
                    w.forget_port(port);
                    let _ = reply.send(was);
                }
                cmd => {
                    let now = start.elapsed().as_nanos() as u64;
                    serve_worker_cmd(cmd, &mut w, &cell.load(), now, index);
                }
            }
        }
        if let Some(c) = checkpoint.as_mut() {
            c.step(&w, start.elapsed().as_nanos() as u64);
        }
        if last_publish.elapsed() >= Duration::from_millis(200) {
            last_publish = Instant::now();
            publish(&w, shared, cell, modes, be.free_buffers());
        }
    }
    publish(&w, shared, cell, modes, be.free_buffers());
    checkpoint.map(|c| c.finish(&w, start.elapsed().as_nanos() as u64))
}

/// Reads `file` and splits its flows among `workers` workers (each puts its share in at time
/// 0 of its clock); logs what was kept and left out. An unreadable file is set aside with the
/// reason, a read one renamed.
fn restore_flows(
    file: &crate::handover::FlowStateFile,
    t: &switch_core::snapshot::Tables,
    workers: usize,
) -> Vec<Option<crate::handover::WorkerPlan>> {
    match file.load() {
        Ok(None) => vec![None; workers],
        Ok(Some(saved)) => {
            let (plans, r) = crate::handover::plan(&saved, t, workers as u16);
            file.consumed();
            log(&format!(
                "restored {} flow(s) and {} affinity entries written {} ms ago; left out: {} expired, {} on \
                 another worker's share, {} of a Service gone",
                r.flows,
                r.affinity,
                saved.age.as_millis(),
                r.expired,
                r.split,
                r.service_gone,
            ));
            plans.into_iter().map(Some).collect()
        }
        Err(e) => {
            tracing::warn!("flow state not restored, connections start afresh: {e}");
            file.set_aside();
            vec![None; workers]
        }
    }
}

/// Writes the flow state file when the workers sent something new; logs a failure once
/// until it works again. Returns the flows written.
fn write_flows(w: &mut crate::handover::Writer, cell: &SnapshotCell, failing: &mut bool) -> Option<usize> {
    match w.poll(&cell.load()) {
        Ok(n) => {
            if n.is_some() && *failing {
                *failing = false;
                log("flow state written again");
            }
            n
        }
        Err(e) => {
            if !*failing {
                tracing::warn!("flow state not written: {e}");
                *failing = true;
            }
            None
        }
    }
}

/// The benchmark baseline: every frame out of the paired port (0<->1, 2<->3, ...), no
/// pipeline.
fn bare_forward<B: Backend>(be: &mut B, w: &mut Worker, batch: &mut Batch<B::Buf>) -> usize {
    let mut verdicts = [Verdict::Drop(DropReason::NoRoute); BATCH];
    let n = be.rx_burst(batch, &mut 0);
    for (v, b) in verdicts.iter_mut().zip(batch.as_slice()) {
        *v = Verdict::Tx(PortId(b.in_port().0 ^ 1));
    }
    be.tx_burst(batch, &verdicts[..n], &mut |port, len| w.count_tx_drop(port, len));
    n
}

fn publish(w: &Worker, shared: &Mutex<Option<Report>>, cell: &SnapshotCell, modes: &[String], pool_free: usize) {
    let mut r = Report::of_worker(w, cell.generation(), modes.to_vec());
    r.pool_free = pool_free;
    if let Ok(mut g) = shared.lock() {
        *g = Some(r);
    }
}

fn write_stats(path: Option<&Path>, reports: &[Arc<Mutex<Option<Report>>>], cell: &SnapshotCell) {
    let Some(path) = path else { return };
    let Some(text) = Report::sum(reports).map(|r| r.render(&cell.load())) else { return };
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, path)).is_err() {
        log(&format!("cannot write stats to {}", path.display()));
    }
}
