//! Why a packet was dropped: one enum for the whole pipeline, counted per port and per reason.

use core::fmt;

macro_rules! drop_reasons {
    ($($name:ident => $text:literal,)*) => {
        /// Every reason the pipeline drops a packet.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason { $($name,)* }

        impl DropReason {
            /// All reasons, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$name,)*];
            /// The stable snake_case name used in counters, metrics and the CLI.
            pub fn name(self) -> &'static str {
                match self { $(DropReason::$name => $text,)* }
            }
        }
    };
}

drop_reasons! {
    FrameTooShort => "frame_too_short",
    FrameTooLong => "frame_too_long",
    FrameExceedsBuffer => "frame_exceeds_buffer",
    UnsupportedEthertype => "unsupported_ethertype",
    VlanNotAllowed => "vlan_not_allowed",
    ArpMalformed => "arp_malformed",
    ArpNotAnswered => "arp_not_answered",
    Ipv4Truncated => "ipv4_truncated",
    Ipv4Malformed => "ipv4_malformed",
    Ipv4BadChecksum => "ipv4_bad_checksum",
    IpOptions => "ip_options",
    IpFragment => "ip_fragment",
    FragmentUnmatched => "fragment_unmatched",
    FragmentNoFlow => "fragment_no_flow",
    Ipv6Truncated => "ipv6_truncated",
    Ipv6Malformed => "ipv6_malformed",
    Ipv6ExtensionHeader => "ipv6_extension_header",
    Ipv6RoutingHeader => "ipv6_routing_header",
    L4Truncated => "l4_truncated",
    L4Malformed => "l4_malformed",
    L4BadChecksum => "l4_bad_checksum",
    UnsupportedProtocol => "unsupported_protocol",
    IcmpUnsupported => "icmp_unsupported",
    NdNotAnswered => "nd_not_answered",
    TtlExceeded => "ttl_exceeded",
    NotForRouter => "not_for_router_mac",
    UnknownPort => "unknown_port",
    UnknownEndpoint => "unknown_endpoint",
    SpoofedMac => "spoofed_mac",
    SpoofedIp => "spoofed_ip",
    MartianSource => "martian_source",
    MartianDestination => "martian_destination",
    MulticastDestination => "multicast_destination",
    BroadcastDestination => "broadcast_destination",
    TcpInvalidFlags => "tcp_invalid_flags",
    TunnelMalformed => "tunnel_malformed",
    TunnelWrongVni => "tunnel_wrong_vni",
    TunnelUnknownPeer => "tunnel_unknown_peer",
    TunnelOam => "tunnel_oam",
    TunnelCriticalOption => "tunnel_critical_option",
    TunnelNotEthernet => "tunnel_not_ethernet",
    PolicyDeniedEgress => "policy_denied_egress",
    PolicyDeniedIngress => "policy_denied_ingress",
    ServiceNoBackends => "service_no_backends",
    ServiceNoLocalBackend => "service_no_local_backend",
    ServiceNoFrontend => "service_no_frontend",
    DnsNotAQuery => "dns_not_a_query",
    LoadBalancerSourceDenied => "loadbalancer_source_denied",
    NoRoute => "no_route",
    RouteBlackhole => "route_blackhole",
    NoLocalEndpoint => "no_local_endpoint",
    NoHostPort => "no_host_port",
    MtuExceeded => "mtu_exceeded",
    NoHeadroom => "no_headroom",
    NeighborUnresolved => "neighbor_unresolved",
    SnatPortsExhausted => "snat_ports_exhausted",
    ConntrackInvalid => "conntrack_invalid",
    ConntrackFull => "conntrack_full",
    TxQueueFull => "tx_queue_full",
    HandoffQueueFull => "handoff_queue_full",
}

impl DropReason {
    pub const COUNT: usize = DropReason::ALL.len();

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_indexed() {
        let mut seen = std::collections::HashSet::new();
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert!(seen.insert(r.name()), "duplicate name {}", r.name());
        }
        assert_eq!(DropReason::COUNT, DropReason::ALL.len());
    }
}
