//! The node's cluster agent: what `podswitchd --etcd` (or a `[cluster]` section) adds to the
//! daemon. At start, before any table is built, it leases this node's pod CIDRs. Once the
//! controller exists, it makes etcd the controller's object source ([`EtcdSource`]), delivers
//! what etcd holds, registers the node under its lease, and keeps two watches running: the
//! objects (every change applied on this node as etcd orders it) and the nodes (tunnels,
//! routes and the peers decapsulation accepts).
//!
//! While etcd is unreachable the node forwards with what it last applied (restored from its
//! state file after a restart); writes are refused; the watches resynchronise when etcd is
//! back. A peer is removed only when etcd says its lease expired, never because this node
//! lost etcd.

use super::{Change, Claim, Cluster, ClusterError, Commit, CommitOutcome, EtcdConfig, NodeRecord, WatchBatch};
use crate::config::{ClusterConfig, Config, RemoteNodeConfig};
use crate::controller::Controller;
use crate::k8s::{Key, Kind};
use crate::source::{Delivery, ObjectSource, Write, WriteError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where the objects live under the prefix.
const OBJECTS: &str = "objects/";
/// Where the allocators' claims live under the prefix.
const CLAIMS: &str = "ipam/";
/// How long a write may take before it is reported as failed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The etcd path of an object: `objects/{Kind}/{namespace or _}/{name}`.
pub fn object_path(k: &Key) -> String {
    let ns = if k.namespace.is_empty() { "_" } else { k.namespace.as_str() };
    format!("{OBJECTS}{}/{ns}/{}", k.kind.name(), k.name)
}

/// The key of an object path (`None` for a path podswitch does not write).
pub fn object_key(path: &str) -> Option<Key> {
    let rest = path.strip_prefix(OBJECTS)?;
    let mut parts = rest.splitn(3, '/');
    let kind = Kind::parse(parts.next()?)?;
    let ns = parts.next()?;
    let name = parts.next()?;
    if name.is_empty() || name.contains('/') {
        return None;
    }
    Some(Key { kind, namespace: if ns == "_" { String::new() } else { ns.to_string() }, name: name.to_string() })
}

/// The cluster agent of a daemon.
#[derive(Debug)]
pub struct Agent {
    rt: tokio::runtime::Runtime,
    cluster: Cluster,
    config: ClusterConfig,
    endpoints: String,
    record: NodeRecord,
    registration: Arc<Mutex<Option<super::Registration>>>,
}

/// The controller's object source over etcd.
#[derive(Debug)]
pub struct EtcdSource {
    handle: tokio::runtime::Handle,
    cluster: Cluster,
    endpoints: String,
}

/// What one etcd transaction may hold, with room to spare under etcd's defaults
/// (`--max-txn-ops` 128, `--max-request-bytes` 1.5 MiB).
const TXN_OPS: usize = 100;
const TXN_BYTES: usize = 1 << 20;

/// A write as etcd commits: one transaction when it fits, otherwise several in order, each
/// holding whole objects with the claims and releases of their Service (so each object and its
/// values commit together).
fn commits(w: &Write) -> Vec<Commit> {
    let mut units: Vec<Commit> = Vec::new();
    let mut claims: std::collections::BTreeMap<&str, Vec<Claim>> = Default::default();
    for cl in &w.claims {
        let key = format!("{CLAIMS}{}", cl.key);
        let c = if cl.held {
            Claim::Held { key, owner: cl.owner.clone() }
        } else {
            Claim::New { key, owner: cl.owner.clone() }
        };
        claims.entry(cl.owner.as_str()).or_default().push(c);
    }
    let mut releases: std::collections::BTreeMap<&str, Vec<(String, String)>> = Default::default();
    for (k, o) in &w.releases {
        releases.entry(o.as_str()).or_default().push((format!("{CLAIMS}{k}"), o.clone()));
    }
    let mut take = |k: &Key, c: &mut Commit| {
        if k.kind == Kind::Service {
            let owner = format!("{}/{}", k.namespace, k.name);
            c.claims.extend(claims.remove(owner.as_str()).unwrap_or_default());
            c.releases.extend(releases.remove(owner.as_str()).unwrap_or_default());
        }
    };
    for (k, v) in &w.puts {
        let mut c = Commit { puts: vec![(object_path(k), v.to_string().into_bytes())], ..Commit::default() };
        take(k, &mut c);
        units.push(c);
    }
    for k in &w.deletes {
        let mut c = Commit { deletes: vec![object_path(k)], ..Commit::default() };
        take(k, &mut c);
        units.push(c);
    }
    // Claims and releases of no object in the write (none are made today) go last.
    let rest = Commit {
        claims: claims.into_values().flatten().collect(),
        releases: releases.into_values().flatten().collect(),
        ..Commit::default()
    };
    if !rest.claims.is_empty() || !rest.releases.is_empty() {
        units.push(rest);
    }
    let size = |c: &Commit| {
        let ops = c.puts.len() + c.deletes.len() + c.claims.len() + c.releases.len();
        let bytes: usize = c.puts.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() + 64 * ops;
        (ops, bytes)
    };
    let mut out: Vec<Commit> = Vec::new();
    for u in units {
        let (ops, bytes) = size(&u);
        match out.last_mut() {
            Some(last) if size(last).0 + ops <= TXN_OPS && size(last).1 + bytes <= TXN_BYTES => {
                last.puts.extend(u.puts);
                last.deletes.extend(u.deletes);
                last.claims.extend(u.claims);
                last.releases.extend(u.releases);
            }
            _ => out.push(u),
        }
    }
    out
}

impl ObjectSource for EtcdSource {
    /// One etcd transaction, or several in order when the write is larger than one may be
    /// (each whole object with its values in one); a failed one stops the write, and those
    /// before it stay committed (every node applies them).
    fn write(&self, w: Write) -> Result<u64, WriteError> {
        let unavailable = |message: String| WriteError::Unavailable { source_name: self.describe(), message };
        let all = commits(&w);
        let n = all.len();
        let mut revision = 0;
        for (i, c) in all.into_iter().enumerate() {
            // The commit runs on the agent's runtime whatever thread asks (API handlers run on
            // another runtime's blocking pool); the answer comes back over a plain channel.
            let (tx, rx) = std::sync::mpsc::channel();
            let cluster = self.cluster.clone();
            self.handle.spawn(async move {
                let _ = tx.send(cluster.commit(c).await);
            });
            let partial = |e: WriteError| {
                if i > 0 {
                    tracing::warn!(
                        "a write of {n} transactions stopped at the {}th: those before it are committed",
                        i + 1
                    );
                }
                e
            };
            match rx.recv_timeout(WRITE_TIMEOUT) {
                Ok(Ok(CommitOutcome::Committed { rev })) => revision = rev.max(0) as u64,
                Ok(Ok(CommitOutcome::Conflict { key, holder })) => {
                    return Err(partial(WriteError::Conflict {
                        claim: key.trim_start_matches(CLAIMS).to_string(),
                        holder: holder.unwrap_or_else(|| "nobody (released meanwhile)".into()),
                    }))
                }
                Ok(Err(e)) => return Err(partial(unavailable(e.to_string()))),
                Err(_) => return Err(partial(unavailable(format!("no answer within {} s", WRITE_TIMEOUT.as_secs())))),
            }
        }
        Ok(revision)
    }

    fn describe(&self) -> String {
        format!("etcd {}", self.endpoints)
    }
}

fn err(e: ClusterError) -> String {
    e.to_string()
}

impl Agent {
    /// Connects to etcd and leases this node's pod CIDRs (unless `node.pod_cidrs` gives
    /// them), writing them into `base` so that the first build has them. `endpoints`, when
    /// not empty, overrides `cluster.etcd`. Errors say what to fix.
    pub fn start(base: &mut Config, endpoints: &[String]) -> Result<Agent, String> {
        let mut config = base.cluster.clone().unwrap_or_default();
        if !endpoints.is_empty() {
            config.etcd = endpoints.to_vec();
        }
        base.cluster = Some(config.clone());
        let etcd = EtcdConfig {
            endpoints: config.etcd.clone(),
            prefix: config.prefix.clone(),
            lease_ttl_s: config.lease_ttl_s,
            ..EtcdConfig::default()
        };
        etcd.validate().map_err(err)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("psw-cluster")
            .enable_all()
            .build()
            .map_err(|e| format!("cluster runtime: {e}"))?;
        let cluster = rt.block_on(Cluster::connect(&etcd)).map_err(err)?;
        let node = &mut base.node;
        if node.pod_cidrs.is_empty() {
            let leased = rt
                .block_on(cluster.lease_pod_cidrs(
                    &node.name,
                    &config.cluster_cidrs,
                    config.node_cidr_mask_v4,
                    config.node_cidr_mask_v6,
                ))
                .map_err(err)?;
            tracing::info!("pod CIDRs leased from the cluster: {}", leased.join(", "));
            node.pod_cidrs = leased;
        }
        let record = NodeRecord {
            name: node.name.clone(),
            ipv4: node.ipv4.clone(),
            ipv6: node.ipv6.clone(),
            tunnel: node.tunnel.clone(),
            vni: node.vni,
            mac: node.uplink_mac.clone(),
            vtep_mac: node.vtep_mac.clone(),
            pod_cidrs: node.pod_cidrs.clone(),
        };
        Ok(Agent {
            rt,
            cluster,
            endpoints: config.etcd.join(","),
            config,
            record,
            registration: Arc::new(Mutex::new(None)),
        })
    }

    /// Makes etcd `c`'s object source, delivers what etcd holds (when it answers within the
    /// lease TTL; otherwise the node goes on with what it restored and the watch catches up),
    /// registers the node and starts the watches. Call before the API serves.
    pub fn attach(&self, c: &Arc<Controller>, stop: &Arc<AtomicBool>) {
        let source = EtcdSource {
            handle: self.rt.handle().clone(),
            cluster: self.cluster.clone(),
            endpoints: self.endpoints.clone(),
        };
        c.set_source(Arc::new(source));
        let ttl = Duration::from_secs(self.config.lease_ttl_s.max(1) as u64);
        let first = self.rt.block_on(async { tokio::time::timeout(ttl, self.cluster.list(OBJECTS)).await });
        let after = match first {
            Ok(Ok((rev, items))) => {
                let n = items.len();
                let d = resync(rev, items);
                match c.deliver(d) {
                    Ok(o) => tracing::info!("{n} object(s) from the cluster store: generation {}", o.generation),
                    Err(e) => tracing::warn!("objects from the cluster store: {e}"),
                }
                // Not here: the watch that delivers its own write is not running yet.
                let c2 = Arc::clone(c);
                self.rt.spawn(async move {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let _ = tokio::task::spawn_blocking(move || c2.reconcile_pods()).await;
                });
                rev
            }
            Ok(Err(e)) => {
                tracing::warn!("cluster store not listed ({e}); forwarding with the restored state until it answers");
                -1
            }
            Err(_) => {
                tracing::warn!(
                    "cluster store did not answer within {} s; forwarding with the restored state",
                    ttl.as_secs()
                );
                -1
            }
        };
        self.spawn_object_watch(c, after);
        self.spawn_node_watch(c, stop);
        // Registered before the API serves when etcd answers; otherwise retried until it does
        // (the other nodes reach this one's pods only once it is registered).
        let (cluster, record, slot) = (self.cluster.clone(), self.record.clone(), Arc::clone(&self.registration));
        let first = self.rt.block_on(async { tokio::time::timeout(ttl, cluster.register(&record)).await });
        let registered = |r: super::Registration, slot: &Mutex<Option<super::Registration>>| {
            tracing::info!("node {} registered in the cluster (lease {:x})", r.name(), r.lease_id());
            if let Ok(mut g) = slot.lock() {
                *g = Some(r);
            }
        };
        match first {
            Ok(Ok(r)) => registered(r, &slot),
            other => {
                match other {
                    Ok(Err(e)) => tracing::warn!("node not registered yet: {e}; retrying"),
                    _ => tracing::warn!(
                        "node not registered yet: etcd did not answer within {} s; retrying",
                        ttl.as_secs()
                    ),
                }
                self.rt.spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        if let Ok(Ok(r)) = tokio::time::timeout(ttl, cluster.register(&record)).await {
                            registered(r, &slot);
                            break;
                        }
                    }
                });
            }
        }
    }

    /// The watch of the objects: a resync when it starts from nothing, then every change.
    fn spawn_object_watch(&self, c: &Arc<Controller>, after: i64) {
        let cluster = self.cluster.clone();
        let c = Arc::clone(c);
        self.rt.spawn(async move {
            let mut after = after;
            if after < 0 {
                // etcd was not there at start: list once it is.
                loop {
                    match cluster.list(OBJECTS).await {
                        Ok((rev, items)) => {
                            deliver(&c, resync(rev, items)).await;
                            after = rev;
                            break;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                    }
                }
            }
            let mut rx = cluster.watch(OBJECTS, after);
            while let Some(b) = rx.recv().await {
                let d = match b {
                    WatchBatch::Changes { rev, events } => changes(rev, events),
                    WatchBatch::Resync { rev, items } => resync(rev, items),
                };
                deliver(&c, d).await;
            }
        });
    }

    /// The watch of the nodes: every other registered node becomes a remote node.
    fn spawn_node_watch(&self, c: &Arc<Controller>, stop: &Arc<AtomicBool>) {
        // The node map's task runs on the agent's runtime.
        let mut rx = {
            let _in = self.rt.enter();
            self.cluster.watch_nodes()
        };
        let me = self.record.clone();
        let c = Arc::clone(c);
        let stop = Arc::clone(stop);
        self.rt.spawn(async move {
            loop {
                let nodes = rx.borrow_and_update().clone();
                let mut remote = remote_nodes(&me, &nodes);
                if nodes.contains_key(&me.name) {
                    // This node as the registry has it: it announces only once the others can
                    // see it too.
                    remote.push(RemoteNodeConfig {
                        name: me.name.clone(),
                        ip: me.ipv4.clone().or(me.ipv6.clone()).unwrap_or_default(),
                        mac: me.mac.clone(),
                        vtep_mac: me.vtep_mac.clone(),
                        pod_cidrs: me.pod_cidrs.clone(),
                        registered: true,
                    });
                }
                let c2 = Arc::clone(&c);
                let r = tokio::task::spawn_blocking(move || c2.set_cluster_nodes(remote)).await;
                match r {
                    Ok(Ok(o)) if o.generation > 0 && !o.scope.is_empty() => {
                        tracing::info!("cluster nodes: {}", nodes.keys().cloned().collect::<Vec<_>>().join(", "))
                    }
                    Ok(Err(e)) => tracing::warn!("cluster nodes not applied: {e}"),
                    _ => {}
                }
                if stop.load(Ordering::Relaxed) || rx.changed().await.is_err() {
                    break;
                }
            }
        });
    }

    /// Stops renewing the node's lease without revoking it: the other nodes keep this one
    /// until the lease expires (`lease_ttl_s`), so a restart within that time does not
    /// disturb them, and a node that does not come back is dropped by expiry.
    pub fn stop(&self) {
        let r = self.registration.lock().ok().and_then(|mut g| g.take());
        if let Some(r) = r {
            r.abandon();
            tracing::info!(
                "node {}: lease no longer renewed; it expires in {} s",
                self.record.name,
                self.config.lease_ttl_s
            );
        }
    }

    /// Leaves the cluster at once: the lease is revoked and every other node drops this one
    /// now (for a node taken out of service, not for a restart).
    pub fn leave(&self) {
        let r = self.registration.lock().ok().and_then(|mut g| g.take());
        if let Some(r) = r {
            let done = self.rt.block_on(async { tokio::time::timeout(Duration::from_secs(2), r.deregister()).await });
            match done {
                Ok(Ok(())) => tracing::info!("node {} left the cluster", self.record.name),
                Ok(Err(e)) => tracing::warn!("leaving the cluster: {e}"),
                Err(_) => tracing::warn!("leaving the cluster: etcd did not answer"),
            }
        }
    }
}

