use super::*;
use crate::config::PortRef;

fn yaml(s: &str) -> Result<Parsed, ManifestError> {
    parse(Format::Yaml, "test.yaml", s, "node-1", Validation::Strict)
}

const ALL_KINDS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {team: blue}}
---
apiVersion: v1
kind: Pod
metadata:
  name: a
  namespace: x
  labels: {pod: a}
  annotations: {podswitch.io/port: pa, podswitch.io/mac: "02:00:00:00:00:0a"}
  uid: 1234
spec:
  nodeName: node-1
  restartPolicy: Always
  containers:
  - name: c
    image: nginx
    ports:
    - {name: http, containerPort: 8080}
    - {name: dns, containerPort: 53, protocol: UDP}
status:
  phase: Running
  podIP: 10.244.1.5
  podIPs: [{ip: 10.244.1.5}, {ip: "fd00:244:1::5"}]
  conditions: [{type: Ready, status: "False"}]
---
apiVersion: v1
kind: Pod
metadata: {name: far, namespace: x}
spec: {nodeName: node-2}
status: {podIP: 10.244.2.9}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: x}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10, "fd00:96::10"]
  selector: {pod: a}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}
  externalTrafficPolicy: Local
  loadBalancerSourceRanges: [192.0.2.0/24]
  ports:
  - {name: http, port: 80, targetPort: http, nodePort: 30080}
  - {name: dns, port: 53, protocol: UDP, targetPort: 53, nodePort: 30053}
  healthCheckNodePort: 32000
  frobnicate: true
status:
  loadBalancer:
    ingress: [{ip: 203.0.113.7}, {hostname: lb.example}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc
  namespace: x
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- addresses: [10.244.1.5]
  conditions: {ready: false, serving: true, terminating: true}
  nodeName: node-1
  targetRef: {kind: Pod, name: a, namespace: x}
- addresses: [10.244.2.9]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from:
    - namespaceSelector: {matchExpressions: [{key: team, operator: In, values: [blue]}]}
      podSelector: {matchLabels: {pod: b}}
    - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}
    ports:
    - {port: http}
    - {protocol: UDP, port: 1000, endPort: 2000}
  egress:
  - to: [{podSelector: {}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: x}
"#;

#[test]
fn reads_every_kind_with_kubernetes_defaults() {
    let p = parse(Format::Yaml, "test.yaml", ALL_KINDS, "node-1", Validation::Warn).expect("parses");
    let keys: Vec<String> = p.objects.iter().map(|o| o.key().to_string()).collect();
    assert_eq!(
        keys,
        ["Namespace x", "Pod x/a", "Pod x/far", "Service x/web", "EndpointSlice x/web-abc", "NetworkPolicy x/allow"]
    );
    let Object::Pod(a) = &p.objects[1] else { panic!() };
    assert_eq!(a.port.as_deref(), Some("pa"));
    assert_eq!(a.ips, ["10.244.1.5", "fd00:244:1::5"]);
    assert!(!a.ready, "the Ready condition is read");
    assert_eq!(a.container_ports[1].protocol, "UDP");
    let Object::Pod(far) = &p.objects[2] else { panic!() };
    assert_eq!((far.node.as_deref(), far.port.as_deref()), (Some("node-2"), None));
    let Object::Service(s) = &p.objects[3] else { panic!() };
    assert_eq!(s.cluster_ips, ["10.96.0.10", "fd00:96::10"]);
    assert_eq!(s.load_balancer_ips, ["203.0.113.7"]);
    assert_eq!(s.affinity_timeout_seconds, Some(60));
    assert_eq!(s.external_traffic_policy, "Local");
    assert_eq!(s.ports[0].target_port, Some(PortRef::Name("http".into())));
    assert_eq!(s.ports[1].target_port, Some(PortRef::Number(53)));
    assert_eq!(s.ports[1].node_port, Some(30053));
    let Object::Slice(sl) = &p.objects[4] else { panic!() };
    assert_eq!(sl.service, "web");
    assert!(!sl.endpoints[0].ready && sl.endpoints[0].serving && sl.endpoints[0].terminating);
    assert!(sl.endpoints[1].ready && sl.endpoints[1].serving && !sl.endpoints[1].terminating, "nil conditions");
    assert_eq!(sl.endpoints[0].ports.get("http"), Some(&8080));
    assert_eq!(sl.endpoints[0].pod.as_deref(), Some("a"));
    let Object::NetworkPolicy(np) = &p.objects[5] else { panic!() };
    assert_eq!(np.ingress[0].from.len(), 2);
    assert!(np.ingress[0].from[0].namespace_selector.is_some() && np.ingress[0].from[0].pod_selector.is_some());
    assert_eq!(np.ingress[0].ports[1].end_port, Some(2000));
    assert_eq!(np.ingress[0].ports[0].port, Some(PortRef::Name("http".into())));
    // Unknown fields of the implemented specs and unknown kinds are reported, metadata is not.
    let w = p.warnings.join("\n");
    assert!(w.contains("test.yaml: document 4 (Service x/web): unknown field \"spec.frobnicate\""), "{w}");
    assert!(w.contains("lb.example"), "{w}");
    assert!(w.contains("kind Deployment ignored"), "{w}");
    assert!(!w.contains("uid") && !w.contains("restartPolicy") && !w.contains("healthCheckNodePort"), "{w}");
}

#[test]
fn a_list_is_read_item_by_item() {
    let s = r#"{"apiVersion":"v1","kind":"List","items":[
        {"apiVersion":"v1","kind":"Namespace","metadata":{"name":"y"}},
        {"apiVersion":"v1","kind":"Namespace","metadata":{"name":"z"}}]}"#;
    let p = parse(Format::Json, "l.json", s, "n", Validation::Strict).expect("parses");
    assert_eq!(p.objects.len(), 2);
}

