//! The seam between the controller and the place cluster-wide objects live: etcd today
//! (`crate::cluster`), a Kubernetes API watch later. A source does two things:
//!
//! - it takes writes ([`ObjectSource::write`]): the Kubernetes objects a node's API accepted,
//!   admitted (allocations written in), with the claims on the values they hold, committed
//!   all at once or not at all; the caller is answered once the write is durable in the
//!   source;
//! - it delivers what is stored to every node ([`Delivery`], given to
//!   `Controller::deliver`), the node that wrote included: a node's tables follow the
//!   source, never its own writes directly, so every node applies the same objects in the
//!   same order.
//!
//! The objects are Namespaces, Pods, Services, EndpointSlices, Endpoints, NetworkPolicies and
//! ConfigMaps ([`crate::k8s::Kind::cluster_wide`]); routes and attached ports stay per node.

use crate::k8s::Key;

/// A claim on an allocated value (a cluster IP, node port or LoadBalancer IP), kept beside
/// the objects so that two nodes allocating at once cannot give one value to two Services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// What is claimed, e.g. `clusterip/10.96.0.10` ([`crate::alloc::Held::claim_key`]).
    pub key: String,
    /// The Service holding it, `namespace/name`.
    pub owner: String,
    /// Whether the owner held it before this write (then the write checks it still does;
    /// otherwise it checks nobody does).
    pub held: bool,
}

/// One write: everything in it commits at once or not at all.
#[derive(Debug, Clone, Default)]
pub struct Write {
    /// Objects to create or replace, in their Kubernetes form.
    pub puts: Vec<(Key, serde_json::Value)>,
    pub deletes: Vec<Key>,
    pub claims: Vec<Claim>,
    /// Claims to give up: (claim key, owner); only removed while the owner still holds them.
    pub releases: Vec<(String, String)>,
}

impl Write {
    pub fn is_empty(&self) -> bool {
        self.puts.is_empty() && self.deletes.is_empty() && self.claims.is_empty() && self.releases.is_empty()
    }
}

/// Why a write did not commit.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// A claimed value was taken by another writer between the allocation and the commit.
    #[error("{claim} was allocated to {holder} by another node meanwhile; apply again")]
    Conflict { claim: String, holder: String },
    /// The source cannot be reached or refused the write; nothing was committed.
    #[error("the cluster store ({source_name}) did not take the write: {message}")]
    Unavailable { source_name: String, message: String },
}

/// Where cluster-wide objects are stored.
pub trait ObjectSource: Send + Sync + std::fmt::Debug {
    /// Commits `w`; returns the source's revision after it (the revision the controller's
    /// deliveries reach once they include this write). Blocks; never call it holding the
    /// controller's lock.
    fn write(&self, w: Write) -> Result<u64, WriteError>;
    /// The source for messages (`etcd http://127.0.0.1:2379`).
    fn describe(&self) -> String;
}

/// What a source delivers to the controller.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// Changes since the previous delivery, in order, up to `revision`.
    Changes { revision: u64, puts: Vec<serde_json::Value>, deletes: Vec<Key> },
    /// Everything stored at `revision`: objects the node holds from the source whose keys are
    /// not in `keys` are deleted (the first delivery, and after a watch was lost); a listed
    /// key whose value cannot be read keeps what the node has.
    Resync { revision: u64, items: Vec<serde_json::Value>, keys: Vec<Key> },
}

/// An object source in the process's memory, for tests of several controllers sharing one
/// store (each registered controller gets every write delivered, in order, before `write`
/// returns). It keeps claims as etcd does: a new claim on a held value is a conflict.
#[derive(Debug, Default)]
pub struct Memory {
    inner: std::sync::Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    revision: u64,
    objects: std::collections::BTreeMap<Key, serde_json::Value>,
    claims: std::collections::BTreeMap<String, String>,
    nodes: Vec<std::sync::Weak<crate::controller::Controller>>,
}

impl Memory {
    /// Registers a controller and delivers it everything stored (a resync).
    pub fn join(self: &std::sync::Arc<Self>, c: &std::sync::Arc<crate::controller::Controller>) {
        let d = {
            let Ok(mut m) = self.inner.lock() else { return };
            m.nodes.push(std::sync::Arc::downgrade(c));
            Delivery::Resync {
                revision: m.revision,
                items: m.objects.values().cloned().collect(),
                keys: m.objects.keys().cloned().collect(),
            }
        };
        c.set_source(self.clone());
        if let Err(e) = c.deliver(d) {
            tracing::warn!("resync: {e}");
        }
    }

    /// Who holds a claim.
    pub fn holder(&self, claim: &str) -> Option<String> {
        self.inner.lock().ok()?.claims.get(claim).cloned()
    }
}

impl ObjectSource for Memory {
    fn write(&self, w: Write) -> Result<u64, WriteError> {
        let unavailable = |m: &str| WriteError::Unavailable { source_name: "memory".into(), message: m.to_string() };
        let (d, nodes) = {
            let mut m = self.inner.lock().map_err(|_| unavailable("poisoned"))?;
            for c in &w.claims {
                match m.claims.get(&c.key) {
                    Some(h) if *h != c.owner || !c.held => {
                        return Err(WriteError::Conflict { claim: c.key.clone(), holder: h.clone() })
                    }
                    None if c.held => {
                        return Err(WriteError::Conflict { claim: c.key.clone(), holder: "nobody".into() })
                    }
                    _ => {}
                }
            }
            for (k, owner) in &w.releases {
                if m.claims.get(k) == Some(owner) {
                    m.claims.remove(k);
                }
            }
            for c in &w.claims {
                m.claims.insert(c.key.clone(), c.owner.clone());
            }
            for k in &w.deletes {
                m.objects.remove(k);
            }
            for (k, v) in &w.puts {
                m.objects.insert(k.clone(), v.clone());
            }
            m.revision += 1;
            m.nodes.retain(|n| n.strong_count() > 0);
            let d = Delivery::Changes {
                revision: m.revision,
                puts: w.puts.iter().map(|(_, v)| v.clone()).collect(),
                deletes: w.deletes.clone(),
            };
            (d, m.nodes.iter().filter_map(std::sync::Weak::upgrade).collect::<Vec<_>>())
        };
        let revision = match &d {
            Delivery::Changes { revision, .. } | Delivery::Resync { revision, .. } => *revision,
        };
        for n in nodes {
            if let Err(e) = n.deliver(d.clone()) {
                tracing::warn!("delivery: {e}");
            }
        }
        Ok(revision)
    }

    fn describe(&self) -> String {
        "memory".into()
    }
}
