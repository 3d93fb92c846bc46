//! Config-model objects to Kubernetes objects (`k8s-openapi` types): the reverse of
//! [`super::parse`], for objects that have no stored Kubernetes form (those of the TOML config
//! file or applied as TOML, and Pods created by the CNI plugin from their attachments).
//!
//! Every field of the model is written where the Kubernetes API keeps it, so that reading the
//! result back with [`super::parse`] gives the same model object:
//!
//! | model | Kubernetes |
//! |---|---|
//! | `NamespaceConfig.labels` | `metadata.labels` |
//! | `PodConfig.port`, `.mac` | annotations `podswitch.io/port`, `podswitch.io/mac` |
//! | `PodConfig.node` | `spec.nodeName` |
//! | `PodConfig.ips` | `status.podIP`, `status.podIPs` |
//! | `PodConfig.container_ports` | `spec.containers[0].ports` |
//! | `PodConfig.ready` | `status.conditions[type=Ready]` |
//! | `ServiceConfig.cluster_ips` | `spec.clusterIP`, `spec.clusterIPs` |
//! | `ServiceConfig.load_balancer_ips` | `status.loadBalancer.ingress[].ip` |
//! | `ServiceConfig.affinity_timeout_seconds` | `spec.sessionAffinityConfig.clientIP.timeoutSeconds` |
//! | `Slice` (EndpointSlice) | `discovery.k8s.io/v1` EndpointSlice, one address per endpoint |
//! | `Slice` (Endpoints) | v1 Endpoints, one subset per port set |
//! | `ConfigMapConfig.data` | v1 ConfigMap `data` |
//!
//! What Kubernetes cannot say is not written: an endpoint's `weight` (always 1 in Kubernetes),
//! a Service's inline `endpoints` (Kubernetes keeps them in EndpointSlices: see
//! [`super::endpointslice`]), and the addresses of a Pod bound to this node by name without
//! a port (a Pod whose `spec.nodeName` is this node gets its addresses from its attachment).

use super::{Object, Slice, MAC_ANNOTATION, PORT_ANNOTATION};
use crate::config::{
    ConfigMapConfig, EgressRuleConfig, IngressRuleConfig, LabelSelector, NamespaceConfig, PeerConfig, PodConfig,
    PolicyConfig, PolicyPortConfig, PortRef, ServiceConfig,
};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::networking::v1 as networking;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// Label on an EndpointSlice naming its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label on an EndpointSlice naming what manages it.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// The EndpointSlice controller's value of [`MANAGED_BY_LABEL`].
pub const ENDPOINTSLICE_CONTROLLER: &str = "endpointslice-controller.k8s.io";

/// The Kubernetes form of `o`, as JSON (apiVersion, kind, metadata, spec, status); `None` for
/// kinds Kubernetes does not have (routes, ports). `node` is this node's name: a Pod on this
/// node (one with a port) gets it as `spec.nodeName`.
pub fn object(o: &Object, node: &str) -> Option<serde_json::Value> {
    let v = match o {
        Object::Namespace(n) => serde_json::to_value(namespace(n)),
        Object::Pod(p) => serde_json::to_value(pod(p, node)),
        Object::Service(s) => serde_json::to_value(service(s)),
        Object::Slice(s) if s.kind == super::Kind::Endpoints => serde_json::to_value(endpoints(s)),
        Object::Slice(s) => serde_json::to_value(endpoint_slice(s)),
        Object::NetworkPolicy(p) => serde_json::to_value(policy(p)),
        Object::ConfigMap(c) => serde_json::to_value(config_map(c)),
        Object::Kept(k) => Ok(k.object.clone()),
        Object::Route(_) | Object::Port(_) => return None,
    };
    v.ok()
}

fn some_map(m: &BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!m.is_empty()).then(|| m.clone())
}

fn some_vec<T: Clone>(v: &[T]) -> Option<Vec<T>> {
    (!v.is_empty()).then(|| v.to_vec())
}

fn meta(name: &str, namespace: Option<&str>, labels: &BTreeMap<String, String>) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: some_map(labels),
        ..Default::default()
    }
}

/// A v1 Namespace: `metadata.name`, `metadata.labels`.
pub fn namespace(n: &NamespaceConfig) -> core::Namespace {
    core::Namespace { metadata: meta(&n.name, None, &n.labels), ..Default::default() }
}

