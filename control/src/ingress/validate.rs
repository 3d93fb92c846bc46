//! What the API server checks when an Ingress, IngressClass or Secret is applied (its
//! `ValidateIngress` rules: hosts, paths and `pathType`, backends, TLS), plus what
//! podswitch-ingress needs to write nginx's configuration safely: the ingress-nginx
//! annotations it implements, parsed and checked, and paths of characters nginx takes
//! without quoting. Errors name the field as Kubernetes does
//! (`spec.rules[0].http.paths[1].pathType: Unsupported value: ...`); a Secret's values are
//! never part of an error.

use super::{ANNOTATION_PREFIX, SUPPORTED_ANNOTATIONS, TLS_SECRET_TYPE};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};
use std::collections::BTreeMap;

/// A path's `pathType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathType {
    /// The whole path, case-sensitive.
    Exact,
    /// Element-wise prefix split by `/`: `/foo` matches `/foo` and `/foo/bar`, not `/foobar`.
    Prefix,
    /// As ingress-nginx without `use-regex`: nginx's own prefix location (a string prefix).
    ImplementationSpecific,
}

impl PathType {
    fn parse(s: &str) -> Option<PathType> {
        match s {
            "Exact" => Some(PathType::Exact),
            "Prefix" => Some(PathType::Prefix),
            "ImplementationSpecific" => Some(PathType::ImplementationSpecific),
            _ => None,
        }
    }
}

/// The protocol nginx speaks to the backend pods (`backend-protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendProtocol {
    #[default]
    Http,
    Https,
}

/// The ingress-nginx annotations of an Ingress that podswitch-ingress implements, checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Annotations {
    /// `rewrite-target`: what the matched path is replaced with.
    pub rewrite_target: Option<String>,
    /// `ssl-redirect` (default true): HTTP to HTTPS for hosts with TLS.
    pub ssl_redirect: bool,
    /// `limit-rps`: requests per second per client address.
    pub limit_rps: Option<u32>,
    /// `proxy-body-size`: nginx's size syntax (`8m`, `512k`, `0` for no limit).
    pub proxy_body_size: Option<String>,
    pub backend_protocol: BackendProtocol,
    /// `whitelist-source-range`: the only client networks let in.
    pub whitelist_source_range: Vec<String>,
}

/// The annotations of `meta` podswitch-ingress implements, checked; `unsupported` gets the
/// other `nginx.ingress.kubernetes.io/*` annotations (reported, not silently ignored).
pub fn annotations(
    all: Option<&BTreeMap<String, String>>,
    unsupported: &mut Vec<String>,
) -> Result<Annotations, String> {
    let mut a = Annotations { ssl_redirect: true, ..Default::default() };
    for (k, v) in all.into_iter().flatten() {
        let Some(short) = k.strip_prefix(ANNOTATION_PREFIX) else { continue };
        let field = format!("metadata.annotations[{k}]");
        let bad = |why: &str| format!("{field}: Invalid value: \"{v}\": {why}");
        match short {
            "rewrite-target" => {
                if !v.starts_with('/') || v.contains('$') || !v.bytes().all(path_byte) {
                    return Err(bad(&format!("must be an absolute path of the characters {PATH_CHARS} but '$' (capture groups need use-regex, which podswitch-ingress does not implement)")));
                }
                a.rewrite_target = Some(v.clone());
            }
            "ssl-redirect" => {
                a.ssl_redirect = match v.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad("must be \"true\" or \"false\"")),
                }
            }
            "limit-rps" => match v.parse::<u32>() {
                Ok(n) if (1..=1_000_000).contains(&n) => a.limit_rps = Some(n),
                _ => return Err(bad("must be a whole number of requests per second, 1 to 1000000")),
            },
            "proxy-body-size" => {
                let digits = v.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G']);
                if digits.is_empty()
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                    || v.len() - digits.len() > 1
                    || digits.len() > 12
                    || body_size_bytes(v).is_none()
                {
                    return Err(bad(
                        "must be a size as nginx writes it: digits with an optional k, m or g (8m, 512k, 0)",
                    ));
                }
                a.proxy_body_size = Some(v.clone());
            }
            "backend-protocol" => {
                a.backend_protocol = match v.to_ascii_uppercase().as_str() {
                    "HTTP" => BackendProtocol::Http,
                    "HTTPS" => BackendProtocol::Https,
                    _ => return Err(bad("supported values: \"HTTP\", \"HTTPS\" (podswitch-ingress proxies HTTP/1.1)")),
                }
            }
            "whitelist-source-range" => {
                for c in v.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                    // Written as parsed, never as typed (nginx's parser is stricter than Rust's).
                    let parsed = match (c.parse::<std::net::IpAddr>(), c.split_once('/')) {
                        (Ok(ip), _) => ip.to_string(),
                        (Err(_), Some((ip, len))) => match (ip.parse::<std::net::IpAddr>(), len.parse::<u8>()) {
                            (Ok(ip), Ok(n))
                                if len.bytes().all(|b| b.is_ascii_digit())
                                    && c.parse::<switch_core::addr::Prefix>().is_ok() =>
                            {
                                format!("{ip}/{n}")
                            }
                            _ => return Err(bad(&format!("`{c}` is not an address or a CIDR"))),
                        },
                        _ => return Err(bad(&format!("`{c}` is not an address or a CIDR"))),
                    };
                    a.whitelist_source_range.push(parsed);
                }
            }
            _ => {
                debug_assert!(!SUPPORTED_ANNOTATIONS.contains(&short));
                unsupported.push(k.clone());
            }
        }
    }
    Ok(a)
}

