//! The cluster DNS names of a config: what the Kubernetes DNS-based service discovery
//! specification (schema 1.1.0) says a cluster answers, compiled into the snapshot's name table
//! (`switch_core::dns`).
//!
//! - ClusterIP Services (and NodePort, LoadBalancer): A/AAAA of the cluster IPs at
//!   `<svc>.<ns>.svc.<zone>`, SRV per named port at `_<port>._<proto>.<svc>.<ns>.svc.<zone>`,
//!   PTR per cluster IP (spec 2.3).
//! - Headless Services: A/AAAA of the ready endpoints (all with `publishNotReadyAddresses`),
//!   `<hostname>.<svc>...` per endpoint (its hostname, else its address dashed), SRV per named
//!   port and endpoint, PTR for endpoints with a hostname (spec 2.4); none ready: no name.
//! - ExternalName Services: a CNAME (spec 2.5).
//! - Pods: `<a-b-c-d>.<ns>.pod.<zone>`; `dns-version.<zone>` TXT "1.1.0" (spec 2.1).
//! - Static host entries (the kube-dns ConfigMap's `hosts`).

use crate::config::{Config, EndpointConfig, ServiceConfig};
use std::net::IpAddr;
use switch_core::addr::Addr;
use switch_core::dns::table::dashed;
use switch_core::dns::{DnsTable, ResolverPort, ZoneBuilder};
use switch_core::packet::PortId;
use switch_core::snapshot::PortInfo;
use switch_core::wire::MacAddr;

/// The namespace and name of the Service whose cluster IPs are the cluster DNS addresses.
pub const KUBE_DNS: (&str, &str) = ("kube-system", "kube-dns");

/// The version of the Kubernetes DNS specification followed (its `dns-version` record).
pub const SCHEMA_VERSION: &str = "1.1.0";

fn cluster_ips(s: &ServiceConfig) -> Vec<IpAddr> {
    s.cluster_ips.iter().filter_map(|c| c.parse().ok()).collect()
}

fn headless(s: &ServiceConfig) -> bool {
    s.service_type != "ExternalName" && cluster_ips(s).is_empty()
}

/// The cluster DNS addresses: the cluster IPs of `kube-system/kube-dns`, then
/// `node.cluster_dns`, without repeats.
pub fn addresses(cfg: &Config) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = cfg
        .services
        .iter()
        .filter(|s| (s.namespace.as_str(), s.name.as_str()) == KUBE_DNS)
        .flat_map(cluster_ips)
        .collect();
    for a in cfg.node.cluster_dns.iter().filter_map(|a| a.parse::<IpAddr>().ok()) {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

/// The resolver port of a config: the port of kind `resolver` the daemon added, with the MAC
/// it gave its interface.
fn resolver(cfg: &Config, ports: &[PortInfo]) -> Option<ResolverPort> {
    let id = ports.iter().position(|p| p.kind == switch_core::snapshot::PortKind::Resolver)?;
    let mac: MacAddr = cfg.dns.resolver_mac.as_deref()?.parse().ok()?;
    let (v4, v6) = cfg.dns.resolver_addrs();
    Some(ResolverPort { port: PortId(id as u16), mac, ipv4: v4.map(Addr::from), ipv6: v6.map(Addr::from) })
}

/// The DNS table of `cfg` (services with their endpoints merged in, pods, the kube-dns
/// ConfigMap's static hosts in `cfg.dns.hosts`), for a snapshot of `generation` (the SOA
/// serial). Names that are not valid DNS names
/// are left out and reported in the returned warnings (a bad name never stops an apply).
pub fn table(cfg: &Config, ports: &[PortInfo], generation: u64) -> (DnsTable, Vec<String>) {
    let mut warnings = Vec::new();
    if !cfg.dns.enabled {
        return (DnsTable::default(), warnings);
    }
    let zone = cfg.node.cluster_domain.trim_end_matches('.').to_ascii_lowercase();
    let mut z = match ZoneBuilder::new(&zone, cfg.dns.ttl) {
        Ok(z) => z,
        Err(e) => {
            warnings.push(format!("node.cluster_domain: {e}; no cluster DNS"));
            return (DnsTable::default(), warnings);
        }
    };
    let mut note = |r: Result<(), String>| {
        if let Err(e) = r {
            warnings.push(e);
        }
    };
    let pods = PodIndex::new(cfg);
    for s in &cfg.services {
        let base = format!("{}.{}.svc.{zone}", s.name, s.namespace);
        if s.service_type == "ExternalName" {
            if let Some(target) = &s.external_name {
                note(z.cname(&base, target));
            }
            continue;
        }
        if headless(s) {
            headless_names(&pods, s, &base, &mut z, &mut note);
            continue;
        }
        for ip in cluster_ips(s) {
            note(z.address(&base, ip));
            note(z.ptr(ip, &base));
        }
        for p in s.ports.iter() {
            if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
                let owner = format!("_{name}._{}.{base}", p.protocol.to_ascii_lowercase());
                note(z.srv(&owner, 0, 100, p.port, &base));
            }
        }
    }
    for p in &cfg.pods {
        for ip in p.ips.iter().filter_map(|a| a.parse::<IpAddr>().ok()) {
            note(z.address(&format!("{}.{}.pod.{zone}", dashed(ip), p.namespace), ip));
        }
    }
    note(z.txt(&format!("dns-version.{zone}"), SCHEMA_VERSION));
    for (name, ip) in &cfg.dns.hosts {
        note(z.host(name, *ip));
    }
    let addrs = addresses(cfg);
    let names = z.build(generation as u32, &addrs);
    // The pods' MTU, as their CNI result gives it: the uplink's less the tunnel headers.
    let v4_underlay = cfg.node.ipv4.is_some() || cfg.node.ipv6.is_none();
    let tunnel = if cfg.node.tunnel == "geneve" {
        switch_core::wire::build::TunnelKind::Geneve
    } else {
        switch_core::wire::build::TunnelKind::Vxlan
    };
    let mtu = cfg.node.uplink_mtu.saturating_sub(switch_core::overlay::outer_len(v4_underlay, tunnel) as u16);
    let table =
        DnsTable { names, addresses: addrs.into_iter().map(Addr::from).collect(), resolver: resolver(cfg, ports), mtu };
    (table, warnings)
}

