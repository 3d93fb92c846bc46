//! Where forwarded queries go: the node's `resolv.conf` (resolv.conf(5)) and the kube-dns
//! ConfigMap (`stubDomains`, `upstreamNameservers`, and podswitch's own `hosts` key), read into
//! plain values the [`Forwarder`](super::forward::Forwarder) is built from.
//!
//! The ConfigMap format is the one kube-dns documents in "Customizing DNS Service"
//! (kubernetes.io, `dns-custom-nameservers`): each key holds a JSON document.

use hickory_proto::rr::Name;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// The DNS port used when an address gives none (RFC 1035 section 4.2).
pub const DNS_PORT: u16 = 53;

/// At most this many `upstreamNameservers`, as kube-dns allows (and glibc's `MAXNS`).
pub const MAX_UPSTREAMS: usize = 3;

/// What a `resolv.conf` says about where and how to resolve.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// `nameserver` lines in order, at most [`MAX_UPSTREAMS`] (glibc reads no more). IPv6
    /// addresses lose a `%scope` suffix; link-local ones that carry a scope are skipped, since an
    /// [`IpAddr`] cannot keep the scope they need.
    pub nameservers: Vec<IpAddr>,
    /// The search list: from the last `search` or `domain` line (each replaces the other),
    /// lowercase, without trailing dots.
    pub search: Vec<String>,
    /// `options ndots:n`, capped at 15 as resolv.conf(5) does; `None` when absent.
    pub ndots: Option<u8>,
}

/// Parses the text of a `resolv.conf` (resolv.conf(5)). Never fails: as the C library does,
/// lines it does not understand and addresses that do not parse are skipped. Comments are lines
/// whose first non-blank character is `#` or `;`, and anything after `#` or `;` on a line.
pub fn parse_resolv_conf(text: &str) -> ResolvConf {
    let mut conf = ResolvConf::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if conf.nameservers.len() >= MAX_UPSTREAMS {
                    continue;
                }
                if let Some(ip) = words.next().and_then(parse_scoped_ip) {
                    conf.nameservers.push(ip);
                }
            }
            Some("search") | Some("domain") => {
                conf.search =
                    words.map(|w| w.trim_end_matches('.').to_ascii_lowercase()).filter(|w| !w.is_empty()).collect();
            }
            Some("options") => {
                for option in words {
                    if let Some(n) = option.strip_prefix("ndots:").and_then(|n| n.parse::<u32>().ok()) {
                        conf.ndots = Some(n.min(15) as u8);
                    }
                }
            }
            _ => {}
        }
    }
    conf
}

/// An address that may carry an IPv6 `%scope`: the scope is dropped, except for link-local
/// addresses, which cannot be reached without it and are refused.
fn parse_scoped_ip(word: &str) -> Option<IpAddr> {
    match word.split_once('%') {
        None => word.parse().ok(),
        Some((addr, _scope)) => match addr.parse::<IpAddr>().ok()? {
            IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80 => None,
            ip => Some(ip),
        },
    }
}

/// The kube-dns ConfigMap's data, checked: stub domains, upstream nameservers and static hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsCustom {
    /// `stubDomains`: a domain (lowercase, no trailing dot) and the nameservers that answer for
    /// it and everything under it, port 53 unless given. Sorted by domain.
    pub stub_domains: Vec<(String, Vec<SocketAddr>)>,
    /// `upstreamNameservers`: where every other name outside the cluster zone goes, instead of
    /// the node's `resolv.conf`. At most [`MAX_UPSTREAMS`].
    pub upstream: Vec<SocketAddr>,
    /// `hosts` (a podswitch extension, /etc/hosts format): static entries, one per name and
    /// address, names lowercase without trailing dot, in the order given.
    pub hosts: Vec<(String, IpAddr)>,
    /// Keys of the ConfigMap podswitch does not use (for example kube-dns's `federations`), so
    /// that the caller can warn about them.
    pub ignored_keys: Vec<String>,
}

