//! Ingress end to end (issue 14): real nginx programmed by `podswitch-ingress`, in a pod
//! attached by the real `podswitch-cni`, exposed by a LoadBalancer Service of podswitchd;
//! curl from an outside client namespace through the LoadBalancer address
//! (`netns-scripts/ingress.sh`). Covers the seed's `example-ingress` applied unchanged, a
//! second host, Prefix, Exact and ImplementationSpecific paths, a wildcard host, a
//! defaultBackend, TLS with a certificate made by openssl (SNI) and the redirect to it, an
//! Ingress of another class ignored, a bad Ingress refused with a precise error, the
//! Ingress status, and changes to an Ingress while a bounded loop of requests runs (0
//! failures).
//!
//! Needs root and nginx, curl, openssl (installed with apt when missing); under CI=true their
//! absence fails the test. Everything lives in namespaces named `ing<pid>-*`, deleted by name
//! on the way out (also on failure).

use podswitch_tests::root;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

/// Root and the tools (installed when missing), or a loud skip (a failure under CI=true).
fn ready(test: &str) -> bool {
    podswitch_tests::ready_with_tools(
        test,
        &["ip:iproute2", "ethtool:ethtool", "nginx:nginx-light", "curl:curl", "openssl:openssl"],
        "root, nginx and curl",
    )
}

struct Harness {
    prefix: String,
    rundir: PathBuf,
    lb: String,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let o = self.script(&["down"]);
        if !o.status.success() {
            eprintln!("ingress.sh down: {}{}", text(&o.stdout), text(&o.stderr));
        }
    }
}

impl Harness {
    fn up() -> Harness {
        let bin = podswitch_tests::podswitchd();
        for (pkg, b) in
            [("control", "podswitchctl"), ("control", "podswitch-ingress"), ("podswitch-cni", "podswitch-cni")]
        {
            podswitch_tests::build_bin(pkg, b);
        }
        let prefix = format!("ing{}", std::process::id());
        let rundir = std::env::temp_dir().join(format!("{prefix}-run"));
        let mut h = Harness { prefix, rundir, lb: String::new() };
        let bindir = bin.parent().expect("bin dir").to_path_buf();
        let o = h.script(&["up", "-b", bindir.to_str().expect("path")]);
        assert!(o.status.success(), "ingress.sh up failed: {}{}", text(&o.stdout), text(&o.stderr));
        h.lb = std::fs::read_to_string(h.rundir.join("lb-ip")).expect("lb-ip").trim().to_string();
        assert!(h.lb.starts_with("192.168.77."), "LoadBalancer address: {:?}", h.lb);
        h
    }

    fn script(&self, args: &[&str]) -> Output {
        Command::new(root().join("netns-scripts/ingress.sh"))
            .arg(args[0])
            .args(["-p", &self.prefix, "-d"])
            .arg(&self.rundir)
            .args(&args[1..])
            .output()
            .expect("run ingress.sh")
    }

    /// podswitchctl ARGS with `stdin`; (exit code, stdout, stderr).
    fn ctl(&self, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
        podswitch_tests::podswitchctl(&self.rundir.join("podswitch.sock"), args, stdin)
    }

    fn apply(&self, manifest: &str) -> String {
        let (code, out, err) = self.ctl(&["apply", "-f", "-"], Some(manifest));
        assert_eq!(code, 0, "apply failed: {out}{err}\n{manifest}");
        out + &err
    }

    fn logs(&self) -> String {
        let f = |n: &str| std::fs::read_to_string(self.rundir.join(n)).unwrap_or_default();
        format!("--- podswitch-ingress:\n{}\n--- nginx error.log:\n{}", f("ingress.err"), f("ingress/logs/error.log"))
    }

    /// curl from the outside client; (exit code, body or `-w` output).
    fn curl(&self, args: &[&str]) -> (i32, String) {
        let o = Command::new("ip")
            .args(["netns", "exec", &format!("{}-out", self.prefix), "curl", "-sS", "--max-time", "3"])
            .args(args)
            .output()
            .expect("curl");
        (o.status.code().unwrap_or(-1), text(&o.stdout) + &text(&o.stderr))
    }

    /// GET http://HOST/PATH through the LoadBalancer address (curl --resolve): (status, body).
    fn get(&self, host: &str, path: &str) -> (String, String) {
        let resolve = format!("{host}:80:{}", self.lb);
        let (_, out) = self.curl(&["--resolve", &resolve, "-w", "\n%{http_code}", &format!("http://{host}{path}")]);
        let (body, code) = out.rsplit_once('\n').unwrap_or(("", &out));
        (code.to_string(), body.trim().to_string())
    }

