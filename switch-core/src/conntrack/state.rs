//! TCP state as far as timeouts need it, and the timeouts.

use crate::wire::l4::tcp_flags;
use crate::wire::proto;

const SEC: u64 = 1_000_000_000;

/// Per-state lifetimes, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtTimeouts {
    pub tcp_syn: u64,
    pub tcp_established: u64,
    pub tcp_fin: u64,
    pub tcp_close: u64,
    pub udp: u64,
    pub icmp: u64,
    pub other: u64,
    /// Upper bound for a flow no reply has been seen for yet: UDP and ICMP sent one way, a
    /// TCP connection picked up mid-stream, a SYN nobody answered (the kernel's
    /// `nf_conntrack_udp_timeout` of 30 s for unreplied UDP).
    pub unreplied: u64,
}

impl Default for CtTimeouts {
    /// Cilium's defaults for TCP (6 h established, 60 s SYN, 10 s close); 60 s for UDP and
    /// SCTP, 30 s for ICMP; 30 s until a flow is answered.
    fn default() -> Self {
        CtTimeouts {
            tcp_syn: 60 * SEC,
            tcp_established: 6 * 3600 * SEC,
            tcp_fin: 30 * SEC,
            tcp_close: 10 * SEC,
            udp: 60 * SEC,
            icmp: 30 * SEC,
            other: 60 * SEC,
            unreplied: 30 * SEC,
        }
    }
}

/// The TCP state of a tracked flow (`NotTcp` for other protocols).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TcpState {
    #[default]
    NotTcp,
    SynSent,
    SynReceived,
    Established,
    /// One side has sent FIN.
    FinWait,
    /// Both sides have sent FIN.
    Closing,
    /// Reset seen.
    Closed,
}

impl TcpState {
    /// Every state, in the order of [`TcpState::code`].
    pub const ALL: [TcpState; 7] = [
        TcpState::NotTcp,
        TcpState::SynSent,
        TcpState::SynReceived,
        TcpState::Established,
        TcpState::FinWait,
        TcpState::Closing,
        TcpState::Closed,
    ];

    /// A stable number for the state (its place in [`TcpState::ALL`]), for state files.
    pub fn code(self) -> u8 {
        Self::ALL.iter().position(|s| *s == self).unwrap_or(0) as u8
    }

    /// The state of a [`TcpState::code`]; `None` for a number no state has.
    pub fn from_code(code: u8) -> Option<TcpState> {
        Self::ALL.get(usize::from(code)).copied()
    }

    /// The state of a new flow whose first packet has `flags`. A flow first seen mid-stream
    /// (after a restart, say) is taken up as established, like the kernel's loose tracking.
    pub fn initial(protocol: u8, flags: u8) -> TcpState {
        if protocol != proto::TCP {
            return TcpState::NotTcp;
        }
        if flags & tcp_flags::RST != 0 {
            TcpState::Closed
        } else if flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN {
            TcpState::SynSent
        } else {
            TcpState::Established
        }
    }

    /// The next state after a packet with `flags` in the original (`reply == false`) or reply
    /// direction. `fins` records which directions have sent FIN (bit 0 original, bit 1 reply).
    pub fn next(self, flags: u8, reply: bool, fins: &mut u8) -> TcpState {
        use TcpState::*;
        if self == NotTcp {
            return NotTcp;
        }
        if flags & tcp_flags::RST != 0 {
            return Closed;
        }
        if flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN && !reply && matches!(self, Closed | Closing) {
            // The tuple is reused by a new connection.
            *fins = 0;
            return SynSent;
        }
        if flags & tcp_flags::FIN != 0 {
            *fins |= if reply { 2 } else { 1 };
        }
        match (self, *fins) {
            (_, 3) => Closing,
            (_, 1) | (_, 2) => FinWait,
            (SynSent, _) if reply && flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN | tcp_flags::ACK => {
                SynReceived
            }
            (SynReceived, _) if !reply && flags & tcp_flags::ACK != 0 => Established,
            (s, _) => s,
        }
    }

    /// Lifetime in this state for `protocol`.
    pub fn timeout(self, protocol: u8, t: &CtTimeouts) -> u64 {
        match self {
            TcpState::NotTcp => match protocol {
                proto::UDP | proto::SCTP => t.udp,
                proto::ICMP | proto::ICMPV6 => t.icmp,
                _ => t.other,
            },
            TcpState::SynSent | TcpState::SynReceived => t.tcp_syn,
            TcpState::Established => t.tcp_established,
            TcpState::FinWait => t.tcp_fin,
            TcpState::Closing | TcpState::Closed => t.tcp_close,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TcpState::NotTcp => "-",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynReceived => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::Closing => "CLOSING",
            TcpState::Closed => "CLOSED",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcp_flags::*;

    #[test]
    fn handshake_and_teardown() {
        let mut fins = 0;
        let s = TcpState::initial(proto::TCP, SYN);
        assert_eq!(s, TcpState::SynSent);
        let s = s.next(SYN | ACK, true, &mut fins);
        assert_eq!(s, TcpState::SynReceived);
        let s = s.next(ACK, false, &mut fins);
        assert_eq!(s, TcpState::Established);
        let s = s.next(FIN | ACK, false, &mut fins);
        assert_eq!(s, TcpState::FinWait);
        let s = s.next(FIN | ACK, true, &mut fins);
        assert_eq!(s, TcpState::Closing);
        let s = s.next(SYN, false, &mut fins);
        assert_eq!((s, fins), (TcpState::SynSent, 0));
        assert_eq!(s.next(RST, true, &mut fins), TcpState::Closed);
    }

    #[test]
    fn timeouts_follow_state() {
        let t = CtTimeouts::default();
        assert!(TcpState::Established.timeout(proto::TCP, &t) > TcpState::SynSent.timeout(proto::TCP, &t));
        assert_eq!(TcpState::NotTcp.timeout(proto::UDP, &t), t.udp);
        assert_eq!(TcpState::initial(proto::TCP, ACK), TcpState::Established);
        assert_eq!(TcpState::initial(proto::UDP, 0), TcpState::NotTcp);
    }
}
