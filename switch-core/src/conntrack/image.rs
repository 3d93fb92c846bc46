//! Flows as plain records, to hand a conntrack table from one process to the next (a restart
//! or an upgrade keeps its connections). A record is one flow, both directions: the reply
//! entry is the reverse of the translated tuple, so it is not stored. Times are relative
//! (how long ago the flow started, how long it has left), since each process keeps its own
//! clock. The byte layout of the file that carries these records is the daemon's
//! (`control/src/handover.rs`); this module only reads and writes tables.

use super::state::TcpState;
use super::table::{lifetime, Conntrack, CtEntry, Direction, FlowKey, Tuple};
use crate::policy::RuleId;
use crate::service::ServicePortId;

/// One tracked flow, both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowImage {
    /// The original direction's tuple as its packets arrive.
    pub key: FlowKey,
    /// What the original direction is rewritten to (equal to `key.t` without NAT); the reply
    /// entry's key is its reverse.
    pub xlate: Tuple,
    pub state: TcpState,
    /// A reply has been seen (the flow is protected from eviction).
    pub replied: bool,
    /// Which directions have sent FIN (bit 0 original, bit 1 reply).
    pub fins: u8,
    pub service: Option<ServicePortId>,
    pub egress_rule: Option<RuleId>,
    pub ingress_rule: Option<RuleId>,
    /// Packets and bytes of the original and of the reply direction.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    /// Nanoseconds since the flow was created.
    pub age_ns: u64,
    /// Nanoseconds the flow has left without traffic.
    pub remaining_ns: u64,
}

/// Why a flow was not taken into a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportError {
    /// Its time was up.
    Expired,
    /// Its sets hold answered flows only (`CtStats::refused` is not counted: no packet was
    /// refused).
    NoRoom,
}

impl Conntrack {
    /// Appends the live flows whose original entry lies in slots `range` to `out` (see
    /// [`Conntrack::capacity`]), so that a walk of a large table can be split between
    /// batches. Allocates only when `out` has to grow.
    pub fn export_range(&self, now: u64, range: core::ops::Range<usize>, out: &mut Vec<FlowImage>) {
        for (slot, k, e, exp) in self.iter_slots(now, range) {
            if e.dir != Direction::Original {
                continue;
            }
            let (reply, rexp) = match self.peer_of(slot) {
                Some((r, rexp)) => (r, rexp),
                None => continue,
            };
            out.push(FlowImage {
                key: *k,
                xlate: e.xlate,
                state: e.state,
                replied: e.replied,
                fins: e.fins,
                service: e.service,
                egress_rule: e.egress_rule,
                ingress_rule: e.ingress_rule,
                packets: [e.packets, reply.packets],
                bytes: [e.bytes, reply.bytes],
                age_ns: now.saturating_sub(e.created),
                remaining_ns: exp.max(rexp).saturating_sub(now),
            });
        }
    }

