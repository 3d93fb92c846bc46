//! Real traffic through podswitchd, on AF_XDP and on AF_PACKET, in network namespaces built by
//! `netns-scripts/cluster.sh`: curl to a ClusterIP spread over three nginx pods, a service
//! without endpoints refusing at once, ping and iperf3 (TCP and UDP, pod to pod and through
//! a ClusterIP), and a NetworkPolicy applied and removed with SIGHUP. Needs root and the
//! tools the script names; under CI=true their absence fails the test.

use podswitch_tests::{podswitchd, root};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

struct Cluster {
    prefix: String,
    rundir: PathBuf,
}

fn script() -> PathBuf {
    root().join("netns-scripts/cluster.sh")
}

/// One cluster at a time: two cores do not run two switches and their traffic well.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Cluster {
    fn up(name: &str, mode: &str, queues: u32, workers: u32) -> Option<Cluster> {
        let is_root = Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false);
        let tools = ["ip", "ethtool", "nginx", "curl", "iperf3", "ping"].iter().all(|t| {
            Command::new("sh").args(["-c", &format!("command -v {t}")]).output().is_ok_and(|o| o.status.success())
        });
        if !is_root || !tools {
            let why = if is_root { "missing tools (ethtool, nginx, curl, iperf3, ping)" } else { "not root" };
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{name}: cannot run: {why}; CI expects it to run");
            }
            eprintln!("SKIPPED {name}: {why}; this test needs root and real peers");
            return None;
        }
        let prefix = format!("pswt{}{}", std::process::id(), &mode[2..4]);
        let rundir = std::env::temp_dir().join(format!("{prefix}-run"));
        let c = Cluster { prefix, rundir };
        let (q, w) = (queues.to_string(), workers.to_string());
        let o = c.script(&["up", "-m", mode, "-q", &q, "-w", &w]);
        assert!(
            o.status.success(),
            "cluster up failed: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        Some(c)
    }

    fn script(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(script());
        cmd.arg(args[0])
            .args(["-p", &self.prefix, "-d"])
            .arg(&self.rundir)
            .arg("-b")
            .arg(podswitchd())
            .args(&args[1..]);
        cmd.output().expect("run cluster.sh")
    }

    /// The XDP programs attached in the node namespace (`ip -d link` lines naming ours).
    fn xdp_attached(&self) -> usize {
        let ns = format!("{}-node", self.prefix);
        let o = Command::new("ip").args(["netns", "exec", &ns, "ip", "-d", "link", "show"]).output();
        o.map(|o| String::from_utf8_lossy(&o.stdout).matches("podswitch_xsk").count()).unwrap_or(0)
    }

    fn exec(&self, pod: &str, cmd: &[&str]) -> Output {
        let ns = format!("{}-{pod}", self.prefix);
        Command::new("ip").args(["netns", "exec", &ns]).args(cmd).output().expect("ip netns exec")
    }

    fn curl(&self, url: &str, timeout_s: u32) -> (i32, String) {
        let t = timeout_s.to_string();
        let o = self.exec("client", &["curl", "-sS", "--connect-timeout", &t, "--max-time", &t, url]);
        (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).trim().to_string())
    }

    fn stats(&self) -> String {
        std::fs::read_to_string(self.rundir.join("stats.txt")).unwrap_or_default()
    }

    fn counter(&self, line_prefix: &str) -> u64 {
        self.stats().lines().find_map(|l| l.strip_prefix(line_prefix)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    }

    fn generation(&self) -> u64 {
        self.stats()
            .lines()
            .find_map(|l| l.strip_prefix("tables generation="))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    fn reload_with(&self, extra: &str) {
        let before = self.generation();
        std::fs::write(self.rundir.join("extra.toml"), extra).expect("write extra.toml");
        let o = self.script(&["reload"]);
        assert!(o.status.success(), "reload: {}", String::from_utf8_lossy(&o.stderr));
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.generation() <= before {
            assert!(Instant::now() < deadline, "no new generation after SIGHUP: {}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs podswitchctl against this cluster's daemon; returns (exit code, stdout, stderr).
    fn ctl(&self, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
        podswitch_tests::podswitchctl(&self.rundir.join("podswitch.sock"), args, stdin)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.rundir.join("podswitchd.err")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let o = self.script(&["down"]);
        if !o.status.success() {
            eprintln!("cluster down failed: {}", String::from_utf8_lossy(&o.stderr));
        }
    }
}

const DENY_CLIENT: &str = r#"
[[policies]]
name = "web-from-monitoring-only"
pod_selector = { match_labels = { app = "web" } }
policy_types = ["Ingress"]
[[policies.ingress]]
from = [{ pod_selector = { match_labels = { app = "monitoring" } } }]
"#;

/// Two workers, each serving one queue of every port: a flow's frames reach the worker that
/// owns it whichever queue they arrive on (the handoff counter shows it happened), and every
/// scenario works as with one worker.
#[test]
fn pods_talk_through_podswitch_on_af_xdp() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Two-queue veths: the pods' stacks pick a transmit queue per connection, so both queues
    // carry traffic, each with its own socket and worker.
    let Some(c) = Cluster::up("pods_talk_through_podswitch_on_af_xdp", "afxdp", 2, 2) else { return };
    assert!(
        c.log().contains("native XDP, copy mode, 2 queue(s)"),
        "veth: native XDP, copy mode after zero-copy is refused: {}",
        c.log()
    );
    assert!(c.log().contains("2 worker(s)"), "{}", c.log());
    assert!(
        c.stats().contains("io client afxdp native copy queues=2 workers=2"),
        "the mode is in the counters: {}",
        c.stats()
    );
    for cpu in ["0", "1"] {
        let o = c.exec("client", &["taskset", "-c", cpu, "curl", "-sS", "--max-time", "3", "http://10.96.0.10/"]);
        assert!(o.status.success(), "curl from CPU {cpu}: {}", String::from_utf8_lossy(&o.stderr));
    }
    assert!(c.log().contains("zero-copy refused"), "the fallback is logged: {}", c.log());
    // The four pods' ports and the resolver port (the daemon's DNS resolver, dns-sw0).
    assert_eq!(c.xdp_attached(), 5, "one program per port");
    scenario(&c);
    assert!(c.counter("event handed_off=") > 0, "frames changed worker: {}", c.stats());
    // Connections to a service without affinity spread over both workers' conntracks, and
    // podswitchctl lists every worker's flows.
    for _ in 0..12 {
        c.curl("http://10.96.0.10/", 3);
    }
    podswitch_tests::build_bin("control", "podswitchctl");
    let (code, out, err) = c.ctl(&["conntrack", "list", "--addr", "10.96.0.10", "-o", "json"], None);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let workers: std::collections::BTreeSet<u64> =
        v["flows"].as_array().expect("flows").iter().filter_map(|f| f["worker"].as_u64()).collect();
    assert_eq!(workers.into_iter().collect::<Vec<_>>(), vec![0, 1], "{out}");
    // A trace says which worker owns a flow and why.
    let (code, out, err) = c.ctl(&["trace", "tcp", "10.244.1.10:40000", "to", "10.96.0.10:80", "--in", "client"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("of 2 owns the flow (to a frontend: by the client's address and port)"), "{out}");
    // Clean shutdown: programs detached, nothing left on the interfaces.
    let pid = std::fs::read_to_string(c.rundir.join("podswitchd.pid")).unwrap_or_default();
    let _ = Command::new("kill").args(["-TERM", pid.trim()]).status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.xdp_attached() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(c.xdp_attached(), 0, "XDP programs detached on SIGTERM");
}

/// Two workers on AF_PACKET: each port's sockets form a fanout group, and frames the kernel
/// gives to the wrong worker are handed to the flow's owner.
#[test]
fn pods_talk_through_podswitch_on_af_packet() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(c) = Cluster::up("pods_talk_through_podswitch_on_af_packet", "afpacket", 1, 2) else { return };
    assert!(c.log().contains("afpacket (TPACKET_V2 rings, fanout over 2 workers)"), "{}", c.log());
    scenario(&c);
    assert!(c.counter("event handed_off=") > 0, "frames changed worker: {}", c.stats());
}

/// podswitchctl programs the running daemon: a Service from `configs/k8s/` serves curl, its
/// flows are listed and flushed, a NetworkPolicy blocks and its deletion restores, a trace
/// names the deciding policy, and routes come and go.
#[test]
fn podswitchctl_drives_a_live_node() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(c) = Cluster::up("podswitchctl_drives_a_live_node", "afpacket", 1, 1) else { return };
    podswitch_tests::build_bin("control", "podswitchctl");
    let svc = root().join("configs/k8s/web-service.yaml");
    let deny = root().join("configs/k8s/web-deny.yaml");
    let (svc, deny) = (svc.to_str().expect("path"), deny.to_str().expect("path"));
    let (code, out, err) = c.ctl(&["apply", "-f", svc], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("service default/api-web created"), "{out}");
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let (code, body) = c.curl("http://10.96.0.30/", 3);
        assert_eq!(code, 0, "curl to the applied service: {}", c.log());
        seen.insert(body);
    }
    assert!(seen.len() >= 2, "spread over the selected pods: {seen:?}");
    let (code, out, _) = c.ctl(&["conntrack", "list", "--addr", "10.96.0.30"], None);
    assert_eq!(code, 0);
    assert!(out.contains("10.96.0.30:80") && out.contains("default/api-web:http"), "{out}");
    let (code, out, _) = c.ctl(&["conntrack", "flush", "--addr", "10.96.0.30"], None);
    assert_eq!(code, 0);
    assert!(!out.starts_with("0 "), "{out}");

    let (code, _, err) = c.ctl(&["apply", "-f", deny], None);
    assert_eq!(code, 0, "{err}");
    let denied_before = c.counter("drop policy_denied_ingress port=client count=");
    let (code, _) = c.curl("http://10.96.0.30/", 1);
    assert_ne!(code, 0, "the policy blocks the client");
    let (_, out, _) = c.ctl(&["trace", "tcp", "10.244.1.10:40000", "to", "10.96.0.30:80"], None);
    assert!(
        out.contains("policy_denied_ingress") && out.contains("REFUSED") && out.contains("default/web-from-monitoring"),
        "{out}"
    );
    std::thread::sleep(Duration::from_millis(700));
    let (_, stats, _) = c.ctl(&["stats"], None);
    assert!(stats.contains("policy_denied_ingress"), "{stats}");
    assert!(c.counter("drop policy_denied_ingress port=client count=") > denied_before, "{}", c.stats());
    let (code, _, err) = c.ctl(&["delete", "-f", "-"], Some(&std::fs::read_to_string(deny).expect("read")));
    assert_eq!(code, 0, "{err}");
    let (code, _) = c.curl("http://10.96.0.30/", 3);
    assert_eq!(code, 0, "access restored");

    let (code, _, err) = c.ctl(&["route", "add", "10.250.0.0/16", "via", "blackhole"], None);
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = c.ctl(&["route", "list"], None);
    assert!(out.contains("10.250.0.0/16") && out.contains("blackhole"), "{out}");
    let (_, out, _) = c.ctl(&["trace", "udp", "10.244.1.10:5000", "to", "10.250.1.1:53"], None);
    assert!(out.contains("route_blackhole"), "{out}");
    let (code, _, _) = c.ctl(&["route", "del", "10.250.0.0/16"], None);
    assert_eq!(code, 0);
    // A bad request is refused and the node keeps working.
    let (code, _, err) = c.ctl(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {clusterIP: 10.96.0.10, ports: [{port: 1}]}\n"),
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("already allocated"), "{err}");
    let (code, _) = c.curl("http://10.96.0.10/", 3);
    assert_eq!(code, 0);
    // SIGHUP keeps API objects: the file's objects are replaced, the applied service stays.
    c.reload_with("");
    let (code, _) = c.curl("http://10.96.0.30/", 3);
    assert_eq!(code, 0, "API objects survive a reload: {}", c.log());
}

fn scenario(c: &Cluster) {
    // curl to the ClusterIP reaches nginx in every backend, replies come from the ClusterIP
    // (the TCP handshake would not complete otherwise).
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..30 {
        let (code, body) = c.curl("http://10.96.0.10/", 3);
        assert_eq!(code, 0, "curl to ClusterIP failed: {body}\n{}\n{}", c.stats(), c.log());
        *seen.entry(body).or_insert(0) += 1;
    }
    assert_eq!(seen.keys().cloned().collect::<Vec<_>>(), vec!["web1", "web2", "web3"], "spread: {seen:?}");

    // A service without endpoints refuses at once.
    let t = Instant::now();
    let (code, _) = c.curl("http://10.96.0.20/", 5);
    assert_eq!(code, 7, "connection refused expected");
    assert!(t.elapsed() < Duration::from_secs(2), "refusal took {:?}", t.elapsed());

    // ping between pods.
    let o = c.exec("client", &["ping", "-c", "3", "-i", "0.2", "-W", "1", "10.244.1.11"]);
    assert!(o.status.success(), "ping: {}", String::from_utf8_lossy(&o.stdout));

    // iperf3 TCP and UDP, pod to pod and through a ClusterIP (ClientIP affinity keeps the
    // control and data connections on one server).
    for (target, udp) in [("10.244.1.12", false), ("10.244.1.12", true), ("10.96.0.11", false), ("10.96.0.11", true)] {
        let mut args = vec!["timeout", "20", "iperf3", "-c", target, "-t", "1", "-J"];
        if udp {
            args.extend(["-u", "-b", "100M"]);
        }
        let o = c.exec("client", &args);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "iperf3 {target} udp={udp}: {out}");
        assert!(out.contains("\"sum_received\"") || out.contains("\"sum\""), "iperf3 {target} udp={udp} report: {out}");
    }

    // A policy that admits only monitoring pods: the client's connections are dropped and
    // counted; removing it restores access.
    c.reload_with(DENY_CLIENT);
    let before = c.counter("drop policy_denied_ingress port=client count=");
    let (code, _) = c.curl("http://10.96.0.10/", 3);
    assert_eq!(code, 7, "the harness runs policy_denied = \"reject\": curl is refused at once (exit 7)");
    let after = c.counter("drop policy_denied_ingress port=client count=");
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut after = after;
    while after <= before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        after = c.counter("drop policy_denied_ingress port=client count=");
    }
    assert!(after > before, "denial counted under policy_denied_ingress: {}", c.stats());
    // The same counter over Prometheus, served on the node namespace's loopback.
    let ns = format!("{}-node", c.prefix);
    let o = Command::new("ip")
        .args(["netns", "exec", &ns, "curl", "-sS", "--max-time", "3", "http://127.0.0.1:9464/metrics"])
        .output()
        .unwrap();
    let m = String::from_utf8_lossy(&o.stdout);
    assert!(m.contains("podswitch_drops_total{port=\"client\",reason=\"policy_denied_ingress\"}"), "metrics: {m}");
    assert!(m.contains("podswitch_port_rx_packets_total{port=\"client\"}"), "metrics: {m}");
    // Both workers (the scenario runs two) report what they received.
    for w in ["0", "1"] {
        assert!(m.contains(&format!("podswitch_worker_rx_packets_total{{worker=\"{w}\"}}")), "metrics: {m}");
    }
    c.reload_with("");
    let (code, body) = c.curl("http://10.96.0.10/", 3);
    assert_eq!(code, 0, "access restored: {body}");

    // A rejected reload keeps the running tables.
    let g = c.generation();
    std::fs::write(c.rundir.join("extra.toml"), "[[services]]\nname = \"bad\"\ntype = \"Nope\"\n").unwrap();
    let _ = c.script(&["reload"]);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(c.generation(), g);
    assert!(c.log().contains("reload rejected"), "{}", c.log());
    let (code, _) = c.curl("http://10.96.0.10/", 3);
    assert_eq!(code, 0);
}
