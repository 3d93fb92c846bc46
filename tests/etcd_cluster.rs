//! `control::cluster` against a real etcd (one single-member etcd per test, from
//! `podswitch_tests::Etcd`): node registration and failure detection through leases, pod CIDR
//! blocks claimed by concurrent nodes, claim transactions, and watches across compaction.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use control::cluster::{
    Change, Claim, Cluster, ClusterError, Commit, CommitOutcome, EtcdConfig, NodeRecord, WatchBatch,
};
use podswitch_tests::Etcd;

fn config(etcd: &Etcd, prefix: &str, ttl: i64) -> EtcdConfig {
    EtcdConfig { endpoints: vec![etcd.endpoint()], prefix: prefix.into(), lease_ttl_s: ttl, ..EtcdConfig::default() }
}

async fn connect(etcd: &Etcd, prefix: &str, ttl: i64) -> Cluster {
    Cluster::connect(&config(etcd, prefix, ttl)).await.expect("connect to etcd")
}

fn record(name: &str, n: u8) -> NodeRecord {
    NodeRecord {
        name: name.into(),
        ipv4: Some(format!("192.0.2.{n}")),
        ipv6: None,
        tunnel: "vxlan".into(),
        vni: 4242,
        mac: format!("02:00:00:00:00:{n:02x}"),
        vtep_mac: None,
        pod_cidrs: vec![format!("10.244.{n}.0/24")],
    }
}

type Nodes = tokio::sync::watch::Receiver<Arc<BTreeMap<String, NodeRecord>>>;

/// Waits until the node map satisfies `ok`, failing after `within`; returns when it held.
async fn wait_nodes(
    rx: &mut Nodes,
    within: Duration,
    what: &str,
    ok: impl Fn(&BTreeMap<String, NodeRecord>) -> bool,
) -> Instant {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if ok(&rx.borrow_and_update()) {
            return Instant::now();
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!("{what}: the node watch ended"),
            Err(_) => panic!("{what}: not within {within:?}; map: {:?}", rx.borrow().keys().collect::<Vec<_>>()),
        }
    }
}

/// The next batch of a watch, within `within`.
async fn next_batch(rx: &mut tokio::sync::mpsc::Receiver<WatchBatch>, within: Duration) -> WatchBatch {
    match tokio::time::timeout(within, rx.recv()).await {
        Ok(Some(b)) => b,
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch batch within {within:?}"),
    }
}

fn puts(kvs: &[(&str, &str)]) -> Commit {
    Commit { puts: kvs.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect(), ..Commit::default() }
}

#[tokio::test]
async fn connect_fails_within_the_dial_timeout() {
    // Nothing listens on a port we just had and released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let cfg = EtcdConfig {
        endpoints: vec![format!("http://127.0.0.1:{port}")],
        dial_timeout_ms: 500,
        ..EtcdConfig::default()
    };
    let t0 = Instant::now();
    let e = Cluster::connect(&cfg).await.expect_err("no etcd there");
    assert!(t0.elapsed() < Duration::from_millis(1500), "took {:?}", t0.elapsed());
    assert!(matches!(e, ClusterError::Connect { .. }), "{e:?}");
    assert!(e.to_string().contains(&port.to_string()), "{e}");
    let bad = EtcdConfig { endpoints: vec![], ..EtcdConfig::default() };
    assert!(matches!(Cluster::connect(&bad).await, Err(ClusterError::BadConfig { .. })));
}

