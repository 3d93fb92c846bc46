//! NetworkPolicy compiled per local pod and direction. Peers resolve to identities (pods
//! selected by podSelector within the policy's namespace, or within the namespaces a
//! namespaceSelector picks; both in one peer are ANDed, separate peers ORed) or to CIDRs
//! (ipBlock with except). Named ports resolve against the selected pod for ingress and
//! against the peer pods for egress. A pod no policy selects for a direction is not isolated
//! in it.

use super::parse::{self, Sec};
use super::selector;
use super::Pod;
use crate::config::{Labels, PeerConfig, PolicyConfig, PolicyPortConfig, PortRef};
use crate::error::FieldError;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use switch_core::addr::Prefix;
use switch_core::endpoint::{Endpoint, Identity};
use switch_core::policy::{
    Classifier, ClassifierId, CompileError, DirectionRules, PeerMatch, PolicyRule, PolicyTable, PortMatch, RuleId,
};

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
enum Dir {
    Ingress,
    Egress,
}

/// Pods with the same rules and the same named ports share a classifier.
type ClassifierKey = (Dir, Vec<RuleId>, Vec<(Option<String>, u16, u8)>);

/// Which directions a policy applies to, as Kubernetes defaults them.
fn types(sec: Sec, i: usize, p: &PolicyConfig) -> Result<(bool, bool), FieldError> {
    match &p.policy_types {
        None => Ok((true, !p.egress.is_empty())),
        Some(t) => {
            let mut ing = false;
            let mut eg = false;
            for (j, x) in t.iter().enumerate() {
                match x.as_str() {
                    "Ingress" => ing = true,
                    "Egress" => eg = true,
                    o => {
                        return Err(FieldError::new(
                            sec,
                            format!("policies[{i}].policy_types[{j}]"),
                            format!("'{o}' is not one of Ingress, Egress"),
                        ))
                    }
                }
            }
            Ok((ing, eg))
        }
    }
}

/// The pods peers' selectors pick, each distinct selector worked out once per build: the
/// selectors are matched against each identity (namespace and labels) rather than each pod,
/// and the answer is kept for every rule that repeats the selector (10,000 rules over 1,000
/// pods matched every pod for every peer of every rule of every local pod: 20 million label
/// comparisons, most of a full build).
struct Peers<'a, 'c> {
    pods: &'a [Pod],
    ns_labels: &'a BTreeMap<String, Labels>,
    /// For each pod, the index of its (namespace, labels) group.
    group_of: Vec<usize>,
    /// Each group once: (namespace, labels).
    groups: Vec<(&'a str, &'a Labels)>,
    /// By hash of (scope, namespace selector, pod selector): each such peer met so far (a
    /// peer of the config, compared by value) and its pods.
    memo: HashMap<u64, Vec<Picked<'a, 'c>>>,
}

/// A peer met before and the pods it picks.
type Picked<'a, 'c> = (PeerKey<'c>, std::rc::Rc<Vec<&'a Pod>>);

/// A peer's selectors with the namespace they apply in (empty with a namespace selector).
type PeerKey<'c> = (&'c str, &'c Option<crate::config::LabelSelector>, &'c Option<crate::config::LabelSelector>);

impl<'a, 'c> Peers<'a, 'c> {
    fn new(pods: &'a [Pod], ns_labels: &'a BTreeMap<String, Labels>) -> Peers<'a, 'c> {
        let mut index: HashMap<(&str, &Labels), usize> = HashMap::new();
        let mut groups = Vec::new();
        let group_of = pods
            .iter()
            .map(|p| {
                *index.entry((p.namespace.as_str(), &p.labels)).or_insert_with(|| {
                    groups.push((p.namespace.as_str(), &p.labels));
                    groups.len() - 1
                })
            })
            .collect();
        Peers { pods, ns_labels, group_of, groups, memo: HashMap::new() }
    }

