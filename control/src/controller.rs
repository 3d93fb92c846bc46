//! The control plane's one writer. API calls and SIGHUP reloads come here; each change is made
//! on a copy of the [`Store`], built into a complete snapshot, validated, and only then
//! published with the next generation number, so a rejected change leaves everything as it
//! was. Changes are serialized by one mutex, which never touches the packet path: workers
//! only load the published snapshot. Conntrack listings and flushes are requests to the
//! workers (which own their tables), answered between batches.

use crate::build::services::{CompiledService, Steer};
use crate::build::{self, PortSpec};
use crate::config::{Config, RouteConfig};
use crate::k8s::{self, Format, Key, Kind, Validation};
use crate::publish::SnapshotCell;
use crate::report::Report;
use crate::store::{Action, Origin, Store, StoreError};
use std::collections::BTreeSet;
use std::collections::HashMap;
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
#[path = "controller_cluster.rs"]
mod cluster_ops;
pub use attach_ops::PortOut;

#[path = "controller_get.rs"]
mod get_ops;

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
    /// The flows whose entries lie in the next [`WALK_SLOTS`] slots from `from`: the flows (at
    /// most `limit`), how many more matched, and where the next chunk starts (`None`: done).
    ListFlows {
        filter: FlowFilter,
        limit: usize,
        from: usize,
        reply: mpsc::Sender<(Vec<FlowInfo>, u64, Option<usize>)>,
    },
    /// Removes the matching flows of the next [`WALK_SLOTS`] slots from `from`: how many, and
    /// where the next chunk starts.
    Flush { filter: FlowFilter, from: usize, reply: mpsc::Sender<(u64, Option<usize>)> },
    /// Open `interface` as switch port `port` (see `io_backends::Backend::attach_port`); the
    /// reply carries what the next worker joins.
    AttachPort {
        port: PortId,
        interface: String,
        share: io_backends::PortShare,
        reply: mpsc::Sender<Result<io_backends::PortShare, String>>,
    },
    /// Close port `port` and forget its counters (the id may be given to another port).
    DetachPort { port: PortId, reply: mpsc::Sender<bool> },
}

/// Conntrack slots a worker walks for one listing or flush request, between two batches: a
/// table of a million flows is walked in 32 steps of well under a millisecond each, not in
/// one pause of the forwarding core.
pub const WALK_SLOTS: usize = 1 << 16;

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
    /// A filter from a client's terms: protocol by name (empty: any), address (empty: any),
    /// port (0: any). Errors name the bad value.
    pub fn parse(protocol: &str, address: &str, port: u32) -> Result<FlowFilter, Refusal> {
        let proto = match protocol.to_ascii_lowercase().as_str() {
            "" => None,
            p => Some(protocol_number(p).ok_or_else(|| {
                Refusal::Invalid(format!("protocol '{p}' is not one of tcp, udp, sctp, icmp, icmpv6"))
            })?),
        };
        let addr = match address {
            "" => None,
            a => Some(Addr::from(
                a.parse::<std::net::IpAddr>().map_err(|_| Refusal::Invalid(format!("'{a}' is not an IP address")))?,
            )),
        };
        let port = match port {
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

/// A tracked flow as listings show it (addresses as `a.b.c.d:port` or `[v6]:port`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowInfo {
    pub protocol: String,
    pub src: String,
    pub dst: String,
    pub xlate_src: String,
    pub xlate_dst: String,
    pub state: String,
    pub expires_in_ms: u64,
    pub packets: u64,
    pub bytes: u64,
    /// The service port it was translated for, by name ("" when none).
    pub service: String,
    /// The rules that admitted it, by name ("" when no policy applied).
    pub egress_rule: String,
    pub ingress_rule: String,
    pub worker: u16,
}

/// A flow of a worker's conntrack, named with the snapshot `t`.
pub fn flow_info(t: &Tables, k: &FlowKey, e: &CtEntry, expires_in_ns: u64, worker: u16) -> FlowInfo {
    let sa = |a: Addr, p: u16| if a.is_v4() { format!("{a}:{p}") } else { format!("[{a}]:{p}") };
    FlowInfo {
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
        worker,
    }
}

/// Flows matching a listing, and how many more matched than were returned.
#[derive(Debug, Clone, Default)]
pub struct FlowList {
    pub flows: Vec<FlowInfo>,
    pub truncated: u64,
}

/// A manifest as a client sends it: `yaml`, `json` or `toml`, a name for errors, the text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    pub format: String,
    pub source: String,
    pub content: String,
}

/// An object named by a client: kind (any name kubectl takes), namespace (empty: `default`
/// for namespaced kinds), name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

/// Objects of one kind as stored, each as JSON with where it came from.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub generation: u64,
    pub objects: Vec<Listed>,
}

/// One object of a [`Listing`].
#[derive(Debug, Clone)]
pub struct Listed {
    pub key: Key,
    /// The config model's form (podswitch's snake_case fields), JSON.
    pub json: String,
    pub origin: Origin,
    /// The Kubernetes form (apiVersion, kind, metadata, spec, status), JSON: for objects
    /// applied as YAML or JSON as stored, with the allocators' values (a running Pod's node
    /// and addresses filled in); for others rendered from the model (`k8s::render`). `None`
    /// for routes and ports, which Kubernetes does not have.
    pub kubernetes: Option<String>,
}

