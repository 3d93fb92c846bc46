//! Address and port translation written into packets, with incremental checksum updates
//! (RFC 1624) for the IPv4 header and the transport checksum over its pseudo-header.

pub mod related;
mod rewrite;

pub use rewrite::{rewrite_tuple, RewriteError};
