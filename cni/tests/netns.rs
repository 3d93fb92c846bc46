//! Root-only tests in network namespaces this test creates (`psw-cni-test-<pid>-*`, deleted
//! at the end): the netlink steps called directly, then the real binary (ADD, CHECK, re-ADD,
//! DEL, GC, STATUS) against a mock daemon that follows control.proto's CNI contract. Neither
//! touches the root namespace: the "host" side is a namespace of its own. Skipped, with the
//! reason printed, when not root or without `ip`.

mod mock_daemon;

use mock_daemon::MockDaemon;
use podswitch_cni::netlink::{self, Prefix, RouteSpec};
use serde_json::{json, Value};
use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Network namespaces created by `ip netns add`, deleted on drop.
struct Netns {
    names: Vec<String>,
}

impl Netns {
    fn new(tag: &str, count: usize) -> Option<Netns> {
        let mut ns = Netns { names: Vec::new() };
        for i in 0..count {
            let name = format!("psw-cni-test-{}-{tag}{i}", std::process::id());
            let ok = Command::new("ip").args(["netns", "add", &name]).status().is_ok_and(|s| s.success());
            if !ok {
                eprintln!("skipped: cannot create network namespace {name}");
                return None;
            }
            ns.names.push(name);
        }
        Some(ns)
    }

    fn path(&self, i: usize) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.names[i]))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2)) == Some("0")
}

fn can_run() -> bool {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces, veth pairs)");
        return false;
    }
    if Command::new("ip").arg("-V").output().is_err() {
        eprintln!("skipped: needs iproute2's ip");
        return false;
    }
    true
}

