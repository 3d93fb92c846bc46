//! The desired state: the objects of the daemon's TOML file plus those applied through the
//! API, merged into one [`Config`] for the table builder. API objects replace file objects of
//! the same kind, namespace and name; EndpointSlices and Endpoints become their service's
//! endpoints (a service with any of them uses only them, otherwise its selector picks pods).

use crate::config::{Config, RouteConfig};
use crate::error::FieldError;
use crate::k8s::{Key, Kind, Object};
use std::collections::{BTreeMap, BTreeSet};

/// Where an object came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The daemon's TOML config file.
    Config,
    /// Applied through the API.
    Api,
    /// Written by the daemon for listing only, never stored: the EndpointSlices the
    /// EndpointSlice controller would write for a Service's selector, the Pods of CNI
    /// attachments that have no Pod object.
    Generated,
}

impl Origin {
    pub fn name(self) -> &'static str {
        match self {
            Origin::Config => "config",
            Origin::Api => "api",
            Origin::Generated => "generated",
        }
    }
}

/// What a change did to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Created,
    Configured,
    Unchanged,
    Deleted,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Configured => "configured",
            Action::Unchanged => "unchanged",
            Action::Deleted => "deleted",
        }
    }
}

/// Why a change to the store was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(Key),
    #[error("{0} is defined in the daemon's config file; change it there (and send SIGHUP)")]
    FromConfig(Key),
    #[error("{0}: {1}")]
    Invalid(String, String),
}

/// What a change being tried replaced: the previous value of every key it touched (the first
/// one recorded for each key, indexed so that asking is O(1): a bulk apply of 10,000 objects
/// asked once per object, which scanned the list and made the change quadratic), and the
/// previous file part.
#[derive(Debug, Clone, Default)]
struct Journal {
    entries: Vec<(Key, Option<Object>)>,
    /// The Kubernetes form each recorded key had.
    manifests: Vec<(Key, Option<Manifest>)>,
    first: std::collections::HashMap<Key, usize>,
    base: Option<Config>,
    cluster_nodes: Option<Option<Vec<crate::config::RemoteNodeConfig>>>,
}

/// Whether two Kubernetes forms of one object are the same for `apply`. Of a Pod, `status`
/// is not compared (it is the kubelet's, a subresource `kubectl apply` does not change), nor
/// a `spec.nodeName` naming this node (`node`), which means what its absence means (the Pod
/// binds to its attachment here): `get` prints a running Pod with both, from its attachment,
/// and that output applies unchanged.
fn same_form(kind: Kind, node: &str, a: &serde_json::Value, b: &serde_json::Value) -> bool {
    if kind != Kind::Pod {
        return a == b;
    }
    let normal = |v: &serde_json::Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("status");
            if let Some(spec) = m.get_mut("spec").and_then(serde_json::Value::as_object_mut) {
                if spec.get("nodeName").and_then(serde_json::Value::as_str) == Some(node) {
                    spec.remove("nodeName");
                }
            }
        }
        v
    };
    normal(a) == normal(b)
}

/// File objects plus API objects.
#[derive(Debug, Clone, Default)]
pub struct Store {
    base: Config,
    api: BTreeMap<Key, Object>,
    /// The Kubernetes form of API objects applied as YAML or JSON, as admitted (with their
    /// allocations): what `get -o yaml` prints and the cluster store holds.
    manifests: BTreeMap<Key, Manifest>,
    /// The nodes registered in the cluster store, this one too when it is (besides the
    /// file's `[[nodes]]`, which win by name); `None` until the first node map is known.
    cluster_nodes: Option<Vec<crate::config::RemoteNodeConfig>>,
    /// EndpointSlices and Endpoints by the (namespace, service) they belong to.
    slices: BTreeMap<(String, String), BTreeSet<Key>>,
    /// While a change is being tried: the previous value of every key it touched, and the
    /// previous file part if it replaced that.
    journal: Option<Journal>,
}

/// For each top-level section index of a merged config, the object it came from.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    by_section: Vec<(&'static str, Vec<(Key, Origin)>)>,
}

impl Origins {
    fn push(&mut self, section: &'static str, k: &Key, origin: Origin) {
        match self.by_section.iter_mut().find(|(s, _)| *s == section) {
            Some((_, v)) => v.push((k.clone(), origin)),
            None => self.by_section.push((section, vec![(k.clone(), origin)])),
        }
    }

    /// Restates a build error in terms of the object that caused it.
    pub fn describe(&self, e: &FieldError) -> (String, String) {
        let found = e.section.and_then(|(name, i)| {
            let list = self.by_section.iter().find(|(s, _)| *s == name)?;
            list.1.get(i).map(|(k, o)| (name, i, k, o))
        });
        match found {
            Some((name, i, key, origin)) => {
                let prefix = format!("{name}[{i}].");
                let field = e.field.strip_prefix(&prefix).unwrap_or(&e.field).to_string();
                (format!("{key} (from {})", origin.name()), format!("{field}: {}", e.message))
            }
            None => ("config".into(), format!("{}: {}", e.field, e.message)),
        }
    }
}

/// An object's Kubernetes form (shared: stores and snapshots of it are cheap).
pub type Manifest = std::sync::Arc<serde_json::Value>;

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

impl Store {
    pub fn new(base: Config) -> Store {
        Store {
            base,
            api: BTreeMap::new(),
            manifests: BTreeMap::new(),
            cluster_nodes: None,
            slices: BTreeMap::new(),
            journal: None,
        }
    }

