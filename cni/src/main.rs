//! `podswitch-cni`: reads the CNI environment and the network configuration on stdin, runs
//! the command and prints its result or error object (then exits 1).

use podswitch_cni::config::Env;
use podswitch_cni::error::{CniError, IO_FAILURE};
use podswitch_cni::plugin;
use std::io::{Read, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let env = Env::from_process();
    let mut stdin = Vec::new();
    let outcome = if env.command.as_deref() == Some("VERSION") {
        // VERSION's stdin ({"cniVersion": ...}) is not needed; not reading it also keeps a
        // plugin run by hand from waiting on a terminal.
        plugin::run(&env, &stdin)
    } else {
        match std::io::stdin().read_to_end(&mut stdin) {
            Ok(_) => plugin::run(&env, &stdin),
            Err(e) => {
                Err(CniError::new(IO_FAILURE, "cannot read the network configuration").with_details(e.to_string()))
            }
        }
    };
    let mut out = std::io::stdout().lock();
    match outcome {
        Ok(text) => {
            if let Some(t) = text {
                // A runtime that stopped reading is its own problem; never panic over it.
                let _ = writeln!(out, "{t}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(out, "{}", e.to_json());
            eprintln!("podswitch-cni: {e}");
            ExitCode::FAILURE
        }
    }
}
