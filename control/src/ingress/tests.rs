//! Tests of the Ingress checks and the nginx renderer.

use super::render::{render, Input, Options};
use super::validate;
use k8s_openapi::api::networking::v1::Ingress;

fn docs(yaml: &str) -> Vec<serde_json::Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).expect("yaml"))
        .filter(|v: &serde_json::Value| !v.is_null())
        .collect()
}

fn input(yaml: &str) -> Input {
    let mut i = Input::default();
    for v in docs(yaml) {
        match v["kind"].as_str().expect("kind") {
            "Ingress" => i.ingresses.push(serde_json::from_value(v).expect("ingress")),
            "IngressClass" => i.classes.push(serde_json::from_value(v).expect("class")),
            "Service" => i.services.push(serde_json::from_value(v).expect("service")),
            "EndpointSlice" => i.slices.push(serde_json::from_value(v).expect("slice")),
            "Secret" => i.secrets.push(serde_json::from_value(v).expect("secret")),
            k => panic!("kind {k}"),
        }
    }
    i
}

fn opts() -> Options {
    Options { prefix: "/p".into(), ..Options::default() }
}

fn check(yaml: &str) -> Result<Vec<String>, String> {
    let ing: Ingress = serde_json::from_value(docs(yaml).remove(0)).map_err(|e| e.to_string())?;
    let mut w = Vec::new();
    validate::ingress(&ing, &mut w, "Ingress default/x").map(|_| w)
}

/// Services web (port 80 named http -> 8080, two ready endpoints and one not ready), api
/// (port 8080, one endpoint), empty (no endpoints).
const BACKENDS: &str = "
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- {addresses: [10.244.1.12], conditions: {ready: true}}
- {addresses: [10.244.1.11]}
- {addresses: [10.244.1.13], conditions: {ready: false}}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: default}
spec: {ports: [{port: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: api-1, namespace: default, labels: {kubernetes.io/service-name: api}}
addressType: IPv4
ports: [{port: 9000}]
endpoints: [{addresses: [10.244.1.20]}]
---
apiVersion: v1
kind: Service
metadata: {name: empty, namespace: default}
spec: {ports: [{port: 80}]}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: podswitch, annotations: {ingressclass.kubernetes.io/is-default-class: \"true\"}}
spec: {controller: podswitch.io/ingress-nginx}
";

fn ing(name: &str, extra_meta: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, namespace: default{extra_meta}}}\nspec:\n{spec}\n"
    )
}

#[test]
fn seed_ingress_renders_a_server_with_an_upstream_of_ready_pods() {
    let seed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/k8s/seed/ingress.yaml"))
        .expect("seed");
    let svc = "---\napiVersion: v1\nkind: Service\nmetadata: {name: my-service}\nspec: {ports: [{port: 80, targetPort: 9376}]}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: my-service-1, labels: {kubernetes.io/service-name: my-service}}\naddressType: IPv4\nports: [{port: 9376}]\nendpoints: [{addresses: [10.244.1.5]}]\n";
    let r = render(&input(&format!("{BACKENDS}---\n{seed}{svc}")), &opts());
    assert_eq!(r.served, [("default".to_string(), "example-ingress".to_string())]);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert!(r.conf.contains("    upstream default_my-service_80 {\n        server 10.244.1.5:9376;\n"), "{}", r.conf);
    assert!(r.conf.contains("        server_name myapp.example.com;\n"), "{}", r.conf);
    assert!(
        r.conf.contains("        location \"/\" {\n            proxy_pass http://default_my-service_80;\n"),
        "{}",
        r.conf
    );
}

