//! podswitch-cni: the CNI plugin of podswitch (CNI spec 1.0, plus STATUS and GC of 1.1).
//!
//! The plugin owns the network-namespace work (a veth pair per container interface, the
//! container end's addresses, routes, MTU and checksum offload); podswitchd owns address
//! management, the switch port and the pod's registration, asked over its control socket
//! (the `Cni*` RPCs of `control/proto/podswitch/v1/control.proto`).
//!
//! - [`config`]: environment, `CNI_ARGS`, the network configuration on stdin;
//! - [`netlink`]: the kernel side, usable without the daemon (in `io-backends`, which owns
//!   the system calls; the daemon's resolver port uses it too);
//! - [`daemon`]: the RPCs and their error mapping;
//! - [`plugin`]: the commands;
//! - [`result`], [`error`]: what is printed.

#![warn(missing_docs)]

pub mod config;
pub mod daemon;
pub mod error;
pub use io_backends::netlink;
pub mod plugin;
pub mod result;
