//! podswitchd: the podswitch node daemon.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "podswitchd", version, about = "podswitch: a user-space packet switch for Kubernetes pod networking")]
struct Args {
    /// Config file (TOML) to run.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["check_config", "demo"])]
    config: Option<PathBuf>,
    /// Validate a config file and exit (0 valid, 2 invalid).
    #[arg(long, value_name = "FILE", conflicts_with = "demo")]
    check_config: Option<PathBuf>,
    /// Resolve relative pcap paths against DIR instead of the config file's directory.
    #[arg(long, value_name = "DIR")]
    pcap_dir: Option<PathBuf>,
    /// With live ports: write the counters here every half second and on exit.
    #[arg(long, value_name = "FILE")]
    stats_file: Option<PathBuf>,
    /// With live ports: write the daemon's PID here (removed on exit).
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// With live ports: pin the workers to these CPUs (worker i to the i-th, round robin).
    #[arg(long, value_name = "CPU[,CPU...]", value_delimiter = ',')]
    cpu: Vec<usize>,
    /// With live ports: run this many workers (overrides datapath.workers; 1-64).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    workers: Option<u16>,
    /// With live ports: empty polls before the worker blocks.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    busy_polls: u32,
    /// With live ports: serve Prometheus metrics on this loopback address (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// With live ports, for benchmarks only: forward each frame to the paired port (0<->1,
    /// 2<->3, ...) without the pipeline, to measure the I/O path alone.
    #[arg(long)]
    bare_forward: bool,
    /// With live ports: serve the gRPC control API on this Unix socket (mode 0660).
    #[arg(long, value_name = "PATH", default_value = control::api::server::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// With live ports: the group that owns the control socket (its members may use
    /// podswitchctl), by name or number.
    #[arg(long, value_name = "GROUP")]
    socket_group: Option<String>,
    /// With live ports: no control socket.
    #[arg(long)]
    no_socket: bool,
    /// With live ports: keep every applied object, attached port and address allocation in
    /// DIR/state.json (replaced atomically after each change) and restore them at start,
    /// before any port forwards, so policies hold across restarts and crashes.
    #[arg(long, value_name = "DIR", default_value = control::state::DEFAULT_DIR, conflicts_with = "no_state")]
    state_dir: PathBuf,
    /// With the state directory: walk the connection tracking and affinity tables into
    /// DIR/flows.state this often, in milliseconds, so that connections survive a crash
    /// (`kill -9`) as well as a stop; 0 writes them only at stop. They are restored at start.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    flow_checkpoint_ms: u64,
    /// With live ports: keep no state; everything applied through the API is lost on exit
    /// (for tests and throw-away nodes).
    #[arg(long)]
    no_state: bool,
    /// Join the cluster whose etcd answers at these client URLs (comma-separated): the
    /// node's pod CIDRs are leased, it registers under a lease, and objects are stored in
    /// etcd (overrides `cluster.etcd` of the config; see its `[cluster]` section).
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',')]
    etcd: Vec<String>,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: tracing::Level,
    /// Run the built-in demo (the embedded configs/node-pcap.toml on a scripted capture).
    #[arg(long)]
    demo: bool,
    /// Where the demo writes its captures.
    #[arg(long, value_name = "DIR", default_value = "target/podswitch-demo")]
    demo_dir: PathBuf,
}

