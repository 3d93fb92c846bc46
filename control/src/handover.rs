//! Connections kept across restarts: the workers' conntrack (both directions of every flow
//! with its translation, so source-NAT ports too) and ClientIP affinity tables, handed from
//! one daemon process to the next through a file in the state directory.
//!
//! - **Checkpoints.** Each worker walks its tables a slice per round of its loop (never more
//!   than [`SLICE`] slots at a time, so a large table costs no pause) and, once a walk is
//!   done, sends the records to the main thread, at most once per checkpoint interval. The
//!   main thread writes them, every worker's latest, to `DIR/flows.state` (a new file renamed
//!   over the old one, mode 0600). After `kill -9` the next process finds the last
//!   checkpoint: flows younger than the interval are not in it.
//! - **Stop.** On SIGTERM or SIGINT each worker exports its whole tables after its last batch
//!   and the main thread writes them after joining the workers: nothing is lost between the
//!   last packet and the file.
//! - **Start.** Before any worker runs, the flows are put back into the table of the worker
//!   that owns them under this process's worker count and tables (`pipeline/owner.rs`), with
//!   the time they had left less the time the file was waiting. Rule ids are mapped by rule
//!   name, the service by the flow's frontend; every restored flow is checked again on its
//!   first packet as after a table change (a UDP flow whose backend left picks another).
//!
//! The file has a versioned layout ([`VERSION`]): a file of another version or layout, a
//! truncated or corrupted one (a checksum covers it) is set aside with a log line naming
//! why, and its flows start afresh, never half-read. So is a file written before the last
//! reboot (the header holds the kernel's boot id; ages are counted on `CLOCK_BOOTTIME`, which
//! no one sets): after a reboot every connection is new, and an old translation must not
//! catch a new connection that reuses its ports. A restored file is renamed
//! (`flows.state.restored`), so a process that dies before its first checkpoint does not hand
//! the same flows on again. Flows that cannot be placed are counted by reason ([`Restored`]).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use switch_core::addr::Addr;
use switch_core::conntrack::{FlowImage, FlowKey, ImportError, TcpState, Tuple};
use switch_core::pipeline::Worker;
use switch_core::policy::RuleId;
use switch_core::service::{AffinityEntry, AffinityImage, AffinityKey};
use switch_core::snapshot::Tables;

/// File name in the state directory.
pub const FILE: &str = "flows.state";
/// First bytes of the file.
pub const MAGIC: [u8; 8] = *b"PSWFLOWS";
/// Layout version: bumped whenever a record's fields change. A reader takes its own version
/// only; an older one would be migrated here.
pub const VERSION: u32 = 1;
/// Bytes of one flow record (version 1).
const FLOW_RECORD: usize = 136;
/// Bytes of one affinity record (version 1).
const AFFINITY_RECORD: usize = 48;
/// Header: magic, version, flow and affinity record sizes, boot id, written-at (ns of
/// `CLOCK_BOOTTIME`), number of names, flows and affinity entries.
const HEADER: usize = 8 + 4 + 2 + 2 + 36 + 8 + 4 + 8 + 8;
/// Conntrack slots a worker walks per step (a step every 64 rounds of its loop, or after a
/// sleep): about 2,000 live flows at most, each with one random read of its peer entry.
pub const SLICE: usize = 4 * 1024;
/// The longest an affinity entry may have left (Kubernetes' limit for
/// `sessionAffinityConfig.clientIP.timeoutSeconds`, 86,400 s).
const MAX_AFFINITY_NS: u64 = 86_400 * 1_000_000_000;

/// The time of this boot: its id and `CLOCK_BOOTTIME` now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    pub boot_id: [u8; 36],
    pub now_ns: u64,
}

impl Clock {
    pub fn now() -> std::io::Result<Clock> {
        Ok(Clock { boot_id: io_backends::sys::boot_id()?, now_ns: io_backends::sys::boot_time_ns()? })
    }
}

fn boot_ns() -> u64 {
    io_backends::sys::boot_time_ns().unwrap_or(0)
}