/// Runs `f` on a thread that entered the namespace at `ns`: the plugin's "host" namespace.
fn in_ns<T: Send>(ns: &Path, f: impl FnOnce() -> T + Send) -> T {
    let file = File::open(ns).unwrap();
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn netlink_steps_in_a_namespace() {
    if !can_run() {
        return;
    }
    let Some(ns) = Netns::new("nl", 2) else { return };
    let (host_ns, pod_ns) = (ns.path(0), ns.path(1));
    let pod_name = ns.names[1].clone();
    let host = netlink::host_ifname("netlink-test-container", "eth0");
    in_ns(&host_ns, || {
        netlink::create_pair(&host, &pod_ns, "eth0", 2).unwrap();
        let h = netlink::link(None, &host).unwrap().expect("host end");
        assert_eq!(h.kind, "veth");
        let c = netlink::link(Some(&pod_ns), "eth0").unwrap().expect("container end in the pod namespace");
        assert_eq!(c.mac.len(), 17);
        assert!(netlink::link(None, "eth0").unwrap().is_none(), "the peer never lives in the host namespace");
        assert!(netlink::create_pair(&host, &pod_ns, "eth0", 2).unwrap_err().is_exists());

        let h = netlink::configure_host(&host, Some(1400)).unwrap();
        assert!(h.up && h.mtu == 1400 && h.addresses.is_empty(), "{h:?}");

        let addrs: Vec<Prefix> = vec!["10.99.0.5/24".parse().unwrap(), "fd00:99::5/64".parse().unwrap()];
        let routes = vec![
            RouteSpec { dst: "0.0.0.0/0".parse().unwrap(), gw: Some("10.99.0.1".parse().unwrap()) },
            RouteSpec { dst: "::/0".parse().unwrap(), gw: Some("fd00:99::1".parse().unwrap()) },
            // A gateway outside every address's prefix: reached on-link.
            RouteSpec { dst: "192.0.2.0/24".parse().unwrap(), gw: Some("198.51.100.1".parse().unwrap()) },
        ];
        let c = netlink::configure_container(&pod_ns, "eth0", &addrs, &routes, Some(1400)).unwrap();
        assert!(c.up && c.mtu == 1400, "{c:?}");
        for a in &addrs {
            assert!(c.addresses.contains(a), "{a} missing from {c:?}");
        }
        assert!(!netlink::tx_checksum_offload(&pod_ns, "eth0").unwrap(), "tx checksum offload still on");
        // Again: replaced, not duplicated, no EEXIST.
        let again = netlink::configure_container(&pod_ns, "eth0", &addrs, &routes, Some(1400)).unwrap();
        assert_eq!(again.addresses.len(), c.addresses.len());

        let v4 = ip(&["-n", &pod_name, "-4", "route", "show"]);
        assert!(v4.contains("default via 10.99.0.1 dev eth0"), "{v4}");
        assert!(v4.contains("192.0.2.0/24 via 198.51.100.1 dev eth0") && v4.contains("onlink"), "{v4}");
        let v6 = ip(&["-n", &pod_name, "-6", "route", "show"]);
        assert!(v6.contains("default via fd00:99::1 dev eth0"), "{v6}");
        let v6a = ip(&["-n", &pod_name, "-6", "addr", "show", "dev", "eth0"]);
        assert!(v6a.contains("fd00:99::5/64") && !v6a.contains("tentative"), "{v6a}");
        // The sysctls went to the namespaces' own interfaces (a thread's /proc/sys/net is its
        // namespace's), read here from processes started in those namespaces.
        let host_name = host_ns.file_name().unwrap().to_str().unwrap().to_string();
        let sysctl = |ns: &str, path: &str| {
            let out = Command::new("ip").args(["netns", "exec", ns, "cat", path]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        if Path::new("/proc/sys/net/ipv6").exists() {
            assert_eq!(sysctl(&host_name, &format!("/proc/sys/net/ipv6/conf/{host}/disable_ipv6")), "1");
            assert_eq!(sysctl(&pod_name, "/proc/sys/net/ipv6/conf/eth0/accept_dad"), "0");
        }
        let lo = ip(&["-n", &pod_name, "link", "show", "lo"]);
        assert!(lo.contains("UP"), "{lo}");

        assert_eq!(netlink::host_links().unwrap(), vec![host.clone()]);
        assert!(netlink::delete_host(&host).unwrap());
        assert!(netlink::link(Some(&pod_ns), "eth0").unwrap().is_none(), "deleting the host end removes its peer");
        assert!(!netlink::delete_host(&host).unwrap(), "a second delete finds nothing and is fine");
        assert!(netlink::configure_container(&pod_ns, "eth0", &addrs, &routes, None).is_err());
    });
}

/// Runs the plugin binary inside `host_ns` with the CNI environment and a config on stdin;
/// returns (exit code, stdout parsed as JSON or Null when empty).
fn plugin(host_ns: &str, command: &str, env: &[(&str, &str)], conf: &Value) -> (i32, Value) {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", host_ns, env!("CARGO_BIN_EXE_podswitch-cni")])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CNI_COMMAND", command)
        .env("CNI_PATH", "/opt/cni/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(conf.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v = if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() };
    eprintln!("{command} -> {:?} {text} {}", out.status.code(), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), v)
}

#[test]
fn binary_against_a_mock_daemon() {
    if !can_run() {
        return;
    }
    let Some(ns) = Netns::new("bin", 3) else { return };
    let host_ns = ns.names[0].clone();
    let (pod_a, pod_b) = (ns.path(1).display().to_string(), ns.path(2).display().to_string());
    let dir = std::env::temp_dir().join(format!("psw-cni-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let daemon = MockDaemon::start(&dir.join("podswitch.sock"));
    let socket = daemon.socket.display().to_string();
    let conf = json!({
        "cniVersion": "1.0.0", "name": "podswitch", "type": "podswitch-cni", "socket": socket,
        "runtimeConfig": {"io.kubernetes.cri.pod-annotations": {"podswitch.io/labels": "app=web"}, "portMappings": []}
    });
    let a_env = [
        ("CNI_CONTAINERID", "container-a"),
        ("CNI_NETNS", pod_a.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "K8S_POD_INFRA_CONTAINER_ID=container-a;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web-0;K8S_POD_UID=u1"),
    ];
    let host_a = netlink::host_ifname("container-a", "eth0");

    // ADD: the result of spec 1.0.0, the daemon told namespace, name, annotations and MAC.
    let (code, r) = plugin(&host_ns, "ADD", &a_env, &conf);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["cniVersion"], "1.0.0");
    assert_eq!(r["interfaces"][0]["name"], host_a.as_str());
    assert!(r["interfaces"][0].get("sandbox").is_none());
    assert_eq!(r["interfaces"][1]["name"], "eth0");
    assert_eq!(r["interfaces"][1]["sandbox"], pod_a.as_str());
    assert_eq!(r["ips"][0], json!({"address": "10.99.0.10/24", "gateway": "10.99.0.1", "interface": 1}));
    assert_eq!(r["routes"][0], json!({"dst": "0.0.0.0/0", "gw": "10.99.0.1"}));
    assert_eq!(r["dns"]["nameservers"], json!(["10.96.0.10"]));
    {
        let s = daemon.state.lock().unwrap();
        let req = s.last_add.as_ref().unwrap();
        assert_eq!((req.pod_namespace.as_str(), req.pod_name.as_str()), ("prod", "web-0"));
        assert_eq!(req.annotations.get("podswitch.io/labels").map(String::as_str), Some("app=web"));
        assert_eq!(req.host_interface, host_a);
        assert_eq!(Value::String(req.mac.clone()), r["interfaces"][1]["mac"]);
    }
    let pod_a_name = &ns.names[1];
    let addrs = ip(&["-n", pod_a_name, "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains("10.99.0.10/24") && addrs.contains("mtu 1400"), "{addrs}");

    // CHECK passes; re-ADD answers from the existing attachment without a new pair.
    assert_eq!(plugin(&host_ns, "CHECK", &a_env, &json!({"prevResult": r.clone()}).merge(&conf)).0, 0);
    let (code, again) = plugin(&host_ns, "ADD", &a_env, &conf);
    assert_eq!((code, &again), (0, &r));

    // CHECK notices a missing address.
    Command::new("ip").args(["-n", pod_a_name, "addr", "del", "10.99.0.10/24", "dev", "eth0"]).status().unwrap();
    let (code, e) = plugin(&host_ns, "CHECK", &a_env, &conf);
    assert_eq!((code, e["code"].as_u64()), (1, Some(101)), "{e}");

    // DEL as containerd's RemovePodSandbox sends it: no CNI_NETNS, no prevResult; twice.
    let del_env = [("CNI_CONTAINERID", "container-a"), ("CNI_IFNAME", "eth0")];
    assert_eq!(plugin(&host_ns, "DEL", &del_env, &conf).0, 0);
    assert!(in_ns(&ns.path(0), || netlink::link(None, &host_a).unwrap()).is_none());
    assert!(daemon.state.lock().unwrap().attachments.is_empty());
    assert_eq!(plugin(&host_ns, "DEL", &del_env, &conf).0, 0, "DEL with the veth gone and no record");
    let (code, e) = plugin(&host_ns, "CHECK", &a_env, &conf);
    assert_eq!((code, e["code"].as_u64()), (1, Some(3)), "CHECK after DEL: unknown container");

    // A refused CniAdd undoes the pair and tells the daemon; code 11.
    let x_env = [("CNI_CONTAINERID", "exhaust-1"), ("CNI_NETNS", pod_b.as_str()), ("CNI_IFNAME", "eth0")];
    let (code, e) = plugin(&host_ns, "ADD", &x_env, &conf);
    assert_eq!((code, e["code"].as_u64()), (1, Some(11)), "{e}");
    assert!(in_ns(&ns.path(0), || netlink::host_links().unwrap()).is_empty());
    assert!(netlink::link(Some(&ns.path(2)), "eth0").unwrap().is_none());
    assert!(daemon.calls().ends_with(&["CniAdd".to_string(), "CniDel".to_string()]), "{:?}", daemon.calls());

    // An attachment the plugin cannot apply: undone the same way, code 100.
    let bad_env = [("CNI_CONTAINERID", "badaddr-1"), ("CNI_NETNS", pod_b.as_str()), ("CNI_IFNAME", "eth0")];
    let (code, e) = plugin(&host_ns, "ADD", &bad_env, &conf);
    assert_eq!((code, e["code"].as_u64()), (1, Some(100)), "{e}");
    assert!(in_ns(&ns.path(0), || netlink::host_links().unwrap()).is_empty());
    assert!(daemon.state.lock().unwrap().attachments.is_empty(), "CniDel undid the CniAdd");

    // GC (1.1): two attachments, one still valid: the other's host end goes.
    let b_env = [("CNI_CONTAINERID", "container-b"), ("CNI_NETNS", pod_b.as_str()), ("CNI_IFNAME", "net1")];
    assert_eq!(plugin(&host_ns, "ADD", &a_env, &conf).0, 0);
    assert_eq!(plugin(&host_ns, "ADD", &b_env, &conf).0, 0);
    let gc = json!({"cniVersion": "1.1.0", "name": "podswitch", "type": "podswitch-cni", "socket": socket,
        "cni.dev/valid-attachments": [{"containerID": "container-b", "ifname": "net1"}]});
    assert_eq!(plugin(&host_ns, "GC", &[], &gc), (0, Value::Null));
    let left = in_ns(&ns.path(0), || netlink::host_links().unwrap());
    assert_eq!(left, vec![netlink::host_ifname("container-b", "net1")]);
    assert_eq!(plugin(&host_ns, "STATUS", &[], &gc), (0, Value::Null));

    // The daemon gone: DEL still removes the pair, but says the daemon was not told (11).
    drop(daemon);
    let (code, e) = plugin(&host_ns, "DEL", &[("CNI_CONTAINERID", "container-b"), ("CNI_IFNAME", "net1")], &conf);
    assert_eq!((code, e["code"].as_u64()), (1, Some(11)), "{e}");
    assert!(in_ns(&ns.path(0), || netlink::host_links().unwrap()).is_empty());
    let (code, e) = plugin(&host_ns, "STATUS", &[], &gc);
    assert_eq!((code, e["code"].as_u64()), (1, Some(50)), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Not a test: serves the mock daemon on `$PSW_MOCK_SOCKET` until killed, to try the plugin
/// with a real runtime before podswitchd implements the CNI calls:
/// `PSW_MOCK_SOCKET=/tmp/m.sock cargo test -p podswitch-cni --test netns -- --ignored serve_mock`.
#[test]
#[ignore = "manual aid: serves the mock daemon until killed"]
fn serve_mock() {
    let Ok(path) = std::env::var("PSW_MOCK_SOCKET") else {
        eprintln!("set PSW_MOCK_SOCKET");
        return;
    };
    let _daemon = MockDaemon::start(Path::new(&path));
    eprintln!("mock podswitchd on {path}");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

trait Merge {
    fn merge(self, other: &Value) -> Value;
}

impl Merge for Value {
    /// `self`'s fields over a copy of `other`.
    fn merge(self, other: &Value) -> Value {
        let mut out = other.clone();
        if let (Some(o), Value::Object(s)) = (out.as_object_mut(), self) {
            o.extend(s);
        }
        out
    }
}
