//! One Kubernetes document to config-model objects.

use super::types::{self, IntOrString};
use super::{Admit, Kind, Object, Parsed, Validation, MAC_ANNOTATION, PORT_ANNOTATION};
use crate::config::{
    ConfigMapConfig, ContainerPort, EgressRuleConfig, EndpointConfig, IngressRuleConfig, IpBlock, LabelSelector,
    NamespaceConfig, PeerConfig, PodConfig, PolicyConfig, PolicyPortConfig, PortRef, SelectorRequirement,
    ServiceConfig, ServicePortConfig,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The endpoints of a service from one EndpointSlice or Endpoints object.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Slice {
    /// EndpointSlice or Endpoints (saved beside the object, not in it).
    #[serde(skip, default = "slice_kind")]
    pub kind: Kind,
    pub name: String,
    pub namespace: String,
    /// The service it belongs to (label `kubernetes.io/service-name`, or the Endpoints' name).
    pub service: String,
    pub endpoints: Vec<EndpointConfig>,
}

fn slice_kind() -> Kind {
    Kind::EndpointSlice
}

type Fail = (String, String);

/// Label on an EndpointSlice naming its service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Reads document `index` (1-based) into `out`.
pub(super) fn document(
    mut v: Value,
    index: usize,
    node: &str,
    validate: Validation,
    admit: &mut dyn Admit,
    out: &mut Parsed,
) -> Result<(), Fail> {
    let doc = format!("document {index}");
    let obj = match &v {
        Value::Null => return Ok(()),
        Value::Object(m) => m,
        _ => return Err((format!("{doc}: "), "is not a mapping with apiVersion and kind".into())),
    };
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("").to_string();
    let api = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("").to_string();
    if kind.is_empty() || api.is_empty() {
        return Err((format!("{doc}: "), "needs apiVersion and kind".into()));
    }
    if kind == "List" || kind.ends_with("List") && api == "v1" {
        let items = match v {
            Value::Object(mut m) => m.remove("items"),
            _ => None,
        };
        let items = match items {
            Some(Value::Array(a)) => a,
            None | Some(Value::Null) => Vec::new(),
            Some(_) => return Err((format!("{doc}: "), "items of a List must be a sequence".into())),
        };
        for (j, item) in items.into_iter().enumerate() {
            document(item, index, node, validate, admit, out)
                .map_err(|(loc, m)| (format!("{doc}, items[{j}]{}", loc.trim_start_matches(&doc)), m))?;
        }
        return Ok(());
    }
    let name = obj.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("").to_string();
    let ns =
        obj.get("metadata").and_then(|m| m.get("namespace")).and_then(Value::as_str).unwrap_or("default").to_string();
    let what = format!("{doc} ({kind} {ns}/{name})");
    let loc = format!("{what}: ");
    let unknown = match unknown_fields(&kind, &api, &v) {
        Ok(u) => u,
        Err(e) if validate == Validation::Strict => {
            return Err((loc, format!("does not fit the Kubernetes API schema of {api} {kind}: {e}")))
        }
        Err(e) => {
            if validate == Validation::Warn {
                out.warnings.push(format!("{what}: does not fit the Kubernetes API schema ({e})"));
            }
            Vec::new()
        }
    };
    if validate != Validation::Ignore {
        for f in &unknown {
            if validate == Validation::Strict {
                return Err((
                    loc,
                    format!("unknown field \"{f}\" (not in the Kubernetes API schema of {api} {kind}; --validate=warn applies it with a warning)"),
                ));
            }
            out.warnings.push(format!("{what}: unknown field \"{f}\" ignored"));
        }
    }
    let skipped_before = out.warnings.len();
    // The API server's admission: allocations and kept status written into the object.
    admit.admit(&kind, &ns, &name, &mut v, &mut out.warnings).map_err(|e| (loc.clone(), e))?;
    let manifest = v.clone();
    let expect = |want: &str| -> Result<(), Fail> {
        if api == want {
            Ok(())
        } else {
            Err((loc.clone(), format!("apiVersion '{api}' is not served for {kind}; use {want}")))
        }
    };
    let mut ignored = Vec::new();
    let obj = match kind.as_str() {
        "Namespace" => {
            expect("v1")?;
            let n: types::Namespace = typed(v, &mut ignored, |_| false).map_err(|e| (loc.clone(), e))?;
            name_check(&n.metadata.name, true).map_err(|e| (loc.clone(), e))?;
            Some(Object::Namespace(NamespaceConfig { name: n.metadata.name, labels: n.metadata.labels }))
        }
        "Pod" => {
            expect("v1")?;
            let p: types::Pod = typed(v, &mut ignored, |_| false).map_err(|e| (loc.clone(), e))?;
            pod(p, node, &mut out.warnings, &what).map_err(|e| (loc.clone(), e))?.map(Object::Pod)
        }
        "Service" => {
            expect("v1")?;
            let s: types::Service = typed(v, &mut ignored, |p| p.starts_with("spec.")).map_err(|e| (loc.clone(), e))?;
            Some(Object::Service(service(s, &mut out.warnings, &what).map_err(|e| (loc.clone(), e))?))
        }
        "EndpointSlice" => {
            expect("discovery.k8s.io/v1")?;
            let s: types::EndpointSlice =
                typed(v, &mut ignored, |p| !p.starts_with("metadata.")).map_err(|e| (loc.clone(), e))?;
            slice(s, &mut out.warnings, &what).map_err(|e| (loc.clone(), e))?.map(Object::Slice)
        }
        "Endpoints" => {
            expect("v1")?;
            let e: types::Endpoints =
                typed(v, &mut ignored, |p| !p.starts_with("metadata.")).map_err(|e| (loc.clone(), e))?;
            Some(Object::Slice(endpoints(e).map_err(|e| (loc.clone(), e))?))
        }
        "NetworkPolicy" => {
            expect("networking.k8s.io/v1")?;
            let p: types::NetworkPolicy =
                typed(v, &mut ignored, |p| p.starts_with("spec.")).map_err(|e| (loc.clone(), e))?;
            Some(Object::NetworkPolicy(policy(p, &mut out.warnings, &what).map_err(|e| (loc.clone(), e))?))
        }
        "ConfigMap" => {
            expect("v1")?;
            let c: types::ConfigMap = typed(v, &mut ignored, |_| false).map_err(|e| (loc.clone(), e))?;
            Some(Object::ConfigMap(config_map(c, &mut out.warnings, &what).map_err(|e| (loc.clone(), e))?))
        }
        "Ingress" | "IngressClass" | "Secret" => {
            expect(if kind == "Secret" { "v1" } else { "networking.k8s.io/v1" })?;
            Some(Object::Kept(kept(&kind, v, &mut out.warnings, &what).map_err(|e| (loc.clone(), e))?))
        }
        other => {
            out.warnings.push(format!(
                "{what}: kind {other} ignored (podswitch reads Namespace, Pod, Service, EndpointSlice, Endpoints, NetworkPolicy, ConfigMap, Ingress, IngressClass, Secret)"
            ));
            None
        }
    };
    if obj.is_none() {
        // Every reason a document is not applied was pushed as a warning just now.
        out.skipped.extend(out.warnings[skipped_before..].iter().cloned());
    }
    for f in ignored.iter().map(|f| clean_path(f)).filter(|f| !unknown.contains(f)) {
        out.warnings.push(format!("{what}: field {f} is not implemented by podswitch; ignored"));
    }
    if let Some(o) = &obj {
        out.manifests.push((o.key(), manifest));
    }
    out.objects.extend(obj);
    Ok(())
}

/// A field path as Kubernetes writes it (`spec.ports[0].nodeport`): serde_ignored puts a `?`
/// for every optional level and list indices as `.0`.
fn clean_path(p: &str) -> String {
    let mut out = String::new();
    for seg in p.split('.').filter(|s| *s != "?") {
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}

/// The fields of `v` that the Kubernetes API schema of `kind` (as `k8s-openapi` describes it)
/// does not have, as paths such as `spec.podSelector.matchLabel`. Kinds podswitch does not
/// read are not checked (they are skipped as a whole).
fn unknown_fields(kind: &str, api: &str, v: &Value) -> Result<Vec<String>, String> {
    use k8s_openapi::api::{core::v1 as core, discovery::v1 as discovery, networking::v1 as networking};
    fn check<T: DeserializeOwned>(v: &Value) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        // serde stops at the first value of the wrong type, so the fields after it are not
        // seen: such a document does not fit the schema and is refused in strict mode.
        match serde_ignored::deserialize::<_, _, T>(v, |p| out.push(clean_path(&p.to_string()))) {
            Ok(_) => Ok(out),
            Err(e) => Err(e.to_string()),
        }
    }
    let served = match kind {
        "EndpointSlice" => "discovery.k8s.io/v1",
        "NetworkPolicy" | "Ingress" | "IngressClass" => "networking.k8s.io/v1",
        _ => "v1",
    };
    if api != served {
        // Refused below with the apiVersion to use.
        return Ok(Vec::new());
    }
    match kind {
        "Namespace" => check::<core::Namespace>(v),
        "Pod" => check::<core::Pod>(v),
        "Service" => check::<core::Service>(v),
        "Endpoints" => check::<core::Endpoints>(v),
        "EndpointSlice" => check::<discovery::EndpointSlice>(v),
        "NetworkPolicy" => check::<networking::NetworkPolicy>(v),
        "ConfigMap" => check::<core::ConfigMap>(v),
        "Ingress" => check::<networking::Ingress>(v),
        "IngressClass" => check::<networking::IngressClass>(v),
        // Never the serde message: it may quote a value.
        "Secret" => check::<core::Secret>(v)
            .map_err(|_| "data values must be base64 strings and stringData values strings".to_string()),
        _ => Ok(Vec::new()),
    }
}

/// Deserializes `v`, collecting the paths of ignored fields that `warn` selects.
fn typed<T: DeserializeOwned>(v: Value, ignored: &mut Vec<String>, warn: impl Fn(&str) -> bool) -> Result<T, String> {
    serde_ignored::deserialize(v, |path| {
        let p = path.to_string();
        if p != "apiVersion" && p != "kind" && warn(&p) {
            ignored.push(p);
        }
    })
    .map_err(|e| e.to_string())
}

/// Kubernetes object names: a DNS label (`label`), or a DNS subdomain.
fn name_check(name: &str, label: bool) -> Result<(), String> {
    let max = if label { 63 } else { 253 };
    let ok_part = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    let ok = !name.is_empty() && name.len() <= max && if label { ok_part(name) } else { name.split('.').all(ok_part) };
    if ok {
        Ok(())
    } else if name.is_empty() {
        Err("metadata.name is missing".into())
    } else {
        Err(format!(
            "metadata.name '{name}' is not a valid {} (lower-case letters, digits and '-', at most {max} characters)",
            if label { "DNS label" } else { "DNS subdomain" }
        ))
    }
}

fn namespace_of(m: &types::ObjectMeta) -> Result<String, String> {
    let ns = m.namespace.clone().unwrap_or_else(|| "default".into());
    name_check(&ns, true).map_err(|e| e.replace("metadata.name", "metadata.namespace"))?;
    Ok(ns)
}

fn pod(p: types::Pod, node: &str, warnings: &mut Vec<String>, what: &str) -> Result<Option<PodConfig>, String> {
    name_check(&p.metadata.name, false)?;
    let namespace = namespace_of(&p.metadata)?;
    if p.spec.host_network {
        warnings.push(format!("{what}: uses the node's network (hostNetwork); not attached to the switch"));
        return Ok(None);
    }
    let mut ips: Vec<String> = p.status.pod_ips.iter().map(|i| i.ip.clone()).collect();
    if ips.is_empty() {
        ips.extend(p.status.pod_ip.clone());
    }
    let ready = p.metadata.deletion_timestamp.is_none()
        && p.status.conditions.iter().find(|c| c.kind == "Ready").is_none_or(|c| c.status == "True");
    let container_ports = p
        .spec
        .containers
        .iter()
        .flat_map(|c| &c.ports)
        .map(|cp| ContainerPort {
            name: cp.name.clone(),
            port: cp.container_port,
            protocol: cp.protocol.clone().unwrap_or_else(|| "TCP".into()),
        })
        .collect();
    let dns_policy = p.spec.dns_policy.clone().filter(|d| !d.is_empty());
    match dns_policy.as_deref() {
        None | Some("ClusterFirst" | "ClusterFirstWithHostNet" | "Default") => {}
        Some("None") if p.spec.dns_config.is_none() => {
            return Err("spec.dnsPolicy None needs spec.dnsConfig".into());
        }
        Some("None") => {}
        Some(d) => {
            return Err(format!(
                "spec.dnsPolicy: '{d}' is not one of ClusterFirst, ClusterFirstWithHostNet, Default, None"
            ))
        }
    }
    if let Some(c) = &p.spec.dns_config {
        if let Some(bad) = c.nameservers.iter().find(|n| n.parse::<std::net::IpAddr>().is_err()) {
            return Err(format!("spec.dnsConfig.nameservers: '{bad}' is not an IP address"));
        }
    }
    let attached = p.metadata.annotations.get(PORT_ANNOTATION).cloned();
    let (port, mac, node_name) = match attached {
        Some(port) => {
            if ips.is_empty() {
                return Err(format!("annotation {PORT_ANNOTATION} needs the pod's addresses in status.podIPs"));
            }
            let mac = p
                .metadata
                .annotations
                .get(MAC_ANNOTATION)
                .cloned()
                .ok_or_else(|| format!("annotation {PORT_ANNOTATION} needs {MAC_ANNOTATION} beside it"))?;
            (Some(port), Some(mac), None)
        }
        None => match p.spec.node_name.clone() {
            Some(n) if !n.is_empty() && n != node => {
                if ips.is_empty() {
                    warnings.push(format!("{what}: has no IP yet (status.podIPs); kept, and in force once it has one"));
                }
                (None, None, Some(n))
            }
            // This node's, or not scheduled yet (as `kubectl run --dry-run -o yaml` writes a
            // pod): kept, and bound to its port when the CNI plugin attaches its sandbox,
            // which gives it its addresses.
            _ => {
                ips.clear();
                (None, None, None)
            }
        },
    };
    Ok(Some(PodConfig {
        name: p.metadata.name,
        namespace,
        port,
        node: node_name,
        mac,
        ips,
        labels: p.metadata.labels,
        container_ports,
        ready,
        hostname: p.spec.hostname.filter(|h| !h.is_empty()),
        subdomain: p.spec.subdomain.filter(|h| !h.is_empty()),
        dns_policy,
        dns_config: p.spec.dns_config.map(|c| crate::config::PodDnsConfig {
            nameservers: c.nameservers,
            searches: c.searches,
            options: c
                .options
                .into_iter()
                .map(|o| match o.value {
                    Some(v) => format!("{}:{v}", o.name),
                    None => o.name,
                })
                .collect(),
        }),
    }))
}

fn target_port(t: &Option<IntOrString>, field: &str) -> Result<Option<PortRef>, String> {
    match t {
        None => Ok(None),
        Some(IntOrString::Int(n)) if (1..=65535).contains(n) => Ok(Some(PortRef::Number(*n as u16))),
        Some(IntOrString::Int(n)) => Err(format!("{field}: {n} is outside 1-65535")),
        Some(IntOrString::Str(s)) if s.is_empty() => Err(format!("{field}: empty port name")),
        Some(IntOrString::Str(s)) => Ok(Some(match s.parse::<u16>() {
            Ok(n) if n > 0 => PortRef::Number(n),
            _ => PortRef::Name(s.clone()),
        })),
    }
}

fn service(s: types::Service, warnings: &mut Vec<String>, what: &str) -> Result<ServiceConfig, String> {
    name_check(&s.metadata.name, true)?;
    let namespace = namespace_of(&s.metadata)?;
    let spec = s.spec;
    let service_type = spec.kind.clone().unwrap_or_else(|| "ClusterIP".into());
    let mut cluster_ips = spec.cluster_ips.clone();
    if cluster_ips.is_empty() {
        cluster_ips.extend(spec.cluster_ip.clone().filter(|c| !c.is_empty()));
    }
    if cluster_ips.is_empty() && service_type != "ExternalName" {
        return Err(
            "spec.clusterIP is empty and no allocator ran (the daemon allocates it when the Service is applied); give clusterIP, or \"None\" for a headless service"
                .into(),
        );
    }
    if let (Some(ip), Some(first)) = (&spec.cluster_ip, spec.cluster_ips.first()) {
        if !ip.is_empty() && ip != first {
            return Err(format!("spec.clusterIP '{ip}' must equal spec.clusterIPs[0] '{first}'"));
        }
    }
    let mut lb = Vec::new();
    for i in s.status.load_balancer.iter().flat_map(|l| &l.ingress) {
        match (&i.ip, &i.hostname) {
            (Some(ip), _) => lb.push(ip.clone()),
            (None, Some(h)) => warnings.push(format!("{what}: load balancer ingress hostname {h} ignored (IPs only)")),
            (None, None) => {}
        }
    }
    if let Some(ip) = spec.load_balancer_ip.as_ref().filter(|ip| !ip.is_empty() && !lb.contains(ip)) {
        lb.push(ip.clone());
    }
    let mut ports = Vec::new();
    for (i, p) in spec.ports.iter().enumerate() {
        if spec.ports.len() > 1 && p.name.as_deref().unwrap_or("").is_empty() {
            return Err(format!("spec.ports[{i}].name: every port needs a name when a service has several"));
        }
        if p.port == 0 {
            return Err(format!("spec.ports[{i}].port: must be 1-65535"));
        }
        ports.push(ServicePortConfig {
            name: p.name.clone().filter(|n| !n.is_empty()),
            protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
            port: p.port,
            target_port: target_port(&p.target_port, &format!("spec.ports[{i}].targetPort"))?,
            node_port: p.node_port.filter(|n| *n != 0),
        });
    }
    Ok(ServiceConfig {
        name: s.metadata.name,
        namespace,
        service_type,
        cluster_ips,
        external_ips: spec.external_ips,
        load_balancer_ips: lb,
        load_balancer_source_ranges: spec.load_balancer_source_ranges,
        session_affinity: spec.session_affinity.unwrap_or_else(|| "None".into()),
        affinity_timeout_seconds: spec
            .session_affinity_config
            .and_then(|c| c.client_ip)
            .and_then(|c| c.timeout_seconds),
        external_traffic_policy: spec.external_traffic_policy.unwrap_or_else(|| "Cluster".into()),
        internal_traffic_policy: spec.internal_traffic_policy.unwrap_or_else(|| "Cluster".into()),
        external_name: spec.external_name,
        ports,
        endpoints: Vec::new(),
        selector: spec.selector,
        labels: s.metadata.labels,
        health_check_node_port: spec.health_check_node_port.filter(|n| *n != 0),
        allocate_load_balancer_node_ports: spec.allocate_load_balancer_node_ports.unwrap_or(true),
        load_balancer_class: spec.load_balancer_class,
        publish_not_ready_addresses: spec.publish_not_ready_addresses.unwrap_or(false),
    })
}

fn slice_ports(ports: &[types::SlicePort]) -> BTreeMap<String, u16> {
    ports.iter().filter_map(|p| Some((p.name.clone().unwrap_or_default(), p.port.filter(|n| *n != 0)?))).collect()
}

fn pod_ref(r: &Option<types::ObjectReference>) -> Option<String> {
    r.as_ref().filter(|r| r.kind.as_deref() == Some("Pod")).and_then(|r| r.name.clone())
}

fn slice(s: types::EndpointSlice, warnings: &mut Vec<String>, what: &str) -> Result<Option<Slice>, String> {
    name_check(&s.metadata.name, false)?;
    let namespace = namespace_of(&s.metadata)?;
    let service = s
        .metadata
        .labels
        .get(SERVICE_NAME_LABEL)
        .cloned()
        .ok_or_else(|| format!("metadata.labels: needs {SERVICE_NAME_LABEL} to name its service"))?;
    match s.address_type.as_str() {
        "IPv4" | "IPv6" => {}
        "FQDN" => {
            warnings.push(format!("{what}: addressType FQDN ignored (IPv4 and IPv6 only)"));
            return Ok(None);
        }
        t => return Err(format!("addressType: '{t}' is not one of IPv4, IPv6, FQDN")),
    }
    let ports = slice_ports(&s.ports);
    let mut endpoints = Vec::new();
    for (i, e) in s.endpoints.iter().enumerate() {
        if e.addresses.is_empty() {
            return Err(format!("endpoints[{i}].addresses: needs at least one address"));
        }
        let ready = e.conditions.ready.unwrap_or(true);
        // Only the first address is used, as the API documents it.
        let ip = e.addresses[0].clone();
        let want_v4 = s.address_type == "IPv4";
        match ip.parse::<std::net::IpAddr>() {
            Ok(a) if a.is_ipv4() == want_v4 => {}
            _ => return Err(format!("endpoints[{i}].addresses[0]: '{ip}' is not an {} address", s.address_type)),
        }
        endpoints.push(EndpointConfig {
            pod: pod_ref(&e.target_ref),
            ip: Some(ip),
            node: e.node_name.clone(),
            ready,
            serving: e.conditions.serving.unwrap_or(ready),
            terminating: e.conditions.terminating.unwrap_or(false),
            weight: 1,
            ports: ports.clone(),
            listed_ports_only: true,
            hostname: e.hostname.clone(),
        });
    }
    Ok(Some(Slice { kind: Kind::EndpointSlice, name: s.metadata.name, namespace, service, endpoints }))
}

fn endpoints(e: types::Endpoints) -> Result<Slice, String> {
    name_check(&e.metadata.name, true)?;
    let namespace = namespace_of(&e.metadata)?;
    let mut out = Vec::new();
    for (i, s) in e.subsets.iter().enumerate() {
        let ports = slice_ports(&s.ports);
        for (ready, list) in [(true, &s.addresses), (false, &s.not_ready_addresses)] {
            for a in list {
                if a.ip.parse::<std::net::IpAddr>().is_err() {
                    return Err(format!("subsets[{i}]: '{}' is not an IP address", a.ip));
                }
                out.push(EndpointConfig {
                    pod: pod_ref(&a.target_ref),
                    ip: Some(a.ip.clone()),
                    node: a.node_name.clone(),
                    ready,
                    serving: ready,
                    terminating: false,
                    weight: 1,
                    ports: ports.clone(),
                    listed_ports_only: true,
                    hostname: a.hostname.clone(),
                });
            }
        }
    }
    Ok(Slice {
        kind: Kind::Endpoints,
        name: e.metadata.name.clone(),
        namespace,
        service: e.metadata.name,
        endpoints: out,
    })
}

/// Why `key` is not a ConfigMap key (the API server's `IsConfigMapKey`): `[-._a-zA-Z0-9]+`,
/// at most 253 characters, not `.`, `..` nor starting with `..` (keys become file names).
fn config_map_key(key: &str) -> Option<&'static str> {
    if key.is_empty() {
        Some("a key must not be empty")
    } else if key.len() > 253 {
        Some("a key must be no more than 253 characters")
    } else if !key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        Some("a key must consist of alphanumeric characters, '-', '_' or '.' (regex [-._a-zA-Z0-9]+)")
    } else if key == "." || key == ".." {
        Some("a key must not be '.' or '..'")
    } else if key.starts_with("..") {
        Some("a key must not start with '..'")
    } else {
        None
    }
}

