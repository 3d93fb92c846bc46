//! The controller's listings (`podswitchctl get`, `describe`): objects of one kind with their
//! Kubernetes form, filtered by a label selector; the EndpointSlices the EndpointSlice
//! controller would write for selector Services; the cluster's nodes.
//!
//! The Kubernetes form of an object applied as YAML or JSON is the stored one (authoritative,
//! with its allocations), a running Pod's `spec.nodeName` and `status.podIP(s)` filled in from
//! its attachment; other objects (the config file's, those applied as TOML, Pods of CNI
//! attachments) are rendered from the config model ([`k8s::render`]).

use super::{Controller, Listed, Listing, Refusal, State};
use crate::config::PodConfig;
use crate::k8s::endpointslice::{self, PodState};
use crate::k8s::render::{self, NodeInfo};
use crate::k8s::selector::Selector;
use crate::k8s::{self, Key, Kind};
use crate::store::Origin;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

/// The labels of a Kubernetes object (`metadata.labels`).
fn labels_of(v: &Value) -> std::collections::BTreeMap<String, String> {
    v.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default()
}

/// A running Pod's stored form with what its attachment gave it: `spec.nodeName` and
/// `status.podIP(s)`, when the stored form has none (a Pod that carries its addresses is
/// printed as stored).
fn with_running(mut v: Value, p: &PodConfig, node: &str) -> Value {
    if p.ips.is_empty() || v.pointer("/status/podIPs").is_some() || v.pointer("/status/podIP").is_some() {
        return v;
    }
    let node_name = p.node.clone().or_else(|| p.port.as_ref().map(|_| node.to_string()));
    if let Some(o) = v.as_object_mut() {
        if let (Some(n), Some(spec)) =
            (node_name, o.entry("spec").or_insert_with(|| Value::Object(Default::default())).as_object_mut())
        {
            spec.insert("nodeName".into(), Value::String(n));
        }
        if let Some(status) = o.entry("status").or_insert_with(|| Value::Object(Default::default())).as_object_mut() {
            status.insert("podIP".into(), Value::String(p.ips[0].clone()));
            status.insert(
                "podIPs".into(),
                Value::Array(p.ips.iter().map(|ip| serde_json::json!({ "ip": ip })).collect()),
            );
        }
    }
    v
}

impl Controller {
    /// The cluster's nodes: this node (the config file's `node` section) and the remote nodes
    /// (`[[nodes]]`). No lease yet: the daemon runs from a static config.
    pub fn nodes(&self) -> Result<Vec<NodeInfo>, Refusal> {
        let st = self.lock()?;
        let base = st.store.base();
        let n = &base.node;
        let mut out = vec![NodeInfo {
            name: n.name.clone(),
            addresses: n.ipv4.iter().chain(&n.ipv6).cloned().collect(),
            pod_cidrs: n.pod_cidrs.clone(),
            tunnel: n.tunnel.clone(),
            mac: n.uplink_mac.clone(),
            lease: base.cluster.as_ref().map(|c| format!("held by this node (TTL {} s)", c.lease_ttl_s)),
            local: true,
        }];
        // The file's nodes, then those registered in the cluster store (alive: their lease
        // has not expired, or etcd would have removed them).
        let ttl = base.cluster.as_ref().map_or(0, |c| c.lease_ttl_s);
        let registered = st.store.cluster_nodes().iter().filter(|r| !base.nodes.iter().any(|f| f.name == r.name));
        out.extend(base.nodes.iter().chain(registered).filter(|r| r.name != n.name).map(|r| NodeInfo {
            name: r.name.clone(),
            addresses: vec![r.ip.clone()],
            pod_cidrs: r.pod_cidrs.clone(),
            tunnel: n.tunnel.clone(),
            mac: r.mac.clone(),
            lease: r.registered.then(|| format!("live (TTL {ttl} s)")),
            local: false,
        }));
        Ok(out)
    }