/// One worker's tables at one moment.
#[derive(Debug, Clone)]
pub struct WorkerImage {
    pub worker: u16,
    pub flows: Vec<FlowImage>,
    pub affinity: Vec<AffinityImage>,
    /// When the walk ended (`CLOCK_BOOTTIME` ns; remaining lifetimes count from here).
    pub taken: u64,
}

/// A flow read from the file, with its rules by name (ids are per process).
#[derive(Debug, Clone, PartialEq)]
pub struct SavedFlow {
    /// The record; its `service`, `egress_rule` and `ingress_rule` are `None`.
    pub image: FlowImage,
    /// The flow was sent to a Service (its frontend names it again).
    pub service: bool,
    pub egress_rule: Option<String>,
    pub ingress_rule: Option<String>,
}

/// What a file held, with lifetimes already reduced by the time since it was written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Saved {
    pub flows: Vec<SavedFlow>,
    pub affinity: Vec<AffinityImage>,
    /// How long ago the file was written.
    pub age: Duration,
}

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{file}: {what}")]
    Format { file: PathBuf, what: String },
}

/// How a restore went: flows put back, and those left out, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restored {
    pub flows: usize,
    pub affinity: usize,
    /// Their time ran out while the file waited.
    pub expired: usize,
    /// The two directions now belong to different workers (the worker count changed).
    pub split: usize,
    /// A UDP flow whose Service is gone (it would pick a backend afresh anyway).
    pub service_gone: usize,
    /// Their sets were full of answered flows.
    pub no_room: usize,
}

/// The flow state file of a state directory.
#[derive(Debug, Clone)]
pub struct FlowStateFile {
    path: PathBuf,
}

impl FlowStateFile {
    pub fn in_dir(dir: &Path) -> FlowStateFile {
        FlowStateFile { path: dir.join(FILE) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `images` (rule ids named from `t`) to a new file renamed over the old one.
    /// Returns the bytes written.
    pub fn write(&self, images: &[&WorkerImage], t: &Tables) -> Result<usize, HandoverError> {
        let clock = Clock::now().map_err(|e| HandoverError::Io(self.path.clone(), e))?;
        let bytes = encode(images, t, clock);
        let tmp = self.path.with_extension("tmp");
        let io = |e| HandoverError::Io(self.path.clone(), e);
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut f = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io)?
        };
        f.write_all(&bytes).map_err(io)?;
        drop(f);
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        Ok(bytes.len())
    }

    /// Reads the file: `Ok(None)` when there is none.
    pub fn load(&self) -> Result<Option<Saved>, HandoverError> {
        let clock = Clock::now().map_err(|e| HandoverError::Io(self.path.clone(), e))?;
        match std::fs::read(&self.path) {
            Ok(b) => {
                decode(&b, clock).map(Some).map_err(|what| HandoverError::Format { file: self.path.clone(), what })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(HandoverError::Io(self.path.clone(), e)),
        }
    }

    /// Moves an unreadable file aside (to `flows.state.bad`), so that the next checkpoint
    /// does not hide why it was not used.
    pub fn set_aside(&self) {
        let _ = std::fs::rename(&self.path, self.path.with_extension("state.bad"));
    }

    /// Moves a restored file aside (to `flows.state.restored`): a process that stops before
    /// its first checkpoint must not hand the same flows on again.
    pub fn consumed(&self) {
        let _ = std::fs::rename(&self.path, self.path.with_extension("state.restored"));
    }
}

fn put_addr(out: &mut Vec<u8>, a: Addr) {
    out.extend_from_slice(&a.bits().to_le_bytes());
}

fn put_tuple(out: &mut Vec<u8>, t: &Tuple) {
    put_addr(out, t.src);
    put_addr(out, t.dst);
    out.extend_from_slice(&t.sport.to_le_bytes());
    out.extend_from_slice(&t.dport.to_le_bytes());
}

/// FNV-1a over `b`: the file's checksum (not a defence against tampering, which the state
/// directory's permissions are; a check against truncation and bit rot).
fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3))
}

