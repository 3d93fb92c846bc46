//! The stage list: what a batch goes through after stage 1 (receive), in order. Each feature
//! owns its stage function (a loop over the batch in its own directory); the pipeline only
//! calls them from this list. A new feature adds its directory and one line here.

use super::ctx::PacketCtx;
use super::trace::{TraceLog, TraceRecord};
use super::WorkerState;
use crate::packet::PacketBuf;
use crate::snapshot::Tables;

/// What a stage works on: the batch's frames and their contexts, the worker's own state, the
/// snapshot, the time, and (when the worker traces) one record log per packet.
pub(crate) struct Lanes<'a, B> {
    pub t: &'a Tables,
    pub now: u64,
    pub pkts: &'a mut [B],
    pub ctx: &'a mut [PacketCtx],
    pub st: &'a mut WorkerState,
    pub trace: Option<&'a mut [TraceLog]>,
    /// Set by the conntrack lookup when the batch holds later fragments still waiting for
    /// their flow (`fragment/stage.rs` retries them after the commit).
    pub later_fragments: bool,
}

impl<B> Lanes<'_, B> {
    /// Notes what a stage decided for packet `i` (only when tracing).
    #[inline]
    pub fn record(&mut self, i: usize, r: TraceRecord) {
        if let Some(log) = self.trace.as_deref_mut().and_then(|t| t.get_mut(i)) {
            log.push(r);
        }
    }

    #[inline]
    pub fn tracing(&self) -> bool {
        self.trace.is_some()
    }
}

/// A stage: its name (for profiles and docs) and its function over the batch.
pub(crate) struct Stage<B> {
    pub name: &'static str,
    pub run: fn(&mut Lanes<'_, B>),
}

/// Stages 2 to 12, in order (see the README's architecture section, which follows one packet
/// through them).
pub(crate) fn list<B: PacketBuf>() -> [Stage<B>; 12] {
    [
        Stage { name: "link-layer", run: super::l2::stage },
        Stage { name: "martian+antispoof", run: super::martian::stage },
        Stage { name: "dns", run: crate::dns::stage::stage },
        Stage { name: "conntrack-lookup", run: crate::conntrack::stage::lookup_stage },
        Stage { name: "service", run: crate::service::stage::stage },
        Stage { name: "conntrack-prefetch-reply", run: crate::conntrack::stage::prefetch_reply_stage },
        Stage { name: "egress-policy", run: crate::policy::stage::egress_stage },
        Stage { name: "route", run: crate::route::stage::stage },
        Stage { name: "ingress-policy", run: crate::policy::stage::ingress_stage },
        Stage { name: "mtu+conntrack-commit", run: super::mtu::stage },
        Stage { name: "fragment-retry", run: crate::fragment::stage::retry_stage },
        Stage { name: "egress", run: super::egress::stage },
    ]
}
