//! Services with Kubernetes semantics: ClusterIP (single or dual stack), NodePort on every node
//! address, LoadBalancer ingress IPs with source ranges, external IPs, ExternalName (kept for
//! DNS, no NAT) and headless (no NAT); target ports by number or by name per endpoint;
//! EndpointSlice conditions; session affinity and traffic policies.

use super::parse::{self, Sec};
use super::Pod;
use crate::config::{Config, PortRef, ServiceConfig};
use crate::error::FieldError;
use std::net::IpAddr;
use std::sync::Arc;
use switch_core::addr::{Addr, Prefix};
use switch_core::service::{
    Backend, BackendState, Frontend, FrontendKind, Parts, ServicePort, ServicePortId, ServicePortSpec, ServiceTable,
};
use switch_core::snapshot::NodeInfo;

/// Kubernetes' default and maximum ClientIP affinity timeout.
const AFFINITY_DEFAULT_S: u32 = 10_800;
const AFFINITY_MAX_S: u32 = 86_400;

fn policy_local(sec: Sec, field: String, v: &str) -> Result<bool, FieldError> {
    match v {
        "Cluster" => Ok(false),
        "Local" => Ok(true),
        _ => Err(FieldError::new(sec, field, format!("'{v}' is not one of Cluster, Local"))),
    }
}

/// A service's endpoints resolved to addresses, before target ports.
struct Ep<'a> {
    ips: Vec<IpAddr>,
    pod: Option<&'a Pod>,
    local: bool,
    state: BackendState,
    weight: u16,
    /// Target ports by service port name, from an EndpointSlice.
    ports: &'a std::collections::BTreeMap<String, u16>,
    /// Serves only the ports in `ports`.
    listed_only: bool,
    /// The node the endpoint runs on, when known.
    node: Option<&'a str>,
}

static NO_PORTS: std::collections::BTreeMap<String, u16> = std::collections::BTreeMap::new();

fn endpoints<'a>(
    sec: Sec,
    i: usize,
    s: &'a ServiceConfig,
    pods: &'a [Pod],
    node: &NodeInfo,
) -> Result<Vec<Ep<'a>>, FieldError> {
    let mut out = Vec::new();
    if let (true, Some(sel)) = (s.endpoints.is_empty(), &s.selector) {
        // The EndpointSlice controller's job: every pod of the namespace with all the
        // selector's labels, ready as its pod is. An empty selector selects nothing, as in
        // Kubernetes (a service without selector has its endpoints managed elsewhere).
        if sel.is_empty() {
            return Ok(out);
        }
        for p in pods.iter().filter(|p| p.namespace == s.namespace) {
            if sel.iter().all(|(k, v)| p.labels.get(k) == Some(v)) {
                let state = if p.ready { BackendState::Ready } else { BackendState::NotServing };
                out.push(Ep {
                    ips: p.ips.clone(),
                    pod: Some(p),
                    local: p.local,
                    state,
                    weight: 1,
                    ports: &NO_PORTS,
                    listed_only: false,
                    node: Some(p.node.as_str()),
                });
            }
        }
        return Ok(out);
    }
    for (j, e) in s.endpoints.iter().enumerate() {
        let f = |x: &str| format!("services[{i}].endpoints[{j}].{x}");
        let pod = match &e.pod {
            Some(name) => Some(
                pods.iter()
                    .find(|p| p.name == *name && p.namespace == s.namespace)
                    .ok_or_else(|| FieldError::new(sec, f("pod"), format!("no pod {}/{name}", s.namespace)))?,
            ),
            None => None,
        };
        let ips = match (&e.ip, pod) {
            (Some(ip), _) => vec![parse::ip(sec, &f("ip"), ip)?],
            (None, Some(p)) => p.ips.clone(),
            (None, None) => return Err(FieldError::new(sec, f("ip"), "an endpoint needs `ip` or `pod`")),
        };
        if e.weight == 0 {
            return Err(FieldError::new(sec, f("weight"), "must be at least 1"));
        }
        let node_name = e.node.as_deref().or_else(|| pod.map(|p| p.node.as_str()));
        let local = node_name == Some(node.name.as_str());
        let state = if e.ready {
            BackendState::Ready
        } else if e.serving && e.terminating {
            BackendState::Terminating
        } else {
            BackendState::NotServing
        };
        out.push(Ep {
            ips,
            pod,
            local,
            state,
            weight: e.weight,
            ports: &e.ports,
            listed_only: e.listed_ports_only,
            node: node_name,
        });
    }
    Ok(out)
}

