//! What a CNI invocation carries: the `CNI_*` environment variables (spec section 2,
//! "Parameters"), `CNI_ARGS` and the plugin's network configuration on stdin (spec section 1,
//! as the runtime passes one plugin of a conflist: `cniVersion`, `name`, `type`, optional
//! `prevResult` and `runtimeConfig`, plus this plugin's own `socket` and `mtu`).

use crate::error::{CniError, DECODE_FAILURE, INCOMPATIBLE_VERSION, INVALID_CONFIG, INVALID_ENV, UNSUPPORTED_FIELD};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Configuration versions accepted, also reported by VERSION. Results are always 1.0.0
/// (podman 4.3 and containerd 1.6 refuse 1.1.0 results; libcni converts 1.0.0 down to 0.x).
pub const SUPPORTED_VERSIONS: [&str; 4] = ["0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// Daemon socket when the configuration has no `socket` field.
pub const DEFAULT_SOCKET: &str = "/run/podswitch/podswitch.sock";

/// The pod-annotations capability key containerd's CRI plugin fills in `runtimeConfig`.
pub const ANNOTATIONS_KEY: &str = "io.kubernetes.cri.pod-annotations";

/// The CNI command (`CNI_COMMAND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach a container to the network.
    Add,
    /// Detach it (idempotent).
    Del,
    /// Verify an attachment (spec 0.4.0 and later).
    Check,
    /// Report the supported versions.
    Version,
    /// Whether ADD can work now (spec 1.1).
    Status,
    /// Remove attachments not in a valid list (spec 1.1).
    Gc,
}

impl Command {
    /// Parses `CNI_COMMAND` (exact upper-case names of the spec).
    pub fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            _ => return None,
        })
    }
}

/// The `CNI_*` environment of one invocation; unset and empty variables are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    /// `CNI_COMMAND`.
    pub command: Option<String>,
    /// `CNI_CONTAINERID`.
    pub container_id: Option<String>,
    /// `CNI_NETNS`: path of the container's network namespace (may be empty for DEL).
    pub netns: Option<String>,
    /// `CNI_IFNAME`: the interface name to create inside the container.
    pub ifname: Option<String>,
    /// `CNI_ARGS`: `K=V;K2=V2`.
    pub args: Option<String>,
    /// `CNI_PATH`: where other plugins are; unused (this plugin delegates to none).
    pub path: Option<String>,
}

impl Env {
    /// Reads the variables through `get` (`std::env::var` in the binary, a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Env {
        let var = |k: &str| get(k).filter(|v| !v.is_empty());
        Env {
            command: var("CNI_COMMAND"),
            container_id: var("CNI_CONTAINERID"),
            netns: var("CNI_NETNS"),
            ifname: var("CNI_IFNAME"),
            args: var("CNI_ARGS"),
            path: var("CNI_PATH"),
        }
    }

    /// The process environment.
    pub fn from_process() -> Env {
        Env::from_lookup(|k| std::env::var(k).ok())
    }

    /// `CNI_CONTAINERID`, checked: not empty, starts with an alphanumeric character, then
    /// alphanumerics, `_`, `.` or `-` (spec 1.0). Error code 4 naming the variable.
    pub fn require_container_id(&self) -> Result<&str, CniError> {
        let id = self.container_id.as_deref().ok_or_else(|| missing("CNI_CONTAINERID"))?;
        let mut chars = id.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
        if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
            return Err(CniError::new(INVALID_ENV, "CNI_CONTAINERID is malformed")
                .with_details(format!("{id:?}: alphanumerics, '_', '.' and '-', starting alphanumeric")));
        }
        Ok(id)
    }

    /// `CNI_IFNAME`, checked against the kernel's rules: 1 to 15 bytes, not `.` or `..`,
    /// no `/`, `:` or whitespace. Error code 4 naming the variable.
    pub fn require_ifname(&self) -> Result<&str, CniError> {
        let name = self.ifname.as_deref().ok_or_else(|| missing("CNI_IFNAME"))?;
        if !valid_ifname(name) {
            return Err(CniError::new(INVALID_ENV, "CNI_IFNAME is not a valid interface name")
                .with_details(format!("{name:?}: at most 15 bytes, no '/', ':' or whitespace")));
        }
        Ok(name)
    }

    /// `CNI_NETNS`, required (ADD, CHECK). Error code 4 naming the variable.
    pub fn require_netns(&self) -> Result<&str, CniError> {
        self.netns.as_deref().ok_or_else(|| missing("CNI_NETNS"))
    }

    /// `CNI_ARGS` parsed (empty when unset); error code 4 when malformed.
    pub fn cni_args(&self) -> Result<CniArgs, CniError> {
        CniArgs::parse(self.args.as_deref().unwrap_or(""))
    }
}

