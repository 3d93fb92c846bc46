//! Node registration (`{prefix}/nodes/{name}` under a kept-alive lease) and the live map of
//! every registered node.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{LeaseKeepAliveStream, LeaseKeeper, PutOptions};
use tokio::sync::{oneshot, watch};

use super::etcd::{Backoff, Cluster, WatchBatch};
use super::{check_node_name, ClusterError, NodeRecord};

/// Directory of node records, relative to the prefix.
pub(super) const NODES: &str = "nodes/";

/// The live map of [`Cluster::watch_nodes`].
pub type NodeMap = Arc<BTreeMap<String, NodeRecord>>;

/// What the owner of a [`Registration`] asks of its keep-alive task.
#[derive(Debug)]
enum Stop {
    /// Revoke the lease (the node key goes at once), then say how that went.
    Revoke(Option<oneshot::Sender<Result<(), ClusterError>>>),
    /// Stop renewing and leave the lease to expire, as a crashed node would.
    Abandon,
}

/// A node's registration, kept alive by a task until this guard is dropped, deregistered or
/// abandoned. Dropping it revokes the lease from the task in the background (when the runtime
/// is still running); [`Registration::deregister`] does the same and waits for it.
#[derive(Debug)]
pub struct Registration {
    name: String,
    lease: Arc<AtomicI64>,
    stop: Option<oneshot::Sender<Stop>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Registration {
    /// The node name this registration holds.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The etcd lease the node key is attached to now (it changes when a lost lease is
    /// replaced).
    pub fn lease_id(&self) -> i64 {
        self.lease.load(Ordering::Relaxed)
    }

    /// Stops the keep-alive and revokes the lease, so that etcd deletes the node key now and
    /// every watcher sees the node leave.
    pub async fn deregister(mut self) -> Result<(), ClusterError> {
        let (done, answer) = oneshot::channel();
        let sent = self.stop.take().is_some_and(|s| s.send(Stop::Revoke(Some(done))).is_ok());
        if !sent {
            return Ok(());
        }
        let r = answer.await.unwrap_or(Ok(()));
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        r
    }

    /// Stops the keep-alive without revoking: the node key stays until the lease's TTL runs
    /// out, as after a crash. For tests of failure detection.
    pub fn abandon(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(Stop::Abandon);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(Stop::Revoke(None));
        }
    }
}

/// Everything the keep-alive task needs to register the node again.
struct Keeper {
    cluster: Cluster,
    key: String,
    value: Vec<u8>,
    lease: Arc<AtomicI64>,
    ttl: Duration,
}

impl Cluster {
    /// Registers `rec` as `{prefix}/nodes/{rec.name}` under a new lease of `lease_ttl_s` and
    /// keeps the lease alive (every third of the TTL) from a task on the current tokio
    /// runtime. If etcd reports the lease gone, or has not confirmed it for longer than the
    /// TTL, the task grants a new lease and writes the record again (logged with tracing),
    /// retrying until it succeeds. A record already there under the same name (a previous
    /// run's, not yet expired) is replaced.
    pub async fn register(&self, rec: &NodeRecord) -> Result<Registration, ClusterError> {
        check_node_name(&rec.name)?;
        let key = self.key(&format!("{NODES}{}", rec.name));
        let value = serde_json::to_vec(rec).map_err(|e| ClusterError::Corrupt {
            key: key.clone(),
            reason: format!("cannot encode the node record: {e}"),
        })?;
        let keeper = Keeper {
            cluster: self.clone(),
            key,
            value,
            lease: Arc::new(AtomicI64::new(0)),
            ttl: Duration::from_secs(self.lease_ttl_s.unsigned_abs()),
        };
        let id = keeper.put_under_new_lease().await?;
        keeper.lease.store(id, Ordering::Relaxed);
        let lease = keeper.lease.clone();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(keeper.run(stopped));
        Ok(Registration { name: rec.name.clone(), lease, stop: Some(stop), task: Some(task) })
    }