#[test]
fn paths_exact_prefix_and_implementation_specific() {
    let spec = "  rules:\n  - host: a.example.com\n    http:\n      paths:\n      - {path: /foo, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}\n      - {path: /foo, pathType: Exact, backend: {service: {name: api, port: {number: 8080}}}}\n      - {path: /bar/, pathType: Prefix, backend: {service: {name: api, port: {number: 8080}}}}\n      - {path: /img, pathType: ImplementationSpecific, backend: {service: {name: web, port: {name: http}}}}\n";
    let r = render(&input(&format!("{BACKENDS}{}", ing("a", "", spec))), &opts());
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let c = &r.conf;
    // Exact before Prefix: the Exact rule owns `= /foo`; the Prefix rule keeps `/foo/`.
    assert!(
        c.contains(
            "Exact /foo -> api:8080\n        location = \"/foo\" {\n            proxy_pass http://default_api_8080;"
        ),
        "{c}"
    );
    assert!(
        c.contains(
            "Prefix /foo -> web:80\n        location \"/foo/\" {\n            proxy_pass http://default_web_80;"
        ),
        "{c}"
    );
    // A trailing slash is ignored: /bar/ matches /bar too.
    assert!(c.contains("location = \"/bar\" {"), "{c}");
    assert!(c.contains("location \"/bar/\" {"), "{c}");
    assert!(c.contains("location \"/img\" {\n            proxy_pass http://default_web_http;"), "{c}");
    // Ready endpoints only, sorted; the Service port's name picks the slice's port.
    assert!(c.contains("upstream default_web_80 {\n        server 10.244.1.11:8080;\n        server 10.244.1.12:8080;\n        keepalive"), "{c}");
    assert!(c.contains("upstream default_api_8080 {\n        server 10.244.1.20:9000;"), "{c}");
    // Nothing for / : 404.
    assert!(c.contains("        location / {\n            return 404;"), "{c}");
}

#[test]
fn wildcard_hosts_match_one_label_and_default_backend_takes_the_rest() {
    let spec = "  defaultBackend: {service: {name: api, port: {number: 8080}}}\n  rules:\n  - host: \"*.example.com\"\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}\n  - host: b.example.com\n    http:\n      paths:\n      - {path: /x, pathType: Exact, backend: {service: {name: web, port: {number: 80}}}}\n";
    let r = render(&input(&format!("{BACKENDS}{}", ing("w", "", spec))), &opts());
    let c = &r.conf;
    assert!(c.contains("server_name \"~^[^.]+\\.example\\.com$\";"), "{c}");
    assert!(c.contains("server_name b.example.com;"), "{c}");
    // b.example.com: /x exact, everything else to the default backend.
    let b = &c[c.find("server_name b.example.com;").expect("b")..];
    assert!(
        b.contains(
            "defaultBackend -> api:8080\n        location \"/\" {\n            proxy_pass http://default_api_8080;"
        ),
        "{b}"
    );
}

#[test]
fn no_endpoints_or_no_service_is_503_and_reported() {
    let spec = "  rules:\n  - host: a.example.com\n    http:\n      paths:\n      - {path: /e, pathType: Prefix, backend: {service: {name: empty, port: {number: 80}}}}\n      - {path: /m, pathType: Prefix, backend: {service: {name: missing, port: {number: 80}}}}\n      - {path: /p, pathType: Prefix, backend: {service: {name: web, port: {number: 81}}}}\n";
    let r = render(&input(&format!("{BACKENDS}{}", ing("a", "", spec))), &opts());
    assert!(
        r.conf.contains("# Service default/empty:80 has no ready endpoints\n            return 503;"),
        "{}",
        r.conf
    );
    assert!(
        r.conf.contains("# Service default/missing not found (answered 503)\n            return 503;"),
        "{}",
        r.conf
    );
    assert_eq!(
        r.warnings,
        [
            "Ingress default/a: Service default/missing not found (answered 503)",
            "Ingress default/a: Service default/web has no port 81 (answered 503)"
        ]
    );
}