    /// Starts recording a change so that it can be rolled back.
    pub fn begin(&mut self) {
        self.journal = Some(Journal::default());
    }

    /// Keeps the recorded change.
    pub fn commit(&mut self) {
        self.journal = None;
    }

    /// Undoes everything since `begin`.
    pub fn rollback(&mut self) {
        if let Some(Journal { entries, base, manifests, cluster_nodes, .. }) = self.journal.take() {
            if let Some(n) = cluster_nodes {
                self.cluster_nodes = n;
            }
            for (k, m) in manifests {
                match m {
                    Some(m) => self.manifests.insert(k, m),
                    None => self.manifests.remove(&k),
                };
            }
            for (k, old) in entries.into_iter().rev() {
                match old {
                    Some(o) => self.put(k, Some(o)),
                    None => self.put(k, None),
                };
            }
            if let Some(b) = base {
                self.base = b;
            }
        }
    }

    /// The value a key had before the change being recorded (for keys it touched).
    pub fn before(&self, k: &Key) -> Option<Option<&Object>> {
        let j = self.journal.as_ref()?;
        j.first.get(k).map(|i| j.entries[*i].1.as_ref())
    }

    fn record(&mut self, k: &Key) {
        if let Some(j) = &mut self.journal {
            if j.first.contains_key(k) {
                // Rolling back to the first recorded value is enough.
                return;
            }
            j.first.insert(k.clone(), j.entries.len());
            j.entries.push((k.clone(), self.api.get(k).cloned()));
            j.manifests.push((k.clone(), self.manifests.get(k).cloned()));
        }
    }

    /// Sets or removes an API object, keeping the slice index.
    fn put(&mut self, k: Key, v: Option<Object>) -> Option<Object> {
        if let Some(Object::Slice(sl)) = &v {
            self.slices.entry((sl.namespace.clone(), sl.service.clone())).or_default().insert(k.clone());
        }
        let old = match v {
            Some(o) => self.api.insert(k.clone(), o),
            None => self.api.remove(&k),
        };
        if let Some(Object::Slice(sl)) = &old {
            let still = matches!(self.api.get(&k), Some(Object::Slice(n)) if n.namespace == sl.namespace && n.service == sl.service);
            if !still {
                let ix = (sl.namespace.clone(), sl.service.clone());
                if let Some(set) = self.slices.get_mut(&ix) {
                    set.remove(&k);
                    if set.is_empty() {
                        self.slices.remove(&ix);
                    }
                }
            }
        }
        old
    }

    /// The API object of a key.
    pub fn get(&self, k: &Key) -> Option<&Object> {
        self.api.get(k)
    }

    /// The Kubernetes form of an API object of a key, if it was applied as YAML or JSON.
    pub fn manifest(&self, k: &Key) -> Option<&Manifest> {
        self.manifests.get(k)
    }

    /// Every Service (API objects hiding file ones of the same key), unordered.
    pub fn services(&self) -> impl Iterator<Item = &crate::config::ServiceConfig> {
        let api = self.api.values().filter_map(|o| match o {
            Object::Service(s) => Some(s),
            _ => None,
        });
        let file = self.base.services.iter().filter(|s| {
            !self.api.contains_key(&Key { kind: Kind::Service, namespace: s.namespace.clone(), name: s.name.clone() })
        });
        api.chain(file)
    }

    /// ConfigMap `namespace/name` (ConfigMaps are applied through the API only).
    pub fn config_map(&self, namespace: &str, name: &str) -> Option<&crate::config::ConfigMapConfig> {
        let key = Key { kind: Kind::ConfigMap, namespace: namespace.into(), name: name.into() };
        match self.api.get(&key) {
            Some(Object::ConfigMap(c)) => Some(c),
            _ => None,
        }
    }

    /// Every object applied through the API (attachments included), in key order.
    pub fn api_objects(&self) -> impl Iterator<Item = &Object> {
        self.api.values()
    }

    /// The config file's part.
    pub fn base(&self) -> &Config {
        &self.base
    }

    /// Puts back objects read from the state file, before any change is made.
    pub fn restore(&mut self, objects: Vec<Object>, manifests: Vec<(Key, serde_json::Value)>) {
        for o in objects {
            self.put(o.key(), Some(o));
        }
        for (k, m) in manifests {
            if self.api.contains_key(&k) {
                self.manifests.insert(k, std::sync::Arc::new(m));
            }
        }
    }

    /// Every pod address the store holds (file and API pods, and attachments), without
    /// merging the whole config.
    pub fn pod_ips(&self) -> std::collections::HashSet<std::net::IpAddr> {
        let api_pods = self.api.values().filter_map(|o| match o {
            Object::Pod(p) => Some(p),
            _ => None,
        });
        let mut out: std::collections::HashSet<std::net::IpAddr> =
            self.base.pods.iter().chain(api_pods).flat_map(|p| p.ips.iter().filter_map(|i| i.parse().ok())).collect();
        out.extend(self.attachments().flat_map(|a| a.ips()));
        out
    }

    /// Port ids in use: the file's ports (by position or their own id) and attachments'.
    pub fn port_ids(&self) -> std::collections::HashSet<u16> {
        let mut out: std::collections::HashSet<u16> =
            self.base.ports.iter().enumerate().map(|(i, p)| p.id.unwrap_or(i as u16)).collect();
        out.extend(self.attachments().map(|a| a.id));
        out
    }

