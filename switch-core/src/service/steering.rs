//! What the flow-owner rules of several workers (`pipeline/owner.rs`) look up in the service
//! table: every backend's (address, port, protocol), whether its flows go by client address
//! alone (sticky), and every frontend address. A node with one worker does without it.
//!
//! The sets are counted (a backend may serve several ports) and split into shards shared
//! between snapshots, so a change to a few services copies only the shards their keys fall in
//! instead of indexing every backend again. Stickiness spreads through shared backends (see
//! `sticky_ports`), which no local patch can follow: while any service has ClientIP affinity,
//! the index is built whole.

use super::table::ServicePort;
use crate::addr::Addr;
use crate::hash::{FastBuild, FastMap};
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

/// Shards of each set (a change copies about 1/256 of the index per key it touches).
const SHARDS: usize = 256;

/// A backend as a flow endpoint: address, port, protocol.
pub type ServerKey = (Addr, u16, u8);

/// How many ports (or frontends) hold a key, and whether any of them is sticky.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Count {
    refs: u32,
    sticky: bool,
}

/// A counted set in shards shared between snapshots.
#[derive(Debug, Clone)]
struct Counted<K> {
    shards: Vec<Arc<FastMap<K, Count>>>,
}

impl<K: Hash + Eq + Copy> Counted<K> {
    fn new() -> Counted<K> {
        Counted { shards: (0..SHARDS).map(|_| Arc::new(FastMap::default())).collect() }
    }

    fn shard(k: &K) -> usize {
        (FastBuild.hash_one(k) >> 56) as usize % SHARDS
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len()).sum()
    }

    #[inline]
    fn get(&self, k: &K) -> Option<Count> {
        self.shards.get(Self::shard(k)).and_then(|s| s.get(k)).copied()
    }

    /// Adds one reference to `k` (copying its shard if another snapshot shares it).
    fn add(&mut self, k: K, sticky: bool) {
        let e = Arc::make_mut(&mut self.shards[Self::shard(&k)]).entry(k).or_default();
        e.refs += 1;
        e.sticky |= sticky;
    }

    /// Takes one reference from `k`; the key goes with its last.
    fn remove(&mut self, k: &K) {
        let s = Arc::make_mut(&mut self.shards[Self::shard(k)]);
        if let Some(e) = s.get_mut(k) {
            e.refs = e.refs.saturating_sub(1);
            if e.refs == 0 {
                s.remove(k);
            }
        }
    }
}

/// Which service ports are sticky: those with ClientIP affinity, and every port reachable from
/// one through shared backends.
fn sticky_ports(ports: &[Arc<ServicePort>]) -> Vec<bool> {
    let mut sticky: Vec<bool> = ports.iter().map(|p| p.spec.affinity_timeout_s.is_some()).collect();
    let mut todo: Vec<usize> = (0..ports.len()).filter(|i| sticky[*i]).collect();
    if todo.is_empty() {
        return sticky;
    }
    let mut by_backend: FastMap<(Addr, u16, u8), Vec<usize>> = FastMap::default();
    for (i, p) in ports.iter().enumerate() {
        for b in &p.spec.backends {
            by_backend.entry((b.addr, b.port, p.spec.proto)).or_default().push(i);
        }
    }
    while let Some(i) = todo.pop() {
        for b in &ports[i].spec.backends {
            for &j in by_backend.get(&(b.addr, b.port, ports[i].spec.proto)).into_iter().flatten() {
                if !sticky[j] {
                    sticky[j] = true;
                    todo.push(j);
                }
            }
        }
    }
    sticky
}

/// The index of one snapshot's services.
#[derive(Debug, Clone)]
pub struct Steering {
    servers: Counted<ServerKey>,
    frontend_addrs: Counted<Addr>,
    /// By service port id; empty when no port is sticky.
    sticky: Vec<bool>,
}

impl Steering {
    /// The index of `ports` and frontend addresses, built whole.
    pub fn build(ports: &[Arc<ServicePort>], frontend_addrs: impl Iterator<Item = Addr>) -> Steering {
        let sticky = sticky_ports(ports);
        let mut servers = Counted::new();
        for (i, p) in ports.iter().enumerate() {
            let st = sticky.get(i).copied().unwrap_or(false);
            for b in &p.spec.backends {
                servers.add((b.addr, b.port, p.spec.proto), st);
            }
        }
        let mut addrs = Counted::new();
        for a in frontend_addrs {
            addrs.add(a, false);
        }
        let sticky = if sticky.iter().any(|s| *s) { sticky } else { Vec::new() };
        Steering { servers, frontend_addrs: addrs, sticky }
    }

