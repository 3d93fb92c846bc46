//! Connection tracking: both directions of each flow, with the address translation to apply
//! to each and enough TCP state for sane timeouts. One table per worker (no sharing, no locks);
//! bounded, with eviction; expiry by the time passed in.

mod image;
pub(crate) mod stage;
mod state;
mod table;

pub use image::{FlowImage, ImportError};
pub use state::{CtTimeouts, TcpState};
pub use table::{Conntrack, CtEntry, CtStats, Direction, FlowKey, NewFlow, Tuple};
