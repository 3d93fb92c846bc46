//! A Service's allocations, as the API server makes them on create and update (Kubernetes
//! `pkg/registry/core/service`: allocated values kept across updates, `ipFamilyPolicy`,
//! node ports, `healthCheckNodePort`), plus LoadBalancer ingress addresses from pools (the
//! job of MetalLB or Cilium's LB IPAM on a real cluster).

use super::{Held, InUse, Ranges};
use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, Service, ServiceSpec, ServiceStatus};
use std::net::IpAddr;

/// `spec.loadBalancerClass` of the Services whose addresses podswitch allocates and announces
/// (besides those without a class). Services of another class are left to their controller.
pub const LOAD_BALANCER_CLASS: &str = "podswitch.io/l2";

/// Annotations that ask for given LoadBalancer addresses (MetalLB's and Cilium's; a
/// comma-separated list), besides the deprecated `spec.loadBalancerIP`.
pub const LB_IP_ANNOTATIONS: [&str; 2] = ["metallb.universe.tf/loadBalancerIPs", "lbipam.cilium.io/ips"];

fn family_name(v4: bool) -> &'static str {
    if v4 {
        "IPv4"
    } else {
        "IPv6"
    }
}

fn port_i32(p: u16) -> i32 {
    i32::from(p)
}

/// A node port as written: 0 and absent are "allocate one"; anything else must fit u16.
fn node_port_of(v: Option<i32>, field: &str) -> Result<Option<u16>, String> {
    match v {
        None | Some(0) => Ok(None),
        Some(n) => u16::try_from(n).map(Some).map_err(|_| format!("{field}: {n} is not a port number")),
    }
}