/// A ConfigMap, checked as the API server checks one: its name a DNS subdomain, its keys
/// valid, its values (`data` and `binaryData`) at most [`CONFIG_MAP_MAX_BYTES`] together.
/// `binaryData` is ignored with a warning; `immutable` is kept in the stored form (the
/// store refuses changes to an immutable ConfigMap's data).
///
/// [`CONFIG_MAP_MAX_BYTES`]: crate::config::CONFIG_MAP_MAX_BYTES
fn config_map(c: types::ConfigMap, warnings: &mut Vec<String>, what: &str) -> Result<ConfigMapConfig, String> {
    name_check(&c.metadata.name, false)?;
    let namespace = namespace_of(&c.metadata)?;
    let data = c.data.unwrap_or_default();
    let binary = c.binary_data.unwrap_or_default();
    let mut total = 0usize;
    for (field, key, size) in data
        .iter()
        .map(|(k, v)| ("data", k, v.len()))
        // Base64: three bytes for every four characters.
        .chain(binary.iter().map(|(k, v)| ("binaryData", k, v.trim_end_matches('=').len() * 3 / 4)))
    {
        if let Some(why) = config_map_key(key) {
            return Err(format!("{field}[{key}]: invalid key \"{key}\": {why}"));
        }
        if field == "binaryData" && data.contains_key(key) {
            return Err(format!("binaryData[{key}]: duplicate of key \"{key}\" in data"));
        }
        total += size;
    }
    if total > crate::config::CONFIG_MAP_MAX_BYTES {
        return Err(format!(
            "data: too long: a ConfigMap must have at most {} bytes (its values hold {total})",
            crate::config::CONFIG_MAP_MAX_BYTES
        ));
    }
    if !binary.is_empty() {
        let keys: Vec<&str> = binary.keys().map(String::as_str).collect();
        warnings.push(format!("{what}: binaryData ignored (podswitch reads data only): {}", keys.join(", ")));
    }
    Ok(ConfigMapConfig { name: c.metadata.name, namespace, data })
}

