//! Trace records: what each stage decided for a packet, written by the stage itself when the
//! worker traces (`podswitchctl trace` runs a scratch worker with tracing on), so the trace
//! shows every decision, including ones a later stage would hide (a DNS answer, a refusal).
//! A worker that does not trace pays one branch per stage and packet.

use super::ctx::Out;
use crate::addr::Addr;
use crate::conntrack::Tuple;
use crate::endpoint::EndpointId;
use crate::policy::RuleId;
use crate::route::RouteTarget;
use crate::service::{FrontendKind, ServicePortId};

/// Records one packet holds at most (each stage writes at most one, two for a rerouted
/// rejection).
pub const MAX_RECORDS: usize = 16;

/// What the service stage did with a new flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceRecord {
    /// A frontend of Service port `id`; `to` is the tuple after DNAT (and SNAT), chosen among
    /// `backends`.
    Selected { id: ServicePortId, kind: FrontendKind, to: Tuple, backends: u16 },
    /// The Service has no usable backend: refused with a reset or an ICMP unreachable.
    Refused { id: ServicePortId },
    /// Not an address and port of any frontend.
    NotAService,
}

/// What a policy stage decided for one pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyVerdict {
    Allowed(RuleId),
    /// Selected by policies, none of whose rules admit the packet.
    Denied,
    /// No policy selects the pod in this direction.
    NotSelected,
    /// Not a new flow: conntrack carries the verdict.
    NotEvaluated,
}

/// What the route stage decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteRecord {
    LocalPod(EndpointId),
    /// An address of this node: its host port.
    Node,
    /// The longest prefix matching the destination, of `len` bits.
    Prefix {
        len: u8,
        target: RouteTarget,
    },
    NoRoute,
    /// An earlier stage chose the port (the DNS stage's resolver).
    Chosen(Out),
}

/// One stage's decision for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceRecord {
    /// ARP or a neighbour solicitation answered in place.
    LinkAnswered,
    Dns(crate::dns::TraceRecord),
    Conntrack(super::CtHit),
    Service(ServiceRecord),
    Policy {
        egress: bool,
        endpoint: EndpointId,
        verdict: PolicyVerdict,
    },
    Route {
        dst: Addr,
        record: RouteRecord,
    },
}

/// The records of one packet, in stage order.
#[derive(Debug, Clone, Copy)]
pub struct TraceLog {
    records: [Option<TraceRecord>; MAX_RECORDS],
    len: usize,
}

impl Default for TraceLog {
    fn default() -> Self {
        TraceLog { records: [None; MAX_RECORDS], len: 0 }
    }
}

impl TraceLog {
    pub fn push(&mut self, r: TraceRecord) {
        if let Some(slot) = self.records.get_mut(self.len) {
            *slot = Some(r);
            self.len += 1;
        }
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    pub fn records(&self) -> impl Iterator<Item = &TraceRecord> {
        self.records[..self.len].iter().flatten()
    }
}