/// The name and kind of the counters row of ports removed at run time.
pub const REMOVED_PORTS: &str = "(removed)";

/// One port's counters summed over the workers.
#[derive(Debug, Clone, Default)]
pub struct PortCount {
    pub name: String,
    pub kind: String,
    /// How the port's I/O was set up (`afxdp native copy queues=2 ...`).
    pub io: String,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub drops: HashMap<String, u64>,
}

/// Table sizes of the live snapshot and the workers' tables.
#[derive(Debug, Clone, Default)]
pub struct TableSizes {
    pub endpoints: u64,
    pub routes: u64,
    pub service_ports: u64,
    pub frontends: u64,
    pub policy_classifiers: u64,
    pub policy_rules: u64,
    pub conntrack_entries: u64,
    pub conntrack_capacity: u64,
    pub conntrack_evicted: u64,
    pub pool_free: u64,
}

/// Every counter, summed over the workers.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub generation: u64,
    pub ports: Vec<PortCount>,
    pub drops: HashMap<String, u64>,
    pub events: HashMap<String, u64>,
    pub tables: TableSizes,
    pub workers: u32,
    pub last_apply_micros: u64,
}

/// What a trace showed: each stage and its result, the verdict (`forwarded`, `dropped`,
/// `refused`), its detail and the deciding rule.
#[derive(Debug, Clone, Default)]
pub struct TraceResult {
    pub generation: u64,
    pub steps: Vec<(String, String)>,
    pub verdict: &'static str,
    pub detail: String,
    pub rule: String,
}

/// A change as watchers see it.
#[derive(Debug, Clone)]
pub struct Event {
    pub generation: u64,
    /// `applied`, `deleted`, `rejected`, `reloaded`, `attached`, ...
    pub action: String,
    pub changes: Vec<(Key, Action)>,
    pub message: String,
    pub unix_millis: u64,
}

