//! Helpers for the end-to-end tests: build and run the real `podswitchd` binary on captures,
//! and read its output with tshark, a decoder that is not ours.

pub mod model;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// Builds `podswitchd` once per test binary and returns its path.
pub fn podswitchd() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_bin("control", "podswitchd")).clone()
}

/// Builds binary `bin` of workspace package `package` (debug profile, as the tests are) and
/// returns its path.
pub fn build_bin(package: &str, bin: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .args(["build", "-q", "-p", package, "--bin", bin])
        .current_dir(root())
        .status()
        .expect("run cargo build");
    assert!(st.success(), "building {bin} failed");
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"));
    let path = target.join("debug").join(bin);
    assert!(path.exists(), "{} missing after build", path.display());
    path
}

/// Whether this process runs as root (network namespaces need it).
/// Runs `podswitchctl --socket SOCKET ARGS` with `stdin` on its standard input; returns (exit
/// code, stdout, stderr).
pub fn podswitchctl(socket: &Path, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    use std::io::Write;
    let mut cmd = Command::new(podswitchd().with_file_name("podswitchctl"));
    cmd.arg("--socket").arg(socket).args(args);
    cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("run podswitchctl");
    if let (Some(text), Some(mut i)) = (stdin, child.stdin.take()) {
        i.write_all(text.as_bytes()).expect("stdin");
    }
    let o = child.wait_with_output().expect("podswitchctl");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

pub fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false)
}

/// Whether a test that needs root may run: without root it is skipped with the reason
/// printed, except under CI (`CI=true`), where `.ci/run` runs as root and a skip would hide a
/// failure.
pub fn root_or_skip(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: cannot run: not root; CI expects it to run");
    }
    eprintln!("SKIPPED {test}: needs root for network namespaces");
    false
}

/// Whether `cmd` is on the PATH.
pub fn have(cmd: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {cmd}")]).output().is_ok_and(|o| o.status.success())
}

/// Whether a test that needs root and `tools` may run. `tools` are `command:package` pairs,
/// installed with apt by `netns-scripts/install-tools.sh` when missing. When the test cannot
/// run it is skipped with the reason printed, except under CI (`CI=true`), where it panics;
/// `needs` says what it needs, for that message.
pub fn ready_with_tools(test: &str, tools: &[&str], needs: &str) -> bool {
    let why = if !is_root() {
        Some("not root".to_string())
    } else {
        let st = Command::new("bash")
            .arg("-c")
            .arg(format!(". netns-scripts/install-tools.sh && install_tools {}", tools.join(" ")))
            .current_dir(root())
            .status();
        let commands: Vec<&str> = tools.iter().map(|t| t.split(':').next().unwrap_or(t)).collect();
        match st {
            Ok(s) if s.success() && commands.iter().all(|c| have(c) || Path::new(c).exists()) => None,
            _ => Some(format!("missing tools ({}) and apt could not install them", commands.join(", "))),
        }
    };
    match why {
        None => true,
        Some(w) if std::env::var("CI").as_deref() == Ok("true") => panic!("{test}: cannot run: {w}; CI expects it"),
        Some(w) => {
            eprintln!("SKIPPED {test}: {w}; this test needs {needs}");
            false
        }
    }
}

/// Runs `ip ARGS`; panics with the arguments if it fails.
pub fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("run ip");
    assert!(st.success(), "ip {args:?} failed");
}

/// What a network-namespace test made, undone however the test ends: its daemon killed by
/// PID, its namespaces deleted by name (in reverse order), its run directory removed.
#[derive(Debug)]
pub struct Topology {
    pub names: Vec<String>,
    pub daemon: Option<std::process::Child>,
    pub dir: PathBuf,
}

impl Drop for Topology {
    fn drop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in self.names.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts `podswitchd --config CONFIG --socket SOCKET ARGS...` in network namespace `ns`, its
/// stderr to `log`.
pub fn spawn_daemon(
    ns: &str,
    config: &Path,
    socket: &Path,
    args: &[&std::ffi::OsStr],
    log: &Path,
) -> std::process::Child {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(podswitchd())
        .arg("--config")
        .arg(config)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).expect("daemon log"))
        .spawn()
        .expect("start podswitchd")
}

