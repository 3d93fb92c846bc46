//! The ADD result in the shape of CNI spec 1.0.0 ("Success" of the ADD section):
//! `interfaces` (the host end, then the container end with its `sandbox`), `ips` (each with
//! the index of its interface), `routes` and `dns`.

use serde::{Deserialize, Serialize};

/// One interface the plugin created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// MAC address `aa:bb:cc:dd:ee:ff`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// Path of the network namespace, for interfaces inside a sandbox only.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

/// One address given to the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Address with prefix length, `10.244.1.5/24`.
    pub address: String,
    /// Default gateway of that subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Index into [`CniResult::interfaces`] of the interface holding the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// One route set up in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination prefix, `0.0.0.0/0`.
    pub dst: String,
    /// Next hop, absent for on-link destinations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
}

/// DNS settings for the runtime to write into the container (`resolv.conf`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Name server addresses, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// Local domain.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    /// Search domains, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// Resolver options (`ndots:5`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    /// Whether nothing is set (the field is then left out of the result).
    pub fn is_empty(&self) -> bool {
        self == &Dns::default()
    }
}

/// The ADD result; `cniVersion` is always [`crate::error::RESULT_VERSION`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniResult {
    /// `cniVersion` of the result.
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// Interfaces created: the host end (no sandbox), then the container end.
    pub interfaces: Vec<Interface>,
    /// Addresses given to the container end.
    pub ips: Vec<IpConfig>,
    /// Routes set in the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// DNS settings.
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn result_has_the_spec_1_0_shape() {
        let r = CniResult {
            cni_version: "1.0.0".into(),
            interfaces: vec![
                Interface { name: "psw0123456789a".into(), mac: "02:00:00:00:00:01".into(), sandbox: String::new() },
                Interface {
                    name: "eth0".into(),
                    mac: "02:00:00:00:00:02".into(),
                    sandbox: "/var/run/netns/blue".into(),
                },
            ],
            ips: vec![IpConfig { address: "10.1.0.5/16".into(), gateway: Some("10.1.0.1".into()), interface: Some(1) }],
            routes: vec![Route { dst: "0.0.0.0/0".into(), gw: Some("10.1.0.1".into()) }],
            dns: Dns { nameservers: vec!["10.96.0.10".into()], ..Dns::default() },
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            json!({
                "cniVersion": "1.0.0",
                "interfaces": [
                    {"name": "psw0123456789a", "mac": "02:00:00:00:00:01"},
                    {"name": "eth0", "mac": "02:00:00:00:00:02", "sandbox": "/var/run/netns/blue"}
                ],
                "ips": [{"address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 1}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}],
                "dns": {"nameservers": ["10.96.0.10"]}
            })
        );
        // 1.0.0 dropped the per-address "version" field of 0.3.x/0.4.0.
        assert!(v["ips"][0].get("version").is_none());
        let back: CniResult = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
        let bare = CniResult { routes: vec![], dns: Dns::default(), ..r };
        let v = serde_json::to_value(&bare).unwrap();
        assert!(v.get("routes").is_none() && v.get("dns").is_none());
    }
}
