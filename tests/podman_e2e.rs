//! podswitch-cni under a real container runtime: podman 4.3 with its CNI backend calls the
//! plugin, which asks a real podswitchd (AF_PACKET) for addresses and ports. Containers get
//! addresses and routes, reach each other and a ClusterIP Service whose endpoints they are, a
//! NetworkPolicy holds between them, `podman rm` detaches, and a daemon killed with SIGKILL
//! comes back with every attachment, pod and policy.
//!
//! Everything runs inside one network namespace this test creates (`psw-pm-<pid>`): the daemon
//! and podman (entered with `nsenter --net`, see shared/RUNTIMES.md), the node's uplink (a veth
//! pair within it) and the containers' host ends. Podman's state is private (`--root`,
//! `--runroot`, `--tmpdir` under a temporary directory); what it still writes elsewhere
//! (/run/runc, /var/lib/containers/cache, /var/lib/cni/results, /run/netns/netns-*) is removed
//! by name at the end. Needs root, podman, runc, busybox-static and the reference loopback
//! plugin (test-all.sh installs them); skipped with the reason printed otherwise, except under
//! CI=true, where it fails.

use serde_json::Value;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CLUSTER_IP: &str = "10.96.0.50";
const POD_PREFIX: &str = "10.244.1.";
const GATEWAY: &str = "10.244.1.1";
/// Bound on any one podman or podswitchctl call.
const CMD_LIMIT: Duration = Duration::from_secs(30);
/// Links in the test image's /bin, all to busybox.
const APPLETS: &[&str] = &["sh", "ip", "ping", "wget", "httpd", "sleep", "cat", "mkdir", "timeout", "seq", "echo"];
/// Directories podman writes outside its private state, removed at the end when this test
/// made them.
const GLOBAL_DIRS: &[&str] = &["/run/runc", "/var/lib/containers", "/var/lib/cni"];

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// Why the test cannot run here, if it cannot.
fn missing_prerequisite() -> Option<String> {
    if !is_root() {
        return Some("needs root (network namespaces, podman)".into());
    }
    for t in ["podman", "runc", "nsenter", "ip"] {
        if !on_path(t) {
            return Some(format!("{t} is not installed (test-all.sh installs it)"));
        }
    }
    if !Path::new("/usr/lib/cni/loopback").exists() {
        return Some("/usr/lib/cni/loopback is missing (apt-get install containernetworking-plugins)".into());
    }
    if busybox().is_none() {
        return Some("no static busybox (apt-get install busybox-static)".into());
    }
    None
}

/// A statically linked busybox, to be the whole userland of the test image (the dynamic build
/// of Debian's `busybox` package would need a libc inside).
fn busybox() -> Option<PathBuf> {
    let p = PathBuf::from("/bin/busybox");
    let ldd = Command::new("ldd").arg(&p).output().ok()?;
    let text = String::from_utf8_lossy(&ldd.stdout) + String::from_utf8_lossy(&ldd.stderr);
    (p.exists() && (text.contains("not a dynamic executable") || text.contains("statically linked"))).then_some(p)
}

use podswitch_tests::bounded::{run_bounded, Out};

/// The test's node: its namespace, directory, daemon and containers, all removed on drop
/// (however the test ends), each by the name or id it was created with.
struct Node {
    ns: String,
    dir: PathBuf,
    daemon: Option<Child>,
    podswitchd: PathBuf,
    podswitchctl: PathBuf,
    /// Global directories that did not exist before this test.
    made: Vec<&'static str>,
    /// Ids of the containers started, and their network namespaces' names.
    containers: Vec<String>,
    sandboxes: Vec<String>,
    image: String,
}

impl Node {
    fn path(&self, f: &str) -> PathBuf {
        self.dir.join(f)
    }

    fn socket(&self) -> PathBuf {
        self.path("podswitch.sock")
    }

