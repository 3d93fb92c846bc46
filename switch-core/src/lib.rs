//! # podswitch switch-core
//!
//! The forwarding core of podswitch: wire formats, tables and the run-to-completion batch
//! pipeline. It does no I/O, reads no clock and starts no thread; time, randomness seeds and
//! frames are passed in. See the README's architecture section for one packet's path.
//!
//! Layout, one module per concern:
//! - [`wire`]: checked zero-copy views of every header, and packet builders for tests.
//! - [`parse`]: the one header walker, frame -> [`parse::PacketMeta`].
//! - [`endpoint`], [`route`], [`service`], [`conntrack`], [`policy`]: the tables, each with
//!   its pipeline stage beside it.
//! - [`dns`]: cluster DNS answered in the dataplane.
//! - [`fragment`]: later IP fragments take the first fragment's ports (stage 1).
//! - [`overlay`]: VXLAN and Geneve encapsulation and decapsulation.
//! - [`nat`]: tuple rewrite with incremental checksums.
//! - [`pipeline`]: the per-worker batch pipeline and its counters.
//! - [`snapshot`]: the immutable [`snapshot::Tables`] the control plane publishes.

#![forbid(unsafe_code)]

pub mod addr;
pub mod conntrack;
pub mod dns;
pub mod drop;
pub mod endpoint;
pub mod flowtable;
pub mod fragment;
pub mod hash;
pub mod nat;
pub mod neighbor;
pub mod overlay;
pub mod packet;
pub mod parse;
pub mod pipeline;
pub mod policy;
pub mod route;
pub mod service;
pub mod snapshot;
pub mod testbed;
pub mod wire;
