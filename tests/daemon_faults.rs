//! The daemon under faults of its own (issue 9 item 17): a worker that dies must not leave the
//! daemon running with its queues unserved; the daemon exits non-zero so that its supervisor
//! restarts it. Runs the real `podswitchd` on AF_PACKET in a network namespace this test
//! creates (a veth pair inside it, nothing in the root namespace) and deletes by name.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The namespace, deleted by name when the test ends however it ends.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn a_worker_that_dies_stops_the_daemon_with_a_failure() {
    if !podswitch_tests::root_or_skip(module_path!()) {
        return;
    }
    let ns = Netns(format!("pswf{}", std::process::id()));
    podswitch_tests::ip(&["netns", "add", &ns.0]);
    podswitch_tests::ip(&["-n", &ns.0, "link", "add", "f0", "type", "veth", "peer", "name", "f1"]);
    podswitch_tests::ip(&["-n", &ns.0, "link", "set", "f0", "up"]);
    podswitch_tests::ip(&["-n", &ns.0, "link", "set", "f1", "up"]);
    let dir = std::env::temp_dir().join(format!("{}-run", ns.0));
    std::fs::create_dir_all(&dir).expect("run dir");
    let cfg = dir.join("node.toml");
    std::fs::write(
        &cfg,
        "[node]\nname = \"node-1\"\nipv4 = \"192.168.77.10\"\npod_cidrs = [\"10.244.1.0/24\"]\nrouter_mac = \"02:00:00:00:00:01\"\nuplink_mac = \"02:00:00:00:01:10\"\ngateway_mac = \"02:00:00:00:0f:01\"\n\n[[ports]]\nname = \"p0\"\nkind = \"pod\"\nbackend = \"afpacket\"\ninterface = \"f0\"\n",
    )
    .expect("config");
    let bin = podswitch_tests::podswitchd();
    let run = |failpoint: Option<&str>| {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns.0]).arg(&bin).arg("--config").arg(&cfg).args(["--no-socket", "--no-state"]);
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        if let Some(f) = failpoint {
            cmd.env("PODSWITCH_FAILPOINT", f);
        }
        cmd.spawn().expect("start podswitchd")
    };
    // A worker panics: the daemon must end, with a failure, within seconds.
    let mut child = run(Some("worker-panic"));
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break Some(st);
        }
        if t0.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    let status = status.unwrap_or_else(|| panic!("podswitchd kept running without its worker:\n{err}"));
    assert!(!status.success(), "exit status {status}, want a failure:\n{err}");
    assert!(err.contains("worker-panic") && err.contains("worker 0 stopped unexpectedly"), "{err}");
    // Without the fault the same daemon runs until told to stop, and stops cleanly.
    let mut child = run(None);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(child.try_wait().expect("wait").is_none(), "podswitchd ended on its own");
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let st = child.wait().expect("wait");
    assert!(st.success(), "SIGTERM: {st}");
    let _ = std::fs::remove_dir_all(&dir);
}