    /// The daemon's log, for failure messages.
    fn log(&self) -> String {
        let log = std::fs::read_to_string(self.path("podswitchd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// Fails the test with `what`, the command's output and the daemon's log.
    fn fail(&self, what: &str, out: &dyn std::fmt::Display) -> ! {
        panic!("{what}\n{out}\n--- podswitchd log (last lines) ---\n{}", self.log())
    }

    fn must(&self, out: Out) -> Out {
        if !out.ok {
            self.fail("command failed", &out);
        }
        out
    }

    fn ip(&self, args: &[&str]) -> Out {
        let mut c = Command::new("ip");
        c.args(args);
        run_bounded(c, format!("ip {}", args.join(" ")), &self.dir, CMD_LIMIT, None)
    }

    /// podman in the node's namespace with private state.
    fn pm(&self, args: &[&str]) -> Out {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.ns)).arg("podman");
        for (flag, d) in [("--root", "root"), ("--runroot", "runroot"), ("--tmpdir", "libpod")] {
            c.arg(flag).arg(self.path(d));
        }
        c.args(["--storage-driver", "overlay"]).args(args);
        c.env("CONTAINERS_CONF", self.path("containers.conf")).env("TMPDIR", self.path("tmp"));
        run_bounded(c, format!("podman {}", args.join(" ")), &self.dir, CMD_LIMIT, None)
    }

    /// A shell script in a running container.
    fn exec(&self, name: &str, script: &str) -> Out {
        self.pm(&["exec", name, "sh", "-c", script])
    }

    fn ctl(&self, args: &[&str], stdin: Option<&str>) -> Out {
        let mut c = Command::new(&self.podswitchctl);
        c.arg("--socket").arg(self.socket()).args(args);
        let what = format!("podswitchctl {}", args.join(" "));
        let input = match stdin {
            None => None,
            Some(text) => {
                let f = self.path("stdin.yaml");
                match std::fs::write(&f, text).and_then(|()| File::open(&f)) {
                    Ok(file) => Some(file),
                    Err(e) => return Out::failed(what, e.to_string()),
                }
            }
        };
        run_bounded(c, what, &self.dir, CMD_LIMIT, input)
    }

    fn apply(&self, yaml: &str) {
        let out = self.ctl(&["apply", "-f", "-"], Some(yaml));
        self.must(out);
    }

    /// Starts podswitchd in the node's namespace, appending to its log, and waits until its
    /// socket answers.
    fn start_daemon(&mut self) {
        let log = File::options().create(true).append(true).open(self.path("podswitchd.log")).expect("daemon log");
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns))
            .arg(&self.podswitchd)
            .arg("--config")
            .arg(self.path("node.toml"))
            .arg("--socket")
            .arg(self.socket())
            .arg("--state-dir")
            .arg(self.path("state"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start podswitchd");
        self.daemon = Some(child);
        let t0 = Instant::now();
        loop {
            let out = self.ctl(&["version"], None);
            if out.ok {
                return;
            }
            if let Some(Ok(Some(st))) = self.daemon.as_mut().map(|c| c.try_wait()) {
                self.fail(&format!("podswitchd exited at start: {st}"), &out);
            }
            if t0.elapsed() > Duration::from_secs(20) {
                self.fail("podswitchd did not answer within 20 s", &out);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL, by the PID this test started it with.
    fn kill_daemon(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// CPU time (user and system) the daemon uses over `period`.
    fn daemon_cpu(&self, period: Duration) -> Duration {
        let Some(pid) = self.daemon.as_ref().map(Child::id) else { return Duration::ZERO };
        let ticks = || -> u64 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Fields after the command name (which ends with ')'): utime and stime are the
            // 12th and 13th.
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            rest.split_whitespace().skip(11).take(2).filter_map(|f| f.parse::<u64>().ok()).sum()
        };
        // SAFETY: sysconf takes no pointers.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let before = ticks();
        std::thread::sleep(period);
        Duration::from_millis((ticks() - before) * 1000 / hz)
    }

    /// `podman run -d` of `script` as container `name` on the podswitch network.
    fn run_container(&mut self, name: &str, script: &str) {
        self.run_container_with(name, &[], script);
    }

    /// As [`Node::run_container`], with more `podman run` options.
    fn run_container_with(&mut self, name: &str, options: &[&str], script: &str) {
        let image = self.image.clone();
        let mut args = vec!["run", "-d", "--name", name, "--network", "podswitch"];
        args.extend_from_slice(options);
        args.extend_from_slice(&[&image, "sh", "-c", script]);
        let out = self.pm(&args);
        // Recorded before any check, so cleanup finds it whatever happens next.
        let id = out.stdout.trim().to_string();
        if !id.is_empty() {
            self.containers.push(id);
        }
        self.must(out);
        let sk = self.must(self.pm(&["inspect", "-f", "{{.NetworkSettings.SandboxKey}}", name]));
        if let Some(ns) = sk.stdout.trim().strip_prefix("/run/netns/") {
            self.sandboxes.push(ns.to_string());
        }
    }

    /// The IPv4 address of a container's eth0, checked to be from the pod CIDR, with the
    /// default route through the gateway.
    fn address_of(&self, name: &str) -> String {
        let out = self.must(self.exec(name, "ip -4 -o addr show dev eth0; ip -4 route"));
        let addr = out.stdout.split_whitespace().skip_while(|w| *w != "inet").nth(1).unwrap_or("");
        let Some(ip) = addr.strip_suffix("/24").filter(|a| a.starts_with(POD_PREFIX)) else {
            self.fail(&format!("{name}: eth0 has no address in {POD_PREFIX}0/24"), &out)
        };
        if !out.stdout.contains(&format!("default via {GATEWAY} dev eth0")) {
            self.fail(&format!("{name}: no default route via {GATEWAY}"), &out);
        }
        ip.to_string()
    }

    /// `tries` fetches of the ClusterIP from container `from`, one wget each, given up after
    /// `wait` seconds: the bodies (the serving container's name) or `FAILED`. (busybox 1.35's
    /// own `wget -T` crashes; `timeout` bounds it instead.)
    fn fetch(&self, from: &str, tries: u32, wait: u32) -> (Vec<String>, Out) {
        let script = format!(
            "for i in $(seq {tries}); do timeout {wait} wget -q -O - http://{CLUSTER_IP}/ 2>/dev/null || echo FAILED; done"
        );
        let out = self.exec(from, &script);
        (out.stdout.lines().map(str::to_string).collect(), out)
    }

    /// The attachments `port list` shows, as JSON.
    fn ports(&self) -> Vec<Value> {
        let out = self.must(self.ctl(&["port", "list", "-o", "json"], None));
        let v: Value =
            serde_json::from_str(&out.stdout).unwrap_or_else(|e| self.fail(&format!("port list: {e}"), &out));
        v["items"].as_array().cloned().unwrap_or_default().into_iter().map(|i| i["spec"].clone()).collect()
    }

    /// The host end of the attachment of pod `name`, if there is one.
    fn host_end_of(&self, name: &str) -> Option<String> {
        self.ports()
            .iter()
            .find(|p| p["cni"]["pod_name"] == name && p["cni"]["pod_namespace"] == "default")
            .and_then(|p| p["interface"].as_str().map(str::to_string))
    }

    fn links(&self) -> Out {
        self.must(self.ip(&["-n", &self.ns, "-br", "link"]))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Containers first, while the daemon still answers the plugin's DEL.
        if self.dir.join("containers.conf").exists() {
            let _ = self.pm(&["rm", "-a", "-f", "-t", "0"]);
            let _ = self.pm(&["rmi", "-a", "-f"]);
        }
        self.kill_daemon();
        for ns in self.sandboxes.iter().chain(std::iter::once(&self.ns)) {
            if Path::new("/run/netns").join(ns).exists() {
                let _ = Command::new("ip").args(["netns", "del", ns]).status();
            }
        }
        // What podman left outside its private state, for these containers only.
        for id in &self.containers {
            let _ = std::fs::remove_file(format!("/var/lib/cni/results/podswitch-{id}-eth0"));
            let _ = std::fs::remove_dir_all(format!("/run/runc/{id}"));
        }
        if self.made.contains(&"/var/lib/containers") {
            let _ = std::fs::remove_file("/var/lib/containers/cache/blob-info-cache-v1.boltdb");
        }
        // Only directories this test made, and only once empty.
        for d in &self.made {
            for sub in ["cache", "results"] {
                let _ = std::fs::remove_dir(Path::new(d).join(sub));
            }
            let _ = std::fs::remove_dir(d);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pod(name: &str, app: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: {app}}}}}\nspec: {{containers: [{{name: c, image: x}}]}}\n"
    )
}

const SERVICE: &str = "apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: ClusterIP
  clusterIP: 10.96.0.50
  selector: {app: web}
  ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080}]
