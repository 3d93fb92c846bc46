//! Forwarding of the questions podswitch does not answer itself: choose the upstreams (stub
//! domain, ConfigMap upstreams, or the node's `resolv.conf`), answer from the cache when it can,
//! else ask each upstream in turn over UDP, retrying over TCP when the answer is truncated.
//!
//! Every upstream query is a new message with a fresh random ID from a fresh socket bound to
//! port 0 (a random source port), and a reply is accepted only when its ID and question match
//! (RFC 5452 section 9.1); anything else on the socket is ignored. When no upstream gives a
//! usable answer in time the client gets SERVFAIL.

use super::cache::{CacheConfig, CacheKey, DnsCache};
use super::metrics::DnsMetrics;
use super::upstream::{DnsCustom, ResolvConf, DNS_PORT};
use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::Name;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The EDNS(0) UDP payload size podswitch advertises, to upstreams and to clients: 1232 bytes,
/// the DNS Flag Day 2020 value that avoids IP fragmentation on common paths.
pub const EDNS_PAYLOAD: u16 = 1232;

/// Forwarder settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwarderConfig {
    /// Time for one forwarded question, all upstreams together (2 s by default): each upstream
    /// in turn gets an equal share of what is left.
    pub timeout: Duration,
    /// Cache limits.
    pub cache: CacheConfig,
    /// EDNS(0) UDP payload size advertised to upstreams and in responses (RFC 6891 section
    /// 6.2.3), [`EDNS_PAYLOAD`] by default.
    pub edns_payload: u16,
}

impl Default for ForwarderConfig {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(2), cache: CacheConfig::default(), edns_payload: EDNS_PAYLOAD }
    }
}

/// Where forwarded questions go, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upstreams {
    /// Stub domains (lowercase, no trailing dot) and their nameservers.
    pub stub_domains: Vec<(String, Vec<SocketAddr>)>,
    /// The ConfigMap's `upstreamNameservers`; when empty, `resolv_conf` is used.
    pub upstream: Vec<SocketAddr>,
    /// The node's `resolv.conf` nameservers, port 53.
    pub resolv_conf: Vec<SocketAddr>,
}

impl Upstreams {
    /// The upstreams of a kube-dns ConfigMap and a `resolv.conf`. The ConfigMap's `hosts` are
    /// not used here: static entries are answered locally, before forwarding.
    pub fn new(custom: &DnsCustom, resolv_conf: &ResolvConf) -> Self {
        Self {
            stub_domains: custom.stub_domains.clone(),
            upstream: custom.upstream.clone(),
            resolv_conf: resolv_conf.nameservers.iter().map(|ip| SocketAddr::new(*ip, DNS_PORT)).collect(),
        }
    }

    /// The nameservers for `qname`: those of the longest stub domain that is `qname` or one of
    /// its parents, else `upstream`, else `resolv_conf`. Empty when none is configured.
    pub fn select(&self, qname: &Name) -> &[SocketAddr] {
        let name = qname.to_lowercase().to_ascii();
        let name = name.trim_end_matches('.');
        let stub = self
            .stub_domains
            .iter()
            .filter(|(domain, _)| {
                name == domain || name.strip_suffix(domain.as_str()).is_some_and(|rest| rest.ends_with('.'))
            })
            .max_by_key(|(domain, _)| domain.len());
        match stub {
            Some((_, servers)) => servers,
            None if !self.upstream.is_empty() => &self.upstream,
            None => &self.resolv_conf,
        }
    }
}

/// Forwards questions to upstream nameservers, with a cache. Shared between serving tasks
/// (`&self` everywhere); the upstreams can be replaced while it serves.
#[derive(Debug)]
pub struct Forwarder {
    config: ForwarderConfig,
    upstreams: ArcSwap<Upstreams>,
    cache: Mutex<DnsCache>,
    metrics: Arc<DnsMetrics>,
}