#[test]
fn classes_default_legacy_annotation_and_other_controllers() {
    let rule = "  rules:\n  - host: a.example.com\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}\n";
    let other = "---\napiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: traefik}\nspec: {controller: traefik.io/ingress-controller}\n";
    let objs = format!(
        "{BACKENDS}{other}{}{}{}{}{}",
        ing("none", "", rule),
        ing("named", "", &format!("  ingressClassName: podswitch\n{rule}")),
        ing("theirs", "", &format!("  ingressClassName: traefik\n{rule}")),
        ing("legacy", ", annotations: {kubernetes.io/ingress.class: podswitch}", rule),
        ing("legacy-other", ", annotations: {kubernetes.io/ingress.class: nginx}", rule),
    );
    let r = render(&input(&objs), &opts());
    let served: Vec<&str> = r.served.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(served, ["legacy", "named", "none"]);
    // Without a default IngressClass, an Ingress with no class is not ours.
    let no_default = objs.replace("ingressclass.kubernetes.io/is-default-class: \"true\"", "x: y");
    let r = render(&input(&no_default), &opts());
    let served: Vec<&str> = r.served.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(served, ["legacy", "named"]);
    let r = render(&input(&no_default), &Options { watch_without_class: true, ..opts() });
    assert_eq!(r.served.len(), 3);
}

const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";

fn tls_secret(name: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: default}}\ntype: kubernetes.io/tls\nstringData: {{tls.crt: {:?}, tls.key: {:?}}}\n",
        CERT, KEY
    )
}

#[test]
fn tls_hosts_get_their_certificate_and_http_redirects_unless_disabled() {
    let spec = "  tls:\n  - {hosts: [s.example.com], secretName: s-tls}\n  rules:\n  - host: s.example.com\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}\n";
    let r = render(&input(&format!("{BACKENDS}{}{}", tls_secret("s-tls"), ing("s", "", spec))), &opts());
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let (file, pem) = r.files.iter().next().expect("a certificate file");
    assert!(file.starts_with("certs/default_s-tls-") && file.ends_with(".pem"), "{file}");
    assert_eq!(*pem, format!("{CERT}{KEY}").into_bytes());
    let c = &r.conf;
    assert!(c.contains(&format!("listen 443 ssl;\n        ssl_certificate /p/{file};\n        ssl_certificate_key /p/{file};\n        server_name s.example.com;")), "{c}");
    // Another certificate is another file.
    let other = render(
        &input(&format!("{BACKENDS}{}{}", tls_secret("s-tls").replace("MIIB", "MIIC"), ing("s", "", spec))),
        &opts(),
    );
    assert_ne!(other.files.keys().next(), Some(file));
    assert!(
        c.contains("location \"/\" {\n            if ($scheme = http) { return 308 https://$host$request_uri; }"),
        "{c}"
    );
    let r = render(
        &input(&format!(
            "{BACKENDS}{}{}",
            tls_secret("s-tls"),
            ing("s", ", annotations: {nginx.ingress.kubernetes.io/ssl-redirect: \"false\"}", spec)
        )),
        &opts(),
    );
    assert!(!r.conf.contains("return 308"), "{}", r.conf);
    // A missing Secret: HTTP only, reported.
    let r = render(&input(&format!("{BACKENDS}{}", ing("s", "", spec))), &opts());
    assert!(!r.conf.contains("ssl_certificate "), "{}", r.conf);
    assert_eq!(
        r.warnings,
        ["Ingress default/s: TLS for s.example.com: Secret default/s-tls not found; the host is served over HTTP only"]
    );
}