    /// The services a change of the pods `pods` (namespace, name, every label set the pod had
    /// or has) can alter: those of the pod's namespace whose selector matches one of its label
    /// sets, and those whose EndpointSlices or Endpoints name the pod. Services depend on pods
    /// through nothing else.
    pub fn services_of_pods(
        &self,
        pods: &[(String, String, Vec<crate::config::Labels>)],
    ) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        if pods.is_empty() {
            return out;
        }
        let selects = |s: &crate::config::ServiceConfig| {
            let Some(sel) = s.selector.as_ref().filter(|sel| !sel.is_empty()) else { return false };
            pods.iter().any(|(ns, _, sets)| {
                *ns == s.namespace && sets.iter().any(|l| sel.iter().all(|(k, v)| l.get(k) == Some(v)))
            })
        };
        let api_services = self.api.values().filter_map(|o| match o {
            Object::Service(s) => Some(s),
            _ => None,
        });
        let file_services = self.base.services.iter().filter(|s| {
            !self.api.contains_key(&Key { kind: Kind::Service, namespace: s.namespace.clone(), name: s.name.clone() })
        });
        for s in api_services.chain(file_services) {
            if selects(s) || s.endpoints.iter().any(|e| names(pods, &s.namespace, e)) {
                out.insert((s.namespace.clone(), s.name.clone()));
            }
        }
        for o in self.api.values() {
            if let Object::Slice(sl) = o {
                if sl.endpoints.iter().any(|e| names(pods, &sl.namespace, e)) {
                    out.insert((sl.namespace.clone(), sl.service.clone()));
                }
            }
        }
        out
    }

    /// The ports attached at run time.
    pub fn attachments(&self) -> impl Iterator<Item = &crate::attach::Attachment> {
        self.api.values().filter_map(|o| match o {
            Object::Port(a) => Some(a),
            _ => None,
        })
    }

    /// Records a port attached at run time (replacing one of the same name).
    pub fn attach(&mut self, a: crate::attach::Attachment) -> Vec<(Key, Action)> {
        let o = Object::Port(a);
        let k = o.key();
        let action = if self.api.contains_key(&k) { Action::Configured } else { Action::Created };
        self.record(&k);
        self.put(k.clone(), Some(o));
        vec![(k, action)]
    }

    /// Forgets the attached port `name`.
    pub fn detach(&mut self, name: &str) -> Result<(crate::attach::Attachment, Vec<(Key, Action)>), StoreError> {
        let k = Key { kind: Kind::Port, namespace: String::new(), name: name.to_string() };
        match self.api.get(&k) {
            Some(Object::Port(a)) => {
                let a = a.clone();
                self.record(&k);
                self.put(k.clone(), None);
                Ok((a, vec![(k, Action::Deleted)]))
            }
            _ if self.base_has(&k) => Err(StoreError::FromConfig(k)),
            _ => Err(StoreError::NotFound(k)),
        }
    }

    /// Service `namespace/name` as the builder sees it: the API's or the file's, with the
    /// endpoints of its EndpointSlices and Endpoints merged in; `has_pod` says which pods
    /// the switch knows (they give locality and named ports).
    pub fn merged_service(
        &self,
        namespace: &str,
        name: &str,
        has_pod: &dyn Fn(&str, &str) -> bool,
    ) -> Option<crate::config::ServiceConfig> {
        let key = Key { kind: Kind::Service, namespace: namespace.into(), name: name.into() };
        let mut s = match self.api.get(&key) {
            Some(Object::Service(s)) => s.clone(),
            _ => self.base.services.iter().find(|s| s.namespace == namespace && s.name == name)?.clone(),
        };
        merge_slices(&mut s, &self.slices_of(namespace, name), has_pod);
        Some(s)
    }

    /// The EndpointSlices and Endpoints of service `namespace/name`.
    fn slices_of(&self, namespace: &str, name: &str) -> Vec<&crate::k8s::Slice> {
        self.slices
            .get(&(namespace.to_string(), name.to_string()))
            .into_iter()
            .flatten()
            .filter_map(|k| match self.api.get(k) {
                Some(Object::Slice(sl)) => Some(sl),
                _ => None,
            })
            .collect()
    }

    /// Replaces the remote nodes registered in the cluster store.
    pub fn set_cluster_nodes(&mut self, nodes: Vec<crate::config::RemoteNodeConfig>) {
        let old = self.cluster_nodes.replace(nodes);
        if let Some(j) = &mut self.journal {
            j.cluster_nodes.get_or_insert(old);
        }
    }

    /// The nodes registered in the cluster store (empty until the first node map).
    pub fn cluster_nodes(&self) -> &[crate::config::RemoteNodeConfig] {
        self.cluster_nodes.as_deref().unwrap_or_default()
    }

    /// Whether a node map has been given.
    pub fn cluster_nodes_known(&self) -> bool {
        self.cluster_nodes.is_some()
    }

    /// Whether `p` runs on a node that is neither this one, nor in the file, nor registered
    /// in the cluster (once the node map is known): a node that left.
    fn on_a_gone_node(&self, p: &crate::config::PodConfig) -> bool {
        let Some(n) = p.node.as_deref() else { return false };
        self.cluster_nodes.is_some()
            && n != self.base.node.name
            && !self.base.nodes.iter().any(|f| f.name == n)
            && !self.cluster_nodes().iter().any(|r| r.name == n)
    }

    /// The keys of the API objects of the cluster-wide kinds (those a cluster source owns).
    pub fn cluster_keys(&self) -> Vec<Key> {
        self.api.keys().filter(|k| k.kind.cluster_wide()).cloned().collect()
    }

    /// Replaces the file's part (SIGHUP); API objects stay.
    pub fn set_base(&mut self, base: Config) {
        let old = std::mem::replace(&mut self.base, base);
        if let Some(j) = &mut self.journal {
            j.base.get_or_insert(old);
        }
    }

    /// Every object with where it came from, file objects hidden by API objects left out.
    pub fn objects(&self) -> Vec<(Key, Object, Origin)> {
        let mut out: BTreeMap<Key, (Object, Origin)> = BTreeMap::new();
        let base = self.file_objects();
        for o in base {
            out.insert(o.key(), (o, Origin::Config));
        }
        for (k, o) in &self.api {
            out.insert(k.clone(), (o.clone(), Origin::Api));
        }
        out.into_iter().map(|(k, (o, g))| (k, o, g)).collect()
    }

    /// The config file's objects (copies).
    fn file_objects(&self) -> impl Iterator<Item = Object> + '_ {
        self.file_objects_of(true)
    }

    /// The config file's objects (copies), its services only if `services`.
    fn file_objects_of(&self, services: bool) -> impl Iterator<Item = Object> + '_ {
        let b = &self.base;
        let svc: &[crate::config::ServiceConfig] = if services { &b.services } else { &[] };
        b.namespaces
            .iter()
            .cloned()
            .map(Object::Namespace)
            .chain(b.pods.iter().cloned().map(Object::Pod))
            .chain(svc.iter().cloned().map(Object::Service))
            .chain(b.policies.iter().cloned().map(Object::NetworkPolicy))
            .chain(b.routes.iter().cloned().map(Object::Route))
    }

    fn base_has(&self, k: &Key) -> bool {
        let b = &self.base;
        match k.kind {
            Kind::Namespace => b.namespaces.iter().any(|n| n.name == k.name),
            Kind::Pod => b.pods.iter().any(|p| p.namespace == k.namespace && p.name == k.name),
            Kind::Service => b.services.iter().any(|s| s.namespace == k.namespace && s.name == k.name),
            Kind::NetworkPolicy => b.policies.iter().any(|p| p.namespace == k.namespace && p.name == k.name),
            Kind::Route => b.routes.iter().any(|r| r.prefix == k.name),
            Kind::Port => b.ports.iter().any(|p| p.name == k.name),
            Kind::EndpointSlice
            | Kind::Endpoints
            | Kind::ConfigMap
            | Kind::Ingress
            | Kind::IngressClass
            | Kind::Secret
            | Kind::Node => false,
        }
    }

    /// Creates or replaces objects; says what each did. Two objects with one key in a batch is
    /// an error. Objects keep no Kubernetes form (see [`Store::apply_manifests`]).
    pub fn apply(&mut self, objects: Vec<Object>) -> Result<Vec<(Key, Action)>, StoreError> {
        self.apply_manifests(objects, Vec::new())
    }

    /// [`Store::apply`] with the Kubernetes form of the objects that have one.
    pub fn apply_manifests(
        &mut self,
        objects: Vec<Object>,
        manifests: Vec<(Key, serde_json::Value)>,
    ) -> Result<Vec<(Key, Action)>, StoreError> {
        let mut manifests: BTreeMap<Key, serde_json::Value> = manifests.into_iter().collect();
        let mut seen = BTreeSet::new();
        let mut changes = Vec::new();
        for o in objects {
            let o = match o {
                Object::Route(r) => Object::Route(
                    normalize_route(&r).map_err(|m| StoreError::Invalid(format!("Route {}", r.prefix), m))?,
                ),
                Object::Port(a) => {
                    return Err(StoreError::Invalid(
                        format!("Port {}", a.port),
                        "ports are attached with `podswitchctl port add` or by the CNI plugin".into(),
                    ))
                }
                o => o,
            };
            let k = o.key();
            if !seen.insert(k.clone()) {
                return Err(StoreError::Invalid(k.to_string(), "appears twice in one request".into()));
            }
            let manifest = manifests.remove(&k);
            if let Object::ConfigMap(c) = &o {
                self.immutable_check(&k, c, manifest.as_ref())?;
            }
            let same_manifest = match (self.manifests.get(&k), &manifest) {
                (Some(m), Some(new)) => same_form(k.kind, &self.base.node.name, m, new),
                (Some(_), None) => false,
                (None, None) => true,
                // An object without a stored form (applied as TOML), applied again as the
                // Kubernetes form `get` printed for it, is unchanged.
                (None, Some(new)) => self
                    .api
                    .get(&k)
                    .and_then(|old| crate::k8s::render::object(old, &self.base.node.name))
                    .is_some_and(|r| r == *new),
            };
            let action = match self.api.get(&k) {
                Some(old) if json(old) == json(&o) && same_manifest => Action::Unchanged,
                Some(_) => Action::Configured,
                None if self.base_has(&k) => Action::Configured,
                None => Action::Created,
            };
            if action != Action::Unchanged {
                self.record(&k);
                self.put(k.clone(), Some(o));
                match manifest {
                    Some(m) => self.manifests.insert(k.clone(), std::sync::Arc::new(m)),
                    None => self.manifests.remove(&k),
                };
            } else if let Some(m) = manifest.filter(|m| self.manifests.get(&k).is_some_and(|old| **old != *m)) {
                // The same object for the switch, with another status (a Pod's, written by its
                // node): kept as given, nothing to build.
                self.record(&k);
                self.manifests.insert(k.clone(), std::sync::Arc::new(m));
            }
            changes.push((k, action));
        }
        Ok(changes)
    }

    /// An immutable ConfigMap (`immutable: true` in its stored form) keeps its data and stays
    /// immutable, as the API server has it; it can be deleted and created again.
    fn immutable_check(
        &self,
        k: &Key,
        new: &crate::config::ConfigMapConfig,
        form: Option<&serde_json::Value>,
    ) -> Result<(), StoreError> {
        let immutable = |m: Option<&serde_json::Value>| {
            m.and_then(|m| m.get("immutable")).and_then(serde_json::Value::as_bool).unwrap_or(false)
        };
        if !immutable(self.manifests.get(k).map(|m| &**m)) {
            return Ok(());
        }
        let old = match self.api.get(k) {
            Some(Object::ConfigMap(c)) => c,
            _ => return Ok(()),
        };
        let field = if old.data != new.data {
            "data"
        } else if !immutable(form) {
            "immutable"
        } else if self.manifests.get(k).and_then(|m| m.get("binaryData")) != form.and_then(|m| m.get("binaryData")) {
            "binaryData"
        } else {
            return Ok(());
        };
        Err(StoreError::Invalid(
            k.to_string(),
            format!("{field}: field is immutable when `immutable` is set (delete the ConfigMap and create it again)"),
        ))
    }

    /// Deletes API objects by key.
    pub fn delete(&mut self, keys: &[Key]) -> Result<Vec<(Key, Action)>, StoreError> {
        let mut changes = Vec::new();
        for k in keys {
            let k = match k.kind {
                Kind::Route => Key {
                    name: normalize_prefix(&k.name).map_err(|m| StoreError::Invalid(k.to_string(), m))?,
                    ..k.clone()
                },
                Kind::Port => {
                    return Err(StoreError::Invalid(
                        k.to_string(),
                        "ports are removed with `podswitchctl port del` or by the CNI plugin".into(),
                    ))
                }
                _ => k.clone(),
            };
            if self.api.contains_key(&k) {
                self.record(&k);
                self.put(k.clone(), None);
                self.manifests.remove(&k);
                changes.push((k, Action::Deleted));
            } else if self.base_has(&k) {
                return Err(StoreError::FromConfig(k));
            } else {
                return Err(StoreError::NotFound(k));
            }
        }
        Ok(changes)
    }

    /// The merged config and which object each section came from.
    pub fn config(&self) -> (Config, Origins) {
        self.merged(true)
    }

    /// The merged config without services and their endpoints, nor policies: what a change
    /// of pods, namespaces, policies or ports rebuilds (the service table is patched, not
    /// rebuilt), with the policies lent in their config order instead of copied (see
    /// [`Store::policies`]).
    pub fn config_without_services(&self) -> (Config, Origins) {
        self.merged(false)
    }

    /// Every NetworkPolicy (API objects hiding file ones), in the merged config's order.
    pub fn policies(&self) -> Vec<&crate::config::PolicyConfig> {
        let mut out: BTreeMap<Key, &crate::config::PolicyConfig> = BTreeMap::new();
        for p in &self.base.policies {
            out.insert(Key { kind: Kind::NetworkPolicy, namespace: p.namespace.clone(), name: p.name.clone() }, p);
        }
        let lo = Key { kind: Kind::NetworkPolicy, namespace: String::new(), name: String::new() };
        for (k, o) in self.api.range(lo..) {
            match o {
                Object::NetworkPolicy(p) => {
                    out.insert(k.clone(), p);
                }
                _ if k.kind != Kind::NetworkPolicy => break,
                _ => {}
            }
        }
        out.into_values().collect()
    }

    fn merged(&self, with_services: bool) -> (Config, Origins) {
        // The build needs to know it runs in cluster mode (Pods of nodes not registered, who
        // announces LoadBalancer addresses).
        let mut cfg = Config {
            node: self.base.node.clone(),
            datapath: self.base.datapath.clone(),
            cluster: self.base.cluster.clone(),
            dns: self.base.dns.clone(),
            ..Config::default()
        };
        // The kube-dns ConfigMap's static host entries, answered by the cluster DNS.
        let (ns, name) = crate::build::dns::KUBE_DNS;
        cfg.dns.hosts = self
            .config_map(ns, name)
            .and_then(|c| crate::dns::parse_kube_dns_config(&c.data).ok())
            .map(|c| c.hosts)
            .unwrap_or_default();
        cfg.ports = self.base.ports.clone();
        cfg.nodes = self.base.nodes.clone();
        for n in self.cluster_nodes() {
            if !cfg.nodes.iter().any(|f| f.name == n.name) && n.name != self.base.node.name {
                cfg.nodes.push(n.clone());
            }
        }
        if let Some(c) = cfg.cluster.as_mut() {
            // Who announces LoadBalancer addresses: the registered nodes, this one only once
            // its own registration is in the map, so that every node computes the same set;
            // nobody until the first map (a starting node must not claim every address).
            c.speakers = self.cluster_nodes().iter().filter(|n| n.registered).map(|n| n.name.clone()).collect();
        }
        let mut origins = Origins::default();
        // Every object once, by reference: API objects hide file objects of the same key.
        let mut order: BTreeMap<&Key, (&Object, Origin)> = BTreeMap::new();
        let wanted =
            |k: &Key| with_services || !matches!(k.kind, Kind::Service | Kind::EndpointSlice | Kind::Endpoints);
        let base_objects: Vec<(Key, Object)> = self
            .file_objects_of(with_services)
            .map(|o| (o.key(), o))
            .filter(|(k, _)| !self.api.contains_key(k))
            .collect();
        for (k, o) in &base_objects {
            order.insert(k, (o, Origin::Config));
        }
        for (k, o) in self.api.iter().filter(|(k, _)| wanted(k)) {
            order.insert(k, (o, Origin::Api));
        }
        // Pods attached by the CNI plugin, by namespace and name.
        let attached: BTreeMap<(&str, &str), &crate::attach::Attachment> = self
            .api
            .values()
            .filter_map(|o| match o {
                Object::Port(a) => a.cni.as_ref().map(|c| ((c.pod_namespace.as_str(), c.pod_name.as_str()), a)),
                _ => None,
            })
            .collect();
        let pod_objects: std::collections::HashSet<(&str, &str)> = order
            .values()
            .filter_map(|(o, _)| match o {
                Object::Pod(p) => Some((p.namespace.as_str(), p.name.as_str())),
                _ => None,
            })
            .collect();
        // The pods the build gets (an EndpointSlice keeps the name of these only): every Pod
        // object but those kept without an address and not attached, and the attached ones.
        let pods: std::collections::HashSet<(&str, &str)> = order
            .values()
            .filter_map(|(o, origin)| match o {
                Object::Pod(p) => Some((p, *origin)),
                _ => None,
            })
            .filter(|(p, origin)| {
                let key = (p.namespace.as_str(), p.name.as_str());
                !(*origin == Origin::Api && p.port.is_none() && p.ips.is_empty()) || attached.contains_key(&key)
            })
            .map(|(p, _)| (p.namespace.as_str(), p.name.as_str()))
            .chain(attached.keys().copied())
            .collect();
        let backend = self.base.ports.first().map_or_else(|| "afpacket".to_string(), |p| p.backend.clone());
        for (k, (o, origin)) in order {
            match o {
                Object::Namespace(n) => {
                    origins.push("namespaces", k, origin);
                    cfg.namespaces.push(n.clone());
                }
                Object::Pod(p) => {
                    let local = p.port.is_none() && p.node.as_ref().is_none_or(|n| *n == self.base.node.name);
                    match attached.get(&(p.namespace.as_str(), p.name.as_str())) {
                        // Bound to the port its sandbox was attached to: the attachment's
                        // addresses and MAC, the object's labels and ports.
                        Some(a) if local => {
                            let mut p = p.clone();
                            bind(&mut p, a);
                            origins.push("pods", k, origin);
                            cfg.pods.push(p);
                        }
                        // A Pod as Kubernetes writes it before it runs: kept, not built.
                        None if origin == Origin::Api && p.port.is_none() && p.ips.is_empty() => {}
                        _ => {
                            origins.push("pods", k, origin);
                            let mut p = p.clone();
                            if self.on_a_gone_node(&p) {
                                // Its node's lease expired: not ready (the node lifecycle
                                // controller's job), so Services stop sending to it.
                                p.ready = false;
                            }
                            cfg.pods.push(p);
                        }
                    }
                }
                Object::Port(a) => {
                    cfg.ports.push(crate::config::PortConfig {
                        name: a.port.clone(),
                        id: Some(a.id),
                        kind: "pod".into(),
                        backend: backend.clone(),
                        pcap_in: None,
                        pcap_out: None,
                        interface: Some(a.interface.clone()),
                    });
                    // A pod attached before (or without) its Pod object.
                    if let Some(c) = &a.cni {
                        if !pod_objects.contains(&(c.pod_namespace.as_str(), c.pod_name.as_str())) {
                            let mut p = crate::config::PodConfig {
                                name: c.pod_name.clone(),
                                namespace: c.pod_namespace.clone(),
                                port: None,
                                node: None,
                                mac: None,
                                ips: Vec::new(),
                                labels: c.labels.clone(),
                                container_ports: Vec::new(),
                                ready: true,
                                hostname: None,
                                subdomain: None,
                                dns_policy: None,
                                dns_config: None,
                            };
                            bind(&mut p, a);
                            origins.push("pods", k, origin);
                            cfg.pods.push(p);
                        }
                    }
                }
                Object::Service(_) if !with_services => {}
                Object::Service(svc) => {
                    let mut svc = svc.clone();
                    let slices = self.slices_of(&svc.namespace, &svc.name);
                    merge_slices(&mut svc, &slices, &|ns, p| pods.contains(&(ns, p)));
                    origins.push("services", k, origin);
                    cfg.services.push(svc);
                }
                Object::NetworkPolicy(p) => {
                    origins.push("policies", k, origin);
                    if with_services {
                        cfg.policies.push(p.clone());
                    }
                }
                Object::Route(r) => {
                    origins.push("routes", k, origin);
                    cfg.routes.push(r.clone());
                }
                // Slices are merged into their services above; ConfigMaps build nothing (their
                // readers ask the store: `Store::config_map`).
                Object::Slice(_) | Object::ConfigMap(_) | Object::Kept(_) => {}
            }
        }
        (cfg, origins)
    }
}

