//! The gRPC control API: types and stubs generated from `proto/podswitch/v1/control.proto`,
//! the daemon's server ([`server`]) and the client podswitchctl uses ([`client`]).

#[allow(clippy::all, missing_debug_implementations, missing_docs)]
pub mod pb {
    tonic::include_proto!("podswitch.v1");
}

pub mod client;
pub mod cni;
pub mod convert;
pub mod server;