fn load(
    path: &std::path::Path,
    pcap_dir: Option<&std::path::Path>,
) -> Result<control::build::Built, control::error::ConfigError> {
    match pcap_dir {
        None => control::build::load(path, 1),
        Some(dir) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| control::error::ConfigError::Read { file: path.to_path_buf(), source: e })?;
            control::build::build_text(&text, path, dir, 1)
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt().with_max_level(args.log_level).with_writer(std::io::stderr).with_target(false).init();
    if args.demo {
        return match control::demo::run(&args.demo_dir) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("podswitchd: demo failed: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(path) = &args.check_config {
        return match load(path, args.pcap_dir.as_deref()) {
            Ok(b) => {
                println!(
                    "{}: valid: {} ports, {} endpoints, {} routes, {} service ports, {} policy rules",
                    path.display(),
                    b.ports.len(),
                    b.tables.endpoints.len(),
                    b.tables.routes.len(),
                    b.tables.services.port_count(),
                    b.tables.policy.rule_count()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        };
    }
    let Some(path) = &args.config else {
        eprintln!("podswitchd: give --config FILE, --check-config FILE or --demo (see --help)");
        return ExitCode::from(2);
    };
    let (mut base, mut built) = match control::build::read(path, args.pcap_dir.as_deref()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let base_dir = args.pcap_dir.clone().unwrap_or_else(|| path.parent().map(PathBuf::from).unwrap_or_default());
    let mut cluster = None;
    if base.cluster.is_some() || !args.etcd.is_empty() {
        // The pod CIDRs come from the cluster: leased before the first build.
        match control::cluster::agent::Agent::start(&mut base, &args.etcd) {
            Ok(a) => cluster = Some(std::sync::Arc::new(a)),
            Err(e) => {
                eprintln!("podswitchd: cannot join the cluster: {e}");
                return ExitCode::FAILURE;
            }
        }
        built = match control::build::build(&base, &base_dir, 1) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{}: with the leased pod CIDRs: {}: {}", path.display(), e.field, e.message);
                return ExitCode::from(2);
            }
        };
    }
    if let Some(n) = args.workers {
        built.workers = n;
    }
    if built.ports.iter().any(|p| p.backend != "pcap") {
        let mut resolver = None;
        if base.dns.enabled && base.dns.resolver {
            // The daemon's resolver behind a port of the switch (TCP, forwarding, large
            // answers); without it the dataplane still answers what it can.
            let mtu = u32::from(built.tables.dns.mtu.max(576));
            let queues = u32::from(args.workers.unwrap_or(built.workers).max(1));
            match control::resolver_port::create(&base.dns, mtu, queues) {
                Ok(port) => {
                    control::resolver_port::add_to(&mut base, &port);
                    built = match control::build::build(&base, &base_dir, 1) {
                        Ok(b) => b,
                        Err(e) => {
                            eprintln!("{}: with the resolver port: {}: {}", path.display(), e.field, e.message);
                            return ExitCode::from(2);
                        }
                    };
                    if let Some(n) = args.workers {
                        built.workers = n;
                    }
                    resolver = Some(std::sync::Arc::new(std::sync::Mutex::new(Some(port))));
                }
                Err(e) => tracing::warn!("no resolver port ({e}): only the dataplane answers cluster DNS"),
            }
        }
        if let Some(p) = &args.pid_file {
            if let Err(e) = std::fs::write(p, format!("{}\n", std::process::id())) {
                eprintln!("podswitchd: cannot write {}: {e}", p.display());
                return ExitCode::FAILURE;
            }
        }
        let opts = control::live::LiveOptions {
            config: path.clone(),
            stats_file: args.stats_file.clone(),
            busy_polls: args.busy_polls,
            idle_wait_ms: 10,
            cpu: args.cpu.clone(),
            bare_forward: args.bare_forward,
            metrics: args.metrics,
            socket: (!args.no_socket).then(|| args.socket.clone()),
            socket_group: args.socket_group.clone(),
            base_dir,
            state_dir: (!args.no_state).then(|| args.state_dir.clone()),
            flow_checkpoint_ms: args.flow_checkpoint_ms,
            cluster,
            resolver,
        };
        let result = control::live::run(base, built, &opts);
        if let Some(p) = &args.pid_file {
            let _ = std::fs::remove_file(p);
        }
        return finish(result);
    }
    finish(control::daemon::run_pcap(built))
}

/// Prints the final counters, or the error that stopped the run.
fn finish<E: std::fmt::Display>(r: Result<(control::report::Report, switch_core::snapshot::Tables), E>) -> ExitCode {
    match r {
        Ok((report, tables)) => {
            print!("{}", report.render(&tables));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("podswitchd: {e}");
            ExitCode::FAILURE
        }
    }
}
