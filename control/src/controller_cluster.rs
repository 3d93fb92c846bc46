//! The controller in cluster mode: writes of cluster-wide objects go to the object source
//! (etcd), and the store follows what the source delivers (see [`crate::source`]). A write
//! is answered once it is committed in the source and this node has applied it.

use super::{Controller, Outcome, Refusal, State};
use crate::alloc::{Held, InUse};
use crate::config::RemoteNodeConfig;
use crate::k8s::{self, Key, Kind, Object, Validation};
use crate::source::{Claim, Delivery, ObjectSource, Write, WriteError};
use crate::store::Action;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

/// How long a writer waits for its own write to come back from the source.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

impl From<WriteError> for Refusal {
    fn from(e: WriteError) -> Refusal {
        match e {
            WriteError::Conflict { .. } => Refusal::Precondition(e.to_string()),
            WriteError::Unavailable { .. } => Refusal::Unavailable(e.to_string()),
        }
    }
}

fn not_cluster_object(k: &Key) -> Refusal {
    Refusal::Invalid(format!(
        "{k}: in cluster mode Namespaces, Pods, Services, EndpointSlices, Endpoints and NetworkPolicies are stored in the cluster store as Kubernetes objects: apply them as YAML or JSON"
    ))
}

impl Controller {
    /// Puts the controller in cluster mode: cluster-wide objects are written to `source` and
    /// come back through [`Controller::deliver`]. Set once, before the API serves.
    pub fn set_source(&self, source: Arc<dyn ObjectSource>) {
        let _ = self.source.set(source);
    }

    /// The object source, in cluster mode.
    pub fn source(&self) -> Option<&Arc<dyn ObjectSource>> {
        self.source.get()
    }

    /// The source revision the store has applied.
    pub fn synced_revision(&self) -> u64 {
        self.synced.0.lock().map(|r| *r).unwrap_or(0)
    }

    fn mark_synced(&self, revision: u64) {
        if let Ok(mut r) = self.synced.0.lock() {
            if revision > *r {
                *r = revision;
            }
            self.synced.1.notify_all();
        }
    }

