//! The service table: frontends to service ports, each with its backends and Maglev tables.

use super::maglev::Maglev;
use super::steering::Steering;
use crate::addr::{Addr, Prefix};
use crate::drop::DropReason;
use crate::hash::{hash_words, FastMap};
use std::sync::Arc;

/// Index of a service port in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ServicePortId(pub u32);

/// An endpoint's condition, from EndpointSlice `ready`, `serving` and `terminating`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendState {
    /// Ready: takes new connections.
    Ready,
    /// Terminating but still serving: used only when no backend is ready.
    Terminating,
    /// Neither: never chosen.
    NotServing,
}

/// One backend of a service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend {
    pub addr: Addr,
    pub port: u16,
    pub weight: u16,
    pub state: BackendState,
    /// On this node (for the Local traffic policies).
    pub local: bool,
}

impl Backend {
    /// A key that names the backend across snapshots, so Maglev tables stay consistent.
    pub fn stable_key(&self) -> u64 {
        hash_words(0x006b_6579, &[self.addr.hi(), self.addr.lo(), u64::from(self.port)])
    }
}

/// How a frontend was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrontendKind {
    ClusterIp,
    NodePort,
    LoadBalancer,
    ExternalIp,
}

impl FrontendKind {
    /// Traffic to NodePort, LoadBalancer and external IPs is "external" for the traffic policy.
    pub fn is_external(self) -> bool {
        !matches!(self, FrontendKind::ClusterIp)
    }
}

/// A frontend address, port and protocol, and what it leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frontend {
    pub addr: Addr,
    pub port: u16,
    pub proto: u8,
    pub kind: FrontendKind,
    pub target: ServicePortId,
}

/// A service port with everything needed to pick a backend: its spec and the Maglev tables
/// built from it.
#[derive(Debug, Clone)]
pub struct ServicePort {
    pub spec: ServicePortSpec,
    all: Option<Maglev>,
    local: Option<Maglev>,
}

/// The preferred set: ready backends if any, else terminating ones that still serve.
fn usable(backends: &[Backend], only_local: bool) -> Vec<(u64, u32)> {
    let of = |st: BackendState| -> Vec<(u64, u32)> {
        backends
            .iter()
            .map(|b| {
                let on = b.state == st && (!only_local || b.local);
                (b.stable_key(), if on { u32::from(b.weight) } else { 0 })
            })
            .collect()
    };
    let ready = of(BackendState::Ready);
    if ready.iter().any(|(_, w)| *w > 0) {
        ready
    } else {
        of(BackendState::Terminating)
    }
}

/// What a service port is made from.
#[derive(Debug, Clone, Default)]
pub struct ServicePortSpec {
    /// `namespace/name:port`, for counters and traces.
    pub name: String,
    pub proto: u8,
    pub backends: Vec<Backend>,
    /// ClientIP affinity timeout in seconds.
    pub affinity_timeout_s: Option<u32>,
    /// Ports of one service share an affinity group (the builder uses the service's index).
    pub affinity_group: u64,
    /// externalTrafficPolicy: Local.
    pub external_local: bool,
    /// internalTrafficPolicy: Local.
    pub internal_local: bool,
    /// loadBalancerSourceRanges; empty allows all.
    pub source_ranges: Vec<Prefix>,
}

impl ServicePortSpec {
    /// A plain service port: no affinity, Cluster traffic policies, no source ranges.
    pub fn simple(name: impl Into<String>, proto: u8, backends: Vec<Backend>) -> ServicePortSpec {
        ServicePortSpec { name: name.into(), proto, backends, ..ServicePortSpec::default() }
    }
}

impl ServicePort {
    /// Builds the Maglev tables for the spec's backends: at most `maglev_size` slots (a
    /// prime), fewer for services with few backends (see `maglev::table_size_for`).
    pub fn new(spec: ServicePortSpec, maglev_size: usize) -> ServicePort {
        ServicePort::cached(spec, maglev_size, &mut super::MaglevCache::default())
    }

