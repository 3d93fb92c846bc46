//! From a [`Config`] to a validated table snapshot. Everything is checked here, off the packet
//! path; a config that fails leaves whatever snapshot is running untouched.

pub mod dns;
pub mod ids;
mod parse;
mod policy;
pub(crate) mod selector;
pub(crate) mod services;
pub use ids::{Ids, Scope};
#[cfg(test)]
mod tests;

use crate::config::{Config, Labels};
use crate::error::{line_col, locate, ConfigError, FieldError};
use parse::Sec;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use switch_core::addr::{Addr, Prefix};
use switch_core::endpoint::{Endpoint, EndpointTable, Identity};
use switch_core::packet::PortId;
use switch_core::route::{NodeId, RemoteNode, RouteTable, RouteTarget};
use switch_core::service::{MaglevCache, ServiceTable};
use switch_core::snapshot::{NodeInfo, PortInfo, PortKind, Tables};
use switch_core::wire::build::TunnelKind;
use switch_core::wire::MacAddr;

/// A port as the daemon needs it to open its backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub id: PortId,
    pub name: String,
    pub kind: PortKind,
    pub backend: String,
    pub pcap_in: Option<PathBuf>,
    pub pcap_out: Option<PathBuf>,
    pub interface: Option<String>,
}

/// A built snapshot and what the daemon needs besides it.
#[derive(Debug)]
pub struct Built {
    pub tables: Tables,
    pub ports: Vec<PortSpec>,
    /// ExternalName services: (namespace/name, external name), for the DNS answerer to come.
    pub external_names: Vec<(String, String)>,
    pub conntrack_flows: usize,
    pub workers: u16,
    pub max_ports: usize,
    /// Kept by the daemon for service-only changes.
    pub services: ServicesState,
    /// The stable ids this build gave (from [`build`]; [`build_cached`] leaves it empty and
    /// updates the caller's).
    pub ids: Ids,
}

/// The snapshot's port list, indexed by port id. Ids not in use (a pod port detached at run
/// time, say) are nameless pod ports: no endpoint is on them, so nothing is sent there, and
/// a frame claiming to come from one is dropped as from an unknown endpoint.
fn port_infos(ports: &[PortSpec]) -> Vec<PortInfo> {
    let len = ports.iter().map(|p| p.id.index() + 1).max().unwrap_or(0);
    let mut v = vec![PortInfo { name: String::new(), kind: PortKind::Pod }; len];
    for p in ports {
        v[p.id.index()] = PortInfo { name: p.name.clone(), kind: p.kind };
    }
    v
}

/// A pod after validation.
#[derive(Debug, Clone)]
pub(crate) struct Pod {
    pub name: String,
    pub namespace: String,
    pub labels: Labels,
    pub ips: Vec<IpAddr>,
    pub node: String,
    pub local: bool,
    pub ready: bool,
    pub identity: Identity,
    /// (name, port, protocol)
    pub container_ports: Vec<(Option<String>, u16, u8)>,
}

impl Pod {
    pub fn named_port(&self, name: &str, protocol: u8) -> Option<u16> {
        self.container_ports
            .iter()
            .find(|(n, _, p)| n.as_deref() == Some(name) && *p == protocol)
            .map(|(_, port, _)| *port)
    }
}

/// Reads, parses and builds a config file. Relative pcap paths are taken from the file's
/// directory.
pub fn load(path: &Path, generation: u64) -> Result<Built, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read { file: path.to_path_buf(), source: e })?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    build_text(&text, path, &dir, generation)
}

/// Reads a config file into its model and the snapshot built from it.
pub fn read(path: &Path, base_dir: Option<&Path>) -> Result<(Config, Built), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read { file: path.to_path_buf(), source: e })?;
    let dir =
        base_dir.map(Path::to_path_buf).unwrap_or_else(|| path.parent().map(Path::to_path_buf).unwrap_or_default());
    let built = build_text(&text, path, &dir, 1)?;
    let cfg: Config = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
        file: path.to_path_buf(),
        line: 1,
        column: 1,
        message: e.message().to_string(),
    })?;
    Ok((cfg, built))
}

/// Parses and builds config text; `file` names it in errors.
pub fn build_text(text: &str, file: &Path, base_dir: &Path, generation: u64) -> Result<Built, ConfigError> {
    let cfg: Config = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        ConfigError::Syntax { file: file.to_path_buf(), line, column, message: e.message().trim().to_string() }
    })?;
    build(&cfg, base_dir, generation).map_err(|e| ConfigError::Invalid {
        file: file.to_path_buf(),
        line: locate(text, e.section),
        field: e.field,
        message: e.message,
    })
}

