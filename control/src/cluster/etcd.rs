//! The etcd client wrapper: connecting, prefix listing, watching with resynchronisation, and
//! claim transactions. Keys outside this file are relative to `{prefix}/`.

use std::future::Future;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use tokio::sync::mpsc;

use super::{ClusterError, EtcdConfig};

/// Interval of HTTP/2 pings on the etcd connection, which notice a dead peer under an idle
/// watch. etcd refuses pings more often than every 5 s (`--grpc-keepalive-min-time`).
const PING_INTERVAL: Duration = Duration::from_secs(10);
/// Largest list or watch response accepted (tonic's default is 4 MiB).
const MAX_MESSAGE: usize = 64 << 20;
/// Requests wait at least this long for an answer, and at least the dial timeout.
const MIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Backoff between watch or list attempts while etcd fails: doubles from the first to the last.
const BACKOFF_FIRST: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Batches a watch receiver may fall behind before the watch waits for it.
const WATCH_QUEUE: usize = 64;

/// A handle on the cluster's etcd, cheap to clone: clones share one connection.
#[derive(Clone)]
pub struct Cluster {
    pub(super) client: Client,
    /// `{prefix}/`: every key this module touches starts with it.
    pub(super) root: String,
    pub(super) lease_ttl_s: i64,
    pub(super) request_timeout: Duration,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("root", &self.root).field("lease_ttl_s", &self.lease_ttl_s).finish()
    }
}

/// One step of a [`Cluster::watch`] stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchBatch {
    /// The events of one etcd watch response, in order; `rev` is the revision of the last one
    /// (resume a watch after it).
    Changes { rev: i64, events: Vec<Change> },
    /// The watch could not continue (history compacted, stream broken): the full current list
    /// at `rev`, which replaces the consumer's view; changes follow from `rev + 1`.
    Resync { rev: i64, items: Vec<(String, Vec<u8>)> },
}

/// One change of a key (relative to `{prefix}/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Put { key: String, value: Vec<u8> },
    Delete { key: String },
}

/// A set of writes applied together by [`Cluster::commit`], or not at all. Keys are relative to
/// `{prefix}/`; one key may appear only once across puts, deletes, claims and releases (etcd
/// refuses a transaction that writes a key twice).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Commit {
    /// Keys to set.
    pub puts: Vec<(String, Vec<u8>)>,
    /// Keys to delete (absent keys are fine).
    pub deletes: Vec<String>,
    /// Conditions on claim keys; if one fails, nothing is written.
    pub claims: Vec<Claim>,
    /// `(key, owner)`: delete the claim key if it still names `owner`, leave it otherwise. A
    /// release that does not match does not fail the commit.
    pub releases: Vec<(String, String)>,
}

/// A claim key whose value is its owner's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key must not exist (etcd `create_revision == 0`); the commit creates it with `owner`.
    New { key: String, owner: String },
    /// The key must exist with value `owner`. It is compared, not rewritten, so holding a claim
    /// makes no watch event.
    Held { key: String, owner: String },
}

/// How a [`Cluster::commit`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Everything was written, at revision `rev`.
    Committed { rev: i64 },
    /// Nothing was written: the first claim (in [`Commit::claims`] order) that did not hold, and
    /// the key's value when the transaction was evaluated (`None`: absent).
    Conflict { key: String, holder: Option<String> },
}

/// Doubling delay between failed attempts, up to [`BACKOFF_MAX`].
pub(super) struct Backoff(Duration);

impl Backoff {
    pub(super) fn new() -> Backoff {
        Backoff(BACKOFF_FIRST)
    }
    pub(super) fn reset(&mut self) {
        self.0 = BACKOFF_FIRST;
    }
    /// The delay to wait now; the next one is twice as long.
    pub(super) fn next(&mut self) -> Duration {
        let d = self.0;
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
        d
    }
}

/// The error for a request etcd did not answer in time.
pub(super) fn timed_out(what: &str, after: Duration) -> etcd_client::Error {
    etcd_client::Error::IoError(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("{what}: no answer within {} ms", after.as_millis()),
    ))
}

