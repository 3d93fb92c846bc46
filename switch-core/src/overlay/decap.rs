//! Recognising and validating tunnel packets addressed to this node.

use crate::drop::DropReason;
use crate::parse::PacketMeta;
use crate::route::NodeId;
use crate::snapshot::Tables;
use crate::wire::geneve::{self, GeneveHeader};
use crate::wire::l4::UDP_LEN;
use crate::wire::proto;
use crate::wire::vxlan::{self, VxlanHeader};

/// What an uplink frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decap {
    /// Not a tunnel packet for this node.
    NotTunnel,
    /// A valid tunnel packet: the inner Ethernet frame starts `outer_len` bytes in.
    Inner { outer_len: usize, peer: NodeId },
}

/// Checks whether a parsed uplink frame is a tunnel packet for this node and, if so, validates
/// the tunnel header (VNI, version, flags, peer) and says where the inner frame starts.
/// Both VXLAN and Geneve are accepted on receipt, whichever this node sends.
pub fn decapsulate_len(frame: &[u8], m: &PacketMeta, t: &Tables) -> Result<Decap, DropReason> {
    if m.proto != proto::UDP
        || !(m.dport == vxlan::UDP_PORT || m.dport == geneve::UDP_PORT)
        || !t.endpoints.is_node_ip(m.dst)
    {
        return Ok(Decap::NotTunnel);
    }
    // A tunnel packet fragmented in the underlay would need reassembly, which the switch does
    // not do (the overlay MTU is meant to keep outer packets whole).
    if m.is_fragment() {
        return Err(DropReason::IpFragment);
    }
    let hdr_at = usize::from(m.l4_off) + UDP_LEN;
    let end = usize::from(m.ip_end);
    let hdr = &frame[hdr_at.min(end)..end];
    let (vni, len) = if m.dport == vxlan::UDP_PORT {
        let h = VxlanHeader::new_checked(hdr).map_err(|_| DropReason::TunnelMalformed)?;
        (h.vni(), vxlan::HEADER_LEN)
    } else {
        let h = GeneveHeader::new_checked(hdr).map_err(|_| DropReason::TunnelMalformed)?;
        if h.is_oam() {
            return Err(DropReason::TunnelOam);
        }
        if h.has_critical_options() {
            return Err(DropReason::TunnelCriticalOption);
        }
        if h.protocol() != geneve::PROTO_ETHERNET {
            return Err(DropReason::TunnelNotEthernet);
        }
        (h.vni(), h.header_len())
    };
    if vni != t.node.vni {
        return Err(DropReason::TunnelWrongVni);
    }
    let peer = t.node_by_underlay(m.src).ok_or(DropReason::TunnelUnknownPeer)?;
    Ok(Decap::Inner { outer_len: hdr_at + len, peer })
}
