//! Several podswitchd form one cluster over a real etcd: `netns-scripts/multinode.sh` brings up
//! three podswitch nodes (AF_XDP, falling back as the single-node harness does), a plain-Linux
//! node whose pod sits behind the kernel's own VXLAN device, and an outside client, each in
//! its own network namespace, with etcd on a control network of their own. Containers are
//! started by podman through podswitch-cni on every podswitch node; the test applies the
//! seed's Services and NetworkPolicy (configs/k8s/seed/) and its own through one node's socket
//! and checks, with ping, busybox wget and nc, and curl:
//!
//! - pod to pod across nodes, a ClusterIP whose endpoints are on the other nodes;
//! - the NodePort through every node from outside (source-NATed to the entry node), the
//!   LoadBalancer address from outside (on the underlay's subnet: found by ARP, answered by
//!   the one node that announces it, and still reached after that node may have left),
//!   `externalTrafficPolicy: Local` keeping the client's address (the server's CGI echoes it,
//!   its address announced by the node with the endpoint) and refusing through a node without
//!   an endpoint;
//! - a NetworkPolicy across nodes (the seed's denies, one of ours then allows);
//! - the kernel VXLAN node's pod exchanging ping, TCP and UDP with podswitch pods both ways;
//! - etcd paused (SIGSTOP) for 30 s under traffic: pings across nodes, ten a second, lose
//!   nothing while it is away, no node drops a peer's routes, applies are refused with a
//!   message naming etcd, and after it resumes applies work and reach every node;
//! - a node killed (SIGKILL): within the lease TTL (3 s) and some slack its routes leave the
//!   other nodes' tables, its pods' endpoints are not ready any more, and the rest keeps
//!   working.
//!
//! Needs root, etcd, podman, runc, a static busybox, the CNI loopback plugin, jq and curl
//! (test-all.sh installs them); skipped with the reason printed otherwise, except under
//! CI=true, where it fails. Everything is removed by `multinode.sh down` (namespaces,
//! processes and podman state by the name or PID it recorded), also when the test fails.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Bound on any one command.
const CMD_LIMIT: Duration = Duration::from_secs(60);
/// The nodes' lease TTL: a killed node leaves the others' tables this long after its last
/// keep-alive.
const TTL_S: u64 = 3;
const NODE_IPS: [&str; 3] = ["192.168.100.11", "192.168.100.12", "192.168.100.13"];
const OUT_IP: &str = "192.168.100.50";
const K1_POD_IP: &str = "10.245.9.2";
/// How long etcd is paused under traffic (issue 13: 30 s).
const ETCD_PAUSE_S: u64 = 30;
/// The pings that run through the pause: one every 100 ms for 50 s.
const PING_INTERVAL_MS: u64 = 100;
const PINGS: u64 = 500;
/// Pings that may be lost in the 3 s after etcd resumes (none while it is away): etcd has
/// not seen a keep-alive for longer than the TTL, so it expires every node's lease at once
/// as it resumes, every node drops its peers (`tunnel_unknown_peer`) until they register
/// again, a fraction of a second later (issue 13 fault suite; measured 1 ping of 10 a second).
const LOST_AFTER_RESUME_MAX: u64 = 5;

/// iputils ping from the host, run in a container's network namespace (nsenter) under
/// `timeout`, as a process group of its own killed by its id when dropped.
struct Pinger {
    child: Child,
    out: PathBuf,
    done: bool,
}

impl Pinger {
    fn start(pid: &str, to: &str, count: u64, out: &Path) -> Pinger {
        use std::os::unix::process::CommandExt;
        let f = std::fs::File::create(out).expect("ping output");
        let limit = (count * PING_INTERVAL_MS / 1000 + 20).to_string();
        let interval = format!("{:.1}", PING_INTERVAL_MS as f64 / 1000.0);
        let child = Command::new("timeout")
            .args([
                "-s", "KILL", &limit, "nsenter", "-t", pid, "-n", "ping", "-n", "-D", "-O", "-i", &interval, "-W", "1",
            ])
            .args(["-c", &count.to_string(), to])
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("dup"))
            .stderr(f)
            .process_group(0)
            .spawn()
            .expect("ping");
        Pinger { child, out: out.to_path_buf(), done: false }
    }

    /// Waits for the pings to end: how many were sent, and the sequence numbers of those
    /// that got no reply with the time each was sent (seconds since the epoch: `-O` prints
    /// "no answer yet" as it sends the next one, `-D` the time).
    fn finish(&mut self) -> (u64, Vec<(u64, f64)>) {
        let _ = self.child.wait();
        self.done = true;
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let replied: std::collections::BTreeSet<u64> = text
            .lines()
            .filter(|l| l.contains("bytes from"))
            .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("icmp_seq=")))
            .filter_map(|n| n.parse().ok())
            .collect();
        let sent = text
            .lines()
            .find_map(|l| l.split_once(" packets transmitted"))
            .and_then(|(n, _)| n.trim().parse().ok())
            .unwrap_or(0);
        let noted: std::collections::BTreeMap<u64, f64> = text
            .lines()
            .filter(|l| l.contains("no answer yet"))
            .filter_map(|l| {
                let t = l.strip_prefix('[')?.split(']').next()?.parse::<f64>().ok()?;
                let q = l.split_whitespace().find_map(|w| w.strip_prefix("icmp_seq="))?.parse().ok()?;
                Some((q, t - PING_INTERVAL_MS as f64 / 1000.0))
            })
            .collect();
        let lost = (1..=sent).filter(|q| !replied.contains(q)).map(|q| (q, noted.get(&q).copied().unwrap_or(f64::NAN)));
        (sent, lost.collect())
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let pgid = self.child.id();
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pgid}")]).stderr(Stdio::null()).status();
        let _ = self.child.wait();
    }
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// Why the test cannot run here, if it cannot (root and etcd are checked by the helpers).
fn missing_prerequisite() -> Option<String> {
    for t in ["podman", "runc", "nsenter", "ip", "jq", "curl", "ethtool"] {
        if !on_path(t) {
            return Some(format!("{t} is not installed (test-all.sh installs it)"));
        }
    }
    if !Path::new("/usr/lib/cni/loopback").exists() {
        return Some("/usr/lib/cni/loopback is missing (apt-get install containernetworking-plugins)".into());
    }
    let ldd = Command::new("ldd").arg("/bin/busybox").output().ok();
    let text = ldd.map(|o| String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr));
    if !text.is_some_and(|t| t.contains("not a dynamic executable") || t.contains("statically linked")) {
        return Some("no static /bin/busybox (apt-get install busybox-static)".into());
    }
    None
}

