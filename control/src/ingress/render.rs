//! Ingresses, IngressClasses, Services, EndpointSlices and TLS Secrets to nginx's
//! configuration, as ingress-nginx renders its template. Pure: no I/O, no clock; the output is
//! sorted, so the same objects give byte-identical text (and podswitch-ingress reloads nginx
//! only when the text changes).
//!
//! - **Class.** An Ingress is served when its class (`spec.ingressClassName`, else the legacy
//!   `kubernetes.io/ingress.class` annotation) is [`Options::class`] or an IngressClass whose
//!   `spec.controller` is [`Options::controller`]; one with no class is served when such an
//!   IngressClass is marked default (`ingressclass.kubernetes.io/is-default-class: "true"`)
//!   or [`Options::watch_without_class`] is set. Others are left to their controllers.
//! - **Hosts.** One `server` per host (the rules of every Ingress for that host merged); `*.`
//!   wildcards match exactly one label, as the Ingress API says (a regular expression
//!   server_name, which nginx tries after exact names); rules without a host go to the
//!   catch-all server.
//! - **Paths.** `Exact` is `location = /p`; `Prefix` is element-wise, `location = /p` plus
//!   `location /p/` (so `/p` matches `/p` and `/p/q`, not `/pq`; a trailing `/` is ignored);
//!   `ImplementationSpecific` is nginx's own prefix location (ingress-nginx without
//!   `use-regex`). nginx picks exact locations first, then the longest prefix: Kubernetes'
//!   precedence. An Exact path wins over a Prefix path's exact location; two rules for one
//!   location: the first Ingress by namespace and name wins, with a warning.
//! - **Backends.** An upstream per Service port with the ready endpoints' addresses and the
//!   EndpointSlice's port (nginx talks to pods, as ingress-nginx does); no endpoints, no
//!   Service, or no such port: `503`. `defaultBackend` answers what no path of its Ingress's
//!   hosts matches (and, with no rules, the catch-all server); otherwise `404`.
//! - **TLS.** The Secret named by `spec.tls` (type `kubernetes.io/tls`) is written as one PEM
//!   file named by its contents ([`Rendered::files`], mode 0600 when written) and used for
//!   its hosts by SNI; HTTP to such a host is redirected with `308` unless
//!   `ssl-redirect: "false"`. The catch-all server refuses TLS handshakes for unknown names.

use super::validate::{self, Annotations, BackendProtocol, PathType};
use super::{DEFAULT_CLASS_ANNOTATION, LEGACY_CLASS_ANNOTATION, TLS_SECRET_TYPE};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// How podswitch-ingress renders.
#[derive(Debug, Clone)]
pub struct Options {
    /// The class name served even without an IngressClass object.
    pub class: String,
    /// IngressClasses with this `spec.controller` are served.
    pub controller: String,
    /// Serve Ingresses that name no class even when no IngressClass of ours is the default.
    pub watch_without_class: bool,
    /// nginx's prefix directory (absolute): pid, logs, temporary files, certificates.
    pub prefix: String,
    pub worker_processes: u32,
    /// Write `user root;` (nginx started as root; the default user could not read the
    /// prefix directory).
    pub user_root: bool,
    pub http_port: u16,
    pub https_port: u16,
    /// Write an access log (off for benchmarks).
    pub access_log: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            class: "podswitch".into(),
            controller: super::CONTROLLER.into(),
            watch_without_class: false,
            prefix: "/var/lib/podswitch-ingress".into(),
            worker_processes: 1,
            user_root: false,
            http_port: 80,
            https_port: 443,
            access_log: true,
        }
    }
}

/// The objects the configuration is made from (as `podswitchctl get -o json` gives them).
#[derive(Debug, Clone, Default)]
pub struct Input {
    pub ingresses: Vec<Ingress>,
    pub classes: Vec<IngressClass>,
    pub services: Vec<Service>,
    pub slices: Vec<EndpointSlice>,
    pub secrets: Vec<Secret>,
}

/// nginx's configuration and what it needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rendered {
    /// nginx.conf.
    pub conf: String,
    /// Files under the prefix directory (`certs/NS_NAME-HASH.pem`: certificate and key, named
    /// by their contents).
    pub files: BTreeMap<String, Vec<u8>>,
    /// What was not served and why (Ingress by Ingress).
    pub warnings: Vec<String>,
    /// The Ingresses of our class (namespace, name), whose status gets our address.
    pub served: Vec<(String, String)>,
}

/// What a location sends to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Upstream {
        name: String,
        protocol: BackendProtocol,
    },
    /// `return 503`, with why in a comment.
    Unavailable(String),
}