    /// The pods `peer` (of a policy in `policy_ns`) picks, in pod order.
    fn select(&mut self, peer: &'c PeerConfig, policy_ns: &'c str) -> std::rc::Rc<Vec<&'a Pod>> {
        let scope = if peer.namespace_selector.is_some() { "" } else { policy_ns };
        let key: PeerKey<'c> = (scope, &peer.namespace_selector, &peer.pod_selector);
        let hash = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            key.hash(&mut h);
            h.finish()
        };
        if let Some((_, v)) = self.memo.get(&hash).and_then(|l| l.iter().find(|(k, _)| *k == key)) {
            return std::rc::Rc::clone(v);
        }
        let ns_labels = self.ns_labels;
        let picked: Vec<bool> = self
            .groups
            .iter()
            .map(|(ns, labels)| {
                let ns_ok = match &peer.namespace_selector {
                    Some(sel) => ns_labels.get(*ns).is_some_and(|l| selector::matches(sel, l)),
                    None => *ns == policy_ns,
                };
                ns_ok && peer.pod_selector.as_ref().is_none_or(|sel| selector::matches(sel, labels))
            })
            .collect();
        let v: Vec<&Pod> = self.pods.iter().zip(&self.group_of).filter(|(_, g)| picked[**g]).map(|(p, _)| p).collect();
        let v = std::rc::Rc::new(v);
        self.memo.entry(hash).or_default().push((key, std::rc::Rc::clone(&v)));
        v
    }
}

fn validate_peer(sec: Sec, field: &str, peer: &PeerConfig) -> Result<(), FieldError> {
    if let Some(b) = &peer.ip_block {
        let cidr = parse::prefix(sec, &format!("{field}.ip_block.cidr"), &b.cidr)?;
        for (k, e) in b.except.iter().enumerate() {
            let ex = parse::prefix(sec, &format!("{field}.ip_block.except[{k}]"), e)?;
            if ex.is_v4() != cidr.is_v4() || !cidr.contains(ex.addr()) || ex.len() < cidr.len() {
                return Err(FieldError::new(
                    sec,
                    format!("{field}.ip_block.except[{k}]"),
                    format!("{e} is not inside {}", b.cidr),
                ));
            }
        }
    }
    if peer.ip_block.is_some() && (peer.pod_selector.is_some() || peer.namespace_selector.is_some()) {
        return Err(FieldError::new(sec, field, "ip_block cannot be combined with pod_selector or namespace_selector"));
    }
    if peer.ip_block.is_none() && peer.pod_selector.is_none() && peer.namespace_selector.is_none() {
        return Err(FieldError::new(sec, field, "a peer needs pod_selector, namespace_selector or ip_block"));
    }
    if let Some(s) = &peer.pod_selector {
        selector::validate(sec, &format!("{field}.pod_selector"), s)?;
    }
    if let Some(s) = &peer.namespace_selector {
        selector::validate(sec, &format!("{field}.namespace_selector"), s)?;
    }
    Ok(())
}

/// Port matches of a rule. Named ports resolve through `named`; a rule whose ports all fail to
/// resolve matches nothing (returns `None`).
fn ports(
    sec: Sec,
    field: &str,
    ps: &[PolicyPortConfig],
    named: &dyn Fn(&str, u8) -> Vec<u16>,
) -> Result<Option<Vec<PortMatch>>, FieldError> {
    if ps.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let mut out = Vec::new();
    for (k, p) in ps.iter().enumerate() {
        let f = format!("{field}.ports[{k}]");
        let proto = parse::protocol(sec, &format!("{f}.protocol"), &p.protocol)?;
        match (&p.port, p.end_port) {
            (None, Some(_)) => return Err(FieldError::new(sec, format!("{f}.end_port"), "end_port needs port")),
            (None, None) => out.push(PortMatch { proto: Some(proto), lo: 0, hi: u16::MAX }),
            (Some(PortRef::Number(n)), end) => {
                let hi = end.unwrap_or(*n);
                if *n == 0 || hi < *n {
                    return Err(FieldError::new(
                        sec,
                        format!("{f}.end_port"),
                        format!("range {n}-{hi} is empty or starts at 0"),
                    ));
                }
                out.push(PortMatch { proto: Some(proto), lo: *n, hi });
            }
            (Some(PortRef::Name(_)), Some(_)) => {
                return Err(FieldError::new(sec, format!("{f}.end_port"), "end_port needs a numeric port"))
            }
            (Some(PortRef::Name(name)), None) => {
                for n in named(name, proto) {
                    out.push(PortMatch { proto: Some(proto), lo: n, hi: n });
                }
            }
        }
    }
    Ok(if out.is_empty() { None } else { Some(out) })
}