#[test]
fn annotations_become_nginx_directives() {
    let spec = "  rules:\n  - host: a.example.com\n    http:\n      paths:\n      - {path: /app, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}\n";
    let meta = ", annotations: {nginx.ingress.kubernetes.io/rewrite-target: /, nginx.ingress.kubernetes.io/limit-rps: \"10\", nginx.ingress.kubernetes.io/proxy-body-size: 8m, nginx.ingress.kubernetes.io/backend-protocol: HTTPS, nginx.ingress.kubernetes.io/whitelist-source-range: \"192.168.0.0/16, 10.0.0.1\"}";
    let r = render(&input(&format!("{BACKENDS}{}", ing("a", meta, spec))), &opts());
    let c = &r.conf;
    assert!(c.contains("limit_req_zone $binary_remote_addr zone=default_a:1m rate=10r/s;"), "{c}");
    assert!(c.contains(
        "location \"/app/\" {\n            allow 192.168.0.0/16;\n            allow 10.0.0.1;\n            deny all;\n            limit_req zone=default_a burst=50 nodelay;\n            client_max_body_size 8m;\n            rewrite \"^/app/?(.*)$\" \"/$1\" break;\n            proxy_pass https://default_web_80;"
    ), "{c}");
}

#[test]
fn same_input_same_bytes_whatever_the_order() {
    let a = ing("a", "", "  rules:\n  - host: a.example.com\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}\n");
    let b = ing("b", "", "  rules:\n  - host: b.example.com\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: api, port: {number: 8080}}}}\n");
    let one = render(&input(&format!("{BACKENDS}{a}{b}")), &opts());
    let mut rev = input(&format!("{BACKENDS}{a}{b}"));
    rev.ingresses.reverse();
    rev.slices.reverse();
    assert_eq!(one, render(&rev, &opts()));
}

#[test]
fn a_conflicting_rule_is_reported_and_the_first_ingress_wins() {
    let rule = |svc: &str, port: u16| {
        format!("  rules:\n  - host: a.example.com\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: {svc}, port: {{number: {port}}}}}}}}}\n")
    };
    let r = render(
        &input(&format!("{BACKENDS}{}{}", ing("b", "", &rule("api", 8080)), ing("a", "", &rule("web", 80)))),
        &opts(),
    );
    assert!(r.conf.contains("default/a: Prefix / -> web:80"), "{}", r.conf);
    assert_eq!(r.warnings, ["Ingress default/b: host a.example.com: location  / is already default/a: Prefix / -> web:80; this rule is not used for it"]);
}

#[test]
fn bad_ingresses_are_refused_naming_the_field() {
    let path = |p: &str| {
        format!("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: x}}\nspec:\n  rules:\n  - host: a.example.com\n    http:\n      paths:\n      - {p}\n")
    };
    let cases: &[(String, &str)] = &[
        (path("{path: /, pathType: Foo, backend: {service: {name: web, port: {number: 80}}}}"),
         "spec.rules[0].http.paths[0].pathType: Unsupported value: \"Foo\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\""),
        (path("{path: /, backend: {service: {name: web, port: {number: 80}}}}"),
         "spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified"),
        (path("{path: foo, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}"),
         "spec.rules[0].http.paths[0].path: Invalid value: \"foo\": must be an absolute path"),
        (path("{path: /a//b, pathType: Exact, backend: {service: {name: web, port: {number: 80}}}}"),
         "spec.rules[0].http.paths[0].path: Invalid value: \"/a//b\": must not contain '//'"),
        (path("{path: \"/a;b\", pathType: ImplementationSpecific, backend: {service: {name: web, port: {number: 80}}}}"),
         "spec.rules[0].http.paths[0].path: Invalid value: \"/a;b\": podswitch-ingress accepts paths of the characters A-Za-z0-9 and -._~/%:@!$&()*+,= (nginx's configuration has no quoting for others)"),
        (path("{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80, name: http}}}}"),
         "spec.rules[0].http.paths[0].backend.service.port: Invalid value: cannot set both port name & port number"),
        (path("{path: /, pathType: Prefix, backend: {service: {name: web}}}"),
         "spec.rules[0].http.paths[0].backend.service.port: Invalid value: port name or number is required"),
        (path("{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}, resource: {kind: B, name: b}}}"),
         "spec.rules[0].http.paths[0].backend: Invalid value: cannot set both service and resource backends"),
        (path("{path: /, pathType: Prefix, backend: {}}"),
         "spec.rules[0].http.paths[0].backend: Required value: one backend (service or resource) must be specified"),
        (path("{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 70000}}}}"),
         "spec.rules[0].http.paths[0].backend.service.port.number: Invalid value: 70000: must be between 1 and 65535, inclusive"),
        (path("{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}").replace("a.example.com", "10.0.0.1"),
         "spec.rules[0].host: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address"),
        ("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: x}\nspec: {}\n".into(),
         "spec: Invalid value: either `defaultBackend` or `rules` must be specified"),
        ("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: x, annotations: {nginx.ingress.kubernetes.io/limit-rps: fast}}\nspec: {defaultBackend: {service: {name: web, port: {number: 80}}}}\n".into(),
         "metadata.annotations[nginx.ingress.kubernetes.io/limit-rps]: Invalid value: \"fast\": must be a whole number of requests per second, 1 to 1000000"),
    ];
    for (yaml, want) in cases {
        assert_eq!(check(yaml).expect_err(yaml), *want, "{yaml}");
    }
    let bad_host = path("{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}");
    for h in ["A.example.com", "*.*.example.com", "a.*.example.com", "-a.example.com", "a_b.example.com"] {
        let e = check(&bad_host.replace("a.example.com", &format!("\"{h}\""))).expect_err(h);
        assert!(e.starts_with(&format!("spec.rules[0].host: Invalid value: \"{h}\": ")), "{e}");
    }
    assert!(check(&bad_host.replace("a.example.com", "\"*.example.com\"")).is_ok());
}