#[derive(Debug, Clone)]
struct Location {
    /// `ns/name: Prefix /p -> svc:80`.
    comment: String,
    target: Target,
    ann: Annotations,
    /// `limit_req` zone of the Ingress, if `limit-rps`.
    zone: Option<String>,
    /// The path as the rule gave it and its type, for `rewrite-target`.
    path: String,
    path_type: PathType,
    /// Lower wins a conflict: an Exact rule's exact location over a Prefix rule's.
    rank: u8,
}

#[derive(Debug, Clone, Default)]
struct Server {
    /// PEM file (under the prefix) for this host's TLS.
    cert: Option<String>,
    /// Keyed by (modifier, path): "=" for exact, "" for prefix.
    locations: BTreeMap<(String, String), Location>,
    /// `defaultBackend` of the first Ingress naming this host.
    fallback: Option<Location>,
}

/// Whether an Ingress is ours, and its class for messages.
fn class_of(i: &Ingress) -> Option<String> {
    i.spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.clone())
        .or_else(|| i.metadata.annotations.as_ref().and_then(|a| a.get(LEGACY_CLASS_ANNOTATION).cloned()))
}

fn ns_name(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (String, String) {
    (m.namespace.clone().unwrap_or_else(|| "default".into()), m.name.clone().unwrap_or_default())
}

/// Text for a `#` comment line: control characters (a newline would end the comment) become
/// spaces.
fn comment(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// An nginx identifier from free text.
fn ident(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// A regular expression matching `s` literally (paths and hosts: the characters validation
/// lets through).
fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if ".()*+$?[]{}|^\\".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Renders the configuration.
pub fn render(input: &Input, opts: &Options) -> Rendered {
    let mut out = Rendered::default();
    let mut ours: BTreeSet<String> = BTreeSet::from([opts.class.clone()]);
    let mut default_ours = opts.watch_without_class;
    for c in &input.classes {
        if c.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(opts.controller.as_str()) {
            let name = c.metadata.name.clone().unwrap_or_default();
            ours.insert(name);
            if c.metadata.annotations.as_ref().and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION)).map(String::as_str)
                == Some("true")
            {
                default_ours = true;
            }
        }
    }
    let mut ingresses: Vec<&Ingress> = input.ingresses.iter().collect();
    ingresses.sort_by_key(|i| ns_name(&i.metadata));

    let mut servers: BTreeMap<String, Server> = BTreeMap::new();
    let mut upstreams: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut zones: BTreeMap<String, u32> = BTreeMap::new();
    let mut catch_all = Server::default();

    for ing in ingresses {
        let (ns, name) = ns_name(&ing.metadata);
        let what = format!("Ingress {ns}/{name}");
        let serve = match class_of(ing) {
            Some(c) => ours.contains(&c),
            None => default_ours,
        };
        if !serve {
            continue;
        }
        let mut ignore = Vec::new();
        if let Err(e) = validate::ingress(ing, &mut ignore, &what) {
            out.warnings.push(format!("{what}: not served: {e}"));
            continue;
        }
        out.warnings.extend(ignore);
        let mut unsupported = Vec::new();
        let ann = validate::annotations(ing.metadata.annotations.as_ref(), &mut unsupported).unwrap_or_default();
        out.served.push((ns.clone(), name.clone()));
        let zone = ann.limit_rps.map(|r| {
            let z = ident(&format!("{ns}_{name}"));
            zones.insert(z.clone(), r);
            z
        });
        let spec = ing.spec.clone().unwrap_or_default();

        // TLS: hosts to certificate files.
        let mut tls_hosts: BTreeMap<String, String> = BTreeMap::new();
        for t in spec.tls.iter().flatten() {
            let Some(secret) = t.secret_name.as_deref() else {
                out.warnings.push(format!("{what}: a tls entry without secretName is not served"));
                continue;
            };
            match tls_file(input, &ns, secret) {
                Ok((file, pem)) => {
                    out.files.insert(file.clone(), pem);
                    for h in t.hosts.iter().flatten() {
                        tls_hosts.entry(h.clone()).or_insert_with(|| format!("{}/{file}", opts.prefix));
                    }
                }
                Err(e) => out.warnings.push(format!(
                    "{what}: TLS for {}: {e}",
                    t.hosts.iter().flatten().cloned().collect::<Vec<_>>().join(",")
                )),
            }
        }

        let mut resolve = |b: &IngressBackend, out: &mut Rendered| -> (Target, String) {
            let Some(s) = &b.service else {
                return (Target::Unavailable("resource backends are not served".into()), "resource".into());
            };
            let port = s.port.as_ref();
            let shown = match (port.and_then(|p| p.number), port.and_then(|p| p.name.clone())) {
                (Some(n), _) => format!("{}:{n}", s.name),
                (None, Some(n)) => format!("{}:{n}", s.name),
                _ => s.name.clone(),
            };
            match endpoints(input, &ns, &s.name, port.and_then(|p| p.number), port.and_then(|p| p.name.as_deref())) {
                Ok(eps) if eps.is_empty() => {
                    (Target::Unavailable(format!("Service {ns}/{shown} has no ready endpoints")), shown)
                }
                Ok(eps) => {
                    // `_` is in no namespace, Service or port name: one upstream per Service port.
                    let up = ident(&format!("{ns}_{}", shown.replace(':', "_")));
                    upstreams.insert(up.clone(), eps);
                    (Target::Upstream { name: up, protocol: ann.backend_protocol }, shown)
                }
                Err(e) => {
                    out.warnings.push(format!("{what}: {e}"));
                    (Target::Unavailable(e), shown)
                }
            }
        };

        let fallback = spec.default_backend.as_ref().map(|b| {
            let (target, shown) = resolve(b, &mut out);
            Location {
                comment: format!("{ns}/{name}: defaultBackend -> {shown}"),
                target,
                ann: ann.clone(),
                zone: zone.clone(),
                path: "/".into(),
                path_type: PathType::ImplementationSpecific,
                rank: 9,
            }
        });
        let rules = spec.rules.clone().unwrap_or_default();
        if rules.is_empty() && catch_all.fallback.is_none() {
            catch_all.fallback = fallback.clone();
        }
        for rule in &rules {
            let host = rule.host.clone().unwrap_or_default();
            let server = if host.is_empty() { &mut catch_all } else { servers.entry(host.clone()).or_default() };
            if server.cert.is_none() {
                server.cert = tls_hosts.get(&host).cloned();
            }
            if server.fallback.is_none() {
                server.fallback = fallback.clone();
            }
            for p in rule.http.iter().flat_map(|h| h.paths.iter()) {
                let t = match p.path_type.as_str() {
                    "Exact" => PathType::Exact,
                    "Prefix" => PathType::Prefix,
                    "ImplementationSpecific" => PathType::ImplementationSpecific,
                    _ => continue,
                };
                let path = p.path.clone().unwrap_or_default();
                let (target, shown) = resolve(&p.backend, &mut out);
                let loc = |rank| Location {
                    comment: format!("{ns}/{name}: {} {path} -> {shown}", p.path_type),
                    target: target.clone(),
                    ann: ann.clone(),
                    zone: zone.clone(),
                    path: path.clone(),
                    path_type: t,
                    rank,
                };
                let keys: Vec<((String, String), u8)> = match t {
                    PathType::Exact => vec![(("=".into(), path.clone()), 0)],
                    PathType::Prefix => {
                        let base = path.trim_end_matches('/');
                        if base.is_empty() {
                            vec![((String::new(), "/".into()), 1)]
                        } else {
                            vec![(("=".into(), base.into()), 1), ((String::new(), format!("{base}/")), 1)]
                        }
                    }
                    PathType::ImplementationSpecific => {
                        vec![((String::new(), if path.is_empty() { "/".into() } else { path.clone() }), 1)]
                    }
                };
                for (key, rank) in keys {
                    let new = loc(rank);
                    match server.locations.get(&key) {
                        None => {
                            server.locations.insert(key, new);
                        }
                        Some(old) if old.rank > rank => {
                            server.locations.insert(key, new);
                        }
                        Some(old) if old.rank == rank => out.warnings.push(format!(
                            "{what}: host {}: location {} {} is already {}; this rule is not used for it",
                            if host.is_empty() { "*" } else { &host },
                            key.0,
                            key.1,
                            old.comment
                        )),
                        Some(_) => {}
                    }
                }
            }
        }
    }
    out.conf = conf(opts, &servers, &catch_all, &upstreams, &zones);
    out
}

/// The PEM file (certificate then key) of TLS Secret `ns/name`.
fn tls_file(input: &Input, ns: &str, name: &str) -> Result<(String, Vec<u8>), String> {
    let s = input
        .secrets
        .iter()
        .find(|s| {
            s.metadata.namespace.as_deref().unwrap_or("default") == ns && s.metadata.name.as_deref() == Some(name)
        })
        .ok_or_else(|| format!("Secret {ns}/{name} not found; the host is served over HTTP only"))?;
    if s.type_.as_deref() != Some(TLS_SECRET_TYPE) {
        return Err(format!("Secret {ns}/{name} is not of type {TLS_SECRET_TYPE}; the host is served over HTTP only"));
    }
    validate::secret(s).map_err(|e| format!("Secret {ns}/{name}: {e}"))?;
    let data = validate::secret_data(s);
    let mut pem = data.get("tls.crt").cloned().unwrap_or_default();
    if !pem.ends_with(b"\n") {
        pem.push(b'\n');
    }
    pem.extend_from_slice(data.get("tls.key").map(Vec::as_slice).unwrap_or_default());
    // Named by content too: a new certificate is a new file, so the one a running
    // configuration uses is never rewritten before nginx -t approves its successor.
    Ok((format!("certs/{}-{:016x}.pem", ident(&format!("{ns}_{name}")), fnv1a(&pem)), pem))
}

/// FNV-1a, 64 bits: a stable name for file contents (not a security measure).
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// The ready endpoints (`ip:port`, sorted) of Service `ns/svc`'s port given by number or name.
fn endpoints(
    input: &Input,
    ns: &str,
    svc: &str,
    number: Option<i32>,
    name: Option<&str>,
) -> Result<Vec<String>, String> {
    let s = input
        .services
        .iter()
        .find(|s| s.metadata.namespace.as_deref().unwrap_or("default") == ns && s.metadata.name.as_deref() == Some(svc))
        .ok_or_else(|| format!("Service {ns}/{svc} not found (answered 503)"))?;
    let spec = s.spec.clone().unwrap_or_default();
    if spec.type_.as_deref() == Some("ExternalName") {
        return Err(format!(
            "Service {ns}/{svc} is an ExternalName Service, which podswitch-ingress does not proxy (answered 503)"
        ));
    }
    let port = spec
        .ports
        .iter()
        .flatten()
        .find(|p| number.map_or_else(|| p.name.as_deref() == name, |n| p.port == n))
        .ok_or_else(|| {
            let want = number.map_or_else(|| format!("named {}", name.unwrap_or("")), |n| n.to_string());
            format!("Service {ns}/{svc} has no port {want} (answered 503)")
        })?;
    let pname = port.name.clone().unwrap_or_default();
    let mut out = BTreeSet::new();
    for sl in &input.slices {
        let labels = sl.metadata.labels.as_ref();
        if sl.metadata.namespace.as_deref().unwrap_or("default") != ns
            || labels.and_then(|l| l.get("kubernetes.io/service-name")).map(String::as_str) != Some(svc)
        {
            continue;
        }
        let Some(target) = sl
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.clone().unwrap_or_default() == pname && p.protocol.as_deref().unwrap_or("TCP") == "TCP")
            .and_then(|p| p.port)
            .filter(|p| (1..=65535).contains(p))
        else {
            continue;
        };
        for e in sl.endpoints.iter().flatten() {
            if e.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            for a in &e.addresses {
                match a.parse::<std::net::IpAddr>() {
                    Ok(std::net::IpAddr::V6(v6)) => out.insert(format!("[{v6}]:{target}")),
                    Ok(v4) => out.insert(format!("{v4}:{target}")),
                    Err(_) => continue,
                };
            }
        }
    }
    Ok(out.into_iter().collect())
}

