//! Endpoints: pods on this node (with their port and MAC) and pods elsewhere (identity only),
//! keyed by IP. The identity is what policy matches on; the control plane assigns one per
//! distinct (namespace, labels).

mod table;

pub use table::{Endpoint, EndpointId, EndpointTable, Identity};