/// Compiles every local pod's classifiers and sets them on `endpoints` (same order as `pods`).
pub(crate) fn compile(
    policies: &[&PolicyConfig],
    pods: &[Pod],
    ns_labels: &BTreeMap<String, Labels>,
    endpoints: &mut [Endpoint],
    carry: &mut super::ids::Ids,
    scope: &super::ids::Scope,
) -> Result<PolicyTable, FieldError> {
    // Validate everything first (every policy the scope names), so that errors do not depend
    // on which pods exist.
    let mut seen = std::collections::HashSet::new();
    for (i, &p) in policies.iter().enumerate() {
        let sec = Some(("policies", i));
        if !seen.insert((p.namespace.as_str(), p.name.as_str())) {
            return Err(FieldError::new(
                sec,
                format!("policies[{i}].name"),
                format!("policy {}/{} is declared twice", p.namespace, p.name),
            ));
        }
        if scope.policies.as_ref().is_some_and(|s| !s.contains(&(p.namespace.clone(), p.name.clone()))) {
            // Valid in the last build, and unchanged.
            continue;
        }
        selector::validate(sec, &format!("policies[{i}].pod_selector"), &p.pod_selector)?;
        types(sec, i, p)?;
        let any_name = |_: &str, _: u8| vec![1u16];
        for (j, r) in p.ingress.iter().enumerate() {
            for (k, peer) in r.from.iter().enumerate() {
                validate_peer(sec, &format!("policies[{i}].ingress[{j}].from[{k}]"), peer)?;
            }
            ports(sec, &format!("policies[{i}].ingress[{j}]"), &r.ports, &any_name)?;
        }
        for (j, r) in p.egress.iter().enumerate() {
            for (k, peer) in r.to.iter().enumerate() {
                validate_peer(sec, &format!("policies[{i}].egress[{j}].to[{k}]"), peer)?;
            }
            ports(sec, &format!("policies[{i}].egress[{j}]"), &r.ports, &any_name)?;
        }
    }
    // Rules keep their id while their policy lives (see `ids.rs`); ids not in use are named "".
    // A build that changes no policy keeps the last build's table as it is.
    let unchanged = scope.policies.as_ref().is_some_and(|s| s.is_empty());
    let table = match &carry.rule_table {
        Some(t) if unchanged && t.2 == policies.len() => std::sync::Arc::clone(t),
        _ => {
            let ids = std::sync::Arc::make_mut(&mut carry.rules);
            let mut named: Vec<(u32, String)> = Vec::new();
            let mut rule_ids: HashMap<(usize, bool, usize), u32> = HashMap::new();
            for (i, &p) in policies.iter().enumerate() {
                for (ingress, n) in [(true, p.ingress.len()), (false, p.egress.len())] {
                    for j in 0..n {
                        let d = if ingress { "ingress" } else { "egress" };
                        let name = format!("{}/{} {d}[{j}]", p.namespace, p.name);
                        let id = ids.id(&name);
                        rule_ids.insert((i, ingress, j), id);
                        named.push((id, name));
                    }
                }
            }
            ids.retain(&named.iter().map(|(_, n)| n.clone()).collect());
            let mut names = vec![String::new(); named.iter().map(|(id, _)| *id as usize + 1).max().unwrap_or(0)];
            for (id, n) in named {
                names[id as usize] = n;
            }
            let t = std::sync::Arc::new((rule_ids, std::sync::Arc::new(names), policies.len()));
            carry.rule_table = Some(std::sync::Arc::clone(&t));
            t
        }
    };
    let (rule_ids, names) = (&table.0, std::sync::Arc::clone(&table.1));
    // Per policy, once, when a pod it selects is compiled: its types, and per rule its field
    // name and parsed ipBlocks.
    let mut prepared: Vec<Option<Prepared>> = (0..policies.len()).map(|_| None).collect();
    let prepare = |i: usize, p: &PolicyConfig| -> Result<Prepared, FieldError> {
        let sec = Some(("policies", i));
        let mut dirs: [Vec<PreparedRule>; 2] = [Vec::new(), Vec::new()];
        for (d, (name, rules)) in [
            ("ingress", p.ingress.iter().map(|r| &r.from).collect::<Vec<_>>()),
            ("egress", p.egress.iter().map(|r| &r.to).collect::<Vec<_>>()),
        ]
        .into_iter()
        .enumerate()
        {
            for (j, peers) in rules.into_iter().enumerate() {
                let field = format!("policies[{i}].{name}[{j}]");
                let mut cidrs = Vec::new();
                for b in peers.iter().filter_map(|x| x.ip_block.as_ref()) {
                    let prefix = parse::prefix(sec, &format!("{field}.ip_block.cidr"), &b.cidr)?;
                    let except = b
                        .except
                        .iter()
                        .map(|e| parse::prefix(sec, &format!("{field}.ip_block.except"), e))
                        .collect::<Result<Vec<_>, _>>()?;
                    cidrs.push(PeerMatch::Cidr { prefix, except });
                }
                dirs[d].push(PreparedRule { field, cidrs });
            }
        }
        Ok(Prepared { types: types(sec, i, p)?, rules: dirs })
    };
    // What the last build compiled; this build keeps what it uses.
    let previous = std::sync::Arc::clone(&carry.classifiers);
    let mut memo: HashMap<u64, std::sync::Arc<super::ids::Compiled>> = HashMap::new();
    let mut classifiers: Vec<std::sync::Arc<Classifier>> = Vec::new();
    let mut cache: HashMap<ClassifierKey, ClassifierId> = HashMap::new();
    let mut peer_index = Peers::new(pods, ns_labels);
    let everyone: Vec<&Pod> = pods.iter().collect();
    let previous_pods = std::sync::Arc::clone(&carry.pod_classifiers);
    let mut pod_classifiers: HashMap<(String, String), super::ids::PodClassifiers> = HashMap::new();
    // Classifiers taken over from the last build, by address, so each is listed once.
    let mut kept: HashMap<*const Classifier, ClassifierId> = HashMap::new();
    // Classifiers compiled (or found) by this build, by id, with their memo entry.
    let mut entries: HashMap<ClassifierId, (u64, std::sync::Arc<super::ids::Compiled>)> = HashMap::new();
    for (pi, pod) in pods.iter().enumerate() {
        if !pod.local {
            continue;
        }
        let pod_key = (pod.namespace.clone(), pod.name.clone());
        let untouched = scope.pods.as_ref().is_some_and(|s| !s.contains(&pod_key));
        if let (true, Some(prev)) = (untouched, previous_pods.get(&pod_key)) {
            // Nothing this build changed reaches this pod's rules: its classifiers stay.
            for (d, c) in prev.iter().enumerate() {
                let Some((hash, entry)) = c else { continue };
                memo.entry(*hash).or_insert_with(|| std::sync::Arc::clone(entry));
                let c = &entry.1;
                let id = *kept.entry(std::sync::Arc::as_ptr(c)).or_insert_with(|| {
                    classifiers.push(std::sync::Arc::clone(c));
                    ClassifierId(classifiers.len() as u32 - 1)
                });
                if d == 0 {
                    endpoints[pi].ingress = Some(id);
                } else {
                    endpoints[pi].egress = Some(id);
                }
            }
            pod_classifiers.insert(pod_key, prev.clone());
            continue;
        }
        let mut mine: super::ids::PodClassifiers = [None, None];
        for dir in [Dir::Ingress, Dir::Egress] {
            let mut selected = false;
            let mut ids: Vec<RuleId> = Vec::new();
            let mut rules: Vec<PolicyRule> = Vec::new();
            // (policy, its ipBlock peers in this direction), to name them if compiling is refused.
            let mut cidr_policies: Vec<(usize, usize)> = Vec::new();
            for (i, &p) in policies.iter().enumerate() {
                if p.namespace != pod.namespace || !selector::matches(&p.pod_selector, &pod.labels) {
                    continue;
                }
                let sec = Some(("policies", i));
                if prepared[i].is_none() {
                    prepared[i] = Some(prepare(i, p)?);
                }
                let Some(prep) = prepared[i].as_ref() else { continue };
                let (ing, eg) = prep.types;
                if (dir == Dir::Ingress && !ing) || (dir == Dir::Egress && !eg) {
                    continue;
                }
                selected = true;
                let blocks = if dir == Dir::Ingress {
                    p.ingress.iter().flat_map(|r| &r.from).filter(|x| x.ip_block.is_some()).count()
                } else {
                    p.egress.iter().flat_map(|r| &r.to).filter(|x| x.ip_block.is_some()).count()
                };
                if blocks > 0 {
                    cidr_policies.push((i, blocks));
                }
                let n = if dir == Dir::Ingress { p.ingress.len() } else { p.egress.len() };
                for j in 0..n {
                    let (peers_cfg, ports_cfg, pr) = if dir == Dir::Ingress {
                        (&p.ingress[j].from, &p.ingress[j].ports, &prep.rules[0][j])
                    } else {
                        (&p.egress[j].to, &p.egress[j].ports, &prep.rules[1][j])
                    };
                    let field = &pr.field;
                    let mut cidrs = pr.cidrs.iter();
                    let id = RuleId(rule_ids[&(i, dir == Dir::Ingress, j)]);
                    ids.push(id);
                    let mut peers = Vec::new();
                    let mut peer_pods_all: Vec<&Pod> = Vec::new();
                    let mut identities = BTreeSet::new();
                    for peer in peers_cfg {
                        if peer.ip_block.is_some() {
                            peers.extend(cidrs.next().cloned());
                        } else {
                            for pp in peer_index.select(peer, &p.namespace).iter() {
                                identities.insert(pp.identity);
                                peer_pods_all.push(pp);
                            }
                        }
                    }
                    peers.extend(identities.iter().map(|i: &Identity| PeerMatch::Identity(*i)));
                    if !peers_cfg.is_empty() && peers.is_empty() {
                        // The peers select nothing: the rule admits nobody.
                        continue;
                    }
                    let named_pool: &[&Pod] = if peers_cfg.is_empty() { &everyone } else { &peer_pods_all };
                    let named = |name: &str, proto: u8| -> Vec<u16> {
                        if dir == Dir::Ingress {
                            pod.named_port(name, proto).into_iter().collect()
                        } else {
                            let s: BTreeSet<u16> =
                                named_pool.iter().filter_map(|pp| pp.named_port(name, proto)).collect();
                            s.into_iter().collect()
                        }
                    };
                    let by_name = |p: &&PolicyPortConfig| matches!(p.port, Some(PortRef::Name(_)));
                    if dir == Dir::Egress && ports_cfg.iter().any(|p| by_name(&p)) {
                        // A named port opens, on each destination pod, that pod's own number
                        // for the name (pods with one identity may number it differently, so
                        // each pod is matched by its addresses).
                        let numbered: Vec<PolicyPortConfig> =
                            ports_cfg.iter().filter(|p| !by_name(p)).cloned().collect();
                        let named_cfg: Vec<PolicyPortConfig> = ports_cfg.iter().filter(by_name).cloned().collect();
                        if !numbered.is_empty() {
                            if let Some(pm) = ports(sec, field, &numbered, &|_, _| Vec::new())? {
                                rules.push(PolicyRule { id, peers: peers.clone(), ports: pm });
                            }
                        }
                        for pp in named_pool {
                            let own = |name: &str, proto: u8| pp.named_port(name, proto).into_iter().collect();
                            if let Some(pm) = ports(sec, field, &named_cfg, &own)? {
                                let hosts = pp
                                    .ips
                                    .iter()
                                    .map(|ip| PeerMatch::Cidr { prefix: Prefix::host(*ip), except: Vec::new() });
                                rules.push(PolicyRule { id, peers: hosts.collect(), ports: pm });
                            }
                        }
                        continue;
                    }
                    let Some(port_matches) = ports(sec, field, ports_cfg, &named)? else { continue };
                    rules.push(PolicyRule { id, peers, ports: port_matches });
                }
            }
            if !selected {
                continue;
            }
            let key = (dir, ids, pod.container_ports.clone());
            let cid = match cache.get(&key) {
                Some(c) => *c,
                None => {
                    let c = ClassifierId(classifiers.len() as u32);
                    let input = (dir == Dir::Ingress, DirectionRules { rules });
                    let hash = {
                        use std::hash::{Hash, Hasher};
                        let mut h = std::collections::hash_map::DefaultHasher::new();
                        input.hash(&mut h);
                        h.finish()
                    };
                    // Compiled by an earlier build from the same rules: shared, not compiled.
                    let entry = match previous.get(&hash).filter(|e| e.0 == input) {
                        Some(e) => std::sync::Arc::clone(e),
                        None => {
                            let compiled = Classifier::compile(&input.1)
                                .map_err(|e| too_large(policies, pod, dir, &cidr_policies, e))?;
                            std::sync::Arc::new((input, std::sync::Arc::new(compiled)))
                        }
                    };
                    memo.insert(hash, std::sync::Arc::clone(&entry));
                    kept.insert(std::sync::Arc::as_ptr(&entry.1), c);
                    classifiers.push(std::sync::Arc::clone(&entry.1));
                    entries.insert(c, (hash, entry));
                    cache.insert(key, c);
                    c
                }
            };
            mine[usize::from(dir == Dir::Egress)] = entries.get(&cid).cloned();
            if dir == Dir::Ingress {
                endpoints[pi].ingress = Some(cid);
            } else {
                endpoints[pi].egress = Some(cid);
            }
        }
        pod_classifiers.insert(pod_key, mine);
    }
    carry.classifiers = std::sync::Arc::new(memo);
    carry.pod_classifiers = std::sync::Arc::new(pod_classifiers);
    Ok(PolicyTable::with_shared_names(classifiers, names))
}