use podswitch_tests::bounded::{run_bounded, Out};

/// A process of the test's own (a listener in a namespace), killed by PID on drop.
struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The cluster `multinode.sh up` made; `multinode.sh down` on drop, however the test ends.
struct Cluster {
    script: PathBuf,
    prefix: String,
    dir: PathBuf,
    /// Scratch for command output and manifests (not the script's run directory).
    scratch: PathBuf,
    t0: Instant,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut c = Command::new(&self.script);
        c.arg("down").arg("-p").arg(&self.prefix).arg("-d").arg(&self.dir);
        let out = run_bounded(c, "multinode.sh down".into(), &self.scratch, Duration::from_secs(120), None);
        if !out.ok {
            eprintln!("cleanup failed:\n{out}");
        }
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

impl Cluster {
    fn step(&self, what: &str) {
        eprintln!("[{:6.1} s] {what}", self.t0.elapsed().as_secs_f64());
    }

    /// `multinode.sh CMD -p PREFIX -d DIR ARGS...`.
    fn sh(&self, cmd: &str, args: &[&str]) -> Out {
        let mut c = Command::new(&self.script);
        c.arg(cmd).arg("-p").arg(&self.prefix).arg("-d").arg(&self.dir).args(args);
        run_bounded(c, format!("multinode.sh {cmd} {}", args.join(" ")), &self.scratch, CMD_LIMIT, None)
    }

    /// The last lines of every node's daemon log.
    fn logs(&self) -> String {
        let mut s = String::new();
        for n in ["n1", "n2", "n3"] {
            let log = std::fs::read_to_string(self.dir.join(n).join("podswitchd.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            s.push_str(&format!("--- {n} podswitchd log (last lines) ---\n"));
            s.push_str(&lines[lines.len().saturating_sub(25)..].join("\n"));
            s.push('\n');
        }
        s
    }

    fn fail(&self, what: &str, out: &dyn std::fmt::Display) -> ! {
        panic!("{what}\n{out}\n{}", self.logs())
    }

    fn must(&self, out: Out) -> Out {
        if !out.ok {
            self.fail("command failed", &out);
        }
        out
    }

    fn ctl(&self, node: &str, args: &[&str]) -> Out {
        let mut a = vec![node];
        a.extend_from_slice(args);
        self.sh("ctl", &a)
    }

    /// `podswitchctl apply` of `yaml` through `node`'s socket.
    fn apply(&self, node: &str, name: &str, yaml: &str) -> Out {
        let f = self.scratch.join(format!("{name}.yaml"));
        std::fs::write(&f, yaml).expect("manifest");
        self.ctl(node, &["apply", "-f", &f.to_string_lossy()])
    }

    /// A shell script in container `name` of `node`.
    fn cexec(&self, node: &str, name: &str, script: &str) -> Out {
        self.sh("pm", &[node, "exec", name, "sh", "-c", script])
    }

    /// A command in namespace PREFIX-`ns` (k1, k1p, out, ...).
    fn nsexec(&self, ns: &str, args: &[&str]) -> Out {
        let mut a = vec![ns];
        a.extend_from_slice(args);
        self.sh("exec", &a)
    }

    /// curl from the outside client: the body, or `None` when it fails.
    fn curl_out(&self, url: &str, max_s: u32) -> (Option<String>, Out) {
        let out = self.nsexec("out", &["curl", "-sS", "--max-time", &max_s.to_string(), url]);
        (out.ok.then(|| out.stdout.trim().to_string()), out)
    }

    /// `tries` fetches of `url` from container `from` on `node`, each bounded by `wait`
    /// seconds: the bodies, or `FAILED`. (busybox's own `wget -T` crashes; `timeout` bounds it.)
    fn fetch(&self, node: &str, from: &str, url: &str, tries: u32, wait: u32) -> (Vec<String>, Out) {
        let script =
            format!("for i in $(seq {tries}); do timeout {wait} wget -q -O - {url} 2>/dev/null || echo FAILED; done");
        let out = self.cexec(node, from, &script);
        (out.stdout.lines().map(str::to_string).collect(), out)
    }

    /// Starts container `name` on `node`, running `script`, and returns its pod address.
    fn run(&self, node: &str, name: &str, script: &str) -> String {
        self.must(self.sh("run", &[node, name, script]));
        let out = self.must(self.cexec(node, name, "ip -4 -o addr show dev eth0"));
        let addr = out.stdout.split_whitespace().skip_while(|w| *w != "inet").nth(1).unwrap_or("");
        match addr.split_once('/') {
            Some((ip, _)) if ip.starts_with("10.244.") => ip.to_string(),
            _ => self.fail(&format!("{name} on {node}: eth0 has no address of the cluster CIDR"), &out),
        }
    }

    /// The Service `name` as `node` lists it (JSON).
    fn service(&self, node: &str, name: &str) -> Value {
        let out = self.must(self.ctl(node, &["get", "services", "-o", "model"]));
        let v: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| self.fail(&format!("JSON: {e}"), &out));
        v["items"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["name"] == name))
            .map(|i| i["spec"].clone())
            .unwrap_or_else(|| self.fail(&format!("no Service {name} on {node}"), &out))
    }