fn node_section() -> Sec {
    Some(("node", 0))
}

/// Builds a snapshot from a parsed config.
pub fn build(cfg: &Config, base_dir: &Path, generation: u64) -> Result<Built, FieldError> {
    let mut cache = MaglevCache::default();
    let mut ids = Ids::default();
    let mut built = build_cached(cfg, base_dir, generation, &mut cache, &mut ids)?;
    built.ids = ids;
    Ok(built)
}

/// Builds a snapshot, reusing the Maglev tables of an earlier build whose backends did not
/// change (the daemon keeps `cache` from one change to the next) and the stable ids `ids`
/// gave before. The caller ends the build with `cache.finish()` when it publishes,
/// `cache.abandon()` otherwise, and keeps `ids` only from a build it publishes.
pub fn build_cached(
    cfg: &Config,
    base_dir: &Path,
    generation: u64,
    cache: &mut MaglevCache,
    ids: &mut Ids,
) -> Result<Built, FieldError> {
    build_with(cfg, base_dir, generation, ids, ServicesFrom::Config(cache), &Scope::all(), None)
}

/// Given a build's service context (its pods, node and ranges), the service table, the
/// ExternalName services, and the stable service port ids to place them by.
pub(crate) type GivenServices<'a> = &'a mut dyn FnMut(
    &services::ServiceContext,
    &mut std::sync::Arc<ids::Interner<String>>,
) -> Result<(ServiceTable, Vec<(String, String)>), FieldError>;

