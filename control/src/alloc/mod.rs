//! The allocations the Kubernetes API server (and a load-balancer IPAM such as MetalLB's or
//! Cilium's) makes when a Service is written: `spec.clusterIP(s)` from the service CIDRs per
//! `ipFamilyPolicy`, `spec.ports[].nodePort` and `spec.healthCheckNodePort` from the node port
//! range, and `status.loadBalancer.ingress` from the configured pools. They run on the
//! Kubernetes object itself (`k8s-openapi`'s `Service`) before it is converted and stored, so
//! the stored object is what `get -o yaml` prints and what re-applies unchanged.
//!
//! Uniqueness comes from [`InUse`], the values every other stored Service holds, built from
//! the store under the controller's lock (one node), or checked again by the cluster store's
//! transaction (several nodes). A value is free again once the Service holding it is deleted
//! or no longer holds it (Kubernetes releases on delete and on update).
//!
//! Candidates are probed from a start that hashes the owner's name, so a Service deleted and
//! created again tends to get its old address back, and two nodes allocating for different
//! Services at once rarely pick the same value (the transaction catches the rest).

mod range;
pub mod service;
#[cfg(test)]
mod tests;

pub use range::{Block, Ranges};
use std::collections::HashMap;
use std::net::IpAddr;

/// One allocated value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Held {
    /// A cluster IP (`spec.clusterIPs[]`).
    ClusterIp(IpAddr),
    /// A node port (`spec.ports[].nodePort` or `spec.healthCheckNodePort`), whatever the
    /// protocol: the API server's node port allocator is one range for all protocols.
    NodePort(u16),
    /// A LoadBalancer ingress IP (`status.loadBalancer.ingress[].ip`).
    LoadBalancerIp(IpAddr),
}

impl Held {
    /// The value as a claim key suffix for a shared store: `clusterip/10.96.0.10`,
    /// `nodeport/30007`, `lbip/192.0.2.10`.
    pub fn claim_key(&self) -> String {
        match self {
            Held::ClusterIp(ip) => format!("clusterip/{ip}"),
            Held::NodePort(p) => format!("nodeport/{p}"),
            Held::LoadBalancerIp(ip) => format!("lbip/{ip}"),
        }
    }
}

impl std::fmt::Display for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Held::ClusterIp(ip) => write!(f, "cluster IP {ip}"),
            Held::NodePort(p) => write!(f, "node port {p}"),
            Held::LoadBalancerIp(ip) => write!(f, "load balancer IP {ip}"),
        }
    }
}

/// Every allocated value and the Service holding it (`namespace/name`).
#[derive(Debug, Clone, Default)]
pub struct InUse {
    by_value: HashMap<Held, String>,
}

impl InUse {
    /// The holder of a value, if any.
    pub fn holder(&self, v: &Held) -> Option<&str> {
        self.by_value.get(v).map(String::as_str)
    }

    /// Whether `v` is held by someone other than `owner`.
    pub fn taken(&self, v: &Held, owner: &str) -> bool {
        self.by_value.get(v).is_some_and(|o| o != owner)
    }

    /// Records `owner`'s values (a value already held by another keeps its first holder:
    /// the store refuses such a pair before it gets here).
    pub fn hold(&mut self, owner: &str, values: impl IntoIterator<Item = Held>) {
        for v in values {
            self.by_value.entry(v).or_insert_with(|| owner.to_string());
        }
    }

    /// Forgets everything `owner` holds (its Service is replaced or deleted).
    pub fn release(&mut self, owner: &str) {
        self.by_value.retain(|_, o| o != owner);
    }

    /// Everything `owner` holds, sorted.
    pub fn of(&self, owner: &str) -> Vec<Held> {
        let mut v: Vec<Held> = self.by_value.iter().filter(|(_, o)| *o == owner).map(|(v, _)| *v).collect();
        v.sort();
        v
    }

    pub fn len(&self) -> usize {
        self.by_value.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_value.is_empty()
    }
}

/// The values a Service in the config model holds (for [`InUse`] built from a store).
pub fn held_by(s: &crate::config::ServiceConfig) -> Vec<Held> {
    let mut out = Vec::new();
    out.extend(s.cluster_ips.iter().filter_map(|c| c.parse().ok()).map(Held::ClusterIp));
    out.extend(s.ports.iter().filter_map(|p| p.node_port).map(Held::NodePort));
    out.extend(s.health_check_node_port.map(Held::NodePort));
    out.extend(s.load_balancer_ips.iter().filter_map(|c| c.parse().ok()).map(Held::LoadBalancerIp));
    out.sort();
    out.dedup();
    out
}

