//! Issue 10: state survives restarts and fails closed. A deny NetworkPolicy and a port added
//! at run time (with its pod) are applied through the socket; the daemon is killed with
//! SIGKILL and started again: the policy still holds from the first packet, `get` shows every
//! object, and the runtime port forwards again. Runs the real `podswitchd` (AF_PACKET) in
//! network namespaces this test creates, joined by veth pairs, and deletes them by name.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PODS: [(&str, &str, &str); 3] = [
    ("a", "10.244.1.2", "02:00:00:00:10:02"),
    ("b", "10.244.1.3", "02:00:00:00:10:03"),
    ("c", "10.244.1.4", "02:00:00:00:10:04"),
];

fn ping(ns: &str, to: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-c", "1", "-W", "1", to])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn a_deny_policy_and_runtime_ports_survive_kill_9() {
    if !podswitch_tests::root_or_skip(module_path!()) {
        return;
    }
    let tag = std::process::id();
    let node = format!("psws{tag}-node");
    let dir = std::env::temp_dir().join(format!("psws{tag}-run"));
    std::fs::create_dir_all(&dir).expect("run dir");
    let mut topo = podswitch_tests::Topology { names: vec![node.clone()], daemon: None, dir: dir.clone() };
    podswitch_tests::ip(&["netns", "add", &node]);
    for (p, addr, mac) in PODS {
        let ns = format!("psws{tag}-{p}");
        podswitch_tests::ip(&["netns", "add", &ns]);
        topo.names.push(ns.clone());
        podswitch_tests::ip(&[
            "-n",
            &node,
            "link",
            "add",
            &format!("sw-{p}"),
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &ns,
        ]);
        podswitch_tests::ip(&["-n", &node, "link", "set", &format!("sw-{p}"), "up"]);
        podswitch_tests::ip(&["-n", &ns, "link", "set", "eth0", "address", mac]);
        podswitch_tests::ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        podswitch_tests::ip(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
        podswitch_tests::ip(&["-n", &ns, "route", "add", "default", "via", "10.244.1.1", "dev", "eth0"]);
        // The switch reads frames: the pod's stack fills its own checksums.
        let _ = Command::new("ip").args(["netns", "exec", &ns, "ethtool", "-K", "eth0", "tx", "off"]).output();
    }
    let cfg = dir.join("node.toml");
    let mut toml = String::from("[node]\nname = \"node-1\"\nipv4 = \"192.168.77.10\"\npod_cidrs = [\"10.244.1.0/24\"]\nrouter_mac = \"02:00:00:00:00:01\"\nuplink_mac = \"02:00:00:00:01:10\"\n\n");
    // Pods a and b are in the file; c's port is added at run time.
    for (p, addr, mac) in &PODS[..2] {
        toml.push_str(&format!(
            "[[ports]]\nname = \"p-{p}\"\nkind = \"pod\"\nbackend = \"afpacket\"\ninterface = \"sw-{p}\"\n\n"
        ));
        toml.push_str(&format!("[[pods]]\nname = \"{p}\"\nport = \"p-{p}\"\nmac = \"{mac}\"\nips = [\"{addr}\"]\nlabels = {{ app = \"{p}\" }}\n\n"));
    }
    std::fs::write(&cfg, toml).expect("config");
    let ctl_bin = podswitch_tests::build_bin("control", "podswitchctl");
    let socket = dir.join("podswitch.sock");
    let state = dir.join("state");
    let log = dir.join("podswitchd.err");
    let start =
        || podswitch_tests::spawn_daemon(&node, &cfg, &socket, &["--state-dir".as_ref(), state.as_os_str()], &log);
    let ctl = |args: &[&str], stdin: Option<&str>| -> (bool, String) {
        use std::io::Write;
        let mut c = Command::new(&ctl_bin)
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("podswitchctl");
        if let (Some(t), Some(mut i)) = (stdin, c.stdin.take()) {
            i.write_all(t.as_bytes()).expect("stdin");
        }
        let o = c.wait_with_output().expect("podswitchctl");
        (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
    };
    let wait_up = || {
        let t0 = Instant::now();
        while !ctl(&["version"], None).0 {
            let log = std::fs::read_to_string(dir.join("podswitchd.err")).unwrap_or_default();
            assert!(t0.elapsed() < Duration::from_secs(20), "daemon did not come up:\n{log}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let (a, c) = (format!("psws{tag}-a"), format!("psws{tag}-c"));
    topo.daemon = Some(start());
    wait_up();
    assert!(ping(&a, "10.244.1.3"), "a reaches b before any policy");
    let (ok, out) = ctl(&["port", "add", "p-c", "--interface", "sw-c"], None);
    assert!(ok, "{out}");
    let pod_c = "apiVersion: v1\nkind: Pod\nmetadata: {name: c, labels: {app: c}, annotations: {podswitch.io/port: p-c, podswitch.io/mac: \"02:00:00:00:10:04\"}}\nspec: {nodeName: node-1}\nstatus: {podIP: 10.244.1.4}\n";
    let deny = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-b}\nspec: {podSelector: {matchLabels: {app: b}}, policyTypes: [Ingress]}\n";
    let (ok, out) = ctl(&["apply", "-f", "-"], Some(&format!("{pod_c}---\n{deny}")));
    assert!(ok, "{out}");
    assert!(ping(&c, "10.244.1.2"), "the runtime port forwards");
    assert!(!ping(&a, "10.244.1.3"), "the policy denies a -> b");

    // kill -9: no chance to save anything on the way out.
    let mut d = topo.daemon.take().expect("daemon");
    d.kill().expect("SIGKILL");
    d.wait().expect("reaped");
    topo.daemon = Some(start());
    wait_up();
    assert!(!ping(&a, "10.244.1.3"), "after the restart the policy still holds");
    let (ok, out) = ctl(&["get", "networkpolicies"], None);
    assert!(ok && out.contains("deny-b"), "{out}");
    let (ok, out) = ctl(&["get", "pods", "-A", "-o", "wide"], None);
    assert!(ok && out.contains("10.244.1.4"), "{out}");
    let (ok, out) = ctl(&["port", "list"], None);
    assert!(ok && out.contains("p-c") && out.contains("sw-c"), "{out}");
    assert!(ping(&c, "10.244.1.2"), "the runtime port forwards again after the restart");
    // The path is live: without the policy a reaches b (the denial above was the policy's).
    let (ok, out) = ctl(&["delete", "networkpolicy", "deny-b"], None);
    assert!(ok, "{out}");
    assert!(ping(&a, "10.244.1.3"), "a reaches b once the policy is deleted");
    // A state file that cannot be read stops the daemon rather than run it with less policy.
    let mut d = topo.daemon.take().expect("daemon");
    d.kill().expect("SIGKILL");
    d.wait().expect("reaped");
    std::fs::write(state.join("state.json"), "{ torn").expect("corrupt");
    let mut d = start();
    let t0 = Instant::now();
    let st = loop {
        if let Some(s) = d.try_wait().expect("wait") {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "daemon ran with an unreadable state");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!st.success());
    let log = std::fs::read_to_string(dir.join("podswitchd.err")).unwrap_or_default();
    assert!(log.contains("state.json"), "{log}");
}
