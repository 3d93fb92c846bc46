//! The gRPC server on a Unix socket: tonic glue over [`Controller`], on its own thread with a
//! single-threaded tokio runtime (the control plane is never on the packet path).

use super::convert;
use super::pb;
use super::pb::control_server::{Control, ControlServer};
use crate::controller::{Controller, Refusal};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// Largest request or response (a whole cluster's manifests in one apply).
pub const MAX_MESSAGE: usize = 256 << 20;

/// Default socket path.
pub const DEFAULT_SOCKET: &str = "/run/podswitch/podswitch.sock";

fn status(e: Refusal) -> Status {
    match e {
        Refusal::Invalid(m) => Status::invalid_argument(m),
        Refusal::NotFound(m) => Status::not_found(m),
        Refusal::Precondition(m) => Status::failed_precondition(m),
        Refusal::Unavailable(m) => Status::unavailable(m),
        Refusal::Exhausted(m) => Status::resource_exhausted(m),
    }
}

/// Runs a blocking controller call off the runtime's thread.
async fn blocking<T: Send + 'static>(
    c: &Arc<Controller>,
    f: impl FnOnce(&Controller) -> Result<T, Refusal> + Send + 'static,
) -> Result<Response<T>, Status> {
    let c = Arc::clone(c);
    match tokio::task::spawn_blocking(move || f(&c)).await {
        Ok(r) => r.map(Response::new).map_err(status),
        Err(_) => Err(Status::internal("request handler failed")),
    }
}

#[derive(Debug)]
struct Service {
    c: Arc<Controller>,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

#[tonic::async_trait]
impl Control for Service {
    async fn apply(&self, r: Request<pb::ApplyRequest>) -> Result<Response<pb::ChangeResponse>, Status> {
        let r = r.into_inner();
        let Some(validate) = crate::k8s::Validation::parse(&r.validate) else {
            return Err(Status::invalid_argument(format!("validate '{}' is not strict, warn or ignore", r.validate)));
        };
        let m = convert::manifests(r.manifests);
        blocking(&self.c, move |c| c.apply_validated(&m, r.dry_run, validate).map(|o| convert::outcome(&o))).await
    }

    async fn delete(&self, r: Request<pb::DeleteRequest>) -> Result<Response<pb::ChangeResponse>, Status> {
        let r = r.into_inner();
        let (refs, m) = (convert::object_refs(r.objects), convert::manifests(r.manifests));
        blocking(&self.c, move |c| c.delete(&refs, &m, r.dry_run).map(|o| convert::outcome(&o))).await
    }

    async fn list(&self, r: Request<pb::ListRequest>) -> Result<Response<pb::ListResponse>, Status> {
        let r = r.into_inner();
        blocking(&self.c, move |c| {
            c.list_selected(&r.kind, &r.namespace, &r.name, &r.label_selector).map(convert::listing)
        })
        .await
    }

    async fn add_route(&self, r: Request<pb::Route>) -> Result<Response<pb::ChangeResponse>, Status> {
        let r = r.into_inner();
        blocking(&self.c, move |c| c.add_route(convert::route(r)).map(|o| convert::outcome(&o))).await
    }

    async fn delete_route(&self, r: Request<pb::Route>) -> Result<Response<pb::ChangeResponse>, Status> {
        let r = r.into_inner();
        blocking(&self.c, move |c| c.delete_route(&r.prefix).map(|o| convert::outcome(&o))).await
    }

    async fn counters(&self, _: Request<pb::CountersRequest>) -> Result<Response<pb::CountersResponse>, Status> {
        Ok(Response::new(convert::counters(self.c.counters())))
    }

    async fn list_conntrack(&self, r: Request<pb::ConntrackFilter>) -> Result<Response<pb::ConntrackList>, Status> {
        let r = r.into_inner();
        let f = convert::filter(&r).map_err(status)?;
        let limit = r.limit as usize;
        blocking(&self.c, move |c| c.conntrack_list(&f, limit).map(convert::flows)).await
    }

    async fn flush_conntrack(&self, r: Request<pb::ConntrackFilter>) -> Result<Response<pb::FlushResponse>, Status> {
        let r = r.into_inner();
        let f = convert::filter(&r).map_err(status)?;
        blocking(&self.c, move |c| c.conntrack_flush(&f).map(|flushed| pb::FlushResponse { flushed })).await
    }

    async fn trace(&self, r: Request<pb::TraceRequest>) -> Result<Response<pb::TraceResponse>, Status> {
        let r = r.into_inner();
        let spec = convert::trace_spec(r);
        blocking(&self.c, move |c| c.trace(&spec).map(convert::trace)).await
    }

    type WatchStream = EventStream;

    async fn watch(&self, _: Request<pb::WatchRequest>) -> Result<Response<EventStream>, Status> {
        let rx = self.c.subscribe();
        let s = tokio_stream::wrappers::BroadcastStream::new(rx).map_while(|e| match e {
            Ok(ev) => Some(Ok(convert::event(ev))),
            // A watcher that fell behind is told so and ends; it can list and watch again.
            Err(_) => Some(Err(Status::data_loss("watcher fell behind; events were dropped"))),
        });
        Ok(Response::new(Box::pin(s)))
    }

