//! Routes: longest-prefix match from a destination address to where the packet goes next.

mod lpm;
pub(crate) mod stage;
mod table;

pub use lpm::Lpm;
pub use table::{NodeId, RemoteNode, RouteTable, RouteTarget};