    /// Waits until the store has applied `revision` of the source.
    fn wait_synced(&self, revision: u64) -> Result<(), Refusal> {
        let deadline = Instant::now() + SYNC_TIMEOUT;
        let mut r = self.synced.0.lock().map_err(|_| Refusal::Unavailable("sync state poisoned".into()))?;
        while *r < revision {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Refusal::Unavailable(format!(
                    "the write is committed in the cluster store (revision {revision}) but this node has not applied it within {} s (applied: {})",
                    SYNC_TIMEOUT.as_secs(),
                    *r
                )));
            }
            r = self.synced.1.wait_timeout(r, left).map_err(|_| Refusal::Unavailable("sync state poisoned".into()))?.0;
        }
        Ok(())
    }

    /// An apply in cluster mode: checked here (allocations, parse, a trial build), then
    /// committed to the source with the claims of the Services' values, then answered once
    /// this node has applied it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn apply_to_source(
        &self,
        mut st: MutexGuard<'_, State>,
        source: &dyn ObjectSource,
        objects: Vec<Object>,
        forms: Vec<(Key, serde_json::Value)>,
        warnings: Vec<String>,
        before: InUse,
        held: BTreeMap<String, Vec<Held>>,
        dry_run: bool,
    ) -> Result<Outcome, Refusal> {
        let with_form: BTreeSet<&Key> = forms.iter().map(|(k, _)| k).collect();
        for o in &objects {
            let k = o.key();
            if k.kind.cluster_wide() && !with_form.contains(&k) {
                return Err(not_cluster_object(&k));
            }
        }
        // Routes of the node stay local; everything else goes to the source.
        let (local, cluster): (Vec<Object>, Vec<Object>) =
            objects.into_iter().partition(|o| !o.key().kind.cluster_wide());
        if !local.is_empty() && !cluster.is_empty() {
            return Err(Refusal::Invalid(
                "in cluster mode a request applies either Kubernetes objects (stored cluster-wide) or node routes, not both".into(),
            ));
        }
        if cluster.is_empty() {
            return self.change_in(&mut st, "applied", warnings, dry_run, |s| s.apply(local));
        }
        // A trial: the same change built (and refused) here, never published.
        let trial =
            self.change_in(&mut st, "applied", warnings, true, |s| s.apply_manifests(cluster, forms.clone()))?;
        drop(st);
        if dry_run {
            return Ok(trial);
        }
        let changed: BTreeSet<&Key> =
            trial.changes.iter().filter(|(_, a)| *a != Action::Unchanged).map(|(k, _)| k).collect();
        let mut w =
            Write { puts: forms.into_iter().filter(|(k, _)| changed.contains(k)).collect(), ..Write::default() };
        for (owner, values) in held {
            let k = Key {
                kind: Kind::Service,
                namespace: owner.split_once('/').map(|(n, _)| n.to_string()).unwrap_or_default(),
                name: owner.split_once('/').map(|(_, n)| n.to_string()).unwrap_or_default(),
            };
            if !changed.contains(&k) {
                continue;
            }
            let had = before.of(&owner);
            for v in &values {
                w.claims.push(Claim { key: v.claim_key(), owner: owner.clone(), held: had.contains(v) });
            }
            for v in had.iter().filter(|v| !values.contains(v)) {
                w.releases.push((v.claim_key(), owner.clone()));
            }
        }
        if w.is_empty() {
            return Ok(trial);
        }
        let revision = Controller::write_claiming(source, w)?;
        Ok(self.after_write(revision, trial))
    }

    /// Writes `w`; a new claim found held by its own owner (this node's view was behind: an
    /// earlier write of the same Service, or its deletion and re-creation) is checked as held
    /// instead and the write tried again, a bounded number of times.
    fn write_claiming(source: &dyn ObjectSource, mut w: Write) -> Result<u64, Refusal> {
        for _ in 0..4 {
            match source.write(w.clone()) {
                Err(WriteError::Conflict { claim, holder }) => {
                    match w.claims.iter_mut().find(|c| c.key == claim && !c.held && c.owner == holder) {
                        Some(c) => c.held = true,
                        None => return Err(WriteError::Conflict { claim, holder }.into()),
                    }
                }
                r => return r.map_err(Refusal::from),
            }
        }
        Err(Refusal::Unavailable("the cluster store's claims kept changing; apply again".into()))
    }

    /// Waits for a committed write to come back; past the wait it is reported committed
    /// with a warning (it is in the store; this node applies it when its watch delivers).
    fn after_write(&self, revision: u64, mut trial: Outcome) -> Outcome {
        if let Err(e) = self.wait_synced(revision) {
            trial.warnings.push(e.to_string());
        }
        Outcome { generation: self.cell.generation(), ..trial }
    }

    /// Writes `w` and waits for it to come back; one not yet applied here is logged as
    /// `what` (it is committed: this node applies it when its watch delivers).
    fn write_then_wait(&self, source: &dyn ObjectSource, w: Write, what: &str) -> Result<(), Refusal> {
        let revision = source.write(w)?;
        if let Err(e) = self.wait_synced(revision) {
            tracing::warn!("{what} committed to the cluster store, not yet applied here: {e}");
        }
        Ok(())
    }

    /// A delete in cluster mode: the objects must exist here; their deletion and the release
    /// of their Services' values commit in the source.
    pub(super) fn delete_from_source(
        &self,
        source: &dyn ObjectSource,
        keys: Vec<Key>,
        warnings: Vec<String>,
        dry_run: bool,
    ) -> Result<Outcome, Refusal> {
        let (local, cluster): (Vec<Key>, Vec<Key>) = keys.into_iter().partition(|k| !k.kind.cluster_wide());
        let mut st = self.lock()?;
        if cluster.is_empty() {
            return self.change_in(&mut st, "deleted", warnings, dry_run, |s| s.delete(&local));
        }
        if !local.is_empty() {
            return Err(Refusal::Invalid(
                "in cluster mode a request deletes either Kubernetes objects or node routes, not both".into(),
            ));
        }
        let trial = self.change_in(&mut st, "deleted", warnings, true, |s| s.delete(&cluster))?;
        let mut w = Write { deletes: cluster.clone(), ..Write::default() };
        for k in cluster.iter().filter(|k| k.kind == Kind::Service) {
            if let Some(Object::Service(s)) = st.store.get(k) {
                let owner = format!("{}/{}", k.namespace, k.name);
                w.releases.extend(crate::alloc::held_by(s).iter().map(|v| (v.claim_key(), owner.clone())));
            }
        }
        drop(st);
        if dry_run {
            return Ok(trial);
        }
        let revision = source.write(w)?;
        Ok(self.after_write(revision, trial))
    }

    /// Applies what the source delivers, as one change when it can; objects this node refuses
    /// (one that does not build here) are left out one by one, each with an event, so that
    /// one bad object does not stop the rest. Marks the revision applied in any case.
    pub fn deliver(&self, d: Delivery) -> Result<Outcome, Refusal> {
        let (revision, puts, mut deletes, listed) = match d {
            Delivery::Changes { revision, puts, deletes } => (revision, puts, deletes, None),
            Delivery::Resync { revision, items, keys } => (revision, items, Vec::new(), Some(keys)),
        };
        let mut st = self.lock()?;
        let node = st.store.base().node.name.clone();
        let mut objects = Vec::new();
        let mut forms = Vec::new();
        let mut warnings = Vec::new();
        for v in puts {
            let text = v.to_string();
            match k8s::parse_admitted(
                k8s::Format::Json,
                "cluster store",
                &text,
                &node,
                Validation::Ignore,
                &mut k8s::AsWritten,
            ) {
                Ok(p) => {
                    objects.extend(p.objects.into_iter().filter(|o| o.key().kind.cluster_wide()));
                    forms.extend(p.manifests);
                    warnings.extend(p.warnings);
                }
                Err(e) => {
                    tracing::warn!("object from the cluster store not applied: {e}");
                    self.emit("sync_rejected", &[], e.to_string());
                }
            }
        }
        let delivered: BTreeSet<Key> = objects.iter().map(Object::key).collect();
        if let Some(listed) = &listed {
            // Objects whose value did not parse are listed: they keep what this node has.
            let listed: BTreeSet<&Key> = listed.iter().collect();
            deletes =
                st.store.cluster_keys().into_iter().filter(|k| !delivered.contains(k) && !listed.contains(k)).collect();
        }
        deletes.retain(|k| st.store.get(k).is_some() && !delivered.contains(k));
        let all = {
            let (objects, forms, deletes) = (objects.clone(), forms.clone(), deletes.clone());
            self.change_in(&mut st, "synced", warnings.clone(), false, move |s| {
                let mut c = s.delete(&deletes)?;
                c.extend(s.apply_manifests(objects, forms)?);
                Ok(c)
            })
        };
        let out = match all {
            Ok(o) => Ok(o),
            Err(e) => {
                tracing::warn!(
                    "a change from the cluster store does not apply whole ({e}); applying it object by object"
                );
                let mut last = Err(e);
                // Objects first, deletions after: a policy replaced under another name is never
                // absent in between.
                let mut forms: BTreeMap<Key, serde_json::Value> = forms.into_iter().collect();
                for o in objects {
                    let k = o.key();
                    let form: Vec<_> = forms.remove(&k).map(|f| (k.clone(), f)).into_iter().collect();
                    let r =
                        self.change_in(&mut st, "synced", Vec::new(), false, move |s| s.apply_manifests(vec![o], form));
                    if let Err(e) = &r {
                        tracing::warn!("{k} from the cluster store not applied on this node: {e}");
                        self.emit("sync_rejected", &[], format!("{k}: {e}"));
                    }
                    last = r;
                }
                for k in &deletes {
                    let k = k.clone();
                    last = self.change_in(&mut st, "synced", Vec::new(), false, move |s| s.delete(&[k]));
                }
                last
            }
        };
        drop(st);
        self.mark_synced(revision);
        out
    }

    /// Replaces the remote nodes learned from the cluster store (a full rebuild: routes,
    /// tunnels and the peers decapsulation accepts).
    pub fn set_cluster_nodes(&self, nodes: Vec<RemoteNodeConfig>) -> Result<Outcome, Refusal> {
        let mut st = self.lock()?;
        if st.store.cluster_nodes_known() && st.store.cluster_nodes() == nodes.as_slice() {
            return Ok(Outcome { generation: self.cell.generation(), ..Outcome::default() });
        }
        self.change_in(&mut st, "nodes", Vec::new(), false, |s| {
            s.set_cluster_nodes(nodes);
            Ok(Vec::new())
        })
    }

    /// The remote nodes learned from the cluster store.
    pub fn cluster_nodes(&self) -> Vec<RemoteNodeConfig> {
        self.lock().map(|st| st.store.cluster_nodes().to_vec()).unwrap_or_default()
    }
}

