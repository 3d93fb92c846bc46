//! Fragment tracking: later fragments of a datagram carry no transport header, so they learn
//! their ports from the first fragment and then follow the flow like any packet of it
//! (conntrack hit, same NAT, same owner worker).
//!
//! It runs in stage 1 (receive), on the worker that received the frame, before the flow owner
//! is computed (`pipeline/owner.rs`): the first fragment records its ports and owner in this
//! worker's table, a later one takes them, so both go to the same owner. That needs every
//! fragment of a datagram to arrive on one receiving worker, which holds: AF_PACKET's fanout
//! hash and the kernel's flow dissector hash fragments on their addresses only (the ports are
//! not in every fragment), NIC RSS does the same for fragments, and a veth queue follows the
//! sending socket, which sends all fragments of a datagram.
//!
//! Only first fragments create state; a later fragment that finds no entry (it overtook the
//! first, or the entry timed out) is dropped as `fragment_unmatched`, and one whose flow is
//! not in conntrack (its first fragment was refused) as `fragment_no_flow`. Fragments are
//! forwarded as they are, never reassembled.

pub mod stage;
pub mod table;

pub use table::{FragEntry, FragKey, FragmentTable};