/// The file's bytes: header, names, flow records, affinity records, checksum (all
/// little-endian).
pub fn encode(images: &[&WorkerImage], t: &Tables, clock: Clock) -> Vec<u8> {
    let mut names: Vec<String> = Vec::new();
    let mut index: HashMap<RuleId, u32> = HashMap::new();
    let mut name_of = |r: Option<RuleId>| -> u32 {
        match r {
            None => 0,
            Some(r) => *index.entry(r).or_insert_with(|| {
                names.push(t.policy.rule_name(r).to_string());
                names.len() as u32
            }),
        }
    };
    let nflows: usize = images.iter().map(|i| i.flows.len()).sum();
    let naff: usize = images.iter().map(|i| i.affinity.len()).sum();
    let mut body = Vec::with_capacity(nflows * FLOW_RECORD + naff * AFFINITY_RECORD);
    let waited = |i: &WorkerImage| clock.now_ns.saturating_sub(i.taken);
    for img in images {
        let w = waited(img);
        for f in &img.flows {
            let at = body.len();
            body.extend_from_slice(&[
                f.key.proto,
                f.state.code(),
                u8::from(f.replied),
                f.fins,
                u8::from(f.service.is_some()),
                0,
                0,
                0,
            ]);
            put_tuple(&mut body, &f.key.t);
            put_tuple(&mut body, &f.xlate);
            body.extend_from_slice(&name_of(f.egress_rule).to_le_bytes());
            body.extend_from_slice(&name_of(f.ingress_rule).to_le_bytes());
            for v in
                [f.packets[0], f.packets[1], f.bytes[0], f.bytes[1], f.age_ns + w, f.remaining_ns.saturating_sub(w)]
            {
                body.extend_from_slice(&v.to_le_bytes());
            }
            debug_assert_eq!(body.len() - at, FLOW_RECORD);
        }
    }
    for img in images {
        let w = waited(img);
        for a in &img.affinity {
            body.extend_from_slice(&a.key.group.to_le_bytes());
            put_addr(&mut body, a.key.client);
            put_addr(&mut body, a.entry.addr);
            body.extend_from_slice(&a.remaining_ns.saturating_sub(w).to_le_bytes());
        }
    }
    let mut out = Vec::with_capacity(HEADER + body.len() + 64 * names.len() + 8);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(FLOW_RECORD as u16).to_le_bytes());
    out.extend_from_slice(&(AFFINITY_RECORD as u16).to_le_bytes());
    out.extend_from_slice(&clock.boot_id);
    out.extend_from_slice(&clock.now_ns.to_le_bytes());
    out.extend_from_slice(&(names.len() as u32).to_le_bytes());
    out.extend_from_slice(&(nflows as u64).to_le_bytes());
    out.extend_from_slice(&(naff as u64).to_le_bytes());
    for n in &names {
        let b = &n.as_bytes()[..n.len().min(usize::from(u16::MAX))];
        out.extend_from_slice(&(b.len() as u16).to_le_bytes());
        out.extend_from_slice(b);
    }
    out.extend_from_slice(&body);
    let sum = fnv(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// A reader over the file's bytes that names what it was reading when they ran out.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let s = self.b.get(self.at..self.at + n).ok_or_else(|| format!("truncated at byte {} ({what})", self.at))?;
        self.at += n;
        Ok(s)
    }
    fn u16(&mut self, what: &str) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2, what)?.try_into().unwrap_or_default()))
    }
    fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap_or_default()))
    }
    fn u64(&mut self, what: &str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().unwrap_or_default()))
    }
    fn addr(&mut self, what: &str) -> Result<Addr, String> {
        Ok(Addr::from_bits(u128::from_le_bytes(self.take(16, what)?.try_into().unwrap_or_default())))
    }
    fn tuple(&mut self, what: &str) -> Result<Tuple, String> {
        Ok(Tuple { src: self.addr(what)?, dst: self.addr(what)?, sport: self.u16(what)?, dport: self.u16(what)? })
    }
}

