//! The resolver running in the daemon: one thread with a tokio runtime serving the resolver
//! port's sockets (`resolver_port.rs`). In-zone queries (TCP, oversized) are answered from
//! the running snapshot's name table with the dataplane's own code
//! (`switch_core::dns::answer`), the rest forwarded. Upstreams: the kube-dns ConfigMap's
//! (`stubDomains`, `upstreamNameservers`) when it has them, else `[dns] upstream`, else the
//! node's resolv.conf; the ConfigMap is read again every second, so a change takes effect
//! without restart. An upstream that is one of the cluster DNS addresses or the resolver's own
//! is left out (it would forward to itself).

use super::{parse_kube_dns_config, parse_resolv_conf, DnsCustom, DnsMetrics, Forwarder, ForwarderConfig};
use super::{ResolvConf, Resolver, Upstreams};
use crate::config::DnsConfig;
use crate::publish::SnapshotCell;
use crate::resolver_port::ResolverPort;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Reads the kube-dns ConfigMap's data now (`None`: there is none).
pub type ConfigMapSource = Box<dyn Fn() -> Option<BTreeMap<String, String>> + Send + Sync>;

/// `[dns] upstream` entries (`IP` or `IP:port`), port 53 by default. Errors name the entry.
pub fn parse_upstreams(list: &[String]) -> Result<Vec<SocketAddr>, String> {
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            s.parse::<SocketAddr>()
                .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, switch_core::dns::DNS_PORT)))
                .map_err(|_| format!("dns.upstream[{i}]: '{s}' is not an IP address or IP:port"))
        })
        .collect()
}

/// The node's upstreams: `[dns] upstream`, else the nameservers of `resolv_conf` (port 53).
fn node_upstreams(cfg: &DnsConfig) -> Vec<SocketAddr> {
    match parse_upstreams(&cfg.upstream) {
        Ok(v) if !v.is_empty() => v,
        Ok(_) => match std::fs::read_to_string(&cfg.resolv_conf) {
            Ok(text) => parse_resolv_conf(&text)
                .nameservers
                .into_iter()
                .map(|ip| SocketAddr::new(ip, switch_core::dns::DNS_PORT))
                .collect(),
            Err(e) => {
                tracing::warn!("dns: cannot read {}: {e}; no upstream for names outside the cluster", cfg.resolv_conf);
                Vec::new()
            }
        },
        Err(e) => {
            tracing::warn!("{e}");
            Vec::new()
        }
    }
}

/// The upstreams from the ConfigMap's data and the node's, without addresses that loop back to
/// this switch.
fn upstreams(custom: &DnsCustom, node: &[SocketAddr], own: &dyn Fn(IpAddr) -> bool) -> Upstreams {
    let mut u = Upstreams::new(custom, &ResolvConf::default());
    u.resolv_conf = node.to_vec();
    u.upstream.retain(|s| !own(s.ip()));
    u.resolv_conf.retain(|s| !own(s.ip()));
    for (_, servers) in u.stub_domains.iter_mut() {
        servers.retain(|s| !own(s.ip()));
    }
    u
}

/// Starts the resolver on `port`'s sockets; it runs until `stop` is set. Returns its thread
/// and its counters (for `/metrics`).
pub fn spawn(
    port: ResolverPort,
    cell: Arc<SnapshotCell>,
    cfg: &DnsConfig,
    config_map: ConfigMapSource,
    stop: Arc<AtomicBool>,
) -> std::io::Result<(std::thread::JoinHandle<()>, Arc<DnsMetrics>)> {
    let metrics = Arc::new(DnsMetrics::default());
    let m = Arc::clone(&metrics);
    let node = node_upstreams(cfg);
    let (v4, v6) = cfg.resolver_addrs();
    let resolver_ips: Vec<IpAddr> = [v4, v6].into_iter().flatten().collect();
    let cache_entries = cfg.cache_entries;
    let thread = std::thread::Builder::new().name("psw-dns".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build() {
            Ok(rt) => rt,
            Err(e) => return tracing::error!("dns resolver: no runtime: {e}"),
        };
        rt.block_on(async move {
            let own_cell = Arc::clone(&cell);
            let own = move |ip: IpAddr| {
                resolver_ips.contains(&ip) || own_cell.load().dns.addresses.contains(&switch_core::addr::Addr::from(ip))
            };
            let data = config_map();
            let custom = custom_of(data.as_ref());
            let mut fcfg = ForwarderConfig::default();
            fcfg.cache.capacity = cache_entries;
            let forwarder = Forwarder::new(fcfg, upstreams(&custom, &node, &own)).with_metrics(Arc::clone(&m));
            let names = Arc::clone(&cell);
            let local: super::LocalAnswer = Arc::new(move |q: &[u8], limit: usize| {
                let t = names.load();
                switch_core::dns::answer::answer_owned(&t.dns.names, q, limit)
            });
            let resolver = Arc::new(Resolver::new(local, forwarder, Arc::clone(&m)));
            let mut tasks = Vec::new();
            for s in port.udp {
                match tokio::net::UdpSocket::from_std(s) {
                    Ok(s) => tasks.push(tokio::spawn(super::serve_udp(s, Arc::clone(&resolver)))),
                    Err(e) => tracing::error!("dns resolver: UDP socket: {e}"),
                }
            }
            for l in port.tcp {
                match tokio::net::TcpListener::from_std(l) {
                    Ok(l) => tasks.push(tokio::spawn(super::serve_tcp(l, Arc::clone(&resolver)))),
                    Err(e) => tracing::error!("dns resolver: TCP listener: {e}"),
                }
            }
            let config_map = Arc::new(config_map);
            let mut last = data;
            let mut last_addrs = cell.load().dns.addresses.clone();
            let mut tick = 0u32;
            while !stop.load(Ordering::Relaxed) {
                // Stop is seen within 50 ms; the ConfigMap is read every second.
                tokio::time::sleep(Duration::from_millis(50)).await;
                tick = tick.wrapping_add(1);
                if !tick.is_multiple_of(20) {
                    continue;
                }
                // Read off the runtime: it waits for the controller's lock, which an apply holds.
                let read = Arc::clone(&config_map);
                let Ok(now) = tokio::task::spawn_blocking(move || read()).await else { continue };
                // The cluster DNS addresses too: an upstream that became one of them would loop.
                let addrs = cell.load().dns.addresses.clone();
                if now != last || addrs != last_addrs {
                    let custom = custom_of(now.as_ref());
                    resolver.forwarder().set_upstreams(upstreams(&custom, &node, &own));
                    tracing::info!("dns: upstreams updated (kube-dns ConfigMap or cluster DNS addresses)");
                    last = now;
                    last_addrs = addrs;
                }
            }
            for t in tasks {
                t.abort();
            }
        });
    })?;
    Ok((thread, metrics))
}

/// The ConfigMap's data checked; a bad ConfigMap is reported and ignored (the node's upstreams
/// stay in use).
pub fn custom_of(data: Option<&BTreeMap<String, String>>) -> DnsCustom {
    let Some(data) = data else { return DnsCustom::default() };
    match parse_kube_dns_config(data) {
        Ok(c) => {
            if !c.ignored_keys.is_empty() {
                tracing::warn!("kube-system/kube-dns ConfigMap: keys not used: {}", c.ignored_keys.join(", "));
            }
            c
        }
        Err(e) => {
            tracing::warn!("kube-system/kube-dns ConfigMap ignored: {e}");
            DnsCustom::default()
        }
    }
}