/// One endpoint of a headless Service as DNS sees it.
struct Named<'a> {
    ip: IpAddr,
    hostname: Option<&'a str>,
    /// Port number by service port name (the endpoint's, from its EndpointSlice).
    ports: Option<&'a std::collections::BTreeMap<String, u16>>,
    /// Its pod, when known (named target ports).
    pod: Option<&'a crate::config::PodConfig>,
}

/// The pods of a config by namespace, and by namespace and name (built once per table).
struct PodIndex<'a> {
    by_ns: std::collections::HashMap<&'a str, Vec<&'a crate::config::PodConfig>>,
    by_name: std::collections::HashMap<(&'a str, &'a str), &'a crate::config::PodConfig>,
}

impl<'a> PodIndex<'a> {
    fn new(cfg: &'a Config) -> PodIndex<'a> {
        let mut by_ns: std::collections::HashMap<&str, Vec<&crate::config::PodConfig>> = Default::default();
        let mut by_name = std::collections::HashMap::new();
        for p in &cfg.pods {
            by_ns.entry(p.namespace.as_str()).or_default().push(p);
            by_name.insert((p.namespace.as_str(), p.name.as_str()), p);
        }
        PodIndex { by_ns, by_name }
    }
}

fn headless_names(
    pods: &PodIndex<'_>,
    s: &ServiceConfig,
    base: &str,
    z: &mut ZoneBuilder,
    note: &mut impl FnMut(Result<(), String>),
) {
    let mut eps: Vec<Named<'_>> = Vec::new();
    let eligible = |ready: bool| ready || s.publish_not_ready_addresses;
    if s.endpoints.is_empty() {
        // Selector-derived endpoints: the namespace's pods with the selector's labels; a pod's
        // hostname counts when its subdomain is the Service's name.
        if let Some(sel) = s.selector.as_ref().filter(|sel| !sel.is_empty()) {
            let in_ns = pods.by_ns.get(s.namespace.as_str()).map_or(&[][..], Vec::as_slice);
            for p in in_ns.iter().filter(|p| eligible(p.ready)) {
                if sel.iter().all(|(k, v)| p.labels.get(k) == Some(v)) {
                    let hostname = p.hostname.as_deref().filter(|_| p.subdomain.as_deref() == Some(s.name.as_str()));
                    for ip in p.ips.iter().filter_map(|a| a.parse().ok()) {
                        eps.push(Named { ip, hostname, ports: None, pod: Some(p) });
                    }
                }
            }
        }
    } else {
        for e in s.endpoints.iter().filter(|e: &&EndpointConfig| eligible(e.ready)) {
            let pod = e.pod.as_deref().and_then(|n| pods.by_name.get(&(s.namespace.as_str(), n)).copied());
            let hostname = e.hostname.as_deref().or_else(|| {
                let pod = pod?;
                pod.hostname.as_deref().filter(|_| pod.subdomain.as_deref() == Some(s.name.as_str()))
            });
            let ips: Vec<IpAddr> = match (&e.ip, pod) {
                (Some(ip), _) => ip.parse().into_iter().collect(),
                (None, Some(p)) => p.ips.iter().filter_map(|a| a.parse().ok()).collect(),
                (None, None) => Vec::new(),
            };
            for ip in ips {
                eps.push(Named { ip, hostname, ports: Some(&e.ports), pod });
            }
        }
    }
    let weight = (100 / eps.len().max(1)).max(1) as u16;
    for e in &eps {
        let host = e.hostname.map_or_else(|| dashed(e.ip), str::to_string);
        let own = format!("{host}.{base}");
        note(z.address(base, e.ip));
        note(z.address(&own, e.ip));
        if e.hostname.is_some() {
            note(z.ptr(e.ip, &own));
        }
        for p in s.ports.iter() {
            let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) else { continue };
            // The endpoint's port: its EndpointSlice's, else the target port (a named one
            // through its pod's container ports), else the Service's.
            let port = e
                .ports
                .and_then(|m| m.get(name).copied())
                .or(match &p.target_port {
                    Some(crate::config::PortRef::Number(n)) => Some(*n),
                    Some(crate::config::PortRef::Name(n)) => e.pod.and_then(|pod| {
                        pod.container_ports.iter().find(|c| c.name.as_deref() == Some(n.as_str())).map(|c| c.port)
                    }),
                    None => None,
                })
                .unwrap_or(p.port);
            let owner = format!("_{name}._{}.{base}", p.protocol.to_ascii_lowercase());
            note(z.srv(&owner, 0, weight, port, &own));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switch_core::dns::table::Found;
    use switch_core::wire::dns::{encode_name, rtype};

    fn cfg(extra: &str) -> Config {
        let text = format!(
            "[node]\nname = \"n1\"\nipv4 = \"192.168.1.1\"\nrouter_mac = \"02:00:00:00:00:01\"\nuplink_mac = \"02:00:00:00:00:02\"\ncluster_dns = [\"10.96.0.99\"]\n{extra}"
        );
        toml::from_str(&text).expect("config")
    }

    fn wire(n: &str) -> Vec<u8> {
        let mut v = Vec::new();
        encode_name(n, &mut v).expect("name");
        v
    }

    fn count(t: &DnsTable, name: &str, ty: u16) -> Option<u16> {
        match t.names.lookup(&wire(name), ty) {
            Found::Records { count, .. } => Some(count),
            _ => None,
        }
    }

    const SERVICES: &str = r#"
[[pods]]
name = "db-0"
ips = ["10.244.1.2"]
labels = { app = "db" }
hostname = "db-0"
subdomain = "db"
[[pods]]
name = "db-1"
ips = ["10.244.1.3"]
labels = { app = "db" }
ready = false
[[services]]
name = "kube-dns"
namespace = "kube-system"
cluster_ips = ["10.96.0.10"]
ports = [{ name = "dns", port = 53, protocol = "UDP" }]
[[services]]
name = "web"
cluster_ips = ["10.96.0.20", "fd00:96::20"]
ports = [{ name = "http", port = 80 }, { port = 81 }]
[[services]]
name = "db"
cluster_ips = ["None"]
selector = { app = "db" }
ports = [{ name = "pg", port = 5432, target_port = 15432 }]
[[services]]
name = "ext"
type = "ExternalName"
external_name = "db.example.com"
"#;

    #[test]
    fn services_pods_and_the_dns_addresses_make_the_specified_names() {
        let c = cfg(SERVICES);
        let (t, warnings) = table(&c, &[], 3);
        assert!(warnings.is_empty(), "{warnings:?}");
        let a = |s: &str| Addr::from(s.parse::<IpAddr>().unwrap());
        assert_eq!(t.addresses, vec![a("10.96.0.10"), a("10.96.0.99")], "kube-dns's cluster IP, then node.cluster_dns");
        assert_eq!(count(&t, "web.default.svc.cluster.local", rtype::A), Some(1));
        assert_eq!(count(&t, "web.default.svc.cluster.local", rtype::AAAA), Some(1));
        assert_eq!(count(&t, "_http._tcp.web.default.svc.cluster.local", rtype::SRV), Some(1));
        assert_eq!(count(&t, "20.0.96.10.in-addr.arpa", rtype::PTR), Some(1));
        // Unnamed ports get no SRV; the ExternalName is a CNAME.
        assert_eq!(t.names.lookup(&wire("_81._tcp.web.default.svc.cluster.local"), rtype::SRV), Found::NxDomain);
        assert_eq!(count(&t, "ext.default.svc.cluster.local", rtype::A), Some(1));
        // Headless: only the ready pod, by its hostname (its subdomain is the Service).
        assert_eq!(count(&t, "db.default.svc.cluster.local", rtype::A), Some(1));
        assert_eq!(count(&t, "db-0.db.default.svc.cluster.local", rtype::A), Some(1));
        assert_eq!(count(&t, "_pg._tcp.db.default.svc.cluster.local", rtype::SRV), Some(1));
        assert_eq!(count(&t, "2.1.244.10.in-addr.arpa", rtype::PTR), Some(1));
        assert_eq!(t.names.lookup(&wire("10-244-1-3.db.default.svc.cluster.local"), rtype::A), Found::NxDomain);
        // Pods, and the schema version.
        assert_eq!(count(&t, "10-244-1-3.default.pod.cluster.local", rtype::A), Some(1));
        assert_eq!(count(&t, "dns-version.cluster.local", rtype::TXT), Some(1));
    }

    #[test]
    fn publish_not_ready_addresses_and_no_ready_endpoint() {
        let mut c = cfg(SERVICES);
        let db = c.services.iter_mut().find(|s| s.name == "db").unwrap();
        db.publish_not_ready_addresses = true;
        let (t, _) = table(&c, &[], 1);
        assert_eq!(count(&t, "db.default.svc.cluster.local", rtype::A), Some(2));
        assert_eq!(count(&t, "10-244-1-3.db.default.svc.cluster.local", rtype::A), Some(1));
        // No endpoint ready and not published: the name does not exist.
        let mut c = cfg(SERVICES);
        c.pods.iter_mut().for_each(|p| p.ready = false);
        let (t, _) = table(&c, &[], 1);
        assert_eq!(t.names.lookup(&wire("db.default.svc.cluster.local"), rtype::A), Found::NxDomain);
    }

    #[test]
    fn zone_hosts_and_disabling() {
        let mut c = cfg(&format!("{SERVICES}\n[dns]\nttl = 30\n"));
        c.node.cluster_domain = "Corp.Example.".into();
        c.dns.hosts = vec![("db.internal".into(), "192.0.2.7".parse().unwrap())];
        let (t, _) = table(&c, &[], 1);
        assert_eq!(count(&t, "web.default.svc.corp.example", rtype::A), Some(1));
        assert_eq!(count(&t, "db.internal", rtype::A), Some(1));
        // A host entry outside the zone is ours for every type: NODATA, without an SOA.
        assert_eq!(t.names.lookup(&wire("db.internal"), rtype::AAAA), Found::NoData { in_zone: false });
        assert_eq!(count(&t, "7.2.0.192.in-addr.arpa", rtype::PTR), Some(1));
        c.dns.enabled = false;
        assert!(table(&c, &[], 1).0.addresses.is_empty());
        let mut bad = cfg("");
        bad.node.cluster_domain = format!("{}.local", "x".repeat(70));
        let (t, w) = table(&bad, &[], 1);
        assert!(t.addresses.is_empty() && w[0].contains("node.cluster_domain"), "{w:?}");
    }

    #[test]
    fn the_resolver_port_needs_its_mac() {
        let ports = vec![
            PortInfo { name: "up".into(), kind: switch_core::snapshot::PortKind::Uplink },
            PortInfo { name: "dns-resolver".into(), kind: switch_core::snapshot::PortKind::Resolver },
        ];
        let mut c = cfg("");
        assert!(table(&c, &ports, 1).0.resolver.is_none());
        c.dns.resolver_mac = Some("02:00:00:00:53:53".into());
        let r = table(&c, &ports, 1).0.resolver.expect("resolver");
        assert_eq!(r.port, PortId(1));
        assert_eq!(r.ipv4, Some(Addr::from("169.254.20.10".parse::<IpAddr>().unwrap())));
    }
}

#[cfg(test)]
mod srv_tests {
    use super::*;
    use switch_core::dns::table::Found;
    use switch_core::wire::dns::{encode_name, rtype};

    /// A headless Service whose target port is a name: the SRV carries the pod's container
    /// port of that name (review finding: it carried the Service's port).
    #[test]
    fn a_named_target_port_gives_the_containers_port() {
        let c: Config = toml::from_str(
            r#"
[node]
name = "n1"
ipv4 = "192.168.1.1"
router_mac = "02:00:00:00:00:01"
uplink_mac = "02:00:00:00:00:02"
[[pods]]
name = "db-0"
ips = ["10.244.1.2"]
labels = { app = "db" }
container_ports = [{ name = "pgport", port = 6543 }]
[[services]]
name = "db"
cluster_ips = ["None"]
selector = { app = "db" }
ports = [{ name = "pg", port = 5432, target_port = "pgport" }]
"#,
        )
        .expect("config");
        let (t, _) = table(&c, &[], 1);
        let mut owner = Vec::new();
        encode_name("_pg._tcp.db.default.svc.cluster.local", &mut owner).unwrap();
        let Found::Records { bytes, count: 1, .. } = t.names.lookup(&owner, rtype::SRV) else { panic!("no SRV") };
        // Owner pointer (2), type, class, TTL, RDLENGTH (10), priority, weight, port.
        assert_eq!(u16::from_be_bytes([bytes[16], bytes[17]]), 6543);
    }
}
