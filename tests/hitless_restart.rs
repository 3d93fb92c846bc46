//! Issue 13: connections survive a restart of podswitchd, by SIGTERM and by `kill -9`.
//!
//! On `netns-scripts/cluster.sh` (two workers on AF_XDP where it works, AF_PACKET otherwise),
//! while these run through ClusterIPs from the client pod:
//! - iperf3 TCP through the ClientIP-affinity Service (its control connection idles, its data
//!   connection is busy);
//! - a kept-alive HTTP connection to nginx through another Service, idle between a request
//!   before the restarts and one after them;
//! - a UDP flow to an echo Service, a datagram every 5 ms, every answer checked to come from
//!   the ClusterIP (a mistranslated answer would come from the pod's address);
//!
//! podswitchd is stopped with SIGTERM and started again, then killed with SIGKILL and started
//! again. Every connection must go on: iperf3 ends without error, the idle connection answers,
//! no UDP answer is mistranslated, no TCP connection in any pod was reset (the namespaces'
//! `EstabResets` counters), and the daemon's log says what it restored. The longest run of
//! unanswered datagrams around each restart is printed: the gap in forwarding.
//!
//! Root and the harness's tools are needed; skipped with the reason otherwise, a failure under
//! `CI=true`. Everything is deleted by `cluster.sh down`, also when the test fails.

use podswitch_tests::{podswitchd, root};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The UDP echo Service the probe sends to.
const ECHO_VIP: &str = "10.96.0.12";
const ECHO_PORT: u16 = 7000;
/// How long the traffic runs; the restarts happen at about 4 s and 9 s.
const RUN_S: u64 = 15;

const EXTRA: &str = r#"
[[services]]
name = "echo"
cluster_ips = ["10.96.0.12"]
ports = [{ name = "udp", port = 7000, protocol = "UDP" }]
endpoints = [{ pod = "web1" }, { pod = "web2" }, { pod = "web3" }]
"#;

/// A UDP echo server on a pod's address.
const ECHO: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(data, peer)
"#;

/// The client's probe: a kept-alive HTTP connection used at the start and at the end, and
/// numbered UDP datagrams every 5 ms; prints one JSON object.
const PROBE: &str = r#"
import json, socket, sys, time
vip, udp_port, http_vip, dur = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])

def get(s):
    s.sendall(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: keep-alive\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("connection closed")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0]
    while len(body) < length:
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("connection closed")
        body += chunk
    return body.decode().strip()

out = {"idle": None, "first": None}
t = socket.create_connection((http_vip, 80), timeout=5)
out["first"] = get(t)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.setblocking(False)
sent, got, wrong = {}, {}, 0

def drain():
    """Takes every answer waiting; returns how many came from another address."""
    bad = 0
    try:
        while True:
            data, peer = u.recvfrom(64)
            if peer != (vip, udp_port):
                bad += 1
            else:
                got[int.from_bytes(data[:8], "big")] = True
    except BlockingIOError:
        return bad

start = time.monotonic()
seq = 0
next_send = start
while True:
    now = time.monotonic()
    if now - start >= dur:
        break
    if now >= next_send:
        u.sendto(seq.to_bytes(8, "big"), (vip, udp_port))
        sent[seq] = now - start
        seq += 1
        next_send += 0.005
    wrong += drain()
    time.sleep(0.001)
time.sleep(0.3)
wrong += drain()
gaps, run = [], None
for i in range(seq):
    if i not in got:
        run = run or [sent[i], 0]
        run[1] += 1
    elif run:
        gaps.append(run)
        run = None
if run:
    gaps.append(run)
try:
    out["idle"] = get(t)
except OSError as e:
    out["idle"] = "error: %s" % e
out.update(sent=seq, received=len(got), mistranslated=wrong, gaps=[[round(s, 3), n * 5] for s, n in gaps])
print(json.dumps(out))
"#;