/// A policy as every pod it selects needs it, worked out once per build.
struct Prepared {
    /// (Ingress, Egress) from policyTypes.
    types: (bool, bool),
    /// Per direction (ingress, egress), per rule.
    rules: [Vec<PreparedRule>; 2],
}

struct PreparedRule {
    /// `policies[i].ingress[j]`, for errors.
    field: String,
    /// The rule's ipBlock peers, parsed, in order.
    cidrs: Vec<PeerMatch>,
}

/// The refusal of a classifier over its limits, blamed on the selecting policy with the most
/// ipBlock peers in that direction (and naming the others that add to it).
fn too_large(
    policies: &[&PolicyConfig],
    pod: &Pod,
    dir: Dir,
    cidr_policies: &[(usize, usize)],
    e: CompileError,
) -> FieldError {
    let d = if dir == Dir::Ingress { "ingress" } else { "egress" };
    let name = |i: usize| format!("{}/{}", policies[i].namespace, policies[i].name);
    let Some(&(blamed, _)) = cidr_policies.iter().rev().max_by_key(|(_, n)| *n) else {
        // Only CIDR peers make a classifier too large; keep a message if that ever changes.
        return FieldError::new(None, "policies", format!("{d} rules of pod {}/{}: {e}", pod.namespace, pod.name));
    };
    let others: Vec<String> = cidr_policies.iter().filter(|(i, _)| *i != blamed).map(|(i, _)| name(*i)).collect();
    let with = if others.is_empty() { String::new() } else { format!(" (together with {})", others.join(", ")) };
    FieldError::new(
        Some(("policies", blamed)),
        format!("policies[{blamed}].{d}"),
        format!(
            "NetworkPolicy {}{with} selects pod {}/{} for {d} with too many overlapping ipBlocks: {e}",
            name(blamed),
            pod.namespace,
            pod.name
        ),
    )
}
