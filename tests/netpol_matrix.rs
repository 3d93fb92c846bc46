//! NetworkPolicy semantics on the upstream model (namespaces x, y, z with label `ns`; pods a,
//! b, c with label `pod`; ports 80 and 81 over TCP, UDP and SCTP): each policy is applied as
//! a real manifest through the controller, then every one of the 72 pod pairs is probed
//! through the pipeline and the whole 9x9 matrix is compared with the expected one, in the
//! manner of the upstream Kubernetes network-policy end-to-end tests.

use podswitch_tests::model::{Model, Reachability};

/// Every pod but those of `denied` (indices 0..9) admits the outside client.
fn outside_all_but(denied: &[usize]) -> [bool; 9] {
    let mut o = [true; 9];
    for &i in denied {
        o[i] = false;
    }
    o
}

const ALL: &[&str] = &["TCP", "UDP", "SCTP"];

fn np(name: &str, ns: &str, spec: &str) -> String {
    format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}")
}

#[test]
fn no_policy_allows_everything() {
    let m = Model::new();
    let all = Reachability::all(true);
    for port in [80, 81] {
        m.expect("no policy", port, ALL, &all);
    }
}

#[test]
fn default_deny_ingress() {
    let m = Model::new();
    m.apply(&np("deny-ingress", "x", "  podSelector: {}\n  policyTypes: [Ingress]\n"));
    let want = Reachability::all(true).set("*", "x/*", false);
    m.expect("default-deny-ingress in x", 80, ALL, &want);
    m.expect("default-deny-ingress in x", 81, ALL, &want);
}

#[test]
fn default_deny_egress_and_all() {
    let m = Model::new();
    m.apply(&np("deny-egress", "x", "  podSelector: {}\n  policyTypes: [Egress]\n"));
    m.expect("default-deny-egress in x", 80, ALL, &Reachability::all(true).set("x/*", "*", false));
    m.delete("networkpolicy", "x", "deny-egress");
    m.expect("deleted", 80, ALL, &Reachability::all(true));
    m.apply(&np("deny-all", "x", "  podSelector: {}\n  policyTypes: [Ingress, Egress]\n"));
    let want = Reachability::all(true).set("x/*", "*", false).set("*", "x/*", false);
    m.expect("default-deny-all in x", 81, ALL, &want);
}

#[test]
fn pod_selector_in_the_same_namespace() {
    let m = Model::new();
    m.apply(&np(
        "a-from-b",
        "x",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {pod: b}}}]\n",
    ));
    let want = Reachability::all(true).set("*", "x/a", false).set("x/b", "x/a", true);
    m.expect("x/a only from x/b", 80, ALL, &want);
}

#[test]
fn namespace_selector_and_match_expressions() {
    let m = Model::new();
    m.apply(&np(
        "a-from-y",
        "x",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from: [{namespaceSelector: {matchExpressions: [{key: ns, operator: In, values: [y]}]}}]\n",
    ));
    m.expect(
        "x/a only from namespace y",
        80,
        ALL,
        &Reachability::all(true).set("*", "x/a", false).set("y/*", "x/a", true),
    );
    // NotIn, and the automatic kubernetes.io/metadata.name label.
    m.apply(&np(
        "a-from-y",
        "x",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from: [{namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [y, x]}]}}]\n",
    ));
    m.expect("x/a only from z", 80, ALL, &Reachability::all(true).set("*", "x/a", false).set("z/*", "x/a", true));
}

#[test]
fn pod_and_namespace_selector_in_one_peer_is_and_in_two_peers_is_or() {
    let m = Model::new();
    m.apply(&np(
        "and",
        "x",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from:\n    - namespaceSelector: {matchExpressions: [{key: ns, operator: NotIn, values: [x]}]}\n      podSelector: {matchLabels: {pod: b}}\n",
    ));
    let and = Reachability::all(true).set("*", "x/a", false).set("y/b", "x/a", true).set("z/b", "x/a", true);
    m.expect("AND", 80, ALL, &and);
    m.apply(&np(
        "and",
        "x",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {ns: y}}\n    - podSelector: {matchLabels: {pod: b}}\n",
    ));
    let or = Reachability::all(true).set("*", "x/a", false).set("y/*", "x/a", true).set("x/b", "x/a", true);
    m.expect("OR", 80, ALL, &or);
}