    /// Every registered node by name, kept current by a task on the current tokio runtime
    /// (calling this outside one panics): a listing, then a watch from the revision after the
    /// listing's, relisting after a compaction or a broken watch with backoff up to 1 s. The
    /// value is an empty map until the first listing arrives, which marks it changed. A node whose
    /// lease expires leaves the map when etcd deletes its key. Records that are not valid JSON
    /// node records, or whose name differs from their key, are logged and left out. The task
    /// ends when every receiver is dropped.
    pub fn watch_nodes(&self) -> watch::Receiver<NodeMap> {
        let (tx, rx) = watch::channel(NodeMap::default());
        tokio::spawn(self.clone().follow_nodes(tx));
        rx
    }

    async fn follow_nodes(self, tx: watch::Sender<NodeMap>) {
        let mut backoff = Backoff::new();
        let (rev, items) = loop {
            let listed = tokio::select! {
                r = self.list(NODES) => r,
                _ = tx.closed() => return,
            };
            match listed {
                Ok(l) => break l,
                Err(e) => {
                    tracing::warn!(error = %e, "cluster: cannot list nodes, retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.next()) => {}
                        _ = tx.closed() => return,
                    }
                }
            }
        };
        let mut map = BTreeMap::new();
        for (k, v) in items {
            apply_put(&mut map, &k, &v);
        }
        tx.send_replace(Arc::new(map.clone()));
        let mut batches = self.watch(NODES, rev);
        loop {
            let batch = tokio::select! {
                b = batches.recv() => b,
                _ = tx.closed() => return,
            };
            match batch {
                None => return,
                Some(WatchBatch::Resync { items, .. }) => {
                    map.clear();
                    for (k, v) in items {
                        apply_put(&mut map, &k, &v);
                    }
                }
                Some(WatchBatch::Changes { events, .. }) => {
                    for ev in events {
                        match ev {
                            super::Change::Put { key, value } => apply_put(&mut map, &key, &value),
                            super::Change::Delete { key } => {
                                if let Some(name) = key.strip_prefix(NODES) {
                                    map.remove(name);
                                }
                            }
                        }
                    }
                }
            }
            if **tx.borrow() != map {
                tx.send_replace(Arc::new(map.clone()));
            }
        }
    }
}

/// Adds or replaces the node record at `key` (relative to the prefix); a bad one is logged and
/// removes any earlier record of that name, which no longer describes the node.
fn apply_put(map: &mut BTreeMap<String, NodeRecord>, key: &str, value: &[u8]) {
    let Some(name) = key.strip_prefix(NODES) else { return };
    match serde_json::from_slice::<NodeRecord>(value) {
        Ok(rec) if rec.name == name => {
            map.insert(name.to_string(), rec);
        }
        Ok(rec) => {
            tracing::warn!(key, record_name = %rec.name, "cluster: node record names another node, ignored");
            map.remove(name);
        }
        Err(e) => {
            tracing::warn!(key, error = %e, "cluster: node record is not valid JSON, ignored");
            map.remove(name);
        }
    }
}

/// Why one keep-alive round failed.
enum RoundError {
    /// etcd says the lease does not exist (expired or revoked).
    Gone,
    /// No answer, or the stream broke.
    Unreachable(String),
}

impl Keeper {
    /// Grants a lease and puts the record under it; returns the lease id.
    async fn put_under_new_lease(&self) -> Result<i64, ClusterError> {
        let c = &self.cluster;
        let mut lease = c.client.lease_client();
        let granted = c.call("lease grant", &self.key, lease.grant(c.lease_ttl_s, None)).await?;
        let id = granted.id();
        let mut kv = c.client.kv_client();
        let put = kv.put(self.key.clone(), self.value.clone(), Some(PutOptions::new().with_lease(id)));
        if let Err(e) = c.call("put", &self.key, put).await {
            let _ = c.call("lease revoke", &self.key, lease.revoke(id)).await;
            return Err(e);
        }
        Ok(id)
    }

    /// Replaces a lost lease; the old one, if it still exists, is revoked once the record has
    /// moved to the new one.
    async fn reregister(&self, why: &str) -> bool {
        let old = self.lease.load(Ordering::Relaxed);
        tracing::warn!(key = %self.key, lease = old, reason = why, "cluster: node lease lost, registering again");
        match self.put_under_new_lease().await {
            Ok(id) => {
                self.lease.store(id, Ordering::Relaxed);
                tracing::info!(key = %self.key, lease = id, "cluster: node registered again");
                let mut lease = self.cluster.client.lease_client();
                let _ = self.cluster.call("lease revoke", &self.key, lease.revoke(old)).await;
                true
            }
            Err(e) => {
                tracing::warn!(key = %self.key, error = %e, "cluster: cannot register the node again, retrying");
                false
            }
        }
    }

