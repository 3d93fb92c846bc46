//! DNS messages (RFC 1035 section 4.1) as far as the dataplane answers them: the header, one
//! question, and an EDNS(0) OPT record (RFC 6891 section 6.1.2) in the additional section.
//! Everything else in a query (answer or authority records, several questions, compressed
//! question names, other classes) makes [`Query::parse`] say why, and the caller hands the
//! query to the daemon's resolver, which uses a full DNS library.

use super::{be16, be32};

/// The fixed header (RFC 1035 section 4.1.1).
pub const HEADER_LEN: usize = 12;
/// Longest name in wire form, length octets included (RFC 1035 section 2.3.4).
pub const MAX_NAME: usize = 255;
/// Longest label (RFC 1035 section 2.3.4).
pub const MAX_LABEL: usize = 63;
/// Largest answer over UDP without EDNS(0) (RFC 1035 section 4.2.1).
pub const CLASSIC_UDP_LIMIT: usize = 512;

/// Record types (RFC 1035 section 3.2.2; AAAA RFC 3596; SRV RFC 2782; OPT RFC 6891).
pub mod rtype {
    pub const A: u16 = 1;
    pub const NS: u16 = 2;
    pub const CNAME: u16 = 5;
    pub const SOA: u16 = 6;
    pub const PTR: u16 = 12;
    pub const TXT: u16 = 16;
    pub const AAAA: u16 = 28;
    pub const SRV: u16 = 33;
    pub const OPT: u16 = 41;
    /// QTYPE `*` (RFC 1035 section 3.2.3; RFC 8482 lets a server answer it minimally).
    pub const ANY: u16 = 255;
}

/// Class IN (RFC 1035 section 3.2.4).
pub const CLASS_IN: u16 = 1;

/// Response codes (RFC 1035 section 4.1.1; BADVERS is extended, RFC 6891 section 9).
pub mod rcode {
    pub const NOERROR: u8 = 0;
    pub const FORMERR: u8 = 1;
    pub const SERVFAIL: u8 = 2;
    pub const NXDOMAIN: u8 = 3;
    pub const NOTIMP: u8 = 4;
    pub const REFUSED: u8 = 5;
    /// Extended RCODE 16: the upper 8 bits (1) go in the OPT record, the lower 4 (0) in the
    /// header.
    pub const BADVERS: u16 = 16;
}

mod field {
    pub const ID: usize = 0;
    pub const FLAGS: usize = 2;
    pub const QDCOUNT: usize = 4;
    pub const ANCOUNT: usize = 6;
    pub const NSCOUNT: usize = 8;
    pub const ARCOUNT: usize = 10;
}

/// Header flag bits in the second 16-bit word (RFC 1035 section 4.1.1; AD and CD RFC 4035
/// section 3.2).
pub mod flags {
    pub const QR: u16 = 0x8000;
    pub const OPCODE: u16 = 0x7800;
    pub const AA: u16 = 0x0400;
    pub const TC: u16 = 0x0200;
    pub const RD: u16 = 0x0100;
    pub const RA: u16 = 0x0080;
    pub const AD: u16 = 0x0020;
    pub const CD: u16 = 0x0010;
}

/// The DO bit in the OPT record's TTL field (RFC 3225 section 3).
pub const EDNS_DO: u32 = 0x8000;

/// Why a message is not a query the dataplane answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryError {
    /// Shorter than a header, or the QR bit is set (a response): dropped, never answered.
    NotAQuery,
    /// An opcode other than QUERY (0): answered NOTIMP.
    Opcode,
    /// The header parses but the question does not (bad label lengths, a name over 255
    /// octets, truncated): answered FORMERR.
    Malformed,
    /// Well formed but not for the fast path (several questions, records besides OPT, a
    /// compressed question name, a class other than IN, EDNS options we do not parse): the
    /// daemon's resolver answers it.
    Unsupported,
}

/// The EDNS(0) pseudo-record of a query (RFC 6891 section 6.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Edns {
    /// Requestor's UDP payload size (the OPT CLASS field), at least 512 as RFC 6891 section
    /// 6.2.5 says smaller values are treated.
    pub udp_size: u16,
    pub version: u8,
    /// DNSSEC OK (RFC 3225), copied into the answer.
    pub dnssec_ok: bool,
}

/// A parsed query: where its question ends and what it asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    /// The header's second word (RD and CD are copied into the answer).
    pub flags: u16,
    /// End of the question name (offset from the start of the message); the name starts at
    /// [`HEADER_LEN`].
    pub name_end: usize,
    /// End of the question section.
    pub question_end: usize,
    pub qtype: u16,
    pub qclass: u16,
    pub edns: Option<Edns>,
}