impl Cluster {
    /// Connects to etcd and checks that it answers (a read of the prefix), all within
    /// `dial_timeout_ms`. The connection is shared by every clone of the handle and reconnects
    /// by itself later.
    pub async fn connect(cfg: &EtcdConfig) -> Result<Cluster, ClusterError> {
        cfg.validate()?;
        let dial = Duration::from_millis(cfg.dial_timeout_ms);
        let opts = ConnectOptions::new()
            .with_connect_timeout(dial)
            .with_keep_alive(PING_INTERVAL, dial.max(Duration::from_secs(3)))
            .with_keep_alive_while_idle(true);
        let root = format!("{}/", cfg.prefix.trim_end_matches('/'));
        let probe = async {
            let client = Client::connect(&cfg.endpoints, Some(opts)).await?;
            client.kv_client().get(root.clone(), Some(GetOptions::new().with_prefix().with_count_only())).await?;
            Ok::<Client, etcd_client::Error>(client)
        };
        let fail = |source| ClusterError::Connect { endpoints: cfg.endpoints.join(","), source };
        let client = match tokio::time::timeout(dial, probe).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(fail(e)),
            Err(_) => return Err(fail(timed_out("connect", dial))),
        };
        Ok(Cluster { client, root, lease_ttl_s: cfg.lease_ttl_s, request_timeout: dial.max(MIN_REQUEST_TIMEOUT) })
    }

    /// The full etcd key of `sub`.
    pub(super) fn key(&self, sub: &str) -> String {
        format!("{}{sub}", self.root)
    }

    /// `key` relative to the prefix; `None` (logged) for keys that are not UTF-8 or outside it.
    fn relative(&self, key: &[u8]) -> Option<String> {
        match std::str::from_utf8(key).ok().and_then(|k| k.strip_prefix(&self.root)) {
            Some(k) => Some(k.to_string()),
            None => {
                tracing::warn!(key = %String::from_utf8_lossy(key), root = %self.root, "cluster: skipping a key that is not UTF-8 under the prefix");
                None
            }
        }
    }

    /// Runs one etcd request with the request timeout, naming the operation and key on error.
    pub(super) async fn call<T>(
        &self,
        op: &'static str,
        key: &str,
        fut: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, ClusterError> {
        match tokio::time::timeout(self.request_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(ClusterError::Etcd { op, key: key.to_string(), source }),
            Err(_) => Err(ClusterError::Etcd { op, key: key.to_string(), source: timed_out(op, self.request_timeout) }),
        }
    }

    /// Every key under `{prefix}/{sub}` (a plain prefix: `"nodes/"` lists the nodes) with its
    /// value, sorted by key and relative to `{prefix}/`, and the etcd revision of the listing
    /// (watch from `rev + 1` to follow it).
    pub async fn list(&self, sub: &str) -> Result<(i64, Vec<(String, Vec<u8>)>), ClusterError> {
        let key = self.key(sub);
        let mut kv = self.client.kv_client().max_decoding_message_size(MAX_MESSAGE);
        let resp = self.call("range", &key, kv.get(key.clone(), Some(GetOptions::new().with_prefix()))).await?;
        let rev = resp.header().map_or(0, |h| h.revision());
        let items = resp.kvs().iter().filter_map(|kv| Some((self.relative(kv.key())?, kv.value().to_vec()))).collect();
        Ok((rev, items))
    }

    /// Follows every key under `{prefix}/{sub}` from revision `after_rev + 1`: one
    /// [`WatchBatch::Changes`] per etcd watch response. When etcd has compacted the history
    /// the watch needs, or the watch breaks, the stream yields a [`WatchBatch::Resync`] with
    /// a fresh listing and goes on after it, retrying with backoff (up to 1 s) while etcd
    /// fails. The watch runs in a task of the current tokio runtime (calling this outside one
    /// panics) and ends when the receiver is dropped.
    pub fn watch(&self, sub: &str, after_rev: i64) -> mpsc::Receiver<WatchBatch> {
        let (tx, rx) = mpsc::channel(WATCH_QUEUE);
        tokio::spawn(self.clone().follow(sub.to_string(), after_rev, tx));
        rx
    }

    async fn follow(self, sub: String, after_rev: i64, tx: mpsc::Sender<WatchBatch>) {
        let mut next = after_rev.saturating_add(1);
        let mut resync = false;
        let mut backoff = Backoff::new();
        loop {
            if resync {
                let listed = tokio::select! {
                    r = self.list(&sub) => r,
                    _ = tx.closed() => return,
                };
                match listed {
                    Ok((rev, items)) => {
                        if tx.send(WatchBatch::Resync { rev, items }).await.is_err() {
                            return;
                        }
                        // Every way out of the stream below sets `resync` again.
                        next = rev + 1;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cluster: watch of {:?} cannot relist", self.key(&sub));
                        if !pause(&tx, backoff.next()).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            match self.stream(&sub, &mut next, &tx, &mut backoff).await {
                StreamEnd::Closed => return,
                StreamEnd::Compacted(c) => {
                    tracing::info!(
                        compacted = c,
                        wanted = next,
                        "cluster: watch of {:?} behind compaction, relisting",
                        self.key(&sub)
                    );
                    resync = true;
                }
                StreamEnd::Broken(why) => {
                    tracing::warn!(reason = %why, "cluster: watch of {:?} broke, relisting", self.key(&sub));
                    resync = true;
                    if !pause(&tx, backoff.next()).await {
                        return;
                    }
                }
            }
        }
    }

    /// One etcd watch stream from `*next`, forwarding its events until it ends.
    async fn stream(
        &self,
        sub: &str,
        next: &mut i64,
        tx: &mpsc::Sender<WatchBatch>,
        backoff: &mut Backoff,
    ) -> StreamEnd {
        let key = self.key(sub);
        let mut wc = self.client.watch_client().max_decoding_message_size(MAX_MESSAGE);
        let opts = WatchOptions::new().with_prefix().with_start_revision(*next);
        let opened = tokio::select! {
            r = self.call("watch", &key, wc.watch(key.clone(), Some(opts))) => r,
            _ = tx.closed() => return StreamEnd::Closed,
        };
        let mut stream = match opened {
            Ok(s) => s,
            Err(e) => return StreamEnd::Broken(e.to_string()),
        };
        loop {
            let msg = tokio::select! {
                m = stream.message() => m,
                _ = tx.closed() => return StreamEnd::Closed,
            };
            let resp = match msg {
                Ok(Some(r)) => r,
                Ok(None) => return StreamEnd::Broken("etcd ended the watch stream".into()),
                Err(e) => return StreamEnd::Broken(e.to_string()),
            };
            if resp.compact_revision() > 0 {
                return StreamEnd::Compacted(resp.compact_revision());
            }
            if resp.canceled() {
                return StreamEnd::Broken(format!("etcd cancelled the watch: {}", resp.cancel_reason()));
            }
            if resp.created() {
                backoff.reset();
            }
            let mut events = Vec::with_capacity(resp.events().len());
            let mut rev = *next - 1;
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                rev = rev.max(kv.mod_revision());
                let Some(key) = self.relative(kv.key()) else { continue };
                events.push(match ev.event_type() {
                    EventType::Put => Change::Put { key, value: kv.value().to_vec() },
                    EventType::Delete => Change::Delete { key },
                });
            }
            if resp.events().is_empty() {
                continue;
            }
            *next = rev + 1;
            if !events.is_empty() && tx.send(WatchBatch::Changes { rev, events }).await.is_err() {
                return StreamEnd::Closed;
            }
        }
    }

    /// Applies `c` in one etcd transaction: if every claim holds, all puts, deletes, new
    /// claims and matching releases are written at one revision; otherwise nothing is, and the
    /// outcome names the first claim that failed with its holder, read in the same
    /// transaction. Releases are nested transactions (etcd 3.3 and later), so a release whose
    /// key has another owner is skipped without failing the commit. etcd limits a transaction
    /// to `--max-txn-ops` operations per branch (128 by default).
    pub async fn commit(&self, c: Commit) -> Result<CommitOutcome, ClusterError> {
        let mut compares = Vec::with_capacity(c.claims.len());
        let mut reads = Vec::with_capacity(c.claims.len());
        let mut ops = Vec::with_capacity(c.puts.len() + c.deletes.len() + c.claims.len() + c.releases.len());
        for claim in &c.claims {
            match claim {
                Claim::New { key, owner } => {
                    let k = self.key(key);
                    compares.push(Compare::create_revision(k.clone(), CompareOp::Equal, 0));
                    ops.push(TxnOp::put(k.clone(), owner.as_bytes(), None));
                    reads.push(TxnOp::get(k, None));
                }
                Claim::Held { key, owner } => {
                    let k = self.key(key);
                    compares.push(Compare::value(k.clone(), CompareOp::Equal, owner.as_bytes()));
                    reads.push(TxnOp::get(k, None));
                }
            }
        }
        for (key, value) in &c.puts {
            ops.push(TxnOp::put(self.key(key), value.clone(), None));
        }
        for key in &c.deletes {
            ops.push(TxnOp::delete(self.key(key), None));
        }
        for (key, owner) in &c.releases {
            let k = self.key(key);
            let release = Txn::new()
                .when([Compare::value(k.clone(), CompareOp::Equal, owner.as_bytes())])
                .and_then([TxnOp::delete(k, None)]);
            ops.push(TxnOp::txn(release));
        }
        let txn = Txn::new().when(compares).and_then(ops).or_else(reads);
        let what = commit_label(&c);
        let mut kv = self.client.kv_client();
        let resp = self.call("txn", &what, kv.txn(txn)).await?;
        if resp.succeeded() {
            return Ok(CommitOutcome::Committed { rev: resp.header().map_or(0, |h| h.revision()) });
        }
        let current: Vec<Option<Vec<u8>>> = resp
            .op_responses()
            .into_iter()
            .map(|r| match r {
                TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.value().to_vec()),
                _ => None,
            })
            .collect();
        let holder = |i: usize| current.get(i).cloned().flatten().map(|v| String::from_utf8_lossy(&v).into_owned());
        for (i, claim) in c.claims.iter().enumerate() {
            let failed = match claim {
                Claim::New { key, .. } => holder(i).map(|h| (key, Some(h))),
                Claim::Held { key, owner } => {
                    let h = holder(i);
                    (h.as_deref() != Some(owner.as_str())).then_some((key, h))
                }
            };
            if let Some((key, holder)) = failed {
                return Ok(CommitOutcome::Conflict { key: key.clone(), holder });
            }
        }
        // Only claims have compares, so one of them failed; name the first if the read-back
        // could not tell which (it cannot, short of a broken server).
        match c.claims.first() {
            Some(Claim::New { key, .. } | Claim::Held { key, .. }) => {
                Ok(CommitOutcome::Conflict { key: key.clone(), holder: holder(0) })
            }
            None => {
                Err(ClusterError::Corrupt { key: what, reason: "etcd failed a transaction without conditions".into() })
            }
        }
    }
}

/// A short description of a commit for error messages: its first key and how many more.
fn commit_label(c: &Commit) -> String {
    let keys = c
        .claims
        .iter()
        .map(|cl| match cl {
            Claim::New { key, .. } | Claim::Held { key, .. } => key.as_str(),
        })
        .chain(c.puts.iter().map(|(k, _)| k.as_str()))
        .chain(c.deletes.iter().map(String::as_str))
        .chain(c.releases.iter().map(|(k, _)| k.as_str()));
    let mut n = 0;
    let mut first = "";
    for k in keys {
        if n == 0 {
            first = k;
        }
        n += 1;
    }
    match n {
        0 => "(empty commit)".into(),
        1 => first.into(),
        _ => format!("{first} and {} more", n - 1),
    }
}

/// Why one watch stream ended.
enum StreamEnd {
    /// The receiver is gone.
    Closed,
    /// etcd no longer has the revisions the watch needs; the oldest it has.
    Compacted(i64),
    /// The stream failed or etcd cancelled it.
    Broken(String),
}

/// Sleeps `d` unless the receiver goes away first; false when it did.
async fn pause<T>(tx: &mpsc::Sender<T>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = tx.closed() => false,
    }
}