    /// Objects of one kind (any name kubectl takes, `nodes` too) in `namespace` (empty: all;
    /// ignored for kinds without namespaces), named `name` (empty: all), whose labels match
    /// `selector` (kubectl's `-l` syntax; empty: all). EndpointSlices include those generated
    /// for Services without slices of their own, from their selector or their inline
    /// endpoints (origin `generated`). Each
    /// object comes with its Kubernetes form, except routes and ports (Kubernetes has none).
    pub fn list_selected(&self, kind: &str, namespace: &str, name: &str, selector: &str) -> Result<Listing, Refusal> {
        let kind = Kind::parse(kind).ok_or_else(|| {
            Refusal::Invalid(format!(
                "unknown kind '{kind}' (namespaces, pods, services, endpointslices, endpoints, networkpolicies, configmaps, ingresses, ingressclasses, secrets, routes, ports, nodes)"
            ))
        })?;
        let selector = Selector::parse(selector).map_err(|e| Refusal::Invalid(e.to_string()))?;
        let namespace = if kind.namespaced() { namespace } else { "" };
        let mut objects = if kind == Kind::Node {
            self.node_listing()?
        } else {
            let st = self.lock()?;
            self.object_listing(&st, kind, namespace, name)?
        };
        objects.retain(|o| {
            (name.is_empty() || o.key.name == name)
                && (namespace.is_empty() || o.key.namespace == namespace)
                && (selector.is_empty()
                    || o.kubernetes
                        .as_deref()
                        .and_then(|k| serde_json::from_str::<Value>(k).ok())
                        .is_some_and(|v| selector.matches(&labels_of(&v))))
        });
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        if !name.is_empty() && objects.is_empty() {
            return Err(Refusal::NotFound(format!(
                "{} {}{name} not found",
                kind.name(),
                if namespace.is_empty() { String::new() } else { format!("{namespace}/") }
            )));
        }
        Ok(Listing { generation: self.cell.generation(), objects })
    }

    fn node_listing(&self) -> Result<Vec<Listed>, Refusal> {
        let unavailable = |e: serde_json::Error| Refusal::Unavailable(e.to_string());
        self.nodes()?
            .into_iter()
            .map(|n| {
                let model = serde_json::json!({
                    "name": n.name, "addresses": n.addresses, "pod_cidrs": n.pod_cidrs, "tunnel": n.tunnel,
                    "mac": n.mac, "lease": n.lease, "local": n.local,
                });
                Ok(Listed {
                    key: Key { kind: Kind::Node, namespace: String::new(), name: n.name.clone() },
                    json: model.to_string(),
                    origin: Origin::Config,
                    kubernetes: Some(serde_json::to_string(&render::node(&n)).map_err(unavailable)?),
                })
            })
            .collect()
    }

    fn object_listing(&self, st: &State, kind: Kind, namespace: &str, name: &str) -> Result<Vec<Listed>, Refusal> {
        let node = st.store.base().node.name.clone();
        let unavailable = |e: serde_json::Error| Refusal::Unavailable(e.to_string());
        // A Pod object whose sandbox the CNI plugin attached is shown bound, as it runs: with
        // the attachment's addresses, MAC and port (a Pod as kubectl writes it has none).
        let running: HashMap<(String, String), PodConfig> = if matches!(kind, Kind::Pod | Kind::EndpointSlice) {
            st.store
                .config_without_services()
                .0
                .pods
                .into_iter()
                .map(|p| ((p.namespace.clone(), p.name.clone()), p))
                .collect()
        } else {
            Default::default()
        };
        let all = st.store.objects();
        let mut objects = Vec::new();
        for (k, o, origin) in &all {
            if k.kind != kind
                || (!namespace.is_empty() && k.namespace != namespace)
                || (!name.is_empty() && k.name != name)
            {
                continue;
            }
            let o = match o {
                k8s::Object::Pod(p) => {
                    k8s::Object::Pod(running.get(&(p.namespace.clone(), p.name.clone())).cloned().unwrap_or(p.clone()))
                }
                o => o.clone(),
            };
            let json = serde_json::to_string(&o).map_err(unavailable)?;
            let stored = match origin {
                Origin::Api => st.store.manifest(k).map(|m| (**m).clone()),
                _ => None,
            };
            let kubernetes = match (stored, &o) {
                (Some(m), k8s::Object::Pod(p)) => Some(with_running(m, p, &node)),
                (Some(m), _) => Some(m),
                (None, o) => render::object(o, &node),
            };
            let kubernetes = kubernetes.map(|v| v.to_string());
            objects.push(Listed { key: k.clone(), json, origin: *origin, kubernetes });
        }
        if kind == Kind::Pod {
            // Pods attached by the CNI plugin without a Pod object.
            let listed: BTreeSet<(String, String)> =
                objects.iter().map(|o| (o.key.namespace.clone(), o.key.name.clone())).collect();
            let mut extra: Vec<&PodConfig> = running
                .values()
                .filter(|p| !listed.contains(&(p.namespace.clone(), p.name.clone())))
                .filter(|p| {
                    !all.iter().any(|(k, _, _)| k.kind == Kind::Pod && k.namespace == p.namespace && k.name == p.name)
                })
                .filter(|p| (namespace.is_empty() || p.namespace == namespace) && (name.is_empty() || p.name == name))
                .collect();
            extra.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
            for p in extra {
                let o = k8s::Object::Pod(p.clone());
                objects.push(Listed {
                    key: o.key(),
                    json: serde_json::to_string(&o).map_err(unavailable)?,
                    origin: Origin::Generated,
                    kubernetes: render::object(&o, &node).map(|v| v.to_string()),
                });
            }
        }
        if kind == Kind::EndpointSlice {
            objects.extend(self.generated_slices(st, &all, &running, namespace, &node)?);
        }
        Ok(objects)
    }

