//! `podswitchctl get` and `describe`: objects as Kubernetes writes them (the daemon sends each
//! object's Kubernetes form), in kubectl's shapes: one object for a named get, a `List`
//! otherwise; `-o name` as `service/web`; tables with kubectl's columns.

use super::{table, Fail};
use control::api::pb;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Node, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, NetworkPolicy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ListMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// `get`'s output formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum GetOutput {
    Table,
    Wide,
    Yaml,
    Json,
    /// `kind/name`, one a line.
    Name,
    /// The config model's JSON (podswitch's snake_case fields), with each object's origin.
    Model,
}

/// `kind: List` with its items, as kubectl prints several objects.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct KubeList<'a> {
    api_version: &'static str,
    items: &'a [Value],
    kind: &'static str,
    metadata: ListMeta,
}

/// kubectl's resource name for `-o name` (`service`, `endpointslice.discovery.k8s.io`).
fn resource(kind: &str) -> String {
    match kind {
        "EndpointSlice" => "endpointslice.discovery.k8s.io".into(),
        "NetworkPolicy" => "networkpolicy.networking.k8s.io".into(),
        "Ingress" => "ingress.networking.k8s.io".into(),
        "IngressClass" => "ingressclass.networking.k8s.io".into(),
        k => k.to_ascii_lowercase(),
    }
}

fn print_value(v: &impl serde::Serialize, yaml: bool) -> Result<(), Fail> {
    let text = if yaml {
        serde_yaml_ng::to_string(v).map_err(|e| Fail(2, e.to_string()))?
    } else {
        serde_json::to_string_pretty(v).map_err(|e| Fail(2, e.to_string()))? + "\n"
    };
    print!("{text}");
    Ok(())
}