/// Whether endpoint `e` (of a service in `namespace`) names one of `pods`.
fn names(
    pods: &[(String, String, Vec<crate::config::Labels>)],
    namespace: &str,
    e: &crate::config::EndpointConfig,
) -> bool {
    e.pod.as_ref().is_some_and(|p| pods.iter().any(|(ns, n, _)| ns == namespace && n == p))
}

/// Puts a pod on the port of its attachment, with the attachment's MAC and addresses.
fn bind(p: &mut crate::config::PodConfig, a: &crate::attach::Attachment) {
    p.port = Some(a.port.clone());
    p.node = None;
    if let Some(c) = &a.cni {
        p.mac = Some(c.mac.clone());
        p.ips = a.ips().iter().map(ToString::to_string).collect();
    }
}

/// Replaces a service's endpoints by those of its slices (when it has any): an address keeps
/// the ports of every slice that lists it (the same address and ports twice is one
/// endpoint), the pod kept only when the switch knows it.
fn merge_slices(
    s: &mut crate::config::ServiceConfig,
    slices: &[&crate::k8s::Slice],
    has_pod: &dyn Fn(&str, &str) -> bool,
) {
    if slices.is_empty() {
        return;
    }
    s.selector = None;
    s.endpoints.clear();
    let mut seen = BTreeSet::new();
    for e in slices.iter().flat_map(|sl| &sl.endpoints) {
        if !seen.insert((e.ip.clone(), e.ports.clone())) {
            continue;
        }
        let mut e = e.clone();
        if e.pod.as_ref().is_some_and(|p| !has_pod(&s.namespace, p)) {
            e.pod = None;
        }
        s.endpoints.push(e);
    }
}

