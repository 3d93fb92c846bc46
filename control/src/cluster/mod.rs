//! Joining a cluster over etcd: node registration under a lease, the live list of nodes, pod
//! CIDR blocks claimed per node, and generic listing, watching and transactional commits for
//! the object store.
//!
//! Everything lives under one key prefix (default `/podswitch`):
//!
//! | key | value | lifetime |
//! |---|---|---|
//! | `{prefix}/nodes/{name}` | JSON [`NodeRecord`] | attached to the node's lease: gone `lease_ttl_s` after the node stops renewing it |
//! | `{prefix}/ipam/podcidr/{block with '/' as '_'}` | owning node's name | not leased: a restarted node finds its blocks again |
//! | anything else under `{prefix}/` | the object store's | [`Cluster::commit`], [`Cluster::list`], [`Cluster::watch`] |
//!
//! Keys handed to and returned by [`Cluster::list`], [`Cluster::watch`] and
//! [`Cluster::commit`] are relative to `{prefix}/`.
//!
//! The module sits beside the daemon, not in it: [`Cluster`] is a cloneable handle over one
//! etcd client; the tasks it spawns (keep-alive, watches) run on the tokio runtime of the
//! caller, current-thread or multi-threaded alike, and end when their handle or receiver is
//! dropped. Files: `etcd.rs` (client, list, watch, commit), `registry.rs` (registration and
//! the node map), `podcidr.rs` (block arithmetic and leasing).

pub mod agent;
mod etcd;
mod podcidr;
mod registry;

pub use etcd::{Change, Claim, Cluster, Commit, CommitOutcome, WatchBatch};
pub use registry::{NodeMap, Registration};

use serde::{Deserialize, Serialize};

/// The `[cluster]` section: where etcd is and how this node keeps its registration.
#[derive(Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdConfig {
    /// Client URLs of the etcd members, e.g. `http://10.0.0.1:2379` (no TLS support yet).
    pub endpoints: Vec<String>,
    /// Key prefix of everything podswitch stores; a trailing `/` is ignored.
    pub prefix: String,
    /// Time to live of the node's lease, in seconds (etcd's minimum is 2 with its default
    /// election timeout). A node that stops is removed from every other node's map this long
    /// after its last keep-alive.
    pub lease_ttl_s: i64,
    /// How long [`Cluster::connect`] waits for etcd to answer, in milliseconds.
    pub dial_timeout_ms: u64,
}

impl Default for EtcdConfig {
    fn default() -> EtcdConfig {
        EtcdConfig { endpoints: Vec::new(), prefix: "/podswitch".into(), lease_ttl_s: 10, dial_timeout_ms: 2000 }
    }
}

impl EtcdConfig {
    /// Checks the fields [`Cluster::connect`] relies on.
    pub fn validate(&self) -> Result<(), ClusterError> {
        let bad = |field: &'static str, reason: String| Err(ClusterError::BadConfig { field, reason });
        if self.endpoints.is_empty() {
            return bad(
                "cluster.endpoints",
                "at least one etcd client URL is needed, e.g. http://127.0.0.1:2379".into(),
            );
        }
        if let Some(e) = self.endpoints.iter().find(|e| e.trim().is_empty()) {
            return bad("cluster.endpoints", format!("empty endpoint {e:?}"));
        }
        if !(2..=3600).contains(&self.lease_ttl_s) {
            return bad("cluster.lease_ttl_s", format!("{} is outside 2..=3600 seconds", self.lease_ttl_s));
        }
        if !(1..=600_000).contains(&self.dial_timeout_ms) {
            return bad("cluster.dial_timeout_ms", format!("{} is outside 1..=600000 ms", self.dial_timeout_ms));
        }
        if self.prefix.trim_end_matches('/').is_empty() {
            return bad("cluster.prefix", "must name a key prefix such as /podswitch, not the whole keyspace".into());
        }
        Ok(())
    }
}