/// Prints a listing. `named`: a get of one object by name; `all`: every namespace (a
/// NAMESPACE column); `namespace` for "No resources found in ...".
pub fn print(
    kind: control::k8s::Kind,
    r: &pb::ListResponse,
    o: GetOutput,
    named: bool,
    all: bool,
    namespace: &str,
) -> Result<(), Fail> {
    let kind_name = kind.name();
    let items: Vec<(pb::ObjectRef, Option<Value>, &pb::Object)> = r
        .objects
        .iter()
        .map(|x| {
            let v = (!x.kubernetes.is_empty()).then(|| serde_json::from_str(&x.kubernetes).ok()).flatten();
            (x.r#ref.clone().unwrap_or_default(), v, x)
        })
        .collect();
    match o {
        GetOutput::Name => {
            for (k, _, _) in &items {
                println!("{}/{}", resource(kind_name), k.name);
            }
            return Ok(());
        }
        GetOutput::Yaml | GetOutput::Json => {
            let yaml = o == GetOutput::Yaml;
            let values: Vec<Value> = items
                .iter()
                .map(|(k, v, x)| match v {
                    Some(v) => v.clone(),
                    // Routes and ports have no Kubernetes form: the model, as `-o model`.
                    None => serde_json::json!({"kind": k.kind, "name": k.name, "origin": x.origin,
                        "spec": serde_json::from_str::<Value>(&x.json).unwrap_or(Value::Null)}),
                })
                .collect();
            if named && values.len() == 1 {
                return print_value(&values[0], yaml);
            }
            let list = KubeList {
                api_version: "v1",
                items: &values,
                kind: "List",
                metadata: ListMeta { resource_version: Some(String::new()), ..Default::default() },
            };
            return print_value(&list, yaml);
        }
        GetOutput::Table | GetOutput::Wide | GetOutput::Model => {}
    }
    if items.is_empty() {
        if kind.namespaced() && !all {
            eprintln!("No resources found in {namespace} namespace.");
        } else {
            eprintln!("No resources found");
        }
        return Ok(());
    }
    let wide = o == GetOutput::Wide;
    let ns_col = all && kind.namespaced();
    let (head, head_wide): (&[&str], &[&str]) = match kind_name {
        "Service" => (&["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)"], &["SELECTOR"]),
        "Pod" => (&["NAME", "READY", "STATUS", "RESTARTS"], &["IP", "NODE"]),
        "EndpointSlice" => (&["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS"], &[]),
        "Endpoints" => (&["NAME", "ENDPOINTS"], &[]),
        "NetworkPolicy" => (&["NAME", "POD-SELECTOR"], &[]),
        "Namespace" => (&["NAME", "STATUS"], &["LABELS"]),
        "ConfigMap" => (&["NAME", "DATA"], &[]),
        "Ingress" => (&["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS"], &[]),
        "IngressClass" => (&["NAME", "CONTROLLER"], &[]),
        "Secret" => (&["NAME", "TYPE", "DATA"], &[]),
        "Node" => (&["NAME", "STATUS", "ADDRESSES", "POD-CIDRS", "LEASE"], &["TUNNEL"]),
        _ => (&["NAME"], &[]),
    };
    let mut rows = Vec::new();
    let mut h: Vec<String> = Vec::new();
    if ns_col {
        h.push("NAMESPACE".into());
    }
    h.extend(head.iter().map(|s| s.to_string()));
    if wide {
        h.extend(head_wide.iter().map(|s| s.to_string()));
    }
    rows.push(h);
    for (k, v, _) in &items {
        let v = v.clone().unwrap_or(Value::Null);
        let (mut row, extra) = match kind_name {
            "Service" => service_row(&typed::<Service>(v)?),
            "Pod" => pod_row(&typed::<Pod>(v)?),
            "EndpointSlice" => slice_row(&typed::<EndpointSlice>(v)?),
            "Endpoints" => endpoints_row(&typed::<Endpoints>(v)?),
            "NetworkPolicy" => {
                let p = typed::<NetworkPolicy>(v)?;
                (vec![name(&p.metadata), selector(p.spec.and_then(|s| s.pod_selector).as_ref())], vec![])
            }
            "Namespace" => {
                let n = typed::<Namespace>(v)?;
                (vec![name(&n.metadata), "Active".into()], vec![labels(n.metadata.labels.as_ref())])
            }
            "Node" => node_row(&typed::<Node>(v)?),
            "ConfigMap" => {
                let c = typed::<ConfigMap>(v)?;
                let n = c.data.as_ref().map_or(0, |d| d.len()) + c.binary_data.as_ref().map_or(0, |d| d.len());
                (vec![name(&c.metadata), n.to_string()], vec![])
            }
            "Ingress" => ingress_row(&typed::<Ingress>(v)?),
            "IngressClass" => {
                let c = typed::<IngressClass>(v)?;
                (vec![name(&c.metadata), c.spec.and_then(|s| s.controller).unwrap_or_default()], vec![])
            }
            "Secret" => {
                // As kubectl: the type and the number of keys, never the values.
                let s = typed::<Secret>(v)?;
                let n = s.data.as_ref().map_or(0, |d| d.len()) + s.string_data.as_ref().map_or(0, |d| d.len());
                (vec![name(&s.metadata), s.type_.unwrap_or_else(|| "Opaque".into()), n.to_string()], vec![])
            }
            _ => (vec![k.name.clone()], vec![]),
        };
        if ns_col {
            row.insert(0, k.namespace.clone());
        }
        if wide {
            row.extend(extra);
        }
        rows.push(row);
    }
    table(rows);
    Ok(())
}

/// NAME, CLASS, HOSTS, ADDRESS, PORTS as kubectl prints an Ingress.
fn ingress_row(i: &Ingress) -> (Vec<String>, Vec<String>) {
    let spec = i.spec.clone().unwrap_or_default();
    let class = spec.ingress_class_name.clone().unwrap_or_else(|| "<none>".into());
    let hosts: Vec<String> =
        spec.rules.iter().flatten().map(|r| r.host.clone().unwrap_or_else(|| "*".into())).collect();
    let addrs: Vec<String> = i
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|a| a.ip.clone().or_else(|| a.hostname.clone()))
        .collect();
    let ports = if spec.tls.as_ref().is_some_and(|t| !t.is_empty()) { "80, 443" } else { "80" };
    let hosts = if hosts.is_empty() { "*".to_string() } else { hosts.join(",") };
    (vec![name(&i.metadata), class, hosts, addrs.join(","), ports.into()], vec![])
}