/// A prefix in canonical form (host bits must be zero), so that `10.1.0.0/16` and
/// `10.1.0.0/16 ` name the same route.
pub fn normalize_prefix(s: &str) -> Result<String, String> {
    let p: switch_core::addr::Prefix = s.trim().parse().map_err(|e| format!("'{s}': {e}"))?;
    Ok(p.to_string())
}

fn normalize_route(r: &RouteConfig) -> Result<RouteConfig, String> {
    Ok(RouteConfig { prefix: normalize_prefix(&r.prefix)?, ..r.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::{parse, Format};

    fn objects(yaml: &str) -> Vec<Object> {
        parse(Format::Yaml, "t", yaml, "node-1", crate::k8s::Validation::Strict).expect("parses").objects
    }

    fn base() -> Config {
        toml::from_str(
            "[node]\nname = \"node-1\"\nipv4 = \"192.168.1.1\"\nrouter_mac = \"02:00:00:00:00:01\"\nuplink_mac = \"02:00:00:00:00:02\"\n\n[[services]]\nname = \"file\"\ncluster_ips = [\"10.96.0.1\"]\nports = [{ port = 80 }]\n",
        )
        .expect("base")
    }

    const SVC: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {clusterIP: 10.96.0.2, ports: [{name: http, port: 80}]}\n";

    fn slice(service: &str, ip: &str) -> String {
        format!("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: s1, labels: {{kubernetes.io/service-name: {service}}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints: [{{addresses: [{ip}]}}]\n")
    }

    fn ips(s: &Store, name: &str) -> Vec<String> {
        s.merged_service("default", name, &|_, _| false)
            .map(|s| s.endpoints.iter().filter_map(|e| e.ip.clone()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn actions_journal_and_rollback() {
        let mut s = Store::new(base());
        s.begin();
        let c = s.apply(objects(SVC)).expect("apply");
        assert_eq!(c[0].1, Action::Created);
        s.commit();
        s.begin();
        assert_eq!(s.apply(objects(SVC)).expect("apply")[0].1, Action::Unchanged);
        assert_eq!(s.apply(objects(&slice("web", "10.0.0.1"))).expect("apply")[0].1, Action::Created);
        assert_eq!(ips(&s, "web"), ["10.0.0.1"]);
        s.rollback();
        assert!(ips(&s, "web").is_empty(), "the slice is gone with the rollback");
        assert!(s.get(&objects(SVC)[0].key()).is_some(), "the committed service stays");
    }

    #[test]
    fn the_slice_index_follows_moves_deletes_and_rollbacks() {
        let mut s = Store::new(base());
        s.apply(objects(SVC)).expect("apply");
        s.apply(objects(&slice("web", "10.0.0.1"))).expect("apply");
        s.begin();
        s.apply(objects(&slice("file", "10.0.0.9"))).expect("move the slice to another service");
        assert!(ips(&s, "web").is_empty());
        assert_eq!(ips(&s, "file"), ["10.0.0.9"], "a file service takes API slices too");
        s.rollback();
        assert_eq!(ips(&s, "web"), ["10.0.0.1"]);
        assert!(ips(&s, "file").is_empty());
        let k = objects(&slice("web", "10.0.0.1"))[0].key();
        s.delete(std::slice::from_ref(&k)).expect("delete");
        assert!(ips(&s, "web").is_empty());
        assert!(matches!(s.delete(&[k]), Err(StoreError::NotFound(_))));
    }

    #[test]
    fn file_objects_cannot_be_deleted_through_the_api_but_can_be_replaced() {
        let mut s = Store::new(base());
        let k = Key { kind: Kind::Service, namespace: "default".into(), name: "file".into() };
        assert!(matches!(s.delete(std::slice::from_ref(&k)), Err(StoreError::FromConfig(_))));
        let o = objects("apiVersion: v1\nkind: Service\nmetadata: {name: file}\nspec: {clusterIP: 10.96.0.9, ports: [{port: 81}]}\n");
        assert_eq!(s.apply(o).expect("apply")[0].1, Action::Configured);
        let (cfg, _) = s.config();
        assert_eq!(cfg.services.len(), 1);
        assert_eq!(cfg.services[0].cluster_ips, ["10.96.0.9"], "the API's version wins");
    }

    fn config_map(data: &str, extra: &str) -> (Vec<Object>, Vec<(Key, serde_json::Value)>) {
        let yaml = format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: kube-dns, namespace: kube-system}}\ndata: {data}\n{extra}");
        let p = parse(Format::Yaml, "cm.yaml", &yaml, "node-1", crate::k8s::Validation::Strict).expect("parses");
        (p.objects, p.manifests)
    }

    #[test]
    fn config_maps_apply_update_delete_and_print_back() {
        let mut s = Store::new(base());
        let (cfg_before, _) = s.config();
        let apply = |s: &mut Store, (o, m): (Vec<Object>, Vec<(Key, serde_json::Value)>)| {
            s.apply_manifests(o, m).map(|c| c.into_iter().map(|(k, a)| (k.to_string(), a)).collect::<Vec<_>>())
        };
        let v1 = "{upstreamNameservers: '[\"8.8.8.8\"]', hosts: '10.0.0.1 db'}";
        let created = apply(&mut s, config_map(v1, "")).expect("apply");
        assert_eq!(created, [("ConfigMap kube-system/kube-dns".to_string(), Action::Created)]);
        assert_eq!(apply(&mut s, config_map(v1, "")).expect("again")[0].1, Action::Unchanged);
        let c = s.config_map("kube-system", "kube-dns").expect("stored");
        assert_eq!(c.data["upstreamNameservers"], "[\"8.8.8.8\"]");
        assert!(s.config_map("default", "kube-dns").is_none(), "namespaced");
        // What `get -o yaml` prints (the stored form) applies back unchanged.
        let k = Key { kind: Kind::ConfigMap, namespace: "kube-system".into(), name: "kube-dns".into() };
        let printed = serde_yaml_ng::to_string(&**s.manifest(&k).expect("a Kubernetes form")).expect("yaml");
        let p =
            parse(Format::Yaml, "get.yaml", &printed, "node-1", crate::k8s::Validation::Strict).expect("reads back");
        assert_eq!(apply(&mut s, (p.objects, p.manifests)).expect("re-apply")[0].1, Action::Unchanged, "{printed}");
        // Rendered from the model (no stored form) it reads back the same too.
        let rendered = crate::k8s::render::object(s.get(&k).expect("object"), "node-1").expect("a Kubernetes form");
        let back =
            parse(Format::Json, "r", &rendered.to_string(), "node-1", crate::k8s::Validation::Strict).expect("reads");
        assert_eq!(json(&back.objects[0]), json(s.get(&k).expect("object")));
        // A new value, or only a new label, is a change.
        let v2 = "{upstreamNameservers: '[\"1.1.1.1\"]', hosts: '10.0.0.1 db'}";
        s.begin();
        assert_eq!(apply(&mut s, config_map(v2, "")).expect("update")[0].1, Action::Configured);
        assert_eq!(
            s.config_map("kube-system", "kube-dns").expect("stored").data["upstreamNameservers"],
            "[\"1.1.1.1\"]"
        );
        s.rollback();
        assert_eq!(
            s.config_map("kube-system", "kube-dns").expect("stored").data["upstreamNameservers"],
            "[\"8.8.8.8\"]"
        );
        let labelled = {
            let (o, mut m) = config_map(v1, "");
            m[0].1["metadata"]["labels"] = serde_json::json!({"a": "b"});
            (o, m)
        };
        assert_eq!(apply(&mut s, labelled).expect("label")[0].1, Action::Configured);
        // ConfigMaps build nothing: the merged config is the same.
        let (cfg_after, _) = s.config();
        assert_eq!(serde_json::to_value(&cfg_after).ok(), serde_json::to_value(&cfg_before).ok());
        assert_eq!(s.delete(std::slice::from_ref(&k)).expect("delete"), [(k.clone(), Action::Deleted)]);
        assert!(s.config_map("kube-system", "kube-dns").is_none() && s.manifest(&k).is_none());
        assert!(matches!(s.delete(std::slice::from_ref(&k)), Err(StoreError::NotFound(_))));
    }

    #[test]
    fn an_immutable_config_map_keeps_its_data_until_deleted() {
        let mut s = Store::new(base());
        let v1 = "{a: '1'}";
        s.apply_manifests(config_map(v1, "immutable: true\n").0, config_map(v1, "immutable: true\n").1)
            .expect("create");
        let (o, m) = config_map(v1, "immutable: true\n");
        assert_eq!(s.apply_manifests(o, m).expect("same")[0].1, Action::Unchanged);
        for (data, extra, field) in [("{a: '2'}", "immutable: true\n", "data"), (v1, "immutable: false\n", "immutable")]
        {
            let (o, m) = config_map(data, extra);
            let e = s.apply_manifests(o, m).expect_err("immutable").to_string();
            assert!(e.contains(&format!("ConfigMap kube-system/kube-dns: {field}: field is immutable")), "{e}");
        }
        let k = Key { kind: Kind::ConfigMap, namespace: "kube-system".into(), name: "kube-dns".into() };
        s.delete(&[k]).expect("delete");
        let (o, m) = config_map("{a: '2'}", "");
        assert_eq!(s.apply_manifests(o, m).expect("created again")[0].1, Action::Created);
    }
}