fn server_name(host: &str) -> String {
    match host.strip_prefix("*.") {
        // One label, as the Ingress API's wildcard (nginx's `*.` would take several).
        Some(rest) => format!("\"~^[^.]+\\.{}$\"", regex_escape(rest)),
        None => host.to_string(),
    }
}

fn location(o: &mut String, key: &(String, String), l: &Location, tls: bool) {
    let _ = writeln!(o, "        # {}", comment(&l.comment));
    if key.0.is_empty() {
        let _ = writeln!(o, "        location \"{}\" {{", key.1);
    } else {
        let _ = writeln!(o, "        location {} \"{}\" {{", key.0, key.1);
    }
    if tls && l.ann.ssl_redirect {
        let _ = writeln!(o, "            if ($scheme = http) {{ return 308 https://$host$request_uri; }}");
    }
    for a in &l.ann.whitelist_source_range {
        let _ = writeln!(o, "            allow {a};");
    }
    if !l.ann.whitelist_source_range.is_empty() {
        let _ = writeln!(o, "            deny all;");
    }
    if let (Some(z), Some(r)) = (&l.zone, l.ann.limit_rps) {
        let _ = writeln!(o, "            limit_req zone={z} burst={} nodelay;", u64::from(r) * 5);
    }
    if let Some(b) = &l.ann.proxy_body_size {
        let _ = writeln!(o, "            client_max_body_size {b};");
    }
    if let Some(t) = &l.ann.rewrite_target {
        // The matched path is replaced by the target; the rest of the URI follows.
        let re = regex_escape(&l.path);
        let line = match l.path_type {
            PathType::Exact => format!("rewrite \"^{re}$\" \"{t}\" break;"),
            PathType::Prefix => {
                let base = regex_escape(l.path.trim_end_matches('/'));
                format!("rewrite \"^{base}/?(.*)$\" \"{}/$1\" break;", t.trim_end_matches('/'))
            }
            PathType::ImplementationSpecific => format!("rewrite \"^{re}(.*)$\" \"{t}$1\" break;"),
        };
        let _ = writeln!(o, "            {line}");
    }
    match &l.target {
        Target::Upstream { name, protocol } => {
            let scheme = if *protocol == BackendProtocol::Https { "https" } else { "http" };
            let _ = writeln!(o, "            proxy_pass {scheme}://{name};");
        }
        Target::Unavailable(why) => {
            let _ = writeln!(o, "            # {}", comment(why));
            let _ = writeln!(o, "            return 503;");
        }
    }
    let _ = writeln!(o, "        }}");
}