    async fn version(&self, _: Request<pb::VersionRequest>) -> Result<Response<pb::VersionResponse>, Status> {
        Ok(Response::new(pb::VersionResponse {
            version: env!("CARGO_PKG_VERSION").into(),
            generation: self.c.cell().generation(),
            node: self.c.node_name(),
        }))
    }

    async fn add_port(&self, r: Request<pb::AddPortRequest>) -> Result<Response<pb::PortResponse>, Status> {
        let r = r.into_inner();
        blocking(&self.c, move |c| c.add_port(&r.name, &r.kind, &r.interface).map(|p| super::cni::port_pb(&p))).await
    }

    async fn remove_port(&self, r: Request<pb::RemovePortRequest>) -> Result<Response<pb::PortResponse>, Status> {
        let r = r.into_inner();
        blocking(&self.c, move |c| c.remove_port(&r.name).map(|p| super::cni::port_pb(&p))).await
    }

    async fn cni_add(&self, r: Request<pb::CniAddRequest>) -> Result<Response<pb::CniAttachment>, Status> {
        let r = super::cni::add_request(r.into_inner()).map_err(Status::invalid_argument)?;
        blocking(&self.c, move |c| c.cni_add(r).map(|a| super::cni::attachment_pb(&a))).await
    }

    async fn cni_del(&self, r: Request<pb::CniRef>) -> Result<Response<pb::CniAttachment>, Status> {
        let r = super::cni::cni_ref(Some(r.into_inner())).map_err(Status::invalid_argument)?;
        blocking(&self.c, move |c| c.cni_del(&r).map(|a| super::cni::attachment_pb(&a))).await
    }

    async fn cni_check(&self, r: Request<pb::CniRef>) -> Result<Response<pb::CniAttachment>, Status> {
        let r = super::cni::cni_ref(Some(r.into_inner())).map_err(Status::invalid_argument)?;
        blocking(&self.c, move |c| c.cni_check(&r).map(|a| super::cni::attachment_pb(&a))).await
    }

    async fn cni_gc(&self, r: Request<pb::CniGcRequest>) -> Result<Response<pb::CniGcResponse>, Status> {
        let valid = r
            .into_inner()
            .valid
            .into_iter()
            .map(|v| super::cni::cni_ref(Some(v)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(Status::invalid_argument)?;
        blocking(&self.c, move |c| {
            c.cni_gc(&valid).map(|v| pb::CniGcResponse { removed: v.iter().map(super::cni::attachment_pb).collect() })
        })
        .await
    }

    async fn cni_status(&self, _: Request<pb::CniStatusRequest>) -> Result<Response<pb::CniStatusResponse>, Status> {
        let (ready, message) = self.c.cni_status();
        Ok(Response::new(pb::CniStatusResponse { ready, message }))
    }
}

use tokio_stream::StreamExt as _;

/// Binds the socket: creates its directory, refuses to take over a live daemon's socket,
/// replaces a stale one, and sets mode 0660 (owner and group may call; nobody else).
pub fn bind(path: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} is in use by a running daemon", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let l = std::os::unix::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// The numeric id of group `name` (or `name` itself if it is a number), from /etc/group.
pub fn group_id(name: &str) -> std::io::Result<u32> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(n);
    }
    let text = std::fs::read_to_string("/etc/group")?;
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let n = f.next()?;
            let gid = f.nth(1)?.parse::<u32>().ok()?;
            (n == name).then_some(gid)
        })
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("no group '{name}' in /etc/group")))
}

/// Gives the socket to `group` (its members may then call the API; mode 0660).
pub fn set_group(path: &Path, group: &str) -> std::io::Result<()> {
    std::os::unix::fs::chown(path, None, Some(group_id(group)?))
}

/// Serves the API on `listener` until `stop` is set; removes the socket file at the end.
pub fn spawn(
    c: Arc<Controller>,
    listener: std::os::unix::net::UnixListener,
    path: PathBuf,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("psw-api".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!("api runtime: {e}");
                return;
            }
        };
        rt.block_on(async move {
            let l = match tokio::net::UnixListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!("api socket: {e}");
                    return;
                }
            };
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(l);
            let stopped = {
                let stop = Arc::clone(&stop);
                async move {
                    while !stop.load(Ordering::Relaxed) {
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            };
            let serve = tonic::transport::Server::builder()
                .add_service(
                    ControlServer::new(Service { c })
                        .max_decoding_message_size(MAX_MESSAGE)
                        .max_encoding_message_size(MAX_MESSAGE),
                )
                .serve_with_incoming_shutdown(incoming, stopped);
            // Graceful shutdown waits for open connections (a `watch`, say); give them a
            // second, then drop them.
            let grace = async move {
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            };
            let r = tokio::select! {
                r = serve => r,
                () = grace => Ok(()),
            };
            if let Err(e) = r {
                tracing::error!("api server: {e}");
            }
        });
        let _ = std::fs::remove_file(&path);
    })
}