/// A v1 ConfigMap: `metadata.name`, `metadata.namespace`, `data`.
pub fn config_map(c: &ConfigMapConfig) -> core::ConfigMap {
    core::ConfigMap {
        metadata: meta(&c.name, Some(&c.namespace), &BTreeMap::new()),
        data: some_map(&c.data),
        ..Default::default()
    }
}

/// A v1 Pod: one container holding the container ports; the port and MAC of a pod on this
/// node as annotations; `spec.nodeName` (the pod's node, or `node` for a pod with a port);
/// `status.podIP(s)`, `phase: Running` and the Ready condition.
pub fn pod(p: &PodConfig, node: &str) -> core::Pod {
    let mut metadata = meta(&p.name, Some(&p.namespace), &p.labels);
    let mut annotations = BTreeMap::new();
    if let Some(port) = &p.port {
        annotations.insert(PORT_ANNOTATION.to_string(), port.clone());
    }
    if let Some(mac) = &p.mac {
        annotations.insert(MAC_ANNOTATION.to_string(), mac.clone());
    }
    metadata.annotations = some_map(&annotations);
    let node_name = match (&p.node, &p.port) {
        (Some(n), _) => Some(n.clone()),
        (None, Some(_)) if !node.is_empty() => Some(node.to_string()),
        _ => None,
    };
    let ports: Vec<core::ContainerPort> = p
        .container_ports
        .iter()
        .map(|c| core::ContainerPort {
            name: c.name.clone(),
            container_port: i32::from(c.port),
            protocol: Some(c.protocol.clone()),
            ..Default::default()
        })
        .collect();
    let container = core::Container { name: p.name.clone(), ports: some_vec(&ports), ..Default::default() };
    let status = core::PodStatus {
        phase: Some(if p.ips.is_empty() { "Pending" } else { "Running" }.into()),
        pod_ip: p.ips.first().cloned(),
        pod_ips: (!p.ips.is_empty()).then(|| p.ips.iter().map(|ip| core::PodIP { ip: ip.clone() }).collect()),
        conditions: Some(vec![core::PodCondition {
            type_: "Ready".into(),
            status: if p.ready { "True" } else { "False" }.into(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    core::Pod {
        metadata,
        spec: Some(core::PodSpec {
            node_name,
            containers: vec![container],
            hostname: p.hostname.clone(),
            subdomain: p.subdomain.clone(),
            dns_policy: p.dns_policy.clone(),
            dns_config: p.dns_config.as_ref().map(|c| core::PodDNSConfig {
                nameservers: some_vec(&c.nameservers),
                searches: some_vec(&c.searches),
                options: some_vec(
                    &c.options
                        .iter()
                        .map(|o| match o.split_once(':') {
                            Some((n, v)) => core::PodDNSConfigOption { name: Some(n.into()), value: Some(v.into()) },
                            None => core::PodDNSConfigOption { name: Some(o.clone()), value: None },
                        })
                        .collect::<Vec<_>>(),
                ),
            }),
            ..Default::default()
        }),
        status: Some(status),
    }
}

fn int_or_string(p: &PortRef) -> IntOrString {
    match p {
        PortRef::Number(n) => IntOrString::Int(i32::from(*n)),
        PortRef::Name(s) => IntOrString::String(s.clone()),
    }
}

/// The IP family of an address (`IPv4`, `IPv6`), `None` if it is not one.
pub fn family(ip: &str) -> Option<&'static str> {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => Some("IPv4"),
        Ok(std::net::IpAddr::V6(_)) => Some("IPv6"),
        Err(_) => None,
    }
}

/// A v1 Service. `externalTrafficPolicy` is written for NodePort and LoadBalancer Services
/// (the only ones Kubernetes keeps it for) and whenever it is not `Cluster`; the load
/// balancer addresses go to `status.loadBalancer.ingress`.
pub fn service(s: &ServiceConfig) -> core::Service {
    let mut metadata = meta(&s.name, Some(&s.namespace), &s.labels);
    metadata.labels = some_map(&s.labels);
    let ports: Vec<core::ServicePort> = s
        .ports
        .iter()
        .map(|p| core::ServicePort {
            name: p.name.clone(),
            protocol: Some(p.protocol.clone()),
            port: i32::from(p.port),
            target_port: p.target_port.as_ref().map(int_or_string),
            node_port: p.node_port.map(i32::from),
            ..Default::default()
        })
        .collect();
    let families: Vec<String> = s.cluster_ips.iter().filter_map(|ip| family(ip)).map(str::to_string).collect();
    let external = matches!(s.service_type.as_str(), "NodePort" | "LoadBalancer");
    let spec = core::ServiceSpec {
        type_: Some(s.service_type.clone()),
        cluster_ip: s.cluster_ips.first().cloned(),
        cluster_ips: some_vec(&s.cluster_ips),
        ip_families: some_vec(&families),
        // As the API server defaults it (and the allocator writes it).
        ip_family_policy: match families.len() {
            0 => None,
            1 => Some("SingleStack".into()),
            _ => Some("RequireDualStack".into()),
        },
        external_ips: some_vec(&s.external_ips),
        load_balancer_source_ranges: some_vec(&s.load_balancer_source_ranges),
        session_affinity: Some(s.session_affinity.clone()),
        session_affinity_config: s.affinity_timeout_seconds.map(|t| core::SessionAffinityConfig {
            client_ip: Some(core::ClientIPConfig { timeout_seconds: Some(i32::try_from(t).unwrap_or(i32::MAX)) }),
        }),
        external_traffic_policy: (external || s.external_traffic_policy != "Cluster")
            .then(|| s.external_traffic_policy.clone()),
        internal_traffic_policy: Some(s.internal_traffic_policy.clone()),
        external_name: s.external_name.clone(),
        ports: some_vec(&ports),
        selector: s.selector.clone(),
        health_check_node_port: s.health_check_node_port.map(i32::from),
        allocate_load_balancer_node_ports: (!s.allocate_load_balancer_node_ports).then_some(false),
        publish_not_ready_addresses: s.publish_not_ready_addresses.then_some(true),
        ..Default::default()
    };
    let ingress: Vec<core::LoadBalancerIngress> = s
        .load_balancer_ips
        .iter()
        .map(|ip| core::LoadBalancerIngress { ip: Some(ip.clone()), ip_mode: Some("VIP".into()), ..Default::default() })
        .collect();
    // A status only for a load balancer's addresses (the allocator writes none otherwise).
    let status = (!ingress.is_empty()).then(|| core::ServiceStatus {
        load_balancer: Some(core::LoadBalancerStatus { ingress: Some(ingress) }),
        ..Default::default()
    });
    core::Service { metadata, spec: Some(spec), status }
}

fn pod_ref(namespace: &str, pod: &Option<String>) -> Option<core::ObjectReference> {
    pod.as_ref().map(|name| core::ObjectReference {
        kind: Some("Pod".into()),
        namespace: Some(namespace.to_string()),
        name: Some(name.clone()),
        ..Default::default()
    })
}

/// A `discovery.k8s.io/v1` EndpointSlice: `addressType` from the first endpoint's address
/// (IPv4 when there is none), one address per endpoint, its conditions, node and Pod; the
/// ports of its endpoints (every endpoint of a slice read from Kubernetes has the slice's).
pub fn endpoint_slice(s: &Slice) -> discovery::EndpointSlice {
    let address_type = s.endpoints.iter().find_map(|e| e.ip.as_deref().and_then(family)).unwrap_or("IPv4").to_string();
    let mut ports: BTreeMap<String, u16> = BTreeMap::new();
    for e in &s.endpoints {
        ports.extend(e.ports.iter().map(|(k, v)| (k.clone(), *v)));
    }
    let ports: Vec<discovery::EndpointPort> = ports
        .into_iter()
        .map(|(name, port)| discovery::EndpointPort {
            name: Some(name),
            port: Some(i32::from(port)),
            protocol: Some("TCP".into()),
            ..Default::default()
        })
        .collect();
    let endpoints: Vec<discovery::Endpoint> = s
        .endpoints
        .iter()
        .map(|e| discovery::Endpoint {
            addresses: e.ip.iter().cloned().collect(),
            conditions: Some(discovery::EndpointConditions {
                ready: Some(e.ready),
                serving: Some(e.serving),
                terminating: Some(e.terminating),
            }),
            node_name: e.node.clone(),
            target_ref: pod_ref(&s.namespace, &e.pod),
            hostname: e.hostname.clone(),
            ..Default::default()
        })
        .collect();
    let labels: BTreeMap<String, String> = [(SERVICE_NAME_LABEL.to_string(), s.service.clone())].into();
    discovery::EndpointSlice {
        metadata: meta(&s.name, Some(&s.namespace), &labels),
        address_type,
        endpoints: Some(endpoints),
        ports: Some(ports),
    }
}

/// A v1 Endpoints: endpoints grouped by their port sets into subsets, ready ones in
/// `addresses`, the others in `notReadyAddresses`.
pub fn endpoints(s: &Slice) -> core::Endpoints {
    let mut subsets: Vec<(BTreeMap<String, u16>, core::EndpointSubset)> = Vec::new();
    for e in &s.endpoints {
        let Some(ip) = &e.ip else { continue };
        let i = match subsets.iter().position(|(p, _)| *p == e.ports) {
            Some(i) => i,
            None => {
                let ports = e
                    .ports
                    .iter()
                    .map(|(name, port)| core::EndpointPort {
                        name: Some(name.clone()),
                        port: i32::from(*port),
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    })
                    .collect();
                subsets.push((e.ports.clone(), core::EndpointSubset { ports: Some(ports), ..Default::default() }));
                subsets.len() - 1
            }
        };
        let a = core::EndpointAddress {
            ip: ip.clone(),
            node_name: e.node.clone(),
            target_ref: pod_ref(&s.namespace, &e.pod),
            ..Default::default()
        };
        let list = if e.ready { &mut subsets[i].1.addresses } else { &mut subsets[i].1.not_ready_addresses };
        list.get_or_insert_with(Vec::new).push(a);
    }
    core::Endpoints {
        metadata: meta(&s.name, Some(&s.namespace), &BTreeMap::new()),
        subsets: some_vec(&subsets.into_iter().map(|(_, s)| s).collect::<Vec<_>>()),
    }
}

fn selector(s: &LabelSelector) -> meta::LabelSelector {
    meta::LabelSelector {
        match_labels: some_map(&s.match_labels),
        match_expressions: some_vec(
            &s.match_expressions
                .iter()
                .map(|r| meta::LabelSelectorRequirement {
                    key: r.key.clone(),
                    operator: r.operator.clone(),
                    values: some_vec(&r.values),
                })
                .collect::<Vec<_>>(),
        ),
    }
}

fn peers(list: &[PeerConfig]) -> Option<Vec<networking::NetworkPolicyPeer>> {
    some_vec(
        &list
            .iter()
            .map(|p| networking::NetworkPolicyPeer {
                pod_selector: p.pod_selector.as_ref().map(selector),
                namespace_selector: p.namespace_selector.as_ref().map(selector),
                ip_block: p
                    .ip_block
                    .as_ref()
                    .map(|b| networking::IPBlock { cidr: b.cidr.clone(), except: some_vec(&b.except) }),
            })
            .collect::<Vec<_>>(),
    )
}

fn policy_ports(list: &[PolicyPortConfig]) -> Option<Vec<networking::NetworkPolicyPort>> {
    some_vec(
        &list
            .iter()
            .map(|p| networking::NetworkPolicyPort {
                protocol: Some(p.protocol.clone()),
                port: p.port.as_ref().map(int_or_string),
                end_port: p.end_port.map(i32::from),
            })
            .collect::<Vec<_>>(),
    )
}

/// A `networking.k8s.io/v1` NetworkPolicy. An ingress or egress rule with neither peers nor
/// ports is written as `{}` (it allows everything), as Kubernetes does.
pub fn policy(p: &PolicyConfig) -> networking::NetworkPolicy {
    let ingress: Vec<networking::NetworkPolicyIngressRule> = p
        .ingress
        .iter()
        .map(|r: &IngressRuleConfig| networking::NetworkPolicyIngressRule {
            from: peers(&r.from),
            ports: policy_ports(&r.ports),
        })
        .collect();
    let egress: Vec<networking::NetworkPolicyEgressRule> = p
        .egress
        .iter()
        .map(|r: &EgressRuleConfig| networking::NetworkPolicyEgressRule {
            to: peers(&r.to),
            ports: policy_ports(&r.ports),
        })
        .collect();
    networking::NetworkPolicy {
        metadata: meta(&p.name, Some(&p.namespace), &BTreeMap::new()),
        spec: Some(networking::NetworkPolicySpec {
            pod_selector: Some(selector(&p.pod_selector)),
            policy_types: p.policy_types.clone(),
            ingress: some_vec(&ingress),
            egress: some_vec(&egress),
        }),
    }
}

/// A node of the cluster as `get nodes` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// `metadata.name`.
    pub name: String,
    /// Its addresses on the underlay (`status.addresses`, type InternalIP).
    pub addresses: Vec<String>,
    /// `spec.podCIDRs`.
    pub pod_cidrs: Vec<String>,
    /// Tunnel kind to it (`vxlan`, `geneve`).
    pub tunnel: String,
    /// Its MAC on the underlay (this node's: the uplink's).
    pub mac: String,
    /// The state of its lease in the cluster store (`held, expires in 12s`); `None` when the
    /// daemon runs without one (a static config).
    pub lease: Option<String>,
    /// Whether it is this node.
    pub local: bool,
}

/// Annotation carrying a node's lease state ([`NodeInfo::lease`]).
pub const LEASE_ANNOTATION: &str = "podswitch.io/lease";
/// Annotation carrying a node's tunnel kind and underlay MAC.
pub const TUNNEL_ANNOTATION: &str = "podswitch.io/tunnel";

/// A v1 Node: `spec.podCIDR(s)`, `status.addresses` (InternalIP), the lease as annotation
/// [`LEASE_ANNOTATION`] and as the Ready condition (`True` while held and for this node,
/// `False` when lapsed, `Unknown` for another node without a cluster store).
pub fn node(n: &NodeInfo) -> core::Node {
    let mut annotations = BTreeMap::new();
    if let Some(l) = &n.lease {
        annotations.insert(LEASE_ANNOTATION.to_string(), l.clone());
    }
    if !n.tunnel.is_empty() {
        annotations.insert(TUNNEL_ANNOTATION.to_string(), format!("{} {}", n.tunnel, n.mac).trim().to_string());
    }
    // This node is Ready while it runs (it answers); another without a lease is Unknown.
    let ready = match &n.lease {
        Some(l) if l.starts_with("held") => "True",
        Some(_) => "False",
        None if n.local => "True",
        None => "Unknown",
    };
    core::Node {
        metadata: meta::ObjectMeta {
            name: Some(n.name.clone()),
            annotations: some_map(&annotations),
            ..Default::default()
        },
        spec: Some(core::NodeSpec {
            pod_cidr: n.pod_cidrs.first().cloned(),
            pod_cidrs: some_vec(&n.pod_cidrs),
            ..Default::default()
        }),
        status: Some(core::NodeStatus {
            addresses: some_vec(
                &n.addresses
                    .iter()
                    .map(|a| core::NodeAddress { type_: "InternalIP".into(), address: a.clone() })
                    .collect::<Vec<_>>(),
            ),
            conditions: Some(vec![core::NodeCondition {
                type_: "Ready".into(),
                status: ready.into(),
                reason: Some(if n.lease.is_some() { "NodeLease" } else { "StaticConfig" }.into()),
                message: n.lease.clone(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::k8s::{parse, Format, Validation};
    use std::path::PathBuf;

    const NODE: &str = "node-1";

    fn repo() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    /// What of `o` Kubernetes can say (see the module's documentation), as JSON.
    fn sayable(o: &Object) -> serde_json::Value {
        let mut o = o.clone();
        match &mut o {
            Object::Service(s) => s.endpoints.clear(),
            Object::Slice(s) => s.endpoints.iter_mut().for_each(|e| e.weight = 1),
            _ => {}
        }
        serde_json::to_value(&o).unwrap_or_default()
    }

    /// Renders `o`, reads it back (strict: the result fits the Kubernetes API schema) and
    /// checks that the same object comes back; returns how many were checked (0 or 1).
    fn round_trip(o: &Object, node: &str, source: &str) -> usize {
        if let Object::Pod(p) = o {
            if p.port.is_none() && p.node.as_deref() == Some(node) {
                // A Pod of this node without a port gets its addresses from its attachment.
                return 0;
            }
        }
        let Some(v) = object(o, node) else { return 0 };
        let text = serde_json::to_string(&v).expect("json");
        let back = parse(Format::Json, source, &text, node, Validation::Strict)
            .unwrap_or_else(|e| panic!("{source}: {} does not read back: {e}\n{text}", o.key()));
        assert_eq!(back.objects.len(), 1, "{source}: {text}");
        assert_eq!(sayable(&back.objects[0]), sayable(o), "{source}: {}\n{text}", o.key());
        // Twice: the rendering of what was read is the same document.
        assert_eq!(object(&back.objects[0], node), Some(v), "{source}: {} renders the same twice", o.key());
        1
    }

    #[test]
    fn the_example_configs_round_trip() {
        let mut n = 0;
        for f in ["configs/node-pcap.toml", "configs/node-pcap-geneve.toml"] {
            let text = std::fs::read_to_string(repo().join(f)).expect(f);
            let c: Config = toml::from_str(&text).expect(f);
            let node = c.node.name.clone();
            let objects = c
                .namespaces
                .into_iter()
                .map(Object::Namespace)
                .chain(c.pods.into_iter().map(Object::Pod))
                .chain(c.services.into_iter().map(Object::Service))
                .chain(c.policies.into_iter().map(Object::NetworkPolicy));
            for o in objects {
                n += round_trip(&o, &node, f);
            }
        }
        assert!(n > 10, "only {n} objects checked");
    }

    #[test]
    fn the_example_manifests_round_trip() {
        let mut n = 0;
        let mut files = vec![repo().join("configs/k8s/web-service.yaml"), repo().join("configs/k8s/web-deny.yaml")];
        let mut seed: Vec<PathBuf> = std::fs::read_dir(repo().join("configs/k8s/seed"))
            .expect("seed")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        seed.sort();
        files.extend(seed);
        for f in files {
            let text = std::fs::read_to_string(&f).expect("manifest");
            let source = f.display().to_string();
            let Ok(p) = parse(Format::Yaml, &source, &text, NODE, Validation::Ignore) else { continue };
            for o in &p.objects {
                n += round_trip(o, NODE, &source);
            }
        }
        assert!(n >= 5, "only {n} objects checked");
    }

    /// Hand-made objects that between them set every field of the model.
    const EVERY_FIELD: &str = r#"
[[namespaces]]
name = "x"
labels = { team = "blue", "kubernetes.io/metadata.name" = "x" }

[[pods]]
name = "a"
namespace = "x"
port = "pa"
mac = "02:00:00:00:00:0a"
ips = ["10.244.1.5", "fd00:244:1::5"]
labels = { app = "web" }
container_ports = [{ name = "http", port = 8080 }, { port = 53, protocol = "UDP" }, { name = "s", port = 9, protocol = "SCTP" }]
ready = false

[[pods]]
name = "far"
namespace = "y"
node = "node-2"
ips = ["10.244.2.9"]

[[pods]]
name = "pending"
node = "node-3"
ips = []

[[services]]
name = "lb"
namespace = "x"
type = "LoadBalancer"
cluster_ips = ["10.96.0.10", "fd00:96::10"]
external_ips = ["192.0.2.10"]
load_balancer_ips = ["203.0.113.7", "2001:db8::7"]
load_balancer_source_ranges = ["192.0.2.0/24"]
session_affinity = "ClientIP"
affinity_timeout_seconds = 600
external_traffic_policy = "Local"
internal_traffic_policy = "Local"
selector = { app = "web" }
labels = { tier = "front" }
health_check_node_port = 32000
allocate_load_balancer_node_ports = false
ports = [
  { name = "http", port = 80, target_port = "http", node_port = 30080 },
  { name = "dns", port = 53, protocol = "UDP", target_port = 5353 },
  { name = "plain", port = 81 },
]

[[services]]
name = "ext"
type = "ExternalName"
external_name = "db.example.com"

[[services]]
name = "headless"
cluster_ips = ["None"]
selector = {}
external_traffic_policy = "Local"

[[services]]
name = "np"
type = "NodePort"
cluster_ips = ["10.96.0.11"]
ports = [{ port = 80, node_port = 30081 }]

[[policies]]
name = "all"
namespace = "x"
pod_selector = { match_labels = { app = "web" }, match_expressions = [{ key = "tier", operator = "NotIn", values = ["db"] }, { key = "x", operator = "Exists" }] }
policy_types = ["Ingress", "Egress"]
ingress = [
  { from = [{ pod_selector = { match_labels = { app = "client" } }, namespace_selector = { match_labels = { team = "blue" } } }, { ip_block = { cidr = "10.0.0.0/8", except = ["10.1.0.0/16"] } }], ports = [{ port = "http" }, { protocol = "UDP", port = 1000, end_port = 2000 }] },
  {},
]
egress = [{ to = [{ namespace_selector = {} }], ports = [{ protocol = "SCTP" }] }]

[[policies]]
name = "default-deny"
"#;

    #[test]
    fn every_field_round_trips() {
        let c: Config = toml::from_str(&format!(
            "[node]\nname = \"{NODE}\"\nrouter_mac = \"02:00:00:00:00:01\"\nuplink_mac = \"02:00:00:00:00:02\"\n{EVERY_FIELD}"
        ))
        .expect("config");
        let objects: Vec<Object> = c
            .namespaces
            .into_iter()
            .map(Object::Namespace)
            .chain(c.pods.into_iter().map(Object::Pod))
            .chain(c.services.into_iter().map(Object::Service))
            .chain(c.policies.into_iter().map(Object::NetworkPolicy))
            .collect();
        let n: usize = objects.iter().map(|o| round_trip(o, NODE, "every field")).sum();
        assert_eq!(n, objects.len());
    }

    #[test]
    fn slices_and_endpoints_round_trip() {
        let manifests = r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-abc, namespace: x, labels: {kubernetes.io/service-name: web}}
addressType: IPv6
ports: [{name: http, port: 8080, protocol: TCP}, {name: "", port: 9090}]
endpoints:
- addresses: ["fd00::5"]
  conditions: {ready: false, serving: true, terminating: true}
  nodeName: node-1
  targetRef: {kind: Pod, name: a, namespace: x}
- addresses: ["fd00::6"]
---
apiVersion: v1
kind: Endpoints
metadata: {name: old, namespace: x}
subsets:
- addresses: [{ip: 10.0.0.1, nodeName: node-2, targetRef: {kind: Pod, name: p1, namespace: x}}]
  notReadyAddresses: [{ip: 10.0.0.2}]
  ports: [{name: http, port: 80}]
- addresses: [{ip: 10.0.0.3}]
  ports: [{name: http, port: 81}]
"#;
        let p = parse(Format::Yaml, "slices", manifests, NODE, Validation::Strict).expect("parse");
        assert_eq!(p.objects.len(), 2);
        for o in &p.objects {
            assert_eq!(round_trip(o, NODE, "slices"), 1);
        }
    }

    #[test]
    fn routes_and_ports_have_no_kubernetes_form() {
        let r =
            Object::Route(crate::config::RouteConfig { prefix: "10.0.0.0/8".into(), via: "uplink".into(), mac: None });
        assert!(object(&r, NODE).is_none());
    }

    #[test]
    fn nodes_render_with_their_lease() {
        let n = NodeInfo {
            name: "node-2".into(),
            addresses: vec!["192.0.2.2".into()],
            pod_cidrs: vec!["10.244.2.0/24".into(), "fd00:244:2::/64".into()],
            tunnel: "vxlan".into(),
            mac: "02:00:00:00:02:02".into(),
            lease: Some("held, expires in 9s".into()),
            local: false,
        };
        let v = serde_json::to_value(node(&n)).expect("json");
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["kind"], "Node");
        assert_eq!(v["spec"]["podCIDR"], "10.244.2.0/24");
        assert_eq!(v["status"]["addresses"][0]["type"], "InternalIP");
        assert_eq!(v["status"]["conditions"][0]["status"], "True");
        assert_eq!(v["metadata"]["annotations"][LEASE_ANNOTATION], "held, expires in 9s");
        let without = serde_json::to_value(node(&NodeInfo { lease: None, local: true, ..n })).expect("json");
        assert_eq!(without["status"]["conditions"][0]["status"], "True", "this node runs");
    }
}