    /// As [`ServicePort::new`], reusing tables of an earlier build with the same backends.
    pub fn cached(spec: ServicePortSpec, maglev_size: usize, cache: &mut super::MaglevCache) -> ServicePort {
        let all = cache.get(usable(&spec.backends, false), maglev_size);
        let local = if spec.external_local || spec.internal_local {
            cache.get(usable(&spec.backends, true), maglev_size)
        } else {
            None
        };
        ServicePort { spec, all, local }
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn backends(&self) -> &[Backend] {
        &self.spec.backends
    }

    /// Whether only node-local backends may serve traffic reached through `kind`.
    pub fn local_only(&self, kind: FrontendKind) -> bool {
        if kind.is_external() {
            self.spec.external_local
        } else {
            self.spec.internal_local
        }
    }

    /// Picks a backend for a flow hash, as Maglev says.
    #[inline]
    pub fn select(&self, kind: FrontendKind, flow_hash: u64) -> Result<&Backend, DropReason> {
        let (table, miss) = if self.local_only(kind) {
            (&self.local, DropReason::ServiceNoLocalBackend)
        } else {
            (&self.all, DropReason::ServiceNoBackends)
        };
        match table {
            Some(t) => Ok(&self.spec.backends[usize::from(t.pick(flow_hash))]),
            None => Err(miss),
        }
    }

    /// Reads the Maglev slot `select` would read, to bring it into cache ahead of time.
    #[inline]
    pub fn warm(&self, kind: FrontendKind, flow_hash: u64) -> u64 {
        let t = if self.local_only(kind) { &self.local } else { &self.all };
        t.as_ref().map_or(0, |m| u64::from(m.pick(flow_hash)))
    }

    /// The usable backend at pod address `addr`, for a remembered affinity.
    pub fn usable_at(&self, kind: FrontendKind, addr: Addr) -> Option<&Backend> {
        let only_local = self.local_only(kind);
        let has_ready = self.spec.backends.iter().any(|b| b.state == BackendState::Ready && (!only_local || b.local));
        self.spec.backends.iter().find(|b| {
            b.addr == addr
                && b.weight > 0
                && (!only_local || b.local)
                && (b.state == BackendState::Ready || (!has_ready && b.state == BackendState::Terminating))
        })
    }

    /// Whether any backend can take traffic reached through `kind`.
    pub fn has_backends(&self, kind: FrontendKind) -> bool {
        if self.local_only(kind) {
            self.local.is_some()
        } else {
            self.all.is_some()
        }
    }
}

/// All services of a snapshot.
#[derive(Debug, Clone, Default)]
pub struct ServiceTable {
    frontends: FastMap<(Addr, u16, u8), Frontend>,
    ports: Vec<Arc<ServicePort>>,
    /// What the flow-owner rules of several workers look up (`service/steering.rs`); `None`
    /// on a node with one worker.
    steering: Option<Arc<Steering>>,
    /// LoadBalancer addresses this node announces on the uplink (answers ARP and neighbour
    /// solicitations for, as MetalLB's layer 2 mode), sorted.
    announced: Arc<Vec<Addr>>,
}

/// A service's ports and frontends, as a change adds or removes them.
pub type Parts<'a> = (&'a [Arc<ServicePort>], &'a [Frontend]);

fn ports_of<'a>(v: &[Parts<'a>]) -> Vec<&'a ServicePort> {
    v.iter().flat_map(|(p, _)| p.iter().map(|p| &**p)).collect()
}

fn addrs_of(v: &[Parts<'_>]) -> Vec<Addr> {
    v.iter().flat_map(|(_, f)| f.iter().map(|f| f.addr)).collect()
}

/// Why a frontend set was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontendClash {
    pub frontend: String,
    pub first: String,
    pub second: String,
}

impl core::fmt::Display for FrontendClash {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "frontend {} is used by both {} and {}", self.frontend, self.first, self.second)
    }
}

impl ServiceTable {
    /// Builds the table, with what several workers need to steer flows; two service ports may
    /// not share a frontend.
    pub fn build(ports: Vec<ServicePort>, frontends: Vec<Frontend>) -> Result<ServiceTable, FrontendClash> {
        Ok(ServiceTable::build_shared(ports.into_iter().map(Arc::new).collect(), frontends)?.with_steering())
    }