#[test]
fn unsupported_annotations_are_warnings() {
    let w = check("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: x, annotations: {nginx.ingress.kubernetes.io/use-regex: \"true\", other.io/x: y}}\nspec: {defaultBackend: {service: {name: web, port: {number: 80}}}}\n").expect("valid");
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with("Ingress default/x: annotation nginx.ingress.kubernetes.io/use-regex is not supported by podswitch-ingress; ignored (supported: nginx.ingress.kubernetes.io/backend-protocol, "), "{w:?}");
}

#[test]
fn tls_secrets_need_pem_certificate_and_key_and_errors_hide_values() {
    let s = |data: &str| -> Result<(), String> {
        let v = docs(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: t}}\ntype: kubernetes.io/tls\nstringData: {data}\n"
        ))
        .remove(0);
        validate::secret(&serde_json::from_value(v).expect("secret"))
    };
    assert!(s(&format!("{{tls.crt: {CERT:?}, tls.key: {KEY:?}}}")).is_ok());
    assert_eq!(
        s(&format!("{{tls.crt: {CERT:?}}}")).expect_err("no key"),
        "data[tls.key]: Required value (a kubernetes.io/tls Secret holds tls.crt and tls.key)"
    );
    let e = s(&format!("{{tls.crt: {CERT:?}, tls.key: \"secret-material\"}}")).expect_err("not pem");
    assert_eq!(e, "data[tls.key]: Invalid value: <15 bytes>: not PEM (PRIVATE KEY----- missing)");
    assert!(!e.contains("secret-material"));
}