fn missing(var: &str) -> CniError {
    CniError::new(INVALID_ENV, format!("{var} is not set"))
}

/// Whether `name` can be a Linux interface name (`dev_valid_name` in the kernel).
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
}

/// `CNI_ARGS`: `K=V` pairs separated by `;` (CNI CONVENTIONS.md). Keys this plugin reads are
/// `K8S_POD_NAMESPACE`, `K8S_POD_NAME`, `K8S_POD_INFRA_CONTAINER_ID`, `K8S_POD_UID`; others
/// (such as `IgnoreUnknown`) are kept but ignored, whatever `IgnoreUnknown` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    /// Every pair, in order.
    pub pairs: Vec<(String, String)>,
}

impl CniArgs {
    /// Parses `K=V;K2=V2`. Empty segments are skipped; a segment without `=` or with an empty
    /// key is an error (code 4, naming CNI_ARGS). Values may contain `=`.
    pub fn parse(s: &str) -> Result<CniArgs, CniError> {
        let mut pairs = Vec::new();
        for seg in s.split(';').map(str::trim).filter(|seg| !seg.is_empty()) {
            match seg.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => pairs.push((k.trim().to_string(), v.trim().to_string())),
                _ => {
                    return Err(CniError::new(INVALID_ENV, "CNI_ARGS is malformed")
                        .with_details(format!("{seg:?} is not KEY=VALUE")))
                }
            }
        }
        Ok(CniArgs { pairs })
    }

    /// The value of the last pair with key `key` (non-empty values only).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().rev().find(|(k, v)| k == key && !v.is_empty()).map(|(_, v)| v.as_str())
    }
}

/// One entry of `cni.dev/valid-attachments` (spec 1.1 GC).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ValidAttachment {
    /// `containerID`.
    pub container_id: String,
    /// `ifname`.
    pub ifname: String,
}

/// The plugin's network configuration, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// `cniVersion`, one of [`SUPPORTED_VERSIONS`].
    pub cni_version: String,
    /// `name`: the network name.
    pub name: String,
    /// `type`: the plugin's executable name (not checked: the binary may be renamed).
    pub plugin_type: String,
    /// `socket`: podswitchd's control socket ([`DEFAULT_SOCKET`] when absent).
    pub socket: PathBuf,
    /// `mtu`: overrides the daemon's MTU for both ends of the pair (68..=65535 bytes).
    pub mtu: Option<u32>,
    /// `queues`: receive and transmit queues of each end of the pair (1..=64). Each of
    /// podswitchd's AF_XDP workers needs a queue of every port, so the default is the number
    /// of CPUs (at most 16), enough for a daemon with a worker per CPU.
    pub queues: u32,
    /// `runtimeConfig["io.kubernetes.cri.pod-annotations"]`, empty when absent.
    pub annotations: BTreeMap<String, String>,
    /// `prevResult` as given (ignored: this plugin is the interface plugin, first in a list).
    pub prev_result: Option<Value>,
    /// `cni.dev/valid-attachments` (or the older key `cni.dev/attachments`), for GC.
    pub valid_attachments: Option<Vec<ValidAttachment>>,
}

fn invalid(msg: impl Into<String>) -> CniError {
    CniError::new(INVALID_CONFIG, msg)
}

fn opt_str<'a>(o: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, CniError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(format!("field {key:?} must be a string"))),
    }
}

fn req_str<'a>(o: &'a Map<String, Value>, key: &str) -> Result<&'a str, CniError> {
    opt_str(o, key)?.filter(|s| !s.is_empty()).ok_or_else(|| invalid(format!("field {key:?} is missing")))
}

