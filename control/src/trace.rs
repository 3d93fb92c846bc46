//! `trace`: a synthesized packet goes through the real pipeline code on the live snapshot (in a
//! scratch worker with an empty conntrack, so it shows what a new flow does), and what each
//! stage decided is read back from the packet's pipeline state and the tables.

use crate::build::selector;
use crate::config::Config;
use std::net::{IpAddr, SocketAddr};
use switch_core::addr::Addr;
use switch_core::drop::DropReason;
use switch_core::packet::{OwnedBuf, PacketBuf, PortId};
use switch_core::pipeline::{
    CtHit, Out, PolicyVerdict, RouteRecord, ServiceRecord, TraceRecord, Verdict, Worker, WorkerConfig,
};
use switch_core::route::RouteTarget;
use switch_core::service::FrontendKind;
use switch_core::snapshot::{PortKind, Tables};
use switch_core::wire::build::{tunnel_wrap, IpFrame, L4Repr};
use switch_core::wire::dns::rtype;
use switch_core::wire::l4::tcp_flags;
use switch_core::wire::MacAddr;

/// What to trace.
#[derive(Debug, Clone, Default)]
pub struct TraceSpec {
    pub protocol: String,
    pub src: String,
    pub dst: String,
    /// Port name, pod (`name` or `ns/name`), `node:<name>`, or empty.
    pub input: String,
    pub tcp_flags: String,
}

/// The outcome, stage by stage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceResult {
    pub steps: Vec<(String, String)>,
    pub forwarded: bool,
    /// The switch answered in the packet's place (a service without endpoints).
    pub refused: bool,
    /// The switch answered the query itself (cluster DNS).
    pub answered: bool,
    /// Output port, or the drop reason.
    pub detail: String,
    pub rule: String,
}

fn endpoint(s: &str, icmp: bool) -> Result<(IpAddr, u16), String> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok((sa.ip(), sa.port()));
    }
    match s.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        Ok(ip) if icmp => Ok((ip, 0)),
        Ok(_) => Err(format!("'{s}' needs a port, e.g. 10.244.1.5:40000 or [fd00::5]:40000")),
        Err(_) => Err(format!("'{s}' is not an address:port")),
    }
}

fn flags(s: &str) -> Result<u8, String> {
    let mut f = 0;
    for c in if s.is_empty() { "S" } else { s }.chars() {
        f |= match c.to_ascii_uppercase() {
            'S' => tcp_flags::SYN,
            'A' => tcp_flags::ACK,
            'F' => tcp_flags::FIN,
            'R' => tcp_flags::RST,
            'P' => tcp_flags::PSH,
            _ => return Err(format!("tcp flag '{c}' is not one of S, A, F, R, P")),
        };
    }
    Ok(f)
}

/// The policies of `cfg` that select pod `ns/name` in one direction, by name.
pub fn selecting(cfg: &Config, ns: &str, name: &str, egress: bool) -> Vec<String> {
    let Some(pod) = cfg.pods.iter().find(|p| p.namespace == ns && p.name == name) else { return Vec::new() };
    cfg.policies
        .iter()
        .filter(|p| p.namespace == ns && selector::matches(&p.pod_selector, &pod.labels))
        .filter(|p| match &p.policy_types {
            Some(t) => t.iter().any(|t| t == if egress { "Egress" } else { "Ingress" }),
            None => !egress || !p.egress.is_empty(),
        })
        .map(|p| format!("{}/{}", p.namespace, p.name))
        .collect()
}

/// The names of the policies selecting a pod in one direction (`namespace`, `name`, egress),
/// asked only when a denial needs them.
pub type Selecting<'a> = &'a dyn Fn(&str, &str, bool) -> Vec<String>;