    /// As [`ServiceTable::build`], from ports shared with other snapshots.
    pub fn build_shared(ports: Vec<Arc<ServicePort>>, frontends: Vec<Frontend>) -> Result<ServiceTable, FrontendClash> {
        let mut map = FastMap::default();
        for f in frontends {
            if let Some(prev) = map.insert((f.addr, f.port, f.proto), f) {
                if prev.target != f.target {
                    return Err(FrontendClash {
                        frontend: format!("{}:{}/{}", f.addr, f.port, f.proto),
                        first: ports[prev.target.0 as usize].spec.name.clone(),
                        second: ports[f.target.0 as usize].spec.name.clone(),
                    });
                }
            }
        }
        Ok(ServiceTable { frontends: map, ports, ..ServiceTable::default() })
    }

    /// Adds what the flow-owner rules of several workers look up (`pipeline/owner.rs`): the
    /// backends, the sticky ports and the frontend addresses. It touches every backend, so a
    /// node with one worker does without it, and a change of a few services patches the
    /// previous snapshot's index instead ([`ServiceTable::with_steering_patched`]).
    pub fn with_steering(mut self) -> ServiceTable {
        let addrs = self.frontends.keys().map(|k| k.0);
        self.steering = Some(Arc::new(Steering::build(&self.ports, addrs)));
        self
    }