/// A 64-bit FNV-1a hash: the start of the probe for an owner's value (stable across runs and
/// nodes, unlike std's randomly keyed hasher).
pub(crate) fn start_of(owner: &str, what: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in owner.bytes().chain([0]).chain(what.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The allocators as the manifest reader's admission step ([`crate::k8s::Admit`]): each
/// Service document gets its values against what the store's other Services hold (and what
/// Services earlier in the same request took), its previous stored form giving the values an
/// update keeps.
pub struct Admission<'a> {
    ranges: Ranges,
    used: InUse,
    /// What the store's Services held before this request.
    initial: InUse,
    store: &'a crate::store::Store,
    /// What each admitted Service holds afterwards, by `namespace/name`.
    pub held: std::collections::BTreeMap<String, Vec<Held>>,
}

impl std::fmt::Debug for Admission<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission").field("in_use", &self.used.len()).field("held", &self.held).finish()
    }
}

impl<'a> Admission<'a> {
    /// Admission against `store` (its config's ranges, its Services' values). Errors name a
    /// bad range in the datapath config.
    pub fn new(store: &'a crate::store::Store) -> Result<Admission<'a>, String> {
        let ranges = Ranges::from_config(&store.base().datapath)?;
        let mut used = InUse::default();
        for s in store.services() {
            used.hold(&format!("{}/{}", s.namespace, s.name), held_by(s));
        }
        Ok(Admission { ranges, initial: used.clone(), used, store, held: Default::default() })
    }

    /// A Pod's `status` and `spec.nodeName` are the scheduler's and the kubelet's (status is
    /// a subresource): an apply that does not give them keeps the stored ones, so re-applying
    /// a Pod manifest does not unschedule it on every other node.
    fn keep_pod_status(&self, namespace: &str, name: &str, doc: &mut serde_json::Value) {
        let Some(old) = self.keep_status(crate::k8s::Kind::Pod, namespace, name, doc) else { return };
        let Some(obj) = doc.as_object_mut() else { return };
        let node = old.get("spec").and_then(|s| s.get("nodeName")).cloned();
        if let (Some(node), Some(spec)) = (node, obj.get_mut("spec").and_then(serde_json::Value::as_object_mut)) {
            spec.entry("nodeName").or_insert(node);
        }
    }

    /// Keeps the stored object's status when `doc` has none; gives the stored object.
    fn keep_status(
        &self,
        kind: crate::k8s::Kind,
        namespace: &str,
        name: &str,
        doc: &mut serde_json::Value,
    ) -> Option<crate::store::Manifest> {
        let key = crate::k8s::Key { kind, namespace: namespace.into(), name: name.into() };
        let old = self.store.manifest(&key)?;
        let empty = |v: Option<&serde_json::Value>| {
            v.is_none_or(|v| v.is_null() || v.as_object().is_some_and(|o| o.is_empty()))
        };
        let obj = doc.as_object_mut()?;
        if empty(obj.get("status")) {
            if let Some(s) = old.get("status").filter(|s| !empty(Some(s))) {
                obj.insert("status".into(), s.clone());
            }
        }
        Some(old.clone())
    }

    /// What the store's Services held before this request (to tell new claims from kept
    /// ones).
    pub fn before(&self) -> InUse {
        self.initial.clone()
    }
}

impl crate::k8s::Admit for Admission<'_> {
    fn admit(
        &mut self,
        kind: &str,
        namespace: &str,
        name: &str,
        doc: &mut serde_json::Value,
        warnings: &mut Vec<String>,
    ) -> Result<(), String> {
        if kind == "Pod" {
            self.keep_pod_status(namespace, name, doc);
            return Ok(());
        }
        if kind == "Ingress" {
            // Status is the controller's (podswitch-ingress writes the load balancer's
            // address): an apply without one keeps it, as a spec update does on the API server.
            self.keep_status(crate::k8s::Kind::Ingress, namespace, name, doc);
            return Ok(());
        }
        if kind != "Service" {
            return Ok(());
        }
        use k8s_openapi::api::core::v1::Service;
        let owner = format!("{namespace}/{name}");
        let mut svc: Service = serde_json::from_value(doc.clone())
            .map_err(|e| format!("does not fit the Kubernetes API schema of v1 Service: {e}"))?;
        let key = crate::k8s::Key { kind: crate::k8s::Kind::Service, namespace: namespace.into(), name: name.into() };
        let old: Option<Service> = self.store.manifest(&key).and_then(|m| serde_json::from_value((**m).clone()).ok());
        self.used.release(&owner);
        let held = service::allocate(&mut svc, old.as_ref(), &self.ranges, &self.used, &owner, warnings)?;
        self.used.hold(&owner, held.iter().copied());
        self.held.insert(owner, held);
        *doc = serde_json::to_value(&svc).map_err(|e| format!("cannot write the admitted Service: {e}"))?;
        Ok(())
    }
}