    /// Waits until GET HOST PATH answers `want` (status and body's first word), or fails.
    fn wait_route(&self, host: &str, path: &str, want: &str) {
        let t0 = Instant::now();
        loop {
            let (code, body) = self.get(host, path);
            let got = format!("{code} {}", body.split_whitespace().next().unwrap_or(""));
            // "200 web" takes web1 or web2.
            if got.starts_with(want) {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(15),
                "http://{host}{path}: want `{want}`, got `{got}` ({body})\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn ingress_status(&self, name: &str) -> serde_json::Value {
        let (code, out, err) = self.ctl(&["get", "ingress", name, "-o", "json"], None);
        assert_eq!(code, 0, "{out}{err}");
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        v["status"]["loadBalancer"]["ingress"].clone()
    }

    fn reloads(&self) -> usize {
        std::fs::read_to_string(self.rundir.join("ingress.err")).unwrap_or_default().matches("nginx reloaded").count()
    }
}

const CLASSES: &str = "apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: podswitch
  annotations: {ingressclass.kubernetes.io/is-default-class: \"true\"}
spec: {controller: podswitch.io/ingress-nginx}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: other}
spec: {controller: example.com/other-controller}
";

/// A second host with every path type, a wildcard host and a defaultBackend.
const ROUTES: &str = "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: routes, namespace: default}
spec:
  ingressClassName: podswitch
  defaultBackend: {service: {name: my-service, port: {number: 80}}}
  rules:
  - host: api.example.com
    http:
      paths:
      - {path: /v1, pathType: Prefix, backend: {service: {name: api, port: {number: 8080}}}}
      - {path: /only, pathType: Exact, backend: {service: {name: api, port: {name: http}}}}
      - {path: /v1/web, pathType: Prefix, backend: {service: {name: my-service, port: {number: 80}}}}
      - {path: /is, pathType: ImplementationSpecific, backend: {service: {name: api, port: {number: 8080}}}}
  - host: \"*.wild.example.com\"
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: api, port: {number: 8080}}}}
";

const OTHER_CLASS: &str = "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: theirs, namespace: default}
spec:
  ingressClassName: other
  rules:
  - host: other.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: api, port: {number: 8080}}}}
";

const BAD: &str = "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: bad, namespace: default}
spec:
  rules:
  - host: bad.example.com
    http:
      paths:
      - {path: /, pathType: Foo, backend: {service: {name: api, port: {number: 8080}}}}
";

#[test]
fn ingress_through_a_loadbalancer_to_pods() {
    if !ready(module_path!()) {
        return;
    }
    let h = Harness::up();

    // The seed's Ingress, unchanged, with a default IngressClass of ours.
    h.apply(CLASSES);
    let seed = root().join("configs/k8s/seed/ingress.yaml");
    let (code, out, err) = h.ctl(&["apply", "-f", seed.to_str().expect("path")], None);
    assert_eq!(code, 0, "{out}{err}");
    h.wait_route("myapp.example.com", "/hello", "200 web");
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let (code, body) = h.get("myapp.example.com", "/hello");
        assert_eq!(code, "200", "{body}");
        assert!(body.ends_with(" /hello"), "{body}");
        seen.insert(body.split_whitespace().next().unwrap_or("").to_string());
    }
    assert_eq!(seen, ["web1".to_string(), "web2".to_string()].into(), "both of my-service's pods answer");
    // A host no rule names: nginx's catch-all answers 404.
    assert_eq!(h.get("nobody.example.com", "/").0, "404");

    // Status: the LoadBalancer Service's address.
    let t0 = Instant::now();
    while h.ingress_status("example-ingress") != serde_json::json!([{ "ip": h.lb }]) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "status: {}\n{}",
            h.ingress_status("example-ingress"),
            h.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, table, _) = h.ctl(&["get", "ingress"], None);
    assert!(table.contains(&format!("example-ingress   <none>   myapp.example.com   {}   80", h.lb)), "{table}");

    // A second host, each path type, a wildcard host and a defaultBackend.
    h.apply(ROUTES);
    h.wait_route("api.example.com", "/v1", "200 api1");
    for (path, want) in [
        ("/v1", "200 api1"),
        ("/v1/users", "200 api1"),
        // Prefix is element-wise: /v1x is not under /v1 (the defaultBackend answers).
        ("/v1x", "200 web"),
        // The longest prefix wins.
        ("/v1/web/page", "200 web"),
        ("/only", "200 api1"),
        // Exact is exact.
        ("/only/more", "200 web"),
        // ImplementationSpecific: nginx's own prefix.
        ("/isx", "200 api1"),
        ("/", "200 web"),
    ] {
        h.wait_route("api.example.com", path, want);
    }
    h.wait_route("a.wild.example.com", "/x", "200 api1");
    // One label only, as the Ingress API's wildcard.
    h.wait_route("b.a.wild.example.com", "/x", "404");
    h.wait_route("wild.example.com", "/x", "404");

    // TLS with a certificate made by openssl; HTTP redirects to it.
    let dir = h.rundir.join("tls");
    std::fs::create_dir_all(&dir).expect("tls dir");
    let (crt, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let o = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=secure.example.com"])
        .args(["-addext", "subjectAltName=DNS:secure.example.com", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl");
    assert!(o.status.success(), "openssl: {}", text(&o.stderr));
    let secret = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "secure-tls", "namespace": "default"},
        "stringData": {
            "tls.crt": std::fs::read_to_string(&crt).expect("crt"),
            "tls.key": std::fs::read_to_string(&key).expect("key"),
        }
    });
    h.apply(&secret.to_string());
    // get prints the Secret's type and key count, as kubectl does.
    let (_, table, _) = h.ctl(&["get", "secrets"], None);
    assert!(table.contains("secure-tls   kubernetes.io/tls   2"), "{table}");
    h.apply(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: secure, namespace: default}