    /// One keep-alive: opens the stream if needed, sends a request, returns the granted TTL.
    async fn round(&self, stream: &mut Option<(LeaseKeeper, LeaseKeepAliveStream)>) -> Result<i64, RoundError> {
        let id = self.lease.load(Ordering::Relaxed);
        if stream.is_none() {
            let mut lease = self.cluster.client.lease_client();
            match lease.keep_alive(id).await {
                Ok(s) => {
                    // The opening exchange was a keep-alive that etcd answered with a TTL > 0.
                    *stream = Some(s);
                    return Ok(self.cluster.lease_ttl_s);
                }
                Err(etcd_client::Error::LeaseKeepAliveError(m)) if m.contains("not found") => {
                    return Err(RoundError::Gone)
                }
                Err(e) => return Err(RoundError::Unreachable(e.to_string())),
            }
        }
        let Some((keeper, responses)) = stream.as_mut() else {
            return Err(RoundError::Unreachable("no stream".into()));
        };
        if let Err(e) = keeper.keep_alive().await {
            return Err(RoundError::Unreachable(e.to_string()));
        }
        match responses.message().await {
            Ok(Some(r)) if r.ttl() > 0 => Ok(r.ttl()),
            Ok(Some(_)) => Err(RoundError::Gone),
            Ok(None) => Err(RoundError::Unreachable("etcd closed the keep-alive stream".into())),
            Err(e) => Err(RoundError::Unreachable(e.to_string())),
        }
    }

    async fn run(self, mut stopped: oneshot::Receiver<Stop>) {
        let period = self.ttl / 3;
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut stream = None;
        let mut confirmed = Instant::now();
        let stop = loop {
            tokio::select! {
                s = &mut stopped => break s.unwrap_or(Stop::Revoke(None)),
                _ = tick.tick() => {}
            }
            let round = tokio::select! {
                s = &mut stopped => break s.unwrap_or(Stop::Revoke(None)),
                r = tokio::time::timeout(period, self.round(&mut stream)) => r,
            };
            let lost = match round {
                Ok(Ok(_ttl)) => {
                    confirmed = Instant::now();
                    None
                }
                Ok(Err(RoundError::Gone)) => Some("etcd reports the lease expired".to_string()),
                Ok(Err(RoundError::Unreachable(e))) => {
                    stream = None;
                    tracing::debug!(key = %self.key, error = %e, "cluster: keep-alive failed");
                    (confirmed.elapsed() > self.ttl).then(|| format!("no keep-alive confirmed for over the TTL: {e}"))
                }
                Err(_) => {
                    stream = None;
                    (confirmed.elapsed() > self.ttl).then(|| "no keep-alive answer for over the TTL".to_string())
                }
            };
            if let Some(why) = lost {
                stream = None;
                let again = tokio::select! {
                    s = &mut stopped => break s.unwrap_or(Stop::Revoke(None)),
                    ok = self.reregister(&why) => ok,
                };
                if again {
                    confirmed = Instant::now();
                }
            }
        };
        drop(stream);
        match stop {
            Stop::Abandon => {}
            Stop::Revoke(answer) => {
                let id = self.lease.load(Ordering::Relaxed);
                let mut lease = self.cluster.client.lease_client();
                let r = match self.cluster.call("lease revoke", &self.key, lease.revoke(id)).await {
                    // Expired already: the key is gone, which is what revoking was for.
                    Err(e) if e.to_string().contains("lease not found") => Ok(()),
                    r => r.map(|_| ()),
                };
                if let Err(e) = &r {
                    tracing::warn!(key = %self.key, error = %e, "cluster: cannot revoke the node lease; the node key expires with it");
                }
                if let Some(a) = answer {
                    let _ = a.send(r);
                }
            }
        }
    }
}
