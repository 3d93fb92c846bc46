//! Martians: packets no router forwards. Addresses that never belong on a wire as a source or
//! destination (RFC 1812 section 5.3.7, RFC 6890, RFC 4291) and TCP flag combinations no
//! stack sends, refused as the kernel's conntrack refuses them (`tcp_valid_flags` in
//! `nf_conntrack_proto_tcp.c`). One stage, early (after the link layer has answered ARP and
//! neighbour discovery, before anti-spoofing), for every port kind and for inner frames after
//! tunnel decapsulation; each kind of martian is counted under its own reason.
//!
//! Dropped: sources in 0.0.0.0/8 (DHCP included: the switch does not serve it), 127.0.0.0/8,
//! multicast 224.0.0.0/4 and the limited broadcast 255.255.255.255, `::`, `::1` and ff00::/8;
//! destinations in 0.0.0.0/8 and 127.0.0.0/8, `::` and `::1` (`martian_destination`),
//! multicast (`multicast_destination`) and 255.255.255.255 (`broadcast_destination`); IPv6
//! packets carrying IPv4-mapped addresses (RFC 4291 section 2.5.5.2), which the tables would
//! otherwise read as IPv4.

use super::ctx::PacketCtx;
use crate::addr::Addr;
use crate::drop::DropReason;
use crate::parse::L3;
use crate::wire::l4::tcp_flags::{ACK, FIN, PSH, RST, SYN};
use crate::wire::proto;

const URG: u8 = 0x20;

/// The flag combinations conntrack accepts, PSH aside (ECE and CWR are not in
/// `PacketMeta::tcp_flags`): SYN, SYN+URG, SYN+ACK, RST, RST+ACK, FIN+ACK, FIN+ACK+URG, ACK,
/// ACK+URG. Indexed by FIN, SYN, RST, ACK and URG (bits 0-2, 4, 5).
const TCP_VALID: u64 = (1 << SYN)
    | (1 << (SYN | URG))
    | (1 << (SYN | ACK))
    | (1 << RST)
    | (1 << (RST | ACK))
    | (1 << (FIN | ACK))
    | (1 << (FIN | ACK | URG))
    | (1 << ACK)
    | (1 << (ACK | URG));

/// Whether a TCP segment's flags are a combination a stack sends.
#[inline]
pub(crate) fn tcp_flags_valid(flags: u8) -> bool {
    (TCP_VALID >> (flags & !PSH & 0x3f)) & 1 != 0
}

fn v4_source(a: u32) -> bool {
    let first = a >> 24;
    first == 0 || first == 127 || (224..240).contains(&first) || a == u32::MAX
}

fn v4_destination(a: u32) -> Option<DropReason> {
    match a >> 24 {
        0 | 127 => Some(DropReason::MartianDestination),
        224..=239 => Some(DropReason::MulticastDestination),
        _ if a == u32::MAX => Some(DropReason::BroadcastDestination),
        _ => None,
    }
}

fn v6_special(a: Addr) -> bool {
    a == Addr::UNSPECIFIED || a.bits() == 1 || a.is_v4()
}

fn v6_multicast(a: Addr) -> bool {
    a.bits() >> 120 == 0xff
}

/// The reason a packet is a martian, if it is one.
pub(crate) fn reason(c: &PacketCtx) -> Option<DropReason> {
    let m = &c.meta;
    match m.l3 {
        L3::V4 => {
            if v4_source(m.src.low32()) {
                return Some(DropReason::MartianSource);
            }
            if let Some(r) = v4_destination(m.dst.low32()) {
                return Some(r);
            }
        }
        L3::V6 => {
            if v6_special(m.src) || v6_multicast(m.src) {
                return Some(DropReason::MartianSource);
            }
            if v6_special(m.dst) {
                return Some(DropReason::MartianDestination);
            }
            if v6_multicast(m.dst) {
                return Some(DropReason::MulticastDestination);
            }
        }
        L3::Arp | L3::None => return None,
    }
    // A later fragment carries no TCP header: its flags are the first fragment's business.
    (m.proto == proto::TCP && !m.is_later_fragment() && !tcp_flags_valid(m.tcp_flags))
        .then_some(DropReason::TcpInvalidFlags)
}

/// Martians, then anti-spoofing, in one pass (both read only the packet's metadata).
pub(crate) fn stage<B>(l: &mut super::stage::Lanes<'_, B>) {
    for c in l.ctx.iter_mut().filter(|c| !c.is_done()) {
        check(c);
        if !c.is_done() {
            super::antispoof::check(l.t, c);
        }
    }
}

pub(crate) fn check(c: &mut PacketCtx) {
    if let Some(r) = reason(c) {
        c.drop(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's table, written out as it is in nf_conntrack_proto_tcp.c.
    fn kernel_valid(f: u8) -> bool {
        let f = f & !PSH;
        [SYN, SYN | URG, SYN | ACK, RST, RST | ACK, FIN | ACK, FIN | ACK | URG, ACK, ACK | URG].contains(&f)
    }

    #[test]
    fn tcp_flag_table_matches_the_kernel_for_every_combination() {
        for f in 0..=0x3fu8 {
            assert_eq!(tcp_flags_valid(f), kernel_valid(f), "flags {f:#04x}");
        }
        for bad in [SYN | FIN, SYN | RST, 0, FIN, FIN | PSH, SYN | FIN | ACK, RST | FIN | ACK, PSH, URG] {
            assert!(!tcp_flags_valid(bad), "{bad:#04x}");
        }
        for good in [SYN, SYN | ACK, ACK | PSH, FIN | ACK | PSH, RST, RST | ACK] {
            assert!(tcp_flags_valid(good), "{good:#04x}");
        }
    }

    #[test]
    fn address_classes() {
        let a = |s: &str| u32::from(s.parse::<core::net::Ipv4Addr>().unwrap());
        for s in ["0.0.0.0", "0.1.2.3", "127.0.0.1", "127.255.0.9", "224.0.0.1", "239.1.1.1", "255.255.255.255"] {
            assert!(v4_source(a(s)), "{s}");
        }
        for s in ["10.0.0.1", "1.0.0.0", "126.255.255.255", "128.0.0.1", "223.255.255.255", "240.0.0.1"] {
            assert!(!v4_source(a(s)), "{s}");
        }
        assert_eq!(v4_destination(a("127.0.0.53")), Some(DropReason::MartianDestination));
        assert_eq!(v4_destination(a("0.0.0.0")), Some(DropReason::MartianDestination));
        assert_eq!(v4_destination(a("224.0.0.251")), Some(DropReason::MulticastDestination));
        assert_eq!(v4_destination(a("255.255.255.255")), Some(DropReason::BroadcastDestination));
        assert_eq!(v4_destination(a("10.244.1.255")), None);
        let b = |s: &str| Addr::from(s.parse::<core::net::Ipv6Addr>().unwrap());
        assert!(v6_special(b("::")) && v6_special(b("::1")) && v6_special(b("::ffff:10.0.0.1")));
        assert!(!v6_special(b("fe80::1")) && !v6_special(b("::2")));
        assert!(v6_multicast(b("ff02::1")) && !v6_multicast(b("fe80::1")));
    }
}
