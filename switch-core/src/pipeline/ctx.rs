//! Per-packet state carried from stage to stage within a batch.

use crate::conntrack::{Direction, Tuple};
use crate::drop::DropReason;
use crate::endpoint::EndpointId;
use crate::packet::PortId;
use crate::parse::PacketMeta;
use crate::policy::RuleId;
use crate::route::NodeId;
use crate::service::{FrontendKind, ServicePortId};
use crate::snapshot::PortKind;
use crate::wire::MacAddr;

/// What becomes of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Tx(PortId),
    Drop(DropReason),
}

/// Where the route stage decided to send a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Out {
    #[default]
    Unrouted,
    Port {
        port: PortId,
        dst_mac: MacAddr,
        src_mac: MacAddr,
    },
    Tunnel(NodeId),
}

/// The conntrack outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CtHit {
    #[default]
    Miss,
    Hit {
        slot: usize,
        dir: Direction,
    },
}

/// Per-packet pipeline state.
#[derive(Debug, Clone, Copy)]
pub struct PacketCtx {
    pub meta: PacketMeta,
    /// The tuple as received (after decapsulation).
    pub orig: Tuple,
    /// The tuple the packet leaves with (after NAT decisions).
    pub tuple: Tuple,
    pub done: Option<Verdict>,
    pub in_port: PortId,
    pub in_kind: PortKind,
    pub rx_len: u32,
    pub from_tunnel: Option<NodeId>,
    pub src_ep: Option<EndpointId>,
    pub dst_ep: Option<EndpointId>,
    pub ct: CtHit,
    pub service: Option<(ServicePortId, FrontendKind)>,
    pub egress_rule: Option<RuleId>,
    pub ingress_rule: Option<RuleId>,
    pub out: Out,
    /// A reply the switch wrote in place of the packet (TCP reset, ICMP unreachable, DNS
    /// answer).
    pub generated: bool,
    /// Cluster DNS, answered or sent to the resolver by the DNS stage: no Service selection,
    /// no egress policy, and the port the DNS stage chose.
    pub dns: bool,
    pub flow_hash: u64,
    /// The conntrack table's hash of the received tuple.
    pub ct_hash: u64,
    /// The conntrack hash of the reply tuple of a new flow.
    pub reply_hash: u64,
    /// For an ICMP error about a translated flow: the quoted packet and what to rewrite it to.
    pub related: Option<(crate::nat::related::Quoted, Tuple)>,
    /// Values read while warming caches (kept so the reads are not optimised away).
    pub warm: u64,
    /// For a fragment: the worker owning its flow, decided once for the first fragment
    /// (`fragment/stage.rs`), so every fragment of a datagram goes to the same worker.
    pub frag_owner: Option<u16>,
}

impl Default for PacketCtx {
    fn default() -> Self {
        PacketCtx {
            meta: PacketMeta::default(),
            orig: Tuple::default(),
            tuple: Tuple::default(),
            done: None,
            in_port: PortId(0),
            in_kind: PortKind::Pod,
            rx_len: 0,
            from_tunnel: None,
            src_ep: None,
            dst_ep: None,
            ct: CtHit::Miss,
            service: None,
            egress_rule: None,
            ingress_rule: None,
            out: Out::Unrouted,
            generated: false,
            dns: false,
            flow_hash: 0,
            ct_hash: 0,
            reply_hash: 0,
            related: None,
            warm: 0,
            frag_owner: None,
        }
    }
}

/// What stage 1 (receive) learned about a frame: all another worker needs to take the frame
/// over without parsing it again (a quarter of a [`PacketCtx`], so handing a frame to another
/// core moves two cache lines of state, not six).
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub meta: PacketMeta,
    pub flow_hash: u64,
    pub rx_len: u32,
    pub from_tunnel: Option<NodeId>,
    pub in_kind: PortKind,
}

impl PacketCtx {
    /// What stage 1 filled in.
    pub fn received(&self) -> Received {
        Received {
            meta: self.meta,
            flow_hash: self.flow_hash,
            rx_len: self.rx_len,
            from_tunnel: self.from_tunnel,
            in_kind: self.in_kind,
        }
    }

    /// The context stage 1 leaves for a frame that arrived on `in_port` with `r`.
    pub fn from_received(r: &Received, in_port: PortId) -> PacketCtx {
        let m = r.meta;
        let orig = Tuple { src: m.src, dst: m.dst, sport: m.sport, dport: m.dport };
        PacketCtx {
            meta: m,
            orig,
            tuple: orig,
            in_port,
            in_kind: r.in_kind,
            rx_len: r.rx_len,
            from_tunnel: r.from_tunnel,
            flow_hash: r.flow_hash,
            ..PacketCtx::default()
        }
    }

    #[inline]
    pub fn drop(&mut self, r: DropReason) {
        self.done = Some(Verdict::Drop(r));
    }
    #[inline]
    pub fn is_done(&self) -> bool {
        self.done.is_some()
    }
    /// A new flow that policy and conntrack must look at (not a reply the switch made, not a
    /// packet of a tracked flow).
    #[inline]
    pub fn is_new_flow(&self) -> bool {
        !self.generated && self.ct == CtHit::Miss
    }
}