#[test]
fn endpoints_objects_carry_not_ready_addresses() {
    let p = yaml(
        "apiVersion: v1\nkind: Endpoints\nmetadata: {name: web}\nsubsets:\n- addresses: [{ip: 10.0.0.1}]\n  notReadyAddresses: [{ip: 10.0.0.2}]\n  ports: [{port: 80}]\n",
    )
    .expect("parses");
    let Object::Slice(s) = &p.objects[0] else { panic!() };
    assert_eq!(s.service, "web");
    assert_eq!(s.endpoints.len(), 2);
    assert!(s.endpoints[0].ready && !s.endpoints[1].ready);
    assert_eq!(s.endpoints[0].ports.get(""), Some(&80));
}

fn refused(s: &str) -> String {
    yaml(s).expect_err("must be refused").to_string()
}

#[test]
fn bad_manifests_say_where_and_why() {
    let cases: &[(&str, &str)] = &[
        ("kind: Service\nmetadata: {name: a}\n", "needs apiVersion and kind"),
        ("apiVersion: v2\nkind: Service\nmetadata: {name: a}\n", "apiVersion 'v2' is not served for Service"),
        ("apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80}]}\n", "spec.clusterIP is empty and no allocator ran"),
        ("apiVersion: v1\nkind: Service\nmetadata: {name: Bad_Name}\nspec: {clusterIP: None}\n", "not a valid DNS label"),
        ("apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {clusterIP: 10.0.0.1, ports: [{port: 80}, {port: 81}]}\n", "every port needs a name"),
        ("apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {clusterIP: 10.0.0.1, ports: [{port: 99999}]}\n", "document 1 (Service default/a)"),
        ("apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {clusterIP: 10.0.0.1, ports: [{port: 80, targetPort: 0}]}\n", "targetPort: 0 is outside 1-65535"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {podswitch.io/port: p1, podswitch.io/mac: \"02:00:00:00:00:09\"}}\nspec: {}\n", "needs the pod's addresses"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {podswitch.io/port: p1}}\nspec: {}\nstatus: {podIP: 10.0.0.1}\n", "needs podswitch.io/mac"),
        ("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s}\naddressType: IPv4\n", "kubernetes.io/service-name"),
        ("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, labels: {kubernetes.io/service-name: a}}\naddressType: IPv4\nendpoints: [{addresses: [\"fd00::1\"]}]\n", "is not an IPv4 address"),
        ("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {ingress: [{ports: [{port: 80, endPort: 70000}]}]}\n", "endPort: 70000"),
        ("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {podSelector: \"app\"}\n", "invalid type: string"),
        ("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n- [unbalanced\n", "document 2"),
        ("just a string\n", "is not a mapping"),
    ];
    for (input, want) in cases {
        let e = refused(input);
        assert!(e.contains(want), "{input:?}: got {e:?}, want {want:?}");
        assert!(e.starts_with("test.yaml: "), "{e}");
    }
}

#[test]
fn toml_objects_and_their_errors() {
    let p = parse(
        Format::Toml,
        "o.toml",
        "[[services]]\nname = \"s\"\ncluster_ips = [\"10.96.0.1\"]\nports = [{ port = 80 }]\n\n[[routes]]\nprefix = \"10.9.0.0/16\"\nvia = \"blackhole\"\n",
        "n",
        Validation::Strict,
    )
    .expect("parses");
    assert_eq!(p.objects.len(), 2);
    let e = parse(Format::Toml, "o.toml", "[node]\nname = \"x\"\n", "n", Validation::Strict)
        .expect_err("node is file-only");
    assert!(e.to_string().contains("only through the daemon's config file"), "{e}");
    let e = parse(Format::Toml, "o.toml", "[[services]]\nname = 1\n", "n", Validation::Strict).expect_err("bad type");
    assert!(e.to_string().contains("line 2"), "{e}");
}

#[test]
fn kinds_parse_by_kubectl_names() {
    for (s, k) in
        [("svc", Kind::Service), ("netpol", Kind::NetworkPolicy), ("eps", Kind::EndpointSlice), ("ns", Kind::Namespace)]
    {
        assert_eq!(Kind::parse(s), Some(k));
    }
    assert_eq!(Kind::parse("deployments"), None);
}

/// Issue 9 item 12: by default a field the Kubernetes schema does not know is an error naming
/// the file, the document and the field's path, and nothing is read; `warn` and `ignore` opt
/// out, as kubectl's `--validate`.
#[test]
fn unknown_fields_and_duplicate_keys_are_refused_by_default() {
    let typo = "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector:\n    matchLabel: {app: web}\n";
    let e =
        parse(Format::Yaml, "policy.yaml", typo, "node-1", Validation::Strict).expect_err("typo refused").to_string();
    assert!(
        e.starts_with("policy.yaml: document 2 (NetworkPolicy x/p): unknown field \"spec.podSelector.matchLabel\""),
        "{e}"
    );
    let w = parse(Format::Yaml, "policy.yaml", typo, "node-1", Validation::Warn).expect("warn applies");
    assert_eq!(w.objects.len(), 2);
    assert!(w.warnings.iter().any(|w| w.contains("spec.podSelector.matchLabel")), "{:?}", w.warnings);
    let i = parse(Format::Yaml, "policy.yaml", typo, "node-1", Validation::Ignore).expect("ignore applies");
    assert!(i.warnings.iter().all(|w| !w.contains("matchLabel")), "{:?}", i.warnings);
    // Deep in a list, and in status and metadata too.
    for (doc, path) in [
        ("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  clusterIP: 10.96.0.1\n  ports: [{port: 80, nodeport: 30080}]\n", "spec.ports[0].nodeport"),
        // After a value of the wrong type (uid is a string) the decoder cannot see the rest.
        ("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, uid: 1234}\nspec:\n  podSelector: {matchLabel: {a: b}}\n", ""),
        ("apiVersion: v1\nkind: Namespace\nmetadata: {name: x, label: {a: b}}\n", "metadata.label"),
    ] {
        let e = yaml(doc).expect_err("refused").to_string();
        if path.is_empty() {
            assert!(e.contains("does not fit the Kubernetes API schema of networking.k8s.io/v1 NetworkPolicy"), "{e}");
        } else {
            assert!(e.contains(&format!("unknown field \"{path}\"")), "{e}");
        }
    }
    // Duplicate keys: YAML and JSON.
    let dup = "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\nmetadata: {name: y}\n";
    let e = yaml(dup).expect_err("duplicate refused").to_string();
    assert!(e.contains("duplicate key `metadata`") && e.contains("document 1"), "{e}");
    let e = parse(
        Format::Json,
        "d.json",
        r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"x","name":"y"}}"#,
        "n",
        Validation::Strict,
    )
    .expect_err("duplicate refused")
    .to_string();
    assert!(e.contains("duplicate key `name`") && e.starts_with("d.json: line 1"), "{e}");
    assert!(parse(Format::Yaml, "t", dup, "n", Validation::Warn).is_ok());
}