/// Annotation on a Pod object a node wrote for a sandbox that had no Pod of its own (a
/// container started by podman or containerd outside Kubernetes): deleted with the sandbox.
pub const CREATED_BY_ANNOTATION: &str = "podswitch.io/created-by";

impl Controller {
    /// The Pod object of an attachment as the cluster store should hold it: the stored Pod
    /// of that namespace and name (or one made from the attachment's labels), scheduled on
    /// this node, with the sandbox's addresses in its status, as the scheduler and the
    /// kubelet would write them. `None` for a port without CNI data.
    fn pod_form(st: &State, a: &crate::attach::Attachment, running: bool) -> Option<(Key, serde_json::Value)> {
        use k8s_openapi::api::core::v1::{Pod, PodCondition, PodIP, PodSpec, PodStatus};
        let c = a.cni.as_ref()?;
        let key = Key { kind: Kind::Pod, namespace: c.pod_namespace.clone(), name: c.pod_name.clone() };
        let node = st.store.base().node.clone();
        let stored: Option<Pod> = st.store.manifest(&key).and_then(|m| serde_json::from_value((**m).clone()).ok());
        let made = stored.is_none();
        let mut pod = stored.unwrap_or_else(|| {
            let mut p = Pod::default();
            p.metadata.name = Some(c.pod_name.clone());
            p.metadata.namespace = Some(c.pod_namespace.clone());
            p.metadata.labels = (!c.labels.is_empty()).then(|| c.labels.clone());
            p.metadata.annotations = Some([(CREATED_BY_ANNOTATION.to_string(), "podswitch-cni".to_string())].into());
            p
        });
        if made && !running {
            return Some((key, serde_json::Value::Null));
        }
        let spec = pod.spec.get_or_insert_with(PodSpec::default);
        if running {
            spec.node_name = Some(node.name.clone());
            let ips: Vec<String> =
                c.addresses.iter().map(|a| a.split_once('/').map_or(a.as_str(), |(ip, _)| ip).to_string()).collect();
            pod.status = Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: ips.first().cloned(),
                pod_ips: Some(ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
                host_ip: node.ipv4.clone().or(node.ipv6.clone()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            });
        } else {
            // The sandbox is gone; the Pod object (the user's) stays, without addresses.
            pod.status = Some(PodStatus { phase: Some("Pending".into()), ..Default::default() });
        }
        serde_json::to_value(&pod).ok().map(|v| (key, v))
    }