/// An Ingress, IngressClass or Secret, checked (`crate::ingress::validate`) and kept in its
/// Kubernetes form.
fn kept(kind: &str, v: Value, warnings: &mut Vec<String>, what: &str) -> Result<crate::k8s::KeptObject, String> {
    use crate::ingress::validate;
    use k8s_openapi::api::{core::v1 as core, networking::v1 as networking};
    let meta: types::ObjectMeta = serde_json::from_value(v.get("metadata").cloned().unwrap_or(Value::Null))
        .map_err(|e| format!("metadata: {e}"))?;
    name_check(&meta.name, false)?;
    // Values are not quoted: a Secret's must not reach an error message.
    let schema = |e: serde_json::Error| {
        format!("does not fit the Kubernetes API schema of {kind} (line {}, column {})", e.line(), e.column())
    };
    let (k, namespace) = match kind {
        "Ingress" => {
            let i: networking::Ingress = serde_json::from_value(v.clone()).map_err(schema)?;
            validate::ingress(&i, warnings, what)?;
            (Kind::Ingress, namespace_of(&meta)?)
        }
        "IngressClass" => {
            let c: networking::IngressClass = serde_json::from_value(v.clone()).map_err(schema)?;
            validate::ingress_class(&c)?;
            (Kind::IngressClass, String::new())
        }
        _ => {
            let s: core::Secret = serde_json::from_value(v.clone()).map_err(|_| {
                "does not fit the Kubernetes API schema of Secret (data values are base64, stringData values strings)".to_string()
            })?;
            validate::secret(&s)?;
            (Kind::Secret, namespace_of(&meta)?)
        }
    };
    Ok(crate::k8s::KeptObject { kind: k, name: meta.name, namespace, object: v })
}

