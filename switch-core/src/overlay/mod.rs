//! The overlay between nodes: VXLAN (RFC 7348) or Geneve (RFC 8926) over IPv4 or IPv6 UDP.
//! Decapsulation happens while parsing uplink frames; encapsulation is the last step before
//! a frame leaves for a remote node.

mod decap;
mod encap;

pub use decap::{decapsulate_len, Decap};
pub use encap::{encapsulate, outer_len, tunnel_source_port};