spec:
  tls: [{hosts: [secure.example.com], secretName: secure-tls}]
  rules:
  - host: secure.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: api, port: {number: 8080}}}}
",
    );
    let resolve443 = format!("secure.example.com:443:{}", h.lb);
    let t0 = Instant::now();
    loop {
        let (code, body) = h.curl(&[
            "--cacert",
            crt.to_str().expect("path"),
            "--resolve",
            &resolve443,
            "https://secure.example.com/s",
        ]);
        if code == 0 && body.trim() == "api1 /s" {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(15), "https: {code} {body}\n{}", h.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, out) = h.curl(&[
        "--resolve",
        &format!("secure.example.com:80:{}", h.lb),
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
        "http://secure.example.com/s?q=1",
    ]);
    assert_eq!(out, "308 https://secure.example.com/s?q=1");
    // -L follows it over TLS.
    let (code, body) = h.curl(&[
        "-L",
        "--cacert",
        crt.to_str().expect("path"),
        "--resolve",
        &format!("secure.example.com:80:{}", h.lb),
        "--resolve",
        &resolve443,
        "http://secure.example.com/follow",
    ]);
    assert_eq!((code, body.trim()), (0, "api1 /follow"));
    // A new certificate in the Secret: served after a reload, the old file removed.
    let (crt2, key2) = (dir.join("tls2.crt"), dir.join("tls2.key"));
    let o = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=secure.example.com"])
        .args(["-addext", "subjectAltName=DNS:secure.example.com", "-keyout"])
        .arg(&key2)
        .arg("-out")
        .arg(&crt2)
        .output()
        .expect("openssl");
    assert!(o.status.success(), "openssl: {}", text(&o.stderr));
    let mut secret2 = secret.clone();
    secret2["stringData"]["tls.crt"] = std::fs::read_to_string(&crt2).expect("crt").into();
    secret2["stringData"]["tls.key"] = std::fs::read_to_string(&key2).expect("key").into();
    h.apply(&secret2.to_string());
    let t0 = Instant::now();
    loop {
        let (code, body) = h.curl(&[
            "--cacert",
            crt2.to_str().expect("path"),
            "--resolve",
            &resolve443,
            "https://secure.example.com/r",
        ]);
        if code == 0 && body.trim() == "api1 /r" {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(15), "https with the new certificate: {code} {body}\n{}", h.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    let certs: Vec<_> = std::fs::read_dir(h.rundir.join("ingress/certs")).expect("certs").flatten().collect();
    assert_eq!(certs.len(), 1, "only the certificate in use stays: {certs:?}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = certs[0].metadata().expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "a certificate file with its key is mode 0600");
    }

    // A name with no certificate: the handshake is refused (no default certificate given out).
    let (code, _) =
        h.curl(&["-k", "--resolve", &format!("nobody.example.com:443:{}", h.lb), "https://nobody.example.com/"]);
    assert_ne!(code, 0, "TLS for an unknown name must fail");

    // Annotations nginx does natively, through real nginx.
    h.apply(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: annotated
  namespace: default
  annotations:
    nginx.ingress.kubernetes.io/rewrite-target: /
    nginx.ingress.kubernetes.io/limit-rps: \"1\"
    nginx.ingress.kubernetes.io/proxy-body-size: 1k
spec:
  rules:
  - host: rw.example.com
    http:
      paths:
      - {path: /app, pathType: Prefix, backend: {service: {name: api, port: {number: 8080}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: walled
  namespace: default
  annotations: {nginx.ingress.kubernetes.io/whitelist-source-range: 10.0.0.0/8}
spec:
  rules:
  - host: walled.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: api, port: {number: 8080}}}}
",
    );
    // rewrite-target: /app/x reaches the pod as /x.
    h.wait_route("rw.example.com", "/app/x", "200 api1");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(h.get("rw.example.com", "/app/deep/er"), ("200".into(), "api1 /deep/er".into()));
    // proxy-body-size: a body over 1k is refused with 413.
    let (_, out) = h.curl(&[
        "--resolve",
        &format!("rw.example.com:80:{}", h.lb),
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--data-binary",
        &"x".repeat(4096),
        "http://rw.example.com/app/post",
    ]);
    assert_eq!(out, "413");
    // limit-rps 1 (burst 5): 20 requests at once from one client, some refused with 503.
    let urls: Vec<String> = (0..20).map(|_| "http://rw.example.com/app/burst".to_string()).collect();
    let mut args =
        vec!["--resolve".to_string(), format!("rw.example.com:80:{}", h.lb), "-o".into(), "/dev/null".into()];
    args.extend(["-w".into(), "%{http_code}\n".into()]);
    for u in &urls {
        args.push(u.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_, out) = h.curl(&args);
    let limited = out.lines().filter(|l| *l == "503").count();
    assert!(limited >= 10 && out.lines().filter(|l| *l == "200").count() >= 1, "limit-rps: {out}");
    // whitelist-source-range: the outside client is not in 10.0.0.0/8: 403.
    h.wait_route("walled.example.com", "/", "403");

    // An Ingress of another class: stored, not served, no status.
    h.apply(OTHER_CLASS);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(h.get("other.example.com", "/").0, "404");
    assert!(h.ingress_status("theirs").is_null(), "{}", h.ingress_status("theirs"));

    // A bad Ingress: refused with the field and the reason; nothing stored.
    let (code, out, err) = h.ctl(&["apply", "-f", "-"], Some(BAD));
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(
            "document 1 (Ingress default/bad): spec.rules[0].http.paths[0].pathType: Unsupported value: \"Foo\": \
             supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\""
        ),
        "{err}"
    );
    let (code, _, err) = h.ctl(&["get", "ingress", "bad"], None);
    assert_ne!(code, 0, "{err}");
    // An unsupported ingress-nginx annotation is applied with a warning.
    let warned = h.apply(&OTHER_CLASS.replace(
        "name: theirs, namespace: default",
        "name: theirs, namespace: default, annotations: {nginx.ingress.kubernetes.io/use-regex: \"true\"}",
    ));
    assert!(
        warned.contains("annotation nginx.ingress.kubernetes.io/use-regex is not supported by podswitch-ingress"),
        "{warned}"
    );

    // Changes to an Ingress while a bounded loop of requests runs: no request fails.
    let reloads = h.reloads();
    let n = 400;
    let script = format!(
        "fail=0; for i in $(seq {n}); do c=$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 --resolve myapp.example.com:80:{lb} http://myapp.example.com/loop) || true; [ \"$c\" = 200 ] || {{ fail=$((fail+1)); echo \"request $i: $c\" >&2; }}; done; echo $fail",
        lb = h.lb
    );
    let out_ns = format!("{}-out", h.prefix);
    let looper = std::thread::spawn(move || {
        let o = Command::new("ip").args(["netns", "exec", &out_ns, "bash", "-c", &script]).output().expect("loop");
        (text(&o.stdout).trim().to_string(), text(&o.stderr))
    });
    for i in 0..4 {
        std::thread::sleep(Duration::from_millis(400));
        let seed = std::fs::read_to_string(root().join("configs/k8s/seed/ingress.yaml")).expect("seed");
        let changed = format!(
            "{seed}      - path: /new{i}\n        pathType: Exact\n        backend:\n          service:\n            name: api\n            port:\n              number: 8080\n"
        );
        h.apply(&changed);
    }
    let t0 = Instant::now();
    let (failed, why) = looper.join().expect("loop thread");
    eprintln!(
        "{n} requests during {} nginx reloads, {failed} failed (loop ended {:?} after the last change)",
        h.reloads() - reloads,
        t0.elapsed()
    );
    assert_eq!(failed, "0", "requests failed during reloads: {why}\n{}", h.logs());
    assert!(h.reloads() >= reloads + 2, "nginx was reloaded during the loop ({} -> {})", reloads, h.reloads());
    h.wait_route("myapp.example.com", "/new3", "200 api1");
    // Unchanged objects give the same configuration: no reload.
    let before = h.reloads();
    h.apply(ROUTES);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(h.reloads(), before, "re-applying an unchanged Ingress reloads nothing");
    // The status a user's apply does not carry is kept.
    assert_eq!(h.ingress_status("example-ingress"), serde_json::json!([{ "ip": h.lb }]));
}