    /// This index with the ports and frontend addresses of changed services swapped; `None`
    /// when it cannot be patched (some port is or was sticky), so the caller builds it whole.
    pub fn patched(
        &self,
        removed: &[&ServicePort],
        added: &[&ServicePort],
        removed_addrs: &[Addr],
        added_addrs: &[Addr],
    ) -> Option<Steering> {
        if added.iter().any(|p| p.spec.affinity_timeout_s.is_some()) {
            return None;
        }
        if !self.sticky.is_empty() {
            return None;
        }
        let mut next = self.clone();
        for p in removed {
            for b in &p.spec.backends {
                next.servers.remove(&(b.addr, b.port, p.spec.proto));
            }
        }
        for p in added {
            for b in &p.spec.backends {
                next.servers.add((b.addr, b.port, p.spec.proto), false);
            }
        }
        for a in removed_addrs {
            next.frontend_addrs.remove(a);
        }
        for &a in added_addrs {
            next.frontend_addrs.add(a, false);
        }
        Some(next)
    }

    /// Distinct backends and frontend addresses indexed.
    pub fn sizes(&self) -> (usize, usize) {
        (self.servers.len(), self.frontend_addrs.len())
    }

    /// Whether `k` is a backend, and if so whether its flows are sticky.
    #[inline]
    pub fn backend_sticky(&self, k: &ServerKey) -> Option<bool> {
        self.servers.get(k).map(|c| c.sticky)
    }

    #[inline]
    pub fn sticky(&self, port: usize) -> bool {
        self.sticky.get(port).copied().unwrap_or(false)
    }

    #[inline]
    pub fn is_frontend_addr(&self, a: &Addr) -> bool {
        self.frontend_addrs.get(a).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::table::{Backend, BackendState, ServicePortSpec};

    fn port(name: &str, backends: &[(u8, u16)], affinity: bool) -> ServicePort {
        let bs = backends
            .iter()
            .map(|&(last, port)| Backend {
                addr: Addr::from(core::net::Ipv4Addr::new(10, 0, 0, last)),
                port,
                weight: 1,
                state: BackendState::Ready,
                local: true,
            })
            .collect();
        let mut spec = ServicePortSpec::simple(name, 6, bs);
        spec.affinity_timeout_s = affinity.then_some(60);
        ServicePort::new(spec, 251)
    }

    fn at(last: u8) -> Addr {
        Addr::from(core::net::Ipv4Addr::new(10, 0, 0, last))
    }

    #[test]
    fn a_patch_equals_building_the_result_whole() {
        let a = Arc::new(port("a", &[(1, 80), (2, 80)], false));
        let b = Arc::new(port("b", &[(2, 80), (3, 80)], false));
        let b2 = Arc::new(port("b", &[(3, 80), (4, 80)], false));
        let before = Steering::build(&[a.clone(), b.clone()], [at(100), at(101)].into_iter());
        let patched = before.patched(&[&*b], &[&*b2], &[at(101)], &[at(102)]).unwrap();
        let whole = Steering::build(&[a, b2], [at(100), at(102)].into_iter());
        for last in 1..=5 {
            let k = (at(last), 80, 6);
            assert_eq!(patched.backend_sticky(&k), whole.backend_sticky(&k), "backend {last}");
        }
        assert_eq!(patched.backend_sticky(&(at(2), 80, 6)), Some(false), "still held by port a");
        assert_eq!(patched.backend_sticky(&(at(1), 80, 17)), None, "another protocol");
        assert_eq!(patched.sizes(), whole.sizes());
        assert!(patched.is_frontend_addr(&at(102)) && !patched.is_frontend_addr(&at(101)));
        // The snapshot before is untouched (its shards were copied, not edited).
        assert_eq!(before.backend_sticky(&(at(1), 80, 6)), Some(false));
        assert_eq!(before.backend_sticky(&(at(4), 80, 6)), None);
    }

    #[test]
    fn affinity_is_not_patched() {
        let a = Arc::new(port("a", &[(1, 80)], false));
        let s = Steering::build(std::slice::from_ref(&a), std::iter::empty());
        let sticky = port("b", &[(1, 80)], true);
        assert!(s.patched(&[], &[&sticky], &[], &[]).is_none());
        let with = Steering::build(&[a, Arc::new(sticky)], std::iter::empty());
        assert!(with.patched(&[], &[], &[], &[]).is_none());
        assert!(with.sticky(1) && with.backend_sticky(&(at(1), 80, 6)) == Some(true));
    }
}