struct Cluster {
    prefix: String,
    rundir: PathBuf,
    children: Vec<Child>,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Cluster {
    fn script(&self, args: &[&str]) -> Output {
        Command::new(root().join("netns-scripts/cluster.sh"))
            .arg(args[0])
            .args(["-p", &self.prefix, "-d"])
            .arg(&self.rundir)
            .arg("-b")
            .arg(podswitchd())
            .args(&args[1..])
            .output()
            .expect("run cluster.sh")
    }

    fn ns(&self, pod: &str) -> String {
        format!("{}-{pod}", self.prefix)
    }

    fn spawn(&mut self, pod: &str, cmd: &[&str], out: Stdio) -> usize {
        let c = Command::new("ip")
            .args(["netns", "exec", &self.ns(pod)])
            .args(cmd)
            .stdout(out)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn in namespace");
        self.children.push(c);
        self.children.len() - 1
    }

    /// The namespace's TCP `EstabResets` counter (RFC 4022 tcpEstabResets).
    fn estab_resets(&self, pod: &str) -> u64 {
        let o = Command::new("ip").args(["netns", "exec", &self.ns(pod), "cat", "/proc/net/snmp"]).output().unwrap();
        let s = text(&o.stdout);
        let tcp: Vec<&str> = s.lines().filter(|l| l.starts_with("Tcp:")).collect();
        let (names, values) = (tcp[0].split_whitespace(), tcp[1].split_whitespace());
        names.zip(values).find(|(n, _)| *n == "EstabResets").and_then(|(_, v)| v.parse().ok()).expect("EstabResets")
    }

    fn pid(&self) -> i32 {
        std::fs::read_to_string(self.rundir.join("podswitchd.pid")).unwrap().trim().parse().unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.rundir.join("podswitchd.err")).unwrap_or_default()
    }

    fn wait_child(&mut self, i: usize, limit: Duration) -> Output {
        let deadline = Instant::now() + limit;
        while self.children[i].try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.children[i].kill();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut c = self.children.remove(i);
        let status = c.wait().unwrap();
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        use std::io::Read;
        if let Some(mut o) = c.stdout.take() {
            let _ = o.read_to_end(&mut stdout);
        }
        if let Some(mut e) = c.stderr.take() {
            let _ = e.read_to_end(&mut stderr);
        }
        Output { status, stdout, stderr }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let o = self.script(&["down"]);
        if !o.status.success() {
            eprintln!("cluster down failed: {}", text(&o.stderr));
        }
    }
}

fn ready() -> bool {
    podswitch_tests::ready_with_tools(
        module_path!(),
        &["ip:iproute2", "ethtool:ethtool", "nginx:nginx-light", "curl:curl", "iperf3:iperf3", "python3:python3"],
        "root, network namespaces, nginx, iperf3 and python3",
    )
}

/// The flows a log line `restored N flow(s) ...` names, for every such line.
fn restored_counts(log: &str) -> Vec<usize> {
    log.lines()
        .filter_map(|l| {
            let (n, tail) = l.split("restored ").nth(1)?.split_once(' ')?;
            tail.starts_with("flow(s)").then(|| n.parse().ok())?
        })
        .collect()
}