/// The characters podswitch-ingress accepts in paths (nginx's configuration has no escape
/// for the others outside a regular expression).
pub const PATH_CHARS: &str = "A-Za-z0-9 and -._~/%:@!$&()*+,=";

fn path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~/%:@!$&()*+,=".contains(&b)
}

/// Why `s` is not a DNS-1123 subdomain (lower case letters, digits, `-` and `.`, each label
/// starting and ending with a letter or digit, at most 253 characters).
fn dns_subdomain(s: &str) -> Option<String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    (!ok).then(|| {
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', \
         and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation \
         is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            .to_string()
    })
}

/// Why `host` is not an Ingress host: a DNS name, with `*.` as its whole first label at most,
/// never an IP address.
pub fn host_error(host: &str) -> Option<String> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Some("must be a DNS name, not an IP address".into());
    }
    if host.contains('*') {
        let rest = host.strip_prefix("*.");
        return match rest {
            Some(r) if !r.contains('*') && dns_subdomain(r).is_none() => None,
            _ => Some(
                "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, \
                 which must consist of lower case alphanumeric characters, '-' or '.' and end with an \
                 alphanumeric character (e.g. '*.example.com', regex used for validation is \
                 '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
                    .into(),
            ),
        };
    }
    dns_subdomain(host)
}

/// Why `path` is not a path of type `t` (the API server's rules, then nginx's characters).
fn path_error(path: &str, t: PathType) -> Option<String> {
    if t == PathType::ImplementationSpecific && path.is_empty() {
        return None;
    }
    if !path.starts_with('/') {
        return Some("must be an absolute path".into());
    }
    if t != PathType::ImplementationSpecific {
        for bad in ["//", "/./", "/../", "%2f", "%2F"] {
            if path.contains(bad) {
                return Some(format!("must not contain '{bad}'"));
            }
        }
        for bad in ["/..", "/."] {
            if path.ends_with(bad) {
                return Some(format!("cannot end with '{bad}'"));
            }
        }
    }
    if !path.bytes().all(path_byte) {
        return Some(format!(
            "podswitch-ingress accepts paths of the characters {PATH_CHARS} (nginx's configuration has no quoting for others)"
        ));
    }
    None
}