#[tokio::test]
async fn registered_nodes_are_seen_and_leave_at_once_when_deregistered() {
    if !podswitch_tests::etcd_or_skip(module_path!()) {
        return;
    }
    let etcd = Etcd::start("register");
    let a = connect(&etcd, "/psw", 10).await;
    let b = connect(&etcd, "/psw", 10).await;
    let mut nodes = b.watch_nodes();
    wait_nodes(&mut nodes, Duration::from_secs(5), "initial listing", |m| m.is_empty()).await;

    let reg1 = a.register(&record("n1", 1)).await.expect("register n1");
    let reg2 = a.register(&record("n2", 2)).await.expect("register n2");
    assert_eq!(reg1.name(), "n1");
    wait_nodes(&mut nodes, Duration::from_secs(5), "both nodes seen", |m| {
        m.get("n1") == Some(&record("n1", 1)) && m.get("n2") == Some(&record("n2", 2))
    })
    .await;
    // A watcher started later lists them.
    let mut late = a.watch_nodes();
    wait_nodes(&mut late, Duration::from_secs(5), "late watcher", |m| m.len() == 2).await;

    // A clean stop revokes the lease: gone long before the 10 s TTL.
    let t0 = Instant::now();
    reg1.deregister().await.expect("deregister");
    let gone =
        wait_nodes(&mut nodes, Duration::from_secs(2), "n1 gone after deregister", |m| !m.contains_key("n1")).await;
    assert!(gone - t0 < Duration::from_secs(2));
    // Dropping the guard does the same, from the keep-alive task.
    drop(reg2);
    wait_nodes(&mut nodes, Duration::from_secs(2), "n2 gone after drop", |m| m.is_empty()).await;

    // A record that is not a node record is logged and left out.
    let out = a
        .commit(puts(&[
            ("nodes/junk", "{not json"),
            ("nodes/liar", &serde_json::to_string(&record("other", 3)).expect("json")),
        ]))
        .await;
    assert!(matches!(out, Ok(CommitOutcome::Committed { .. })), "{out:?}");
    let reg3 = a.register(&record("n3", 3)).await.expect("register n3");
    wait_nodes(&mut nodes, Duration::from_secs(5), "n3 only", |m| m.keys().eq(["n3"])).await;
    reg3.deregister().await.expect("deregister n3");
}