/// Fills in `svc`'s allocated fields, keeping what `old` (the stored object of the same name)
/// had where `svc` leaves them empty; `owner` is `namespace/name`. Returns everything the
/// Service holds afterwards. Errors name the field, as the API server's validation does.
/// Warnings (a LoadBalancer pool exhausted: the Service stays pending, as on a cluster) are
/// pushed to `warnings`.
pub fn allocate(
    svc: &mut Service,
    old: Option<&Service>,
    r: &Ranges,
    used: &InUse,
    owner: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<Held>, String> {
    let annotations = svc.metadata.annotations.clone().unwrap_or_default();
    let given_status = svc.status.take();
    let spec = svc.spec.get_or_insert_with(ServiceSpec::default);
    let ty = spec.type_.clone().unwrap_or_else(|| "ClusterIP".into());
    let old_spec = old.and_then(|o| o.spec.as_ref());
    let old_ty = old_spec.and_then(|s| s.type_.clone()).unwrap_or_else(|| "ClusterIP".into());
    let mut held = Vec::new();

    if ty == "ExternalName" {
        let ips = spec.cluster_ips.iter().flatten().chain(spec.cluster_ip.iter()).filter(|c| !c.is_empty());
        if let Some(c) = ips.into_iter().next() {
            return Err(format!("spec.clusterIP: '{c}' may not be set for type ExternalName"));
        }
        if let Some(i) = spec.ports.iter().flatten().position(|p| p.node_port.unwrap_or(0) != 0) {
            return Err(format!("spec.ports[{i}].nodePort: may not be used when type is 'ExternalName'"));
        }
        // An ExternalName Service has no IP family.
        spec.ip_families = None;
        spec.ip_family_policy = None;
        svc.status = given_status.map(|_| ServiceStatus::default());
        return Ok(held);
    }

    // Values an update leaves empty keep what the stored object had (the API server's
    // patchAllocatedValues), unless the old one was ExternalName.
    if let Some(o) = old_spec.filter(|_| old_ty != "ExternalName") {
        let empty =
            spec.cluster_ip.as_deref().unwrap_or("").is_empty() && spec.cluster_ips.as_ref().is_none_or(Vec::is_empty);
        // The primary cluster IP is immutable (the API server: "field is immutable").
        let old_first = o.cluster_ip.as_deref().filter(|c| !c.is_empty());
        let new_first = spec
            .cluster_ip
            .as_deref()
            .filter(|c| !c.is_empty())
            .or_else(|| spec.cluster_ips.as_ref().and_then(|v| v.first()).map(String::as_str));
        if let (Some(a), Some(b)) = (old_first, new_first) {
            if a != b {
                return Err(format!("spec.clusterIPs[0]: field is immutable ({a}; given {b})"));
            }
        }
        if empty {
            spec.cluster_ip = o.cluster_ip.clone();
            spec.cluster_ips = o.cluster_ips.clone();
            if spec.ip_families.as_ref().is_none_or(Vec::is_empty) {
                spec.ip_families = o.ip_families.clone();
            }
            if spec.ip_family_policy.is_none() {
                spec.ip_family_policy = o.ip_family_policy.clone();
            } else if spec.ip_family_policy.as_deref() == Some("SingleStack") {
                // Downgraded to one family: the secondary address is released.
                if let Some(v) = spec.cluster_ips.as_mut() {
                    v.truncate(1);
                }
                if let Some(v) = spec.ip_families.as_mut() {
                    v.truncate(1);
                }
            }
        }
        let wants = ty == "NodePort" || (ty == "LoadBalancer" && spec.allocate_load_balancer_node_ports != Some(false));
        if wants {
            for p in spec.ports.iter_mut().flatten() {
                if p.node_port.unwrap_or(0) == 0 {
                    // The same port of the old spec: by name when it has one (a renamed
                    // number keeps its node port), else by number and protocol.
                    let proto = |q: &k8s_openapi::api::core::v1::ServicePort| {
                        q.protocol.clone().unwrap_or_else(|| "TCP".into())
                    };
                    let same = o.ports.iter().flatten().find(|q| match (&p.name, &q.name) {
                        (Some(a), Some(b)) if !a.is_empty() => a == b && proto(p) == proto(q),
                        _ => q.port == p.port && proto(p) == proto(q),
                    });
                    p.node_port = same.and_then(|q| q.node_port).filter(|n| *n != 0);
                }
            }
        }
        let wants_health = ty == "LoadBalancer" && spec.external_traffic_policy.as_deref() == Some("Local");
        if wants_health && spec.health_check_node_port.unwrap_or(0) == 0 {
            spec.health_check_node_port = o.health_check_node_port.filter(|n| *n != 0);
        } else if !wants_health && spec.health_check_node_port == o.health_check_node_port {
            // Carried over from a printed form (`get -o yaml`) of a spec that needed it: the
            // API server drops such type-dependent fields.
            spec.health_check_node_port = None;
        }
    }

    cluster_ips(spec, r, used, owner, &mut held)?;
    let headless = spec.cluster_ip.as_deref() == Some("None");

    // Node ports.
    let wants_node_ports =
        ty == "NodePort" || (ty == "LoadBalancer" && spec.allocate_load_balancer_node_ports != Some(false));
    let (lo, hi) = r.node_ports;
    for (i, p) in spec.ports.iter_mut().flatten().enumerate() {
        let field = format!("spec.ports[{i}].nodePort");
        let given = node_port_of(p.node_port, &field)?;
        match given {
            Some(n) if ty != "NodePort" && ty != "LoadBalancer" => {
                return Err(format!("{field}: {n} may not be used when type is '{ty}'"))
            }
            Some(n) => {
                if n < lo || n > hi {
                    return Err(format!(
                        "{field}: {n} is not in the node port range {lo}-{hi} (datapath.nodeport_range)"
                    ));
                }
                if let Some(h) = used.holder(&Held::NodePort(n)).filter(|h| *h != owner) {
                    return Err(format!("{field}: {n} is already allocated (to Service {h})"));
                }
                held.push(Held::NodePort(n));
            }
            None if wants_node_ports => {
                // A value of this same Service is free to it, but not a second time.
                let what = format!("port {}/{}", p.port, p.protocol.as_deref().unwrap_or("TCP"));
                let n = r
                    .pick_node_port(owner, &what, used, &node_ports(&held))
                    .ok_or_else(|| format!("{field}: no free node port in {lo}-{hi} (datapath.nodeport_range)"))?;
                p.node_port = Some(port_i32(n));
                held.push(Held::NodePort(n));
            }
            None => p.node_port = None,
        }
    }

    // The health check node port of `externalTrafficPolicy: Local` load balancers.
    let wants_health = ty == "LoadBalancer" && spec.external_traffic_policy.as_deref() == Some("Local");
    match node_port_of(spec.health_check_node_port, "spec.healthCheckNodePort")? {
        Some(n) if !wants_health => {
            return Err(format!(
                "spec.healthCheckNodePort: {n} may only be set for type LoadBalancer with externalTrafficPolicy Local"
            ))
        }
        Some(n) => {
            if n < lo || n > hi {
                return Err(format!("spec.healthCheckNodePort: {n} is not in the node port range {lo}-{hi}"));
            }
            if let Some(h) = used.holder(&Held::NodePort(n)).filter(|h| *h != owner) {
                return Err(format!("spec.healthCheckNodePort: {n} is already allocated (to Service {h})"));
            }
            if held.contains(&Held::NodePort(n)) {
                return Err(format!("spec.healthCheckNodePort: {n} is also one of this Service's node ports"));
            }
            held.push(Held::NodePort(n));
        }
        None if wants_health => {
            let n = r
                .pick_node_port(owner, "health", used, &node_ports(&held))
                .ok_or_else(|| format!("spec.healthCheckNodePort: no free node port in {lo}-{hi}"))?;
            spec.health_check_node_port = Some(port_i32(n));
            held.push(Held::NodePort(n));
        }
        None => spec.health_check_node_port = None,
    }

    // LoadBalancer addresses.
    let ours = spec.load_balancer_class.as_deref().is_none_or(|c| c == LOAD_BALANCER_CLASS);
    if ty != "LoadBalancer" || r.pools.is_empty() || !ours {
        // Not ours to allocate: a status given by whoever manages the address is kept (a
        // ClusterIP or NodePort Service has none).
        // Those addresses are not podswitch's: neither claimed nor announced.
        svc.status = if ty == "LoadBalancer" { given_status } else { None };
        held.sort();
        held.dedup();
        return Ok(held);
    }
    if headless {
        return Err("spec.clusterIP: a headless Service cannot be of type LoadBalancer".into());
    }
    let families: Vec<bool> = spec.ip_families.iter().flatten().map(|f| f == "IPv4").collect();
    let mut requested: Vec<(String, String)> = Vec::new();
    if let Some(ip) = spec.load_balancer_ip.as_ref().filter(|s| !s.is_empty()) {
        requested.push(("spec.loadBalancerIP".into(), ip.clone()));
    }
    for a in LB_IP_ANNOTATIONS {
        if let Some(v) = annotations.get(a) {
            requested.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| (format!("metadata.annotations[{a}]"), s.to_string())),
            );
        }
    }
    let mut lb: Vec<IpAddr> = Vec::new();
    for (field, s) in &requested {
        let ip: IpAddr = s.parse().map_err(|_| format!("{field}: '{s}' is not an IP address"))?;
        if !r.pools.iter().any(|(_, b)| b.contains(ip)) {
            let pools: Vec<&str> = r.pools.iter().map(|(s, _)| s.as_str()).collect();
            return Err(format!(
                "{field}: {ip} is not in a load balancer pool [{}] (datapath.load_balancer_pools)",
                pools.join(", ")
            ));
        }
        if let Some(h) = used.holder(&Held::LoadBalancerIp(ip)).filter(|h| *h != owner) {
            return Err(format!("{field}: {ip} is already allocated (to Service {h})"));
        }
        if !lb.contains(&ip) {
            lb.push(ip);
        }
    }
    if requested.is_empty() {
        // The addresses it had, while they are still in a pool and still its own.
        let old_status = if old_ty == "LoadBalancer" { old.and_then(|o| o.status.as_ref()) } else { None };
        lb.extend(lb_ips(old_status).into_iter().filter(|ip| {
            r.pools.iter().any(|(_, b)| b.contains(*ip))
                && families.contains(&ip.is_ipv4())
                && !used.taken(&Held::LoadBalancerIp(*ip), owner)
        }));
        for v4 in families.iter().copied() {
            if lb.iter().any(|ip| ip.is_ipv4() == v4) {
                continue;
            }
            let pools: Vec<_> = r.pools.iter().filter(|(_, b)| b.v4 == v4).collect();
            if pools.is_empty() {
                continue;
            }
            match pools.iter().find_map(|(_, b)| b.pick(owner, "lb", used, Held::LoadBalancerIp)) {
                Some(ip) => lb.push(ip),
                None => warnings.push(format!(
                    "Service {owner}: no free {} address in the load balancer pools; the Service stays pending",
                    family_name(v4)
                )),
            }
        }
    }
    if let Some(given) = given_status.as_ref().filter(|g| !lb_ips(Some(g)).is_empty()) {
        if lb_ips(Some(given)) != lb {
            warnings.push(format!(
                "Service {owner}: status.loadBalancer is written by the load balancer IP allocator; the manifest's value is ignored"
            ));
        }
    }
    held.extend(lb.iter().copied().map(Held::LoadBalancerIp));
    // One claim per value (a node port shared by a TCP and a UDP port is one value).
    held.sort();
    held.dedup();
    let ingress: Vec<LoadBalancerIngress> = lb
        .iter()
        .map(|ip| LoadBalancerIngress { ip: Some(ip.to_string()), ip_mode: Some("VIP".into()), ..Default::default() })
        .collect();
    svc.status = Some(ServiceStatus {
        load_balancer: Some(LoadBalancerStatus { ingress: (!ingress.is_empty()).then_some(ingress) }),
        ..Default::default()
    });
    Ok(held)
}