/// Issue 9 item 13: every skipped document is listed with its file, index and reason.
#[test]
fn skipped_documents_are_listed_with_file_index_and_reason() {
    let s = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {nodeName: node-2}\n";
    let p = parse(Format::Yaml, "app.yaml", s, "node-1", Validation::Strict).expect("parses");
    assert_eq!(p.skipped.len(), 1, "{:?}", p.skipped);
    assert!(
        p.skipped[0].starts_with("app.yaml: document 1 (Deployment default/web): kind Deployment ignored"),
        "{:?}",
        p.skipped
    );
    assert_eq!(p.objects.len(), 1, "a pod without an IP is kept");
    assert!(p.warnings.iter().any(|w| w.contains("(Pod default/p): has no IP yet")), "{:?}", p.warnings);
}

/// Issue 10: a Pod as `kubectl run web --image=x --labels=app=web --dry-run=client -o yaml`
/// writes it applies unchanged and waits for its sandbox.
#[test]
fn pods_as_kubectl_writes_them_are_kept_until_attached() {
    let s = "apiVersion: v1\nkind: Pod\nmetadata:\n  creationTimestamp: null\n  labels:\n    app: web\n  name: web\nspec:\n  containers:\n  - image: x\n    name: web\n    resources: {}\n  dnsPolicy: ClusterFirst\n  restartPolicy: Always\nstatus: {}\n";
    let p = parse(Format::Yaml, "web.yaml", s, "node-1", Validation::Strict).expect("parses");
    assert_eq!(p.objects.len(), 1, "{:?}", p.skipped);
    let Object::Pod(pod) = &p.objects[0] else { panic!("a pod") };
    assert!(pod.ips.is_empty() && pod.port.is_none() && pod.node.is_none());
    assert_eq!(pod.labels.get("app").map(String::as_str), Some("web"));
}

