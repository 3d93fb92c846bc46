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
                    b.tables.services.ports().len(),
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
    let built = match load(path, args.pcap_dir.as_deref()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match control::daemon::run_pcap(built) {
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