fn selector(s: types::LabelSelector) -> LabelSelector {
    LabelSelector {
        match_labels: s.match_labels,
        match_expressions: s
            .match_expressions
            .into_iter()
            .map(|r| SelectorRequirement { key: r.key, operator: r.operator, values: r.values })
            .collect(),
    }
}

fn peers(list: Vec<types::Peer>, field: &str, warnings: &mut Vec<String>) -> Vec<PeerConfig> {
    list.into_iter()
        .enumerate()
        .map(|(k, p)| PeerConfig {
            pod_selector: p.pod_selector.map(selector),
            namespace_selector: p.namespace_selector.map(selector),
            ip_block: p.ip_block.map(|b| {
                let f = format!("{field}[{k}].ipBlock");
                IpBlock {
                    cidr: masked(b.cidr, &format!("{f}.cidr"), warnings),
                    except: b
                        .except
                        .into_iter()
                        .enumerate()
                        .map(|(x, e)| masked(e, &format!("{f}.except[{x}]"), warnings))
                        .collect(),
                }
            }),
        })
        .collect()
}

/// An ipBlock CIDR with host bits set (`10.244.1.10/24`) is accepted by the API server (Go's
/// `ParseCIDR` masks it; recent versions warn): it means the masked network. Anything else
/// is returned as written, for the builder to judge.
fn masked(cidr: String, field: &str, warnings: &mut Vec<String>) -> String {
    let Some((ip, len)) = cidr.trim().split_once('/') else { return cidr };
    let (Ok(ip), Ok(len)) = (ip.parse::<std::net::IpAddr>(), len.parse::<u8>()) else { return cidr };
    let Ok(net) = switch_core::addr::Prefix::containing(ip, len) else { return cidr };
    if net.addr() == switch_core::addr::Addr::from(ip) {
        return cidr;
    }
    let canonical = net.to_string();
    warnings.push(format!("{field}: {cidr} has host bits set; taken as {canonical}"));
    canonical
}

