//! A stand-in for podswitchd's CNI calls, as control.proto documents them: CniAdd allocates
//! the next address of 10.99.0.0/24 (gateway 10.99.0.1) and returns the existing attachment
//! for the same container and interface; CniDel, CniCheck answer NOT_FOUND for unknown
//! attachments; CniGc removes every attachment not listed; CniStatus is ready. A container id
//! starting with `exhaust` gets RESOURCE_EXHAUSTED from CniAdd, one starting with `badaddr`
//! an attachment whose address has no prefix length. Every other RPC is UNIMPLEMENTED. Runs
//! on its own thread until dropped.

use control::api::pb;
use control::api::pb::control_server::{Control, ControlServer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

type Key = (String, String);

/// What the mock recorded.
#[derive(Debug, Default)]
pub struct State {
    pub attachments: BTreeMap<Key, pb::CniAttachment>,
    pub next_host: u8,
    /// Names of the RPCs received, in order.
    pub calls: Vec<String>,
    /// The last CniAddRequest.
    pub last_add: Option<pb::CniAddRequest>,
}

#[derive(Debug, Clone)]
struct Mock {
    state: Arc<Mutex<State>>,
}

fn key(r: Option<&pb::CniRef>) -> Result<Key, Status> {
    let r = r.ok_or_else(|| Status::invalid_argument("no ref"))?;
    Ok((r.container_id.clone(), r.ifname.clone()))
}

type Events = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

fn no<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not in the mock"))
}

#[tonic::async_trait]
impl Control for Mock {
    async fn apply(&self, _: Request<pb::ApplyRequest>) -> Result<Response<pb::ChangeResponse>, Status> {
        no()
    }
    async fn delete(&self, _: Request<pb::DeleteRequest>) -> Result<Response<pb::ChangeResponse>, Status> {
        no()
    }
    async fn list(&self, _: Request<pb::ListRequest>) -> Result<Response<pb::ListResponse>, Status> {
        no()
    }
    async fn add_route(&self, _: Request<pb::Route>) -> Result<Response<pb::ChangeResponse>, Status> {
        no()
    }
    async fn delete_route(&self, _: Request<pb::Route>) -> Result<Response<pb::ChangeResponse>, Status> {
        no()
    }
    async fn counters(&self, _: Request<pb::CountersRequest>) -> Result<Response<pb::CountersResponse>, Status> {
        no()
    }
    async fn list_conntrack(&self, _: Request<pb::ConntrackFilter>) -> Result<Response<pb::ConntrackList>, Status> {
        no()
    }
    async fn flush_conntrack(&self, _: Request<pb::ConntrackFilter>) -> Result<Response<pb::FlushResponse>, Status> {
        no()
    }
    async fn trace(&self, _: Request<pb::TraceRequest>) -> Result<Response<pb::TraceResponse>, Status> {
        no()
    }
    type WatchStream = Events;
    async fn watch(&self, _: Request<pb::WatchRequest>) -> Result<Response<Events>, Status> {
        no()
    }
    async fn version(&self, _: Request<pb::VersionRequest>) -> Result<Response<pb::VersionResponse>, Status> {
        no()
    }
    async fn add_port(&self, _: Request<pb::AddPortRequest>) -> Result<Response<pb::PortResponse>, Status> {
        no()
    }
    async fn remove_port(&self, _: Request<pb::RemovePortRequest>) -> Result<Response<pb::PortResponse>, Status> {
        no()
    }

