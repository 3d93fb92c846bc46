//! The resolver's serving loops over sockets the caller made (they may live in another network
//! namespace): UDP, one datagram per query, and TCP with RFC 7766 framing, several queries per
//! connection, an idle timeout and a bound on connections. Each query goes to the [`Resolver`],
//! which answers from the local answerer (cluster zone, static hosts) or forwards.

use super::forward::{check_query, encode_or_servfail, Forwarder, QueryCheck};
use super::metrics::DnsMetrics;
use hickory_proto::op::{Header, Message};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, Semaphore};

/// The local answerer: `local(query, max_response_len)` returns the response bytes (at most
/// `max_response_len` long, truncated with TC by the answerer if need be) when the question is
/// in the cluster zone or a static host, `None` when it must be forwarded.
pub type LocalAnswer = Arc<dyn Fn(&[u8], usize) -> Option<Vec<u8>> + Send + Sync>;

/// A response over UDP without EDNS(0) is at most this long (RFC 1035 section 4.2.1).
pub const UDP_PLAIN_MAX: usize = 512;

/// A response over TCP is at most this long (the 2-byte length prefix, RFC 7766 section 8).
pub const TCP_MAX: usize = 65535;

/// UDP queries being answered at once; further datagrams are dropped (and counted) until one
/// finishes.
pub const UDP_IN_FLIGHT: usize = 1024;

/// Queries of one TCP connection answered at once; the connection reads no further query until
/// one of them is answered.
pub const TCP_PIPELINE: usize = 16;

/// How a query arrived, which bounds its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A UDP datagram: the response fits the client's EDNS(0) size, or 512 bytes.
    Udp,
    /// A TCP message: up to 65535 bytes.
    Tcp,
}

/// Answers queries: locally when the local answerer can, else through the [`Forwarder`].
pub struct Resolver {
    local: LocalAnswer,
    forwarder: Forwarder,
    metrics: Arc<DnsMetrics>,
    max_udp_payload: u16,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("forwarder", &self.forwarder)
            .field("max_udp_payload", &self.max_udp_payload)
            .finish()
    }
}

impl Resolver {
    /// A resolver over a local answerer and a forwarder; the forwarder counts into `metrics`
    /// too. UDP responses are at most the client's EDNS(0) size capped at the forwarder's
    /// advertised payload ([`EDNS_PAYLOAD`](super::forward::EDNS_PAYLOAD) by default).
    pub fn new(local: LocalAnswer, forwarder: Forwarder, metrics: Arc<DnsMetrics>) -> Self {
        let max_udp_payload = forwarder.config().edns_payload.max(UDP_PLAIN_MAX as u16);
        Self { local, forwarder: forwarder.with_metrics(metrics.clone()), metrics, max_udp_payload }
    }

    /// The forwarder, to change its upstreams while serving.
    pub fn forwarder(&self) -> &Forwarder {
        &self.forwarder
    }

    /// The counters.
    pub fn metrics(&self) -> &Arc<DnsMetrics> {
        &self.metrics
    }

    /// The longest UDP response for `query`: 512 bytes without an OPT record, else the
    /// client's payload size, treated as 512 if lower (RFC 6891 section 6.2.5) and capped at
    /// the size we advertise (RFC 6891 section 6.2.4), by default 1232.
    pub fn udp_limit(&self, query: &Message) -> usize {
        match &query.edns {
            None => UDP_PLAIN_MAX,
            Some(edns) => usize::from(edns.max_payload().clamp(UDP_PLAIN_MAX as u16, self.max_udp_payload)),
        }
    }

