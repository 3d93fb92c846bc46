//! The endpoint table.

use crate::addr::Addr;
use crate::hash::FastMap;
use crate::packet::PortId;
use crate::policy::ClassifierId;
use crate::wire::MacAddr;

/// Security identity of a peer, as policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Identity(pub u32);

impl Identity {
    /// Unknown.
    pub const UNKNOWN: Identity = Identity(0);
    /// This node's own stack (kubelet probes and the like).
    pub const HOST: Identity = Identity(1);
    /// Anything outside the cluster.
    pub const WORLD: Identity = Identity(2);
    /// Remote nodes' own addresses.
    pub const REMOTE_NODE: Identity = Identity(6);
    /// First identity the control plane hands to pods.
    pub const FIRST_POD: u32 = 256;
}

/// Index of an endpoint in its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EndpointId(pub u32);

/// A pod as the data plane sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    pub namespace: String,
    /// The port it is attached to; `None` for a pod on another node.
    pub port: Option<PortId>,
    pub mac: MacAddr,
    pub ips: Vec<Addr>,
    pub identity: Identity,
    /// Ingress classifier; `None` when no policy selects the pod for ingress (allow all).
    pub ingress: Option<ClassifierId>,
    /// Egress classifier; `None` when no policy selects the pod for egress.
    pub egress: Option<ClassifierId>,
}

/// Why an endpoint set was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointError {
    DuplicateIp(Addr, String, String),
    PortTaken(PortId, String, String),
}

impl core::fmt::Display for EndpointError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EndpointError::DuplicateIp(ip, a, b) => {
                write!(f, "IP {ip} is claimed by both {a} and {b}")
            }
            EndpointError::PortTaken(p, a, b) => {
                write!(f, "port {} is claimed by both {a} and {b}", p.0)
            }
        }
    }
}

/// All endpoints, local and remote.
#[derive(Debug, Clone, Default)]
pub struct EndpointTable {
    endpoints: Vec<Endpoint>,
    by_ip: FastMap<Addr, EndpointId>,
    by_port: FastMap<PortId, EndpointId>,
    node_ips: Vec<Addr>,
    remote_node_ips: Vec<Addr>,
}

impl EndpointTable {
    /// Builds the table; each IP and each port may belong to one endpoint only.
    pub fn build(
        endpoints: Vec<Endpoint>,
        node_ips: Vec<Addr>,
        remote_node_ips: Vec<Addr>,
    ) -> Result<EndpointTable, EndpointError> {
        let mut by_ip = FastMap::default();
        let mut by_port = FastMap::default();
        for (i, e) in endpoints.iter().enumerate() {
            let id = EndpointId(i as u32);
            for ip in &e.ips {
                if let Some(prev) = by_ip.insert(*ip, id) {
                    return Err(EndpointError::DuplicateIp(
                        *ip,
                        endpoints[prev.0 as usize].name.clone(),
                        e.name.clone(),
                    ));
                }
            }
            if let Some(p) = e.port {
                if let Some(prev) = by_port.insert(p, id) {
                    return Err(EndpointError::PortTaken(p, endpoints[prev.0 as usize].name.clone(), e.name.clone()));
                }
            }
        }
        Ok(EndpointTable { endpoints, by_ip, by_port, node_ips, remote_node_ips })
    }

    #[inline]
    pub fn get(&self, id: EndpointId) -> &Endpoint {
        &self.endpoints[id.0 as usize]
    }

    #[inline]
    pub fn by_ip(&self, ip: Addr) -> Option<EndpointId> {
        self.by_ip.get(&ip).copied()
    }

    /// The local endpoint attached to `port`.
    #[inline]
    pub fn on_port(&self, port: PortId) -> Option<EndpointId> {
        self.by_port.get(&port).copied()
    }

    /// Whether `ip` is one of this node's addresses.
    #[inline]
    pub fn is_node_ip(&self, ip: Addr) -> bool {
        self.node_ips.contains(&ip)
    }

    pub fn node_ips(&self) -> &[Addr] {
        &self.node_ips
    }

    /// The identity of any address: a pod's, the host's, a remote node's, or the world's.
    #[inline]
    pub fn identity_of(&self, ip: Addr) -> Identity {
        if let Some(id) = self.by_ip(ip) {
            return self.get(id).identity;
        }
        if self.is_node_ip(ip) {
            Identity::HOST
        } else if self.remote_node_ips.contains(&ip) {
            Identity::REMOTE_NODE
        } else {
            Identity::WORLD
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints.iter()
    }

    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(name: &str, ip: &str, port: Option<u16>, id: u32) -> Endpoint {
        Endpoint {
            name: name.into(),
            namespace: "default".into(),
            port: port.map(PortId),
            mac: MacAddr([2, 0, 0, 0, 0, id as u8]),
            ips: vec![Addr::from(ip.parse::<core::net::IpAddr>().unwrap())],
            identity: Identity(id),
            ingress: None,
            egress: None,
        }
    }

    #[test]
    fn lookups_and_identities() {
        let node = Addr::from("192.168.0.10".parse::<core::net::IpAddr>().unwrap());
        let t = EndpointTable::build(
            vec![ep("a", "10.0.0.2", Some(1), 300), ep("r", "10.0.1.2", None, 301)],
            vec![node],
            vec![],
        )
        .unwrap();
        let a = |s: &str| Addr::from(s.parse::<core::net::IpAddr>().unwrap());
        assert_eq!(t.identity_of(a("10.0.0.2")), Identity(300));
        assert_eq!(t.identity_of(a("10.0.1.2")), Identity(301));
        assert_eq!(t.identity_of(node), Identity::HOST);
        assert_eq!(t.identity_of(a("1.1.1.1")), Identity::WORLD);
        assert_eq!(t.on_port(PortId(1)), Some(EndpointId(0)));
        assert_eq!(t.on_port(PortId(2)), None);
    }

    #[test]
    fn rejects_duplicates() {
        let e = EndpointTable::build(
            vec![ep("a", "10.0.0.2", Some(1), 300), ep("b", "10.0.0.2", Some(2), 301)],
            vec![],
            vec![],
        );
        assert!(matches!(e, Err(EndpointError::DuplicateIp(..))));
        let e = EndpointTable::build(
            vec![ep("a", "10.0.0.2", Some(1), 300), ep("b", "10.0.0.3", Some(1), 301)],
            vec![],
            vec![],
        );
        assert!(matches!(e, Err(EndpointError::PortTaken(..))));
    }
}