/// Reads a file's bytes (see [`encode`]); the error says what is wrong and where.
pub fn decode(b: &[u8], clock: Clock) -> Result<Saved, String> {
    if b.len() < HEADER + 8 || b[..8] != MAGIC {
        return Err("not a podswitch flow state file (magic)".into());
    }
    let (data, sum) = b.split_at(b.len() - 8);
    let mut r = Reader { b: data, at: 8 };
    let version = r.u32("version")?;
    let (flow_len, aff_len) = (usize::from(r.u16("record size")?), usize::from(r.u16("record size")?));
    if version != VERSION || flow_len != FLOW_RECORD || aff_len != AFFINITY_RECORD {
        return Err(format!(
            "layout version {version} (records of {flow_len} and {aff_len} bytes); this podswitchd reads version \
             {VERSION} ({FLOW_RECORD} and {AFFINITY_RECORD} bytes)"
        ));
    }
    if u64::from_le_bytes(sum.try_into().unwrap_or_default()) != fnv(data) {
        return Err("checksum mismatch (truncated or corrupted)".into());
    }
    let boot = r.take(36, "boot id")?;
    if boot != clock.boot_id {
        return Err(format!(
            "written before the last reboot (boot id {}, now {})",
            String::from_utf8_lossy(boot),
            String::from_utf8_lossy(&clock.boot_id)
        ));
    }
    let written = r.u64("written at")?;
    let (nnames, nflows, naff) = (r.u32("names")?, r.u64("flows")?, r.u64("affinity entries")?);
    let waited = clock.now_ns.saturating_sub(written);
    let age = Duration::from_nanos(waited);
    let mut names = Vec::new();
    for i in 0..nnames {
        let len = usize::from(r.u16("name length")?);
        let s = r.take(len, "name")?;
        names.push(String::from_utf8(s.to_vec()).map_err(|_| format!("name {i} is not UTF-8"))?);
    }
    let rest = data.len() - r.at;
    let want = (nflows as u128) * FLOW_RECORD as u128 + (naff as u128) * AFFINITY_RECORD as u128;
    if want != rest as u128 {
        return Err(format!("{nflows} flows and {naff} affinity entries need {want} bytes, the file has {rest}"));
    }
    let name = |i: u32, n: u64| -> Result<Option<String>, String> {
        match i {
            0 => Ok(None),
            i => names
                .get(i as usize - 1)
                .cloned()
                .map(Some)
                .ok_or_else(|| format!("flow {n}: rule name {i} of {nnames}")),
        }
    };
    let mut flows = Vec::with_capacity(nflows as usize);
    for n in 0..nflows {
        let h = r.take(8, "flow")?;
        let state = TcpState::from_code(h[1]).ok_or_else(|| format!("flow {n}: TCP state code {}", h[1]))?;
        let key = FlowKey { t: r.tuple("flow")?, proto: h[0] };
        let xlate = r.tuple("flow")?;
        let (eg, ing) = (r.u32("flow")?, r.u32("flow")?);
        let mut v = [0u64; 6];
        for x in &mut v {
            *x = r.u64("flow")?;
        }
        flows.push(SavedFlow {
            image: FlowImage {
                key,
                xlate,
                state,
                replied: h[2] != 0,
                fins: h[3] & 3,
                service: None,
                egress_rule: None,
                ingress_rule: None,
                packets: [v[0], v[1]],
                bytes: [v[2], v[3]],
                age_ns: v[4].saturating_add(waited),
                remaining_ns: v[5].saturating_sub(waited),
            },
            service: h[4] != 0,
            egress_rule: name(eg, n)?,
            ingress_rule: name(ing, n)?,
        });
    }
    let mut affinity = Vec::with_capacity(naff as usize);
    for _ in 0..naff {
        let group = r.u64("affinity")?;
        let (client, addr) = (r.addr("affinity")?, r.addr("affinity")?);
        let remaining_ns = r.u64("affinity")?.saturating_sub(waited).min(MAX_AFFINITY_NS);
        affinity.push(AffinityImage {
            key: AffinityKey { group, client },
            entry: AffinityEntry { addr },
            remaining_ns,
        });
    }
    Ok(Saved { flows, affinity, age })
}