    /// The response bytes for one query, or `None` when nothing should be sent (fewer than 12
    /// bytes, or a response rather than a query). Forwarded answers longer than the transport
    /// allows are sent with their records removed and TC set (RFC 1035 section 4.2.1, RFC 2181
    /// section 9), so that the client asks again over TCP.
    pub async fn handle(&self, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let parsed = match check_query(query) {
            QueryCheck::Query(q) => q,
            QueryCheck::Error(error) => {
                self.metrics.response(error.metadata.response_code, 0);
                return Some(encode_or_servfail(&error));
            }
            QueryCheck::Drop => return None,
        };
        let limit = match transport {
            Transport::Udp => self.udp_limit(&parsed),
            Transport::Tcp => TCP_MAX,
        };
        if let Some(question) = parsed.queries.first() {
            self.metrics.query(question.query_type());
        }
        // The cluster's names: the query as sent, or (a shape the dataplane's parser leaves
        // aside: a compressed name, extra records) as one plain question, so that a name of
        // the cluster zone is never forwarded.
        let local = (self.local)(query, limit).or_else(|| (self.local)(&plain(&parsed)?, limit));
        if let Some(local) = local {
            let local = self.chase(local, &parsed, limit).await;
            if let Ok(h) = Header::read(&mut BinDecoder::new(&local)) {
                self.metrics.response(h.metadata.response_code, usize::from(h.counts.answers));
            }
            return Some(local);
        }
        let response = self.forwarder.resolve(&parsed).await;
        let mut bytes = encode_or_servfail(&response);
        if bytes.len() > limit {
            bytes = encode_or_servfail(&response.truncate());
        }
        // Counted as answered, truncated or not: the client will have it over TCP.
        self.metrics.response(response.metadata.response_code, response.answers.len());
        Some(bytes)
    }
}

impl Resolver {
    /// A local answer that is only a CNAME for another type (an ExternalName Service) gets the
    /// target's records appended, from the cluster's names or forwarded (as CoreDNS does: stub
    /// resolvers expect the recursive server to follow the chain). A failed lookup of the
    /// target leaves the CNAME alone.
    async fn chase(&self, local: Vec<u8>, query: &Message, limit: usize) -> Vec<u8> {
        use hickory_proto::rr::{RData, RecordType};
        let Some(q) = query.queries.first() else { return local };
        if matches!(q.query_type(), RecordType::CNAME | RecordType::ANY) {
            return local;
        }
        let Ok(mut answer) = Message::from_vec(&local) else { return local };
        let target = match answer.answers.last().map(|r| &r.data) {
            Some(RData::CNAME(c)) if answer.answers.iter().all(|r| r.record_type() == RecordType::CNAME) => c.0.clone(),
            _ => return local,
        };
        let mut next = query.clone();
        next.queries = vec![hickory_proto::op::Query::query(target, q.query_type())];
        let got = match plain(&next).and_then(|b| (self.local)(&b, TCP_MAX)).and_then(|b| Message::from_vec(&b).ok()) {
            Some(m) => m,
            None => self.forwarder.resolve(&next).await,
        };
        if got.metadata.response_code != hickory_proto::op::ResponseCode::NoError || got.answers.is_empty() {
            return local;
        }
        answer.answers.extend(got.answers);
        match answer.to_vec() {
            Ok(b) if b.len() <= limit => b,
            Ok(_) => encode_or_servfail(&answer.truncate()),
            Err(_) => local,
        }
    }
}

/// `query` as one plain question (its ID, RD and CD, its OPT record), the shape the dataplane's
/// parser takes.
fn plain(query: &Message) -> Option<Vec<u8>> {
    let mut m = Message::query();
    m.metadata.id = query.metadata.id;
    m.metadata.recursion_desired = query.metadata.recursion_desired;
    m.metadata.checking_disabled = query.metadata.checking_disabled;
    m.add_query(query.queries.first()?.clone());
    if let Some(e) = &query.edns {
        m.set_edns(e.clone());
    }
    m.to_vec().ok()
}