/// One service compiled on its own: its ports (shared with later snapshots while the
/// service does not change), their frontends (`target` indexes `ports`), its ExternalName.
#[derive(Debug, Clone, Default)]
pub(crate) struct CompiledService {
    pub ports: Vec<Arc<ServicePort>>,
    pub frontends: Vec<Frontend>,
    pub external_name: Option<(String, String)>,
    /// Its LoadBalancer addresses this node announces on the uplink.
    pub announce: Vec<Addr>,
    /// The stable ids of `ports`, found by the first assembly that placed them (they do not
    /// change while this compiled form lives), so that later ones need not look them up.
    pub port_ids: std::sync::OnceLock<Vec<u32>>,
}

impl CompiledService {
    /// Its ports and frontends, for patching a flow-owner index.
    pub fn parts(&self) -> Parts<'_> {
        (&self.ports, &self.frontends)
    }
}

/// What compiling one service needs besides the service.
#[derive(Debug, Clone)]
pub(crate) struct ServiceContext {
    pub pods: Vec<Pod>,
    /// (namespace, name) of every pod.
    pub pod_keys: std::collections::HashSet<(String, String)>,
    pub node: NodeInfo,
    pub node_ips: Vec<Addr>,
    pub nodeport_range: (u16, u16),
    /// Where cluster IPs may lie (`datapath.service_cidrs`).
    pub service_cidrs: Vec<Prefix>,
    /// Every node's pod CIDRs: no external or load-balancer IP may lie in them.
    pub pod_cidrs: Vec<Prefix>,
    pub maglev: usize,
    /// Several workers: tables carry what the flow-owner rules look up.
    pub steering: bool,
    /// The podswitch nodes of the cluster that may announce LoadBalancer addresses (this one
    /// included); `None` on a single node, which announces every one.
    pub speakers: Option<Vec<String>>,
    /// The LoadBalancer pools: only their addresses are announced (others belong to whoever
    /// assigned them).
    pub lb_pools: Vec<crate::alloc::Block>,
}

/// The node that announces `ip` among `eligible`: the highest hash of (address, node), so
/// every node computes the same one and only the addresses of a node that leaves move
/// (rendezvous hashing, as MetalLB's layer 2 mode picks its speaker).
pub(crate) fn announcer<'a>(ip: IpAddr, eligible: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    eligible.max_by_key(|n| (crate::alloc::start_of(n, &ip.to_string()), *n))
}

/// A stable affinity group per service (ClientIP entries survive snapshot changes).
fn affinity_group(namespace: &str, name: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(&(namespace, name), &mut h);
    std::hash::Hasher::finish(&h)
}

/// Builds the service table from every service of `cfg`; returns it with the ExternalName
/// services and each service's compiled form (kept for incremental rebuilds).
pub(crate) fn build(
    cfg: &Config,
    ctx: &ServiceContext,
    cache: &mut switch_core::service::MaglevCache,
    ids: &mut Arc<super::ids::Interner<String>>,
) -> Result<BuiltServices, FieldError> {
    let mut compiled = Compiled::new();
    for (i, s) in cfg.services.iter().enumerate() {
        let key = (s.namespace.clone(), s.name.clone());
        if compiled.contains_key(&key) {
            return Err(FieldError::new(
                Some(("services", i)),
                format!("services[{i}].name"),
                format!("service {}/{} is declared twice", s.namespace, s.name),
            ));
        }
        compiled.insert(key, Arc::new(compile(i, s, ctx, cache)?));
    }
    let (table, names) = assemble(&compiled, if ctx.steering { Steer::Full } else { Steer::Off }, ids, Freed::Unused)
        .map_err(|e| FieldError::new(Some(("services", 0)), "services", e.to_string()))?;
    Ok((table, names, compiled))
}