/// The kube-dns ConfigMap the cluster DNS reads (`hosts` is podswitch's).
const KUBE_DNS: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kube-dns, namespace: kube-system, labels: {addonmanager.kubernetes.io/mode: EnsureExists}}\ndata:\n  stubDomains: '{\"acme.local\": [\"1.2.3.4\"]}'\n  upstreamNameservers: '[\"8.8.8.8\", \"8.8.4.4\"]'\n  hosts: |\n    10.0.0.1 db.example db\n";

#[test]
fn config_maps_are_read_with_their_data() {
    for s in ["configmap", "configmaps", "cm", "ConfigMap"] {
        assert_eq!(Kind::parse(s), Some(Kind::ConfigMap), "{s}");
    }
    assert!(Kind::ConfigMap.namespaced() && Kind::ConfigMap.cluster_wide());
    let p = yaml(KUBE_DNS).expect("parses");
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let [Object::ConfigMap(c)] = &p.objects[..] else { panic!("one ConfigMap: {:?}", p.objects) };
    assert_eq!((c.namespace.as_str(), c.name.as_str()), ("kube-system", "kube-dns"));
    assert_eq!(c.data["upstreamNameservers"], "[\"8.8.8.8\", \"8.8.4.4\"]");
    assert_eq!(c.data["stubDomains"], "{\"acme.local\": [\"1.2.3.4\"]}");
    assert_eq!(c.data["hosts"], "10.0.0.1 db.example db\n");
    assert_eq!(p.manifests.len(), 1, "the Kubernetes form is kept, labels and all");
    assert_eq!(p.manifests[0].1["metadata"]["labels"]["addonmanager.kubernetes.io/mode"], "EnsureExists");
    // JSON, the default namespace, no data, `immutable`.
    let j = parse(
        Format::Json,
        "cm.json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"empty"},"data":null,"immutable":true}"#,
        "node-1",
        Validation::Strict,
    )
    .expect("parses");
    let [Object::ConfigMap(c)] = &j.objects[..] else { panic!("one ConfigMap") };
    assert_eq!((c.namespace.as_str(), c.data.len()), ("default", 0));
    // binaryData: ignored with a warning naming its keys.
    let b = yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\ndata: {a: x}\nbinaryData: {blob: AAEC}\n")
        .expect("parses");
    let [Object::ConfigMap(c)] = &b.objects[..] else { panic!("one ConfigMap") };
    assert_eq!(c.data.keys().collect::<Vec<_>>(), ["a"]);
    assert!(
        b.warnings.iter().any(|w| w.contains("(ConfigMap default/b): binaryData ignored") && w.ends_with("blob")),
        "{:?}",
        b.warnings
    );
    // A typo'd field, a wrong apiVersion, a bad name.
    let e =
        yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: t}\ndatas: {a: b}\n").expect_err("typo").to_string();
    assert!(e.contains("(ConfigMap default/t): unknown field \"datas\""), "{e}");
    let e = yaml("apiVersion: apps/v1\nkind: ConfigMap\nmetadata: {name: t}\n").expect_err("api").to_string();
    assert!(e.contains("apiVersion 'apps/v1' is not served for ConfigMap; use v1"), "{e}");
    let e = yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name}\n").expect_err("name").to_string();
    assert!(e.contains("metadata.name 'Bad_Name'"), "{e}");
}