";

/// The cluster DNS Service (podswitch answers on its cluster IP).
const KUBE_DNS: &str = "apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system}
spec:
  clusterIP: 10.96.0.53
  ports: [{name: dns, protocol: UDP, port: 53}, {name: dns-tcp, protocol: TCP, port: 53}]
";

const POLICY: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-client}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector: {matchLabels: {app: client}}
";

fn web_script(name: &str) -> String {
    format!("mkdir -p /www && echo {name} > /www/index.html && exec httpd -f -p 8080 -h /www")
}

const SLEEPER: &str = "exec sleep 3600";

/// Sets up the node: namespace with its uplink, config, CNI config, podman's private config
/// and the test image.
fn node() -> Node {
    let tag = std::process::id();
    let podswitchd = podswitch_tests::podswitchd();
    let podswitchctl = podswitch_tests::build_bin("control", "podswitchctl");
    let plugin = podswitch_tests::build_bin("podswitch-cni", "podswitch-cni");
    let dir = std::env::temp_dir().join(format!("psw-pm-{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    for d in ["bin", "conf", "root", "runroot", "libpod", "tmp", "state", "rootfs/bin"] {
        std::fs::create_dir_all(dir.join(d)).expect("scratch dir");
    }
    let made = GLOBAL_DIRS.iter().copied().filter(|d| !Path::new(d).exists()).collect();
    let n = Node {
        ns: format!("psw-pm-{tag}"),
        dir,
        daemon: None,
        podswitchd,
        podswitchctl,
        made,
        containers: Vec::new(),
        sandboxes: Vec::new(),
        image: format!("localhost/psw-pm-{tag}:1"),
    };
    let ns = n.ns.clone();
    n.must(n.ip(&["netns", "add", &ns]));
    n.must(n.ip(&["-n", &ns, "link", "set", "lo", "up"]));
    // The node's uplink: one end is the daemon's uplink port, the other leads nowhere.
    n.must(n.ip(&["-n", &ns, "link", "add", "up0", "type", "veth", "peer", "name", "up0-peer"]));
    n.must(n.ip(&["-n", &ns, "link", "set", "up0", "up"]));
    n.must(n.ip(&["-n", &ns, "link", "set", "up0-peer", "up"]));

    let config = "[node]
name = \"node-1\"
ipv4 = \"192.168.77.10\"
pod_cidrs = [\"10.244.1.0/24\"]
router_mac = \"02:00:00:00:00:01\"
uplink_mac = \"02:00:00:00:01:10\"
cluster_dns = [\"10.96.0.10\"]

[[ports]]
name = \"uplink\"
kind = \"uplink\"
backend = \"afpacket\"
interface = \"up0\"
";
    std::fs::write(n.path("node.toml"), config).expect("node config");

    let conflist = std::fs::read_to_string(podswitch_tests::root().join("configs/cni/10-podswitch.conflist"))
        .expect("configs/cni/10-podswitch.conflist");
    assert!(conflist.contains("/run/podswitch/podswitch.sock"), "the conflist's socket path changed:\n{conflist}");
    let conflist = conflist.replace("/run/podswitch/podswitch.sock", &n.socket().to_string_lossy());
    std::fs::write(n.path("conf/10-podswitch.conflist"), conflist).expect("conflist");
    std::fs::copy(&plugin, n.path("bin/podswitch-cni")).expect("plugin");
    std::fs::copy("/usr/lib/cni/loopback", n.path("bin/loopback")).expect("loopback plugin");
    let conf = format!(
        "[network]
network_backend = \"cni\"
cni_plugin_dirs = [\"{bin}\"]
network_config_dir = \"{conf}\"
[engine]
cgroup_manager = \"cgroupfs\"
runtime = \"runc\"
events_logger = \"file\"
[containers]
default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]
",
        bin = n.path("bin").display(),
        conf = n.path("conf").display()
    );
    std::fs::write(n.path("containers.conf"), conf).expect("containers.conf");

    // The image: busybox and its applets, nothing else.
    let bb = busybox().expect("busybox");
    std::fs::copy(bb, n.path("rootfs/bin/busybox")).expect("busybox");
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", n.path(&format!("rootfs/bin/{a}"))).expect("applet link");
    }
    let mut tar = Command::new("tar");
    tar.arg("-C").arg(n.path("rootfs")).arg("-cf").arg(n.path("rootfs.tar")).arg(".");
    n.must(run_bounded(tar, "tar rootfs".into(), &n.dir, CMD_LIMIT, None));
    let tarball = n.path("rootfs.tar").to_string_lossy().into_owned();
    let image = n.image.clone();
    n.must(n.pm(&["import", "--change", "CMD [\"/bin/sh\"]", &tarball, &image]));
    n
}

#[test]
fn podman_containers_on_podswitch() {
    if let Some(why) = missing_prerequisite() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("cannot run: {why}; CI expects it to run");
        }
        eprintln!("SKIPPED podman_containers_on_podswitch: {why}");
        return;
    }
    let t0 = Instant::now();
    let mut n = node();
    n.start_daemon();

    // 1. The Pod objects (labels) and the Service, before any container runs.
    let pods: String = [("web1", "web"), ("web2", "web"), ("client", "client"), ("other", "other")]
        .iter()
        .map(|(name, app)| pod(name, app))
        .collect::<Vec<_>>()
        .join("---\n");
    n.apply(&format!("{pods}---\n{SERVICE}"));

    // 2. Containers on the podswitch network: podman calls the plugin's ADD for each.
    n.run_container("web1", &web_script("web1"));
    n.run_container("web2", &web_script("web2"));
    n.run_container("client", SLEEPER);
    n.run_container("other", SLEEPER);

    // Idle, the daemon sleeps: new ports must not keep its worker polling.
    let busy = n.daemon_cpu(Duration::from_secs(1));
    if busy > Duration::from_millis(500) {
        n.fail(&format!("idle podswitchd used {busy:?} of CPU in 1 s"), &n.ctl(&["stats"], None));
    }

    // 3. Addresses and routes, a ping, the ClusterIP served by both containers.
    let mut ips = std::collections::BTreeMap::new();
    for c in ["web1", "web2", "client", "other"] {
        ips.insert(c, n.address_of(c));
    }
    let distinct: std::collections::BTreeSet<_> = ips.values().collect();
    assert_eq!(distinct.len(), 4, "addresses handed out twice: {ips:?}");
    for w in ["web1", "web2"] {
        // httpd answers inside its container before anything is asked through the switch.
        let out = n.exec(
            w,
            "for i in $(seq 50); do timeout 1 wget -q -O - http://127.0.0.1:8080/ && exit 0; sleep 0.1; done; exit 1",
        );
        n.must(out);
    }
    // One echo request, the first frame the switch sends to web1's port: it must leave at
    // once, not wait in the ring for the next one.
    let out = n.exec("client", &format!("ping -c 1 -W 2 {}", ips["web1"]));
    if !out.ok {
        n.fail("client cannot ping web1", &out);
    }
    let (got, out) = n.fetch("client", 16, 2);
    let served = |who: &str| got.iter().filter(|l| *l == who).count();
    if served("web1") + served("web2") != got.len() || got.len() != 16 {
        n.fail("client's fetches of the ClusterIP did not all succeed", &out);
    }
    if served("web1") == 0 || served("web2") == 0 {
        n.fail("16 fetches of the ClusterIP did not reach both endpoints", &out);
    }
    let (got, out) = n.fetch("other", 1, 2);
    if got.len() != 1 || !got[0].starts_with("web") {
        n.fail("before any policy, other fetches the ClusterIP", &out);
    }

    // 3b. Cluster DNS: a container given the cluster DNS as kubelet gives it to a pod with
    // dnsPolicy ClusterFirst (the runtime writes its resolv.conf) resolves the Service by its
    // short name through the search list and fetches it by name.
    n.apply(KUBE_DNS);
    n.run_container_with(
        "namer",
        &[
            "--dns",
            "10.96.0.53",
            "--dns-search",
            "default.svc.cluster.local",
            "--dns-search",
            "svc.cluster.local",
            "--dns-search",
            "cluster.local",
            "--dns-option",
            "ndots:5",
        ],
        SLEEPER,
    );
    let out = n.exec("namer", "cat /etc/resolv.conf; timeout 3 wget -q -O - http://web:80/ || echo FAILED");
    if !out.stdout.lines().any(|l| l == "web1" || l == "web2") {
        n.fail("a container does not reach the Service by its name through the cluster DNS", &out);
    }
    n.must(n.pm(&["rm", "-f", "-t", "0", "namer"]));

    // 4. Only app=client may reach app=web.
    n.apply(POLICY);
    let (got, out) = n.fetch("client", 4, 2);
    if got.len() != 4 || !got.iter().all(|l| l.starts_with("web")) {
        n.fail("with the policy, client still fetches", &out);
    }
    let (got, out) = n.fetch("other", 1, 2);
    if got != ["FAILED"] {
        n.fail("with the policy, other is denied", &out);
    }

    // 5. podman rm: the plugin's DEL detaches the port and deletes the host end.
    let web2_end =
        n.host_end_of("web2").unwrap_or_else(|| n.fail("no attachment for web2", &n.ctl(&["port", "list"], None)));
    if !n.links().stdout.contains(&web2_end) {
        n.fail(&format!("web2's host end {web2_end} is not in the node's namespace"), &n.links());
    }
    n.must(n.pm(&["rm", "-f", "-t", "0", "web2"]));
    let listed = n.ctl(&["port", "list", "-o", "wide"], None);
    if listed.stdout.contains(&web2_end) || listed.stdout.contains("default/web2") {
        n.fail("web2's port is still listed after podman rm", &listed);
    }
    let links = n.links();
    if links.stdout.contains(&web2_end) {
        n.fail(&format!("web2's host end {web2_end} is left after podman rm"), &links);
    }
    n.run_container("late", SLEEPER);
    let late = n.address_of("late");
    let out = n.exec("client", &format!("ping -c 1 -W 2 {late}"));
    if !out.ok {
        n.fail("client cannot ping late", &out);
    }
    if [&ips["web1"], &ips["client"], &ips["other"]].contains(&&late) {
        n.fail(&format!("late got {late}, an address in use: {ips:?}"), &n.ctl(&["port", "list"], None));
    }
    if n.host_end_of("late").is_none() {
        n.fail("late has no attachment", &n.ctl(&["port", "list"], None));
    }

    // 6. kill -9 and start again from the state directory.
    n.kill_daemon();
    n.start_daemon();
    let (got, out) = n.fetch("client", 6, 2);
    if got.len() != 6 || !got.iter().all(|l| l == "web1") {
        n.fail("after the restart, client fetches the ClusterIP from web1 (its only endpoint)", &out);
    }
    let (got, out) = n.fetch("other", 1, 2);
    if got != ["FAILED"] {
        n.fail("after the restart, the policy still denies other", &out);
    }
    let pods = n.must(n.ctl(&["get", "pods", "-A", "-o", "wide"], None));
    for c in ["web1", "client", "other"] {
        // NAMESPACE NAME READY STATUS RESTARTS IP NODE: the pod's row shows its address.
        let listed = pods.stdout.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.get(1) == Some(&c) && cols.get(5) == Some(&ips[c].as_str())
        });
        if !listed {
            n.fail(&format!("get pods does not list {c} with {}", ips[c]), &pods);
        }
    }
    for c in ["web1", "client", "other", "late"] {
        if n.host_end_of(c).is_none() {
            n.fail(&format!("{c}'s attachment is gone after the restart"), &n.ctl(&["port", "list"], None));
        }
    }

    // 7. Removing every container detaches every port and host end.
    n.must(n.pm(&["rm", "-a", "-f", "-t", "0"]));
    let left: Vec<Value> = n.ports().into_iter().filter(|p| p["cni"].is_object()).collect();
    if !left.is_empty() {
        n.fail("attachments left after podman rm -a", &n.ctl(&["port", "list"], None));
    }
    let links = n.links();
    if links.stdout.lines().any(|l| l.starts_with("psw")) {
        n.fail("host ends left after podman rm -a", &links);
    }
    eprintln!("podman_containers_on_podswitch: {:.1} s", t0.elapsed().as_secs_f64());
}
