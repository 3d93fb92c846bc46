//! # podswitch control
//!
//! The control plane: the TOML config model ([`config`]) and Kubernetes manifests ([`k8s`]),
//! the desired state they make ([`store`]), its validation and compilation into a table
//! snapshot ([`build`]), the one writer that changes it ([`controller`]), snapshot publication
//! to workers ([`publish`]), the gRPC API ([`api`]), packet traces ([`trace`]), the
//! daemon's run loops ([`daemon`] on captures, [`live`] on interfaces), ports and pods
//! attached at run time ([`attach`], for the CNI plugin), the crash-safe local state
//! ([`state`]) and the daemon's DNS resolver for what the dataplane does not answer ([`dns`]).

pub mod alloc;
pub mod announce;
pub mod api;
pub mod attach;
pub mod build;
pub mod cluster;
pub mod config;
pub mod controller;
pub mod daemon;
pub mod demo;
pub mod dns;
pub mod error;
pub mod handover;
pub mod health;
pub mod ingress;
pub mod k8s;
pub mod live;
pub mod metrics;
pub mod publish;
pub mod report;
pub mod resolver_port;
pub mod source;
pub mod state;
pub mod store;
pub mod trace;