#[test]
fn exists_and_does_not_exist() {
    let m = Model::new();
    m.apply(&np(
        "c-from-not-b",
        "z",
        "  podSelector: {matchExpressions: [{key: pod, operator: In, values: [c]}]}\n  ingress:\n  - from:\n    - namespaceSelector: {matchExpressions: [{key: ns, operator: Exists}]}\n      podSelector: {matchExpressions: [{key: pod, operator: NotIn, values: [b]}]}\n",
    ));
    m.expect(
        "z/c from every a and c",
        81,
        ALL,
        &Reachability::all(true).set("*", "z/c", false).set("*/a", "z/c", true).set("*/c", "z/c", true),
    );
    m.apply(&np(
        "c-from-not-b",
        "z",
        "  podSelector: {matchLabels: {pod: c}}\n  ingress:\n  - from: [{namespaceSelector: {matchExpressions: [{key: ns, operator: DoesNotExist}]}}]\n",
    ));
    m.expect("z/c from nobody", 81, ALL, &Reachability::all(true).set("*", "z/c", false));
}

#[test]
fn ports_by_number_name_and_range_per_protocol() {
    let m = Model::new();
    m.apply(&np("a-81", "x", "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - ports: [{port: 81}]\n"));
    let closed = Reachability::all(true).set("*", "x/a", false);
    m.expect("TCP 81 only: 80 closed", 80, ALL, &closed);
    m.expect("TCP 81 only: 81", 81, &["TCP"], &Reachability::all(true));
    m.expect("TCP 81 only: UDP and SCTP closed", 81, &["UDP", "SCTP"], &closed);

    m.apply(&np(
        "a-81",
        "x",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - ports: [{port: serve-80-udp, protocol: UDP}, {port: serve-81-sctp, protocol: SCTP}]\n",
    ));
    m.expect("named UDP 80", 80, &["UDP"], &Reachability::all(true));
    m.expect("named UDP 80: TCP/SCTP 80 closed", 80, &["TCP", "SCTP"], &closed);
    m.expect("named SCTP 81", 81, &["SCTP"], &Reachability::all(true));
    m.expect("named SCTP 81: TCP/UDP closed", 81, &["TCP", "UDP"], &closed);

    m.apply(&np(
        "a-81",
        "x",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - ports: [{port: 79, endPort: 80, protocol: TCP}]\n",
    ));
    m.expect("endPort 79-80", 80, &["TCP"], &Reachability::all(true));
    m.expect("endPort 79-80: 81 closed", 81, &["TCP"], &closed);
}

#[test]
fn egress_to_a_namespace_and_ingress_combined() {
    let m = Model::new();
    m.apply(&np(
        "a-to-y",
        "x",
        "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{namespaceSelector: {matchLabels: {ns: y}}}]\n",
    ));
    let egress = Reachability::all(true).set("x/a", "*", false).set("x/a", "y/*", true);
    m.expect("x/a egress only to y", 80, ALL, &egress);
    m.apply(&np("y-b-from-x-a", "y", "  podSelector: {matchLabels: {pod: b}}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {ns: x}}, podSelector: {matchLabels: {pod: a}}}]\n"));
    let both = egress.set("*", "y/b", false).set("x/a", "y/b", true);
    m.expect("and y/b only from x/a", 80, ALL, &both);
}

#[test]
fn ip_block_with_except() {
    let m = Model::new();
    // x/b is 10.244.1.2.
    m.apply(&np(
        "a-from-cidr",
        "x",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from: [{ipBlock: {cidr: 10.244.1.0/24, except: [10.244.1.2/32]}}]\n",
    ));
    m.expect("x/a from the pod CIDR except x/b", 80, ALL, &Reachability::all(true).set("x/b", "x/a", false));
    m.apply(&np(
        "c-egress-cidr",
        "y",
        "  podSelector: {matchLabels: {pod: c}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{ipBlock: {cidr: 10.244.1.0/29}}]\n",
    ));
    // 10.244.1.0/29 holds .1-.7: x/a..z/a; y/c cannot reach z/b (.8) and z/c (.9).
    m.expect(
        "y/c egress to .0/29",
        80,
        ALL,
        &Reachability::all(true).set("x/b", "x/a", false).set("y/c", "z/b", false).set("y/c", "z/c", false),
    );
}