    /// The EndpointSlices of Services without slices of their own: for a selector, as the
    /// EndpointSlice controller would write them; for the model's inline endpoints (TOML),
    /// the slices that say the same.
    fn generated_slices(
        &self,
        st: &State,
        all: &[(Key, k8s::Object, Origin)],
        running: &HashMap<(String, String), PodConfig>,
        namespace: &str,
        node: &str,
    ) -> Result<Vec<Listed>, Refusal> {
        let has_slices: BTreeSet<(&str, &str)> = all
            .iter()
            .filter_map(|(_, o, _)| match o {
                k8s::Object::Slice(s) => Some((s.namespace.as_str(), s.service.as_str())),
                _ => None,
            })
            .collect();
        // Each pod with its Ready condition and deletion, from its stored form when it has one.
        let states: Vec<PodState<'_>> = running
            .values()
            .map(|p| {
                let key = Key { kind: Kind::Pod, namespace: p.namespace.clone(), name: p.name.clone() };
                let m = st.store.manifest(&key);
                let terminating =
                    m.as_ref().is_some_and(|m| m.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()));
                let ready = match &m {
                    Some(m) => m
                        .pointer("/status/conditions")
                        .and_then(Value::as_array)
                        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                        .is_none_or(|c| c["status"] == "True"),
                    None => p.ready,
                };
                let node_name = p.node.clone().or_else(|| p.port.as_ref().map(|_| node.to_string()));
                PodState { pod: p, node_name, ready, terminating }
            })
            .collect();
        let mut out = Vec::new();
        for (_, o, _) in all {
            let k8s::Object::Service(s) = o else { continue };
            if (!namespace.is_empty() && s.namespace != namespace)
                || has_slices.contains(&(s.namespace.as_str(), s.name.as_str()))
            {
                continue;
            }
            let generated = if s.endpoints.is_empty() {
                endpointslice::generate(s, &states)
            } else {
                endpointslice::from_endpoints(s, &states)
            };
            for slice in generated {
                let v = serde_json::to_value(&slice).map_err(|e| Refusal::Unavailable(e.to_string()))?;
                let text = v.to_string();
                // The model's form, read back as any applied slice is.
                let model = k8s::parse(k8s::Format::Json, "generated", &text, node, k8s::Validation::Ignore)
                    .map_err(|e| Refusal::Unavailable(e.to_string()))?;
                let Some(m) = model.objects.into_iter().next() else { continue };
                out.push(Listed {
                    key: m.key(),
                    json: serde_json::to_string(&m).map_err(|e| Refusal::Unavailable(e.to_string()))?,
                    origin: Origin::Generated,
                    kubernetes: Some(text),
                });
            }
        }
        Ok(out)
    }
}