fn policy_ports(list: Vec<types::PolicyPort>, field: &str) -> Result<Vec<PolicyPortConfig>, String> {
    list.into_iter()
        .enumerate()
        .map(|(i, p)| {
            let end_port = match p.end_port {
                None => None,
                Some(n) if (1..=65535).contains(&n) => Some(n as u16),
                Some(n) => return Err(format!("{field}.ports[{i}].endPort: {n} is outside 1-65535")),
            };
            Ok(PolicyPortConfig {
                protocol: p.protocol.unwrap_or_else(|| "TCP".into()),
                port: target_port(&p.port, &format!("{field}.ports[{i}].port"))?,
                end_port,
            })
        })
        .collect()
}

fn policy(p: types::NetworkPolicy, warnings: &mut Vec<String>, what: &str) -> Result<PolicyConfig, String> {
    let mut notes = Vec::new();
    name_check(&p.metadata.name, false)?;
    let namespace = namespace_of(&p.metadata)?;
    let spec = p.spec;
    let mut ingress = Vec::new();
    for (j, r) in spec.ingress.into_iter().enumerate() {
        ingress.push(IngressRuleConfig {
            from: peers(r.from, &format!("spec.ingress[{j}].from"), &mut notes),
            ports: policy_ports(r.ports, &format!("spec.ingress[{j}]"))?,
        });
    }
    let mut egress = Vec::new();
    for (j, r) in spec.egress.into_iter().enumerate() {
        egress.push(EgressRuleConfig {
            to: peers(r.to, &format!("spec.egress[{j}].to"), &mut notes),
            ports: policy_ports(r.ports, &format!("spec.egress[{j}]"))?,
        });
    }
    warnings.extend(notes.into_iter().map(|n| format!("{what}: {n}")));
    Ok(PolicyConfig {
        name: p.metadata.name,
        namespace,
        pod_selector: selector(spec.pod_selector),
        policy_types: spec.policy_types,
        ingress,
        egress,
    })
}