#[test]
fn connections_survive_sigterm_and_kill_9_restarts() {
    if !ready() {
        return;
    }
    let prefix = format!("pswh{}", std::process::id());
    let rundir = std::env::temp_dir().join(format!("{prefix}-run"));
    std::fs::create_dir_all(&rundir).expect("run dir");
    std::fs::write(rundir.join("extra.toml"), EXTRA).expect("extra.toml");
    std::fs::write(rundir.join("echo.py"), ECHO).expect("echo.py");
    std::fs::write(rundir.join("probe.py"), PROBE).expect("probe.py");
    let mut c = Cluster { prefix, rundir: rundir.clone(), children: Vec::new() };
    let o = c.script(&["up", "-m", "auto", "-q", "2", "-w", "2"]);
    assert!(o.status.success(), "cluster up failed: {}{}", text(&o.stdout), text(&o.stderr));
    let echo = rundir.join("echo.py");
    for (pod, ip) in [("web1", "10.244.1.11"), ("web2", "10.244.1.12"), ("web3", "10.244.1.13")] {
        c.spawn(pod, &["python3", echo.to_str().unwrap(), ip, &ECHO_PORT.to_string()], Stdio::null());
    }
    std::thread::sleep(Duration::from_millis(500));
    let pods = ["client", "web1", "web2", "web3"];
    let resets_before: Vec<u64> = pods.iter().map(|p| c.estab_resets(p)).collect();

    let probe = rundir.join("probe.py");
    let run = RUN_S.to_string();
    let p = c.spawn(
        "client",
        &["python3", probe.to_str().unwrap(), ECHO_VIP, &ECHO_PORT.to_string(), "10.96.0.10", &run],
        Stdio::piped(),
    );
    let i = c.spawn("client", &["iperf3", "-c", "10.96.0.11", "-t", &run, "-J"], Stdio::piped());
    let started = Instant::now();

    std::thread::sleep(Duration::from_secs(4));
    let t = Instant::now();
    let o = c.script(&["restart"]);
    assert!(o.status.success(), "restart: {}{}", text(&o.stdout), text(&o.stderr));
    let term_restart = t.elapsed();

    std::thread::sleep(Duration::from_secs(4));
    let t = Instant::now();
    let pid = c.pid();
    assert!(Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap().success());
    let gone = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < gone, "podswitchd {pid} still there 10 s after SIGKILL");
        std::thread::sleep(Duration::from_millis(5));
    }
    let o = c.script(&["restart"]);
    assert!(o.status.success(), "restart after kill -9: {}{}", text(&o.stdout), text(&o.stderr));
    let kill_restart = t.elapsed();

    // Read before iperf3 ends: iperf3 itself resets its data connection when it is done.
    let settle = Duration::from_secs(RUN_S - 2).checked_sub(started.elapsed());
    let settle = settle
        .unwrap_or_else(|| panic!("the restarts took {:?}: no time left to read the counters", started.elapsed()));
    std::thread::sleep(settle);
    let resets_after: Vec<u64> = pods.iter().map(|p| c.estab_resets(p)).collect();
    // i was spawned after p: wait for iperf3 first (its index is the later one).
    let iperf = c.wait_child(i, Duration::from_secs(RUN_S + 20));
    let probe = c.wait_child(p, Duration::from_secs(RUN_S + 20));
    let log = c.log();
    eprintln!("restarts: SIGTERM + start {term_restart:?}, kill -9 + start {kill_restart:?} (script time)");
    eprintln!("podswitchd log:\n{log}");

    let ip: serde_json::Value = serde_json::from_slice(&iperf.stdout)
        .unwrap_or_else(|e| panic!("iperf3 output ({e}): {}{}", text(&iperf.stdout), text(&iperf.stderr)));
    assert!(ip.get("error").is_none(), "iperf3 failed across the restarts: {}", ip["error"]);
    assert!(iperf.status.success(), "iperf3 exit: {}", text(&iperf.stderr));
    let end = &ip["end"]["sum_received"];
    eprintln!(
        "iperf3 TCP across both restarts: {:.0} Mbit/s, {} retransmissions",
        end["bits_per_second"].as_f64().unwrap_or(0.0) / 1e6,
        ip["end"]["sum_sent"]["retransmits"]
    );
    // The data connection kept going after the second restart.
    let intervals = ip["intervals"].as_array().expect("intervals");
    let last = intervals.last().expect("an interval");
    assert!(last["sum"]["bytes"].as_u64().unwrap_or(0) > 0, "iperf3 carried nothing in its last second");

    let pr: serde_json::Value = serde_json::from_slice(&probe.stdout)
        .unwrap_or_else(|e| panic!("probe output ({e}): {}{}", text(&probe.stdout), text(&probe.stderr)));
    eprintln!("probe: {pr}");
    assert_eq!(pr["mistranslated"], 0, "UDP answers not from the ClusterIP");
    let first = pr["first"].as_str().unwrap_or_default().to_string();
    assert!(first.starts_with("web"), "first request: {first}");
    assert_eq!(pr["idle"].as_str(), Some(first.as_str()), "the idle connection after both restarts");
    let (sent, received) = (pr["sent"].as_u64().unwrap(), pr["received"].as_u64().unwrap());
    assert!(received > sent / 2, "UDP: {received} of {sent} answered");
    for g in pr["gaps"].as_array().unwrap() {
        assert!(g[1].as_u64().unwrap() < 3_000, "a forwarding gap of {} ms at {} s", g[1], g[0]);
    }
    // The flows after the last restart were answered.
    let gaps = pr["gaps"].as_array().unwrap();
    let tail = (RUN_S as f64) - 1.0;
    assert!(gaps.iter().all(|g| g[0].as_f64().unwrap() < tail), "UDP still unanswered at the end: {gaps:?}");
    assert_eq!(resets_before, resets_after, "TCP connections reset in {pods:?}");
    let counts = restored_counts(&log);
    assert_eq!(counts.len(), 2, "one restore per restart: {counts:?}");
    assert!(counts.iter().all(|&n| n >= 4), "iperf3's two, the idle HTTP and the UDP flow each time: {counts:?}");
    assert!(started.elapsed() < Duration::from_secs(RUN_S + 30));
}