/// Why one upstream gave no usable answer (logged, counted as a failure).
#[derive(Debug, thiserror::Error)]
enum UpstreamError {
    #[error("no answer in {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("reply does not parse: {0}")]
    Malformed(String),
    #[error("reply ID or question does not match the query")]
    Mismatch,
    #[error("query does not encode: {0}")]
    Encode(String),
}

impl Forwarder {
    /// A forwarder with an empty cache and its own counters (a [`Resolver`](super::Resolver)
    /// replaces them with its own).
    pub fn new(config: ForwarderConfig, upstreams: Upstreams) -> Self {
        Self {
            config,
            upstreams: ArcSwap::from_pointee(upstreams),
            cache: Mutex::new(DnsCache::new(config.cache)),
            metrics: Arc::new(DnsMetrics::default()),
        }
    }

    /// The same forwarder counting into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<DnsMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Replaces the upstreams (a new ConfigMap or `resolv.conf`); questions already being
    /// forwarded finish with the old ones. The cache is kept.
    pub fn set_upstreams(&self, upstreams: Upstreams) {
        self.upstreams.store(Arc::new(upstreams));
    }

    /// The upstreams in use.
    pub fn upstreams(&self) -> Arc<Upstreams> {
        self.upstreams.load_full()
    }

    /// The settings.
    pub fn config(&self) -> &ForwarderConfig {
        &self.config
    }

    /// The number of cached answers.
    pub fn cache_len(&self) -> usize {
        self.cache.lock().map_or(0, |c| c.len())
    }

    /// Forwards a raw query and returns the raw response, untruncated (the caller fits it to
    /// its transport). `None` when the bytes do not even hold a DNS query header; FORMERR or
    /// NOTIMP when the query is not one this forwarder can ask (see [`check_query`]).
    pub async fn handle(&self, query: &[u8]) -> Option<Vec<u8>> {
        let response = match check_query(query) {
            QueryCheck::Query(q) => self.resolve(&q).await,
            QueryCheck::Error(error) => error,
            QueryCheck::Drop => return None,
        };
        Some(encode_or_servfail(&response))
    }

    /// The response to a checked query (one question, opcode QUERY), with the client's ID,
    /// question (in its case) and EDNS: from the cache, else from an upstream, else SERVFAIL.
    pub async fn resolve(&self, query: &Message) -> Message {
        self.resolve_at(query, Instant::now()).await
    }

    /// [`resolve`](Self::resolve) with the cache read and written as at `now`.
    pub async fn resolve_at(&self, query: &Message, now: Instant) -> Message {
        let Some(question) = query.queries.first() else {
            return error_response(query, ResponseCode::FormErr, self.config.edns_payload);
        };
        let dnssec_ok = query.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
        let key = CacheKey::new(question, dnssec_ok);
        let cached = self.cache.lock().ok().and_then(|mut c| c.get(&key, now));
        if let Some(hit) = cached {
            self.metrics.cache_hit();
            return for_client(hit, query, self.config.edns_payload);
        }
        self.metrics.cache_miss();
        match self.ask_upstreams(query, question, dnssec_ok).await {
            Some(response) => {
                if let Ok(mut cache) = self.cache.lock() {
                    cache.insert(key, &response, now);
                }
                for_client(response, query, self.config.edns_payload)
            }
            None => error_response(query, ResponseCode::ServFail, self.config.edns_payload),
        }
    }