/// Issue 9 item 18: 4,000 peers `0.0.0.0/0 except` a distinct /32 compile at once (they all
/// except y/a too, which is then the one pod denied); rules whose excepts and ports all differ
/// past the classifier's limit are refused by name, and the running policy stays.
#[test]
fn many_overlapping_ip_blocks_compile_and_too_many_are_refused() {
    let m = Model::new();
    // y/a is 10.244.1.4.
    let peers: String = (0..4000u32)
        .map(|i| {
            format!(
                "    - ipBlock: {{cidr: 0.0.0.0/0, except: [11.{}.{}.{}/32, 10.244.1.4/32]}}\n",
                i >> 16,
                (i >> 8) & 255,
                i & 255
            )
        })
        .collect();
    let t = std::time::Instant::now();
    m.apply(&np("wide", "x", &format!("  podSelector: {{matchLabels: {{pod: a}}}}\n  ingress:\n  - from:\n{peers}")));
    assert!(t.elapsed() < std::time::Duration::from_secs(5), "apply took {:?}", t.elapsed());
    let want = Reachability::all(true).set("y/a", "x/a", false);
    m.expect("x/a from everyone but y/a", 80, ALL, &want);

    let before = m.c.cell().generation();
    let rules: String = (0..600u32)
        .map(|i| {
            format!(
                "  - from: [{{ipBlock: {{cidr: 0.0.0.0/0, except: [11.0.{}.{}/32]}}}}]\n    ports: [{{port: {}}}]\n",
                i >> 8,
                i & 255,
                1000 + i
            )
        })
        .collect();
    let e = m.refuse(&np("too-wide", "y", &format!("  podSelector: {{}}\n  ingress:\n{rules}")));
    assert!(e.contains("NetworkPolicy y/too-wide"), "{e}");
    assert!(e.contains(&format!("more than {}", switch_core::policy::MAX_CIDR_ENTRIES)), "{e}");
    assert!(e.contains("MAX_CIDR_ENTRIES"), "{e}");
    assert_eq!(m.c.cell().generation(), before);
    m.expect("unchanged after the refusal", 80, ALL, &want);
}

#[test]
fn several_policies_are_a_union() {
    let m = Model::new();
    m.apply(&np(
        "from-y",
        "x",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {ns: y}}}]\n",
    ));
    m.apply(&np("from-z-b", "x", "  podSelector: {}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {ns: z}}, podSelector: {matchLabels: {pod: b}}}]\n"));
    let want = Reachability::all(true).set("*", "x/*", false).set("z/b", "x/*", true).set("y/*", "x/a", true);
    m.expect("union", 80, ALL, &want);
}

#[test]
fn label_changes_of_pods_and_namespaces_are_re_evaluated() {
    let m = Model::new();
    m.apply(&np(
        "a-from-blue",
        "x",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {team: blue}}}, {namespaceSelector: {}, podSelector: {matchLabels: {role: friend}}}]\n",
    ));
    m.expect("nobody yet", 80, &["TCP"], &Reachability::all(true).set("*", "x/a", false));
    m.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: z, labels: {ns: z, team: blue}}\n");
    m.expect(
        "namespace z labelled",
        80,
        &["TCP"],
        &Reachability::all(true).set("*", "x/a", false).set("z/*", "x/a", true),
    );
    let yb = podswitch_tests::model::model_yaml()
        .split("---\n")
        .find(|d| d.contains("name: b\n  namespace: y"))
        .expect("y/b manifest")
        .replace("labels: {pod: b}", "labels: {pod: b, role: friend}");
    m.apply(&yb);
    m.expect(
        "pod y/b labelled",
        80,
        &["TCP"],
        &Reachability::all(true).set("*", "x/a", false).set("z/*", "x/a", true).set("y/b", "x/a", true),
    );
}