#[tokio::test]
async fn a_crashed_node_disappears_within_its_ttl_and_a_lost_lease_is_replaced() {
    if !podswitch_tests::etcd_or_skip(module_path!()) {
        return;
    }
    let etcd = Etcd::start("crash");
    let ttl = 2;
    let a = connect(&etcd, "/psw", ttl).await;
    let b = connect(&etcd, "/psw", ttl).await;
    let mut nodes = b.watch_nodes();
    let reg = a.register(&record("n1", 1)).await.expect("register");
    wait_nodes(&mut nodes, Duration::from_secs(5), "n1 seen", |m| m.contains_key("n1")).await;

    // Kept alive well past the TTL.
    let until = Instant::now() + Duration::from_millis(4500);
    while Instant::now() < until {
        assert!(nodes.borrow().contains_key("n1"), "n1 expired while kept alive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Someone revokes the lease (an operator, or etcd after a long partition): the key goes,
    // the keep-alive sees the lease gone and registers the node again under a new lease.
    let old = reg.lease_id();
    let out = etcd.etcdctl(&["lease", "revoke", &format!("{old:x}")]);
    assert!(out.status.success(), "etcdctl lease revoke: {}", String::from_utf8_lossy(&out.stderr));
    wait_nodes(&mut nodes, Duration::from_secs(2), "n1 gone after revoke", |m| !m.contains_key("n1")).await;
    wait_nodes(&mut nodes, Duration::from_secs(ttl as u64 + 2), "n1 back", |m| m.contains_key("n1")).await;
    // The watch event can arrive before the keep-alive task has read its put's answer.
    let deadline = Instant::now() + Duration::from_secs(2);
    while reg.lease_id() == old {
        assert!(Instant::now() < deadline, "n1 is back but not under a new lease");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A crash: no more keep-alives, no revoke. The node leaves within TTL + 1 s.
    let t0 = Instant::now();
    reg.abandon();
    let gone =
        wait_nodes(&mut nodes, Duration::from_secs(ttl as u64 + 2), "n1 expired", |m| !m.contains_key("n1")).await;
    let took = gone - t0;
    assert!(took <= Duration::from_secs(ttl as u64 + 1), "expired after {took:?}");
    // The key itself is gone from etcd, not only from the map.
    let (_, left) = a.list("nodes/").await.expect("list");
    assert!(left.is_empty(), "{left:?}");
}

/// Leases one block per node for `names` from `cidr`, the names split over two threads, each
/// with its own runtime and etcd connection, so that the claims race.
fn lease_concurrently(
    etcd: &Etcd,
    prefix: &str,
    cidr: &str,
    mask: u8,
    names: Vec<String>,
) -> Vec<(String, Result<Vec<String>, ClusterError>)> {
    let halves: Vec<Vec<String>> =
        vec![names.iter().step_by(2).cloned().collect(), names.iter().skip(1).step_by(2).cloned().collect()];
    let cfg = config(etcd, prefix, 10);
    let handles: Vec<_> = halves
        .into_iter()
        .map(|half| {
            let cfg = cfg.clone();
            let cidr = cidr.to_string();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                rt.block_on(async {
                    let c = Cluster::connect(&cfg).await.expect("connect");
                    let mut out = Vec::new();
                    for n in half {
                        let r = c.lease_pod_cidrs(&n, std::slice::from_ref(&cidr), mask, 64).await;
                        out.push((n, r));
                    }
                    out
                })
            })
        })
        .collect();
    handles.into_iter().flat_map(|h| h.join().expect("leasing thread")).collect()
}

#[tokio::test]
async fn concurrent_nodes_get_distinct_pod_cidrs() {
    if !podswitch_tests::etcd_or_skip(module_path!()) {
        return;
    }
    let etcd = Etcd::start("podcidr-race");
    let names: Vec<String> = (0..20).map(|i| format!("node{i:02}")).collect();

    // A /19 holds 32 /24 blocks: every one of 20 nodes gets one, none shared.
    let got = lease_concurrently(&etcd, "/race", "10.244.0.0/19", 24, names.clone());
    let mut blocks = BTreeSet::new();
    for (n, r) in &got {
        let b = r.as_ref().unwrap_or_else(|e| panic!("{n}: {e}"));
        assert_eq!(b.len(), 1);
        let third: u8 = b[0].split('.').nth(2).and_then(|s| s.parse().ok()).expect("third octet");
        assert!(b[0].starts_with("10.244.") && b[0].ends_with(".0/24") && third < 32, "{n}: {b:?}");
        assert!(blocks.insert(b[0].clone()), "{n}: block {} given twice", b[0]);
    }
    assert_eq!(blocks.len(), 20);
    // The lowest blocks were used: 10.244.0.0/24 .. 10.244.19.0/24.
    let expected: BTreeSet<String> = (0..20).map(|i| format!("10.244.{i}.0/24")).collect();
    assert_eq!(blocks, expected);
    // etcd holds exactly these claims, each naming its node.
    let c = connect(&etcd, "/race", 10).await;
    let (_, claims) = c.list("ipam/podcidr/").await.expect("list");
    let claimed: BTreeMap<String, String> = claims
        .into_iter()
        .map(|(k, v)| (k.trim_start_matches("ipam/podcidr/").replace('_', "/"), String::from_utf8(v).expect("utf8")))
        .collect();
    for (n, r) in &got {
        let b = &r.as_ref().expect("ok")[0];
        assert_eq!(claimed.get(b), Some(n), "{b}");
    }

    // A /20 holds only 16 /24 blocks: 16 of 20 racing nodes get one, 4 are told it is full.
    let got = lease_concurrently(&etcd, "/full", "10.244.0.0/20", 24, names);
    let ok: BTreeSet<String> = got.iter().filter_map(|(_, r)| r.as_ref().ok()).map(|b| b[0].clone()).collect();
    let ok_count = got.iter().filter(|(_, r)| r.is_ok()).count();
    assert_eq!((ok.len(), ok_count), (16, 16), "{got:?}");
    for (n, r) in &got {
        if let Err(e) = r {
            assert!(matches!(e, ClusterError::Exhausted { cidr, mask: 24 } if cidr == "10.244.0.0/20"), "{n}: {e}");
        }
    }
}

#[tokio::test]
async fn pod_cidrs_survive_restarts_are_released_and_run_out() {
    if !podswitch_tests::etcd_or_skip(module_path!()) {
        return;
    }
    let etcd = Etcd::start("podcidr");
    let cidrs = vec!["10.244.0.0/16".to_string(), "fd00:10:244::/56".to_string()];
    let a = connect(&etcd, "/psw", 10).await;
    let n1 = a.lease_pod_cidrs("n1", &cidrs, 24, 64).await.expect("n1");
    assert_eq!(n1, ["10.244.0.0/24", "fd00:10:244::/64"]);
    let n2 = a.lease_pod_cidrs("n2", &cidrs, 24, 64).await.expect("n2");
    assert_eq!(n2, ["10.244.1.0/24", "fd00:10:244:1::/64"]);
    // Asking again, or after a restart (a new connection), gives the same blocks.
    assert_eq!(a.lease_pod_cidrs("n1", &cidrs, 24, 64).await.expect("n1 again"), n1);
    let restarted = connect(&etcd, "/psw", 10).await;
    assert_eq!(restarted.lease_pod_cidrs("n2", &cidrs, 24, 64).await.expect("n2 restarted"), n2);
    // The claim keys are as documented.
    let (_, claims) = a.list("ipam/podcidr/").await.expect("list");
    let keys: Vec<&str> = claims.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        keys.contains(&"ipam/podcidr/10.244.0.0_24") && keys.contains(&"ipam/podcidr/fd00:10:244::_64"),
        "{keys:?}"
    );

    // Released blocks go to the next node that asks, lowest first.
    a.release_pod_cidrs("n1").await.expect("release n1");
    let n3 = a.lease_pod_cidrs("n3", &cidrs, 24, 64).await.expect("n3");
    assert_eq!(n3, n1);
    // Releasing a node without blocks is fine.
    a.release_pod_cidrs("n1").await.expect("release again");

    // IPv6 only, longer blocks.
    let v6 = a.lease_pod_cidrs("n4", &["fd00:99::/120".to_string()], 24, 124).await.expect("v6");
    assert_eq!(v6, ["fd00:99::/124"]);

    // Exhaustion: a /30 cut into /31s holds two nodes.
    let tiny = ["192.168.7.0/30".to_string()];
    assert_eq!(a.lease_pod_cidrs("t1", &tiny, 31, 64).await.expect("t1"), ["192.168.7.0/31"]);
    assert_eq!(a.lease_pod_cidrs("t2", &tiny, 31, 64).await.expect("t2"), ["192.168.7.2/31"]);
    match a.lease_pod_cidrs("t3", &tiny, 31, 64).await {
        Err(ClusterError::Exhausted { cidr, mask }) => assert_eq!((cidr.as_str(), mask), ("192.168.7.0/30", 31)),
        other => panic!("expected Exhausted, got {other:?}"),
    }
    // Bad input is refused before etcd is touched.
    assert!(matches!(a.lease_pod_cidrs("t3", &["10.0.0.1/8".into()], 24, 64).await, Err(ClusterError::BadCidr { .. })));
    assert!(matches!(a.lease_pod_cidrs("t3", &["fd00::/48".into()], 24, 48).await, Err(ClusterError::BadCidr { .. })));
    assert!(matches!(a.lease_pod_cidrs("a/b", &tiny, 31, 64).await, Err(ClusterError::BadName { .. })));
}

