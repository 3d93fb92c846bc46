//! Gratuitous announcements of the LoadBalancer addresses a node takes over (layer 2 mode, as
//! MetalLB's speaker does): a gratuitous ARP (RFC 5227 section 3, an ARP request whose sender
//! and target are the address) for IPv4 and an unsolicited neighbour advertisement with the
//! override flag to all nodes (RFC 4861 section 7.2.6) for IPv6, so that hosts on the segment
//! update their caches at once instead of when their entry for the old node goes stale.
//! Answers to later ARP and neighbour solicitations come from the pipeline
//! (`switch-core/src/pipeline/l2.rs`). Also the ARP requests for remote nodes' underlay
//! addresses whose MAC the pipeline has not learned yet (`switch-core/src/neighbor/`).

use std::net::{IpAddr, Ipv6Addr};
use switch_core::addr::Addr;
use switch_core::wire::checksum::pseudo_header_sum;
use switch_core::wire::l4::transport_checksum;
use switch_core::wire::{arp, icmp, ipv6, proto, MacAddr};

/// The announcement frame of `ip` from `mac`.
pub fn frame(ip: IpAddr, mac: MacAddr) -> Vec<u8> {
    match ip {
        // A gratuitous ARP: a request whose sender and target are the address.
        IpAddr::V4(a) => arp_request(a, a, mac),
        IpAddr::V6(a) => {
            let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
            let len = icmp::ND_LEN_WITH_LLA;
            let mut f = vec![0u8; 14 + 40 + len];
            f[..6].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
            f[6..12].copy_from_slice(&mac.0);
            f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
            ipv6::write_header(&mut f[14..], a, all_nodes, proto::ICMPV6, len, 255, 0);
            let body = &mut f[54..54 + len];
            icmp::write_neighbor_advert(body, a, mac);
            // Unsolicited: override only (no router, no solicited flag).
            body[4] = 0x20;
            let sum = pseudo_header_sum(&a.octets(), &all_nodes.octets(), proto::ICMPV6, len as u32);
            let c = transport_checksum(sum, body);
            icmp::set_checksum(body, c);
            f
        }
    }
}

/// An ARP request for `target` from this node (`from`, `mac`), broadcast: how the daemon asks
/// for the MAC of a remote node's underlay address (the answer is learned by the pipeline).
pub fn arp_request(target: std::net::Ipv4Addr, from: std::net::Ipv4Addr, mac: MacAddr) -> Vec<u8> {
    arp::frame(arp::OP_REQUEST, mac, from, target)
}

/// Every second, asks by ARP for the remote nodes (IPv4 underlay) whose MAC the live snapshot
/// has not learned, out of the uplink; the pipeline learns the answers. Until `stop`.
pub fn spawn_resolver(
    c: std::sync::Arc<crate::controller::Controller>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("psw-neighbors".into()).spawn(move || {
        let Some(iface) = c.uplink_interface() else { return };
        let mut warned = false;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let t = c.cell().load();
            if let Some(me) = t.node.ipv4 {
                let frames: Vec<Vec<u8>> = t
                    .nodes
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| t.neighbors.get(*i).is_none())
                    .filter_map(|(_, n)| n.underlay_ip.v4())
                    .take(256)
                    .map(|ip| arp_request(ip, me, t.node.uplink_mac))
                    .collect();
                if !frames.is_empty() {
                    if let Err(e) = io_backends::sys::send_frames(&iface, &frames) {
                        if !warned {
                            tracing::warn!("asking for underlay neighbours on {iface}: {e}");
                            warned = true;
                        }
                    }
                }
            }
            // A second, in slices: a stopping daemon does not wait for it (the next process's
            // start, and so the gap of a restart, does).
            for _ in 0..20 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    })
}

/// The addresses of `after` that `before` did not have.
pub fn taken_over(before: &[Addr], after: &[Addr]) -> Vec<IpAddr> {
    after.iter().filter(|a| before.binary_search(a).is_err()).map(|a| a.to_ip()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use switch_core::parse::{parse, IcmpKind, ParseOptions, L3};

    #[test]
    fn announcements_parse_as_what_they_claim() {
        let mac = MacAddr([2, 0, 0, 0, 1, 10]);
        let f = frame("192.0.2.5".parse().unwrap(), mac);
        let m = parse(&f, ParseOptions::default()).expect("parses");
        assert_eq!(m.l3, L3::Arp);
        let a = arp::ArpPacket::new_checked(&f[14..]).unwrap();
        assert_eq!(a.operation(), arp::OP_REQUEST);
        assert_eq!(a.sender_ip(), a.target_ip());
        assert_eq!(a.sender_mac(), mac);
        let f = frame("2001:db8::5".parse().unwrap(), mac);
        let m = parse(&f, ParseOptions { verify_l4_checksum: true }).expect("parses, checksum too");
        assert_eq!(m.icmp, IcmpKind::NeighborOther);
        assert_eq!(f[54 + 4], 0x20);
    }

    #[test]
    fn only_new_addresses_are_announced() {
        let a = |s: &str| Addr::from(s.parse::<IpAddr>().unwrap());
        let before = vec![a("192.0.2.1"), a("192.0.2.2")];
        let after = vec![a("192.0.2.2"), a("192.0.2.3")];
        assert_eq!(taken_over(&before, &after), vec!["192.0.2.3".parse::<IpAddr>().unwrap()]);
    }
}