async fn deliver(c: &Arc<Controller>, d: Delivery) {
    let resync = matches!(d, Delivery::Resync { .. });
    let c = Arc::clone(c);
    match tokio::task::spawn_blocking(move || {
        let r = c.deliver(d);
        if resync {
            if let Err(e) = c.reconcile_pods() {
                tracing::warn!("pods of gone sandboxes: {e}");
            }
        }
        r
    })
    .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!("change from the cluster store: {e}"),
        Err(e) => tracing::error!("delivery task: {e}"),
    }
}

/// One watch response as a delivery: the last event of each key wins (a response that
/// catches up holds several revisions, and a key may be put and deleted in it), in the order
/// of those last events.
fn changes(rev: i64, events: Vec<Change>) -> Delivery {
    let mut last: Vec<Option<(String, Option<Vec<u8>>)>> = Vec::new();
    let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for e in events {
        let (key, value) = match e {
            Change::Put { key, value } => (key, Some(value)),
            Change::Delete { key } => (key, None),
        };
        if let Some(i) = at.remove(&key) {
            last[i] = None;
        }
        at.insert(key.clone(), last.len());
        last.push(Some((key, value)));
    }
    let mut puts = Vec::new();
    let mut deletes = Vec::new();
    for (key, value) in last.into_iter().flatten() {
        match value {
            Some(v) => match serde_json::from_slice(&v) {
                Ok(v) => puts.push(v),
                Err(e) => tracing::warn!("{key}: not JSON ({e}); ignored"),
            },
            None => deletes.extend(object_key(&key)),
        }
    }
    Delivery::Changes { revision: rev.max(0) as u64, puts, deletes }
}

