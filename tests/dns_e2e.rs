//! Cluster DNS end to end: real `dig` (bind9-dnsutils) and `kdig` (knot-dnsutils) in a pod
//! namespace of `netns-scripts/cluster.sh` ask the cluster DNS address (the kube-dns Service,
//! applied as a manifest) and every field of the answers is checked: A; AAAA (NODATA for a
//! single-stack Service, a dual-stack one's address asked over IPv4); SRV, PTR, CNAME for an
//! ExternalName, TXT dns-version, headless Services, pods, NXDOMAIN and NODATA with the zone's
//! SOA, the question's case, EDNS, TC over 512 octets, a name that follows `apply` and
//! `delete`, and glibc in a pod resolving a Service by its short name through a kubelet-style
//! resolv.conf, then curl to it.
//!
//! `dns_resolver_tcp_and_forwarding` needs the daemon's resolver (TCP, names outside the zone
//! forwarded to `[dns] upstream`, its cache): an upstream dnsmasq in a namespace of the test's
//! joined to the node namespace (`netns-scripts/dns.sh`), nothing through the internet.
//!
//! Needs root and the tools (installed with apt when missing); under CI=true their absence
//! fails the test.

use podswitch_tests::{podswitchd, root};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The kube-dns Service's cluster IP in these tests.
const DNS: &str = "10.96.0.53";
const ZONE: &str = "cluster.local.";

const KUBE_DNS: &str = "apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: 10.96.0.53
  selector: {k8s-app: kube-dns}
  ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53, protocol: TCP}]
";