/// Why `name` is not a Service port name (an IANA service name).
fn port_name_error(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    (!ok).then(|| {
        "must be an IANA service name: at most 15 lower case letters, digits and '-', with a letter, no '--'".into()
    })
}

fn backend(b: &IngressBackend, field: &str, warnings: &mut Vec<String>, what: &str) -> Result<(), String> {
    match (&b.service, &b.resource) {
        (Some(_), Some(_)) => Err(format!("{field}: Invalid value: cannot set both service and resource backends")),
        (None, None) => Err(format!("{field}: Required value: one backend (service or resource) must be specified")),
        (None, Some(r)) => {
            warnings.push(format!(
                "{what}: {field}.resource ({} {}): resource backends are not served by podswitch-ingress (answered 503)",
                r.kind, r.name
            ));
            Ok(())
        }
        (Some(s), None) => {
            if let Some(e) = dns_subdomain(&s.name) {
                return Err(format!("{field}.service.name: Invalid value: \"{}\": {e}", s.name));
            }
            if s.name.contains('.') {
                return Err(format!(
                    "{field}.service.name: Invalid value: \"{}\": a Service name is a DNS-1035 label (no '.')",
                    s.name
                ));
            }
            let p = s.port.as_ref();
            match (p.and_then(|p| p.name.as_ref()).filter(|n| !n.is_empty()), p.and_then(|p| p.number)) {
                (Some(_), Some(_)) => {
                    Err(format!("{field}.service.port: Invalid value: cannot set both port name & port number"))
                }
                (None, None) => Err(format!("{field}.service.port: Invalid value: port name or number is required")),
                (None, Some(n)) if !(1..=65535).contains(&n) => Err(format!(
                    "{field}.service.port.number: Invalid value: {n}: must be between 1 and 65535, inclusive"
                )),
                (Some(n), None) => match port_name_error(n) {
                    Some(e) => Err(format!("{field}.service.port.name: Invalid value: \"{n}\": {e}")),
                    None => Ok(()),
                },
                _ => Ok(()),
            }
        }
    }
}

/// Checks an Ingress as the API server does (and what nginx needs); warnings get what is
/// accepted but not served (unsupported annotations, resource backends).
pub fn ingress(ing: &Ingress, warnings: &mut Vec<String>, what: &str) -> Result<(), String> {
    let mut unsupported = Vec::new();
    annotations(ing.metadata.annotations.as_ref(), &mut unsupported)?;
    for a in unsupported {
        warnings.push(format!(
            "{what}: annotation {a} is not supported by podswitch-ingress; ignored (supported: {})",
            SUPPORTED_ANNOTATIONS.map(|s| format!("{ANNOTATION_PREFIX}{s}")).join(", ")
        ));
    }
    let Some(spec) = &ing.spec else {
        return Err("spec: Required value: either `defaultBackend` or `rules` must be specified".into());
    };
    if let Some(c) = &spec.ingress_class_name {
        if let Some(e) = dns_subdomain(c) {
            return Err(format!("spec.ingressClassName: Invalid value: \"{c}\": {e}"));
        }
    }
    let rules = spec.rules.as_deref().unwrap_or_default();
    if spec.default_backend.is_none() && rules.is_empty() {
        return Err("spec: Invalid value: either `defaultBackend` or `rules` must be specified".into());
    }
    if let Some(b) = &spec.default_backend {
        backend(b, "spec.defaultBackend", warnings, what)?;
    }
    for (i, r) in rules.iter().enumerate() {
        if let Some(h) = r.host.as_deref().filter(|h| !h.is_empty()) {
            if let Some(e) = host_error(h) {
                return Err(format!("spec.rules[{i}].host: Invalid value: \"{h}\": {e}"));
            }
        }
        let Some(http) = &r.http else { continue };
        if http.paths.is_empty() {
            return Err(format!("spec.rules[{i}].http.paths: Required value"));
        }
        for (j, p) in http.paths.iter().enumerate() {
            let field = format!("spec.rules[{i}].http.paths[{j}]");
            let t = match p.path_type.as_str() {
                "" => return Err(format!("{field}.pathType: Required value: pathType must be specified")),
                s => PathType::parse(s).ok_or_else(|| {
                    format!(
                        "{field}.pathType: Unsupported value: \"{s}\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\""
                    )
                })?,
            };
            let path = p.path.as_deref().unwrap_or("");
            if let Some(e) = path_error(path, t) {
                return Err(format!("{field}.path: Invalid value: \"{path}\": {e}"));
            }
            backend(&p.backend, &format!("{field}.backend"), warnings, what)?;
        }
    }
    for (i, t) in spec.tls.iter().flatten().enumerate() {
        for (j, h) in t.hosts.iter().flatten().enumerate() {
            if let Some(e) = host_error(h) {
                return Err(format!("spec.tls[{i}].hosts[{j}]: Invalid value: \"{h}\": {e}"));
            }
        }
        if let Some(s) = &t.secret_name {
            if let Some(e) = dns_subdomain(s) {
                return Err(format!("spec.tls[{i}].secretName: Invalid value: \"{s}\": {e}"));
            }
        }
    }
    Ok(())
}

