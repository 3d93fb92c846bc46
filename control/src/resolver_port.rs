//! The daemon's DNS resolver as a port of the switch.
//!
//! What the dataplane does not answer (TCP, names outside the cluster zone, answers larger
//! than the frame) the DNS stage translates to the resolver's address and sends to this port.
//! The port is a veth pair: the switch end (`dns-sw0`) in the daemon's namespace, served like
//! any port; the other end (`dns-res0`) in a network namespace of the daemon's own, with the
//! resolver's addresses (169.254.20.10 and fd00:53::10 by default, never seen by pods), a
//! default route through the switch (whose link layer answers ARP and neighbour solicitations
//! on this port), and the resolver's UDP and TCP sockets, so that TCP is the kernel's. The
//! namespace is made by a thread that unshares its network namespace and lives as long as the
//! daemon holds its descriptor and sockets; when the daemon exits (even killed), the kernel
//! deletes it, and the veth pair with it.
//!
//! Forwarding to the upstream resolvers uses sockets of the daemon's own namespace (the
//! node's), so no route out is needed from the resolver's.

use crate::config::DnsConfig;
use io_backends::netlink::{self, Prefix, RouteSpec};
use std::fs::File;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;

/// The switch end of the resolver's veth pair (a port of kind `resolver`).
pub const SWITCH_END: &str = "dns-sw0";
/// The resolver's end, in its own namespace.
pub const RESOLVER_END: &str = "dns-res0";
/// The name the port has in the switch.
pub const PORT_NAME: &str = "dns-resolver";
/// The gateways the resolver's routes point at (answered by the switch's link layer).
const GATEWAY_V4: &str = "169.254.20.1";
const GATEWAY_V6: &str = "fe80::1";

/// Why the resolver port could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ResolverPortError {
    #[error("dns.{field}: '{value}' is not an IPv{family} address")]
    Address { field: &'static str, value: String, family: u8 },
    #[error("resolver namespace: {0}")]
    Namespace(std::io::Error),
    #[error("resolver veth {SWITCH_END}/{RESOLVER_END}: {0}")]
    Link(String),
    #[error("resolver socket {0}: {1}")]
    Socket(SocketAddr, std::io::Error),
}

/// A resolver port made and ready: its interface, the MAC of the resolver's end, and the
/// sockets bound in the resolver's namespace (port 53 of each address).
#[derive(Debug)]
pub struct ResolverPort {
    pub interface: String,
    /// The resolver end's MAC (`xx:xx:..`).
    pub mac: String,
    pub udp: Vec<UdpSocket>,
    pub tcp: Vec<TcpListener>,
    /// Keeps the namespace (and so the veth pair) alive.
    _netns: File,
}

/// The resolver's addresses from `[dns]`.
fn addresses(cfg: &DnsConfig) -> Result<(IpAddr, IpAddr), ResolverPortError> {
    let (v4, v6) = cfg.resolver_addrs();
    let v4 = v4.ok_or_else(|| ResolverPortError::Address {
        field: "resolver_ipv4",
        value: cfg.resolver_ipv4.clone(),
        family: 4,
    })?;
    let v6 = v6.ok_or_else(|| ResolverPortError::Address {
        field: "resolver_ipv6",
        value: cfg.resolver_ipv6.clone(),
        family: 6,
    })?;
    Ok((v4, v6))
}

/// Binds the resolver's sockets inside `ns`, on a thread that enters it (sockets stay in the
/// namespace they were made in).
fn bind_in(ns: &File, addrs: &[IpAddr]) -> Result<(Vec<UdpSocket>, Vec<TcpListener>), ResolverPortError> {
    let addrs = addrs.to_vec();
    netlink::in_netns(ns, move || {
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        for a in addrs {
            let sa = SocketAddr::new(a, switch_core::dns::DNS_PORT);
            let u = UdpSocket::bind(sa).map_err(|e| ResolverPortError::Socket(sa, e))?;
            u.set_nonblocking(true).map_err(|e| ResolverPortError::Socket(sa, e))?;
            let t = TcpListener::bind(sa).map_err(|e| ResolverPortError::Socket(sa, e))?;
            t.set_nonblocking(true).map_err(|e| ResolverPortError::Socket(sa, e))?;
            udp.push(u);
            tcp.push(t);
        }
        Ok((udp, tcp))
    })
    .map_err(ResolverPortError::Namespace)?
}

/// Makes the resolver port: the namespace, the veth pair (an old switch end of that name,
/// left by a daemon that did not stop cleanly in this namespace, is deleted by name first),
/// the resolver end's addresses and routes, and the sockets. `mtu` is the pods' MTU; `queues`
/// the receive and transmit queues of each end (one per worker: AF_XDP serves a port's queue
/// per worker).
pub fn create(cfg: &DnsConfig, mtu: u32, queues: u32) -> Result<ResolverPort, ResolverPortError> {
    let (v4, v6) = addresses(cfg)?;
    let ns = netlink::new_netns().map_err(ResolverPortError::Namespace)?;
    let path = PathBuf::from(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&ns)));
    let link = |e: netlink::NetError| ResolverPortError::Link(e.to_string());
    netlink::delete_host(SWITCH_END).map_err(link)?;
    netlink::create_pair(SWITCH_END, &path, RESOLVER_END, queues.max(1)).map_err(link)?;
    let prefixes = [Prefix { addr: v4, len: 32 }, Prefix { addr: v6, len: 128 }];
    let routes = [
        RouteSpec { dst: Prefix { addr: IpAddr::from([0, 0, 0, 0]), len: 0 }, gw: GATEWAY_V4.parse().ok() },
        RouteSpec {
            dst: Prefix { addr: IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 0]), len: 0 },
            gw: GATEWAY_V6.parse().ok(),
        },
    ];
    let end = netlink::configure_container(&path, RESOLVER_END, &prefixes, &routes, Some(mtu)).map_err(link)?;
    netlink::configure_host(SWITCH_END, Some(mtu)).map_err(link)?;
    let (udp, tcp) = bind_in(&ns, &[v4, v6])?;
    Ok(ResolverPort { interface: SWITCH_END.into(), mac: end.mac, udp, tcp, _netns: ns })
}

/// Adds the resolver port to `base` (a port of kind `resolver` on the switch end, with the
/// backend of the config's first port) and notes the resolver end's MAC.
pub fn add_to(base: &mut crate::config::Config, port: &ResolverPort) {
    let backend = base.ports.first().map(|p| p.backend.clone()).unwrap_or_else(|| "auto".into());
    base.ports.retain(|p| p.kind != "resolver");
    base.ports.push(crate::config::PortConfig {
        name: PORT_NAME.into(),
        id: None,
        kind: "resolver".into(),
        backend,
        pcap_in: None,
        pcap_out: None,
        interface: Some(port.interface.clone()),
    });
    base.dns.resolver_mac = Some(port.mac.clone());
}

/// Carries the resolver port of the running config `from` into a config read again from its
/// file (`SIGHUP`, `podswitchctl reload`), which does not name it.
pub fn carry(from: &crate::config::Config, to: &mut crate::config::Config) {
    if to.ports.iter().any(|p| p.kind == "resolver") {
        return;
    }
    if let Some(p) = from.ports.iter().find(|p| p.kind == "resolver") {
        to.ports.push(p.clone());
        to.dns.resolver_mac = from.dns.resolver_mac.clone();
        // The resolver's namespace has the addresses it was made with.
        to.dns.resolver_ipv4 = from.dns.resolver_ipv4.clone();
        to.dns.resolver_ipv6 = from.dns.resolver_ipv6.clone();
    }
}