    /// The node whose MAC the outside client has for `ip` (who answered its ARP, or sent the
    /// last gratuitous ARP).
    fn announcer(&self, ip: &str) -> String {
        let out = self.nsexec("out", &["ip", "neigh", "show", ip]);
        let mac = out.stdout.split_whitespace().skip_while(|w| *w != "lladdr").nth(1).unwrap_or("").to_string();
        match mac.as_str() {
            "02:00:00:64:00:11" => "n1".into(),
            "02:00:00:64:00:12" => "n2".into(),
            "02:00:00:64:00:13" => "n3".into(),
            m => format!("unknown ({m:?})"),
        }
    }

    /// `node`'s drop counters by reason (`podswitchctl stats -o json`), `{}` if it cannot say.
    fn drops(&self, node: &str) -> Value {
        let out = self.ctl(node, &["stats", "-o", "json"]);
        serde_json::from_str::<Value>(&out.stdout).map(|v| v["drops"].clone()).unwrap_or(Value::Null)
    }

    /// The number of routes in `node`'s tables (`podswitchctl stats`).
    fn routes(&self, node: &str) -> Option<u64> {
        let out = self.ctl(node, &["stats"]);
        out.stdout.split_whitespace().find_map(|w| w.strip_prefix("routes=")).and_then(|n| n.parse().ok())
    }

    /// Waits up to `limit` for `check`, polling every 200 ms; the time it took.
    fn wait_for(&self, what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Duration {
        let t = Instant::now();
        while !check() {
            if t.elapsed() > limit {
                self.fail(&format!("{what}: not within {limit:?}"), &"");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        t.elapsed()
    }
}

fn pod(name: &str, labels: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{{labels}}}}}\nspec: {{containers: [{{name: c, image: x}}]}}\n")
}

/// A busybox web server on `ports` serving its name (and /cgi-bin/ip: the client address).
fn web(name: &str, ports: &[u16]) -> String {
    let mut s = format!("echo {name} > /www/index.html");
    for (i, p) in ports.iter().enumerate() {
        if i + 1 == ports.len() {
            s.push_str(&format!(" && exec httpd -f -p {p} -h /www"));
        } else {
            s.push_str(&format!(" && httpd -p {p} -h /www"));
        }
    }
    s
}

const SLEEPER: &str = "exec sleep 3600";

const ECHO_LOCAL: &str = "apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: echo}
  ports: [{name: http, protocol: TCP, port: 80, targetPort: 80}]
";

const DB_FROM_CLIENT: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-client}
spec:
  podSelector: {matchLabels: {role: db}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector: {matchLabels: {app: client}}
    ports: [{protocol: TCP, port: 6379}]
";

const DURING_PAUSE: &str = "apiVersion: v1
kind: Service
metadata: {name: after-pause}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 80}]
";

/// Datagrams and loss (percent) of an `iperf3 -u -J` run.
fn udp_result(json: &str) -> (u64, f64) {
    let v: Value = serde_json::from_str(json).unwrap_or(Value::Null);
    let sum = &v["end"]["sum"];
    (sum["packets"].as_u64().unwrap_or(0), sum["lost_percent"].as_f64().unwrap_or(100.0))
}

fn seed(file: &str) -> String {
    std::fs::read_to_string(podswitch_tests::root().join("configs/k8s/seed").join(file)).expect("seed manifest")
}

