//! Issue 10: ports and pods attached at run time through the control socket, as the CNI
//! plugin and `podswitchctl port` call it: addresses allocated once, ids kept, the pod bound
//! to a Pod object applied before or after, idempotent DEL, GC, STATUS, refusals that change
//! nothing, and the worker's backend opening and closing the port.

use control::api::pb;
use control::controller::{serve_worker_cmd, WorkerCmd, WorkerLink};
use io_backends::memory::MemoryBackend;
use io_backends::Backend;
use podswitch_tests::model::{manifest, Model};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use switch_core::addr::Addr;
use switch_core::packet::PortId;
use switch_core::pipeline::{Worker, WorkerConfig};
use tonic::Code;

struct Server {
    model: Model,
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// What the worker's backend has attached, by port id.
    attached: Arc<Mutex<HashMap<u16, String>>>,
    _dir: podswitch_tests::Scratch,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The model node behind a real socket with one worker thread whose in-memory backend opens
/// and closes ports as the live workers do.
fn server(name: &str) -> Server {
    let dir = podswitch_tests::Scratch::new(name);
    let socket = dir.0.join("podswitch.sock");
    let model = Model::new();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel::<WorkerCmd>();
    model.c.add_worker(WorkerLink { tx, bell: None });
    let attached = Arc::new(Mutex::new(HashMap::new()));
    let mut threads = Vec::new();
    {
        let (cell, stop, attached) = (Arc::clone(model.c.cell()), Arc::clone(&stop), Arc::clone(&attached));
        threads.push(std::thread::spawn(move || {
            let mut w = Worker::new(WorkerConfig { max_ports: 256, ..WorkerConfig::default() });
            let mut be = MemoryBackend::new(256, 64);
            while !stop.load(Ordering::Relaxed) {
                let Ok(cmd) = rx.recv_timeout(std::time::Duration::from_millis(20)) else { continue };
                match cmd {
                    WorkerCmd::AttachPort { port, interface, mut share, reply } => {
                        let r = be.attach_port(port, &interface, &mut share).map(|()| share).map_err(|e| e.to_string());
                        if r.is_ok() {
                            attached.lock().unwrap().insert(port.0, interface);
                        }
                        let _ = reply.send(r);
                    }
                    WorkerCmd::DetachPort { port, reply } => {
                        attached.lock().unwrap().remove(&port.0);
                        let _ = reply.send(be.detach_port(port));
                    }
                    cmd => serve_worker_cmd(cmd, &mut w, &cell.load(), 1, 0),
                }
            }
        }));
    }
    let l = control::api::server::bind(&socket).expect("bind");
    threads
        .push(control::api::server::spawn(Arc::clone(&model.c), l, socket.clone(), Arc::clone(&stop)).expect("serve"));
    Server { model, socket, stop, threads, attached, _dir: dir }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn add(container: &str, host: &str, mac: &str, ns: &str, pod: &str) -> pb::CniAddRequest {
    pb::CniAddRequest {
        r#ref: Some(pb::CniRef { container_id: container.into(), ifname: "eth0".into() }),
        netns: format!("/run/netns/{container}"),
        host_interface: host.into(),
        mac: mac.into(),
        pod_namespace: ns.into(),
        pod_name: pod.into(),
        annotations: [("podswitch.io/labels".to_string(), "app=web".to_string())].into(),
    }
}

fn cref(container: &str) -> pb::CniRef {
    pb::CniRef { container_id: container.into(), ifname: "eth0".into() }
}

fn ip_of(a: &pb::CniAttachment, v4: bool) -> Addr {
    let ip = a.ips.iter().map(|i| i.address.split('/').next().unwrap().parse::<std::net::IpAddr>().unwrap());
    Addr::from(ip.into_iter().find(|i| i.is_ipv4() == v4).expect("address of the family"))
}

#[test]
fn cni_add_check_del_and_gc_over_the_socket() {
    let s = server("cni-api");
    rt().block_on(async {
        let mut c = control::api::client::connect(s.socket.clone()).await.expect("connect");
        let st = c.cni_status(pb::CniStatusRequest {}).await.expect("status").into_inner();
        assert!(st.ready, "{}", st.message);

        let a = c.cni_add(add("c1", "psw1", "02:00:00:00:aa:01", "x", "web1")).await.expect("add").into_inner();
        // Addresses from each pod CIDR of the node, never one a pod has (the model's are
        // 10.244.1.1-9), nor the network address or the gateway.
        assert_eq!(a.ips.len(), 2, "{a:?}");
        let v4 = ip_of(&a, true);
        assert_eq!(v4.to_string(), "10.244.1.10");
        assert_eq!(a.ips[0].address, "10.244.1.10/24");
        assert_eq!(a.ips[0].gateway, "10.244.1.1");
        assert_eq!(a.ips[1].address, "fd00:244:1::a/64", "after the model pods' fd00:244:1::1-9");
        assert_eq!(a.routes.iter().map(|r| r.dst.as_str()).collect::<Vec<_>>(), ["0.0.0.0/0", "::/0"]);
        assert_eq!(a.mtu, 1450, "uplink 1500 less VXLAN over IPv4");
        let dns = a.dns.clone().expect("dns");
        assert_eq!(dns.search, ["x.svc.cluster.local", "svc.cluster.local", "cluster.local"]);
        assert_eq!((a.pod_namespace.as_str(), a.pod_name.as_str()), ("x", "web1"));

        // The port is open on the worker and the pod is in the published snapshot.
        assert_eq!(s.attached.lock().unwrap().get(&(a.port_id as u16)).map(String::as_str), Some("psw1"));
        let t = s.model.c.cell().load_full();
        let ep = t.endpoints.by_ip(v4).expect("the pod is an endpoint");
        assert_eq!(t.endpoints.on_port(PortId(a.port_id as u16)), Some(ep));
        assert_eq!(t.ports[a.port_id as usize].name, "psw1");

        // ADD again is answered from the attachment.
        let again = c.cni_add(add("c1", "psw1", "02:00:00:00:aa:01", "x", "web1")).await.expect("add again").into_inner();
        assert_eq!(again, a);
        let chk = c.cni_check(cref("c1")).await.expect("check").into_inner();
        assert_eq!(chk, a);

        // A second pod gets the next address and another port id.
        let b = c.cni_add(add("c2", "psw2", "02:00:00:00:aa:02", "x", "web2")).await.expect("add").into_inner();
        assert_eq!(ip_of(&b, true).to_string(), "10.244.1.11");
        assert_ne!(b.port_id, a.port_id);

        // A Pod object applied later (as kubectl writes it: no IP) binds to the attachment
        // and gives the labels; an unrelated apply keeps every port id.
        c.apply(pb::ApplyRequest {
            manifests: vec![manifest("apiVersion: v1\nkind: Pod\nmetadata: {name: web1, namespace: x, labels: {app: shop}}\nspec: {containers: [{name: c, image: x}]}\n")],
            ..Default::default()
        })
        .await
        .expect("apply the pod");
        let cfg = s.model.c.config().expect("config");
        let p = cfg.pods.iter().find(|p| p.namespace == "x" && p.name == "web1").expect("bound");
        assert_eq!((p.ips[0].as_str(), p.port.as_deref()), ("10.244.1.10", Some("psw1")));
        assert_eq!(p.labels.get("app").map(String::as_str), Some("shop"));
        let t = s.model.c.cell().load_full();
        assert_eq!(t.endpoints.on_port(PortId(a.port_id as u16)), t.endpoints.by_ip(v4));
        // `get pods` shows it as it runs.
        let listed = c
            .list(pb::ListRequest { kind: "pods".into(), namespace: "x".into(), name: "web1".into(), ..Default::default() })
            .await
            .expect("list the pod")
            .into_inner();
        let v: serde_json::Value = serde_json::from_str(&listed.objects[0].json).expect("json");
        assert_eq!((v["ips"][0].as_str(), v["port"].as_str()), (Some("10.244.1.10"), Some("psw1")), "{v}");
        assert_eq!(v["labels"]["app"], "shop");
        // Its Kubernetes form is the stored one with the attachment's node and addresses, and
        // applies back unchanged (a Pod's status is not compared by apply).
        let k: serde_json::Value = serde_json::from_str(&listed.objects[0].kubernetes).expect("kubernetes form");
        assert_eq!((k["spec"]["nodeName"].as_str(), k["status"]["podIP"].as_str()), (Some("node-1"), Some("10.244.1.10")), "{k}");
        let again = c
            .apply(pb::ApplyRequest { manifests: vec![pb::Manifest { format: "json".into(), source: "get".into(), content: k.to_string() }], ..Default::default() })
            .await
            .expect("apply what get printed")
            .into_inner();
        assert_eq!(again.changes[0].action, "unchanged", "{again:?}");
        // A pod attached without a Pod object is listed too, rendered from its attachment.
        let web2 = c
            .list(pb::ListRequest { kind: "pods".into(), namespace: "x".into(), name: "web2".into(), ..Default::default() })
            .await
            .expect("list the attached pod")
            .into_inner();
        assert_eq!(web2.objects[0].origin, "generated");
        let k: serde_json::Value = serde_json::from_str(&web2.objects[0].kubernetes).expect("kubernetes form");
        assert_eq!((k["kind"].as_str(), k["status"]["podIP"].as_str()), (Some("Pod"), Some("10.244.1.11")), "{k}");
        let ports = c.list(pb::ListRequest { kind: "ports".into(), ..Default::default() }).await.expect("list").into_inner();
        assert_eq!(ports.objects.len(), 2);

        // Refusals change nothing.
        let g = c.version(pb::VersionRequest {}).await.expect("version").into_inner().generation;
        for (bad, code) in [
            (pb::CniAddRequest { r#ref: None, ..add("c3", "psw3", "02:00:00:00:aa:03", "x", "w3") }, Code::InvalidArgument),
            (add("c3", "psw3", "ff:ff:ff:ff:ff:ff", "x", "w3"), Code::InvalidArgument),
            (add("c3", "psw3", "02:00:00:00:aa:03", "X_bad", "w3"), Code::InvalidArgument),
            (add("c3", "this-name-is-too-long", "02:00:00:00:aa:03", "x", "w3"), Code::InvalidArgument),
            (add("c3", "psw1", "02:00:00:00:aa:03", "x", "w3"), Code::FailedPrecondition),
            (add("c3", "psw3", "02:00:00:00:aa:03", "x", "web2"), Code::FailedPrecondition),
            (add("c3", "x-a", "02:00:00:00:aa:03", "x", "w3"), Code::FailedPrecondition),
        ] {
            let e = c.cni_add(bad.clone()).await.expect_err("refused");
            assert_eq!(e.code(), code, "{bad:?}: {}", e.message());
        }
        let mut bad_labels = add("c3", "psw3", "02:00:00:00:aa:03", "x", "w3");
        bad_labels.annotations.insert("podswitch.io/labels".into(), "novalue".into());
        assert_eq!(c.cni_add(bad_labels).await.expect_err("labels").code(), Code::InvalidArgument);
        assert_eq!(c.version(pb::VersionRequest {}).await.expect("version").into_inner().generation, g);

        // DEL frees the address and closes the port; a second DEL finds nothing.
        let d = c.cni_del(cref("c1")).await.expect("del").into_inner();
        assert_eq!(d.port, "psw1");
        assert!(!s.attached.lock().unwrap().contains_key(&(a.port_id as u16)));
        assert_eq!(c.cni_del(cref("c1")).await.expect_err("twice").code(), Code::NotFound);
        assert_eq!(c.cni_check(cref("c1")).await.expect_err("gone").code(), Code::NotFound);
        let t = s.model.c.cell().load_full();
        assert!(t.endpoints.by_ip(v4).is_none());
        // The Pod object stays, waiting for a sandbox again.
        let pods = c.list(pb::ListRequest { kind: "pods".into(), namespace: "x".into(), name: "web1".into(), ..Default::default() }).await;
        assert!(pods.is_ok());

        // The address is not handed out again at once.
        let e = c.cni_add(add("c4", "psw4", "02:00:00:00:aa:04", "y", "w4")).await.expect("add").into_inner();
        assert_eq!(ip_of(&e, true).to_string(), "10.244.1.12");

        // GC keeps the valid ones and removes the rest.
        let gc = c.cni_gc(pb::CniGcRequest { valid: vec![cref("c4")] }).await.expect("gc").into_inner();
        assert_eq!(gc.removed.iter().map(|r| r.port.as_str()).collect::<Vec<_>>(), ["psw2"]);
        assert_eq!(s.attached.lock().unwrap().len(), 1);

        // Ports added by hand take the same path.
        let p = c.add_port(pb::AddPortRequest { name: "extra".into(), kind: "pod".into(), interface: "veth9".into() }).await.expect("port").into_inner();
        assert!(s.attached.lock().unwrap().contains_key(&(p.id as u16)));
        assert_eq!(c.add_port(pb::AddPortRequest { name: "up".into(), kind: "uplink".into(), interface: "x".into() }).await.expect_err("kind").code(), Code::InvalidArgument);
        assert_eq!(c.remove_port(pb::RemovePortRequest { name: "uplink".into() }).await.expect_err("file port").code(), Code::FailedPrecondition);
        c.remove_port(pb::RemovePortRequest { name: "extra".into() }).await.expect("removed");
        assert_eq!(c.remove_port(pb::RemovePortRequest { name: "extra".into() }).await.expect_err("twice").code(), Code::NotFound);
    });
}