/// Whether `name` is a valid network name: an alphanumeric, then alphanumerics, `_`, `.`, `-`.
pub fn valid_network_name(name: &str) -> bool {
    let mut c = name.chars();
    c.next().is_some_and(|f| f.is_ascii_alphanumeric())
        && c.all(|x| x.is_ascii_alphanumeric() || matches!(x, '_' | '.' | '-'))
}

impl NetConf {
    /// Parses and validates the configuration bytes from stdin.
    ///
    /// Errors: code 6 when the bytes are not a JSON object; code 1 when `cniVersion` is not
    /// supported; code 2 for an `ipam` section (podswitchd allocates addresses itself);
    /// code 7 for missing or ill-typed fields.
    pub fn parse(bytes: &[u8]) -> Result<NetConf, CniError> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| {
            CniError::new(DECODE_FAILURE, "cannot decode the network configuration").with_details(e.to_string())
        })?;
        let o = v
            .as_object()
            .ok_or_else(|| CniError::new(DECODE_FAILURE, "the network configuration is not a JSON object"))?;
        let version = req_str(o, "cniVersion")?;
        if !SUPPORTED_VERSIONS.contains(&version) {
            return Err(CniError::new(INCOMPATIBLE_VERSION, format!("incompatible CNI version {version:?}"))
                .with_details(format!("supported: {}", SUPPORTED_VERSIONS.join(", "))));
        }
        let name = req_str(o, "name")?;
        if !valid_network_name(name) {
            return Err(invalid(format!("network name {name:?} is not valid")));
        }
        let plugin_type = req_str(o, "type")?;
        if o.get("ipam").is_some_and(|v| !v.is_null()) {
            return Err(CniError::new(UNSUPPORTED_FIELD, "field \"ipam\" is not supported")
                .with_details("podswitchd allocates the pod's addresses; remove the ipam section"));
        }
        let socket = match opt_str(o, "socket")? {
            Some("") => return Err(invalid("field \"socket\" is empty")),
            Some(s) => PathBuf::from(s),
            None => PathBuf::from(DEFAULT_SOCKET),
        };
        let mtu = match o.get("mtu") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(m @ 68..=65535) => Some(m as u32),
                _ => return Err(invalid("field \"mtu\" must be an integer from 68 to 65535")),
            },
        };
        let queues = match o.get("queues") {
            None | Some(Value::Null) => {
                std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1).clamp(1, 16)
            }
            Some(v) => match v.as_u64() {
                Some(q @ 1..=64) => q as u32,
                _ => return Err(invalid("field \"queues\" must be an integer from 1 to 64")),
            },
        };
        let mut annotations = BTreeMap::new();
        match o.get("runtimeConfig") {
            None | Some(Value::Null) => {}
            Some(Value::Object(rc)) => match rc.get(ANNOTATIONS_KEY) {
                None | Some(Value::Null) => {}
                Some(Value::Object(a)) => {
                    for (k, v) in a {
                        let s = v.as_str().ok_or_else(|| invalid(format!("pod annotation {k:?} is not a string")))?;
                        annotations.insert(k.clone(), s.to_string());
                    }
                }
                Some(_) => return Err(invalid(format!("runtimeConfig {ANNOTATIONS_KEY:?} must be an object"))),
            },
            Some(_) => return Err(invalid("field \"runtimeConfig\" must be an object")),
        }
        let prev_result = o.get("prevResult").filter(|v| !v.is_null()).cloned();
        let gc_list = o
            .get("cni.dev/valid-attachments")
            .filter(|v| !v.is_null())
            .map(|v| ("cni.dev/valid-attachments", v))
            .or_else(|| o.get("cni.dev/attachments").filter(|v| !v.is_null()).map(|v| ("cni.dev/attachments", v)));
        let valid_attachments = match gc_list {
            None => None,
            Some((key, v)) => Some(parse_attachments(key, v)?),
        };
        Ok(NetConf {
            cni_version: version.to_string(),
            name: name.to_string(),
            plugin_type: plugin_type.to_string(),
            socket,
            mtu,
            queues,
            annotations,
            prev_result,
            valid_attachments,
        })
    }

    /// Whether the configuration's version has CHECK (0.4.0 and later).
    pub fn has_check(&self) -> bool {
        self.cni_version != "0.3.1"
    }
}