    /// In cluster mode, writes the Pod of a just attached (`running`) or detached sandbox to
    /// the cluster store, so that every node knows its address, labels and node; waits until
    /// this node has it back. Does nothing in single-node mode.
    pub(super) fn publish_pod(&self, a: &crate::attach::Attachment, running: bool) -> Result<(), Refusal> {
        let Some(source) = self.source.get().cloned() else { return Ok(()) };
        let form = {
            let st = self.lock()?;
            Controller::pod_form(&st, a, running)
        };
        let Some((key, form)) = form else { return Ok(()) };
        let w = if form.is_null() {
            Write { deletes: vec![key], ..Write::default() }
        } else {
            Write { puts: vec![(key, form)], ..Write::default() }
        };
        self.write_then_wait(&*source, w, &format!("pod of {}", a.port))
    }
}

impl Controller {
    /// Pods the cluster store has on this node whose sandbox is gone (a DEL whose publication
    /// failed, or a crash between the two): the ones the CNI plugin made are deleted, the
    /// user's lose their addresses, so that no other node keeps routing to an address this
    /// node may give to another pod. Called after a resync; returns how many it fixed.
    pub fn reconcile_pods(&self) -> Result<usize, Refusal> {
        let Some(source) = self.source.get().cloned() else { return Ok(0) };
        let mut w = Write::default();
        {
            let st = self.lock()?;
            let me = st.store.base().node.name.clone();
            let attached: BTreeSet<(String, String)> = st
                .store
                .attachments()
                .filter_map(|a| a.cni.as_ref().map(|c| (c.pod_namespace.clone(), c.pod_name.clone())))
                .collect();
            for k in st.store.cluster_keys().into_iter().filter(|k| k.kind == Kind::Pod) {
                let Some(m) = st.store.manifest(&k) else { continue };
                let on_me = m.get("spec").and_then(|s| s.get("nodeName")).and_then(|n| n.as_str()) == Some(me.as_str());
                let has_ip = m.get("status").and_then(|s| s.get("podIP")).is_some_and(|ip| !ip.is_null());
                if !on_me || !has_ip || attached.contains(&(k.namespace.clone(), k.name.clone())) {
                    continue;
                }
                let made = m
                    .get("metadata")
                    .and_then(|md| md.get("annotations"))
                    .and_then(|a| a.get(CREATED_BY_ANNOTATION))
                    .is_some();
                if made {
                    w.deletes.push(k);
                } else {
                    let mut v = (**m).clone();
                    if let Some(o) = v.as_object_mut() {
                        o.insert("status".into(), serde_json::json!({"phase": "Pending"}));
                    }
                    w.puts.push((k, v));
                }
            }
        }
        let n = w.puts.len() + w.deletes.len();
        if n > 0 {
            self.write_then_wait(&*source, w, "pods of gone sandboxes")?;
            tracing::info!("{n} pod(s) of sandboxes no longer attached here removed from the cluster store");
        }
        Ok(n)
    }
}