    async fn cni_add(&self, r: Request<pb::CniAddRequest>) -> Result<Response<pb::CniAttachment>, Status> {
        let r = r.into_inner();
        let k = key(r.r#ref.as_ref())?;
        let mut s = self.state.lock().unwrap();
        s.calls.push("CniAdd".into());
        s.last_add = Some(r.clone());
        if k.0.starts_with("exhaust") {
            return Err(Status::resource_exhausted("no free address"));
        }
        if let Some(a) = s.attachments.get(&k) {
            return Ok(Response::new(a.clone()));
        }
        if r.host_interface.is_empty() || r.mac.len() != 17 {
            return Err(Status::invalid_argument("host_interface and mac are required"));
        }
        s.next_host += 1;
        let host = 9 + s.next_host;
        let a = pb::CniAttachment {
            r#ref: r.r#ref.clone(),
            netns: r.netns.clone(),
            host_interface: r.host_interface.clone(),
            port: format!("pod-{host}"),
            port_id: u32::from(host),
            mac: r.mac.clone(),
            ips: vec![
                pb::CniIp { address: format!("10.99.0.{host}/24"), gateway: "10.99.0.1".into() },
                pb::CniIp { address: format!("fd00:99::{host:x}/64"), gateway: "fd00:99::1".into() },
            ],
            routes: vec![
                pb::CniRoute { dst: "0.0.0.0/0".into(), gw: "10.99.0.1".into() },
                pb::CniRoute { dst: "::/0".into(), gw: "fd00:99::1".into() },
            ],
            mtu: 1400,
            dns: Some(pb::CniDns {
                nameservers: vec!["10.96.0.10".into()],
                domain: "cluster.local".into(),
                search: vec!["default.svc.cluster.local".into()],
                options: vec!["ndots:5".into()],
            }),
            pod_namespace: if r.pod_namespace.is_empty() { "default".into() } else { r.pod_namespace.clone() },
            pod_name: if r.pod_name.is_empty() { k.0.clone() } else { r.pod_name.clone() },
        };
        let mut a = a;
        if k.0.starts_with("badaddr") {
            a.ips[0].address = "10.99.0.250".into();
        }
        s.attachments.insert(k, a.clone());
        Ok(Response::new(a))
    }

    async fn cni_del(&self, r: Request<pb::CniRef>) -> Result<Response<pb::CniAttachment>, Status> {
        let k = key(Some(r.get_ref()))?;
        let mut s = self.state.lock().unwrap();
        s.calls.push("CniDel".into());
        s.attachments.remove(&k).map(Response::new).ok_or_else(|| Status::not_found("no such attachment"))
    }

    async fn cni_check(&self, r: Request<pb::CniRef>) -> Result<Response<pb::CniAttachment>, Status> {
        let k = key(Some(r.get_ref()))?;
        let mut s = self.state.lock().unwrap();
        s.calls.push("CniCheck".into());
        s.attachments.get(&k).cloned().map(Response::new).ok_or_else(|| Status::not_found("no such attachment"))
    }

    async fn cni_gc(&self, r: Request<pb::CniGcRequest>) -> Result<Response<pb::CniGcResponse>, Status> {
        let valid: Vec<Key> = r.into_inner().valid.iter().map(|v| (v.container_id.clone(), v.ifname.clone())).collect();
        let mut s = self.state.lock().unwrap();
        s.calls.push("CniGc".into());
        let gone: Vec<Key> = s.attachments.keys().filter(|k| !valid.contains(k)).cloned().collect();
        let removed = gone.iter().filter_map(|k| s.attachments.remove(k)).collect();
        Ok(Response::new(pb::CniGcResponse { removed }))
    }

    async fn cni_status(&self, _: Request<pb::CniStatusRequest>) -> Result<Response<pb::CniStatusResponse>, Status> {
        self.state.lock().unwrap().calls.push("CniStatus".into());
        Ok(Response::new(pb::CniStatusResponse { ready: true, message: String::new() }))
    }
}

/// A running mock; stops when dropped.
#[derive(Debug)]
pub struct MockDaemon {
    pub socket: PathBuf,
    pub state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MockDaemon {
    /// Serves on a new socket at `socket`.
    pub fn start(socket: &Path) -> MockDaemon {
        let _ = std::fs::remove_file(socket);
        let listener = std::os::unix::net::UnixListener::bind(socket).expect("bind mock socket");
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let mock = Mock { state: Arc::clone(&state) };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let l = tokio::net::UnixListener::from_std(listener).unwrap();
                let incoming = tokio_stream::wrappers::UnixListenerStream::new(l);
                let _ = tonic::transport::Server::builder()
                    .add_service(ControlServer::new(mock))
                    .serve_with_incoming_shutdown(incoming, async {
                        let _ = rx.await;
                    })
                    .await;
            });
        });
        MockDaemon { socket: socket.to_path_buf(), state, stop: Some(tx), thread: Some(thread) }
    }

    /// The RPC names received so far.
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }
}

impl Drop for MockDaemon {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}