fn parse_attachments(key: &str, v: &Value) -> Result<Vec<ValidAttachment>, CniError> {
    let list = v.as_array().ok_or_else(|| invalid(format!("{key:?} must be a list")))?;
    list.iter()
        .map(|item| {
            let o = item.as_object().ok_or_else(|| invalid(format!("{key:?} entries must be objects")))?;
            Ok(ValidAttachment {
                container_id: req_str(o, "containerID")?.to_string(),
                ifname: req_str(o, "ifname")?.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(version: &str) -> String {
        format!(r#"{{"cniVersion":"{version}","name":"podswitch","type":"podswitch-cni"}}"#)
    }

    #[test]
    fn every_supported_version_parses_with_defaults() {
        for v in SUPPORTED_VERSIONS {
            let c = NetConf::parse(conf(v).as_bytes()).unwrap();
            assert_eq!(c.cni_version, v);
            assert_eq!(c.name, "podswitch");
            assert_eq!(c.plugin_type, "podswitch-cni");
            assert_eq!(c.socket, PathBuf::from(DEFAULT_SOCKET));
            assert_eq!(c.mtu, None);
            assert!(c.annotations.is_empty());
            assert!(c.valid_attachments.is_none());
        }
    }

    #[test]
    fn other_versions_are_code_1() {
        for v in ["0.1.0", "0.2.0", "0.3.0", "1.2.0", "2.0.0", "1.0", "latest"] {
            let e = NetConf::parse(conf(v).as_bytes()).unwrap_err();
            assert_eq!(e.code, INCOMPATIBLE_VERSION, "{v}");
        }
    }

    #[test]
    fn bad_configs_get_their_codes() {
        let cases: &[(&str, u32)] = &[
            ("", DECODE_FAILURE),
            ("{", DECODE_FAILURE),
            ("[1,2]", DECODE_FAILURE),
            ("\"text\"", DECODE_FAILURE),
            (r#"{"name":"n","type":"t"}"#, INVALID_CONFIG),
            (r#"{"cniVersion":1,"name":"n","type":"t"}"#, INVALID_CONFIG),
            (r#"{"cniVersion":"1.0.0","type":"t"}"#, INVALID_CONFIG),
            (r#"{"cniVersion":"1.0.0","name":"-bad","type":"t"}"#, INVALID_CONFIG),
            (r#"{"cniVersion":"1.0.0","name":"n"}"#, INVALID_CONFIG),
            (r#"{"cniVersion":"1.0.0","name":"n","type":"t","mtu":10}"#, INVALID_CONFIG),
            (r#"{"cniVersion":"1.0.0","name":"n","type":"t","mtu":"1500"}"#, INVALID_CONFIG),
            (r#"{"cniVersion":"1.0.0","name":"n","type":"t","queues":0}"#, INVALID_CONFIG),
            (r#"{"cniVersion":"1.0.0","name":"n","type":"t","queues":65}"#, INVALID_CONFIG),
            (r#"{"cniVersion":"1.0.0","name":"n","type":"t","socket":7}"#, INVALID_CONFIG),
            (r#"{"cniVersion":"1.0.0","name":"n","type":"t","runtimeConfig":[]}"#, INVALID_CONFIG),
            (
                r#"{"cniVersion":"1.0.0","name":"n","type":"t","runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"a":1}}}"#,
                INVALID_CONFIG,
            ),
            (r#"{"cniVersion":"1.1.0","name":"n","type":"t","cni.dev/valid-attachments":{}}"#, INVALID_CONFIG),
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"t","cni.dev/valid-attachments":[{"ifname":"e"}]}"#,
                INVALID_CONFIG,
            ),
            (r#"{"cniVersion":"1.0.0","name":"n","type":"t","ipam":{"type":"host-local"}}"#, UNSUPPORTED_FIELD),
        ];
        for (text, code) in cases {
            let e = NetConf::parse(text.as_bytes()).unwrap_err();
            assert_eq!(e.code, *code, "{text}: {e}");
        }
    }

    #[test]
    fn own_fields_runtime_config_and_gc_list() {
        let text = r#"{"cniVersion":"1.1.0","name":"podswitch","type":"podswitch-cni","socket":"/tmp/x.sock","mtu":1400,
            "runtimeConfig":{"portMappings":[],"io.kubernetes.cri.pod-annotations":{"podswitch.io/labels":"app=web"}},
            "prevResult":{"cniVersion":"1.0.0"},
            "cni.dev/valid-attachments":[{"containerID":"abc","ifname":"eth0"}],
            "cni.dev/attachments":[{"containerID":"zzz","ifname":"eth1"}]}"#;
        let c = NetConf::parse(text.as_bytes()).unwrap();
        assert_eq!(c.socket, PathBuf::from("/tmp/x.sock"));
        assert_eq!(c.mtu, Some(1400));
        assert_eq!(c.annotations.get("podswitch.io/labels").map(String::as_str), Some("app=web"));
        assert!(c.prev_result.is_some());
        assert_eq!(
            c.valid_attachments,
            Some(vec![ValidAttachment { container_id: "abc".into(), ifname: "eth0".into() }])
        );
        let old =
            r#"{"cniVersion":"1.1.0","name":"n","type":"t","cni.dev/attachments":[{"containerID":"a","ifname":"e"}]}"#;
        assert_eq!(NetConf::parse(old.as_bytes()).unwrap().valid_attachments.map(|v| v.len()), Some(1));
    }

    #[test]
    fn cni_args_as_podman_and_containerd_send_them() {
        let podman = CniArgs::parse("IgnoreUnknown=1;K8S_POD_NAME=web").unwrap();
        assert_eq!(podman.get("K8S_POD_NAME"), Some("web"));
        assert_eq!(podman.get("K8S_POD_NAMESPACE"), None);
        let cri = CniArgs::parse(
            "K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1;IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=db-0",
        )
        .unwrap();
        assert_eq!(cri.get("K8S_POD_NAMESPACE"), Some("prod"));
        assert_eq!(cri.get("K8S_POD_NAME"), Some("db-0"));
        assert_eq!(cri.get("K8S_POD_UID"), Some("u-1"));
        assert_eq!(CniArgs::parse("").unwrap().pairs.len(), 0);
        assert_eq!(CniArgs::parse(";;A=b=c;").unwrap().get("A"), Some("b=c"));
        assert_eq!(CniArgs::parse("A=").unwrap().get("A"), None);
        for bad in ["novalue", "=x", "A=1;junk"] {
            assert_eq!(CniArgs::parse(bad).unwrap_err().code, INVALID_ENV, "{bad}");
        }
    }

    #[test]
    fn env_checks_name_the_variable() {
        let env = Env::from_lookup(|k| match k {
            "CNI_COMMAND" => Some("ADD".into()),
            "CNI_CONTAINERID" => Some("".into()),
            "CNI_IFNAME" => Some("a/b".into()),
            _ => None,
        });
        let e = env.require_container_id().unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (INVALID_ENV, "CNI_CONTAINERID is not set"));
        let e = env.require_netns().unwrap_err();
        assert!(e.msg.contains("CNI_NETNS"));
        let e = env.require_ifname().unwrap_err();
        assert!(e.msg.contains("CNI_IFNAME"), "{e}");
        let ok = Env::from_lookup(|k| match k {
            "CNI_CONTAINERID" => Some("3f69a0_b.c-d".into()),
            "CNI_IFNAME" => Some("eth0".into()),
            _ => None,
        });
        assert_eq!(ok.require_container_id().unwrap(), "3f69a0_b.c-d");
        assert_eq!(ok.require_ifname().unwrap(), "eth0");
        let bad_id = Env { container_id: Some("-x".into()), ..Env::default() };
        assert_eq!(bad_id.require_container_id().unwrap_err().code, INVALID_ENV);
        assert!(!valid_ifname("sixteen-chars-xx"));
        assert!(valid_ifname("fifteen-chars-x"));
    }
}
