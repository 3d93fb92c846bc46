//! The demo: the node of `configs/node-pcap.toml` (embedded) fed with a scripted capture —
//! ARP and neighbour discovery, pod to ClusterIP (IPv4 and IPv6) and the replies, DNS over a
//! UDP service, services without endpoints, a policy denial, VXLAN to and from another node,
//! NodePort from outside, and malformed frames — then the counters and each port's output.

use crate::build::{build_text, Built};
use crate::daemon::run_pcap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use switch_core::addr::Addr;
use switch_core::conntrack::{FlowKey, Tuple};
use switch_core::service::FrontendKind;
use switch_core::snapshot::Tables;
use switch_core::wire::build::{self, IpFrame, L4Repr, TunnelKind};
use switch_core::wire::l4::tcp_flags::{ACK, SYN};
use switch_core::wire::{proto, MacAddr};

/// The demo's config.
pub const CONFIG: &str = include_str!("../../configs/node-pcap.toml");

const SEC: u64 = 1_000_000_000;

/// A DNS response: web. A 10.96.0.10.
const DNS_ANSWER: &[u8] = b"\x12\x34\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\x03web\x00\x00\x01\x00\x01\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x1e\x00\x04\x0a\x60\x00\x0a";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("demo address")
}

fn mac(s: &str) -> MacAddr {
    s.parse().expect("demo MAC")
}

/// The backend the pipeline will pick for a new flow to a frontend, computed from the tables
/// the same way the service stage does (so scripted replies come from the right pod).
pub fn expected_backend(t: &Tables, src: &str, sport: u16, dst: &str, dport: u16, protocol: u8) -> Option<(Addr, u16)> {
    let orig = Tuple { src: Addr::from(ip(src)), dst: Addr::from(ip(dst)), sport, dport };
    let fe = t.services.lookup(orig.dst, dport, protocol)?;
    let h = FlowKey { t: orig, proto: protocol }.hash(t.hash_seed);
    let b = t.services.port(fe.target).select(FrontendKind::ClusterIp, h).ok()?;
    Some((b.addr, b.port))
}

/// The MAC and port name of the local pod with `addr`.
pub fn pod_of(t: &Tables, addr: Addr) -> Option<(MacAddr, String)> {
    let e = t.endpoints.get(t.endpoints.by_ip(addr)?);
    let port = e.port?;
    Some((e.mac, t.ports[port.index()].name.clone()))
}

