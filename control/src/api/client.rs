//! A client of the control socket (what podswitchctl uses).

use super::pb::control_client::ControlClient;
use hyper_util::rt::TokioIo;
use std::path::PathBuf;
use tonic::transport::{Channel, Endpoint};

/// Connects to the daemon's Unix socket.
pub async fn connect(path: PathBuf) -> Result<ControlClient<Channel>, String> {
    let shown = path.display().to_string();
    // The URI is required by the API but unused: every connection goes to the socket.
    let ep = Endpoint::try_from("http://podswitchd.invalid").map_err(|e| e.to_string())?;
    let ch = ep
        .connect_with_connector(tower::service_fn(move |_| {
            let p = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(p).await?)) }
        }))
        .await
        .map_err(|e| {
            let mut m = format!("cannot connect to {shown}: {e}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                m = format!("cannot connect to {shown}: {s}");
                src = s.source();
            }
            m
        })?;
    Ok(ControlClient::new(ch).max_decoding_message_size(256 << 20).max_encoding_message_size(256 << 20))
}
