//! The control plane's one writer. API calls and SIGHUP reloads come here; each change is made
//! on a copy of the [`Store`], built into a complete snapshot, validated, and only then
//! published with the next generation number, so a rejected change leaves everything as it
//! was. Changes are serialized by one mutex, which never touches the packet path: workers
//! only load the published snapshot. Conntrack listings and flushes are requests to the
//! workers (which own their tables), answered between batches.

use crate::api::pb;
use crate::build::services::{CompiledService, Steer};
use crate::build::{self, PortSpec};
use crate::config::{Config, RouteConfig};
use crate::k8s::{self, Format, Key, Kind, Validation};
use crate::publish::SnapshotCell;
use crate::report::Report;
use crate::store::{Action, Store, StoreError};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use switch_core::addr::Addr;
use switch_core::conntrack::{CtEntry, FlowKey};
use switch_core::drop::DropReason;
use switch_core::packet::PortId;
use switch_core::snapshot::Tables;
use tokio::sync::broadcast;

#[path = "controller_attach.rs"]
mod attach_ops;
pub use attach_ops::PortOut;

/// Why a request was refused (mapped onto gRPC status codes by the server).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Precondition(String),
    #[error("{0}")]
    Unavailable(String),
    /// No address, port id or other resource is left.
    #[error("{0}")]
    Exhausted(String),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Refusal {
        match e {
            StoreError::NotFound(_) => Refusal::NotFound(e.to_string()),
            StoreError::FromConfig(_) => Refusal::Precondition(e.to_string()),
            StoreError::Invalid(..) => Refusal::Invalid(e.to_string()),
        }
    }
}

/// A request to a worker, answered between two batches.
#[derive(Debug)]
pub enum WorkerCmd {
    ListFlows {
        filter: FlowFilter,
        limit: usize,
        reply: mpsc::Sender<(Vec<pb::Flow>, u64)>,
    },
    Flush {
        filter: FlowFilter,
        reply: mpsc::Sender<u64>,
    },
    /// Open `interface` as switch port `port` (see `io_backends::Backend::attach_port`); the
    /// reply carries what the next worker joins.
    AttachPort {
        port: PortId,
        interface: String,
        share: io_backends::PortShare,
        reply: mpsc::Sender<Result<io_backends::PortShare, String>>,
    },
    /// Close port `port` and forget its counters (the id may be given to another port).
    DetachPort {
        port: PortId,
        reply: mpsc::Sender<bool>,
    },
}

/// A worker's command queue and the doorbell that wakes it when it sleeps in poll(2).
#[derive(Debug, Clone)]
pub struct WorkerLink {
    pub tx: mpsc::Sender<WorkerCmd>,
    pub bell: Option<Arc<std::os::fd::OwnedFd>>,
}

impl WorkerLink {
    fn send(&self, cmd: WorkerCmd) -> Result<(), Refusal> {
        self.tx.send(cmd).map_err(|_| Refusal::Unavailable("a worker has stopped".into()))?;
        if let Some(b) = &self.bell {
            io_backends::sys::eventfd_signal(b);
        }
        Ok(())
    }
}

/// Which flows a conntrack request is about.
#[derive(Debug, Clone, Default)]
pub struct FlowFilter {
    pub proto: Option<u8>,
    pub addr: Option<Addr>,
    pub port: Option<u16>,
}

impl FlowFilter {
    pub fn from_pb(f: &pb::ConntrackFilter) -> Result<FlowFilter, Refusal> {
        let proto = match f.protocol.to_ascii_lowercase().as_str() {
            "" => None,
            p => Some(protocol_number(p).ok_or_else(|| {
                Refusal::Invalid(format!("protocol '{p}' is not one of tcp, udp, sctp, icmp, icmpv6"))
            })?),
        };
        let addr = match f.address.as_str() {
            "" => None,
            a => Some(Addr::from(
                a.parse::<std::net::IpAddr>().map_err(|_| Refusal::Invalid(format!("'{a}' is not an IP address")))?,
            )),
        };
        let port = match f.port {
            0 => None,
            p => Some(u16::try_from(p).map_err(|_| Refusal::Invalid(format!("port {p} is outside 1-65535")))?),
        };
        Ok(FlowFilter { proto, addr, port })
    }

    pub fn matches(&self, k: &FlowKey, e: &CtEntry) -> bool {
        self.proto.is_none_or(|p| p == k.proto)
            && self.addr.is_none_or(|a| [k.t.src, k.t.dst, e.xlate.src, e.xlate.dst].contains(&a))
            && self.port.is_none_or(|p| [k.t.sport, k.t.dport, e.xlate.sport, e.xlate.dport].contains(&p))
    }
}