    /// Tracks a flow from a record: both entries, with its state, counters and what is left of
    /// its lifetime (at most the lifetime its state has under this table's timeouts), checked
    /// again on its next packet as after a table change (`generation` should differ from the
    /// running table's). A flow already tracked under either of its keys is removed whole
    /// first (the later record wins; no half flow is left). Never evicts an assured flow.
    pub fn import(&mut self, f: &FlowImage, generation: u32, now: u64) -> Result<usize, ImportError> {
        let remaining = f.remaining_ns.min(lifetime(f.state, f.key.proto, f.replied, &self.timeouts));
        if remaining == 0 {
            return Err(ImportError::Expired);
        }
        let rkey = FlowKey { t: f.xlate.reversed(), proto: f.key.proto };
        for k in [f.key, rkey] {
            if let Some(slot) = self.lookup(&k, now) {
                self.remove_flow(slot);
            }
        }
        let expires = now.saturating_add(remaining);
        let base = CtEntry {
            dir: Direction::Original,
            xlate: f.xlate,
            state: f.state,
            replied: f.replied,
            service: f.service,
            egress_rule: f.egress_rule,
            ingress_rule: f.ingress_rule,
            packets: f.packets[0],
            bytes: f.bytes[0],
            created: now.saturating_sub(f.age_ns),
            generation,
            ..CtEntry::default()
        };
        let reply = CtEntry {
            dir: Direction::Reply,
            xlate: f.key.t.reversed(),
            packets: f.packets[1],
            bytes: f.bytes[1],
            ..base
        };
        let (hash, rhash) = (self.hash(&f.key), self.hash(&rkey));
        let o = self.place_flow(f.key, hash, rhash, base, reply, f.fins, expires, now).ok_or(ImportError::NoRoom)?;
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Addr;
    use crate::conntrack::{CtTimeouts, NewFlow};
    use crate::wire::l4::tcp_flags::*;
    use crate::wire::proto;

    fn a(s: &str) -> Addr {
        Addr::from(s.parse::<core::net::IpAddr>().unwrap())
    }

    fn flow(sport: u16) -> NewFlow {
        let key =
            FlowKey { t: Tuple { src: a("10.0.0.2"), dst: a("10.96.0.10"), sport, dport: 80 }, proto: proto::TCP };
        NewFlow {
            generation: 1,
            key,
            xlate: Tuple { dst: a("10.0.1.7"), dport: 8080, ..key.t },
            tcp_flags: SYN,
            len: 60,
            service: Some(ServicePortId(3)),
            egress_rule: Some(RuleId(4)),
            ingress_rule: None,
        }
    }

    fn established(ct: &mut Conntrack, f: &NewFlow, now: u64) {
        let o = ct.commit(f, now).unwrap();
        let r = ct.lookup(&FlowKey { t: f.xlate.reversed(), proto: f.key.proto }, now).unwrap();
        ct.touch(r, SYN | ACK, 60, now + 1);
        ct.touch(o, ACK, 52, now + 2);
    }

    fn export_all(ct: &Conntrack, now: u64) -> Vec<FlowImage> {
        let mut out = Vec::new();
        // In two halves, as the daemon walks a table between batches.
        let half = ct.capacity() / 2;
        ct.export_range(now, 0..half, &mut out);
        ct.export_range(now, half..ct.capacity(), &mut out);
        out
    }

    /// A flow goes through a record into a table with another hash key and clock, and both
    /// directions are translated as before, with their state, counters and lifetime.
    #[test]
    fn a_flow_survives_export_and_import_into_another_table() {
        let mut old = Conntrack::new(1024, 7, CtTimeouts::default());
        let f = flow(40000);
        established(&mut old, &f, 1_000);
        let images = export_all(&old, 10_000);
        assert_eq!(images.len(), 1, "one record per flow, not per entry");
        let img = images[0];
        assert_eq!((img.key, img.xlate, img.state), (f.key, f.xlate, TcpState::Established));
        assert!(img.replied);
        assert_eq!((img.packets, img.bytes), ([2, 1], [112, 60]));
        assert_eq!(img.age_ns, 9_000);

        let mut new = Conntrack::new(1024, 99, CtTimeouts::default());
        let o = new.import(&img, 0, 5).unwrap();
        assert_eq!(new.lookup(&f.key, 6), Some(o));
        let e = *new.entry(o);
        assert_eq!(
            (e.xlate, e.state, e.service, e.egress_rule),
            (f.xlate, TcpState::Established, f.service, f.egress_rule)
        );
        let r = new.lookup(&FlowKey { t: f.xlate.reversed(), proto: proto::TCP }, 6).expect("reply entry");
        assert_eq!(new.entry(r).dir, Direction::Reply);
        assert_eq!(new.entry(r).xlate, f.key.t.reversed(), "replies are rewritten back to the frontend");
        assert!(new.lookup(&f.key, 5 + img.remaining_ns - 1).is_some());
        assert!(new.lookup(&f.key, 5 + img.remaining_ns).is_none(), "what was left of its lifetime");
        // The entries are linked: a FIN on one side reaches the other.
        new.touch(o, FIN | ACK, 52, 7);
        assert_eq!(new.entry(r).state, TcpState::FinWait);
        // Exported again, the record is the same flow.
        let again = export_all(&new, 8);
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].key, again[0].xlate), (img.key, img.xlate));
    }

    #[test]
    fn expired_and_unplaceable_flows_are_refused() {
        let mut ct = Conntrack::new(4, 7, CtTimeouts::default());
        let img = FlowImage {
            remaining_ns: 0,
            ..export_all(
                &{
                    let mut c = Conntrack::new(64, 7, CtTimeouts::default());
                    established(&mut c, &flow(1), 0);
                    c
                },
                10,
            )[0]
        };
        assert_eq!(ct.import(&img, 0, 0), Err(ImportError::Expired));
        // One set of eight ways full of answered flows: nothing gives way to an import.
        for i in 0..4 {
            established(&mut ct, &flow(100 + i), 0);
        }
        let mut src = Conntrack::new(64, 7, CtTimeouts::default());
        established(&mut src, &flow(9), 0);
        let img = export_all(&src, 10)[0];
        assert_eq!(ct.import(&img, 0, 10), Err(ImportError::NoRoom));
        for i in 0..4 {
            assert!(ct.lookup(&flow(100 + i).key, 11).is_some());
        }
    }

    #[test]
    fn an_import_that_evicts_takes_the_unanswered_flow_whole() {
        let mut ct = Conntrack::new(4, 7, CtTimeouts::default());
        for i in 0..4 {
            ct.commit(&flow(100 + i), 0).unwrap();
        }
        let mut src = Conntrack::new(64, 7, CtTimeouts::default());
        established(&mut src, &flow(9), 0);
        ct.import(&export_all(&src, 10)[0], 0, 10).unwrap();
        let halves = (0..4)
            .filter(|&i| {
                let f = flow(100 + i);
                let r = FlowKey { t: f.xlate.reversed(), proto: proto::TCP };
                ct.lookup(&f.key, 11).is_some() != ct.lookup(&r, 11).is_some()
            })
            .count();
        assert_eq!(halves, 0);
        assert!(ct.lookup(&flow(9).key, 11).is_some());
    }

    /// Two records of one key (a flow that moved between workers, a reply key reused between
    /// two slices of a walk): the later wins whole, and no entry of the earlier is left to
    /// translate one way.
    #[test]
    fn an_import_over_a_tracked_key_replaces_the_whole_flow() {
        let mut src = Conntrack::new(64, 7, CtTimeouts::default());
        let f = flow(5);
        established(&mut src, &f, 0);
        let first = export_all(&src, 10)[0];
        // Same original key, another backend.
        let second = FlowImage { xlate: Tuple { dst: a("10.0.1.8"), ..first.xlate }, ..first };
        let mut ct = Conntrack::new(64, 99, CtTimeouts::default());
        ct.import(&first, 0, 10).unwrap();
        ct.import(&second, 0, 10).unwrap();
        assert_eq!(ct.flows(11).count(), 1);
        assert_eq!(ct.entries(), 2, "the first flow's reply entry went with it");
        let o = ct.lookup(&f.key, 11).unwrap();
        assert_eq!(ct.entry(o).xlate.dst, a("10.0.1.8"));
        assert!(ct.lookup(&FlowKey { t: first.xlate.reversed(), proto: proto::TCP }, 11).is_none());
        // A forged lifetime is cut to what the state may have here.
        let forever = FlowImage { remaining_ns: u64::MAX, ..first };
        let o = ct.import(&forever, 0, 20).unwrap();
        let limit = CtTimeouts::default().tcp_established;
        assert!(ct.lookup(&f.key, 20 + limit - 1) == Some(o) && ct.lookup(&f.key, 20 + limit).is_none());
    }

    #[test]
    fn tcp_state_codes_round_trip() {
        for s in TcpState::ALL {
            assert_eq!(TcpState::from_code(s.code()), Some(s));
        }
        assert_eq!(TcpState::from_code(7), None);
    }
}