/// A full listing as a resync: the keys listed are kept even when their value does not
/// parse (a node keeps what it has rather than dropping, say, a NetworkPolicy).
fn resync(rev: i64, items: Vec<(String, Vec<u8>)>) -> Delivery {
    let mut values = Vec::new();
    let mut keys = Vec::new();
    for (k, v) in items {
        keys.extend(object_key(&k));
        match serde_json::from_slice(&v) {
            Ok(v) => values.push(v),
            Err(e) => tracing::warn!("{k}: not JSON ({e}); the node keeps what it has"),
        }
    }
    Delivery::Resync { revision: rev.max(0) as u64, items: values, keys }
}

/// The other nodes as remote nodes of this one: same tunnel and VNI, an underlay address of
/// this node's family (IPv4 first).
pub fn remote_nodes(me: &NodeRecord, nodes: &std::collections::BTreeMap<String, NodeRecord>) -> Vec<RemoteNodeConfig> {
    let mut out = Vec::new();
    for n in nodes.values().filter(|n| n.name != me.name) {
        if n.tunnel != me.tunnel || n.vni != me.vni {
            tracing::warn!(
                "node {} uses {} VNI {}, this node {} VNI {}: not reachable through the tunnel",
                n.name,
                n.tunnel,
                n.vni,
                me.tunnel,
                me.vni
            );
            continue;
        }
        let ip = match (&me.ipv4, &n.ipv4, &me.ipv6, &n.ipv6) {
            (Some(_), Some(ip), _, _) => ip.clone(),
            (_, _, Some(_), Some(ip)) => ip.clone(),
            _ => {
                tracing::warn!("node {} has no underlay address of this node's family", n.name);
                continue;
            }
        };
        out.push(RemoteNodeConfig {
            name: n.name.clone(),
            ip,
            mac: n.mac.clone(),
            vtep_mac: n.vtep_mac.clone(),
            pod_cidrs: n.pod_cidrs.clone(),
            registered: true,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_writes_split_into_whole_objects() {
        let svc = |i: usize| Key { kind: Kind::Service, namespace: "default".into(), name: format!("s{i}") };
        let mut w = Write::default();
        for i in 0..250 {
            w.puts.push((svc(i), serde_json::json!({"i": i})));
            for what in ["clusterip", "nodeport"] {
                w.claims.push(crate::source::Claim {
                    key: format!("{what}/{i}"),
                    owner: format!("default/s{i}"),
                    held: false,
                });
            }
        }
        let c = commits(&w);
        assert!(c.len() > 1);
        for t in &c {
            assert!(t.puts.len() + t.claims.len() <= TXN_OPS);
            // Each object's claims are in its own transaction.
            for (k, _) in &t.puts {
                let name = k.rsplit('/').next().unwrap();
                assert_eq!(
                    t.claims
                        .iter()
                        .filter(|c| matches!(c, Claim::New { owner, .. } if owner.ends_with(&format!("/{name}"))))
                        .count(),
                    2
                );
            }
        }
        assert_eq!(c.iter().map(|t| t.puts.len()).sum::<usize>(), 250);
        let small = Write { puts: vec![(svc(1), serde_json::json!({}))], ..Write::default() };
        assert_eq!(commits(&small).len(), 1);
    }

    #[test]
    fn a_watch_response_keeps_the_last_event_of_each_key() {
        let put = |k: &str, v: &str| Change::Put { key: k.into(), value: v.as_bytes().to_vec() };
        let del = |k: &str| Change::Delete { key: k.into() };
        let events = vec![
            put("objects/Pod/default/a", "{\"v\":1}"),
            put("objects/Pod/default/b", "{\"v\":1}"),
            del("objects/Pod/default/a"),
            put("objects/Pod/default/b", "{\"v\":2}"),
            del("objects/Pod/default/c"),
            put("objects/Pod/default/c", "{\"v\":3}"),
        ];
        let Delivery::Changes { revision, puts, deletes } = changes(9, events) else { panic!("changes") };
        assert_eq!(revision, 9);
        assert_eq!(puts, vec![serde_json::json!({"v": 2}), serde_json::json!({"v": 3})]);
        assert_eq!(deletes, vec![Key { kind: Kind::Pod, namespace: "default".into(), name: "a".into() }]);
        // A listed key whose value is not JSON is kept, not deleted.
        let Delivery::Resync { items, keys, .. } =
            resync(3, vec![("objects/NetworkPolicy/x/deny".into(), b"{not json".to_vec())])
        else {
            panic!("resync")
        };
        assert!(items.is_empty());
        assert_eq!(keys.len(), 1);
    }

    #[test]
    fn object_paths_go_both_ways() {
        for k in [
            Key { kind: Kind::Service, namespace: "default".into(), name: "web".into() },
            Key { kind: Kind::Namespace, namespace: String::new(), name: "prod".into() },
            Key { kind: Kind::NetworkPolicy, namespace: "x".into(), name: "deny".into() },
            Key { kind: Kind::ConfigMap, namespace: "kube-system".into(), name: "kube-dns".into() },
        ] {
            assert_eq!(object_key(&object_path(&k)), Some(k));
        }
        let cm = Key { kind: Kind::ConfigMap, namespace: "kube-system".into(), name: "kube-dns".into() };
        assert_eq!(object_path(&cm), "objects/ConfigMap/kube-system/kube-dns");
        assert_eq!(object_key("objects/Service/default/a/b"), None);
        assert_eq!(object_key("objects/Nonsense/x/y"), None);
        assert_eq!(object_key("nodes/a"), None);
    }
}
