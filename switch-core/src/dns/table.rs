//! The name table: every name the switch answers, with its records already in wire form, built
//! off the packet path by [`ZoneBuilder`] and published in the snapshot.
//!
//! Each record is stored as it goes on the wire (RFC 1035 section 4.1.3) with its owner name
//! compressed to a pointer to the question name (offset 12, RFC 1035 section 4.1.4), so an
//! answer is the question followed by copies of these bytes. Names are kept lower-cased; a
//! lookup lower-cases the question into a stack buffer, and the answer keeps the question's
//! case because the question is not rewritten.

use crate::hash::FastMap;
use crate::wire::dns::{encode_name, rtype, CLASS_IN, HEADER_LEN, MAX_NAME};
use core::net::IpAddr;
use std::collections::BTreeMap;

/// A name's records of one type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RrSet {
    pub rtype: u16,
    pub count: u16,
    /// Byte range in [`NameTable::bytes`].
    pub start: u32,
    pub len: u32,
}

/// A name: its record sets, contiguous in [`NameTable::rrsets`] and their bytes contiguous in
/// [`NameTable::bytes`] (so that a query of type ANY copies one run). A name with no record
/// set exists only as the parent of others (an empty non-terminal, RFC 8020): NODATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub first: u32,
    pub sets: u16,
    /// Records of every set together, and their bytes.
    pub count: u16,
    pub start: u32,
    pub len: u32,
    /// The name is in the cluster zone (negative answers carry the zone's SOA); names outside
    /// it are answered only when they have the type asked (reverse names), or NODATA without an
    /// SOA when they are ours (`owned`: static host entries, as CoreDNS's hosts plugin).
    pub in_zone: bool,
    pub owned: bool,
}

/// What a lookup found for a name and type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found<'a> {
    /// Records to copy after the question: NOERROR. `cname`: they are the name's CNAME,
    /// given for another type.
    Records { bytes: &'a [u8], count: u16, cname: bool },
    /// The name exists without that type: NODATA (RFC 2308 section 2.2); with the zone's SOA
    /// when the name is in the zone.
    NoData { in_zone: bool },
    /// No such name in the zone: NXDOMAIN (RFC 2308 section 2.1).
    NxDomain,
    /// Not ours to answer (outside the zone, or an outside name without that type).
    Outside,
}

/// The compiled names of the cluster zone, and whatever else the switch answers.
#[derive(Debug, Clone, Default)]
pub struct NameTable {
    index: FastMap<Box<[u8]>, u32>,
    entries: Vec<Entry>,
    rrsets: Vec<RrSet>,
    bytes: Vec<u8>,
    /// The zone (`cluster.local`) in wire form, lower-cased; empty when no zone is served.
    zone: Vec<u8>,
    /// The zone's SOA record after its owner name: TYPE, CLASS, TTL, RDLENGTH, RDATA.
    soa: Vec<u8>,
}

impl NameTable {
    /// Names in the table.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The zone in wire form (empty when the table serves none).
    pub fn zone(&self) -> &[u8] {
        &self.zone
    }

    /// The SOA record for negative answers, less its owner name.
    pub(crate) fn soa(&self) -> &[u8] {
        &self.soa
    }

    /// Whether `lower` (a wire-form, lower-cased name) is the zone or below it.
    pub fn in_zone(&self, lower: &[u8]) -> bool {
        in_zone(&self.zone, lower)
    }

    /// Looks up a lower-cased wire-form name for `qtype` (RFC 1034 section 4.3.2 step 3, for
    /// a zone without delegations or wildcards): the type's records; a CNAME for any other type
    /// (ExternalName Services); every record for ANY; else NODATA or NXDOMAIN inside the zone.
    pub fn lookup(&self, lower: &[u8], qtype: u16) -> Found<'_> {
        let Some(&i) = self.index.get(lower) else {
            return if self.in_zone(lower) { Found::NxDomain } else { Found::Outside };
        };
        let Some(e) = self.entries.get(i as usize) else { return Found::Outside };
        let sets = self.rrsets.get(e.first as usize..e.first as usize + usize::from(e.sets)).unwrap_or(&[]);
        let records = |s: &RrSet| {
            let bytes = self.bytes.get(s.start as usize..(s.start + s.len) as usize).unwrap_or(&[]);
            Found::Records { bytes, count: s.count, cname: s.rtype == rtype::CNAME && qtype != rtype::CNAME }
        };
        if let Some(s) = sets.iter().find(|s| s.rtype == qtype) {
            return records(s);
        }
        if let Some(s) = sets.iter().find(|s| s.rtype == rtype::CNAME) {
            return records(s);
        }
        if qtype == rtype::ANY && e.sets > 0 {
            let bytes = self.bytes.get(e.start as usize..(e.start + e.len) as usize).unwrap_or(&[]);
            return Found::Records { bytes, count: e.count, cname: false };
        }
        if e.in_zone || e.owned {
            Found::NoData { in_zone: e.in_zone }
        } else {
            Found::Outside
        }
    }
}

