//! The EndpointSlice controller's job: the `discovery.k8s.io/v1` EndpointSlices Kubernetes
//! would write for a Service with a selector and no slices of its own, from the pods the
//! selector picks in the Service's namespace. The pods are chosen as the table builder
//! chooses a selector's endpoints (`build/services.rs`, `endpoints()`): every pod of the
//! namespace that has all the selector's labels and an address; an empty selector picks none.
//!
//! Endpoints are grouped into one slice per address family (`addressType` IPv4, IPv6) and per
//! set of resolved ports (a named `targetPort` is resolved through each pod's container ports;
//! a pod without that port has no such port in its slice, as in Kubernetes). Kubernetes names
//! a slice with `generateName`; here the suffix is derived from the family and the ports, so
//! the same pods and Service always give the same names.

use super::render::{ENDPOINTSLICE_CONTROLLER, MANAGED_BY_LABEL, SERVICE_NAME_LABEL};
use crate::config::{PodConfig, PortRef, ServiceConfig};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

/// A pod as the EndpointSlice controller sees it.
#[derive(Debug, Clone)]
pub struct PodState<'a> {
    /// The pod as the builder has it (a running pod with its attachment's addresses).
    pub pod: &'a PodConfig,
    /// The node it runs on (`spec.nodeName`): this node's name for a pod with a port.
    pub node_name: Option<String>,
    /// Its Ready condition (`status.conditions[type=Ready]`).
    pub ready: bool,
    /// It has a `metadata.deletionTimestamp`.
    pub terminating: bool,
}

/// One endpoint port of a pod: (name, port, protocol).
type ResolvedPort = (String, u16, String);

/// The ports of service `s` for `pod`, in the service's order.
fn resolve(s: &ServiceConfig, pod: &PodConfig) -> Vec<ResolvedPort> {
    s.ports
        .iter()
        .filter_map(|p| {
            let port = match &p.target_port {
                None => p.port,
                Some(PortRef::Number(n)) => *n,
                Some(PortRef::Name(name)) => {
                    pod.container_ports
                        .iter()
                        .find(|c| c.name.as_deref() == Some(name.as_str()) && c.protocol == p.protocol)?
                        .port
                }
            };
            Some((p.name.clone().unwrap_or_default(), port, p.protocol.clone()))
        })
        .collect()
}