#[tokio::test]
async fn commits_check_claims_and_report_the_holder() {
    if !podswitch_tests::etcd_or_skip(module_path!()) {
        return;
    }
    let etcd = Etcd::start("commit");
    let c = connect(&etcd, "/psw", 10).await;
    let claim_a = |owner: &str| Claim::New { key: "claims/ip/10.0.0.1".into(), owner: owner.into() };

    let first = Commit { claims: vec![claim_a("pod-a")], ..puts(&[("objs/pod-a", "A")]) };
    let CommitOutcome::Committed { rev: r1 } = c.commit(first).await.expect("commit") else {
        panic!("first claim must win")
    };
    // A second New claim on the key fails, names the holder, and writes nothing.
    let second = Commit { claims: vec![claim_a("pod-b")], ..puts(&[("objs/pod-b", "B")]) };
    assert_eq!(
        c.commit(second).await.expect("commit"),
        CommitOutcome::Conflict { key: "claims/ip/10.0.0.1".into(), holder: Some("pod-a".into()) }
    );
    let (_, objs) = c.list("objs/").await.expect("list");
    assert_eq!(objs, [("objs/pod-a".to_string(), b"A".to_vec())]);

    // The first failing claim is reported, in order.
    let mixed = Commit {
        claims: vec![
            Claim::New { key: "claims/ip/10.0.0.2".into(), owner: "pod-b".into() },
            Claim::Held { key: "claims/ip/10.0.0.9".into(), owner: "pod-b".into() },
            claim_a("pod-b"),
        ],
        ..Commit::default()
    };
    assert_eq!(
        c.commit(mixed).await.expect("commit"),
        CommitOutcome::Conflict { key: "claims/ip/10.0.0.9".into(), holder: None }
    );
    assert!(c.list("claims/ip/10.0.0.2").await.expect("list").1.is_empty(), "nothing written");

    // Held: the owner may write under its claim; another may not.
    let held = |owner: &str| Claim::Held { key: "claims/ip/10.0.0.1".into(), owner: owner.into() };
    let ok =
        Commit { claims: vec![held("pod-a")], deletes: vec!["objs/pod-a".into()], ..puts(&[("objs/pod-a2", "A2")]) };
    let CommitOutcome::Committed { rev: r2 } = c.commit(ok).await.expect("commit") else { panic!("held claim holds") };
    assert!(r2 > r1);
    let (_, objs) = c.list("objs/").await.expect("list");
    assert_eq!(objs, [("objs/pod-a2".to_string(), b"A2".to_vec())]);
    let no = Commit { claims: vec![held("pod-b")], ..puts(&[("objs/pod-b", "B")]) };
    assert_eq!(
        c.commit(no).await.expect("commit"),
        CommitOutcome::Conflict { key: "claims/ip/10.0.0.1".into(), holder: Some("pod-a".into()) }
    );

    // A release by the wrong owner leaves the claim (and does not fail the commit); the owner's
    // release deletes it, and the key can be claimed anew.
    let wrong = Commit { releases: vec![("claims/ip/10.0.0.1".into(), "pod-b".into())], ..puts(&[("objs/x", "x")]) };
    assert!(matches!(c.commit(wrong).await.expect("commit"), CommitOutcome::Committed { .. }));
    assert_eq!(c.list("claims/").await.expect("list").1.len(), 1);
    assert_eq!(c.list("objs/x").await.expect("list").1.len(), 1, "the commit's put happened");
    let right = Commit { releases: vec![("claims/ip/10.0.0.1".into(), "pod-a".into())], ..Commit::default() };
    assert!(matches!(c.commit(right).await.expect("commit"), CommitOutcome::Committed { .. }));
    assert!(c.list("claims/").await.expect("list").1.is_empty());
    assert!(matches!(
        c.commit(Commit { claims: vec![claim_a("pod-b")], ..Commit::default() }).await.expect("commit"),
        CommitOutcome::Committed { .. }
    ));
    // Writing one key twice in a commit is an etcd error, not a panic.
    let twice = puts(&[("objs/y", "1"), ("objs/y", "2")]);
    assert!(matches!(c.commit(twice).await, Err(ClusterError::Etcd { op: "txn", .. })));
}