    /// As [`ServiceTable::with_steering`], from the index of `prev` with the changed services
    /// swapped: each `(ports, frontends)` of `removed` as they were, of `added` as they are
    /// (built whole when it cannot be patched).
    pub fn with_steering_patched(
        mut self,
        prev: &ServiceTable,
        removed: &[Parts<'_>],
        added: &[Parts<'_>],
    ) -> ServiceTable {
        match prev
            .steering
            .as_ref()
            .and_then(|st| st.patched(&ports_of(removed), &ports_of(added), &addrs_of(removed), &addrs_of(added)))
        {
            Some(st) => {
                self.steering = Some(Arc::new(st));
                self
            }
            None => self.with_steering(),
        }
    }

    /// Whether the table carries the flow-owner index.
    pub fn steered(&self) -> bool {
        self.steering.is_some()
    }

    /// Distinct backends and frontend addresses in the flow-owner index.
    pub fn steering_sizes(&self) -> Option<(usize, usize)> {
        self.steering.as_ref().map(|s| s.sizes())
    }

    /// Whether `(addr, port)` is a backend of some service port of `proto`, and if so whether
    /// its flows are owned by client address alone.
    #[inline]
    pub fn backend_sticky(&self, addr: Addr, port: u16, proto: u8) -> Option<bool> {
        self.steering.as_ref()?.backend_sticky(&(addr, port, proto))
    }

    /// Whether flows of service port `id` are owned by client address alone.
    #[inline]
    pub fn sticky(&self, id: ServicePortId) -> bool {
        self.steering.as_ref().is_some_and(|s| s.sticky(id.0 as usize))
    }

    /// Sets the LoadBalancer addresses this node announces on the uplink.
    pub fn with_announced(mut self, mut addrs: Vec<Addr>) -> ServiceTable {
        addrs.sort_unstable();
        addrs.dedup();
        self.announced = Arc::new(addrs);
        self
    }

    /// Whether this node answers ARP or neighbour solicitations for `addr` on the uplink.
    #[inline]
    pub fn announces(&self, addr: Addr) -> bool {
        self.announced.binary_search(&addr).is_ok()
    }

    /// The addresses this node announces, sorted.
    pub fn announced(&self) -> &[Addr] {
        &self.announced
    }

    /// Whether `addr` is the address of some frontend.
    #[inline]
    pub fn is_frontend_addr(&self, addr: Addr) -> bool {
        self.steering.as_ref().is_some_and(|s| s.is_frontend_addr(&addr))
    }

    #[inline]
    pub fn lookup(&self, dst: Addr, port: u16, proto: u8) -> Option<&Frontend> {
        self.frontends.get(&(dst, port, proto))
    }

    #[inline]
    pub fn port(&self, id: ServicePortId) -> &ServicePort {
        &self.ports[id.0 as usize]
    }

    /// Every service port by id; ids not in use hold a nameless port with no backends.
    pub fn ports(&self) -> &[Arc<ServicePort>] {
        &self.ports
    }

    /// Service ports in use (ids not in use left out).
    pub fn port_count(&self) -> usize {
        self.ports.iter().filter(|p| !p.spec.name.is_empty()).count()
    }

    pub fn frontends(&self) -> impl Iterator<Item = &Frontend> {
        self.frontends.values()
    }

    pub fn frontend_count(&self) -> usize {
        self.frontends.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(last: u8, state: BackendState, local: bool) -> Backend {
        Backend { addr: Addr::from(core::net::Ipv4Addr::new(10, 0, 0, last)), port: 8080, weight: 1, state, local }
    }

    #[test]
    fn affinity_makes_every_port_sharing_a_backend_sticky() {
        let ready = |last| b(last, BackendState::Ready, true);
        let spec = |name: &str, backends, affinity: bool| {
            let mut s = ServicePortSpec::simple(name, 6, backends);
            s.affinity_timeout_s = affinity.then_some(10800);
            ServicePort::new(s, 251)
        };
        let ports = vec![
            spec("a", vec![ready(1)], true),
            spec("b", vec![ready(1), ready(2)], false),
            spec("c", vec![ready(2), ready(3)], false),
            spec("d", vec![ready(4)], false),
        ];
        let t = ServiceTable::build(ports, vec![]).unwrap();
        let sticky: Vec<bool> = (0..4).map(|i| t.sticky(ServicePortId(i))).collect();
        assert_eq!(sticky, vec![true, true, true, false]);
        let at = |last| Addr::from(core::net::Ipv4Addr::new(10, 0, 0, last));
        assert_eq!(t.backend_sticky(at(3), 8080, 6), Some(true));
        assert_eq!(t.backend_sticky(at(4), 8080, 6), Some(false));
        assert_eq!(t.backend_sticky(at(4), 8080, 17), None);
    }

    #[test]
    fn terminating_only_when_no_ready() {
        let sp = ServicePort::new(
            ServicePortSpec::simple(
                "s",
                6,
                vec![b(1, BackendState::Terminating, true), b(2, BackendState::Ready, true)],
            ),
            251,
        );
        for h in 0..200 {
            assert_eq!(sp.select(FrontendKind::ClusterIp, h).unwrap().addr, b(2, BackendState::Ready, true).addr);
        }
        let sp = ServicePort::new(
            ServicePortSpec::simple(
                "s",
                6,
                vec![b(1, BackendState::Terminating, true), b(2, BackendState::NotServing, true)],
            ),
            251,
        );
        for h in 0..200 {
            assert_eq!(sp.select(FrontendKind::ClusterIp, h).unwrap().addr, b(1, BackendState::Terminating, true).addr);
        }
        let sp = ServicePort::new(ServicePortSpec::simple("s", 6, vec![b(2, BackendState::NotServing, true)]), 251);
        assert_eq!(sp.select(FrontendKind::ClusterIp, 1).unwrap_err(), DropReason::ServiceNoBackends);
    }

    #[test]
    fn external_local_uses_local_only() {
        let sp = ServicePort::new(
            ServicePortSpec {
                external_local: true,
                ..ServicePortSpec::simple(
                    "s",
                    6,
                    vec![b(1, BackendState::Ready, false), b(2, BackendState::Ready, true)],
                )
            },
            251,
        );
        for h in 0..200 {
            assert_eq!(sp.select(FrontendKind::NodePort, h).unwrap().addr, b(2, BackendState::Ready, true).addr);
        }
        let seen: std::collections::HashSet<_> =
            (0..200).map(|h| sp.select(FrontendKind::ClusterIp, h).unwrap().addr).collect();
        assert_eq!(seen.len(), 2, "cluster traffic still uses every backend");
        let sp = ServicePort::new(
            ServicePortSpec {
                external_local: true,
                ..ServicePortSpec::simple("s", 6, vec![b(1, BackendState::Ready, false)])
            },
            251,
        );
        assert_eq!(sp.select(FrontendKind::LoadBalancer, 1).unwrap_err(), DropReason::ServiceNoLocalBackend);
    }

    #[test]
    fn frontend_clash_is_rejected() {
        let sp = |n: &str| ServicePort::new(ServicePortSpec::simple(n, 6, vec![]), 251);
        let fe = |t| Frontend {
            addr: Addr::from(core::net::Ipv4Addr::new(10, 96, 0, 1)),
            port: 80,
            proto: 6,
            kind: FrontendKind::ClusterIp,
            target: ServicePortId(t),
        };
        let e = ServiceTable::build(vec![sp("a"), sp("b")], vec![fe(0), fe(1)]).unwrap_err();
        assert_eq!((e.first.as_str(), e.second.as_str()), ("a", "b"));
    }
}