/// What a node tells the others about itself: where to send its pods' traffic. Stored as JSON
/// (camelCase field names) in `{prefix}/nodes/{name}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NodeRecord {
    /// Node name, as in Kubernetes; the last part of its key.
    pub name: String,
    /// Underlay IPv4 address the node's tunnel endpoint listens on.
    pub ipv4: Option<String>,
    /// Underlay IPv6 address the node's tunnel endpoint listens on.
    pub ipv6: Option<String>,
    /// Encapsulation: `"vxlan"` or `"geneve"`.
    pub tunnel: String,
    /// VXLAN or Geneve network identifier (24 bits).
    pub vni: u32,
    /// MAC address of the node's uplink, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// MAC address inner frames to this node are sent to, when it differs from `mac`.
    pub vtep_mac: Option<String>,
    /// Pod CIDR blocks this node holds ([`Cluster::lease_pod_cidrs`]).
    pub pod_cidrs: Vec<String>,
}

/// Errors of the cluster module; each says which endpoint, key or field it is about.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// etcd did not answer at any endpoint within the dial timeout.
    #[error("cannot reach etcd at {endpoints}: {source}")]
    Connect { endpoints: String, source: etcd_client::Error },
    /// An etcd request failed (or timed out: an I/O error of kind `TimedOut`).
    #[error("etcd {op} of {key:?} failed: {source}")]
    Etcd { op: &'static str, key: String, source: etcd_client::Error },
    /// Every block of `cidr` of size `/mask` is held by some node.
    #[error(
        "pod CIDR {cidr}: all /{mask} blocks are held by other nodes; widen the cluster CIDR or lengthen the node mask"
    )]
    Exhausted { cidr: String, mask: u8 },
    /// A cluster CIDR or node mask that cannot be cut into blocks.
    #[error("cluster CIDR {cidr:?}: {reason}")]
    BadCidr { cidr: String, reason: String },
    /// A value in etcd that is not what podswitch writes there.
    #[error("etcd key {key:?}: {reason}")]
    Corrupt { key: String, reason: String },
    /// A configuration field out of range.
    #[error("{field}: {reason}")]
    BadConfig { field: &'static str, reason: String },
    /// A node name that cannot be a key part.
    #[error("node name {name:?}: {reason}")]
    BadName { name: String, reason: String },
}

/// Checks that `name` can be the last part of a key: non-empty, no `/`, printable.
pub(crate) fn check_node_name(name: &str) -> Result<(), ClusterError> {
    let reason = if name.is_empty() {
        "is empty"
    } else if name.contains('/') {
        "contains '/'"
    } else if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        "contains whitespace or control characters"
    } else {
        return Ok(());
    };
    Err(ClusterError::BadName { name: name.into(), reason: reason.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_unknown_fields() {
        let c: EtcdConfig = toml::from_str("endpoints = [\"http://127.0.0.1:2379\"]").expect("parse");
        assert_eq!(c.prefix, "/podswitch");
        assert_eq!(c.lease_ttl_s, 10);
        assert_eq!(c.dial_timeout_ms, 2000);
        assert!(c.validate().is_ok());
        let e = toml::from_str::<EtcdConfig>("endpoint = []").expect_err("unknown field");
        assert!(e.to_string().contains("endpoint"), "{e}");
        let c = EtcdConfig { lease_ttl_s: 1, ..c };
        assert!(matches!(c.validate(), Err(ClusterError::BadConfig { field: "cluster.lease_ttl_s", .. })));
        assert!(EtcdConfig::default().validate().is_err(), "no endpoints");
    }

    #[test]
    fn node_record_json_is_camel_case() {
        let r = NodeRecord {
            name: "n1".into(),
            ipv4: Some("10.0.0.1".into()),
            ipv6: None,
            tunnel: "vxlan".into(),
            vni: 42,
            mac: "02:00:00:00:00:01".into(),
            vtep_mac: Some("02:00:00:00:00:02".into()),
            pod_cidrs: vec!["10.244.1.0/24".into()],
        };
        let j = serde_json::to_string(&r).expect("json");
        assert!(j.contains("\"vtepMac\"") && j.contains("\"podCidrs\""), "{j}");
        assert_eq!(serde_json::from_str::<NodeRecord>(&j).expect("back"), r);
    }

    #[test]
    fn node_names() {
        assert!(check_node_name("node-1.example").is_ok());
        for bad in ["", "a/b", "a b", "a\nb"] {
            assert!(check_node_name(bad).is_err(), "{bad:?}");
        }
    }
}