/// The service table, the ExternalName services, and every service compiled.
pub(crate) type BuiltServices = (ServiceTable, Vec<(String, String)>, Compiled);

/// Compiled services by (namespace, name).
pub(crate) type Compiled = std::collections::BTreeMap<(String, String), Arc<CompiledService>>;

/// Whether and how a service table gets the flow-owner index of several workers.
#[derive(Debug)]
pub(crate) enum Steer<'a> {
    /// One worker: no index.
    Off,
    /// Several workers: the index, built whole.
    Full,
    /// Several workers, some services changed: the previous table's index with the changed
    /// services' ports and frontends swapped (`removed` as they were, `added` as they are).
    Patch { prev: &'a ServiceTable, removed: Vec<Parts<'a>>, added: Vec<Parts<'a>> },
}

/// Which service port ids an assembly may free.
#[derive(Debug)]
pub(crate) enum Freed<'a> {
    /// Every id whose port is not in the table (a full build).
    Unused,
    /// The ids of the ports in `.0` that are not in `.1` (a change of a few services: the
    /// ports those services had before, and those they have now; a port's name carries its
    /// service's, so no other service can have it).
    Of(Vec<&'a str>, std::collections::HashSet<&'a str>),
}

/// Puts compiled services together into one table, each service port at its stable id
/// (`ids`, by port name; ids of ports that are gone are freed as `freed` says), with the
/// flow-owner index `steer` asks for; two services may not share a frontend. `ids` is copied
/// only if an id is given or freed.
pub(crate) fn assemble(
    compiled: &Compiled,
    steer: Steer<'_>,
    ids: &mut Arc<super::ids::Interner<String>>,
    freed: Freed<'_>,
) -> Result<(ServiceTable, Vec<(String, String)>), switch_core::service::FrontendClash> {
    let mut placed: Vec<(u32, &Arc<ServicePort>)> = Vec::with_capacity(compiled.len());
    let mut frontends = Vec::with_capacity(compiled.len() * 2);
    let mut names = Vec::new();
    let mut announced = Vec::new();
    for c in compiled.values() {
        let local: &[u32] = match c.port_ids.get() {
            Some(v) => v,
            None => {
                let v = c
                    .ports
                    .iter()
                    .map(|p| match ids.get(&p.spec.name) {
                        Some(id) => id,
                        None => Arc::make_mut(ids).id(&p.spec.name),
                    })
                    .collect();
                c.port_ids.get_or_init(|| v)
            }
        };
        placed.extend(local.iter().copied().zip(&c.ports));
        frontends
            .extend(c.frontends.iter().map(|f| Frontend { target: ServicePortId(local[f.target.0 as usize]), ..*f }));
        names.extend(c.external_name.clone());
        announced.extend(c.announce.iter().copied());
    }
    match freed {
        Freed::Unused => {
            let live: std::collections::HashSet<String> =
                compiled.values().flat_map(|c| c.ports.iter().map(|p| p.spec.name.clone())).collect();
            if live.len() != ids.len() {
                Arc::make_mut(ids).retain(&live);
            }
        }
        Freed::Of(gone, still) => {
            for name in gone.into_iter().filter(|n| !still.contains(n)) {
                Arc::make_mut(ids).free(&name.to_string());
            }
        }
    }
    // Ids not in use hold one shared empty port (no frontend leads there).
    let hole = Arc::new(ServicePort::new(ServicePortSpec::default(), 0));
    let len = placed.iter().map(|(i, _)| *i as usize + 1).max().unwrap_or(0);
    let mut ports = vec![hole; len];
    for (i, p) in placed {
        ports[i as usize] = Arc::clone(p);
    }
    let table = ServiceTable::build_shared(ports, frontends)?.with_announced(announced);
    let table = match steer {
        Steer::Off => table,
        Steer::Full => table.with_steering(),
        Steer::Patch { prev, removed, added } => table.with_steering_patched(prev, &removed, &added),
    };
    Ok((table, names))
}