impl Query {
    /// The question name in wire form, as sent (case kept).
    pub fn name<'a>(&self, msg: &'a [u8]) -> &'a [u8] {
        msg.get(HEADER_LEN..self.name_end).unwrap_or(&[])
    }

    /// Parses a query. Errors say what the caller does with the message (see
    /// [`QueryError`]).
    pub fn parse(msg: &[u8]) -> Result<Query, QueryError> {
        if msg.len() < HEADER_LEN {
            return Err(QueryError::NotAQuery);
        }
        let flags = be16(msg, field::FLAGS);
        if flags & flags::QR != 0 {
            return Err(QueryError::NotAQuery);
        }
        if flags & flags::OPCODE != 0 {
            return Err(QueryError::Opcode);
        }
        let (qd, an, ns, ar) = (
            be16(msg, field::QDCOUNT),
            be16(msg, field::ANCOUNT),
            be16(msg, field::NSCOUNT),
            be16(msg, field::ARCOUNT),
        );
        if qd == 0 {
            return Err(QueryError::Malformed);
        }
        if qd != 1 || an != 0 || ns != 0 || ar > 1 {
            return Err(QueryError::Unsupported);
        }
        let name_end = name_end(msg, HEADER_LEN)?;
        let question_end = name_end + 4;
        if msg.len() < question_end {
            return Err(QueryError::Malformed);
        }
        let qtype = be16(msg, name_end);
        let qclass = be16(msg, name_end + 2);
        if qclass != CLASS_IN {
            return Err(QueryError::Unsupported);
        }
        let edns = if ar == 1 { Some(parse_opt(msg, question_end)?) } else { None };
        if ar == 0 && msg.len() != question_end {
            // Trailing bytes after the question: not a message we understand.
            return Err(QueryError::Malformed);
        }
        Ok(Query { id: be16(msg, field::ID), flags, name_end, question_end, qtype, qclass, edns })
    }

    /// The largest answer the client takes over UDP: 512 octets without EDNS(0), its
    /// advertised payload size with it (RFC 6891 section 6.2.5).
    pub fn udp_limit(&self) -> usize {
        match self.edns {
            Some(e) => usize::from(e.udp_size).max(CLASSIC_UDP_LIMIT),
            None => CLASSIC_UDP_LIMIT,
        }
    }
}

/// The end of an uncompressed name starting at `at`.
fn name_end(msg: &[u8], mut at: usize) -> Result<usize, QueryError> {
    let start = at;
    loop {
        let Some(&len) = msg.get(at) else { return Err(QueryError::Malformed) };
        match len {
            0 => {
                at += 1;
                break;
            }
            1..=0x3f => at += 1 + usize::from(len),
            // A compression pointer: legal, but rare in queries and left to the resolver.
            0xc0..=0xff => return Err(QueryError::Unsupported),
            _ => return Err(QueryError::Malformed),
        }
        if at - start > MAX_NAME {
            return Err(QueryError::Malformed);
        }
    }
    if at - start > MAX_NAME {
        return Err(QueryError::Malformed);
    }
    Ok(at)
}

/// The OPT record at `at`, which must end the message.
fn parse_opt(msg: &[u8], at: usize) -> Result<Edns, QueryError> {
    // Root owner (1) + type (2) + class (2) + TTL (4) + RDLENGTH (2).
    if msg.len() < at + 11 {
        return Err(QueryError::Malformed);
    }
    if msg[at] != 0 || be16(msg, at + 1) != rtype::OPT {
        return Err(QueryError::Unsupported);
    }
    let udp_size = be16(msg, at + 3).max(CLASSIC_UDP_LIMIT as u16);
    let ttl = be32(msg, at + 5);
    let rdlen = usize::from(be16(msg, at + 9));
    if msg.len() != at + 11 + rdlen {
        return Err(QueryError::Malformed);
    }
    // Options (cookies, client subnet, padding) are ignored, as RFC 6891 section 6.1.2 allows
    // for options a server does not implement; their framing is checked.
    let mut o = at + 11;
    while o < msg.len() {
        if o + 4 > msg.len() {
            return Err(QueryError::Malformed);
        }
        o += 4 + usize::from(be16(msg, o + 2));
    }
    if o != msg.len() {
        return Err(QueryError::Malformed);
    }
    Ok(Edns { udp_size, version: (ttl >> 16) as u8, dnssec_ok: ttl & EDNS_DO != 0 })
}