/// What one worker takes from a file: its flows (rules and service already mapped) and the
/// affinity entries.
#[derive(Debug, Clone, Default)]
pub struct WorkerPlan {
    pub flows: Vec<FlowImage>,
    pub affinity: Vec<AffinityImage>,
    /// The generation restored flows carry: one the tables do not have, so that each is
    /// checked again on its first packet as after a table change.
    pub generation: u32,
}

impl WorkerPlan {
    /// Puts the flows and entries into `w`'s tables at its time `now`; counts what was
    /// placed and what was not.
    pub fn apply(&self, w: &mut Worker, now: u64) -> Restored {
        let mut r = Restored::default();
        for img in &self.flows {
            match w.conntrack_mut().import(img, self.generation, now) {
                Ok(_) => r.flows += 1,
                Err(ImportError::Expired) => r.expired += 1,
                Err(ImportError::NoRoom) => r.no_room += 1,
            }
        }
        for a in &self.affinity {
            w.affinity_mut().import(a, now);
        }
        r.affinity = self.affinity.len();
        r
    }
}

/// Decides which of `count` workers takes each saved flow under `t` (the worker that owns it,
/// `pipeline/owner.rs`), mapping rule ids by name and the service by the flow's frontend.
/// Returns a plan per worker and what was left out (`flows` counts the flows planned).
pub fn plan(saved: &Saved, t: &Tables, count: u16) -> (Vec<WorkerPlan>, Restored) {
    // Freed ids are named "" (and unknown ones "?"): never a target.
    let rules: HashMap<&str, RuleId> = t
        .policy
        .rule_names()
        .iter()
        .enumerate()
        .filter(|(_, n)| !n.is_empty() && n.as_str() != "?")
        .map(|(i, n)| (n.as_str(), RuleId(i as u32)))
        .collect();
    let generation = (t.generation as u32).wrapping_sub(1);
    // Affinity is looked up by the worker that owns the client's flows to the service:
    // every worker gets the entries (the table is a preference, small, and forgets).
    let base = WorkerPlan { flows: Vec::new(), affinity: saved.affinity.clone(), generation };
    let mut plans = vec![base; usize::from(count.max(1))];
    let mut r = Restored { affinity: saved.affinity.len(), ..Restored::default() };
    for f in &saved.flows {
        let mut img = f.image;
        if img.remaining_ns == 0 {
            r.expired += 1;
            continue;
        }
        if f.service {
            img.service = t.services.lookup(img.key.t.dst, img.key.t.dport, img.key.proto).map(|fe| fe.target);
            if img.service.is_none() && img.key.proto == switch_core::wire::proto::UDP {
                r.service_gone += 1;
                continue;
            }
        }
        let owner = switch_core::pipeline::owner::owner_of(t, img.key.t, img.key.proto, count);
        if owner != switch_core::pipeline::owner::owner_of(t, img.xlate.reversed(), img.key.proto, count) {
            r.split += 1;
            continue;
        }
        img.egress_rule = f.egress_rule.as_deref().and_then(|n| rules.get(n).copied());
        img.ingress_rule = f.ingress_rule.as_deref().and_then(|n| rules.get(n).copied());
        if let Some(p) = plans.get_mut(usize::from(owner)) {
            p.flows.push(img);
            r.flows += 1;
        }
    }
    (plans, r)
}

/// One worker's side of the checkpoints: walks its tables [`SLICE`] slots at a time and
/// offers each finished walk to the main thread. The channel is bounded: a walk the main
/// thread has no room for (it is writing, or stalled) is dropped, and the next one offered.
#[derive(Debug)]
pub struct Checkpoint {
    tx: std::sync::mpsc::SyncSender<WorkerImage>,
    worker: u16,
    interval: Option<Duration>,
    next: usize,
    started: Option<Instant>,
    flows: Vec<FlowImage>,
}

impl Checkpoint {
    /// `interval`: time between the starts of two walks (`None`: only at stop).
    pub fn new(tx: std::sync::mpsc::SyncSender<WorkerImage>, worker: u16, interval: Option<Duration>) -> Checkpoint {
        Checkpoint { tx, worker, interval, next: 0, started: None, flows: Vec::new() }
    }