/// Builds a [`NameTable`]: records are added by owner name (dotted text, any case); the zone's
/// SOA, NS and empty non-terminals are added by [`ZoneBuilder::build`].
#[derive(Debug, Clone)]
pub struct ZoneBuilder {
    zone: Vec<u8>,
    zone_text: String,
    ttl: u32,
    /// Owner (wire, lower-cased) -> (type, RDATA) in insertion order, duplicates removed.
    names: BTreeMap<Vec<u8>, Vec<(u16, Vec<u8>)>>,
    /// Names outside the zone answered for every type (static host entries).
    owned: std::collections::BTreeSet<Vec<u8>>,
}

/// The TTL CoreDNS's kubernetes plugin gives its records and the SOA minimum (seconds).
pub const DEFAULT_TTL: u32 = 5;

impl ZoneBuilder {
    /// A builder for `zone` (e.g. `cluster.local`) whose records live `ttl` seconds. Errors: a
    /// zone that is not a DNS name.
    pub fn new(zone: &str, ttl: u32) -> Result<ZoneBuilder, String> {
        let mut z = Vec::new();
        encode_name(zone, &mut z)?;
        if z.len() == 1 {
            return Err("the cluster zone cannot be the root".into());
        }
        let zone_text = zone.trim_end_matches('.').to_ascii_lowercase();
        Ok(ZoneBuilder { zone: z, zone_text, ttl, names: BTreeMap::new(), owned: Default::default() })
    }

    /// The zone as lower-case dotted text without the final dot.
    pub fn zone(&self) -> &str {
        &self.zone_text
    }

    fn add(&mut self, owner: &str, t: u16, rdata: Vec<u8>) -> Result<(), String> {
        let mut name = Vec::new();
        encode_name(owner, &mut name)?;
        let set = self.names.entry(name).or_default();
        if !set.iter().any(|(a, b)| *a == t && *b == rdata) {
            set.push((t, rdata));
        }
        Ok(())
    }

    /// An A or AAAA record.
    pub fn address(&mut self, owner: &str, ip: IpAddr) -> Result<(), String> {
        match ip {
            IpAddr::V4(a) => self.add(owner, rtype::A, a.octets().to_vec()),
            IpAddr::V6(a) => self.add(owner, rtype::AAAA, a.octets().to_vec()),
        }
    }

    /// A static host entry: an A or AAAA record and its PTR; the name is ours for every type
    /// (NODATA for the others) even outside the zone.
    pub fn host(&mut self, name: &str, ip: IpAddr) -> Result<(), String> {
        self.address(name, ip)?;
        self.ptr(ip, name)?;
        let mut w = Vec::new();
        encode_name(name, &mut w)?;
        self.owned.insert(w);
        Ok(())
    }

    /// An SRV record (RFC 2782): priority, weight, port, target.
    pub fn srv(&mut self, owner: &str, priority: u16, weight: u16, port: u16, target: &str) -> Result<(), String> {
        let mut r = Vec::with_capacity(6 + target.len() + 2);
        r.extend(priority.to_be_bytes());
        r.extend(weight.to_be_bytes());
        r.extend(port.to_be_bytes());
        encode_name(target, &mut r)?;
        self.add(owner, rtype::SRV, r)
    }

    /// A PTR record for `ip` (RFC 1035 section 3.5 for IPv4, RFC 3596 section 2.5 for IPv6).
    pub fn ptr(&mut self, ip: IpAddr, target: &str) -> Result<(), String> {
        let mut r = Vec::new();
        encode_name(target, &mut r)?;
        self.add(&reverse_name(ip), rtype::PTR, r)
    }

    /// A CNAME record (an ExternalName Service).
    pub fn cname(&mut self, owner: &str, target: &str) -> Result<(), String> {
        let mut r = Vec::new();
        encode_name(target, &mut r)?;
        self.add(owner, rtype::CNAME, r)
    }

    /// A TXT record of one string (at most 255 octets).
    pub fn txt(&mut self, owner: &str, text: &str) -> Result<(), String> {
        if text.len() > 255 {
            return Err(format!("TXT of {owner} is longer than 255 octets"));
        }
        let mut r = vec![text.len() as u8];
        r.extend(text.bytes());
        self.add(owner, rtype::TXT, r)
    }