/// Writes `name` (dotted text, a trailing dot optional, the root as "" or ".") in wire form
/// into `out`, lower-cased. Errors: an empty label, a label over 63 octets, or a name over
/// 255 octets, with the offending text.
pub fn encode_name(name: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let start = out.len();
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            if label.is_empty() {
                return Err(format!("'{name}' has an empty label"));
            }
            if label.len() > MAX_LABEL {
                return Err(format!("'{name}': label '{label}' is longer than {MAX_LABEL} octets"));
            }
            out.push(label.len() as u8);
            out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
        }
    }
    out.push(0);
    if out.len() - start > MAX_NAME {
        out.truncate(start);
        return Err(format!("'{name}' is longer than {MAX_NAME} octets in wire form"));
    }
    Ok(())
}

/// A wire-form name as dotted text (for traces and tests).
pub fn name_to_string(wire: &[u8]) -> String {
    let mut s = String::new();
    let mut at = 0;
    while let Some(&len) = wire.get(at) {
        if len == 0 || len > 0x3f {
            break;
        }
        let label = wire.get(at + 1..at + 1 + usize::from(len)).unwrap_or(&[]);
        s.extend(label.iter().map(|&b| char::from(b)));
        s.push('.');
        at += 1 + usize::from(len);
    }
    if s.is_empty() {
        s.push('.');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16, opt: Option<(u16, u32)>) -> Vec<u8> {
        crate::wire::build::dns_query(0x1234, &name.to_ascii_lowercase(), qtype, opt)
    }

    #[test]
    fn a_query_with_edns_parses() {
        let m = query("My-Service.default.svc.cluster.local", rtype::A, Some((1232, EDNS_DO)));
        let q = Query::parse(&m).expect("query");
        assert_eq!(q.id, 0x1234);
        assert_eq!(q.qtype, rtype::A);
        assert_eq!(name_to_string(q.name(&m)), "my-service.default.svc.cluster.local.");
        assert_eq!(q.edns, Some(Edns { udp_size: 1232, version: 0, dnssec_ok: true }));
        assert_eq!(q.udp_limit(), 1232);
    }

    #[test]
    fn what_is_not_for_the_fast_path_says_why() {
        assert_eq!(Query::parse(&[0; 11]), Err(QueryError::NotAQuery));
        let mut resp = query("a.b", rtype::A, None);
        resp[2] |= 0x80;
        assert_eq!(Query::parse(&resp), Err(QueryError::NotAQuery));
        let mut notify = query("a.b", rtype::SOA, None);
        notify[2] |= 4 << 3;
        assert_eq!(Query::parse(&notify), Err(QueryError::Opcode));
        let mut two = query("a.b", rtype::A, None);
        two[5] = 2;
        assert_eq!(Query::parse(&two), Err(QueryError::Unsupported));
        let mut ptr = query("a.b", rtype::A, None);
        ptr[12] = 0xc0;
        assert_eq!(Query::parse(&ptr), Err(QueryError::Unsupported));
        let mut cut = query("abc.example", rtype::A, None);
        cut.truncate(20);
        assert_eq!(Query::parse(&cut), Err(QueryError::Malformed));
        let mut trailing = query("a.b", rtype::A, None);
        trailing.push(7);
        assert_eq!(Query::parse(&trailing), Err(QueryError::Malformed));
        let mut small = query("a.b", rtype::A, Some((100, 0)));
        assert_eq!(Query::parse(&small).expect("q").udp_limit(), 512);
        small.push(1);
        assert_eq!(Query::parse(&small), Err(QueryError::Malformed));
        // A label length with the reserved top bits 01 or 10.
        let mut bad = query("a.b", rtype::A, None);
        bad[12] = 0x40;
        assert_eq!(Query::parse(&bad), Err(QueryError::Malformed));
    }

    #[test]
    fn a_name_longer_than_255_octets_is_malformed() {
        let mut m = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for _ in 0..5 {
            m.push(63);
            m.extend([b'a'; 63]);
        }
        m.push(0);
        m.extend([0, 1, 0, 1]);
        assert_eq!(Query::parse(&m), Err(QueryError::Malformed));
        assert!(encode_name(&["a"; 200].join("."), &mut Vec::new()).is_err());
        assert!(encode_name("a..b", &mut Vec::new()).is_err());
        assert!(encode_name(&"x".repeat(64), &mut Vec::new()).is_err());
        let mut root = Vec::new();
        encode_name(".", &mut root).expect("root");
        assert_eq!(root, [0]);
    }
}