/// Compiles service `s` (index `i` in its config, for error locations).
pub(crate) fn compile(
    i: usize,
    s: &ServiceConfig,
    ctx: &ServiceContext,
    cache: &mut switch_core::service::MaglevCache,
) -> Result<CompiledService, FieldError> {
    let (pods, node, node_ips, nodeport_range, maglev) =
        (&ctx.pods[..], &ctx.node, &ctx.node_ips[..], ctx.nodeport_range, ctx.maglev);
    let mut ports: Vec<Arc<ServicePort>> = Vec::new();
    let mut frontends: Vec<Frontend> = Vec::new();
    let mut external_name = None;
    let mut announce = Vec::new();
    if s.proxied_elsewhere() {
        // Another proxy's Service (its labels say so): stored, not programmed, as kube-proxy
        // leaves it.
        return Ok(CompiledService {
            ports,
            frontends,
            external_name,
            announce: Vec::new(),
            port_ids: Default::default(),
        });
    }
    {
        let sec = Some(("services", i));
        let f = |x: &str| format!("services[{i}].{x}");
        let (node_port_kind, lb) = match s.service_type.as_str() {
            "ClusterIP" => (false, false),
            "NodePort" => (true, false),
            "LoadBalancer" => (true, true),
            "ExternalName" => {
                let name = s.external_name.clone().ok_or_else(|| {
                    FieldError::new(sec, f("external_name"), "an ExternalName service needs external_name")
                })?;
                external_name = Some((format!("{}/{}", s.namespace, s.name), name));
                return Ok(CompiledService {
                    ports,
                    frontends,
                    external_name,
                    announce: Vec::new(),
                    port_ids: Default::default(),
                });
            }
            t => {
                return Err(FieldError::new(
                    sec,
                    f("type"),
                    format!("'{t}' is not one of ClusterIP, NodePort, LoadBalancer, ExternalName"),
                ))
            }
        };
        let headless = s.cluster_ips.is_empty() || s.cluster_ips.iter().any(|c| c == "None");
        if headless && node_port_kind {
            return Err(FieldError::new(
                sec,
                f("cluster_ips"),
                "a headless service cannot be NodePort or LoadBalancer",
            ));
        }
        let cluster_ips: Vec<IpAddr> = if headless {
            Vec::new()
        } else {
            s.cluster_ips
                .iter()
                .enumerate()
                .map(|(j, c)| parse::ip(sec, &f(&format!("cluster_ips[{j}]")), c))
                .collect::<Result<_, _>>()?
        };
        for (j, c) in cluster_ips.iter().enumerate() {
            if !ctx.service_cidrs.iter().any(|p| p.contains(Addr::from(*c))) {
                let ranges: Vec<String> = ctx.service_cidrs.iter().map(|p| p.to_string()).collect();
                return Err(FieldError::new(
                    sec,
                    f(&format!("cluster_ips[{j}]")),
                    format!("{c} is not in the service CIDRs [{}] (datapath.service_cidrs)", ranges.join(", ")),
                ));
            }
        }
        if cluster_ips.len() == 2 && cluster_ips[0].is_ipv4() == cluster_ips[1].is_ipv4() || cluster_ips.len() > 2 {
            return Err(FieldError::new(sec, f("cluster_ips"), "at most one IPv4 and one IPv6 cluster IP"));
        }
        // External and load-balancer addresses are frontends too: one inside the pod or
        // service ranges would take a pod's or another service's traffic (CVE-2020-8554's
        // kind), so it is refused.
        let outside_cluster = |field: String, c: &String| -> Result<IpAddr, FieldError> {
            let ip = parse::ip(sec, &field, c)?;
            let a = Addr::from(ip);
            if let Some(p) = ctx.pod_cidrs.iter().chain(&ctx.service_cidrs).find(|p| p.contains(a)) {
                return Err(FieldError::new(sec, field, format!("{ip} is inside the cluster range {p}")));
            }
            Ok(ip)
        };
        let external_ips: Vec<IpAddr> = s
            .external_ips
            .iter()
            .enumerate()
            .map(|(j, c)| outside_cluster(f(&format!("external_ips[{j}]")), c))
            .collect::<Result<_, _>>()?;
        let lb_ips: Vec<IpAddr> = s
            .load_balancer_ips
            .iter()
            .enumerate()
            .map(|(j, c)| outside_cluster(f(&format!("load_balancer_ips[{j}]")), c))
            .collect::<Result<_, _>>()?;
        if !lb && !lb_ips.is_empty() {
            return Err(FieldError::new(
                sec,
                f("load_balancer_ips"),
                "only a LoadBalancer service has load balancer IPs",
            ));
        }
        let source_ranges: Vec<Prefix> = s
            .load_balancer_source_ranges
            .iter()
            .enumerate()
            .map(|(j, c)| parse::prefix(sec, &f(&format!("load_balancer_source_ranges[{j}]")), c))
            .collect::<Result<_, _>>()?;
        let affinity = match s.session_affinity.as_str() {
            "None" => None,
            "ClientIP" => {
                let t = s.affinity_timeout_seconds.unwrap_or(AFFINITY_DEFAULT_S);
                if t == 0 || t > AFFINITY_MAX_S {
                    return Err(FieldError::new(
                        sec,
                        f("affinity_timeout_seconds"),
                        format!("{t} is outside 1-{AFFINITY_MAX_S}"),
                    ));
                }
                Some(t)
            }
            a => {
                return Err(FieldError::new(sec, f("session_affinity"), format!("'{a}' is not one of None, ClientIP")))
            }
        };
        let external_local = policy_local(sec, f("external_traffic_policy"), &s.external_traffic_policy)?;
        let internal_local = policy_local(sec, f("internal_traffic_policy"), &s.internal_traffic_policy)?;
        let eps = endpoints(sec, i, s, pods, node)?;
        // The LoadBalancer addresses this node answers ARP and neighbour solicitations for:
        // all of them on a single node; in a cluster, those the rendezvous hash gives it among
        // the registered nodes (with `externalTrafficPolicy: Local`, among the nodes that have
        // a ready endpoint, which alone can serve it).
        let ours = s.load_balancer_class.as_deref().is_none_or(|c| c == crate::alloc::service::LOAD_BALANCER_CLASS);
        if lb && ours {
            let eligible: Option<Vec<&str>> = ctx.speakers.as_ref().map(|all| {
                all.iter()
                    .map(String::as_str)
                    .filter(|n| {
                        !external_local || eps.iter().any(|e| e.state == BackendState::Ready && e.node == Some(*n))
                    })
                    .collect()
            });
            announce = lb_ips
                .iter()
                .filter(|ip| ctx.lb_pools.iter().any(|b| b.contains(**ip)))
                .filter(|ip| match &eligible {
                    None => true,
                    Some(e) => announcer(**ip, e.iter().copied()) == Some(node.name.as_str()),
                })
                .map(|ip| Addr::from(*ip))
                .collect();
        }
        let mut names = std::collections::HashSet::new();
        let mut node_ports = std::collections::HashSet::new();
        for (k, p) in s.ports.iter().enumerate() {
            let pf = |x: &str| format!("services[{i}].ports[{k}].{x}");
            let proto = parse::protocol(sec, &pf("protocol"), &p.protocol)?;
            if s.ports.len() > 1 && p.name.is_none() {
                return Err(FieldError::new(sec, pf("name"), "every port of a multi-port service needs a name"));
            }
            if !names.insert(p.name.clone().unwrap_or_default()) {
                return Err(FieldError::new(sec, pf("name"), "port names must be unique within a service"));
            }
            if p.port == 0 {
                return Err(FieldError::new(sec, pf("port"), "must be 1-65535"));
            }
            let node_port = match (node_port_kind, p.node_port) {
                (true, Some(np)) if np >= nodeport_range.0 && np <= nodeport_range.1 => {
                    if !node_ports.insert((np, proto)) {
                        return Err(FieldError::new(
                            sec,
                            pf("node_port"),
                            format!("{np} is used twice in this service"),
                        ));
                    }
                    Some(np)
                }
                (true, Some(np)) => {
                    return Err(FieldError::new(
                        sec,
                        pf("node_port"),
                        format!("{np} is outside the node port range {}-{}", nodeport_range.0, nodeport_range.1),
                    ))
                }
                (true, None) if lb && !s.allocate_load_balancer_node_ports => None,
                (true, None) => {
                    return Err(FieldError::new(
                        sec,
                        pf("node_port"),
                        "a NodePort or LoadBalancer port needs node_port",
                    ))
                }
                (false, Some(_)) => {
                    return Err(FieldError::new(
                        sec,
                        pf("node_port"),
                        "only NodePort and LoadBalancer services have node ports",
                    ))
                }
                (false, None) => None,
            };
            let pname = p.name.clone().unwrap_or_else(|| p.port.to_string());
            for v4 in [true, false] {
                let fam = |a: &IpAddr| a.is_ipv4() == v4;
                // The cluster IPs give the service's IP families (spec.ipFamilies); every
                // frontend of another family is ignored, as kube-proxy does.
                if !cluster_ips.iter().any(fam) {
                    continue;
                }
                let mut backends = Vec::new();
                let mut seen = std::collections::HashSet::new();
                for ep in &eps {
                    let by_slice = ep.ports.get(p.name.as_deref().unwrap_or("")).copied();
                    let target = match &p.target_port {
                        _ if by_slice.is_some() => by_slice,
                        // A slice's endpoints serve the ports the slice lists, by name.
                        _ if ep.listed_only => None,
                        None => Some(p.port),
                        Some(PortRef::Number(0)) => {
                            return Err(FieldError::new(sec, pf("target_port"), "must be 1-65535"))
                        }
                        Some(PortRef::Number(n)) => Some(*n),
                        // A named port resolves per endpoint; an endpoint without it is left out,
                        // as the EndpointSlice controller does.
                        Some(PortRef::Name(name)) => ep.pod.and_then(|pod| pod.named_port(name, proto)),
                    };
                    let Some(target) = target else { continue };
                    for ip in ep.ips.iter().filter(|a| fam(a)) {
                        // An address in two slices with the same port is one backend.
                        if !seen.insert((*ip, target)) {
                            continue;
                        }
                        backends.push(Backend {
                            addr: Addr::from(*ip),
                            port: target,
                            weight: ep.weight,
                            state: ep.state,
                            local: ep.local,
                        });
                    }
                }
                if backends.len() > usize::from(u16::MAX) {
                    return Err(FieldError::new(sec, f("endpoints"), "more than 65535 endpoints in one service"));
                }
                let id = ServicePortId(ports.len() as u32);
                let fam_name = if v4 { "" } else { "/v6" };
                ports.push(Arc::new(ServicePort::cached(
                    ServicePortSpec {
                        name: format!("{}/{}:{}{}", s.namespace, s.name, pname, fam_name),
                        proto,
                        backends,
                        affinity_timeout_s: affinity,
                        affinity_group: affinity_group(&s.namespace, &s.name),
                        external_local,
                        internal_local,
                        source_ranges: source_ranges.clone(),
                    },
                    maglev,
                    cache,
                )));
                let mut fe =
                    |a: Addr, port: u16, kind| frontends.push(Frontend { addr: a, port, proto, kind, target: id });
                for a in cluster_ips.iter().filter(|a| fam(a)) {
                    fe(Addr::from(*a), p.port, FrontendKind::ClusterIp);
                }
                for a in external_ips.iter().filter(|a| fam(a)) {
                    fe(Addr::from(*a), p.port, FrontendKind::ExternalIp);
                }
                for a in lb_ips.iter().filter(|a| fam(a)) {
                    fe(Addr::from(*a), p.port, FrontendKind::LoadBalancer);
                }
                if let Some(np) = node_port {
                    for a in node_ips.iter().filter(|a| a.is_v4() == v4) {
                        fe(*a, np, FrontendKind::NodePort);
                    }
                }
            }
        }
    }
    Ok(CompiledService { ports, frontends, external_name, announce, port_ids: Default::default() })
}