fn protocol_number(p: &str) -> Option<u8> {
    Some(match p {
        "tcp" => 6,
        "udp" => 17,
        "sctp" => 132,
        "icmp" => 1,
        "icmpv6" => 58,
        _ => return None,
    })
}

fn protocol_name(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        132 => "sctp".into(),
        1 => "icmp".into(),
        58 => "icmpv6".into(),
        n => n.to_string(),
    }
}

/// A flow as the API lists it.
pub fn flow_to_pb(t: &Tables, k: &FlowKey, e: &CtEntry, expires_in_ns: u64, worker: u16) -> pb::Flow {
    let sa = |a: Addr, p: u16| if a.is_v4() { format!("{a}:{p}") } else { format!("[{a}]:{p}") };
    pb::Flow {
        protocol: protocol_name(k.proto),
        src: sa(k.t.src, k.t.sport),
        dst: sa(k.t.dst, k.t.dport),
        xlate_src: sa(e.xlate.src, e.xlate.sport),
        xlate_dst: sa(e.xlate.dst, e.xlate.dport),
        state: e.state.name().into(),
        expires_in_ms: expires_in_ns / 1_000_000,
        packets: e.packets,
        bytes: e.bytes,
        service: e
            .service
            .filter(|s| (s.0 as usize) < t.services.ports().len())
            .map(|s| t.services.port(s).name().to_string())
            .unwrap_or_default(),
        egress_rule: e.egress_rule.map(|r| t.policy.rule_name(r).to_string()).unwrap_or_default(),
        ingress_rule: e.ingress_rule.map(|r| t.policy.rule_name(r).to_string()).unwrap_or_default(),
        worker: u32::from(worker),
    }
}

/// What a successful change returns.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub generation: u64,
    pub changes: Vec<(Key, Action)>,
    pub warnings: Vec<String>,
    pub build_micros: u64,
}

impl Outcome {
    pub fn to_pb(&self) -> pb::ChangeResponse {
        pb::ChangeResponse {
            generation: self.generation,
            changes: self.changes.iter().map(|(k, a)| change_pb(k, *a)).collect(),
            warnings: self.warnings.clone(),
            build_micros: self.build_micros,
        }
    }
}

fn change_pb(k: &Key, a: Action) -> pb::Change {
    pb::Change { object: Some(key_pb(k)), action: a.name().into() }
}

pub fn key_pb(k: &Key) -> pb::ObjectRef {
    pb::ObjectRef { kind: k.kind.name().into(), namespace: k.namespace.clone(), name: k.name.clone() }
}

/// The compiled services behind the live snapshot, for service-only rebuilds.
#[derive(Debug)]
struct LiveServices {
    ctx: build::services::ServiceContext,
    /// As published (a change edits it and puts back what it touched if refused).
    compiled: build::services::Compiled,
}

impl From<build::ServicesState> for LiveServices {
    fn from(s: build::ServicesState) -> LiveServices {
        LiveServices { ctx: s.ctx, compiled: s.compiled }
    }
}

/// A snapshot built for a change, before it is published.
struct Rebuilt {
    tables: Tables,
    /// After a full build: the ports attached at run time, as built.
    ports: Option<Vec<PortSpec>>,
    /// After a full build: its compiled services, kept once it is published.
    services: Option<build::ServicesState>,
    /// After a service-only build: the compiled services it replaced.
    undo: Undo,
    /// The stable ids after this build.
    ids: build::Ids,
}

/// Compiled services a change replaced, to put back if it is refused.
type Undo = Vec<((String, String), Option<Arc<build::services::CompiledService>>)>;

/// What changes are made on, under one lock.
#[derive(Debug)]
struct State {
    store: Store,
    /// Maglev tables of the live snapshot, reused by the next build.
    cache: switch_core::service::MaglevCache,
    services: Option<LiveServices>,
    /// Ports the workers have open besides those of the config file, by id.
    open: std::collections::BTreeMap<PortId, String>,
    /// Per pod CIDR, the address handed out last.
    ipam_last: std::collections::BTreeMap<String, String>,
    /// Stable ids of the live snapshot (a change works on a copy, kept if published).
    ids: build::Ids,
}

/// The control plane's state and its links to the workers.
#[derive(Debug)]
pub struct Controller {
    state: Mutex<State>,
    cell: Arc<SnapshotCell>,
    /// The config file's ports, opened at start; they change only with a restart.
    ports: Vec<PortSpec>,
    base_dir: PathBuf,
    /// Where every committed change is written before it is published.
    state_file: Option<crate::state::StateFile>,
    config_path: Option<PathBuf>,
    events: broadcast::Sender<pb::Event>,
    /// The workers' published counters, by worker.
    pub reports: Vec<Arc<Mutex<Option<Report>>>>,
    workers: Mutex<Vec<WorkerLink>>,
    /// Nanoseconds the last build-and-publish took.
    pub apply_ns: Arc<AtomicU64>,
    /// Workers the daemon runs, when it overrides the config's `datapath.workers`.
    workers_running: Option<u16>,
}

