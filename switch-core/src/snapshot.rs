//! The table snapshot: everything the workers read, built and validated by the control plane
//! off the packet path, then published whole. Workers never see a half-applied change.

use crate::addr::Addr;
use crate::endpoint::EndpointTable;
use crate::hash::FastMap;
use crate::packet::PortId;
use crate::policy::PolicyTable;
use crate::route::{NodeId, RemoteNode, RouteTable};
use crate::service::ServiceTable;
use crate::wire::build::TunnelKind;
use crate::wire::MacAddr;
use core::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// What a port connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    /// A pod's veth.
    Pod,
    /// The node's NIC towards other nodes and the outside.
    Uplink,
    /// The node's own network stack.
    Host,
    /// The daemon's DNS resolver (`dns/`): queries the dataplane does not answer go there.
    Resolver,
}

/// A port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    pub name: String,
    pub kind: PortKind,
}

/// This node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    /// The gateway MAC pods (and the host port) see.
    pub router_mac: MacAddr,
    /// The node's MAC on the uplink.
    pub uplink_mac: MacAddr,
    /// The host stack's MAC on the host port.
    pub host_mac: MacAddr,
    /// MAC of this node's tunnel endpoint (inner source MAC of encapsulated frames).
    pub vtep_mac: MacAddr,
    /// Underlay addresses (tunnel sources, NodePort addresses, SNAT addresses).
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    pub tunnel: TunnelKind,
    pub vni: u32,
    /// MTU of the uplink.
    pub uplink_mtu: u16,
}

impl NodeInfo {
    /// The node address of the same family as `a`.
    pub fn addr_like(&self, a: Addr) -> Option<Addr> {
        if a.is_v4() {
            self.ipv4.map(Addr::from)
        } else {
            self.ipv6.map(Addr::from)
        }
    }
}

/// Everything the pipeline reads, immutable once built.
#[derive(Debug, Clone)]
pub struct Tables {
    /// Increases with every applied change.
    pub generation: u64,
    pub node: NodeInfo,
    pub ports: Vec<PortInfo>,
    pub uplink: Option<PortId>,
    pub host: Option<PortId>,
    /// The large tables are shared: a snapshot that changes only services reuses the rest of
    /// the previous one.
    pub endpoints: Arc<EndpointTable>,
    pub routes: Arc<RouteTable>,
    pub nodes: Vec<RemoteNode>,
    nodes_by_ip: FastMap<Addr, NodeId>,
    pub services: Arc<ServiceTable>,
    pub policy: Arc<PolicyTable>,
    /// Seed for flow hashes (Maglev choice, tunnel source ports).
    pub hash_seed: u64,
    /// Verify transport checksums on receipt.
    pub verify_l4_checksum: bool,
    /// Answer a packet a NetworkPolicy denies (TCP reset, ICMP administratively prohibited)
    /// instead of dropping it silently; either way it is counted under its policy reason.
    pub policy_reject: bool,
    /// The ranges cluster IPs come from: a new flow to an address in them that no frontend
    /// has is dropped (`service_no_frontend`) rather than routed out.
    pub service_cidrs: Vec<crate::addr::Prefix>,
    /// Learned MACs of the remote nodes' underlay addresses (`neighbor/`), shared with the
    /// snapshots that have the same nodes.
    pub neighbors: Arc<crate::neighbor::Neighbors>,
    /// Cluster DNS: the names answered in the dataplane, the addresses they are answered on,
    /// and the resolver port (`dns/`).
    pub dns: Arc<crate::dns::DnsTable>,
}

impl Tables {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        generation: u64,
        node: NodeInfo,
        ports: Vec<PortInfo>,
        endpoints: EndpointTable,
        routes: RouteTable,
        nodes: Vec<RemoteNode>,
        services: ServiceTable,
        policy: PolicyTable,
        hash_seed: u64,
        verify_l4_checksum: bool,
    ) -> Tables {
        let uplink = ports.iter().position(|p| p.kind == PortKind::Uplink).map(|i| PortId(i as u16));
        let host = ports.iter().position(|p| p.kind == PortKind::Host).map(|i| PortId(i as u16));
        let nodes_by_ip = nodes.iter().enumerate().map(|(i, n)| (n.underlay_ip, NodeId(i as u16))).collect();
        let neighbors = Arc::new(crate::neighbor::Neighbors::new(nodes.iter().map(|n| n.underlay_ip).collect()));
        Tables {
            generation,
            node,
            ports,
            uplink,
            host,
            endpoints: Arc::new(endpoints),
            routes: Arc::new(routes),
            nodes,
            nodes_by_ip,
            services: Arc::new(services),
            policy: Arc::new(policy),
            hash_seed,
            verify_l4_checksum,
            policy_reject: false,
            service_cidrs: Vec::new(),
            neighbors,
            dns: Arc::new(crate::dns::DnsTable::default()),
        }
    }

    /// This snapshot with the learned neighbours of `prev` carried over: the same table when
    /// the nodes' addresses are the same, otherwise the entries of the addresses that stay.
    pub fn with_neighbors_of(mut self, prev: &Tables) -> Tables {
        let addrs: Vec<crate::addr::Addr> = self.nodes.iter().map(|n| n.underlay_ip).collect();
        self.neighbors = if prev.neighbors.addrs() == addrs.as_slice() {
            Arc::clone(&prev.neighbors)
        } else {
            Arc::new(crate::neighbor::Neighbors::carried(&prev.neighbors, addrs))
        };
        self
    }

    /// The MAC tunnel packets to node `n` are sent to: the one learned by ARP, else the one
    /// the node was given with (its registration or `[[nodes]] mac`); none known is
    /// `neighbor_unresolved`.
    #[inline]
    pub fn next_hop(&self, n: NodeId) -> Result<crate::wire::MacAddr, crate::drop::DropReason> {
        let i = usize::from(n.0);
        match self.neighbors.get(i) {
            Some(m) => Ok(m),
            None => {
                let m = self.nodes[i].next_hop_mac;
                if m == crate::wire::MacAddr::ZERO {
                    Err(crate::drop::DropReason::NeighborUnresolved)
                } else {
                    Ok(m)
                }
            }
        }
    }

    /// This snapshot with another service table (and the given generation); everything else
    /// is shared.
    pub fn with_services(&self, services: ServiceTable, generation: u64) -> Tables {
        Tables { services: Arc::new(services), generation, ..self.clone() }
    }

    /// This snapshot with another DNS table; everything else is shared.
    pub fn with_dns(&self, dns: crate::dns::DnsTable) -> Tables {
        Tables { dns: Arc::new(dns), ..self.clone() }
    }

    #[inline]
    pub fn port(&self, p: PortId) -> Option<&PortInfo> {
        self.ports.get(p.index())
    }

    #[inline]
    pub fn node_by_underlay(&self, a: Addr) -> Option<NodeId> {
        self.nodes_by_ip.get(&a).copied()
    }

    #[inline]
    pub fn remote(&self, n: NodeId) -> &RemoteNode {
        &self.nodes[usize::from(n.0)]
    }
}