/// Serves DNS over UDP on `sock` until the task is dropped. Each datagram is answered in its
/// own task (at most [`UDP_IN_FLIGHT`] at once, further datagrams dropped); receive errors are
/// logged and the loop goes on.
pub async fn serve_udp(sock: UdpSocket, handler: Arc<Resolver>) {
    let sock = Arc::new(sock);
    let in_flight = Arc::new(Semaphore::new(UDP_IN_FLIGHT));
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                tracing::debug!(error = %e, "dns udp receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            handler.metrics.udp_dropped();
            tracing::debug!(%peer, "dns udp query dropped: too many in flight");
            continue;
        };
        let query = buf[..n].to_vec();
        let (sock, handler) = (sock.clone(), handler.clone());
        tokio::spawn(async move {
            let _permit = permit;
            if let Some(response) = handler.handle(&query, Transport::Udp).await {
                if let Err(e) = sock.send_to(&response, peer).await {
                    tracing::debug!(%peer, error = %e, "dns udp send failed");
                }
            }
        });
    }
}

/// Limits of the TCP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpConfig {
    /// Connections served at once; more are closed as soon as accepted and counted as refused.
    pub max_connections: usize,
    /// A connection with no complete query for this long is closed (RFC 7766 section 6.2.3).
    pub idle_timeout: Duration,
}

impl Default for TcpConfig {
    fn default() -> Self {
        Self { max_connections: 256, idle_timeout: Duration::from_secs(10) }
    }
}

/// Serves DNS over TCP on `listener` with [`TcpConfig::default`] until the task is dropped.
pub async fn serve_tcp(listener: TcpListener, handler: Arc<Resolver>) {
    serve_tcp_with(listener, handler, TcpConfig::default()).await
}

/// Serves DNS over TCP on `listener` with these limits until the task is dropped. Each
/// connection carries any number of queries, each with a 2-byte length prefix (RFC 7766 section
/// 8); they are answered concurrently, each response written when ready.
pub async fn serve_tcp_with(listener: TcpListener, handler: Arc<Resolver>, config: TcpConfig) {
    let connections = Arc::new(Semaphore::new(config.max_connections));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(got) => got,
            Err(e) => {
                // Out of descriptors, most likely: wait rather than spin.
                tracing::debug!(error = %e, "dns tcp accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            handler.metrics.tcp_refused();
            tracing::debug!(%peer, "dns tcp connection refused: at the connection limit");
            drop(stream);
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let _permit = permit;
            serve_connection(stream, handler, config.idle_timeout).await;
        });
    }
}

/// Reads length-prefixed queries and answers each in its own task, so that a slow forwarded
/// question does not hold up the ones behind it (RFC 7766 section 6.2.1.1: responses may come
/// out of order, the client matches them by ID); at most [`TCP_PIPELINE`] at once per
/// connection. Reading stops when the client closes, a read fails, or no query arrives for
/// `idle`; the answers to queries already read are still written, then the connection closes.
async fn serve_connection(stream: TcpStream, handler: Arc<Resolver>, idle: Duration) {
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(TCP_PIPELINE);
    let write = async move {
        while let Some(framed) = rx.recv().await {
            if !matches!(tokio::time::timeout(idle, writer.write_all(&framed)).await, Ok(Ok(_))) {
                return;
            }
        }
    };
    let read = async move {
        let pipeline = Arc::new(Semaphore::new(TCP_PIPELINE));
        loop {
            let mut len = [0u8; 2];
            if !matches!(tokio::time::timeout(idle, reader.read_exact(&mut len)).await, Ok(Ok(_))) {
                return;
            }
            let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
            if !matches!(tokio::time::timeout(idle, reader.read_exact(&mut query)).await, Ok(Ok(_))) {
                return;
            }
            let Ok(permit) = pipeline.clone().acquire_owned().await else { return };
            let (tx, handler) = (tx.clone(), handler.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let Some(response) = handler.handle(&query, Transport::Tcp).await else { return };
                let Ok(len) = u16::try_from(response.len()) else { return };
                let mut framed = Vec::with_capacity(response.len() + 2);
                framed.extend_from_slice(&len.to_be_bytes());
                framed.extend_from_slice(&response);
                let _ = tx.send(framed).await;
            });
        }
    };
    tokio::join!(read, write);
}
