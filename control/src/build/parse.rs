//! Parsing of the values a config holds as strings, with errors that say what is allowed.

use crate::error::FieldError;
use std::net::IpAddr;
use switch_core::addr::Prefix;
use switch_core::wire::{proto, MacAddr};

pub(crate) type Sec = Option<(&'static str, usize)>;

pub(crate) fn ip(sec: Sec, field: &str, s: &str) -> Result<IpAddr, FieldError> {
    s.parse().map_err(|_| FieldError::new(sec, field, format!("'{s}' is not an IPv4 or IPv6 address")))
}

pub(crate) fn mac(sec: Sec, field: &str, s: &str) -> Result<MacAddr, FieldError> {
    let m: MacAddr = s.parse().map_err(|e| FieldError::new(sec, field, format!("'{s}': {e}")))?;
    if m.is_multicast() {
        return Err(FieldError::new(sec, field, format!("'{s}' is a multicast MAC; a unicast MAC is required")));
    }
    Ok(m)
}

pub(crate) fn prefix(sec: Sec, field: &str, s: &str) -> Result<Prefix, FieldError> {
    s.parse().map_err(|e| FieldError::new(sec, field, format!("'{s}': {e}")))
}

/// Kubernetes protocol names.
pub(crate) fn protocol(sec: Sec, field: &str, s: &str) -> Result<u8, FieldError> {
    match s {
        "TCP" => Ok(proto::TCP),
        "UDP" => Ok(proto::UDP),
        "SCTP" => Ok(proto::SCTP),
        _ => Err(FieldError::new(sec, field, format!("protocol '{s}' is not one of TCP, UDP, SCTP"))),
    }
}

/// A "lo-hi" port range.
pub(crate) fn port_range(sec: Sec, field: &str, s: &str) -> Result<(u16, u16), FieldError> {
    let bad = || FieldError::new(sec, field, format!("'{s}' is not a port range like 30000-32767"));
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let lo: u16 = a.trim().parse().map_err(|_| bad())?;
    let hi: u16 = b.trim().parse().map_err(|_| bad())?;
    if lo == 0 || lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

pub(crate) fn is_prime(n: usize) -> bool {
    if n < 2 {
        return false;
    }
    let mut i = 2;
    while i * i <= n {
        if n.is_multiple_of(i) {
            return false;
        }
        i += 1;
    }
    true
}