/// Whether tshark can be used. Missing tshark fails under CI (`CI=true`), where `.ci/run`
/// installs it; elsewhere the caller skips loudly.
pub fn tshark_ready(test: &str) -> bool {
    let ok = Command::new("tshark").arg("-v").output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{test}: tshark is not installed, and CI expects it (apt-get install tshark)");
        }
        eprintln!("SKIPPED {test}: tshark is not installed (apt-get install tshark); this test checks outputs with it");
    }
    ok
}

/// A scratch directory removed on drop.
#[derive(Debug)]
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("podswitch-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("create scratch dir");
        Scratch(d)
    }
    pub fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a run of podswitchd printed.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The count on a `drop <reason> port=<port> count=N` line, 0 when absent.
    pub fn drops(&self, reason: &str, port: &str) -> u64 {
        let prefix = format!("drop {reason} port={port} count=");
        self.stdout.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0, |n| n.parse().expect("count"))
    }
    /// The value of `key` on the `port <name>` line.
    pub fn port_counter(&self, port: &str, key: &str) -> u64 {
        let line = self.stdout.lines().find(|l| l.starts_with(&format!("port {port} "))).expect("port line");
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .expect("counter")
            .parse()
            .expect("number")
    }
    /// The value of an `event <key>=N` line.
    pub fn event(&self, key: &str) -> u64 {
        let prefix = format!("event {key}=");
        self.stdout.lines().find_map(|l| l.strip_prefix(&prefix)).expect("event line").parse().expect("number")
    }
}

/// Runs `podswitchd` with `args`.
pub fn run_daemon(args: &[&str]) -> Run {
    let o = Command::new(podswitchd()).args(args).output().expect("run podswitchd");
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Fields of each frame of a capture as tshark decodes them, with checksum validation on.
/// Each frame is a row; several values of one field are joined with '|'.
pub fn tshark_fields(pcap: &Path, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"]).arg(pcap);
    for o in ["ip.check_checksum:TRUE", "tcp.check_checksum:TRUE", "udp.check_checksum:TRUE"] {
        cmd.args(["-o", o]);
    }
    cmd.args(["-T", "fields", "-E", "separator=\t", "-E", "aggregator=|", "-E", "occurrence=a"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let o = cmd.output().expect("run tshark");
    assert!(o.status.success(), "tshark failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).lines().map(|l| l.split('\t').map(str::to_string).collect()).collect()
}

/// Whether etcd and etcdctl can be used, installing the Debian packages (`etcd-server`,
/// `etcd-client`) through `netns-scripts/install-tools.sh` when they are missing and this runs
/// as root. Otherwise the caller skips loudly, except under CI (`CI=true`), which expects
/// them.
pub fn etcd_or_skip(test: &str) -> bool {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let have = |c: &str| {
            Command::new("sh").args(["-c", &format!("command -v {c}")]).output().is_ok_and(|o| o.status.success())
        };
        if have("etcd") && have("etcdctl") {
            return Ok(());
        }
        let st = Command::new("bash")
            .args(["-c", ". netns-scripts/install-tools.sh && install_tools etcd:etcd-server etcdctl:etcd-client"])
            .current_dir(root())
            .status();
        match st {
            Ok(s) if s.success() && have("etcd") && have("etcdctl") => Ok(()),
            _ => Err(
                "etcd is not installed and cannot be installed here (apt-get install etcd-server etcd-client as root)"
                    .into(),
            ),
        }
    });
    match ready {
        Ok(()) => true,
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => panic!("{test}: cannot run: {why}; CI expects it"),
        Err(why) => {
            eprintln!("SKIPPED {test}: {why}");
            false
        }
    }
}

/// A single-member etcd on 127.0.0.1 for one test: its data in a scratch directory (on
/// /dev/shm when there is one, so fsync is cheap), killed by PID and its directory removed on
/// drop.
#[derive(Debug)]
pub struct Etcd {
    child: std::process::Child,
    name: String,
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
}

impl Etcd {
    /// Starts etcd named after `name` (letters, digits and '-' kept) on a free client and peer
    /// port pair from a base derived from the name, and waits until `etcdctl endpoint health`
    /// passes. etcd cannot bind port 0, so a pair taken between the check and etcd's bind is
    /// retried with the next pair. Panics, with etcd's log, if it never becomes healthy.
    pub fn start(name: &str) -> Etcd {
        let name: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
        let parent = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        let dir = parent.join(format!("podswitch-etcd-{name}-{}", std::process::id()));
        // FNV-1a of the name: tests in one binary start from different bases.
        let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        let mut last_log = String::new();
        for attempt in 0..40u64 {
            let client_port = 21000 + ((hash + attempt * 2 + u64::from(std::process::id())) % 10000) as u16 * 2;
            let peer_port = client_port + 1;
            if !port_free(client_port) || !port_free(peer_port) {
                continue;
            }
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("etcd scratch dir");
            let child = Etcd::spawn(&name, &dir, client_port, peer_port);
            let mut etcd = Etcd { child, name: name.clone(), dir: dir.clone(), client_port, peer_port };
            if etcd.wait_healthy() {
                return etcd;
            }
            last_log = std::fs::read_to_string(dir.join("etcd.log")).unwrap_or_default();
            drop(etcd);
        }
        panic!("etcd {name} did not become healthy; last log:\n{last_log}");
    }

    fn spawn(name: &str, dir: &Path, client_port: u16, peer_port: u16) -> std::process::Child {
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("etcd.log")).expect("etcd log");
        Command::new("etcd")
            .args(["--name", name])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("{name}={peer}"), "--initial-cluster-state", "new"])
            .args(["--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn"])
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd")
    }

    /// Waits up to 20 s for `etcdctl endpoint health`; false if etcd exits or never passes.
    fn wait_healthy(&mut self) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return false; // exited: most likely a port taken meanwhile
            }
            if self.etcdctl(&["endpoint", "health"]).status.success() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        false
    }

    /// Kills etcd (SIGKILL: connections break as in a crash) and starts it again on the same
    /// ports and data, waiting until it is healthy. Its keys, revisions and leases survive.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Etcd::spawn(&self.name, &self.dir, self.client_port, self.peer_port);
        if !self.wait_healthy() {
            let log = std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default();
            panic!("etcd {} did not come back after a restart; log:\n{log}", self.name);
        }
    }

    /// The client URL, e.g. `http://127.0.0.1:21234`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The etcd process's PID (to pause it with SIGSTOP, as a partition would).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs `etcdctl ARGS` (API v3) against this etcd.
    pub fn etcdctl(&self, args: &[&str]) -> std::process::Output {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoint(), "--dial-timeout", "2s"])
            .args(args)
            .output()
            .expect("run etcdctl")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether nothing listens on 127.0.0.1:`port` (TCP) now.
fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Commands run with a time bound and their output in files (a container runtime's children
/// may hold a pipe open long after the command ends), for the end-to-end tests that drive
/// podman, podswitchctl and the namespace scripts.
pub mod bounded {
    use std::fs::File;
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// What a command did.
    #[derive(Debug)]
    pub struct Out {
        pub what: String,
        pub ok: bool,
        pub stdout: String,
        pub stderr: String,
        pub took: Duration,
    }

    impl Out {
        /// A command that did not run.
        pub fn failed(what: String, why: String) -> Out {
            Out { what, ok: false, stdout: String::new(), stderr: why, took: Duration::ZERO }
        }
    }

    impl std::fmt::Display for Out {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(
                f,
                "$ {}\n[{} in {:.1} s]\nstdout:\n{}\nstderr:\n{}",
                self.what,
                if self.ok { "ok" } else { "FAILED" },
                self.took.as_secs_f64(),
                self.stdout,
                self.stderr
            )
        }
    }

    /// Runs `cmd` (stdin from `stdin`, or none) with its output in `dir/cmd.out` and
    /// `dir/cmd.err`, killed after `limit`.
    pub fn run_bounded(mut cmd: Command, what: String, dir: &Path, limit: Duration, stdin: Option<File>) -> Out {
        let (o, e) = (dir.join("cmd.out"), dir.join("cmd.err"));
        let t0 = Instant::now();
        let spawned = File::create(&o).and_then(|fo| {
            let fe = File::create(&e)?;
            cmd.stdin(stdin.map_or_else(Stdio::null, Stdio::from)).stdout(fo).stderr(fe).spawn()
        });
        let mut child = match spawned {
            Ok(c) => c,
            Err(err) => return Out::failed(what, format!("cannot start: {err}")),
        };
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if t0.elapsed() < limit => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        let mut stderr = std::fs::read_to_string(&e).unwrap_or_default();
        if status.is_none() {
            stderr.push_str(&format!("\n(killed after {limit:?})"));
        }
        Out {
            what,
            ok: status.is_some_and(|s| s.success()),
            stdout: std::fs::read_to_string(&o).unwrap_or_default(),
            stderr,
            took: t0.elapsed(),
        }
    }
}