impl Controller {
    /// A controller for a daemon started from `base` (already built into the live `cell`).
    pub fn new(
        base: Config,
        ports: Vec<PortSpec>,
        cell: Arc<SnapshotCell>,
        base_dir: PathBuf,
        config_path: Option<PathBuf>,
    ) -> Controller {
        let (events, _) = broadcast::channel(256);
        Controller {
            state: Mutex::new(State {
                store: Store::new(base),
                cache: switch_core::service::MaglevCache::default(),
                services: None,
                open: std::collections::BTreeMap::new(),
                ipam_last: std::collections::BTreeMap::new(),
                ids: build::Ids::default(),
            }),
            cell,
            ports,
            base_dir,
            state_file: None,
            config_path,
            events,
            reports: Vec::new(),
            workers: Mutex::new(Vec::new()),
            apply_ns: Arc::new(AtomicU64::new(0)),
            workers_running: None,
        }
    }

    /// Builds every snapshot for `n` workers, whatever the config file says (the daemon's
    /// `--workers`, or fewer when a port has fewer queues).
    pub fn with_workers(mut self, n: u16) -> Controller {
        self.workers_running = Some(n);
        self
    }

    /// Keeps the compiled services of the snapshot the daemon started with, so that the first
    /// service change is already incremental.
    pub fn with_services(self, s: build::ServicesState) -> Controller {
        if let Ok(mut st) = self.state.lock() {
            st.services = Some(LiveServices::from(s));
        }
        self
    }

    pub fn with_reports(mut self, reports: Vec<Arc<Mutex<Option<Report>>>>) -> Controller {
        self.reports = reports;
        self
    }

    /// Keeps the stable ids of the snapshot the daemon started with, so that the first change
    /// renumbers nothing.
    pub fn with_ids(self, ids: build::Ids) -> Controller {
        if let Ok(mut st) = self.state.lock() {
            st.ids = ids;
        }
        self
    }

    /// Registers a worker's command queue.
    pub fn add_worker(&self, link: WorkerLink) {
        if let Ok(mut w) = self.workers.lock() {
            w.push(link);
        }
    }

    /// Writes every committed change to `file` before publishing it. Objects read from the
    /// file at start are given with [`Controller::restore`].
    pub fn with_state_file(mut self, file: crate::state::StateFile) -> Controller {
        self.state_file = Some(file);
        self
    }

    pub fn cell(&self) -> &Arc<SnapshotCell> {
        &self.cell
    }