fn typed<T: DeserializeOwned>(v: Value) -> Result<T, Fail> {
    serde_json::from_value(v).map_err(|e| Fail(1, format!("the daemon sent an object that does not read back: {e}")))
}

fn name(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    m.name.clone().unwrap_or_default()
}

fn none_if_empty(s: String) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s
    }
}

fn labels(l: Option<&std::collections::BTreeMap<String, String>>) -> String {
    none_if_empty(l.into_iter().flatten().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","))
}

/// A label selector as kubectl prints it (`app=web,tier in (a,b)`); `<none>` when empty.
fn selector(s: Option<&LabelSelector>) -> String {
    let Some(s) = s else { return "<none>".into() };
    let mut parts: Vec<String> = s.match_labels.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
    for r in s.match_expressions.iter().flatten() {
        let vals = r.values.clone().unwrap_or_default().join(",");
        parts.push(match r.operator.as_str() {
            "Exists" => r.key.clone(),
            "DoesNotExist" => format!("!{}", r.key),
            op => format!("{} {} ({vals})", r.key, op.to_ascii_lowercase()),
        });
    }
    none_if_empty(parts.join(","))
}

fn int_or_string(p: &IntOrString) -> String {
    match p {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}

/// The external addresses of a Service as kubectl's EXTERNAL-IP column shows them.
fn external_ip(s: &Service) -> String {
    let spec = s.spec.clone().unwrap_or_default();
    let mut ips: Vec<String> = spec.external_ips.clone().unwrap_or_default();
    let ingress: Vec<String> = s
        .status
        .as_ref()
        .and_then(|st| st.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| i.ip.or(i.hostname))
        .collect();
    match spec.type_.as_deref() {
        Some("ExternalName") => spec.external_name.unwrap_or_else(|| "<none>".into()),
        Some("LoadBalancer") => {
            if ingress.is_empty() && ips.is_empty() {
                "<pending>".into()
            } else {
                ips.extend(ingress);
                ips.join(",")
            }
        }
        _ => none_if_empty(ips.join(",")),
    }
}

fn service_row(s: &Service) -> (Vec<String>, Vec<String>) {
    let spec = s.spec.clone().unwrap_or_default();
    let ports = spec
        .ports
        .iter()
        .flatten()
        .map(|p| {
            let np = p.node_port.map(|n| format!(":{n}")).unwrap_or_default();
            format!("{}{np}/{}", p.port, p.protocol.as_deref().unwrap_or("TCP"))
        })
        .collect::<Vec<_>>()
        .join(",");
    let sel = spec.selector.as_ref().map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","));
    (
        vec![
            name(&s.metadata),
            spec.type_.clone().unwrap_or_else(|| "ClusterIP".into()),
            spec.cluster_ip.clone().filter(|c| !c.is_empty()).unwrap_or_else(|| "<none>".into()),
            external_ip(s),
            none_if_empty(ports),
        ],
        vec![none_if_empty(sel.unwrap_or_default())],
    )
}

fn pod_row(p: &Pod) -> (Vec<String>, Vec<String>) {
    let status = p.status.clone().unwrap_or_default();
    let ready = status.conditions.iter().flatten().find(|c| c.type_ == "Ready").is_none_or(|c| c.status == "True");
    let containers = p.spec.as_ref().map_or(0, |s| s.containers.len()).max(1);
    let ip = status.pod_ip.clone().or_else(|| status.pod_ips.iter().flatten().next().map(|i| i.ip.clone()));
    let phase = if p.metadata.deletion_timestamp.is_some() {
        "Terminating".to_string()
    } else {
        // A Pod with an address runs (podswitch forwards to it).
        status.phase.clone().unwrap_or_else(|| if ip.is_some() { "Running" } else { "Pending" }.into())
    };
    (
        vec![name(&p.metadata), format!("{}/{containers}", if ready { containers } else { 0 }), phase, "0".into()],
        vec![
            ip.unwrap_or_else(|| "<none>".into()),
            p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_else(|| "<none>".into()),
        ],
    )
}