/// What is wrong with the kube-dns ConfigMap: the key, the entry and what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsConfigError {
    /// The key's value is not the JSON shape it must have.
    #[error("kube-dns ConfigMap key `{key}`: not valid JSON for {expected}: {detail}")]
    Json {
        /// `stubDomains` or `upstreamNameservers`.
        key: &'static str,
        /// The shape the key must have.
        expected: &'static str,
        /// serde_json's message, with line and column.
        detail: String,
    },
    /// A nameserver entry that is neither an IP address nor IP:port.
    #[error(
        "kube-dns ConfigMap key `{key}`: nameserver `{entry}` {reason} \
         (expected an IP address or IP:port, e.g. 10.0.0.10, 10.0.0.10:5353 or [fd00::10]:53)"
    )]
    BadNameserver {
        /// `stubDomains` or `upstreamNameservers`.
        key: &'static str,
        /// The entry as written.
        entry: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A domain (stub domain or host name) that is not a valid DNS name.
    #[error("kube-dns ConfigMap key `{key}`: `{domain}` is not a valid DNS name: {reason}")]
    BadDomain {
        /// `stubDomains` or `hosts`.
        key: &'static str,
        /// The name as written.
        domain: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The same stub domain twice (perhaps in different case or with a trailing dot).
    #[error("kube-dns ConfigMap key `stubDomains`: domain `{domain}` is given more than once")]
    DuplicateStubDomain {
        /// The domain, normalised.
        domain: String,
    },
    /// A stub domain with an empty nameserver list.
    #[error("kube-dns ConfigMap key `stubDomains`: domain `{domain}` has no nameservers; give at least one")]
    EmptyStubDomain {
        /// The domain as written.
        domain: String,
    },
    /// More than [`MAX_UPSTREAMS`] upstream nameservers.
    #[error(
        "kube-dns ConfigMap key `upstreamNameservers`: {count} nameservers given, at most {MAX_UPSTREAMS} are allowed"
    )]
    TooManyUpstreams {
        /// How many were given.
        count: usize,
    },
    /// A line of `hosts` that is not `IP name [alias...]`.
    #[error("kube-dns ConfigMap key `hosts`, line {line}: `{entry}`: {reason}")]
    BadHostsLine {
        /// 1-based line number within the key's value.
        line: usize,
        /// The line as written.
        entry: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

const STUB_DOMAINS: &str = "stubDomains";
const UPSTREAMS: &str = "upstreamNameservers";
const HOSTS: &str = "hosts";

/// Reads the `data` of the kube-dns ConfigMap (`kube-system/kube-dns`).
///
/// * `stubDomains`: a JSON object from domain to a list of `IP` or `IP:port` strings.
/// * `upstreamNameservers`: a JSON list of at most three `IP` or `IP:port` strings.
/// * `hosts` (podswitch extension): /etc/hosts lines `IP name [alias...]`, `#` comments.
///
/// Other keys are kept in [`DnsCustom::ignored_keys`]. Port 53 when none is given.
///
/// # Errors
/// The first [`DnsConfigError`] found, naming the key and the entry.
pub fn parse_kube_dns_config(data: &BTreeMap<String, String>) -> Result<DnsCustom, DnsConfigError> {
    let mut custom = DnsCustom::default();
    for (key, value) in data {
        match key.as_str() {
            STUB_DOMAINS => custom.stub_domains = parse_stub_domains(value)?,
            UPSTREAMS => custom.upstream = parse_upstreams(value)?,
            HOSTS => custom.hosts = parse_hosts(value)?,
            _ => custom.ignored_keys.push(key.clone()),
        }
    }
    Ok(custom)
}

fn parse_stub_domains(value: &str) -> Result<Vec<(String, Vec<SocketAddr>)>, DnsConfigError> {
    let map: BTreeMap<String, Vec<String>> = serde_json::from_str(value).map_err(|e| DnsConfigError::Json {
        key: STUB_DOMAINS,
        expected: "an object from domain to a list of nameservers, e.g. {\"acme.local\": [\"1.2.3.4\"]}",
        detail: e.to_string(),
    })?;
    let mut out: Vec<(String, Vec<SocketAddr>)> = Vec::with_capacity(map.len());
    for (domain, servers) in map {
        let name = check_domain(STUB_DOMAINS, &domain)?;
        if servers.is_empty() {
            return Err(DnsConfigError::EmptyStubDomain { domain });
        }
        let servers = servers.iter().map(|s| parse_nameserver(STUB_DOMAINS, s)).collect::<Result<Vec<_>, _>>()?;
        if out.iter().any(|(d, _)| *d == name) {
            return Err(DnsConfigError::DuplicateStubDomain { domain: name });
        }
        out.push((name, servers));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn parse_upstreams(value: &str) -> Result<Vec<SocketAddr>, DnsConfigError> {
    let list: Vec<String> = serde_json::from_str(value).map_err(|e| DnsConfigError::Json {
        key: UPSTREAMS,
        expected: "a list of nameservers, e.g. [\"8.8.8.8\", \"8.8.4.4:53\"]",
        detail: e.to_string(),
    })?;
    if list.len() > MAX_UPSTREAMS {
        return Err(DnsConfigError::TooManyUpstreams { count: list.len() });
    }
    list.iter().map(|s| parse_nameserver(UPSTREAMS, s)).collect()
}

fn parse_hosts(value: &str) -> Result<Vec<(String, IpAddr)>, DnsConfigError> {
    let mut out = Vec::new();
    for (i, raw) in value.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let Some(addr) = words.next() else { continue };
        let bad = |reason| DnsConfigError::BadHostsLine { line: i + 1, entry: raw.trim().to_string(), reason };
        let ip = IpAddr::from_str(addr).map_err(|_| bad("the first word is not an IP address"))?;
        let mut any = false;
        for name in words {
            out.push((check_domain(HOSTS, name)?, ip));
            any = true;
        }
        if !any {
            return Err(bad("no host name after the address"));
        }
    }
    Ok(out)
}

/// `IP` (port 53) or `IP:port` (`[v6]:port` for IPv6).
fn parse_nameserver(key: &'static str, entry: &str) -> Result<SocketAddr, DnsConfigError> {
    let bad = |reason| DnsConfigError::BadNameserver { key, entry: entry.to_string(), reason };
    let addr = match (entry.parse::<IpAddr>(), entry.parse::<SocketAddr>()) {
        (Ok(ip), _) => SocketAddr::new(ip, DNS_PORT),
        (_, Ok(sa)) => sa,
        _ => return Err(bad("is not an IP address")),
    };
    if addr.port() == 0 {
        return Err(bad("has port 0"));
    }
    if addr.ip().is_unspecified() || addr.ip().is_multicast() {
        return Err(bad("is not a unicast address"));
    }
    Ok(addr)
}

/// Checks a domain as kube-dns does (an RFC 1123 subdomain, `_` allowed for service labels) and
/// returns it lowercase without its trailing dot. Lengths are checked by hickory's [`Name`]
/// (RFC 1035 section 2.3.4: labels up to 63 octets, names up to 255).
fn check_domain(key: &'static str, domain: &str) -> Result<String, DnsConfigError> {
    let bad = |reason: String| DnsConfigError::BadDomain { key, domain: domain.to_string(), reason };
    let trimmed = domain.strip_suffix('.').unwrap_or(domain);
    if trimmed.is_empty() {
        return Err(bad("it is empty (the root zone cannot be a stub domain or a host)".into()));
    }
    for label in trimmed.split('.') {
        if label.is_empty() {
            return Err(bad("it has an empty label (two dots in a row or a leading dot)".into()));
        }
        if let Some(c) = label.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
            return Err(bad(format!("label `{label}` has `{c}`; only letters, digits, `-` and `_` are allowed")));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad(format!("label `{label}` starts or ends with `-`")));
        }
    }
    Name::from_ascii(trimmed).map_err(|e| bad(e.to_string()))?;
    Ok(trimmed.to_ascii_lowercase())
}