#[tokio::test]
async fn watch_delivers_changes_in_order_and_resyncs_after_compaction() {
    if !podswitch_tests::etcd_or_skip(module_path!()) {
        return;
    }
    let etcd = Etcd::start("watch");
    let c = connect(&etcd, "/psw", 10).await;
    let other = connect(&etcd, "/other", 10).await;
    c.commit(puts(&[("objs/a", "1")])).await.expect("seed");
    let (rev0, items) = c.list("objs/").await.expect("list");
    assert_eq!(items, [("objs/a".to_string(), b"1".to_vec())]);

    let mut w = c.watch("objs/", rev0);
    let r1 = match c.commit(puts(&[("objs/b", "2")])).await.expect("put b") {
        CommitOutcome::Committed { rev } => rev,
        o => panic!("{o:?}"),
    };
    c.commit(Commit { deletes: vec!["objs/a".into()], ..Commit::default() }).await.expect("delete a");
    other.commit(puts(&[("objs/z", "elsewhere")])).await.expect("other prefix");
    c.commit(puts(&[("not-objs/q", "ignored")])).await.expect("outside sub");
    c.commit(puts(&[("objs/c", "3"), ("objs/d", "4")])).await.expect("put c d");

    // A watch that starts behind gets several revisions per response while it catches up, so
    // batches are not one per commit; but events come in order, each batch's rev is its last
    // event's, and one transaction's events are never split.
    let t = Duration::from_secs(5);
    let mut events = Vec::new();
    let mut batches = Vec::new();
    while events.len() < 4 {
        match next_batch(&mut w, t).await {
            WatchBatch::Changes { rev, events: evs } => {
                assert!(!evs.is_empty());
                batches.push((rev, evs.clone()));
                events.extend(evs);
            }
            b => panic!("unexpected {b:?}"),
        }
    }
    let put = |k: &str, v: &str| Change::Put { key: k.into(), value: v.as_bytes().to_vec() };
    assert_eq!(
        events,
        [put("objs/b", "2"), Change::Delete { key: "objs/a".into() }, put("objs/c", "3"), put("objs/d", "4")]
    );
    assert!(batches.windows(2).all(|w| w[0].0 < w[1].0), "revs increase: {batches:?}");
    assert_eq!(batches.last().map(|b| b.0), Some(r1 + 4), "the last batch ends at the c/d transaction");
    assert!(batches.iter().any(|(_, evs)| evs.ends_with(&[put("objs/c", "3"), put("objs/d", "4")])), "{batches:?}");
    if batches.len() == 3 {
        assert_eq!(batches[0].0, r1);
        assert_eq!(batches[1].0, r1 + 1);
    }

    // A watch that is caught up gets one batch per transaction.
    c.commit(puts(&[("objs/f", "6"), ("objs/g", "7")])).await.expect("put f g");
    assert_eq!(
        next_batch(&mut w, t).await,
        WatchBatch::Changes { rev: r1 + 5, events: vec![put("objs/f", "6"), put("objs/g", "7")] }
    );
    c.commit(Commit { deletes: vec!["objs/f".into(), "objs/g".into()], ..Commit::default() })
        .await
        .expect("delete f g");
    assert_eq!(
        next_batch(&mut w, t).await,
        WatchBatch::Changes {
            rev: r1 + 6,
            events: vec![Change::Delete { key: "objs/f".into() }, Change::Delete { key: "objs/g".into() }]
        }
    );

    // History before the current revision is compacted: a watch from rev0 cannot replay it and
    // starts with the full current list instead.
    let (now, current) = c.list("objs/").await.expect("list");
    let out = etcd.etcdctl(&["compact", &now.to_string(), "--physical"]);
    assert!(out.status.success(), "etcdctl compact: {}", String::from_utf8_lossy(&out.stderr));
    let mut late = c.watch("objs/", rev0);
    match next_batch(&mut late, t).await {
        WatchBatch::Resync { rev, items } => {
            assert!(rev >= now);
            assert_eq!(items, current);
            let keys: Vec<&str> = items.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(keys, ["objs/b", "objs/c", "objs/d"]);
        }
        b => panic!("expected a resync, got {b:?}"),
    }
    // Both watches go on after it.
    c.commit(puts(&[("objs/e", "5")])).await.expect("put e");
    let e = Change::Put { key: "objs/e".into(), value: b"5".to_vec() };
    for rx in [&mut w, &mut late] {
        match next_batch(rx, t).await {
            WatchBatch::Changes { events, .. } => assert_eq!(events, std::slice::from_ref(&e)),
            b => panic!("{b:?}"),
        }
    }
}