/// Input frames per port name, with timestamps; frames sharing a timestamp form one batch.
pub fn scenario(t: &Tables) -> Vec<(String, u64, Vec<u8>)> {
    let gw = mac("02:00:00:00:00:01");
    let a_mac = mac("02:00:00:0a:00:02");
    let b_mac = mac("02:00:00:0a:00:03");
    let uplink_mac = mac("02:00:00:00:01:10");
    let node2_mac = mac("02:00:00:00:01:11");
    let node2_vtep = mac("02:00:00:00:03:11");
    let outside_gw = mac("02:00:00:00:09:09");
    let mut f: Vec<(String, u64, Vec<u8>)> = Vec::new();
    let mut push = |port: &str, round: u64, frame: Vec<u8>| f.push((port.to_string(), round * SEC, frame));
    let tcp = |sm, s: &str, sp, d: &str, dp, flags| {
        IpFrame::new(sm, gw, ip(s), ip(d), L4Repr::Tcp { sport: sp, dport: dp, seq: 1000, ack: 0, flags }).build()
    };
    // Round 1: the pod finds its gateway.
    push("pod-a", 1, build::arp_request(a_mac, "10.244.1.2".parse().expect("v4"), "10.244.1.1".parse().expect("v4")));
    push(
        "pod-a",
        1,
        build::neighbor_solicit(a_mac, "fd00:244:1::2".parse().expect("v6"), "fe80::1".parse().expect("v6")),
    );
    // Round 2: new flows.
    push("pod-a", 2, tcp(a_mac, "10.244.1.2", 40000, "10.96.0.10", 80, SYN));
    push("pod-a", 2, tcp(a_mac, "fd00:244:1::2", 40001, "fd00:96::10", 80, SYN));
    push(
        "pod-a",
        2,
        IpFrame::new(a_mac, gw, ip("10.244.1.2"), ip("10.96.0.10"), L4Repr::Udp { sport: 53000, dport: 53 })
            .with_payload(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03web\x00\x00\x01\x00\x01")
            .build(),
    );
    push("pod-a", 2, tcp(a_mac, "10.244.1.2", 40002, "10.96.0.20", 80, SYN));
    push(
        "pod-a",
        2,
        IpFrame::new(a_mac, gw, ip("10.244.1.2"), ip("10.96.0.20"), L4Repr::Udp { sport: 53001, dport: 53 })
            .with_payload(b"q")
            .build(),
    );
    push("pod-b", 2, tcp(b_mac, "10.244.1.3", 40003, "10.244.1.4", 8080, SYN));
    push("pod-a", 2, tcp(a_mac, "10.244.1.2", 40004, "10.244.2.5", 80, SYN));
    push(
        "uplink",
        2,
        IpFrame::new(
            outside_gw,
            uplink_mac,
            ip("203.0.113.7"),
            ip("192.168.50.10"),
            L4Repr::Tcp { sport: 55555, dport: 30080, seq: 1, ack: 0, flags: SYN },
        )
        .build(),
    );
    // Round 3: replies.
    for (sport, vip) in [(40000u16, "10.96.0.10"), (40001, "fd00:96::10")] {
        let src = if vip.contains(':') { "fd00:244:1::2" } else { "10.244.1.2" };
        if let Some((baddr, bport)) = expected_backend(t, src, sport, vip, 80, proto::TCP) {
            if let Some((bmac, bport_name)) = pod_of(t, baddr) {
                let r = IpFrame::new(
                    bmac,
                    gw,
                    baddr.to_ip(),
                    ip(src),
                    L4Repr::Tcp { sport: bport, dport: sport, seq: 7, ack: 1001, flags: SYN | ACK },
                )
                .build();
                push(&bport_name, 3, r);
            }
        }
    }
    push(
        "pod-b",
        3,
        IpFrame::new(b_mac, gw, ip("10.244.1.3"), ip("10.244.1.2"), L4Repr::Udp { sport: 5353, dport: 53000 })
            .with_payload(DNS_ANSWER)
            .build(),
    );
    let inner = IpFrame::new(
        node2_vtep,
        mac("02:00:00:00:03:10"),
        ip("10.244.2.5"),
        ip("10.244.1.2"),
        L4Repr::Tcp { sport: 80, dport: 40004, seq: 9, ack: 1001, flags: SYN | ACK },
    )
    .build();
    push(
        "uplink",
        3,
        build::tunnel_wrap(
            &inner,
            TunnelKind::Vxlan,
            node2_mac,
            uplink_mac,
            ip("192.168.50.11"),
            ip("192.168.50.10"),
            51000,
            1,
        ),
    );
    // Round 4: things that must be dropped, each with its reason.
    let good = tcp(a_mac, "10.244.1.2", 40005, "10.244.1.3", 8080, SYN);
    push("pod-a", 4, good[..30].to_vec());
    let mut bad = good.clone();
    bad[24] ^= 0xff;
    push("pod-a", 4, bad);
    push("pod-a", 4, tcp(a_mac, "10.244.1.3", 40006, "10.96.0.10", 80, SYN));
    f
}

/// Writes the scenario's captures into `dir`.
pub fn write_inputs(t: &Tables, ports: &[crate::build::PortSpec]) -> std::io::Result<()> {
    let s = scenario(t);
    for p in ports {
        let frames: Vec<(u64, Vec<u8>)> =
            s.iter().filter(|(n, _, _)| *n == p.name).map(|(_, ts, fr)| (*ts, fr.clone())).collect();
        if let Some(path) = &p.pcap_in {
            io_backends::pcap::write_file(path, &frames)?;
        }
    }
    Ok(())
}

/// Runs the demo in `dir` (created if needed); returns the text to print.
pub fn run(dir: &Path) -> Result<String, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let built: Built = build_text(CONFIG, Path::new("configs/node-pcap.toml"), dir, 1).map_err(|e| e.to_string())?;
    write_inputs(&built.tables, &built.ports).map_err(|e| e.to_string())?;
    let outputs: Vec<(String, PathBuf)> =
        built.ports.iter().filter_map(|p| p.pcap_out.clone().map(|o| (p.name.clone(), o))).collect();
    let (report, tables) = run_pcap(built).map_err(|e| e.to_string())?;
    let mut out = String::new();
    out.push_str(&format!("podswitch demo: node-1 from configs/node-pcap.toml, captures in {}\n\n", dir.display()));
    out.push_str(&report.render(&tables));
    for (name, path) in outputs {
        out.push_str(&format!("\n== {name} transmitted ({}) ==\n", path.display()));
        out.push_str(&decode(&path));
    }
    Ok(out)
}

/// One line per frame: tshark's summary when tshark is installed, else our own.
fn decode(path: &Path) -> String {
    if let Ok(o) = std::process::Command::new("tshark").args(["-n", "-r"]).arg(path).output() {
        if o.status.success() {
            return String::from_utf8_lossy(&o.stdout).into_owned();
        }
    }
    let mut s = String::from("(tshark not installed: our own decode)\n");
    if let Ok(frames) = io_backends::pcap::read_file(path) {
        for (_, f) in frames {
            match switch_core::parse::parse(&f, Default::default()) {
                Ok(m) => s.push_str(&format!("{} -> {} proto {} {} -> {}\n", m.src, m.dst, m.proto, m.sport, m.dport)),
                Err(r) => s.push_str(&format!("unparsed frame ({r}), {} bytes\n", f.len())),
            }
        }
    }
    s
}
