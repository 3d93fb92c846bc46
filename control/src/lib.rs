//! # podswitch control
//!
//! The control plane: the TOML config model ([`config`]), its validation and compilation into
//! a table snapshot ([`build`]), snapshot publication to workers ([`publish`]), and the
//! daemon's run loop ([`daemon`]).

pub mod api;
pub mod build;
pub mod config;
pub mod controller;
pub mod daemon;
pub mod demo;
pub mod error;
pub mod k8s;
pub mod live;
pub mod metrics;
pub mod publish;
pub mod report;
pub mod store;
pub mod trace;