#[tokio::test]
async fn a_node_registers_again_after_etcd_was_unreachable_for_longer_than_the_ttl() {
    if !podswitch_tests::etcd_or_skip(module_path!()) {
        return;
    }
    let etcd = Etcd::start("partition");
    let ttl = 2;
    let a = connect(&etcd, "/psw", ttl).await;
    let reg = a.register(&record("n1", 1)).await.expect("register");
    let old = reg.lease_id();
    let signal = |sig: &str| {
        let st = std::process::Command::new("kill").args([sig, &etcd.pid().to_string()]).status().expect("kill");
        assert!(st.success(), "kill {sig}");
    };
    // etcd answers nothing for twice the TTL; its lease clock runs on.
    signal("-STOP");
    tokio::time::sleep(Duration::from_secs(2 * ttl as u64)).await;
    signal("-CONT");
    // The node is registered again under a new lease and stays, whatever etcd did with the
    // old lease when it woke up.
    let b = connect(&etcd, "/psw", ttl).await;
    let mut nodes = b.watch_nodes();
    wait_nodes(&mut nodes, Duration::from_secs(8), "n1 registered after the pause", |m| m.contains_key("n1")).await;
    let deadline = Instant::now() + Duration::from_secs(8);
    while reg.lease_id() == old {
        assert!(Instant::now() < deadline, "no new lease after the pause");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(ttl as u64 + 1)).await;
    let (_, left) = b.list("nodes/").await.expect("list");
    assert_eq!(left.len(), 1, "n1 kept alive under its new lease");
    assert!(nodes.borrow().contains_key("n1"));
    reg.deregister().await.expect("deregister");
}