    /// Asks each upstream in turn until one answers with something other than SERVFAIL or
    /// REFUSED; such an answer is returned only when no other upstream does better.
    async fn ask_upstreams(&self, query: &Message, question: &Query, dnssec_ok: bool) -> Option<Message> {
        let servers = self.upstreams.load().select(question.name()).to_vec();
        let deadline = Instant::now() + self.config.timeout;
        let mut fallback = None;
        for (i, server) in servers.iter().enumerate() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let share = left / u32::try_from(servers.len() - i).unwrap_or(1);
            let started = Instant::now();
            match self.ask(*server, query, question, dnssec_ok, share).await {
                Ok(response) => {
                    self.metrics.upstream_latency(started.elapsed());
                    let rcode = response.metadata.response_code;
                    if rcode != ResponseCode::ServFail && rcode != ResponseCode::Refused {
                        return Some(response);
                    }
                    tracing::debug!(%server, %rcode, "dns upstream refused or failed the question");
                    fallback.get_or_insert(response);
                }
                Err(e) => {
                    self.metrics.upstream_failure();
                    tracing::debug!(%server, error = %e, "dns upstream gave no answer");
                }
            }
        }
        fallback
    }

    /// One upstream: UDP, then TCP if the UDP answer is truncated, within `limit`.
    async fn ask(
        &self,
        server: SocketAddr,
        client: &Message,
        question: &Query,
        dnssec_ok: bool,
        limit: Duration,
    ) -> Result<Message, UpstreamError> {
        let exchange = async {
            let upstream_query = self.upstream_query(client, question, dnssec_ok);
            self.metrics.upstream_query();
            let response = exchange_udp(server, &upstream_query).await?;
            if !response.metadata.truncation {
                return Ok(response);
            }
            tracing::debug!(%server, "dns upstream answer truncated, retrying over TCP");
            let upstream_query = self.upstream_query(client, question, dnssec_ok);
            self.metrics.upstream_query();
            exchange_tcp(server, &upstream_query).await
        };
        tokio::time::timeout(limit, exchange).await.map_err(|_| UpstreamError::Timeout(limit))?
    }

    /// A new query for `question` with a fresh random ID, recursion desired, the client's CD
    /// bit, and an OPT record with our payload size and the client's DO bit.
    fn upstream_query(&self, client: &Message, question: &Query, dnssec_ok: bool) -> Message {
        let mut m = Message::query(); // a random ID (hickory draws it from a CSPRNG)
        m.metadata.recursion_desired = true;
        m.metadata.checking_disabled = client.metadata.checking_disabled;
        m.add_query(question.clone());
        let mut edns = Edns::new();
        edns.set_max_payload(self.config.edns_payload);
        edns.set_dnssec_ok(dnssec_ok);
        m.set_edns(edns);
        m
    }
}

/// Sends `query` from a fresh socket on a random port and waits for the matching reply.
async fn exchange_udp(server: SocketAddr, query: &Message) -> Result<Message, UpstreamError> {
    let bytes = query.to_vec().map_err(|e| UpstreamError::Encode(e.to_string()))?;
    let local: SocketAddr =
        if server.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { (Ipv6Addr::UNSPECIFIED, 0).into() };
    let sock = UdpSocket::bind(local).await?;
    sock.connect(server).await?;
    sock.send(&bytes).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = sock.recv(&mut buf).await?;
        // Replies that do not parse or do not match are someone else's (or forged): wait on.
        if let Ok(reply) = Message::from_vec(&buf[..n]) {
            if matches(&reply, query) {
                return Ok(reply);
            }
        }
    }
}

/// Sends `query` over a new TCP connection (RFC 7766, 2-byte length prefix) and reads one reply.
async fn exchange_tcp(server: SocketAddr, query: &Message) -> Result<Message, UpstreamError> {
    let bytes = query.to_vec().map_err(|e| UpstreamError::Encode(e.to_string()))?;
    let len = u16::try_from(bytes.len()).map_err(|_| UpstreamError::Encode("query longer than 65535".into()))?;
    let mut stream = TcpStream::connect(server).await?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut reply).await?;
    let reply = Message::from_vec(&reply).map_err(|e| UpstreamError::Malformed(e.to_string()))?;
    if matches(&reply, query) {
        Ok(reply)
    } else {
        Err(UpstreamError::Mismatch)
    }
}

