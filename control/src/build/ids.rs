//! Stable ids: identities, service ports and policy rules keep their number for as long as
//! the object they name lives, whatever else is applied or deleted around them (ids derived
//! from sort position renamed the flows of `conntrack list` after an unrelated apply, and
//! could point a tracked flow's service or rule at another object).
//!
//! A freed id is given out again only after [`QUARANTINE`] other ids have been freed since
//! (first freed, first reused), so that a flow still carrying it has long been checked
//! against a newer snapshot (unanswered flows are re-checked after every table change; see
//! `conntrack/stage.rs`), and the tables indexed by id stay within about twice their live size.

use std::collections::{HashMap, HashSet, VecDeque};
use switch_core::policy::{Classifier, DirectionRules};

/// A classifier's input: whether it is for ingress, and its rules in order.
pub(crate) type ClassifierInput = (bool, DirectionRules);

/// A compiled classifier with the input it was compiled from.
pub(crate) type Compiled = (ClassifierInput, std::sync::Arc<Classifier>);

/// A local pod's classifiers: ingress, egress (with the hash of each one's input).
pub(crate) type PodClassifiers = [Option<(u64, std::sync::Arc<Compiled>)>; 2];

/// Rule ids by (policy index, ingress?, rule index), names by id, and the policy count.
pub(crate) type RuleTable = (HashMap<(usize, bool, usize), u32>, std::sync::Arc<Vec<String>>, usize);

/// Which parts of the last build a build may keep: the classifiers of local pods not in
/// `pods`, and the validation of policies not in `policies` (`None`: nothing is kept). A
/// change of pods, namespaces or policies names what it touched; see
/// `Controller::rebuild_pods`.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Local pods (namespace, name) whose classifiers are compiled again.
    pub pods: Option<HashSet<(String, String)>>,
    /// Policies (namespace, name) validated again.
    pub policies: Option<HashSet<(String, String)>>,
}

impl Scope {
    /// Everything built again (a full build).
    pub fn all() -> Scope {
        Scope::default()
    }
}
use std::hash::Hash;

/// Freed ids waiting before one of them is reused.
pub const QUARANTINE: usize = 1024;

/// Ids of one kind of object, by the object's key.
#[derive(Debug, Clone)]
pub struct Interner<K> {
    ids: HashMap<K, u32>,
    freed: VecDeque<u32>,
    next: u32,
}

impl<K> Default for Interner<K> {
    fn default() -> Interner<K> {
        Interner { ids: HashMap::new(), freed: VecDeque::new(), next: 0 }
    }
}

impl<K: Hash + Eq + Clone> Interner<K> {
    /// The id of `k`, given one if it has none.
    pub fn id(&mut self, k: &K) -> u32 {
        if let Some(id) = self.ids.get(k) {
            return *id;
        }
        let id = if self.freed.len() > QUARANTINE {
            self.freed.pop_front().unwrap_or(self.next)
        } else {
            self.next += 1;
            self.next - 1
        };
        self.ids.insert(k.clone(), id);
        id
    }

    /// The id of `k` if it has one.
    pub fn get(&self, k: &K) -> Option<u32> {
        self.ids.get(k).copied()
    }

    /// Frees the id of `k` (if it has one).
    pub fn free(&mut self, k: &K) {
        if let Some(id) = self.ids.remove(k) {
            self.freed.push_back(id);
        }
    }

    /// Frees the ids of every key not in `live`.
    pub fn retain(&mut self, live: &HashSet<K>) {
        let freed = &mut self.freed;
        self.ids.retain(|k, id| {
            let keep = live.contains(k);
            if !keep {
                freed.push_back(*id);
            }
            keep
        });
    }

    /// One more than the largest id given (the length of a table indexed by id).
    pub fn bound(&self) -> u32 {
        self.ids.values().map(|i| i + 1).max().unwrap_or(0)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// What one build hands the next: every kind of stable id of a node's tables, and the
/// policy classifiers it compiled (by their input), so that the next build compiles only the
/// classifiers whose rules changed. A change works on a copy and keeps it only if published.
#[derive(Debug, Clone, Default)]
pub struct Ids {
    /// Compiled classifiers by the hash of their input (what the last build used, nothing
    /// else); shared, so that copying `Ids` for a change copies pointers only.
    pub(crate) classifiers: std::sync::Arc<HashMap<u64, std::sync::Arc<Compiled>>>,
    /// Each local pod's (ingress, egress) classifiers in the last build (`None`: no policy
    /// selects it in that direction), for pods a change does not touch.
    pub(crate) pod_classifiers: std::sync::Arc<HashMap<(String, String), PodClassifiers>>,
    /// By (namespace, labels): the security identity of the pods that share them.
    pub identities: Interner<(String, crate::config::Labels)>,
    /// By service port name (`namespace/name:port[/v6]`); shared between a change's copy and
    /// the live one until the change gives or frees an id (most changes do neither).
    pub service_ports: std::sync::Arc<Interner<String>>,
    /// By rule name (`namespace/policy ingress[j]`), shared likewise.
    pub rules: std::sync::Arc<Interner<String>>,
    /// The last build's rule ids by (policy index, ingress?, rule index) and rule names by id,
    /// with the number of policies: kept as they are by a build that changes no policy.
    pub(crate) rule_table: Option<std::sync::Arc<RuleTable>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_stay_and_freed_ones_wait() {
        let mut i: Interner<String> = Interner::default();
        let a = i.id(&"a".to_string());
        let b = i.id(&"b".to_string());
        assert_eq!((a, b), (0, 1));
        i.retain(&["b".to_string()].into());
        assert_eq!(i.id(&"b".to_string()), 1, "b keeps its id when a goes");
        assert_eq!(i.id(&"c".to_string()), 2, "a's id is not reused at once");
        // Once more than QUARANTINE ids wait, the first freed is reused.
        let many: Vec<String> = (0..QUARANTINE + 1).map(|n| format!("x{n}")).collect();
        for k in &many {
            i.id(k);
        }
        i.retain(&["b".to_string(), "c".to_string()].into());
        assert_eq!(i.id(&"d".to_string()), 0, "the first freed id comes back first");
        assert!(i.bound() as usize <= QUARANTINE + 4);
    }
}
