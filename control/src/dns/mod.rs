//! The daemon's DNS resolver: what the dataplane's cluster DNS (Kubernetes DNS spec, zone
//! `cluster.local`) does not answer itself reaches it: queries over TCP, names outside the
//! cluster zone, and answers too large for the dataplane.
//!
//! * [`upstream`]: where forwarded queries go, read from `resolv.conf` and the kube-dns
//!   ConfigMap (stub domains, upstream nameservers, static hosts);
//! * [`forward`]: the [`Forwarder`], asking upstreams over UDP then TCP, with a [`cache`];
//! * [`server`]: the [`Resolver`] (local answerer first, then the forwarder) and the UDP and
//!   TCP serving loops over sockets the caller made;
//! * [`metrics`]: its counters in Prometheus form;
//! * [`daemon`]: the resolver thread of `podswitchd`, on the resolver port's sockets.
//!
//! The DNS wire format is hickory-proto's throughout; nothing here parses DNS by hand.

pub mod cache;
pub mod daemon;
pub mod forward;
pub mod metrics;
pub mod server;
pub mod upstream;

#[cfg(test)]
mod tests;

pub use forward::{Forwarder, ForwarderConfig, Upstreams};
pub use metrics::DnsMetrics;
pub use server::{serve_tcp, serve_udp, LocalAnswer, Resolver, Transport};
pub use upstream::{parse_kube_dns_config, parse_resolv_conf, DnsConfigError, DnsCustom, ResolvConf};