/// A list shortened as kubectl does: the first three, then `+ N more...`.
fn first_three(v: Vec<String>) -> String {
    if v.is_empty() {
        return "<none>".into();
    }
    if v.len() > 3 {
        format!("{} + {} more...", v[..3].join(","), v.len() - 3)
    } else {
        v.join(",")
    }
}

fn slice_row(s: &EndpointSlice) -> (Vec<String>, Vec<String>) {
    let ports: Vec<String> =
        s.ports.iter().flatten().map(|p| p.port.map_or("<unset>".into(), |n| n.to_string())).collect();
    let addrs: Vec<String> = s.endpoints.iter().flatten().flat_map(|e| e.addresses.iter().cloned()).collect();
    let ports = if ports.is_empty() { "<unset>".to_string() } else { ports.join(",") };
    (vec![name(&s.metadata), s.address_type.clone(), ports, first_three(addrs)], vec![])
}

fn endpoints_row(e: &Endpoints) -> (Vec<String>, Vec<String>) {
    let mut out = Vec::new();
    for s in e.subsets.iter().flatten() {
        for a in s.addresses.iter().flatten() {
            let ports: Vec<i32> = s.ports.iter().flatten().map(|p| p.port).collect();
            if ports.is_empty() {
                out.push(a.ip.clone());
            }
            out.extend(ports.iter().map(|p| host_port(&a.ip, *p)));
        }
    }
    (vec![name(&e.metadata), first_three(out)], vec![])
}

fn node_row(n: &Node) -> (Vec<String>, Vec<String>) {
    let status = n.status.clone().unwrap_or_default();
    let ready = status.conditions.iter().flatten().find(|c| c.type_ == "Ready").map(|c| c.status.clone());
    let state = match ready.as_deref() {
        Some("True") => "Ready",
        Some("False") => "NotReady",
        _ => "Unknown",
    };
    let addrs: Vec<String> = status.addresses.iter().flatten().map(|a| a.address.clone()).collect();
    let cidrs = n.spec.as_ref().and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    let annotations = n.metadata.annotations.clone().unwrap_or_default();
    let lease = annotations.get(control::k8s::render::LEASE_ANNOTATION).cloned().unwrap_or_else(|| "<none>".into());
    let tunnel = annotations.get(control::k8s::render::TUNNEL_ANNOTATION).cloned().unwrap_or_else(|| "<none>".into());
    (
        vec![name(&n.metadata), state.into(), none_if_empty(addrs.join(",")), none_if_empty(cidrs.join(",")), lease],
        vec![tunnel],
    )
}