/// What a successful change returns.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub generation: u64,
    pub changes: Vec<(Key, Action)>,
    pub warnings: Vec<String>,
    pub build_micros: u64,
    /// What was built: "full", "services" or "pods" ("" when nothing was).
    pub scope: &'static str,
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
    /// After a pods-only build: the compiled services to keep once it is published.
    replace: Option<LiveServices>,
    /// "full", "services" or "pods".
    scope: &'static str,
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
    events: broadcast::Sender<Event>,
    /// The workers' published counters, by worker.
    pub reports: Vec<Arc<Mutex<Option<Report>>>>,
    workers: Mutex<Vec<WorkerLink>>,
    /// Nanoseconds the last build-and-publish took.
    pub apply_ns: Arc<AtomicU64>,
    /// Workers the daemon runs, when it overrides the config's `datapath.workers`.
    workers_running: Option<u16>,
    /// Where cluster-wide objects live, in cluster mode (see [`crate::source`]).
    source: std::sync::OnceLock<Arc<dyn crate::source::ObjectSource>>,
    /// The source's revision the store has applied, for writers waiting to see their write.
    synced: (Mutex<u64>, std::sync::Condvar),
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
            source: std::sync::OnceLock::new(),
            synced: (Mutex::new(0), std::sync::Condvar::new()),
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

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn emit(&self, action: &str, changes: &[(Key, Action)], message: String) {
        let unix_millis =
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        // No receiver is fine: nobody is watching.
        let _ = self.events.send(Event {
            generation: self.cell.generation(),
            action: action.into(),
            changes: changes.to_vec(),
            message,
            unix_millis,
        });
    }

    /// The config file's part, as running (with what the daemon added: the resolver port).
    pub fn base_config(&self) -> Config {
        self.state.lock().map(|st| st.store.base().clone()).unwrap_or_default()
    }

    /// The data of ConfigMap `namespace/name`, if one is applied.
    pub fn config_map_data(&self, namespace: &str, name: &str) -> Option<std::collections::BTreeMap<String, String>> {
        self.state.lock().ok()?.store.config_map(namespace, name).map(|c| c.data.clone())
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
            s.restore(state.objects, state.manifests);
            Ok(keys)
        })
    }

    /// The services a service-only change touches (none for a change of ConfigMaps only), or
    /// `None` when it touches anything else.
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
                // Builds no table: a change of ConfigMaps only republishes the snapshot (with
                // no service compiled again) under a new generation, so that what reads
                // them sees the change.
                Kind::ConfigMap | Kind::Ingress | Kind::IngressClass | Kind::Secret => {}
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
        // Changes of the node itself (its file, its cluster's nodes) rebuild everything.
        let whole = matches!(action, "reloaded" | "restored" | "nodes");
        let changed = changes.iter().any(|(_, a)| *a != Action::Unchanged) || whole;
        if !changed {
            return Ok(Outcome { generation: self.cell.generation(), changes, warnings, build_micros: 0, scope: "" });
        }
        let generation = self.cell.generation() + 1;
        let touched = if whole { None } else { Controller::touched_services(&st.store, &changes) };
        let result = match (touched, st.services.take()) {
            (Some(touched), Some(mut services)) => {
                let mut undo = Vec::new();
                let mut ids = st.ids.clone();
                let r = self.rebuild_services(st, &mut services, &touched, generation, &mut undo, &mut ids);
                if r.is_err() || dry_run {
                    Controller::undo_services(&mut services, undo);
                    st.services = Some(services);
                    r.map(|t| Rebuilt {
                        tables: t,
                        ports: None,
                        services: None,
                        undo: Vec::new(),
                        ids,
                        replace: None,
                        scope: "services",
                    })
                } else {
                    st.services = Some(services);
                    r.map(|t| Rebuilt {
                        tables: t,
                        ports: None,
                        services: None,
                        undo,
                        ids,
                        replace: None,
                        scope: "services",
                    })
                }
            }
            (None, Some(services)) if !whole && Controller::pods_only(&changes) => {
                let r = self.rebuild_pods(st, &services, &changes, generation);
                st.services = Some(services);
                r
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
        let mut rebuilt = match result {
            Ok(r) => r,
            Err(m) => return rejected(st, m),
        };
        if rebuilt.scope != "full" {
            // Services-only and pods-only builds see only part of what the names come from.
            rebuilt.tables.dns = self.dns_names(st, &rebuilt.tables, generation, &changes);
        }
        let build_micros = t0.elapsed().as_micros() as u64;
        if dry_run {
            st.cache.abandon();
            return Ok(Outcome {
                generation: self.cell.generation(),
                changes,
                warnings,
                build_micros,
                scope: rebuilt.scope,
            });
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
        if let Some(s) = rebuilt.replace {
            st.services = Some(s);
        }
        st.ids = rebuilt.ids;
        let scope = rebuilt.scope;
        let announced_before: Vec<switch_core::addr::Addr> = self.cell.load().services.announced().to_vec();
        let generation = self.cell.publish(rebuilt.tables);
        self.announce_taken_over(&announced_before);
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
        Ok(Outcome { generation, changes, warnings, build_micros, scope })
    }

    /// Announces on the uplink (gratuitous ARP, unsolicited neighbour advertisement) the
    /// LoadBalancer addresses the snapshot just published gives this node and the one before
    /// did not. Live uplinks only; a failure is logged (the pipeline still answers ARP).
    fn announce_taken_over(&self, before: &[switch_core::addr::Addr]) {
        let t = self.cell.load();
        let new = crate::announce::taken_over(before, t.services.announced());
        if new.is_empty() {
            return;
        }
        let Some(iface) = self.uplink_interface() else { return };
        let iface = iface.as_str();
        let frames: Vec<Vec<u8>> = new.iter().map(|ip| crate::announce::frame(*ip, t.node.uplink_mac)).collect();
        match io_backends::sys::send_frames(iface, &frames) {
            Ok(()) => tracing::info!(
                "announced {} on {iface}",
                new.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
            ),
            Err(e) => tracing::warn!("announcing load balancer addresses on {iface}: {e}"),
        }
    }

    /// The interface of the live uplink port (none on captures).
    pub fn uplink_interface(&self) -> Option<String> {
        self.ports
            .iter()
            .find(|p| p.kind == switch_core::snapshot::PortKind::Uplink && p.backend != "pcap")
            .and_then(|p| p.interface.clone())
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
        let objects = st.store.api_objects().map(|o| (o, st.store.manifest(&o.key()).map(|m| &**m)));
        f.save(&st.store.base().node.name, objects, &st.ipam_last)
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
        let ports = self.runtime_ports(st, built.ports)?;
        Ok(Rebuilt {
            tables: built.tables,
            ports: Some(ports),
            services: Some(built.services),
            undo: Vec::new(),
            ids,
            replace: None,
            scope: "full",
        })
    }

    /// The ports a build attached at run time; refused if the config file's differ from those
    /// the daemon started with.
    fn runtime_ports(&self, st: &State, built: Vec<PortSpec>) -> Result<Vec<PortSpec>, Refusal> {
        let attached: BTreeSet<&str> = st.store.attachments().map(|a| a.port.as_str()).collect();
        let fixed: Vec<&PortSpec> = built.iter().filter(|p| !attached.contains(p.name.as_str())).collect();
        if fixed.len() != self.ports.len() || fixed.iter().zip(&self.ports).any(|(a, b)| *a != b) {
            return Err(Refusal::Precondition(
                "the config file's ports differ from the running ones; they change only with a restart \
                 (ports come and go at run time through `podswitchctl port` and the CNI plugin)"
                    .into(),
            ));
        }
        Ok(built.into_iter().filter(|p| attached.contains(p.name.as_str())).collect())
    }

    /// The cluster DNS names after a partial build: compiled again from the whole merged config
    /// when the change touched what they come from (Services, their endpoints, Pods, ports),
    /// otherwise the running ones.
    fn dns_names(
        &self,
        st: &State,
        t: &Tables,
        generation: u64,
        changes: &[(Key, Action)],
    ) -> std::sync::Arc<switch_core::dns::DnsTable> {
        let (dns_ns, dns_name) = build::dns::KUBE_DNS;
        let relevant = changes.iter().any(|(k, a)| {
            *a != Action::Unchanged
                && (matches!(k.kind, Kind::Service | Kind::EndpointSlice | Kind::Endpoints | Kind::Pod | Kind::Port)
                    || (k.kind == Kind::ConfigMap && k.namespace == dns_ns && k.name == dns_name))
        });
        if !relevant {
            return std::sync::Arc::clone(&self.cell.load().dns);
        }
        let (cfg, _) = st.store.config();
        let (table, warnings) = build::dns::table(&cfg, &t.ports, generation);
        for w in warnings {
            tracing::warn!("cluster DNS: {w}");
        }
        std::sync::Arc::new(table)
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
        let live = self.cell.load();
        // The workers that run decide, not the figure the services were first built with.
        let steering = self.workers_running.map_or(services.ctx.steering, |n| n > 1);
        let table = recompile_services(
            &st.store,
            &mut st.cache,
            services,
            touched,
            undo,
            &mut ids.service_ports,
            &live.services,
            steering,
        )?;
        Ok(live.with_services(table, generation))
    }

    /// A change of pods, attachments, namespaces or policies only: everything but the service
    /// table is built from the merged config without services, and of the services only
    /// those whose selectors or EndpointSlices name a changed pod are compiled again (with
    /// the new pods); the rest keep their compiled form, Maglev tables included.
    fn rebuild_pods(
        &self,
        st: &mut State,
        live_services: &LiveServices,
        changes: &[(Key, Action)],
        generation: u64,
    ) -> Result<Rebuilt, Refusal> {
        let changed = Controller::changed_pods(&st.store, changes);
        let touched = st.store.services_of_pods(&changed);
        let (mut cfg, origins) = st.store.config_without_services();
        if let Some(n) = self.workers_running {
            cfg.datapath.workers = n;
        }
        let policies = st.store.policies();
        let scope = Controller::scope_of(&st.store, &cfg, &policies, changes, &changed);
        let mut services = LiveServices { ctx: live_services.ctx.clone(), compiled: live_services.compiled.clone() };
        let live = self.cell.load();
        let steering = self.workers_running.map_or(services.ctx.steering, |n| n > 1);
        let mut ids = st.ids.clone();
        let mut refused: Option<Refusal> = None;
        let (store, cache) = (&st.store, &mut st.cache);
        let mut given = |ctx: &build::services::ServiceContext, sp: &mut Arc<build::ids::Interner<String>>| {
            services.ctx = ctx.clone();
            let mut undo = Vec::new();
            recompile_services(store, cache, &mut services, &touched, &mut undo, sp, &live.services, steering)
                .map(|t| (t, Vec::new()))
                .map_err(|e| {
                    let m = crate::error::FieldError::new(None, "services", e.to_string());
                    refused = Some(e);
                    m
                })
        };
        let built = build::build_with(
            &cfg,
            &self.base_dir,
            generation,
            &mut ids,
            build::ServicesFrom::Given(&mut given),
            &scope,
            Some(&policies),
        );
        let built = match built {
            Ok(b) => b,
            Err(e) => {
                return Err(refused.take().unwrap_or_else(|| {
                    let (what, msg) = origins.describe(&e);
                    Refusal::Invalid(format!("{what}: {msg}"))
                }))
            }
        };
        let ports = self.runtime_ports(st, built.ports)?;
        Ok(Rebuilt {
            tables: built.tables,
            ports: Some(ports),
            services: None,
            undo: Vec::new(),
            ids,
            replace: Some(services),
            scope: "pods",
        })
    }

    /// The pods a change touches, with every label set each had before or has now (a pod
    /// attached by the CNI plugin counts with its attachment's labels and its Pod object's).
    fn changed_pods(store: &Store, changes: &[(Key, Action)]) -> Vec<(String, String, Vec<crate::config::Labels>)> {
        let mut out: Vec<(String, String, Vec<crate::config::Labels>)> = Vec::new();
        let mut add = |ns: &str, name: &str, labels: &crate::config::Labels| match out
            .iter_mut()
            .find(|(n, m, _)| n == ns && m == name)
        {
            Some((_, _, sets)) => sets.push(labels.clone()),
            None => out.push((ns.to_string(), name.to_string(), vec![labels.clone()])),
        };
        for (k, a) in changes {
            if *a == Action::Unchanged {
                continue;
            }
            if k.kind == Kind::Pod {
                // What else gave (or gives) this pod its labels: a file Pod the API object
                // hides or uncovers, and a CNI attachment whose labels the object replaces.
                if let Some(p) = store.base().pods.iter().find(|p| p.namespace == k.namespace && p.name == k.name) {
                    add(&p.namespace, &p.name, &p.labels);
                }
                for a in store.attachments() {
                    if let Some(c) = a.cni.as_ref().filter(|c| c.pod_namespace == k.namespace && c.pod_name == k.name) {
                        add(&c.pod_namespace, &c.pod_name, &c.labels);
                    }
                }
            }
            for o in [store.get(k), store.before(k).flatten()].into_iter().flatten() {
                match o {
                    k8s::Object::Pod(p) => add(&p.namespace, &p.name, &p.labels),
                    k8s::Object::Port(at) => {
                        if let Some(c) = &at.cni {
                            add(&c.pod_namespace, &c.pod_name, &c.labels);
                            let pk =
                                Key { kind: Kind::Pod, namespace: c.pod_namespace.clone(), name: c.pod_name.clone() };
                            if let Some(k8s::Object::Pod(p)) = store.get(&pk) {
                                add(&p.namespace, &p.name, &p.labels);
                            }
                            if let Some(p) = store
                                .base()
                                .pods
                                .iter()
                                .find(|p| p.namespace == c.pod_namespace && p.name == c.pod_name)
                            {
                                add(&p.namespace, &p.name, &p.labels);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        out
    }

    /// What a pods-only change must build again: the local pods it touches (its own pods, and
    /// every local pod selected by a policy it changed or whose peers may pick a pod it
    /// changed) and the policies it changed; the rest is kept from the last build.
    fn scope_of(
        store: &Store,
        cfg: &Config,
        merged_policies: &[&crate::config::PolicyConfig],
        changes: &[(Key, Action)],
        changed: &[(String, String, Vec<crate::config::Labels>)],
    ) -> build::Scope {
        use crate::build::selector;
        let changed_of = |kind: Kind| -> Vec<&Key> {
            changes.iter().filter(|(k, a)| *a != Action::Unchanged && k.kind == kind).map(|(k, _)| k).collect()
        };
        let policy_keys: std::collections::HashSet<(String, String)> =
            changed_of(Kind::NetworkPolicy).into_iter().map(|k| (k.namespace.clone(), k.name.clone())).collect();
        let ns_changed = !changed_of(Kind::Namespace).is_empty();
        let mut ns_labels: std::collections::HashMap<&str, crate::config::Labels> = std::collections::HashMap::new();
        for n in &cfg.namespaces {
            let mut l = n.labels.clone();
            l.insert("kubernetes.io/metadata.name".into(), n.name.clone());
            ns_labels.insert(&n.name, l);
        }
        // The labels of the changed pods' namespaces, once (a namespace without an object has
        // only its name label).
        let changed_ns: std::collections::HashMap<&str, crate::config::Labels> = changed
            .iter()
            .map(|(ns, _, _)| {
                let l = ns_labels
                    .get(ns.as_str())
                    .cloned()
                    .unwrap_or_else(|| [("kubernetes.io/metadata.name".to_string(), ns.to_string())].into());
                (ns.as_str(), l)
            })
            .collect();
        let peer_reaches = |policy_ns: &str, peer: &crate::config::PeerConfig| -> bool {
            if peer.ip_block.is_some() {
                return false;
            }
            if peer.namespace_selector.is_some() && ns_changed {
                return true;
            }
            changed.iter().any(|(ns, _, sets)| {
                let ns_ok = match &peer.namespace_selector {
                    Some(sel) => changed_ns.get(ns.as_str()).is_some_and(|l| selector::matches(sel, l)),
                    None => ns == policy_ns,
                };
                ns_ok && sets.iter().any(|l| peer.pod_selector.as_ref().is_none_or(|sel| selector::matches(sel, l)))
            })
        };
        // Every version of every policy: as merged now, and as the changed ones were.
        let mut policies: Vec<&crate::config::PolicyConfig> = merged_policies.to_vec();
        let old: Vec<crate::config::PolicyConfig> = changes
            .iter()
            .filter(|(k, _)| k.kind == Kind::NetworkPolicy)
            .filter_map(|(k, _)| match store.before(k).flatten() {
                Some(k8s::Object::NetworkPolicy(p)) => Some(p.clone()),
                // Created (or deleted) through the API over a file policy of the same name:
                // the file's version is the one it replaces (or brings back).
                _ => store.base().policies.iter().find(|p| p.namespace == k.namespace && p.name == k.name).cloned(),
            })
            .collect();
        policies.extend(old.iter());
        let local: Vec<&crate::config::PodConfig> = cfg.pods.iter().filter(|p| p.port.is_some()).collect();
        let mut pods: std::collections::HashSet<(String, String)> =
            changed.iter().map(|(ns, n, _)| (ns.clone(), n.clone())).collect();
        for p in policies {
            let named_everyone = !changed.is_empty()
                && p.egress.iter().any(|r| {
                    r.to.is_empty() && r.ports.iter().any(|x| matches!(x.port, Some(crate::config::PortRef::Name(_))))
                });
            let reaches = policy_keys.contains(&(p.namespace.clone(), p.name.clone()))
                || named_everyone
                || p.ingress
                    .iter()
                    .flat_map(|r| &r.from)
                    .chain(p.egress.iter().flat_map(|r| &r.to))
                    .any(|peer| peer_reaches(&p.namespace, peer));
            if reaches {
                for lp in &local {
                    if lp.namespace == p.namespace && selector::matches(&p.pod_selector, &lp.labels) {
                        pods.insert((lp.namespace.clone(), lp.name.clone()));
                    }
                }
            }
        }
        build::Scope { pods: Some(pods), policies: Some(policy_keys) }
    }

    /// Whether a change may take [`Controller::rebuild_pods`]: it touches only pods,
    /// attachments, namespaces and policies (and ConfigMaps, which build nothing).
    fn pods_only(changes: &[(Key, Action)]) -> bool {
        changes.iter().filter(|(_, a)| *a != Action::Unchanged).all(|(k, _)| {
            matches!(k.kind, Kind::Pod | Kind::Port | Kind::Namespace | Kind::NetworkPolicy | Kind::ConfigMap)
                || k.kind.kept()
        })
    }

    /// Reads `manifests` through an admission step (the allocators).
    fn parse_admitted(
        node: &str,
        manifests: &[Manifest],
        validate: Validation,
        admit: &mut dyn k8s::Admit,
    ) -> Result<k8s::Parsed, Refusal> {
        let mut all = k8s::Parsed::default();
        for m in manifests {
            let format = Format::parse(&m.format).ok_or_else(|| {
                Refusal::Invalid(format!("{}: format '{}' is not yaml, json or toml", m.source, m.format))
            })?;
            let p = k8s::parse_admitted(format, &m.source, &m.content, node, validate, admit)
                .map_err(|e| Refusal::Invalid(e.to_string()))?;
            all.objects.extend(p.objects);
            all.warnings.extend(p.warnings);
            all.skipped.extend(p.skipped);
            all.manifests.extend(p.manifests);
        }
        Ok(all)
    }

    /// Applies every object of `manifests`, all or none, refusing fields the Kubernetes
    /// schema does not know (kubectl's `--validate=strict`).
    pub fn apply(&self, manifests: &[Manifest], dry_run: bool) -> Result<Outcome, Refusal> {
        self.apply_validated(manifests, dry_run, Validation::Strict)
    }

    /// [`Controller::apply`] with the given validation of unknown fields.
    pub fn apply_validated(
        &self,
        manifests: &[Manifest],
        dry_run: bool,
        validate: Validation,
    ) -> Result<Outcome, Refusal> {
        let mut st = self.lock()?;
        // Read under the lock: the allocators see every Service stored, and nothing can take
        // a value between their choice and the commit.
        let node = st.store.base().node.name.clone();
        let mut admission = crate::alloc::Admission::new(&st.store).map_err(Refusal::Invalid)?;
        let k8s::Parsed { objects, warnings, skipped, manifests: forms } =
            Self::parse_admitted(&node, manifests, validate, &mut admission)?;
        if objects.is_empty() {
            let mut m = String::from("no objects in the request");
            if !skipped.is_empty() {
                m.push_str(&format!("; every document was skipped:\n  {}", skipped.join("\n  ")));
            }
            return Err(Refusal::Invalid(m));
        }
        if let Some(source) = self.source.get().cloned() {
            let before = admission.before();
            let held = std::mem::take(&mut admission.held);
            drop(admission);
            return self.apply_to_source(st, &*source, objects, forms, warnings, before, held, dry_run);
        }
        drop(admission);
        self.change_in(&mut st, "applied", warnings, dry_run, |s| s.apply_manifests(objects, forms))
    }

    /// Deletes the objects named by `keys` and by `manifests`, all or none.
    pub fn delete(&self, keys: &[ObjectRef], manifests: &[Manifest], dry_run: bool) -> Result<Outcome, Refusal> {
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
        let k8s::Parsed { objects, warnings, .. } =
            Self::parse_admitted(&self.node_name(), manifests, Validation::Ignore, &mut k8s::NamesOnly)?;
        all.extend(objects.iter().map(k8s::Object::key));
        if all.is_empty() {
            return Err(Refusal::Invalid("nothing to delete".into()));
        }
        if let Some(source) = self.source.get().cloned() {
            return self.delete_from_source(&*source, all, warnings, dry_run);
        }
        self.change("deleted", warnings, dry_run, |s| s.delete(&all))
    }

    /// Adds or replaces a route.
    pub fn add_route(&self, route: RouteConfig) -> Result<Outcome, Refusal> {
        self.change("applied", Vec::new(), false, |s| s.apply(vec![k8s::Object::Route(route)]))
    }

    /// Deletes the route of `prefix` (added through the API).
    pub fn delete_route(&self, prefix: &str) -> Result<Outcome, Refusal> {
        let key = Key { kind: Kind::Route, namespace: String::new(), name: prefix.to_string() };
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
            let cluster = self.source.get().is_some();
            self.change("reloaded", Vec::new(), false, |s| {
                let mut base = base;
                // The daemon made the resolver port; the file does not name it.
                crate::resolver_port::carry(s.base(), &mut base);
                if cluster {
                    // Leased from the cluster, not from the file.
                    if base.node.pod_cidrs.is_empty() {
                        base.node.pod_cidrs = s.base().node.pod_cidrs.clone();
                    }
                    if base.cluster.is_none() {
                        base.cluster = s.base().cluster.clone();
                    }
                }
                s.set_base(base);
                Ok(Vec::new())
            })
        })();
        if let Err(e) = &result {
            self.emit("reload_rejected", &[], e.to_string());
        }
        result
    }

    /// The health check node ports to serve: (port, namespace, name) of every LoadBalancer
    /// Service with `externalTrafficPolicy: Local` and a `healthCheckNodePort`.
    pub fn health_check_ports(&self) -> Vec<(u16, String, String)> {
        let Ok(st) = self.lock() else { return Vec::new() };
        st.store
            .services()
            .filter(|s| {
                s.service_type == "LoadBalancer" && s.external_traffic_policy == "Local" && !s.proxied_elsewhere()
            })
            .filter_map(|s| Some((s.health_check_node_port?, s.namespace.clone(), s.name.clone())))
            .collect()
    }

    /// The merged config the live snapshot is built from (file and API objects).
    pub fn config(&self) -> Result<Config, Refusal> {
        Ok(self.lock()?.store.config().0)
    }

    /// Objects of one kind: [`Controller::list_selected`] without a label selector.
    pub fn list(&self, kind: &str, namespace: &str, name: &str) -> Result<Listing, Refusal> {
        self.list_selected(kind, namespace, name, "")
    }

    /// Counters summed over the workers.
    pub fn counters(&self) -> Counters {
        let t = self.cell.load();
        let mut ports: Vec<PortCount> = t
            .ports
            .iter()
            .map(|p| PortCount {
                name: p.name.clone(),
                kind: format!("{:?}", p.kind).to_lowercase(),
                ..Default::default()
            })
            .collect();
        let mut drops = std::collections::HashMap::new();
        let mut events = std::collections::HashMap::new();
        let mut sizes = TableSizes {
            endpoints: t.endpoints.len() as u64,
            routes: t.routes.len() as u64,
            service_ports: t.services.port_count() as u64,
            frontends: t.services.frontend_count() as u64,
            policy_classifiers: t.policy.len() as u64,
            policy_rules: t.policy.rule_count() as u64,
            ..Default::default()
        };
        // What ports removed at run time counted, as one row, so that totals over the rows
        // stay whole.
        let mut removed = PortCount { name: REMOVED_PORTS.into(), kind: REMOVED_PORTS.into(), ..Default::default() };
        let add = |p: &mut PortCount, s: &switch_core::pipeline::PortStats, drops: &mut HashMap<String, u64>| {
            p.rx_packets += s.rx_packets;
            p.rx_bytes += s.rx_bytes;
            p.tx_packets += s.tx_packets;
            p.tx_bytes += s.tx_bytes;
            for reason in DropReason::ALL {
                let n = s.drops[reason.index()];
                if n > 0 {
                    *p.drops.entry(reason.name().into()).or_insert(0) += n;
                    *drops.entry(reason.name().to_string()).or_insert(0) += n;
                }
            }
        };
        for r in &self.reports {
            let Ok(g) = r.lock() else { continue };
            let Some(r) = g.as_ref() else { continue };
            for (i, p) in ports.iter_mut().enumerate() {
                let Some(s) = r.stats.ports.get(i) else { continue };
                add(p, s, &mut drops);
                if p.io.is_empty() {
                    p.io = r.port_modes.get(i).cloned().unwrap_or_default();
                }
            }
            add(&mut removed, &r.stats.removed, &mut drops);
            for (k, v) in r.events() {
                *events.entry(k.to_string()).or_insert(0) += v;
            }
            sizes.conntrack_entries += r.conntrack_entries as u64;
            sizes.conntrack_capacity += r.conntrack_capacity as u64;
            sizes.conntrack_evicted += r.conntrack_evicted;
            sizes.pool_free += r.pool_free as u64;
        }
        // Ids not in use (a pod port detached at run time) have no name and nothing to show.
        ports.retain(|p| !p.name.is_empty());
        if removed.rx_packets + removed.tx_packets + removed.drops.values().sum::<u64>() > 0 {
            ports.push(removed);
        }
        Counters {
            generation: t.generation,
            ports,
            drops,
            events,
            tables: sizes,
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

    /// The workers' flows matching `f`, each worker's table walked in chunks of
    /// [`WALK_SLOTS`] slots, one request each.
    pub fn conntrack_list(&self, filter: &FlowFilter, limit: usize) -> Result<FlowList, Refusal> {
        let limit = if limit == 0 { 10_000 } else { limit };
        let mut out = FlowList::default();
        for tx in self.senders()? {
            let mut from = Some(0);
            while let Some(at) = from {
                let (rtx, rrx) = mpsc::channel();
                let room = limit.saturating_sub(out.flows.len());
                tx.send(WorkerCmd::ListFlows { filter: filter.clone(), limit: room, from: at, reply: rtx })?;
                let (flows, more, next) = rrx
                    .recv_timeout(Duration::from_secs(2))
                    .map_err(|_| Refusal::Unavailable("a worker did not answer within 2 s".into()))?;
                out.flows.extend(flows);
                out.truncated += more;
                from = next;
            }
        }
        Ok(out)
    }

    /// Removes the workers' flows matching `f`, in chunks as [`Controller::conntrack_list`].
    pub fn conntrack_flush(&self, filter: &FlowFilter) -> Result<u64, Refusal> {
        let mut flushed = 0;
        for tx in self.senders()? {
            let mut from = Some(0);
            while let Some(at) = from {
                let (rtx, rrx) = mpsc::channel();
                tx.send(WorkerCmd::Flush { filter: filter.clone(), from: at, reply: rtx })?;
                let (n, next) = rrx
                    .recv_timeout(Duration::from_secs(2))
                    .map_err(|_| Refusal::Unavailable("a worker did not answer within 2 s".into()))?;
                flushed += n;
                from = next;
            }
        }
        tracing::info!(flushed, "conntrack flushed");
        self.emit("conntrack_flushed", &[], format!("{flushed} flow(s) flushed"));
        Ok(flushed)
    }

    /// Traces a synthesized packet through the live snapshot.
    pub fn trace(&self, spec: &crate::trace::TraceSpec) -> Result<TraceResult, Refusal> {
        let t = self.cell.load_full();
        let st = self.lock()?;
        // The merged config is made only if a denial has to name its policies.
        let selecting =
            |ns: &str, name: &str, egress: bool| crate::trace::selecting(&st.store.config().0, ns, name, egress);
        let workers = self.workers_running.unwrap_or(1);
        let r = crate::trace::run(&t, &selecting, spec, workers).map_err(Refusal::Invalid)?;
        Ok(TraceResult {
            generation: t.generation,
            steps: r.steps,
            verdict: match (r.forwarded, r.refused, r.answered) {
                (_, _, true) => "answered",
                (_, true, _) => "refused",
                (true, false, false) => "forwarded",
                (false, false, false) => "dropped",
            },
            detail: r.detail,
            rule: r.rule,
        })
    }
}

/// Compiles the `touched` services again into `services` (from `store`, with the pods of
/// `services.ctx`), recording what each replaces in `undo`, and assembles the service table;
/// the flow-owner index of several workers is patched from `prev` with the touched services
/// swapped.
#[allow(clippy::too_many_arguments)]
fn recompile_services(
    store: &Store,
    cache: &mut switch_core::service::MaglevCache,
    services: &mut LiveServices,
    touched: &BTreeSet<(String, String)>,
    undo: &mut Undo,
    ids: &mut Arc<build::ids::Interner<String>>,
    prev: &switch_core::service::ServiceTable,
    steering: bool,
) -> Result<switch_core::service::ServiceTable, Refusal> {
    let start = undo.len();
    let ctx = &services.ctx;
    let has_pod = |ns: &str, p: &str| ctx.pod_keys.contains(&(ns.to_string(), p.to_string()));
    for (ns, name) in touched {
        let key = (ns.clone(), name.clone());
        match store.merged_service(ns, name, &has_pod) {
            Some(s) => {
                let c = build::services::compile(0, &s, ctx, cache).map_err(|e| {
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
    let steer = if !steering {
        Steer::Off
    } else {
        // The previous table's index with this change's services swapped: the undo list holds
        // them as they were, the compiled map as they are now.
        let changed = &undo[start..];
        Steer::Patch {
            prev,
            removed: changed.iter().filter_map(|(_, old)| old.as_deref().map(CompiledService::parts)).collect(),
            added: changed.iter().filter_map(|(k, _)| services.compiled.get(k).map(|c| c.parts())).collect(),
        }
    };
    // The ports the touched services had: their ids go if the services no longer have them.
    let gone: Vec<&str> = undo[start..]
        .iter()
        .filter_map(|(_, old)| old.as_deref())
        .flat_map(|c| c.ports.iter().map(|p| p.spec.name.as_str()))
        .collect();
    let still: std::collections::HashSet<&str> = touched
        .iter()
        .filter_map(|k| services.compiled.get(k))
        .flat_map(|c| c.ports.iter().map(|p| p.spec.name.as_str()))
        .collect();
    let (table, _) = build::services::assemble(&services.compiled, steer, ids, build::services::Freed::Of(gone, still))
        .map_err(|e| Refusal::Invalid(format!("services: {e}")))?;
    Ok(table)
}

/// The slots of one walk step from `from`, and where the next starts.
fn walk_chunk(w: &switch_core::pipeline::Worker, from: usize) -> (std::ops::Range<usize>, Option<usize>) {
    let cap = w.conntrack().capacity();
    let end = from.saturating_add(WALK_SLOTS).min(cap);
    (from..end, (end < cap).then_some(end))
}

/// Answers one worker command; called by the worker between batches.
pub fn serve_worker_cmd(cmd: WorkerCmd, w: &mut switch_core::pipeline::Worker, t: &Tables, now: u64, index: u16) {
    match cmd {
        WorkerCmd::ListFlows { filter, limit, from, reply } => {
            let (range, next) = walk_chunk(w, from);
            let mut flows = Vec::new();
            let mut more = 0u64;
            for (k, e, expires) in w.conntrack().flows_in(now, range) {
                if !filter.matches(k, e) {
                    continue;
                }
                if flows.len() < limit {
                    flows.push(flow_info(t, k, e, expires.saturating_sub(now), index));
                } else {
                    more += 1;
                }
            }
            let _ = reply.send((flows, more, next));
        }
        WorkerCmd::Flush { filter, from, reply } => {
            let (range, next) = walk_chunk(w, from);
            let n = w.conntrack_mut().flush_matching_in(now, range, |k, e| filter.matches(k, e));
            let _ = reply.send((n as u64, next));
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