    /// Called between batches: walks the next slice when a walk is due or under way.
    pub fn step(&mut self, w: &Worker, now: u64) {
        let Some(interval) = self.interval else { return };
        if self.next == 0 {
            if self.started.is_some_and(|s| s.elapsed() < interval) {
                return;
            }
            self.started = Some(Instant::now());
        }
        let ct = w.conntrack();
        let end = (self.next + SLICE).min(ct.capacity());
        ct.export_range(now, self.next..end, &mut self.flows);
        self.next = end;
        if end >= ct.capacity() {
            self.next = 0;
            let room = self.flows.len();
            let flows = std::mem::replace(&mut self.flows, Vec::with_capacity(room));
            let _ = self.tx.try_send(self.image(w, flows, now));
        }
    }

    /// The whole tables at once, after the worker's last batch: the image the main thread
    /// writes at stop (returned through the worker thread's join, never dropped).
    pub fn finish(mut self, w: &Worker, now: u64) -> WorkerImage {
        self.flows.clear();
        w.conntrack().export_range(now, 0..w.conntrack().capacity(), &mut self.flows);
        let flows = std::mem::take(&mut self.flows);
        self.image(w, flows, now)
    }

    fn image(&self, w: &Worker, flows: Vec<FlowImage>, now: u64) -> WorkerImage {
        let mut affinity = Vec::new();
        w.affinity().export(now, &mut affinity);
        WorkerImage { worker: self.worker, flows, affinity, taken: boot_ns() }
    }
}

/// The channel of `workers` workers' walks (two in flight per worker at most).
pub fn channel(workers: usize) -> (std::sync::mpsc::SyncSender<WorkerImage>, std::sync::mpsc::Receiver<WorkerImage>) {
    std::sync::mpsc::sync_channel(2 * workers.max(1))
}

/// The main thread's side: keeps every worker's latest walk and writes the file once every
/// worker has sent a walk since the last write (so at most once per checkpoint interval).
#[derive(Debug)]
pub struct Writer {
    file: FlowStateFile,
    rx: std::sync::mpsc::Receiver<WorkerImage>,
    latest: Vec<Option<WorkerImage>>,
    fresh: Vec<bool>,
}

impl Writer {
    pub fn new(file: FlowStateFile, rx: std::sync::mpsc::Receiver<WorkerImage>, workers: usize) -> Writer {
        Writer { file, rx, latest: vec![None; workers], fresh: vec![false; workers] }
    }

    /// Takes what the workers sent; writes the file when every worker has a walk newer than
    /// the last write. Returns the flows written, if it wrote.
    pub fn poll(&mut self, t: &Tables) -> Result<Option<usize>, HandoverError> {
        while let Ok(img) = self.rx.try_recv() {
            self.take(img);
        }
        if self.fresh.iter().any(|f| !f) {
            return Ok(None);
        }
        self.fresh.fill(false);
        self.write(t).map(Some)
    }

    /// Writes the workers' final images (one per worker, from their last batch).
    pub fn finish(&mut self, images: Vec<WorkerImage>, t: &Tables) -> Result<usize, HandoverError> {
        for img in images {
            self.take(img);
        }
        self.write(t)
    }

    fn take(&mut self, img: WorkerImage) {
        let i = usize::from(img.worker);
        if let (Some(slot), Some(f)) = (self.latest.get_mut(i), self.fresh.get_mut(i)) {
            *slot = Some(img);
            *f = true;
        }
    }