    pub fn node_name(&self) -> String {
        self.cell.load().node.name.clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<pb::Event> {
        self.events.subscribe()
    }

    fn emit(&self, action: &str, changes: &[(Key, Action)], message: String) {
        let unix_millis =
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        // No receiver is fine: nobody is watching.
        let _ = self.events.send(pb::Event {
            generation: self.cell.generation(),
            action: action.into(),
            changes: changes.iter().map(|(k, a)| change_pb(k, *a)).collect(),
            message,
            unix_millis,
        });
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, Refusal> {
        self.state.lock().map_err(|_| Refusal::Unavailable("control state poisoned by an earlier failure".into()))
    }

    /// Makes a change: `f` edits the store (recorded), then the snapshot is rebuilt (only the
    /// service table when only services and their endpoints changed), validated and
    /// published unless `dry_run`; on any refusal, or a dry run, the store is rolled back.
    fn change(
        &self,
        action: &str,
        warnings: Vec<String>,
        dry_run: bool,
        f: impl FnOnce(&mut Store) -> Result<Vec<(Key, Action)>, StoreError>,
    ) -> Result<Outcome, Refusal> {
        let mut st = self.lock()?;
        self.change_in(&mut st, action, warnings, dry_run, f)
    }

    /// [`Controller::change`] under the lock, already held.
    fn change_in(
        &self,
        st: &mut State,
        action: &str,
        warnings: Vec<String>,
        dry_run: bool,
        f: impl FnOnce(&mut Store) -> Result<Vec<(Key, Action)>, StoreError>,
    ) -> Result<Outcome, Refusal> {
        st.store.begin();
        let r = match f(&mut st.store) {
            Ok(changes) => self.rebuild(st, changes, warnings, dry_run, action),
            Err(e) => Err(e.into()),
        };
        if r.is_ok() && !dry_run {
            st.store.commit();
        } else {
            st.store.rollback();
        }
        r
    }

    /// Puts back the objects and allocations of the state file read at start, and builds and
    /// publishes them (opening their ports) before the daemon takes any request. Objects the
    /// current config file makes invalid are refused all together: the daemon must not run
    /// with less policy than it had.
    pub fn restore(&self, state: crate::state::State) -> Result<Outcome, Refusal> {
        let mut st = self.lock()?;
        let keys: Vec<(Key, Action)> = state.objects.iter().map(|o| (o.key(), Action::Created)).collect();
        st.ipam_last = state.ipam_last;
        self.change_in(&mut st, "restored", Vec::new(), false, |s| {
            s.restore(state.objects);
            Ok(keys)
        })
    }

    /// The services a service-only change touches, or `None` when it touches anything else.
    fn touched_services(store: &Store, changes: &[(Key, Action)]) -> Option<BTreeSet<(String, String)>> {
        let mut out = BTreeSet::new();
        for (k, a) in changes {
            if *a == Action::Unchanged {
                continue;
            }
            match k.kind {
                Kind::Service => {
                    out.insert((k.namespace.clone(), k.name.clone()));
                }
                Kind::EndpointSlice | Kind::Endpoints => {
                    for o in [store.get(k), store.before(k).flatten()].into_iter().flatten() {
                        if let k8s::Object::Slice(sl) = o {
                            out.insert((sl.namespace.clone(), sl.service.clone()));
                        }
                    }
                }
                _ => return None,
            }
        }
        Some(out)
    }

    fn rebuild(
        &self,
        st: &mut State,
        changes: Vec<(Key, Action)>,
        warnings: Vec<String>,
        dry_run: bool,
        action: &str,
    ) -> Result<Outcome, Refusal> {
        let t0 = Instant::now();
        let changed =
            changes.iter().any(|(_, a)| *a != Action::Unchanged) || action == "reloaded" || action == "restored";
        if !changed {
            return Ok(Outcome { generation: self.cell.generation(), changes, warnings, build_micros: 0 });
        }
        let generation = self.cell.generation() + 1;
        let touched = if action == "reloaded" || action == "restored" {
            None
        } else {
            Controller::touched_services(&st.store, &changes)
        };
        let result = match (touched, st.services.take()) {
            (Some(touched), Some(mut services)) => {
                let mut undo = Vec::new();
                let mut ids = st.ids.clone();
                let r = self.rebuild_services(st, &mut services, &touched, generation, &mut undo, &mut ids);
                if r.is_err() || dry_run {
                    Controller::undo_services(&mut services, undo);
                    st.services = Some(services);
                    r.map(|t| Rebuilt { tables: t, ports: None, services: None, undo: Vec::new(), ids })
                } else {
                    st.services = Some(services);
                    r.map(|t| Rebuilt { tables: t, ports: None, services: None, undo, ids })
                }
            }
            (_, old) => {
                st.services = old;
                self.rebuild_all(st, generation)
            }
        };
        let rejected = |st: &mut State, m: Refusal| {
            st.cache.abandon();
            if !dry_run {
                self.emit("rejected", &changes, m.to_string());
            }
            Err(m)
        };
        let rebuilt = match result {
            Ok(r) => r,
            Err(m) => return rejected(st, m),
        };
        let build_micros = t0.elapsed().as_micros() as u64;
        if dry_run {
            st.cache.abandon();
            return Ok(Outcome { generation: self.cell.generation(), changes, warnings, build_micros });
        }
        // Ports new in this change are opened before it is published (a frame that arrives
        // first meets the old snapshot, where the port has no pod, and is dropped); ports it
        // removes are closed after, once no snapshot sends there.
        let (opening, closing) = match &rebuilt.ports {
            Some(ports) => self.port_plan(st, ports),
            None => (Vec::new(), Vec::new()),
        };
        let undo_services = |st: &mut State, undo: Undo| {
            if let Some(services) = st.services.as_mut() {
                Controller::undo_services(services, undo);
            }
        };
        if let Err(m) = self.open_ports(&opening) {
            undo_services(st, rebuilt.undo);
            return rejected(st, m);
        }
        if let Err(m) = self.persist(st) {
            self.close_ports(&opening);
            undo_services(st, rebuilt.undo);
            return rejected(st, m);
        }
        // A full build used every table the snapshot has; a service-only one, only those of
        // the services it touched.
        if rebuilt.services.is_some() {
            st.cache.finish();
        } else {
            st.cache.finish_incremental();
        }
        if let Some(s) = rebuilt.services {
            st.services = Some(LiveServices::from(s));
        }
        st.ids = rebuilt.ids;
        let generation = self.cell.publish(rebuilt.tables);
        self.close_ports(&closing);
        for (id, interface) in &opening {
            st.open.insert(*id, interface.clone());
        }
        for (id, _) in &closing {
            st.open.remove(id);
        }
        self.apply_ns.store(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let n = changes.iter().filter(|(_, a)| *a != Action::Unchanged).count();
        tracing::info!(generation, objects = n, micros = t0.elapsed().as_micros() as u64, "{action}");
        self.emit(action, &changes, format!("{n} object(s) {action}"));
        Ok(Outcome { generation, changes, warnings, build_micros })
    }

    /// Puts back the compiled services a refused change replaced.
    fn undo_services(services: &mut LiveServices, undo: Undo) {
        for (k, old) in undo.into_iter().rev() {
            match old {
                Some(c) => services.compiled.insert(k, c),
                None => services.compiled.remove(&k),
            };
        }
    }

    /// Writes the store to the state file (when the daemon keeps one).
    fn persist(&self, st: &State) -> Result<(), Refusal> {
        let Some(f) = &self.state_file else { return Ok(()) };
        f.save(&st.store.base().node.name, st.store.api_objects(), &st.ipam_last)
            .map_err(|e| Refusal::Unavailable(format!("state not saved, change refused: {e}")))
    }

    /// Everything from the merged config.
    fn rebuild_all(&self, st: &mut State, generation: u64) -> Result<Rebuilt, Refusal> {
        let (mut cfg, origins) = st.store.config();
        if let Some(n) = self.workers_running {
            // The workers that run, not the file's figure: tables must carry the steering data
            // exactly when several workers hand frames over.
            cfg.datapath.workers = n;
        }
        let mut ids = st.ids.clone();
        let built = build::build_cached(&cfg, &self.base_dir, generation, &mut st.cache, &mut ids).map_err(|e| {
            let (what, msg) = origins.describe(&e);
            Refusal::Invalid(format!("{what}: {msg}"))
        })?;
        let attached: BTreeSet<&str> = st.store.attachments().map(|a| a.port.as_str()).collect();
        let fixed: Vec<&PortSpec> = built.ports.iter().filter(|p| !attached.contains(p.name.as_str())).collect();
        if fixed.len() != self.ports.len() || fixed.iter().zip(&self.ports).any(|(a, b)| *a != b) {
            return Err(Refusal::Precondition(
                "the config file's ports differ from the running ones; they change only with a restart \
                 (ports come and go at run time through `podswitchctl port` and the CNI plugin)"
                    .into(),
            ));
        }
        let ports = built.ports.into_iter().filter(|p| attached.contains(p.name.as_str())).collect();
        Ok(Rebuilt { tables: built.tables, ports: Some(ports), services: Some(built.services), undo: Vec::new(), ids })
    }

    /// Only the touched services, recompiled; the rest of the snapshot is shared.
    fn rebuild_services(
        &self,
        st: &mut State,
        services: &mut LiveServices,
        touched: &BTreeSet<(String, String)>,
        generation: u64,
        undo: &mut Undo,
        ids: &mut build::Ids,
    ) -> Result<Tables, Refusal> {
        let ctx = &services.ctx;
        let has_pod = |ns: &str, p: &str| ctx.pod_keys.contains(&(ns.to_string(), p.to_string()));
        for (ns, name) in touched {
            let key = (ns.clone(), name.clone());
            match st.store.merged_service(ns, name, &has_pod) {
                Some(s) => {
                    let c = build::services::compile(0, &s, ctx, &mut st.cache).map_err(|e| {
                        let field = e.field.strip_prefix("services[0].").unwrap_or(&e.field).to_string();
                        Refusal::Invalid(format!("Service {ns}/{name}: {field}: {}", e.message))
                    })?;
                    let old = services.compiled.insert(key.clone(), Arc::new(c));
                    undo.push((key, old));
                }
                None => {
                    let old = services.compiled.remove(&key);
                    undo.push((key, old));
                }
            }
        }
        let live = self.cell.load();
        // The workers that run decide, not the figure the services were first built with.
        let steering = self.workers_running.map_or(services.ctx.steering, |n| n > 1);
        let steer = if !steering {
            Steer::Off
        } else {
            // The live table's index with this change's services swapped: the undo list holds
            // them as they were, the compiled map as they are now.
            let changed = &undo[undo.len() - touched.len()..];
            Steer::Patch {
                prev: &live.services,
                removed: changed.iter().filter_map(|(_, old)| old.as_deref().map(CompiledService::parts)).collect(),
                added: changed.iter().filter_map(|(k, _)| services.compiled.get(k).map(|c| c.parts())).collect(),
            }
        };
        let (table, _) = build::services::assemble(&services.compiled, steer, &mut ids.service_ports)
            .map_err(|e| Refusal::Invalid(format!("services: {e}")))?;
        Ok(live.with_services(table, generation))
    }

    fn parse_manifests(&self, manifests: &[pb::Manifest], validate: Validation) -> Result<k8s::Parsed, Refusal> {
        let node = self.node_name();
        let mut all = k8s::Parsed::default();
        for m in manifests {
            let format = Format::parse(&m.format).ok_or_else(|| {
                Refusal::Invalid(format!("{}: format '{}' is not yaml, json or toml", m.source, m.format))
            })?;
            let p = k8s::parse(format, &m.source, &m.content, &node, validate)
                .map_err(|e| Refusal::Invalid(e.to_string()))?;
            all.objects.extend(p.objects);
            all.warnings.extend(p.warnings);
            all.skipped.extend(p.skipped);
        }
        Ok(all)
    }

    /// Applies every object of `manifests`, all or none, refusing fields the Kubernetes
    /// schema does not know (kubectl's `--validate=strict`).
    pub fn apply(&self, manifests: &[pb::Manifest], dry_run: bool) -> Result<Outcome, Refusal> {
        self.apply_validated(manifests, dry_run, Validation::Strict)
    }

    /// [`Controller::apply`] with the given validation of unknown fields.
    pub fn apply_validated(
        &self,
        manifests: &[pb::Manifest],
        dry_run: bool,
        validate: Validation,
    ) -> Result<Outcome, Refusal> {
        let k8s::Parsed { objects, warnings, skipped } = self.parse_manifests(manifests, validate)?;
        if objects.is_empty() {
            let mut m = String::from("no objects in the request");
            if !skipped.is_empty() {
                m.push_str(&format!("; every document was skipped:\n  {}", skipped.join("\n  ")));
            }
            return Err(Refusal::Invalid(m));
        }
        self.change("applied", warnings, dry_run, |s| s.apply(objects))
    }

    /// Deletes the objects named by `keys` and by `manifests`, all or none.
    pub fn delete(
        &self,
        keys: &[pb::ObjectRef],
        manifests: &[pb::Manifest],
        dry_run: bool,
    ) -> Result<Outcome, Refusal> {
        let mut all = Vec::new();
        for r in keys {
            let kind = Kind::parse(&r.kind).ok_or_else(|| Refusal::Invalid(format!("unknown kind '{}'", r.kind)))?;
            let namespace = if kind.namespaced() {
                if r.namespace.is_empty() {
                    "default".into()
                } else {
                    r.namespace.clone()
                }
            } else {
                String::new()
            };
            if r.name.is_empty() {
                return Err(Refusal::Invalid(format!("{} to delete needs a name", kind.name())));
            }
            all.push(Key { kind, namespace, name: r.name.clone() });
        }
        // Deleting needs only the objects' names: fields are not validated.
        let k8s::Parsed { objects, warnings, .. } = self.parse_manifests(manifests, Validation::Ignore)?;
        all.extend(objects.iter().map(k8s::Object::key));
        if all.is_empty() {
            return Err(Refusal::Invalid("nothing to delete".into()));
        }
        self.change("deleted", warnings, dry_run, |s| s.delete(&all))
    }

    pub fn add_route(&self, r: &pb::Route) -> Result<Outcome, Refusal> {
        let route = RouteConfig {
            prefix: r.prefix.clone(),
            via: r.via.clone(),
            mac: Some(r.mac.clone()).filter(|m| !m.is_empty()),
        };
        self.change("applied", Vec::new(), false, |s| s.apply(vec![k8s::Object::Route(route)]))
    }

    pub fn delete_route(&self, r: &pb::Route) -> Result<Outcome, Refusal> {
        let key = Key { kind: Kind::Route, namespace: String::new(), name: r.prefix.clone() };
        self.change("deleted", Vec::new(), false, |s| s.delete(&[key]))
    }

    /// SIGHUP: re-reads the config file; API objects stay.
    pub fn reload(&self) -> Result<Outcome, Refusal> {
        let Some(path) = &self.config_path else {
            return Err(Refusal::Precondition("the daemon runs without a config file".into()));
        };
        let result = (|| {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Refusal::Invalid(format!("{}: cannot read: {e}", path.display())))?;
            // Validate the file on its own first, for errors with its own line numbers.
            build::build_text(&text, path, &self.base_dir, 0).map_err(|e| Refusal::Invalid(e.to_string()))?;
            let base: Config = toml::from_str(&text).map_err(|e| Refusal::Invalid(e.to_string()))?;
            self.change("reloaded", Vec::new(), false, |s| {
                s.set_base(base);
                Ok(Vec::new())
            })
        })();
        if let Err(e) = &result {
            self.emit("reload_rejected", &[], e.to_string());
        }
        result
    }

    /// The merged config the live snapshot is built from (file and API objects).
    pub fn config(&self) -> Result<Config, Refusal> {
        Ok(self.lock()?.store.config().0)
    }

    /// Objects of one kind.
    pub fn list(&self, kind: &str, namespace: &str, name: &str) -> Result<pb::ListResponse, Refusal> {
        let kind = Kind::parse(kind).ok_or_else(|| {
            Refusal::Invalid(format!(
                "unknown kind '{kind}' (namespaces, pods, services, endpointslices, endpoints, networkpolicies, routes)"
            ))
        })?;
        let st = self.lock()?;
        // A Pod object whose sandbox the CNI plugin attached is shown bound, as it runs: with
        // the attachment's addresses, MAC and port (a Pod as kubectl writes it has none).
        let running: std::collections::HashMap<(String, String), crate::config::PodConfig> = if kind == Kind::Pod {
            st.store.config().0.pods.into_iter().map(|p| ((p.namespace.clone(), p.name.clone()), p)).collect()
        } else {
            Default::default()
        };
        let mut objects = Vec::new();
        for (k, o, origin) in st.store.objects() {
            if k.kind != kind
                || (!namespace.is_empty() && k.namespace != namespace)
                || (!name.is_empty() && k.name != name)
            {
                continue;
            }
            let o = match o {
                k8s::Object::Pod(p) => {
                    k8s::Object::Pod(running.get(&(p.namespace.clone(), p.name.clone())).cloned().unwrap_or(p))
                }
                o => o,
            };
            let json = serde_json::to_string(&o).map_err(|e| Refusal::Unavailable(e.to_string()))?;
            objects.push(pb::Object { r#ref: Some(key_pb(&k)), json, origin: origin.name().into() });
        }
        if !name.is_empty() && objects.is_empty() {
            return Err(Refusal::NotFound(format!(
                "{} {}{name} not found",
                kind.name(),
                if namespace.is_empty() { String::new() } else { format!("{namespace}/") }
            )));
        }
        Ok(pb::ListResponse { generation: self.cell.generation(), objects })
    }

    /// Counters summed over the workers.
    pub fn counters(&self) -> pb::CountersResponse {
        let t = self.cell.load();
        let mut ports: Vec<pb::PortCounters> = t
            .ports
            .iter()
            .map(|p| pb::PortCounters {
                name: p.name.clone(),
                kind: format!("{:?}", p.kind).to_lowercase(),
                ..Default::default()
            })
            .collect();
        let mut drops = std::collections::HashMap::new();
        let mut events = std::collections::HashMap::new();
        let mut sizes = pb::TableSizes {
            endpoints: t.endpoints.len() as u64,
            routes: t.routes.len() as u64,
            service_ports: t.services.port_count() as u64,
            frontends: t.services.frontend_count() as u64,
            policy_classifiers: t.policy.len() as u64,
            policy_rules: t.policy.rule_count() as u64,
            ..Default::default()
        };
        for r in &self.reports {
            let Ok(g) = r.lock() else { continue };
            let Some(r) = g.as_ref() else { continue };
            for (i, p) in ports.iter_mut().enumerate() {
                let Some(s) = r.stats.ports.get(i) else { continue };
                p.rx_packets += s.rx_packets;
                p.rx_bytes += s.rx_bytes;
                p.tx_packets += s.tx_packets;
                p.tx_bytes += s.tx_bytes;
                if p.io.is_empty() {
                    p.io = r.port_modes.get(i).cloned().unwrap_or_default();
                }
                for reason in DropReason::ALL {
                    let n = s.drops[reason.index()];
                    if n > 0 {
                        *p.drops.entry(reason.name().into()).or_insert(0) += n;
                        *drops.entry(reason.name().to_string()).or_insert(0) += n;
                    }
                }
            }
            for (k, v) in r.events() {
                *events.entry(k.to_string()).or_insert(0) += v;
            }
            sizes.conntrack_entries += r.conntrack_entries as u64;
            sizes.conntrack_capacity += r.conntrack_capacity as u64;
            sizes.conntrack_evicted += r.conntrack_evicted;
        }
        pb::CountersResponse {
            generation: t.generation,
            ports,
            drops,
            events,
            tables: Some(sizes),
            workers: self.reports.len() as u32,
            last_apply_micros: self.apply_ns.load(Ordering::Relaxed) / 1000,
        }
    }

    fn senders(&self) -> Result<Vec<WorkerLink>, Refusal> {
        let w = self.workers.lock().map_err(|_| Refusal::Unavailable("worker list poisoned".into()))?;
        if w.is_empty() {
            return Err(Refusal::Unavailable("no workers are running".into()));
        }
        Ok(w.clone())
    }

    /// The workers' flows matching `f`.
    pub fn conntrack_list(&self, f: &pb::ConntrackFilter) -> Result<pb::ConntrackList, Refusal> {
        let filter = FlowFilter::from_pb(f)?;
        let limit = if f.limit == 0 { 10_000 } else { f.limit as usize };
        let mut out = pb::ConntrackList::default();
        for tx in self.senders()? {
            let (rtx, rrx) = mpsc::channel();
            tx.send(WorkerCmd::ListFlows { filter: filter.clone(), limit, reply: rtx })?;
            let (flows, more) = rrx
                .recv_timeout(Duration::from_secs(2))
                .map_err(|_| Refusal::Unavailable("a worker did not answer within 2 s".into()))?;
            out.flows.extend(flows);
            out.truncated += more;
        }
        if out.flows.len() > limit {
            out.truncated += (out.flows.len() - limit) as u64;
            out.flows.truncate(limit);
        }
        Ok(out)
    }

    /// Removes the workers' flows matching `f`.
    pub fn conntrack_flush(&self, f: &pb::ConntrackFilter) -> Result<pb::FlushResponse, Refusal> {
        let filter = FlowFilter::from_pb(f)?;
        let mut flushed = 0;
        for tx in self.senders()? {
            let (rtx, rrx) = mpsc::channel();
            tx.send(WorkerCmd::Flush { filter: filter.clone(), reply: rtx })?;
            flushed += rrx
                .recv_timeout(Duration::from_secs(2))
                .map_err(|_| Refusal::Unavailable("a worker did not answer within 2 s".into()))?;
        }
        tracing::info!(flushed, "conntrack flushed");
        self.emit("conntrack_flushed", &[], format!("{flushed} flow(s) flushed"));
        Ok(pb::FlushResponse { flushed })
    }

    /// Traces a synthesized packet through the live snapshot.
    pub fn trace(&self, req: &pb::TraceRequest) -> Result<pb::TraceResponse, Refusal> {
        let t = self.cell.load_full();
        let st = self.lock()?;
        // The merged config is made only if a denial has to name its policies.
        let selecting =
            |ns: &str, name: &str, egress: bool| crate::trace::selecting(&st.store.config().0, ns, name, egress);
        let spec = crate::trace::TraceSpec {
            protocol: req.protocol.clone(),
            src: req.src.clone(),
            dst: req.dst.clone(),
            input: req.r#in.clone(),
            tcp_flags: req.tcp_flags.clone(),
        };
        let workers = self.workers_running.unwrap_or(1);
        let r = crate::trace::run(&t, &selecting, &spec, workers).map_err(Refusal::Invalid)?;
        Ok(pb::TraceResponse {
            generation: t.generation,
            steps: r.steps.into_iter().map(|(stage, result)| pb::TraceStep { stage, result }).collect(),
            verdict: match (r.forwarded, r.refused) {
                (_, true) => "refused",
                (true, false) => "forwarded",
                (false, false) => "dropped",
            }
            .into(),
            detail: r.detail,
            rule: r.rule,
        })
    }
}

/// Answers one worker command; called by the worker between batches.
pub fn serve_worker_cmd(cmd: WorkerCmd, w: &mut switch_core::pipeline::Worker, t: &Tables, now: u64, index: u16) {
    match cmd {
        WorkerCmd::ListFlows { filter, limit, reply } => {
            let mut flows = Vec::new();
            let mut more = 0u64;
            for (k, e, expires) in w.conntrack().flows(now) {
                if !filter.matches(k, e) {
                    continue;
                }
                if flows.len() < limit {
                    flows.push(flow_to_pb(t, k, e, expires.saturating_sub(now), index));
                } else {
                    more += 1;
                }
            }
            let _ = reply.send((flows, more));
        }
        WorkerCmd::Flush { filter, reply } => {
            let n = w.conntrack_mut().flush_matching(now, |k, e| filter.matches(k, e));
            let _ = reply.send(n as u64);
        }
        // Port commands need the backend: the worker loop serves them itself.
        WorkerCmd::AttachPort { reply, .. } => {
            let _ = reply.send(Err("this worker cannot attach ports".into()));
        }
        WorkerCmd::DetachPort { reply, .. } => {
            let _ = reply.send(false);
        }
    }
}