/// Runs `spec` through the pipeline on `t`; `selecting` names the policies behind a denial;
/// with several `workers`, the trace says which one owns the flow and by which rule.
pub fn run(t: &Tables, selecting: Selecting<'_>, spec: &TraceSpec, workers: u16) -> Result<TraceResult, String> {
    let reject_mode = t.policy_reject;
    let proto = spec.protocol.to_ascii_lowercase();
    let icmp = proto == "icmp" || proto == "icmpv6";
    let (src, sport) = endpoint(&spec.src, icmp)?;
    let (dst, dport) = endpoint(&spec.dst, icmp)?;
    if src.is_ipv4() != dst.is_ipv4() {
        return Err("source and destination must be of one IP family".into());
    }
    let l4 = match proto.as_str() {
        "tcp" => L4Repr::Tcp { sport, dport, seq: 1, ack: 0, flags: flags(&spec.tcp_flags)? },
        "udp" => L4Repr::Udp { sport, dport },
        "sctp" => L4Repr::Sctp { sport, dport },
        "icmp" | "icmpv6" => L4Repr::IcmpEcho { request: true, ident: 1, seq: 1 },
        p => return Err(format!("protocol '{p}' is not one of tcp, udp, sctp, icmp")),
    };
    // Where it enters.
    let by_name = |n: &str| t.ports.iter().position(|p| p.name == n).map(|i| PortId(i as u16));
    let uplink = t.ports.iter().position(|p| p.kind == PortKind::Uplink).map(|i| PortId(i as u16));
    let pod_named = |n: &str| {
        let (ns, name) = n.split_once('/').map_or((None, n), |(a, b)| (Some(a), b));
        t.endpoints.iter().find(|e| e.name == name && ns.is_none_or(|ns| e.namespace == ns) && e.port.is_some())
    };
    let mut from_node = None;
    let (port, what) = if spec.input.is_empty() {
        match t.endpoints.by_ip(Addr::from(src)).map(|id| t.endpoints.get(id)).filter(|e| e.port.is_some()) {
            Some(e) => (e.port, format!("pod {}/{} (owns the source address)", e.namespace, e.name)),
            None => (uplink, "the uplink (the source is not a local pod)".to_string()),
        }
    } else if let Some(n) = spec.input.strip_prefix("node:") {
        let idx = t.nodes.iter().position(|r| r.name == n).ok_or_else(|| format!("no remote node '{n}'"))?;
        from_node = Some(idx);
        (uplink, format!("the tunnel from node {n}"))
    } else if let Some(p) = by_name(&spec.input) {
        (Some(p), format!("port {}", spec.input))
    } else if let Some(e) = pod_named(&spec.input) {
        (e.port, format!("pod {}/{}", e.namespace, e.name))
    } else {
        return Err(format!("'{}' is neither a port, a local pod nor node:<name>", spec.input));
    };
    let port = port.ok_or("the node has no uplink port")?;
    let kind = t.ports[port.index()].kind;
    let src_mac = match kind {
        PortKind::Pod => {
            t.endpoints.on_port(port).map(|e| t.endpoints.get(e).mac).unwrap_or(MacAddr([2, 0, 0, 0, 0, 1]))
        }
        PortKind::Host => t.node.host_mac,
        PortKind::Resolver => t.dns.resolver.map_or(MacAddr([2, 0, 0, 0, 0, 0x53]), |r| r.mac),
        PortKind::Uplink => MacAddr([2, 0, 0, 0, 0, 0xfe]),
    };
    let dst_mac = if kind == PortKind::Uplink { t.node.uplink_mac } else { t.node.router_mac };
    let mut ip_frame = IpFrame::new(src_mac, dst_mac, src, dst, l4);
    if proto == "udp" && dport == switch_core::dns::DNS_PORT && t.dns.serves(Addr::from(dst)) {
        // A query to the cluster DNS: the TXT record `dns-version.<zone>`, so that the trace
        // shows what the DNS stage does with a real query.
        let zone = switch_core::wire::dns::name_to_string(t.dns.names.zone());
        let query = switch_core::wire::build::dns_query(1, &format!("dns-version.{zone}"), rtype::TXT, None);
        ip_frame = ip_frame.with_payload(&query);
    }
    let mut frame = ip_frame.build();
    if let Some(idx) = from_node {
        let r = &t.nodes[idx];
        let local = if r.underlay_ip.is_v4() { t.node.ipv4.map(IpAddr::V4) } else { t.node.ipv6.map(IpAddr::V6) };
        let local = local.ok_or("this node has no underlay address of that family")?;
        let inner = IpFrame::new(r.vtep_mac, t.node.vtep_mac, src, dst, l4).build();
        frame = tunnel_wrap(
            &inner,
            t.node.tunnel,
            r.next_hop_mac,
            t.node.uplink_mac,
            r.underlay_ip.to_ip(),
            local,
            49152,
            t.node.vni,
        );
    }
    let in_len = frame.len();
    let mut w = Worker::new(WorkerConfig {
        conntrack_flows: 64,
        affinity_entries: 64,
        max_ports: t.ports.len().max(1),
        ..WorkerConfig::default()
    })
    .with_trace();
    // Policy denials are traced as the drop they decide; reject mode's answer is added after.
    let mut quiet = t.clone();
    quiet.policy_reject = false;
    let t = &quiet;
    let mut pkts = [OwnedBuf::from_frame(&frame, port)];
    let mut v = [Verdict::Drop(DropReason::NoRoute)];
    w.process(t, 1, &mut pkts, &mut v);
    let c = *w.ctx(0).ok_or("no pipeline state")?;

    let mut r = TraceResult::default();
    step(&mut r, "receive", format!("{in_len} bytes on {what}, port {} ({:?})", t.ports[port.index()].name, kind));
    if let Some(n) = c.from_tunnel {
        step(&mut r, "decapsulate", format!("{:?} from node {}", t.node.tunnel, t.remote(n).name));
    }
    let ep_name = |a: Addr| match t.endpoints.by_ip(a) {
        Some(id) => {
            let e = t.endpoints.get(id);
            let place = if e.port.is_some() { "local" } else { "remote" };
            format!("{place} pod {}/{}", e.namespace, e.name)
        }
        None if t.endpoints.is_node_ip(a) => "this node".into(),
        None if t.services.frontends().any(|f| f.addr == a) => "a service address".into(),
        None => match t.endpoints.identity_of(a) {
            switch_core::endpoint::Identity::WORLD => "outside the cluster".into(),
            id => format!("identity {}", id.0),
        },
    };
    if !(c.meta.proto == 0 && c.done.is_some()) {
        // From the request: a refusal rewrites the packet (and its parsed tuple) in place.
        let (a, b) = (Addr::from(src), Addr::from(dst));
        step(
            &mut r,
            "parse",
            format!(
                "{} {} -> {} ({} -> {})",
                spec.protocol.to_ascii_uppercase(),
                sockaddr(a, sport, icmp),
                sockaddr(b, dport, icmp),
                ep_name(a),
                ep_name(b)
            ),
        );
    }
    if workers > 1 && c.meta.proto != 0 {
        let (owner, rule) = switch_core::pipeline::owner::decide(t, c.orig, c.meta.proto, workers);
        step(&mut r, "worker", format!("worker {owner} of {workers} owns the flow ({rule}); others hand it over"));
    }
    // What each stage decided, as it recorded it.
    let log: Vec<TraceRecord> = w.trace_log(0).map(|l| l.records().copied().collect()).unwrap_or_default();
    for rec in &log {
        match *rec {
            TraceRecord::LinkAnswered => step(&mut r, "link layer", "answered by the switch (ARP or ND)".into()),
            TraceRecord::Dns(d) => step(&mut r, "dns", dns_step(d)),
            TraceRecord::Conntrack(hit) => step(
                &mut r,
                "conntrack",
                match hit {
                    CtHit::Miss => "miss: a new flow (traces start from an empty conntrack)".into(),
                    CtHit::Hit { dir, .. } => format!("hit ({dir:?})"),
                },
            ),
            TraceRecord::Service(ServiceRecord::Refused { id }) => step(
                &mut r,
                "service",
                format!(
                    "{} has no usable endpoints: refused at once ({})",
                    t.services.port(id).name(),
                    if proto == "tcp" { "TCP reset" } else { "ICMP port unreachable" }
                ),
            ),
            TraceRecord::Service(ServiceRecord::NotAService) => step(&mut r, "service", "not a service address".into()),
            TraceRecord::Service(ServiceRecord::Selected { id, kind, to, backends }) => {
                let sp = t.services.port(id);
                let kind = match kind {
                    FrontendKind::ClusterIp => "ClusterIP",
                    FrontendKind::NodePort => "NodePort",
                    FrontendKind::LoadBalancer => "LoadBalancer",
                    FrontendKind::ExternalIp => "external IP",
                };
                if to.dst != c.orig.dst || to.dport != c.orig.dport {
                    step(
                        &mut r,
                        "service",
                        format!(
                            "{kind} frontend of {} -> backend {} ({}), chosen by Maglev among {backends} backends",
                            sp.name(),
                            sockaddr(to.dst, to.dport, icmp),
                            ep_name(to.dst),
                        ),
                    );
                } else {
                    step(&mut r, "service", format!("{kind} frontend of {}", sp.name()));
                }
                if to.src != c.orig.src {
                    step(&mut r, "snat", format!("source rewritten to {}", sockaddr(to.src, to.sport, icmp)));
                }
            }
            TraceRecord::Policy { egress, endpoint, verdict } => {
                let ep = t.endpoints.get(endpoint);
                let who = format!("{}/{}", ep.namespace, ep.name);
                let stage = if egress { "egress policy" } else { "ingress policy" };
                let msg = match verdict {
                    PolicyVerdict::Allowed(rule) => {
                        let name = t.policy.rule_name(rule).to_string();
                        r.rule = name.clone();
                        format!("{who}: allowed by {name}")
                    }
                    PolicyVerdict::Denied => {
                        let pols = selecting(&ep.namespace, &ep.name, egress);
                        r.rule = format!("default deny of {}", pols.join(", "));
                        format!(
                            "{who}: denied: no rule of the policies selecting it ({}) admits the packet",
                            pols.join(", ")
                        )
                    }
                    PolicyVerdict::NotSelected => format!("{who}: no policy selects it: allowed"),
                    PolicyVerdict::NotEvaluated => format!("{who}: not evaluated (not a new flow)"),
                };
                step(&mut r, stage, msg);
            }
            TraceRecord::Route { dst, record } => {
                let to = match record {
                    RouteRecord::LocalPod(ep) => {
                        let e = t.endpoints.get(ep);
                        format!("local pod {}/{}", e.namespace, e.name)
                    }
                    RouteRecord::Node => "this node's host port".into(),
                    RouteRecord::NoRoute => "no route".into(),
                    RouteRecord::Chosen(out) => match out {
                        Out::Port { port, .. } => {
                            format!(
                                "port {} (chosen by the DNS stage)",
                                t.ports.get(port.index()).map_or("?", |p| p.name.as_str())
                            )
                        }
                        _ => "chosen by an earlier stage".into(),
                    },
                    RouteRecord::Prefix { len, target } => {
                        let to = match target {
                            RouteTarget::Local => "local pod CIDR".into(),
                            RouteTarget::Tunnel(n) => {
                                let rn = t.remote(n);
                                format!("tunnel to node {} ({})", rn.name, rn.underlay_ip)
                            }
                            RouteTarget::Uplink(m) => format!("uplink via {m}"),
                            RouteTarget::Host => "host".into(),
                            RouteTarget::Blackhole => "blackhole".into(),
                        };
                        let len128 = if dst.is_v4() { len + 96 } else { len };
                        let net = Addr::from_bits(dst.bits() & switch_core::addr::mask(len128));
                        let p =
                            switch_core::addr::Prefix::new(net.to_ip(), len).map(|p| p.to_string()).unwrap_or_default();
                        format!("{p} -> {to}")
                    }
                };
                step(&mut r, "route", to);
            }
        }
    }
    match v[0] {
        Verdict::Tx(p) => {
            let out_len = pkts[0].data().len();
            let how = match c.out {
                Out::Tunnel(n) => format!(", encapsulated ({:?}) to node {}", t.node.tunnel, t.remote(n).name),
                _ if c.dns && c.generated => ", the DNS answer the switch wrote".into(),
                _ if c.generated => ", a reply the switch wrote".into(),
                _ => String::new(),
            };
            step(
                &mut r,
                "transmit",
                format!("port {} ({out_len} bytes{how})", t.ports.get(p.index()).map_or("?", |x| x.name.as_str())),
            );
            r.forwarded = true;
            r.detail = t.ports.get(p.index()).map_or("?".into(), |x| x.name.clone());
            let answered =
                log.iter().any(|x| matches!(x, TraceRecord::Dns(switch_core::dns::TraceRecord::Answered { .. })));
            if answered {
                r.answered = true;
                r.detail = format!("DNS answer sent back by port {}", r.detail);
            } else if c.generated {
                r.rule.clear();
                r.refused = true;
                r.detail = format!("reply sent back by port {}", r.detail);
            }
        }
        Verdict::Drop(reason) => {
            step(&mut r, "drop", reason.name().into());
            r.detail = reason.name().into();
            if reject_mode && matches!(reason, DropReason::PolicyDeniedEgress | DropReason::PolicyDeniedIngress) {
                let how = if c.meta.proto == 6 { "a TCP reset" } else { "ICMP administratively prohibited" };
                step(&mut r, "reject", format!("policy reject mode: {how} goes back to the sender"));
                r.refused = true;
            }
        }
    }
    Ok(r)
}

