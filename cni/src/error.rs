//! CNI errors: the well-known codes of the CNI spec (section "Error" of the 1.0/1.1 SPEC.md)
//! and the JSON object a plugin prints on stdout when it fails.

use serde_json::{json, Value};
use std::fmt;

/// Code 1: the network configuration's `cniVersion` is not one the plugin supports.
pub const INCOMPATIBLE_VERSION: u32 = 1;
/// Code 2: a field of the network configuration is not supported (here: `ipam`).
pub const UNSUPPORTED_FIELD: u32 = 2;
/// Code 3: the container (attachment) is unknown or does not exist.
pub const UNKNOWN_CONTAINER: u32 = 3;
/// Code 4: a required environment variable is missing or malformed (the message names it).
pub const INVALID_ENV: u32 = 4;
/// Code 5: an I/O failure (netlink, network namespaces, sysctls, ioctls).
pub const IO_FAILURE: u32 = 5;
/// Code 6: the network configuration on stdin could not be decoded as JSON.
pub const DECODE_FAILURE: u32 = 6;
/// Code 7: the network configuration is JSON but not a valid one for this plugin.
pub const INVALID_CONFIG: u32 = 7;
/// Code 11: a transient condition (daemon not reachable, no free address); retry later.
pub const TRY_AGAIN_LATER: u32 = 11;
/// Code 50 (spec 1.1, STATUS): the plugin cannot take ADD calls now.
pub const PLUGIN_NOT_AVAILABLE: u32 = 50;
/// Code 51 (spec 1.1, STATUS): not available, and existing containers may be affected.
pub const PLUGIN_NOT_AVAILABLE_LIMITED: u32 = 51;
/// Code 100 (plugin-specific range 100+): podswitchd refused a request for a reason that has
/// no well-known code (internal error, unimplemented call, malformed answer).
pub const DAEMON_REFUSED: u32 = 100;

/// The `cniVersion` of every error object and result this plugin prints.
pub const RESULT_VERSION: &str = "1.0.0";

/// A failed CNI command: `code` is one of the constants above, `msg` a short message and
/// `details` an optional longer explanation (empty: left out of the JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    /// Well-known (0-99) or plugin-specific (100+) error code.
    pub code: u32,
    /// Short message.
    pub msg: String,
    /// Longer explanation, possibly empty.
    pub details: String,
}

impl CniError {
    /// An error with a code and a short message, without details.
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError { code, msg: msg.into(), details: String::new() }
    }

    /// The same error with `details` set.
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// The error object of the spec: `{"cniVersion":"1.0.0","code":N,"msg":"...","details":"..."}`
    /// (`details` only when not empty).
    pub fn to_json(&self) -> Value {
        let mut v = json!({ "cniVersion": RESULT_VERSION, "code": self.code, "msg": self.msg });
        if !self.details.is_empty() {
            v["details"] = Value::String(self.details.clone());
        }
        v
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CNI error {}: {}", self.code, self.msg)?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_has_the_spec_fields() {
        let e = CniError::new(INVALID_ENV, "CNI_IFNAME is not set").with_details("ADD needs it");
        let v = e.to_json();
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["code"], 4);
        assert_eq!(v["msg"], "CNI_IFNAME is not set");
        assert_eq!(v["details"], "ADD needs it");
        assert_eq!(v.as_object().map(|o| o.len()), Some(4));
        let bare = CniError::new(TRY_AGAIN_LATER, "later").to_json();
        assert!(bare.get("details").is_none());
        assert_eq!(bare["code"], 11);
    }
}