#[test]
fn config_map_keys_and_size_are_checked_as_the_api_server_does() {
    let cm = |data: serde_json::Value| {
        let doc = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data});
        parse(Format::Json, "cm.json", &doc.to_string(), "node-1", Validation::Strict)
    };
    let long = "k".repeat(253);
    for key in ["a.b-c_D9", ".hidden", "x..y", long.as_str()] {
        assert!(cm(serde_json::json!({ key: "v" })).is_ok(), "{key} is a valid key");
    }
    let too_long = "k".repeat(254);
    for (key, why) in [
        ("a/b", "alphanumeric characters, '-', '_' or '.'"),
        ("x y", "alphanumeric"),
        ("", "must not be empty"),
        (".", "must not be '.' or '..'"),
        ("..", "must not be '.' or '..'"),
        ("..x", "must not start with '..'"),
        (too_long.as_str(), "no more than 253 characters"),
    ] {
        let e = cm(serde_json::json!({"ok": "v", key: "v"})).expect_err(key).to_string();
        assert!(e.contains(&format!("(ConfigMap default/c): data[{key}]: invalid key \"{key}\"")), "{e}");
        assert!(e.contains(why), "{key}: {e}");
    }
    // 1 MiB of values in all is the most.
    let max = crate::config::CONFIG_MAP_MAX_BYTES;
    assert_eq!(max, 1_048_576);
    assert!(cm(serde_json::json!({"a": "x".repeat(max - 10), "b": "y".repeat(10)})).is_ok());
    let e = cm(serde_json::json!({"a": "x".repeat(max - 10), "b": "y".repeat(11)})).expect_err("too large").to_string();
    assert!(e.contains("(ConfigMap default/c): data: too long: a ConfigMap must have at most 1048576 bytes"), "{e}");
    // binaryData counts too (decoded), and may not repeat a key of data.
    let doc = |binary: serde_json::Value| {
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
            "data": {"a": "x".repeat(max - 2)}, "binaryData": binary})
        .to_string()
    };
    let e = parse(Format::Json, "cm.json", &doc(serde_json::json!({"b": "AAEC"})), "n", Validation::Strict)
        .expect_err("three more bytes")
        .to_string();
    assert!(e.contains("must have at most 1048576 bytes"), "{e}");
    let e = parse(Format::Json, "cm.json", &doc(serde_json::json!({"a": "AA=="})), "n", Validation::Strict)
        .expect_err("duplicate key")
        .to_string();
    assert!(e.contains("binaryData[a]: duplicate of key \"a\" in data"), "{e}");
}
