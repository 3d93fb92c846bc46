//! Turning a query into its answer in the same buffer: the header is rewritten, the question
//! stays where it is (so the answer keeps the question's case), and the records, the SOA of a
//! negative answer and the OPT record follow it. Used by the pipeline stage on the frame's
//! UDP payload and by the daemon's resolver on TCP and oversized queries.

use super::table::{Found, NameTable};
use crate::wire::dns::{self, flags, rcode, rtype, Query, QueryError, HEADER_LEN, MAX_NAME};

/// The UDP payload size the switch advertises in its OPT record (the DNS flag day 2020 value,
/// which avoids IP fragmentation on common paths).
pub const ADVERTISED_UDP_SIZE: u16 = 1232;

/// The kind of answer written, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    NoError,
    /// NOERROR with no answer records (the name exists, not with this type).
    NoData,
    NxDomain,
    FormErr,
    NotImp,
    BadVers,
}

impl Outcome {
    pub const COUNT: usize = 6;
    /// Every outcome, in counter order.
    pub const ALL: [Outcome; Outcome::COUNT] =
        [Outcome::NoError, Outcome::NoData, Outcome::NxDomain, Outcome::FormErr, Outcome::NotImp, Outcome::BadVers];

    pub fn index(self) -> usize {
        self as usize
    }

    /// The name used in counters and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::NoError => "NOERROR",
            Outcome::NoData => "NODATA",
            Outcome::NxDomain => "NXDOMAIN",
            Outcome::FormErr => "FORMERR",
            Outcome::NotImp => "NOTIMP",
            Outcome::BadVers => "BADVERS",
        }
    }
}

/// An answer written over the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// Length of the answer message.
    pub len: usize,
    pub outcome: Outcome,
    pub qtype: u16,
    /// Records in the answer section.
    pub answers: u16,
    /// The answer did not fit the client's limit: TC set, sections emptied (RFC 2181 section
    /// 9), the client retries over TCP.
    pub truncated: bool,
}

/// Why a query was not answered here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Not a query (a response, or shorter than a header): dropped, never answered, so that
    /// two servers cannot be made to answer each other.
    NotAQuery,
    /// A query outside the table's names, or of a shape the fast path does not parse: for the
    /// resolver.
    Resolver,
    /// The answer fits the client's limit but not the buffer: for the resolver.
    TooLarge,
}

/// Answers the query in `buf[..len]`, writing the answer over it. `limit` is the largest
/// answer the client takes: `None` over UDP (its EDNS(0) UDP size, 512 without, RFC 6891
/// section 6.2.5), `Some(65535)` over TCP; `buf.len()` is the room there is. With
/// `chase_elsewhere`, a CNAME answer for another type (an ExternalName Service) is left to the
/// resolver, which follows it to the target's records. Allocates nothing.
pub fn answer(
    table: &NameTable,
    buf: &mut [u8],
    len: usize,
    limit: Option<usize>,
    chase_elsewhere: bool,
) -> Result<Answer, Pass> {
    let Some(msg) = buf.get(..len) else { return Err(Pass::NotAQuery) };
    let q = match Query::parse(msg) {
        Ok(q) => q,
        Err(QueryError::NotAQuery) => return Err(Pass::NotAQuery),
        Err(QueryError::Unsupported) => return Err(Pass::Resolver),
        Err(QueryError::Opcode) => return Ok(bare(buf, rcode::NOTIMP, Outcome::NotImp)),
        Err(QueryError::Malformed) => return Ok(bare(buf, rcode::FORMERR, Outcome::FormErr)),
    };
    let limit = limit.unwrap_or_else(|| q.udp_limit()).min(usize::from(u16::MAX));
    let qend = q.question_end;
    if let Some(e) = q.edns {
        if e.version != 0 {
            // RFC 6891 section 6.1.3: BADVERS, with our version (0), no answer.
            let n = finish(buf, &q, qend, 0, 0, (rcode::BADVERS >> 4) as u8, Outcome::BadVers)?;
            return Ok(Answer { len: n, outcome: Outcome::BadVers, qtype: q.qtype, answers: 0, truncated: false });
        }
    }
    let mut lower = [0u8; MAX_NAME];
    let name = q.name(msg);
    let lname = &mut lower[..name.len()];
    for (d, s) in lname.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    let found = table.lookup(lname, q.qtype);
    let (outcome, records, count) = match found {
        Found::Records { cname: true, .. } if chase_elsewhere && !matches!(q.qtype, rtype::CNAME | rtype::ANY) => {
            return Err(Pass::Resolver)
        }
        Found::Records { bytes, count, .. } => (Outcome::NoError, bytes, count),
        Found::NoData { .. } => (Outcome::NoData, &[][..], 0),
        Found::NxDomain => (Outcome::NxDomain, &[][..], 0),
        Found::Outside => return Err(Pass::Resolver),
    };
    // Negative answers in the zone carry its SOA (RFC 2308 section 3); a static host entry's
    // NODATA outside the zone has none of ours to give.
    let soa = match found {
        Found::NoData { in_zone: true } | Found::NxDomain => table.soa(),
        _ => &[][..],
    };
    let opt_len = if q.edns.is_some() { 11 } else { 0 };
    let soa_len = if soa.is_empty() { 0 } else { 2 + soa.len() };
    let full = qend + records.len() + soa_len + opt_len;
    if full > limit {
        // Truncated: the question and the OPT record only.
        let n = finish(buf, &q, qend, 0, 0, 0, outcome)?;
        set_flag(buf, flags::TC);
        return Ok(Answer { len: n, outcome, qtype: q.qtype, answers: 0, truncated: true });
    }
    if full > buf.len() {
        return Err(Pass::TooLarge);
    }
    // Several addresses (a headless Service's endpoints) are rotated by the query's ID, so
    // that clients taking the first one spread over all of them (CoreDNS's `loadbalance`).
    let rotate = match q.qtype {
        rtype::A | rtype::AAAA if count > 1 && records.len() % usize::from(count) == 0 => {
            usize::from(q.id % count) * (records.len() / usize::from(count))
        }
        _ => 0,
    };
    let (head, tail) = records.split_at(rotate);
    buf[qend..qend + tail.len()].copy_from_slice(tail);
    buf[qend + tail.len()..qend + records.len()].copy_from_slice(head);
    let mut at = qend + records.len();
    if !soa.is_empty() {
        // The SOA's owner is the zone: a pointer to the zone's labels at the end of the
        // question name (a name in the zone ends with them).
        let zone_at = q.name_end - table.zone().len();
        buf[at..at + 2].copy_from_slice(&(0xc000 | zone_at as u16).to_be_bytes());
        buf[at + 2..at + 2 + soa.len()].copy_from_slice(soa);
        at += soa_len;
    }
    let n = finish(buf, &q, at, count, u16::from(soa_len > 0), 0, outcome)?;
    Ok(Answer { len: n, outcome, qtype: q.qtype, answers: count, truncated: false })
}