/// A stable five-character suffix (from the alphabet Kubernetes' `generateName` uses).
fn suffix(key: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    // FNV-1a, 64 bits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (0..5)
        .map(|_| {
            let c = ALPHABET[(h % ALPHABET.len() as u64) as usize] as char;
            h /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// The slices of service `s`, sorted by name: none when it has no selector or an empty one;
/// one placeholder without endpoints when the selector picks no pod with an address.
pub fn generate(s: &ServiceConfig, pods: &[PodState<'_>]) -> Vec<EndpointSlice> {
    let Some(sel) = s.selector.as_ref().filter(|sel| !sel.is_empty()) else { return Vec::new() };
    if s.external_name.is_some() && s.service_type == "ExternalName" {
        return Vec::new();
    }
    // (family, ports) -> endpoints
    let mut groups = Groups::new();
    for st in pods {
        let p = st.pod;
        if p.namespace != s.namespace || !sel.iter().all(|(k, v)| p.labels.get(k) == Some(v)) {
            continue;
        }
        let ports = resolve(s, p);
        for family in ["IPv4", "IPv6"] {
            // One address per family: the pod's first.
            let Some(ip) = p.ips.iter().find(|ip| super::render::family(ip) == Some(family)) else { continue };
            groups.entry((family, ports.clone())).or_default().push(Endpoint {
                addresses: vec![ip.clone()],
                conditions: Some(EndpointConditions {
                    ready: Some(st.ready && !st.terminating),
                    serving: Some(st.ready),
                    terminating: Some(st.terminating),
                }),
                node_name: st.node_name.clone(),
                target_ref: Some(ObjectReference {
                    kind: Some("Pod".into()),
                    namespace: Some(p.namespace.clone()),
                    name: Some(p.name.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
    }
    let managed_by = ENDPOINTSLICE_CONTROLLER;
    if groups.is_empty() {
        // No pod selected: the controller keeps one placeholder slice without endpoints or
        // ports, of the Service's first family.
        let family = s.cluster_ips.first().and_then(|ip| super::render::family(ip)).unwrap_or("IPv4");
        return vec![EndpointSlice {
            metadata: ObjectMeta {
                name: Some(format!("{}-{}", s.name, suffix(family))),
                namespace: Some(s.namespace.clone()),
                labels: Some(labels(s, managed_by)),
                ..Default::default()
            },
            address_type: family.to_string(),
            endpoints: None,
            ports: None,
        }];
    }
    slices(s, groups, managed_by)
}

/// The labels of a slice of `s`.
fn labels(s: &ServiceConfig, managed_by: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (SERVICE_NAME_LABEL.to_string(), s.name.clone()),
        (MANAGED_BY_LABEL.to_string(), managed_by.to_string()),
    ])
}

/// Endpoints grouped by (family, ports).
type Groups = BTreeMap<(&'static str, Vec<ResolvedPort>), Vec<Endpoint>>;

/// One slice per group, named by it, sorted by name.
fn slices(s: &ServiceConfig, groups: Groups, managed_by: &str) -> Vec<EndpointSlice> {
    let mut out: Vec<EndpointSlice> = groups
        .into_iter()
        .map(|((family, ports), endpoints)| {
            let key = format!(
                "{family}|{}",
                ports.iter().map(|(n, p, pr)| format!("{n}:{p}/{pr}")).collect::<Vec<_>>().join(",")
            );
            EndpointSlice {
                metadata: ObjectMeta {
                    name: Some(format!("{}-{}", s.name, suffix(&key))),
                    namespace: Some(s.namespace.clone()),
                    labels: Some(labels(s, managed_by)),
                    ..Default::default()
                },
                address_type: family.to_string(),
                endpoints: Some(endpoints),
                ports: Some(
                    ports
                        .into_iter()
                        .map(|(name, port, protocol)| EndpointPort {
                            name: Some(name),
                            port: Some(i32::from(port)),
                            protocol: Some(protocol),
                            ..Default::default()
                        })
                        .collect(),
                ),
            }
        })
        .collect();
    out.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    out
}

/// What labels the slices of a Service's own endpoints (the config model's inline
/// `endpoints`) as their manager.
pub const MODEL_MANAGER: &str = "podswitch.io";

/// The slices of a Service's inline endpoints (`ServiceConfig.endpoints`, the TOML model's),
/// as the builder reads them: an endpoint's address is its `ip` or its pod's, its node its
/// `node` or its pod's; a port it lists (`ports`) wins over the Service's target port, and
/// one it does not list is left out when `listed_ports_only`; a named target port resolves
/// through the pod's container ports. Labelled as managed by [`MODEL_MANAGER`].
pub fn from_endpoints(s: &ServiceConfig, pods: &[PodState<'_>]) -> Vec<EndpointSlice> {
    let mut groups = Groups::new();
    for e in &s.endpoints {
        let pod = e.pod.as_ref().and_then(|n| pods.iter().find(|p| p.pod.namespace == s.namespace && p.pod.name == *n));
        let ips: Vec<String> = match (&e.ip, pod) {
            (Some(ip), _) => vec![ip.clone()],
            (None, Some(p)) => p.pod.ips.clone(),
            (None, None) => continue,
        };
        let ports: Vec<ResolvedPort> = s
            .ports
            .iter()
            .filter_map(|p| {
                let name = p.name.clone().unwrap_or_default();
                let port = match (e.ports.get(&name), &p.target_port) {
                    (Some(n), _) => *n,
                    (None, _) if e.listed_ports_only => return None,
                    (None, None) => p.port,
                    (None, Some(PortRef::Number(n))) => *n,
                    (None, Some(PortRef::Name(n))) => {
                        pod?.pod
                            .container_ports
                            .iter()
                            .find(|c| c.name.as_deref() == Some(n.as_str()) && c.protocol == p.protocol)?
                            .port
                    }
                };
                Some((name, port, p.protocol.clone()))
            })
            .collect();
        for family in ["IPv4", "IPv6"] {
            let Some(ip) = ips.iter().find(|ip| super::render::family(ip) == Some(family)) else { continue };
            groups.entry((family, ports.clone())).or_default().push(Endpoint {
                addresses: vec![ip.clone()],
                conditions: Some(EndpointConditions {
                    ready: Some(e.ready),
                    serving: Some(e.serving),
                    terminating: Some(e.terminating),
                }),
                node_name: e.node.clone().or_else(|| pod.and_then(|p| p.node_name.clone())),
                target_ref: e.pod.as_ref().map(|n| ObjectReference {
                    kind: Some("Pod".into()),
                    namespace: Some(s.namespace.clone()),
                    name: Some(n.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
    }
    slices(s, groups, MODEL_MANAGER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ContainerPort, ServicePortConfig};

    fn pod(name: &str, ips: &[&str], app: &str, http: u16) -> PodConfig {
        PodConfig {
            name: name.into(),
            namespace: "default".into(),
            port: Some(format!("p-{name}")),
            node: None,
            mac: Some("02:00:00:00:00:01".into()),
            ips: ips.iter().map(|s| s.to_string()).collect(),
            labels: [("app".to_string(), app.to_string())].into(),
            container_ports: vec![ContainerPort { name: Some("http".into()), port: http, protocol: "TCP".into() }],
            ready: true,
            hostname: None,
            subdomain: None,
            dns_policy: None,
            dns_config: None,
        }
    }

    fn svc() -> ServiceConfig {
        let mut s: ServiceConfig =
            toml::from_str("name = \"web\"\ncluster_ips = [\"10.96.0.10\"]\nselector = { app = \"web\" }\n")
                .expect("service");
        s.ports = vec![ServicePortConfig {
            name: Some("http".into()),
            protocol: "TCP".into(),
            port: 80,
            target_port: Some(PortRef::Name("http".into())),
            node_port: None,
        }];
        s
    }

    #[test]
    fn slices_per_family_and_port_set_with_conditions() {
        let a = pod("a", &["10.244.1.2", "fd00::2"], "web", 8080);
        let b = pod("b", &["10.244.1.3"], "web", 9090);
        let c = pod("c", &["10.244.1.4"], "other", 8080);
        let states = [
            PodState { pod: &a, node_name: Some("n1".into()), ready: true, terminating: false },
            PodState { pod: &b, node_name: Some("n1".into()), ready: true, terminating: true },
            PodState { pod: &c, node_name: Some("n1".into()), ready: true, terminating: false },
        ];
        let out = generate(&svc(), &states);
        assert_eq!(out.len(), 3, "{out:?}");
        let again = generate(&svc(), &states);
        let names: Vec<_> = out.iter().map(|s| s.metadata.name.clone()).collect();
        assert_eq!(names, again.iter().map(|s| s.metadata.name.clone()).collect::<Vec<_>>(), "stable names");
        assert!(names.iter().all(|n| n.as_deref().is_some_and(|n| n.starts_with("web-") && n.len() == 9)));
        let v6 = out.iter().find(|s| s.address_type == "IPv6").expect("IPv6 slice");
        assert_eq!(v6.endpoints.as_deref().unwrap_or_default()[0].addresses, ["fd00::2"]);
        let term = out
            .iter()
            .flat_map(|s| s.endpoints.iter().flatten())
            .find(|e| e.addresses == ["10.244.1.3"])
            .and_then(|e| e.conditions.clone())
            .expect("b");
        assert_eq!((term.ready, term.serving, term.terminating), (Some(false), Some(true), Some(true)));
        let b_slice =
            out.iter().find(|s| s.endpoints.iter().flatten().any(|e| e.addresses == ["10.244.1.3"])).expect("b");
        assert_eq!(b_slice.ports.as_ref().and_then(|p| p[0].port), Some(9090));
        let labels = b_slice.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(SERVICE_NAME_LABEL).map(String::as_str), Some("web"));
        assert_eq!(labels.get(MANAGED_BY_LABEL).map(String::as_str), Some(ENDPOINTSLICE_CONTROLLER));
    }

    #[test]
    fn inline_endpoints_become_slices() {
        let a = pod("a", &["10.244.1.2", "fd00::2"], "web", 8080);
        let states = [PodState { pod: &a, node_name: Some("n1".into()), ready: true, terminating: false }];
        let mut s = svc();
        s.endpoints = toml::from_str::<crate::config::ServiceConfig>(
            "name = \"w\"\n[[endpoints]]\npod = \"a\"\n[[endpoints]]\nip = \"10.0.0.9\"\nnode = \"n2\"\nready = false\nports = { http = 7000 }\n",
        )
        .expect("endpoints")
        .endpoints;
        let out = from_endpoints(&s, &states);
        assert_eq!(out.len(), 3, "{out:?}");
        let find = |addr: &str| {
            out.iter()
                .find_map(|sl| {
                    let e = sl.endpoints.iter().flatten().find(|e| e.addresses == [addr])?;
                    Some((sl.clone(), e.clone()))
                })
                .unwrap_or_else(|| panic!("{addr}: {out:?}"))
        };
        let (sl, e) = find("10.244.1.2");
        assert_eq!(sl.ports.as_ref().and_then(|p| p[0].port), Some(8080), "named target port through the pod");
        assert_eq!(e.node_name.as_deref(), Some("n1"));
        let (sl, e) = find("10.0.0.9");
        assert_eq!(sl.ports.as_ref().and_then(|p| p[0].port), Some(7000));
        assert_eq!(e.conditions.and_then(|c| c.ready), Some(false));
        find("fd00::2");
        let labels = sl.metadata.labels.unwrap_or_default();
        assert_eq!(labels.get(MANAGED_BY_LABEL).map(String::as_str), Some(MODEL_MANAGER));
    }

    #[test]
    fn no_selector_or_empty_selector_gives_nothing() {
        let a = pod("a", &["10.244.1.2"], "web", 8080);
        let states = [PodState { pod: &a, node_name: None, ready: true, terminating: false }];
        let mut s = svc();
        s.selector = Some([("app".to_string(), "none".to_string())].into());
        let placeholder = generate(&s, &states);
        assert_eq!(placeholder.len(), 1);
        assert!(placeholder[0].endpoints.is_none() && placeholder[0].ports.is_none());
        s.selector = Some(Default::default());
        assert!(generate(&s, &states).is_empty());
        s.selector = None;
        assert!(generate(&s, &states).is_empty());
    }
}