/// Checks an IngressClass (its name is checked with every object's; `spec.controller` is a
/// domain-prefixed path, as the API server requires).
pub fn ingress_class(c: &IngressClass) -> Result<(), String> {
    let ctl = c.spec.as_ref().and_then(|s| s.controller.as_deref()).unwrap_or("");
    if ctl.is_empty() {
        return Err("spec.controller: Required value".into());
    }
    let domain = ctl.split('/').next().unwrap_or("");
    if !ctl.contains('/') || dns_subdomain(domain).is_some() || ctl.len() > 250 {
        return Err(format!(
            "spec.controller: Invalid value: \"{ctl}\": must be a domain-prefixed path such as \"acme.io/foo\" (at most 250 characters)"
        ));
    }
    Ok(())
}

/// Checks a Secret's keys and, for type `kubernetes.io/tls`, that `tls.crt` and `tls.key` are
/// there and look like PEM. `stringData` counts as data, as the API server merges it. Values
/// are never quoted in an error.
pub fn secret(s: &Secret) -> Result<(), String> {
    let data = secret_data(s);
    for k in data.keys() {
        if k.is_empty()
            || k.len() > 253
            || !k.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            || k == "."
            || k == ".."
            || k.starts_with("..")
        {
            return Err(format!(
                "data[{k}]: Invalid value: \"{k}\": a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
            ));
        }
    }
    if s.type_.as_deref() == Some(TLS_SECRET_TYPE) {
        for (key, marker) in [("tls.crt", "-----BEGIN CERTIFICATE-----"), ("tls.key", "PRIVATE KEY-----")] {
            let Some(v) = data.get(key) else {
                return Err(format!(
                    "data[{key}]: Required value (a {TLS_SECRET_TYPE} Secret holds tls.crt and tls.key)"
                ));
            };
            if !String::from_utf8_lossy(v).contains(marker) {
                return Err(format!("data[{key}]: Invalid value: <{} bytes>: not PEM ({marker} missing)", v.len()));
            }
        }
    }
    Ok(())
}

/// A Secret's data with its `stringData` merged in (stringData wins, as on the API server).
pub fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = s.data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect();
    for (k, v) in s.string_data.iter().flatten() {
        out.insert(k.clone(), v.as_bytes().to_vec());
    }
    out
}

/// The bytes of a `proxy-body-size` value (digits, then k, m or g), if nginx can hold them (its
/// sizes are signed 64-bit offsets).
fn body_size_bytes(v: &str) -> Option<i64> {
    let (digits, scale) = match v.as_bytes().last()? {
        b'k' | b'K' => (&v[..v.len() - 1], 1i64 << 10),
        b'm' | b'M' => (&v[..v.len() - 1], 1 << 20),
        b'g' | b'G' => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    digits.parse::<i64>().ok()?.checked_mul(scale)
}