/// `address:port`, an IPv6 address in brackets (Go's `net.JoinHostPort`, as kubectl).
fn host_port(addr: &str, port: i32) -> String {
    if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

/// `describe service`: the Service (from `svc`, its listing) and the endpoints of its
/// EndpointSlices (`slices`: given or generated), with their conditions.
pub fn describe_service(svc: &pb::ListResponse, slices: &pb::ListResponse) -> Result<(), Fail> {
    let Some(x) = svc.objects.first() else { return Err(Fail(1, "service not found".into())) };
    let s: Service = typed(serde_json::from_str(&x.kubernetes).map_err(|e| Fail(1, e.to_string()))?)?;
    let spec = s.spec.clone().unwrap_or_default();
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut add = |k: &str, v: String| lines.push((format!("{k}:"), v));
    add("Name", name(&s.metadata));
    add("Namespace", s.metadata.namespace.clone().unwrap_or_default());
    add("Labels", labels(s.metadata.labels.as_ref()));
    add("Selector", labels(spec.selector.as_ref()));
    add("Type", spec.type_.clone().unwrap_or_else(|| "ClusterIP".into()));
    add("IP Family Policy", spec.ip_family_policy.clone().unwrap_or_else(|| "<none>".into()));
    add("IP Families", none_if_empty(spec.ip_families.clone().unwrap_or_default().join(",")));
    add("IP", spec.cluster_ip.clone().unwrap_or_else(|| "<none>".into()));
    add("IPs", none_if_empty(spec.cluster_ips.clone().unwrap_or_default().join(",")));
    if let Some(e) = spec.external_ips.as_ref().filter(|e| !e.is_empty()) {
        add("External IPs", e.join(","));
    }
    if let Some(n) = &spec.external_name {
        add("External Name", n.clone());
    }
    if spec.type_.as_deref() == Some("LoadBalancer") {
        add("LoadBalancer Ingress", external_ip(&s));
    }
    let slice_objs: Vec<(EndpointSlice, String)> = slices
        .objects
        .iter()
        .filter_map(|o| Some((serde_json::from_str(&o.kubernetes).ok()?, o.origin.clone())))
        .collect();
    for p in spec.ports.iter().flatten() {
        let pname = p.name.clone().filter(|n| !n.is_empty());
        let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
        add("Port", format!("{}  {}/{proto}", pname.as_deref().unwrap_or("<unset>"), p.port));
        let target = p.target_port.as_ref().map_or(p.port.to_string(), int_or_string);
        add("TargetPort", format!("{target}/{proto}"));
        if let Some(np) = p.node_port {
            add("NodePort", format!("{}  {np}/{proto}", pname.as_deref().unwrap_or("<unset>")));
        }
        // The ready addresses serving this port, as kubectl's Endpoints line.
        let mut eps = Vec::new();
        for (sl, _) in &slice_objs {
            let port = sl
                .ports
                .iter()
                .flatten()
                .find(|sp| sp.name.clone().unwrap_or_default() == pname.clone().unwrap_or_default())
                .and_then(|sp| sp.port);
            for e in sl.endpoints.iter().flatten() {
                let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                if let (true, Some(port)) = (ready, port) {
                    eps.extend(e.addresses.iter().map(|a| host_port(a, port)));
                }
            }
        }
        add("Endpoints", first_three(eps));
    }
    add("Session Affinity", spec.session_affinity.clone().unwrap_or_else(|| "None".into()));
    if let Some(t) =
        spec.session_affinity_config.as_ref().and_then(|c| c.client_ip.as_ref()).and_then(|c| c.timeout_seconds)
    {
        add("Session Affinity Timeout", format!("{t}s"));
    }
    let external = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
    if external || spec.external_traffic_policy.is_some() {
        add("External Traffic Policy", spec.external_traffic_policy.clone().unwrap_or_else(|| "Cluster".into()));
    }
    add("Internal Traffic Policy", spec.internal_traffic_policy.clone().unwrap_or_else(|| "Cluster".into()));
    if let Some(h) = spec.health_check_node_port {
        add("HealthCheck NodePort", h.to_string());
    }
    let w = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 2;
    for (k, v) in &lines {
        println!("{k:<w$}{v}");
    }
    println!("Endpoint Slices:");
    if slice_objs.is_empty() {
        println!("  <none>");
    }
    for (sl, origin) in &slice_objs {
        let ports: Vec<String> = sl
            .ports
            .iter()
            .flatten()
            .map(|p| {
                format!(
                    "{}={}/{}",
                    p.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "<unset>".into()),
                    p.port.map_or("<unset>".into(), |n| n.to_string()),
                    p.protocol.as_deref().unwrap_or("TCP")
                )
            })
            .collect();
        println!("  {} ({}, {origin}): ports {}", name(&sl.metadata), sl.address_type, none_if_empty(ports.join(" ")));
        if sl.endpoints.as_ref().is_none_or(Vec::is_empty) {
            println!("    <no endpoints>");
        }
        for e in sl.endpoints.iter().flatten() {
            let c = e.conditions.clone().unwrap_or_default();
            let b = |x: Option<bool>, d: bool| x.unwrap_or(d).to_string();
            let ready = c.ready.unwrap_or(true);
            let pod =
                e.target_ref.as_ref().and_then(|r| r.name.clone()).map(|n| format!("  pod={n}")).unwrap_or_default();
            println!(
                "    {}  ready={} serving={} terminating={}  node={}{pod}",
                e.addresses.join(","),
                ready,
                b(c.serving, ready),
                b(c.terminating, false),
                e.node_name.as_deref().unwrap_or("<none>"),
            );
        }
    }
    Ok(())
}