/// Writes the header and the OPT record (when the query had one) after `at`; returns the
/// answer's length.
fn finish(
    buf: &mut [u8],
    q: &Query,
    at: usize,
    ancount: u16,
    nscount: u16,
    ext_rcode: u8,
    outcome: Outcome,
) -> Result<usize, Pass> {
    let mut n = at;
    if let Some(e) = q.edns {
        if buf.len() < n + 11 {
            return Err(Pass::TooLarge);
        }
        let ttl = u32::from(ext_rcode) << 24 | if e.dnssec_ok { dns::EDNS_DO } else { 0 };
        buf[n] = 0;
        buf[n + 1..n + 3].copy_from_slice(&rtype::OPT.to_be_bytes());
        buf[n + 3..n + 5].copy_from_slice(&ADVERTISED_UDP_SIZE.to_be_bytes());
        buf[n + 5..n + 9].copy_from_slice(&ttl.to_be_bytes());
        buf[n + 9..n + 11].copy_from_slice(&0u16.to_be_bytes());
        n += 11;
    }
    let code = match outcome {
        Outcome::NoError | Outcome::NoData | Outcome::BadVers => rcode::NOERROR,
        Outcome::NxDomain => rcode::NXDOMAIN,
        Outcome::FormErr => rcode::FORMERR,
        Outcome::NotImp => rcode::NOTIMP,
    };
    let f = flags::QR | flags::AA | flags::RA | (q.flags & (flags::RD | flags::CD)) | u16::from(code);
    buf[2..4].copy_from_slice(&f.to_be_bytes());
    let counts = [1u16, ancount, nscount, u16::from(q.edns.is_some())];
    for (i, c) in counts.iter().enumerate() {
        buf[4 + 2 * i..6 + 2 * i].copy_from_slice(&c.to_be_bytes());
    }
    Ok(n)
}

/// A header-only answer (NOTIMP, FORMERR): the query's ID and opcode, RD copied, no sections.
fn bare(buf: &mut [u8], code: u8, outcome: Outcome) -> Answer {
    let old = u16::from_be_bytes([buf[2], buf[3]]);
    let f = flags::QR | (old & (flags::OPCODE | flags::RD)) | u16::from(code);
    buf[2..4].copy_from_slice(&f.to_be_bytes());
    buf[4..HEADER_LEN].fill(0);
    Answer { len: HEADER_LEN, outcome, qtype: 0, answers: 0, truncated: false }
}

fn set_flag(buf: &mut [u8], f: u16) {
    let old = u16::from_be_bytes([buf[2], buf[3]]);
    buf[2..4].copy_from_slice(&(old | f).to_be_bytes());
}

/// Answers a query held in a `Vec` (the daemon's resolver) for a client taking at most
/// `limit` octets; `None` when the query is for the resolver to forward (or not a query).
pub fn answer_owned(table: &NameTable, query: &[u8], limit: usize) -> Option<Vec<u8>> {
    let mut buf = query.to_vec();
    buf.resize(limit.clamp(query.len(), usize::from(u16::MAX)), 0);
    let a = answer(table, &mut buf, query.len(), Some(limit), false).ok()?;
    buf.truncate(a.len);
    Some(buf)
}