/// Where a build's service table comes from.
pub(crate) enum ServicesFrom<'a> {
    /// Compiled from every service of the config (with the Maglev tables of `cache`).
    Config(&'a mut MaglevCache),
    /// Made by the caller from the new service context: a change that touched no service
    /// recompiles only the services whose selectors or EndpointSlices name the pods it
    /// changed, and the config holds no service (`Built::services` then has the context and
    /// no compiled service).
    Given(GivenServices<'a>),
}

/// [`build_cached`] with the service table from `services`.
pub(crate) fn build_with(
    cfg: &Config,
    base_dir: &Path,
    generation: u64,
    ids: &mut Ids,
    from: ServicesFrom<'_>,
    scope: &Scope,
    policies: Option<&[&crate::config::PolicyConfig]>,
) -> Result<Built, FieldError> {
    let n = &cfg.node;
    let ns = node_section();
    if n.name.is_empty() {
        return Err(FieldError::new(ns, "node.name", "must not be empty"));
    }
    let ipv4 = match &n.ipv4 {
        Some(s) => match parse::ip(ns, "node.ipv4", s)? {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => return Err(FieldError::new(ns, "node.ipv4", format!("'{s}' is IPv6; use node.ipv6"))),
        },
        None => None,
    };
    let ipv6 = match &n.ipv6 {
        Some(s) => match parse::ip(ns, "node.ipv6", s)? {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => return Err(FieldError::new(ns, "node.ipv6", format!("'{s}' is IPv4; use node.ipv4"))),
        },
        None => None,
    };
    if ipv4.is_none() && ipv6.is_none() {
        return Err(FieldError::new(ns, "node", "needs ipv4, ipv6 or both"));
    }
    let tunnel = match n.tunnel.as_str() {
        "vxlan" => TunnelKind::Vxlan,
        "geneve" => TunnelKind::Geneve,
        t => return Err(FieldError::new(ns, "node.tunnel", format!("'{t}' is not one of vxlan, geneve"))),
    };
    if n.vni > 0x00ff_ffff {
        return Err(FieldError::new(ns, "node.vni", format!("{} exceeds the 24-bit maximum 16777215", n.vni)));
    }
    if !(576..=9216).contains(&n.uplink_mtu) {
        return Err(FieldError::new(ns, "node.uplink_mtu", format!("{} is outside 576-9216", n.uplink_mtu)));
    }
    let uplink_mac = parse::mac(ns, "node.uplink_mac", &n.uplink_mac)?;
    let node = NodeInfo {
        name: n.name.clone(),
        router_mac: parse::mac(ns, "node.router_mac", &n.router_mac)?,
        uplink_mac,
        host_mac: match &n.host_mac {
            Some(m) => parse::mac(ns, "node.host_mac", m)?,
            None => MacAddr::ZERO,
        },
        vtep_mac: match &n.vtep_mac {
            Some(m) => parse::mac(ns, "node.vtep_mac", m)?,
            None => uplink_mac,
        },
        ipv4,
        ipv6,
        tunnel,
        vni: n.vni,
        uplink_mtu: n.uplink_mtu,
    };
    let dp = &cfg.datapath;
    let dsec = Some(("datapath", 0));
    if !parse::is_prime(dp.maglev_table_size) || dp.maglev_table_size < 7 || dp.maglev_table_size > 1_000_003 {
        return Err(FieldError::new(
            dsec,
            "datapath.maglev_table_size",
            format!("{} must be a prime between 7 and 1000003 (for example 16381 or 65521)", dp.maglev_table_size),
        ));
    }
    if dp.workers == 0 || dp.workers > 64 {
        return Err(FieldError::new(dsec, "datapath.workers", format!("{} is outside 1-64", dp.workers)));
    }
    if dp.conntrack_flows < 64 || dp.conntrack_flows > 1 << 26 {
        return Err(FieldError::new(
            dsec,
            "datapath.conntrack_flows",
            format!("{} is outside 64-67108864", dp.conntrack_flows),
        ));
    }
    let nodeport_range = parse::port_range(dsec, "datapath.nodeport_range", &dp.nodeport_range)?;
    // The allocators' ranges (service CIDRs, node ports, LoadBalancer pools), checked here so
    // that a bad pool stops the config, not every later apply.
    let ranges = crate::alloc::Ranges::from_config(dp).map_err(|e| {
        let (field, message) = e.split_once(": ").unwrap_or(("datapath", e.as_str()));
        FieldError::new(dsec, field, message)
    })?;
    let service_cidrs: Vec<Prefix> = dp
        .service_cidrs
        .iter()
        .enumerate()
        .map(|(j, c)| parse::prefix(dsec, &format!("datapath.service_cidrs[{j}]"), c))
        .collect::<Result<_, _>>()?;
    let policy_reject = match dp.policy_denied.as_str() {
        "drop" => false,
        "reject" => true,
        v => return Err(FieldError::new(dsec, "datapath.policy_denied", format!("'{v}' is not one of drop, reject"))),
    };

    // Ports.
    let mut ports = Vec::new();
    let mut port_ids: HashMap<&str, PortId> = HashMap::new();
    for (i, p) in cfg.ports.iter().enumerate() {
        let sec = Some(("ports", i));
        let kind = match p.kind.as_str() {
            "pod" => PortKind::Pod,
            "uplink" => PortKind::Uplink,
            "host" => PortKind::Host,
            "resolver" => PortKind::Resolver,
            k => {
                return Err(FieldError::new(
                    sec,
                    format!("ports[{i}].kind"),
                    format!("'{k}' is not one of pod, uplink, host, resolver"),
                ))
            }
        };
        let id = PortId(p.id.unwrap_or(i as u16));
        if usize::from(id.0) >= dp.max_ports {
            return Err(FieldError::new(
                sec,
                format!("ports[{i}].id"),
                format!("{} is not below datapath.max_ports ({})", id.0, dp.max_ports),
            ));
        }
        if ports.iter().any(|q: &PortSpec| q.id == id) {
            return Err(FieldError::new(sec, format!("ports[{i}].id"), format!("id {} is used twice", id.0)));
        }
        if p.name.is_empty() || port_ids.insert(p.name.as_str(), id).is_some() {
            return Err(FieldError::new(
                sec,
                format!("ports[{i}].name"),
                format!("'{}' is empty or used twice", p.name),
            ));
        }
        if kind != PortKind::Pod && ports.iter().any(|q: &PortSpec| q.kind == kind) {
            return Err(FieldError::new(
                sec,
                format!("ports[{i}].kind"),
                format!("only one {} port is allowed", p.kind),
            ));
        }
        match p.backend.as_str() {
            "pcap" => {}
            "afpacket" | "afxdp" | "auto" => {
                if p.interface.as_deref().unwrap_or("").is_empty() {
                    return Err(FieldError::new(
                        sec,
                        format!("ports[{i}].interface"),
                        format!("a {} port needs the interface name", p.backend),
                    ));
                }
            }
            b => {
                return Err(FieldError::new(
                    sec,
                    format!("ports[{i}].backend"),
                    format!("'{b}' is not one of pcap, afpacket, afxdp, auto"),
                ))
            }
        }
        if let Some(first) = cfg.ports.first() {
            if first.backend != p.backend {
                return Err(FieldError::new(
                    sec,
                    format!("ports[{i}].backend"),
                    format!("all ports of a node use one backend; ports[0] uses '{}'", first.backend),
                ));
            }
        }
        let path = |s: &Option<String>| s.as_ref().map(|s| base_dir.join(s));
        ports.push(PortSpec {
            id,
            name: p.name.clone(),
            kind,
            backend: p.backend.clone(),
            pcap_in: path(&p.pcap_in),
            pcap_out: path(&p.pcap_out),
            interface: p.interface.clone(),
        });
    }
    if ports.len() > dp.max_ports {
        return Err(FieldError::new(
            dsec,
            "datapath.max_ports",
            format!("{} ports are configured but max_ports is {}", ports.len(), dp.max_ports),
        ));
    }

    // Remote nodes.
    let mut nodes = Vec::new();
    let mut node_ids: HashMap<&str, NodeId> = HashMap::new();
    let mut routes: Vec<(Prefix, RouteTarget)> = Vec::new();
    for (i, rn) in cfg.nodes.iter().enumerate() {
        let sec = Some(("nodes", i));
        if rn.name == n.name || node_ids.insert(rn.name.as_str(), NodeId(i as u16)).is_some() {
            return Err(FieldError::new(
                sec,
                format!("nodes[{i}].name"),
                format!("'{}' is this node or used twice", rn.name),
            ));
        }
        let ip = parse::ip(sec, &format!("nodes[{i}].ip"), &rn.ip)?;
        let has_family = if ip.is_ipv4() { ipv4.is_some() } else { ipv6.is_some() };
        if !has_family {
            return Err(FieldError::new(
                sec,
                format!("nodes[{i}].ip"),
                "this node has no underlay address of that family",
            ));
        }
        // No MAC: learned from the node's ARP on the uplink (`switch-core/src/neighbor/`).
        let mac = if rn.mac.is_empty() { MacAddr::ZERO } else { parse::mac(sec, &format!("nodes[{i}].mac"), &rn.mac)? };
        let vtep = match &rn.vtep_mac {
            Some(m) => parse::mac(sec, &format!("nodes[{i}].vtep_mac"), m)?,
            None if rn.mac.is_empty() => {
                return Err(FieldError::new(
                    sec,
                    format!("nodes[{i}].vtep_mac"),
                    "a node whose underlay MAC is learned needs vtep_mac (its tunnel device's MAC)",
                ))
            }
            None => mac,
        };
        nodes.push(RemoteNode {
            name: rn.name.clone(),
            underlay_ip: Addr::from(ip),
            vtep_mac: vtep,
            next_hop_mac: mac,
        });
        for (j, c) in rn.pod_cidrs.iter().enumerate() {
            routes.push((
                parse::prefix(sec, &format!("nodes[{i}].pod_cidrs[{j}]"), c)?,
                RouteTarget::Tunnel(NodeId(i as u16)),
            ));
        }
    }
    for (j, c) in n.pod_cidrs.iter().enumerate() {
        routes.push((parse::prefix(ns, &format!("node.pod_cidrs[{j}]"), c)?, RouteTarget::Local));
    }
    // Pod and service addresses must never be confused.
    for (p, _) in routes.iter().filter(|(_, t)| matches!(t, RouteTarget::Local | RouteTarget::Tunnel(_))) {
        if let Some(s) = service_cidrs.iter().find(|s| s.contains(p.addr()) || p.contains(s.addr())) {
            return Err(FieldError::new(
                dsec,
                "datapath.service_cidrs",
                format!("service CIDR {s} overlaps the pod CIDR {p}"),
            ));
        }
    }
    for (i, r) in cfg.routes.iter().enumerate() {
        let sec = Some(("routes", i));
        let p = parse::prefix(sec, &format!("routes[{i}].prefix"), &r.prefix)?;
        let t = match r.via.as_str() {
            "uplink" => {
                let m = r.mac.as_deref().or(n.gateway_mac.as_deref()).ok_or_else(|| {
                    FieldError::new(
                        sec,
                        format!("routes[{i}].mac"),
                        "an uplink route needs a next-hop mac (or node.gateway_mac)",
                    )
                })?;
                RouteTarget::Uplink(parse::mac(sec, &format!("routes[{i}].mac"), m)?)
            }
            "host" => RouteTarget::Host,
            "blackhole" => RouteTarget::Blackhole,
            "local" => RouteTarget::Local,
            v => match v.strip_prefix("node:").and_then(|name| node_ids.get(name)) {
                Some(id) => RouteTarget::Tunnel(*id),
                None => {
                    return Err(FieldError::new(
                        sec,
                        format!("routes[{i}].via"),
                        format!("'{v}' is not one of uplink, host, blackhole, local, node:<name of a [[nodes]] entry>"),
                    ))
                }
            },
        };
        routes.retain(|(q, _)| *q != p);
        routes.push((p, t));
    }
    if let Some(gw) = &n.gateway_mac {
        let gw = parse::mac(ns, "node.gateway_mac", gw)?;
        for d in ["0.0.0.0/0", "::/0"] {
            let p: Prefix =
                d.parse().map_err(|_| FieldError::new(ns, "node.gateway_mac", "internal: default prefix"))?;
            if !routes.iter().any(|(q, _)| *q == p) {
                routes.push((p, RouteTarget::Uplink(gw)));
            }
        }
    }

    // Namespaces and pods, identities.
    let mut ns_labels: BTreeMap<String, Labels> = BTreeMap::new();
    for (i, nsc) in cfg.namespaces.iter().enumerate() {
        let mut l = nsc.labels.clone();
        l.insert("kubernetes.io/metadata.name".into(), nsc.name.clone());
        if ns_labels.insert(nsc.name.clone(), l).is_some() {
            return Err(FieldError::new(
                Some(("namespaces", i)),
                format!("namespaces[{i}].name"),
                format!("'{}' is declared twice", nsc.name),
            ));
        }
    }
    let mut pods: Vec<Pod> = Vec::new();
    let mut endpoints = Vec::new();
    // Identities by (namespace, labels), borrowed from the pods; each distinct pair is
    // interned once (see `ids.rs`).
    let mut identity_of: HashMap<(&str, &Labels), Identity> = HashMap::new();
    for p in &cfg.pods {
        identity_of.entry((p.namespace.as_str(), &p.labels)).or_insert(Identity::UNKNOWN);
    }
    let mut live_identities = std::collections::HashSet::with_capacity(identity_of.len());
    for ((ns, labels), v) in identity_of.iter_mut() {
        let key = (ns.to_string(), (*labels).clone());
        *v = Identity(Identity::FIRST_POD + ids.identities.id(&key));
        live_identities.insert(key);
    }
    ids.identities.retain(&live_identities);
    let mut seen_pods: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, p) in cfg.pods.iter().enumerate() {
        let sec = Some(("pods", i));
        let f = |x: &str| format!("pods[{i}].{x}");
        if seen_pods.insert((p.namespace.as_str(), p.name.as_str()), i).is_some() {
            return Err(FieldError::new(sec, f("name"), format!("pod {}/{} is declared twice", p.namespace, p.name)));
        }
        ns_labels.entry(p.namespace.clone()).or_insert_with(|| {
            let mut l = Labels::new();
            l.insert("kubernetes.io/metadata.name".into(), p.namespace.clone());
            l
        });
        let ips = p
            .ips
            .iter()
            .enumerate()
            .map(|(j, s)| parse::ip(sec, &f(&format!("ips[{j}]")), s))
            .collect::<Result<Vec<_>, _>>()?;
        if ips.is_empty() {
            return Err(FieldError::new(sec, f("ips"), "a pod needs at least one IP"));
        }
        let mut cports = Vec::new();
        for (j, cp) in p.container_ports.iter().enumerate() {
            cports.push((
                cp.name.clone(),
                cp.port,
                parse::protocol(sec, &f(&format!("container_ports[{j}].protocol")), &cp.protocol)?,
            ));
        }
        let identity = identity_of[&(p.namespace.as_str(), &p.labels)];
        let (port, mac, local, node_name) = match (&p.port, &p.node) {
            (Some(pn), None) => {
                let id = *port_ids
                    .get(pn.as_str())
                    .ok_or_else(|| FieldError::new(sec, f("port"), format!("no port named '{pn}'")))?;
                if ports.iter().find(|q| q.id == id).is_none_or(|q| q.kind != PortKind::Pod) {
                    return Err(FieldError::new(sec, f("port"), format!("port '{pn}' is not a pod port")));
                }
                let m =
                    p.mac.as_ref().ok_or_else(|| FieldError::new(sec, f("mac"), "a pod on this node needs its MAC"))?;
                (Some(id), parse::mac(sec, &f("mac"), m)?, true, n.name.clone())
            }
            (None, Some(nn)) => {
                // In cluster mode a Pod names the node it was scheduled on, which may not be
                // registered (yet, or any more: its lease expired); the pod is kept, and its
                // address is routed by whatever route covers it (none: `no_route`).
                if cfg.cluster.is_none() && !node_ids.contains_key(nn.as_str()) && *nn != n.name {
                    return Err(FieldError::new(sec, f("node"), format!("no node named '{nn}' in [[nodes]]")));
                }
                (None, MacAddr::ZERO, false, nn.clone())
            }
            _ => {
                return Err(FieldError::new(
                    sec,
                    f("port"),
                    "give `port` for a pod on this node or `node` for a pod elsewhere, not both",
                ))
            }
        };
        endpoints.push(Endpoint {
            name: p.name.clone(),
            namespace: p.namespace.clone(),
            port,
            mac,
            ips: ips.iter().map(|a| Addr::from(*a)).collect(),
            identity,
            ingress: None,
            egress: None,
        });
        pods.push(Pod {
            name: p.name.clone(),
            namespace: p.namespace.clone(),
            labels: p.labels.clone(),
            ips,
            node: node_name,
            local,
            ready: p.ready,
            identity,
            container_ports: cports,
        });
    }

    // Policies, compiled per local pod.
    // The config's policies, or (a pods-only change) the store's, lent rather than copied.
    let own: Vec<&crate::config::PolicyConfig>;
    let policies = match policies {
        Some(p) => p,
        None => {
            own = cfg.policies.iter().collect();
            &own
        }
    };
    let policy = policy::compile(policies, &pods, &ns_labels, &mut endpoints, ids, scope)?;

    let node_ips: Vec<Addr> = ipv4.map(Addr::from).into_iter().chain(ipv6.map(Addr::from)).collect();
    let remote_ips = nodes.iter().map(|r| r.underlay_ip).collect();
    let endpoint_table = EndpointTable::build(endpoints, node_ips.clone(), remote_ips)
        .map_err(|e| FieldError::new(Some(("pods", 0)), "pods", e.to_string()))?;

    let ctx = services::ServiceContext {
        pod_keys: pods.iter().map(|p| (p.namespace.clone(), p.name.clone())).collect(),
        pods,
        node: node.clone(),
        node_ips: node_ips.clone(),
        nodeport_range,
        service_cidrs: service_cidrs.clone(),
        pod_cidrs: routes
            .iter()
            .filter(|(_, t)| matches!(t, RouteTarget::Local | RouteTarget::Tunnel(_)))
            .map(|(p, _)| *p)
            .collect(),
        maglev: dp.maglev_table_size,
        steering: dp.workers > 1,
        lb_pools: ranges.pools.iter().map(|(_, b)| *b).collect(),
        speakers: cfg.cluster.as_ref().map(|c| c.speakers.clone()),
    };
    let (services, external_names, compiled) = match from {
        ServicesFrom::Config(cache) => services::build(cfg, &ctx, cache, &mut ids.service_ports)?,
        ServicesFrom::Given(f) => {
            let (t, names) = f(&ctx, &mut ids.service_ports)?;
            (t, names, services::Compiled::new())
        }
    };

    // Each remote node's own address through its tunnel (unless a route names it): a pod
    // answering a connection that node source-NATed to its address (NodePort, load-balancer
    // or external IP with the Cluster policy) sends the reply back to that node, whose
    // conntrack translates it back to the client. Added after `pod_cidrs`: node addresses are
    // not pod addresses.
    for (i, r) in nodes.iter().enumerate() {
        let p = Prefix::host(r.underlay_ip.to_ip());
        if !routes.iter().any(|(q, _)| *q == p) {
            routes.push((p, RouteTarget::Tunnel(NodeId(i as u16))));
        }
    }
    let mut tables = Tables::new(
        generation,
        node,
        port_infos(&ports),
        endpoint_table,
        RouteTable::build(routes),
        nodes,
        services,
        policy,
        dp.hash_seed,
        dp.verify_l4_checksum,
    );
    tables.policy_reject = policy_reject;
    tables.service_cidrs = service_cidrs;
    let (dns_table, _) = dns::table(cfg, &tables.ports, generation);
    tables.dns = std::sync::Arc::new(dns_table);
    Ok(Built {
        tables,
        ports,
        external_names,
        conntrack_flows: dp.conntrack_flows,
        workers: dp.workers,
        max_ports: dp.max_ports,
        services: ServicesState { ctx, compiled },
        ids: Ids::default(),
    })
}

/// What an incremental rebuild of the service table needs from the last full build.
#[derive(Debug, Clone)]
pub struct ServicesState {
    pub(crate) ctx: services::ServiceContext,
    pub(crate) compiled: services::Compiled,
}