/// Whether `reply` answers `query`: a response with the same ID and the same single question
/// (name compared without case, RFC 4343).
fn matches(reply: &Message, query: &Message) -> bool {
    let same_question = match (reply.queries.as_slice(), query.queries.as_slice()) {
        ([r], [q]) => r.name() == q.name() && r.query_type() == q.query_type() && r.query_class() == q.query_class(),
        _ => false,
    };
    reply.metadata.message_type == MessageType::Response && reply.metadata.id == query.metadata.id && same_question
}

/// What to do with the bytes a client sent, by [`check_query`].
#[derive(Debug, Clone, PartialEq)]
pub enum QueryCheck {
    /// A query with opcode QUERY and exactly one question: answer it.
    Query(Message),
    /// Send this error response instead: FORMERR when the header parses but the rest does not
    /// or the question count is not 1 (RFC 1035 section 4.1.1), NOTIMP for other opcodes.
    Error(Message),
    /// Send nothing: not even a 12-byte header, or a response (QR set; answering responses
    /// invites loops).
    Drop,
}

/// Parses a client's query and checks it can be answered: a query (QR clear) with opcode QUERY
/// and exactly one question. Never panics, whatever the bytes.
pub fn check_query(bytes: &[u8]) -> QueryCheck {
    let Ok(header) = Header::read(&mut BinDecoder::new(bytes)) else { return QueryCheck::Drop };
    if header.metadata.message_type != MessageType::Query {
        return QueryCheck::Drop;
    }
    let formerr =
        || QueryCheck::Error(Message::error_msg(header.metadata.id, header.metadata.op_code, ResponseCode::FormErr));
    let Ok(query) = Message::from_vec(bytes) else { return formerr() };
    if query.metadata.op_code != OpCode::Query {
        return QueryCheck::Error(error_response(&query, ResponseCode::NotImp, EDNS_PAYLOAD));
    }
    if query.queries.len() != 1 {
        return formerr();
    }
    QueryCheck::Query(query)
}

/// An error response to `query`: its ID, opcode, RD and CD bits, question, and an OPT record
/// when the query had one (RFC 6891 section 7).
pub fn error_response(query: &Message, rcode: ResponseCode, edns_payload: u16) -> Message {
    let mut m = Message::error_msg(query.metadata.id, query.metadata.op_code, rcode);
    m.metadata.recursion_available = true;
    for_client(m, query, edns_payload)
}

/// Dresses an upstream or cached response for the client: the client's ID, RD and CD bits and
/// question (keeping the client's letter case), AA cleared and RA set (a recursive resolver's
/// answer is not authoritative, RFC 1035 section 4.1.1), and an OPT record only when the
/// client sent one (RFC 6891 section 7), with our payload size and the client's DO bit.
fn for_client(mut response: Message, query: &Message, edns_payload: u16) -> Message {
    response.metadata.id = query.metadata.id;
    response.metadata.authoritative = false;
    response.metadata.recursion_available = true;
    response.metadata.op_code = query.metadata.op_code;
    response.metadata.message_type = MessageType::Response;
    response.metadata.recursion_desired = query.metadata.recursion_desired;
    response.metadata.checking_disabled = query.metadata.checking_disabled;
    response.queries = query.queries.clone();
    response.edns = query.edns.as_ref().map(|client| {
        let mut edns = Edns::new();
        edns.set_max_payload(edns_payload);
        edns.set_dnssec_ok(client.flags().dnssec_ok);
        edns
    });
    response
}

/// The wire form of `response`, or of a bare SERVFAIL with its ID if it does not encode (a
/// record hickory read but cannot write back).
pub fn encode_or_servfail(response: &Message) -> Vec<u8> {
    response.to_vec().unwrap_or_else(|e| {
        tracing::debug!(error = %e, "dns response does not encode, sending SERVFAIL");
        let mut m = Message::error_msg(response.metadata.id, response.metadata.op_code, ResponseCode::ServFail);
        m.queries = response.queries.clone();
        m.to_vec().unwrap_or_default()
    })
}
