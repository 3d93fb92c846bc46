//! Issue 10: pods attached and detached while the daemon runs, on AF_XDP and on AF_PACKET,
//! through the real `podswitch-cni` binary called as a runtime calls it (CNI_COMMAND=ADD and
//! DEL with the container's namespace) against the real `podswitchd`. Each cycle the new pod
//! reaches a pod of the config file through its new port; after many cycles the workers'
//! frame pools hold exactly as many frames as before (a port closed at run time gives back
//! every frame its rings held). Everything lives in network namespaces this test creates and
//! deletes by name; the daemon is killed by PID.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn run(backend: &str, tag: &str) {
    if !podswitch_tests::root_or_skip(module_path!()) {
        return;
    }
    let node = format!("psw{tag}{}-node", std::process::id());
    let pod_a = format!("psw{tag}{}-a", std::process::id());
    let ctr = format!("psw{tag}{}-c", std::process::id());
    let dir = std::env::temp_dir().join(format!("psw{tag}{}-run", std::process::id()));
    std::fs::create_dir_all(&dir).expect("run dir");
    let mut topo = podswitch_tests::Topology { names: vec![node.clone()], daemon: None, dir: dir.clone() };
    podswitch_tests::ip(&["netns", "add", &node]);
    podswitch_tests::ip(&["-n", &node, "link", "set", "lo", "up"]);
    for ns in [&pod_a, &ctr] {
        podswitch_tests::ip(&["netns", "add", ns]);
        topo.names.push(ns.to_string());
    }
    podswitch_tests::ip(&["-n", &node, "link", "add", "sw-a", "type", "veth", "peer", "name", "eth0", "netns", &pod_a]);
    podswitch_tests::ip(&["-n", &node, "link", "set", "sw-a", "up"]);
    podswitch_tests::ip(&["-n", &pod_a, "link", "set", "eth0", "address", "02:00:00:00:10:02"]);
    podswitch_tests::ip(&["-n", &pod_a, "link", "set", "eth0", "up"]);
    podswitch_tests::ip(&["-n", &pod_a, "addr", "add", "10.244.1.2/24", "dev", "eth0"]);
    podswitch_tests::ip(&["-n", &pod_a, "route", "add", "default", "via", "10.244.1.1", "dev", "eth0"]);
    let _ = Command::new("ip").args(["netns", "exec", &pod_a, "ethtool", "-K", "eth0", "tx", "off"]).output();
    let cfg = dir.join("node.toml");
    std::fs::write(
        &cfg,
        format!("[node]\nname = \"node-1\"\nipv4 = \"192.168.77.10\"\npod_cidrs = [\"10.244.1.0/24\"]\nrouter_mac = \"02:00:00:00:00:01\"\nuplink_mac = \"02:00:00:00:01:10\"\n\n[[ports]]\nname = \"p-a\"\nkind = \"pod\"\nbackend = \"{backend}\"\ninterface = \"sw-a\"\n\n[[pods]]\nname = \"a\"\nport = \"p-a\"\nmac = \"02:00:00:00:10:02\"\nips = [\"10.244.1.2\"]\n"),
    )
    .expect("config");
    let ctl_bin = podswitch_tests::build_bin("control", "podswitchctl");
    let plugin = podswitch_tests::build_bin("podswitch-cni", "podswitch-cni");
    let socket = dir.join("podswitch.sock");
    let log = dir.join("podswitchd.err");
    let args: [&std::ffi::OsStr; 3] = ["--no-state".as_ref(), "--busy-polls".as_ref(), "50".as_ref()];
    topo.daemon = Some(podswitch_tests::spawn_daemon(&node, &cfg, &socket, &args, &log));
    let daemon_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let ctl = |args: &[&str]| -> (bool, String) {
        let o = Command::new(&ctl_bin).arg("--socket").arg(&socket).args(args).output().expect("podswitchctl");
        (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
    };
    let t0 = Instant::now();
    while !ctl(&["version"]).0 {
        assert!(t0.elapsed() < Duration::from_secs(20), "daemon did not come up:\n{}", daemon_log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let pool = || -> u64 {
        let (ok, out) = ctl(&["stats", "-o", "json"]);
        assert!(ok, "{out}");
        let v: serde_json::Value = serde_json::from_str(&out).expect("stats json");
        v["tables"]["pool_free"].as_u64().expect("pool_free")
    };
    // The pool as it stands with the config's port alone (counters are published every 200 ms).
    std::thread::sleep(Duration::from_millis(600));
    let before = pool();
    assert!(before > 0, "the workers report their pools");
    let conf = format!(
        "{{\"cniVersion\":\"1.0.0\",\"name\":\"podswitch\",\"type\":\"podswitch-cni\",\"socket\":\"{}\"}}",
        socket.display()
    );
    let cni = |command: &str, id: &str| -> (bool, String) {
        let mut c = Command::new("ip")
            .args(["netns", "exec", &node])
            .arg(&plugin)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", format!("/run/netns/{ctr}"))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_ARGS", format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=c-{id}"))
            .env("CNI_PATH", "/opt/cni/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("podswitch-cni");
        c.stdin.take().expect("stdin").write_all(conf.as_bytes()).expect("config on stdin");
        let o = c.wait_with_output().expect("podswitch-cni");
        (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
    };
    let cycles = 12;
    for n in 0..cycles {
        let id = format!("ctr{n:04}");
        let (ok, out) = cni("ADD", &id);
        assert!(ok, "ADD {n}: {out}\n{}", daemon_log());
        let result: serde_json::Value = serde_json::from_str(&out).expect("ADD result");
        assert_eq!(result["cniVersion"], "1.0.0");
        let addr = result["ips"][0]["address"].as_str().expect("address").to_string();
        assert!(addr.starts_with("10.244.1."), "{addr}");
        let ping = Command::new("ip")
            .args(["netns", "exec", &ctr, "ping", "-c", "1", "-W", "2", "10.244.1.2"])
            .output()
            .expect("ping");
        assert!(
            ping.status.success(),
            "cycle {n}: the new pod ({addr}) reaches pod a through its new port\n{}",
            daemon_log()
        );
        let (ok, out) = cni("DEL", &id);
        assert!(ok, "DEL {n}: {out}");
        let (ok, out) = cni("DEL", &id);
        assert!(ok, "DEL {n} again: {out}");
    }
    let (ok, out) = ctl(&["port", "list"]);
    assert!(ok && !out.contains("psw"), "every attachment is gone: {out}");
    // Pod a still forwards, and every frame the closed ports held is back in the pools.
    std::thread::sleep(Duration::from_millis(600));
    let after = pool();
    assert_eq!(after, before, "frames leaked by {cycles} attach/detach cycles on {backend}");
    let (ok, out) = ctl(&["stats"]);
    assert!(ok, "{out}");
}

#[test]
fn pods_come_and_go_on_afxdp() {
    run("afxdp", "x");
}

#[test]
fn pods_come_and_go_on_afpacket() {
    run("afpacket", "p");
}
