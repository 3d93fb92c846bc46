//! The forwarder's answer cache: upstream responses kept by question and DNSSEC-OK bit, for as
//! long as their TTLs allow (capped), bounded in entries. Time is passed in, so that expiry and
//! TTL decrement are tested without sleeping.

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::RData;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Cache limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Most entries kept; when full, the oldest entry goes. 0 disables the cache.
    pub capacity: usize,
    /// Longest a positive answer is kept, whatever its TTLs (CoreDNS's cache: 30 s by default
    /// here, as the kube-dns/CoreDNS Corefile `cache 30`). Whole seconds are used.
    pub max_positive_ttl: Duration,
    /// Longest a negative answer (NXDOMAIN, or NOERROR without answers: NODATA) is kept; its
    /// own lifetime is the SOA's MINIMUM or the SOA's TTL, whichever is lower (RFC 2308
    /// section 5). Whole seconds are used.
    pub max_negative_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self { capacity: 4096, max_positive_ttl: Duration::from_secs(30), max_negative_ttl: Duration::from_secs(5) }
    }
}

/// What an answer is cached under: the question, lowercased (RFC 4343: names compare
/// case-insensitively), and the client's DNSSEC OK bit (RFC 3225), since answers with and
/// without DNSSEC records differ.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// The query name, lowercase, in presentation form with its trailing dot.
    pub name: String,
    /// QTYPE (RFC 1035 section 3.2.2).
    pub qtype: u16,
    /// QCLASS (RFC 1035 section 3.2.4).
    pub qclass: u16,
    /// The DO bit of the query's OPT record (RFC 3225 section 3).
    pub dnssec_ok: bool,
}

impl CacheKey {
    /// The key of a question asked with or without the DO bit.
    pub fn new(query: &Query, dnssec_ok: bool) -> Self {
        Self {
            name: query.name().to_lowercase().to_ascii(),
            qtype: query.query_type().into(),
            qclass: query.query_class().into(),
            dnssec_ok,
        }
    }
}

#[derive(Debug)]
struct Entry {
    response: Message,
    inserted: Instant,
    /// How long the entry lives, in seconds (already capped).
    ttl: u32,
    /// Matches the entry's place in `DnsCache::order`; older places are stale.
    generation: u64,
}

/// A bounded cache of upstream responses. Not synchronised: the forwarder holds it behind a
/// mutex and never across an await.
#[derive(Debug)]
pub struct DnsCache {
    config: CacheConfig,
    map: HashMap<CacheKey, Entry>,
    /// Keys in insertion order with their generation, for evicting the oldest. Replaced or
    /// expired keys leave stale places here, skipped on eviction and dropped by `compact`.
    order: VecDeque<(CacheKey, u64)>,
    next_generation: u64,
}

impl DnsCache {
    /// An empty cache with these limits.
    pub fn new(config: CacheConfig) -> Self {
        Self { config, map: HashMap::new(), order: VecDeque::new(), next_generation: 0 }
    }

    /// The number of entries, expired ones included until they are looked up or evicted.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// How long, in seconds, `response` may be cached; `None` when it must not be: truncated
    /// answers, rcodes other than NOERROR and NXDOMAIN (SERVFAIL is never cached), negative
    /// answers without an SOA (RFC 2308 section 5), and lifetimes of zero.
    pub fn lifetime(&self, response: &Message) -> Option<u32> {
        if response.metadata.truncation {
            return None;
        }
        let rcode = response.metadata.response_code;
        let negative =
            rcode == ResponseCode::NXDomain || (rcode == ResponseCode::NoError && response.answers.is_empty());
        let ttl = if negative {
            let soa = response.authorities.iter().find_map(|r| match &r.data {
                RData::SOA(soa) => Some(soa.minimum.min(r.ttl)),
                _ => None,
            })?;
            soa.min(secs(self.config.max_negative_ttl))
        } else if rcode == ResponseCode::NoError {
            let min = response
                .answers
                .iter()
                .chain(&response.authorities)
                .chain(&response.additionals)
                .map(|r| r.ttl)
                .min()?;
            min.min(secs(self.config.max_positive_ttl))
        } else {
            return None;
        };
        (ttl > 0).then_some(ttl)
    }

    /// Keeps `response` under `key` if it may be cached (see [`lifetime`](Self::lifetime));
    /// returns whether it was. When full, expired entries go first, then the oldest.
    pub fn insert(&mut self, key: CacheKey, response: &Message, now: Instant) -> bool {
        if self.config.capacity == 0 {
            return false;
        }
        let Some(ttl) = self.lifetime(response) else { return false };
        if !self.map.contains_key(&key) && self.map.len() >= self.config.capacity {
            self.map.retain(|_, e| now.saturating_duration_since(e.inserted).as_secs() < u64::from(e.ttl));
            while self.map.len() >= self.config.capacity {
                let Some((old, generation)) = self.order.pop_front() else { break };
                if self.map.get(&old).is_some_and(|e| e.generation == generation) {
                    self.map.remove(&old);
                }
            }
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        self.order.push_back((key.clone(), generation));
        self.map.insert(key, Entry { response: response.clone(), inserted: now, ttl, generation });
        self.compact();
        true
    }

    /// The cached response for `key` at `now`, with every record's TTL lowered to what is left
    /// of the entry's lifetime and of its own TTL (whole seconds elapsed are subtracted). The
    /// header ID and question are the upstream's: the caller puts the client's back. An expired
    /// entry is removed and `None` returned.
    pub fn get(&mut self, key: &CacheKey, now: Instant) -> Option<Message> {
        let entry = self.map.get(key)?;
        let age = now.saturating_duration_since(entry.inserted).as_secs();
        if age >= u64::from(entry.ttl) {
            self.map.remove(key);
            return None;
        }
        let age = age as u32; // below entry.ttl, a u32
        let left = entry.ttl - age;
        let mut response = entry.response.clone();
        for record in response.answers.iter_mut().chain(&mut response.authorities).chain(&mut response.additionals) {
            record.ttl = record.ttl.saturating_sub(age).min(left);
        }
        Some(response)
    }

    /// Drops stale places from the eviction queue once it is twice the size of the map, so that
    /// keys refreshed over and over do not grow it without bound.
    fn compact(&mut self) {
        if self.order.len() > 2 * self.map.len() + 16 {
            let map = &self.map;
            self.order.retain(|(k, g)| map.get(k).is_some_and(|e| e.generation == *g));
        }
    }
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}