#[test]
fn cluster_of_three_podswitch_nodes_and_a_kernel_node() {
    const TEST: &str = "multinode_e2e";
    if !podswitch_tests::root_or_skip(TEST) || !podswitch_tests::etcd_or_skip(TEST) {
        return;
    }
    if let Some(why) = missing_prerequisite() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{TEST}: cannot run: {why}; CI expects it to run");
        }
        eprintln!("SKIPPED {TEST}: {why}");
        return;
    }
    let podswitchd = podswitch_tests::podswitchd();
    podswitch_tests::build_bin("control", "podswitchctl");
    podswitch_tests::build_bin("podswitch-cni", "podswitch-cni");
    let bindir = podswitchd.parent().expect("bin dir").to_path_buf();
    let tag = std::process::id();
    let scratch = std::env::temp_dir().join(format!("psw-mn-test-{tag}"));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).expect("scratch");
    let c = Cluster {
        script: podswitch_tests::root().join("netns-scripts/multinode.sh"),
        prefix: format!("mn{}", tag % 100_000),
        dir: std::env::temp_dir().join(format!("psw-mn-{tag}")),
        scratch,
        t0: Instant::now(),
    };

    // 1. The cluster.
    let up = c.sh("up", &["-b", &bindir.to_string_lossy(), "-t", &TTL_S.to_string()]);
    let up = c.must(up);
    c.step(&format!("cluster up in {:.1} s:\n{}", up.took.as_secs_f64(), up.stdout.trim()));
    let nodes = c.must(c.sh("etcdctl", &["get", "--prefix", "/podswitch/nodes/", "--keys-only"]));
    if nodes.stdout.lines().filter(|l| !l.is_empty()).count() != 3 {
        c.fail("three nodes registered in etcd", &nodes);
    }

    // 2. Pods: the objects (labels) through n1's socket, then the containers by podman.
    let pods = [
        pod("client-n1", "app: client"),
        pod("front-n1", "role: frontend"),
        pod("web-n2", "app: web, app.kubernetes.io/name: MyApp"),
        pod("echo-n2", "app: echo"),
        pod("web-n3", "app: web, app.kubernetes.io/name: MyApp"),
        pod("db-n3", "role: db"),
    ]
    .join("---\n");
    c.must(c.apply("n1", "pods", &pods));
    let client = c.run("n1", "client-n1", SLEEPER);
    c.run("n1", "front-n1", SLEEPER);
    let web2 = c.run("n2", "web-n2", &web("web-n2", &[9376, 80]));
    c.run("n2", "echo-n2", &web("echo-n2", &[80]));
    let web3 = c.run("n3", "web-n3", &web("web-n3", &[9376, 80]));
    let db = c.run("n3", "db-n3", &web("db-n3", &[6379]));
    for (n, w) in [("n2", "web-n2"), ("n2", "echo-n2"), ("n3", "web-n3")] {
        let script =
            "for i in $(seq 50); do timeout 1 wget -q -O - http://127.0.0.1:80/ && exit 0; sleep 0.1; done; exit 1";
        c.must(c.cexec(n, w, script));
    }
    c.step(&format!("6 containers on 3 nodes: client-n1 {client}, web-n2 {web2}, web-n3 {web3}, db-n3 {db}"));

    // 3. Pod to pod across nodes.
    for ip in [&web2, &web3, &db] {
        let out = c.cexec("n1", "client-n1", &format!("ping -c 2 -W 2 {ip}"));
        if !out.ok {
            c.fail(&format!("client-n1 cannot ping {ip} on another node"), &out);
        }
    }
    let out = c.cexec("n2", "web-n2", &format!("ping -c 1 -W 2 {web3} && ping -c 1 -W 2 {client}"));
    if !out.ok {
        c.fail("web-n2 cannot ping web-n3 and client-n1", &out);
    }
    c.step("pod to pod across nodes: ping n1->n2, n1->n3, n2->n3, n2->n1");

    // 4. The seed's ClusterIP Service; its endpoints are on n2 and n3, the client on n1.
    c.must(c.apply("n2", "clusterip", &seed("service-clusterip.yaml")));
    let cip = c.service("n1", "my-service")["cluster_ips"][0].as_str().unwrap_or_default().to_string();
    let (got, out) = c.fetch("n1", "client-n1", &format!("http://{cip}/"), 12, 3);
    let served = |who: &str| got.iter().filter(|l| *l == who).count();
    if got.len() != 12 || served("web-n2") + served("web-n3") != 12 || served("web-n2") == 0 || served("web-n3") == 0 {
        c.fail(&format!("12 fetches of ClusterIP {cip} from n1 must all succeed and reach web-n2 and web-n3"), &out);
    }
    c.step(&format!(
        "ClusterIP {cip} (applied on n2) from n1: web-n2 {}x, web-n3 {}x",
        served("web-n2"),
        served("web-n3")
    ));

    // 5. The seed's NodePort (30007 -> 80): through every node from outside; the Cluster
    //    policy source-NATs to the entry node.
    c.must(c.apply("n3", "nodeport", &seed("service-nodeport.yaml")));
    for node_ip in NODE_IPS {
        let (body, out) = c.curl_out(&format!("http://{node_ip}:30007/"), 3);
        if !body.as_deref().is_some_and(|b| b == "web-n2" || b == "web-n3") {
            c.fail(&format!("NodePort 30007 through {node_ip} from outside"), &out);
        }
        let (body, out) = c.curl_out(&format!("http://{node_ip}:30007/cgi-bin/ip"), 3);
        if !body.as_deref().is_some_and(|b| b.contains(node_ip)) {
            c.fail(&format!("NodePort through {node_ip}: the server sees the entry node's address"), &out);
        }
    }
    c.step("NodePort 30007 through n1, n2, n3 from outside; the server sees the entry node (SNAT)");

    // 6. The seed's LoadBalancer: it asks for another cluster IP than the Service of that name
    //    has, which the API server refuses (immutable): deleted first, as with kubectl. Its
    //    address comes from the pool (the manifest's status is replaced, with a warning), on
    //    the underlay's subnet: the outside client finds it by ARP, answered by the one node
    //    that announces it.
    let refused = c.apply("n1", "loadbalancer", &seed("service-loadbalancer.yaml"));
    if refused.ok || !refused.stderr.contains("field is immutable") {
        c.fail("the seed's LoadBalancer over the NodePort of the same name is refused (clusterIP immutable)", &refused);
    }
    c.must(c.ctl("n3", &["delete", "service", "my-service"]));
    let out = c.must(c.apply("n1", "loadbalancer", &seed("service-loadbalancer.yaml")));
    let svc = c.service("n2", "my-service");
    let lb = svc["load_balancer_ips"][0].as_str().unwrap_or_default().to_string();
    let last: u8 = lb.strip_prefix("192.168.100.").and_then(|o| o.parse().ok()).unwrap_or(0);
    if !(241..=254).contains(&last) {
        c.fail(&format!("LoadBalancer address {lb:?} from the pool 192.168.100.240/28"), &out);
    }
    let (got, out) = {
        let mut got = Vec::new();
        let mut last = None;
        for _ in 0..4 {
            let (b, o) = c.curl_out(&format!("http://{lb}/"), 3);
            got.push(b.unwrap_or_else(|| "FAILED".into()));
            last = Some(o);
        }
        (got, last.expect("an attempt"))
    };
    if !got.iter().all(|b| b == "web-n2" || b == "web-n3") {
        c.fail(&format!("LoadBalancer {lb} from outside: {got:?}"), &out);
    }
    // The manifest asks for clusterIP 10.0.171.239, and podswitch takes it (the API server
    // would refuse to change spec.clusterIP: it is immutable).
    let cip = svc["cluster_ips"][0].as_str().unwrap_or_default().to_string();
    let speaker = c.announcer(&lb);
    c.step(&format!("LoadBalancer {lb} from outside by ARP, announced by {speaker}: {got:?} (cluster IP {cip})"));

    // The seed's other documents: an ExternalName Service (no NAT, kept for DNS) reaches
    // every node.
    c.must(c.apply("n1", "externalname", &seed("service-externalname.yaml")));
    c.wait_for("the seed's ExternalName Service reaches n3", Duration::from_secs(10), || {
        let out = c.ctl("n3", &["get", "services", "-n", "prod"]);
        out.stdout.contains("my-service") && out.stdout.contains("ExternalName")
    });
    // The seed's Ingress is stored once for the cluster, like the other kinds (nginx serves it
    // through podswitch-ingress: tests/ingress_e2e.rs), and reaches every node.
    c.must(c.apply("n1", "ingress", &seed("ingress.yaml")));
    c.wait_for("the seed's Ingress reaches n3", Duration::from_secs(10), || {
        c.ctl("n3", &["get", "ingress"]).stdout.contains("example-ingress")
    });
    c.step("the seed's ExternalName Service (prod) and its Ingress reached n3");

    // 7. externalTrafficPolicy: Local keeps the client's address; a node without a local
    //    endpoint does not forward.
    c.must(c.apply("n2", "echo", ECHO_LOCAL));
    let echo = c.service("n1", "echo");
    let echo_lb = echo["load_balancer_ips"][0].as_str().unwrap_or_default().to_string();
    let echo_np = echo["ports"][0]["node_port"].as_u64().unwrap_or_default();
    for url in [format!("http://{echo_lb}/cgi-bin/ip"), format!("http://{}:{echo_np}/cgi-bin/ip", NODE_IPS[1])] {
        let (body, out) = c.curl_out(&url, 3);
        if !body.as_deref().is_some_and(|b| b.contains(OUT_IP)) {
            c.fail(&format!("{url} (externalTrafficPolicy Local) must see the client {OUT_IP}"), &out);
        }
    }
    let (body, out) = c.curl_out(&format!("http://{}:{echo_np}/", NODE_IPS[0]), 2);
    if body.is_some() {
        c.fail("NodePort of a Local service through n1, which has no endpoint, must not answer", &out);
    }
    // Only a node with a ready endpoint announces a Local Service's address.
    let echo_speaker = c.announcer(&echo_lb);
    if echo_speaker != "n2" {
        c.fail(
            &format!("the Local LoadBalancer {echo_lb} is announced by n2, its endpoint's node, not {echo_speaker}"),
            &out,
        );
    }
    c.step(&format!(
        "externalTrafficPolicy Local: LoadBalancer {echo_lb} (announced by n2) and NodePort {echo_np} on n2 see {OUT_IP}; n1 (no endpoint) does not answer"
    ));

    // 8. The seed's NetworkPolicy: role=db admits role=frontend on 6379, nobody else; ours
    //    then admits app=client. Pods on n1, db on n3.
    let db_url = format!("http://{db}:6379/");
    for who in ["client-n1", "front-n1"] {
        let (got, out) = c.fetch("n1", who, &db_url, 1, 3);
        if got != ["db-n3"] {
            c.fail(&format!("before any policy, {who} reaches db-n3"), &out);
        }
    }
    c.must(c.apply("n2", "netpol", &seed("networkpolicy.yaml")));
    let (got, out) = c.fetch("n1", "front-n1", &db_url, 2, 3);
    if got != ["db-n3", "db-n3"] {
        c.fail("with the seed's policy, front-n1 (role=frontend) reaches db-n3", &out);
    }
    let (got, out) = c.fetch("n1", "client-n1", &db_url, 1, 3);
    if got != ["FAILED"] {
        c.fail("with the seed's policy, client-n1 is denied", &out);
    }
    c.must(c.apply("n3", "db-from-client", DB_FROM_CLIENT));
    let (got, out) = c.fetch("n1", "client-n1", &db_url, 2, 3);
    if got != ["db-n3", "db-n3"] {
        c.fail("with db-from-client, client-n1 reaches db-n3", &out);
    }
    c.step("NetworkPolicy across nodes: seed policy admits front-n1, denies client-n1; db-from-client admits it");

    // 9. The kernel VXLAN node's pod and podswitch pods: ping, TCP and UDP both ways.
    let out = c.cexec("n1", "client-n1", &format!("ping -c 2 -W 2 {K1_POD_IP}"));
    if !out.ok {
        c.fail("client-n1 cannot ping the kernel node's pod", &out);
    }
    let (got, out) = c.fetch("n1", "client-n1", &format!("http://{K1_POD_IP}:8080/"), 2, 3);
    if got != ["k1p", "k1p"] {
        c.fail("client-n1 fetches from the kernel node's pod", &out);
    }
    for ip in [&web2, &web3] {
        let out = c.nsexec("k1p", &["ping", "-c", "2", "-W", "2", ip.as_str()]);
        if !out.ok {
            c.fail(&format!("the kernel node's pod cannot ping {ip}"), &out);
        }
    }
    let out = c.nsexec("k1p", &["curl", "-sS", "--max-time", "3", &format!("http://{web3}/")]);
    if out.stdout.trim() != "web-n3" {
        c.fail("the kernel node's pod fetches from web-n3", &out);
    }
    // UDP both ways: iperf3 (Debian's busybox nc has no UDP), 1 s at 10 Mbit/s each.
    for reverse in [false, true] {
        c.must(c.sh("pm", &["n3", "exec", "-d", "web-n3", "iperf3", "-s", "-1"]));
        let mut args = vec!["timeout", "15", "iperf3", "-c", web3.as_str(), "-u", "-b", "10M", "-t", "1", "-J"];
        if reverse {
            args.push("-R");
        }
        let mut last = None;
        c.wait_for("iperf3 UDP between the kernel node's pod and web-n3", Duration::from_secs(10), || {
            let out = c.nsexec("k1p", &args);
            let ok = out.ok;
            last = Some(out);
            ok
        });
        let out = last.expect("a run");
        let (packets, lost) = udp_result(&out.stdout);
        if packets < 500 || lost > 5.0 {
            c.fail(
                &format!(
                    "iperf3 UDP k1p {} web-n3: {packets} packets, {lost}% lost",
                    if reverse { "<-" } else { "->" }
                ),
                &out,
            );
        }
        c.step(&format!("UDP k1p {} web-n3: {packets} datagrams, {lost:.1}% lost", if reverse { "<-" } else { "->" }));
    }
    // client-n1 -> the kernel node's pod: an iperf3 server of the test's own, killed by PID.
    let server = Command::new("ip")
        .args(["netns", "exec", &format!("{}-k1p", c.prefix), "iperf3", "-s", "-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 server in the kernel node's pod");
    let server = Kid(server);
    let mut last = None;
    c.wait_for("iperf3 UDP from client-n1 to the kernel node's pod", Duration::from_secs(10), || {
        let out = c.cexec("n1", "client-n1", &format!("timeout 15 iperf3 -c {K1_POD_IP} -u -b 10M -t 1 -J"));
        let ok = out.ok;
        last = Some(out);
        ok
    });
    drop(server);
    let out = last.expect("a run");
    let (packets, lost) = udp_result(&out.stdout);
    if packets < 500 || lost > 5.0 {
        c.fail(&format!("iperf3 UDP client-n1 -> k1p: {packets} packets, {lost}% lost"), &out);
    }
    c.step(&format!("UDP client-n1 -> k1p: {packets} datagrams, {lost:.1}% lost"));
    // k1 is given without an underlay MAC: every podswitch node learned it from k1's ARP.
    for n in ["n1", "n2", "n3"] {
        let stats = c.must(c.ctl(n, &["stats"]));
        let learned = stats
            .stdout
            .split_whitespace()
            .find_map(|w| w.strip_prefix("neighbors_learned="))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        if learned == 0 {
            c.fail(&format!("{n} learned its underlay neighbours by ARP"), &stats);
        }
    }
    c.step("kernel VXLAN node: ping, TCP (wget, curl) and UDP (iperf3) both ways with pods on n1 and n3; its MAC learned by ARP on every node");

    // 10. etcd paused for 30 s under traffic: forwarding goes on (pings from client-n1 to a
    // pod on each other node, ten a second, lose nothing while etcd is away), no node drops a
    // peer's routes, applies are refused naming etcd; after it resumes applies work and reach
    // every node. SIGSTOP rather than a kill: a partition leaves connections hanging (no
    // reset), the harder case for the nodes' etcd clients, and etcd keeps its leases' clocks.
    let cpid = c.must(c.sh("pm", &["n1", "inspect", "-f", "{{.State.Pid}}", "client-n1"])).stdout.trim().to_string();
    let pingers: Vec<Pinger> = [&web2, &web3]
        .iter()
        .map(|to| Pinger::start(&cpid, to, PINGS, &c.scratch.join(format!("ping-{to}.txt"))))
        .collect();
    let pings_started_epoch =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    let drops0: Vec<Value> = ["n1", "n2", "n3"].iter().map(|n| c.drops(n)).collect();
    std::thread::sleep(Duration::from_secs(2));
    let routes0 = (c.routes("n1"), c.routes("n2"), c.routes("n3"));
    let epoch = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    c.must(c.sh("etcd", &["stop"]));
    let paused = Instant::now();
    let stopped_at = epoch();
    let refused = c.apply("n2", "after-pause", DURING_PAUSE);
    if refused.ok || !refused.stderr.contains("etcd") {
        let _ = c.sh("etcd", &["cont"]);
        c.fail("with etcd paused, an apply is refused with a message naming etcd", &refused);
    }
    let (got, out) = c.fetch("n1", "client-n1", &format!("http://{cip}/"), 4, 3);
    if got.iter().any(|l| l == "FAILED") {
        let _ = c.sh("etcd", &["cont"]);
        c.fail("with etcd paused, the ClusterIP still serves", &out);
    }
    let out = c.nsexec("k1p", &["ping", "-c", "1", "-W", "2", &web2]);
    if !out.ok {
        let _ = c.sh("etcd", &["cont"]);
        c.fail("with etcd paused, the kernel node's pod still reaches web-n2", &out);
    }
    // Every node keeps every peer while etcd is away: the peers' leases cannot be seen to
    // expire, and a partitioned node must not guess.
    let mut route_samples = 0;
    while paused.elapsed() < Duration::from_secs(ETCD_PAUSE_S) {
        let now = (c.routes("n1"), c.routes("n2"), c.routes("n3"));
        route_samples += 1;
        if now != routes0 {
            let _ = c.sh("etcd", &["cont"]);
            c.fail(
                &format!(
                    "with etcd paused {:.1} s, routes (n1, n2, n3) went from {routes0:?} to {now:?}",
                    paused.elapsed().as_secs_f64()
                ),
                &"",
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let resumed_at = epoch();
    c.must(c.sh("etcd", &["cont"]));
    let pause = paused.elapsed();
    let took = c.wait_for("an apply after etcd resumed", Duration::from_secs(20), || {
        c.apply("n2", "after-pause", DURING_PAUSE).ok
    });
    c.wait_for("the Service applied after the pause reaches n3", Duration::from_secs(10), || {
        c.ctl("n3", &["get", "services"]).stdout.contains("after-pause")
    });
    c.wait_for("three nodes registered again", Duration::from_secs(15), || {
        let keys = c.sh("etcdctl", &["get", "--prefix", "/podswitch/nodes/", "--keys-only"]);
        keys.stdout.lines().filter(|l| !l.is_empty()).count() == 3
    });
    let full = c.routes("n1");
    c.wait_for("n1 routes to every node again", Duration::from_secs(15), || {
        let out = c.cexec("n1", "client-n1", &format!("ping -c 1 -W 1 {web3} && ping -c 1 -W 1 {web2}"));
        out.ok
    });
    let mut lost_report = vec![];
    // What the nodes dropped meanwhile, by reason (for a loss, which node and why).
    let dropped: Vec<String> = ["n1", "n2", "n3"]
        .iter()
        .zip(&drops0)
        .map(|(n, d0)| {
            let d1 = c.drops(n);
            let delta: Vec<String> = d1
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| {
                    let d = v.as_u64()? - d0.get(k).and_then(Value::as_u64).unwrap_or(0);
                    (d > 0).then(|| format!("{k}={d}"))
                })
                .collect();
            format!("{n} dropped {}", if delta.is_empty() { "nothing".into() } else { delta.join(",") })
        })
        .collect();
    lost_report.push(dropped.join(", "));
    // What each node saw of the others' registrations (its log's node-set changes).
    for n in ["n1", "n2", "n3"] {
        let log = std::fs::read_to_string(c.dir.join(n).join("podswitchd.log")).unwrap_or_default();
        let seen: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("cluster nodes:") || l.contains("registered in the cluster"))
            .map(|l| l.rsplit_once("  ").map_or(l, |x| x.1).trim())
            .collect();
        lost_report.push(format!("{n} log: {:?}", &seen[seen.len().saturating_sub(4)..]));
    }
    for (mut p, to) in pingers.into_iter().zip([&web2, &web3]) {
        let (sent, lost) = p.finish();
        // Sent while etcd was away, or in the seconds after it came back (see below).
        let during: Vec<u64> = lost.iter().filter(|(_, t)| *t >= stopped_at && *t < resumed_at).map(|l| l.0).collect();
        let resume: Vec<u64> =
            lost.iter().filter(|(_, t)| *t >= resumed_at && *t < resumed_at + 3.0).map(|l| l.0).collect();
        lost_report.push(format!(
            "client-n1 -> {to}: {sent} pings, {} lost (seq {:?}; while etcd was away {}, in the 3 s after it resumed {})",
            lost.len(),
            lost.iter().map(|l| l.0).collect::<Vec<_>>(),
            during.len(),
            resume.len()
        ));
        if sent < PINGS * 9 / 10
            || !during.is_empty()
            || resume.len() as u64 > LOST_AFTER_RESUME_MAX
            || lost.len() > during.len() + resume.len()
        {
            c.fail(
                &format!(
                    "pings across nodes while etcd was paused ({:.1}-{:.1} s into the pings): {}",
                    stopped_at - pings_started_epoch,
                    resumed_at - pings_started_epoch,
                    lost_report.join("; ")
                ),
                &"",
            );
        }
    }
    c.step(&format!(
        "etcd paused {:.1} s: apply refused after {:.1} s ({}), routes (n1, n2, n3) {routes0:?} in all {route_samples} samples, forwarding went on: {}; after resume an apply took {:.1} s and reached n3",
        pause.as_secs_f64(),
        refused.took.as_secs_f64(),
        refused.stderr.trim(),
        lost_report.join("; "),
        took.as_secs_f64()
    ));

    // 11. n3 killed: its lease expires, its routes leave n1's and n2's tables, the rest works.
    let before = (c.routes("n1"), c.routes("n2"));
    // The seed's LoadBalancer address must move: its announcer is chosen by rendezvous
    // hashing of the address and the node names, and the pool's allocator is deterministic,
    // so n3 announces it in this layout; if that changes, kill the announcer instead.
    if speaker != "n3" {
        c.fail(&format!("LoadBalancer {lb} is announced by {speaker}, not n3: the takeover would not be tested"), &"");
    }
    let killed = Instant::now();
    c.must(c.sh("stop", &["n3", "KILL"]));
    let stopped = killed.elapsed();
    c.wait_for("n3's routes leave n1 and n2", Duration::from_secs(TTL_S + 6), || {
        let now = (c.routes("n1"), c.routes("n2"));
        matches!((before, now), ((Some(a), Some(b)), (Some(x), Some(y))) if x + 2 == a && y + 2 == b)
    });
    let gone = killed.elapsed();
    // Within the TTL and two seconds for etcd's expiry check, the watch and the rebuild.
    if gone > Duration::from_secs(TTL_S + 2) {
        c.fail(
            &format!("n3's routes left n1 and n2 {:.1} s after it was killed (TTL {TTL_S} s)", gone.as_secs_f64()),
            &"",
        );
    }
    // Where the outside client, trying all along, finds the LoadBalancer address now: the
    // node that took it over (gratuitous ARP, or the answer to the client's ARP).
    c.wait_for("the LoadBalancer address answered by another node", Duration::from_secs(TTL_S + 6), || {
        let (body, _) = c.curl_out(&format!("http://{lb}/"), 1);
        let now = c.announcer(&lb);
        body.is_some() && (now == "n1" || now == "n2")
    });
    let moved = killed.elapsed();
    let keys = c.must(c.sh("etcdctl", &["get", "--prefix", "/podswitch/nodes/", "--keys-only"]));
    if keys.stdout.contains("/n3") {
        c.fail("n3's registration is gone from etcd", &keys);
    }
    let trace = c.ctl("n1", &["trace", "tcp", &format!("{client}:40000"), "to", &format!("{web3}:80")]);
    if !trace.stdout.contains("no_route") {
        c.fail("n1 has no route to n3's pods any more", &trace);
    }
    let out = c.cexec("n1", "client-n1", &format!("ping -c 2 -W 2 {web2}"));
    if !out.ok {
        c.fail("after n3 left, client-n1 still reaches web-n2", &out);
    }
    let out = c.nsexec("k1p", &["curl", "-sS", "--max-time", "3", &format!("http://{web2}/")]);
    if out.stdout.trim() != "web-n2" {
        c.fail("after n3 left, the kernel node's pod still reaches web-n2", &out);
    }
    let (body, out) = c.curl_out(&format!("http://{echo_lb}/cgi-bin/ip"), 3);
    if !body.as_deref().is_some_and(|b| b.contains(OUT_IP)) {
        c.fail("after n3 left, the Local LoadBalancer on n2 still answers", &out);
    }
    // The ClusterIP's endpoints: web-n3's Pod is still in etcd, on a node that left, so it is
    // not ready (the node lifecycle controller's job): every connection reaches web-n2.
    let (got, out) = c.fetch("n1", "client-n1", &format!("http://{cip}/"), 6, 2);
    if !got.iter().all(|b| b == "web-n2") {
        c.fail(&format!("after n3 left, the ClusterIP sends only to web-n2: {got:?}"), &out);
    }
    // The seed's LoadBalancer from outside again: if n3 announced it, another node took it over
    // (gratuitous ARP); otherwise its announcer kept it.
    let (again, out) = c.curl_out(&format!("http://{lb}/"), 3);
    if again.as_deref() != Some("web-n2") {
        c.fail(&format!("after n3 left, LoadBalancer {lb} from outside reaches web-n2"), &out);
    }
    let now = c.announcer(&lb);
    if now == "n3" || (speaker != "n3" && now != speaker) {
        c.fail(&format!("LoadBalancer {lb} announced by {speaker}, then {now} after n3 left"), &out);
    }
    c.step(&format!(
        "n3 killed (the kill took {:.1} s): gone from n1 and n2 {:.1} s after it (lease TTL {TTL_S} s; routes {before:?} -> {:?} on n1, was {full:?} after the pause); n1->n2, k1->n2 and the Local LB still work; ClusterIP from n1: {got:?}; LoadBalancer {lb} announced by {speaker}, by {now} {:.1} s after the kill",
        stopped.as_secs_f64(),
        gone.as_secs_f64(),
        c.routes("n1"),
        moved.as_secs_f64(),
    ));
    c.step("done");
}