fn server_body(o: &mut String, s: &Server) {
    let tls = s.cert.is_some();
    for (k, l) in &s.locations {
        location(o, k, l, tls);
    }
    if !s.locations.contains_key(&(String::new(), "/".into())) {
        match &s.fallback {
            Some(f) => location(o, &(String::new(), "/".into()), f, tls),
            None => {
                let _ = writeln!(o, "        location / {{");
                if tls {
                    let _ = writeln!(o, "            if ($scheme = http) {{ return 308 https://$host$request_uri; }}");
                }
                let _ = writeln!(o, "            return 404;\n        }}");
            }
        }
    }
}

fn conf(
    opts: &Options,
    servers: &BTreeMap<String, Server>,
    catch_all: &Server,
    upstreams: &BTreeMap<String, Vec<String>>,
    zones: &BTreeMap<String, u32>,
) -> String {
    let p = &opts.prefix;
    let mut o = String::new();
    let _ = writeln!(o, "# Generated by podswitch-ingress: do not edit (it is written again on every change).");
    if opts.user_root {
        let _ = writeln!(o, "user root;");
    }
    let _ = writeln!(o, "daemon off;\nworker_processes {};\npid {p}/nginx.pid;", opts.worker_processes.max(1));
    let _ = writeln!(o, "error_log {p}/logs/error.log warn;");
    let _ = writeln!(o, "events {{ worker_connections 4096; }}\n\nhttp {{");
    if opts.access_log {
        let _ = writeln!(o, "    access_log {p}/logs/access.log;");
    } else {
        let _ = writeln!(o, "    access_log off;");
    }
    for t in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        let _ = writeln!(o, "    {t}_temp_path {p}/tmp/{t};");
    }
    o.push_str(
        "    server_names_hash_bucket_size 512;\n    server_tokens off;\n    keepalive_requests 10000;\n    \
         proxy_http_version 1.1;\n    proxy_set_header Connection \"\";\n    proxy_set_header Host $host;\n    \
         proxy_set_header X-Real-IP $remote_addr;\n    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n    \
         proxy_set_header X-Forwarded-Proto $scheme;\n    proxy_connect_timeout 5s;\n    limit_req_status 503;\n",
    );
    for (z, r) in zones {
        let _ = writeln!(o, "    limit_req_zone $binary_remote_addr zone={z}:1m rate={r}r/s;");
    }
    for (name, eps) in upstreams {
        let _ = writeln!(o, "\n    upstream {name} {{");
        for e in eps {
            let _ = writeln!(o, "        server {e};");
        }
        let _ = writeln!(o, "        keepalive 32;\n    }}");
    }
    let (h, s) = (opts.http_port, opts.https_port);
    let _ = writeln!(o, "\n    # Requests for hosts no rule names; TLS only for the hosts of a certificate.");
    let _ = writeln!(o, "    server {{\n        listen {h} default_server;\n        listen {s} ssl default_server;");
    let _ = writeln!(o, "        ssl_reject_handshake on;\n        server_name _;");
    server_body(&mut o, catch_all);
    let _ = writeln!(o, "    }}");
    for (host, srv) in servers {
        let _ = writeln!(o, "\n    server {{\n        listen {h};");
        if let Some(c) = &srv.cert {
            let _ =
                writeln!(o, "        listen {s} ssl;\n        ssl_certificate {c};\n        ssl_certificate_key {c};");
        }
        let _ = writeln!(o, "        server_name {};", server_name(host));
        server_body(&mut o, srv);
        let _ = writeln!(o, "    }}");
    }
    let _ = writeln!(o, "}}");
    o
}