#[tokio::test]
async fn watches_resync_after_etcd_restarts() {
    if !podswitch_tests::etcd_or_skip(module_path!()) {
        return;
    }
    let mut etcd = Etcd::start("restart");
    let c = connect(&etcd, "/psw", 10).await;
    let reg = c.register(&record("n1", 1)).await.expect("register");
    let mut nodes = c.watch_nodes();
    wait_nodes(&mut nodes, Duration::from_secs(5), "n1 seen", |m| m.contains_key("n1")).await;
    c.commit(puts(&[("objs/a", "1")])).await.expect("put a");
    let (rev, _) = c.list("objs/").await.expect("list");
    let mut w = c.watch("objs/", rev);

    // The connection breaks under the watch; the watch relists once etcd is back.
    etcd.restart();
    match next_batch(&mut w, Duration::from_secs(10)).await {
        WatchBatch::Resync { rev: r, items } => {
            assert!(r >= rev);
            assert_eq!(items, [("objs/a".to_string(), b"1".to_vec())]);
        }
        b => panic!("expected a resync after the restart, got {b:?}"),
    }
    c.commit(puts(&[("objs/b", "2")])).await.expect("put b");
    match next_batch(&mut w, Duration::from_secs(5)).await {
        WatchBatch::Changes { events, .. } => {
            assert_eq!(events, [Change::Put { key: "objs/b".into(), value: b"2".to_vec() }])
        }
        b => panic!("{b:?}"),
    }
    // The node map follows too: the lease survived the restart, and a new node shows up.
    let reg2 = c.register(&record("n2", 2)).await.expect("register n2");
    wait_nodes(&mut nodes, Duration::from_secs(5), "n1 and n2", |m| m.keys().eq(["n1", "n2"])).await;
    reg2.deregister().await.expect("deregister n2");
    reg.deregister().await.expect("deregister n1");
    wait_nodes(&mut nodes, Duration::from_secs(5), "both gone", |m| m.is_empty()).await;
}