/// The node ports among `held`.
fn node_ports(held: &[Held]) -> Vec<u16> {
    held.iter().filter_map(|h| if let Held::NodePort(n) = h { Some(*n) } else { None }).collect()
}

fn lb_ips(s: Option<&ServiceStatus>) -> Vec<IpAddr> {
    s.and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_ref()?.parse().ok())
        .collect()
}

/// `spec.clusterIP`, `clusterIPs`, `ipFamilies` and `ipFamilyPolicy`, checked and completed.
fn cluster_ips(
    spec: &mut ServiceSpec,
    r: &Ranges,
    used: &InUse,
    owner: &str,
    held: &mut Vec<Held>,
) -> Result<(), String> {
    let ip = spec.cluster_ip.clone().filter(|c| !c.is_empty());
    let mut ips: Vec<String> = spec.cluster_ips.clone().unwrap_or_default();
    match (&ip, ips.first()) {
        (Some(a), Some(b)) if a != b => {
            return Err(format!("spec.clusterIPs[0]: '{b}' must be the same as spec.clusterIP '{a}'"))
        }
        (Some(a), None) => ips.push(a.clone()),
        _ => {}
    }
    // Unset, it defaults as the API server does: RequireDualStack when two addresses or two
    // families are given, otherwise SingleStack.
    let two = ips.len() > 1 || spec.ip_families.as_ref().is_some_and(|f| f.len() > 1);
    let policy = spec.ip_family_policy.clone().unwrap_or_else(|| {
        if two {
            "RequireDualStack".into()
        } else {
            "SingleStack".into()
        }
    });
    if !matches!(policy.as_str(), "SingleStack" | "PreferDualStack" | "RequireDualStack") {
        return Err(format!(
            "spec.ipFamilyPolicy: '{policy}' is not one of SingleStack, PreferDualStack, RequireDualStack"
        ));
    }
    let mut families: Vec<bool> = Vec::new();
    for (i, f) in spec.ip_families.iter().flatten().enumerate() {
        let v4 = match f.as_str() {
            "IPv4" => true,
            "IPv6" => false,
            _ => return Err(format!("spec.ipFamilies[{i}]: '{f}' is not one of IPv4, IPv6")),
        };
        if families.contains(&v4) {
            return Err(format!("spec.ipFamilies[{i}]: {f} is listed twice"));
        }
        families.push(v4);
    }
    let configured: Vec<bool> = r.service_cidrs.iter().map(|(_, b)| b.v4).collect();
    if ips.iter().any(|c| c == "None") {
        if ips.len() > 1 {
            return Err("spec.clusterIPs: \"None\" must be the only value".into());
        }
        // Headless: families say which addresses its DNS records give, nothing allocated.
        if families.is_empty() {
            families.push(configured.first().copied().unwrap_or(true));
        }
        if policy != "SingleStack" {
            for v4 in configured.iter().copied() {
                if !families.contains(&v4) {
                    families.push(v4);
                }
            }
        }
        spec.cluster_ip = Some("None".into());
        spec.cluster_ips = Some(vec!["None".into()]);
        spec.ip_families = Some(families.iter().map(|v4| family_name(*v4).to_string()).collect());
        spec.ip_family_policy = Some(policy);
        return Ok(());
    }
    let mut addrs: Vec<IpAddr> = Vec::new();
    for (i, c) in ips.iter().enumerate() {
        let a: IpAddr = c.parse().map_err(|_| format!("spec.clusterIPs[{i}]: '{c}' is not an IP address"))?;
        if addrs.iter().any(|b| b.is_ipv4() == a.is_ipv4()) {
            return Err(format!("spec.clusterIPs[{i}]: at most one address per IP family"));
        }
        r.service_block(a.is_ipv4()).filter(|(_, b)| b.contains(a)).ok_or_else(|| {
            format!(
                "spec.clusterIPs[{i}]: {a}: provided IP is not in the valid range; the service CIDRs are [{}] (datapath.service_cidrs)",
                r.service_list()
            )
        })?;
        if let Some(h) = used.holder(&Held::ClusterIp(a)).filter(|h| *h != owner) {
            return Err(format!("spec.clusterIPs[{i}]: {a}: provided IP is already allocated (to Service {h})"));
        }
        addrs.push(a);
    }
    // The families in order: the given addresses', then ipFamilies, then the cluster's.
    let mut order: Vec<bool> = addrs.iter().map(IpAddr::is_ipv4).collect();
    for (i, v4) in families.iter().copied().enumerate() {
        if addrs.get(i).is_some_and(|a| a.is_ipv4() != v4) {
            return Err(format!("spec.ipFamilies[{i}]: {} does not match spec.clusterIPs[{i}]", family_name(v4)));
        }
        if !order.contains(&v4) {
            order.push(v4);
        }
    }
    let wanted = match policy.as_str() {
        "SingleStack" => 1,
        "RequireDualStack" => 2,
        _ => configured.len().clamp(1, 2),
    };
    for v4 in configured.iter().copied() {
        if order.len() >= wanted {
            break;
        }
        if !order.contains(&v4) {
            order.push(v4);
        }
    }
    if order.is_empty() {
        order.push(configured.first().copied().unwrap_or(true));
    }
    if order.len() > wanted {
        return Err(format!(
            "spec.ipFamilies: {} families given, but ipFamilyPolicy {policy} allows {wanted}",
            order.len()
        ));
    }
    if order.len() < wanted {
        return Err(format!(
            "spec.ipFamilyPolicy: RequireDualStack needs service CIDRs of both families; this cluster has [{}] (datapath.service_cidrs)",
            r.service_list()
        ));
    }
    for v4 in order.iter().copied() {
        if addrs.iter().any(|a| a.is_ipv4() == v4) {
            continue;
        }
        let (cidr, block) = r.service_block(v4).ok_or_else(|| {
            format!(
                "spec.ipFamilies: {} is not configured in this cluster: the service CIDRs are [{}] (datapath.service_cidrs)",
                family_name(v4),
                r.service_list()
            )
        })?;
        let a = block
            .pick(owner, "clusterip", used, Held::ClusterIp)
            .ok_or_else(|| format!("spec.clusterIP: no free address in the service CIDR {cidr}"))?;
        addrs.push(a);
    }
    held.extend(addrs.iter().copied().map(Held::ClusterIp));
    let strs: Vec<String> = addrs.iter().map(IpAddr::to_string).collect();
    spec.cluster_ip = strs.first().cloned();
    spec.cluster_ips = Some(strs);
    spec.ip_families = Some(order.iter().map(|v4| family_name(*v4).to_string()).collect());
    spec.ip_family_policy = Some(policy);
    Ok(())
}