/// A headless Service whose endpoints (two of the web pods) have hostnames and a named port.
const DB: &str = "apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec:
  clusterIP: None
  ports: [{name: pg, port: 5432, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: db-1, namespace: default, labels: {kubernetes.io/service-name: db}}
addressType: IPv4
ports: [{name: pg, port: 5432, protocol: TCP}]
endpoints:
- addresses: [10.244.1.11]
  hostname: db-0
  conditions: {ready: true}
- addresses: [10.244.1.12]
  hostname: db-1
  conditions: {ready: true}
- addresses: [10.244.1.13]
  hostname: db-2
  conditions: {ready: false}
";

/// A dual-stack ClusterIP Service: its AAAA over the harness's IPv4 transport.
const DUAL: &str = "apiVersion: v1
kind: Service
metadata: {name: dual, namespace: default}
spec:
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv4, IPv6]
  clusterIPs: [10.96.0.88, \"fd00:96::88\"]
  ports: [{port: 80}]
";

/// A Service applied and deleted during the test.
const LATE: &str = "apiVersion: v1
kind: Service
metadata: {name: late, namespace: default}
spec:
  clusterIP: 10.96.0.77
  ports: [{port: 80}]
";

/// A headless Service with 60 endpoints (no hostnames): its A answer is over 512 octets.
fn big() -> String {
    let mut s = String::from(
        "apiVersion: v1\nkind: Service\nmetadata: {name: big, namespace: default}\nspec:\n  clusterIP: None\n  ports: [{port: 80}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: big-1, namespace: default, labels: {kubernetes.io/service-name: big}}\naddressType: IPv4\nports: [{port: 80, protocol: TCP}]\nendpoints:\n",
    );
    for i in 1..=60 {
        s.push_str(&format!("- addresses: [10.244.9.{i}]\n"));
    }
    s
}

struct Cluster {
    prefix: String,
    rundir: PathBuf,
}

/// One cluster at a time: two cores do not run two switches well.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Root and the tools (installed when missing), or a loud skip (a failure under CI=true).
fn ready(test: &str) -> bool {
    podswitch_tests::ready_with_tools(
        test,
        &[
            "ip:iproute2",
            "ethtool:ethtool",
            "nginx:nginx-light",
            "curl:curl",
            "iperf3:iperf3",
            "ping:iputils-ping",
            "dig:bind9-dnsutils",
            "kdig:knot-dnsutils",
            "dnsmasq:dnsmasq-base",
        ],
        "root and real DNS clients",
    )
}

impl Cluster {
    /// cluster.sh up on AF_PACKET, with `extra` appended to the node's config.
    fn up(tag: &str, extra: &str) -> Cluster {
        let prefix = format!("pswd{}{tag}", std::process::id());
        let rundir = std::env::temp_dir().join(format!("{prefix}-run"));
        std::fs::create_dir_all(&rundir).expect("run dir");
        std::fs::write(rundir.join("extra.toml"), extra).expect("extra.toml");
        let c = Cluster { prefix, rundir };
        let o = c.script("cluster.sh", &["up", "-m", "afpacket"]);
        assert!(o.status.success(), "cluster up failed: {}{}", text(&o.stdout), text(&o.stderr));
        podswitch_tests::build_bin("control", "podswitchctl");
        c.apply(KUBE_DNS);
        c
    }

    fn script(&self, name: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(root().join("netns-scripts").join(name));
        cmd.arg(args[0]).args(["-p", &self.prefix, "-d"]).arg(&self.rundir);
        if name == "cluster.sh" {
            cmd.arg("-b").arg(podswitchd());
        }
        cmd.args(&args[1..]).output().expect("run netns script")
    }

    fn exec(&self, pod: &str, cmd: &[&str]) -> Output {
        let ns = format!("{}-{pod}", self.prefix);
        Command::new("ip").args(["netns", "exec", &ns]).args(cmd).output().expect("ip netns exec")
    }

    /// podswitchctl ARGS with `stdin`; (exit code, stdout + stderr).
    fn ctl(&self, args: &[&str], stdin: Option<&str>) -> (i32, String) {
        let (code, out, err) = podswitch_tests::podswitchctl(&self.rundir.join("podswitch.sock"), args, stdin);
        (code, out + &err)
    }

    fn apply(&self, manifest: &str) {
        let (code, out) = self.ctl(&["apply", "-f", "-"], Some(manifest));
        assert_eq!(code, 0, "apply failed: {out}\n{manifest}");
    }

    fn apply_file(&self, path: &str) {
        let p = root().join(path);
        let (code, out) = self.ctl(&["apply", "-f", p.to_str().expect("path")], None);
        assert_eq!(code, 0, "apply {path}: {out}");
    }

    /// `dig @DNS ARGS +noall +answer +authority +comments` from the client pod.
    fn dig(&self, args: &[&str]) -> Dig {
        let mut cmd = vec!["dig", "@", "+time=2", "+tries=1", "+noall", "+answer", "+authority", "+comments"];
        let at = format!("@{DNS}");
        cmd[1] = &at;
        cmd.extend_from_slice(args);
        let o = self.exec("client", &cmd);
        let out = text(&o.stdout);
        assert!(o.status.success(), "{cmd:?}: {out}{}\n{}", text(&o.stderr), self.log());
        Dig::parse(&out).unwrap_or_else(|| panic!("{cmd:?}: cannot read dig's output:\n{out}"))
    }

    /// `kdig @DNS +json ARGS` from the client pod (RFC 8427 JSON).
    fn kdig(&self, args: &[&str]) -> serde_json::Value {
        let at = format!("@{DNS}");
        let mut cmd = vec!["kdig", at.as_str(), "+json", "+time=2", "+retry=0"];
        cmd.extend_from_slice(args);
        let o = self.exec("client", &cmd);
        let out = text(&o.stdout);
        assert!(o.status.success(), "{cmd:?}: {out}{}", text(&o.stderr));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{cmd:?}: not JSON ({e}):\n{out}"))
    }

    /// Waits until `dig ARGS` gives `status` (a change applied takes one snapshot swap).
    fn dig_until(&self, args: &[&str], status: &str) -> Dig {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let d = self.dig(args);
            if d.status == status || Instant::now() > deadline {
                return d;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.rundir.join("podswitchd.err")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let o = self.script("dns.sh", &["down"]);
        if !o.status.success() {
            eprintln!("dns.sh down failed: {}", text(&o.stderr));
        }
        let o = self.script("cluster.sh", &["down"]);
        if !o.status.success() {
            eprintln!("cluster down failed: {}", text(&o.stderr));
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A resource record as dig prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rr {
    name: String,
    ttl: u32,
    class: String,
    rtype: String,
    rdata: String,
}

/// What `dig +noall +answer +authority +comments` printed.
#[derive(Debug, Default)]
struct Dig {
    status: String,
    flags: BTreeSet<String>,
    /// QUERY, ANSWER, AUTHORITY, ADDITIONAL counts of the header.
    counts: [u32; 4],
    /// The OPT record's UDP size, when there is one.
    edns_udp: Option<u32>,
    answer: Vec<Rr>,
    authority: Vec<Rr>,
    raw: String,
}

impl Dig {
    fn parse(out: &str) -> Option<Dig> {
        let mut d = Dig { raw: out.to_string(), ..Dig::default() };
        let mut section = "";
        for line in out.lines() {
            let l = line.trim();
            if let Some(rest) = l.strip_prefix(";; ->>HEADER<<-") {
                d.status = rest.split("status: ").nth(1)?.split(',').next()?.trim().to_string();
            } else if let Some(rest) = l.strip_prefix(";; flags:") {
                let (flags, counts) = rest.split_once(';')?;
                d.flags = flags.split_whitespace().map(str::to_string).collect();
                for (i, part) in counts.split(',').enumerate().take(4) {
                    d.counts[i] = part.split(':').nth(1)?.trim().parse().ok()?;
                }
            } else if let Some(rest) = l.strip_prefix("; EDNS:") {
                d.edns_udp = rest.split("udp: ").nth(1).and_then(|v| v.trim().parse().ok());
            } else if l.starts_with(";; ANSWER SECTION") {
                section = "answer";
            } else if l.starts_with(";; AUTHORITY SECTION") {
                section = "authority";
            } else if l.starts_with(";; ") && l.ends_with("SECTION:") {
                section = "";
            } else if !l.is_empty() && !l.starts_with(';') {
                let f: Vec<&str> = l.split_whitespace().collect();
                if f.len() < 5 {
                    continue;
                }
                let rr = Rr {
                    name: f[0].to_string(),
                    ttl: f[1].parse().ok()?,
                    class: f[2].to_string(),
                    rtype: f[3].to_string(),
                    rdata: f[4..].join(" "),
                };
                match section {
                    "answer" => d.answer.push(rr),
                    "authority" => d.authority.push(rr),
                    _ => {}
                }
            }
        }
        (!d.status.is_empty()).then_some(d)
    }

    fn flag(&self, f: &str) -> bool {
        self.flags.contains(f)
    }

    /// The answer's rdata of type `t`, sorted.
    fn rdata(&self, t: &str) -> Vec<String> {
        let mut v: Vec<String> = self.answer.iter().filter(|r| r.rtype == t).map(|r| r.rdata.clone()).collect();
        v.sort();
        v
    }

    /// A positive authoritative answer: NOERROR, qr aa, no TC, `n` answers of class IN and
    /// TTL 5, nothing in authority.
    fn positive(&self, n: usize) -> &Dig {
        assert_eq!(self.status, "NOERROR", "{}", self.raw);
        assert!(self.flag("qr") && self.flag("aa") && !self.flag("tc"), "flags {:?}: {}", self.flags, self.raw);
        assert_eq!(self.answer.len(), n, "{}", self.raw);
        assert_eq!(self.counts[1] as usize, n, "ANSWER count: {}", self.raw);
        assert!(self.answer.iter().all(|r| r.class == "IN" && r.ttl == 5), "class IN, TTL 5: {}", self.raw);
        assert!(self.authority.is_empty(), "{}", self.raw);
        self
    }

    /// A negative answer with `status`: qr aa, no answer, the zone's SOA in authority with
    /// TTL 5 (negative caching, RFC 2308).
    fn negative(&self, status: &str) {
        assert_eq!(self.status, status, "{}", self.raw);
        assert!(self.flag("qr") && self.flag("aa"), "flags {:?}: {}", self.flags, self.raw);
        assert!(self.answer.is_empty() && self.counts[1] == 0, "{}", self.raw);
        assert_eq!(self.authority.len(), 1, "{}", self.raw);
        let soa = &self.authority[0];
        assert_eq!(
            (soa.name.as_str(), soa.class.as_str(), soa.rtype.as_str(), soa.ttl),
            (ZONE, "IN", "SOA", 5),
            "{}",
            self.raw
        );
        // mname rname serial refresh retry expire minimum: the minimum is the negative TTL.
        let f: Vec<&str> = soa.rdata.split_whitespace().collect();
        assert_eq!(f.len(), 7, "{}", self.raw);
        assert_eq!(f[6], "5", "SOA minimum: {}", self.raw);
    }
}

/// The cluster IP podswitch gave an applied Service, as `get services` prints it.
fn cluster_ip(c: &Cluster, ns: &str, name: &str) -> String {
    let (code, out) = c.ctl(&["get", "services", "-n", ns, name, "-o", "json"], None);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("get services: {e}: {out}"));
    let ip = v.pointer("/spec/clusterIP").and_then(|v| v.as_str()).unwrap_or_else(|| panic!("clusterIP in {out}"));
    ip.to_string()
}

fn in_addr_arpa(ip: &str) -> String {
    let mut o: Vec<&str> = ip.split('.').collect();
    o.reverse();
    format!("{}.in-addr.arpa.", o.join("."))
}

/// The dataplane's answers, field by field, with dig and kdig; a name that follows apply and
/// delete; glibc resolving by short name, then curl.
#[test]
fn dns_dataplane_answers_dig_and_kdig() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !ready("dns_dataplane_answers_dig_and_kdig") {
        return;
    }
    let t0 = Instant::now();
    let c = Cluster::up("a", "");
    eprintln!("cluster up in {:?}", t0.elapsed());
    c.apply_file("configs/k8s/seed/service-clusterip.yaml");
    c.apply_file("configs/k8s/seed/service-externalname.yaml");
    c.apply(DB);
    c.apply(DUAL);
    c.apply(&big());
    let my_ip = cluster_ip(&c, "default", "my-service");
    let svc = "my-service.default.svc.cluster.local.";

    // A of a ClusterIP Service: one record, its cluster IP.
    let d = c.dig(&["my-service.default.svc.cluster.local", "A"]);
    d.positive(1);
    assert_eq!(
        d.answer[0],
        Rr { name: svc.into(), ttl: 5, class: "IN".into(), rtype: "A".into(), rdata: my_ip.clone() }
    );
    // RA: the node's resolver recurses for names outside the zone (switch-core dns/answer.rs
    // sets it on every answer).
    assert!(d.flag("ra"), "{}", d.raw);
    assert!(d.flag("rd"), "RD copied from the query: {}", d.raw);
    // The same with kdig's JSON (RFC 8427): another client's reading of the same bytes.
    let k = c.kdig(&["my-service.default.svc.cluster.local", "A"]);
    assert_eq!(k["RCODE"], 0, "{k}");
    assert_eq!((k["QR"].as_u64(), k["AA"].as_u64(), k["TC"].as_u64()), (Some(1), Some(1), Some(0)), "{k}");
    assert_eq!(k["ANCOUNT"], 1, "{k}");
    let rr = &k["answerRRs"][0];
    assert_eq!(rr["NAME"], svc, "{k}");
    assert_eq!((rr["TYPE"].as_u64(), rr["CLASS"].as_u64(), rr["TTL"].as_u64()), (Some(1), Some(1), Some(5)), "{k}");
    assert_eq!(rr["rdataA"], my_ip.as_str(), "{k}");

    // Case preserved in the answer's owner name (the question is copied).
    let d = c.dig(&["MY-SERVICE.default.svc.cluster.local", "A"]);
    d.positive(1);
    assert_eq!(d.answer[0].name, "MY-SERVICE.default.svc.cluster.local.", "{}", d.raw);
    assert_eq!(d.answer[0].rdata, my_ip);

    // AAAA of a single-stack IPv4 Service: NODATA (NOERROR, no answer, the SOA).
    c.dig(&["my-service.default.svc.cluster.local", "AAAA"]).negative("NOERROR");
    // A dual-stack Service: its IPv6 cluster IP as AAAA (asked over IPv4: the harness's pods
    // have no IPv6), its IPv4 one as A, and the IPv6 PTR.
    let d = c.dig(&["dual.default.svc.cluster.local", "AAAA"]);
    d.positive(1);
    assert_eq!(d.rdata("AAAA"), ["fd00:96::88"], "{}", d.raw);
    let d = c.dig(&["dual.default.svc.cluster.local", "A"]);
    d.positive(1);
    assert_eq!(d.rdata("A"), ["10.96.0.88"], "{}", d.raw);
    let k = c.kdig(&["dual.default.svc.cluster.local", "AAAA"]);
    assert_eq!(
        (k["answerRRs"][0]["TYPE"].as_u64(), k["answerRRs"][0]["rdataAAAA"].as_str()),
        (Some(28), Some("fd00:96::88")),
        "{k}"
    );
    let d = c.dig(&["-x", "fd00:96::88"]);
    d.positive(1);
    assert_eq!(d.rdata("PTR"), ["dual.default.svc.cluster.local."], "{}", d.raw);
    assert!(d.answer[0].name.ends_with(".6.9.0.0.0.0.d.f.ip6.arpa."), "{}", d.raw);
    // NXDOMAIN for a missing name, in dig and kdig.
    c.dig(&["nope.default.svc.cluster.local", "A"]).negative("NXDOMAIN");
    let k = c.kdig(&["nope.default.svc.cluster.local", "A"]);
    assert_eq!((k["RCODE"].as_u64(), k["AA"].as_u64(), k["ANCOUNT"].as_u64()), (Some(3), Some(1), Some(0)), "{k}");
    assert_eq!(k["authorityRRs"][0]["TYPE"], 6, "SOA: {k}");
    assert_eq!(k["authorityRRs"][0]["NAME"], ZONE, "{k}");
    assert_eq!(k["authorityRRs"][0]["TTL"], 5, "{k}");

    // PTR of the cluster IP.
    let d = c.dig(&["-x", &my_ip]);
    d.positive(1);
    assert_eq!((d.answer[0].name.clone(), d.answer[0].rtype.as_str()), (in_addr_arpa(&my_ip), "PTR"), "{}", d.raw);
    assert_eq!(d.answer[0].rdata, svc);

    // SRV of a named port (the harness's `web` Service, port `http` 80/TCP).
    let d = c.dig(&["_http._tcp.web.default.svc.cluster.local", "SRV"]);
    d.positive(1);
    assert_eq!(d.rdata("SRV"), ["0 100 80 web.default.svc.cluster.local."], "{}", d.raw);
    let k = c.kdig(&["_http._tcp.web.default.svc.cluster.local", "SRV"]);
    assert_eq!(k["answerRRs"][0]["TYPE"], 33, "{k}");

    // ExternalName: a CNAME to the external name, for a query of type A.
    let d = c.dig(&["my-service.prod.svc.cluster.local", "A"]);
    assert_eq!(d.status, "NOERROR", "{}", d.raw);
    assert!(d.flag("aa"), "{}", d.raw);
    let cname: Vec<&Rr> = d.answer.iter().filter(|r| r.rtype == "CNAME").collect();
    assert_eq!(cname.len(), 1, "{}", d.raw);
    assert_eq!(
        (cname[0].name.as_str(), cname[0].rdata.as_str(), cname[0].ttl),
        ("my-service.prod.svc.cluster.local.", "my.database.example.com.", 5),
        "{}",
        d.raw
    );

    // dns-version TXT.
    let d = c.dig(&["dns-version.cluster.local", "TXT"]);
    d.positive(1);
    assert_eq!(d.rdata("TXT"), ["\"1.1.0\""], "{}", d.raw);

    // Headless with hostnames: the ready endpoints (not db-2), each by its hostname, SRV per
    // endpoint, PTR to the hostname.
    let d = c.dig(&["db.default.svc.cluster.local", "A"]);
    d.positive(2);
    assert_eq!(d.rdata("A"), ["10.244.1.11", "10.244.1.12"], "{}", d.raw);
    let d = c.dig(&["db-1.db.default.svc.cluster.local", "A"]);
    d.positive(1);
    assert_eq!(d.rdata("A"), ["10.244.1.12"]);
    c.dig(&["db-2.db.default.svc.cluster.local", "A"]).negative("NXDOMAIN");
    let d = c.dig(&["_pg._tcp.db.default.svc.cluster.local", "SRV"]);
    d.positive(2);
    assert_eq!(
        d.rdata("SRV"),
        ["0 50 5432 db-0.db.default.svc.cluster.local.", "0 50 5432 db-1.db.default.svc.cluster.local."],
        "{}",
        d.raw
    );
    let d = c.dig(&["-x", "10.244.1.11"]);
    d.positive(1);
    assert_eq!(d.rdata("PTR"), ["db-0.db.default.svc.cluster.local."], "{}", d.raw);
    // Headless without hostnames: the dashed address names the endpoint.
    let d = c.dig(&["10-244-9-7.big.default.svc.cluster.local", "A"]);
    d.positive(1);
    assert_eq!(d.rdata("A"), ["10.244.9.7"]);

    // A pod by its dashed address.
    let d = c.dig(&["10-244-1-10.default.pod.cluster.local", "A"]);
    d.positive(1);
    assert_eq!(d.rdata("A"), ["10.244.1.10"], "{}", d.raw);

    // EDNS: an OPT in the answer when the query has one, none otherwise.
    let d = c.dig(&["+bufsize=1232", "my-service.default.svc.cluster.local", "A"]);
    d.positive(1);
    assert!(d.edns_udp.is_some(), "OPT echoed: {}", d.raw);
    assert_eq!(d.counts[3], 1, "the OPT is the one additional record: {}", d.raw);
    let d = c.dig(&["+noedns", "my-service.default.svc.cluster.local", "A"]);
    d.positive(1);
    assert_eq!((d.edns_udp, d.counts[3]), (None, 0), "no OPT without EDNS: {}", d.raw);

    // Truncation: 60 addresses do not fit in 512 octets without EDNS; with a 4096-octet
    // buffer they all come.
    let d = c.dig(&["+noedns", "+ignore", "big.default.svc.cluster.local", "A"]);
    assert_eq!(d.status, "NOERROR", "{}", d.raw);
    assert!(d.flag("tc") && d.flag("aa"), "TC over 512 octets: {}", d.raw);
    assert!(d.answer.len() < 60, "{}", d.raw);
    let d = c.dig(&["+bufsize=4096", "+ignore", "big.default.svc.cluster.local", "A"]);
    d.positive(60);
    let k = c.kdig(&["+notcp", "+ignore", "+noedns", "big.default.svc.cluster.local", "A"]);
    assert_eq!(k["TC"], 1, "{k}");

    // A name follows apply and delete.
    c.dig(&["late.default.svc.cluster.local", "A"]).negative("NXDOMAIN");
    c.apply(LATE);
    let d = c.dig_until(&["late.default.svc.cluster.local", "A"], "NOERROR");
    d.positive(1);
    assert_eq!(d.rdata("A"), ["10.96.0.77"]);
    let p = root().join("configs/k8s/seed/service-clusterip.yaml");
    let (code, out) = c.ctl(&["delete", "-f", p.to_str().expect("path")], None);
    assert_eq!(code, 0, "{out}");
    c.dig_until(&["my-service.default.svc.cluster.local", "A"], "NXDOMAIN").negative("NXDOMAIN");
    let (code, out) = c.ctl(&["delete", "-f", "-"], Some(LATE));
    assert_eq!(code, 0, "{out}");
    c.dig_until(&["late.default.svc.cluster.local", "A"], "NXDOMAIN").negative("NXDOMAIN");

    // A pod resolves by the short name through a kubelet-style resolv.conf (search path,
    // ndots:5), with glibc, then connects by name.
    let o = c.script("dns.sh", &["resolv", "client", DNS]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // ahostsv4: A only (a plain `hosts` lookup asks AAAA first, through every search domain
    // and then the bare name, which is outside the zone and the resolver's).
    let t = Instant::now();
    let o = c.exec("client", &["getent", "ahostsv4", "web"]);
    assert!(o.status.success(), "getent ahostsv4 web: {}{}", text(&o.stdout), text(&o.stderr));
    assert!(t.elapsed() < Duration::from_secs(2), "the first search domain answers: {:?}", t.elapsed());
    let out = text(&o.stdout);
    let first = out.lines().next().unwrap_or_default();
    assert!(first.starts_with("10.96.0.10 ") && first.contains("web.default.svc.cluster.local"), "{out}");
    let o = c.exec("client", &["curl", "-sS", "--max-time", "3", "http://web/"]);
    let body = text(&o.stdout);
    assert!(o.status.success() && body.trim().starts_with("web"), "curl http://web/: {body}{}", text(&o.stderr));

    eprintln!("done in {:?}", t0.elapsed());
    assert!(t0.elapsed() < Duration::from_secs(60), "took {:?}", t0.elapsed());
}

/// NEEDS THE DAEMON'S RESOLVER (TCP, forwarding, its cache), wired separately: the same A
/// query over TCP; a name outside the zone forwarded to an upstream dnsmasq in a namespace of
/// the test's (192.168.78.2, reached from the node namespace, never the internet); the same
/// name again after dnsmasq is stopped, from the resolver's cache.
#[test]
fn dns_resolver_tcp_and_forwarding() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !ready("dns_resolver_tcp_and_forwarding") {
        return;
    }
    let c = Cluster::up("r", "\n[dns]\nupstream = [\"192.168.78.2\"]\n");
    let o = c.script("dns.sh", &["upstream"]);
    assert!(o.status.success(), "dns.sh upstream: {}{}", text(&o.stdout), text(&o.stderr));

    // TCP: the same answer as over UDP, from the resolver.
    let d = c.dig(&["+tcp", "web.default.svc.cluster.local", "A"]);
    d.positive(1);
    assert_eq!(d.rdata("A"), ["10.96.0.10"], "{}\n{}", d.raw, c.log());
    let k = c.kdig(&["+tcp", "web.default.svc.cluster.local", "A"]);
    assert_eq!(k["answerRRs"][0]["rdataA"], "10.96.0.10", "{k}");

    // Outside the zone: forwarded to the upstream.
    let d = c.dig(&["outside.example.test", "A"]);
    assert_eq!(d.status, "NOERROR", "{}\n{}", d.raw, c.log());
    assert_eq!(d.rdata("A"), ["192.0.2.80"], "{}", d.raw);
    assert!(!d.flag("aa"), "a forwarded answer is not authoritative: {}", d.raw);
    let log = std::fs::read_to_string(c.rundir.join("dnsmasq.log")).unwrap_or_default();
    assert!(log.contains("outside.example.test"), "the upstream saw the query: {log}");

    // The upstream gone: the same name from the cache.
    let o = c.script("dns.sh", &["kill-upstream"]);
    assert!(o.status.success());
    let d = c.dig(&["outside.example.test", "A"]);
    assert_eq!(d.status, "NOERROR", "answered from the cache: {}\n{}", d.raw, c.log());
    assert_eq!(d.rdata("A"), ["192.0.2.80"], "{}", d.raw);
}
