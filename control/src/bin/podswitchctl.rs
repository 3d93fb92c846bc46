//! podswitchctl: the command-line client of podswitchd's control socket.
//!
//! Exit codes: 0 done; 1 the daemon refused the request (the message says why; nothing
//! changed); 2 bad usage or unreadable input; 3 the daemon cannot be reached.

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use control::api::pb;
use control::k8s::Format;
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[path = "podswitchctl/get.rs"]
mod get;

#[derive(Debug, Parser)]
#[command(name = "podswitchctl", version, about = "Control a running podswitchd over its socket")]
#[command(
    after_help = "Exit codes: 0 done, 1 refused by the daemon (nothing changed), 2 bad usage or input, 3 daemon unreachable."
)]
struct Cli {
    /// The daemon's control socket.
    #[arg(long, global = true, env = "PODSWITCH_SOCKET", default_value = control::api::server::DEFAULT_SOCKET)]
    socket: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Output {
    Table,
    Wide,
    Yaml,
    Json,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create or update objects from files, directories or stdin (`-`): Kubernetes YAML/JSON
    /// (multi-document) or podswitch TOML object sections. All or nothing.
    Apply {
        #[arg(short = 'f', long = "filename", required = true, value_name = "FILE|DIR|-")]
        files: Vec<String>,
        /// Validate and build only.
        #[arg(long)]
        dry_run: bool,
        /// Fields the Kubernetes API schema does not know (or duplicate keys): strict refuses
        /// the whole request, warn applies with a warning per field, ignore applies silently.
        #[arg(long, default_value = "strict", value_parser = ["strict", "warn", "ignore"])]
        validate: String,
    },
    /// Delete the objects of files (`-f`) or one object by kind and name.
    Delete {
        #[arg(short = 'f', long = "filename", value_name = "FILE|DIR|-")]
        files: Vec<String>,
        /// Kind (service, pod, policy, ...) when deleting by name.
        kind: Option<String>,
        name: Option<String>,
        #[arg(short, long, default_value = "default")]
        namespace: String,
        #[arg(long)]
        dry_run: bool,
    },
    /// List objects as Kubernetes writes them: namespaces, pods, services, endpointslices
    /// (with those generated for selector Services), endpoints, networkpolicies, configmaps,
    /// nodes; routes and ports (those attached at run time) in podswitch's own terms.
    Get {
        kind: String,
        name: Option<String>,
        /// The namespace (as `delete`'s); ignored for kinds without namespaces.
        #[arg(short, long, default_value = "default")]
        namespace: String,
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Only objects whose labels match (kubectl's syntax: `a=b,c!=d,e,!f,g in (x,y),h notin (z)`).
        #[arg(short = 'l', long, default_value = "")]
        selector: String,
        /// table, wide, yaml and json as kubectl; name prints `kind/name`; model the config
        /// model's JSON (podswitch's fields, each object's origin).
        #[arg(short, long, value_enum, default_value = "table")]
        output: get::GetOutput,
    },
    /// Show one object in detail: `describe service NAME` (its ports, node ports, load
    /// balancer ingress, selector, session affinity, traffic policies and endpoints).
    Describe {
        kind: String,
        name: String,
        #[arg(short, long, default_value = "default")]
        namespace: String,
    },
    /// Routes.
    Route {
        #[command(subcommand)]
        cmd: RouteCmd,
    },
    /// Switch ports added and removed at run time (pods' ports come from the CNI plugin).
    Port {
        #[command(subcommand)]
        cmd: PortCmd,
    },
    /// Counters per port, per drop reason, per table.
    Stats {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Tracked flows.
    Conntrack {
        #[command(subcommand)]
        cmd: CtCmd,
    },
    /// Run a synthesized packet through the pipeline and show every stage:
    /// `trace tcp 10.244.1.5:40000 to 10.96.0.10:80 --in client` (or a quoted '->').
    Trace {
        /// PROTOCOL SRC [->] DST
        #[arg(num_args = 3..=4, value_name = "PROTOCOL SRC -> DST", action = clap::ArgAction::Set)]
        packet: Vec<String>,
        /// Port, pod (`name` or `ns/name`) or `node:<name>` the packet enters by.
        #[arg(long = "in", default_value = "")]
        input: String,
        /// TCP flags (S, A, F, R, P), default S.
        #[arg(long, default_value = "")]
        flags: String,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Stream changes as they happen.
    Watch,
    /// Client and daemon versions.
    Version,
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Subcommand)]
enum PortCmd {
    /// Add a pod port on an interface of the daemon's namespace: `port add p7 --interface veth7`.
    Add {
        name: String,
        #[arg(long)]
        interface: String,
    },
    /// Remove a port added at run time.
    Del { name: String },
    /// List the ports attached at run time (with their pods, for CNI attachments).
    List {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
enum RouteCmd {
    /// Add or replace a route: `route add 10.245.0.0/16 via node:node-b`.
    Add {
        prefix: String,
        #[arg(value_parser = ["via"])]
        via_word: String,
        via: String,
        #[arg(long)]
        mac: Option<String>,
    },
    /// Delete a route added through the API.
    Del { prefix: String },
    /// List routes.
    List {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
}

#[derive(Debug, clap::Args)]
struct CtFilter {
    #[arg(long)]
    proto: Option<String>,
    /// Either address of the original or translated tuple.
    #[arg(long)]
    addr: Option<String>,
    /// Either port of the original or translated tuple.
    #[arg(long)]
    port: Option<u16>,
}

#[derive(Debug, Subcommand)]
enum CtCmd {
    List {
        #[command(flatten)]
        filter: CtFilter,
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Remove flows (all, or those matching the filter).
    Flush {
        #[command(flatten)]
        filter: CtFilter,
    },
}

/// A failure and its exit code.
struct Fail(u8, String);

impl From<tonic::Status> for Fail {
    fn from(s: tonic::Status) -> Fail {
        let code = match s.code() {
            tonic::Code::Unavailable if s.message().contains("connect") => 3,
            _ => 1,
        };
        Fail(code, format!("{:?}: {}", s.code(), s.message()))
    }
}

fn main() -> ExitCode {
    // A quoted '->' between a trace's source and destination reads as `to`: clap would take
    // it for an option (it starts with a hyphen), and letting the packet take hyphen values
    // would swallow the options after it.
    let cli = Cli::parse_from(std::env::args_os().map(|a| if a == "->" { "to".into() } else { a }));
    if let Cmd::Completions { shell } = cli.cmd {
        clap_complete::generate(shell, &mut Cli::command(), "podswitchctl", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("podswitchctl: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(code, m)) => {
            eprintln!("podswitchctl: {m}");
            ExitCode::from(code)
        }
    }
}

/// Reads `-f` arguments into manifests: files by extension, directories (their .yaml, .yml,
/// .json and .toml files, sorted), `-` from stdin (format sniffed).
fn manifests(files: &[String]) -> Result<Vec<pb::Manifest>, Fail> {
    let mut out = Vec::new();
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| Fail(2, format!("{}: {e}", p.display())));
    for f in files {
        if f == "-" {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map_err(|e| Fail(2, format!("stdin: {e}")))?;
            out.push(pb::Manifest { format: sniff(&s).into(), source: "-".into(), content: s });
            continue;
        }
        let p = Path::new(f);
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| Fail(2, format!("{f}: {e}")))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && Format::of_path(p).is_some())
                .collect();
            entries.sort();
            if entries.is_empty() {
                return Err(Fail(2, format!("{f}: no .yaml, .yml, .json or .toml files")));
            }
            for e in entries {
                let format = fmt_name(Format::of_path(&e).unwrap_or(Format::Yaml));
                out.push(pb::Manifest { format: format.into(), source: e.display().to_string(), content: read(&e)? });
            }
        } else {
            let content = read(p)?;
            let format = Format::of_path(p).map(fmt_name).unwrap_or_else(|| sniff(&content));
            out.push(pb::Manifest { format: format.into(), source: f.clone(), content });
        }
    }
    Ok(out)
}

fn fmt_name(f: Format) -> &'static str {
    match f {
        Format::Yaml => "yaml",
        Format::Json => "json",
        Format::Toml => "toml",
    }
}

/// TOML starts with a table header, JSON with a brace; everything else is YAML.
fn sniff(s: &str) -> &'static str {
    let first = s.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).unwrap_or("");
    if first.starts_with('[') {
        "toml"
    } else if first.starts_with('{') {
        "json"
    } else {
        "yaml"
    }
}

fn print_changes(r: &pb::ChangeResponse, dry_run: bool) {
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    for c in &r.changes {
        let o = c.object.clone().unwrap_or_default();
        let name = if o.namespace.is_empty() { o.name } else { format!("{}/{}", o.namespace, o.name) };
        println!("{} {name} {}{}", o.kind.to_lowercase(), c.action, if dry_run { " (dry run)" } else { "" });
    }
    if !dry_run {
        println!("generation {}", r.generation);
    }
}

fn render(v: &impl serde::Serialize, o: Output) -> Result<String, Fail> {
    match o {
        Output::Yaml => serde_yaml_ng::to_string(v).map_err(|e| Fail(2, e.to_string())),
        _ => serde_json::to_string_pretty(v).map(|s| s + "\n").map_err(|e| Fail(2, e.to_string())),
    }
}

async fn run(cli: Cli) -> Result<(), Fail> {
    let mut c = control::api::client::connect(cli.socket.clone()).await.map_err(|m| Fail(3, m))?;
    match cli.cmd {
        Cmd::Apply { files, dry_run, validate } => {
            let r = c.apply(pb::ApplyRequest { manifests: manifests(&files)?, dry_run, validate }).await?.into_inner();
            print_changes(&r, dry_run);
        }
        Cmd::Delete { files, kind, name, namespace, dry_run } => {
            let mut objects = Vec::new();
            match (kind, name) {
                (Some(kind), Some(name)) => objects.push(pb::ObjectRef { kind, namespace, name }),
                (None, None) if !files.is_empty() => {}
                _ => return Err(Fail(2, "give -f FILE, or KIND NAME".into())),
            }
            let req = pb::DeleteRequest { objects, manifests: manifests(&files)?, dry_run };
            let r = c.delete(req).await?.into_inner();
            print_changes(&r, dry_run);
        }
        Cmd::Get { kind, name, namespace, all_namespaces, selector, output } => {
            let k = control::k8s::Kind::parse(&kind).ok_or_else(|| {
                Fail(2, format!("unknown kind '{kind}' (namespaces, pods, services, endpointslices, endpoints, networkpolicies, configmaps, nodes, routes, ports)"))
            })?;
            control::k8s::selector::Selector::parse(&selector).map_err(|e| Fail(2, e.to_string()))?;
            let named = name.is_some();
            if named && !selector.trim().is_empty() {
                return Err(Fail(
                    2,
                    "a name and a label selector (-l) cannot be given together, as with kubectl".into(),
                ));
            }
            let req = pb::ListRequest {
                kind: kind.clone(),
                namespace: if all_namespaces { String::new() } else { namespace.clone() },
                name: name.unwrap_or_default(),
                label_selector: selector,
            };
            let r = c.list(req).await?.into_inner();
            if output == get::GetOutput::Model || matches!(k, control::k8s::Kind::Route | control::k8s::Kind::Port) {
                let o = match output {
                    get::GetOutput::Table => Output::Table,
                    get::GetOutput::Wide => Output::Wide,
                    get::GetOutput::Yaml => Output::Yaml,
                    _ => Output::Json,
                };
                if output != get::GetOutput::Name {
                    return print_objects(&kind, &r, o);
                }
            }
            get::print(k, &r, output, named, all_namespaces, &namespace)?;
        }
        Cmd::Describe { kind, name, namespace } => {
            if control::k8s::Kind::parse(&kind) != Some(control::k8s::Kind::Service) {
                return Err(Fail(2, format!("describe shows services (describe service NAME), not '{kind}'")));
            }
            let svc = c
                .list(pb::ListRequest {
                    kind: "services".into(),
                    namespace: namespace.clone(),
                    name: name.clone(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            let slices = c
                .list(pb::ListRequest {
                    kind: "endpointslices".into(),
                    namespace,
                    label_selector: format!("kubernetes.io/service-name={name}"),
                    ..Default::default()
                })
                .await?
                .into_inner();
            get::describe_service(&svc, &slices)?;
        }
        Cmd::Route { cmd } => match cmd {
            RouteCmd::Add { prefix, via, mac, .. } => {
                let r = c.add_route(pb::Route { prefix, via, mac: mac.unwrap_or_default() }).await?.into_inner();
                print_changes(&r, false);
            }
            RouteCmd::Del { prefix } => {
                let r = c.delete_route(pb::Route { prefix, ..Default::default() }).await?.into_inner();
                print_changes(&r, false);
            }
            RouteCmd::List { output } => {
                let r = c.list(pb::ListRequest { kind: "routes".into(), ..Default::default() }).await?.into_inner();
                print_objects("routes", &r, output)?;
            }
        },
        Cmd::Port { cmd } => match cmd {
            PortCmd::Add { name, interface } => {
                let r = c.add_port(pb::AddPortRequest { name, kind: "pod".into(), interface }).await?.into_inner();
                println!("port {} added: id {} on {} (generation {})", r.name, r.id, r.interface, r.generation);
            }
            PortCmd::Del { name } => {
                let r = c.remove_port(pb::RemovePortRequest { name }).await?.into_inner();
                println!("port {} removed: id {} on {} (generation {})", r.name, r.id, r.interface, r.generation);
            }
            PortCmd::List { output } => {
                let r = c.list(pb::ListRequest { kind: "ports".into(), ..Default::default() }).await?.into_inner();
                print_objects("ports", &r, output)?;
            }
        },
        Cmd::Stats { output } => {
            let r = c.counters(pb::CountersRequest {}).await?.into_inner();
            print_stats(&r, output)?;
        }
        Cmd::Conntrack { cmd } => match cmd {
            CtCmd::List { filter, limit, output } => {
                let r = c.list_conntrack(ct_filter(filter, limit)).await?.into_inner();
                print_flows(&r, output)?;
            }
            CtCmd::Flush { filter } => {
                let r = c.flush_conntrack(ct_filter(filter, 0)).await?.into_inner();
                println!("{} flow(s) flushed", r.flushed);
            }
        },
        Cmd::Trace { packet, input, flags, output } => {
            // `->` must be quoted in a shell ('->'); `to` needs no quoting.
            let p: Vec<&String> = packet.iter().filter(|s| !matches!(s.as_str(), "->" | "to" | "→")).collect();
            let [proto, src, dst] = p[..] else {
                return Err(Fail(
                    2,
                    "trace PROTOCOL SRC -> DST, e.g. trace tcp 10.244.1.5:40000 -> 10.96.0.10:80".into(),
                ));
            };
            let req = pb::TraceRequest {
                protocol: proto.clone(),
                src: src.clone(),
                dst: dst.clone(),
                r#in: input,
                tcp_flags: flags,
            };
            let r = c.trace(req).await?.into_inner();
            if output == Output::Json || output == Output::Yaml {
                let v = serde_json::json!({
                    "generation": r.generation,
                    "steps": r.steps.iter().map(|s| serde_json::json!({"stage": s.stage, "result": s.result})).collect::<Vec<_>>(),
                    "verdict": r.verdict, "detail": r.detail, "rule": r.rule,
                });
                print!("{}", render(&v, output)?);
            } else {
                for s in &r.steps {
                    println!("{:<15} {}", s.stage, s.result);
                }
                println!("{:<15} {} ({})", "verdict", r.verdict.to_uppercase(), r.detail);
                if !r.rule.is_empty() {
                    println!("{:<15} {}", "decided by", r.rule);
                }
            }
        }
        Cmd::Watch => {
            let mut s = c.watch(pb::WatchRequest {}).await?.into_inner();
            while let Some(ev) = s.message().await? {
                let objs: Vec<String> = ev
                    .changes
                    .iter()
                    .map(|c| {
                        let o = c.object.clone().unwrap_or_default();
                        format!("{} {}/{} {}", o.kind, o.namespace, o.name, c.action)
                    })
                    .collect();
                println!("generation={} {} {} {}", ev.generation, ev.action, ev.message, objs.join(", "));
            }
        }
        Cmd::Version => {
            let r = c.version(pb::VersionRequest {}).await?.into_inner();
            println!(
                "podswitchctl {}\npodswitchd {} (node {}, generation {})",
                env!("CARGO_PKG_VERSION"),
                r.version,
                r.node,
                r.generation
            );
        }
        Cmd::Completions { .. } => {}
    }
    Ok(())
}

fn ct_filter(f: CtFilter, limit: u32) -> pb::ConntrackFilter {
    pb::ConntrackFilter {
        protocol: f.proto.unwrap_or_default(),
        address: f.addr.unwrap_or_default(),
        port: u32::from(f.port.unwrap_or(0)),
        limit,
    }
}

fn s(v: &Value, path: &[&str]) -> String {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(x) => cur = x,
            None => return "<none>".into(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => "<none>".into(),
        Value::Array(a) if a.is_empty() => "<none>".into(),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map(String::from).unwrap_or_else(|| x.to_string()))
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(m) if m.is_empty() => "<none>".into(),
        Value::Object(m) => {
            m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(",")
        }
        x => x.to_string(),
    }
}

fn table(rows: Vec<Vec<String>>) {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
    for r in rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", line.join("   ").trim_end());
    }
}

fn print_objects(kind: &str, r: &pb::ListResponse, o: Output) -> Result<(), Fail> {
    let parsed: Vec<(pb::ObjectRef, Value, String)> = r
        .objects
        .iter()
        .map(|x| {
            (
                x.r#ref.clone().unwrap_or_default(),
                serde_json::from_str(&x.json).unwrap_or(Value::Null),
                x.origin.clone(),
            )
        })
        .collect();
    if o == Output::Json || o == Output::Yaml {
        let items: Vec<Value> = parsed
            .iter()
            .map(|(k, v, origin)| serde_json::json!({"kind": k.kind, "namespace": k.namespace, "name": k.name, "origin": origin, "spec": v}))
            .collect();
        print!("{}", render(&serde_json::json!({"generation": r.generation, "items": items}), o)?);
        return Ok(());
    }
    if parsed.is_empty() {
        eprintln!("No resources found.");
        return Ok(());
    }
    let wide = o == Output::Wide;
    let kind = control::k8s::Kind::parse(kind).map(|k| k.name()).unwrap_or("");
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut head = |h: &[&str], w: &[&str]| {
        let mut v: Vec<String> = h.iter().map(|s| s.to_string()).collect();
        if wide {
            v.extend(w.iter().map(|s| s.to_string()));
        }
        rows.push(v);
    };
    match kind {
        "Service" => head(
            &["NAMESPACE", "NAME", "TYPE", "CLUSTER-IPS", "PORTS"],
            &["SELECTOR", "AFFINITY", "EXTERNAL-POLICY", "ORIGIN"],
        ),
        "Pod" => head(&["NAMESPACE", "NAME", "IPS", "NODE/PORT", "READY"], &["LABELS", "MAC", "ORIGIN"]),
        "EndpointSlice" | "Endpoints" => head(&["NAMESPACE", "NAME", "SERVICE", "ENDPOINTS"], &["READY", "ORIGIN"]),
        "NetworkPolicy" => {
            head(&["NAMESPACE", "NAME", "POD-SELECTOR", "TYPES"], &["INGRESS-RULES", "EGRESS-RULES", "ORIGIN"])
        }
        "ConfigMap" => head(&["NAMESPACE", "NAME", "DATA"], &["ORIGIN"]),
        "Route" => head(&["PREFIX", "VIA", "MAC"], &["ORIGIN"]),
        "Port" => head(&["NAME", "ID", "INTERFACE", "POD", "ADDRESSES"], &["CONTAINER", "MAC"]),
        _ => head(&["NAME", "LABELS"], &["ORIGIN"]),
    }
    for (_, v, origin) in &parsed {
        let mut row = match kind {
            "Service" => {
                let ports = v["ports"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|p| {
                                let np = p["node_port"].as_u64().map(|n| format!(":{n}")).unwrap_or_default();
                                format!("{}{np}/{}", p["port"], p["protocol"].as_str().unwrap_or("TCP"))
                            })
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default();
                vec![s(v, &["namespace"]), s(v, &["name"]), s(v, &["type"]), s(v, &["cluster_ips"]), ports]
            }
            "Pod" => {
                let place = if v["port"].is_string() {
                    format!("port {}", s(v, &["port"]))
                } else {
                    format!("node {}", s(v, &["node"]))
                };
                vec![s(v, &["namespace"]), s(v, &["name"]), s(v, &["ips"]), place, s(v, &["ready"])]
            }
            "EndpointSlice" | "Endpoints" => {
                let eps = v["endpoints"]
                    .as_array()
                    .map(|a| a.iter().map(|e| s(e, &["ip"])).collect::<Vec<_>>().join(","))
                    .unwrap_or_default();
                vec![s(v, &["namespace"]), s(v, &["name"]), s(v, &["service"]), eps]
            }
            "NetworkPolicy" => {
                let types = if v["policy_types"].is_array() { s(v, &["policy_types"]) } else { "(default)".into() };
                vec![s(v, &["namespace"]), s(v, &["name"]), s(v, &["pod_selector", "match_labels"]), types]
            }
            "ConfigMap" => {
                vec![s(v, &["namespace"]), s(v, &["name"]), v["data"].as_object().map_or(0, |d| d.len()).to_string()]
            }
            "Route" => vec![s(v, &["prefix"]), s(v, &["via"]), s(v, &["mac"])],
            "Port" => {
                let pod = if v["cni"].is_object() {
                    format!("{}/{}", s(v, &["cni", "pod_namespace"]), s(v, &["cni", "pod_name"]))
                } else {
                    String::new()
                };
                vec![s(v, &["port"]), s(v, &["id"]), s(v, &["interface"]), pod, s(v, &["cni", "addresses"])]
            }
            _ => vec![s(v, &["name"]), s(v, &["labels"])],
        };
        if wide {
            match kind {
                "Service" => {
                    row.extend([s(v, &["selector"]), s(v, &["session_affinity"]), s(v, &["external_traffic_policy"])])
                }
                "Pod" => row.extend([s(v, &["labels"]), s(v, &["mac"])]),
                "Port" => row.extend([s(v, &["cni", "ref", "container_id"]), s(v, &["cni", "mac"])]),
                "EndpointSlice" | "Endpoints" => {
                    let ready = v["endpoints"]
                        .as_array()
                        .map(|a| a.iter().filter(|e| e["ready"] == Value::Bool(true)).count())
                        .unwrap_or(0);
                    row.push(ready.to_string());
                }
                "NetworkPolicy" => row.extend([
                    v["ingress"].as_array().map_or(0, Vec::len).to_string(),
                    v["egress"].as_array().map_or(0, Vec::len).to_string(),
                ]),
                _ => {}
            }
            row.push(origin.clone());
        }
        rows.push(row);
    }
    table(rows);
    Ok(())
}

fn print_stats(r: &pb::CountersResponse, o: Output) -> Result<(), Fail> {
    if o == Output::Json || o == Output::Yaml {
        let t = r.tables.unwrap_or_default();
        let v = serde_json::json!({
            "generation": r.generation,
            "workers": r.workers,
            "last_apply_micros": r.last_apply_micros,
            "ports": r.ports.iter().map(|p| serde_json::json!({
                "name": p.name, "kind": p.kind, "io": p.io, "rx_packets": p.rx_packets, "rx_bytes": p.rx_bytes,
                "tx_packets": p.tx_packets, "tx_bytes": p.tx_bytes, "drops": p.drops,
            })).collect::<Vec<_>>(),
            "drops": r.drops,
            "events": r.events,
            "tables": {
                "endpoints": t.endpoints, "routes": t.routes, "service_ports": t.service_ports, "frontends": t.frontends,
                "policy_classifiers": t.policy_classifiers, "policy_rules": t.policy_rules,
                "conntrack_entries": t.conntrack_entries, "conntrack_capacity": t.conntrack_capacity,
                "conntrack_evicted": t.conntrack_evicted,
                "pool_free": t.pool_free,
            },
        });
        print!("{}", render(&v, o)?);
        return Ok(());
    }
    let mut rows =
        vec![["PORT", "KIND", "RX-PKTS", "RX-BYTES", "TX-PKTS", "TX-BYTES", "DROPS", "IO"].map(String::from).to_vec()];
    for p in &r.ports {
        rows.push(vec![
            p.name.clone(),
            p.kind.clone(),
            p.rx_packets.to_string(),
            p.rx_bytes.to_string(),
            p.tx_packets.to_string(),
            p.tx_bytes.to_string(),
            p.drops.values().sum::<u64>().to_string(),
            p.io.clone(),
        ]);
    }
    table(rows);
    if !r.drops.is_empty() {
        println!();
        let mut d: Vec<_> = r.drops.iter().collect();
        d.sort();
        let mut rows = vec![vec!["DROP-REASON".to_string(), "COUNT".into()]];
        rows.extend(d.into_iter().map(|(k, v)| vec![k.clone(), v.to_string()]));
        table(rows);
    }
    let t = r.tables.unwrap_or_default();
    println!();
    println!(
        "tables: generation={} endpoints={} routes={} service_ports={} frontends={} policy_rules={} conntrack={}/{} evicted={} pool_free={} last_apply={}us workers={}",
        r.generation, t.endpoints, t.routes, t.service_ports, t.frontends, t.policy_rules, t.conntrack_entries, t.conntrack_capacity,
        t.conntrack_evicted, t.pool_free, r.last_apply_micros, r.workers
    );
    let mut e: Vec<_> = r.events.iter().filter(|(_, v)| **v > 0).collect();
    e.sort();
    println!("events: {}", e.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "));
    Ok(())
}

fn print_flows(r: &pb::ConntrackList, o: Output) -> Result<(), Fail> {
    if o == Output::Json || o == Output::Yaml {
        let flows: Vec<Value> = r
            .flows
            .iter()
            .map(|f| serde_json::json!({
                "protocol": f.protocol, "src": f.src, "dst": f.dst, "xlate_src": f.xlate_src, "xlate_dst": f.xlate_dst,
                "state": f.state, "expires_in_ms": f.expires_in_ms, "packets": f.packets, "bytes": f.bytes,
                "service": f.service, "egress_rule": f.egress_rule, "ingress_rule": f.ingress_rule, "worker": f.worker,
            }))
            .collect();
        print!("{}", render(&serde_json::json!({"flows": flows, "truncated": r.truncated}), o)?);
        return Ok(());
    }
    let mut rows = vec![["PROTO", "SRC", "DST", "TO-SRC", "TO-DST", "STATE", "EXPIRES", "PKTS", "SERVICE", "WORKER"]
        .map(String::from)
        .to_vec()];
    for f in &r.flows {
        rows.push(vec![
            f.protocol.clone(),
            f.src.clone(),
            f.dst.clone(),
            f.xlate_src.clone(),
            f.xlate_dst.clone(),
            f.state.clone(),
            format!("{}s", f.expires_in_ms / 1000),
            f.packets.to_string(),
            if f.service.is_empty() { "-".into() } else { f.service.clone() },
            f.worker.to_string(),
        ]);
    }
    table(rows);
    if r.truncated > 0 {
        println!("... and {} more", r.truncated);
    }
    Ok(())
}
