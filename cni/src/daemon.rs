//! The calls to podswitchd (the `Cni*` RPCs of control.proto) over its Unix socket, made
//! synchronously from the plugin, and how their failures map to CNI error codes.

use crate::error::{CniError, DAEMON_REFUSED, INVALID_CONFIG, IO_FAILURE, TRY_AGAIN_LATER, UNKNOWN_CONTAINER};
use control::api::client;
use control::api::pb;
use control::api::pb::control_client::ControlClient;
use std::future::Future;
use std::path::Path;
use std::time::Duration;
use tonic::transport::Channel;
use tonic::Code;

/// How long one call (connecting included) may take before the plugin gives up with code 11.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a call failed.
#[derive(Debug, Clone)]
pub enum DaemonError {
    /// No connection (no socket, connection refused, timeout): the daemon was not told.
    Unreachable(String),
    /// The daemon answered with an error status.
    Status(Code, String),
}

impl DaemonError {
    /// Whether the daemon answered NOT_FOUND.
    pub fn is_not_found(&self) -> bool {
        matches!(self, DaemonError::Status(Code::NotFound, _))
    }

    /// The CNI error for this failure of the RPC `rpc`:
    /// unreachable, UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED and ABORTED: 11 (try
    /// again later); INVALID_ARGUMENT: 7; FAILED_PRECONDITION: 5; NOT_FOUND: 3; anything
    /// else (INTERNAL, UNIMPLEMENTED, PERMISSION_DENIED...): 100.
    pub fn to_cni(&self, rpc: &str) -> CniError {
        match self {
            DaemonError::Unreachable(m) => {
                CniError::new(TRY_AGAIN_LATER, format!("podswitchd is not reachable ({rpc})")).with_details(m.clone())
            }
            DaemonError::Status(code, m) => {
                let n = match code {
                    Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Aborted => {
                        TRY_AGAIN_LATER
                    }
                    Code::InvalidArgument => INVALID_CONFIG,
                    Code::FailedPrecondition => IO_FAILURE,
                    Code::NotFound => UNKNOWN_CONTAINER,
                    _ => DAEMON_REFUSED,
                };
                CniError::new(n, format!("podswitchd refused {rpc}: {code:?}")).with_details(m.clone())
            }
        }
    }
}

/// Connects to the socket and runs `f` with the client on a fresh single-threaded runtime,
/// within [`CALL_TIMEOUT`].
pub fn call<T, F, Fut>(socket: &Path, f: F) -> Result<T, DaemonError>
where
    F: FnOnce(ControlClient<Channel>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DaemonError::Unreachable(format!("tokio runtime: {e}")))?;
    rt.block_on(async {
        let work = async {
            let c = client::connect(socket.to_path_buf()).await.map_err(DaemonError::Unreachable)?;
            f(c).await.map(tonic::Response::into_inner).map_err(|s| {
                // A transport failure surfaces as UNAVAILABLE or UNKNOWN with a source;
                // either way the daemon may not have acted, which code 11 says.
                DaemonError::Status(s.code(), s.message().to_string())
            })
        };
        match tokio::time::timeout(CALL_TIMEOUT, work).await {
            Ok(r) => r,
            Err(_) => Err(DaemonError::Unreachable(format!("no answer within {} s", CALL_TIMEOUT.as_secs()))),
        }
    })
}

/// A CniRef for a container id and interface name.
pub fn cni_ref(container_id: &str, ifname: &str) -> pb::CniRef {
    pb::CniRef { container_id: container_id.to_string(), ifname: ifname.to_string() }
}

/// CniAdd.
pub fn cni_add(socket: &Path, req: pb::CniAddRequest) -> Result<pb::CniAttachment, DaemonError> {
    call(socket, |mut c| async move { c.cni_add(req).await })
}

/// CniDel; `Ok(None)` when the daemon had no such attachment (NOT_FOUND).
pub fn cni_del(socket: &Path, r: pb::CniRef) -> Result<Option<pb::CniAttachment>, DaemonError> {
    match call(socket, |mut c| async move { c.cni_del(r).await }) {
        Ok(a) => Ok(Some(a)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// CniCheck; `Ok(None)` when the daemon has no such attachment (NOT_FOUND).
pub fn cni_check(socket: &Path, r: pb::CniRef) -> Result<Option<pb::CniAttachment>, DaemonError> {
    match call(socket, |mut c| async move { c.cni_check(r).await }) {
        Ok(a) => Ok(Some(a)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// CniGc with the attachments still in use.
pub fn cni_gc(socket: &Path, valid: Vec<pb::CniRef>) -> Result<pb::CniGcResponse, DaemonError> {
    call(socket, |mut c| async move { c.cni_gc(pb::CniGcRequest { valid }).await })
}

/// CniStatus.
pub fn cni_status(socket: &Path) -> Result<pb::CniStatusResponse, DaemonError> {
    call(socket, |mut c| async move { c.cni_status(pb::CniStatusRequest {}).await })
}
