//! Ports attached at run time: the node's own interfaces added through the API, and the
//! interfaces of pods attached by `podswitch-cni` (CNI spec 1.0 ADD, DEL and CHECK; GC and
//! STATUS of 1.1), with the addresses allocated to them from the node's pod CIDRs.
//!
//! An attachment is an object of the store (kind `Port`): it is journaled, rolled back and
//! persisted with the applied objects, so a restarted daemon has every port, pod and address
//! back before it forwards a frame.

use crate::config::Labels;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use switch_core::addr::{Addr, Prefix};

/// A container's interface, as CNI names it (`CNI_CONTAINERID`, `CNI_IFNAME`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CniRef {
    pub container_id: String,
    pub ifname: String,
}

impl std::fmt::Display for CniRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "container {} interface {}", self.container_id, self.ifname)
    }
}

/// What the CNI plugin asks for on ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddRequest {
    pub cni: CniRef,
    /// `CNI_NETNS`.
    pub netns: String,
    /// The host end of the pair, in the daemon's namespace.
    pub host_interface: String,
    /// The container end's MAC.
    pub mac: String,
    pub pod_namespace: String,
    pub pod_name: String,
    /// The pod's annotations (runtimeConfig `io.kubernetes.cri.pod-annotations`).
    pub annotations: BTreeMap<String, String>,
}

/// Annotation holding a pod's labels when the runtime passes annotations but no Pod object is
/// applied: `app=web,tier=front`.
pub const LABELS_ANNOTATION: &str = "podswitch.io/labels";

/// The CNI side of an attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniInfo {
    #[serde(rename = "ref")]
    pub cni: CniRef,
    pub netns: String,
    pub mac: String,
    pub pod_namespace: String,
    pub pod_name: String,
    /// Labels from [`LABELS_ANNOTATION`]; a Pod object of the same namespace and name, when
    /// applied, gives them instead.
    #[serde(default)]
    pub labels: Labels,
    /// Allocated addresses with the pod CIDR's prefix length, `10.244.1.5/24`.
    pub addresses: Vec<String>,
}

/// A switch port attached at run time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Switch port name; for a CNI attachment, the host interface's name.
    pub port: String,
    /// Port id, kept while the port lives.
    pub id: u16,
    /// The network interface in the daemon's namespace.
    pub interface: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni: Option<CniInfo>,
}

impl Attachment {
    /// The allocated addresses without prefix lengths.
    pub fn ips(&self) -> Vec<IpAddr> {
        let Some(c) = &self.cni else { return Vec::new() };
        c.addresses.iter().filter_map(|a| a.split('/').next()?.parse().ok()).collect()
    }
}

/// The DNS part of a CNI result (spec section "Success": `dns`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dns {
    pub nameservers: Vec<String>,
    pub domain: String,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

/// An attachment with what the plugin configures in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniResult {
    pub attachment: Attachment,
    /// Per address: the gateway of its family.
    pub gateways: Vec<String>,
    /// (destination, gateway) default routes, one per family.
    pub routes: Vec<(String, String)>,
    /// Both ends of the pair: the uplink MTU less the tunnel overhead.
    pub mtu: u16,
    pub dns: Dns,
}

/// Labels from the [`LABELS_ANNOTATION`] annotation. Errors name the bad item.
pub fn labels_from(annotations: &BTreeMap<String, String>) -> Result<Labels, String> {
    let mut out = Labels::new();
    let Some(v) = annotations.get(LABELS_ANNOTATION) else { return Ok(out) };
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) =
            item.split_once('=').ok_or_else(|| format!("annotation {LABELS_ANNOTATION}: '{item}' is not key=value"))?;
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

/// The pod's gateway in `cidr`: its first host address. It is never allocated to a pod; the
/// switch answers ARP and neighbour solicitations for it (any address, in fact) with the
/// router MAC.
pub fn gateway(cidr: &Prefix) -> IpAddr {
    let (first, _) = cidr.range();
    Addr::from_bits(first + 1).to_ip()
}

/// Allocates one address of `cidr` not in `used`, going round from the one after `last` (as
/// the reference host-local plugin does, so a freed address is not handed out again at once).
/// The network address, the gateway and (IPv4) the broadcast address are never given.
/// Returns `None` when the range is full.
pub fn allocate(cidr: &Prefix, used: &HashSet<IpAddr>, last: Option<IpAddr>) -> Option<IpAddr> {
    let (lo, hi) = cidr.range();
    // First and last candidates.
    let first = lo + 2;
    let end = if cidr.is_v4() { hi.checked_sub(1)? } else { hi };
    if first > end {
        return None;
    }
    let span = end - first + 1;
    let start = match last.map(Addr::from) {
        Some(a) if cidr.contains(a) && a.bits() >= first && a.bits() < end => a.bits() + 1,
        _ => first,
    };
    // Bounded: a pod CIDR of millions of addresses is walked only as far as the used set
    // forces it to (at most used.len() + 1 steps).
    let steps = span.min(used.len() as u128 + 1);
    for i in 0..steps {
        let bits = first + (start - first + i) % span;
        let ip = Addr::from_bits(bits).to_ip();
        if !used.contains(&ip) {
            return Some(ip);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn allocation_skips_network_gateway_broadcast_and_used() {
        let c = p("10.244.1.0/29");
        assert_eq!(gateway(&c), "10.244.1.1".parse::<IpAddr>().unwrap());
        let mut used = HashSet::new();
        let mut got = Vec::new();
        let mut last = None;
        while let Some(ip) = allocate(&c, &used, last) {
            used.insert(ip);
            got.push(ip.to_string());
            last = Some(ip);
        }
        assert_eq!(got, ["10.244.1.2", "10.244.1.3", "10.244.1.4", "10.244.1.5", "10.244.1.6"]);
    }

    #[test]
    fn allocation_goes_round_from_the_last_one() {
        let c = p("10.244.1.0/29");
        let used: HashSet<IpAddr> = ["10.244.1.3".parse().unwrap()].into();
        // After .4: .5, then .6, then round to .2.
        assert_eq!(allocate(&c, &used, Some("10.244.1.4".parse().unwrap())).unwrap().to_string(), "10.244.1.5");
        assert_eq!(allocate(&c, &used, Some("10.244.1.6".parse().unwrap())).unwrap().to_string(), "10.244.1.2");
        // A freed address is not the next one handed out.
        assert_eq!(allocate(&c, &used, Some("10.244.1.2".parse().unwrap())).unwrap().to_string(), "10.244.1.4");
    }

    #[test]
    fn ipv6_has_no_broadcast_and_tiny_ranges_are_full() {
        let c = p("fd00:10:244:1::/126");
        let used = HashSet::new();
        assert_eq!(
            allocate(&c, &used, Some("fd00:10:244:1::2".parse().unwrap())).unwrap().to_string(),
            "fd00:10:244:1::3"
        );
        assert_eq!(allocate(&p("10.0.0.0/31"), &used, None), None);
        assert_eq!(allocate(&p("10.0.0.0/30"), &used, None).unwrap().to_string(), "10.0.0.2");
    }

    #[test]
    fn labels_annotation() {
        let a: BTreeMap<String, String> = [(LABELS_ANNOTATION.to_string(), "app=web, tier=front".to_string())].into();
        let l = labels_from(&a).unwrap();
        assert_eq!(l.get("app").unwrap(), "web");
        assert_eq!(l.get("tier").unwrap(), "front");
        let bad: BTreeMap<String, String> = [(LABELS_ANNOTATION.to_string(), "app".to_string())].into();
        assert!(labels_from(&bad).unwrap_err().contains("'app' is not key=value"));
    }
}