/// What the DNS stage did, in words.
fn dns_step(d: switch_core::dns::TraceRecord) -> String {
    use switch_core::dns::{Pass, TraceRecord as D};
    match d {
        D::Answered { qtype, outcome, answers, truncated } => {
            let ty = switch_core::dns::QTYPES.iter().find(|(q, _)| *q == qtype).map_or("other", |(_, n)| n);
            let tc = if truncated { ", truncated (TC): the client retries over TCP" } else { "" };
            format!("{ty} query answered in the dataplane: {}, {answers} record(s){tc}", outcome.name())
        }
        D::ToResolver { reason: Pass::NotAQuery } => "not a DNS query: dropped".into(),
        D::ToResolver { reason: Pass::TooLarge } => {
            "the answer is larger than the frame: sent to the daemon's resolver".into()
        }
        D::ToResolver { reason: Pass::Resolver } => {
            "not answered in the dataplane (TCP, a name outside the cluster zone, or a query it does not parse): sent to the daemon's resolver".into()
        }
        D::ToService => "not answered here and no resolver port: on to the Service".into(),
    }
}

fn step(r: &mut TraceResult, s: &str, m: String) {
    r.steps.push((s.into(), m));
}

fn sockaddr(a: Addr, port: u16, icmp: bool) -> String {
    match (icmp, a.is_v4()) {
        (true, _) => a.to_string(),
        (false, true) => format!("{a}:{port}"),
        (false, false) => format!("[{a}]:{port}"),
    }
}