    fn write(&self, t: &Tables) -> Result<usize, HandoverError> {
        let images: Vec<&WorkerImage> = self.latest.iter().flatten().collect();
        self.file.write(&images, t)?;
        Ok(images.iter().map(|i| i.flows.len()).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switch_core::conntrack::NewFlow;
    use switch_core::pipeline::WorkerConfig;
    use switch_core::service::ServicePortId;
    use switch_core::wire::l4::tcp_flags::*;
    use switch_core::wire::proto;

    fn a(s: &str) -> Addr {
        Addr::from(s.parse::<std::net::IpAddr>().unwrap())
    }

    fn image(sport: u16) -> FlowImage {
        // pod a to default/web's ClusterIP, sent to pod b (the testbed's tables).
        let key =
            FlowKey { t: Tuple { src: a("10.244.1.2"), dst: a("10.96.0.10"), sport, dport: 80 }, proto: proto::TCP };
        FlowImage {
            key,
            xlate: Tuple { dst: a("10.244.1.3"), dport: 8080, ..key.t },
            state: TcpState::Established,
            replied: true,
            fins: 0,
            service: Some(ServicePortId(0)),
            egress_rule: None,
            ingress_rule: None,
            packets: [5, 4],
            bytes: [500, 400],
            age_ns: 1_000,
            remaining_ns: 60_000_000_000,
        }
    }

    const BOOT: [u8; 36] = *b"0b3c5d1e-0000-4000-8000-000000000001";
    const S: u64 = 1_000_000_000;

    fn at(now_ns: u64) -> Clock {
        Clock { boot_id: BOOT, now_ns }
    }

    fn worker_image(flows: Vec<FlowImage>, taken: u64) -> WorkerImage {
        let affinity = vec![AffinityImage {
            key: AffinityKey { group: 42, client: a("10.0.0.2") },
            entry: AffinityEntry { addr: a("10.0.1.7") },
            remaining_ns: 10_000_000_000,
        }];
        WorkerImage { worker: 0, flows, affinity, taken }
    }

    #[test]
    fn records_round_trip_with_the_time_the_file_waited() {
        let t = switch_core::testbed::tables(Default::default());
        let taken = 1_000 * S;
        let img = worker_image(vec![image(1), image(2)], taken);
        let bytes = encode(&[&img], &t, at(taken + S));
        let saved = decode(&bytes, at(taken + 3 * S)).unwrap();
        assert_eq!(saved.age, Duration::from_secs(2));
        assert_eq!(saved.flows.len(), 2);
        let f = &saved.flows[1];
        assert!(f.service);
        let want = FlowImage {
            service: None,
            age_ns: 1_000 + 3_000_000_000,
            remaining_ns: 60_000_000_000 - 3_000_000_000,
            ..image(2)
        };
        assert_eq!(f.image, want, "waiting before and after the write both count");
        assert_eq!(saved.affinity[0].remaining_ns, 7_000_000_000);
        assert_eq!(saved.affinity[0].key.group, 42);
    }

    /// A file of another layout, a truncated one, a flipped bit and one from before a reboot
    /// are refused, each with its reason; nothing of them is read.
    #[test]
    fn other_versions_and_damaged_files_are_refused_with_the_reason() {
        let t = switch_core::testbed::tables(Default::default());
        let now = at(5 * S);
        let bytes = encode(&[&worker_image(vec![image(1)], now.now_ns)], &t, now);
        let mut rebooted = now;
        rebooted.boot_id[0] = b'f';
        assert!(decode(&bytes, rebooted).unwrap_err().contains("before the last reboot"));
        let mut v2 = bytes.clone();
        v2[8] = 2;
        assert!(decode(&v2, now).unwrap_err().contains("layout version 2"));
        let mut wider = bytes.clone();
        wider[12] = 200;
        assert!(decode(&wider, now).unwrap_err().contains("records of 200"));
        assert!(decode(&bytes[..bytes.len() - 9], now).unwrap_err().contains("checksum"));
        let mut flipped = bytes.clone();
        flipped[HEADER + 20] ^= 1;
        assert!(decode(&flipped, now).unwrap_err().contains("checksum"));
        assert!(decode(b"garbage", now).unwrap_err().contains("magic"));
        assert!(decode(&bytes, now).is_ok());
        // Every prefix is refused without a panic.
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n], now).is_err());
        }
    }

    #[test]
    fn restore_places_flows_with_their_owner_and_counts_what_it_leaves() {
        let t = switch_core::testbed::tables(Default::default());
        let services = (*t.services).clone().with_steering();
        let t = t.with_services(services, t.generation);
        let cfg =
            |index| WorkerConfig { index, count: 2, conntrack_flows: 1024, hash_key: 9, ..WorkerConfig::default() };
        let mut workers = [Worker::new(cfg(0)), Worker::new(cfg(1))];
        let mut gone = image(3);
        gone.key.proto = proto::UDP;
        let saved = Saved {
            flows: vec![
                SavedFlow {
                    image: FlowImage { service: None, ..image(1) },
                    service: false,
                    egress_rule: None,
                    ingress_rule: None,
                },
                SavedFlow {
                    image: FlowImage { remaining_ns: 0, ..image(2) },
                    service: false,
                    egress_rule: None,
                    ingress_rule: None,
                },
                SavedFlow {
                    image: FlowImage { service: None, ..gone },
                    service: true,
                    egress_rule: None,
                    ingress_rule: None,
                },
            ],
            affinity: worker_image(vec![], 0).affinity,
            age: Duration::ZERO,
        };
        let (plans, mut r) = plan(&saved, &t, 2);
        r.flows = 0;
        for (p, w) in plans.iter().zip(workers.iter_mut()) {
            let got = p.apply(w, 0);
            r.flows += got.flows;
            r.expired += got.expired;
        }
        assert_eq!((r.flows, r.expired, r.service_gone, r.affinity), (1, 1, 1, 1));
        let key = image(1).key;
        let owner = switch_core::pipeline::owner::owner_of(&t, key.t, key.proto, 2);
        assert!(workers[usize::from(owner)].conntrack().lookup(&key, 1).is_some());
        assert!(workers[usize::from(1 - owner)].conntrack().lookup(&key, 1).is_none());
        // A restored flow takes its packets as before, both ways.
        let w = &mut workers[usize::from(owner)];
        let reply = FlowKey { t: image(1).xlate.reversed(), proto: proto::TCP };
        let slot = w.conntrack().lookup(&reply, 1).expect("reply entry");
        assert_eq!(w.conntrack_mut().touch(slot, ACK, 40, 2), TcpState::Established);
    }

    #[test]
    fn a_worker_checkpoint_walks_in_slices_and_the_writer_waits_for_every_worker() {
        let dir = std::env::temp_dir().join(format!("psw-handover-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = FlowStateFile::in_dir(&dir);
        let (tx, rx) = channel(2);
        let cfg =
            |index| WorkerConfig { index, count: 2, conntrack_flows: 40_000, hash_key: 9, ..WorkerConfig::default() };
        let mut w0 = Worker::new(cfg(0));
        let f = NewFlow {
            generation: 1,
            key: image(7).key,
            xlate: image(7).xlate,
            tcp_flags: SYN,
            len: 60,
            service: None,
            egress_rule: None,
            ingress_rule: None,
        };
        w0.conntrack_mut().commit(&f, 0).unwrap();
        let w1 = Worker::new(cfg(1));
        let mut c0 = Checkpoint::new(tx.clone(), 0, Some(Duration::from_secs(3600)));
        let mut writer = Writer::new(file.clone(), rx, 2);
        let t = switch_core::testbed::tables(Default::default());
        let steps = w0.conntrack().capacity().div_ceil(SLICE);
        assert!(steps > 1, "the table takes several slices");
        for _ in 0..steps - 1 {
            c0.step(&w0, 1);
        }
        assert_eq!(writer.poll(&t).unwrap(), None, "the walk is not finished");
        c0.step(&w0, 1);
        assert_eq!(writer.poll(&t).unwrap(), None, "worker 1 has not sent a walk");
        c0.step(&w0, 1);
        assert_eq!(writer.poll(&t).unwrap(), None, "the next walk waits for the interval");
        let last = Checkpoint::new(tx, 1, None).finish(&w1, 1);
        assert_eq!(writer.finish(vec![last], &t).unwrap(), 1, "the final image of worker 1 and worker 0's walk");
        let saved = file.load().unwrap().expect("a file");
        assert_eq!(saved.flows.len(), 1);
        assert_eq!(saved.flows[0].image.key, f.key);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(file.path()).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::remove_file(file.path()).unwrap();
        std::fs::remove_dir(&dir).unwrap();
    }
}