#[test]
fn policy_applies_after_service_dnat() {
    let m = Model::new();
    m.apply("apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: x}\nspec:\n  clusterIP: 10.96.0.50\n  selector: {pod: a}\n  ports: [{port: 8080, targetPort: serve-80-tcp}]\n");
    m.apply(&np("a-from-y-b", "x", "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: b}}}]\n    ports: [{port: 80}]\n"));
    let vip: std::net::IpAddr = "10.96.0.50".parse().expect("ip");
    for from in ["y/b", "y/c", "z/b"] {
        let p = m.pod(from).clone();
        let mut w = m.worker();
        let (v, _) = m.send(&mut w, m.frame_from(&p, vip, 8080, "TCP", 40000), p.port);
        let allowed = from == "y/b";
        let want = if allowed {
            switch_core::pipeline::Verdict::Tx(m.pod("x/a").port)
        } else {
            switch_core::pipeline::Verdict::Drop(switch_core::drop::DropReason::PolicyDeniedIngress)
        };
        assert_eq!(v, want, "{from} -> service x/web (port 8080 -> pod port 80)");
    }
}

#[test]
fn a_rejected_policy_changes_nothing() {
    let m = Model::new();
    m.apply(&np("deny", "x", "  podSelector: {}\n  policyTypes: [Ingress]\n"));
    let before = m.c.cell().generation();
    let e = m.refuse(&np("bad", "x", "  podSelector: {matchExpressions: [{key: pod, operator: Near, values: [a]}]}\n"));
    assert!(e.contains("Near"), "{e}");
    let e = m.refuse(&np("bad", "y", "  podSelector: {}\n  ingress:\n  - from: [{ipBlock: {cidr: 10.0.0.0/33}}]\n"));
    assert!(e.contains("NetworkPolicy y/bad"), "{e}");
    assert_eq!(m.c.cell().generation(), before);
    m.expect("still deny in x", 80, &["TCP"], &Reachability::all(true).set("*", "x/*", false));
}

#[test]
fn policy_types_default_as_kubernetes_says() {
    let m = Model::new();
    // No policyTypes and egress rules: both Ingress (with no rule: deny all) and Egress apply.
    m.apply(&np(
        "a-out-to-y",
        "x",
        "  podSelector: {matchLabels: {pod: a}}\n  egress:\n  - to: [{namespaceSelector: {matchLabels: {ns: y}}}]\n",
    ));
    let want = Reachability::all(true).set("*", "x/a", false).set("x/a", "*", false).set("x/a", "y/*", true);
    m.expect("defaulted Ingress+Egress", 80, ALL, &want);
    // No policyTypes and only ingress rules: Ingress only.
    m.apply(&np(
        "a-out-to-y",
        "x",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {ns: z}}}]\n",
    ));
    m.expect("defaulted Ingress", 80, ALL, &Reachability::all(true).set("*", "x/a", false).set("z/*", "x/a", true));
}

/// Issue 9 item 1: ingress policy judges the real client, whatever address it used: the
/// pod's own address, a cluster IP, a node port, a load-balancer IP or an external IP (the
/// last three masquerade to the node with externalTrafficPolicy Cluster), and a pod reaching
/// itself through its own service (hairpin, masqueraded to the service address).
#[test]
fn ingress_policy_judges_the_client_through_every_service_path() {
    let m = Model::new();
    m.expose_each_pod();
    // x/c admits only pods labelled pod=a, on port 80.
    m.apply(&np(
        "c-from-a",
        "x",
        "  podSelector: {matchLabels: {pod: c}}\n  ingress:\n  - from: [{namespaceSelector: {}, podSelector: {matchLabels: {pod: a}}}]\n    ports: [{port: 80, protocol: TCP}, {port: 80, protocol: UDP}]\n",
    ));
    let want = Reachability::all(true).set("*", "x/c", false).set("*/a", "x/c", true);
    m.expect("x/c from */a", 80, &["TCP", "UDP"], &want);
    m.expect_via("x/c from */a", 80, &["TCP", "UDP"], &want, outside_all_but(&[2]));
    let closed = Reachability::all(true).set("*", "x/c", false);
    m.expect_via("x/c port 81", 81, &["TCP"], &closed, outside_all_but(&[2]));
}

