//! Network policy: Kubernetes NetworkPolicy rules, already resolved by the control plane to
//! identities and CIDRs, compiled into one classifier per (endpoint set, direction).
//!
//! Semantics: an endpoint that no policy selects for a direction allows everything in that
//! direction (it has no classifier). A selected endpoint is isolated: a packet passes only if
//! some rule of some selecting policy matches its peer and its port. Replies of allowed flows
//! pass through conntrack without reaching the classifier.

mod classifier;
mod model;
pub(crate) mod stage;
#[cfg(test)]
mod tests;

pub use classifier::{Classifier, ClassifierId, CompileError, PolicyTable, MAX_CIDR_ENTRIES};
pub use model::{DirectionRules, PeerMatch, PolicyRule, PortMatch, RuleId};