/// nginx itself accepts what the renderer writes (every location kind, annotation and
/// upstream), when Debian's nginx is installed (test-all.sh installs it; skipped loudly
/// otherwise, failed under CI=true).
#[test]
fn nginx_accepts_the_rendered_configuration() {
    let have = std::process::Command::new("nginx").arg("-v").output().is_ok_and(|o| o.status.success());
    if !have {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "nginx is not installed, and CI expects it");
        eprintln!(
            "SKIPPED nginx_accepts_the_rendered_configuration: nginx is not installed (apt-get install nginx-light)"
        );
        return;
    }
    let dir = std::env::temp_dir().join(format!("psw-ingress-render-{}", std::process::id()));
    for d in ["logs", "tmp"] {
        std::fs::create_dir_all(dir.join(d)).expect("dirs");
    }
    let spec = "  defaultBackend: {service: {name: api, port: {number: 8080}}}\n  rules:\n  - host: a.example.com\n    http:\n      paths:\n      - {path: /x, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}\n      - {path: /x, pathType: Exact, backend: {service: {name: api, port: {number: 8080}}}}\n      - {path: /i, pathType: ImplementationSpecific, backend: {service: {name: empty, port: {number: 80}}}}\n  - host: \"*.w.example.com\"\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}\n  - http:\n      paths:\n      - {path: /any, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}\n";
    let meta = ", annotations: {nginx.ingress.kubernetes.io/rewrite-target: /r, nginx.ingress.kubernetes.io/limit-rps: \"3\", nginx.ingress.kubernetes.io/proxy-body-size: 1m, nginx.ingress.kubernetes.io/whitelist-source-range: 10.0.0.0/8}";
    let opts = Options { prefix: dir.display().to_string(), http_port: 18080, https_port: 18443, ..Options::default() };
    let r = render(&input(&format!("{BACKENDS}{}", ing("a", meta, spec))), &opts);
    std::fs::write(dir.join("nginx.conf"), &r.conf).expect("conf");
    let o = std::process::Command::new("nginx")
        .arg("-t")
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .output()
        .expect("nginx -t");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(o.status.success(), "nginx -t: {}\n{}", String::from_utf8_lossy(&o.stderr), r.conf);
}

/// From a review: inputs that passed the checks but gave a configuration nginx refuses (which
/// would hold every later change back), and names that shared an upstream.
#[test]
fn values_nginx_would_refuse_are_refused_or_left_out_and_upstreams_never_collide() {
    let spec = "  rules:\n  - host: a.example.com\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}\n";
    let annotated = |k: &str, v: &str| {
        check(&ing("x", &format!(", annotations: {{nginx.ingress.kubernetes.io/{k}: \"{v}\"}}"), spec))
    };
    assert!(annotated("limit-rps", "4294967295").is_err());
    assert!(annotated("limit-rps", "1000000").is_ok());
    assert!(annotated("proxy-body-size", "99999999999g").is_err());
    assert!(annotated("proxy-body-size", "8589934591g").is_ok());
    assert!(annotated("whitelist-source-range", "10.0.0.0/+8").is_err());
    assert!(annotated("whitelist-source-range", "10.0.0.0/8").is_ok());
    // team-a/web and team/a-web, both port 80: two upstreams.
    let two = "
apiVersion: v1
kind: Service
metadata: {name: web, namespace: team-a}
spec: {ports: [{port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: team-a, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{port: 80}, {name: zero, port: 0}]
endpoints: [{addresses: [10.244.1.31]}]
---
apiVersion: v1
kind: Service
metadata: {name: a-web, namespace: team}
spec: {ports: [{port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: a-web-1, namespace: team, labels: {kubernetes.io/service-name: a-web}}
addressType: IPv4
ports: [{port: 0}]
endpoints: [{addresses: [10.244.1.32]}]
";
    let ingress = |ns: &str, svc: &str, host: &str| {
        format!("---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: i, namespace: {ns}}}\nspec:\n  ingressClassName: podswitch\n  rules:\n  - host: {host}\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}}}\n")
    };
    let text = format!(
        "{BACKENDS}---\n{two}{}{}",
        ingress("team-a", "web", "a.example.com"),
        ingress("team", "a-web", "b.example.com")
    );
    let r = render(&input(&text), &opts());
    assert!(r.conf.contains("upstream team-a_web_80 {\n        server 10.244.1.31:80;\n"), "{}", r.conf);
    assert!(!r.conf.contains(":0;"), "a port 0 endpoint is left out: {}", r.conf);
    assert!(!r.conf.contains("10.244.1.32"), "{}", r.conf);
    assert!(r.conf.contains("server_names_hash_bucket_size 512;"));
}