    /// The table, with the zone's SOA (serial `serial`) and NS at the apex, `ns.dns.<zone>`
    /// with the `dns_addresses`, and every in-zone ancestor of a name present as an empty
    /// non-terminal.
    pub fn build(mut self, serial: u32, dns_addresses: &[IpAddr]) -> NameTable {
        let zone = self.zone.clone();
        let z = self.zone_text.clone();
        let mut soa = Vec::new();
        let _ = encode_name(&format!("ns.dns.{z}"), &mut soa);
        let _ = encode_name(&format!("hostmaster.{z}"), &mut soa);
        // Serial, refresh, retry, expire, minimum (RFC 1035 section 3.3.13; the minimum is the
        // negative-caching TTL, RFC 2308 section 4).
        for v in [serial, 7200, 1800, 86400, self.ttl] {
            soa.extend(v.to_be_bytes());
        }
        let _ = self.add(&z, rtype::SOA, soa.clone());
        let mut ns = Vec::new();
        let _ = encode_name(&format!("ns.dns.{z}"), &mut ns);
        let _ = self.add(&z, rtype::NS, ns);
        for a in dns_addresses {
            let _ = self.address(&format!("ns.dns.{z}"), *a);
        }
        // Empty non-terminals: every ancestor of an in-zone name down to the zone.
        let mut parents = Vec::new();
        for name in self.names.keys().filter(|n| in_zone(&zone, n)) {
            let mut at = 0;
            while name.len() - at > zone.len() {
                at += 1 + usize::from(name[at]);
                if name.len() - at > zone.len() {
                    parents.push(name[at..].to_vec());
                }
            }
        }
        for p in parents {
            self.names.entry(p).or_default();
        }

        let mut t = NameTable { zone: zone.clone(), ..NameTable::default() };
        let mut soa_rr = Vec::new();
        soa_rr.extend(rtype::SOA.to_be_bytes());
        soa_rr.extend(CLASS_IN.to_be_bytes());
        soa_rr.extend(self.ttl.to_be_bytes());
        soa_rr.extend((soa.len() as u16).to_be_bytes());
        soa_rr.extend(&soa);
        t.soa = soa_rr;
        let ttl = self.ttl;
        for (name, records) in std::mem::take(&mut self.names) {
            let mut e = Entry {
                first: t.rrsets.len() as u32,
                sets: 0,
                count: 0,
                start: t.bytes.len() as u32,
                len: 0,
                in_zone: t.in_zone(&name),
                owned: self.owned.contains(&name),
            };
            let mut types: Vec<u16> = records.iter().map(|r| r.0).collect();
            types.dedup();
            types.sort_unstable();
            types.dedup();
            for ty in types {
                let start = t.bytes.len() as u32;
                let mut count = 0u16;
                for (_, rdata) in records.iter().filter(|r| r.0 == ty) {
                    // Owner: a pointer to the question name (RFC 1035 section 4.1.4).
                    t.bytes.extend((0xc000 | HEADER_LEN as u16).to_be_bytes());
                    t.bytes.extend(ty.to_be_bytes());
                    t.bytes.extend(CLASS_IN.to_be_bytes());
                    t.bytes.extend(ttl.to_be_bytes());
                    t.bytes.extend((rdata.len() as u16).to_be_bytes());
                    t.bytes.extend(rdata);
                    count = count.saturating_add(1);
                }
                t.rrsets.push(RrSet { rtype: ty, count, start, len: t.bytes.len() as u32 - start });
                e.sets += 1;
                e.count = e.count.saturating_add(count);
            }
            e.len = t.bytes.len() as u32 - e.start;
            debug_assert!(name.len() <= MAX_NAME);
            t.index.insert(name.into_boxed_slice(), t.entries.len() as u32);
            t.entries.push(e);
        }
        t
    }
}

/// Whether `lower` (a wire-form, lower-cased name) is `zone` or below it, at a label boundary.
fn in_zone(zone: &[u8], lower: &[u8]) -> bool {
    if zone.is_empty() || lower.len() < zone.len() {
        return false;
    }
    // Walk the labels until what is left is as long as the zone.
    let mut at = 0;
    while lower.len() - at > zone.len() {
        match lower.get(at) {
            Some(&l) if l > 0 && l <= 0x3f => at += 1 + usize::from(l),
            _ => return false,
        }
    }
    lower.len() - at == zone.len() && lower[at..] == zone[..]
}

/// The reverse-lookup name of an address: `d.c.b.a.in-addr.arpa` or the 32 nibbles of an
/// IPv6 address, least significant first, under `ip6.arpa`.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(a) => {
            let mut s = String::with_capacity(72);
            for b in a.octets().iter().rev() {
                s.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
                s.push('.');
                s.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
                s.push('.');
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

/// `10.244.1.5` as `10-244-1-5`, `fd00::5` as `fd00--5` (the Kubernetes DNS specification's
/// form of an address in a name: pods, and endpoints without a hostname).
pub fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}