#[test]
fn default_deny_ingress_through_every_service_path() {
    let m = Model::new();
    m.expose_each_pod();
    m.apply(&np("deny-ingress", "x", "  podSelector: {}\n  policyTypes: [Ingress]\n"));
    let want = Reachability::all(true).set("*", "x/*", false);
    m.expect_via("default-deny-ingress in x", 80, ALL, &want, outside_all_but(&[0, 1, 2]));
}

#[test]
fn ip_blocks_see_the_outside_client_through_node_ports_and_load_balancers() {
    let m = Model::new();
    m.expose_each_pod();
    // y/a admits the outside client's /24 only (not the node, not other pods).
    m.apply(&np(
        "a-from-outside",
        "y",
        "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from: [{ipBlock: {cidr: 192.0.2.0/24}}]\n",
    ));
    let want = Reachability::all(true).set("*", "y/a", false);
    m.expect_via("y/a from 192.0.2.0/24", 80, &["TCP"], &want, [true; 9]);
    // Egress policies see the backend, not the frontend: x/b may only reach x/a.
    m.apply(&np(
        "b-to-a",
        "x",
        "  podSelector: {matchLabels: {pod: b}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{podSelector: {matchLabels: {pod: a}}}]\n",
    ));
    let want = want.set("x/b", "*", false).set("x/b", "x/a", true);
    m.expect_via("and x/b only to x/a", 80, &["TCP"], &want, [true; 9]);
}

/// Issue 9 item 11: an ipBlock CIDR with host bits set is accepted, as the API server does,
/// and means the masked network; the apply says so in a warning.
#[test]
fn ip_block_with_host_bits_is_the_masked_network_with_a_warning() {
    let m = Model::new();
    let o = m
        .c
        .apply(
            &[podswitch_tests::model::doc(&np(
                "a-from-cidr",
                "x",
                "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from: [{ipBlock: {cidr: 10.244.1.10/29, except: [10.244.1.9/32]}}]\n",
            ))],
            false,
        )
        .expect("accepted");
    assert!(
        o.warnings.iter().any(|w| w.contains(
            "spec.ingress[0].from[0].ipBlock.cidr: 10.244.1.10/29 has host bits set; taken as 10.244.1.8/29"
        )),
        "{:?}",
        o.warnings
    );
    // 10.244.1.8/29 holds .8 and .9 (z/b and z/c); .9 is excepted.
    m.expect(
        "x/a from 10.244.1.8/29",
        80,
        &["TCP"],
        &Reachability::all(true).set("*", "x/a", false).set("z/b", "x/a", true),
    );
}

/// Issue 9 item 10: an egress rule's named port opens, on each destination pod, that pod's
/// own number for the name. y/b serves "http" on 8080, y/c on 9090; y/a may egress to
/// app=web on "http".
#[test]
fn egress_named_ports_resolve_per_destination_pod() {
    let m = Model::new();
    let pod = |name: &str, n: u8, port: u16| {
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: y\n  labels: {{pod: {name}, app: web}}\n  annotations: {{podswitch.io/port: y-{name}, podswitch.io/mac: \"02:00:00:00:02:{n:02x}\"}}\nspec:\n  nodeName: node-1\n  containers:\n  - name: c\n    ports: [{{name: http, containerPort: {port}}}]\nstatus:\n  podIPs: [{{ip: 10.244.1.{n}}}]\n")
    };
    m.apply(&format!("{}---\n{}", pod("b", 5, 8080), pod("c", 6, 9090)));
    m.apply(&np(
        "a-to-web-http",
        "y",
        "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{podSelector: {matchLabels: {app: web}}}]\n    ports: [{port: http}]\n",
    ));
    let a = m.pod("y/a").clone();
    for (to, port, allowed) in [("y/b", 8080, true), ("y/c", 9090, true), ("y/b", 9090, false), ("y/c", 8080, false)] {
        let dst = m.pod(to).clone();
        let mut w = m.worker();
        let (v, _) = m.send(&mut w, m.frame_from(&a, dst.ip, port, "TCP", 40000), a.port);
        let want = if allowed {
            switch_core::pipeline::Verdict::Tx(dst.port)
        } else {
            switch_core::pipeline::Verdict::Drop(switch_core::drop::DropReason::PolicyDeniedEgress)
        };
        assert_eq!(v, want, "y/a -> {to}:{port}");
    }
}
